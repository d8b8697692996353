"""The Backend protocol: the one contract the Azure and the local backends implement.

:class:`~detectkit.Project` calls only these methods and never checks which backend it holds.
Methods take and return detectkit's own typed records (``detectkit.resources``); foreign
exceptions are translated into detectkit errors inside the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from detectkit.dataset import LabeledDataset
    from detectkit.records import (
        DatasetAsset,
        EndpointInfo,
        EndpointKeys,
        ModelInfo,
        RunInfo,
        Trial,
    )
    from detectkit.settings.request import DeploymentSettings, TrainingRequest

__all__ = ["Backend", "ModelSource"]


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
    def plan_training(self, request: TrainingRequest) -> object:
        """What would be submitted, without submitting (Azure: the azure-ai-ml job)."""
        ...

    def submit_training(
        self,
        request: TrainingRequest,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        log_verbosity: str | None = None,
    ) -> RunInfo:
        """Start a training run (``name``, ``description``, ``tags``: the run's own; a
        ``log_verbosity`` is the AutoML log level, with no meaning locally)."""
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

    def endpoint_logs(self, name: str, *, deployment: str | None, lines: int) -> str:
        """The last lines of a deployment's log."""
        ...

    def set_traffic(self, name: str, traffic: Mapping[str, int]) -> EndpointInfo:
        """Set the traffic split."""
        ...

    def delete_endpoint(self, name: str) -> None:
        """Delete an endpoint and its deployments."""
        ...
