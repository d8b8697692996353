"""The on-disk state of a labeling project, in one folder, saved atomically image by image.

Layout::

    project.json       name, classes, instructions, created, and what the backend needs to
                       find the images again ("info")
    index.jsonl        one line per image: opaque id, path inside the image folder, file name,
                       displayed width and height (when known), original reference
    labels/<id>.json   one small file per image once it has been saved: state, revision, boxes
    .lock              taken (``flock``) while a save checks and replaces a label file

Boxes are the normalized :class:`~detectkit.Box` of the *displayed* image (EXIF orientation
applied), as everywhere in detectkit. Every save writes one label file to a temporary file in
the same folder, flushes it to disk and renames it over the old one, so a crash at any moment
leaves the old or the new file, never a torn one; its cost does not depend on the number of
images. A save names the revision it is based on: when the image has moved on since (another
tab, another person), it is refused with :class:`StaleRevisionError` carrying the current
labels.

Image ids are opaque (a hash of the image's path in the index), never paths: a request names
an id, the index says which file it is, and the image source resolves the file inside its own
folder. An id the index does not hold is refused before any file is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import ConflictError, InvalidInputError, NotFoundError
from detectkit.images import image_info
from detectkit.labeling.files import remove_stale_temp_files, utc_now, write_atomic
from detectkit.labeling.labels import ImageEntry, ImageLabels, is_draft, parse_state
from detectkit.labeling.records import ImageState, LabelingProgress
from detectkit.labeling.sources import ImageSource

try:  # POSIX: a lock between processes serving the same store
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LabelingStore",
    "StaleRevisionError",
    "write_atomic",
]

PROJECT_FILE = "project.json"
INDEX_FILE = "index.jsonl"
LABELS_FOLDER = "labels"


class StaleRevisionError(ConflictError):
    """A save was based on an old revision of the image; nothing was written.

    Attributes:
        current: The labels now saved (the other edit), to show instead.
    """

    def __init__(self, message: str, current: ImageLabels) -> None:
        super().__init__(message)
        self.current = current


# ---------------------------------------------------------------------------- the store
class LabelingStore:
    """A labeling project's state in one folder (see the module docstring).

    Build one with :meth:`create` or :meth:`open`; the backends do, and hand it to
    :class:`~detectkit.labeling.LabelingProject`. Safe to use from several threads.
    """

    def __init__(
        self,
        folder: Path,
        meta: dict[str, Any],
        entries: Sequence[ImageEntry],
        source: ImageSource,
    ) -> None:
        self.folder = folder
        self.source = source
        self._meta = meta
        self._entries = tuple(entries)
        self._by_id = {e.id: i for i, e in enumerate(self._entries)}
        self._lock = threading.RLock()
        self._sizes: dict[str, tuple[int, int]] = {}
        self._summary: dict[str, tuple[ImageState, Counter[str], int]] = {}
        # per index position, kept up to date by every save: the state code and the box count
        # (drafts included), so the page's image list never walks every image
        self._codes = bytearray(ImageState.UNLABELED.code.encode() * len(self._entries))
        self._boxes = array("l", bytes(array("l").itemsize * len(self._entries)))
        self._states: Counter[ImageState] = Counter()
        self._classes_total: Counter[str] = Counter()
        self._drafts = 0
        #: Incremented by every save: a syncer compares it to skip when nothing changed.
        self.changes = 0
        self._load_summary()

    # ---------------------------------------------------------------- create / open
    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        *,
        name: str,
        classes: Sequence[str],
        images: Iterable[ImageEntry],
        source: ImageSource,
        labels: Iterable[ImageLabels] = (),
        instructions: str | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> LabelingStore:
        """Write a new store into ``folder`` (which must not exist) and open it.

        The folder is written under a temporary name and renamed when complete, so an
        interrupted create leaves nothing half made.

        Raises:
            ConflictError: ``folder`` exists already.
            InvalidInputError: No images, or a label file names an image not in ``images``.
        """
        target = Path(folder)
        if target.exists():
            raise ConflictError(
                f"labeling project {name!r} already exists at {target}; open it with "
                "project.labeling.get(name), or delete it first"
            )
        entries = list(images)
        if not entries:
            raise InvalidInputError(f"labeling project {name!r}: expected images, got none")
        ids = {e.id for e in entries}
        if len(ids) != len(entries):
            raise InvalidInputError(f"labeling project {name!r}: duplicate image ids in the index")
        meta = {
            "format": 1,
            "name": name,
            "classes": list(classes),
            "instructions": instructions,
            "created": utc_now(),
            "info": dict(info or {}),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            (work / LABELS_FOLDER).mkdir()
            (work / PROJECT_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            with (work / INDEX_FILE).open("w", encoding="utf-8", newline="\n") as fh:
                for entry in entries:
                    fh.write(json.dumps(entry._asdict(), ensure_ascii=False) + "\n")
            for item in labels:
                if item.id not in ids:
                    raise InvalidInputError(
                        f"labels for image {item.id!r}: that image is not in the index"
                    )
                data = json.dumps(item.to_json(), ensure_ascii=False).encode("utf-8")
                (work / LABELS_FOLDER / f"{item.id}.json").write_bytes(data)
            work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return cls.open(target, source)

    @staticmethod
    def read_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
        """``project.json`` of the store in ``folder`` (a backend reads ``info`` from it to
        build the image source before :meth:`open`).

        Raises:
            NotFoundError: No store there.
        """
        path = Path(folder) / PROJECT_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(
                f"no labeling project at {Path(folder)} ({PROJECT_FILE} missing)"
            ) from None
        except ValueError as exc:
            raise InvalidInputError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list):
            raise InvalidInputError(f"{path}: expected an object with a 'classes' list")
        return meta

    @classmethod
    def open(cls, folder: str | os.PathLike[str], source: ImageSource) -> LabelingStore:
        """Open the store in ``folder``, reading its index and every label file once.

        Raises:
            NotFoundError: No store in ``folder``.
            InvalidInputError: ``project.json`` or the index is damaged.
        """
        root = Path(folder).resolve()
        meta = cls.read_meta(root)
        entries = []
        index = root / INDEX_FILE
        with index.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                    entry = ImageEntry(**raw)
                except (ValueError, TypeError) as exc:
                    raise InvalidInputError(
                        f"{index}, line {number}: not an index entry ({exc})"
                    ) from exc
                entries.append(entry)
        remove_stale_temp_files(root / LABELS_FOLDER)
        return cls(root, meta, entries, source)

    # ---------------------------------------------------------------- properties
    @property
    def name(self) -> str:
        """The project's name."""
        return str(self._meta["name"])

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, in order (number keys pick them in this order)."""
        return tuple(self._meta["classes"])

    @property
    def instructions(self) -> str | None:
        """Instructions shown to the people labeling."""
        value = self._meta.get("instructions")
        return value if isinstance(value, str) else None

    @property
    def created(self) -> str:
        """When the project was created (UTC, ISO 8601)."""
        return str(self._meta.get("created", ""))

    @property
    def info(self) -> dict[str, Any]:
        """What the backend recorded to find the images again."""
        value = self._meta.get("info")
        return dict(value) if isinstance(value, dict) else {}

    @property
    def entries(self) -> tuple[ImageEntry, ...]:
        """Every image, in index order."""
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"LabelingStore(name={self.name!r}, images={len(self)}, folder={str(self.folder)!r})"

    def entry(self, image: str) -> ImageEntry:
        """The index entry of an image id.

        Raises:
            NotFoundError: The id is not in this project (no file is touched).
        """
        index = self._by_id.get(image) if isinstance(image, str) else None
        if index is None:
            shown = image if isinstance(image, str) and len(image) <= 64 else "<id>"
            raise NotFoundError(f"image {shown!r} is not in labeling project {self.name!r}")
        return self._entries[index]

    def position(self, image: str) -> int:
        """The index position of an image id (``NotFoundError`` when unknown)."""
        self.entry(image)
        return self._by_id[image]

    # ---------------------------------------------------------------- reading
    def labels(self, image: str) -> ImageLabels:
        """The saved labels of an image (revision 0 and no boxes when never saved)."""
        entry = self.entry(image)
        current = self._read(entry.id)
        width, height = self._known_size(entry, current)
        if current is None:
            return ImageLabels(id=entry.id, width=width, height=height)
        if current.width == width and current.height == height:
            return current
        return current.model_copy(update={"width": width, "height": height})

    def image_file(self, image: str) -> Path:
        """The image as a local file (fetched on demand from a remote source)."""
        return self.source.local_path(self.entry(image))

    def image_size(self, image: str) -> tuple[int, int]:
        """Displayed ``(width, height)``: from the index, else read from the image's header
        (fetching it when remote) and remembered."""
        entry = self.entry(image)
        known = self._known_size(entry, None)
        if known[0] is not None and known[1] is not None:
            return known[0], known[1]
        info = image_info(self.image_file(image))
        self._sizes[entry.id] = (info.width, info.height)
        return info.width, info.height

    def progress(self) -> LabelingProgress:
        """Counts of images by state and boxes by class (kept up to date by every save)."""
        with self._lock:
            per_class = {c: self._classes_total.get(c, 0) for c in self.classes}
            for label, n in sorted(self._classes_total.items()):
                if label not in per_class and n:
                    per_class[label] = n
            labeled_or_other = sum(self._states.values())
            return LabelingProgress(
                images=len(self._entries),
                unlabeled=len(self._entries)
                - labeled_or_other
                + self._states[ImageState.UNLABELED],
                labeled=self._states[ImageState.LABELED],
                skipped=self._states[ImageState.SKIPPED],
                reviewed=self._states[ImageState.REVIEWED],
                boxes=sum(self._classes_total.values()),
                boxes_per_class=per_class,
                prelabeled=self._states[ImageState.PRELABELED],
                drafts=self._drafts,
            )

    def overview(self) -> tuple[list[str], list[int]]:
        """Each image's state code and box count (drafts included), in index order (the page's
        image list)."""
        with self._lock:
            return list(self._codes.decode("ascii")), self._boxes.tolist()

    def codes(self) -> bytes:
        """Each image's one-letter state code, in index order (a copy, kept current by saves)."""
        with self._lock:
            return bytes(self._codes)

    def box_count(self, position: int) -> int:
        """The boxes (drafts included) of the image at an index position."""
        return int(self._boxes[position])

    def state(self, image: str) -> ImageState:
        """An image's state, as saved now."""
        found = self._summary.get(self.entry(image).id)
        return found[0] if found is not None else ImageState.UNLABELED

    def snapshot(self) -> Iterator[ImageLabels]:
        """The labels of every image saved at least once, in index order."""
        for entry in self._entries:
            if entry.id in self._summary:
                found = self._read(entry.id)
                if found is not None:
                    yield found

    # ---------------------------------------------------------------- writing
    def save(
        self,
        image: str,
        *,
        revision: int,
        state: ImageState | str,
        objects: Sequence[ObjectAnnotation],
    ) -> ImageLabels:
        """Save an image's labels atomically, if ``revision`` is still its current revision.

        Args:
            image: The image id.
            revision: The revision the change is based on.
            state: The image's new state (``unlabeled`` and ``prelabeled`` are the same request:
                the image becomes ``prelabeled`` when it holds drafts, else ``unlabeled``).
            objects: Its boxes (labels must be classes of the project), drafts included.

        Returns:
            The saved labels, with ``revision + 1``.

        Raises:
            NotFoundError: The image is not in the project.
            InvalidInputError: An unknown class or state.
            StaleRevisionError: The image is at another revision; nothing was written.
        """
        entry = self.entry(image)
        new_state = parse_state(state, where="state")
        if new_state in (ImageState.UNLABELED, ImageState.PRELABELED):
            drafted = any(is_draft(o) for o in objects)
            new_state = ImageState.PRELABELED if drafted else ImageState.UNLABELED
        known = set(self.classes)
        for k, obj in enumerate(objects):
            if obj.label not in known:
                raise InvalidInputError(
                    f"boxes[{k}].label: expected one of the classes {list(self.classes)}, got "
                    f"{obj.label!r} (add the class to the project first)"
                )
        path = self.folder / LABELS_FOLDER / f"{entry.id}.json"
        with self._lock, self._file_lock():
            current = self._read(entry.id)
            current_revision = current.revision if current is not None else 0
            if revision != current_revision:
                width, height = self._known_size(entry, current)
                shown = current or ImageLabels(id=entry.id, width=width, height=height)
                raise StaleRevisionError(
                    f"image {entry.name!r} was saved by someone else (revision "
                    f"{current_revision}, this change was based on revision {revision}); "
                    "nothing was written: reload the image and redo the change",
                    shown,
                )
            width, height = self._known_size(entry, current)
            saved = ImageLabels(
                id=entry.id,
                state=new_state,
                revision=current_revision + 1,
                objects=tuple(objects),
                width=width,
                height=height,
                updated=utc_now(),
            )
            write_atomic(path, json.dumps(saved.to_json(), ensure_ascii=False).encode("utf-8"))
            self._account(entry.id, saved)
            self.changes += 1
        return saved

    def merge(self, incoming: Iterable[ImageLabels]) -> int:
        """Take each incoming image's labels whose revision is higher than the saved one
        (pulling a shared copy); returns how many were taken."""
        taken = 0
        with self._lock, self._file_lock():
            for item in incoming:
                if item.id not in self._by_id:
                    continue
                current = self._read(item.id)
                if current is not None and current.revision >= item.revision:
                    continue
                path = self.folder / LABELS_FOLDER / f"{item.id}.json"
                write_atomic(path, json.dumps(item.to_json(), ensure_ascii=False).encode("utf-8"))
                self._account(item.id, item)
                taken += 1
            if taken:
                self.changes += 1
        return taken

    def add_classes(self, names: Sequence[str]) -> tuple[str, ...]:
        """Append classes that are not there yet (order kept); returns the class list."""
        with self._lock:
            extra = [n for n in dict.fromkeys(names) if n not in self.classes]
            if extra:
                meta = dict(self._meta)
                meta["classes"] = [*self.classes, *extra]
                data = json.dumps(meta, indent=2).encode("utf-8")
                write_atomic(self.folder / PROJECT_FILE, data)
                self._meta = meta
                self.changes += 1
        return self.classes

    def set_info(self, key: str, value: Any) -> None:
        """Set ``info[key]`` in ``project.json`` (atomically), e.g. the ML assistance settings."""
        with self._lock:
            meta = {**self._meta, "info": {**self.info, key: value}}
            write_atomic(self.folder / PROJECT_FILE, json.dumps(meta, indent=2).encode("utf-8"))
            self._meta = meta

    def reload(self) -> None:
        """Read every label file again (after another process changed them)."""
        meta = self.read_meta(self.folder)
        with self._lock:
            self._meta = meta
            self._load_summary()

    # ---------------------------------------------------------------- export
    def to_dataset(
        self,
        *,
        states: Iterable[ImageState | str] | None = None,
        original_refs: bool = False,
        root: str | os.PathLike[str] | None = None,
        include_drafts: bool = False,
    ) -> LabeledDataset:
        """The images in ``states`` with their boxes, as a :class:`~detectkit.LabeledDataset`.

        Human boxes only (accepted or edited drafts are human): a model's drafts are left out
        unless ``include_drafts``, and then keep ``source="model"`` and their score, so they
        are never mistaken for human labels.

        Args:
            states: Which images to keep (default: labeled and reviewed, plus pre-labeled
                with ``include_drafts``).
            include_drafts: Keep the drafts too.
            original_refs: Refer to each image by its original reference (the user's file or
                the image URL) instead of the local file of the image source.
            root: The data set's root folder (default: the image source's folder).
        """
        if states is None:
            states = [ImageState.LABELED, ImageState.REVIEWED]
            states += [ImageState.PRELABELED] if include_drafts else []
        wanted = {parse_state(s, where="states") for s in states}
        records = []
        for entry in self._entries:
            summary = self._summary.get(entry.id)
            state = summary[0] if summary is not None else ImageState.UNLABELED
            if state not in wanted:
                continue
            labels = self.labels(entry.id)
            ref = entry.ref if original_refs and entry.ref else None
            image = ref or str(self.source.local_path(entry))
            suffix = entry.name.rsplit(".", 1)[-1].lower() if "." in entry.name else None
            records.append(
                ImageRecord(
                    image=image,
                    width=labels.width,
                    height=labels.height,
                    format="jpg" if suffix in ("jpeg", "jpe", "jfif") else suffix,
                    objects=tuple(o for o in labels.objects if include_drafts or not is_draft(o)),
                )
            )
        if root is None and not original_refs:
            root = getattr(self.source, "folder", None)
        used = {o.label for r in records for o in r.objects}
        classes = [*self.classes, *sorted(used - set(self.classes))]
        return LabeledDataset(records, classes, root=root)

    # ---------------------------------------------------------------- internals
    def _read(self, image: str) -> ImageLabels | None:
        path = self.folder / LABELS_FOLDER / f"{image}.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return ImageLabels.from_json(json.loads(data), where=str(path))
        except ValueError as exc:
            raise InvalidInputError(f"{path}: damaged label file ({exc})") from exc

    def _known_size(
        self, entry: ImageEntry, labels: ImageLabels | None
    ) -> tuple[int | None, int | None]:
        if entry.width is not None and entry.height is not None:
            return entry.width, entry.height
        if labels is not None and labels.width is not None and labels.height is not None:
            return labels.width, labels.height
        cached = self._sizes.get(entry.id)
        return cached if cached is not None else (None, None)

    def _account(self, image: str, new: ImageLabels) -> None:
        # the totals are the sum of what this process knows, whatever the file said before
        previous = self._summary.get(image)
        if previous is not None:
            self._states[previous[0]] -= 1
            self._classes_total.subtract(previous[1])
            self._drafts -= previous[2]
        self._count(image, new)

    def _load_summary(self) -> None:
        self._summary = {}
        self._codes[:] = ImageState.UNLABELED.code.encode() * len(self._entries)
        self._boxes = array("l", bytes(array("l").itemsize * len(self._entries)))
        self._states = Counter()
        self._classes_total = Counter()
        self._drafts = 0
        folder = self.folder / LABELS_FOLDER
        folder.mkdir(exist_ok=True)
        with os.scandir(folder) as found:
            names = [f.name for f in found if f.name.endswith(".json") and f.is_file()]
        for name in names:
            image = name[: -len(".json")]
            if image not in self._by_id:
                continue
            labels = self._read(image)
            if labels is not None:
                self._count(image, labels)

    def _count(self, image: str, labels: ImageLabels) -> None:
        counts = Counter(o.label for o in labels.objects if not is_draft(o))
        drafts = sum(1 for o in labels.objects if is_draft(o))
        self._summary[image] = (labels.state, counts, drafts)
        position = self._by_id[image]
        self._codes[position] = ord(labels.state.code)
        self._boxes[position] = len(labels.objects)
        self._states[labels.state] += 1
        self._classes_total.update(counts)
        self._drafts += drafts

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover - Windows: the in-process lock only
            yield
            return
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
