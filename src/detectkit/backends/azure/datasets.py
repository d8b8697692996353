"""Data assets on Azure: a data set uploaded as one ``mltable`` asset, images included.

:func:`upload_dataset` does the work of :meth:`AzureBackend.create_dataset
<detectkit.backends.azure.AzureBackend.create_dataset>`; the layout it writes is drawn in
:mod:`detectkit.backends.azure.backend`. azure-ai-ml and azure-storage-blob are imported
inside the functions.
"""

from __future__ import annotations

import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from detectkit.backends.azure.errors import boundary
from detectkit.backends.azure.records import dataset_asset, plan_uploads
from detectkit.dataset import LabeledDataset
from detectkit.errors import ConflictError
from detectkit.formats.azureml import write_azureml
from detectkit.images import image_info
from detectkit.progress import track
from detectkit.records import DatasetAsset

__all__ = ["DATASET_PREFIX", "container_client", "next_version", "upload_dataset", "upload_files"]

#: Where data assets are written on the workspace's default datastore.
DATASET_PREFIX = "detectkit/datasets"

logger = logging.getLogger("detectkit.azure")


def upload_dataset(
    ml_client: Any,
    workspace_url: str,
    name: str,
    dataset: LabeledDataset,
    *,
    version: str | None,
    description: str | None,
    credential: Any,
    transport: Any,
) -> DatasetAsset:
    """Upload the images and JSONL + ``MLTable`` as data asset ``name:version``.

    ``workspace_url`` is ``azureml://subscriptions/<id>/resourcegroups/<group>/workspaces/
    <name>``. An existing ``name:version`` is refused before anything is uploaded.
    """
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data
    from azure.core.exceptions import ResourceNotFoundError

    with boundary("data asset", name):
        version = version or next_version(ml_client.data.list(name=name))
        try:
            ml_client.data.get(name, version=version)
        except ResourceNotFoundError:
            pass
        else:
            raise ConflictError(
                f"data asset {name}:{version} already exists; versions are immutable: pass "
                "another version= (or none, for the next number)"
            )
        store = ml_client.datastores.get_default(include_secrets=True)
        prefix = f"{DATASET_PREFIX}/{name}/{version}"
        base_url = f"{workspace_url}/datastores/{store.name}/paths/{prefix}/"
        container = container_client(store, credential, transport)
        uploads, records = plan_uploads(dataset, base_url)
        remote = LabeledDataset(records, dataset.classes)
        with tempfile.TemporaryDirectory(prefix="detectkit-") as tmp:
            uploads, rotated = upright_images(uploads, Path(tmp) / "upright")
            if rotated:
                logger.warning(
                    "%d of %d images carry an EXIF orientation: uploaded with the rotation "
                    "applied to the pixels (tag removed), so every AutoML model sees what the "
                    "boxes describe",
                    rotated,
                    len(uploads),
                )
            upload_files(container, [(src, f"{prefix}/{blob}") for src, blob in uploads])
            jsonl = write_azureml(remote, tmp)
            upload_files(
                container,
                [
                    (jsonl, f"{prefix}/{jsonl.name}"),
                    (jsonl.parent / "MLTable", f"{prefix}/MLTable"),
                ],
            )
        data = Data(
            name=name,
            version=version,
            type=AssetTypes.MLTABLE,
            path=f"azureml://datastores/{store.name}/paths/{prefix}/",
            description=description,
            tags={
                "detectkit.images": str(len(dataset)),
                "detectkit.boxes": str(dataset.num_boxes),
                "detectkit.classes": ",".join(dataset.classes),
                **({"detectkit.exif_rotated": str(rotated)} if rotated else {}),
            },
        )
        created = ml_client.data.create_or_update(data)
    return dataset_asset(created)


def upright_images(
    uploads: list[tuple[Path, str]], folder: Path
) -> tuple[list[tuple[Path, str]], int]:
    """Replace every image with an EXIF orientation other than 1 by an upright copy in
    ``folder`` (pixels rotated as a viewer shows them, the orientation tag removed).

    detectkit's boxes describe the displayed image. AutoML's YOLO applies the EXIF orientation
    when it loads an image, its Faster R-CNN and RetinaNet do not: uploading upright pixels
    makes both see the image the boxes were drawn on. Returns the new list and the count.
    """
    from PIL import Image, ImageOps

    out: list[tuple[Path, str]] = []
    rotated = 0
    for src, blob in uploads:
        if image_info(src).orientation in (1, 0):
            out.append((src, blob))
            continue
        target = folder / blob
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            fmt = im.format or "PNG"
            upright = ImageOps.exif_transpose(im)
            options: dict[str, Any] = {"exif": upright.getexif().tobytes()}
            if fmt == "JPEG":
                options.update(quality=95, subsampling=0)
            upright.save(target, format=fmt, **options)
        out.append((target, blob))
        rotated += 1
    return out, rotated


def next_version(existing: Any) -> str:
    """One more than the highest numeric version (``"1"`` for a new name)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        versions = [str(item.version) for item in existing]
    except ResourceNotFoundError:
        return "1"
    numbers = [int(v) for v in versions if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def container_client(store: Any, credential: Any, transport: Any) -> Any:
    """A blob container client for a datastore, on the MLClient's ``transport`` when given."""
    from azure.storage.blob import ContainerClient

    creds = getattr(store, "credentials", None)
    secret = getattr(creds, "account_key", None) or getattr(creds, "sas_token", None)
    account_url = f"{store.protocol}://{store.account_name}.blob.{store.endpoint}"
    kwargs: dict[str, Any] = {}
    if transport is not None:
        kwargs["transport"] = transport
    return ContainerClient(
        account_url, store.container_name, credential=secret or credential, **kwargs
    )


def upload_files(container: Any, files: list[tuple[Path, str]]) -> None:
    """Upload ``(local file, blob name)`` pairs, 8 at a time, with a progress bar."""

    def upload(item: tuple[Path, str]) -> None:
        src, blob = item
        with open(src, "rb") as fh:
            container.upload_blob(blob, fh, overwrite=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = pool.map(upload, files)
        for _ in track(done, total=len(files), description="uploading"):
            pass
