"""``project.labeling``: labeling projects and the live :class:`LabelingProject` handle.

Local backend layout under the project root::

    datasets/<name>/<version>/   the images (and the labels they came with) as a data asset
    labeling/<name>/             the labeling state (see :mod:`detectkit.labeling.store`)

:meth:`Labeling.create` copies a folder of images or a :class:`~detectkit.LabeledDataset` into
a new version of the data asset ``<name>`` (a data asset reference is used as it is, nothing is
copied); :meth:`LabelingProject.export` writes the labeled images as the next version of a data
asset, ready for ``project.train``. The Azure backend is not supported yet.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Protocol

from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.labeling.data import check_classes, index_dataset, read_input
from detectkit.labeling.records import LabelingProgress
from detectkit.labeling.server import LabelingServer
from detectkit.labeling.sources import FolderSource
from detectkit.labeling.store import LabelingStore
from detectkit.records import DatasetAsset, check_name

__all__ = ["Labeling", "LabelingBackend", "LabelingProject"]

LABELING_FOLDER = "labeling"
_REFERENCE = re.compile(r"^(azureml:)?[A-Za-z0-9][A-Za-z0-9_.-]*(:[A-Za-z0-9_.-]+)?$")


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


class LabelingProject:
    """A live handle on one labeling project.

    Attributes:
        name: The project's name.
        last_export: The data asset the latest :meth:`export` created, if any.
    """

    def __init__(self, backend: LabelingBackend, store: LabelingStore) -> None:
        self._backend = backend
        self._store = store
        self._server: LabelingServer | None = None
        self.name = store.name
        self.last_export: DatasetAsset | None = None

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
    def url(self) -> str | None:
        """The labeling page (token included) while :meth:`serve` runs, else ``None``."""
        return self._server.url if self._server is not None else None

    def serve(self, *, port: int | None = None, open_browser: bool = False) -> LabelingServer:
        """Serve the labeling page on 127.0.0.1 in a background thread.

        Returns:
            The server: its ``url`` (with the access token) and ``stop()``.
        """
        if self._server is None or self._server.stopped:
            self._server = LabelingServer(self._store, port=port, exporter=self._export_message)
        return self._server.start(open_browser=open_browser)

    def export(
        self, name: str | None = None, *, version: str | None = None, description: str | None = None
    ) -> LabeledDataset:
        """Write the labeled and reviewed images as a new data asset version.

        Args:
            name: The data asset (default: the project's name).
            version: Its version (default: the next number).
            description: Shown with the asset.

        Returns:
            The exported data set, read back from the new asset (``last_export`` is its record).

        Raises:
            InvalidInputError: No image is labeled yet.
        """
        target = check_name(name or self.name, "name")
        dataset = self._store.to_dataset()
        if len(dataset) == 0:
            raise InvalidInputError(
                f"labeling project {self.name!r}: no image is labeled yet; label some (or mark "
                "them done) in the page first"
            )
        asset = self._backend.create_dataset(
            target,
            dataset,
            version=version,
            description=description or f"exported from labeling project {self.name}",
        )
        self.last_export = asset
        return self._backend.load_dataset(asset.uri)

    def refresh(self) -> LabelingProject:
        """Read the saved labels again (another process may have saved); returns itself."""
        self._store.reload()
        return self

    def delete(self) -> None:
        """Stop serving and delete the labeling state (data assets are kept)."""
        if self._server is not None:
            self._server.stop()
        shutil.rmtree(self._store.folder)

    def _export_message(self) -> str:
        self.export()
        asset = self.last_export
        assert asset is not None
        return (
            f"exported {asset.images} images, {asset.boxes} boxes as {asset.name}:{asset.version}"
        )


class Labeling:
    """``project.labeling``: create, open and list labeling projects (local backend)."""

    def __init__(self, backend: object) -> None:
        self._backend = backend

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
    ) -> LabelingProject:
        """Create a labeling project.

        Args:
            name: The project's name (also the data asset its images are kept in).
            data: A data asset (record or ``name[:version]``), a folder of images, a labeled
                data set file or folder, or a :class:`~detectkit.LabeledDataset` (existing
                labels are kept and shown).
            classes: The class names (a list, or ``"a,b,c"``).
            instructions: Shown in the page.

        Raises:
            ConflictError: A labeling project of that name exists.
        """
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
            info={"asset": asset.name, "version": asset.version, "folder": asset.uri},
        )
        return LabelingProject(backend, store)

    def get(self, name: str) -> LabelingProject:
        """Open a labeling project.

        Raises:
            NotFoundError: No project of that name.
        """
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
        if isinstance(data, str) and not Path(data).exists() and _REFERENCE.match(data):
            asset_name, _, version = data.removeprefix("azureml:").partition(":")
            return backend.get_dataset(asset_name, version or None), None
        dataset = read_input(data)
        asset = backend.create_dataset(
            name, dataset, version=None, description=f"images of labeling project {name}"
        )
        return asset, dataset.records
