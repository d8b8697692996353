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
import os
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detectkit.errors import InvalidInputError, InvalidResponseError, NotFoundError
from detectkit.images import image_info
from detectkit.prediction import Detections, Prediction
from detectkit.scoring.contract import (
    COORDINATE_KEYS,
    RESPONSE_CLIP_TOLERANCE,
    RESPONSE_CONTRACT,
    box_entry,
    describe,
    load_json,
)
from detectkit.scoring.onnx import parse_onnx_output, parse_yolo_onnx_output
from detectkit.scoring.parser import convert
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
    detections = convert(data, classes, lambda i, path: f"response[{i}]{path}")
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
            data = load_json(text)
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
                data = load_json(data)
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
            items.append(load_json(text))
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

    detections = convert(items, classes, locate)
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
        text = _read_file(
            path,
            f"batch output file not found: {path}\n  hint: download the job's output "
            "(predictions.csv) first, or pass the lines themselves",
        )
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
            try:
                line = bytes(line).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidResponseError(
                    f"{source} line {lineno}: not UTF-8 text (byte {exc.start}); batch output "
                    "is UTF-8 JSON lines"
                ) from None
        if not isinstance(line, str):
            raise InvalidInputError(
                f"{source} line {lineno}: expected a line of text, got {type(line).__name__}"
            )
        if line.strip():
            lines.append((lineno, line))
    return source, lines


def _read_file(path: Path, missing: str) -> str:
    """A predictions file's text, or a typed error naming the file (and the byte offset of
    text that is not UTF-8)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(missing) from exc
    except (OSError, ValueError) as exc:  # a name too long, a folder, an embedded NUL byte
        raise InvalidInputError(
            f"{os.fspath(path)[:200]!r}: cannot read it as a predictions file "
            f"({type(exc).__name__}: {exc}); pass a file path, or the content as bytes"
        ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InvalidResponseError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.end]!r}, "
            f"line {line}); predictions files are UTF-8 JSON"
        ) from None


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
        text = _read_file(path, f"predictions file not found: {path}")
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
