"""The Azure Machine Learning backend: ``Project.azure(...)`` works through this class.

:class:`AzureBackend` implements the :class:`~detectkit.backends.base.Backend` protocol over
azure-ai-ml (data assets, AutoML jobs, models, online endpoints) and MLflow with azureml-mlflow
(trials, metrics, model download). Everything foreign is imported inside the methods, so
``import detectkit`` never pays for azure-ai-ml (~3 s) or MLflow (~4.5 s), and every foreign
exception is translated into detectkit's error tree by :func:`translate_error`.

Layout of a data asset made by :meth:`AzureBackend.create_dataset` (one ``mltable`` asset,
images included), on the workspace's default blob datastore::

    detectkit/datasets/<name>/<version>/
        MLTable              read_json_lines + image_url as stream_info
        annotations.jsonl    image_url = azureml://subscriptions/.../paths/<prefix>/images/<file>
        images/<file>        the images, under their path relative to the data set root
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import SecretStr

from detectkit.backends.azure.assist import start_assistant
from detectkit.backends.azure.batch import AzureBatchMethods
from detectkit.backends.azure.datasets import next_version, upload_dataset
from detectkit.backends.azure.downloads import download_model_folder
from detectkit.backends.azure.errors import boundary, translate_error
from detectkit.backends.azure.jobs import build_deployment_entities, build_job
from detectkit.backends.azure.labeling import AzureLabelingMethods
from detectkit.backends.azure.records import (
    asset_ref,
    dataset_asset,
    endpoint_info,
    model_info,
    state_value,
)
from detectkit.backends.azure.runs import run_info
from detectkit.backends.azure.scoring import (
    Scorer,
    deployment_concurrency,
    serving_deployment,
)
from detectkit.backends.mlflow_runs import (
    BEST_CHILD_TAG,
    LABELS_ARTIFACT,
    MODEL_ARTIFACT,
    child_runs,
    is_sweep_parent,
    trial_from_run,
    version_key,
)
from detectkit.errors import (
    AuthenticationError,
    ConflictError,
    DetectkitError,
    EndpointError,
    InvalidInputError,
    InvalidSettingsError,
    MissingDependencyError,
    NotFoundError,
)
from detectkit.records import (
    DatasetAsset,
    EndpointInfo,
    EndpointKeys,
    ModelInfo,
    RunInfo,
    Trial,
)

if TYPE_CHECKING:
    from detectkit.backends.base import ModelSource
    from detectkit.dataset import LabeledDataset
    from detectkit.settings.request import DeploymentSettings, RunMetadata, TrainingRequest

__all__ = ["AzureBackend", "translate_error"]

logger = logging.getLogger("detectkit.azure")


class AzureBackend(AzureBatchMethods, AzureLabelingMethods):
    """Work against an Azure ML workspace (use :meth:`detectkit.Project.azure`).

    Args:
        subscription_id: Azure subscription id.
        resource_group: Resource group of the workspace.
        workspace: Workspace name.
        credential: An azure-identity credential; ``DefaultAzureCredential()`` by default.
        mlflow_tracking_uri: MLflow tracking URI for trials, metrics and model download; by
            default the workspace's own (``azureml://<region>.api.azureml.ms/mlflow/...``).
        retry_sleep: Function used to wait between retried scoring calls (``time.sleep``).
        **client_kwargs: Passed to ``azure.ai.ml.MLClient``. A ``transport=`` is also used for
            the scoring calls and the image uploads, so a test can replay all HTTP.
    """

    kind = "azure"

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        credential: Any = None,
        mlflow_tracking_uri: str | None = None,
        retry_sleep: Callable[[float], None] = time.sleep,
        **client_kwargs: Any,
    ) -> None:
        try:
            from azure.ai.ml import MLClient
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise MissingDependencyError(
                "azure-ai-ml is not installed; it is needed for Project.azure(). "
                "Install it with: pip install azure-ai-ml azure-identity"
            ) from exc
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self._credential = credential
        self._transport = client_kwargs.get("transport")
        self._tracking_uri = mlflow_tracking_uri
        self._mlflow_client: Any = None
        self._scorer = Scorer(self._target, transport=self._transport, sleep=retry_sleep)
        with boundary("workspace", workspace):
            self.ml_client = MLClient(
                credential, subscription_id, resource_group, workspace, **client_kwargs
            )

    def __repr__(self) -> str:
        return f"AzureBackend(workspace={self.workspace!r}, resource_group={self.resource_group!r})"

    # ================================================================== data assets
    def create_dataset(
        self,
        name: str,
        dataset: LabeledDataset,
        *,
        version: str | None,
        description: str | None,
    ) -> DatasetAsset:
        """Upload the images and JSONL + ``MLTable`` as one ``mltable`` data asset.

        The layout is in this module's docstring. An existing ``name:version`` is refused
        before anything is uploaded.
        """
        workspace_url = (
            f"azureml://subscriptions/{self.subscription_id}/resourcegroups/"
            f"{self.resource_group}/workspaces/{self.workspace}"
        )
        return upload_dataset(
            self.ml_client,
            workspace_url,
            name,
            dataset,
            version=version,
            description=description,
            credential=self._credential,
            transport=self._transport,
        )

    def get_dataset(self, name: str, version: str | None = None) -> DatasetAsset:
        """A data asset (latest version when ``version`` is None)."""
        with boundary("data asset", asset_ref(name, version)):
            if version is None:
                data = self.ml_client.data.get(name, label="latest")
            else:
                data = self.ml_client.data.get(name, version=version)
        return dataset_asset(data)

    def list_datasets(self) -> list[DatasetAsset]:
        """Every data asset (latest versions)."""
        with boundary("data assets", self.workspace):
            containers = list(self.ml_client.data.list())
        return [
            DatasetAsset(
                name=c.name,
                version=str(c.latest_version or c.version),
                uri=f"azureml:{c.name}:{c.latest_version or c.version}",
                description=c.description,
            )
            for c in containers
        ]

    # ================================================================== training
    def plan_training(
        self, request: TrainingRequest, metadata: RunMetadata | None = None
    ) -> object:
        """The ``ImageObjectDetectionJob`` that :meth:`submit_training` would submit (no HTTP),
        with ``metadata``'s name, display name, description, tags and log level."""
        if not request.compute and not request.instance_type:
            raise InvalidSettingsError(
                "compute: expected a compute cluster name (a GPU cluster such as 'gpu-cluster'), "
                "got none; pass compute= to Project.train (create one in Azure ML studio > "
                "Compute > Compute clusters), or instance_type= for serverless compute"
            )
        return build_job(request, metadata)

    def submit_training(
        self, request: TrainingRequest, metadata: RunMetadata | None = None
    ) -> RunInfo:
        """Submit the AutoML object detection job; returns its first state."""
        job = self.plan_training(request, metadata)
        with boundary("training job for", request.training_data):
            created = self.ml_client.jobs.create_or_update(job)
        return self._run_info(created)

    def get_run(self, name: str) -> RunInfo:
        """Current state of a job; a failed job carries its own error message."""
        with boundary("job", name):
            job = self.ml_client.jobs.get(name)
        return self._run_info(job)

    def list_runs(self) -> list[RunInfo]:
        """The workspace's jobs (pipeline children excluded by the service), newest first."""
        with boundary("jobs", self.workspace):
            runs = [self._run_info(job) for job in self.ml_client.jobs.list()]
        return sorted(runs, key=lambda r: r.created_at.timestamp() if r.created_at else 0.0)[::-1]

    def cancel_run(self, name: str) -> None:
        """Ask Azure ML to cancel the job (returns once the request is accepted)."""
        with boundary("job", name):
            self.ml_client.jobs.begin_cancel(name).result()

    def run_metrics(self, name: str) -> dict[str, float]:
        """Metrics of the best trial (of the run itself when no best trial is known yet)."""
        client = self._mlflow()
        with boundary("run", name):
            parent = client.get_run(name)
            best = parent.data.tags.get(BEST_CHILD_TAG)
            run = client.get_run(best) if best else parent
        return {k: float(v) for k, v in run.data.metrics.items()}

    def list_trials(self, name: str) -> list[Trial]:
        """Every trial of the sweep, with hyperparameters and metrics, oldest first.

        AutoML sweeps have an intermediate ``<job>_HD`` parent between the job and its trials;
        both shapes are handled.
        """
        client = self._mlflow()
        with boundary("run", name):
            parent = client.get_run(name)
            best = parent.data.tags.get(BEST_CHILD_TAG)
            experiment = parent.info.experiment_id
            runs = []
            for child in child_runs(client, experiment, parent.info.run_id):
                if is_sweep_parent(child):
                    runs.extend(child_runs(client, experiment, child.info.run_id))
                else:
                    runs.append(child)
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        return [trial_from_run(r, best) for r in runs]

    def best_trial(self, name: str) -> Trial | None:
        """The trial named by the ``automl_best_child_run_id`` tag (None until AutoML sets it)."""
        client = self._mlflow()
        with boundary("run", name):
            best = client.get_run(name).data.tags.get(BEST_CHILD_TAG)
            if not best:
                return None
            return trial_from_run(client.get_run(best), best)

    def download_model(self, name: str, directory: Path) -> Path:
        """Download the best trial's ``outputs/mlflow-model`` into ``directory/mlflow-model``,
        and ``train_artifacts/labels.json`` beside it when the trial has one."""
        client = self._mlflow()
        best = self._best_child(name, use_mlflow=True)
        target = directory / "mlflow-model"
        if target.exists() and any(target.iterdir()):
            raise ConflictError(
                f"{target} already exists and is not empty; pass another directory or remove it"
            )
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as tmp:
            with boundary("model artifacts of trial", best):
                local = client.download_artifacts(best, MODEL_ARTIFACT, tmp)
            if not (Path(local) / "MLmodel").is_file():
                raise NotFoundError(
                    f"trial {best!r} has no MLflow model at {MODEL_ARTIFACT}/MLmodel; "
                    "was the run trained by AutoML for images?"
                )
            if target.exists():
                target.rmdir()
            shutil.move(local, target)
            try:
                labels = client.download_artifacts(best, LABELS_ARTIFACT, tmp)
            except Exception as exc:  # the labels are a bonus; the model is what was asked for
                logger.info("no %s in trial %s: %s", LABELS_ARTIFACT, best, exc)
            else:
                shutil.move(labels, directory / "labels.json")
        return target

    # ================================================================== models
    def download_registered_model(self, name: str, version: str | None, directory: Path) -> Path:
        """Download model ``name:version``'s MLflow folder so ``directory`` holds ``MLmodel``
        (from its datastore path, or from the job's MLflow run for a job output)."""
        version = version or self.get_model(name).version
        return download_model_folder(
            self.ml_client,
            name,
            version,
            directory,
            credential=self._credential,
            transport=self._transport,
            mlflow_client=self._mlflow,
        )

    def export_onnx(self, name: str, version: str, path: Path) -> Path:
        """Not done here: AutoML writes the ONNX file itself during training."""
        raise InvalidInputError(
            f"model {name}:{version}: detectkit exports local models only; AutoML writes "
            "the ONNX file itself: train_artifacts/model.onnx and labels.json in the outputs "
            "of the AutoML job's best trial (download them with `az ml job download --name "
            "<trial job> --all` or from the job's Outputs + logs in the studio)"
        )

    def register_model(
        self, source: ModelSource, name: str, *, version: str | None, description: str | None
    ) -> ModelInfo:
        """Register an MLflow model: a run's best trial, one trial, or a local folder."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        tags: dict[str, str] = {}
        if source.path is not None:
            path = str(source.path)
            tags["detectkit.source"] = "local"
        else:
            trial = source.trial_name or self._best_child(str(source.run_name))
            path = f"azureml://jobs/{trial}/outputs/artifacts/{MODEL_ARTIFACT}/"
            tags["detectkit.trial"] = trial
            if source.run_name:
                tags["detectkit.run"] = source.run_name
        with boundary("model", name):
            if version is None:
                version = next_version(self.ml_client.models.list(name=name))
            model = Model(
                name=name,
                version=version,
                path=path,
                type=AssetTypes.MLFLOW_MODEL,
                description=description,
                tags=tags,
            )
            created = self.ml_client.models.create_or_update(model)
        return model_info(created)

    def get_model(self, name: str, version: str | None = None) -> ModelInfo:
        """A model version (the highest version when ``version`` is None)."""
        with boundary("model", asset_ref(name, version)):
            if version is None:
                versions = list(self.ml_client.models.list(name=name))
                if not versions:
                    raise NotFoundError(
                        f"model {name!r} has no versions in workspace {self.workspace!r}; "
                        "register one with project.models.register(run, name)"
                    )
                return model_info(max(versions, key=lambda m: version_key(m.version)))
            return model_info(self.ml_client.models.get(name, version=version))

    def list_models(self, name: str | None = None) -> list[ModelInfo]:
        """Every version of ``name``, or the latest version of every model."""
        with boundary("models", name or self.workspace):
            if name is not None:
                found = sorted(
                    self.ml_client.models.list(name=name), key=lambda m: version_key(m.version)
                )
                return [model_info(m) for m in found]
            containers = list(self.ml_client.models.list())
        return [
            ModelInfo(
                name=c.name,
                version=str(c.latest_version or c.version),
                uri=f"azureml:{c.name}:{c.latest_version or c.version}",
                description=c.description,
                tags=dict(c.tags or {}),
            )
            for c in containers
        ]

    # ================================================================== endpoints
    def deploy(
        self, model: ModelInfo, endpoint: str, deployment: str, settings: DeploymentSettings
    ) -> EndpointInfo:
        """Create or update the endpoint and the deployment, check the deployment succeeded,
        then route 100% of the traffic to it (new deployments get 0% on Azure)."""
        from azure.core.exceptions import ResourceNotFoundError

        ep_entity, dep_entity = build_deployment_entities(
            f"azureml:{model.name}:{model.version}", endpoint, deployment, settings
        )
        with boundary("endpoint", endpoint):
            try:
                existing = self.ml_client.online_endpoints.get(endpoint)
            except ResourceNotFoundError:
                existing = None
            if existing is not None:  # keep serving the current deployments meanwhile
                ep_entity.traffic = {k: v for k, v in (existing.traffic or {}).items() if v}
            self.ml_client.online_endpoints.begin_create_or_update(ep_entity).result()
        with boundary("deployment", f"{endpoint}/{deployment}"):
            result = self.ml_client.online_deployments.begin_create_or_update(dep_entity).result()
            state = state_value(getattr(result, "provisioning_state", None))
            if state.lower() != "succeeded":
                current = self.ml_client.online_deployments.get(deployment, endpoint)
                state = state_value(current.provisioning_state)
        if state.lower() != "succeeded":
            raise EndpointError(
                f"deployment {deployment!r} of endpoint {endpoint!r} ended {state} (the endpoint "
                f"itself may still say Succeeded); traffic was not moved to it."
                f"{self._log_tail(endpoint, deployment)}",
                hint=f"read endpoint.logs(deployment={deployment!r}); for probe failures keep the "
                "default DeploymentSettings probes, for quota errors pick another instance_type",
            )
        with boundary("endpoint", endpoint):
            ep_entity.traffic = {deployment: 100}
            self.ml_client.online_endpoints.begin_create_or_update(ep_entity).result()
        self._scorer.forget(endpoint)
        return self.get_endpoint(endpoint)

    def get_endpoint(self, name: str) -> EndpointInfo:
        """An endpoint's state; ``deployments`` lists every deployment (0% ones too)."""
        with boundary("endpoint", name):
            entity = self.ml_client.online_endpoints.get(name)
        return endpoint_info(entity)

    def list_endpoints(self) -> list[EndpointInfo]:
        """Every online endpoint (``deployments`` lists those receiving traffic)."""
        with boundary("endpoints", self.workspace):
            return [endpoint_info(e) for e in self.ml_client.online_endpoints.list()]

    def endpoint_keys(self, name: str) -> EndpointKeys:
        """The endpoint's keys (or its token, for token-auth endpoints), as secrets."""
        with boundary("endpoint", name):
            auth = self.ml_client.online_endpoints.get_keys(name)
        primary = getattr(auth, "primary_key", None) or getattr(auth, "access_token", None)
        if not primary:
            raise AuthenticationError(
                f"endpoint {name!r} returned no key or token; check its auth mode and your access"
            )
        secondary = getattr(auth, "secondary_key", None)
        return EndpointKeys(
            primary=SecretStr(primary), secondary=SecretStr(secondary) if secondary else None
        )

    def invoke(self, name: str, body: bytes, *, deployment: str | None, timeout: float) -> bytes:
        """POST ``body`` to the scoring URI, from memory, with the endpoint key.

        429 and 503 answers are retried up to ``MAX_RETRIES`` times with exponential backoff
        (honouring ``Retry-After``); a 401 refreshes the key once. Other errors raise
        :class:`~detectkit.EndpointError` with a hint; the key never appears in a message.
        """
        return self._scorer.invoke(name, body, deployment=deployment, timeout=timeout)

    def endpoint_concurrency(self, name: str, deployment: str | None) -> int:
        """Requests the deployment serves at once: instances x max concurrent per instance."""
        deployment = deployment or serving_deployment(self.get_endpoint(name))
        with boundary("deployment", f"{name}/{deployment}"):
            return deployment_concurrency(self.ml_client.online_deployments.get(deployment, name))

    def endpoint_logs(self, name: str, *, deployment: str | None, lines: int) -> str:
        """The last ``lines`` lines of a deployment's container log (by default the deployment
        with the most traffic)."""
        deployment = deployment or serving_deployment(self.get_endpoint(name))
        with boundary("deployment", f"{name}/{deployment}"):
            return str(
                self.ml_client.online_deployments.get_logs(
                    name=deployment, endpoint_name=name, lines=lines
                )
            )

    def set_traffic(self, name: str, traffic: Mapping[str, int]) -> EndpointInfo:
        """Set the traffic split, e.g. ``{"blue": 100}``."""
        with boundary("endpoint", name):
            entity = self.ml_client.online_endpoints.get(name)
            unknown = sorted(set(traffic) - set(entity.traffic or {}))
            if unknown:
                raise NotFoundError(
                    f"endpoint {name!r} has no deployment {unknown[0]!r}; its deployments are "
                    f"{sorted(entity.traffic or {})}"
                )
            entity.traffic = {k: int(v) for k, v in traffic.items()}
            self.ml_client.online_endpoints.begin_create_or_update(entity).result()
        return self.get_endpoint(name)

    def delete_endpoint(self, name: str) -> None:
        """Delete the endpoint and its deployments (waits until Azure is done)."""
        with boundary("endpoint", name):
            self.ml_client.online_endpoints.begin_delete(name=name).result()
        self._scorer.forget(name)

    def score_images(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: batch scoring on Azure is a batch endpoint's job."""
        raise InvalidInputError(
            "project.score runs a model on this machine; on Azure ML score many images with a "
            "batch endpoint (project.deploy_batch(model, endpoint, compute=...)), or pass the "
            "MLflow model folder (registered_model.download(dir)) to project.score"
        )

    def start_assistant(self, folder: Path) -> int:
        """Start the labeling trainer of the project whose cached store is ``folder`` (ML
        assistance: AutoML, then an online endpoint; :mod:`detectkit.backends.azure.assist`)
        in a background thread; returns this process's id."""
        return start_assistant(self, Path(folder))

    # ================================================================== helpers
    def _run_info(self, job: Any) -> RunInfo:
        return run_info(self.ml_client, job)

    def _best_child(self, name: str, *, use_mlflow: bool = False) -> str:
        """The best trial's name: from the job's tags (no MLflow import needed), else from the
        MLflow parent run."""
        best = status = None
        if not use_mlflow:
            with boundary("job", name):
                job = self.ml_client.jobs.get(name)
            best = (job.tags or {}).get(BEST_CHILD_TAG)
            status = state_value(job.status)
        if not best:
            with boundary("run", name):
                run = self._mlflow().get_run(name)
            best = run.data.tags.get(BEST_CHILD_TAG)
            status = status or run.info.status
        if not best:
            raise NotFoundError(
                f"run {name!r} has no best trial yet (status {status}; AutoML sets the "
                f"{BEST_CHILD_TAG!r} tag when trials complete): call run.wait() first, or "
                "register one trial from run.trials()"
            )
        return str(best)

    def _mlflow(self) -> Any:
        """An ``MlflowClient`` on the workspace's tracking URI (or the injected one)."""
        if self._mlflow_client is None:
            try:
                from mlflow.tracking import MlflowClient
            except ImportError as exc:
                raise MissingDependencyError(
                    "mlflow is not installed; it is needed for trials, metrics and model "
                    "download. Install it with: pip install mlflow azureml-mlflow"
                ) from exc
            uri = self._tracking_uri
            if uri is None:
                with boundary("workspace", self.workspace):
                    uri = self.ml_client.workspaces.get(self.workspace).mlflow_tracking_uri
            if str(uri).startswith("azureml:"):
                try:
                    import azureml.mlflow  # noqa: F401  (registers the azureml:// scheme)
                except ImportError as exc:
                    raise MissingDependencyError(
                        "azureml-mlflow is not installed; it is needed to read runs from an "
                        "Azure ML workspace. Install it with: pip install azureml-mlflow"
                    ) from exc
            self._tracking_uri = str(uri)
            self._mlflow_client = MlflowClient(tracking_uri=self._tracking_uri)
        return self._mlflow_client

    def _target(self, name: str) -> tuple[str, SecretStr]:
        """Scoring URI and key of an endpoint (:class:`Scorer` caches them)."""
        info = self.get_endpoint(name)
        if not info.scoring_uri:
            raise EndpointError(
                f"endpoint {name!r} has no scoring URI yet (state {info.state})",
                hint="wait for the endpoint to finish provisioning",
            )
        return info.scoring_uri, self.endpoint_keys(name).primary

    def _log_tail(self, endpoint: str, deployment: str, lines: int = 15) -> str:
        try:
            logs = self.endpoint_logs(endpoint, deployment=deployment, lines=lines)
        except DetectkitError:
            return ""
        return "\n  last log lines:\n    " + "\n    ".join(logs.strip().splitlines()[-lines:])
