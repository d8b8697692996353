"""Where a labeling store's image files come from: a local folder, or a cache filled on demand.

:func:`index_remote` builds the index of remote images (``azureml://`` URLs) for a
:class:`CachedSource`: each entry's path is where its image lands in the cache, its ``ref`` the
URL the backend fetches it from.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Protocol

from detectkit.dataset import LabeledDataset
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.images import is_remote
from detectkit.labeling.labels import ImageEntry, ImageLabels, image_id, is_draft
from detectkit.labeling.records import ImageState

__all__ = ["CachedSource", "FolderSource", "ImageSource", "index_remote"]


class ImageSource(Protocol):
    """Where a store's image files come from."""

    def local_path(self, entry: ImageEntry) -> Path:
        """The image as a local file (fetched first when needed), inside the source's folder.

        Raises:
            NotFoundError: The file is missing, or its path leaves the folder.
        """
        ...

    def local_path_if_present(self, entry: ImageEntry) -> Path | None:
        """The local file when it is already there; never fetches."""
        ...


class FolderSource:
    """Images in a local folder (a data asset's folder, or the user's own).

    Args:
        folder: The folder every index path is inside.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).resolve()
        self._prefix = str(self.folder).rstrip(os.sep) + os.sep

    def __repr__(self) -> str:
        return f"FolderSource({str(self.folder)!r})"

    def inside(self, entry: ImageEntry) -> Path:
        resolved = os.path.realpath(os.path.join(self.folder, entry.path))
        if not resolved.startswith(self._prefix):
            raise NotFoundError(
                f"image {entry.id}: its path {entry.path!r} leaves {self.folder}; refused"
            )
        return Path(resolved)

    def local_path(self, entry: ImageEntry) -> Path:
        """The file inside :attr:`folder` (see :meth:`ImageSource.local_path`)."""
        path = self.inside(entry)
        if not path.is_file():
            raise NotFoundError(
                f"image {entry.id}: {path} is missing; was it moved or deleted? (restore it, or "
                "create the labeling project again)"
            )
        return path

    def local_path_if_present(self, entry: ImageEntry) -> Path | None:
        """The file when it exists."""
        path = self.inside(entry)
        return path if path.is_file() else None


class CachedSource:
    """Images fetched on demand into a local cache folder (for remote data).

    Nothing is fetched up front: :meth:`local_path` fetches one image the first time it is
    asked for, into a temporary file renamed into place when complete.

    Args:
        folder: The cache folder.
        fetch: ``fetch(entry, destination)`` writes the image's bytes to ``destination``.
    """

    def __init__(
        self, folder: str | os.PathLike[str], fetch: Callable[[ImageEntry, Path], None]
    ) -> None:
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._inner = FolderSource(self.folder)
        self._fetch = fetch
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetched = 0

    def __repr__(self) -> str:
        return f"CachedSource({str(self.folder)!r})"

    def local_path_if_present(self, entry: ImageEntry) -> Path | None:
        """The cached file when it has been fetched."""
        return self._inner.local_path_if_present(entry)

    def local_path(self, entry: ImageEntry) -> Path:
        """The cached file, fetched now when missing."""
        path = self._inner.inside(entry)
        if path.is_file():
            return path
        with self._guard:
            lock = self._locks.setdefault(entry.id, threading.Lock())
        with lock:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
                os.close(fd)
                try:
                    self._fetch(entry, Path(tmp))
                    os.replace(tmp, path)
                    self.fetched += 1
                finally:
                    with suppress(FileNotFoundError):
                        os.unlink(tmp)
        return path


def index_remote(dataset: LabeledDataset) -> tuple[list[ImageEntry], list[ImageLabels]]:
    """The index and existing labels of a data set of remote images, for a
    :class:`CachedSource`.

    An entry's path is the URL's path after ``/paths/`` (a datastore URL) or after the host,
    made safe for a file system; its ``ref`` is the URL. Images with human boxes start
    ``labeled``, with only a model's drafts ``prelabeled``.

    Raises:
        InvalidInputError: An image is a local path.
    """
    entries: list[ImageEntry] = []
    labels: list[ImageLabels] = []
    taken: set[str] = set()
    paths: set[str] = set()
    for k, record in enumerate(dataset.records):
        url = record.image
        if not is_remote(url):
            raise InvalidInputError(
                f"image {url}: expected a URL (azureml://...), got a local path; label local "
                "images on the local backend, or upload them as a data asset first"
            )
        tail = url.split("/paths/", 1)[1] if "/paths/" in url else url.split("://", 1)[-1]
        parts = [re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in tail.split("/")]
        rel = "/".join(p for p in parts if p and p not in (".", "..")) or f"image_{k}"
        if rel in paths:
            rel = f"_{k}/{rel}"
        paths.add(rel)
        entry = ImageEntry(
            id=image_id(rel, taken),
            path=rel,
            name=record.name,
            width=record.width,
            height=record.height,
            ref=url,
        )
        taken.add(entry.id)
        entries.append(entry)
        if record.objects:
            drafts = all(is_draft(o) for o in record.objects)
            labels.append(
                ImageLabels(
                    id=entry.id,
                    state=ImageState.PRELABELED if drafts else ImageState.LABELED,
                    objects=record.objects,
                    width=record.width,
                    height=record.height,
                )
            )
    return entries, labels
