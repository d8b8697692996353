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

The work is split in five modules: this one checks the arguments, ``inputs`` reads the inputs
(a data set and predictions, or COCO files) into flat arrays, ``matching`` holds the matcher's
parts, :mod:`detectkit.evaluation.engine` runs the protocol with them, and
:mod:`detectkit.evaluation.report` holds the report types, all re-exported here.

The modules import only numpy and pydantic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy.typing as npt

from detectkit.dataset import LabeledDataset
from detectkit.errors import InvalidInputError
from detectkit.evaluation.engine import run_evaluation
from detectkit.evaluation.inputs import (
    DetectionsLike,
    PredictionLike,
    columns_from_coco,
    columns_from_dataset,
)
from detectkit.evaluation.report import (
    AREA_RANGES,
    ClassMetrics,
    CocoStats,
    EvaluationReport,
    ImageMatches,
    MatchList,
    PRCurve,
    ThresholdMetrics,
)
from detectkit.evaluation.report import IOU_THRESHOLDS as IOU_THRESHOLDS
from detectkit.evaluation.report import RECALL_THRESHOLDS as RECALL_THRESHOLDS
from detectkit.evaluation.report import AreaSource as AreaSource
from detectkit.evaluation.report import ProtocolName as ProtocolName

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
    cols = columns_from_dataset(ground_truth, predictions)
    return run_evaluation(cols, protocol, cuts, float(score_threshold), float(iou_threshold))


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
    cols = columns_from_coco(ground_truth, results)
    return run_evaluation(cols, protocol, cuts, float(score_threshold), float(iou_threshold))
