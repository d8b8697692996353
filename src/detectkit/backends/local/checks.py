"""Checks of a scoring request before the model sees it: the JSON, the base64, the image
headers and the pixel limits, and the error every refusal becomes.

:mod:`detectkit.backends.local.app` calls :func:`parse_scoring_request` on every body and
:func:`undecodable_image` when the model failed, and re-exports both.
"""

from __future__ import annotations

import binascii
import io
from collections.abc import Sequence

from detectkit.errors import DetectkitError, InvalidInputError
from detectkit.images import image_info
from detectkit.scoring.contract import RequestContractError, check_base64, request_rows, row_name

__all__ = ["ERROR_SHAPE", "ScoringRequestError", "parse_scoring_request", "undecodable_image"]

ERROR_SHAPE = '{"error": {"code": "<PascalCase code>", "message": "<what, and the next step>"}}'


class ScoringRequestError(DetectkitError):
    """A scoring request the server refuses: an HTTP status, a code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"HTTP {status} {code}: {message}")


# ===================================================================== request and answer
def parse_scoring_request(
    body: bytes, *, max_image_pixels: int | None = None, max_request_pixels: int | None = None
) -> list[str]:
    """The base64 images of a scoring request body, each checked to decode to an image.

    Accepts rows as strings or one-element lists (pandas ``split`` orient) and base64 with
    line breaks (``base64.encodebytes``): the contract of :mod:`detectkit.scoring.contract`.
    Only image headers are read, not pixels.

    Raises:
        ScoringRequestError: 400 naming the problem (``request.input_data.data[3]: not valid
            base64``); 413 for an image over ``max_image_pixels`` or a request over
            ``max_request_pixels`` (both read from the headers).
    """
    total = 0
    try:
        rows = request_rows(body)
        images: list[str] = []
        for i, value in enumerate(rows):
            where = row_name(i)
            encoded = check_base64(value, where)
            # the header is near the start: decode a prefix, and all of it only when that fails
            head = binascii.a2b_base64(encoded[:_HEAD_CHARS])
            problem = _image_problem(head)
            if isinstance(problem, str) and len(encoded) > _HEAD_CHARS:
                head = binascii.a2b_base64(encoded)
                problem = _image_problem(head)
            if isinstance(problem, str):
                raise ScoringRequestError(
                    400,
                    "InvalidImage",
                    f"{where}: {problem} (base64 of {len(encoded) // 4 * 3} bytes)",
                )
            width, height = problem
            if max_image_pixels is not None and width * height > max_image_pixels:
                raise ScoringRequestError(
                    413,
                    "ImageTooLarge",
                    f"{where}: {width}x{height} is {width * height:,} pixels, over the limit of "
                    f"{max_image_pixels:,} per image (ServerOptions.max_image_pixels); resize "
                    "it before scoring (the model resizes to a few hundred pixels anyway)",
                )
            total += width * height
            if max_request_pixels is not None and total > max_request_pixels:
                raise ScoringRequestError(
                    413,
                    "RequestTooLarge",
                    f"{where}: the images up to this one hold {total:,} pixels, over the limit "
                    f"of {max_request_pixels:,} per request (ServerOptions.max_request_pixels); "
                    "send fewer images per request",
                )
            images.append(value if isinstance(value, str) else value.decode("ascii"))
    except RequestContractError as exc:
        raise ScoringRequestError(400, exc.code, exc.message) from None
    return images


_HEAD_CHARS = 4096  # base64 characters decoded to read an image header (3 KiB)


def _image_problem(data: bytes) -> str | tuple[int, int]:
    """Why Pillow cannot read an image header from ``data``, or its ``(width, height)``."""
    try:
        info = image_info(data)
    except InvalidInputError as exc:
        return str(exc)
    if info.width < 1 or info.height < 1:
        return "zero-sized image"
    return info.width, info.height


def undecodable_image(images: Sequence[str]) -> str | None:
    """Where and why the first image whose pixels do not decode fails (a truncated JPEG, a
    PNG with corrupt data), or None when they all decode: asked only after the model failed,
    to answer 400 for the image instead of 500 for the model."""
    from PIL import Image

    for i, value in enumerate(images):
        try:
            with Image.open(io.BytesIO(binascii.a2b_base64(value))) as image:
                image.load()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            return f"{row_name(i)}: the image data does not decode ({type(exc).__name__}: {first})"
    return None
