"""Reviewing a model's pre-labels, and the order the page serves images in.

A draft is an :class:`~detectkit.ObjectAnnotation` with ``source="model"`` (its ``score`` and
``model_version`` kept). :func:`accept` turns drafts into human labels (``source="human"``, the
score dropped: a person vouches for the box now), :func:`reject` removes boxes, and
:func:`mark_reviewed` records that a person checked the image as a whole. The page does the
same through its save call; editing a draft there (moving, resizing or relabeling it) also makes
it a human label.

:func:`labeling_order` ranks the images still to label (untouched or pre-labeled) with
:func:`~detectkit.ranking.rank_for_labeling`, from the drafts' scores already in the store (no
model runs at serve time). Images without drafts follow the ranked ones, in index order: the
store cannot tell an image the model found nothing on from one it never saw, so they are not
ranked (pre-label them with ``min_score`` low enough that every image gets a draft to rank them
too). Labeled, reviewed and skipped images come last, in index order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from detectkit.dataset import ObjectAnnotation
from detectkit.detections import Detections
from detectkit.errors import InvalidInputError
from detectkit.labeling.labels import ImageLabels, annotation, is_draft
from detectkit.labeling.records import ImageState
from detectkit.labeling.store import LabelingStore
from detectkit.prediction import Prediction
from detectkit.ranking import rank_for_labeling

__all__ = [
    "ORDERS",
    "accept",
    "drafts_prediction",
    "humanize",
    "labeling_order",
    "mark_reviewed",
    "reject",
]

#: The orders the page can serve images in (``uncertainty`` is ``least_confident``).
ORDERS: tuple[str, ...] = ("index", "random", "uncertainty", "least_confident", "margin", "entropy")
_TODO = (ImageState.UNLABELED, ImageState.PRELABELED)


def humanize(obj: ObjectAnnotation) -> ObjectAnnotation:
    """The human label a person makes of a draft (same class and box, no score)."""
    if not is_draft(obj):
        return obj
    return annotation(obj.label, obj.box, is_crowd=obj.is_crowd)


def accept(store: LabelingStore, image: str, boxes: Sequence[int] | None = None) -> ImageLabels:
    """Accept drafts of an image as human labels.

    Args:
        store: The project's store.
        image: The image id.
        boxes: Positions in the image's box list (default: every draft).

    Returns:
        The saved labels (``labeled``, or ``reviewed`` when it was).

    Raises:
        InvalidInputError: A position out of range.
    """
    labels = store.labels(image)
    chosen = _positions(labels, boxes)
    objects = [humanize(o) if k in chosen else o for k, o in enumerate(labels.objects)]
    return _save(store, labels, objects)


def reject(store: LabelingStore, image: str, boxes: Sequence[int] | None = None) -> ImageLabels:
    """Remove boxes of an image (default: every draft); returns the saved labels."""
    labels = store.labels(image)
    chosen = _positions(labels, boxes)
    return _save(store, labels, [o for k, o in enumerate(labels.objects) if k not in chosen])


def mark_reviewed(store: LabelingStore, image: str) -> ImageLabels:
    """Mark an image reviewed (a person checked it as a whole; drafts left on it stay drafts,
    out of the export); returns the saved labels."""
    labels = store.labels(image)
    return store.save(
        image, revision=labels.revision, state=ImageState.REVIEWED, objects=labels.objects
    )


def drafts_prediction(labels: ImageLabels, classes: Sequence[str]) -> Prediction:
    """An image's drafts as a :class:`~detectkit.Prediction` (a draft without a score counts
    as sure, 1.0)."""
    drafts = [o for o in labels.objects if is_draft(o)]
    names = list(classes) + sorted({o.label for o in drafts} - set(classes))
    if not drafts:
        return Prediction(width=labels.width, height=labels.height)
    det = Detections(
        [[o.box.top_x, o.box.top_y, o.box.bottom_x, o.box.bottom_y] for o in drafts],
        [1.0 if o.score is None else o.score for o in drafts],
        [names.index(o.label) for o in drafts],
        names,
    )
    return Prediction(width=labels.width, height=labels.height, detections=det)


def labeling_order(store: LabelingStore, order: str = "index", *, seed: int = 0) -> list[int]:
    """Index positions in the order the page serves them (see the module docstring).

    Raises:
        InvalidInputError: An unknown order.
    """
    if order not in ORDERS:
        raise InvalidInputError(f"order: expected one of {list(ORDERS)}, got {order!r}")
    positions = list(range(len(store)))
    if order == "index":
        return positions
    if order == "random":
        random.Random(seed).shuffle(positions)
        return positions
    strategy = "least_confident" if order == "uncertainty" else order
    drafted: list[int] = []
    predictions: list[Prediction] = []
    rest: list[int] = []
    later: list[int] = []
    for k, entry in enumerate(store.entries):
        state = store.state(entry.id)
        if state not in _TODO:
            later.append(k)
            continue
        prediction = drafts_prediction(store.labels(entry.id), store.classes)
        if len(prediction) == 0:
            rest.append(k)
        else:
            drafted.append(k)
            predictions.append(prediction)
    ranked = rank_for_labeling(predictions, strategy, seed=seed) if predictions else []
    return [drafted[r.position] for r in ranked] + rest + later


def _positions(labels: ImageLabels, boxes: Sequence[int] | None) -> set[int]:
    if boxes is None:
        return {k for k, o in enumerate(labels.objects) if is_draft(o)}
    n = len(labels.objects)
    for k in boxes:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < n:
            raise InvalidInputError(
                f"boxes: expected positions 0..{n - 1} of image {labels.id!r}'s boxes, got {k!r}"
            )
    return {int(k) for k in boxes}


def _save(
    store: LabelingStore, labels: ImageLabels, objects: list[ObjectAnnotation]
) -> ImageLabels:
    state = ImageState.REVIEWED if labels.state == ImageState.REVIEWED else ImageState.LABELED
    return store.save(labels.id, revision=labels.revision, state=state, objects=objects)
