"""The response parser core: a vectorized pass over the whole response, and a precise walk
that names the first element breaking the contract when the fast pass fails.

:mod:`detectkit.scoring.response` reads responses and batch lines with :func:`convert`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import accumulate, chain
from operator import gt, itemgetter
from typing import Any

import numpy as np

from detectkit.errors import InvalidResponseError
from detectkit.prediction import Detections, class_tuple
from detectkit.scoring.contract import (
    BOX_KEYS,
    COORDINATE_KEYS,
    RESPONSE_CLIP_TOLERANCE,
    RESPONSE_CONTRACT,
    describe,
)

__all__ = ["convert"]

_BOXES = itemgetter("boxes")
_BOX = itemgetter("box")
_COORDS = itemgetter(*COORDINATE_KEYS)
_LABEL = itemgetter("label")
_SCORE = itemgetter("score")
_NUMBER_TYPES = frozenset((float, int))


def convert(
    items: list[Any], classes: Sequence[str] | None, locate: Callable[[int, str], str]
) -> list[Detections]:
    """Detections of each response element: a vectorized pass, a precise walk on failure."""
    vocab = None if classes is None else class_tuple(classes)
    try:
        result = _fast_convert(items, vocab)
    except (KeyError, TypeError, ValueError, OverflowError, IndexError):
        result = None
    if result is not None:
        return result
    problem = _find_problem(items, vocab)
    if problem is None:  # pragma: no cover - the walk checks all the fast pass does
        raise InvalidResponseError(
            "response: does not follow the scoring contract " + RESPONSE_CONTRACT
        )
    index, path, message = problem
    raise InvalidResponseError(f"{locate(index, path)}: {message}")


def _fast_convert(items: list[Any], vocab: tuple[str, ...] | None) -> list[Detections] | None:
    """Convert a well-formed response in a few C-level passes; ``None`` if anything is off.

    Every pass is a builtin (``map``, ``set``, ``min``, ``sum``) over flat lists of the whole
    response, and numpy is called a fixed number of times per call, not per image or box, so
    one call on 5,000 images and 5,000 calls on one image each stay close to ``json.loads``.
    """
    per_image = list(map(_BOXES, items))
    if not set(map(type, per_image)) <= {list}:
        return None
    flat = list(chain.from_iterable(per_image))
    n = len(flat)
    labels = list(map(_LABEL, flat))
    coords = list(chain.from_iterable(map(_COORDS, map(_BOX, flat))))
    scores_list = list(map(_SCORE, flat))
    if not set(map(type, chain(coords, scores_list))) <= _NUMBER_TYPES:
        return None
    seen = set(labels)
    if not all(type(label) is str for label in seen):
        return None
    if vocab is None:
        vocab = tuple(sorted(seen))
    elif not seen.issubset(vocab):
        return None
    clip = False
    if n:
        # NaN or infinity makes the sum non-finite (min and max cannot be trusted with NaN)
        if not math.isfinite(sum(coords) + sum(scores_list)):
            return None
        low, high = min(coords), max(coords)
        if low < -RESPONSE_CLIP_TOLERANCE or high > 1.0 + RESPONSE_CLIP_TOLERANCE:
            return None
        if min(scores_list) < 0.0 or max(scores_list) > 1.0:
            return None
        if any(map(gt, coords[0::4], coords[2::4])) or any(map(gt, coords[1::4], coords[3::4])):
            return None
        clip = low < 0.0 or high > 1.0
    xyxy = np.array(coords, dtype=np.float64).reshape(n, 4)
    if clip:  # a coordinate a hair outside the image
        np.clip(xyxy, 0.0, 1.0, out=xyxy)
    scores = np.array(scores_list, dtype=np.float64)
    index = {name: i for i, name in enumerate(vocab)}
    class_ids = np.fromiter(map(index.__getitem__, labels), dtype=np.int64, count=n)
    trusted = Detections._trusted
    if len(per_image) <= 1:
        return [trusted(xyxy, scores, class_ids, vocab)] if per_image else []
    for array in (xyxy, scores, class_ids):
        array.setflags(write=False)
    stops = list(accumulate(map(len, per_image)))
    starts = [0, *stops[:-1]]
    return [
        trusted(xyxy[a:b], scores[a:b], class_ids[a:b], vocab)
        for a, b in zip(starts, stops, strict=True)
    ]


def _find_problem(items: list[Any], vocab: tuple[str, ...] | None) -> tuple[int, str, str] | None:
    """The first element that breaks the contract: ``(element index, key path, message)``."""
    allowed = None if vocab is None else set(vocab)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return i, "", f'expected an object with a "boxes" list, got {describe(item)}'
        if "boxes" not in item:
            return i, "", f'missing key "boxes" (keys: {sorted(item)})'
        boxes = item["boxes"]
        if not isinstance(boxes, list):
            return i, ".boxes", f"expected a list of boxes, got {describe(boxes)}"
        for j, entry in enumerate(boxes):
            problem = _box_problem(entry, f".boxes[{j}]", allowed, vocab)
            if problem is not None:
                return (i, *problem)
    return None


def _box_problem(
    entry: Any, where: str, allowed: set[str] | None, vocab: tuple[str, ...] | None
) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return where, f'expected an object with "box", "label" and "score", got {describe(entry)}'
    for key in BOX_KEYS:
        if key not in entry:
            return where, f'missing key "{key}"'
    box = entry["box"]
    if not isinstance(box, dict):
        return (
            where + ".box",
            f"expected an object with topX, topY, bottomX, bottomY, got {describe(box)}",
        )
    for key in COORDINATE_KEYS:
        if key not in box:
            return where + ".box", f'missing key "{key}"'
    for key in COORDINATE_KEYS:
        value = box[key]
        problem = _number_problem(value)
        if (
            problem is None
            and not -RESPONSE_CLIP_TOLERANCE <= value <= 1.0 + RESPONSE_CLIP_TOLERANCE
        ):
            problem = (
                f"expected a normalized coordinate in [0, 1], got {value!r} (pixel "
                "coordinates? the contract divides them by the image width and height)"
            )
        if problem is not None:
            return f"{where}.box.{key}", problem
    for low, high in (("topX", "bottomX"), ("topY", "bottomY")):
        if box[high] < box[low]:
            return f"{where}.box", f"{high} {box[high]!r} < {low} {box[low]!r} (inverted box)"
    label = entry["label"]
    if not isinstance(label, str):
        return where + ".label", f"expected a string, got {describe(label)}"
    if allowed is not None and label not in allowed:
        return where + ".label", (
            f"{label!r} is not one of the classes {list(vocab or ())}; pass the model's class "
            "list (labels.json), or classes=None to take the labels from the response"
        )
    score = entry["score"]
    problem = _number_problem(score)
    if problem is None and not 0.0 <= score <= 1.0:
        problem = f"expected a score in [0, 1], got {score!r}"
    if problem is not None:
        return where + ".score", problem
    return None


def _number_problem(value: Any) -> str | None:
    if type(value) not in _NUMBER_TYPES:
        return f"expected a number, got {describe(value)}"
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    return None if finite else f"expected a finite number, got {value!r}"
