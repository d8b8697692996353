"""Pre-labels: a model's boxes turned into drafts beside the human labels, and the choice of
the score threshold above which drafts are worth showing.

Pure functions over :class:`~detectkit.Prediction` and :class:`~detectkit.LabeledDataset`;
:meth:`detectkit.Project.prelabel` gets the predictions (a registered model, an endpoint or a
run) and calls :func:`prelabel_dataset`.

Rules:

* A draft is an :class:`~detectkit.ObjectAnnotation` with ``source="model"``, its ``score`` and
  the ``model_version`` that made it.
* Human labels already on an image are kept as they are; a draft of the same class overlapping
  a human box with IoU >= 0.5 is dropped (the person already drew it).
* Calibration (``min_score="auto"``) matches drafts to the human boxes of the images that
  already have some, greedily in descending score order (IoU >= 0.5, same class, each human box
  matched once; crowd boxes are left out), as detectkit's evaluation does, and picks the lowest
  threshold whose precision reaches the target. Those images must be held out from the model's
  training data, or the precision is optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from detectkit.annotations import ImageRecord, ObjectAnnotation
from detectkit.boxes import Box
from detectkit.dataset import LabeledDataset
from detectkit.errors import InvalidInputError
from detectkit.evaluation.matching import pair_iou
from detectkit.prediction import Prediction

__all__ = [
    "OVERLAP_IOU",
    "Calibration",
    "PrelabelResult",
    "calibrate",
    "drafts_of",
    "merge_drafts",
    "prelabel_dataset",
    "unlabeled",
]

#: IoU at or above which a draft counts as the same object as a human box of its class.
OVERLAP_IOU = 0.5


class Calibration(BaseModel):
    """The threshold chosen on human-labeled images (``min_score="auto"``).

    Attributes:
        threshold: The lowest score threshold whose precision reaches ``target_precision``;
            ``None`` when none does (``reached`` is then false).
        precision: Precision of the drafts at or above ``threshold`` (at the best threshold
            when the target is not reached).
        recall: Share of the human boxes those drafts find.
        images: Human-labeled images the calibration used.
        boxes: Human boxes on them (crowd boxes excluded).
        target_precision: The precision asked for.
        reached: Whether some threshold reaches ``target_precision``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | None
    precision: float
    recall: float
    images: int
    boxes: int
    target_precision: float
    reached: bool


@dataclass(frozen=True)
class PrelabelResult:
    """What :meth:`~detectkit.Project.prelabel` made.

    Attributes:
        dataset: Every image, with its human labels and the drafts (``source="model"``).
        threshold: The score threshold the drafts were kept at.
        calibration: How ``threshold`` was chosen, with ``min_score="auto"``; else ``None``.
        model_version: The ``model_version`` the drafts carry.
        images: Images scored.
        drafts: Drafts kept.
        dropped_overlapping: Drafts dropped for overlapping a human box of their class.
    """

    dataset: LabeledDataset
    threshold: float
    calibration: Calibration | None
    model_version: str
    images: int
    drafts: int
    dropped_overlapping: int

    def __repr__(self) -> str:
        return (
            f"PrelabelResult(images={self.images}, drafts={self.drafts}, "
            f"threshold={self.threshold:.3f}, model_version={self.model_version!r})"
        )


def drafts_of(prediction: Prediction, model_version: str) -> tuple[ObjectAnnotation, ...]:
    """Every box of ``prediction`` as a draft (``source="model"``), with its score."""
    det = prediction.detections
    labels = det.classes
    return tuple(
        ObjectAnnotation(
            label=labels[cid],
            box=Box.trusted(*row),
            score=score,
            source="model",
            model_version=model_version,
        )
        for row, score, cid in zip(
            det.xyxy.tolist(), det.scores.tolist(), det.class_ids.tolist(), strict=True
        )
    )


def _iou_matrix(a: Sequence[ObjectAnnotation], b: Sequence[ObjectAnnotation]) -> np.ndarray:
    """IoU of every box of ``a`` (rows) with every box of ``b``, via the evaluation's IoU."""
    if not a or not b:
        return np.zeros((len(a), len(b)))

    def xywh(objs: Sequence[ObjectAnnotation]) -> np.ndarray:
        rows = [(o.box.top_x, o.box.top_y, o.box.width, o.box.height) for o in objs]
        return np.asarray(rows, dtype=np.float64)

    d, g = xywh(a), xywh(b)
    di = np.repeat(np.arange(len(a)), len(b))
    gi = np.tile(np.arange(len(b)), len(a))
    return pair_iou(d[di], g[gi], None).reshape(len(a), len(b))


def merge_drafts(
    record: ImageRecord, drafts: Sequence[ObjectAnnotation], *, min_score: float
) -> tuple[ImageRecord, int]:
    """``record`` with its human labels kept and the drafts scoring at least ``min_score``
    added, except those overlapping a human box of their class (IoU >= :data:`OVERLAP_IOU`).

    Drafts already on the record (an earlier pre-label) are replaced. Returns the record and
    the number of drafts dropped for overlapping.
    """
    human = [o for o in record.objects if o.source == "human"]
    kept = [d for d in drafts if d.score is None or d.score >= min_score]
    iou = _iou_matrix(kept, human)
    out: list[ObjectAnnotation] = list(human)
    dropped = 0
    for i, d in enumerate(kept):
        if any(iou[i, j] >= OVERLAP_IOU and h.label == d.label for j, h in enumerate(human)):
            dropped += 1
        else:
            out.append(d)
    return record.model_copy(update={"objects": tuple(out)}), dropped


def calibrate(
    drafts: Sequence[Sequence[ObjectAnnotation]],
    labels: Sequence[Sequence[ObjectAnnotation]],
    *,
    target_precision: float = 0.9,
) -> Calibration:
    """The lowest score threshold whose drafts reach ``target_precision`` on these images.

    Args:
        drafts: Per image, the model's scored boxes (any ``source``; their ``score`` is used).
        labels: Per image, the human boxes (the same images, same order).
        target_precision: The precision to reach, in ``(0, 1]``.

    A draft is a true positive when it matches a human box of its class with IoU >= 0.5 in the
    greedy, score-ordered matching of COCO evaluation; each human box matches once. Keeping
    every draft with ``score >= t`` gives a precision and recall per distinct ``t``.
    """
    if not 0.0 < target_precision <= 1.0:
        raise InvalidInputError(
            f"target_precision: expected a number in (0, 1], got {target_precision!r}"
        )
    if len(drafts) != len(labels):
        raise InvalidInputError(
            f"calibrate: expected drafts and labels for the same images, got {len(drafts)} and "
            f"{len(labels)}"
        )
    scores: list[float] = []
    hits: list[bool] = []
    total = 0
    for preds, gts in zip(drafts, labels, strict=True):
        gt = [g for g in gts if not g.is_crowd]
        total += len(gt)
        order = sorted((p for p in preds if p.score is not None), key=lambda p: -(p.score or 0.0))
        iou = _iou_matrix(order, gt)
        taken = [False] * len(gt)
        for i, p in enumerate(order):
            best, best_j = OVERLAP_IOU, -1
            for j, g in enumerate(gt):
                if not taken[j] and g.label == p.label and iou[i, j] >= best:
                    best, best_j = float(iou[i, j]), j
            if best_j >= 0:
                taken[best_j] = True
            scores.append(float(p.score or 0.0))
            hits.append(best_j >= 0)
    common = {"images": len(labels), "boxes": total, "target_precision": target_precision}
    if not scores:
        return Calibration(threshold=None, precision=0.0, recall=0.0, reached=False, **common)
    order_idx = np.argsort(-np.asarray(scores), kind="stable")
    s = np.asarray(scores)[order_idx]
    tp = np.cumsum(np.asarray(hits)[order_idx])
    kept = np.arange(1, len(s) + 1)
    last_of_score = np.r_[s[1:] != s[:-1], True]  # a threshold keeps every tie
    precision = tp / kept
    recall = tp / total if total else np.zeros_like(precision)
    ok = np.flatnonzero(last_of_score & (precision >= target_precision - 1e-12))
    if ok.size:
        k = int(ok[-1])
        return Calibration(
            threshold=float(s[k]),
            precision=float(precision[k]),
            recall=float(recall[k]),
            reached=True,
            **common,
        )
    cuts = np.flatnonzero(last_of_score)
    k = int(cuts[np.argmax(precision[cuts])])
    return Calibration(
        threshold=None,
        precision=float(precision[k]),
        recall=float(recall[k]),
        reached=False,
        **common,
    )


def prelabel_dataset(
    dataset: LabeledDataset,
    predictions: Sequence[Prediction],
    *,
    model_version: str,
    min_score: float | str = 0.5,
    target_precision: float = 0.9,
) -> PrelabelResult:
    """Add each prediction's boxes to its image (same order) as drafts, at ``min_score`` or at
    the threshold calibrated on the images that have human labels (``min_score="auto"``).

    Raises:
        InvalidInputError: Bad arguments, or ``"auto"`` with no human-labeled image or with no
            threshold reaching ``target_precision`` (the message gives the best precision).
    """
    if len(predictions) != len(dataset):
        raise InvalidInputError(
            f"predictions: expected one per image ({len(dataset)}), got {len(predictions)}"
        )
    drafts = [drafts_of(p, model_version) for p in predictions]
    calibration: Calibration | None = None
    if min_score == "auto":
        labeled = [
            k for k, r in enumerate(dataset.records) if any(o.source == "human" for o in r.objects)
        ]
        if not labeled:
            raise InvalidInputError(
                'min_score="auto": no image has human labels to calibrate on; label some '
                "held-out images first, or pass a number such as min_score=0.5"
            )
        calibration = calibrate(
            [drafts[k] for k in labeled],
            [[o for o in dataset.records[k].objects if o.source == "human"] for k in labeled],
            target_precision=target_precision,
        )
        if calibration.threshold is None:
            raise InvalidInputError(
                f'min_score="auto": no score threshold reaches precision {target_precision} on '
                f"{calibration.images} labeled images ({calibration.boxes} boxes); the best is "
                f"{calibration.precision:.3f}. Lower target_precision, pass a number as "
                "min_score, or train the model on more labels"
            )
        threshold = calibration.threshold
    elif (
        isinstance(min_score, int | float)
        and not isinstance(min_score, bool)
        and (0.0 <= float(min_score) <= 1.0 and math.isfinite(float(min_score)))
    ):
        threshold = float(min_score)
    else:
        raise InvalidInputError(
            f'min_score: expected a number in [0, 1] or "auto", got {min_score!r}'
        )
    records: list[ImageRecord] = []
    dropped = kept = 0
    for record, boxes in zip(dataset.records, drafts, strict=True):
        merged, n = merge_drafts(record, boxes, min_score=threshold)
        records.append(merged)
        dropped += n
        kept += sum(1 for o in merged.objects if o.source == "model")
    classes = list(dataset.classes)
    for record in records:
        classes += [o.label for o in record.objects if o.label not in classes]
    out = LabeledDataset(records, classes, root=dataset.root)
    return PrelabelResult(
        dataset=out,
        threshold=threshold,
        calibration=calibration,
        model_version=model_version,
        images=len(records),
        drafts=kept,
        dropped_overlapping=dropped,
    )


def unlabeled(images: Sequence[str]) -> LabeledDataset:
    """A data set of these images with no labels yet (the images to pre-label)."""
    return LabeledDataset([ImageRecord(image=image) for image in images], [])
