"""Typed training and deployment settings, shared by the Azure and the local backends.

The types mirror Azure AutoML for images (``set_training_parameters``, ``set_sweep``,
``set_limits``, ``extend_search_space``) in snake_case, and check before anything is submitted
what the service would otherwise reject minutes later, or silently ignore:

- value ranges (``learning_rate`` in (0, 1], thresholds in [0, 1], sizes > 0 ...);
- parameters that contradict each other (``momentum`` with ``optimizer="adam"``, ``model_size``
  for a Faster R-CNN, ``min_size > max_size``);
- sweep rules (bayesian sampling takes no early termination and no conditional space, grid
  sampling only ``Choice``; a search space needs a sweep);
- limits (``max_concurrent_trials <= max_trials``, timeout at most 60 days).

Model names are checked for syntax here; which names a backend can train is checked by the
backend itself with :func:`validate_models` (Azure: :data:`AZURE_MODELS`).

Nothing here imports azure-ai-ml: ``detectkit.backends.azure_jobs`` turns these into
azure-ai-ml entities, the local backend samples the distributions itself.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import json
import math
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from decimal import localcontext
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from detectkit.errors import InvalidSettingsError, format_problem

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "AZURE_MODELS",
    "KNOWN_MODELS",
    "MMDETECTION_PREFIX",
    "BanditPolicy",
    "Choice",
    "DeploymentSettings",
    "Distribution",
    "Limits",
    "LogNormal",
    "LogUniform",
    "MedianStoppingPolicy",
    "Normal",
    "ProbeSettings",
    "QLogNormal",
    "QLogUniform",
    "QNormal",
    "QUniform",
    "Randint",
    "SearchSpace",
    "SweepSettings",
    "TrainingParameters",
    "TrainingRequest",
    "TruncationSelectionPolicy",
    "Uniform",
    "check_model_name",
    "parse_distribution",
    "settings_error",
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
# Distributions
# --------------------------------------------------------------------------------------------

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
Number = StrictInt | StrictFloat

# protected_namespaces=(): fields such as ``model_name`` are AutoML's names (pydantic < 2.10
# would warn about the "model_" prefix).
_FROZEN = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


def _wire_number(value: object) -> str:
    """A number as azure-ai-ml writes it: floats without exponent (``1e-05`` -> ``0.00001``)."""
    if isinstance(value, float):
        with localcontext() as ctx:
            ctx.prec = 20
            return format(ctx.create_decimal(repr(value)), "f")
    return str(value)


def _wire_args(kind: str, *args: object) -> str:
    return f"{kind}({','.join(_wire_number(a) for a in args)})"


class _Distribution(BaseModel):
    """Base of the search-space distributions (Azure ML sweep semantics)."""

    model_config = _FROZEN

    def to_azure_string(self) -> str:
        """The distribution as azure-ai-ml writes it in a search space (``"uniform(0.1,0.2)"``)."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Scalar:
        """One value drawn with ``rng`` (Azure ML semantics), as a Python scalar."""
        raise NotImplementedError

    def grid_values(self) -> tuple[Scalar, ...]:
        """The values a grid sweep visits; only :class:`Choice` has them.

        Raises:
            InvalidSettingsError: The distribution is continuous or unbounded.
        """
        raise InvalidSettingsError(
            f"{self.to_azure_string()}: grid sampling visits a finite set of values; "
            "use Choice([...]) or sampling_algorithm='random'"
        )

    def _extremes(self) -> tuple[Scalar, ...]:
        """The smallest and largest value it can produce (empty when unbounded)."""
        return ()

    def __str__(self) -> str:
        return self.to_azure_string()

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return [(k, v) for k, v in self if k != "type"]


class Choice(_Distribution):
    """Pick one of ``values`` (``choice('yolov5','fasterrcnn_resnet50_fpn')``)."""

    type: Literal["choice"] = "choice"
    values: tuple[Scalar, ...] = Field(min_length=1)

    def __init__(self, values: Iterable[Scalar] | Scalar, **data: Any) -> None:
        super().__init__(values=values, **data)

    @field_validator("values", mode="before")
    @classmethod
    def _one_value(cls, value: object) -> object:
        if isinstance(value, str | int | float | bool):
            return (value,)
        if isinstance(value, Iterable) and not isinstance(value, Mapping):
            return tuple(value)
        return value

    @field_validator("values")
    @classmethod
    def _wire_safe(cls, values: tuple[Scalar, ...]) -> tuple[Scalar, ...]:
        for value in values:
            if isinstance(value, str) and (not value or re.search(r"[\s,()'\"]", value)):
                raise ValueError(
                    f"choice value {value!r} cannot be sent: it is empty or has a space, "
                    "comma, parenthesis or quote"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"choice value {value!r} is not a finite number")
        return values

    def to_azure_string(self) -> str:
        parts = [f"'{v}'" if isinstance(v, str) else _wire_number(v) for v in self.values]
        return f"choice({','.join(parts)})"

    def sample(self, rng: np.random.Generator) -> Scalar:
        return self.values[int(rng.integers(len(self.values)))]

    def grid_values(self) -> tuple[Scalar, ...]:
        return self.values

    def _extremes(self) -> tuple[Scalar, ...]:
        return self.values


class _Range(_Distribution):
    min_value: Number
    max_value: Number

    def __init__(self, min_value: float, max_value: float, **data: Any) -> None:
        super().__init__(min_value=min_value, max_value=max_value, **data)

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not (math.isfinite(self.min_value) and math.isfinite(self.max_value)):
            raise ValueError(f"{self.to_azure_string()}: bounds must be finite numbers")
        if self.min_value >= self.max_value:
            raise ValueError(
                f"{self.to_azure_string()}: min_value must be < max_value "
                f"(got {self.min_value} >= {self.max_value})"
            )
        return self


class Uniform(_Range):
    """A float drawn uniformly in ``[min_value, max_value]``."""

    type: Literal["uniform"] = "uniform"

    def to_azure_string(self) -> str:
        return _wire_args("uniform", self.min_value, self.max_value)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return float(rng.uniform(self.min_value, self.max_value))

    def _extremes(self) -> tuple[Scalar, ...]:
        return (float(self.min_value), float(self.max_value))


class LogUniform(_Range):
    """``exp(uniform(min_value, max_value))``: bounds are natural logs, as in Azure ML.

    ``LogUniform(math.log(1e-4), math.log(1e-2))`` draws learning rates between 1e-4 and 1e-2.
    """

    type: Literal["loguniform"] = "loguniform"

    def to_azure_string(self) -> str:
        return _wire_args("loguniform", self.min_value, self.max_value)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return math.exp(float(rng.uniform(self.min_value, self.max_value)))

    def _extremes(self) -> tuple[Scalar, ...]:
        return (math.exp(self.min_value), math.exp(self.max_value))


def _quantize(value: float, q: int) -> int:
    return round(value / q) * q


class _QRange(_Range):
    q: StrictInt = Field(ge=1)

    def __init__(self, min_value: float, max_value: float, q: int, **data: Any) -> None:
        super().__init__(min_value, max_value, q=q, **data)


class QUniform(_QRange):
    """``round(uniform(min_value, max_value) / q) * q``: integers when ``q`` is an integer."""

    type: Literal["quniform"] = "quniform"

    def to_azure_string(self) -> str:
        return _wire_args("quniform", self.min_value, self.max_value, self.q)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return _quantize(float(rng.uniform(self.min_value, self.max_value)), self.q)

    def _extremes(self) -> tuple[Scalar, ...]:
        return (_quantize(self.min_value, self.q), _quantize(self.max_value, self.q))


class QLogUniform(_QRange):
    """``round(exp(uniform(min_value, max_value)) / q) * q``."""

    type: Literal["qloguniform"] = "qloguniform"

    def to_azure_string(self) -> str:
        return _wire_args("qloguniform", self.min_value, self.max_value, self.q)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return _quantize(math.exp(float(rng.uniform(self.min_value, self.max_value))), self.q)

    def _extremes(self) -> tuple[Scalar, ...]:
        low, high = math.exp(self.min_value), math.exp(self.max_value)
        return (_quantize(low, self.q), _quantize(high, self.q))


class _Gaussian(_Distribution):
    mu: Number
    sigma: Number = Field(gt=0)

    def __init__(self, mu: float, sigma: float, **data: Any) -> None:
        super().__init__(mu=mu, sigma=sigma, **data)


class Normal(_Gaussian):
    """A float drawn from a normal distribution (unbounded: not range-checked)."""

    type: Literal["normal"] = "normal"

    def to_azure_string(self) -> str:
        return _wire_args("normal", self.mu, self.sigma)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return float(rng.normal(self.mu, self.sigma))


class LogNormal(_Gaussian):
    """``exp(normal(mu, sigma))``: always positive."""

    type: Literal["lognormal"] = "lognormal"

    def to_azure_string(self) -> str:
        return _wire_args("lognormal", self.mu, self.sigma)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return math.exp(float(rng.normal(self.mu, self.sigma)))


class _QGaussian(_Gaussian):
    q: StrictInt = Field(ge=1)

    def __init__(self, mu: float, sigma: float, q: int, **data: Any) -> None:
        super().__init__(mu, sigma, q=q, **data)


class QNormal(_QGaussian):
    """``round(normal(mu, sigma) / q) * q``."""

    type: Literal["qnormal"] = "qnormal"

    def to_azure_string(self) -> str:
        return _wire_args("qnormal", self.mu, self.sigma, self.q)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return _quantize(float(rng.normal(self.mu, self.sigma)), self.q)


class QLogNormal(_QGaussian):
    """``round(exp(normal(mu, sigma)) / q) * q``."""

    type: Literal["qlognormal"] = "qlognormal"

    def to_azure_string(self) -> str:
        return _wire_args("qlognormal", self.mu, self.sigma, self.q)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return _quantize(math.exp(float(rng.normal(self.mu, self.sigma))), self.q)


class Randint(_Distribution):
    """An integer in ``[0, upper)``."""

    type: Literal["randint"] = "randint"
    upper: StrictInt = Field(ge=1)

    def __init__(self, upper: int, **data: Any) -> None:
        super().__init__(upper=upper, **data)

    def to_azure_string(self) -> str:
        return _wire_args("randint", self.upper)

    def sample(self, rng: np.random.Generator) -> Scalar:
        return int(rng.integers(self.upper))

    def _extremes(self) -> tuple[Scalar, ...]:
        return (0, self.upper - 1)


#: Any search-space distribution; dicts are parsed by their ``type`` key.
Distribution = Annotated[
    Choice
    | Uniform
    | LogUniform
    | QUniform
    | QLogUniform
    | Normal
    | LogNormal
    | QNormal
    | QLogNormal
    | Randint,
    Field(discriminator="type"),
]

_DISTRIBUTION_TYPES: dict[str, type[_Distribution]] = {
    "choice": Choice,
    "uniform": Uniform,
    "loguniform": LogUniform,
    "quniform": QUniform,
    "qloguniform": QLogUniform,
    "normal": Normal,
    "lognormal": LogNormal,
    "qnormal": QNormal,
    "qlognormal": QLogNormal,
    "randint": Randint,
}
_DISTRIBUTION_ADAPTER: TypeAdapter[_Distribution] = TypeAdapter(Distribution)
_DISTRIBUTION_TEXT = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)


def _parse_scalar(text: str) -> Scalar:
    text = text.strip()
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    return text.strip("'\"")


def parse_distribution(text: str) -> _Distribution:
    """Parse the string form of a distribution (``"uniform(0.0001, 0.01)"``).

    This is the form older AutoML YAML files and the REST payload use.

    Raises:
        InvalidSettingsError: The text is not a known distribution call.
    """
    match = _DISTRIBUTION_TEXT.match(text)
    kind = match.group(1).lower() if match else ""
    cls = _DISTRIBUTION_TYPES.get(kind)
    if match is None or cls is None:
        raise InvalidSettingsError(
            f"cannot read {text!r} as a distribution (expected e.g. \"choice('a','b')\" or "
            f"'uniform(0.001,0.01)'; known: {', '.join(_DISTRIBUTION_TYPES)})"
        )
    args = [_parse_scalar(a) for a in re.split(r"\s*,\s*", match.group(2).strip()) if a.strip()]
    names = [name for name in cls.model_fields if name != "type"]  # positional order
    if cls is not Choice and len(args) != len(names):
        raise InvalidSettingsError(
            f"{text!r}: {kind} takes {len(names)} arguments ({', '.join(names)}), got {len(args)}"
        )
    data: dict[str, Any] = (
        {"values": args} if cls is Choice else dict(zip(names, args, strict=False))
    )
    try:
        return cls.model_validate({"type": kind, **data})
    except ValidationError as exc:
        raise InvalidSettingsError(
            f"{text!r} is not a valid distribution: {_messages(exc)}"
        ) from exc


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


def _snake(value: object) -> object:
    """``"WarmupCosine"``, ``"warmup-cosine"``, ``"Adamw"`` -> ``"warmup_cosine"``, ``"adamw"``."""
    if not isinstance(value, str):
        return value
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value.strip())
    return re.sub(r"[\s\-]+", "_", text).lower()


def _contradictions(
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

    model_config = _FROZEN

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
        return _snake(value)

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
        problems = _contradictions(values, values, models)
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


def _number_type(name: str) -> type | None:
    """``int`` or ``float`` when the TrainingParameters field ``name`` holds that number."""
    stack: list[object] = [TrainingParameters.model_fields[name].annotation]
    while stack:
        kind = stack.pop()
        if kind is int or kind is float:
            return kind
        stack.extend(get_args(kind))
    return None


# Which fields take which distributions: floats any, integers the discrete ones, the rest Choice.
_FLOAT_FIELDS = frozenset(n for n in TrainingParameters.model_fields if _number_type(n) is float)
_INT_FIELDS = frozenset(n for n in TrainingParameters.model_fields if _number_type(n) is int)
_INT_DISTRIBUTIONS = (Choice, Randint, QUniform, QLogUniform, QNormal, QLogNormal)

SpaceValue = Distribution | Scalar


def _value_problem(name: str, value: object) -> str | None:
    """Why ``value`` is not a valid TrainingParameters ``name``, or None when it is."""
    try:
        TrainingParameters.model_validate({name: value})
    except ValidationError as exc:
        return _messages(exc)
    return None


def _check_value(name: str, value: object) -> object:
    """``value`` validated and normalised as TrainingParameters would do for ``name``."""
    problem = _value_problem(name, value)
    if problem is not None:
        raise ValueError(f"{value!r} is not a valid {name} ({problem})")
    return getattr(TrainingParameters.model_validate({name: value}), name)


def _messages(exc: ValidationError) -> str:
    """The messages of a ValidationError, without pydantic's prefixes, in one line."""
    return "; ".join(
        e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        for e in exc.errors()
    )


def _check_space_value(name: str, value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, _Distribution):
        return _normalised(name, value)  # type: ignore[arg-type]
    allowed: tuple[type[_Distribution], ...]
    if name in _FLOAT_FIELDS:
        allowed = tuple(_DISTRIBUTION_TYPES.values())
    elif name in _INT_FIELDS:
        allowed = _INT_DISTRIBUTIONS
    else:
        allowed = (Choice,)
    if not isinstance(value, allowed):
        kinds = ", ".join(c.__name__ for c in allowed)
        takes = "integers" if name in _INT_FIELDS else "one of a set of values"
        raise ValueError(f"{value} cannot set {name}, which takes {takes}; use {kinds}")
    for extreme in value._extremes():
        problem = _value_problem(name, extreme)
        if problem is not None:
            raise ValueError(f"{value} can draw {extreme!r}, not a valid {name} ({problem})")
    if isinstance(value, Choice):
        return Choice([_normalised(name, v) for v in value.values])
    return value


def _read_space_value(value: object) -> object:
    """A search-space input as a fixed scalar or a distribution object."""
    match = _DISTRIBUTION_TEXT.match(value) if isinstance(value, str) else None
    if match is not None and match.group(1).lower() in _DISTRIBUTION_TYPES:
        return parse_distribution(match.group(0))
    if isinstance(value, Mapping):
        try:
            return _DISTRIBUTION_ADAPTER.validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{dict(value)!r} is not a distribution: {_messages(exc)}") from None
    if value is None or isinstance(value, str | int | float | bool | _Distribution):
        return value
    if isinstance(value, Iterable):
        raise ValueError(
            f"{value!r} is not one value; to sweep over it use Choice({list(value)!r})"
        )
    raise ValueError(
        f"{value!r} is neither a value nor a distribution (expected e.g. 0.01 or Uniform(0.001, 0.01))"
    )


def _normalised(name: str, value: Scalar) -> Scalar:
    """``value`` checked for ``name``; spelled as the service wants, numbers kept as given."""
    checked = _check_value(name, value)
    if name in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return value
    return checked  # type: ignore[return-value]


class SearchSpace(BaseModel):
    """One entry of a (conditional) search space: each field a fixed value or a distribution.

    Example:
        ``SearchSpace(model_name=Choice(["yolov5"]), learning_rate=Uniform(0.0001, 0.01),
        model_size=Choice(["small", "medium"]))``

    Fields are the :class:`TrainingParameters` AutoML can sweep (not ``advanced_settings``,
    ``checkpoint_*``, ``log_*``). Values are checked against the same ranges: a
    ``Uniform(0, 0.01)`` learning rate is rejected because it can draw 0. Integer parameters
    take ``Choice``, ``Randint`` or a quantized distribution; text and flags take ``Choice``.
    Dicts (``{"type": "uniform", "min_value": ..., "max_value": ...}``) and strings
    (``"uniform(0.0001,0.01)"``) are read as distributions.
    """

    model_config = _FROZEN

    ams_gradient: SpaceValue | None = None
    beta1: SpaceValue | None = None
    beta2: SpaceValue | None = None
    distributed: SpaceValue | None = None
    early_stopping: SpaceValue | None = None
    early_stopping_delay: SpaceValue | None = None
    early_stopping_patience: SpaceValue | None = None
    enable_onnx_normalization: SpaceValue | None = None
    evaluation_frequency: SpaceValue | None = None
    gradient_accumulation_step: SpaceValue | None = None
    layers_to_freeze: SpaceValue | None = None
    learning_rate: SpaceValue | None = None
    learning_rate_scheduler: SpaceValue | None = None
    model_name: SpaceValue | None = None
    momentum: SpaceValue | None = None
    nesterov: SpaceValue | None = None
    number_of_epochs: SpaceValue | None = None
    number_of_workers: SpaceValue | None = None
    optimizer: SpaceValue | None = None
    random_seed: SpaceValue | None = None
    step_lr_gamma: SpaceValue | None = None
    step_lr_step_size: SpaceValue | None = None
    training_batch_size: SpaceValue | None = None
    validation_batch_size: SpaceValue | None = None
    warmup_cosine_lr_cycles: SpaceValue | None = None
    warmup_cosine_lr_warmup_epochs: SpaceValue | None = None
    weight_decay: SpaceValue | None = None
    box_detections_per_image: SpaceValue | None = None
    box_score_threshold: SpaceValue | None = None
    image_size: SpaceValue | None = None
    max_size: SpaceValue | None = None
    min_size: SpaceValue | None = None
    model_size: SpaceValue | None = None
    multi_scale: SpaceValue | None = None
    nms_iou_threshold: SpaceValue | None = None
    tile_grid_size: SpaceValue | None = None
    tile_overlap_ratio: SpaceValue | None = None
    tile_predictions_nms_threshold: SpaceValue | None = None
    validation_iou_threshold: SpaceValue | None = None
    validation_metric_type: SpaceValue | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _read_text(cls, value: object) -> object:
        return _read_space_value(value)

    @field_validator("*")
    @classmethod
    def _check(cls, value: object, info: ValidationInfo) -> object:
        assert info.field_name is not None
        return _check_space_value(info.field_name, value)

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpace:
        if not self.items():
            raise ValueError("a search space entry sets nothing; give at least one parameter")
        items = self.items()
        fixed = {
            k: v.values[0] if isinstance(v, Choice) and len(v.values) == 1 else v
            for k, v in items.items()
        }
        problems = _contradictions(fixed, items, self.model_names())
        if problems:
            raise ValueError("; ".join(problems) + "; move them to the entry they apply to")
        return self

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return list(self.items().items())

    def items(self) -> dict[str, Scalar | _Distribution]:
        """The parameters this entry sets (fixed values and distributions)."""
        return {k: v for k, v in self if v is not None}

    def distributions(self) -> dict[str, _Distribution]:
        """The swept parameters."""
        return {k: v for k, v in self.items().items() if isinstance(v, _Distribution)}

    def model_names(self) -> tuple[str, ...]:
        """The model names this entry can train (empty when it does not set ``model_name``)."""
        value = self.model_name
        if isinstance(value, Choice):
            return tuple(str(v) for v in value.values)
        return () if value is None else (str(value),)

    def to_azure_strings(self) -> dict[str, str]:
        """Each parameter as azure-ai-ml writes it on the wire (``{"modelName": ...}`` values)."""
        return {
            k: v.to_azure_string() if isinstance(v, _Distribution) else _wire_number(v)
            for k, v in self.items().items()
        }

    def sample(
        self, rng: np.random.Generator, base: TrainingParameters | None = None
    ) -> TrainingParameters:
        """One random trial: ``base`` with each parameter of this entry drawn from ``rng``."""
        values = {
            k: v.sample(rng) if isinstance(v, _Distribution) else v for k, v in self.items().items()
        }
        return (base or TrainingParameters()).merged(values, trial=True)

    def grid(self, base: TrainingParameters | None = None) -> list[TrainingParameters]:
        """Every trial of a grid sweep over this entry (raises unless all are ``Choice``)."""
        keys = list(self.items())
        axes = [
            v.grid_values() if isinstance(v, _Distribution) else (v,) for v in self.items().values()
        ]
        start = base or TrainingParameters()
        return [
            start.merged(dict(zip(keys, combo, strict=True)), trial=True)
            for combo in itertools.product(*axes)
        ]


# --------------------------------------------------------------------------------------------
# Sweep and limits
# --------------------------------------------------------------------------------------------


class BanditPolicy(BaseModel):
    """Stop trials whose metric falls more than a slack behind the best trial.

    Give exactly one of ``slack_factor`` (a ratio) or ``slack_amount`` (an absolute gap).
    """

    model_config = _FROZEN

    type: Literal["bandit"] = "bandit"
    evaluation_interval: int = Field(default=1, ge=1)
    delay_evaluation: int = Field(default=0, ge=0)
    slack_factor: float | None = Field(default=None, gt=0)
    slack_amount: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_slack(self) -> BanditPolicy:
        if (self.slack_factor is None) == (self.slack_amount is None):
            raise ValueError(
                "BanditPolicy needs exactly one of slack_factor or slack_amount "
                f"(got slack_factor={self.slack_factor}, slack_amount={self.slack_amount})"
            )
        return self


class MedianStoppingPolicy(BaseModel):
    """Stop trials whose best metric is below the median of the running averages."""

    model_config = _FROZEN

    type: Literal["median_stopping"] = "median_stopping"
    evaluation_interval: int = Field(default=1, ge=1)
    delay_evaluation: int = Field(default=0, ge=0)


class TruncationSelectionPolicy(BaseModel):
    """Stop the worst ``truncation_percentage`` % of trials at each evaluation."""

    model_config = _FROZEN

    type: Literal["truncation_selection"] = "truncation_selection"
    truncation_percentage: int = Field(ge=1, le=99)
    evaluation_interval: int = Field(default=1, ge=1)
    delay_evaluation: int = Field(default=0, ge=0)


EarlyTermination = Annotated[
    BanditPolicy | MedianStoppingPolicy | TruncationSelectionPolicy, Field(discriminator="type")
]


class SweepSettings(BaseModel):
    """How trials are drawn from the search space, and which are stopped early.

    Bayesian sampling takes no early-termination policy and no conditional (multi-entry)
    space; grid sampling needs ``Choice`` distributions only (checked by
    :class:`TrainingRequest`). Policies may be given as dicts with a ``type`` key
    (``bandit``, ``median_stopping``, ``truncation_selection``).
    """

    model_config = _FROZEN

    sampling_algorithm: Literal["random", "grid", "bayesian"] = "random"
    early_termination: EarlyTermination | None = None

    @field_validator("sampling_algorithm", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("early_termination", mode="before")
    @classmethod
    def _policy_type(cls, value: object) -> object:
        if isinstance(value, Mapping) and isinstance(value.get("type"), str):
            return {**value, "type": _snake(value["type"])}
        return value

    @model_validator(mode="after")
    def _bayesian(self) -> SweepSettings:
        if self.sampling_algorithm == "bayesian" and self.early_termination is not None:
            raise ValueError(
                "bayesian sampling does not support early termination; remove "
                "early_termination or use sampling_algorithm='random'"
            )
        return self


#: Longest job timeout Azure AutoML accepts: 60 days.
MAX_TIMEOUT_MINUTES = 60 * 24 * 60


class Limits(BaseModel):
    """How many trials, how many at once, and for how long.

    ``max_concurrent_trials`` larger than ``max_trials`` is an error rather than silently
    capped: at most ``max_trials`` trials can ever run. ``timeout_minutes`` ``None`` means the
    service default (7 days). ``trial_timeout_minutes`` is honoured by the local backend; Azure
    AutoML image jobs have no per-trial timeout and the Azure backend rejects it.
    """

    model_config = _FROZEN

    max_trials: int = Field(default=1, ge=1, le=1000)
    max_concurrent_trials: int = Field(default=1, ge=1, le=100)
    timeout_minutes: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MINUTES)
    trial_timeout_minutes: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MINUTES)

    @model_validator(mode="after")
    def _consistent(self) -> Limits:
        if self.max_concurrent_trials > self.max_trials:
            raise ValueError(
                f"max_concurrent_trials {self.max_concurrent_trials} > max_trials "
                f"{self.max_trials}; set max_concurrent_trials <= {self.max_trials}"
            )
        if (
            self.timeout_minutes is not None
            and self.trial_timeout_minutes is not None
            and self.trial_timeout_minutes > self.timeout_minutes
        ):
            raise ValueError(
                f"trial_timeout_minutes {self.trial_timeout_minutes} > timeout_minutes "
                f"{self.timeout_minutes}; a trial cannot outlive its job"
            )
        return self


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------

_EXPERIMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,254}$")
_SAMPLING_DISTRIBUTIONS: dict[str, tuple[type[_Distribution], ...]] = {
    "grid": (Choice,),
    "bayesian": (Choice, Uniform, QUniform),
}


class TrainingRequest(BaseModel):
    """Everything a backend needs to start a training run; build it with :meth:`build`.

    Three modes, as in Azure AutoML: one trial (``max_trials == 1``, no search space);
    **AutoMode** (``max_trials > 1``, no search space, no sweep: the service picks models and
    parameters); and a **sweep** (a search space and :class:`SweepSettings`). ``models`` is a
    shorthand: one name fixes the model, several make a search space choosing among them.

    Attributes:
        training_data: A local folder, a data asset (``azureml:name:version``) or a URI.
        validation_data: Like ``training_data``; or give ``validation_size`` instead.
        validation_size: Fraction held out for validation (service default 0.2).
        compute: Compute cluster; required by Azure, ignored locally.
        models: Shorthand for the model(s) to train.
        search_space: Conditional search space entries.
        sweep: Sampling and early termination.
        limits: Trial counts and timeouts.
        training_parameters: Fixed parameters, applied to every trial.
        experiment: Experiment name.
    """

    model_config = _FROZEN

    training_data: str = Field(min_length=1)
    validation_data: str | None = Field(default=None, min_length=1)
    validation_size: float | None = Field(default=None, gt=0, lt=1)
    compute: str | None = Field(default=None, min_length=1)
    models: tuple[str, ...] | None = Field(default=None, min_length=1)
    search_space: tuple[SearchSpace, ...] = ()
    sweep: SweepSettings | None = None
    limits: Limits = Field(default_factory=Limits)
    training_parameters: TrainingParameters = Field(default_factory=TrainingParameters)
    experiment: str | None = None
    primary_metric: Literal["mean_average_precision"] = "mean_average_precision"
    target_column_name: Literal["label"] = "label"

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: object) -> object:
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, Iterable) and not isinstance(value, Mapping):
            names = [check_model_name(v) if isinstance(v, str) else v for v in value]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"models lists {', '.join(map(repr, duplicates))} twice")
            return tuple(names)
        return value

    @field_validator("search_space", mode="before")
    @classmethod
    def _one_entry(cls, value: object) -> object:
        return (value,) if isinstance(value, SearchSpace | Mapping) else value

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value: str | None) -> str | None:
        if value is not None and not _EXPERIMENT.match(value):
            raise ValueError(
                f"experiment name {value!r} is not valid (expected 1-255 letters, digits, "
                "'_' or '-', starting with a letter or digit)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainingRequest:
        problems = []
        if self.validation_data is not None and self.validation_size is not None:
            problems.append(
                "give validation_data or validation_size, not both "
                "(validation_size holds out part of training_data)"
            )
        if self.models is not None and self.search_space:
            problems.append(
                "give models or search_space, not both: set model_name in each search_space entry"
            )
        if self.models is not None and self.training_parameters.model_name is not None:
            problems.append(
                "give models or training_parameters.model_name, not both "
                f"(got {self.models} and {self.training_parameters.model_name!r})"
            )
        spaces = self.search_spaces
        if spaces and self.sweep is None:
            problems.append(
                "a search space needs sweep settings; add sweep={'sampling_algorithm': 'random'}"
            )
        if self.sweep is not None and not spaces:
            problems.append(
                "sweep settings without a search space sweep nothing; add search_space=... or "
                "models=[...], or drop sweep (max_trials > 1 without a sweep runs AutoMode)"
            )
        if self.sweep is not None and spaces:
            problems += self._sweep_problems(self.sweep, spaces)
        try:
            base = self.parameters
        except ValidationError as exc:
            problems.append(f"models {list(self.models or ())}: {_messages(exc)}")
            base = self.training_parameters
        fixed = base.model_dump(exclude_none=True)
        for i, space in enumerate(spaces):
            items = space.items()
            both = sorted(set(fixed) & set(items))
            if both:
                problems.append(
                    f"{', '.join(both)} set both in training_parameters and in search_space[{i}]; "
                    "keep one of them"
                )
                continue
            single = {
                k: v.values[0]
                for k, v in items.items()
                if isinstance(v, Choice) and len(v.values) == 1
            }
            combined = {**fixed, **items, **single}
            models = space.model_names() or ((base.model_name,) if base.model_name else ())
            found = _contradictions(combined, combined, models)
            if found:
                problems.append(
                    f"training_parameters with search_space[{i}]: {'; '.join(found)}; move them "
                    "into the search space entries they apply to"
                )
        if problems:
            raise ValueError("\n".join(problems))  # one line each in settings_error
        return self

    @staticmethod
    def _sweep_problems(sweep: SweepSettings, spaces: Sequence[SearchSpace]) -> list[str]:
        found = []
        algorithm = sweep.sampling_algorithm
        if algorithm == "bayesian" and len(spaces) > 1:
            found.append(
                f"bayesian sampling does not support a conditional search space ({len(spaces)} "
                "entries); use sampling_algorithm='random' or 'grid', or one entry"
            )
        allowed = _SAMPLING_DISTRIBUTIONS.get(algorithm)
        for i, space in enumerate(spaces):
            for name, dist in space.distributions().items():
                if allowed is not None and not isinstance(dist, allowed):
                    kinds = ", ".join(c.__name__ for c in allowed)
                    found.append(
                        f"{algorithm} sampling takes {kinds} only; search_space[{i}].{name} is "
                        f"{dist.to_azure_string()} (use sampling_algorithm='random')"
                    )
        return found

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        constant = ("primary_metric", "target_column_name")
        return [(k, v) for k, v in self if v not in (None, ()) and k not in constant]

    @property
    def search_spaces(self) -> tuple[SearchSpace, ...]:
        """The search space to run: ``search_space``, or one entry choosing among ``models``."""
        if self.models is not None and len(self.models) > 1:
            return (SearchSpace(model_name=Choice(self.models)),)
        return self.search_space

    @property
    def parameters(self) -> TrainingParameters:
        """The fixed parameters, with the model when ``models`` names exactly one."""
        if self.models is not None and len(self.models) == 1:
            return self.training_parameters.merged({"model_name": self.models[0]})
        return self.training_parameters

    @property
    def mode(self) -> Literal["single", "automode", "sweep"]:
        """``"sweep"``, ``"automode"`` (several trials, the service chooses) or ``"single"``."""
        if self.search_spaces:
            return "sweep"
        return "automode" if self.limits.max_trials > 1 else "single"

    def model_names(self) -> tuple[str, ...]:
        """Every model name the request can train, for :func:`validate_models`."""
        names = [self.parameters.model_name] if self.parameters.model_name else []
        for space in self.search_spaces:
            names += space.model_names()
        return tuple(dict.fromkeys(names))

    @classmethod
    def build(
        cls,
        training_data: str | os.PathLike[str],
        *,
        validation_data: str | os.PathLike[str] | None = None,
        validation_size: float | None = None,
        compute: str | None = None,
        models: str | Sequence[str] | None = None,
        search_space: SearchSpace
        | Mapping[str, Any]
        | Sequence[SearchSpace | Mapping[str, Any]]
        | None = None,
        sweep: SweepSettings | Mapping[str, Any] | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        training_parameters: TrainingParameters | Mapping[str, Any] | None = None,
        experiment: str | None = None,
    ) -> TrainingRequest:
        """Check and assemble a request; every setting may be a typed object or a dict.

        With several ``models`` and no ``sweep``, a grid sweep is used and, unless limits set
        ``max_trials``, one trial per model.

        Raises:
            InvalidSettingsError: Listing every invalid field, with what was expected.
        """
        names = (models,) if isinstance(models, str) else models
        several = names is not None and len(names) > 1 and not search_space
        if several and sweep is None:
            sweep = SweepSettings(sampling_algorithm="grid")
        if several and names is not None:
            if limits is None:
                limits = {"max_trials": len(names)}
            elif isinstance(limits, Mapping) and "max_trials" not in limits:
                limits = {**limits, "max_trials": len(names)}
        data: dict[str, Any] = {
            "training_data": os.fspath(training_data),
            "validation_data": None if validation_data is None else os.fspath(validation_data),
            "validation_size": validation_size,
            "compute": compute,
            "models": names,
            "search_space": () if search_space is None else search_space,
            "sweep": sweep,
            "experiment": experiment,
        }
        if limits is not None:
            data["limits"] = limits
        if training_parameters is not None:
            data["training_parameters"] = training_parameters
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise settings_error(exc, "training settings") from exc


# --------------------------------------------------------------------------------------------
# Deployment
# --------------------------------------------------------------------------------------------


class ProbeSettings(BaseModel):
    """A liveness or readiness probe; every duration in **seconds**."""

    model_config = _FROZEN

    initial_delay: int = Field(default=10, ge=0)
    period: int = Field(default=10, ge=1)
    timeout: int = Field(default=2, ge=1)
    failure_threshold: int = Field(default=30, ge=1)
    success_threshold: int = Field(default=1, ge=1)


#: Liveness: 10 minutes before the first probe (an MLflow no-code container installs its
#: environment and loads the model first; the 10 s Azure default kills it: "Liveness probe
#: failed ... 502"), then 30 failures x 10 s before a restart.
DEFAULT_LIVENESS = ProbeSettings(
    initial_delay=600, period=10, timeout=10, failure_threshold=30, success_threshold=1
)
#: Readiness: probed early so the deployment takes traffic as soon as the model is loaded;
#: a 10 s timeout tolerates a worker busy with a slow detection request.
DEFAULT_READINESS = ProbeSettings(
    initial_delay=10, period=10, timeout=10, failure_threshold=30, success_threshold=1
)


class DeploymentSettings(BaseModel):
    """How a model is served on an online endpoint.

    Defaults suit detection models, which are slow: a 90 s request timeout (the Azure maximum
    is 180 s; the Azure default of 5 s yields 408 "upstream request timeout"), one request at
    a time per instance, and a generous liveness probe (:data:`DEFAULT_LIVENESS`).
    """

    model_config = _FROZEN

    instance_type: str = Field(default="Standard_DS3_v2", min_length=1)
    instance_count: int = Field(default=1, ge=1)
    request_timeout_ms: int = Field(default=90_000, ge=1, le=180_000)
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1)
    liveness_probe: ProbeSettings = DEFAULT_LIVENESS
    readiness_probe: ProbeSettings = DEFAULT_READINESS
    environment_variables: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _liveness(self) -> DeploymentSettings:
        if self.liveness_probe.success_threshold != 1:
            raise ValueError(
                "liveness_probe.success_threshold must be 1 "
                f"(got {self.liveness_probe.success_threshold}); only readiness can need more"
            )
        return self

    @classmethod
    def build(
        cls, settings: DeploymentSettings | Mapping[str, Any] | None = None, **overrides: Any
    ) -> DeploymentSettings:
        """Settings from an object or a dict, with keyword overrides.

        Raises:
            InvalidSettingsError: Listing every invalid field.
        """
        base = (
            settings.model_dump()
            if isinstance(settings, DeploymentSettings)
            else dict(settings or {})
        )
        try:
            return cls.model_validate({**base, **overrides})
        except ValidationError as exc:
            raise settings_error(exc, "deployment settings") from exc


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def settings_error(exc: ValidationError, what: str) -> InvalidSettingsError:
    """Turn a pydantic ``ValidationError`` into one readable :class:`InvalidSettingsError`.

    Each problem is one line: where (``limits.max_trials``), what is wrong, what was given.
    """
    lines = []
    for error in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        where = where.lstrip(".")
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        kind = error["type"]
        if kind == "extra_forbidden":
            name = str(error["loc"][-1])
            close = difflib.get_close_matches(name, _setting_names(), n=1, cutoff=0.6)
            message = "unknown setting" + (f"; did you mean {close[0]!r}?" if close else "")
        elif kind not in ("value_error", "assertion_error", "missing"):
            got = repr(error.get("input"))
            message += f" (got {got if len(got) <= 80 else got[:77] + '...'})"
        for part in message.split("\n"):
            line = f"  {where}: {part}" if where else f"  {part}"
            if line not in lines:
                lines.append(line)
    count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
    return InvalidSettingsError(f"invalid {what} ({count}):\n" + "\n".join(lines))


def _setting_names() -> list[str]:
    models: tuple[type[BaseModel], ...] = (
        TrainingRequest,
        TrainingParameters,
        Limits,
        SweepSettings,
        BanditPolicy,
        TruncationSelectionPolicy,
        DeploymentSettings,
        ProbeSettings,
    )
    return sorted({name for model in models for name in model.model_fields})
