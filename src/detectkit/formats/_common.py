"""Pieces every format reader and writer shares: coordinate checks, safe image references."""

from __future__ import annotations

import gc
import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError
from detectkit.images import is_remote, resolve_image_path
from detectkit.validation import ProblemCollector, ProblemKind, Severity

#: How far outside [0, 1] a normalized coordinate read from an annotation file (COCO, VOC,
#: YOLO, Azure ML JSONL) may lie and still be clipped into [0, 1] with a warning instead of
#: rejected: labeling tools emit 1.0004 or -2e-7 from rounding. Model responses have their own,
#: looser bound (:data:`detectkit.scoring.RESPONSE_CLIP_TOLERANCE`).
ANNOTATION_CLIP_TOLERANCE = 1e-3

#: The largest image width or height a reader accepts from an annotation file (the PNG and
#: TIFF limit, 2**31 - 1): a larger stored size (``10**400``) is a ``bad_value`` problem.
MAX_IMAGE_SIDE = 2**31 - 1


def is_text(value: str, *, path: bool = False) -> bool:
    """Whether ``value`` can be written as UTF-8: no lone surrogate (``"\\ud800"`` from a
    JSON escape), which every writer would refuse; with ``path``, no NUL byte either."""
    if path and "\0" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def inside_folder(
    path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    col: ProblemCollector | None,
    *,
    what: str,
    location: str | None = None,
) -> Path | None:
    """The link rule every reader follows: ``path`` with every symlink resolved
    (:func:`os.path.realpath`) must lie inside the data set ``folder`` (also resolved).

    Returns the resolved path, or ``None`` after recording an ``unsafe_path`` problem that names
    the link and where it points (never what the target holds). With ``col=None`` the problem
    is raised as :class:`~detectkit.InvalidAnnotationError`.
    """
    text = os.fspath(path)
    try:
        real = os.path.realpath(text)
        root = os.path.realpath(folder)
    except (ValueError, OSError) as exc:  # an embedded NUL byte or a lone surrogate
        problem_kind, message, got = (
            ProblemKind.BAD_VALUE,
            f"{what} path cannot be used",
            f"{type(exc).__name__} for {text!r}",
        )
    else:
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return Path(real)
        problem_kind, message, got = (
            ProblemKind.UNSAFE_PATH,
            f"{what} leads outside the data set folder and was not read: {text} -> {real}",
            "a link or .. leading out",
        )
    kwargs: dict[str, Any] = {
        "file": text if location is None else None,
        "location": location,
        "expected": f"a path inside {folder}",
        "got": got,
        "hint": "copy the file into the data set folder instead of linking to it",
    }
    if col is None:
        raise InvalidAnnotationError(message, **{**kwargs, "got": str(got)})
    col.add(problem_kind, message, **kwargs)
    return None


class FolderGuard:
    """:func:`inside_folder` for many files of one data set folder, resolving each parent
    folder once (a file's own name is only checked for being a link)."""

    def __init__(self, folder: Path, col: ProblemCollector) -> None:
        self.folder = folder
        self._prefix = os.path.realpath(folder).rstrip(os.sep) + os.sep
        self._col = col
        self._parents: dict[str, str] = {}

    def check(self, path: Path, *, what: str) -> bool:
        """Whether ``path`` lies inside the folder; a ``unsafe_path`` problem when not."""
        parent, name = os.path.split(os.path.abspath(path))
        real_parent = self._parents.get(parent)
        if real_parent is None:
            real_parent = self._parents[parent] = os.path.realpath(parent)
        resolved = os.path.join(real_parent, name)
        if os.path.islink(resolved):
            resolved = os.path.realpath(resolved)
        if resolved.startswith(self._prefix):
            return True
        return inside_folder(path, self.folder, self._col, what=what) is not None


def regular_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be opened as a data file (``None`` when it is a regular file):
    a FIFO, device or socket would block or never end, so it is checked before opening."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError) as exc:
        return type(exc).__name__
    if stat.S_ISREG(mode):
        return None
    return "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)"


def to_float(value: object) -> float | None:
    """``value`` as a finite float, accepting numbers and numeric strings (``"48.5"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            f = float(value)
        except OverflowError:  # an integer such as 10**400
            return None
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def make_box(
    coords: tuple[float, float, float, float],
    col: ProblemCollector,
    *,
    location: str,
    fields: tuple[str, str, str, str] = ("topX", "topY", "bottomX", "bottomY"),
    file: str | None = None,
) -> Box | None:
    """Check normalized corners and build a :class:`Box`, or record why not (``None``).

    Values a hair outside ``[0, 1]`` (within :data:`ANNOTATION_CLIP_TOLERANCE`) are clipped
    with a warning; values further out and inverted boxes are errors.
    """
    vals = list(coords)
    for k, (v, name) in enumerate(zip(vals, fields, strict=True)):
        if 0.0 <= v <= 1.0:
            continue
        if -ANNOTATION_CLIP_TOLERANCE <= v <= 1.0 + ANNOTATION_CLIP_TOLERANCE:
            clipped = min(max(v, 0.0), 1.0)
            col.add(
                ProblemKind.CLIPPED,
                "coordinate a hair outside [0, 1] was clipped",
                severity=Severity.WARNING,
                file=file,
                location=location,
                field=name,
                expected="a value in [0, 1]",
                got=v,
                hint=f"stored as {clipped}",
            )
            vals[k] = clipped
            continue
        col.add(
            ProblemKind.OUT_OF_RANGE,
            "box coordinate is outside the image",
            file=file,
            location=location,
            field=name,
            expected="a normalized value in [0, 1]",
            got=v,
            hint="pixel values must be divided by the image width/height",
        )
        return None
    x1, y1, x2, y2 = vals
    for lo, hi, lo_name, hi_name in (
        (x1, x2, fields[0], fields[2]),
        (y1, y2, fields[1], fields[3]),
    ):
        if hi < lo:
            col.add(
                ProblemKind.INVERTED_BOX,
                f"box is inverted: {hi_name} {hi} < {lo_name} {lo}",
                file=file,
                location=location,
                field=hi_name,
                expected=f">= {lo_name} ({lo})",
                got=hi,
                hint="swap the corners or fix the annotation",
            )
            return None
    return Box.trusted(x1, y1, x2, y2)


def read_provenance(
    score: object,
    source: object,
    model_version: object,
    col: ProblemCollector,
    *,
    location: str,
    fields: tuple[str, str, str] = ("score", "source", "model_version"),
) -> dict[str, Any] | None:
    """``score``, ``source`` and ``model_version`` of one box as read from a file, or ``None``
    (reported) when one is unusable.

    The rule for a file without a provenance field (``source`` is ``None``): a box with a score
    is a model's draft, a box without one a human label. ``fields`` names the keys in the file.
    """
    value: float | None = None
    if score is not None:
        value = to_float(score)
        if value is None or not 0.0 <= value <= 1.0 or type(score) is bool:
            col.add(
                ProblemKind.BAD_VALUE,
                "box score is not a number in [0, 1]; the box was skipped",
                location=location,
                field=fields[0],
                expected="a confidence in [0, 1]",
                got=score,
            )
            return None
    if source is None:
        source = "model" if value is not None else "human"
    if source not in ("human", "model"):
        col.add(
            ProblemKind.BAD_VALUE,
            "box source is neither human nor model; the box was skipped",
            location=location,
            field=fields[1],
            expected='"human" or "model"',
            got=source,
        )
        return None
    if model_version is not None and (type(model_version) is not str or not is_text(model_version)):
        col.add(
            ProblemKind.BAD_VALUE,
            "model_version is not text; it was ignored",
            severity=Severity.WARNING,
            location=location,
            field=fields[2],
            expected="a string such as 'cards:3'",
            got=model_version,
        )
        model_version = None
    return {"score": value, "source": source, "model_version": model_version}


def provenance_keys(obj: ObjectAnnotation) -> dict[str, object]:
    """The extra keys detectkit writes for a model's draft (nothing for a human label)."""
    if obj.source == "human":
        return {}
    out: dict[str, object] = {"source": "model"}
    if obj.model_version is not None:
        out["model_version"] = obj.model_version
    return out


_AML_DATASTORE = "amldatastore://"


def datastore_url(ref: str) -> str:
    """The one rule every reader applies to the Data Labeling export's datastore scheme.

    ``AmlDatastore://<datastore>/<path>`` (written by Data Labeling's COCO and MLTable exports,
    read by AutoML's own runtime) becomes ``azureml://datastores/<datastore>/paths/<path>``,
    the URI that Azure ML jobs, data assets and :mod:`detectkit` accept; any other reference
    (and a malformed ``AmlDatastore://`` one) is returned unchanged.
    """
    if ref[:15].lower() != _AML_DATASTORE:
        return ref
    datastore, _, rest = ref[len(_AML_DATASTORE) :].partition("/")
    if not datastore or not rest:
        return ref
    return f"azureml://datastores/{datastore}/paths/{rest}"


def resolve_ref(
    ref: str, images_root: Path, col: ProblemCollector, *, location: str, field: str = "image"
) -> str | None:
    """An image reference as stored in a record: URLs unchanged, local paths resolved inside
    ``images_root`` (escaping paths are reported as ``unsafe_path`` and give ``None``);
    ``AmlDatastore://`` URLs are rewritten by :func:`datastore_url`."""
    if is_remote(ref):
        return datastore_url(ref)
    if not is_text(ref, path=True):
        col.add(
            ProblemKind.BAD_VALUE,
            "image path holds a NUL byte or a lone surrogate and was refused",
            location=location,
            field=field,
            expected="a file path",
            got=ref,
        )
        return None
    try:
        return str(resolve_image_path(images_root, ref))
    except InvalidAnnotationError as exc:
        col.add(
            ProblemKind.UNSAFE_PATH,
            "image path escapes the data set folder and was refused",
            location=location,
            field=field,
            expected=exc.expected,
            got=ref,
            hint="pass images_root= pointing at the folder that holds the images",
        )
        return None


def output_ref(
    record: ImageRecord, out_dir: Path, *, image_base_url: str | None, root: Path | None
) -> str:
    """The image reference to write for ``record`` into a file in ``out_dir``.

    With ``image_base_url``, the image's path relative to the data set root (its file name when
    it is not under the root) is appended to the URL. Otherwise local images inside ``out_dir``
    are written relative to it (POSIX separators) and any other reference is written as is.
    """
    ref = record.image
    if image_base_url is not None:
        rel = record.name
        if not is_remote(ref) and root is not None:
            try:
                rel = Path(ref).resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                rel = record.name
        return image_base_url.rstrip("/") + "/" + rel
    if is_remote(ref):
        return ref
    p = Path(ref)
    try:
        return p.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return os.fspath(p.resolve())


class RefResolver:
    """:func:`resolve_ref` for many references under one ``images_root``, fast.

    Gives the same answers, but resolves each parent folder once (an image's own name is only
    checked for being a symlink), so reading 50,000 image references costs a ``lstat`` each
    instead of a full path resolution each.
    """

    def __init__(self, images_root: Path, col: ProblemCollector) -> None:
        self.root = os.path.realpath(images_root)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._col = col
        self._parents: dict[str, str] = {}

    def resolve(self, ref: str, *, location: str, field: str = "image") -> str | None:
        """``ref`` as a record stores it, or ``None`` (reported) when it escapes the root."""
        if is_remote(ref):
            return datastore_url(ref)
        if not is_text(ref, path=True):
            return resolve_ref(ref, Path(self.root), self._col, location=location, field=field)
        full = os.path.join(self.root, ref)  # an absolute ref replaces the root
        parent, name = os.path.split(full)
        if name in ("", ".", ".."):
            return resolve_ref(ref, Path(self.root), self._col, location=location, field=field)
        real_parent = self._parents.get(parent)
        if real_parent is None:
            real_parent = self._parents[parent] = os.path.realpath(parent)
        resolved = os.path.join(real_parent, name)
        if os.path.islink(resolved):
            resolved = os.path.realpath(resolved)
        if resolved.startswith(self._prefix):
            return resolved
        return resolve_ref(ref, Path(self.root), self._col, location=location, field=field)


class RefWriter:
    """:func:`output_ref` for every record of a data set written into ``out_dir``, fast.

    Same answers; the output folder and the data set root are resolved once, and image paths
    (already absolute once read) through a per-folder cache.
    """

    def __init__(self, out_dir: Path, *, image_base_url: str | None, root: Path | None) -> None:
        self._base = None if image_base_url is None else image_base_url.rstrip("/") + "/"
        anchor = out_dir if image_base_url is None else root
        self._prefix = None if anchor is None else os.path.realpath(anchor).rstrip(os.sep) + os.sep
        self._parents: dict[str, str] = {}

    def _real(self, ref: str) -> str:
        parent, name = os.path.split(os.path.abspath(ref))
        real_parent = self._parents.get(parent)
        if real_parent is None:
            real_parent = self._parents[parent] = os.path.realpath(parent)
        resolved = os.path.join(real_parent, name)
        return os.path.realpath(resolved) if os.path.islink(resolved) else resolved

    def ref(self, record: ImageRecord) -> str:
        """The image reference to write for ``record``."""
        image = record.image
        if is_remote(image):
            return image if self._base is None else self._base + record.name
        resolved = self._real(image)
        rel = None
        if self._prefix is not None and resolved.startswith(self._prefix):
            rel = resolved[len(self._prefix) :].replace(os.sep, "/")
        if self._base is not None:
            return self._base + (rel if rel is not None else record.name)
        return rel if rel is not None else resolved


_M = TypeVar("_M", bound=BaseModel)
_set_attr = object.__setattr__
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}
_DEFAULTS: dict[type[BaseModel], dict[str, Any]] = {}


def trusted_model(cls: type[_M], values: dict[str, Any]) -> _M:
    """``cls.model_construct(**values)`` for values the reader has checked: faster and smaller.

    For the frozen value models readers build by the hundred thousand (``Box``,
    ``ObjectAnnotation``, ``ImageRecord``). ``values`` names fields of ``cls`` (those left
    out take their plain default) and becomes the model's ``__dict__``. ``model_construct`` walks every field in Python (2.4 us
    per object against 1.1 us here, pydantic 2.12) and gives each object its own
    ``model_fields_set``; here every object of a class shares one set of all field names (216
    bytes saved per object, 40 % of a box's memory). That is safe for frozen models: pydantic
    copies the set before ``model_copy(update=...)`` changes it, and assignment is refused.
    """
    fields = _ALL_FIELDS.get(cls)
    if fields is None:
        fields = _ALL_FIELDS[cls] = set(cls.model_fields)
        _DEFAULTS[cls] = {
            name: info.default
            for name, info in cls.model_fields.items()
            if not info.is_required() and info.default_factory is None
        }
    if len(values) != len(fields):  # fill the fields a reader leaves at their default
        values = {**_DEFAULTS[cls], **values}
    if len(values) != len(fields):
        raise TypeError(
            f"{cls.__name__}: expected values for {sorted(fields)}, got {sorted(values)}"
        )
    obj = cls.__new__(cls)
    _set_attr(obj, "__dict__", values)
    _set_attr(obj, "__pydantic_fields_set__", fields)
    _set_attr(obj, "__pydantic_extra__", None)
    _set_attr(obj, "__pydantic_private__", None)
    return obj


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a reader builds many objects.

    Records, objects and boxes hold no reference cycles, but every allocation counts towards a
    collection, and repeated full collections over a growing heap made reading 400,000 boxes
    about twice as slow. The collector's previous state is restored on exit.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def unique_stems(records: LabeledDataset | list[ImageRecord]) -> list[str]:
    """One file stem per record, from the image name; later duplicates (case-insensitive)
    get ``_2``, ``_3`` ... appended."""
    taken: set[str] = set()
    stems: list[str] = []
    for record in records:
        base = Path(record.name).stem or "image"
        stem, n = base, 1
        while stem.lower() in taken:
            n += 1
            stem = f"{base}_{n}"
        taken.add(stem.lower())
        stems.append(stem)
    return stems


def label_provenance(
    doc: dict[str, object], n: int, loc: str, col: ProblemCollector
) -> list[tuple[object, object, object]] | None:
    """Each box's (confidence, source, model_version) from an Azure ML JSONL line's parallel
    lists, with the rule for a file without ``label_source`` (see :mod:`~detectkit.formats.azureml`)."""
    lists: list[list[object] | None] = []
    for key in ("label_confidence", "label_source", "label_model_version"):
        value = doc.get(key)
        if value is not None and (type(value) is not list or len(value) != n):
            col.add(
                ProblemKind.BAD_VALUE,
                f"{key} is not a list with one entry per box; it was ignored",
                severity=Severity.WARNING,
                location=loc,
                field=key,
                expected=f"a list of {n} entries",
                got=value if type(value) is not list else f"{len(value)} entries",
            )
            value = None
        lists.append(value if type(value) is list else None)
    if all(v is None for v in lists):
        return None
    conf, source, version = (v if v is not None else [None] * n for v in lists)
    out: list[tuple[object, object, object]] = []
    for c, s, v in zip(conf, source, version, strict=True):
        if s is None and c == 1.0 and type(c) is not bool:  # Data Labeling's mark of a person
            c, s = None, "human"
        elif s == "human" and c == 1.0:
            c = None
        out.append((c, s, v))
    return out


def pixel_size(value: object, col: ProblemCollector, loc: str, field: str) -> int | None:
    """A pixel size from ``499``, ``499.0`` or ``"499px"``; ``None`` (warned) otherwise."""
    if type(value) is int and 0 < value <= MAX_IMAGE_SIDE:
        return value
    if value is None:
        return None
    number = None
    if type(value) is float and value.is_integer() and value <= MAX_IMAGE_SIDE:
        number = int(value)
    elif type(value) is str:
        text = value.strip().lower().removesuffix("px").strip()
        if text.isdigit() and len(text) <= 10:
            number = int(text)
    if number is not None and 0 < number <= MAX_IMAGE_SIDE:
        return number
    col.add(
        ProblemKind.BAD_VALUE,
        "image size is not a positive whole number of pixels; it was ignored",
        severity=Severity.WARNING,
        location=loc,
        field=field,
        expected=f'a positive integer up to {MAX_IMAGE_SIDE} or a string such as "499px"',
        got=value if type(value) is not int else f"an integer of {len(str(value))} digits",
    )
    return None
