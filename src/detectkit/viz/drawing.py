"""Pictures: boxes drawn on images with labels that never cover each other, and plots.

:func:`draw` returns a new Pillow image with the boxes of a prediction or a labeled record:
one stable colour per class, a filled label with the class and score, text in black or white
by the fill's luminance, and labels placed by a greedy placer (:func:`layout_labels`) so that
no label covers another even in dense scenes. :func:`plot_comparison` colours ground truth
versus prediction by outcome (true positive, false positive, missed). :func:`plot` and
:func:`plot_grid` show drawings in a matplotlib ``Figure`` made without pyplot
(:func:`detectkit.viz.charts.figure`); the charts of data sets and reports live in
:mod:`detectkit.viz.charts`, the colours and the label layout in :mod:`detectkit.viz.layout`.

Pillow and matplotlib are imported inside the functions: ``import detectkit.viz`` loads
neither.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import numpy as np
import numpy.typing as npt

from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidInputError
from detectkit.evaluation.pipeline import EvaluationReport, ImageMatches, evaluate
from detectkit.images import ImageInput, load_image
from detectkit.prediction import Detections, Prediction
from detectkit.viz.charts import figure
from detectkit.viz.layout import (  # colours and label layout, re-exported
    LABELS,
    PALETTE,
    RGB,
    Rect,
    class_colour,
    font_metrics,
    label_pad,
    label_plan,
    layout_labels,
    text_colour,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from PIL import Image as PILImage


__all__ = [
    "FN_COLOUR",
    "FP_COLOUR",
    "PALETTE",
    "TP_COLOUR",
    "class_colour",
    "draw",
    "layout_labels",
    "plot",
    "plot_comparison",
    "plot_grid",
    "text_colour",
]

FloatArray = npt.NDArray[np.float64]
#: What :func:`draw` draws: a prediction, its detections, or ground truth.
Target = Prediction | Detections | ImageRecord | Sequence[ObjectAnnotation]

#: Outcome colours of :func:`plot_comparison`.
TP_COLOUR: RGB = (30, 190, 60)
FP_COLOUR: RGB = (235, 30, 30)
FN_COLOUR: RGB = (255, 170, 0)
_IGNORED_COLOUR: RGB = (150, 150, 150)


# ============================================================================ targets
@dataclass(frozen=True)
class _Items:
    """What to draw, whatever the target type: normalized boxes, labels, scores, colour ids."""

    xyxy: FloatArray  # (n, 4) normalized
    labels: list[str]
    scores: FloatArray  # NaN where there is no score
    class_ids: list[int | None]  # palette index when the class list is known
    crowd: list[bool]


def _items(target: Target, classes: Sequence[str] | None) -> _Items:
    """Read a Prediction, Detections, ImageRecord or sequence of ObjectAnnotation."""
    if isinstance(target, ImageRecord):
        target = target.objects
    if isinstance(target, Prediction):
        target = target.detections
    if isinstance(target, Detections):
        xyxy = np.asarray(target.xyxy, dtype=np.float64).reshape(-1, 4)
        ids = target.class_ids.tolist()
        own = target.classes
        labels = [own[i] for i in ids]
        scores = np.asarray(target.scores, dtype=np.float64).reshape(-1)
        if classes is not None:
            order = {c: i for i, c in enumerate(classes)}
            colour_ids: list[int | None] = [order.get(lbl) for lbl in labels]
        else:
            colour_ids = list(ids)
        return _Items(xyxy, labels, scores, colour_ids, [False] * len(labels))
    if isinstance(target, Sequence) and all(isinstance(o, ObjectAnnotation) for o in target):
        objects: Sequence[ObjectAnnotation] = target
        xyxy = np.array([o.box.to_xyxy() for o in objects], dtype=np.float64).reshape(-1, 4)
        labels = [o.label for o in objects]
        scores = np.array([np.nan if o.score is None else o.score for o in objects])
        order = {c: i for i, c in enumerate(classes or ())}
        return _Items(
            xyxy,
            labels,
            scores.astype(np.float64).reshape(-1),
            [order.get(lbl) for lbl in labels],
            [o.is_crowd for o in objects],
        )
    raise InvalidInputError(
        f"target: expected a Prediction, Detections, ImageRecord or a sequence of "
        f"ObjectAnnotation, got {type(target).__name__}"
    )


def _open(image: ImageInput) -> PILImage.Image:
    """A new RGB Pillow image, as displayed (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    if isinstance(image, str | os.PathLike | bytes | bytearray):
        return load_image(bytes(image) if isinstance(image, bytearray) else image).copy()
    if isinstance(image, Image.Image):
        out = ImageOps.exif_transpose(image) or image
        return out.convert("RGB") if out.mode != "RGB" or out is image else out
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 2:
            return Image.fromarray(arr).convert("RGB")
        if arr.ndim == 3 and arr.shape[2] in (3, 4):
            return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]))
        raise InvalidInputError(
            f"image: expected an array of shape (height, width), (height, width, 3) or "
            f"(height, width, 4), got shape {arr.shape}"
        )
    raise InvalidInputError(
        f"image: expected a path, bytes, a PIL image or a numpy array, got {type(image).__name__}"
    )


# ============================================================================ rendering


def _auto_sizes(width: int, height: int) -> tuple[int, int]:
    """Line width and font size that scale with the image (2 px and 17 px at 1024 x 768)."""
    scale = math.sqrt(width * height)
    return max(1, math.ceil(scale / 500.0)), max(11, round(scale * 0.019))


class _Mark(NamedTuple):
    """One box to draw: pixel corners, colour, label text (``None``: no label), line width."""

    box: Rect
    colour: RGB
    text: str | None
    width: int


def _render(
    canvas: PILImage.Image,
    boxes: FloatArray,
    colours: Sequence[RGB],
    texts: Sequence[str | None],
    widths: Sequence[int],
    font_size: int,
    *,
    line_width: int,
) -> None:
    """Draw boxes (``(n, 4)`` pixel corners, most important first), then lay out and draw
    their labels (``None``: no label), in place on ``canvas``.

    One Pillow call per box outline and one per label: each label is rendered once per text,
    size and colour (``viz.layout.LabelCache``) and pasted whole.
    """
    from PIL import ImageDraw

    pen = ImageDraw.Draw(canvas)
    width, height = canvas.size
    # the most confident box ends on top; the outline is drawn inside the box
    corners = np.rint(boxes).astype(np.int64).reshape(-1, 4).tolist()
    for (x1, y1, x2, y2), colour, lw in zip(
        reversed(corners), reversed(colours), reversed(widths), strict=True
    ):
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            pen.rectangle((x1, y1, x2 - 1, y2 - 1), outline=colour, width=lw)
    labelled = [i for i, text in enumerate(texts) if text]
    if not labelled:
        return
    ascent, descent = font_metrics(font_size)
    label_h = ascent + descent + 2 * label_pad(font_size)
    rects = layout_labels(
        boxes[labelled],
        [(label_plan(texts[i] or "", font_size)[0], label_h) for i in labelled],
        (width, height),
    )
    placed = [(i, rect) for i, rect in zip(labelled, rects, strict=True) if rect is not None]
    if not placed:
        return
    at = [i for i, _ in placed]
    spots = np.array([rect for _, rect in placed], dtype=np.float64)
    near = boxes[at]
    # a label pushed away from its box gets a thin line back to the box's nearest point;
    # leader lines first, so that no line crosses a label
    cx, cy = (spots[:, 0] + spots[:, 2]) / 2.0, (spots[:, 1] + spots[:, 3]) / 2.0
    bx = np.minimum(np.maximum(cx, near[:, 0]), near[:, 2])
    by = np.minimum(np.maximum(cy, near[:, 1]), near[:, 3])
    lx = np.minimum(np.maximum(bx, spots[:, 0]), spots[:, 2])
    ly = np.minimum(np.maximum(by, spots[:, 1]), spots[:, 3])
    for k in np.flatnonzero(np.hypot(bx - lx, by - ly) > 2.0 * line_width + 1.0).tolist():
        line = (float(lx[k]), float(ly[k]), float(bx[k]), float(by[k]))
        pen.line(line, fill=colours[at[k]], width=max(1, line_width // 2))
    for (x1, y1, x2, y2), i in zip(np.rint(spots).astype(np.int64).tolist(), at, strict=True):
        tile = LABELS.get(texts[i] or "", font_size, colours[i])
        if (x2 - x1, y2 - y1) != tile.size:  # rounding made the spot a pixel wider or narrower
            pen.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colours[i])
            tile = tile.crop((0, 0, min(tile.width, x2 - x1), min(tile.height, y2 - y1)))
        canvas.paste(tile, (x1, y1))


def _label_text(label: str, score: float, crowd: bool, show_scores: bool) -> str:
    text = label + (" (crowd)" if crowd else "")
    if show_scores and not math.isnan(score):
        text += f" {score:.2f}"
    return text


def draw(
    image: ImageInput,
    target: Target,
    *,
    min_score: float | None = None,
    classes: Sequence[str] | None = None,
    line_width: int | None = None,
    font_size: int | None = None,
    show_scores: bool = True,
) -> PILImage.Image:
    """Draw boxes and labels on a copy of ``image``.

    Each class gets a stable colour, each box a filled label (class and score) whose text is
    black or white by the fill's luminance, and labels are placed by :func:`layout_labels`, so
    none covers another; a label pushed away from its box is joined to it by a thin line.
    Labels of higher-scoring boxes are placed first and get the best spots.

    Args:
        image: Image file path, encoded bytes, a Pillow image or a numpy array (``uint8``
            RGB, ``(height, width, 3)``; not OpenCV's BGR). Files and Pillow images are shown
            as displayed: EXIF orientation is applied.
        target: A ``Prediction``, ``Detections``, ``ImageRecord`` or a sequence of
            ``ObjectAnnotation``. Boxes are normalized, so they are scaled to this image.
        min_score: Hide boxes scoring below this; boxes without a score (ground truth) stay.
        classes: Ordered class list (``dataset.classes``): colours are picked by index in it,
            so a class has the same colour in ground truth and predictions. Without it,
            ``Detections`` use their own class ids and labels a colour of their name.
        line_width: Box outline width in pixels; default scales with the image (2 px at
            1024 x 768).
        font_size: Label font size in pixels; default scales with the image (17 px at
            1024 x 768).
        show_scores: Add the score to each label.

    Returns:
        A new RGB Pillow image of the same size; the input is never changed.

    Example:
        >>> from detectkit import Box, ObjectAnnotation
        >>> import numpy as np
        >>> card = ObjectAnnotation(label="ace", box=Box(top_x=0.2, top_y=0.2, bottom_x=0.6, bottom_y=0.9))
        >>> draw(np.zeros((120, 160, 3), np.uint8), [card]).size
        (160, 120)
    """
    canvas = _open(image)
    items = _items(target, classes)
    width, height = canvas.size
    auto_line, auto_font = _auto_sizes(width, height)
    lw = auto_line if line_width is None else max(1, int(line_width))
    fs = auto_font if font_size is None else max(1, int(font_size))
    # most confident first; no score (ground truth) before any score
    order = np.argsort(np.where(np.isnan(items.scores), -np.inf, -items.scores), kind="stable")
    if min_score is not None:
        order = order[~(items.scores[order] < min_score)]  # NaN (no score) compares False: kept
    px = items.xyxy * np.array([width, height, width, height], dtype=np.float64)
    scores = items.scores.tolist()
    palette: dict[tuple[str, int | None], RGB] = {}
    colours: list[RGB] = []
    texts: list[str | None] = []
    widths: list[int] = []
    for i in order.tolist():
        label, class_id, crowd = items.labels[i], items.class_ids[i], items.crowd[i]
        colour = palette.get((label, class_id))
        if colour is None:
            colour = palette[label, class_id] = class_colour(label, class_id)
        colours.append(colour)
        texts.append(_label_text(label, scores[i], crowd, show_scores))
        widths.append(max(1, lw // 2) if crowd else lw)
    _render(canvas, px[order], colours, texts, widths, fs, line_width=lw)
    return canvas


# ============================================================================ comparison
@dataclass(frozen=True)
class _Outcome:
    """How each detection and ground-truth object of one image came out."""

    det_tp: npt.NDArray[np.bool_]
    det_ignored: npt.NDArray[np.bool_]
    det_gt: npt.NDArray[np.int64]  # matched ground-truth index, -1 for none


def _matched_here(
    record: ImageRecord | Sequence[ObjectAnnotation],
    prediction: Prediction | Detections,
    size: tuple[int, int],
    iou: float,
    min_score: float | None,
) -> ImageMatches:
    """This image's matches from :func:`~detectkit.evaluation.evaluate` itself (the one
    matcher), so the picture and the numbers agree, ties included."""
    width, height = size
    objects = record.objects if isinstance(record, ImageRecord) else tuple(record)
    detections = prediction.detections if isinstance(prediction, Prediction) else prediction
    ref = "comparison"
    truth = LabeledDataset([ImageRecord(image=ref, width=width, height=height, objects=objects)])
    report = evaluate(
        truth,
        [Prediction(image=ref, width=width, height=height, detections=detections)],
        score_threshold=0.0 if min_score is None else float(min_score),
        iou_threshold=iou,
    )
    return report.matches[ref]


def _outcome_from(
    matches: EvaluationReport | ImageMatches, record: Any, prediction: Any, n: int
) -> _Outcome:
    """The evaluation's decisions for this image's ``n`` detections."""
    if isinstance(matches, EvaluationReport):
        refs = [
            r for r in (getattr(prediction, "image", None), getattr(record, "image", None)) if r
        ]
        found: ImageMatches | None = None
        for ref in refs:  # the exact reference, else the file name when unique
            with contextlib.suppress(KeyError):
                found = matches.matches[ref]
                break
        if found is None:
            raise InvalidInputError(
                f"matches: the report has no matches for image {refs[0] if refs else None!r}; "
                "pass the record of an evaluated image, or its own report.matches[i]"
            )
        matches = found
    det_tp = np.asarray(matches.det_tp, dtype=bool).reshape(-1)
    if det_tp.shape[0] != n:
        raise InvalidInputError(
            f"matches: expected det_tp aligned with the prediction's {n} detections, got "
            f"{det_tp.shape[0]}; pass the matches of this image (report.matches[image])"
        )
    return _Outcome(
        det_tp,
        np.asarray(matches.det_ignored, dtype=bool).reshape(-1),
        np.asarray(matches.det_gt, dtype=np.int64).reshape(-1),
    )


def plot_comparison(
    image: ImageInput,
    record: ImageRecord | Sequence[ObjectAnnotation],
    prediction: Prediction | Detections,
    matches: EvaluationReport | ImageMatches | None = None,
    *,
    iou: float = 0.5,
    min_score: float | None = 0.5,
    line_width: int | None = None,
    font_size: int | None = None,
) -> PILImage.Image:
    """Ground truth versus prediction on one image, coloured by outcome.

    Green: a true positive (``TP``, the detection; its ground-truth box drawn thin), red: a
    false positive (``FP``), orange: a missed object (``FN``), grey: a detection matching only
    a crowd region (ignored). Detections scoring below ``min_score`` are hidden, and a ground
    truth object counts as found only when a shown detection matched it, so the picture is what
    the model gives at that threshold.

    Args:
        image: As for :func:`draw`.
        record: The ground truth: an ``ImageRecord`` or a sequence of ``ObjectAnnotation``.
        prediction: A ``Prediction`` or ``Detections`` for the same image.
        matches: The :class:`~detectkit.evaluation.EvaluationReport` (this image's matches
            are looked up by its reference) or the image's own
            :class:`~detectkit.evaluation.ImageMatches`, so the picture shows exactly what the
            evaluation counted; ``None`` runs :func:`~detectkit.evaluation.evaluate` on this
            image alone at IoU ``iou`` (the same matcher, so ties break as in the numbers).
        iou: IoU threshold of the own matching.
        min_score: Hide detections scoring below this (``None`` shows all).
        line_width: As for :func:`draw`.
        font_size: As for :func:`draw`.

    Returns:
        A new RGB Pillow image.
    """
    canvas = _open(image)
    gt = _items(record, None)
    det = _items(prediction, None)
    if matches is None:
        matched = _matched_here(record, prediction, canvas.size, iou, min_score)
        outcome = _outcome_from(matched, record, prediction, len(det.labels))
    else:
        outcome = _outcome_from(matches, record, prediction, len(det.labels))
    width, height = canvas.size
    auto_line, auto_font = _auto_sizes(width, height)
    lw = auto_line if line_width is None else max(1, int(line_width))
    fs = auto_font if font_size is None else max(1, int(font_size))
    scale = np.array([width, height, width, height], dtype=np.float64)
    gt_px, det_px = gt.xyxy * scale, det.xyxy * scale
    shown = np.ones(len(det.labels), dtype=bool)
    if min_score is not None:
        shown = ~(det.scores < min_score)
    found = {int(g) for g in outcome.det_gt[shown & outcome.det_tp].tolist() if g >= 0}
    thin = max(1, lw // 2)
    marks: list[_Mark] = []
    for d in np.argsort(-np.nan_to_num(det.scores, nan=0.0), kind="stable").tolist():
        if not shown[d]:
            continue
        score = float(det.scores[d])
        text = det.labels[d] + ("" if math.isnan(score) else f" {score:.2f}")
        if outcome.det_tp[d]:
            marks.append(_Mark(_rect(det_px[d]), TP_COLOUR, f"TP {text}", lw))
        elif outcome.det_ignored[d]:
            marks.append(_Mark(_rect(det_px[d]), _IGNORED_COLOUR, f"ignored {text}", thin))
        else:
            marks.append(_Mark(_rect(det_px[d]), FP_COLOUR, f"FP {text}", lw))
    for g, label in enumerate(gt.labels):
        if gt.crowd[g]:
            marks.append(_Mark(_rect(gt_px[g]), _IGNORED_COLOUR, None, thin))
        elif g in found:
            marks.append(_Mark(_rect(gt_px[g]), TP_COLOUR, None, thin))
        else:
            marks.append(_Mark(_rect(gt_px[g]), FN_COLOUR, f"FN {label}", lw))
    _render(
        canvas,
        np.array([m.box for m in marks], dtype=np.float64).reshape(-1, 4),
        [m.colour for m in marks],
        [m.text for m in marks],
        [m.width for m in marks],
        fs,
        line_width=lw,
    )
    return canvas


def _rect(row: FloatArray) -> Rect:
    x1, y1, x2, y2 = row.tolist()
    return (x1, y1, x2, y2)


# ============================================================================ matplotlib
@overload
def plot(
    image: ImageInput,
    target: Target,
    *,
    ax: None = None,
    min_score: float | None = None,
    classes: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure: ...
@overload
def plot(
    image: ImageInput,
    target: Target,
    *,
    ax: Axes,
    min_score: float | None = None,
    classes: Sequence[str] | None = None,
    title: str | None = None,
) -> Axes: ...
def plot(
    image: ImageInput,
    target: Target,
    *,
    ax: Axes | None = None,
    min_score: float | None = None,
    classes: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure | Axes:
    """:func:`draw` shown in matplotlib: a new ``Figure``, or drawn into ``ax``.

    Args:
        image: As for :func:`draw`.
        target: As for :func:`draw`.
        ax: Axes to draw into; the axes are returned. ``None`` makes a new figure.
        min_score: As for :func:`draw`.
        classes: As for :func:`draw`.
        title: Axes title.

    Returns:
        The new ``Figure``, or ``ax`` when given.
    """
    picture = draw(image, target, min_score=min_score, classes=classes)
    fig = None
    if ax is None:
        w, h = picture.size
        fig = figure(8.0, 8.0 * h / max(w, 1))
        ax = fig.add_subplot()
    _show(ax, picture, title)
    return fig if fig is not None else ax


def _show(ax: Axes, picture: PILImage.Image, title: str | None) -> None:
    ax.imshow(np.asarray(picture))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def plot_grid(
    images_and_targets: LabeledDataset | Iterable[ImageRecord | tuple[Any, Any]],
    *,
    cols: int = 4,
    min_score: float | None = None,
    classes: Sequence[str] | None = None,
) -> Figure:
    """Several images with their boxes in one figure, ``cols`` per row.

    Args:
        images_and_targets: ``(image, target)`` pairs (as for :func:`draw`), ``ImageRecord``
            objects (drawn on their own image file), or a ``LabeledDataset`` (a slice of one:
            ``dataset[:8]``).
        cols: Images per row.
        min_score: As for :func:`draw`.
        classes: As for :func:`draw`; a data set's own classes by default.

    Returns:
        A ``Figure`` with one axes per image.
    """
    if isinstance(images_and_targets, LabeledDataset) and classes is None:
        classes = images_and_targets.classes
    pairs: list[tuple[Any, Any, str]] = []
    for i, item in enumerate(images_and_targets):
        if isinstance(item, ImageRecord):
            pairs.append((item.image, item, item.name))
        elif isinstance(item, tuple) and len(item) == 2:
            name = item[0] if isinstance(item[0], str) else f"#{i}"
            pairs.append((item[0], item[1], os.path.basename(str(name))))
        else:
            raise InvalidInputError(
                f"images_and_targets[{i}]: expected an (image, target) pair or an ImageRecord, "
                f"got {type(item).__name__}"
            )
    if not pairs:
        raise InvalidInputError("images_and_targets: expected at least one image, got none")
    if cols < 1:
        raise InvalidInputError(f"cols: expected >= 1, got {cols}")
    cols = min(cols, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig = figure(3.2 * cols, 2.6 * rows)
    for i, (image, target, name) in enumerate(pairs):
        ax = fig.add_subplot(rows, cols, i + 1)
        picture = _open(image)
        # a cell is about 320 px wide on screen: size lines and labels for that, not the file
        shrink = max(picture.width / 320.0, 1.0)
        line, font = _auto_sizes(picture.width, picture.height)
        picture = draw(
            picture,
            target,
            min_score=min_score,
            classes=classes,
            line_width=max(line, round(1.5 * shrink)),
            font_size=max(font, round(10 * shrink)),
        )
        _show(ax, picture, name)
    return fig
