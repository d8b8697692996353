"""The evaluation engine: pycocotools' ``COCOeval`` (bbox) and VOC AP50, in columnar numpy.

:func:`~detectkit.evaluation.evaluate` and :func:`~detectkit.evaluation.evaluate_coco_files`
turn their inputs into one set of flat arrays (``Columns``) and hand them to ``run_evaluation``, which
orders detections canonically, computes IoUs, matches greedily at every IoU threshold and area
range at once, accumulates the precision / recall arrays, summarizes them, and builds the
:class:`~detectkit.evaluation.report.EvaluationReport`. Nothing here is public API.

The module imports only numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectkit.evaluation.report import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    RECALL_THRESHOLDS,
    AreaSource,
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
_T50, _T75 = 0, 5  # indices of IoU 0.50 and 0.75
_EPS = float(np.spacing(1))
_BACKGROUND = "background"
_EDGE_BUDGET = 4_000_000  # detection/ground-truth pairs whose IoU is computed at once
EMPTY_INDEX = np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------- columns
@dataclass
class Columns:
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
        return EMPTY_INDEX, EMPTY_INDEX, np.zeros(0)
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
    out: Array = np.where(valid, monotone(segment), 0.0)
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
