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

This module holds the request that combines the search space
(:mod:`detectkit.settings.search_space`) with the sweep settings and limits
(:mod:`detectkit.settings.policies`); the shared model config and the translation of validation errors
(:mod:`detectkit.settings.base`), the training parameters and model names
(:mod:`detectkit.settings.parameters`), the distributions (:mod:`detectkit.settings.distributions`)
and the deployment settings (:mod:`detectkit.settings.deployment`) live in their own modules and are
all re-exported here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detectkit.settings.base import FROZEN, messages, settings_error
from detectkit.settings.deployment import DEFAULT_LIVENESS as DEFAULT_LIVENESS
from detectkit.settings.deployment import DEFAULT_READINESS as DEFAULT_READINESS
from detectkit.settings.deployment import DeploymentSettings, ProbeSettings
from detectkit.settings.distributions import (
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
    Uniform,
    parse_distribution,
)
from detectkit.settings.distributions import Number as Number
from detectkit.settings.parameters import (
    AZURE_MODELS,
    KNOWN_MODELS,
    MMDETECTION_PREFIX,
    TrainingParameters,
    check_model_name,
    contradictions,
    validate_models,
)
from detectkit.settings.policies import MAX_TIMEOUT_MINUTES as MAX_TIMEOUT_MINUTES
from detectkit.settings.policies import (
    BanditPolicy,
    Limits,
    MedianStoppingPolicy,
    SweepSettings,
    TruncationSelectionPolicy,
)
from detectkit.settings.policies import EarlyTermination as EarlyTermination
from detectkit.settings.search_space import SearchSpace
from detectkit.settings.search_space import SpaceValue as SpaceValue

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
    "RunMetadata",
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
        compute: Compute cluster (Azure; ignored locally). Or, on Azure, serverless compute:
            leave it None and give ``instance_type``.
        instance_type: Serverless compute's VM size (``Standard_NC6s_v3`` ...), Azure only.
        instance_count: Serverless compute's node count (service default 1), Azure only.
        job_tier: Serverless compute's queue tier (``spot``, ``basic``, ``standard``,
            ``premium``), Azure only.
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
    instance_type: str | None = Field(default=None, min_length=1)
    instance_count: int | None = Field(default=None, ge=1)
    job_tier: Literal["spot", "basic", "standard", "premium"] | None = None
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

    @field_validator("job_tier", mode="before")
    @classmethod
    def _tier(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

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
        if self.compute is not None and self.instance_type is not None:
            problems.append(
                f"give compute (a cluster, got {self.compute!r}) or instance_type (serverless "
                f"compute, got {self.instance_type!r}), not both"
            )
        if self.instance_type is None and (
            self.instance_count is not None or self.job_tier is not None
        ):
            problems.append(
                "instance_count and job_tier set serverless compute: give instance_type too"
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
        instance_type: str | None = None,
        instance_count: int | None = None,
        job_tier: str | None = None,
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
            "instance_type": instance_type,
            "instance_count": instance_count,
            "job_tier": job_tier,
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


#: AutoML's log levels (``log_verbosity``), lower-case as the job YAML writes them.
LogVerbosity = Literal["not_set", "debug", "info", "warning", "error", "critical"]


class RunMetadata(BaseModel):
    """A training run's own fields, beside its settings: what an Azure job YAML's ``name``,
    ``display_name``, ``description``, ``tags`` and ``log_verbosity`` say.

    On Azure they become the job's; locally ``name`` (or ``display_name``) becomes the MLflow
    run name, ``description`` its note and ``tags`` its tags, and ``log_verbosity`` has no
    meaning. ``log_verbosity`` is read in any case (``Debug`` or ``debug``).
    """

    model_config = FROZEN

    name: str | None = Field(None, min_length=1, max_length=255)
    display_name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    log_verbosity: LogVerbosity | None = None

    @field_validator("name")
    @classmethod
    def _job_name(cls, value: str | None) -> str | None:
        if value is not None and not _JOB_NAME.match(value):
            raise ValueError(
                f"a job name starts with a letter or digit and holds only letters, digits, "
                f"'-' and '_' (got {value!r}); put free text in display_name"
            )
        return value

    @field_validator("log_verbosity", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def build(cls, **fields: Any) -> RunMetadata:
        """Check the fields; mistakes raise :class:`~detectkit.InvalidSettingsError`."""
        try:
            return cls.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            raise settings_error(exc, "run settings", (cls,)) from exc


_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,254}$")
