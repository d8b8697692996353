"""The outputs of AutoML ONNX models, read into a :class:`~detectkit.prediction.Prediction`.

:func:`parse_onnx_output` reads a Faster R-CNN / RetinaNet model's ``boxes``, ``labels`` and
``scores`` (pixels of the resized input); :func:`parse_yolo_onnx_output` a YOLO model's rows
after NMS (pixels of the letterboxed input). Both give normalized corners with the model's
class list, like the JSON parsers of :mod:`detectkit.scoring`, which re-exports them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detectkit.errors import InvalidInputError, InvalidResponseError
from detectkit.prediction import Detections, Prediction, class_tuple

__all__ = ["parse_onnx_output", "parse_yolo_onnx_output"]

FloatArray = npt.NDArray[np.float64]
Size = tuple[int, int]


def parse_onnx_output(
    boxes: npt.ArrayLike,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    classes: Sequence[str],
    input_size: Size = (800, 600),
    image_size: Size | None = None,
    image: str | os.PathLike[str] | None = None,
) -> Prediction:
    """Read the outputs of an AutoML Faster R-CNN / RetinaNet ONNX model for one image.

    The model takes the image resized (not letterboxed) to ``input_size`` and answers
    ``boxes_i`` (n, 4) ``x_min, y_min, x_max, y_max`` in pixels *of that input*, ``labels_i``
    (class ids into ``labels.json``) and ``scores_i``. Mind the order: Faster R-CNN outputs
    boxes, labels, scores; RetinaNet boxes, scores, labels. Normalized corners are the input
    pixels divided by the input width and height (then clipped to ``[0, 1]``).

    Args:
        boxes: ``(n, 4)`` (a leading batch axis of 1 is dropped).
        labels: ``(n,)`` class ids.
        scores: ``(n,)`` confidences.
        classes: The model's ``labels.json`` list.
        input_size: ``(width, height)`` of the ONNX input; AutoML's default is 800 x 600.
        image_size: ``(width, height)`` of the original image, for pixel conversions.
        image: The image path or URL, if known.

    Raises:
        InvalidResponseError: Shapes disagree, values are not finite, boxes are inverted or
            a class id is outside ``classes``.
    """
    vocab = class_tuple(classes)
    b = _squeeze(np.asarray(boxes, dtype=np.float64), 4, "boxes")
    n = b.shape[0]
    ids = _class_ids(np.asarray(labels).reshape(-1), n, len(vocab), "labels")
    conf = np.array(scores, dtype=np.float64).reshape(-1)  # a copy: made read-only below
    if conf.shape != (n,):
        raise InvalidResponseError(
            f"scores: expected shape ({n},) to match boxes, got {conf.shape}"
        )
    in_w, in_h = _check_pair(input_size, "input_size")
    xyxy = b / np.array([in_w, in_h, in_w, in_h], dtype=np.float64)
    return _onnx_prediction(xyxy, conf, ids, vocab, image_size, image)


def parse_yolo_onnx_output(
    output: npt.ArrayLike | None,
    *,
    classes: Sequence[str],
    image_size: Size,
    input_size: Size = (640, 640),
    letterbox: bool = True,
    scaleup: bool = False,
    image: str | os.PathLike[str] | None = None,
) -> Prediction:
    """Read an AutoML YOLO ONNX model's detections (after NMS) for one image.

    Rows are ``x1, y1, x2, y2, confidence, class_id`` in pixels of the letterboxed input.
    AutoML's preprocessing (``yolo_onnx_preprocessing_utils.letterbox`` with ``auto=False,
    scaleup=False``) scales the ``w x h`` image by
    ``r = min(in_w / w, in_h / h, 1)`` (the ``1`` only when not ``scaleup``), rounds the
    scaled size to ``new_w = round(w r)``, ``new_h = round(h r)`` and pads it to the input
    with ``left = round((in_w - new_w) / 2 - 0.1)`` columns on the left and
    ``top = round((in_h - new_h) / 2 - 0.1)`` rows on top. Undoing it::

        top_x = (x1 - left) / new_w        top_y = (y1 - top) / new_h

    (and the same for ``x2, y2``), clipped to ``[0, 1]``: the unpadding AutoML's own
    ``unpad_bbox`` does. With ``letterbox=False`` (a plain resize) corners are divided by the
    input size.

    Args:
        output: ``(n, 6)`` detections (a leading batch axis of 1 is dropped); ``None`` (what
            the NMS helper returns for no boxes) means none.
        classes: The model's ``labels.json`` list.
        image_size: ``(width, height)`` of the original image.
        input_size: ``(width, height)`` of the ONNX input.
        letterbox: The input was letterboxed (AutoML's default) rather than resized.
        scaleup: The letterbox also enlarged images smaller than the input.
        image: The image path or URL, if known.

    Raises:
        InvalidResponseError: The array is not ``(n, 6)``, has non-finite values, inverted
            boxes or a class id outside ``classes``.
    """
    vocab = class_tuple(classes)
    rows = np.zeros((0, 6)) if output is None else np.asarray(output, dtype=np.float64)
    rows = _squeeze(rows, 6, "output")
    width, height = _check_pair(image_size, "image_size")
    in_w, in_h = _check_pair(input_size, "input_size")
    if letterbox:
        ratio = min(in_w / width, in_h / height)
        if not scaleup:
            ratio = min(ratio, 1.0)
        new_w, new_h = round(width * ratio), round(height * ratio)
        left, top = round((in_w - new_w) / 2 - 0.1), round((in_h - new_h) / 2 - 0.1)
        offset = np.array([left, top, left, top], dtype=np.float64)
        scale = np.array([new_w, new_h, new_w, new_h], dtype=np.float64)
    else:
        offset = np.zeros(4)
        scale = np.array([in_w, in_h, in_w, in_h], dtype=np.float64)
    xyxy = (rows[:, :4] - offset) / scale
    ids = _class_ids(rows[:, 5], rows.shape[0], len(vocab), "output[:, 5] (class_id)")
    return _onnx_prediction(xyxy, rows[:, 4].copy(), ids, vocab, (width, height), image)


def _squeeze(array: FloatArray, columns: int, name: str) -> FloatArray:
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.size == 0:
        array = array.reshape(0, columns)
    if array.ndim != 2 or array.shape[1] != columns:
        raise InvalidResponseError(f"{name}: expected shape (n, {columns}), got {array.shape}")
    return array


def _check_pair(pair: Size, name: str) -> Size:
    try:
        width, height = (int(v) for v in pair)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: expected (width, height), got {pair!r}") from None
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{name}: expected (width, height) > 0, got {pair!r}")
    return width, height


def _class_ids(raw: npt.NDArray[Any], n: int, n_classes: int, name: str) -> npt.NDArray[np.int64]:
    if raw.shape != (n,):
        raise InvalidResponseError(
            f"{name}: expected shape ({n},) to match the boxes, got {raw.shape}"
        )
    values = raw.astype(np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidResponseError(
            f"{name}[{i}]: expected a class id in 0..{n_classes - 1} (an index into the "
            f"{n_classes} classes of labels.json), got {raw[i]!r}"
        )
    return values.astype(np.int64)


def _onnx_prediction(
    xyxy: FloatArray,
    scores: FloatArray,
    class_ids: npt.NDArray[np.int64],
    vocab: tuple[str, ...],
    image_size: Size | None,
    image: str | os.PathLike[str] | None,
) -> Prediction:
    for name, values in (("boxes", xyxy), ("scores", scores)):
        bad = np.argwhere(~np.isfinite(values))  # (row, column) of each bad value
        if bad.size:
            i = int(bad[0][0])
            raise InvalidResponseError(
                f"{name}[{i}]: expected finite numbers, got {values[i].tolist()}"
            )
    inverted = (xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        raise InvalidResponseError(
            f"boxes[{i}]: expected x_min <= x_max and y_min <= y_max, got {xyxy[i].tolist()} "
            "(normalized); check the output order (Faster R-CNN: boxes, labels, scores; "
            "RetinaNet: boxes, scores, labels)"
        )
    dims = None if image_size is None else _check_pair(image_size, "image_size")
    return Prediction(
        image=os.fspath(image) if image is not None else None,
        width=None if dims is None else dims[0],
        height=None if dims is None else dims[1],
        detections=Detections._trusted(np.clip(xyxy, 0.0, 1.0), scores, class_ids, vocab),
    )
