"""Evaluation: COCO mAP equal to pycocotools, VOC AP50, and the numbers around them."""

from __future__ import annotations

from detectkit.evaluation.pipeline import (
    AREA_RANGES,
    ClassMetrics,
    CocoStats,
    EvaluationReport,
    ImageMatches,
    MatchList,
    PRCurve,
    ThresholdMetrics,
    evaluate,
    evaluate_coco_files,
)

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
