"""Typed resources returned by a :class:`~detectkit.Project`: records and live handles.

Records (``DatasetAsset``, ``RunInfo``, ``Trial``, ``ModelInfo``, ``EndpointInfo``) are frozen
pydantic models holding what the service said. Handles (:class:`DetectionRun`,
:class:`RegisteredModel`, :class:`Endpoint`) wrap a record and the backend that made it, show a
short stable repr, and offer ``refresh()``, ``wait()``, ``delete()`` and the like. The same
handles come back from the Azure and the local backend.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from detectkit.errors import (
    ConflictError,
    InvalidInputError,
    OperationTimeoutError,
    RunFailedError,
)
from detectkit.scoring.chunks import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_REQUEST_BYTES,
    ErrorMode,
    PredictionBatch,
    predict_many,
)
from detectkit.scoring.request import image_list

if TYPE_CHECKING:
    from detectkit.backends.base import Backend
    from detectkit.images import ImageInput
    from detectkit.prediction import Prediction

__all__ = [
    "DatasetAsset",
    "DetectionRun",
    "Endpoint",
    "EndpointInfo",
    "EndpointKeys",
    "ModelInfo",
    "RegisteredModel",
    "RunInfo",
    "RunStatus",
    "Trial",
]


from detectkit.records import (
    DatasetAsset,
    EndpointInfo,
    EndpointKeys,
    ModelInfo,
    RunInfo,
    RunStatus,
    Trial,
)


# --------------------------------------------------------------------------- handles
class DetectionRun:
    """A live handle on a training run (an AutoML sweep on Azure, a local sweep locally)."""

    def __init__(self, backend: Backend, info: RunInfo) -> None:
        self._backend = backend
        self._info = info

    @property
    def info(self) -> RunInfo:
        """The last known record of the run."""
        return self._info

    @property
    def name(self) -> str:
        """Run (job) name."""
        return self._info.name

    @property
    def status(self) -> RunStatus:
        """Status at the last refresh."""
        return self._info.status

    @property
    def studio_url(self) -> str | None:
        """Link to the run in Azure ML studio (or the local MLflow UI)."""
        return self._info.studio_url

    def __repr__(self) -> str:
        return f"DetectionRun(name={self.name!r}, status={self.status.value})"

    def refresh(self) -> DetectionRun:
        """Fetch the current state from the backend; returns ``self``."""
        self._info = self._backend.get_run(self.name)
        return self

    def wait(
        self, timeout: float | None = None, *, progress: bool = True, poll_interval: float = 10.0
    ) -> DetectionRun:
        """Block until the run ends.

        Args:
            timeout: Seconds to wait at most (``None``: no limit).
            progress: Show a one-line progress display on a terminal.
            poll_interval: Seconds between status checks.

        Raises:
            RunFailedError: The run failed; the message carries the run's own error.
            OperationTimeoutError: ``timeout`` passed first (the run keeps going).
        """
        wait_for(self, "run", timeout=timeout, progress=progress, poll_interval=poll_interval)
        return self

    def cancel(self) -> None:
        """Ask the backend to cancel the run."""
        self._backend.cancel_run(self.name)
        self.refresh()

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics of the run (of its best trial for a sweep): ``mean_average_precision``,
        ``precision``, ``recall`` ..."""
        return self._backend.run_metrics(self.name)

    def trials(self) -> list[Trial]:
        """Child runs with their hyperparameters and metrics."""
        return self._backend.list_trials(self.name)

    @property
    def best_trial(self) -> Trial | None:
        """The trial named by the ``automl_best_child_run_id`` tag, if the sweep set it."""
        return self._backend.best_trial(self.name)

    def download_model(self, directory: str | os.PathLike[str]) -> Path:
        """Download the best trial's MLflow model and class labels into ``directory``."""
        return self._backend.download_model(self.name, Path(directory))


class RegisteredModel:
    """A registered model version."""

    def __init__(self, backend: Backend, info: ModelInfo) -> None:
        self._backend = backend
        self._info = info

    @property
    def info(self) -> ModelInfo:
        """The model record."""
        return self._info

    @property
    def name(self) -> str:
        """Model name."""
        return self._info.name

    @property
    def version(self) -> str:
        """Model version."""
        return self._info.version

    @property
    def uri(self) -> str:
        """Where the model lives (``azureml:name:version`` or a local path)."""
        return self._info.uri

    @property
    def reference(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    def __repr__(self) -> str:
        return f"RegisteredModel(name={self.name!r}, version={self.version!r})"

    def refresh(self) -> RegisteredModel:
        """Fetch the record again; returns ``self``."""
        self._info = self._backend.get_model(self.name, self.version)
        return self

    def download(self, directory: str | os.PathLike[str]) -> Path:
        """Download this version's MLflow model folder (``MLmodel`` and its files) into
        ``directory``; returns ``directory``.

        Raises:
            ConflictError: ``directory`` exists and is not empty.
        """
        target = Path(directory)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ConflictError(
                f"{target} already exists and is not an empty folder; pass another directory "
                "or remove it"
            )
        return self._backend.download_registered_model(self.name, self.version, target)

    def export_onnx(self, path: str | os.PathLike[str]) -> Path:
        """Export this version to an ONNX file at ``path`` with the inputs and outputs of
        AutoML's ONNX export (``input`` -> ``boxes_0``, ``labels_0``, ``scores_0``; see
        :mod:`detectkit.scoring.onnx`); returns ``path``. Local models only (every family);
        Azure AutoML writes ``model.onnx`` itself.

        Raises:
            InvalidInputError: An Azure model, or an architecture not exported yet.
            MissingDependencyError: onnx or torch is not installed.
        """
        return self._backend.export_onnx(self.name, self.version, Path(path))


class Endpoint:
    """A live handle on an online endpoint."""

    def __init__(self, backend: Backend, info: EndpointInfo) -> None:
        self._backend = backend
        self._info = info

    @property
    def info(self) -> EndpointInfo:
        """The last known endpoint record."""
        return self._info

    @property
    def name(self) -> str:
        """Endpoint name."""
        return self._info.name

    @property
    def scoring_uri(self) -> str | None:
        """URL that ``predict`` posts to."""
        return self._info.scoring_uri

    @property
    def traffic(self) -> dict[str, int]:
        """Percent of traffic per deployment."""
        return dict(self._info.traffic)

    @property
    def state(self) -> str:
        """Provisioning state: ``Succeeded`` when serving, ``Creating``/``Updating``/``Failed`` on
        Azure; locally ``Succeeded``, ``Failed`` (alive but not answering) or ``Stopped``."""
        return self._info.state

    def __repr__(self) -> str:
        return f"Endpoint(name={self.name!r}, state={self.state!r}, traffic={self.traffic!r})"

    def refresh(self) -> Endpoint:
        """Fetch the current state; returns ``self``."""
        self._info = self._backend.get_endpoint(self.name)
        return self

    @overload
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        min_score: float | None = ...,
        deployment: str | None = ...,
        timeout: float = ...,
        batch_size: int = ...,
        max_request_bytes: int = ...,
        concurrency: int | None = ...,
        errors: Literal["raise"] = ...,
        progress: bool | None = ...,
    ) -> list[Prediction]: ...

    @overload
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        min_score: float | None = ...,
        deployment: str | None = ...,
        timeout: float = ...,
        batch_size: int = ...,
        max_request_bytes: int = ...,
        concurrency: int | None = ...,
        errors: Literal["collect"],
        progress: bool | None = ...,
    ) -> PredictionBatch: ...

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        min_score: float | None = None,
        deployment: str | None = None,
        timeout: float = 120.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        concurrency: int | None = None,
        errors: ErrorMode = "raise",
        progress: bool | None = None,
    ) -> list[Prediction] | PredictionBatch:
        """Score images and return one typed :class:`~detectkit.Prediction` per image, in order.

        Many images are sent as several requests of at most ``batch_size`` images and
        ``max_request_bytes`` of body, up to ``concurrency`` at once (see
        :mod:`detectkit.scoring.chunks`). Busy answers (429, 503) and reset connections are
        retried with backoff, honouring ``Retry-After``. Bodies are built in memory (no
        temporary files) and sent with the endpoint key.

        Args:
            images: One image or a list: file paths, bytes, PIL images or numpy arrays.
            min_score: Drop boxes scoring below this.
            deployment: Route to this deployment (default: the endpoint's traffic rules).
            timeout: Seconds to wait for each request's answer.
            batch_size: Most images per request.
            max_request_bytes: Most bytes of JSON body per request (an image larger than
                that goes alone).
            concurrency: Requests in flight at once. Default: what the deployment serves in
                parallel (local: its server processes; Azure: instances x
                ``max_concurrent_requests_per_instance``).
            errors: ``"raise"`` (default): a failed request raises. ``"collect"``: return a
                :class:`~detectkit.scoring.chunks.PredictionBatch` of the images that were
                scored, with ``.failures`` naming each image that was not and why (a request
                failing for its content is split until the bad image stands alone).
            progress: Show a progress bar (default: on a terminal, for 50 images or more).

        Raises:
            EndpointError: With ``errors="raise"``, a request failed; in both modes, the
                endpoint refused the key or does not exist (401, 403, 404).
            InvalidInputError: An image is not an image (``errors="raise"``), or an argument
                is out of range.
        """
        items = image_list(images)

        def send(body: bytes) -> bytes:
            return self._backend.invoke(self.name, body, deployment=deployment, timeout=timeout)

        def parallel() -> int:
            return self._backend.endpoint_concurrency(self.name, deployment)

        batch = predict_many(
            items,
            send,
            batch_size=batch_size,
            max_request_bytes=max_request_bytes,
            concurrency=parallel if concurrency is None else concurrency,
            errors=errors,
            progress=progress,
            description=f"scoring on {self.name}",
        )
        if min_score is not None:
            batch[:] = [p.filter(min_score=min_score) for p in batch]
        return batch if errors == "collect" else list(batch)

    def keys(self) -> EndpointKeys:
        """The endpoint's auth keys (shown as ``**********``; ``.primary.get_secret_value()``)."""
        return self._backend.endpoint_keys(self.name)

    def logs(self, lines: int = 100, *, deployment: str | None = None) -> str:
        """The last ``lines`` lines of the deployment's log."""
        return self._backend.endpoint_logs(self.name, deployment=deployment, lines=lines)

    def set_traffic(self, traffic: Mapping[str, int]) -> Endpoint:
        """Route traffic, e.g. ``{"blue": 100}``; percentages must add up to 100."""
        total = sum(traffic.values())
        if any(v < 0 for v in traffic.values()) or total != 100:
            raise InvalidInputError(
                f"traffic: expected non-negative percentages adding up to 100, got {dict(traffic)}"
            )
        self._info = self._backend.set_traffic(self.name, dict(traffic))
        return self

    def delete(self) -> None:
        """Delete the endpoint and its deployments (stop the server locally)."""
        self._backend.delete_endpoint(self.name)


def wait_for(
    handle: Any, what: str, *, timeout: float | None, progress: bool, poll_interval: float
) -> None:
    """Refresh ``handle`` (a run or a batch job: ``refresh()``, ``status``, ``name``,
    ``info.error``) until its status is terminal, showing a status line on a terminal.

    Raises:
        RunFailedError: It ended other than Completed; the message carries its error.
        OperationTimeoutError: ``timeout`` seconds passed first (it keeps going).
    """
    start = time.monotonic()
    show = progress and sys.stderr.isatty()
    while True:
        handle.refresh()
        elapsed = time.monotonic() - start
        if show:
            sys.stderr.write(f"\r{handle.name}: {handle.status.value:<16} {elapsed:7.0f}s")
            sys.stderr.flush()
        if handle.status.is_terminal:
            break
        if timeout is not None and elapsed >= timeout:
            if show:
                sys.stderr.write("\n")
            raise OperationTimeoutError(
                f"{what} {handle.name!r} is still {handle.status.value} after {timeout:.0f} s; "
                "it keeps running: call wait() again or cancel()"
            )
        delay = poll_interval if timeout is None else min(poll_interval, timeout - elapsed)
        time.sleep(max(delay, 0.0))
    if show:
        sys.stderr.write("\n")
    if handle.status is not RunStatus.COMPLETED:
        error = handle.info.error
        detail = f": {error}" if error else ""
        raise RunFailedError(f"{what} {handle.name!r} ended {handle.status.value}{detail}")
