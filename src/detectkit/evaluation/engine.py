"""The evaluation engine: pycocotools' ``COCOeval`` (bbox) and VOC AP50, in columnar numpy.

:func:`~detectkit.evaluation.evaluate` and :func:`~detectkit.evaluation.evaluate_coco_files`
turn their inputs into one set of flat arrays (``Columns``) and hand them to ``run_evaluation``, which
orders detections canonically, computes IoUs, matches greedily at every IoU threshold and area
range at once, accumulates the precision / recall arrays, summarizes them, and builds the
:class:`~detectkit.evaluation.report.EvaluationReport`. Nothing here is public API.

The module imports only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectkit.evaluation.matching import (
    T50,
    T75,
    Columns,
    accumulate,
    canonical_order,
    greedy_match,
    iou_edges,
    mean,
    ranks,
    summarize,
)
from detectkit.evaluation.report import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    ClassMetrics,
    CocoStats,
    EvaluationReport,
    ImageMatches,
    MatchList,
    PRCurve,
    ProtocolName,
    ThresholdMetrics,
    monotone,
)

__all__: list[str] = []  # internal: detectkit.evaluation is the public entry

Array = npt.NDArray[Any]
_BACKGROUND = "background"


# ----------------------------------------------------------------------- the run
@dataclass
class _Outcome:
    """Per detection / ground truth decisions of the main protocol (IoU 0.5, area all)."""

    det_tp: Array
    det_gt: Array
    det_ignored: Array
    gt_taken: Array


def run_evaluation(
    cols: Columns,
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
    d_order = canonical_order(
        cols.det_img, cols.det_score, cols.det_box, cols.det_cls, cols.det_local
    )
    det_img, det_cls = cols.det_img[d_order], cols.det_cls[d_order]
    det_box, det_score = cols.det_box[d_order], cols.det_score[d_order]
    det_area = det_box[:, 2] * det_box[:, 3]
    pair_rank = ranks(det_img * n_cls + det_cls)
    det_key, gt_key = det_img * n_cls + det_cls, gt_img * n_cls + gt_cls
    n_det, n_gt = det_img.size, gt_img.size
    in_gt_cls = np.flatnonzero(det_cls < n_gt_cls)
    low = min(float(IOU_THRESHOLDS[0]), iou_threshold)
    crowd_edges = iou_edges(det_key, det_box, in_gt_cls, gt_key, gt_box, gt_crowd, low)
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
        stats = summarize(precision, recall, max_dets)
        for k in range(n_gt_cls):
            s = precision[:, :, k, 0, -1]
            ap_rows[k] = (mean(s), mean(s[T50]), mean(s[T75]), None)
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
    op = greedy_match(
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
    match, on_ignored = greedy_match(
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
    precision, recall, curves = accumulate(
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
    e_det, e_gt, e_iou = iou_edges(det_key, det_box, subset, gt_key, gt_box, None, 0.5)
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
        mpre = monotone(np.r_[0.0, prec, 0.0])
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
    rank[shown] = ranks(det_img[shown])
    edges = iou_edges(det_img, det_box, shown, gt_img, gt_box, gt_crowd, iou_threshold)
    match = greedy_match(
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


def _image_matches(cols: Columns, main: _Outcome, d_order: Array, g_order: Array) -> MatchList:
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
