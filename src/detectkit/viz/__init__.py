"""Pictures: boxes drawn on images with labels that never cover each other, and plots."""

from __future__ import annotations

from detectkit.viz.charts import plot_class_distribution, plot_confusion_matrix, plot_pr_curves
from detectkit.viz.drawing import (
    FN_COLOUR,
    FP_COLOUR,
    PALETTE,
    TP_COLOUR,
    class_colour,
    draw,
    layout_labels,
    plot,
    plot_comparison,
    plot_grid,
    text_colour,
)

__all__ = [
    "FN_COLOUR",
    "FP_COLOUR",
    "PALETTE",
    "TP_COLOUR",
    "class_colour",
    "draw",
    "layout_labels",
    "plot",
    "plot_class_distribution",
    "plot_comparison",
    "plot_confusion_matrix",
    "plot_grid",
    "plot_pr_curves",
    "text_colour",
]
