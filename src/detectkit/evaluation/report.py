"""The evaluation report: what :func:`~detectkit.evaluation.evaluate` returns.

:class:`EvaluationReport` holds the COCO summary (:class:`CocoStats`), the per-class table
(:class:`ClassMetrics`), the operating point (:class:`ThresholdMetrics`), the precision-recall
curves (:class:`PRCurve`), the confusion matrix and what each box counted as
(:class:`ImageMatches`, :class:`MatchList`), and converts to and from JSON and text. The COCO
constants that index its arrays live here too: :data:`AREA_RANGES`, ``IOU_THRESHOLDS`` and
``RECALL_THRESHOLDS``.

The module imports only numpy and pydantic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from detectkit.errors import InvalidInputError

__all__ = [
    "AREA_RANGES",
    "ClassMetrics",
    "CocoStats",
    "EvaluationReport",
    "ImageMatches",
    "MatchList",
    "PRCurve",
    "ThresholdMetrics",
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
        return _sample(self.recall, monotone(self.precision), points)


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
                self._index = (unique_index(refs), unique_index([file_name(r) for r in refs]))
            by_ref, by_name = self._index
            i = by_ref.get(index, by_name.get(file_name(index), -1))
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


def file_name(ref: str) -> str:
    return ref.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def unique_index(keys: Sequence[str]) -> dict[str, int]:
    """key -> position for keys that occur once."""
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        seen[key] = -1 if key in seen else i
    return {k: i for k, i in seen.items() if i >= 0}


# ----------------------------------------------------------------------- curves
def monotone(pr: Array) -> Array:
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
