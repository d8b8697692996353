"""The plain records a backend returns: what the service said, frozen.

``DatasetAsset``, ``RunInfo``, ``Trial``, ``ModelInfo``, ``EndpointInfo`` and ``EndpointKeys``
are frozen pydantic models; ``RunStatus`` is the status every backend maps its own onto. The
live handles that wrap them are in :mod:`detectkit.resources`, which re-exports these.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from detectkit.errors import InvalidInputError

__all__ = [
    "DatasetAsset",
    "EndpointInfo",
    "EndpointKeys",
    "ModelInfo",
    "RunInfo",
    "RunStatus",
    "ScoreFailure",
    "ScoreResult",
    "Trial",
    "check_name",
]

#: Azure ML's rule for asset names and versions: a letter or digit, then letters, digits,
#: ``-``, ``_`` and ``.`` (so never ``..``, a path separator or an absolute path).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}")


def check_name(value: object, field: str) -> str:
    """``value`` if it is a valid asset name or version (Azure's rule), else a typed error.

    The same rule on both backends, so a name that works locally works in a workspace, and a
    name or version can never lead outside the local project root.

    >>> check_name("cards-v2", "name")
    'cards-v2'
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        got = value if isinstance(value, str) else type(value).__name__
        raise InvalidInputError(
            f"{field}: expected 1-255 characters, starting with a letter or digit, then "
            f"letters, digits, '-', '_' or '.' (Azure's rule for asset names; no '..'), "
            f"got {got!r}"
        )
    return value


class RunStatus(str, Enum):
    """Status of a training run. Unknown service values map to ``UNKNOWN`` (the raw value is
    kept in ``RunInfo.status_raw``)."""

    NOT_STARTED = "NotStarted"
    SCHEDULED = "Scheduled"
    STARTING = "Starting"
    PROVISIONING = "Provisioning"
    PREPARING = "Preparing"
    QUEUED = "Queued"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, value: str | None) -> RunStatus:
        """Map a service status string (any case, ``FINISHED``/``KILLED`` from MLflow too)."""
        if value is None:
            return cls.UNKNOWN
        key = value.replace("_", "").replace(" ", "").lower()
        aliases = {"finished": cls.COMPLETED, "killed": cls.CANCELED, "cancelled": cls.CANCELED}
        if key in aliases:
            return aliases[key]
        for member in cls:
            if member.value.lower() == key:
                return member
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """True once the run will not change any more."""
        return self in (
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.CANCELED,
            RunStatus.NOT_RESPONDING,
            RunStatus.PAUSED,
        )


_RECORD = ConfigDict(frozen=True, extra="ignore")


class DatasetAsset(BaseModel):
    """A registered data asset (an MLTable folder with JSONL annotations and images)."""

    model_config = _RECORD

    name: str
    version: str
    uri: str
    description: str | None = None
    images: int | None = None
    boxes: int | None = None

    def __repr__(self) -> str:
        return f"DatasetAsset(name={self.name!r}, version={self.version!r}, uri={self.uri!r})"


class RunInfo(BaseModel):
    """What a backend knows of a training run."""

    model_config = _RECORD

    name: str
    status: RunStatus = RunStatus.UNKNOWN
    status_raw: str | None = None
    display_name: str | None = None
    description: str | None = None
    experiment: str | None = None
    studio_url: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Trial(BaseModel):
    """One child run of a sweep, with its hyperparameters and metrics."""

    model_config = _RECORD

    name: str
    status: RunStatus = RunStatus.UNKNOWN
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    is_best: bool = False

    def __repr__(self) -> str:
        metric = self.metrics.get("mean_average_precision")
        shown = f", mean_average_precision={metric:.4f}" if metric is not None else ""
        best = ", best" if self.is_best else ""
        return f"Trial(name={self.name!r}, status={self.status.value}{shown}{best})"


class ModelInfo(BaseModel):
    """A registered model version."""

    model_config = _RECORD

    name: str
    version: str
    uri: str
    type: str = "mlflow_model"
    description: str | None = None
    run_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class EndpointKeys(BaseModel):
    """Endpoint keys; never shown in a repr, a log line or an error message."""

    model_config = ConfigDict(frozen=True)

    primary: SecretStr
    secondary: SecretStr | None = None


class EndpointInfo(BaseModel):
    """What a backend knows of an online endpoint."""

    model_config = _RECORD

    name: str
    scoring_uri: str | None = None
    traffic: dict[str, int] = Field(default_factory=dict)
    state: str = "Unknown"
    auth_mode: str = "key"
    deployments: tuple[str, ...] = ()
    model: str | None = None
    error: str | None = None  # why it is not serving (locally: the end of the server log)


class ScoreFailure(BaseModel):
    """An image that batch scoring could not score: its path and why (no line was written for
    it, so ``resume=True`` tries it again)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str
    reason: str


class ScoreResult(BaseModel):
    """What ``project.score`` did.

    Attributes:
        out: The JSON-lines file written (``{"filename", "boxes"}`` per image).
        scored: Images scored and written by this call.
        skipped: Images left out because ``out`` already held them (``resume=True``).
        failed: Images that could not be scored, with the reason (not written).
        seconds: Wall time of the call, worker start-up included.
        images_per_second: ``scored / seconds``.
        processes: Worker processes used.
        runtime: The runtime the workers used (``"torch"``, ``"onnx"``, or ``"auto"`` when
            the model loader did not say).
        worker_rss_mb: Each worker's resident memory (MiB) when it scored its last batch.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    out: Path
    scored: int
    skipped: int
    failed: tuple[ScoreFailure, ...] = ()
    seconds: float
    images_per_second: float
    processes: int
    runtime: str
    worker_rss_mb: tuple[float, ...] = ()

    def __repr__(self) -> str:
        return (
            f"ScoreResult(out={str(self.out)!r}, scored={self.scored}, skipped={self.skipped}, "
            f"failed={len(self.failed)}, images_per_second={self.images_per_second:.2f})"
        )
