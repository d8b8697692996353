"""Batch endpoints: score a folder of images on a compute cluster, read the results back.

:meth:`Project.deploy_batch <detectkit.Project.deploy_batch>` returns a :class:`BatchEndpoint`;
:meth:`BatchEndpoint.score` starts a :class:`BatchScoringJob`, whose :meth:`~BatchScoringJob.
predictions` downloads the job's output files and reads them with detectkit's batch-output
reader, matched back to the input images.

The output files hold one line per image. Two layouts are read:

* JSON lines, ``{"filename": "<path on the compute>", "boxes": [...]}`` (AutoML's batch
  scoring and detectkit's own scorer write these, under the deployment's
  ``output_file_name``, ``predictions.csv`` by default);
* CSV rows whose first field is the file name and whose last field is the JSON of the boxes
  (``"<file>","[{""box"": ...}]"``), as an MLflow model's generated scoring script appends
  them.

This module is domain code: it calls the :class:`~detectkit.backends.base.Backend` protocol
only and imports no backend.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detectkit.errors import (
    InvalidInputError,
    InvalidResponseError,
    InvalidSettingsError,
    NotFoundError,
    RunFailedError,
)
from detectkit.images import IMAGE_EXTENSIONS
from detectkit.records import RunStatus, check_name
from detectkit.resources import wait_for
from detectkit.scoring import image_sizes, read_predictions

if TYPE_CHECKING:
    from detectkit.backends.base import Backend
    from detectkit.prediction import Prediction
    from detectkit.records import DatasetAsset

__all__ = [
    "BatchDeploymentSettings",
    "BatchEndpoint",
    "BatchEndpointInfo",
    "BatchEndpoints",
    "BatchInput",
    "BatchJobInfo",
    "BatchScoringJob",
    "batch_output_lines",
]

_RECORD = ConfigDict(frozen=True, extra="forbid")


class BatchDeploymentSettings(BaseModel):
    """How a batch deployment runs (azure-ai-ml ``ModelBatchDeploymentSettings``).

    Attributes:
        compute: The compute cluster that runs the jobs (``cpu-cluster``).
        instance_count: Nodes per job.
        mini_batch_size: Images each scoring call receives.
        max_concurrency_per_instance: Scoring processes per node.
        output_file_name: The file the predictions are appended to.
        output_action: ``append_row`` (write the predictions) or ``summary_only``.
        error_threshold: Failed images tolerated before the job fails (-1: any number).
        max_retries: Retries of a failed mini-batch.
        retry_timeout: Seconds a mini-batch may take before it is retried.
        logging_level: ``debug``, ``info`` or ``warning``.
    """

    model_config = _RECORD

    compute: str = Field(min_length=1)
    instance_count: int = Field(1, ge=1)
    mini_batch_size: int = Field(10, ge=1)
    max_concurrency_per_instance: int = Field(1, ge=1)
    output_file_name: str = Field("predictions.csv", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    output_action: Literal["append_row", "summary_only"] = "append_row"
    error_threshold: int = Field(-1, ge=-1)
    max_retries: int = Field(3, ge=0)
    retry_timeout: int = Field(300, ge=1)
    logging_level: Literal["debug", "info", "warning"] = "info"

    @classmethod
    def build(
        cls, settings: BatchDeploymentSettings | Mapping[str, Any] | None = None, **updates: Any
    ) -> BatchDeploymentSettings:
        """``settings`` (an instance or a mapping) with ``updates`` on top, checked.

        Raises:
            InvalidSettingsError: A value out of range or an unknown key, naming the field.
        """
        base = settings.model_dump() if isinstance(settings, BatchDeploymentSettings) else {}
        if isinstance(settings, Mapping):
            base = dict(settings)
        try:
            return cls(**{**base, **updates})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise InvalidSettingsError(
                f"batch deployment settings {field}: {first['msg']}, got {first.get('input')!r}"
            ) from None


class BatchEndpointInfo(BaseModel):
    """What a backend knows of a batch endpoint."""

    model_config = _RECORD

    name: str
    scoring_uri: str | None = None
    default_deployment: str | None = None
    state: str = "Unknown"
    deployments: tuple[str, ...] = ()


class BatchInput(BaseModel):
    """What a job scores: a data asset or datastore URI, or local files to upload first."""

    model_config = _RECORD

    uri: str | None = None
    folder: Path | None = None
    files: tuple[Path, ...] = ()


class BatchJobInfo(BaseModel):
    """What a backend knows of a batch scoring job."""

    model_config = _RECORD

    name: str
    status: RunStatus = RunStatus.UNKNOWN
    status_raw: str | None = None
    endpoint: str | None = None
    deployment: str | None = None
    input_uri: str | None = None
    output_uri: str | None = None
    output_file_name: str = "predictions.csv"
    error: str | None = None
    studio_url: str | None = None
    created_at: datetime | None = None


class BatchEndpoint:
    """A live handle on a batch endpoint."""

    def __init__(self, backend: Backend, info: BatchEndpointInfo) -> None:
        self._backend = backend
        self._info = info

    @property
    def info(self) -> BatchEndpointInfo:
        """The record this handle holds."""
        return self._info

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def default_deployment(self) -> str | None:
        """The deployment a job runs on when none is named."""
        return self._info.default_deployment

    @property
    def state(self) -> str:
        return self._info.state

    def __repr__(self) -> str:
        return (
            f"BatchEndpoint(name={self.name!r}, state={self.state!r}, "
            f"default_deployment={self.default_deployment!r})"
        )

    def refresh(self) -> BatchEndpoint:
        """Fetch the current state; returns ``self``."""
        self._info = self._backend.get_batch_endpoint(self.name)
        return self

    def score(
        self,
        data: DatasetAsset | str | os.PathLike[str],
        *,
        deployment: str | None = None,
        job_name: str | None = None,
    ) -> BatchScoringJob:
        """Start a batch scoring job over ``data``; returns at once (call ``wait()``).

        Args:
            data: A data asset (or ``azureml:name:version``), a datastore folder URI
                (``azureml://datastores/<store>/paths/<folder>/``), a public ``https://``
                folder, or a local folder of images (uploaded first as a ``uri_folder``
                data asset).
            deployment: A deployment other than the endpoint's default.
            job_name: The job's name (default ``<endpoint>-<12 hex digits>``).

        Raises:
            InvalidInputError: ``data`` is none of those, or a local folder without images.
        """
        source = batch_input(data)
        if job_name is not None:
            check_name(job_name, "job_name")
        info = self._backend.submit_batch_job(
            self.name, source, deployment=deployment, job_name=job_name
        )
        return BatchScoringJob(self._backend, info, images=source.files)


class BatchScoringJob:
    """A live handle on a batch scoring job.

    ``images`` are the local files a job was started on (when it uploaded a folder); output
    lines are matched back to them by file name.
    """

    def __init__(
        self, backend: Backend, info: BatchJobInfo, *, images: Sequence[Path] = ()
    ) -> None:
        self._backend = backend
        self._info = info
        self._images = tuple(images)

    @property
    def info(self) -> BatchJobInfo:
        return self._info

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def status(self) -> RunStatus:
        return self._info.status

    @property
    def error(self) -> str | None:
        """The service's own error message once the job failed."""
        return self._info.error

    @property
    def images(self) -> tuple[Path, ...]:
        return self._images

    def __repr__(self) -> str:
        return f"BatchScoringJob(name={self.name!r}, status={self.status.value})"

    def refresh(self) -> BatchScoringJob:
        """Fetch the current state; returns ``self``."""
        self._info = self._backend.get_batch_job(self.name)
        return self

    def wait(
        self, timeout: float | None = None, *, progress: bool = True, poll_interval: float = 15.0
    ) -> BatchScoringJob:
        """Block until the job ends.

        Raises:
            RunFailedError: The job failed or was canceled; the message carries its error.
            OperationTimeoutError: ``timeout`` seconds passed first (the job keeps going).
        """
        wait_for(self, "batch job", timeout=timeout, progress=progress, poll_interval=poll_interval)
        return self

    def cancel(self) -> None:
        """Ask the backend to cancel the job."""
        self._backend.cancel_run(self.name)
        self.refresh()

    def download(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Download the job's output files into ``directory``; returns their paths."""
        return self._backend.download_batch_output(self._info, Path(directory))

    def predictions(self, *, classes: Sequence[str] | None = None) -> list[Prediction]:
        """The job's predictions, one per scored image.

        Output lines are matched to the uploaded images by file name (``Prediction.image``
        is then the local path, with its size); lines matching none keep the file name the
        compute wrote.

        Raises:
            RunFailedError: The job has not completed (``wait()`` first).
            NotFoundError: The job wrote no output file.
            InvalidResponseError: A line follows neither output layout (module docs).
        """
        if self.status is not RunStatus.COMPLETED:
            self.refresh()
        if self.status is not RunStatus.COMPLETED:
            detail = f": {self._info.error}" if self._info.error else ""
            raise RunFailedError(
                f"batch job {self.name!r} is {self.status.value}, not Completed{detail}; "
                "call job.wait() first"
            )
        with tempfile.TemporaryDirectory(prefix="detectkit-batch-") as tmp:
            files = self.download(tmp)
            wanted = [f for f in files if f.name == self._info.output_file_name] or files
            if not wanted:
                raise NotFoundError(
                    f"batch job {self.name!r} wrote no output file under "
                    f"{self._info.output_uri}; check the deployment's output_action is "
                    "append_row"
                )
            lines: list[str] = []
            for path in sorted(wanted):
                lines.extend(batch_output_lines(path.read_text(encoding="utf-8-sig"), path.name))
        if not lines:
            return []
        images = [os.fspath(p) for p in self._images] or None
        sizes = list(image_sizes(list(self._images))) if self._images else None
        return read_predictions(
            "\n".join(lines).encode("utf-8"), images=images, sizes=sizes, classes=classes
        )


class BatchEndpoints:
    """``project.batch_endpoints``: batch endpoints."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get(self, name: str) -> BatchEndpoint:
        """A handle on the batch endpoint called ``name``."""
        return BatchEndpoint(self._backend, self._backend.get_batch_endpoint(name))

    def list(self) -> list[BatchEndpoint]:
        """Every batch endpoint."""
        return [BatchEndpoint(self._backend, e) for e in self._backend.list_batch_endpoints()]

    def job(self, name: str) -> BatchScoringJob:
        """A handle on the batch scoring job called ``name``."""
        return BatchScoringJob(self._backend, self._backend.get_batch_job(name))


def batch_input(data: object) -> BatchInput:
    """The :class:`BatchInput` for what :meth:`BatchEndpoint.score` was given."""
    uri = getattr(data, "uri", None)
    if isinstance(uri, str) and uri:  # a DatasetAsset
        return BatchInput(uri=uri)
    if isinstance(data, str) and data.startswith(("azureml:", "https://", "http://")):
        return BatchInput(uri=data)
    if isinstance(data, str | os.PathLike):
        folder = Path(data)
        if not folder.is_dir():
            raise InvalidInputError(
                f"data: {os.fspath(data)!r} is not a local folder, a data asset "
                "(azureml:name:version) or a datastore folder URI "
                "(azureml://datastores/<store>/paths/<folder>/)"
            )
        files = tuple(
            sorted(
                p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
        )
        if not files:
            raise InvalidInputError(
                f"data: folder {folder} holds no images (expected files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)})"
            )
        return BatchInput(folder=folder, files=files)
    raise InvalidInputError(
        "data: expected a DatasetAsset, a data asset or datastore URI, or a local folder, "
        f"got {type(data).__name__}"
    )


def batch_output_lines(text: str, source: str = "batch output") -> list[str]:
    """The JSON lines ``{"filename", "boxes"}`` of a batch output file in either layout
    (module docs); blank lines are dropped.

    Raises:
        InvalidResponseError: A line is neither a JSON object nor a CSV row ending in JSON.
    """
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            out.append(stripped)
            continue
        row = next(csv.reader([stripped]))
        boxes: object = None
        if len(row) >= 2:
            try:
                boxes = json.loads(row[-1])
            except ValueError:
                boxes = None
        if isinstance(boxes, dict):
            boxes = boxes.get("boxes")
        if not isinstance(boxes, list):
            raise InvalidResponseError(
                f"{source} line {lineno}: expected a JSON object "
                '{"filename": ..., "boxes": [...]} or a CSV row "<file>,<boxes JSON>", '
                f"got {stripped[:80]!r}"
            )
        out.append(json.dumps({"filename": row[0], "boxes": boxes}))
    return out
