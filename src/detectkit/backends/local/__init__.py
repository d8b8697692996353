"""The local backend: ``Project.local(root)`` does everything on this machine.

Layout under ``root``::

    datasets/<name>/<version>/   a data asset: images/, annotations.jsonl, MLTable, asset.json
    mlflow.db                    MLflow tracking store AND model registry (SQLite)
    mlartifacts/<experiment>/    run artifacts (each trial's outputs/mlflow-model, labels.json)
    models/<name>/<uuid>/        copies of MLflow model folders registered from a local path
    endpoints/<name>/            local online endpoints (see endpoints.py)

Open the runs with ``mlflow ui --backend-store-uri sqlite:///<root>/mlflow.db``.

Training (:meth:`LocalBackend.submit_training`) runs **synchronously, in this process**: the
call returns when the sweep has ended, with a ``Completed`` (or ``Failed``/``Canceled``)
:class:`~detectkit.resources.RunInfo`; ``run.wait()`` then returns at once. The run is an
MLflow parent run, each trial a child run (``mlflow.parentRunId``), and the parent carries
``automl_best_child_run_id`` as on Azure (see :mod:`detectkit.backends.local.sweep`).

MLflow, torch and torchvision are imported inside the methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from detectkit.backends.local import onnx_runtime
from detectkit.backends.local.assets import LocalAssets
from detectkit.backends.local.assist import start_assistant
from detectkit.backends.local.endpoints import LocalEndpoints
from detectkit.backends.local.models import LOCAL_MODELS, ensure_backbone_weights, import_torch
from detectkit.backends.local.owner import owner_tags
from detectkit.backends.local.runs import LocalRuns, log_request, mlflow_errors
from detectkit.backends.local.score import score_images
from detectkit.backends.local.sweep import plan_trials, run_training
from detectkit.backends.local.train import trial_config
from detectkit.backends.mlflow_runs import quiet_mlflow
from detectkit.dataset import LabeledDataset
from detectkit.errors import InvalidInputError
from detectkit.records import DatasetAsset, EndpointInfo, EndpointKeys, ModelInfo, RunInfo, Trial
from detectkit.settings.request import RunMetadata, validate_models

if TYPE_CHECKING:
    from detectkit.backends.base import ModelSource
    from detectkit.batch import BatchEndpointInfo
    from detectkit.records import ScoreResult
    from detectkit.settings.request import DeploymentSettings, TrainingParameters, TrainingRequest

__all__ = ["LocalBackend", "TrainingPlan"]

DEFAULT_EXPERIMENT = "detectkit"


@dataclass(frozen=True)
class TrainingPlan:
    """What :meth:`LocalBackend.submit_training` would run (``project.train(dry_run=True)``).

    Attributes:
        request: The checked request.
        trials: Each trial's parameters, in order (a random sweep's draws are seeded, so
            these are the trials that will run).
        device: ``"cuda"`` or ``"cpu"``.
        experiment: The MLflow experiment.
        tracking_uri: The SQLite tracking store.
    """

    request: TrainingRequest
    trials: tuple[TrainingParameters, ...]
    device: str
    experiment: str
    tracking_uri: str

    def __repr__(self) -> str:
        models = sorted({t.model_name or "?" for t in self.trials})
        return (
            f"TrainingPlan(trials={len(self.trials)}, models={models}, device={self.device!r}, "
            f"experiment={self.experiment!r})"
        )


class LocalBackend:
    """Data assets, training, registry and endpoints on this machine, under ``root``.

    Each job has its own module: data assets in :mod:`~detectkit.backends.local.assets`, runs
    and the registry in :mod:`~detectkit.backends.local.runs`, training in
    :mod:`~detectkit.backends.local.sweep`, endpoints in
    :mod:`~detectkit.backends.local.endpoints`; this class wires them to the backend protocol.

    Args:
        root: The project folder (created if needed).
        device: ``"cpu"`` or ``"cuda"`` for training (default: CUDA when available).
        progress: Show one line per epoch while training (default: when stderr is a terminal).
    """

    kind = "local"

    def __init__(
        self, root: Path, *, device: str | None = None, progress: bool | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self.device = device
        self.progress = progress
        self.assets = LocalAssets(self.root)
        self.runs = LocalRuns(self.root, self.tracking_uri)
        self._endpoints: LocalEndpoints | None = None

    def __repr__(self) -> str:
        return f"LocalBackend(root={str(self.root)!r})"

    # ================================================================== data assets
    @property
    def datasets_folder(self) -> Path:
        """``root/datasets``."""
        return self.assets.folder

    def create_dataset(
        self,
        name: str,
        dataset: LabeledDataset,
        *,
        version: str | None,
        description: str | None,
    ) -> DatasetAsset:
        """Copy (hard-link when possible) the images and write JSONL + ``MLTable`` into
        ``root/datasets/<name>/<version>/``; ``version`` defaults to the next number.

        Raises:
            ConflictError: ``name:version`` exists already (versions are immutable).
        """
        return self.assets.create(name, dataset, version=version, description=description)

    def get_dataset(self, name: str, version: str | None = None) -> DatasetAsset:
        """A data asset (the highest version when ``version`` is None).

        Raises:
            NotFoundError: No such asset or version.
        """
        return self.assets.get(name, version)

    def list_datasets(self) -> list[DatasetAsset]:
        """The latest version of every data asset, by name."""
        return self.assets.latest()

    def load_dataset(self, reference: str) -> LabeledDataset:
        """The labeled data behind a training input: a data asset reference (``name``,
        ``name:version``, ``azureml:name:version``), its folder, or any data set path
        :func:`detectkit.read_dataset` reads.

        Raises:
            NotFoundError: Neither an asset nor an existing path.
        """
        return self.assets.load(reference)

    def start_assistant(self, folder: Path) -> int:
        """Start the background trainer of the labeling project in ``folder`` (ML assistance,
        :mod:`detectkit.backends.local.assist`); returns its process id."""
        return start_assistant(self.root, Path(folder))

    # ================================================================== training
    def plan_training(
        self, request: TrainingRequest, metadata: RunMetadata | None = None
    ) -> TrainingPlan:
        """Check ``request`` for this backend and list its trials, without training.

        Raises:
            InvalidSettingsError: A model the local backend cannot train (the message lists
                those it can), bayesian sampling, or parameters without local meaning.
        """
        validate_models(request.model_names(), LOCAL_MODELS, "local")
        rng = np.random.default_rng(request.parameters.random_seed or 0)
        trials = tuple(plan_trials(request, rng))
        for params in trials:
            trial_config(params)
        torch = import_torch()
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return TrainingPlan(
            request, trials, device, request.experiment or DEFAULT_EXPERIMENT, self.tracking_uri
        )

    def submit_training(
        self, request: TrainingRequest, metadata: RunMetadata | None = None
    ) -> RunInfo:
        """Train now, in this process, and return the finished run.

        ``metadata``: its ``name`` (or else ``display_name``) becomes the MLflow run name,
        ``description`` its note and ``tags`` its tags; ``log_verbosity`` (an AutoML log level)
        has no meaning here and is ignored.

        The validation set is ``request.validation_data``, or a seeded stratified
        ``validation_size`` share (default 0.2) of the training data
        (:meth:`~detectkit.LabeledDataset.split`). A ``KeyboardInterrupt`` keeps the finished
        trials and the best tag (the run ends ``Canceled``) and is raised again.

        Raises:
            InvalidSettingsError: See :meth:`plan_training`.
            NotFoundError: The data, or pretrained weights that cannot be downloaded.
        """
        meta = metadata or RunMetadata()
        plan = self.plan_training(request)
        train, val = self._training_data(request)
        for model in sorted({c.model_name for c in map(trial_config, plan.trials) if c.pretrained}):
            ensure_backbone_weights(model)
        client = self.runs.client
        experiment_id = self.runs.experiment(plan.experiment)
        with mlflow_errors("training run"):
            parent = client.create_run(
                experiment_id,
                run_name=meta.name or meta.display_name,
                tags={
                    **meta.tags,
                    **({"mlflow.note.content": meta.description} if meta.description else {}),
                    "detectkit.backend": "local",
                    **owner_tags(),
                    "detectkit.mode": request.mode,
                    "detectkit.training_data": request.training_data,
                },
            )
        run_id = parent.info.run_id
        log_request(client, run_id, request, len(train), len(val))
        try:
            with quiet_mlflow():
                status = run_training(
                    request,
                    plan.trials,
                    train,
                    val,
                    client=client,
                    experiment_id=experiment_id,
                    parent_run_id=run_id,
                    device=plan.device,
                    progress=self.progress,
                )
        except KeyboardInterrupt:
            client.set_tag(run_id, "detectkit.stopped", "interrupted")
            client.set_terminated(run_id, "KILLED")
            raise
        except BaseException as exc:
            client.set_tag(run_id, "detectkit.error", f"{type(exc).__name__}: {exc}"[:5000])
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, status)
        return self.get_run(run_id)

    def _training_data(self, request: TrainingRequest) -> tuple[LabeledDataset, LabeledDataset]:
        train = self.load_dataset(request.training_data)
        if request.validation_data is not None:
            val = self.load_dataset(request.validation_data)
        else:
            size = request.validation_size or 0.2
            train, val, _ = train.split(size, seed=request.parameters.random_seed or 0)
        unknown = sorted(set(val.classes) - set(train.classes))
        labels = {o.label for r in val.records for o in r.objects}
        if unknown and labels & set(unknown):
            raise InvalidInputError(
                f"validation data has classes the training data lacks: {unknown}; a model "
                "cannot learn them (add training images of those classes)"
            )
        if len(train) == 0 or len(val) == 0:
            raise InvalidInputError(
                f"training data {request.training_data!r}: got {len(train)} training and "
                f"{len(val)} validation images; need at least one of each (add images, or "
                "pass validation_data=)"
            )
        if train.num_boxes == 0:
            raise InvalidInputError(
                f"training data {request.training_data!r} has no boxes; label some objects first"
            )
        return train, LabeledDataset(val.records, train.classes, root=val.root)

    # ================================================================== runs
    def get_run(self, name: str) -> RunInfo:
        """A run (parent or trial) by MLflow run id or run name."""
        return self.runs.get_run(name)

    def list_runs(self) -> list[RunInfo]:
        """The training runs (parent runs), newest first."""
        return self.runs.list_runs()

    def cancel_run(self, name: str) -> None:
        """Mark a run that a stopped process left ``Running`` as ``Canceled``."""
        self.runs.cancel_run(name)

    def run_metrics(self, name: str) -> dict[str, float]:
        """Metrics of the best trial (of the run itself when it has no best trial)."""
        return self.runs.run_metrics(name)

    def list_trials(self, name: str) -> list[Trial]:
        """Every trial of the run, oldest first."""
        return self.runs.list_trials(name)

    def best_trial(self, name: str) -> Trial | None:
        """The trial named by the run's ``automl_best_child_run_id`` tag."""
        return self.runs.best_trial(name)

    def download_model(self, name: str, directory: Path) -> Path:
        """Copy the best trial's MLflow model to ``directory/mlflow-model``."""
        return self.runs.download_model(name, directory)

    # ================================================================== models
    def register_model(
        self, source: ModelSource, name: str, *, version: str | None, description: str | None
    ) -> ModelInfo:
        """Register an MLflow model version in the SQLite registry."""
        return self.runs.register_model(source, name, version=version, description=description)

    def get_model(self, name: str, version: str | None = None) -> ModelInfo:
        """A model version (the highest when ``version`` is None)."""
        return self.runs.get_model(name, version)

    def list_models(self, name: str | None = None) -> list[ModelInfo]:
        """Every version of ``name`` (oldest first), or the latest version of every model."""
        return self.runs.list_models(name)

    def download_registered_model(self, name: str, version: str | None, directory: Path) -> Path:
        """Copy a registered version's MLflow model folder into ``directory``."""
        return self.runs.download_registered_model(name, version, directory)

    def export_onnx(self, name: str, version: str, path: Path) -> Path:
        """Export a registered version to ONNX (see backends/local/onnx_runtime.py)."""
        return onnx_runtime.export_onnx(self.model_path(self.get_model(name, version)), path)

    def model_path(self, model: ModelInfo) -> Path:
        """The local MLflow model folder of a registered version."""
        return self.runs.model_path(model)

    # ================================================================== endpoints
    @property
    def endpoints(self) -> LocalEndpoints:
        """The endpoint operations (``root/endpoints``; see endpoints.py)."""
        if self._endpoints is None:
            self._endpoints = LocalEndpoints(self.root, self.model_path)
        return self._endpoints

    def deploy(
        self, model: ModelInfo, endpoint: str, deployment: str, settings: DeploymentSettings
    ) -> EndpointInfo:
        """Serve ``model`` on 127.0.0.1 as ``endpoint`` (a process that outlives this one)."""
        return self.endpoints.deploy(model, endpoint, deployment, settings)

    def get_endpoint(self, name: str) -> EndpointInfo:
        """An endpoint's state."""
        return self.endpoints.get_endpoint(name)

    def list_endpoints(self) -> list[EndpointInfo]:
        """Every local endpoint."""
        return self.endpoints.list_endpoints()

    def endpoint_keys(self, name: str) -> EndpointKeys:
        """The endpoint's keys."""
        return self.endpoints.endpoint_keys(name)

    def invoke(self, name: str, body: bytes, *, deployment: str | None, timeout: float) -> bytes:
        """POST a scoring request; return the answer body."""
        return self.endpoints.invoke(name, body, deployment=deployment, timeout=timeout)

    def endpoint_concurrency(self, name: str, deployment: str | None) -> int:
        """The endpoint's server processes (each scores one request at a time)."""
        return self.endpoints.endpoint_concurrency(name, deployment)

    def endpoint_logs(self, name: str, *, deployment: str | None, lines: int) -> str:
        """The last lines of the server log."""
        return self.endpoints.endpoint_logs(name, deployment=deployment, lines=lines)

    def set_traffic(self, name: str, traffic: Mapping[str, int]) -> EndpointInfo:
        """Record the traffic split (one deployment locally)."""
        return self.endpoints.set_traffic(name, traffic)

    def delete_endpoint(self, name: str) -> None:
        """Stop the server and remove the endpoint."""
        self.endpoints.delete_endpoint(name)

    # ================================================================== batch scoring
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
        """Score images (paths, or a data asset reference) with a registered model in
        worker processes (see :mod:`~detectkit.backends.local.score`)."""
        path = self.model_path(self.get_model(model, version))
        if isinstance(images, str):
            images = [record.image for record in self.load_dataset(images)]
        return score_images(
            path,
            images,
            out=out,
            processes=processes,
            batch_size=batch_size,
            resume=resume,
            overwrite=overwrite,
            runtime=runtime,
            progress=progress,
        )

    # ================================================================== batch endpoints
    def deploy_batch(self, *args: object, **kwargs: object) -> NoReturn:
        """Refused: batch endpoints are Azure ML's; locally use ``project.score``."""
        raise InvalidInputError(_NO_BATCH_ENDPOINTS)

    def get_batch_endpoint(self, name: str) -> NoReturn:
        """Refused: there are no batch endpoints on this machine."""
        raise InvalidInputError(_NO_BATCH_ENDPOINTS)

    def list_batch_endpoints(self) -> list[BatchEndpointInfo]:
        """None: batch endpoints are Azure ML's."""
        return []

    def submit_batch_job(self, *args: object, **kwargs: object) -> NoReturn:
        """Refused: batch endpoints are Azure ML's; locally use ``project.score``."""
        raise InvalidInputError(_NO_BATCH_ENDPOINTS)

    def get_batch_job(self, name: str) -> NoReturn:
        """Refused: there are no batch jobs on this machine."""
        raise InvalidInputError(_NO_BATCH_ENDPOINTS)

    def download_batch_output(self, *args: object, **kwargs: object) -> NoReturn:
        """Refused: there are no batch jobs on this machine."""
        raise InvalidInputError(_NO_BATCH_ENDPOINTS)


_NO_BATCH_ENDPOINTS = (
    "batch endpoints are an Azure ML feature (Project.azure(...)); on this machine score a "
    "folder or data asset with project.score(model, data, out='predictions.jsonl') "
    "(detectkit score MODEL DATA --out predictions.jsonl), which writes the same batch output "
    "lines"
)
