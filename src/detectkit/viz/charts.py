"""Charts: a data set's classes and an evaluation report's curves and matrix, in matplotlib.

:func:`plot_class_distribution`, :func:`plot_pr_curves` and :func:`plot_confusion_matrix`
return matplotlib ``Figure`` objects built without pyplot (:func:`figure`), so they work
headless and leak no global state; in a notebook a returned figure displays itself.

matplotlib is imported inside :func:`figure`: importing this module loads neither matplotlib
nor Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from detectkit.errors import InvalidInputError, MissingDependencyError
from detectkit.viz.layout import class_colour

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from detectkit.dataset import LabeledDataset
    from detectkit.evaluation.pipeline import EvaluationReport

__all__ = ["plot_class_distribution", "plot_confusion_matrix", "plot_pr_curves"]


def figure(width_in: float, height_in: float) -> Figure:
    """A matplotlib figure made without pyplot: no global state, headless (Agg) when saved."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a core dependency
        raise MissingDependencyError(
            "matplotlib is not installed; it is needed for plots. Install it with: "
            "pip install matplotlib"
        ) from exc
    return Figure(figsize=(width_in, height_in), layout="constrained")


def plot_class_distribution(dataset: LabeledDataset, *, title: str | None = None) -> Figure:
    """Boxes and images per class, as horizontal bars with their counts.

    Classes are sorted by box count, largest first, so an imbalance shows at a glance;
    a class of the class list with no box shows as an empty row.

    Args:
        dataset: The data set.
        title: Figure title; default names the image and box totals.

    Returns:
        A ``Figure`` with one axes holding two bars per class (boxes, images).
    """
    summary = dataset.summary()
    names = sorted(
        summary.classes,
        key=lambda c: (-summary.boxes_per_class.get(c, 0), summary.classes.index(c)),
    )
    boxes = [summary.boxes_per_class.get(c, 0) for c in names]
    images = [summary.images_per_class.get(c, 0) for c in names]
    n = len(names)
    fig = figure(7.0, max(2.2, 0.8 + 0.42 * n))
    ax = fig.add_subplot()
    y = np.arange(n, dtype=np.float64)
    bar_h = 0.4
    box_bars = ax.barh(y - bar_h / 2, boxes, height=bar_h, color="#3a78c2", label="boxes")
    image_bars = ax.barh(y + bar_h / 2, images, height=bar_h, color="#f0a030", label="images")
    ax.bar_label(box_bars, padding=2, fontsize=8)
    ax.bar_label(image_bars, padding=2, fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()  # largest class on top
    ax.set_xlabel("count")
    ax.margins(x=0.12)
    ax.legend(loc="lower right", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(
        title or f"Class distribution: {summary.images} images, {summary.boxes} boxes, {n} classes",
        fontsize=10,
    )
    return fig


def plot_pr_curves(report: EvaluationReport, *, classes: Sequence[str] | None = None) -> Figure:
    """Precision-recall curves per class at IoU 0.5, from an evaluation report.

    Each class is drawn as its monotone precision envelope (the curve AP integrates) with its
    AP@0.5 in the legend, and a dot at the report's ``score_threshold``: the operating point
    of :attr:`~detectkit.evaluation.EvaluationReport.overall`.

    Args:
        report: An :class:`~detectkit.evaluation.EvaluationReport`.
        classes: Classes to draw, in this order; default every class with ground truth.

    Returns:
        A ``Figure`` with one axes and one curve per class.

    Raises:
        InvalidInputError: A class has no curve (it is not a ground-truth class).
    """
    names = list(report.pr_curves) if classes is None else list(classes)
    unknown = [c for c in names if c not in report.pr_curves]
    if unknown:
        raise InvalidInputError(
            f"classes: expected ground-truth classes of the report {list(report.pr_curves)}, "
            f"got {unknown}"
        )
    if not names:
        raise InvalidInputError("report: expected at least one class with a PR curve, got none")
    fig = figure(6.4, 4.8)
    ax = fig.add_subplot()
    by_label = {row.label: row for row in report.per_class}
    for name in names:
        curve = report.pr_curves[name]
        recall = np.asarray(curve.recall, dtype=np.float64)
        precision = np.asarray(curve.precision, dtype=np.float64)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
        row = by_label.get(name)
        ap = None if row is None else (row.ap50 if row.ap50 is not None else row.voc_ap50)
        colour = tuple(c / 255.0 for c in class_colour(name, report.classes.index(name)))
        label = f"{name} (AP50 {ap:.3f})" if ap is not None else name
        # the envelope is a step: precision holds until the next detection raises recall
        xs = np.r_[0.0, recall] if recall.size else recall
        ys = np.r_[envelope[:1], envelope] if envelope.size else envelope
        ax.step(xs, ys, where="post", color=colour, linewidth=1.6, label=label)
        at = np.flatnonzero(np.asarray(curve.scores) >= report.score_threshold)
        if at.size:
            k = int(at[-1])
            ax.plot(recall[k], envelope[k], "o", color=colour, markersize=5)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(
        f"Precision-recall at IoU 0.5 (dot: score >= {report.score_threshold:g})", fontsize=10
    )
    return fig


def plot_confusion_matrix(report: EvaluationReport, *, normalize: bool = False) -> Figure:
    """The report's confusion matrix as a heat map with the count in each cell.

    Rows are the ground-truth class, columns the predicted class; the last row and column are
    "background": a detection matching no object counts in the background row (a false
    positive), an object no detection matched in the background column (missed).

    Args:
        report: An :class:`~detectkit.evaluation.EvaluationReport`.
        normalize: Divide each row by its total, so a row reads as "of the objects of this
            class, the fraction predicted as each class".

    Returns:
        A ``Figure`` with the matrix axes and a colour bar.
    """
    counts = np.asarray(report.confusion_matrix, dtype=np.float64)
    labels = list(report.confusion_labels)
    values = counts
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    n = len(labels)
    side = min(max(4.0, 1.2 + 0.55 * n), 16.0)
    fig = figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=max(float(values.max()), 1e-9))
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(np.arange(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(np.arange(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    threshold = 0.5 * float(values.max())
    if n <= 30:  # beyond that the numbers would not fit in the cells
        for (r, c), v in np.ndenumerate(values):
            if counts[r, c] == 0:
                continue
            text = f"{v:.2f}" if normalize else str(int(v))
            ax.text(
                c,
                r,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > threshold else "black",
            )
    ax.set_title(
        f"Confusion matrix (IoU {report.iou_threshold:g}, score >= {report.score_threshold:g}"
        + (", rows normalized)" if normalize else ")"),
        fontsize=10,
    )
    return fig
