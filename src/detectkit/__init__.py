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
    "Box": "detectkit.boxes",
    "BoxStats": "detectkit.dataset",
    "ConflictError": "detectkit.errors",
    "DatasetSplit": "detectkit.dataset",
    "DatasetSummary": "detectkit.dataset",
    "DetectkitError": "detectkit.errors",
    "EndpointError": "detectkit.errors",
    "ImageRecord": "detectkit.dataset",
    "InvalidAnnotationError": "detectkit.errors",
    "InvalidInputError": "detectkit.errors",
    "InvalidResponseError": "detectkit.errors",
    "InvalidSettingsError": "detectkit.errors",
    "LabeledDataset": "detectkit.dataset",
    "MissingDependencyError": "detectkit.errors",
    "NotFoundError": "detectkit.errors",
    "ObjectAnnotation": "detectkit.dataset",
    "OperationTimeoutError": "detectkit.errors",
    "Problem": "detectkit.validation",
    "ProblemKind": "detectkit.validation",
    "QuotaError": "detectkit.errors",
    "RunFailedError": "detectkit.errors",
    "Severity": "detectkit.validation",
    "ValidationReport": "detectkit.validation",
    "detect_format": "detectkit.formats",
    "image_size": "detectkit.images",
    "read_dataset": "detectkit.formats",
    "write_dataset": "detectkit.formats",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:
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
    from detectkit.formats import detect_format, read_dataset, write_dataset
    from detectkit.images import image_size
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
