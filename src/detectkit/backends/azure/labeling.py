"""Labeling projects on Azure ML: images listed in the workspace, fetched one at a time.

:class:`AzureLabelingMethods` holds what ``project.labeling`` needs of
:class:`~detectkit.backends.azure.AzureBackend` (a base class of it):

* ``labeling_images``: the images of a data asset (an ``mltable`` asset of detectkit's layout,
  whose ``annotations.jsonl`` is downloaded and read, labels included; or a ``uri_folder`` of
  images) or of a datastore folder (``azureml://datastores/<store>/paths/<folder>/``), from a
  blob listing: no image is downloaded;
* ``fetch_image``: one image blob, downloaded when the page shows it;
* ``save_labeling_state`` / ``load_labeling_state`` / ``list_labeling_states``: the labeling
  state (a few small files) as a new version of the ``uri_folder`` data asset
  ``<project>-labeling``, stored under ``detectkit/labeling/<project>/<version>/`` on the
  workspace's default datastore.

Blob transfers go through the datastore's container on the ``MLClient``'s transport (see
:func:`~detectkit.backends.azure.datasets.container_client`). azure-ai-ml is imported inside
the methods.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from detectkit.backends.azure.datasets import container_client, next_version, upload_files
from detectkit.backends.azure.errors import boundary
from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.formats.azureml import read_azureml
from detectkit.images import IMAGE_EXTENSIONS, is_remote

__all__ = ["LABELING_PREFIX", "STATE_SUFFIX", "AzureLabelingMethods", "state_asset_name"]

#: Where labeling states are written on the workspace's default datastore.
LABELING_PREFIX = "detectkit/labeling"
#: The labeling state of project ``p`` is the data asset ``p-labeling``.
STATE_SUFFIX = "-labeling"

_STORE_URL = re.compile(
    r"^azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/)?"
    r"datastores/(?P<store>[^/]+)/paths/(?P<path>.*)$",
    re.IGNORECASE,
)


def state_asset_name(project: str) -> str:
    """The data asset holding a labeling project's state: ``<project>-labeling``."""
    return project + STATE_SUFFIX


class AzureLabelingMethods:
    """The labeling methods of :class:`~detectkit.backends.azure.AzureBackend` (a base class
    of it): they use its ``MLClient``, credential and transport."""

    ml_client: Any
    subscription_id: str
    resource_group: str
    workspace: str
    _credential: Any
    _transport: Any

    # ------------------------------------------------------------------ images
    def labeling_scope(self) -> str:
        """The cache folder's name for this workspace's labeling projects."""
        return self.workspace

    def labeling_images(self, reference: str) -> LabeledDataset:
        """The images (with their labels, if any) of a data asset or a datastore folder.

        Every record's ``image`` is the image's full ``azureml://`` datastore URL. Only the
        blob listing and the annotation files are read.

        Raises:
            NotFoundError: No such data asset, or no images under its folder.
            InvalidInputError: The asset's path is not a datastore folder.
        """
        found = _STORE_URL.match(reference)
        if found is None:
            name, _, version = reference.removeprefix("azureml:").partition(":")
            with boundary("data asset", reference):
                if version:
                    data = self.ml_client.data.get(name, version=version)
                else:
                    data = self.ml_client.data.get(name, label="latest")
            found = _STORE_URL.match(str(data.path or ""))
            if found is None:
                raise InvalidInputError(
                    f"data asset {reference}: its path {data.path!r} is not a datastore folder "
                    "(azureml://.../datastores/<store>/paths/<folder>/); label a data asset "
                    "stored in a datastore, or pass the folder's azureml:// URI"
                )
        store, prefix = found["store"], found["path"].strip("/")
        prefix = prefix + "/" if prefix else ""
        container = self._labeling_container(store)
        with boundary("datastore folder", f"{store}/{prefix}"):
            blobs = [str(b.name) for b in container.list_blobs(name_starts_with=prefix)]
        base = self._datastore_url(store)
        jsonl = [b for b in blobs if b.endswith(".jsonl") and "/" not in b[len(prefix) :]]
        if jsonl:
            return self._read_annotations(container, base, prefix, jsonl)
        records = [
            ImageRecord(image=base + b)
            for b in blobs
            if PurePosixPath(b).suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not records:
            raise NotFoundError(
                f"datastore {store!r}, folder {prefix!r}: no images found (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)} blobs) and no annotations.jsonl; upload the "
                "images there first"
            )
        return LabeledDataset(records, ())

    def fetch_image(self, url: str, path: Path) -> None:
        """Download the image blob at ``url`` (an ``azureml://`` datastore URL) to ``path``.

        Raises:
            InvalidInputError: ``url`` is not a datastore URL.
            NotFoundError: The blob is gone.
        """
        found = _STORE_URL.match(url)
        if found is None:
            raise InvalidInputError(
                f"image {url!r}: expected an azureml://.../datastores/<store>/paths/<blob> URL"
            )
        container = self._labeling_container(found["store"])
        with boundary("image", url), open(path, "wb") as fh:
            container.download_blob(found["path"]).readinto(fh)

    # ------------------------------------------------------------------ state
    def save_labeling_state(self, name: str, folder: Path) -> str:
        """Upload the files in ``folder`` as the next version of ``<name>-labeling``
        (a ``uri_folder`` data asset); returns that version."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data

        asset = state_asset_name(name)
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        with boundary("data asset", asset):
            version = next_version(self.ml_client.data.list(name=asset))
            store = self.ml_client.datastores.get_default(include_secrets=True)
            prefix = f"{LABELING_PREFIX}/{name}/{version}"
            container = container_client(store, self._credential, self._transport)
            upload_files(
                container,
                [(p, f"{prefix}/{p.relative_to(folder).as_posix()}") for p in files],
            )
            data = Data(
                name=asset,
                version=version,
                type=AssetTypes.URI_FOLDER,
                path=f"azureml://datastores/{store.name}/paths/{prefix}/",
                description=f"labeling state of detectkit labeling project {name}",
                tags={"detectkit.labeling": name},
            )
            self.ml_client.data.create_or_update(data)
        return version

    def load_labeling_state(self, name: str, folder: Path) -> str:
        """Download the latest version of ``<name>-labeling`` into ``folder``; returns its
        version.

        Raises:
            NotFoundError: No labeling state of that name in the workspace.
        """
        asset = state_asset_name(name)
        with boundary("labeling project", name):
            data = self.ml_client.data.get(asset, label="latest")
        found = _STORE_URL.match(str(data.path or ""))
        if found is None:
            raise InvalidInputError(
                f"data asset {asset}:{data.version}: path {data.path!r} is not a datastore folder"
            )
        root = found["path"].strip("/") + "/"
        container = self._labeling_container(found["store"])
        count = 0
        with boundary("data asset", f"{asset}:{data.version}"):
            for blob in container.list_blobs(name_starts_with=root):
                relative = PurePosixPath(str(blob.name)[len(root) :])
                if not relative.parts or relative.is_absolute() or ".." in relative.parts:
                    raise InvalidInputError(
                        f"data asset {asset}:{data.version}: blob {blob.name!r} is not a file "
                        f"under {root!r}; the labeling state is malformed"
                    )
                local = Path(folder).joinpath(*relative.parts)
                local.parent.mkdir(parents=True, exist_ok=True)
                with open(local, "wb") as fh:
                    container.download_blob(blob.name).readinto(fh)
                count += 1
        if count == 0:
            raise NotFoundError(
                f"data asset {asset}:{data.version}: no files under {root!r}; the labeling "
                "state was removed from storage"
            )
        return str(data.version)

    def list_labeling_states(self) -> list[str]:
        """The names of the labeling projects whose state is in the workspace."""
        with boundary("data assets", self.workspace):
            names = [str(c.name) for c in self.ml_client.data.list()]
        return sorted(
            n.removesuffix(STATE_SUFFIX)
            for n in names
            if n.endswith(STATE_SUFFIX) and len(n) > len(STATE_SUFFIX)
        )

    # ------------------------------------------------------------------ internals
    def _datastore_url(self, store: str) -> str:
        return (
            f"azureml://subscriptions/{self.subscription_id}/resourcegroups/"
            f"{self.resource_group}/workspaces/{self.workspace}/datastores/{store}/paths/"
        )

    def _labeling_container(self, store_name: str) -> Any:
        """The datastore's container client (one datastore request per store and backend)."""
        cache: dict[str, Any] = self.__dict__.setdefault("_labeling_containers", {})
        if store_name not in cache:
            with boundary("datastore", store_name):
                store = self.ml_client.datastores.get(store_name, include_secrets=True)
            cache[store_name] = container_client(store, self._credential, self._transport)
        return cache[store_name]

    def _read_annotations(
        self, container: Any, base: str, prefix: str, files: list[str]
    ) -> LabeledDataset:
        records: list[ImageRecord] = []
        classes: list[str] = []
        with tempfile.TemporaryDirectory(prefix="detectkit-labeling-") as tmp:
            for k, blob in enumerate(files):
                local = Path(tmp) / f"{k}.jsonl"
                with boundary("annotations", blob), open(local, "wb") as fh:
                    container.download_blob(blob).readinto(fh)
                dataset, _ = read_azureml(local, images_root=tmp)
                for record in dataset.records:
                    image = record.image
                    if not is_remote(image):  # relative to the JSONL's folder in the datastore
                        rel = os.path.relpath(os.path.realpath(image), os.path.realpath(tmp))
                        image = base + prefix + rel.replace(os.sep, "/")
                    records.append(record.model_copy(update={"image": image}))
                classes += [c for c in dataset.classes if c not in classes]
        return LabeledDataset(records, classes)
