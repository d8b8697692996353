"""Reading the ``annotations`` list of a COCO file onto the images already read.

:mod:`detectkit.formats.coco` reads the file, its categories and images; this module turns each
annotation into an :class:`~detectkit.dataset.ObjectAnnotation` on its image, and reports every
annotation it skips.

Provenance: an annotation's ``score`` (as in a COCO results file) is kept; detectkit's extra
keys ``source`` (``"human"`` or ``"model"``) and ``model_version`` say who made it. Without
``source``, an annotation with a ``score`` is read as a model's draft and one without as a
human label.
"""

from __future__ import annotations

from typing import Any

from detectkit.boxes import Box
from detectkit.dataset import ObjectAnnotation
from detectkit.formats._common import make_box, read_provenance, trusted_model
from detectkit.validation import (
    ProblemCollector,
    ProblemKind,
    Severity,
)

BBOX_FIELDS = ("bbox x", "bbox y", "bbox x+width", "bbox y+height")


class CocoImage:
    """An image being read: where it is, its size (0 when unknown), and its objects so far."""

    __slots__ = ("height", "image", "name", "objects", "width")

    def __init__(self, image: str, name: str, width: int, height: int) -> None:
        self.image = image
        self.name = name
        self.width = width
        self.height = height
        self.objects: list[ObjectAnnotation] = []


def is_id(value: object) -> bool:
    return (type(value) is int) or (type(value) is str and value != "")


def id_warning(col: ProblemCollector, what: str, loc: str) -> None:
    col.add(
        ProblemKind.INVALID_ID,
        f"{what} id 0 reads as 'no match' in pycocotools; kept",
        severity=Severity.WARNING,
        location=loc,
        field="id",
        expected="an id >= 1",
        got=0,
        hint="detectkit writes ids from 1; re-export with write_coco",
    )


def read_annotations(
    raw: list[Any],
    images: dict[int | str, CocoImage],
    dropped: set[object],
    names: dict[int | str, str],
    units: str,
    col: ProblemCollector,
) -> None:
    pixels = units == "pixels"
    seen: set[object] = set()
    for i, a in enumerate(raw):
        raw[i] = None  # free each parsed annotation as it is used: halves the peak memory
        if type(a) is not dict:
            col.add(
                ProblemKind.BAD_VALUE,
                "annotation is not an object; it was skipped",
                location=f"annotations[{i}]",
                expected='{"id", "image_id", "category_id", "bbox"}',
                got=type(a).__name__,
            )
            continue
        aid = a.get("id")
        if type(aid) is int and aid > 0 and aid not in seen:
            seen.add(aid)
        else:
            _check_annotation_id(aid, seen, i, col)
        image_id: Any = a.get("image_id")
        try:
            im = images.get(image_id)
        except TypeError:  # an unhashable id such as a list
            im = None
        if im is None:
            if not (is_id(image_id) and image_id in dropped):
                _unreferenced(image_id, images, i, aid, col)
            continue
        category_id: Any = a.get("category_id")
        try:
            label = names.get(category_id)
        except TypeError:
            label = None
        if label is None:
            col.add(
                ProblemKind.UNKNOWN_LABEL,
                "annotation names a category that is not in categories; it was skipped",
                location=f"annotations[{i}] (id {aid})",
                field="category_id",
                expected=f"one of {sorted(names, key=str)[:20]}",
                got=category_id,
            )
            continue
        bbox = a.get("bbox")
        if type(bbox) is not list or len(bbox) != 4:
            col.add(
                ProblemKind.MISSING_FIELD if bbox is None else ProblemKind.BAD_VALUE,
                "annotation has no usable bbox; it was skipped",
                location=f"annotations[{i}] (id {aid})",
                field="bbox",
                expected="[x, y, width, height]",
                got=bbox,
            )
            continue
        x, y, w, h = bbox
        if not (
            (type(x) is float or type(x) is int)
            and (type(y) is float or type(y) is int)
            and (type(w) is float or type(w) is int)
            and (type(h) is float or type(h) is int)
        ):
            col.add(
                ProblemKind.BAD_VALUE,
                "bbox values are not all numbers; the annotation was skipped",
                location=f"annotations[{i}] (id {aid})",
                field="bbox",
                expected="[x, y, width, height] numbers",
                got=bbox,
            )
            continue
        try:
            if pixels:
                width = im.width  # never 0 here: images without a size were dropped
                height = im.height
                x1 = x / width
                y1 = y / height
                x2 = (x + w) / width
                y2 = (y + h) / height
            else:
                x1 = float(x)
                y1 = float(y)
                x2 = float(x + w)
                y2 = float(y + h)
        except OverflowError:  # an integer such as 10**400: beyond any float
            col.add(
                ProblemKind.BAD_VALUE,
                "bbox value is too large to be a coordinate; the annotation was skipped",
                location=f"annotations[{i}] (id {aid})",
                field="bbox",
                expected="[x, y, width, height] numbers within the image",
                got=[v if type(v) is float or abs(v) < 10**30 else "a huge integer" for v in bbox],
            )
            continue
        if 0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0:
            box = trusted_model(Box, {"top_x": x1, "top_y": y1, "bottom_x": x2, "bottom_y": y2})
        else:
            checked = make_box(
                (x1, y1, x2, y2),
                col,
                location=f"annotations[{i}] (id {aid}, image {im.name})",
                fields=BBOX_FIELDS,
            )
            if checked is None:
                continue
            box = checked
        crowd = a.get("iscrowd")
        if crowd is None or crowd == 0:
            is_crowd = False
        elif crowd == 1:
            is_crowd = True
        else:
            col.add(
                ProblemKind.BAD_VALUE,
                "iscrowd is not 0 or 1; the annotation was skipped",
                location=f"annotations[{i}] (id {aid})",
                field="iscrowd",
                expected="0 or 1",
                got=crowd,
            )
            continue
        values: dict[str, Any] = {"label": label, "box": box, "is_crowd": is_crowd}
        if "score" in a or "source" in a:  # a draft: provenance read with the shared rule
            extra = read_provenance(
                a.get("score"),
                a.get("source"),
                a.get("model_version"),
                col,
                location=f"annotations[{i}] (id {aid})",
            )
            if extra is None:
                continue
            values.update(extra)
        im.objects.append(trusted_model(ObjectAnnotation, values))


def _check_annotation_id(aid: object, seen: set[object], i: int, col: ProblemCollector) -> None:
    loc = f"annotations[{i}]"
    if not is_id(aid):
        col.add(
            ProblemKind.MISSING_FIELD if aid is None else ProblemKind.BAD_VALUE,
            "annotation has no usable id; kept (ids are renumbered on writing)",
            severity=Severity.WARNING,
            location=loc,
            field="id",
            expected="an integer or string id",
            got=aid,
        )
        return
    if aid in seen:
        col.add(
            ProblemKind.DUPLICATE_ID,
            "annotation id is used twice; kept (ids are renumbered on writing)",
            severity=Severity.WARNING,
            location=loc,
            field="id",
            expected="unique annotation ids",
            got=aid,
            hint="pycocotools indexes annotations by id: duplicates alias each other",
        )
        return
    seen.add(aid)
    if aid == 0:
        id_warning(col, "annotation", loc)


def _unreferenced(
    image_id: object, images: dict[int | str, CocoImage], i: int, aid: object, col: ProblemCollector
) -> None:
    hint = None
    if type(image_id) is str and image_id.isdigit() and int(image_id) in images:
        hint = f"ids are compared exactly: the string {image_id!r} is not the number {image_id}"
    elif type(image_id) is int and str(image_id) in images:
        hint = (
            f"ids are compared exactly: the number {image_id} is not the string {str(image_id)!r}"
        )
    col.add(
        ProblemKind.UNREFERENCED,
        "annotation points at an image that is not in images; it was skipped",
        location=f"annotations[{i}] (id {aid})",
        field="image_id",
        expected="the id of an entry of images",
        got=image_id,
        hint=hint,
    )
