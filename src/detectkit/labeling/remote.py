"""Labeling projects whose images stay remote (the Azure backend): the store in a local cache.

:class:`~detectkit.labeling.project.Labeling` uses these functions when its backend is a
:class:`RemoteLabelingBackend`. The store lives in ``<cache>/<scope>/<name>/state/`` and its
images are fetched one at a time into ``<cache>/<scope>/<name>/images/``; the state is stored
in the workspace as ``project.json``, ``index.jsonl`` and ``labels.jsonl`` (:func:`sync_state`).
A background trainer of the same process opens the cached store again with :func:`open_cached`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from detectkit.dataset import LabeledDataset
from detectkit.errors import ConflictError, NotFoundError
from detectkit.labeling.data import read_input
from detectkit.labeling.labels import ImageEntry
from detectkit.labeling.restore import read_labels, restore
from detectkit.labeling.sources import CachedSource, index_remote
from detectkit.labeling.store import LabelingStore
from detectkit.records import DatasetAsset

__all__ = [
    "ASSET_REFERENCE",
    "REMOTE_METHODS",
    "RemoteLabelingBackend",
    "create_remote_store",
    "open_cached",
    "remote_backend",
    "remote_source",
    "restore_remote_store",
    "sync_state",
]

#: ``name``, ``name:version`` or ``azureml:name:version``: a data asset reference.
ASSET_REFERENCE = re.compile(r"^(azureml:)?[A-Za-z0-9][A-Za-z0-9_.-]*(:[A-Za-z0-9_.-]+)?$")


class RemoteLabelingBackend(Protocol):
    """What labeling needs of a backend whose images stay remote (the Azure backend).

    Images are ``azureml://`` URLs fetched one at a time; the labeling state is a folder of
    small files the backend keeps in its workspace.
    """

    def create_dataset(
        self,
        name: str,
        dataset: LabeledDataset,
        *,
        version: str | None,
        description: str | None,
    ) -> DatasetAsset:
        """Create a data asset version (remote images are referenced, not copied)."""
        ...

    def labeling_scope(self) -> str:
        """The cache folder's name for this backend's projects (the workspace)."""
        ...

    def labeling_images(self, reference: str) -> LabeledDataset:
        """The images (records with remote URLs, labels kept) of a data asset reference or
        a remote folder, without downloading the images."""
        ...

    def fetch_image(self, url: str, path: Path) -> None:
        """Write the image at ``url`` to ``path``."""
        ...

    def save_labeling_state(self, name: str, folder: Path) -> str:
        """Store the files in ``folder`` as the project's new state; returns its version."""
        ...

    def load_labeling_state(self, name: str, folder: Path) -> str:
        """Download the project's latest state into ``folder``; returns its version.

        Raises:
            NotFoundError: No state of that name.
        """
        ...

    def list_labeling_states(self) -> list[str]:
        """The names of the projects whose state the backend keeps."""
        ...


#: The methods that make a backend a :class:`RemoteLabelingBackend`.
REMOTE_METHODS = (
    "labeling_scope",
    "labeling_images",
    "fetch_image",
    "save_labeling_state",
    "load_labeling_state",
    "list_labeling_states",
)


def remote_backend(backend: object) -> RemoteLabelingBackend | None:
    """``backend`` when it has every :data:`REMOTE_METHODS`, else ``None``."""
    if all(callable(getattr(backend, m, None)) for m in REMOTE_METHODS):
        return backend  # type: ignore[return-value]
    return None


def remote_source(remote: RemoteLabelingBackend, folder: Path) -> CachedSource:
    """The image cache of the project in ``folder`` (``folder/images``, filled on demand)."""

    def fetch(entry: ImageEntry, path: Path) -> None:
        if entry.ref is None:
            raise NotFoundError(f"image {entry.id}: no URL recorded in the index")
        remote.fetch_image(entry.ref, path)

    return CachedSource(folder / "images", fetch)


def open_cached(remote: RemoteLabelingBackend, state: Path) -> LabelingStore:
    """Open the cached store in ``state`` (``<cache>/<scope>/<name>/state``) again, without
    reading the workspace (a background trainer next to the page does this)."""
    return LabelingStore.open(state, remote_source(remote, Path(state).parent))


def create_remote_store(
    remote: RemoteLabelingBackend,
    folder: Path,
    name: str,
    data: LabeledDataset | DatasetAsset | str | os.PathLike[str],
    *,
    classes: tuple[str, ...],
    instructions: str | None,
    info: dict[str, Any] | None = None,
) -> LabelingStore:
    """Index the remote images of ``data`` into a new store in ``folder/state`` (local images
    are uploaded as the data asset ``name`` first); ``info`` joins the project's info.

    Raises:
        ConflictError: A project of that name exists (in the workspace or the cache).
    """
    if name in remote.list_labeling_states() or (folder / "state").exists():
        raise ConflictError(
            f"labeling project {name!r} already exists; open it with "
            "project.labeling.get(name), or pick another name"
        )
    if isinstance(data, DatasetAsset):
        reference = data.uri
    elif isinstance(data, str) and (data.startswith("azureml:") or ASSET_REFERENCE.match(data)):
        reference = data
    else:  # local images: upload them as a data asset first
        asset = remote.create_dataset(
            name, read_input(data), version=None, description=f"images of labeling {name}"
        )
        reference = asset.uri
    dataset = remote.labeling_images(reference)
    entries, labels = index_remote(dataset)
    used = [c for c in dataset.classes if c not in classes]
    return LabelingStore.create(
        folder / "state",
        name=name,
        classes=[*classes, *used],
        images=entries,
        labels=labels,
        source=remote_source(remote, folder),
        instructions=instructions,
        info={"data": reference, "scope": remote.labeling_scope(), **(info or {})},
    )


def restore_remote_store(
    remote: RemoteLabelingBackend, folder: Path, name: str
) -> tuple[LabelingStore, str | None]:
    """The store in ``folder/state`` brought up to the workspace's latest state (a cached
    copy takes every image whose revision is newer there); returns it and that version.

    Raises:
        NotFoundError: No such project in the workspace nor in the cache.
    """
    state = folder / "state"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=folder) as tmp:
        try:
            version: str | None = remote.load_labeling_state(name, Path(tmp))
        except NotFoundError:
            if not (state / "project.json").is_file():
                raise NotFoundError(
                    f"no labeling project {name!r} in the workspace (projects: "
                    f"{', '.join(remote.list_labeling_states()) or 'none'}); create one "
                    "with project.labeling.create(name, data, classes=[...])"
                ) from None
            version = None
        incoming = read_labels(Path(tmp)) if version is not None else []
        if (state / "project.json").is_file():
            store = LabelingStore.open(state, remote_source(remote, folder))
            store.merge(incoming)
        else:
            store = restore(Path(tmp), state, remote_source(remote, folder), incoming)
    return store, version


def sync_state(remote: RemoteLabelingBackend, store: LabelingStore) -> str:
    """Store ``project.json``, ``index.jsonl`` and ``labels.jsonl`` (every saved image) in the
    workspace as the project's new state version; returns that version (images are not
    uploaded)."""
    with tempfile.TemporaryDirectory(prefix=f".{store.name}-sync-") as tmp:
        folder = Path(tmp)
        shutil.copyfile(store.folder / "project.json", folder / "project.json")
        shutil.copyfile(store.folder / "index.jsonl", folder / "index.jsonl")
        with (folder / "labels.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
            for item in store.snapshot():
                fh.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
        return remote.save_labeling_state(store.name, folder)
