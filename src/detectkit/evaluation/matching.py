"""The matcher's parts: the flat ``Columns``, canonical order, IoU, greedy matching, and
the accumulation and summary of precision and recall, as pycocotools does them.

:mod:`detectkit.evaluation.engine` runs them for each protocol. Nothing here is public API;
the module imports only numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectkit.evaluation.report import (
    RECALL_THRESHOLDS,
    AreaSource,
    CocoStats,
    PRCurve,
    monotone,
)

__all__: list[str] = []  # internal: detectkit.evaluation is the public entry

Array = npt.NDArray[Any]
T50, T75 = 0, 5  # indices of IoU 0.50 and 0.75
EPS = float(np.spacing(1))


EDGE_BUDGET = 4_000_000  # detection/ground-truth pairs whose IoU is computed at once
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
def canonical_order(img: Array, score: Array, box: Array, cls: Array, local: Array) -> Array:
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


def ranks(group: Array) -> Array:
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


def pair_iou(d: Array, g: Array, crowd: Array | None) -> Array:
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


def iou_edges(
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
        end = max(start + 1, int(np.searchsorted(total, base + EDGE_BUDGET, side="right")))
        nn = n[start:end]
        rep_d = np.repeat(dets[start:end], nn)
        within = np.arange(int(nn.sum())) - np.repeat(np.cumsum(nn) - nn, nn)
        rep_g = np.repeat(lo[start:end], nn) + within
        crowd = None if gt_crowd is None else gt_crowd[rep_g]
        iou = pair_iou(det_box[rep_d], gt_box[rep_g], crowd)
        hit = iou >= min_iou
        parts.append((rep_d[hit], rep_g[hit], iou[hit]))
        start = end
    if not parts:
        return EMPTY_INDEX, EMPTY_INDEX, np.zeros(0)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def greedy_match(
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
        edges: ``(e_det, e_gt, e_iou)`` from :func:`edges`.
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


def min_counts(total: int) -> Array:
    """For each recall point r, the least count c with ``c / total >= r`` in float64, so
    ``searchsorted(tp_sum, c)`` equals pycocotools' ``searchsorted(tp_sum / total, r)``."""
    c = np.ceil(RECALL_THRESHOLDS * total)
    for _ in range(2):  # the product may round either way: settle on the exact boundary
        c = np.where((c > 0) & ((c - 1) / total >= RECALL_THRESHOLDS), c - 1, c)
        c = np.where(c / total < RECALL_THRESHOLDS, c + 1, c)
    return c.astype(np.int64)


def sample_columns(tp: Array, fp: Array, need: Array) -> tuple[Array, Array]:
    """pycocotools' 101-point precision of each row of ``tp`` / ``fp`` ``(C, n)``.

    pycocotools reads its precision envelope at the first detection whose recall reaches
    each point: the ``need[r]``-th true positive (``need``: :func:`min_counts`). The
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
    pr = np.r_[k / (fp_before + k + EPS), 0.0]  # exactly pycocotools' tp / (fp + tp + eps)
    valid = (need <= count[:, None]) & (count[:, None] > 0)
    end = (start + count)[:, None]
    bounds = np.c_[np.where(valid, start[:, None] + np.maximum(need - 1, 0), end), end]
    segment = np.maximum.reduceat(pr, bounds.reshape(-1)).reshape(n_col, -1)[:, :-1]
    segment = np.where(valid, segment, 0.0)
    out: Array = np.where(valid, monotone(segment), 0.0)
    return out, count


def accumulate(
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
    needed = {int(v): min_counts(int(v)) for v in np.unique(npig[npig > 0])}
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
            q, n_tp = sample_columns(tp_m, fp_m, need)
            precision[t_of, :, k, a_of, m] = q
            recall[t_of, k, a_of, m] = n_tp / total if tp_m.shape[1] else 0.0
            if m == n_m - 1 and areas[0] == 0:  # column 0: area all, IoU 0.5
                tp_sum, fp_sum = np.cumsum(tp_m[0]), np.cumsum(fp_m[0])
                scores = det_score[idx] if cut.all() else det_score[idx][cut]
                pr = tp_sum / (fp_sum + tp_sum + EPS)
                curves[k] = PRCurve(tp_sum / total[0], pr, scores)
            if cut.all():
                done = m
    return precision, recall, curves


def mean(values: Array) -> float | None:
    kept = values[values > -1]
    return None if kept.size == 0 else float(np.mean(kept))


def summarize(precision: Array, recall: Array, max_dets: tuple[int, ...]) -> CocoStats:
    """pycocotools ``summarize`` (its exact indexing, so the means are bit-identical)."""
    m = len(max_dets) - 1

    def ap(a: int, t: int | None = None) -> float | None:
        s = precision if t is None else precision[[t]]
        return mean(s[:, :, :, [a], [m]])

    def ar(a: int, mi: int) -> float | None:
        return mean(recall[:, :, [a], [mi]])

    return CocoStats(
        map=ap(0),
        map50=ap(0, T50),
        map75=ap(0, T75),
        map_small=ap(1),
        map_medium=ap(2),
        map_large=ap(3),
        ar={md: ar(0, i) for i, md in enumerate(max_dets)},
        ar_small=ar(1, m),
        ar_medium=ar(2, m),
        ar_large=ar(3, m),
    )
