"""The Backend protocol: the one contract the Azure and the local backends implement.

:class:`~detectkit.Project` calls only these methods and never checks which backend it holds.
Methods take and return detectkit's own typed records (``detectkit.resources``); foreign
exceptions are translated into detectkit errors inside the backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from detectkit.records import ScoreFailure, ScoreResult

if TYPE_CHECKING:
    from detectkit.batch import (
        BatchDeploymentSettings,
        BatchEndpointInfo,
        BatchInput,
        BatchJobInfo,
    )
    from detectkit.dataset import LabeledDataset
    from detectkit.records import (
        DatasetAsset,
        EndpointInfo,
        EndpointKeys,
        ModelInfo,
        RunInfo,
        Trial,
    )
    from detectkit.settings.request import DeploymentSettings, RunMetadata, TrainingRequest

__all__ = ["Backend", "ModelSource", "ScoreFailure", "ScoreResult"]


class ModelSource:
    """What to register: a run's best trial, one trial, or a local MLflow model folder."""

    __slots__ = ("path", "run_name", "trial_name")

    def __init__(
        self,
        *,
        run_name: str | None = None,
        trial_name: str | None = None,
        path: Path | None = None,
    ) -> None:
        self.run_name = run_name
        self.trial_name = trial_name
        self.path = path

    def __repr__(self) -> str:
        parts = [f"{k}={getattr(self, k)!r}" for k in self.__slots__ if getattr(self, k)]
        return f"ModelSource({', '.join(parts)})"


@runtime_checkable
class Backend(Protocol):
    """Operations a backend provides. ``kind`` is ``"azure"`` or ``"local"``."""

    kind: str

    # data assets ---------------------------------------------------------------
    def create_dataset(
        self,
        name: str,
        dataset: LabeledDataset,
        *,
        version: str | None,
        description: str | None,
    ) -> DatasetAsset:
        """Store the images and JSONL + MLTable as a versioned data asset."""
        ...

    def get_dataset(self, name: str, version: str | None = None) -> DatasetAsset:
        """A data asset (latest version when ``version`` is None)."""
        ...

    def list_datasets(self) -> list[DatasetAsset]:
        """Every data asset (latest versions)."""
        ...

    # training ------------------------------------------------------------------
    def plan_training(
        self, request: TrainingRequest, metadata: RunMetadata | None = None
    ) -> object:
        """What would be submitted, without submitting (Azure: the azure-ai-ml job)."""
        ...

    def submit_training(
        self, request: TrainingRequest, metadata: RunMetadata | None = None
    ) -> RunInfo:
        """Start a training run; ``metadata`` holds the run's own name, display name,
        description and tags, and the AutoML log level (no meaning locally)."""
        ...

    def get_run(self, name: str) -> RunInfo:
        """Current state of a run."""
        ...

    def list_runs(self) -> list[RunInfo]:
        """Training runs (sweep parents, not their trials), newest first."""
        ...

    def cancel_run(self, name: str) -> None:
        """Ask for a run to be cancelled."""
        ...

    def run_metrics(self, name: str) -> dict[str, float]:
        """Metrics of the run's best trial (or of the run itself)."""
        ...

    def list_trials(self, name: str) -> list[Trial]:
        """Child runs of a sweep."""
        ...

    def best_trial(self, name: str) -> Trial | None:
        """The child named by the ``automl_best_child_run_id`` tag."""
        ...

    def download_model(self, name: str, directory: Path) -> Path:
        """Download the best trial's MLflow model folder; returns its path."""
        ...

    # models --------------------------------------------------------------------
    def register_model(
        self, source: ModelSource, name: str, *, version: str | None, description: str | None
    ) -> ModelInfo:
        """Register an MLflow model version."""
        ...

    def get_model(self, name: str, version: str | None = None) -> ModelInfo:
        """A model version (latest when ``version`` is None)."""
        ...

    def list_models(self, name: str | None = None) -> list[ModelInfo]:
        """Model versions (of one name, or the latest of every name)."""
        ...

    def download_registered_model(self, name: str, version: str | None, directory: Path) -> Path:
        """Download a model version's MLflow folder into ``directory``; returns its path."""
        ...

    def export_onnx(self, name: str, version: str, path: Path) -> Path:
        """Write a model version as an ONNX file at ``path`` (AutoML's ONNX inputs and
        outputs); returns ``path``."""
        ...

    # endpoints -----------------------------------------------------------------
    def deploy(
        self, model: ModelInfo, endpoint: str, deployment: str, settings: DeploymentSettings
    ) -> EndpointInfo:
        """Create or update the endpoint and deployment, then route 100% traffic to it."""
        ...

    def get_endpoint(self, name: str) -> EndpointInfo:
        """An endpoint's state."""
        ...

    def list_endpoints(self) -> list[EndpointInfo]:
        """Every endpoint."""
        ...

    def endpoint_keys(self, name: str) -> EndpointKeys:
        """The endpoint's auth keys."""
        ...

    def invoke(self, name: str, body: bytes, *, deployment: str | None, timeout: float) -> bytes:
        """POST a scoring request body; return the raw answer body."""
        ...

    def endpoint_concurrency(self, name: str, deployment: str | None) -> int:
        """Scoring requests the deployment taking the traffic (or ``deployment``) serves at
        once: the default concurrency of a chunked ``Endpoint.predict``."""
        ...

    def endpoint_logs(self, name: str, *, deployment: str | None, lines: int) -> str:
        """The last lines of a deployment's log."""
        ...

    def set_traffic(self, name: str, traffic: Mapping[str, int]) -> EndpointInfo:
        """Set the traffic split."""
        ...

    def delete_endpoint(self, name: str) -> None:
        """Delete an endpoint and its deployments."""
        ...

    # batch endpoints -----------------------------------------------------------
    def deploy_batch(
        self,
        model: ModelInfo,
        endpoint: str,
        deployment: str,
        settings: BatchDeploymentSettings,
    ) -> BatchEndpointInfo:
        """Create or update a batch endpoint and deployment; make it the default deployment
        (Azure; the local backend raises and points to ``project.score``)."""
        ...

    def get_batch_endpoint(self, name: str) -> BatchEndpointInfo:
        """A batch endpoint's state."""
        ...

    def list_batch_endpoints(self) -> list[BatchEndpointInfo]:
        """Every batch endpoint."""
        ...

    def submit_batch_job(
        self, endpoint: str, data: BatchInput, *, deployment: str | None, job_name: str | None
    ) -> BatchJobInfo:
        """Start a batch scoring job (uploading local files first); returns at once."""
        ...

    def get_batch_job(self, name: str) -> BatchJobInfo:
        """A batch scoring job's state (its own error once it failed)."""
        ...

    def download_batch_output(self, job: BatchJobInfo, directory: Path) -> list[Path]:
        """Download a batch job's output files into ``directory``."""
        ...

    # batch scoring on this machine ---------------------------------------------
    def score_images(
        self,
        model: str,
        version: str | None,
        images: Sequence[str] | str,
        *,
        out: Path,
        processes: int | None,
        batch_size: int,
        resume: bool,
        overwrite: bool,
        runtime: str,
        progress: bool | None,
    ) -> ScoreResult:
        """Score ``images`` (paths, or a data asset reference ``name[:version]``) with the
        registered ``model`` in worker processes on this machine, appending batch output lines
        to ``out`` (local backend; Azure raises and points to batch endpoints)."""
        ...
