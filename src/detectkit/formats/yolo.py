"""YOLO (Ultralytics / Darknet): ``images/``, ``labels/`` and a class list.

Layout
------
Images are read from ``images/`` when the folder has one, else from the whole folder, in every
subfolder, sorted by relative path. The label file of an image follows the Ultralytics rule: the
last ``images`` folder in its path becomes ``labels`` and the suffix ``.txt``, so
``images/train/a.jpg`` -> ``labels/train/a.txt`` and, in a Roboflow export,
``train/images/a.jpg`` -> ``train/labels/a.txt``; an image with no ``images`` folder in its
path has its ``.txt`` file beside it (the flat layout of LabelImg). The split folders are not
kept (use :meth:`~detectkit.LabeledDataset.split`). Hidden files are skipped; ``.txt`` files
outside ``labels`` folders and image folders (``README.txt``) are not label files.

Class names come from ``data.yaml`` (or another ``*.yaml`` in the folder with a ``names`` key),
else from ``classes.txt`` (one name per line, in the folder or in ``labels/``). ``names`` may be
a flow list (``names: [a, b]``, also over several lines), a block list (``- a``) or a mapping of
ids ``0..n-1`` to names (``0: a``, block or ``{0: a}``); only those shapes are understood (no
YAML library is needed). Without any class file, classes are named by their ids (``"0"``,
``"1"`` ...) and a warning says so.

Label lines
-----------
``class_id cx cy w h``: the box centre and size, normalized to ``[0, 1]``. Images without a
label file, or with an empty one, are images without boxes. A line with a sixth value is a
prediction saved with its confidence (Ultralytics ``save_conf``), kept as the object's
``score``. A line with ``class_id x1 y1 x2 y2 x3 y3 ...`` (three or more points) is a segment
polygon: its bounding box is kept and one warning per file says how many lines were converted.

Values a hair outside ``[0, 1]`` (within
:data:`~detectkit.formats._common.ANNOTATION_CLIP_TOLERANCE`) are clipped with a ``clipped``
warning (Ultralytics drops such images as corrupt); further out they are an ``out_of_range``
error for that line. Boxes whose centre and size are valid but which
extend past the image edge are clipped to the image with a warning. A class id without a name
is an ``unknown_label`` error; a label file without an image is an ``unreferenced`` error (its
boxes are not read). Every problem names the label file and line.

Image sizes are read from the image headers, EXIF orientation applied
(:func:`detectkit.images.image_info`); an unreadable image is an ``unreadable_image`` error.

Writing
-------
:func:`write_yolo` writes ``images/`` (hard links to the images when possible, else copies),
``labels/`` (one file per image, empty for images without boxes; values written with ``repr``
precision so round trips are exact), ``data.yaml`` and ``classes.txt``. YOLO has no crowd flag
and no score column for training: crowd objects are written as normal boxes and scores are
dropped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError, InvalidInputError, NotFoundError
from detectkit.formats._common import (
    ANNOTATION_CLIP_TOLERANCE,
    FolderGuard,
    gc_paused,
    inside_folder,
    to_float,
    unique_stems,
)
from detectkit.formats._yaml import YamlError, read_names
from detectkit.images import IMAGE_EXTENSIONS, image_info, is_remote
from detectkit.validation import (
    ErrorMode,
    ProblemCollector,
    ProblemKind,
    Severity,
    ValidationReport,
)

__all__ = ["read_yolo", "write_yolo"]

#: Values this close outside [0, 1] are float noise (``cx - w / 2`` of an edge box): clipped
#: silently. Between this and ANNOTATION_CLIP_TOLERANCE they are clipped with a warning.
_NOISE = 1e-9
_BOX_FIELDS = ("cx", "cy", "w", "h")
#: Without a class file, class ids are named by number up to this many classes; a larger id
#: (``30000000``) is an ``unknown_label`` error instead of millions of made-up names.
MAX_UNNAMED_CLASSES = 10_000


@dataclass(frozen=True)
class _Label:
    """One parsed label line, before its class id is named."""

    class_id: int
    box: Box
    score: float | None
    file: str
    location: str


# ---------------------------------------------------------------------------- reading
def read_yolo(
    path: str | os.PathLike[str], *, errors: ErrorMode = "raise"
) -> tuple[LabeledDataset, ValidationReport]:
    """Read a YOLO data set folder.

    Args:
        path: The folder (holding ``images/`` and ``labels/``, or images and ``.txt`` files side
            by side), or its ``data.yaml`` / ``classes.txt``.
        errors: ``"raise"`` stops at the first error; ``"collect"`` keeps every valid image and
            box and lists every problem (label file, line, field).

    Returns:
        The data set (classes in id order; one record per image, sorted by path) and the report
        of every problem found (warnings only in ``raise`` mode).

    Raises:
        NotFoundError: ``path`` does not exist or holds no image.
        InvalidAnnotationError: In ``raise`` mode, the first error found.

    Example:
        >>> ds, report = read_yolo("cards-yolo/")  # doctest: +SKIP
    """
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"{p}: no such file or folder (expected a YOLO data set folder)")
    root, class_file = (p.parent, p) if p.is_file() else (p, None)
    col = ProblemCollector(errors)
    guard = FolderGuard(root, col)
    classes = _read_classes(root, class_file, col, guard)
    images_dir = root / "images" if (root / "images").is_dir() else root
    inside_folder(images_dir, root, None, what="images/ folder")
    images = sorted(
        (f for f in images_dir.rglob("*") if _is_image(f) and guard.check(f, what="image")),
        key=lambda f: f.relative_to(root).as_posix(),
    )
    if not images:
        raise NotFoundError(
            f"{images_dir}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}); "
            "a YOLO data set holds images/ and labels/"
        )
    if images_dir != root and not (root / "labels").is_dir():
        col.add(
            ProblemKind.MISSING_FIELD,
            "no labels/ folder: every image is read without boxes",
            severity=Severity.WARNING,
            file=str(root / "labels"),
            expected="labels/<name>.txt for each image with boxes",
            got="no folder",
        )
    parsed: list[tuple[Path, tuple[int, int, str | None], list[_Label]]] = []
    used: set[Path] = set()
    with gc_paused():
        for image in images:
            label_file = label_path(image, root)
            labels = []
            if label_file.is_file():
                used.add(label_file)
                if guard.check(label_file, what="label file"):
                    labels = _read_label_file(label_file, col)
            size = _size(image, col)
            if size is not None:
                parsed.append((image, size, labels))
    for stray in sorted(_label_files(root, {image.parent for image in images}) - used):
        col.add(
            ProblemKind.UNREFERENCED,
            "label file has no image; its boxes were not read",
            file=str(stray),
            expected=f"an image {stray.stem}.<ext> where the labels/ -> images/ rule puts it",
            got="no image",
            hint="add the image or delete the label file",
        )
    if classes is None:
        ids = (lbl.class_id for _, _, labels in parsed for lbl in labels)
        top = max((i for i in ids if i < MAX_UNNAMED_CLASSES), default=-1)
        classes = [str(i) for i in range(top + 1)]
        col.add(
            ProblemKind.MISSING_FIELD,
            "no class names found; classes are named by their ids",
            severity=Severity.WARNING,
            file=str(root),
            expected="data.yaml with names: or classes.txt",
            got="neither",
            hint="add classes.txt with one class name per line, in id order",
        )
    records = [
        ImageRecord(
            image=str(image.resolve()),
            width=width,
            height=height,
            format=fmt,
            objects=tuple(_named(labels, classes, col)),
        )
        for image, (width, height, fmt), labels in parsed
    ]
    return LabeledDataset(records, classes, root=root.resolve()), col.report()


def _is_image(f: Path) -> bool:
    return f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()


def label_path(image: Path, root: Path) -> Path:
    """The label file of ``image``: the last ``images`` folder of its path (below ``root``)
    becomes ``labels`` and the suffix ``.txt`` (the Ultralytics rule); without an ``images``
    folder, the ``.txt`` file beside the image."""
    parts = list(image.relative_to(root).parts)
    folders = parts[:-1]
    if "images" in folders:
        parts[len(folders) - 1 - folders[::-1].index("images")] = "labels"
    return root.joinpath(*parts).with_suffix(".txt")


def _label_files(root: Path, image_folders: set[Path]) -> set[Path]:
    """The ``.txt`` files that are label files: in a ``labels`` folder or beside images."""
    return {
        f
        for f in root.rglob("*.txt")
        if f.name != "classes.txt"
        and not f.name.startswith(".")
        and ("labels" in f.relative_to(root).parts[:-1] or f.parent in image_folders)
        and f.is_file()
    }


def _size(image: Path, col: ProblemCollector) -> tuple[int, int, str | None] | None:
    try:
        info = image_info(image)
    except InvalidAnnotationError as exc:
        col.add(
            ProblemKind.UNREADABLE_IMAGE,
            "image file cannot be read; it is not part of the data set",
            file=str(image),
            expected=exc.expected,
            got=exc.got,
            hint="re-export the image or delete it and its label file",
        )
        return None
    return info.width, info.height, info.format


def _named(
    labels: list[_Label], classes: list[str], col: ProblemCollector
) -> list[ObjectAnnotation]:
    out = []
    for lbl in labels:
        if lbl.class_id >= len(classes):
            col.add(
                ProblemKind.UNKNOWN_LABEL,
                "class id has no class name",
                file=lbl.file,
                location=lbl.location,
                field="class_id",
                expected=f"an id in 0..{len(classes) - 1} ({len(classes)} classes)",
                got=lbl.class_id if lbl.class_id < 10**30 else f"{lbl.class_id:.3g}",
                hint="fix the id, or add the class to data.yaml / classes.txt (without one, "
                f"ids up to {MAX_UNNAMED_CLASSES - 1} are named by number)",
            )
            continue
        out.append(ObjectAnnotation(label=classes[lbl.class_id], box=lbl.box, score=lbl.score))
    return out


def _read_label_file(label_file: Path, col: ProblemCollector) -> list[_Label]:
    file = str(label_file)
    try:
        text = label_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        col.add(
            ProblemKind.PARSE,
            "label file cannot be read as text",
            file=file,
            got=type(exc).__name__,
            hint="re-export the label file",
        )
        return []
    labels: list[_Label] = []
    polygons: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        label = _parse_line(tokens, f"line {lineno}", col, file)
        if label is not None:
            labels.append(label)
            if len(tokens) > 6:
                polygons.append(lineno)
    if polygons:
        col.add(
            ProblemKind.BAD_VALUE,
            f"{len(polygons)} segment polygon line(s) were converted to their bounding boxes",
            severity=Severity.WARNING,
            file=file,
            location=f"line {polygons[0]}",
            expected="class_id cx cy w h",
            got="class_id x1 y1 x2 y2 ...",
        )
    return labels


def _parse_line(tokens: list[str], loc: str, col: ProblemCollector, file: str) -> _Label | None:
    n = len(tokens)
    if not (n in (5, 6) or (n >= 7 and n % 2 == 1)):
        col.add(
            ProblemKind.BAD_VALUE,
            "label line has the wrong number of values",
            file=file,
            location=loc,
            expected="5 values (class_id cx cy w h), 6 with a score, or a polygon "
            "(class_id x1 y1 x2 y2 x3 y3 ...)",
            got=f"{n} values",
        )
        return None
    class_id = to_float(tokens[0])
    if class_id is None or class_id < 0 or not class_id.is_integer():
        col.add(
            ProblemKind.BAD_VALUE,
            "class id is not a non-negative integer",
            file=file,
            location=loc,
            field="class_id",
            expected="an integer id such as 0",
            got=tokens[0],
        )
        return None
    if n <= 6:
        fields = (*_BOX_FIELDS, "score")[: n - 1]
    else:
        fields = tuple(f"{axis}{k // 2 + 1}" for k in range(n - 1) for axis in "xy"[k % 2])
    values: list[float] = []
    for name, token in zip(fields, tokens[1:], strict=True):
        value = _unit_value(token, name, loc, col, file)
        if value is None:
            return None
        values.append(value)
    score = None
    if n <= 6:
        cx, cy, w, h = values[:4]
        if n == 6:
            score = values[4]
        corners = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    else:
        xs, ys = values[0::2], values[1::2]
        corners = [min(xs), min(ys), max(xs), max(ys)]
    clipped = [min(max(v, 0.0), 1.0) for v in corners]
    if any(abs(a - b) > _NOISE for a, b in zip(corners, clipped, strict=True)):
        col.add(
            ProblemKind.CLIPPED,
            "box extends past the image edge; it was clipped to the image",
            severity=Severity.WARNING,
            file=file,
            location=loc,
            field="cx cy w h" if n <= 6 else "polygon",
            expected="cx - w/2 >= 0, cx + w/2 <= 1 (same for y)",
            got=" ".join(tokens[1:5]),
        )
    return _Label(int(class_id), Box.trusted(*clipped), score, file, loc)


def _unit_value(token: str, name: str, loc: str, col: ProblemCollector, file: str) -> float | None:
    """A value that must lie in [0, 1]: a hair outside is clipped with a warning."""
    value = to_float(token)
    if value is None:
        col.add(
            ProblemKind.BAD_VALUE,
            "value is not a number",
            file=file,
            location=loc,
            field=name,
            expected="a number in [0, 1]",
            got=token,
        )
        return None
    if 0.0 <= value <= 1.0:
        return value
    if -ANNOTATION_CLIP_TOLERANCE <= value <= 1.0 + ANNOTATION_CLIP_TOLERANCE:
        clipped = min(max(value, 0.0), 1.0)
        if abs(clipped - value) > _NOISE:
            col.add(
                ProblemKind.CLIPPED,
                "value a hair outside [0, 1] was clipped",
                severity=Severity.WARNING,
                file=file,
                location=loc,
                field=name,
                expected="a value in [0, 1]",
                got=token,
                hint=f"stored as {clipped}",
            )
        return clipped
    col.add(
        ProblemKind.OUT_OF_RANGE,
        "value is outside [0, 1]",
        file=file,
        location=loc,
        field=name,
        expected="a normalized value in [0, 1]",
        got=token,
        hint="YOLO labels are normalized: divide pixel values by the image width/height",
    )
    return None


# ---------------------------------------------------------------------------- class names
def _read_classes(
    root: Path, class_file: Path | None, col: ProblemCollector, guard: FolderGuard
) -> list[str] | None:
    """Class names from data.yaml (or another *.yaml with names), else classes.txt."""
    if class_file is not None and class_file.suffix.lower() not in (".yaml", ".yml"):
        return _classes_txt(class_file, col) if guard.check(class_file, what="class file") else None
    yamls = [class_file] if class_file is not None else []
    yamls += [root / "data.yaml", root / "data.yml"]
    yamls += sorted(f for f in root.glob("*.y*ml") if f.suffix.lower() in (".yaml", ".yml"))
    seen: set[Path] = set()
    for candidate in yamls:
        if candidate in seen or not candidate.is_file():
            continue
        seen.add(candidate)
        if not guard.check(candidate, what="class file"):
            continue
        names = _yaml_classes(candidate, col)
        if names is not None:
            return names
    for candidate in (root / "classes.txt", root / "labels" / "classes.txt"):
        if candidate.is_file() and guard.check(candidate, what="class file"):
            return _classes_txt(candidate, col)
    return None


def _yaml_classes(path: Path, col: ProblemCollector) -> list[str] | None:
    try:
        names, nc = parse_data_yaml(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        col.add(ProblemKind.PARSE, "file cannot be read", file=str(path), got=type(exc).__name__)
        return None
    except YamlError as exc:
        col.add(
            ProblemKind.PARSE,
            f"names cannot be read: {exc}",
            file=str(path),
            location=f"line {exc.line}",
            field="names",
            expected="names: [a, b], a block list (- a) or a mapping (0: a)",
            hint="write names in one of those shapes, or use classes.txt",
        )
        return None
    if names is not None and nc is not None and nc != len(names):
        col.add(
            ProblemKind.BAD_VALUE,
            "nc disagrees with the number of names; the names are used",
            severity=Severity.WARNING,
            file=str(path),
            field="nc",
            expected=str(len(names)),
            got=nc,
        )
    return names


def _classes_txt(path: Path, col: ProblemCollector) -> list[str] | None:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        col.add(ProblemKind.PARSE, "file cannot be read", file=str(path), got=type(exc).__name__)
        return None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    seen: set[str] = set()
    for k, name in enumerate(names, start=1):
        if not name or name in seen:
            col.add(
                ProblemKind.PARSE,
                "class name is empty" if not name else "class name is repeated",
                file=str(path),
                location=f"line {k}",
                expected="one unique, non-empty class name per line",
                got=name,
                hint="class ids are line numbers: fix the file so each line names one class",
            )
            return None
        seen.add(name)
    return names


def parse_data_yaml(text: str) -> tuple[list[str] | None, int | None]:
    """``names`` (in id order) and ``nc`` of an Ultralytics ``data.yaml``.

    See :func:`detectkit.formats._yaml.read_names` for the shapes understood.

    Raises:
        ValueError: ``names`` is present but in none of those shapes (``.line`` is set).
    """
    return read_names(text)


def write_yolo(dataset: LabeledDataset, path: str | os.PathLike[str]) -> Path:
    """Write a YOLO data set folder: ``images/``, ``labels/``, ``data.yaml``, ``classes.txt``.

    Images are hard-linked into ``images/`` when possible (same file system), else copied;
    each gets ``labels/<stem>.txt`` (empty when it has no boxes) with one
    ``class_id cx cy w h`` line per object, values at full ``repr`` precision. Images with the
    same file stem are renamed ``<stem>_2`` ... Crowd objects are written as normal boxes (YOLO
    has no crowd flag) and scores are dropped. ``data.yaml`` lists ``names`` in class id order,
    ``nc``, an absolute ``path`` and ``train``/``val`` both set to ``images`` (the whole data
    set; split it first with :meth:`~detectkit.LabeledDataset.split` to write separate sets).
    The data set is not modified. Write into a new or empty folder: files of earlier exports
    are not removed.

    Args:
        dataset: The data set to write; every image must be a local file.
        path: Output folder (created when missing).

    Returns:
        The output folder.

    Raises:
        InvalidInputError: An image is a URL, a label is not in ``dataset.classes``, or a class
            name is empty or holds a line break.
        NotFoundError: An image file does not exist.
    """
    out = Path(path)
    ids = {name: k for k, name in enumerate(dataset.classes)}
    for name in dataset.classes:
        if not name.strip() or "\n" in name or "\r" in name or name != name.strip():
            raise InvalidInputError(
                f"class name {name!r}: YOLO class files hold one name per line; expected a "
                "non-empty name without line breaks or surrounding spaces; rename it with "
                "dataset.rename_labels()"
            )
    for k, record in enumerate(dataset):
        _check_writable(record, k, ids)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    for record, stem in zip(dataset, unique_stems(dataset), strict=True):
        source = Path(record.image)
        _link_or_copy(source, out / "images" / f"{stem}{source.suffix}")
        (out / "labels" / f"{stem}.txt").write_text(_label_text(record, ids), encoding="utf-8")
    (out / "data.yaml").write_text(data_yaml_text(dataset.classes, out), encoding="utf-8")
    (out / "classes.txt").write_text(
        "".join(f"{name}\n" for name in dataset.classes), encoding="utf-8"
    )
    return out


def _check_writable(record: ImageRecord, index: int, ids: dict[str, int]) -> None:
    if is_remote(record.image):
        raise InvalidInputError(
            f"record {index} ({record.image}): YOLO data sets hold the image files themselves; "
            "expected a local image, got a URL; download the images first"
        )
    if not Path(record.image).is_file():
        raise NotFoundError(
            f"record {index}: image file not found: {record.image}; YOLO copies the images, "
            "so they must exist; fix the path or remove the record"
        )
    unknown = sorted({o.label for o in record.objects} - set(ids))
    if unknown:
        raise InvalidInputError(
            f"record {index} ({record.name}): labels {unknown} are not in the class list "
            f"{list(ids)}; YOLO stores class ids; add them to the data set's classes"
        )


def _label_text(record: ImageRecord, ids: dict[str, int]) -> str:
    lines = []
    for obj in record.objects:
        cx, cy, w, h = obj.box.to_cxcywh()
        lines.append(f"{ids[obj.label]} {cx!r} {cy!r} {w!r} {h!r}\n")
    return "".join(lines)


def data_yaml_text(classes: tuple[str, ...], out: Path) -> str:
    """The ``data.yaml`` :func:`write_yolo` writes for a folder ``out``; names are JSON-quoted,
    so :func:`parse_data_yaml` and PyYAML both read them back unchanged."""
    names = "".join(f"  - {json.dumps(name, ensure_ascii=False)}\n" for name in classes)
    return (
        "# YOLO data set written by detectkit. images/ holds every image (no split), so train\n"
        "# and val both point at it. Ultralytics resolves them against `path`; without a\n"
        "# `path` line it uses this file's folder.\n"
        f"path: {json.dumps(str(out.resolve()), ensure_ascii=False)}\n"
        "train: images\n"
        "val: images\n"
        f"nc: {len(classes)}\n"
        f"names:{'' if classes else ' []'}\n{names}"
    )


def _link_or_copy(source: Path, dest: Path) -> None:
    if dest.exists():
        if os.path.samefile(source, dest):
            return
        dest.unlink()
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
