"""Label Studio: write an import file of tasks, read a JSON export back.

A task is ``{"data": {"image": URL}, "annotations": [...], "predictions": [...]}``; each box is a
``rectanglelabels`` result whose ``value`` holds ``x``, ``y``, ``width``, ``height`` in
**percent** of the image (top-left corner), with ``original_width``/``original_height``.
Human labels (``source="human"``) are written as the task's annotation, a model's drafts
(``source="model"``) as predictions, one per ``model_version``, with each box's ``score``; the
reader gives annotation boxes ``source="human"`` and prediction boxes ``source="model"`` with
the prediction's ``model_version``.

Round trips are box-exact: a coordinate whose shortest decimal would not come back to the same
float is written with its exact decimal expansion, and the reader parses numbers as decimals.
"""

from __future__ import annotations

import json
import math
import os
import re
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError, InvalidInputError, NotFoundError
from detectkit.formats._common import MAX_IMAGE_SIDE, is_text
from detectkit.images import is_remote, resolve_image_path
from detectkit.validation import ErrorMode, ProblemCollector, ProblemKind, ValidationReport

__all__ = ["LOCAL_FILES_PREFIX", "read_labelstudio", "write_labelstudio"]

#: How Label Studio serves local files (``LOCAL_FILES_SERVING_ENABLED``); the default image URL.
LOCAL_FILES_PREFIX = "/data/local-files/?d="


def write_labelstudio(
    dataset: LabeledDataset,
    path: str | os.PathLike[str],
    *,
    image_url: str = LOCAL_FILES_PREFIX,
    model_version: str = "detectkit",
    from_name: str = "label",
    to_name: str = "image",
) -> Path:
    """Write a Label Studio import file (a JSON list of tasks).

    Args:
        dataset: The data set (sizes are read from the image files when missing).
        path: A ``.json`` file, or a folder (``<folder>/tasks.json``).
        image_url: Prefix of each task's ``data.image``: the image's path relative to the data
            set root (URL-quoted) is appended; remote images keep their URL.
        model_version: The ``model_version`` of drafts that name none.
        from_name: The ``RectangleLabels`` control's name in the labeling config.
        to_name: The ``Image`` object's name.

    Returns:
        The file written.
    """
    p = Path(path)
    out = p if p.suffix.lower() == ".json" else p / "tasks.json"
    tasks = []
    for k, record in enumerate(dataset.records, 1):
        sized = record if record.size is not None or is_remote(record.image) else record.with_size()
        if sized.width is None or sized.height is None:
            raise InvalidInputError(
                f"record {k - 1} ({record.image}): width/height unknown and the image is remote; "
                "Label Studio needs original_width/original_height: set them on the record"
            )
        human = [o for o in sized.objects if o.source == "human"]
        drafts: dict[str, list[ObjectAnnotation]] = {}
        for o in sized.objects:
            if o.source == "model":
                drafts.setdefault(o.model_version or model_version, []).append(o)
        task: dict[str, Any] = {"id": k, "data": {"image": _url(record, dataset, image_url)}}
        task["annotations"] = (
            [{"id": k, "result": _results(human, sized, from_name, to_name, f"{k}-a")}]
            if human
            else []
        )
        if drafts:
            task["predictions"] = []
            for n, (version, machine) in enumerate(drafts.items()):
                scores = [o.score for o in machine if o.score is not None]
                prediction: dict[str, Any] = {"model_version": version}
                if scores:
                    prediction["score"] = sum(scores) / len(scores)
                prediction["result"] = _results(machine, sized, from_name, to_name, f"{k}-p{n}-")
                task["predictions"].append(prediction)
        tasks.append(task)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(tasks, indent=1, ensure_ascii=False)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(_exact_numbers(text), encoding="utf-8")
    os.replace(tmp, out)
    return out


def read_labelstudio(
    path: str | os.PathLike[str],
    *,
    images_root: str | os.PathLike[str] | None = None,
    errors: ErrorMode = "raise",
    predictions: Literal["unlabeled", "all", "none"] = "unlabeled",
) -> tuple[LabeledDataset, ValidationReport]:
    """Read a Label Studio JSON export (or import file) of image tasks with rectangles.

    Args:
        path: The ``.json`` file.
        images_root: Folder local image references are relative to (default: the file's
            folder); ``/data/local-files/?d=`` URLs name a path under it. A path escaping it is
            refused (``unsafe_path``); ``http(s)://`` and ``azureml://`` URLs are kept.
        errors: ``"raise"`` stops at the first error; ``"collect"`` keeps every valid task and box.
        predictions: Read the first prediction's boxes (with their ``score``, or the
            prediction's) for tasks without an annotation (``"unlabeled"``), every
            prediction's boxes beside the annotation's (``"all"``, what
            :func:`write_labelstudio` wrote), or none (``"none"``). They are read as drafts
            (``source="model"``, the prediction's ``model_version``).

    Returns:
        The data set (classes in order of first use) and the report.

    Rules:
        * The last annotation not ``was_cancelled`` gives the human boxes (no score).
        * Only ``rectanglelabels`` results are read; ``rotation`` other than 0 is an error.

    Raises:
        NotFoundError: ``path`` does not exist.
        InvalidAnnotationError: ``errors="raise"`` and the file has an error.
    """
    if predictions not in ("unlabeled", "all", "none"):
        raise InvalidInputError(
            f'predictions: expected "unlabeled", "all" or "none", got {predictions!r}'
        )
    file = Path(path)
    if not file.is_file():
        raise NotFoundError(f"{file}: no such file (expected a Label Studio JSON export)")
    base = Path(images_root) if images_root is not None else file.parent
    col = ProblemCollector(errors, file=str(file))
    try:
        tasks = json.loads(file.read_bytes(), parse_float=Decimal)
    except (ValueError, RecursionError) as exc:  # bad JSON, not UTF-8, nested too deep
        col.add(
            ProblemKind.PARSE,
            "file is not valid JSON",
            expected="a UTF-8 JSON list of tasks",
            got=f"{type(exc).__name__}: {str(exc)[:200]}",
            hint="re-export the tasks from Label Studio",
        )
        return LabeledDataset([], root=base), col.report()
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        col.add(ProblemKind.BAD_VALUE, "expected a list of tasks", got=type(tasks).__name__)
        return LabeledDataset([], root=base), col.report()
    records: list[ImageRecord] = []
    classes: dict[str, None] = {}
    for k, task in enumerate(tasks):
        record = _read_task(task, f"tasks[{k}]", base, col, predictions)
        if record is not None:
            records.append(record)
            classes.update((o.label, None) for o in record.objects)
    return LabeledDataset(records, list(classes), root=base), col.report()


# ---------------------------------------------------------------------------- helpers
def _url(record: ImageRecord, dataset: LabeledDataset, prefix: str) -> str:
    if is_remote(record.image):
        return record.image
    image = Path(record.image)
    rel = image.name
    if dataset.root is not None:
        try:
            rel = image.resolve().relative_to(Path(dataset.root).resolve()).as_posix()
        except ValueError:
            rel = image.name
    return prefix + quote(rel)


_MARK = "\u0000num:"


def _start(value: float) -> Decimal:
    """``value`` in percent, as the shortest decimal that reads back as ``value``."""
    with localcontext() as ctx:
        ctx.prec = 1000
        short = Decimal(repr(float(Decimal(value) * 100)))
        return short if float(short / 100) == value else Decimal(value) * 100


def _extent(start: Decimal, end: float) -> Decimal:
    """The percent width from ``start`` such that ``(start + width) / 100`` reads as ``end``."""
    with localcontext() as ctx:
        ctx.prec = 1000
        exact = Decimal(end) * 100 - start
        short = Decimal(repr(float(exact)))
        return short if float((start + short) / 100) == end else exact


def _n(value: Decimal) -> str:
    return f"{_MARK}{value:f}\u0000"


def _results(
    objects: list[ObjectAnnotation], record: ImageRecord, src: str, dst: str, prefix: str
) -> list[dict[str, Any]]:
    out = []
    for i, o in enumerate(objects):
        b = o.box
        x, y = _start(b.top_x), _start(b.top_y)
        item: dict[str, Any] = {
            "id": f"{prefix}{i}",
            "type": "rectanglelabels",
            "from_name": src,
            "to_name": dst,
            "original_width": record.width,
            "original_height": record.height,
            "image_rotation": 0,
            "value": {
                "x": _n(x),
                "y": _n(y),
                "width": _n(_extent(x, b.bottom_x)),
                "height": _n(_extent(y, b.bottom_y)),
                "rotation": 0,
                "rectanglelabels": [o.label],
            },
        }
        if o.score is not None:
            item["score"] = o.score
        out.append(item)
    return out


def _exact_numbers(text: str) -> str:
    """Unquote the numbers :func:`_n` marked (json.dumps escapes the marks as \\u0000)."""
    return re.sub(r'"\\u0000num:(-?[0-9.]+)\\u0000"', r"\1", text)


def _num(value: object, where: str, col: ProblemCollector) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        col.add(ProblemKind.BAD_VALUE, "expected a number", location=where, got=value)
        return None
    number = Decimal(value) if not isinstance(value, Decimal) else value
    if not number.is_finite() or abs(number) > 1000:
        col.add(
            ProblemKind.OUT_OF_RANGE,
            "value is not a percentage of the image",
            location=where,
            expected="a number in [0, 100]",
            got=f"{number:.3g}",
        )
        return None
    return number


def _read_task(
    task: object, where: str, base: Path, col: ProblemCollector, predictions: str
) -> ImageRecord | None:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        col.add(ProblemKind.MISSING_FIELD, "task without a data object", location=where)
        return None
    data = task["data"]
    ref = data.get("image")
    if not isinstance(ref, str) or not ref:
        col.add(ProblemKind.MISSING_FIELD, "task without data.image", location=where)
        return None
    image = _image(ref, base, where, col)
    if image is None:
        return None
    objects: list[ObjectAnnotation] = []
    width = height = None
    for j, (item, default_score, version) in enumerate(_chosen_results(task, predictions)):
        at = f"{where}.result[{j}]"
        if not isinstance(item, dict) or item.get("type") != "rectanglelabels":
            continue
        value = item.get("value")
        if not isinstance(value, dict):
            col.add(ProblemKind.MISSING_FIELD, "result without value", location=at)
            continue
        nums = [_num(value.get(f), f"{at}.value.{f}", col) for f in ("x", "y", "width", "height")]
        labels = value.get("rectanglelabels")
        if any(n is None for n in nums) or not isinstance(labels, list) or not labels:
            if not isinstance(labels, list) or not labels:
                col.add(ProblemKind.MISSING_FIELD, "no rectanglelabels", location=at)
            continue
        if value.get("rotation", 0) not in (0, None):
            col.add(ProblemKind.BAD_VALUE, "rotated rectangle", location=at, got=value["rotation"])
            continue
        x, y, w, h = (n for n in nums if n is not None)
        with localcontext() as ctx:
            ctx.prec = 1000
            coords = (float(x / 100), float(y / 100), float((x + w) / 100), float((y + h) / 100))
        try:
            box = Box(top_x=coords[0], top_y=coords[1], bottom_x=coords[2], bottom_y=coords[3])
        except ValueError:
            col.add(ProblemKind.OUT_OF_RANGE, "box outside the image", location=at, got=coords)
            continue
        score = _score(item.get("score", default_score))
        label = str(labels[0]) if type(labels[0]) is int else labels[0]
        if not isinstance(label, str) or not label or not is_text(label) or score is False:
            col.add(
                ProblemKind.BAD_VALUE,
                "rectangle has no usable label or score",
                location=at,
                expected="a class name string and a score in [0, 1]",
                got=label if score is not False else item.get("score", default_score),
            )
            continue
        draft = version is not False
        objects.append(
            ObjectAnnotation(
                label=label,
                box=box,
                score=score,
                source="model" if draft else "human",
                model_version=version if draft and isinstance(version, str) else None,
            )
        )
        width = width or _whole(item.get("original_width"))
        height = height or _whole(item.get("original_height"))
    return ImageRecord(image=image, width=width, height=height, objects=tuple(objects))


def _chosen_results(task: dict[str, Any], mode: str) -> list[tuple[Any, Any, Any]]:
    """(result, default score, model_version or ``False`` for a human annotation) triples."""
    annotations = [
        a
        for a in _list(task.get("annotations"))
        if isinstance(a, dict) and not a.get("was_cancelled")
    ]
    out: list[tuple[Any, Any, Any]] = []
    if annotations:
        result = annotations[-1].get("result")
        out += [(r, None, False) for r in (result if isinstance(result, list) else [])]
    predictions = [p for p in _list(task.get("predictions")) if isinstance(p, dict)]
    if mode == "unlabeled" and not annotations:
        predictions = predictions[:1]
    elif mode != "all":
        predictions = []
    for p in predictions:
        result = p.get("result")
        version = p.get("model_version")
        out += [(r, p.get("score"), version) for r in (result if isinstance(result, list) else [])]
    return out


def _image(ref: str, base: Path, where: str, col: ProblemCollector) -> str | None:
    if is_remote(ref):
        return ref
    if ref.startswith(LOCAL_FILES_PREFIX):
        ref = unquote(ref[len(LOCAL_FILES_PREFIX) :])
    try:
        return str(resolve_image_path(base, ref))
    except InvalidAnnotationError:
        col.add(
            ProblemKind.UNSAFE_PATH,
            "image path escapes the images folder and was refused",
            location=f"{where}.data.image",
            expected=f"a path inside {base}",
            got=ref,
            hint="pass images_root= pointing at the folder that holds the images",
        )
        return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _score(value: object) -> float | bool | None:
    """A score as a float, ``None`` when absent, ``False`` when unusable."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    try:
        score = float(value)
    except OverflowError:
        return False
    return score if math.isfinite(score) else False


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 < value <= MAX_IMAGE_SIDE:
        return value
    if isinstance(value, Decimal) and value.is_finite() and 0 < value <= MAX_IMAGE_SIDE:
        return int(value) if value == int(value) else None
    return None
