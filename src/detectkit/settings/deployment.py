"""Deployment settings: how a model is served on an online endpoint (Azure or local).

:class:`DeploymentSettings` (instance type and count, request timeout, concurrency,
environment variables) and its :class:`ProbeSettings` for liveness and readiness, with
defaults that suit slow detection models. Re-exported by :mod:`detectkit.settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from detectkit.settings.base import FROZEN, settings_error

__all__ = ["DEFAULT_LIVENESS", "DEFAULT_READINESS", "DeploymentSettings", "ProbeSettings"]


class ProbeSettings(BaseModel):
    """A liveness or readiness probe; every duration in **seconds**."""

    model_config = FROZEN

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

    model_config = FROZEN

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
            raise settings_error(
                exc, "deployment settings", (DeploymentSettings, ProbeSettings)
            ) from exc
