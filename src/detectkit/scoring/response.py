"""The Azure ML AutoML object-detection scoring contract: requests in, :class:`Prediction` out.

One module, no HTTP: the backends send the bytes, this module builds and reads them, so the
Azure endpoint, a local server and batch scoring all share one parser.

**Request** (MLflow AutoML models)::

    {"input_data": {"columns": ["image"], "data": ["<base64 image file>", ...]}}

**Online response**: a JSON list, one element per image, in request order, with no file name::

    [{"boxes": [{"box": {"topX": 0.224, "topY": 0.285, "bottomX": 0.399, "bottomY": 0.620},
                 "label": "milk_bottle", "score": 0.937}, ...]}, ...]

Coordinates are normalized (pixel / image width or height). Models emit values a hair outside
``[0, 1]`` (``-0.0001``): within :data:`RESPONSE_CLIP_TOLERANCE` they are clipped; beyond it the response
is refused (pixel coordinates, most likely). A body that is a JSON *string* holding the JSON
list (a scoring script that returned ``json.dumps(...)``) is decoded twice.

**Batch output** (``predictions.csv`` / ``.jsonl``): one JSON object per line,
``{"filename": "<path on the compute>", "boxes": [...]}``.

**Class vocabulary.** Every :class:`Prediction` of one call shares one class list, so class ids
compare across images. With ``classes=`` (the model's ``labels.json`` or ``dataset.classes``)
labels index that list and a label outside it is an error (model and class list do not
match). Without it, the list is the *sorted* set of labels in the whole response, the same
rule :class:`~detectkit.LabeledDataset` uses, so it does not depend on response order.

**Errors** are :class:`~detectkit.InvalidResponseError` naming the element and the key, e.g.
``response[3].boxes[7].box: missing key "topX"``. Parsing is one vectorized pass after
``json.loads``; only a response that fails it is walked element by element to find the first
problem.

**ONNX outputs** (:func:`parse_onnx_output`, :func:`parse_yolo_onnx_output`) are read in
:mod:`detectkit.scoring.onnx` and re-exported here; the request side (:func:`build_request`,
:func:`encode_request`, :func:`decode_request`, :func:`image_sizes`) lives in
:mod:`detectkit.scoring.request` and is re-exported here too. The wire keys and texts are
those of :mod:`detectkit.scoring.contract`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import accumulate, chain
from operator import gt, itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detectkit.errors import InvalidInputError, InvalidResponseError, NotFoundError
from detectkit.images import image_info
from detectkit.prediction import Detections, Prediction, _class_tuple
from detectkit.scoring.contract import (
    BOX_KEYS,
    COORDINATE_KEYS,
    RESPONSE_CLIP_TOLERANCE,
    RESPONSE_CONTRACT,
    box_entry,
    describe,
)
from detectkit.scoring.onnx import parse_onnx_output, parse_yolo_onnx_output
from detectkit.scoring.request import (
    ImageInput,
    Size,
    build_request,
    decode_request,
    encode_request,
    image_list,
    image_sizes,
)

__all__ = [
    "CLIP_TOLERANCE",
    "COORDINATE_KEYS",
    "RESPONSE_CLIP_TOLERANCE",
    "ImageInput",
    "build_request",
    "decode_request",
    "encode_request",
    "format_response",
    "image_sizes",
    "parse_batch_output",
    "parse_onnx_output",
    "parse_response",
    "parse_yolo_onnx_output",
    "read_predictions",
]

#: The name this tolerance had before :data:`RESPONSE_CLIP_TOLERANCE` said what it is for.
CLIP_TOLERANCE = RESPONSE_CLIP_TOLERANCE

FloatArray = npt.NDArray[np.float64]

_BOXES = itemgetter("boxes")
_BOX = itemgetter("box")
_COORDS = itemgetter(*COORDINATE_KEYS)
_LABEL = itemgetter("label")
_SCORE = itemgetter("score")
_NUMBER_TYPES = frozenset((float, int))


# ===================================================================== online response
def parse_response(
    body: bytes | str | list[Any],
    *,
    images: ImageInput | Iterable[ImageInput] | None = None,
    sizes: Sequence[Size | None] | None = None,
    classes: Sequence[str] | None = None,
) -> list[Prediction]:
    """Read an online endpoint's answer: one :class:`Prediction` per image, in request order.

    Args:
        body: The response body (bytes or text), or the already decoded JSON list.
        images: The images sent, in order. File paths become ``Prediction.image``; sizes are
            read from them (EXIF-aware, headers only) unless ``sizes`` is given.
        sizes: ``(width, height)`` of each image, so pixel conversions work.
        classes: The model's class list (``labels.json``). Default: the sorted labels of
            the response (see the module docs).

    Raises:
        InvalidResponseError: The body does not follow the contract; the message names the
            element and key (``response[3].boxes[7].box: missing key "topX"``), or the
            number of elements differs from the number of images sent.

    Examples:
        >>> body = '[{"boxes": [{"box": {"topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}, "label": "can", "score": 0.9}]}]'
        >>> (pred,) = parse_response(body, sizes=[(200, 100)])
        >>> pred.labels.tolist(), pred.to_pixels().tolist()
        (['can'], [[20.0, 20.0, 100.0, 60.0]])
    """
    data = _load_json(body)
    refs, dims = _image_refs(images, sizes, len(data))
    detections = _convert(data, classes, lambda i, path: f"response[{i}]{path}")
    make = Prediction._trusted  # refs and dims were checked by _image_refs
    return [
        make(ref, None, None, det) if dim is None else make(ref, dim[0], dim[1], det)
        for ref, dim, det in zip(refs, dims, detections, strict=True)
    ]


def format_response(predictions: Iterable[Prediction | Detections]) -> list[dict[str, Any]]:
    """The online response for ``predictions`` (what an AutoML endpoint returns).

    ``json.dumps`` of the result is a body :func:`parse_response` reads back unchanged.
    """
    out = []
    for item in predictions:
        det = item.detections if isinstance(item, Prediction) else item
        names = det.classes
        rows = zip(det.xyxy.tolist(), det.scores.tolist(), det.class_ids.tolist(), strict=True)
        out.append({"boxes": [box_entry(row, names[cid], score) for row, score, cid in rows]})
    return out


def _load_json(body: bytes | str | list[Any]) -> list[Any]:
    data: Any = body
    if type(body) is list:
        return body
    if isinstance(body, bytes | bytearray | memoryview | str):
        text = bytes(body) if isinstance(body, memoryview) else body
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            size = len(text)
            raise InvalidResponseError(
                f"response: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}, "
                f"character {exc.pos} of {size}); starts with {text[:60]!r}\n  hint: a body "
                "cut short usually means a timeout or size limit on the way; an HTML or "
                "plain-text body is an error page, not a scoring answer"
            ) from exc
        except UnicodeDecodeError as exc:
            raise InvalidResponseError(f"response: not UTF-8 text ({exc})") from exc
        if isinstance(data, str):  # a scoring script returned json.dumps(...): encoded twice
            try:
                data = json.loads(data)
            except json.JSONDecodeError:
                raise InvalidResponseError(
                    f"response: expected a JSON list ({RESPONSE_CONTRACT}), got a JSON string {data[:80]!r}"
                ) from None
    if isinstance(data, Mapping):
        detail = data.get("message") or data.get("error")
        raise InvalidResponseError(
            f"response: expected a JSON list with one element per image ({RESPONSE_CONTRACT}), got an "
            f"object with keys {sorted(data)}" + (f": {str(detail)[:200]}" if detail else "")
        )
    if not isinstance(data, list):
        raise InvalidResponseError(
            f"response: expected a JSON list with one element per image ({RESPONSE_CONTRACT}), "
            f"got {describe(data)}"
        )
    return data


def _image_refs(
    images: Any, sizes: Sequence[Size | None] | None, n: int
) -> tuple[list[str | None], list[Size | None]]:
    refs: list[str | None] = [None] * n
    dims: list[Size | None] = [None] * n
    if images is not None:
        items = image_list(images)
        if len(items) != n:
            raise InvalidResponseError(
                f"response: expected {len(items)} elements, one per image sent, got {n}"
            )
        refs = [os.fspath(x) if isinstance(x, str | os.PathLike) else None for x in items]
        if sizes is None:
            dims = list(image_sizes(items))
    if sizes is not None:
        dims = list(sizes)
        if len(dims) != n:
            raise InvalidInputError(
                f"sizes: expected {n} (width, height) pairs, one per response element, "
                f"got {len(dims)}"
            )
        for i, dim in enumerate(dims):
            if dim is None:
                continue
            if not (
                len(dim) == 2
                and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in dim)
                and min(dim) > 0
            ):
                raise InvalidInputError(
                    f"sizes[{i}]: expected (width, height) in pixels or None, got {dim!r}"
                )
            dims[i] = (int(dim[0]), int(dim[1]))
    return refs, dims


# ===================================================================== batch output
def parse_batch_output(
    lines_or_path: str | os.PathLike[str] | bytes | Iterable[str | bytes],
    *,
    classes: Sequence[str] | None = None,
    sizes: Mapping[str, Size] | None = None,
    image_root: str | os.PathLike[str] | None = None,
) -> list[Prediction]:
    """Read batch scoring output: one JSON object per line, ``{"filename", "boxes"}``.

    Args:
        lines_or_path: A ``predictions.csv`` / ``.jsonl`` path, the file's text (a string
            holding a line break or starting with ``{``), bytes, or an iterable of lines.
            Blank lines are skipped.
        classes: The model's class list; default the sorted labels found (module docs).
        sizes: ``(width, height)`` by file name, either as written in the output (a path on
            the compute) or its base name.
        image_root: A local folder holding the scored images by base name; sizes are read
            from it (EXIF-aware) for files not in ``sizes``.

    Returns:
        One :class:`Prediction` per line, ``image`` being the line's ``filename``.

    Raises:
        NotFoundError: The file, or an image under ``image_root``, does not exist.
        InvalidResponseError: A line does not follow the contract
            (``predictions.csv line 17: boxes[2].box: missing key "topX"``).
    """
    source, lines = _read_lines(lines_or_path)
    items = []
    for lineno, text in lines:
        try:
            items.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidResponseError(
                f"{source} line {lineno}: not valid JSON: {exc.msg} (column {exc.colno}); "
                'expected one {"filename": ..., "boxes": [...]} object per line'
            ) from exc
    filenames = []
    for (lineno, _), item in zip(lines, items, strict=True):
        name = item.get("filename") if isinstance(item, dict) else None
        if not isinstance(name, str):
            problem = (
                f"filename: expected a string, got {describe(name)}"
                if isinstance(item, dict) and "filename" in item
                else 'missing key "filename"'
                if isinstance(item, dict)
                else f'expected an object {{"filename", "boxes"}}, got {describe(item)}'
            )
            raise InvalidResponseError(f"{source} line {lineno}: {problem}")
        filenames.append(name)

    def locate(i: int, path: str) -> str:
        head = f"{source} line {lines[i][0]}"
        return f"{head}: {path.lstrip('.')}" if path else head

    detections = _convert(items, classes, locate)
    dims = [_batch_size(name, sizes, image_root) for name in filenames]
    return [
        Prediction(
            image=name,
            width=None if dim is None else dim[0],
            height=None if dim is None else dim[1],
            detections=det,
        )
        for name, dim, det in zip(filenames, dims, detections, strict=True)
    ]


def _read_lines(src: Any) -> tuple[str, list[tuple[int, str]]]:
    """``(source name, [(line number, text), ...])`` with blank lines dropped."""
    text: str | None = None
    raw_lines: Iterable[Any]
    if isinstance(src, str) and ("\n" in src or src.lstrip().startswith("{")):
        source, text = "batch output", src
    elif isinstance(src, str | os.PathLike):
        path = Path(src)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"batch output file not found: {path}\n  hint: download the job's output "
                "(predictions.csv) first, or pass the lines themselves"
            ) from exc
        source = path.name
    elif isinstance(src, bytes | bytearray):
        source = "batch output"
        try:
            text = bytes(src).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidResponseError(f"batch output: not UTF-8 text ({exc})") from exc
    else:
        source = "batch output"
    raw_lines = text.splitlines() if text is not None else src
    lines = []
    for lineno, line in enumerate(raw_lines, start=1):
        if isinstance(line, bytes | bytearray):
            line = bytes(line).decode("utf-8")
        if not isinstance(line, str):
            raise InvalidInputError(
                f"{source} line {lineno}: expected a line of text, got {type(line).__name__}"
            )
        if line.strip():
            lines.append((lineno, line))
    return source, lines


def _batch_size(
    name: str, sizes: Mapping[str, Size] | None, image_root: str | os.PathLike[str] | None
) -> Size | None:
    base = _base_name(name)
    if sizes is not None:
        dim = sizes.get(name) or sizes.get(base)
        if dim is not None:
            return (int(dim[0]), int(dim[1]))
    if image_root is not None:
        info = image_info(Path(image_root) / base)
        return (info.width, info.height)
    return None


# ===================================================================== either file
def read_predictions(
    source: str | os.PathLike[str] | bytes,
    *,
    images: Sequence[str | os.PathLike[str]] | None = None,
    sizes: Sequence[Size | None] | None = None,
    classes: Sequence[str] | None = None,
) -> list[Prediction]:
    """Read a saved predictions file of either shape, recognised by its first character.

    * An online response (a JSON list, ``[``): one element per image, in the order of
      ``images``, as :func:`parse_response` reads it.
    * Batch output (JSON lines, ``{``): each line's ``filename`` is matched to ``images`` by
      full path, then by base name; a match takes the local path as ``Prediction.image`` and
      its entry of ``sizes``. Lines matching none keep their file name.

    Args:
        source: A file path, or the file's content as bytes (or as a string starting with
            ``[`` or ``{``).
        images: The images the predictions are for (``[r.image for r in dataset]``).
        sizes: ``(width, height)`` of each of ``images`` (``None`` where unknown). Default:
            read from the images for an online response, unknown for batch lines.
        classes: The model's class list; default the sorted labels found.

    Raises:
        NotFoundError: The file does not exist.
        InvalidResponseError: The content follows neither contract.
    """
    text: str | bytes
    if isinstance(source, bytes | bytearray):
        text, name = bytes(source), "predictions"
    elif isinstance(source, str) and source.lstrip()[:1] in ("[", "{"):
        text, name = source, "predictions"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise NotFoundError(f"predictions file not found: {path}") from exc
        name = path.name
    head = text.lstrip()[:1]
    if head in ("[", b"[", '"', b'"'):
        return parse_response(text, images=images, sizes=sizes, classes=classes)
    if head not in ("{", b"{"):
        raise InvalidResponseError(
            f"{name}: expected an online response (a JSON list) or batch output (one JSON "
            f"object per line), got content starting with {text[:40]!r}"
        )
    lines = text.splitlines()
    source_arg: Any = lines if name == "predictions" else source
    predictions = parse_batch_output(source_arg, classes=classes)
    if images is None:
        return predictions
    refs = [os.fspath(x) for x in images]
    dims = list(sizes) if sizes is not None else [None] * len(refs)
    if len(dims) != len(refs):
        raise InvalidInputError(
            f"sizes: expected {len(refs)} (width, height) pairs, one per image, got {len(dims)}"
        )
    by_path = {ref: i for i, ref in enumerate(refs)}
    bases: dict[str, list[int]] = {}
    for i, ref in enumerate(refs):
        bases.setdefault(_base_name(ref), []).append(i)
    out = []
    for pred in predictions:
        filename = pred.image or ""
        index = by_path.get(filename)
        if index is None:
            candidates = bases.get(_base_name(filename), [])
            index = candidates[0] if len(candidates) == 1 else None
        if index is None:
            out.append(pred)
            continue
        dim = dims[index]
        out.append(
            Prediction(
                image=refs[index],
                width=None if dim is None else dim[0],
                height=None if dim is None else dim[1],
                detections=pred.detections,
            )
        )
    return out


def _base_name(ref: str) -> str:
    return ref.replace("\\", "/").rsplit("/", 1)[-1]


# ===================================================================== the parser core
def _convert(
    items: list[Any], classes: Sequence[str] | None, locate: Callable[[int, str], str]
) -> list[Detections]:
    """Detections of each response element: a vectorized pass, a precise walk on failure."""
    vocab = None if classes is None else _class_tuple(classes)
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
