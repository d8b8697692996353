"""Batch endpoints on Azure ML: deploy an MLflow model, start scoring jobs, fetch the output.

:class:`AzureBatchMethods` holds the batch methods of :class:`~detectkit.backends.azure.
AzureBackend` (a base class of it):

* ``deploy_batch``: ``BatchEndpoint`` (AAD-token auth), then a ``ModelBatchDeployment`` of the
  registered MLflow model with ``ModelBatchDeploymentSettings`` (no scoring script or
  environment: Azure ML generates them for MLflow models), then the endpoint's
  ``defaults.deployment_name`` set to it, so a job needs no deployment name;
* ``submit_batch_job``: ``batch_endpoints.invoke`` with a ``uri_folder`` input (a data asset, a
  datastore or public URI, or a local folder uploaded first as a ``uri_folder`` data asset
  under ``detectkit/batch-inputs/<endpoint>/<job>/``), a job name of detectkit's choosing and
  the ``score`` output pinned to ``azureml://datastores/workspaceblobstore/paths/
  detectkit/batch-outputs/<endpoint>/<job>/``, so the output can be found again from the job
  name alone;
* ``download_batch_output``: the blobs under that output folder, through the datastore's container on the
  ``MLClient``'s transport.

azure-ai-ml is imported inside the methods.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from detectkit.backends.azure.datasets import container_client, upload_files
from detectkit.backends.azure.errors import boundary
from detectkit.backends.azure.records import state_value
from detectkit.backends.azure.runs import run_info
from detectkit.batch import BatchDeploymentSettings, BatchEndpointInfo, BatchInput, BatchJobInfo
from detectkit.errors import EndpointError, InvalidInputError, NotFoundError
from detectkit.records import ModelInfo, RunStatus

__all__ = ["INPUT_PREFIX", "OUTPUT_NAME", "OUTPUT_PREFIX", "OUTPUT_STORE", "AzureBatchMethods"]

#: The output a model batch deployment writes its predictions to.
OUTPUT_NAME = "score"
#: The workspace's default blob datastore, where outputs go.
OUTPUT_STORE = "workspaceblobstore"
OUTPUT_PREFIX = "detectkit/batch-outputs"
INPUT_PREFIX = "detectkit/batch-inputs"

_DATASTORE_PATH = re.compile(r"azureml://(?:.*/)?datastores/(?P<store>[^/]+)/paths/(?P<prefix>.+)$")


class AzureBatchMethods:
    """The batch endpoint methods of :class:`~detectkit.backends.azure.AzureBackend` (a base
    class of it): they use its ``MLClient``, credential and transport (which also carries the
    blob transfers)."""

    ml_client: Any
    _credential: Any
    _transport: Any

    # ------------------------------------------------------------------ endpoints
    def deploy_batch(
        self,
        model: ModelInfo,
        endpoint: str,
        deployment: str,
        settings: BatchDeploymentSettings,
    ) -> BatchEndpointInfo:
        """Create or update the endpoint and the deployment, check the deployment succeeded,
        then make it the endpoint's default."""
        from azure.ai.ml.entities import (
            BatchEndpoint,
            BatchRetrySettings,
            ModelBatchDeployment,
            ModelBatchDeploymentSettings,
        )

        with boundary("batch endpoint", endpoint):
            self.ml_client.batch_endpoints.begin_create_or_update(
                BatchEndpoint(name=endpoint, description="detectkit batch scoring")
            ).result()
        entity = ModelBatchDeployment(
            name=deployment,
            endpoint_name=endpoint,
            model=f"azureml:{model.name}:{model.version}",
            compute=settings.compute,
            settings=ModelBatchDeploymentSettings(
                instance_count=settings.instance_count,
                mini_batch_size=settings.mini_batch_size,
                max_concurrency_per_instance=settings.max_concurrency_per_instance,
                output_action=settings.output_action,
                output_file_name=settings.output_file_name,
                error_threshold=settings.error_threshold,
                logging_level=settings.logging_level,
                retry_settings=BatchRetrySettings(
                    max_retries=settings.max_retries, timeout=settings.retry_timeout
                ),
            ),
        )
        with boundary("batch deployment", f"{endpoint}/{deployment}"):
            result = self.ml_client.batch_deployments.begin_create_or_update(entity).result()
        state = state_value(getattr(result, "provisioning_state", None))
        if state.lower() != "succeeded":
            raise EndpointError(
                f"batch deployment {deployment!r} of endpoint {endpoint!r} ended {state}; "
                "it was not made the default",
                hint=f"check that compute {settings.compute!r} exists and that the model is "
                "an MLflow model (project.models.get(name).info.type == 'mlflow_model')",
            )
        with boundary("batch endpoint", endpoint):
            current = self.ml_client.batch_endpoints.get(endpoint)
            current.defaults = {"deployment_name": deployment}
            self.ml_client.batch_endpoints.begin_create_or_update(current).result()
        return self.get_batch_endpoint(endpoint)

    def get_batch_endpoint(self, name: str) -> BatchEndpointInfo:
        """A batch endpoint's state and its deployments."""
        with boundary("batch endpoint", name):
            entity = self.ml_client.batch_endpoints.get(name)
        return _endpoint_info(entity, list(self._output_files(name)))

    def list_batch_endpoints(self) -> list[BatchEndpointInfo]:
        """Every batch endpoint (``deployments`` left empty: one more call each)."""
        with boundary("batch endpoints", "of the workspace"):
            return [_endpoint_info(e, []) for e in self.ml_client.batch_endpoints.list()]

    # ------------------------------------------------------------------ jobs
    def submit_batch_job(
        self, endpoint: str, data: BatchInput, *, deployment: str | None, job_name: str | None
    ) -> BatchJobInfo:
        """Start a scoring job over ``data`` (uploading local files first)."""
        from azure.ai.ml import Input, Output
        from azure.ai.ml.constants import AssetTypes

        with boundary("batch endpoint", endpoint):
            entity = self.ml_client.batch_endpoints.get(endpoint)
        outputs = self._output_files(endpoint)
        info = _endpoint_info(entity, list(outputs))
        chosen = deployment or info.default_deployment
        if not chosen:
            raise NotFoundError(
                f"batch endpoint {endpoint!r} has no default deployment; deploy a model with "
                "project.deploy_batch(model, endpoint, compute=...) first"
            )
        if chosen not in info.deployments:
            raise NotFoundError(
                f"batch endpoint {endpoint!r} has no deployment {chosen!r}; its deployments "
                f"are {list(info.deployments)}"
            )
        job_name = job_name or f"{endpoint}-{uuid.uuid4().hex[:12]}"
        uri = data.uri if data.uri is not None else self._upload(endpoint, job_name, data)
        output_uri = (
            f"azureml://datastores/{OUTPUT_STORE}/paths/{OUTPUT_PREFIX}/{endpoint}/{job_name}/"
        )
        with boundary("batch endpoint", endpoint):
            job = self.ml_client.batch_endpoints.invoke(
                endpoint_name=endpoint,
                deployment_name=deployment,
                inputs={"input": Input(type=AssetTypes.URI_FOLDER, path=uri)},
                outputs={OUTPUT_NAME: Output(type=AssetTypes.URI_FOLDER, path=output_uri)},
                job_name=job_name,
            )
        return BatchJobInfo(
            name=job_name,
            status=_status(job.status),
            status_raw=job.status,
            endpoint=endpoint,
            deployment=chosen,
            input_uri=uri,
            output_uri=output_uri,
            output_file_name=outputs[chosen],
        )

    def get_batch_job(self, name: str) -> BatchJobInfo:
        """A scoring job's state; a failed job carries the service's error message."""
        with boundary("batch job", name):
            job = self.ml_client.jobs.get(name)
        run = run_info(self.ml_client, job)
        outputs = getattr(job, "outputs", None) or {}
        inputs = getattr(job, "inputs", None) or {}
        output = outputs.get(OUTPUT_NAME)
        data = inputs.get("input")
        return BatchJobInfo(
            name=run.name,
            status=run.status,
            status_raw=run.status_raw,
            endpoint=_endpoint_of(name),
            input_uri=_path_of(data),
            output_uri=_path_of(output)
            or f"azureml://datastores/{OUTPUT_STORE}/paths/{OUTPUT_PREFIX}/"
            f"{_endpoint_of(name)}/{name}/",
            error=run.error,
            studio_url=run.studio_url,
            created_at=run.created_at,
        )

    def download_batch_output(self, job: BatchJobInfo, directory: Path) -> list[Path]:
        """Download every blob under the job's output folder into ``directory``."""
        match = _DATASTORE_PATH.match(job.output_uri or "")
        if match is None:
            raise InvalidInputError(
                f"batch job {job.name!r}: output {job.output_uri!r} is not a datastore path "
                "(azureml://datastores/<store>/paths/<folder>/); download it with "
                f"az ml job download --name {job.name} --output-name {OUTPUT_NAME}"
            )
        store_name, prefix = match["store"], match["prefix"].rstrip("/") + "/"
        with boundary("datastore", store_name):
            store = self.ml_client.datastores.get(store_name, include_secrets=True)
        container = container_client(store, self._credential, self._transport)
        directory.mkdir(parents=True, exist_ok=True)
        files: list[Path] = []
        with boundary("output of batch job", job.name):
            for blob in container.list_blobs(name_starts_with=prefix):
                relative = PurePosixPath(str(blob.name)[len(prefix) :])
                if not relative.parts or relative.is_absolute() or ".." in relative.parts:
                    continue
                local = directory.joinpath(*relative.parts)
                local.parent.mkdir(parents=True, exist_ok=True)
                with open(local, "wb") as fh:
                    container.download_blob(blob.name).readinto(fh)
                files.append(local)
        return files

    # ------------------------------------------------------------------ helpers
    def _output_files(self, endpoint: str) -> dict[str, str]:
        """Each deployment of ``endpoint`` and the output file it writes."""
        with boundary("batch deployments of", endpoint):
            found = self.ml_client.batch_deployments.list(endpoint)
            return {str(d.name): _output_file(d) for d in found}

    def _upload(self, endpoint: str, job_name: str, data: BatchInput) -> str:
        """Upload local images as a ``uri_folder`` data asset; returns its URI."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data

        root = data.folder
        prefix = f"{INPUT_PREFIX}/{endpoint}/{job_name}"
        uploads = []
        for path in data.files:
            rel = path.relative_to(root).as_posix() if root is not None else path.name
            uploads.append((path, f"{prefix}/{rel}"))
        with boundary("batch input of", endpoint):
            store = self.ml_client.datastores.get_default(include_secrets=True)
            container = container_client(store, self._credential, self._transport)
            upload_files(container, uploads)
            asset = Data(
                name=f"{endpoint}-input",
                version=job_name,
                type=AssetTypes.URI_FOLDER,
                path=f"azureml://datastores/{store.name}/paths/{prefix}/",
                description=f"images for batch job {job_name}",
                tags={"detectkit.images": str(len(uploads))},
            )
            created = self.ml_client.data.create_or_update(asset)
        return f"azureml:{created.name}:{created.version}"


def _endpoint_info(entity: Any, deployments: list[str]) -> BatchEndpointInfo:
    defaults = getattr(entity, "defaults", None)
    default = (
        defaults.get("deployment_name")
        if isinstance(defaults, dict)
        else getattr(defaults, "deployment_name", None)
    )
    return BatchEndpointInfo(
        name=entity.name,
        scoring_uri=getattr(entity, "scoring_uri", None),
        default_deployment=default or None,
        state=state_value(getattr(entity, "provisioning_state", None)),
        deployments=tuple(sorted(deployments)),
    )


def _output_file(deployment: Any) -> str:
    settings = getattr(deployment, "settings", None)
    name = getattr(deployment, "output_file_name", None) or getattr(
        settings, "output_file_name", None
    )
    return str(name or "predictions.csv")


def _status(value: Any) -> RunStatus:
    return RunStatus.parse(None if value is None else state_value(value))


def _path_of(item: Any) -> str | None:
    path = getattr(item, "path", None)
    return str(path) if path else None


def _endpoint_of(job_name: str) -> str:
    """The endpoint of a job named by :meth:`AzureBatchMethods.submit_batch_job` (``<endpoint>-<12 hex>``)."""
    head, _, tail = job_name.rpartition("-")
    return head if head and re.fullmatch(r"[0-9a-f]{12}", tail) else job_name
