"""Conversions from azure-ai-ml entities and MLflow runs to detectkit's records.

Pure functions over duck-typed objects (nothing here imports azure or MLflow), used by
:class:`~detectkit.backends.azure.AzureBackend`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectkit.images import is_remote
from detectkit.records import (
    DatasetAsset,
    EndpointInfo,
    ModelInfo,
)

if TYPE_CHECKING:
    from detectkit.dataset import LabeledDataset

__all__ = [
    "asset_ref",
    "dataset_asset",
    "endpoint_info",
    "model_info",
    "plan_uploads",
    "state_value",
]


def state_value(value: Any) -> str:
    """An azure-ai-ml enum member or string as its service value (``"Succeeded"``)."""
    if value is None:
        return "Unknown"
    return str(getattr(value, "value", value))


def asset_ref(name: str, version: str | None) -> str:
    return name if version is None else f"{name}:{version}"


def dataset_asset(data: Any) -> DatasetAsset:
    tags = data.tags or {}

    def count(key: str) -> int | None:
        value = str(tags.get(key, ""))
        return int(value) if value.isdigit() else None

    return DatasetAsset(
        name=data.name,
        version=str(data.version),
        uri=f"azureml:{data.name}:{data.version}",
        description=data.description,
        images=count("detectkit.images"),
        boxes=count("detectkit.boxes"),
    )


def model_info(model: Any) -> ModelInfo:
    tags = {str(k): str(v) for k, v in (model.tags or {}).items()}
    return ModelInfo(
        name=model.name,
        version=str(model.version),
        uri=f"azureml:{model.name}:{model.version}",
        type=str(model.type or "mlflow_model"),
        description=model.description,
        run_name=tags.get("detectkit.run") or getattr(model, "job_name", None),
        tags=tags,
    )


def endpoint_info(entity: Any) -> EndpointInfo:
    traffic = {str(k): int(v) for k, v in (entity.traffic or {}).items()}
    return EndpointInfo(
        name=entity.name,
        scoring_uri=entity.scoring_uri,
        traffic=traffic,
        state=state_value(entity.provisioning_state),
        auth_mode=str(entity.auth_mode or "key"),
        deployments=tuple(sorted(traffic)),
    )


def plan_uploads(
    dataset: LabeledDataset, base_url: str
) -> tuple[list[tuple[Path, str]], list[Any]]:
    """Blob names for the local images (``images/<path under the root>``) and the records
    with their ``image`` rewritten to the datastore URL. Remote images are kept as they are."""
    root = os.path.realpath(dataset.root) if dataset.root is not None else None
    uploads: list[tuple[Path, str]] = []
    records = []
    used: dict[str, str] = {}
    for record in dataset.records:
        if is_remote(record.image):
            records.append(record)
            continue
        real = os.path.realpath(record.image)
        rel = os.path.relpath(real, root) if root else record.name
        if rel.startswith(".."):
            rel = record.name
        rel = rel.replace(os.sep, "/")
        blob = "images/" + _safe_blob(rel[len("images/") :] if rel.startswith("images/") else rel)
        if used.get(blob, real) != real:  # two different files with one name
            blob = f"images/{len(used)}_{_safe_blob(record.name)}"
        if blob not in used:
            used[blob] = real
            uploads.append((Path(real), blob))
        sized = record.with_size()
        records.append(sized.model_copy(update={"image": base_url + blob}))
    return uploads, records


def _safe_blob(path: str) -> str:
    return "/".join(re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in path.split("/") if part)
