"""The search space of a sweep: fixed values and distributions per training parameter.

Each value is checked against the parameter's type and range before anything is submitted;
:class:`SearchSpace` is re-exported by :mod:`detectkit.settings`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, get_args

from pydantic import (
    BaseModel,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from detectkit.settings.base import FROZEN, messages
from detectkit.settings.distributions import (
    DISTRIBUTION_ADAPTER,
    DISTRIBUTION_TEXT,
    DISTRIBUTION_TYPES,
    BaseDistribution,
    Choice,
    Distribution,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    Scalar,
    parse_distribution,
    wire_number,
)
from detectkit.settings.parameters import (
    TrainingParameters,
    contradictions,
)

if TYPE_CHECKING:
    import numpy as np


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
        return messages(exc)
    return None


def _check_value(name: str, value: object) -> object:
    """``value`` validated and normalised as TrainingParameters would do for ``name``."""
    problem = _value_problem(name, value)
    if problem is not None:
        raise ValueError(f"{value!r} is not a valid {name} ({problem})")
    return getattr(TrainingParameters.model_validate({name: value}), name)


def _check_space_value(name: str, value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, BaseDistribution):
        return _normalised(name, value)  # type: ignore[arg-type]
    allowed: tuple[type[BaseDistribution], ...]
    if name in _FLOAT_FIELDS:
        allowed = tuple(DISTRIBUTION_TYPES.values())
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
    match = DISTRIBUTION_TEXT.match(value) if isinstance(value, str) else None
    if match is not None and match.group(1).lower() in DISTRIBUTION_TYPES:
        return parse_distribution(match.group(0))
    if isinstance(value, Mapping):
        try:
            return DISTRIBUTION_ADAPTER.validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{dict(value)!r} is not a distribution: {messages(exc)}") from None
    if value is None or isinstance(value, str | int | float | bool | BaseDistribution):
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

    model_config = FROZEN

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
        problems = contradictions(fixed, items, self.model_names())
        if problems:
            raise ValueError("; ".join(problems) + "; move them to the entry they apply to")
        return self

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return list(self.items().items())

    def items(self) -> dict[str, Scalar | BaseDistribution]:
        """The parameters this entry sets (fixed values and distributions)."""
        return {k: v for k, v in self if v is not None}

    def distributions(self) -> dict[str, BaseDistribution]:
        """The swept parameters."""
        return {k: v for k, v in self.items().items() if isinstance(v, BaseDistribution)}

    def model_names(self) -> tuple[str, ...]:
        """The model names this entry can train (empty when it does not set ``model_name``)."""
        value = self.model_name
        if isinstance(value, Choice):
            return tuple(str(v) for v in value.values)
        return () if value is None else (str(value),)

    def to_azure_strings(self) -> dict[str, str]:
        """Each parameter as azure-ai-ml writes it on the wire (``{"modelName": ...}`` values)."""
        return {
            k: v.to_azure_string() if isinstance(v, BaseDistribution) else wire_number(v)
            for k, v in self.items().items()
        }

    def sample(
        self, rng: np.random.Generator, base: TrainingParameters | None = None
    ) -> TrainingParameters:
        """One random trial: ``base`` with each parameter of this entry drawn from ``rng``."""
        values = {
            k: v.sample(rng) if isinstance(v, BaseDistribution) else v
            for k, v in self.items().items()
        }
        return (base or TrainingParameters()).merged(values, trial=True)

    def grid(self, base: TrainingParameters | None = None) -> list[TrainingParameters]:
        """Every trial of a grid sweep over this entry (raises unless all are ``Choice``)."""
        keys = list(self.items())
        axes = [
            v.grid_values() if isinstance(v, BaseDistribution) else (v,)
            for v in self.items().values()
        ]
        start = base or TrainingParameters()
        return [
            start.merged(dict(zip(keys, combo, strict=True)), trial=True)
            for combo in itertools.product(*axes)
        ]
