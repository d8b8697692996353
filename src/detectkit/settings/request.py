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

Nothing here imports azure-ai-ml: ``detectkit.backends.azure.jobs`` turns these into
azure-ai-ml entities, the local backend samples the distributions itself.

This module holds the search space, the sweep settings and limits and the request that
combines them; the shared model config and the translation of validation errors
(:mod:`detectkit.settings.base`), the training parameters and model names
(:mod:`detectkit.settings.parameters`), the distributions (:mod:`detectkit.settings.distributions`)
and the deployment settings (:mod:`detectkit.settings.deployment`) live in their own modules and are
all re-exported here.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from detectkit.settings.base import FROZEN, messages, settings_error
from detectkit.settings.deployment import DEFAULT_LIVENESS as DEFAULT_LIVENESS
from detectkit.settings.deployment import DEFAULT_READINESS as DEFAULT_READINESS
from detectkit.settings.deployment import DeploymentSettings, ProbeSettings
from detectkit.settings.distributions import (
    DISTRIBUTION_ADAPTER,
    DISTRIBUTION_TEXT,
    DISTRIBUTION_TYPES,
    BaseDistribution,
    Choice,
    Distribution,
    LogNormal,
    LogUniform,
    Normal,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    Scalar,
    Uniform,
    parse_distribution,
    wire_number,
)
from detectkit.settings.distributions import Number as Number
from detectkit.settings.parameters import (
    AZURE_MODELS,
    KNOWN_MODELS,
    MMDETECTION_PREFIX,
    TrainingParameters,
    check_model_name,
    contradictions,
    snake,
    validate_models,
)

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


# --------------------------------------------------------------------------------------------
# Sweep and limits
# --------------------------------------------------------------------------------------------


class BanditPolicy(BaseModel):
    """Stop trials whose metric falls more than a slack behind the best trial.

    Give exactly one of ``slack_factor`` (a ratio) or ``slack_amount`` (an absolute gap).
    """

    model_config = FROZEN

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

    model_config = FROZEN

    type: Literal["median_stopping"] = "median_stopping"
    evaluation_interval: int = Field(default=1, ge=1)
    delay_evaluation: int = Field(default=0, ge=0)


class TruncationSelectionPolicy(BaseModel):
    """Stop the worst ``truncation_percentage`` % of trials at each evaluation."""

    model_config = FROZEN

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

    model_config = FROZEN

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
            return {**value, "type": snake(value["type"])}
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

    model_config = FROZEN

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
_SAMPLING_DISTRIBUTIONS: dict[str, tuple[type[BaseDistribution], ...]] = {
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

    model_config = FROZEN

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
            problems.append(f"models {list(self.models or ())}: {messages(exc)}")
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
            found = contradictions(combined, combined, models)
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
            raise settings_error(exc, "training settings", _TRAINING_MODELS) from exc


#: Every model a training request holds: where an unknown setting's "did you mean" looks.
_TRAINING_MODELS: tuple[type[BaseModel], ...] = (
    TrainingRequest,
    TrainingParameters,
    Limits,
    SweepSettings,
    BanditPolicy,
    TruncationSelectionPolicy,
)
