"""The Azure ML AutoML object-detection scoring contract, written once.

**Request**::

    {"input_data": {"columns": ["image"], "data": ["<base64 image file>", ...]}}

Rows may be strings or one-element lists (pandas ``split`` orient); base64 may hold line
breaks (``base64.encodebytes``).

**Response**: a JSON list, one element per image, in request order::

    [{"boxes": [{"box": {"topX": 0.224, "topY": 0.285, "bottomX": 0.399, "bottomY": 0.620},
                 "label": "milk_bottle", "score": 0.937}, ...]}, ...]

Coordinates are normalized (pixel / image width or height); a reader clips values within
:data:`RESPONSE_CLIP_TOLERANCE` outside ``[0, 1]`` and refuses values beyond it.

This module needs neither numpy nor Pillow, so the request builder and parsers
(:mod:`detectkit.scoring.request`, :mod:`detectkit.scoring.response`), the local scoring
server and the saved MLflow model all import it: the wire keys, the request walker, the
base64 check and the box writer exist only here.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from detectkit.errors import InvalidInputError

try:  # a dependency of detectkit; a saved model's environment may lack it (see load_json)
    import msgspec
except ImportError:  # pragma: no cover - exercised where msgspec is not installed
    _decode: Callable[[Any], Any] | None = None
    _FAST_REFUSED: tuple[type[BaseException], ...] = ()
else:
    _decode = msgspec.json.Decoder().decode
    _FAST_REFUSED = (msgspec.DecodeError, RecursionError, UnicodeEncodeError)

__all__ = [
    "BOX_KEYS",
    "COORDINATE_KEYS",
    "IMAGE_COLUMN",
    "NO_INPUT_DATA",
    "REQUEST_EXAMPLE",
    "RESPONSE_CLIP_TOLERANCE",
    "RESPONSE_CONTRACT",
    "RequestContractError",
    "box_entry",
    "check_base64",
    "decode_base64",
    "describe",
    "image_bytes",
    "load_json",
    "normalize_output",
    "request_rows",
    "row_name",
]

#: The keys of a response box, in ``xyxy`` order.
COORDINATE_KEYS = ("topX", "topY", "bottomX", "bottomY")

#: The keys of one detection in a response, in the order they are written.
BOX_KEYS = ("box", "label", "score")

#: The request's one column.
IMAGE_COLUMN = "image"

#: How far outside ``[0, 1]`` a normalized response coordinate may be and still be clipped
#: (models emit ``-0.0001``); beyond it the response is refused as pixel coordinates.
RESPONSE_CLIP_TOLERANCE = 0.01

#: A request body, as error messages show it.
REQUEST_EXAMPLE = '{"input_data": {"columns": ["image"], "data": ["<base64 image>", ...]}}'

#: A response body, as error messages show it.
RESPONSE_CONTRACT = (
    '[{"boxes": [{"box": {"topX", "topY", "bottomX", "bottomY"}, "label", "score"}]}]'
)

#: Azure's answer when the body has no ``input_data`` (inference server wording).
NO_INPUT_DATA = "A value is not provided for the 'input_data' parameter."

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
#: How raw image file bytes start (PNG, GIF, JPEG, BMP, TIFF), told apart from base64 text.
_IMAGE_MAGIC = (b"\x89PNG", b"GIF8", b"\xff\xd8", b"BM", b"II", b"MM")


class RequestContractError(InvalidInputError):
    """A scoring request that breaks the contract.

    Attributes:
        code: What kind of problem: ``InvalidJson``, ``MissingInputData``,
            ``InvalidInputData`` or ``InvalidBase64`` (the local server's error codes).
        message: The message, naming the field (``request.input_data.data[3]: ...``).
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


def describe(value: Any) -> str:
    """A value as the JSON author would recognise it: ``"abc"``, ``null``, ``a list of 3 items``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, dict):
        return f"an object with keys {sorted(map(str, value))[:8]}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, int | float):
        return repr(value)
    return type(value).__name__


def row_name(index: int) -> str:
    """How messages name request row ``index``: ``request.input_data.data[3]``."""
    return f"request.input_data.data[{index}]"


def load_json(text: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON: what ``json.loads`` returns, in about half its time.

    The fast decoder (msgspec) reads every well-formed document the way the standard library
    does: the same dicts, lists, strings, ints of any size and shortest round-trip floats,
    ``-0.0`` included. What it refuses is handed to ``json.loads``, so every input gives the
    result or the error it gave before: ``NaN`` and ``Infinity`` literals and ``1e400``
    (``inf``) still decode, for the parsers to refuse as not finite; a lone surrogate
    (``"\\ud800"``) still decodes, for the readers that write text back to refuse; a UTF-8 byte
    order mark and UTF-16 in bytes still decode. What the standard library refuses untyped
    becomes a :class:`json.JSONDecodeError` too: JSON nested deeper than the recursion limit,
    an integer over Python's digit limit, text that is not UTF-8. So every caller words one
    error, with its position.

    Where msgspec is not installed (the environment of a saved MLflow model, which carries
    this module's source), the standard library decodes everything: same results, slower.
    """
    if _decode is not None:
        try:
            return _decode(text)
        except _FAST_REFUSED:
            pass
    return _stdlib_loads(text)


def _stdlib_loads(text: bytes | bytearray | memoryview | str) -> Any:
    """``json.loads``, with its untyped refusals turned into :class:`json.JSONDecodeError`."""
    doc = text if isinstance(text, str) else bytes(text)
    try:
        return json.loads(doc)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        reason = "nested too deeply (more levels than Python's recursion limit)"
        pos = 0
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start}: {bytes(exc.object[exc.start : exc.end])!r})"
        pos = exc.start
    except ValueError as exc:  # the int-conversion digit limit
        reason = f"a number too long to read ({' '.join(str(exc).split()[:8])} ...)"
        pos = 0
    if isinstance(doc, bytes) and pos:  # a line and column, counted in bytes
        line = doc.count(b"\n", 0, pos) + 1
        err = json.JSONDecodeError(reason, "", 0)
        err.pos, err.lineno, err.colno = pos, line, pos - doc.rfind(b"\n", 0, pos)
        raise err from None
    raise json.JSONDecodeError(reason, "", 0) from None


def request_rows(body: bytes | str | Mapping[str, Any]) -> list[str | bytes]:
    """The rows of a request body, in order, each a (still encoded) base64 value.

    Raises:
        RequestContractError: The body is not JSON, has no ``input_data``, the wrong columns,
            no rows, or a row that is not a string.
    """
    if isinstance(body, Mapping):
        request: Any = body
    else:
        try:
            request = load_json(body)
        except json.JSONDecodeError as exc:
            raise RequestContractError(
                "InvalidJson", f"request: not valid JSON ({exc}); send {REQUEST_EXAMPLE}"
            ) from None
    if not isinstance(request, Mapping) or "input_data" not in request:
        got = f"keys {sorted(request)}" if isinstance(request, Mapping) else describe(request)
        raise RequestContractError(
            "MissingInputData",
            f'request: missing key "input_data". {NO_INPUT_DATA} Expected {REQUEST_EXAMPLE}, '
            f'got {got}; MLflow "dataframe_split" and "inputs" bodies are not accepted by '
            "AutoML endpoints",
        )
    table = request["input_data"]
    if not isinstance(table, Mapping):
        raise RequestContractError(
            "InvalidInputData", f"request.input_data: expected an object, got {describe(table)}"
        )
    columns = table.get("columns", [IMAGE_COLUMN])
    if columns != [IMAGE_COLUMN]:
        raise RequestContractError(
            "InvalidInputData",
            f'request.input_data.columns: expected ["image"], got {describe(columns)}',
        )
    data = table.get("data")
    if not isinstance(data, list):
        raise RequestContractError(
            "InvalidInputData",
            f"request.input_data.data: expected a list of base64 images, got {describe(data)}",
        )
    if not data:
        raise RequestContractError(
            "InvalidInputData", "request.input_data.data: expected at least one image, got []"
        )
    rows: list[str | bytes] = []
    for i, row in enumerate(data):
        value = row[0] if isinstance(row, list) and len(row) == 1 else row
        if not isinstance(value, str | bytes):
            raise RequestContractError(
                "InvalidInputData",
                f"{row_name(i)}: expected a base64 string, got {describe(value)}",
            )
        rows.append(value)
    return rows


def check_base64(value: str | bytes, where: str) -> bytes:
    """``value`` as ASCII bytes without line breaks, checked to be strict base64 (the
    alphabet, padding only at the end, a length that is a multiple of 4) without decoding it
    (checking costs a tenth of decoding).

    Raises:
        RequestContractError: ``InvalidBase64``, naming ``where`` and the first bad character.
    """
    if isinstance(value, str):
        try:
            encoded = value.encode("ascii")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            raise RequestContractError(
                "InvalidBase64", f"{where}: not valid base64 (character {bad!r} at {exc.start})"
            ) from None
    else:
        encoded = bytes(value)
    if encoded.translate(None, _B64_ALPHABET):  # something besides base64 digits
        encoded = encoded.translate(None, b" \t\r\n")  # base64.encodebytes breaks lines
        stray = encoded.translate(None, _B64_ALPHABET)
        if stray:
            raise RequestContractError(
                "InvalidBase64",
                f"{where}: not valid base64 (character {chr(stray[0])!r} at "
                f"{encoded.index(stray[:1])})",
            )
    padding = encoded.find(b"=")
    if padding != -1 and (padding < len(encoded) - 2 or encoded[padding:] not in (b"=", b"==")):
        raise RequestContractError(
            "InvalidBase64", f"{where}: not valid base64 ('=' padding at {padding})"
        )
    if len(encoded) % 4:
        raise RequestContractError(
            "InvalidBase64",
            f"{where}: not valid base64 ({len(encoded)} characters: expected a multiple of 4)",
        )
    return encoded


def decode_base64(value: str | bytes, where: str) -> bytes:
    """The bytes of a base64 row, checked by :func:`check_base64` first."""
    return binascii.a2b_base64(check_base64(value, where))


def image_bytes(value: Any, where: str) -> bytes:
    """An encoded image from a request value: base64 (with or without line breaks), or raw
    image file bytes (what MLflow's scoring server gives for a ``binary`` column).

    Raises:
        RequestContractError: Neither base64 nor image bytes.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if raw.startswith(_IMAGE_MAGIC):
            return raw
        return decode_base64(raw, where)
    if not isinstance(value, str):
        raise RequestContractError(
            "InvalidInputData",
            f"{where}: expected a base64 string or image bytes, got {type(value).__name__}",
        )
    return decode_base64(value.strip(), where)


def box_entry(xyxy: Iterable[float], label: str, score: float) -> dict[str, Any]:
    """One detection as the response writes it: ``{"box": {"topX", ...}, "label", "score"}``,
    with normalized ``xyxy`` coordinates."""
    return {"box": dict(zip(COORDINATE_KEYS, xyxy, strict=True)), "label": label, "score": score}


def normalize_output(output: Any, expected: int) -> list[Any]:
    """One JSON-ready answer per image from what a pyfunc model returned.

    Accepts a list, a numpy array or a pandas DataFrame (records); a ``boxes`` value that is a
    JSON string (the AutoML signature declares a string column) is decoded.

    Raises:
        ValueError: The model returned something else, or not one answer per image.
    """
    if hasattr(output, "to_dict") and hasattr(output, "columns"):
        output = output.to_dict(orient="records")
    elif hasattr(output, "tolist"):
        output = output.tolist()
    if not isinstance(output, list | tuple):
        raise ValueError(
            f"the model returned {type(output).__name__}; expected a list or a DataFrame "
            'with one {"boxes": [...]} per image'
        )
    if len(output) != expected:
        raise ValueError(f"the model returned {len(output)} answers for {expected} images")
    answers = list(output)
    for i, item in enumerate(answers):
        if isinstance(item, dict) and isinstance(item.get("boxes"), str):
            answers[i] = {**item, "boxes": load_json(item["boxes"])}
    return answers
