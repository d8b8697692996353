"""Sweep settings and limits: the sampling, the early-termination policy and how long and
how many trials a training job may run.

The rules mirror Azure AutoML for images' ``set_sweep`` and ``set_limits``; all names are
re-exported by :mod:`detectkit.settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from detectkit.settings.base import FROZEN
from detectkit.settings.parameters import (
    snake,
)

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
    service default (7 days). Only the fields a caller sets are sent to Azure (as
    ``load_job`` does); the service defaults for the others are one trial, one at a time,
    the same numbers these fields default to, which the local backend reads. ``trial_timeout_minutes`` is honoured by the local backend; Azure
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
