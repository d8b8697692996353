"""detectkit: the object-detection lifecycle on Azure Machine Learning, and on one machine.

Public names are loaded on first use, so ``import detectkit`` stays light: Azure, MLflow,
matplotlib, torch and FastAPI are imported only by the calls that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "AuthenticationError": "detectkit.errors",
    "BanditPolicy": "detectkit.settings",
    "BatchDeploymentSettings": "detectkit.batch",
    "BatchEndpoint": "detectkit.batch",
    "BatchScoringJob": "detectkit.batch",
    "Box": "detectkit.boxes",
    "BoxStats": "detectkit.dataset",
    "Choice": "detectkit.settings",
    "ConflictError": "detectkit.errors",
    "DatasetAsset": "detectkit.resources",
    "DatasetSplit": "detectkit.dataset",
    "DatasetSummary": "detectkit.dataset",
    "DeploymentSettings": "detectkit.settings",
    "DetectionRun": "detectkit.resources",
    "Detections": "detectkit.prediction",
    "DetectkitError": "detectkit.errors",
    "Endpoint": "detectkit.resources",
    "EndpointError": "detectkit.errors",
    "EndpointKeys": "detectkit.resources",
    "EvaluationReport": "detectkit.evaluation",
    "ImageRecord": "detectkit.dataset",
    "ImageFailure": "detectkit.scoring.chunks",
    "InvalidAnnotationError": "detectkit.errors",
    "InvalidInputError": "detectkit.errors",
    "InvalidResponseError": "detectkit.errors",
    "InvalidSettingsError": "detectkit.errors",
    "LabeledDataset": "detectkit.dataset",
    "Limits": "detectkit.settings",
    "LogNormal": "detectkit.settings",
    "LogUniform": "detectkit.settings",
    "MedianStoppingPolicy": "detectkit.settings",
    "MissingDependencyError": "detectkit.errors",
    "Normal": "detectkit.settings",
    "NotFoundError": "detectkit.errors",
    "ObjectAnnotation": "detectkit.dataset",
    "OperationTimeoutError": "detectkit.errors",
    "Prediction": "detectkit.prediction",
    "PredictionBatch": "detectkit.scoring.chunks",
    "ProbeSettings": "detectkit.settings",
    "Problem": "detectkit.validation",
    "ProblemKind": "detectkit.validation",
    "Project": "detectkit.project",
    "QLogNormal": "detectkit.settings",
    "QLogUniform": "detectkit.settings",
    "QNormal": "detectkit.settings",
    "QUniform": "detectkit.settings",
    "QuotaError": "detectkit.errors",
    "Randint": "detectkit.settings",
    "RegisteredModel": "detectkit.resources",
    "RunFailedError": "detectkit.errors",
    "RunMetadata": "detectkit.settings",
    "RunStatus": "detectkit.resources",
    "ScoreFailure": "detectkit.records",
    "ScoreResult": "detectkit.records",
    "SearchSpace": "detectkit.settings",
    "Severity": "detectkit.validation",
    "SweepSettings": "detectkit.settings",
    "TrainingParameters": "detectkit.settings",
    "TrainingRequest": "detectkit.settings",
    "Trial": "detectkit.resources",
    "TruncationSelectionPolicy": "detectkit.settings",
    "Uniform": "detectkit.settings",
    "ValidationReport": "detectkit.validation",
    "build_request": "detectkit.scoring",
    "detect_format": "detectkit.formats",
    "evaluate": "detectkit.evaluation",
    "evaluate_coco_files": "detectkit.evaluation",
    "image_size": "detectkit.images",
    "parse_batch_output": "detectkit.scoring",
    "parse_response": "detectkit.scoring",
    "rank_for_labeling": "detectkit.ranking",
    "read_azureml": "detectkit.formats.azureml",
    "read_coco": "detectkit.formats.coco",
    "read_dataset": "detectkit.formats",
    "write_azureml": "detectkit.formats.azureml",
    "write_coco": "detectkit.formats.coco",
    "write_dataset": "detectkit.formats",
}

__all__ = [
    "AuthenticationError",
    "BanditPolicy",
    "BatchDeploymentSettings",
    "BatchEndpoint",
    "BatchScoringJob",
    "Box",
    "BoxStats",
    "Choice",
    "ConflictError",
    "DatasetAsset",
    "DatasetSplit",
    "DatasetSummary",
    "DeploymentSettings",
    "DetectionRun",
    "Detections",
    "DetectkitError",
    "Endpoint",
    "EndpointError",
    "EndpointKeys",
    "EvaluationReport",
    "ImageFailure",
    "ImageRecord",
    "InvalidAnnotationError",
    "InvalidInputError",
    "InvalidResponseError",
    "InvalidSettingsError",
    "LabeledDataset",
    "Limits",
    "LogNormal",
    "LogUniform",
    "MedianStoppingPolicy",
    "MissingDependencyError",
    "Normal",
    "NotFoundError",
    "ObjectAnnotation",
    "OperationTimeoutError",
    "Prediction",
    "PredictionBatch",
    "ProbeSettings",
    "Problem",
    "ProblemKind",
    "Project",
    "QLogNormal",
    "QLogUniform",
    "QNormal",
    "QUniform",
    "QuotaError",
    "Randint",
    "RegisteredModel",
    "RunFailedError",
    "RunMetadata",
    "RunStatus",
    "ScoreFailure",
    "ScoreResult",
    "SearchSpace",
    "Severity",
    "SweepSettings",
    "TrainingParameters",
    "TrainingRequest",
    "Trial",
    "TruncationSelectionPolicy",
    "Uniform",
    "ValidationReport",
    "__version__",
    "build_request",
    "detect_format",
    "evaluate",
    "evaluate_coco_files",
    "image_size",
    "parse_batch_output",
    "parse_response",
    "rank_for_labeling",
    "read_azureml",
    "read_coco",
    "read_dataset",
    "write_azureml",
    "write_coco",
    "write_dataset",
]

if TYPE_CHECKING:
    from detectkit.batch import BatchDeploymentSettings, BatchEndpoint, BatchScoringJob
    from detectkit.boxes import Box
    from detectkit.dataset import (
        BoxStats,
        DatasetSplit,
        DatasetSummary,
        ImageRecord,
        LabeledDataset,
        ObjectAnnotation,
    )
    from detectkit.errors import (
        AuthenticationError,
        ConflictError,
        DetectkitError,
        EndpointError,
        InvalidAnnotationError,
        InvalidInputError,
        InvalidResponseError,
        InvalidSettingsError,
        MissingDependencyError,
        NotFoundError,
        OperationTimeoutError,
        QuotaError,
        RunFailedError,
    )
    from detectkit.evaluation.pipeline import EvaluationReport, evaluate, evaluate_coco_files
    from detectkit.formats import detect_format, read_dataset, write_dataset
    from detectkit.formats.azureml import read_azureml, write_azureml
    from detectkit.formats.coco import read_coco, write_coco
    from detectkit.images import image_size
    from detectkit.prediction import Detections, Prediction
    from detectkit.project import Project
    from detectkit.ranking import rank_for_labeling
    from detectkit.records import ScoreFailure, ScoreResult
    from detectkit.resources import (
        DatasetAsset,
        DetectionRun,
        Endpoint,
        EndpointKeys,
        RegisteredModel,
        RunStatus,
        Trial,
    )
    from detectkit.scoring.chunks import ImageFailure, PredictionBatch
    from detectkit.scoring.response import build_request, parse_batch_output, parse_response
    from detectkit.settings.request import (
        BanditPolicy,
        Choice,
        DeploymentSettings,
        Limits,
        LogNormal,
        LogUniform,
        MedianStoppingPolicy,
        Normal,
        ProbeSettings,
        QLogNormal,
        QLogUniform,
        QNormal,
        QUniform,
        Randint,
        RunMetadata,
        SearchSpace,
        SweepSettings,
        TrainingParameters,
        TrainingRequest,
        TruncationSelectionPolicy,
        Uniform,
    )
    from detectkit.validation import Problem, ProblemKind, Severity, ValidationReport


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'detectkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
