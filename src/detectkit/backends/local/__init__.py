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

import contextlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from detectkit.backends.mlflow_runs import (
    BEST_CHILD_TAG,
    LABELS_ARTIFACT,
    MODEL_ARTIFACT,
    child_runs,
    mlflow_error,
    quiet_mlflow,
    trial_from_run,
    version_key,
)
from detectkit.errors import (
    ConflictError,
    DetectkitError,
    InvalidInputError,
    NotFoundError,
    missing_dependency,
)
from detectkit.records import (
    DatasetAsset,
    EndpointInfo,
    EndpointKeys,
    ModelInfo,
    RunInfo,
    RunStatus,
    Trial,
)

if TYPE_CHECKING:
    from detectkit.backends.base import ModelSource
    from detectkit.backends.local.endpoints import LocalEndpoints
    from detectkit.dataset import LabeledDataset
    from detectkit.settings.request import DeploymentSettings, TrainingParameters, TrainingRequest

__all__ = ["LocalBackend", "TrainingPlan"]

DEFAULT_EXPERIMENT = "detectkit"
_ASSET_FILE = "asset.json"


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
        self._client: Any = None
        self._endpoints: LocalEndpoints | None = None

    def __repr__(self) -> str:
        return f"LocalBackend(root={str(self.root)!r})"

    # ================================================================== data assets
    @property
    def datasets_folder(self) -> Path:
        """``root/datasets``."""
        return self.root / "datasets"

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
        from detectkit.formats import copy_images_into
        from detectkit.formats.azureml import write_azureml

        base = self.datasets_folder / name
        version = version or str(_next_number(_versions(base)))
        folder = base / version
        if folder.exists():
            raise ConflictError(
                f"data asset {name}:{version} already exists at {folder}; versions are "
                "immutable: pass another version= (or none, for the next number)"
            )
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base))
        try:
            copied = copy_images_into(dataset, work)
            write_azureml(copied, work)
            asset = {
                "name": name,
                "version": version,
                "description": description,
                "images": len(dataset),
                "boxes": dataset.num_boxes,
                "classes": list(dataset.classes),
                "created": datetime.now(timezone.utc).isoformat(),
            }
            (work / _ASSET_FILE).write_text(json.dumps(asset, indent=2), encoding="utf-8")
            work.rename(folder)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return self._asset(folder)

    def get_dataset(self, name: str, version: str | None = None) -> DatasetAsset:
        """A data asset (the highest version when ``version`` is None).

        Raises:
            NotFoundError: No such asset or version.
        """
        base = self.datasets_folder / name
        versions = _versions(base)
        if not versions:
            known = ", ".join(a.name for a in self.list_datasets()) or "none"
            raise NotFoundError(
                f"no data asset {name!r} under {self.datasets_folder} (assets: {known}); "
                "create one with project.datasets.create(name, dataset)"
            )
        chosen = version or max(versions, key=version_key)
        if chosen not in versions:
            raise NotFoundError(
                f"data asset {name!r} has no version {chosen!r} (versions: "
                f"{', '.join(sorted(versions, key=version_key))})"
            )
        return self._asset(base / chosen)

    def list_datasets(self) -> list[DatasetAsset]:
        """The latest version of every data asset, by name."""
        if not self.datasets_folder.is_dir():
            return []
        out = []
        for base in sorted(self.datasets_folder.iterdir()):
            versions = _versions(base)
            if versions:
                out.append(self._asset(base / max(versions, key=version_key)))
        return out

    def load_dataset(self, reference: str) -> LabeledDataset:
        """The labeled data behind a training input.

        Args:
            reference: A data asset (``name``, ``name:version``, ``azureml:name:version`` or
                its folder, :attr:`DatasetAsset.uri`), or any local data set folder or file
                :func:`detectkit.read_dataset` reads.

        Raises:
            NotFoundError: Neither an asset nor an existing path.
        """
        from detectkit.dataset import LabeledDataset
        from detectkit.formats import read_dataset

        path = Path(reference)
        if not path.exists():
            text = reference.removeprefix("azureml:")
            name, _, version = text.partition(":")
            if "/" in name or "\\" in name or not name:
                raise NotFoundError(
                    f"training data {reference!r}: no such file or folder, and not a data asset "
                    "reference (expected name, name:version or a path)"
                )
            path = Path(self.get_dataset(name, version or None).uri)
        dataset = read_dataset(path)
        meta = path / _ASSET_FILE
        if meta.is_file():  # JSONL has no class list: restore the asset's order
            classes = json.loads(meta.read_text(encoding="utf-8")).get("classes") or []
            extra = [c for c in dataset.classes if c not in classes]
            dataset = LabeledDataset(dataset.records, [*classes, *extra], root=dataset.root)
        return dataset

    def _asset(self, folder: Path) -> DatasetAsset:
        meta = json.loads((folder / _ASSET_FILE).read_text(encoding="utf-8"))
        return DatasetAsset(
            name=meta["name"],
            version=meta["version"],
            uri=str(folder),
            description=meta.get("description"),
            images=meta.get("images"),
            boxes=meta.get("boxes"),
        )

    # ================================================================== training
    def plan_training(self, request: TrainingRequest) -> TrainingPlan:
        """Check ``request`` for this backend and list its trials, without training.

        Raises:
            InvalidSettingsError: A model the local backend cannot train (the message lists
                those it can), bayesian sampling, or parameters without local meaning.
        """
        import numpy as np

        from detectkit.backends.local.models import LOCAL_MODELS, import_torch
        from detectkit.backends.local.sweep import plan_trials
        from detectkit.backends.local.train import trial_config
        from detectkit.settings.request import validate_models

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

    def submit_training(self, request: TrainingRequest) -> RunInfo:
        """Train now, in this process, and return the finished run.

        The validation set is ``request.validation_data``, or a seeded stratified
        ``validation_size`` share (default 0.2) of the training data
        (:meth:`~detectkit.LabeledDataset.split`). A ``KeyboardInterrupt`` keeps the finished
        trials and the best tag (the run ends ``Canceled``) and is raised again.

        Raises:
            InvalidSettingsError: See :meth:`plan_training`.
            NotFoundError: The data, or pretrained weights that cannot be downloaded.
        """
        from detectkit.backends.local.models import ensure_backbone_weights
        from detectkit.backends.local.sweep import run_training
        from detectkit.backends.local.train import trial_config

        plan = self.plan_training(request)
        train, val = self._training_data(request)
        for model in sorted({c.model_name for c in map(trial_config, plan.trials) if c.pretrained}):
            ensure_backbone_weights(model)
        client = self._mlflow()
        experiment_id = self._experiment(plan.experiment)
        with _mlflow_errors("training run"):
            parent = client.create_run(
                experiment_id,
                tags={
                    "detectkit.backend": "local",
                    "detectkit.mode": request.mode,
                    "detectkit.training_data": request.training_data,
                },
            )
        run_id = parent.info.run_id
        _log_request(client, run_id, request, len(train), len(val))
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
        from detectkit.dataset import LabeledDataset

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

    def get_run(self, name: str) -> RunInfo:
        """A run (parent or trial) by MLflow run id or run name.

        Raises:
            NotFoundError: No such run in this project.
        """
        run = self._run(name)
        client = self._mlflow()
        experiment = client.get_experiment(run.info.experiment_id)
        tags = dict(run.data.tags)
        status = RunStatus.parse(run.info.status)
        error = tags.get("detectkit.error") if status is RunStatus.FAILED else None
        started = run.info.start_time
        return RunInfo(
            name=run.info.run_id,
            status=status,
            status_raw=run.info.status,
            display_name=run.info.run_name,
            experiment=experiment.name if experiment is not None else None,
            studio_url=None,
            error=error,
            created_at=None
            if not started
            else datetime.fromtimestamp(started / 1000, timezone.utc),
            tags={
                k: v
                for k, v in tags.items()
                if not k.startswith("mlflow.") or k == "mlflow.parentRunId"
            },
        )

    def cancel_run(self, name: str) -> None:
        """Mark a run that a stopped process left ``Running`` as ``Canceled``.

        Training is synchronous: interrupt it with Ctrl-C (``KeyboardInterrupt``).

        Raises:
            ConflictError: The run has ended already.
        """
        run = self._run(name)
        status = RunStatus.parse(run.info.status)
        if status.is_terminal:
            raise ConflictError(
                f"run {run.info.run_id!r} has ended ({status.value}); local training runs in "
                "the calling process, so there is nothing left to cancel"
            )
        with _mlflow_errors("run", name):
            self._mlflow().set_terminated(run.info.run_id, "KILLED")

    def run_metrics(self, name: str) -> dict[str, float]:
        """Metrics of the best trial (of the run itself when it has no best trial)."""
        run = self._run(name)
        best = run.data.tags.get(BEST_CHILD_TAG)
        if best:
            run = self._run(best)
        return {k: float(v) for k, v in run.data.metrics.items()}

    def list_trials(self, name: str) -> list[Trial]:
        """Every trial of the run, oldest first, with parameters and final metrics."""
        run = self._run(name)
        best = run.data.tags.get(BEST_CHILD_TAG)
        with _mlflow_errors("run", name):
            children = child_runs(self._mlflow(), run.info.experiment_id, run.info.run_id)
        children.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        return [trial_from_run(r, best) for r in children]

    def best_trial(self, name: str) -> Trial | None:
        """The trial named by the run's ``automl_best_child_run_id`` tag."""
        best = self._run(name).data.tags.get(BEST_CHILD_TAG)
        return None if not best else trial_from_run(self._run(best), best)

    def download_model(self, name: str, directory: Path) -> Path:
        """Copy the best trial's MLflow model to ``directory/mlflow-model`` and its
        ``labels.json`` to ``directory/labels.json``; ``name`` may also be a trial."""
        trial = self._model_run(name)
        target = directory / "mlflow-model"
        if target.exists() and any(target.iterdir()):
            raise ConflictError(
                f"{target} already exists and is not empty; pass another directory or remove it"
            )
        directory.mkdir(parents=True, exist_ok=True)
        client = self._mlflow()
        with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as tmp:
            with _mlflow_errors("model of trial", trial), quiet_mlflow():
                local = client.download_artifacts(trial, MODEL_ARTIFACT, tmp)
                labels = client.download_artifacts(trial, LABELS_ARTIFACT, tmp)
            if target.exists():
                target.rmdir()
            shutil.move(local, target)
            shutil.move(labels, directory / "labels.json")
        return target

    def _model_run(self, name: str) -> str:
        """The trial holding the model: the run's best trial, or the run itself."""
        run = self._run(name)
        best = run.data.tags.get(BEST_CHILD_TAG)
        if best:
            return str(best)
        if run.data.tags.get("mlflow.parentRunId"):
            return str(run.info.run_id)
        raise NotFoundError(
            f"run {run.info.run_id!r} has no best trial (status {run.info.status}; no trial "
            "finished): train again, or register one trial from run.trials()"
        )

    # ================================================================== models
    def register_model(
        self, source: ModelSource, name: str, *, version: str | None, description: str | None
    ) -> ModelInfo:
        """Register an MLflow model version in the SQLite registry.

        ``source``: a run (its best trial's model), a trial, or a local MLflow model folder
        (copied under ``root/models/<name>/`` so the version stays valid when the folder
        goes). MLflow numbers versions ``1, 2, ...``: a given ``version`` must be the next.

        Raises:
            ConflictError: ``version`` exists already.
            InvalidInputError: ``version`` is not the next number.
            NotFoundError: The run has no best trial, or the folder no ``MLmodel``.
        """
        client = self._mlflow()
        tags: dict[str, str] = {}
        run_id: str | None = None
        if source.path is not None:
            folder = Path(source.path)
            if not (folder / "MLmodel").is_file():
                raise NotFoundError(f"{folder}: not an MLflow model folder (no MLmodel file)")
        else:
            trial = source.trial_name or self._model_run(str(source.run_name))
            trial_run = self._run(trial)
            run_id = trial_run.info.run_id
            tags["detectkit.trial"] = run_id
            parent = trial_run.data.tags.get("mlflow.parentRunId")
            if parent:
                tags["detectkit.run"] = parent
            folder = _local_path(f"{trial_run.info.artifact_uri}/{MODEL_ARTIFACT}")
            if not (folder / "MLmodel").is_file():
                raise NotFoundError(
                    f"trial {run_id!r} has no MLflow model ({folder}); it failed or was "
                    "stopped before saving one: pick another trial from run.trials()"
                )
        existing = self._versions(name)
        expected = str(_next_number(existing))
        if version is not None and version in existing:
            raise ConflictError(
                f"model {name}:{version} already exists; versions are immutable: register "
                "without version= to get the next one"
            )
        if version is not None and version != expected:
            raise InvalidInputError(
                f"version: the local MLflow registry numbers versions in order; the next "
                f"version of {name!r} is {expected}, got {version!r} (omit version=)"
            )
        if source.path is not None:
            copy = self.root / "models" / name / uuid.uuid4().hex
            shutil.copytree(folder, copy)
            folder = copy
            tags["detectkit.source"] = str(source.path)
        with _mlflow_errors("model", name):
            if not existing:
                with contextlib.suppress(Exception):
                    client.create_registered_model(name)
            created = client.create_model_version(
                name, folder.as_uri(), run_id=run_id, tags=tags, description=description
            )
        return _model_info(created)

    def get_model(self, name: str, version: str | None = None) -> ModelInfo:
        """A model version (the highest when ``version`` is None).

        Raises:
            NotFoundError: No such model or version.
        """
        client = self._mlflow()
        versions = self._versions(name)
        if not versions:
            known = ", ".join(m.name for m in self.list_models()) or "none"
            raise NotFoundError(
                f"no registered model {name!r} in {self.tracking_uri} (models: {known}); "
                "register one with project.models.register(run, name)"
            )
        chosen = version or max(versions, key=version_key)
        if chosen not in versions:
            raise NotFoundError(
                f"model {name!r} has no version {chosen!r} (versions: "
                f"{', '.join(sorted(versions, key=version_key))})"
            )
        with _mlflow_errors("model", f"{name}:{chosen}"):
            return _model_info(client.get_model_version(name, chosen))

    def list_models(self, name: str | None = None) -> list[ModelInfo]:
        """Every version of ``name`` (oldest first), or the latest version of every model."""
        client = self._mlflow()
        query = "" if name is None else f"name = '{_quote(name)}'"
        with _mlflow_errors("models", name or str(self.root)):
            found = list(client.search_model_versions(query, max_results=10_000))
        if name is not None:
            return [_model_info(v) for v in sorted(found, key=lambda v: int(v.version))]
        latest: dict[str, Any] = {}
        for v in found:
            if v.name not in latest or int(v.version) > int(latest[v.name].version):
                latest[v.name] = v
        return [_model_info(latest[k]) for k in sorted(latest)]

    def model_path(self, model: ModelInfo) -> Path:
        """The local MLflow model folder of a registered version."""
        client = self._mlflow()
        with _mlflow_errors("model", f"{model.name}:{model.version}"):
            version = client.get_model_version(model.name, model.version)
        return _local_path(str(version.source))

    def _versions(self, name: str) -> list[str]:
        with _mlflow_errors("model", name):
            found = self._mlflow().search_model_versions(f"name = '{_quote(name)}'")
        return [str(v.version) for v in found]

    # ================================================================== endpoints
    @property
    def endpoints(self) -> LocalEndpoints:
        """The endpoint operations (``root/endpoints``; see endpoints.py)."""
        if self._endpoints is None:
            from detectkit.backends.local.endpoints import LocalEndpoints

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

    def endpoint_logs(self, name: str, *, deployment: str | None, lines: int) -> str:
        """The last lines of the server log."""
        return self.endpoints.endpoint_logs(name, deployment=deployment, lines=lines)

    def set_traffic(self, name: str, traffic: Mapping[str, int]) -> EndpointInfo:
        """Record the traffic split (one deployment locally)."""
        return self.endpoints.set_traffic(name, traffic)

    def delete_endpoint(self, name: str) -> None:
        """Stop the server and remove the endpoint."""
        self.endpoints.delete_endpoint(name)

    # ================================================================== MLflow
    def _mlflow(self) -> Any:
        """An ``MlflowClient`` on ``root/mlflow.db`` (tracking and registry)."""
        if self._client is None:
            try:
                from mlflow.tracking import MlflowClient
            except ImportError as exc:
                raise missing_dependency("mlflow", "local") from exc
            with _mlflow_errors("tracking store", self.tracking_uri), quiet_mlflow():
                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
                self._client.search_experiments(max_results=1)  # creates the database now
        return self._client

    def _experiment(self, name: str) -> str:
        client = self._mlflow()
        with _mlflow_errors("experiment", name):
            found = client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            location = (self.root / "mlartifacts" / name).as_uri()
            return str(client.create_experiment(name, artifact_location=location))

    def _run(self, name: str) -> Any:
        client = self._mlflow()
        try:
            return client.get_run(name)
        except Exception as exc:
            if not isinstance(mlflow_error(exc, "run"), NotFoundError):
                raise mlflow_error(exc, f"run {name!r}") from exc
        with _mlflow_errors("run", name):
            ids = [e.experiment_id for e in client.search_experiments()]
            found = client.search_runs(
                ids, filter_string=f"tags.mlflow.runName = '{_quote(name)}'", max_results=2
            )
        if len(found) != 1:
            raise NotFoundError(
                f"no run {name!r} in {self.tracking_uri} (by run id or run name)"
                + ("; the name is ambiguous, pass the run id" if found else "")
            )
        return found[0]


# ====================================================================== helpers
def _log_request(
    client: Any, run_id: str, request: TrainingRequest, n_train: int, n_val: int
) -> None:
    from mlflow.entities import Param

    sweep = request.sweep
    params = {
        "training_data": request.training_data,
        "validation_data": request.validation_data
        or f"validation_size={request.validation_size or 0.2}",
        "training_images": n_train,
        "validation_images": n_val,
        "mode": request.mode,
        "max_trials": request.limits.max_trials,
        "timeout_minutes": request.limits.timeout_minutes,
        "trial_timeout_minutes": request.limits.trial_timeout_minutes,
        "sampling_algorithm": sweep.sampling_algorithm if sweep else None,
        "early_termination": sweep.early_termination.type
        if sweep and sweep.early_termination
        else None,
        "models": ",".join(request.model_names()) or None,
    }
    with _mlflow_errors("run", run_id):
        client.log_batch(
            run_id, params=[Param(k, str(v)) for k, v in params.items() if v is not None]
        )
        client.log_dict(run_id, request.model_dump(mode="json"), "request.json")


def _model_info(version: Any) -> ModelInfo:
    tags = {str(k): str(v) for k, v in (version.tags or {}).items()}
    return ModelInfo(
        name=version.name,
        version=str(version.version),
        uri=f"models:/{version.name}/{version.version}",
        type="mlflow_model",
        description=version.description or None,
        run_name=tags.get("detectkit.run") or version.run_id or None,
        tags=tags,
    )


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else uri)
    raise NotFoundError(f"{uri}: not a local path; the local backend stores models on disk")


def _versions(base: Path) -> list[str]:
    if not base.is_dir():
        return []
    return [p.name for p in base.iterdir() if (p / _ASSET_FILE).is_file()]


def _next_number(versions: list[str]) -> int:
    return max((int(v) for v in versions if v.isdigit()), default=0) + 1


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


@contextlib.contextmanager
def _mlflow_errors(what: str, name: str = "") -> Iterator[None]:
    """Translate MLflow exceptions into detectkit errors (the one boundary)."""
    try:
        yield
    except DetectkitError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith(("mlflow", "sqlalchemy")):
            raise mlflow_error(exc, f"{what} {name!r}" if name else what) from exc
        raise
