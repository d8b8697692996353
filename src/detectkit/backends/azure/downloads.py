"""Downloading a registered model version's MLflow folder from an Azure ML workspace.

A model version's path is one of two kinds:

* a datastore path (``azureml://subscriptions/.../datastores/<store>/paths/<prefix>``, what a
  model registered from a local folder gets): its blobs are listed and downloaded through the
  datastore's container, on the ``MLClient``'s transport when one was given (the same client
  :func:`~detectkit.backends.azure.datasets.container_client` builds for uploads);
* a job output (``azureml://jobs/<job>/outputs/artifacts/<path>``, what a model registered from
  an AutoML trial gets): the artifacts are downloaded from the job's MLflow run.

Either way the folder holding ``MLmodel`` becomes the target directory. azure-ai-ml and MLflow
are imported by the callers' objects, never here at module level.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from detectkit.backends.azure.datasets import container_client
from detectkit.backends.azure.errors import boundary
from detectkit.backends.azure.records import asset_ref
from detectkit.errors import ConflictError, InvalidInputError, NotFoundError

__all__ = ["download_model_folder"]

_JOB_OUTPUT = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/artifacts/(?P<path>.+?)/?$")
_DATASTORE_PATH = re.compile(r"/datastores/(?P<store>[^/]+)/paths/(?P<prefix>.+?)/?$")


def download_model_folder(
    ml_client: Any,
    name: str,
    version: str,
    directory: Path,
    *,
    credential: Any,
    transport: Any,
    mlflow_client: Callable[[], Any],
) -> Path:
    """Download model ``name:version`` so that ``directory`` holds its ``MLmodel``.

    Raises:
        ConflictError: ``directory`` exists and is not empty.
        NotFoundError: the model has no ``MLmodel`` file (not an MLflow model).
        InvalidInputError: the model's path is neither a datastore path nor a job output.
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConflictError(
            f"{directory} already exists and is not empty; pass another directory or remove it"
        )
    ref = asset_ref(name, version)
    with boundary("model", ref):
        model = ml_client.models.get(name, version=version)
    uri = str(model.path or "")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as tmp:
        job = _JOB_OUTPUT.match(uri)
        store = _DATASTORE_PATH.search(uri)
        if job is not None:
            with boundary("model artifacts of job", job["job"]):
                mlflow_client().download_artifacts(job["job"], job["path"], tmp)
        elif store is not None:
            _download_prefix(
                ml_client, store["store"], store["prefix"], Path(tmp), credential, transport, ref
            )
        else:
            raise InvalidInputError(
                f"model {ref}: path {uri!r} is neither a datastore path "
                "(azureml://.../datastores/<name>/paths/...) nor a job output "
                "(azureml://jobs/<job>/outputs/artifacts/...); download it with "
                "az ml model download"
            )
        found = sorted(Path(tmp).rglob("MLmodel"), key=lambda p: len(p.parts))
        if not found:
            raise NotFoundError(
                f"model {ref} has no MLmodel file; it is not an MLflow model "
                "(register one with project.models.register(run, name))"
            )
        for item in found[0].parent.iterdir():
            shutil.move(str(item), directory / item.name)
    return directory


def _download_prefix(
    ml_client: Any,
    store_name: str,
    prefix: str,
    target: Path,
    credential: Any,
    transport: Any,
    ref: str,
) -> None:
    """Download every blob under ``prefix`` of a datastore into ``target`` (relative paths
    kept); a blob name that would land outside ``target`` is refused."""
    with boundary("datastore", store_name):
        store = ml_client.datastores.get(store_name, include_secrets=True)
    container = container_client(store, credential, transport)
    root = prefix.rstrip("/") + "/"
    count = 0
    with boundary("model", ref):
        for blob in container.list_blobs(name_starts_with=root):
            relative = PurePosixPath(str(blob.name)[len(root) :])
            if not relative.parts or relative.is_absolute() or ".." in relative.parts:
                raise InvalidInputError(
                    f"model {ref}: blob {blob.name!r} is not a file under {root!r}; "
                    "the model folder in the datastore is malformed"
                )
            local = target.joinpath(*relative.parts)
            local.parent.mkdir(parents=True, exist_ok=True)
            with open(local, "wb") as fh:
                container.download_blob(blob.name).readinto(fh)
            count += 1
    if count == 0:
        raise NotFoundError(
            f"model {ref}: no files under {root!r} in datastore {store_name!r}; "
            "the model's files were removed from storage"
        )
