"""Evaluation: COCO mAP equal to pycocotools, VOC AP50, and the numbers around them.

:func:`evaluate` scores predictions against a :class:`~detectkit.LabeledDataset`;
:func:`evaluate_coco_files` scores a COCO results file against a COCO ground-truth file. Both
return one typed :class:`EvaluationReport`.

The COCO protocol is pycocotools' ``COCOeval`` (bbox) rule for rule, in columnar numpy: boxes
in pixels (normalized box times image size), IoU on continuous coordinates, crowd regions
ignored (IoU against a crowd is intersection over the detection's area), 10 IoU thresholds
0.50:0.05:0.95, 101 recall points, area ranges all / small / medium / large with inclusive
bounds, the ``max_detections`` cut per image and class, and the same greedy matching. The 12
summary numbers equal pycocotools' (the tests compare them to 1e-9 on crowds, ties, empty
images and classes without ground truth or detections). What differs is only what pycocotools
gets wrong by accident:

* **Ties in score are broken by a fixed rule**, so shuffling the predictions never changes a
  number: detections are ordered by score (highest first), then by image (ground-truth
  order), then by box left, top, width and height in pixels, then by class (the report's
  class order). pycocotools keeps the input order instead.
* **Ids are positional**: nothing depends on image or annotation ids, so id 0 or a repeated id
  cannot alias.
* **Any** ``max_detections`` works: the summary uses the largest where pycocotools hard-codes 100.

The module imports only numpy and pydantic.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, overload

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from detectkit.dataset import LabeledDataset
from detectkit.errors import InvalidAnnotationError, InvalidInputError

__all__ = [
    "AREA_RANGES",
    "ClassMetrics",
    "CocoStats",
    "EvaluationReport",
    "ImageMatches",
    "MatchList",
    "PRCurve",
    "ThresholdMetrics",
    "evaluate",
    "evaluate_coco_files",
]

Array = npt.NDArray[Any]
ProtocolName = Literal["coco", "voc"]
AreaSource = Literal["box", "annotation", "mixed"]

#: COCO area ranges in square pixels, bounds inclusive (pycocotools ``areaRng``).
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0**2, 1e5**2),
    "small": (0.0**2, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
# exactly pycocotools' Params.setDetParams values (linspace: its 0.9 is 0.8999999999999999)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_T50, _T75 = 0, 5  # indices of IoU 0.50 and 0.75
_EPS = float(np.spacing(1))
_BACKGROUND = "background"
_EDGE_BUDGET = 4_000_000  # detection/ground-truth pairs whose IoU is computed at once


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


# ----------------------------------------------------------------------- results
class CocoStats(BaseModel):
    """The COCO summary (pycocotools ``stats``), named.

    ``None`` where pycocotools prints -1: no class has ground truth in that area range.
    AP and the area-range ARs use the largest ``max_detections`` (pycocotools: 100).

    Attributes:
        ar: Average recall for each ``max_detections`` value: ``ar[100]`` is AR@100. Also
            readable as ``ar1``, ``ar10``, ``ar100`` for the default cuts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    map: float | None
    map50: float | None
    map75: float | None
    map_small: float | None
    map_medium: float | None
    map_large: float | None
    ar: dict[int, float | None]
    ar_small: float | None
    ar_medium: float | None
    ar_large: float | None

    def _ar_at(self, k: int) -> float | None:
        if k not in self.ar:
            raise AttributeError(
                f"ar{k}: this evaluation used max_detections={sorted(self.ar)}; "
                f"read stats.ar[k] for one of those"
            )
        return self.ar[k]

    @property
    def ar1(self) -> float | None:
        """AR with 1 detection per image and class."""
        return self._ar_at(1)

    @property
    def ar10(self) -> float | None:
        """AR with 10 detections per image and class."""
        return self._ar_at(10)

    @property
    def ar100(self) -> float | None:
        """AR with 100 detections per image and class."""
        return self._ar_at(100)

    def as_dict(self) -> dict[str, float | None]:
        """Named values in pycocotools order, ARs named by their cut (``ar1``, ``ar10`` ...)."""
        out: dict[str, float | None] = {
            "map": self.map,
            "map50": self.map50,
            "map75": self.map75,
            "map_small": self.map_small,
            "map_medium": self.map_medium,
            "map_large": self.map_large,
        }
        out.update({f"ar{k}": v for k, v in sorted(self.ar.items())})
        out.update(ar_small=self.ar_small, ar_medium=self.ar_medium, ar_large=self.ar_large)
        return out

    def as_list(self) -> list[float]:
        """The values in pycocotools ``stats`` order, with -1.0 for ``None`` (12 by default)."""
        return [-1.0 if v is None else v for v in self.as_dict().values()]

    @classmethod
    def from_named(cls, values: Mapping[str, float | None]) -> CocoStats:
        """Inverse of :meth:`as_dict`."""
        fixed = {k: v for k, v in values.items() if not (k.startswith("ar") and k[2:].isdigit())}
        ar = {int(k[2:]): v for k, v in values.items() if k.startswith("ar") and k[2:].isdigit()}
        return cls(**fixed, ar=ar)


class ThresholdMetrics(BaseModel):
    """Counts and precision / recall / F1 at one operating point.

    Detections scoring at least ``score_threshold`` are matched greedily by score to ground
    truth of their class with IoU of at least ``iou_threshold``; a detection matching only a
    crowd region is left out; ratios with a zero denominator are 0.0.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    score_threshold: float
    iou_threshold: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float

    @classmethod
    def of(cls, tp: int, fp: int, fn: int, score: float, iou: float) -> ThresholdMetrics:
        """Metrics from the counts at thresholds ``score`` and ``iou``."""
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        return cls(
            score_threshold=score,
            iou_threshold=iou,
            tp=tp,
            fp=fp,
            fn=fn,
            precision=p,
            recall=r,
            f1=f1,
        )


class ClassMetrics(BaseModel):
    """One row of the per-class table.

    Attributes:
        label: Class name (ground-truth classes first, then predicted labels that are not
            ground-truth classes).
        gt: Ground-truth boxes, crowd regions excluded.
        crowd: Crowd regions.
        detections: Detections with this label.
        ap: COCO AP@[.50:.95] (area all, largest ``max_detections``); ``None`` without
            ground truth (pycocotools -1) or under the VOC protocol.
        ap50: COCO AP at IoU 0.50.
        ap75: COCO AP at IoU 0.75.
        voc_ap50: VOC AP at IoU 0.5 (all-point interpolation); only under the VOC protocol.
        at_threshold: Counts, precision, recall and F1 at the report's thresholds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    gt: int
    crowd: int
    detections: int
    ap: float | None = None
    ap50: float | None = None
    ap75: float | None = None
    voc_ap50: float | None = None
    at_threshold: ThresholdMetrics


@dataclass(frozen=True, eq=False)
class PRCurve:
    """The precision-recall curve of one class at IoU 0.5 (area all, largest cut).

    One point per detection, highest score first: ``precision`` is the raw (not yet made
    monotone) precision after that detection, ``recall`` the recall, ``scores`` its score.
    """

    recall: Array
    precision: Array
    scores: Array

    def interpolated(self, points: Array = RECALL_THRESHOLDS) -> Array:
        """Precision made monotone and sampled at ``points`` like COCO (0 beyond the reach)."""
        return _sample(self.recall, _monotone(self.precision), points)


@dataclass(frozen=True, eq=False)
class ImageMatches:
    """What the evaluation decided for each box of one image.

    Detection arrays follow the order of the image's detections as given; ground-truth
    arrays the order of the record's objects. COCO protocol: IoU 0.5, area all, largest
    ``max_detections``; VOC protocol: its IoU 0.5 matching.

    Attributes:
        image: The ground-truth image reference.
        det_tp: True positive.
        det_gt: Index of the matched ground-truth object, or -1.
        det_ignored: Neither TP nor FP: matched a crowd region, or past the
            ``max_detections`` cut of its class.
        gt_matched: Some detection matched this object (for a crowd: absorbed one).
        gt_ignored: A crowd region (never a false negative).
    """

    image: str
    det_tp: Array
    det_gt: Array
    det_ignored: Array
    gt_matched: Array
    gt_ignored: Array

    @property
    def det_fp(self) -> Array:
        """False positives: neither true positive nor ignored."""
        return ~self.det_tp & ~self.det_ignored

    @property
    def gt_missed(self) -> Array:
        """False negatives: objects no detection matched (crowd regions excluded)."""
        return ~self.gt_matched & ~self.gt_ignored

    def __repr__(self) -> str:
        return (
            f"ImageMatches(image={self.image!r}, tp={int(self.det_tp.sum())}, "
            f"fp={int(self.det_fp.sum())}, fn={int(self.gt_missed.sum())})"
        )


class MatchList(Sequence[ImageMatches]):
    """The per-image matches, in ground-truth order; index by position or by image reference
    (the exact reference, else the file name when unique)."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Sequence[ImageMatches]) -> None:
        self._items = tuple(items)
        self._index: tuple[dict[str, int], dict[str, int]] | None = None  # built on first use

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ImageMatches]:
        return iter(self._items)

    @overload
    def __getitem__(self, index: int | str) -> ImageMatches: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ImageMatches]: ...
    def __getitem__(self, index: int | str | slice) -> ImageMatches | Sequence[ImageMatches]:
        if isinstance(index, str):
            if self._index is None:
                refs = [m.image for m in self._items]
                self._index = (_unique_index(refs), _unique_index([_file_name(r) for r in refs]))
            by_ref, by_name = self._index
            i = by_ref.get(index, by_name.get(_file_name(index), -1))
            if i < 0:
                raise KeyError(f"no matches for image {index!r}: not a ground-truth image")
            return self._items[i]
        return self._items[index]

    def __repr__(self) -> str:
        return f"MatchList(images={len(self)})"


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    """Everything :func:`evaluate` measured.

    Attributes:
        protocol: ``"coco"`` (pycocotools semantics) or ``"voc"`` (AP50, all-point).
        area_source: Where object areas for small / medium / large come from: ``"box"``
            (box area in pixels) or ``"annotation"`` (a COCO file's ``area``, usually the
            mask area), ``"mixed"`` when only some annotations had one.
        classes: Ground-truth classes, then predicted labels that are not among them.
        stats: The COCO summary (``None`` under VOC).
        voc_map50: VOC mAP@0.5 over classes with ground truth (``None`` under COCO).
        per_class: One row per class of :attr:`classes`.
        overall: Micro-averaged counts, precision, recall and F1 at the thresholds.
        confusion_matrix: ``(C+1, C+1)`` counts, rows the ground-truth class, columns the
            predicted class, the last row and column "background" (see :func:`evaluate`).
        confusion_labels: :attr:`classes` plus ``"background"``.
        pr_curves: Per ground-truth class, the :class:`PRCurve` at IoU 0.5.
        precision: COCO ``(T, R, K, A, M)`` precision array (pycocotools ``eval["precision"]``,
            -1 where undefined; ``None`` under VOC or after a compact round trip).
        recall: COCO ``(T, K, A, M)`` recall array.
        matches: Per image, what each box counted as (:class:`ImageMatches`).
        max_detections: The cuts, ascending.
        score_threshold: Of :attr:`overall`, per-class counts and the confusion matrix.
        iou_threshold: Likewise.
        num_images: Ground-truth images.
        num_gt: Ground-truth boxes (crowd regions included).
        num_detections: Detections.
    """

    protocol: ProtocolName
    area_source: AreaSource
    classes: tuple[str, ...]
    stats: CocoStats | None
    voc_map50: float | None
    per_class: tuple[ClassMetrics, ...]
    overall: ThresholdMetrics
    confusion_matrix: Array
    confusion_labels: tuple[str, ...]
    pr_curves: dict[str, PRCurve]
    precision: Array | None
    recall: Array | None
    matches: MatchList
    max_detections: tuple[int, ...]
    score_threshold: float
    iou_threshold: float
    num_images: int
    num_gt: int
    num_detections: int

    # -------------------------------------------------------------- access
    @property
    def map(self) -> float | None:
        """The headline number: COCO mAP@[.50:.95], or VOC mAP@0.5 under VOC."""
        return self.stats.map if self.stats is not None else self.voc_map50

    def class_metrics(self, label: str) -> ClassMetrics:
        """The per-class row of ``label``."""
        for row in self.per_class:
            if row.label == label:
                return row
        raise KeyError(f"no class {label!r}; classes: {list(self.classes)}")

    def precision_at(
        self, iou: float = 0.5, area: str = "all", max_detections: int | None = None
    ) -> Array:
        """The COCO ``(K, 101)`` interpolated precision at one IoU threshold (rows -1 where a
        class has no ground truth)."""
        if self.precision is None:
            raise InvalidInputError(
                "precision_at: this report has no COCO precision array (VOC protocol, or read "
                "back from a compact to_dict()); evaluate with protocol='coco'"
            )
        t = _index_of(IOU_THRESHOLDS, iou, "iou")
        if area not in AREA_RANGES:
            raise InvalidInputError(f"area: expected one of {list(AREA_RANGES)}, got {area!r}")
        md = self.max_detections[-1] if max_detections is None else max_detections
        if md not in self.max_detections:
            raise InvalidInputError(
                f"max_detections: expected one of {list(self.max_detections)}, got {md}"
            )
        a, m = list(AREA_RANGES).index(area), self.max_detections.index(md)
        out: Array = self.precision[t, :, :, a, m].T.copy()
        return out

    # -------------------------------------------------------------- serialisation
    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """JSON-ready dict: summary, per-class rows, operating point, confusion matrix.

        Args:
            full: Also the COCO precision / recall arrays, the raw PR curves and the
                per-image matches (large: one entry per detection), so that
                :meth:`from_dict` rebuilds the report exactly.
        """
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "area_source": self.area_source,
            "classes": list(self.classes),
            "num_images": self.num_images,
            "num_gt": self.num_gt,
            "num_detections": self.num_detections,
            "max_detections": list(self.max_detections),
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "stats": None if self.stats is None else self.stats.as_dict(),
            "voc_map50": self.voc_map50,
            "per_class": [row.model_dump() for row in self.per_class],
            "overall": self.overall.model_dump(),
            "confusion_matrix": {
                "labels": list(self.confusion_labels),
                "matrix": self.confusion_matrix.tolist(),
            },
        }
        if full:
            out["precision"] = None if self.precision is None else self.precision.tolist()
            out["recall"] = None if self.recall is None else self.recall.tolist()
            out["pr_curves"] = {
                k: {"recall": c.recall.tolist(), "precision": c.precision.tolist(),
                    "scores": c.scores.tolist()}
                for k, c in self.pr_curves.items()
            }  # fmt: skip
            out["matches"] = [
                {
                    "image": m.image,
                    "det_tp": m.det_tp.tolist(),
                    "det_gt": m.det_gt.tolist(),
                    "det_ignored": m.det_ignored.tolist(),
                    "gt_matched": m.gt_matched.tolist(),
                    "gt_ignored": m.gt_ignored.tolist(),
                }
                for m in self.matches
            ]
        return out

    def to_json(self, *, full: bool = False, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(full=full), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """Rebuild a report from :meth:`to_dict` output (compact: arrays absent)."""
        try:
            cm = data["confusion_matrix"]
            stats = data["stats"]
            curves = data.get("pr_curves") or {}
            arrays = {k: data.get(k) for k in ("precision", "recall")}
            return cls(
                protocol=data["protocol"],
                area_source=data["area_source"],
                classes=tuple(data["classes"]),
                stats=None if stats is None else CocoStats.from_named(stats),
                voc_map50=data["voc_map50"],
                per_class=tuple(ClassMetrics.model_validate(r) for r in data["per_class"]),
                overall=ThresholdMetrics.model_validate(data["overall"]),
                confusion_matrix=np.array(cm["matrix"], dtype=np.int64),
                confusion_labels=tuple(cm["labels"]),
                pr_curves={
                    k: PRCurve(*(np.array(c[f], dtype=np.float64) for f in _CURVE_FIELDS))
                    for k, c in curves.items()
                },
                precision=None if arrays["precision"] is None else np.array(arrays["precision"]),
                recall=None if arrays["recall"] is None else np.array(arrays["recall"]),
                matches=MatchList(
                    [
                        ImageMatches(
                            image=m["image"],
                            det_tp=np.array(m["det_tp"], dtype=bool),
                            det_gt=np.array(m["det_gt"], dtype=np.int64),
                            det_ignored=np.array(m["det_ignored"], dtype=bool),
                            gt_matched=np.array(m["gt_matched"], dtype=bool),
                            gt_ignored=np.array(m["gt_ignored"], dtype=bool),
                        )
                        for m in data.get("matches") or ()
                    ]
                ),
                max_detections=tuple(data["max_detections"]),
                score_threshold=data["score_threshold"],
                iou_threshold=data["iou_threshold"],
                num_images=data["num_images"],
                num_gt=data["num_gt"],
                num_detections=data["num_detections"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"evaluation report: expected the output of EvaluationReport.to_dict(), "
                f"got a mapping that fails with {type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    # -------------------------------------------------------------- display
    def to_text(self) -> str:
        """A readable summary: the COCO lines (or VOC mAP), per-class table, operating point."""
        head = (
            f"{self.protocol.upper()} evaluation: {self.num_images} images, {self.num_gt} "
            f"ground-truth boxes, {self.num_detections} detections, {len(self.classes)} classes"
            f" (object area from: {self.area_source})"
        )
        lines = [head, ""]
        if self.stats is not None:
            md = self.max_detections[-1]
            rows = [("AP", "0.50:0.95", "all", md), ("AP", "0.50", "all", md)]
            rows += [("AP", "0.75", "all", md)]
            rows += [("AP", "0.50:0.95", a, md) for a in ("small", "medium", "large")]
            rows += [("AR", "0.50:0.95", "all", k) for k in self.max_detections]
            rows += [("AR", "0.50:0.95", a, md) for a in ("small", "medium", "large")]
            for (kind, iou, area, k), value in zip(rows, self.stats.as_list(), strict=True):
                title = "Average Precision  (AP)" if kind == "AP" else "Average Recall     (AR)"
                lines.append(
                    f" {title} @[ IoU={iou:<9} | area={area:>6s} | maxDets={k:>3d} ] = {value:0.3f}"
                )
        else:
            lines.append(f" VOC mAP@0.5 (all-point) = {_fmt(self.voc_map50)}")
        lines += ["", _table_header(self.protocol)]
        for r in self.per_class:
            t = r.at_threshold
            aps = (
                f"{_fmt(r.ap):>7}{_fmt(r.ap50):>7}{_fmt(r.ap75):>7}"
                if self.protocol == "coco"
                else f"{_fmt(r.voc_ap50):>9}"
            )
            lines.append(
                f"{r.label[:20]:<20}{aps}{r.gt:>7}{r.detections:>8}"
                f"{t.precision:>7.3f}{t.recall:>7.3f}{t.f1:>7.3f}"
            )
        o = self.overall
        lines += [
            "",
            f"at score >= {o.score_threshold:g}, IoU >= {o.iou_threshold:g}: TP {o.tp}  FP {o.fp}"
            f"  FN {o.fn}  precision {o.precision:.3f}  recall {o.recall:.3f}  F1 {o.f1:.3f}",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        if self.stats is not None:
            main = f"map={_fmt(self.stats.map, 4)}, map50={_fmt(self.stats.map50, 4)}"
        else:
            main = f"voc_map50={_fmt(self.voc_map50, 4)}"
        return (
            f"EvaluationReport(protocol={self.protocol!r}, {main}, images={self.num_images}, "
            f"classes={len(self.classes)})"
        )


_CURVE_FIELDS = ("recall", "precision", "scores")


def _table_header(protocol: str) -> str:
    aps = f"{'AP':>7}{'AP50':>7}{'AP75':>7}" if protocol == "coco" else f"{'VOC AP50':>9}"
    return f"{'class':<20}{aps}{'GT':>7}{'dets':>8}{'P':>7}{'R':>7}{'F1':>7}"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _index_of(values: Array, value: float, name: str) -> int:
    hits = np.flatnonzero(np.isclose(values, value, rtol=0.0, atol=1e-9))
    if hits.size == 0:
        raise InvalidInputError(f"{name}: expected one of {values.round(2).tolist()}, got {value}")
    return int(hits[0])


# ----------------------------------------------------------------------- columns
@dataclass
class _Columns:
    """Ground truth and detections as flat arrays; ids are positions, boxes pixel xywh."""

    images: list[str]
    classes: tuple[str, ...]  # ground-truth classes, then extra predicted labels
    n_gt_classes: int
    area_source: AreaSource
    gt_img: Array
    gt_cls: Array
    gt_box: Array
    gt_area: Array
    gt_crowd: Array
    gt_local: Array  # index among the image's objects
    det_img: Array
    det_cls: Array
    det_box: Array
    det_score: Array
    det_local: Array  # index among the image's detections, as given


def _file_name(ref: str) -> str:
    return ref.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _unique_index(keys: Sequence[str]) -> dict[str, int]:
    """key -> position for keys that occur once."""
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        seen[key] = -1 if key in seen else i
    return {k: i for k, i in seen.items() if i >= 0}


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
    by_ref = _unique_index(refs)
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
                by_name = _unique_index([_file_name(r) for r in refs])
            i = by_name.get(_file_name(key), -1)
        if i < 0:
            ambiguous = (
                refs.count(key) > 1 or sum(_file_name(r) == _file_name(key) for r in refs) > 1
            )
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


def _columns_from_dataset(
    ground_truth: LabeledDataset,
    predictions: Sequence[PredictionLike] | Mapping[str, DetectionsLike],
) -> _Columns:
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
    det_cls = np.concatenate([*classes, _I0])
    # extra labels: only those used, sorted by name, after the ground-truth classes
    used = np.unique(det_cls[det_cls >= len(gt_classes)])
    by_code = {v: k for k, v in names.items()}
    extra = sorted(by_code[int(c)] for c in used)
    remap = np.arange(len(names), dtype=np.int64)
    for j, name in enumerate(extra):
        remap[names[name]] = len(gt_classes) + j
    return _Columns(
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


_I0 = np.zeros(0, dtype=np.int64)


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


def _columns_from_coco(gt_source: Any, results_source: Any) -> _Columns:
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
    return _Columns(
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


# ----------------------------------------------------------------------- matching
def _canonical_order(img: Array, score: Array, box: Array, cls: Array, local: Array) -> Array:
    """Detections by image, score descending, then box ``x, y, w, h``, class, input order.

    Sorting on the two main keys and settling the rest only inside runs of equal score
    keeps the full rule cheap.
    """
    order = np.lexsort((-score, img))
    img_s, score_s = img[order], score[order]
    tie = np.r_[False, (img_s[1:] == img_s[:-1]) & (score_s[1:] == score_s[:-1])]
    if tie.any():
        in_run = np.flatnonzero(tie | np.r_[tie[1:], False])
        run = np.cumsum(~tie)[in_run]
        sub = order[in_run]
        b = box[sub]
        order[in_run] = sub[
            np.lexsort((local[sub], cls[sub], b[:, 3], b[:, 2], b[:, 1], b[:, 0], run))
        ]
    return order


def _ranks(group: Array) -> Array:
    """Rank of each element within its group, following the current element order."""
    if group.size == 0:
        return group.copy()
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.diff(np.r_[starts, g.size])
    rank = np.empty_like(group)
    rank[order] = np.arange(g.size) - np.repeat(starts, counts)
    return rank


def _pair_iou(d: Array, g: Array, crowd: Array | None) -> Array:
    """Element-wise IoU of xywh rows, computed exactly as pycocotools' ``bbIou``."""
    dx, dy, dw, dh = d.T
    gx, gy, gw, gh = g.T
    iw = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    ih = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = iw * ih
    da = dw * dh
    union = da + gw * gh - inter
    if crowd is not None:  # against a crowd region: intersection over the detection's area
        union = np.where(crowd, da, union)
    out: Array = np.divide(inter, union, out=np.zeros_like(inter), where=(iw > 0) & (ih > 0))
    return out


def _edges(
    det_key: Array,
    det_box: Array,
    subset: Array,
    gt_key: Array,
    gt_box: Array,
    gt_crowd: Array | None,
    min_iou: float,
) -> tuple[Array, Array, Array]:
    """(detection, ground truth, IoU) for same-key pairs with IoU >= ``min_iou``.

    ``gt_key`` is sorted; ``subset`` lists detections in increasing order, so the edges come
    out grouped by detection, ground truth ascending within each.
    """
    lo = np.searchsorted(gt_key, det_key[subset], side="left")
    n = np.searchsorted(gt_key, det_key[subset], side="right") - lo
    keep = n > 0
    dets, lo, n = subset[keep], lo[keep], n[keep]
    total = np.cumsum(n)
    parts: list[tuple[Array, Array, Array]] = []
    start = 0
    while start < dets.size:
        base = int(total[start - 1]) if start else 0
        end = max(start + 1, int(np.searchsorted(total, base + _EDGE_BUDGET, side="right")))
        nn = n[start:end]
        rep_d = np.repeat(dets[start:end], nn)
        within = np.arange(int(nn.sum())) - np.repeat(np.cumsum(nn) - nn, nn)
        rep_g = np.repeat(lo[start:end], nn) + within
        crowd = None if gt_crowd is None else gt_crowd[rep_g]
        iou = _pair_iou(det_box[rep_d], gt_box[rep_g], crowd)
        hit = iou >= min_iou
        parts.append((rep_d[hit], rep_g[hit], iou[hit]))
        start = end
    if not parts:
        return _I0, _I0, np.zeros(0)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _greedy_match(
    n_det: int,
    det_rank: Array,
    edges: tuple[Array, Array, Array],
    thresholds: Array,
    gt_ignore: Array,
    gt_crowd: Array,
) -> tuple[Array, Array]:
    """pycocotools' greedy matching, for every area range and threshold at once.

    Each detection, in rank order within its group, takes the candidate ground truth with
    the highest IoU (ties: the last in ground-truth order) among those with IoU >= the
    threshold and not already taken (crowds can be taken many times), preferring
    non-ignored ground truth over ignored. Detections of equal rank belong to different
    groups, whose ground truths are disjoint, so each rank is one vectorized step.

    Args:
        n_det: Number of detections.
        det_rank: ``(D,)`` processing order within the detection's group.
        edges: ``(e_det, e_gt, e_iou)`` from :func:`_edges`.
        thresholds: ``(T,)`` IoU thresholds.
        gt_ignore: ``(A, G)`` ground truth ignored in each area range.
        gt_crowd: ``(G,)`` crowd regions.

    Returns:
        ``(D, A*T)`` index of the matched ground truth or -1 (column ``a * T + t``), and
        ``(D, A*T)`` whether that ground truth is an ignored one.
    """
    e_det, e_gt, e_iou = edges
    n_area, n_gt = gt_ignore.shape
    n_thr = thresholds.size
    match = np.full((n_det, n_area * n_thr), -1, dtype=np.int32 if n_gt < 2**31 else np.int64)
    on_ignored = np.zeros((n_det, n_area * n_thr), dtype=bool)
    if e_det.size == 0:
        return match, on_ignored
    thr = np.tile(thresholds, n_area)  # per column
    keep = np.zeros((n_gt + 1, n_area * n_thr), dtype=bool)  # non-ignored; row n_gt: padding
    keep[:n_gt] = np.repeat(~gt_ignore.T, n_thr, axis=1)
    blockable = np.r_[~gt_crowd, False][:, None]
    taken = np.zeros((n_gt + 1, n_area * n_thr), dtype=bool)
    e_gt = np.r_[e_gt, n_gt]  # padding edge: a ground truth that never qualifies
    e_iou = np.r_[e_iou, -np.inf]
    dets, starts, counts = np.unique(e_det, return_index=True, return_counts=True)
    step = det_rank[dets] * 2 + (counts > 1)  # one step per rank, single candidates apart
    order = np.argsort(step, kind="stable")
    dets, starts, counts, step = dets[order], starts[order], counts[order], step[order]
    bounds = np.flatnonzero(np.r_[True, step[1:] != step[:-1], True])
    for s, e in itertools.pairwise(bounds.tolist()):
        d, first = dets[s:e], starts[s:e]
        if counts[s] == 1:  # the common case: one candidate, taken if it qualifies
            g = e_gt[first]
            cand = (e_iou[first][:, None] >= thr) & ~(taken[g] & blockable[g])
            match[d] = np.where(cand, g[:, None], -1)
            on_ignored[d] = cand & ~keep[g]
            taken[g] |= cand
            continue
        width = int(counts[s:e].max())
        col = np.arange(width)[None, :]
        idx = np.where(col < counts[s:e, None], first[:, None] + col, e_det.size)
        g, iou = e_gt[idx], e_iou[idx][:, :, None]  # (n, E), (n, E, 1)
        cand = (iou >= thr) & ~(taken[g] & blockable[g])  # (n, E, columns)
        regular = cand & keep[g]
        use = np.where(regular.any(1, keepdims=True), regular, cand)
        value = np.where(use, iou, -np.inf)
        best = use & (value == value.max(1, keepdims=True))
        last = width - 1 - np.argmax(best[:, ::-1], axis=1)  # (n, columns)
        found = use.any(1)
        chosen = np.take_along_axis(g, last, axis=1)
        match[d] = np.where(found, chosen, -1)
        on_ignored[d] = found & ~regular.any(1)
        r, c = np.nonzero(found)
        taken[chosen[r, c], c] = True
    return match, on_ignored


# ----------------------------------------------------------------------- COCO
def _monotone(pr: Array) -> Array:
    """Precision made non-increasing from the right (pycocotools' envelope)."""
    out: Array = np.maximum.accumulate(pr[..., ::-1], axis=-1)[..., ::-1]
    return out


def _sample(rc: Array, pr: Array, points: Array) -> Array:
    """Precision at the first index whose recall reaches each point; 0 beyond."""
    q = np.zeros(points.size)
    idx = np.searchsorted(rc, points, side="left")
    ok = idx < rc.size
    q[ok] = pr[idx[ok]]
    return q


def _min_counts(total: int) -> Array:
    """For each recall point r, the least count c with ``c / total >= r`` in float64, so
    ``searchsorted(tp_sum, c)`` equals pycocotools' ``searchsorted(tp_sum / total, r)``."""
    c = np.ceil(RECALL_THRESHOLDS * total)
    for _ in range(2):  # the product may round either way: settle on the exact boundary
        c = np.where((c > 0) & ((c - 1) / total >= RECALL_THRESHOLDS), c - 1, c)
        c = np.where(c / total < RECALL_THRESHOLDS, c + 1, c)
    return c.astype(np.int64)


def _sample_columns(tp: Array, fp: Array, need: Array) -> tuple[Array, Array]:
    """pycocotools' 101-point precision of each row of ``tp`` / ``fp`` ``(C, n)``.

    pycocotools reads its precision envelope at the first detection whose recall reaches
    each point: the ``need[r]``-th true positive (``need``: :func:`_min_counts`). The
    envelope there is the largest precision at or after it, and that maximum is always at
    a true positive (precision only rises there), so only true positives are evaluated.

    Returns:
        ``(C, R)`` precision (0 where recall never reaches the point) and ``(C,)`` number of
        true positives.
    """
    n_col, n = tp.shape
    hits = np.flatnonzero(tp)  # positions of true positives, row by row
    row = hits // n
    count = np.bincount(row, minlength=n_col)
    start = np.cumsum(count) - count
    k = np.arange(hits.size) - start[row] + 1  # true positives so far, at each
    fps = np.flatnonzero(fp)
    fp_before = np.searchsorted(fps, hits) - np.searchsorted(fps, np.arange(n_col) * n)[row]
    pr = np.r_[k / (fp_before + k + _EPS), 0.0]  # exactly pycocotools' tp / (fp + tp + eps)
    valid = (need <= count[:, None]) & (count[:, None] > 0)
    end = (start + count)[:, None]
    bounds = np.c_[np.where(valid, start[:, None] + np.maximum(need - 1, 0), end), end]
    segment = np.maximum.reduceat(pr, bounds.reshape(-1)).reshape(n_col, -1)[:, :-1]
    segment = np.where(valid, segment, 0.0)
    out: Array = np.where(valid, _monotone(segment), 0.0)
    return out, count


def _accumulate(
    tp: Array,
    fp: Array,
    order: Array,
    det_cls: Array,
    det_rank: Array,
    det_score: Array,
    npig: Array,
    max_dets: tuple[int, ...],
) -> tuple[Array, Array, dict[int, PRCurve]]:
    """pycocotools ``accumulate``: precision ``(T,R,K,A,M)``, recall ``(T,K,A,M)``, curves.

    ``tp`` and ``fp`` are ``(D, A*T)``; ``order`` lists the evaluated detections by class,
    score, image, rank; ``npig`` is the ``(K, A)`` count of non-ignored ground truth.
    """
    n_cls, n_area = npig.shape
    n_thr = tp.shape[1] // n_area
    n_m, n_r = len(max_dets), RECALL_THRESHOLDS.size
    precision = -np.ones((n_thr, n_r, n_cls, n_area, n_m))
    recall = -np.ones((n_thr, n_cls, n_area, n_m))
    curves: dict[int, PRCurve] = {}
    needed = {int(v): _min_counts(int(v)) for v in np.unique(npig[npig > 0])}
    bounds = np.searchsorted(det_cls[order], np.arange(n_cls + 1))
    for k in range(n_cls):
        areas = np.flatnonzero(npig[k] > 0)
        if areas.size == 0:
            continue
        a_of = np.repeat(areas, n_thr)  # the columns kept: areas with ground truth
        t_of = np.tile(np.arange(n_thr), areas.size)
        columns = a_of * n_thr + t_of
        total = npig[k, a_of]
        need = np.stack([needed[int(v)] for v in total])
        idx = order[bounds[k] : bounds[k + 1]]
        tp_k = np.ascontiguousarray(tp[idx].T[columns])  # (columns, n)
        fp_k = np.ascontiguousarray(fp[idx].T[columns])
        rank_k = det_rank[idx]
        done: int | None = None  # a cut that kept every detection: smaller ones may repeat it
        for m in reversed(range(n_m)):
            cut = rank_k < max_dets[m]
            if cut.all() and done is not None:
                precision[:, :, k, :, m] = precision[:, :, k, :, done]
                recall[:, k, :, m] = recall[:, k, :, done]
                continue
            tp_m, fp_m = (tp_k, fp_k) if cut.all() else (tp_k[:, cut], fp_k[:, cut])
            q, n_tp = _sample_columns(tp_m, fp_m, need)
            precision[t_of, :, k, a_of, m] = q
            recall[t_of, k, a_of, m] = n_tp / total if tp_m.shape[1] else 0.0
            if m == n_m - 1 and areas[0] == 0:  # column 0: area all, IoU 0.5
                tp_sum, fp_sum = np.cumsum(tp_m[0]), np.cumsum(fp_m[0])
                scores = det_score[idx] if cut.all() else det_score[idx][cut]
                pr = tp_sum / (fp_sum + tp_sum + _EPS)
                curves[k] = PRCurve(tp_sum / total[0], pr, scores)
            if cut.all():
                done = m
    return precision, recall, curves


def _mean(values: Array) -> float | None:
    kept = values[values > -1]
    return None if kept.size == 0 else float(np.mean(kept))


def _summarize(precision: Array, recall: Array, max_dets: tuple[int, ...]) -> CocoStats:
    """pycocotools ``summarize`` (its exact indexing, so the means are bit-identical)."""
    m = len(max_dets) - 1

    def ap(a: int, t: int | None = None) -> float | None:
        s = precision if t is None else precision[[t]]
        return _mean(s[:, :, :, [a], [m]])

    def ar(a: int, mi: int) -> float | None:
        return _mean(recall[:, :, [a], [mi]])

    return CocoStats(
        map=ap(0),
        map50=ap(0, _T50),
        map75=ap(0, _T75),
        map_small=ap(1),
        map_medium=ap(2),
        map_large=ap(3),
        ar={md: ar(0, i) for i, md in enumerate(max_dets)},
        ar_small=ar(1, m),
        ar_medium=ar(2, m),
        ar_large=ar(3, m),
    )


# ----------------------------------------------------------------------- the run
@dataclass
class _Outcome:
    """Per detection / ground truth decisions of the main protocol (IoU 0.5, area all)."""

    det_tp: Array
    det_gt: Array
    det_ignored: Array
    gt_taken: Array


def _run(
    cols: _Columns,
    protocol: ProtocolName,
    max_dets: tuple[int, ...],
    score_threshold: float,
    iou_threshold: float,
) -> EvaluationReport:
    n_cls, n_gt_cls, n_img = len(cols.classes), cols.n_gt_classes, len(cols.images)
    # ground truth ordered by image, class, then as given (pycocotools' order within a pair)
    g_order = np.lexsort((cols.gt_local, cols.gt_cls, cols.gt_img))
    gt_img, gt_cls = cols.gt_img[g_order], cols.gt_cls[g_order]
    gt_box, gt_area, gt_crowd = cols.gt_box[g_order], cols.gt_area[g_order], cols.gt_crowd[g_order]
    # detections in the canonical order: image, -score, box, class, then as given
    d_order = _canonical_order(
        cols.det_img, cols.det_score, cols.det_box, cols.det_cls, cols.det_local
    )
    det_img, det_cls = cols.det_img[d_order], cols.det_cls[d_order]
    det_box, det_score = cols.det_box[d_order], cols.det_score[d_order]
    det_area = det_box[:, 2] * det_box[:, 3]
    pair_rank = _ranks(det_img * n_cls + det_cls)
    det_key, gt_key = det_img * n_cls + det_cls, gt_img * n_cls + gt_cls
    n_det, n_gt = det_img.size, gt_img.size
    in_gt_cls = np.flatnonzero(det_cls < n_gt_cls)
    low = min(float(IOU_THRESHOLDS[0]), iou_threshold)
    crowd_edges = _edges(det_key, det_box, in_gt_cls, gt_key, gt_box, gt_crowd, low)
    # the order pycocotools accumulates in: class, -score, then image and rank, which is
    # the canonical order itself (a stable sort keeps it)
    by_class = np.lexsort((-det_score, det_cls))
    by_class = by_class[det_cls[by_class] < n_gt_cls]
    counts_gt = np.bincount(gt_cls[~gt_crowd], minlength=n_cls)

    stats: CocoStats | None = None
    voc_map50: float | None = None
    precision = recall = None
    ap_rows: dict[int, tuple[float | None, ...]] = {}
    if protocol == "coco":
        main, curves, precision, recall = _coco(
            crowd_edges, pair_rank, by_class, det_cls, det_score, det_area, gt_cls, gt_area,
            gt_crowd, n_gt_cls, max_dets,
        )  # fmt: skip
        stats = _summarize(precision, recall, max_dets)
        for k in range(n_gt_cls):
            s = precision[:, :, k, 0, -1]
            ap_rows[k] = (_mean(s), _mean(s[_T50]), _mean(s[_T75]), None)
    else:
        main, curves, voc_ap = _voc(
            n_det, det_key, det_box, in_gt_cls, gt_key, gt_box, gt_crowd, by_class, det_cls,
            det_score, counts_gt[:n_gt_cls],
        )  # fmt: skip
        for k in range(n_gt_cls):
            ap_rows[k] = (None, None, None, voc_ap[k])
        defined = [v for v in voc_ap if v is not None]
        voc_map50 = float(np.mean(defined)) if defined else None

    # operating point: greedy per class at iou_threshold on detections scoring >= threshold
    e_det, e_gt, e_iou = crowd_edges
    sel = e_iou >= iou_threshold
    op = _greedy_match(
        n_det, pair_rank, (e_det[sel], e_gt[sel], e_iou[sel]), np.array([iou_threshold]),
        gt_crowd[None, :], gt_crowd,
    )[0][:, 0]  # fmt: skip
    shown = det_score >= score_threshold
    op_tp = shown & ~_lookup(gt_crowd, op, True)
    op_fp = shown & (op < 0)
    tp_k = np.bincount(det_cls[op_tp], minlength=n_cls)
    fp_k = np.bincount(det_cls[op_fp], minlength=n_cls)
    fn_k = counts_gt - tp_k

    confusion = _confusion(
        det_img, det_cls, det_box, det_score, gt_img, gt_cls, gt_box, gt_crowd, n_cls,
        score_threshold, iou_threshold,
    )  # fmt: skip
    crowd_k = np.bincount(gt_cls[gt_crowd], minlength=n_cls)
    dets_k = np.bincount(det_cls, minlength=n_cls)
    per_class = []
    for k, label in enumerate(cols.classes):
        ap, ap50, ap75, voc = ap_rows.get(k, (None, None, None, None))
        per_class.append(
            ClassMetrics(
                label=label,
                gt=int(counts_gt[k]),
                crowd=int(crowd_k[k]),
                detections=int(dets_k[k]),
                ap=ap,
                ap50=ap50,
                ap75=ap75,
                voc_ap50=voc,
                at_threshold=ThresholdMetrics.of(
                    int(tp_k[k]), int(fp_k[k]), int(fn_k[k]), score_threshold, iou_threshold
                ),
            )
        )
    matches = _image_matches(cols, main, d_order, g_order)
    return EvaluationReport(
        protocol=protocol,
        area_source=cols.area_source,
        classes=cols.classes,
        stats=stats,
        voc_map50=voc_map50,
        per_class=tuple(per_class),
        overall=ThresholdMetrics.of(
            int(tp_k.sum()), int(fp_k.sum()), int(fn_k.sum()), score_threshold, iou_threshold
        ),
        confusion_matrix=confusion,
        confusion_labels=(*cols.classes, _BACKGROUND),
        pr_curves={cols.classes[k]: c for k, c in curves.items()},
        precision=precision,
        recall=recall,
        matches=matches,
        max_detections=max_dets,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        num_images=n_img,
        num_gt=n_gt,
        num_detections=n_det,
    )


def _coco(
    edges: tuple[Array, Array, Array],
    pair_rank: Array,
    by_class: Array,
    det_cls: Array,
    det_score: Array,
    det_area: Array,
    gt_cls: Array,
    gt_area: Array,
    gt_crowd: Array,
    n_gt_cls: int,
    max_dets: tuple[int, ...],
) -> tuple[_Outcome, dict[int, PRCurve], Array, Array]:
    """pycocotools' ``evaluate`` and ``accumulate``: the outcome at IoU 0.5 / area all, the
    curves, and the precision ``(T,R,K,A,M)`` and recall ``(T,K,A,M)`` arrays."""
    cut = max_dets[-1]
    n_det, n_gt = det_cls.size, gt_cls.size
    lo = np.array([r[0] for r in AREA_RANGES.values()])
    hi = np.array([r[1] for r in AREA_RANGES.values()])
    gt_ignore = gt_crowd | (gt_area < lo[:, None]) | (gt_area > hi[:, None])  # (A, G)
    e_det, e_gt, e_iou = edges
    sel = pair_rank[e_det] < cut
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
    match, on_ignored = _greedy_match(
        n_det, pair_rank, (e_det[sel], e_gt[sel], e_iou[sel]), thresholds, gt_ignore, gt_crowd
    )
    # columns a * T + t; an unmatched detection outside the area range is ignored
    out_of_range = (det_area[:, None] < lo) | (det_area[:, None] > hi)
    matched = match >= 0
    tp = matched & ~on_ignored
    fp = ~(matched | np.repeat(out_of_range, thresholds.size, axis=1))
    npig = np.stack(
        [np.bincount(gt_cls[~ignore], minlength=n_gt_cls)[:n_gt_cls] for ignore in gt_ignore],
        axis=1,
    )  # (K, A) objects that count
    evaluated = by_class[pair_rank[by_class] < cut]
    precision, recall, curves = _accumulate(
        tp, fp, evaluated, det_cls, pair_rank, det_score, npig, max_dets
    )
    main = _Outcome(  # column 0: area all, IoU 0.5
        det_tp=tp[:, 0],
        det_gt=match[:, 0].astype(np.int64),
        det_ignored=on_ignored[:, 0] | (pair_rank >= cut) & (det_cls < n_gt_cls),
        gt_taken=_taken(match[:, 0], n_gt),
    )
    return main, curves, precision, recall


def _lookup(values: Array, index: Array, missing: Any) -> Array:
    """``values[index]``, with ``missing`` where ``index`` is -1 (no match)."""
    out: Array = np.r_[values, np.array([missing], dtype=values.dtype)][index]
    return out


def _taken(det_gt: Array, n_gt: int) -> Array:
    taken = np.zeros(n_gt, dtype=bool)
    taken[det_gt[det_gt >= 0]] = True
    return taken


def _voc(
    n_det: int,
    det_key: Array,
    det_box: Array,
    subset: Array,
    gt_key: Array,
    gt_box: Array,
    gt_crowd: Array,
    by_class: Array,
    det_cls: Array,
    det_score: Array,
    npos: Array,
) -> tuple[_Outcome, dict[int, PRCurve], list[float | None]]:
    """VOC2010+ AP@0.5: each detection, by score, goes to the ground truth it overlaps most
    (first on ties); TP if IoU >= 0.5 and that object is free, ignored if it is a crowd
    (difficult), FP otherwise; AP is the area under the monotone all-point curve."""
    e_det, e_gt, e_iou = _edges(det_key, det_box, subset, gt_key, gt_box, None, 0.5)
    target = np.full(n_det, -1, dtype=np.int64)
    if e_det.size:
        first = np.flatnonzero(np.r_[True, e_det[1:] != e_det[:-1]])
        best = np.maximum.reduceat(e_iou, first)
        is_best = e_iou == np.repeat(best, np.diff(np.r_[first, e_det.size]))
        d, pos = np.unique(e_det[is_best], return_index=True)
        target[d] = e_gt[is_best][pos]
    hit = target >= 0
    crowd = _lookup(gt_crowd, target, False)
    candidates = by_class[(hit & ~crowd)[by_class]]  # in score order
    _, first_claim = np.unique(target[candidates], return_index=True)
    tp = np.zeros(n_det, dtype=bool)
    tp[candidates[first_claim]] = True
    fp = ~tp & ~crowd
    det_gt = np.where(tp | crowd, target, -1)
    curves: dict[int, PRCurve] = {}
    aps: list[float | None] = []
    cls_sorted = det_cls[by_class]
    bounds = np.searchsorted(cls_sorted, np.arange(npos.size + 1))
    for k in range(npos.size):
        if npos[k] == 0:
            aps.append(None)
            continue
        idx = by_class[bounds[k] : bounds[k + 1]]
        idx = idx[~crowd[idx]]
        tps = np.cumsum(tp[idx]).astype(float)
        fps = np.cumsum(fp[idx]).astype(float)
        rec = tps / npos[k]
        prec = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
        curves[k] = PRCurve(rec, prec, det_score[idx].copy())
        mrec = np.r_[0.0, rec, 1.0]
        mpre = _monotone(np.r_[0.0, prec, 0.0])
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        aps.append(float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])))
    outcome = _Outcome(
        det_tp=tp, det_gt=det_gt, det_ignored=crowd, gt_taken=_taken(det_gt, gt_key.size)
    )
    return outcome, curves, aps


def _confusion(
    det_img: Array,
    det_cls: Array,
    det_box: Array,
    det_score: Array,
    gt_img: Array,
    gt_cls: Array,
    gt_box: Array,
    gt_crowd: Array,
    n_cls: int,
    score_threshold: float,
    iou_threshold: float,
) -> Array:
    """Class-agnostic greedy matching per image on detections scoring >= the threshold."""
    shown = np.flatnonzero(det_score >= score_threshold)
    rank = np.zeros(det_img.size, dtype=np.int64)
    rank[shown] = _ranks(det_img[shown])
    edges = _edges(det_img, det_box, shown, gt_img, gt_box, gt_crowd, iou_threshold)
    match = _greedy_match(
        det_img.size, rank, edges, np.array([iou_threshold]), gt_crowd[None, :], gt_crowd
    )[0][shown, 0]
    bg = n_cls
    hit = match >= 0
    real = ~_lookup(gt_crowd, match, True)
    rows = np.r_[gt_cls[match[real]], np.full(int((~hit).sum()), bg)]
    cols = np.r_[det_cls[shown][real], det_cls[shown][~hit]]
    missed = np.ones(gt_img.size, dtype=bool)
    missed[match[hit]] = False
    missed &= ~gt_crowd
    rows = np.r_[rows, gt_cls[missed]]
    cols = np.r_[cols, np.full(int(missed.sum()), bg)]
    size = n_cls + 1
    cm: Array = np.bincount(rows * size + cols, minlength=size * size).reshape(size, size)
    return cm.astype(np.int64)


def _image_matches(cols: _Columns, main: _Outcome, d_order: Array, g_order: Array) -> MatchList:
    """Per image flags, back in the caller's order."""
    n_img = len(cols.images)
    d_counts = np.bincount(cols.det_img, minlength=n_img)
    g_counts = np.bincount(cols.gt_img, minlength=n_img)
    d_flat = (np.cumsum(d_counts) - d_counts)[cols.det_img[d_order]] + cols.det_local[d_order]
    g_flat = (np.cumsum(g_counts) - g_counts)[cols.gt_img[g_order]] + cols.gt_local[g_order]
    det_tp = np.zeros(d_flat.size, dtype=bool)
    det_ign = np.zeros(d_flat.size, dtype=bool)
    det_gt = np.full(d_flat.size, -1, dtype=np.int64)
    det_tp[d_flat] = main.det_tp
    det_ign[d_flat] = main.det_ignored
    det_gt[d_flat] = np.where(
        main.det_gt >= 0, _lookup(cols.gt_local[g_order], main.det_gt, -1), -1
    )
    gt_taken = np.zeros(g_flat.size, dtype=bool)
    gt_crowd = np.zeros(g_flat.size, dtype=bool)
    gt_taken[g_flat] = main.gt_taken
    gt_crowd[g_flat] = cols.gt_crowd[g_order]
    det = [(det_tp[a:b], det_gt[a:b], det_ign[a:b]) for a, b in _slices(d_counts)]
    gt = [(gt_taken[a:b], gt_crowd[a:b]) for a, b in _slices(g_counts)]
    return MatchList(
        [ImageMatches(image, *d, *g) for image, d, g in zip(cols.images, det, gt, strict=True)]
    )


def _slices(counts: Array) -> list[tuple[int, int]]:
    end = np.cumsum(counts)
    return list(zip((end - counts).tolist(), end.tolist(), strict=True))


# ----------------------------------------------------------------------- public API
def _check_params(
    protocol: str, max_detections: Sequence[int], score_threshold: float, iou_threshold: float
) -> tuple[int, ...]:
    if protocol not in ("coco", "voc"):
        raise InvalidInputError(f"protocol: expected 'coco' or 'voc', got {protocol!r}")
    try:
        given = [int(k) for k in max_detections]
    except (TypeError, ValueError):
        given = []
    if not given or min(given) < 1 or len(set(given)) != len(given):
        raise InvalidInputError(
            f"max_detections: expected distinct positive integers such as (1, 10, 100), "
            f"got {max_detections!r}"
        )
    cuts = tuple(sorted(given))
    for name, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold)):
        if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise InvalidInputError(f"{name}: expected a number in [0, 1], got {value!r}")
    if iou_threshold == 0.0:
        raise InvalidInputError("iou_threshold: expected > 0 (IoU 0 would match disjoint boxes)")
    return cuts


def evaluate(
    ground_truth: LabeledDataset,
    predictions: Sequence[PredictionLike] | Mapping[str, DetectionsLike],
    *,
    protocol: ProtocolName = "coco",
    max_detections: Sequence[int] = (1, 10, 100),
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> EvaluationReport:
    """Score predictions against ground truth.

    Predictions are paired with ground-truth images by ``Prediction.image``: the exact
    reference first, else the file name when only one ground-truth image has it. When no
    prediction names its image and there are as many predictions as images, they are paired
    by order. Images without a prediction count as images where nothing was detected.
    Labels are matched to ``ground_truth.classes`` by name; a predicted label that is not a
    ground-truth class becomes an extra class (all false positives; no AP, as in pycocotools
    a class without ground truth is left out of the means).

    Boxes are converted to pixels with the ground-truth image size (read from the image file
    when a record lacks it); object areas are box areas (``area_source="box"``).

    Besides the protocol's numbers, the report holds an operating point: detections scoring
    at least ``score_threshold`` are matched greedily by score (class by class, IoU >=
    ``iou_threshold``, crowd regions absorbing but not counting) for per-class and overall
    TP / FP / FN, precision, recall and F1; and a confusion matrix, where the same detections
    are matched class-agnostically (each, by score, takes the free object it overlaps most,
    at IoU >= ``iou_threshold``; rows ground-truth class, columns predicted class, unmatched
    detections in the background row, missed objects in the background column; detections on
    crowd regions and the regions themselves are left out).

    Args:
        ground_truth: The labeled data set.
        predictions: One :class:`~detectkit.prediction.Prediction` per image (or fewer), or a
            mapping image reference -> :class:`~detectkit.prediction.Detections`.
        protocol: ``"coco"`` (pycocotools' numbers) or ``"voc"`` (VOC2010+ AP@0.5,
            all-point interpolation, no ``max_detections`` cut).
        max_detections: COCO cuts per image and class; AR is reported for each, AP and the
            area ARs use the largest.
        score_threshold: Of the operating point and the confusion matrix.
        iou_threshold: Likewise.

    Returns:
        The :class:`EvaluationReport`.

    Raises:
        InvalidInputError: A prediction's image is not in the ground truth (or ambiguous, or
            predicted twice), arrays disagree in length, values are not finite, or a
            parameter is out of range.

    Example:
        >>> report = evaluate(dataset, predictions)  # doctest: +SKIP
        >>> report.stats.map, report.class_metrics("hearts").ap50  # doctest: +SKIP
    """
    cuts = _check_params(protocol, max_detections, score_threshold, iou_threshold)
    if not isinstance(ground_truth, LabeledDataset):
        raise InvalidInputError(
            f"ground_truth: expected a LabeledDataset, got {type(ground_truth).__name__}; "
            "read one with detectkit.read_dataset(...)"
        )
    cols = _columns_from_dataset(ground_truth, predictions)
    return _run(cols, protocol, cuts, float(score_threshold), float(iou_threshold))


def evaluate_coco_files(
    ground_truth: str | os.PathLike[str] | Mapping[str, Any],
    results: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    *,
    protocol: ProtocolName = "coco",
    max_detections: Sequence[int] = (1, 10, 100),
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> EvaluationReport:
    """Score a COCO results file against a COCO ground-truth file, like pycocotools.

    Boxes are the files' pixel ``[x, y, width, height]``; object areas are the annotations'
    ``area`` field when present (``area_source="annotation"``: for real COCO that is the mask
    area, as pycocotools uses), else the box area. Ids are only used to link records and are
    renumbered inside, so id 0 and non-contiguous ids are fine; repeated image or category
    ids are rejected. Images are ranked by id (pycocotools' order); results for a category
    the ground truth does not have become an extra class ``category_id=N``.

    Args:
        ground_truth: Path to a COCO ``instances`` file, or its parsed dict.
        results: Path to a COCO results file (a list of ``{image_id, category_id, bbox,
            score}``), or that list.
        protocol: As for :func:`evaluate`.
        max_detections: As for :func:`evaluate`.
        score_threshold: As for :func:`evaluate`.
        iou_threshold: As for :func:`evaluate`.

    Raises:
        InvalidAnnotationError: A file is malformed (the message names the element).
        InvalidInputError: A result names an image that is not in the ground truth.
    """
    cuts = _check_params(protocol, max_detections, score_threshold, iou_threshold)
    cols = _columns_from_coco(ground_truth, results)
    return _run(cols, protocol, cuts, float(score_threshold), float(iou_threshold))
