"""``project.labeling``: labeling projects and the live :class:`LabelingProject` handle.

Local backend layout under the project root::

    datasets/<name>/<version>/   the images (and the labels they came with) as a data asset
    labeling/<name>/             the labeling state (see :mod:`detectkit.labeling.store`)

:meth:`Labeling.create` copies a folder of images or a :class:`~detectkit.LabeledDataset` into
a new version of the data asset ``<name>`` (a data asset reference is used as it is, nothing is
copied); :meth:`LabelingProject.export` writes the labeled images as the next version of a data
asset, ready for ``project.train``.

On a backend with remote images (Azure, a :class:`RemoteLabelingBackend`) the store is kept in
a local cache folder (:func:`cache_folder`)::

    <cache>/<workspace>/<name>/state/    the labeling state (as above)
    <cache>/<workspace>/<name>/images/   the images shown so far, fetched one at a time

and the state is uploaded to the workspace (:meth:`LabelingProject.sync`: on create, on
export, when asked) as three files: ``project.json``, ``index.jsonl`` and ``labels.jsonl``
(one line per saved image). :meth:`Labeling.get` restores it from there on any machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.labeling.assist import Assistant, MLAssist, check_backend
from detectkit.labeling.data import check_classes, index_dataset, read_input
from detectkit.labeling.labels import ImageLabels
from detectkit.labeling.records import LabelingProgress
from detectkit.labeling.remote import (
    ASSET_REFERENCE,
    RemoteLabelingBackend,
    create_remote_store,
    remote_backend,
    restore_remote_store,
    sync_state,
)
from detectkit.labeling.review import accept, mark_reviewed, reject
from detectkit.labeling.server import LabelingServer
from detectkit.labeling.sources import FolderSource
from detectkit.labeling.store import LabelingStore
from detectkit.records import DatasetAsset, check_name

__all__ = [
    "Labeling",
    "LabelingBackend",
    "LabelingProject",
    "RemoteLabelingBackend",
    "cache_folder",
]

LABELING_FOLDER = "labeling"
#: Overrides where remote projects are cached (default ``$XDG_CACHE_HOME/detectkit/labeling``).
CACHE_ENV = "DETECTKIT_LABELING_CACHE"


class LabelingBackend(Protocol):
    """What labeling needs of a backend (the local backend provides it)."""

    kind: str
    root: Path

    def create_dataset(
        self,
        name: str,
        dataset: LabeledDataset,
        *,
        version: str | None,
        description: str | None,
    ) -> DatasetAsset:
        """Create a data asset version."""
        ...

    def get_dataset(self, name: str, version: str | None = None) -> DatasetAsset:
        """A data asset version."""
        ...

    def load_dataset(self, reference: str) -> LabeledDataset:
        """The labeled data behind a data asset reference or path."""
        ...

    def start_assistant(self, folder: Path) -> int:
        """Start the background trainer of the labeling project in ``folder``; its pid (see
        :mod:`detectkit.labeling.assist`)."""
        ...


def cache_folder(base: str | os.PathLike[str] | None = None) -> Path:
    """Where remote labeling projects are cached: ``base``, else ``$DETECTKIT_LABELING_CACHE``,
    else ``$XDG_CACHE_HOME/detectkit/labeling`` (``~/.cache/detectkit/labeling``)."""
    if base is not None:
        return Path(base)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(xdg) / "detectkit" / "labeling"


class LabelingProject:
    """A live handle on one labeling project.

    Attributes:
        name: The project's name.
        last_export: The data asset the latest :meth:`export` created, if any.
        last_sync: The state version the latest :meth:`sync` stored (remote backends).
    """

    def __init__(
        self,
        backend: LabelingBackend | RemoteLabelingBackend,
        store: LabelingStore,
        *,
        remote: RemoteLabelingBackend | None = None,
    ) -> None:
        self._backend = backend
        self._remote = remote
        self._store = store
        self._server: LabelingServer | None = None
        self.name = store.name
        self.last_export: DatasetAsset | None = None
        self.last_sync: str | None = None

    def __repr__(self) -> str:
        p = self.progress
        return (
            f"LabelingProject(name={self.name!r}, images={p.images}, done={p.done}, "
            f"boxes={p.boxes})"
        )

    @property
    def store(self) -> LabelingStore:
        """The project's on-disk state."""
        return self._store

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, in order (number keys 1-9 pick them in this order)."""
        return self._store.classes

    @property
    def progress(self) -> LabelingProgress:
        """Images by state and boxes per class, as saved now."""
        return self._store.progress()

    @property
    def assistant(self) -> Assistant | None:
        """The background model (``ml_assist``): its state, ``start()``, ``wait()``; ``None``
        when ML assistance is off."""
        settings = MLAssist.of(self._store)
        starter = getattr(self._backend, "start_assistant", None)
        if settings is None or not callable(starter):
            return None
        return Assistant(self._store, settings, starter)

    @property
    def url(self) -> str | None:
        """The labeling page (token included) while :meth:`serve` runs, else ``None``."""
        return self._server.url if self._server is not None else None

    def serve(
        self, *, port: int | None = None, open_browser: bool = False, order: str = "index"
    ) -> LabelingServer:
        """Serve the labeling page on 127.0.0.1 in a background thread.

        Args:
            port: The port (default: a free one).
            open_browser: Open the page in the browser.
            order: ``"index"``, ``"random"``, or ``"uncertainty"`` (also ``"least_confident"``,
                ``"margin"``, ``"entropy"``): the images still to label, most uncertain first,
                from the drafts' scores (see :mod:`detectkit.labeling.review`).

        Returns:
            The server: its ``url`` (with the access token) and ``stop()``.
        """
        if self._server is None or self._server.stopped:
            self._server = LabelingServer(
                self._store,
                port=port,
                exporter=self._export_message,
                order=order,
                assistant=self.assistant,
            )
        return self._server.start(open_browser=open_browser)

    def export(
        self,
        name: str | None = None,
        *,
        version: str | None = None,
        description: str | None = None,
        include_drafts: bool = False,
    ) -> LabeledDataset:
        """Write the labeled and reviewed images as a new data asset version.

        Only human labels are exported (drafts a person accepted or edited are human): a
        model's drafts are left out unless ``include_drafts``, and then they keep
        ``source="model"`` and their score, never mixed up with human labels.

        Args:
            name: The data asset (default: the project's name).
            version: Its version (default: the next number).
            description: Shown with the asset.
            include_drafts: Also export the drafts (and the pre-labeled images).

        Returns:
            The exported data set, read back from the new asset (``last_export`` is its record).

        Raises:
            InvalidInputError: No image is labeled yet.
        """
        target = check_name(name or self.name, "name")
        remote = self._remote is not None
        dataset = self._store.to_dataset(include_drafts=include_drafts, original_refs=remote)
        if len(dataset) == 0:
            raise InvalidInputError(
                f"labeling project {self.name!r}: no image is labeled yet; label some (or mark "
                "them done) in the page first"
            )
        if self._remote is not None:
            self.sync()
            self.last_export = self._remote.create_dataset(
                target,
                dataset,
                version=version,
                description=description or f"exported from labeling project {self.name}",
            )
            return dataset
        backend: LabelingBackend = self._backend  # type: ignore[assignment]
        asset = backend.create_dataset(
            target,
            dataset,
            version=version,
            description=description or f"exported from labeling project {self.name}",
        )
        self.last_export = asset
        return backend.load_dataset(asset.uri)

    def sync(self) -> str | None:
        """Store the labeling state in the workspace (remote backends: ``project.json``,
        ``index.jsonl`` and ``labels.jsonl`` as a new version; images are not uploaded).

        Returns:
            The new state version, or ``None`` on the local backend (its state is already
            in the project root).
        """
        if self._remote is None:
            return None
        self.last_sync = sync_state(self._remote, self._store)
        return self.last_sync

    def accept(self, image: str, boxes: list[int] | None = None) -> ImageLabels:
        """Accept an image's drafts (default: all; else the positions ``boxes`` in its box
        list) as human labels; returns the saved labels."""
        return accept(self._store, image, boxes)

    def reject(self, image: str, boxes: list[int] | None = None) -> ImageLabels:
        """Remove an image's drafts (default: all; else the boxes at ``boxes``)."""
        return reject(self._store, image, boxes)

    def mark_reviewed(self, image: str) -> ImageLabels:
        """Mark an image reviewed (drafts left on it stay drafts, out of the export)."""
        return mark_reviewed(self._store, image)

    def refresh(self) -> LabelingProject:
        """Read the saved labels again (another process may have saved); returns itself."""
        self._store.reload()
        return self

    def delete(self) -> None:
        """Stop serving and delete the labeling state (data assets are kept; on a remote
        backend the local cache is deleted and the state in the workspace is kept)."""
        if self._server is not None:
            self._server.stop()
        if self._remote is not None:
            shutil.rmtree(self._store.folder.parent)
            return
        shutil.rmtree(self._store.folder)

    def _export_message(self) -> str:
        self.export()
        asset = self.last_export
        assert asset is not None
        return (
            f"exported {asset.images} images, {asset.boxes} boxes as {asset.name}:{asset.version}"
        )


class Labeling:
    """``project.labeling``: create, open and list labeling projects.

    Args:
        backend: The project's backend: the local one (projects under its root), or one with
            remote images (:class:`RemoteLabelingBackend`: Azure).
        cache: Where remote projects are cached (see :func:`cache_folder`).
    """

    def __init__(self, backend: object, *, cache: str | os.PathLike[str] | None = None) -> None:
        self._backend = backend
        self._cache = cache

    def _remote_backend(self) -> RemoteLabelingBackend | None:
        return remote_backend(self._backend)

    def _local(self) -> LabelingBackend:
        backend = self._backend
        if getattr(backend, "kind", None) != "local" or not hasattr(backend, "root"):
            raise InvalidInputError(
                "labeling projects run on the local backend for now; use Project.local(root) "
                "and export to a data asset you upload (project.datasets.create)"
            )
        return backend  # type: ignore[return-value]

    def _folder(self, name: str) -> Path:
        return Path(self._local().root) / LABELING_FOLDER / check_name(name, "name")

    def create(
        self,
        name: str,
        data: LabeledDataset | DatasetAsset | str | os.PathLike[str],
        *,
        classes: list[str] | tuple[str, ...] | str,
        instructions: str | None = None,
        ml_assist: bool | MLAssist | dict[str, Any] = False,
    ) -> LabelingProject:
        """Create a labeling project.

        Args:
            name: The project's name (also the data asset its images are kept in).
            data: A data asset (record or ``name[:version]``), a folder of images, a labeled
                data set file or folder, or a :class:`~detectkit.LabeledDataset` (existing
                labels are kept and shown).
            classes: The class names (a list, or ``"a,b,c"``).
            instructions: Shown in the page.
            ml_assist: A model that learns while people label (``True``: the defaults of
                :class:`~detectkit.labeling.assist.MLAssist`); on Azure it needs
                ``ml_assist={"compute": "<GPU cluster>"}``.

        Raises:
            ConflictError: A labeling project of that name exists.
            InvalidInputError: ``ml_assist`` settings the backend cannot run (on Azure: no
                ``compute``).
        """
        assist = MLAssist.build(ml_assist)
        remote = self._remote_backend()
        if assist is not None:
            check_backend(assist, "azure" if remote is not None else "local")
        if remote is not None:
            return self._create_remote(
                remote, name, data, check_classes(classes), instructions, assist
            )
        backend = self._local()
        folder = self._folder(name)
        names = check_classes(classes)
        if folder.exists():
            self.get(name)  # a damaged folder says so; an existing project is a conflict
        asset, originals = self._source_asset(backend, name, data)
        dataset = backend.load_dataset(asset.uri)
        entries, labels = index_dataset(dataset, Path(asset.uri), originals=originals)
        used = [c for c in dataset.classes if c not in names]
        store = LabelingStore.create(
            folder,
            name=name,
            classes=[*names, *used],
            images=entries,
            labels=labels,
            source=FolderSource(asset.uri),
            instructions=instructions,
            info={"asset": asset.name, "version": asset.version, "folder": asset.uri}
            | ({"ml_assist": assist.model_dump()} if assist is not None else {}),
        )
        return LabelingProject(backend, store)

    def get(self, name: str) -> LabelingProject:
        """Open a labeling project.

        On a remote backend the latest state in the workspace is restored into the cache (a
        cached copy takes every image whose saved revision is newer there).

        Raises:
            NotFoundError: No project of that name.
        """
        remote = self._remote_backend()
        if remote is not None:
            return self._get_remote(remote, name)
        folder = self._folder(name)
        if not (folder / "project.json").is_file():
            known = ", ".join(p.name for p in self.list()) or "none"
            raise NotFoundError(
                f"no labeling project {name!r} under {folder.parent} (projects: {known}); "
                "create one with project.labeling.create(name, data, classes=[...])"
            )
        meta = LabelingStore.read_meta(folder)
        info = meta.get("info") or {}
        source = info.get("folder")
        if not isinstance(source, str):
            raise InvalidInputError(f"{folder}/project.json: info.folder missing")
        return LabelingProject(self._local(), LabelingStore.open(folder, FolderSource(source)))

    def list(self) -> list[LabelingProject]:
        """Every labeling project, by name."""
        remote = self._remote_backend()
        if remote is not None:
            return [self.get(n) for n in remote.list_labeling_states()]
        base = Path(self._local().root) / LABELING_FOLDER
        if not base.is_dir():
            return []
        return [
            self.get(p.name)
            for p in sorted(base.iterdir())
            if not p.name.startswith(".") and (p / "project.json").is_file()
        ]

    def _source_asset(
        self,
        backend: LabelingBackend,
        name: str,
        data: LabeledDataset | DatasetAsset | str | os.PathLike[str],
    ) -> tuple[DatasetAsset, tuple[ImageRecord, ...] | None]:
        if isinstance(data, DatasetAsset):
            return data, None
        if isinstance(data, str) and not Path(data).exists() and ASSET_REFERENCE.match(data):
            asset_name, _, version = data.removeprefix("azureml:").partition(":")
            return backend.get_dataset(asset_name, version or None), None
        dataset = read_input(data)
        asset = backend.create_dataset(
            name, dataset, version=None, description=f"images of labeling project {name}"
        )
        return asset, dataset.records

    # ---------------------------------------------------------------- remote images
    def _remote_folder(self, remote: RemoteLabelingBackend, name: str) -> Path:
        return cache_folder(self._cache) / remote.labeling_scope() / check_name(name, "name")

    def _create_remote(
        self,
        remote: RemoteLabelingBackend,
        name: str,
        data: LabeledDataset | DatasetAsset | str | os.PathLike[str],
        names: tuple[str, ...],
        instructions: str | None,
        assist: MLAssist | None,
    ) -> LabelingProject:
        store = create_remote_store(
            remote,
            self._remote_folder(remote, name),
            name,
            data,
            classes=names,
            instructions=instructions,
            info={"ml_assist": assist.model_dump()} if assist is not None else None,
        )
        project = LabelingProject(remote, store, remote=remote)
        project.sync()
        return project

    def _get_remote(self, remote: RemoteLabelingBackend, name: str) -> LabelingProject:
        store, version = restore_remote_store(remote, self._remote_folder(remote, name), name)
        project = LabelingProject(remote, store, remote=remote)
        project.last_sync = version
        return project
