"""Runs, trials and the model registry of the local backend, on the SQLite MLflow store.

Layout under ``root``::

    mlflow.db                    MLflow tracking store AND model registry (SQLite)
    mlartifacts/<experiment>/    run artifacts (each trial's outputs/mlflow-model, labels.json)
    models/<name>/<uuid>/        copies of MLflow model folders registered from a local path

A training run is an MLflow parent run, each trial a child run, and the parent names its best
trial in ``automl_best_child_run_id``, the layout both backends share
(:mod:`detectkit.backends.mlflow_runs`). MLflow exceptions become detectkit errors here, at one
boundary (:func:`mlflow_errors`). MLflow is imported when the client is first made.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from detectkit.backends.local.assets import next_number
from detectkit.backends.local.owner import owner_gone
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
from detectkit.records import ModelInfo, RunInfo, RunStatus, Trial

if TYPE_CHECKING:
    from detectkit.backends.base import ModelSource
    from detectkit.settings.request import TrainingRequest

__all__ = ["LocalRuns", "local_path", "log_request", "mlflow_errors", "model_info", "quote"]


class LocalRuns:
    """Runs, trials and registered models of the project at ``root``.

    Args:
        root: The project folder.
        tracking_uri: ``sqlite:///<root>/mlflow.db``, the tracking store and the registry.
    """

    def __init__(self, root: Path, tracking_uri: str) -> None:
        self.root = root
        self.tracking_uri = tracking_uri
        self._client: Any = None

    def get_run(self, name: str) -> RunInfo:
        """A run (parent or trial) by MLflow run id or run name.

        Raises:
            NotFoundError: No such run in this project.
        """
        run = self.run(name)
        client = self.client
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
            description=tags.get("mlflow.note.content") or None,
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

    def list_runs(self) -> list[RunInfo]:
        """The training runs (parent runs, not their trials) of every experiment, newest first."""
        client = self.client
        with mlflow_errors("runs", str(self.root)):
            ids = [e.experiment_id for e in client.search_experiments()]
            found = client.search_runs(ids, max_results=10_000) if ids else []
        parents = [r for r in found if not r.data.tags.get("mlflow.parentRunId")]
        parents.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id), reverse=True)
        return [self.get_run(r.info.run_id) for r in parents]

    def cancel_run(self, name: str) -> None:
        """Mark a run that a stopped process left ``Running`` as ``Canceled``.

        Training is synchronous: interrupt it with Ctrl-C (``KeyboardInterrupt``).

        Raises:
            ConflictError: The run has ended already.
        """
        run = self.run(name)
        status = RunStatus.parse(run.info.status)
        if status.is_terminal:
            raise ConflictError(
                f"run {run.info.run_id!r} has ended ({status.value}); local training runs in "
                "the calling process, so there is nothing left to cancel"
            )
        with mlflow_errors("run", name):
            self.client.set_terminated(run.info.run_id, "KILLED")

    def run_metrics(self, name: str) -> dict[str, float]:
        """Metrics of the best trial (of the run itself when it has no best trial)."""
        run = self.run(name)
        best = run.data.tags.get(BEST_CHILD_TAG)
        if best:
            run = self.run(best)
        return {k: float(v) for k, v in run.data.metrics.items()}

    def list_trials(self, name: str) -> list[Trial]:
        """Every trial of the run, oldest first, with parameters and final metrics."""
        run = self.run(name)
        best = run.data.tags.get(BEST_CHILD_TAG)
        with mlflow_errors("run", name):
            children = child_runs(self.client, run.info.experiment_id, run.info.run_id)
        children.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        return [trial_from_run(self.settle(r), best) for r in children]

    def best_trial(self, name: str) -> Trial | None:
        """The trial named by the run's ``automl_best_child_run_id`` tag."""
        best = self.run(name).data.tags.get(BEST_CHILD_TAG)
        return None if not best else trial_from_run(self.run(best), best)

    def download_model(self, name: str, directory: Path) -> Path:
        """Copy the best trial's MLflow model to ``directory/mlflow-model`` and its
        ``labels.json`` to ``directory/labels.json``; ``name`` may also be a trial."""
        trial = self.model_run(name)
        target = directory / "mlflow-model"
        if target.exists() and any(target.iterdir()):
            raise ConflictError(
                f"{target} already exists and is not empty; pass another directory or remove it"
            )
        directory.mkdir(parents=True, exist_ok=True)
        client = self.client
        with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as tmp:
            with mlflow_errors("model of trial", trial), quiet_mlflow():
                local = client.download_artifacts(trial, MODEL_ARTIFACT, tmp)
                labels = client.download_artifacts(trial, LABELS_ARTIFACT, tmp)
            if target.exists():
                target.rmdir()
            shutil.move(local, target)
            shutil.move(labels, directory / "labels.json")
        return target

    def model_run(self, name: str) -> str:
        """The trial holding the model: the run's best trial, or the run itself."""
        run = self.run(name)
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
        client = self.client
        tags: dict[str, str] = {}
        run_id: str | None = None
        if source.path is not None:
            folder = Path(source.path)
            if not (folder / "MLmodel").is_file():
                raise NotFoundError(f"{folder}: not an MLflow model folder (no MLmodel file)")
        else:
            trial = source.trial_name or self.model_run(str(source.run_name))
            trial_run = self.run(trial)
            run_id = trial_run.info.run_id
            tags["detectkit.trial"] = run_id
            parent = trial_run.data.tags.get("mlflow.parentRunId")
            if parent:
                tags["detectkit.run"] = parent
            folder = local_path(f"{trial_run.info.artifact_uri}/{MODEL_ARTIFACT}")
            if not (folder / "MLmodel").is_file():
                raise NotFoundError(
                    f"trial {run_id!r} has no MLflow model ({folder}); it failed or was "
                    "stopped before saving one: pick another trial from run.trials()"
                )
        existing = self.versions(name)
        expected = str(next_number(existing))
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
        with mlflow_errors("model", name):
            if not existing:
                with contextlib.suppress(Exception):
                    client.create_registered_model(name)
            created = client.create_model_version(
                name, folder.as_uri(), run_id=run_id, tags=tags, description=description
            )
        return model_info(created)

    def get_model(self, name: str, version: str | None = None) -> ModelInfo:
        """A model version (the highest when ``version`` is None).

        Raises:
            NotFoundError: No such model or version.
        """
        client = self.client
        versions = self.versions(name)
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
        with mlflow_errors("model", f"{name}:{chosen}"):
            return model_info(client.get_model_version(name, chosen))

    def list_models(self, name: str | None = None) -> list[ModelInfo]:
        """Every version of ``name`` (oldest first), or the latest version of every model."""
        client = self.client
        query = "" if name is None else f"name = '{quote(name)}'"
        with mlflow_errors("models", name or str(self.root)):
            found = list(client.search_model_versions(query, max_results=10_000))
        if name is not None:
            return [model_info(v) for v in sorted(found, key=lambda v: int(v.version))]
        latest: dict[str, Any] = {}
        for v in found:
            if v.name not in latest or int(v.version) > int(latest[v.name].version):
                latest[v.name] = v
        return [model_info(latest[k]) for k in sorted(latest)]

    def download_registered_model(self, name: str, version: str | None, directory: Path) -> Path:
        """Copy model ``name:version``'s MLflow folder (with ``MLmodel``) into ``directory``.

        Raises:
            ConflictError: ``directory`` exists and is not empty.
            NotFoundError: No such model or version, or its folder is gone.
        """
        source = self.model_path(self.get_model(name, version))
        if not (source / "MLmodel").is_file():
            raise NotFoundError(
                f"model {name}:{version or 'latest'}: its MLflow folder {source} has no MLmodel "
                "file (was it removed?); register the model again"
            )
        if directory.exists() and any(directory.iterdir()):
            raise ConflictError(
                f"{directory} already exists and is not empty; pass another directory or remove it"
            )
        shutil.copytree(source, directory, dirs_exist_ok=True)
        return directory

    def model_path(self, model: ModelInfo) -> Path:
        """The local MLflow model folder of a registered version."""
        client = self.client
        with mlflow_errors("model", f"{model.name}:{model.version}"):
            version = client.get_model_version(model.name, model.version)
        return local_path(str(version.source))

    def versions(self, name: str) -> list[str]:
        """The registered versions of model ``name``."""
        with mlflow_errors("model", name):
            found = self.client.search_model_versions(f"name = '{quote(name)}'")
        return [str(v.version) for v in found]

    @property
    def client(self) -> Any:
        """An ``MlflowClient`` on ``root/mlflow.db`` (tracking and registry), made on first use."""
        if self._client is None:
            try:
                from mlflow.tracking import MlflowClient
            except ImportError as exc:
                raise missing_dependency("mlflow", "local") from exc
            with mlflow_errors("tracking store", self.tracking_uri), quiet_mlflow():
                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
                self._client.search_experiments(max_results=1)  # creates the database now
        return self._client

    def experiment(self, name: str) -> str:
        """The id of experiment ``name``, created (artifacts under ``root/mlartifacts``) if new."""
        client = self.client
        with mlflow_errors("experiment", name):
            found = client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            location = (self.root / "mlartifacts" / name).as_uri()
            return str(client.create_experiment(name, artifact_location=location))

    def run(self, name: str) -> Any:
        """The MLflow run with id or run name ``name`` (settled: see :meth:`settle`)."""
        return self.settle(self._find(name))

    def settle(self, run: Any) -> Any:
        """Mark a run that reads ``Running`` but whose owning process is gone as ``Failed``
        (tag ``detectkit.error``: "the process that ran it stopped ..."); returns the run as
        it now reads. Runs of other hosts, or without owner tags, are left as they are."""
        status = RunStatus.parse(run.info.status)
        if status.is_terminal:
            return run
        reason = owner_gone(run.data.tags)
        if reason is None:
            return run
        client = self.client
        with mlflow_errors("run", run.info.run_id):
            client.set_tag(run.info.run_id, "detectkit.error", reason)
            client.set_terminated(run.info.run_id, "FAILED")
            return client.get_run(run.info.run_id)

    def _find(self, name: str) -> Any:
        client = self.client
        try:
            return client.get_run(name)
        except Exception as exc:
            if not isinstance(mlflow_error(exc, "run"), NotFoundError):
                raise mlflow_error(exc, f"run {name!r}") from exc
        with mlflow_errors("run", name):
            ids = [e.experiment_id for e in client.search_experiments()]
            found = client.search_runs(
                ids, filter_string=f"tags.mlflow.runName = '{quote(name)}'", max_results=2
            )
        if len(found) != 1:
            raise NotFoundError(
                f"no run {name!r} in {self.tracking_uri} (by run id or run name)"
                + ("; the name is ambiguous, pass the run id" if found else "")
            )
        return found[0]


def log_request(
    client: Any, run_id: str, request: TrainingRequest, n_train: int, n_val: int
) -> None:
    """Log the request's settings as the parent run's params and ``request.json``."""
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
    with mlflow_errors("run", run_id):
        client.log_batch(
            run_id, params=[Param(k, str(v)) for k, v in params.items() if v is not None]
        )
        client.log_dict(run_id, request.model_dump(mode="json"), "request.json")


def model_info(version: Any) -> ModelInfo:
    """The record of an MLflow ``ModelVersion``."""
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


def local_path(uri: str) -> Path:
    """The folder a ``file:`` URI (or plain path) names."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else uri)
    raise NotFoundError(f"{uri}: not a local path; the local backend stores models on disk")


def quote(text: str) -> str:
    """``text`` quoted for an MLflow search filter."""
    return text.replace("'", "\\'")


@contextlib.contextmanager
def mlflow_errors(what: str, name: str = "") -> Iterator[None]:
    """Translate MLflow exceptions into detectkit errors (the one boundary)."""
    try:
        yield
    except DetectkitError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith(("mlflow", "sqlalchemy")):
            raise mlflow_error(exc, f"{what} {name!r}" if name else what) from exc
        raise
