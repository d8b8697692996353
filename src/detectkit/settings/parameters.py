"""Training parameters: the model to train and the hyperparameters of one run.

:class:`TrainingParameters` mirrors AutoML's ``set_training_parameters`` and checks value
ranges and parameters that contradict each other (``momentum`` with ``optimizer="adam"``,
``model_size`` for a Faster R-CNN). The model names live here too: :func:`check_model_name`
checks the syntax of a name, and each backend calls :func:`validate_models` with the set it
trains (Azure: :data:`AZURE_MODELS`). Re-exported by :mod:`detectkit.settings`.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from detectkit.errors import InvalidSettingsError, format_problem
from detectkit.settings.base import FROZEN

__all__ = [
    "AZURE_MODELS",
    "KNOWN_MODELS",
    "MMDETECTION_PREFIX",
    "TrainingParameters",
    "check_model_name",
    "validate_models",
]

# --------------------------------------------------------------------------------------------
# Model names
# --------------------------------------------------------------------------------------------

#: Prefix of the MMDetection 3.1 models Azure AutoML trains (``mmd-3x-<mmdetection config>``).
MMDETECTION_PREFIX = "mmd-3x-"

#: Object-detection models Azure AutoML documents. An entry with ``*`` is a pattern: any
#: ``mmd-3x-<name>`` is accepted (MMDetection 3.1 model zoo).
AZURE_MODELS: frozenset[str] = frozenset(
    {
        "yolov5",
        "fasterrcnn_resnet18_fpn",
        "fasterrcnn_resnet34_fpn",
        "fasterrcnn_resnet50_fpn",
        "fasterrcnn_resnet101_fpn",
        "fasterrcnn_resnet152_fpn",
        "retinanet_resnet50_fpn",
        MMDETECTION_PREFIX + "*",
    }
)

#: The names Azure AutoML documents; each backend declares the set it trains and checks a
#: request with :func:`validate_models` (the local backend has its own torchvision names).
KNOWN_MODELS: frozenset[str] = AZURE_MODELS

# Curated MMDetection names from the AutoML docs: only used to suggest a spelling.
_MMDETECTION_CURATED = (
    "mmd-3x-sparse-rcnn_r50_fpn_300-proposals_crop-ms-480-800-3x_coco",
    "mmd-3x-deformable-detr_refine_twostage_r50_16xb2-50e_coco",
    "mmd-3x-vfnet_r50-mdconv-c3-c5_fpn_ms-2x_coco",
    "mmd-3x-yolof_r50_c5_8x8_1x_coco",
)

_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+\-]*$")


def check_model_name(name: str) -> str:
    """Check the syntax of a model name and return it stripped and lower-cased.

    Which names a backend can train is checked by :func:`validate_models`.

    Raises:
        ValueError: The name is empty, has characters a model name cannot have, is a
            segmentation model (``maskrcnn_*``) or is the bare ``mmd-3x-`` prefix.
    """
    text = name.strip().lower()
    if not text:
        raise ValueError("model name is empty; expected e.g. 'fasterrcnn_resnet50_fpn'")
    if not _MODEL_NAME.match(text):
        raise ValueError(
            f"model name {name!r} has characters a model name cannot have "
            "(expected letters, digits, '_', '-', '.', '+')"
        )
    if text.startswith("maskrcnn"):
        raise ValueError(
            f"{name!r} is an instance-segmentation model; object detection needs a box model, "
            "e.g. 'fasterrcnn_resnet50_fpn' (same backbone) or 'yolov5'"
        )
    if text == MMDETECTION_PREFIX:
        raise ValueError(
            f"{name!r} names no MMDetection model; expected '{MMDETECTION_PREFIX}<config name>', "
            f"e.g. '{_MMDETECTION_CURATED[2]}'"
        )
    return text


def _supports(name: str, supported: Collection[str]) -> bool:
    return name in supported or any(
        "*" in entry and fnmatch.fnmatchcase(name, entry) for entry in supported
    )


def validate_models(names: Iterable[str], supported: Collection[str], backend: str) -> None:
    """Reject model names a backend cannot train, with the nearest supported name.

    Each backend calls this with its own set before it starts anything; a name it cannot
    train is an error, never silently replaced by another model.

    Args:
        names: The model names of a request (:meth:`TrainingRequest.model_names`).
        supported: The names the backend trains; an entry with ``*`` is a glob pattern
            (``"mmd-3x-*"``).
        backend: The backend's name, for the message (``"azure"``, ``"local"``).

    Raises:
        InvalidSettingsError: A name is not in ``supported``.
    """
    unknown = [name for name in names if not _supports(name, supported)]
    if not unknown:
        return
    listed = sorted(supported)
    candidates = [n for n in listed if "*" not in n]
    if any(n.startswith(MMDETECTION_PREFIX) for n in listed):
        candidates += _MMDETECTION_CURATED
    shown = ", ".join(n.replace("*", "<name>") for n in listed)
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "pick one of the supported names"
        problems.append(
            format_problem(
                f"{name!r} is not a model the {backend} backend can train",
                None,
                None,
                "model_name",
                f"one of {shown}",
                repr(name),
                hint,
            )
        )
    raise InvalidSettingsError("\n".join(problems))


# --------------------------------------------------------------------------------------------
# Training parameters
# --------------------------------------------------------------------------------------------

Optimizer = Literal["sgd", "adam", "adamw"]
LearningRateScheduler = Literal["warmup_cosine", "step", "none"]
ModelSize = Literal["small", "medium", "large", "extra_large"]
ValidationMetric = Literal["coco", "voc", "coco_voc", "none"]

Fraction = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]

_ENUM_FIELDS = ("optimizer", "learning_rate_scheduler", "model_size", "validation_metric_type")
_YOLO_ONLY = ("model_size", "image_size", "multi_scale")
_NOT_YOLO = ("min_size", "max_size")
_SGD_ONLY = ("momentum", "nesterov")
_ADAM_ONLY = ("beta1", "beta2", "ams_gradient")
_STEP_ONLY = ("step_lr_gamma", "step_lr_step_size")
_COSINE_ONLY = ("warmup_cosine_lr_cycles", "warmup_cosine_lr_warmup_epochs")


def snake(value: object) -> object:
    """``"WarmupCosine"``, ``"warmup-cosine"``, ``"Adamw"`` -> ``"warmup_cosine"``, ``"adamw"``."""
    if not isinstance(value, str):
        return value
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value.strip())
    return re.sub(r"[\s\-]+", "_", text).lower()


def contradictions(
    values: Mapping[str, object], present: Collection[str], models: Collection[str]
) -> list[str]:
    """Parameters (``present``) that contradict the optimizer, scheduler (fixed in ``values``)
    or the models they are set with."""
    optimizer = values.get("optimizer")
    scheduler = values.get("learning_rate_scheduler")
    yolo = bool(models) and all(m == "yolov5" for m in models)
    not_yolo = bool(models) and all(m != "yolov5" for m in models)
    rules = (
        (optimizer in ("adam", "adamw"), _SGD_ONLY, f"optimizer 'sgd' only, not {optimizer!r}"),
        (optimizer == "sgd", _ADAM_ONLY, "optimizer 'adam' or 'adamw' only, not 'sgd'"),
        (scheduler in ("warmup_cosine", "none"), _STEP_ONLY, "learning_rate_scheduler 'step' only"),
        (
            scheduler in ("step", "none"),
            _COSINE_ONLY,
            "learning_rate_scheduler 'warmup_cosine' only",
        ),
        (yolo, _NOT_YOLO, "models other than yolov5 (yolov5 uses image_size)"),
        (not_yolo, _YOLO_ONLY, f"yolov5 only, not {', '.join(sorted(models))}"),
    )
    found = []
    for applies, names, scope in rules:
        given = [n for n in names if n in present]
        if applies and given:
            verb = "applies" if len(given) == 1 else "apply"
            found.append(f"{', '.join(given)} {verb} to {scope}")
    return found


class TrainingParameters(BaseModel):
    """Fixed training parameters (AutoML ``set_training_parameters``); ``None`` = default.

    Service defaults differ between yolov5 and the other models (epochs 30 vs 15, batch
    16/16 vs 2/1, learning rate 0.01 vs 0.005, score threshold 0.1 vs 0.3); see the Azure
    docs "Hyperparameters for computer vision tasks in automated machine learning".

    Enumerations accept any spelling of the same words (``"Adamw"``, ``"WarmupCosine"``) and
    are stored in snake_case. ``advanced_settings`` accepts a dict or a JSON object string
    and is stored as JSON text.
    """

    model_config = FROZEN

    model_name: str | None = None
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    number_of_epochs: Positive | None = None
    training_batch_size: Positive | None = None
    validation_batch_size: Positive | None = None
    optimizer: Optimizer | None = None
    learning_rate_scheduler: LearningRateScheduler | None = None
    momentum: Fraction | None = None
    weight_decay: Fraction | None = None
    nesterov: bool | None = None
    ams_gradient: bool | None = None
    beta1: Fraction | None = None
    beta2: Fraction | None = None
    early_stopping: bool | None = None
    early_stopping_patience: Positive | None = None
    early_stopping_delay: Positive | None = None
    evaluation_frequency: Positive | None = None
    warmup_cosine_lr_warmup_epochs: NonNegative | None = None
    warmup_cosine_lr_cycles: Fraction | None = None
    step_lr_gamma: Fraction | None = None
    step_lr_step_size: Positive | None = None
    layers_to_freeze: NonNegative | None = None
    random_seed: int | None = None
    distributed: bool | None = None
    enable_onnx_normalization: bool | None = None
    gradient_accumulation_step: Positive | None = None
    number_of_workers: NonNegative | None = None
    checkpoint_frequency: Positive | None = None
    checkpoint_run_id: str | None = None
    image_size: Positive | None = None
    min_size: Positive | None = None
    max_size: Positive | None = None
    model_size: ModelSize | None = None
    multi_scale: bool | None = None
    box_score_threshold: Fraction | None = None
    nms_iou_threshold: Fraction | None = None
    box_detections_per_image: Positive | None = None
    tile_grid_size: str | None = None
    tile_overlap_ratio: float | None = Field(default=None, ge=0, lt=1)
    tile_predictions_nms_threshold: Fraction | None = None
    validation_iou_threshold: Fraction | None = None
    validation_metric_type: ValidationMetric | None = None
    log_training_metrics: bool | None = None
    log_validation_loss: bool | None = None
    advanced_settings: str | None = None

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        return None if value is None else check_model_name(value)

    @field_validator(*_ENUM_FIELDS, mode="before")
    @classmethod
    def _enum(cls, value: object) -> object:
        return snake(value)

    @field_validator("tile_grid_size", mode="before")
    @classmethod
    def _grid(cls, value: object) -> object:
        if isinstance(value, tuple | list) and len(value) == 2:
            value = f"{value[0]}x{value[1]}"
        if isinstance(value, str):
            match = re.fullmatch(r"\s*\(?\s*(\d+)\s*[x,X]\s*(\d+)\s*\)?\s*", value)
            if match and int(match.group(1)) >= 1 and int(match.group(2)) >= 1:
                return f"{int(match.group(1))}x{int(match.group(2))}"
            raise ValueError(
                f"tile_grid_size {value!r} is not a grid (expected 'COLSxROWS' such as '3x2')"
            )
        return value

    @field_validator("advanced_settings", mode="before")
    @classmethod
    def _advanced(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return json.dumps(dict(value))
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"advanced_settings is not valid JSON ({exc.msg} at character {exc.pos}); "
                    "expected a JSON object such as '{\"apply_mosaic_for_yolo\": false}'"
                ) from None
            if not isinstance(parsed, dict):
                raise ValueError(
                    f"advanced_settings must be a JSON object, got {type(parsed).__name__}"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> TrainingParameters:
        if (
            self.min_size is not None
            and self.max_size is not None
            and self.min_size > self.max_size
        ):
            raise ValueError(
                f"min_size {self.min_size} > max_size {self.max_size}; "
                "min_size must not be larger than max_size"
            )
        if info.context and info.context.get("trial"):
            return self
        models = [self.model_name] if self.model_name else []
        values = self.model_dump(exclude_none=True)
        problems = contradictions(values, values, models)
        if problems:
            raise ValueError("; ".join(problems) + "; remove them or change that choice")
        return self

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return [(k, v) for k, v in self if v is not None]

    def advanced_settings_dict(self) -> dict[str, Any]:
        """``advanced_settings`` parsed (empty when not set)."""
        return {} if self.advanced_settings is None else dict(json.loads(self.advanced_settings))

    def merged(self, values: Mapping[str, Any], *, trial: bool = False) -> TrainingParameters:
        """These parameters with ``values`` set, validated.

        With ``trial=True`` (one trial of a sweep) parameters meant for other trials are
        allowed: a fixed ``momentum`` is kept, and ignored, in a trial that drew ``adam``.
        """
        data = {**self.model_dump(exclude_none=True), **values}
        return TrainingParameters.model_validate(data, context={"trial": trial})
