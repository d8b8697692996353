"""The evaluation's inputs read into flat ``Columns``: a data set with its predictions, or a
COCO ground-truth file with a COCO results file.

Predictions are aligned with the ground-truth records by image; boxes go to pixels; every
problem in a COCO file ends in a typed error naming the file and the entry. Nothing here is
public API: :func:`~detectkit.evaluation.evaluate` and
:func:`~detectkit.evaluation.evaluate_coco_files` call it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detectkit.dataset import LabeledDataset
from detectkit.errors import InvalidAnnotationError, InvalidInputError
from detectkit.evaluation.matching import EMPTY_INDEX, Columns
from detectkit.evaluation.report import (
    file_name,
    unique_index,
)

__all__: list[str] = []  # internal: detectkit.evaluation is the public entry

Array = npt.NDArray[Any]


# ----------------------------------------------------------------------- inputs
class DetectionsLike(Protocol):
    """What :func:`evaluate` reads from a :class:`~detectkit.prediction.Detections`."""

    @property
    def xyxy(self) -> Array: ...
    @property
    def scores(self) -> Array: ...
    @property
    def class_ids(self) -> Array: ...
    @property
    def classes(self) -> tuple[str, ...]: ...


class PredictionLike(Protocol):
    """What :func:`evaluate` reads from a :class:`~detectkit.prediction.Prediction`."""

    @property
    def image(self) -> str | None: ...
    @property
    def detections(self) -> DetectionsLike: ...


# ----------------------------------------------------------------------- columns
def _align(
    ground_truth: LabeledDataset,
    predictions: Sequence[PredictionLike] | Mapping[str, DetectionsLike],
) -> list[tuple[int, DetectionsLike]]:
    """Pair every prediction with its ground-truth record index."""
    refs = [r.image for r in ground_truth.records]
    if isinstance(predictions, Mapping):
        items: list[tuple[str | None, DetectionsLike]] = [
            (os.fspath(k) if isinstance(k, os.PathLike) else k, v) for k, v in predictions.items()
        ]
    else:
        items = [(p.image, p.detections) for p in predictions]
    keys = [k for k, _ in items]
    if items and all(k is None for k in keys):
        if len(items) != len(refs):
            raise InvalidInputError(
                f"predictions: no prediction names its image, so they are matched by order, "
                f"which needs one per ground-truth image: expected {len(refs)}, got {len(items)}"
                "; set Prediction.image or pass a mapping image -> Detections"
            )
        return [(i, det) for i, (_, det) in enumerate(items)]
    by_ref = unique_index(refs)
    by_name: dict[str, int] | None = None  # built when a reference is not found as given
    out: list[tuple[int, DetectionsLike]] = []
    owner: dict[int, int] = {}
    for n, (key, det) in enumerate(items):
        if key is None:
            raise InvalidInputError(
                f"predictions[{n}]: image is None while other predictions name theirs; "
                "name every image, or none (then they are matched by order)"
            )
        i = by_ref.get(key, -1)
        if i < 0:
            if by_name is None:
                by_name = unique_index([file_name(r) for r in refs])
            i = by_name.get(file_name(key), -1)
        if i < 0:
            ambiguous = refs.count(key) > 1 or sum(file_name(r) == file_name(key) for r in refs) > 1
            why = (
                "matches several ground-truth images" if ambiguous else "is not in the ground truth"
            )
            raise InvalidInputError(
                f"predictions[{n}]: image {key!r} {why} (matched by exact reference, else by "
                f"file name when unique); evaluate predictions for the data set's images only"
            )
        if i in owner:
            raise InvalidInputError(
                f"predictions[{n}]: image {key!r} already has a prediction "
                f"(predictions[{owner[i]}]); give one prediction per image"
            )
        owner[i] = n
        out.append((i, det))
    return out


def columns_from_dataset(
    ground_truth: LabeledDataset,
    predictions: Sequence[PredictionLike] | Mapping[str, DetectionsLike],
) -> Columns:
    records = ground_truth.records
    gt_classes = ground_truth.classes
    code = {name: i for i, name in enumerate(gt_classes)}
    sizes = np.array([r.size or r.with_size().size for r in records], dtype=np.float64).reshape(
        -1, 2
    )
    n_obj = np.array([len(r.objects) for r in records], dtype=np.int64)
    table = np.array(
        [
            (b.top_x, b.top_y, b.bottom_x, b.bottom_y, code.get(o.label, -1), o.is_crowd)
            for r in records
            for o in r.objects
            for b in (o.box,)
        ],
        dtype=np.float64,
    ).reshape(-1, 6)
    if (table[:, 4] < 0).any():
        unknown = sorted({o.label for r in records for o in r.objects} - set(code))
        raise InvalidInputError(
            f"ground_truth: labels {unknown} are not in ground_truth.classes "
            f"{list(gt_classes)}; build the data set with every class listed"
        )
    gt_img = np.repeat(np.arange(len(records), dtype=np.int64), n_obj)
    gt_box = _pixels(table[:, :4], sizes[gt_img])
    # detections: labels are matched by name; unknown names become extra classes
    pairs = _align(ground_truth, predictions)
    luts: dict[tuple[str, ...], Array] = {}
    names = dict(code)
    boxes, scores, classes, counts = [], [], [], []
    for n, (_, det) in enumerate(pairs):
        xyxy = np.asarray(det.xyxy, dtype=np.float64).reshape(-1, 4)
        conf = np.asarray(det.scores, dtype=np.float64).reshape(-1)
        ids = np.asarray(det.class_ids, dtype=np.int64).reshape(-1)
        if not (xyxy.shape[0] == conf.shape[0] == ids.shape[0]):
            raise InvalidInputError(
                f"predictions[{n}]: expected xyxy, scores and class_ids of one length, got "
                f"{xyxy.shape[0]}, {conf.shape[0]} and {ids.shape[0]}"
            )
        key = tuple(det.classes)
        lut = luts.get(key)
        if lut is None:
            lut = np.array([names.setdefault(c, len(names)) for c in key], dtype=np.int64)
            luts[key] = lut
        boxes.append(xyxy)
        scores.append(conf)
        classes.append(lut[ids] if ids.size else ids)
        counts.append(conf.size)
    n_det = np.array(counts, dtype=np.int64)
    det_img = np.repeat(np.array([i for i, _ in pairs], dtype=np.int64), n_det)
    det_norm = np.concatenate([*boxes, np.zeros((0, 4))])
    det_score = np.concatenate([*scores, np.zeros(0)])
    finite = np.isfinite(det_score) & np.isfinite(det_norm).all(axis=1)
    if not finite.all():
        n = int(np.searchsorted(np.cumsum(n_det), np.flatnonzero(~finite)[0], side="right"))
        raise InvalidInputError(
            f"predictions[{n}] (image {records[pairs[n][0]].image!r}): expected finite scores "
            "and boxes, got NaN or infinity; drop those detections before evaluating"
        )
    det_cls = np.concatenate([*classes, EMPTY_INDEX])
    # extra labels: only those used, sorted by name, after the ground-truth classes
    used = np.unique(det_cls[det_cls >= len(gt_classes)])
    by_code = {v: k for k, v in names.items()}
    extra = sorted(by_code[int(c)] for c in used)
    remap = np.arange(len(names), dtype=np.int64)
    for j, name in enumerate(extra):
        remap[names[name]] = len(gt_classes) + j
    return Columns(
        images=[r.image for r in records],
        classes=(*gt_classes, *extra),
        n_gt_classes=len(gt_classes),
        area_source="box",
        gt_img=gt_img,
        gt_cls=table[:, 4].astype(np.int64),
        gt_box=gt_box,
        gt_area=gt_box[:, 2] * gt_box[:, 3],
        gt_crowd=table[:, 5] > 0,
        gt_local=np.arange(n_obj.sum()) - np.repeat(np.cumsum(n_obj) - n_obj, n_obj),
        det_img=det_img,
        det_cls=remap[det_cls],
        det_box=_pixels(det_norm, sizes[det_img]),
        det_score=det_score,
        det_local=np.arange(n_det.sum()) - np.repeat(np.cumsum(n_det) - n_det, n_det),
    )


def _pixels(norm: Array, size: Array) -> Array:
    """Normalized corners -> pixel ``(x, y, w, h)``: ``x = top_x * W``, ``w = bottom_x * W - x``."""
    x1 = norm[:, 0] * size[:, 0]
    y1 = norm[:, 1] * size[:, 1]
    x2 = norm[:, 2] * size[:, 0]
    y2 = norm[:, 3] * size[:, 1]
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).reshape(-1, 4)


def _load_json(source: str | os.PathLike[str] | Any, what: str) -> Any:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInputError(f"{what}: file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise InvalidAnnotationError(
                "not valid JSON", file=str(path), location=f"line {exc.lineno}", got=exc.msg
            ) from exc
    return source


def columns_from_coco(gt_source: Any, results_source: Any) -> Columns:
    gt = _load_json(gt_source, "ground truth")
    results = _load_json(results_source, "results")
    file = str(gt_source) if isinstance(gt_source, str | os.PathLike) else None
    rfile = str(results_source) if isinstance(results_source, str | os.PathLike) else None
    if not isinstance(gt, Mapping) or not isinstance(gt.get("images"), list):
        raise InvalidAnnotationError(
            "expected a COCO ground-truth object", file=file, field="images",
            expected="a list of images", got=type(gt).__name__,
        )  # fmt: skip
    if isinstance(results, Mapping) and "annotations" in results:
        results = results["annotations"]
    if not isinstance(results, list):
        raise InvalidAnnotationError(
            "expected a COCO results list", file=rfile, expected="a JSON list of "
            "{image_id, category_id, bbox, score}", got=type(results).__name__,
        )  # fmt: skip
    images = sorted(gt["images"], key=lambda im: _id_order(im.get("id")))
    img_of: dict[Any, int] = {}
    for n, im in enumerate(images):
        key = _coco_key(im.get("id"))
        if key in img_of:
            raise InvalidAnnotationError(
                "duplicate image id", file=file, location="images", field="id",
                expected="unique ids", got=repr(im.get("id")),
                hint="give every image its own id",
            )  # fmt: skip
        img_of[key] = n
    cats = sorted(gt.get("categories") or [], key=lambda c: _id_order(c.get("id")))
    cat_of: dict[Any, int] = {}
    for n, c in enumerate(cats):
        key = _coco_key(c.get("id"))
        if key in cat_of:
            raise InvalidAnnotationError(
                "duplicate category id", file=file, location="categories", field="id",
                expected="unique ids", got=repr(c.get("id")),
            )  # fmt: skip
        cat_of[key] = n
    class_names = [str(c.get("name", c.get("id"))) for c in cats]
    if len(set(class_names)) != len(class_names):
        class_names = [
            f"{name} (id {c.get('id')})" for name, c in zip(class_names, cats, strict=True)
        ]
    anns = gt.get("annotations") or []
    g_img, g_cls, g_box, g_area, g_crowd, has_area = _coco_annotations(anns, img_of, cat_of, file)
    d_img, d_cls, d_box, d_score, extra_names = _coco_results(results, img_of, cat_of, rfile)
    # extra categories: named by id, sorted by that name, after the ground-truth classes
    extra = sorted((f"category_id={k!r}", j) for k, j in extra_names.items())
    remap = np.arange(len(cats) + len(extra), dtype=np.int64)
    for pos, (_, j) in enumerate(extra):
        remap[len(cats) + j] = len(cats) + pos
    gt_img, det_img = g_img, d_img
    return Columns(
        images=[str(im.get("file_name", im.get("id"))) for im in images],
        classes=(*class_names, *(name for name, _ in extra)),
        n_gt_classes=len(cats),
        area_source="box" if has_area == 0 else "annotation" if has_area == len(anns) else "mixed",
        gt_img=gt_img,
        gt_cls=g_cls,
        gt_box=g_box,
        gt_area=g_area,
        gt_crowd=g_crowd,
        gt_local=_local_index(gt_img, len(images)),
        det_img=det_img,
        det_cls=remap[d_cls],
        det_box=d_box,
        det_score=d_score,
        det_local=_local_index(det_img, len(images)),
    )


def _positions(ids: list[Any], table: Mapping[Any, int]) -> Array | None:
    """``table[id]`` (-1 when absent) for plain integer ids, vectorized; ``None`` otherwise."""
    keys = np.array(list(table), dtype=object)
    values = np.array(ids)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        return None
    if not all(type(k) is int for k in keys):
        return None
    try:
        known = keys.astype(np.int64)
    except OverflowError:
        return None
    order = np.argsort(known)
    sorted_keys = known[order]
    at = np.clip(np.searchsorted(sorted_keys, values), 0, max(known.size - 1, 0))
    if known.size == 0:
        return np.full(values.size, -1, dtype=np.int64)
    pos = np.array(list(table.values()), dtype=np.int64)[order][at]
    out: Array = np.where(sorted_keys[at] == values, pos, -1)
    return out


def _numbers(values: list[Any], shape: tuple[int, ...]) -> Array | None:
    """A finite float array of ``shape`` built from plain numbers, or ``None``."""
    try:
        arr = np.array(values)
    except ValueError:  # ragged
        return None
    if arr.shape != shape or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
        return None
    return arr.astype(np.float64)


def _coco_annotations(
    anns: list[Any], img_of: Mapping[Any, int], cat_of: Mapping[Any, int], file: str | None
) -> tuple[Array, Array, Array, Array, Array, int]:
    """Image and class positions, boxes, areas, crowd flags; and how many had an area."""
    n = len(anns)
    if all(isinstance(a, Mapping) for a in anns):  # fast path; on any doubt, the loop below
        img = _positions([a.get("image_id") for a in anns], img_of)
        cls = _positions([a.get("category_id") for a in anns], cat_of)
        box = _numbers([a.get("bbox") for a in anns], (n, 4))
        areas = [a.get("area") for a in anns]
        with_area = sum(v is not None for v in areas)
        area = _numbers(areas, (n,)) if with_area == n else None
        crowd = np.array([a.get("iscrowd", 0) for a in anns]).reshape(-1)
        if (
            img is not None
            and cls is not None
            and box is not None
            and bool((img >= 0).all() and (cls >= 0).all())
            and crowd.dtype.kind in "biu"
            and (with_area == 0 or area is not None)
        ):
            area = box[:, 2] * box[:, 3] if area is None else area
            return img, cls, box, area, crowd != 0, with_area
    g_img, g_cls, g_box, g_area, g_crowd, has_area = [], [], [], [], [], 0
    for n, a in enumerate(anns):
        where = f"annotations[{n}]"
        if not isinstance(a, Mapping):
            raise InvalidAnnotationError("expected an object", file=file, location=where)
        i = img_of.get(_coco_key(a.get("image_id")), -1)
        k = cat_of.get(_coco_key(a.get("category_id")), -1)
        if i < 0 or k < 0:
            field, got = (
                ("image_id", a.get("image_id")) if i < 0 else ("category_id", a.get("category_id"))
            )
            raise InvalidAnnotationError(
                f"{field} is not in the file's {'images' if i < 0 else 'categories'}",
                file=file, location=where, field=field, got=repr(got),
            )  # fmt: skip
        box_n = _coco_box(a.get("bbox"), file, where)
        g_img.append(i)
        g_cls.append(k)
        g_box.append(box_n)
        if a.get("area") is not None:
            has_area += 1
            g_area.append(float(a["area"]))
        else:
            g_area.append(box_n[2] * box_n[3])
        g_crowd.append(bool(a.get("iscrowd", 0)))
    return (
        np.array(g_img, dtype=np.int64),
        np.array(g_cls, dtype=np.int64),
        np.array(g_box, dtype=np.float64).reshape(-1, 4),
        np.array(g_area, dtype=np.float64),
        np.array(g_crowd, dtype=bool),
        has_area,
    )


def _coco_results(
    results: list[Any], img_of: Mapping[Any, int], cat_of: Mapping[Any, int], file: str | None
) -> tuple[Array, Array, Array, Array, dict[Any, int]]:
    """Image positions, class codes (unknown categories after the known ones), boxes,
    scores, and the unknown category ids with their order of appearance."""
    n, n_cats = len(results), len(cat_of)
    if all(isinstance(r, Mapping) for r in results):  # fast path; on any doubt, the loop below
        img = _positions([r.get("image_id") for r in results], img_of)
        cat_ids = [r.get("category_id") for r in results]
        cls = _positions(cat_ids, cat_of)
        box = _numbers([r.get("bbox") for r in results], (n, 4))
        score = _numbers([r.get("score") for r in results], (n,))
        if (
            img is not None
            and cls is not None
            and box is not None
            and score is not None
            and bool((img >= 0).all())
        ):
            extra: dict[Any, int] = {}
            for j in np.flatnonzero(cls < 0).tolist():
                cls[j] = n_cats + extra.setdefault(int(cat_ids[j]), len(extra))
            return img, cls, box, score, extra
    extra_names: dict[Any, int] = {}
    d_img, d_cls, d_box, d_score = [], [], [], []
    for n, r in enumerate(results):
        where = f"results[{n}]"
        if not isinstance(r, Mapping):
            raise InvalidAnnotationError("expected an object", file=file, location=where)
        i = img_of.get(_coco_key(r.get("image_id")), -1)
        if i < 0:
            raise InvalidInputError(
                f"{where}: image_id {r.get('image_id')!r} is not an image of the ground truth; "
                "results must be for the ground-truth images only"
            )
        ckey = _coco_key(r.get("category_id"))
        k = cat_of.get(ckey, -1)
        if k < 0:
            k = n_cats + extra_names.setdefault(ckey, len(extra_names))
        value = r.get("score")
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidAnnotationError(
                "score must be a finite number", file=file, location=where, field="score",
                got=repr(value),
            )  # fmt: skip
        d_img.append(i)
        d_cls.append(k)
        d_box.append(_coco_box(r.get("bbox"), file, where))
        d_score.append(float(value))
    return (
        np.array(d_img, dtype=np.int64),
        np.array(d_cls, dtype=np.int64),
        np.array(d_box, dtype=np.float64).reshape(-1, 4),
        np.array(d_score, dtype=np.float64),
        extra_names,
    )


def _id_order(value: Any) -> tuple[int, Any]:
    """Sort key for ids: numbers by value (pycocotools' order), anything else after, by text."""
    key = _coco_key(value)
    return (0, key) if isinstance(key, int | float) else (1, str(key))


def _coco_key(value: Any) -> Any:
    # JSON ids are ints, but "3" and 3.0 both name image 3 in practice
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _coco_box(value: Any, file: str | None, where: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidAnnotationError(
            "bbox must be four numbers", file=file, location=where, field="bbox",
            expected="[x, y, width, height] in pixels", got=repr(value),
        ) from None  # fmt: skip
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise InvalidAnnotationError(
            "bbox must be finite", file=file, location=where, field="bbox", got=repr(value)
        )
    return (x, y, w, h)


def _local_index(owner: Array, n: int) -> Array:
    """Position of each element among those of the same owner, in input order."""
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=n)
    starts = np.cumsum(counts) - counts
    local = np.empty_like(owner)
    local[order] = np.arange(owner.size) - np.repeat(starts, counts)
    return local
