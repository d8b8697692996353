"""Which images to label first: rank unlabeled images by how unsure a model is about them.

:func:`rank_for_labeling` takes one :class:`~detectkit.Prediction` per image (a model's boxes on
the images nobody has labeled yet) and returns the images most useful to label first. Each
strategy turns an image's detections into one uncertainty in ``[0, 1]`` (higher: label sooner);
only boxes scoring at least ``floor`` count, and an image with no box at or above ``floor`` is
maximally uncertain (1.0: the model found nothing it believes in, so it has the most to learn
there):

=================== ==========================================================================
``least_confident``  ``1 - max(s)``: how little the model trusts its best box on the image.
``margin``           ``1 - min(m)`` over the boxes, where a box's margin ``m = |s - r|`` and
                     ``r`` is the best score of an overlapping box (IoU >= 0.5) of another
                     class (0 when there is none): two classes competing for one object, or one
                     weak box, make the image uncertain.
``entropy``          the mean binary entropy (in bits) of the box scores,
                     ``H(s) = -s log2 s - (1 - s) log2 (1 - s)``.
``random``           a seeded shuffle (the baseline every active strategy must beat).
=================== ==========================================================================

Ties keep the input order. With ``diversity=True`` no two of the leading picks come from the
same near-duplicate cluster: each image gets a 64-bit difference hash (the image in grayscale,
shrunk to 9 x 8 pixels, one bit per pair of horizontal neighbours); walking the ranking, an
image within ``max_distance`` bits (Hamming distance, default 10 of 64) of an image already
picked is a near-duplicate of it and moves to the end of the list (still ranked, with
``duplicate_of`` naming the pick it resembles), so the first picks cover distinct scenes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.prediction import Prediction

__all__ = [
    "STRATEGIES",
    "RankedImage",
    "Strategy",
    "difference_hash",
    "image_uncertainty",
    "rank_for_labeling",
]

Strategy = Literal["least_confident", "margin", "entropy", "random"]
#: The strategies :func:`rank_for_labeling` knows.
STRATEGIES: tuple[str, ...] = ("least_confident", "margin", "entropy", "random")
_RIVAL_IOU = 0.5


class RankedImage(NamedTuple):
    """One image in labeling order.

    Attributes:
        position: Its position in the predictions given.
        image: Its path or URL (the prediction's ``image``, or ``images[index]``), when known.
        uncertainty: The strategy's value in ``[0, 1]`` (for ``random``: the draw).
        duplicate_of: With ``diversity``, the index of the earlier pick it nearly duplicates.
    """

    position: int
    image: str | None
    uncertainty: float
    duplicate_of: int | None = None


def image_uncertainty(
    prediction: Prediction, strategy: str = "least_confident", *, floor: float = 0.05
) -> float:
    """One image's uncertainty under ``strategy`` (see the module docstring).

    Raises:
        InvalidInputError: An unknown strategy (``random`` has no per-image value).
    """
    if strategy not in ("least_confident", "margin", "entropy"):
        raise InvalidInputError(
            f"strategy: expected 'least_confident', 'margin' or 'entropy', got {strategy!r}"
        )
    det = prediction.detections
    keep = det.scores >= floor
    scores = np.clip(det.scores[keep], 0.0, 1.0)
    if scores.size == 0:
        return 1.0
    if strategy == "least_confident":
        return float(1.0 - scores.max())
    if strategy == "entropy":
        s = np.clip(scores, 1e-12, 1 - 1e-12)
        h = -(s * np.log2(s) + (1 - s) * np.log2(1 - s))
        return float(np.clip(h.mean(), 0.0, 1.0))
    boxes = det.xyxy[keep]
    ids = det.class_ids[keep]
    iou = _iou_matrix(boxes)
    rival = np.where((iou >= _RIVAL_IOU) & (ids[:, None] != ids[None, :]), scores[None, :], 0.0)
    margins = np.abs(scores - rival.max(axis=1))
    return float(np.clip(1.0 - margins.min(), 0.0, 1.0))


def rank_for_labeling(
    predictions: Sequence[Prediction],
    strategy: Strategy | str = "least_confident",
    *,
    diversity: bool = False,
    seed: int = 0,
    images: Sequence[str | os.PathLike[str]] | None = None,
    floor: float = 0.05,
    max_distance: int = 10,
) -> list[RankedImage]:
    """Images in the order to label them: most uncertain first.

    Args:
        predictions: One prediction per unlabeled image.
        strategy: ``least_confident``, ``margin``, ``entropy`` or ``random`` (module docstring).
        diversity: Move near-duplicates of an earlier pick to the end (needs the image files).
        seed: The shuffle of ``random``.
        images: The image files, one per prediction (default: each prediction's ``image``).
        floor: Boxes scoring below it are ignored (background noise).
        max_distance: Hamming distance (of 64 bits) up to which two images are near-duplicates.

    Returns:
        Every image once, as :class:`RankedImage`, in labeling order.

    Raises:
        InvalidInputError: An unknown strategy, or ``images`` of another length.
        NotFoundError: ``diversity`` and an image file is unknown or missing.

    Examples:
        >>> from detectkit import Detections, Prediction
        >>> sure = Prediction(detections=Detections([[0, 0, 0.5, 0.5]], [0.95], [0], ["cat"]))
        >>> unsure = Prediction(detections=Detections([[0, 0, 0.5, 0.5]], [0.55], [0], ["cat"]))
        >>> [r.position for r in rank_for_labeling([sure, unsure])]
        [1, 0]
    """
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")
    if images is not None and len(images) != len(predictions):
        raise InvalidInputError(
            f"images: expected one per prediction ({len(predictions)}), got {len(images)}"
        )
    names = [
        os.fspath(images[i]) if images is not None else p.image for i, p in enumerate(predictions)
    ]
    if strategy == "random":
        values = np.random.default_rng(seed).random(len(predictions))
    else:
        values = np.array(
            [image_uncertainty(p, strategy, floor=floor) for p in predictions], dtype=np.float64
        )
    order = sorted(range(len(predictions)), key=lambda i: (-values[i], i))
    ranked = [RankedImage(i, names[i], float(values[i])) for i in order]
    if not diversity:
        return ranked
    return _diversify(ranked, max_distance)


def difference_hash(path: str | os.PathLike[str]) -> int:
    """A 64-bit difference hash of an image (EXIF orientation applied).

    Raises:
        NotFoundError: The file is missing or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            small = ImageOps.exif_transpose(im).convert("L").resize((9, 8), Image.Resampling.BOX)
    except (FileNotFoundError, UnidentifiedImageError) as exc:
        raise NotFoundError(
            f"{os.fspath(path)}: cannot read the image for the diversity step ({exc})"
        ) from exc
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).reshape(-1)
    return int(sum(1 << k for k, bit in enumerate(bits.tolist()) if bit))


def _diversify(ranked: list[RankedImage], max_distance: int) -> list[RankedImage]:
    picked: list[tuple[int, int]] = []  # (hash, index)
    first: list[RankedImage] = []
    later: list[RankedImage] = []
    for item in ranked:
        if item.image is None:
            raise NotFoundError(
                f"prediction {item.position}: the image is unknown; pass images= for diversity"
            )
        code = difference_hash(item.image)
        near = next((i for h, i in picked if (h ^ code).bit_count() <= max_distance), None)
        if near is None:
            picked.append((code, item.position))
            first.append(item)
        else:
            later.append(item._replace(duplicate_of=near))
    return first + later


def _iou_matrix(boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area[:, None] + area[None, :] - inter
    out: npt.NDArray[np.float64] = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    np.fill_diagonal(out, 0.0)
    return out
