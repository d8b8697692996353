"""The request side of the Azure ML AutoML scoring contract: images in, request bodies out.

**Request** (MLflow AutoML models)::

    {"input_data": {"columns": ["image"], "data": ["<base64 image file>", ...]}}

:func:`build_request` and :func:`encode_request` make the body a client sends,
:func:`decode_request` reads it back on the server side and :func:`image_sizes` gives the
displayed size of each image, to turn normalized response boxes into pixels. Responses are
read in :mod:`detectkit.scoring`, which re-exports everything here.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.images import ImageInput, image_info
from detectkit.scoring.contract import IMAGE_COLUMN, decode_base64, request_rows, row_name

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "ImageInput",
    "build_request",
    "decode_request",
    "encode_request",
    "image_list",
    "image_sizes",
]

Size = tuple[int, int]


def build_request(images: ImageInput | Iterable[ImageInput]) -> dict[str, Any]:
    """The JSON body (as a dict) that asks an AutoML endpoint to score ``images``.

    The body is ``{"input_data": {"columns": ["image"], "data": [<base64>, ...]}}``. Files
    and bytes are sent as they are (the server decodes them); Pillow images and numpy arrays
    are encoded as PNG (lossless).

    Args:
        images: One image or a list: file paths, encoded image bytes, Pillow images, or
            ``uint8`` arrays ``(height, width, 3)`` in RGB order (not OpenCV's BGR).

    Returns:
        The request body as a dict, one base64 string per image, in order.

    Raises:
        NotFoundError: An image file does not exist.
        InvalidInputError: An input is not an image, or the list is empty.

    Examples:
        >>> import numpy as np
        >>> body = build_request(np.zeros((4, 6, 3), np.uint8))
        >>> body["input_data"]["columns"], len(body["input_data"]["data"])
        (['image'], 1)
    """
    items = image_list(images)
    data = [
        base64.b64encode(_encoded_bytes(item, f"images[{i}]")).decode("ascii")
        for i, item in enumerate(items)
    ]
    return {"input_data": {"columns": [IMAGE_COLUMN], "data": data}}


def encode_request(images: ImageInput | Iterable[ImageInput]) -> bytes:
    """:func:`build_request` serialized: the bytes to POST (``Content-Type: application/json``)."""
    return json.dumps(build_request(images), separators=(",", ":")).encode("utf-8")


def decode_request(body: bytes | str | Mapping[str, Any]) -> list[bytes]:
    """The encoded image files of a scoring request (the server side of :func:`build_request`).

    Accepts base64 with or without line breaks (``base64.encodebytes`` or ``b64encode``), and
    rows as strings or one-element lists (pandas ``split`` orient).

    Raises:
        InvalidInputError: The body does not follow the request contract.
    """
    return [decode_base64(row, row_name(i)) for i, row in enumerate(request_rows(body))]


def image_sizes(images: ImageInput | Iterable[ImageInput]) -> list[Size]:
    """Displayed ``(width, height)`` of each image, to turn normalized boxes into pixels.

    Files and encoded bytes honour EXIF orientation (see :func:`detectkit.images.image_size`);
    only headers are read. Pillow images and arrays give their pixel size.
    """
    sizes = []
    for i, item in enumerate(image_list(images)):
        if isinstance(item, str | os.PathLike):
            info = image_info(item)
            sizes.append((info.width, info.height))
        elif isinstance(item, bytes | bytearray | memoryview):
            sizes.append(_encoded_size(bytes(item), f"images[{i}]"))
        elif isinstance(item, np.ndarray):
            _check_array(item, f"images[{i}]")
            sizes.append((int(item.shape[1]), int(item.shape[0])))
        elif _is_pil(item):
            sizes.append((int(item.size[0]), int(item.size[1])))
        else:
            raise _not_an_image(item, f"images[{i}]")
    return sizes


def _is_pil(obj: object) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "save")


def _is_single(images: object) -> bool:
    if isinstance(images, str | os.PathLike | bytes | bytearray | memoryview):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim in (2, 3)
    return _is_pil(images)


def image_list(images: ImageInput | Iterable[ImageInput]) -> list[Any]:
    """``images`` as a list: one image (a path, bytes, a Pillow image, an array
    ``(height, width[, 3])``) becomes a list of one, a batch array ``(n, height, width, 3)``
    a list of ``n``, any other iterable a list of its items.

    Raises:
        InvalidInputError: An array of another shape, a non-iterable, or no image at all.
    """
    if _is_single(images):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        raise InvalidInputError(
            f"images: expected an array (height, width, 3) or a batch (n, height, width, 3), "
            f"got shape {images.shape}"
        )
    try:
        items = list(cast("Iterable[Any]", images))
    except TypeError:
        raise _not_an_image(images, "images") from None
    if not items:
        raise InvalidInputError("images: expected at least one image, got an empty list")
    return items


def _not_an_image(item: object, where: str) -> InvalidInputError:
    return InvalidInputError(
        f"{where}: expected a file path, encoded image bytes, a Pillow image or a uint8 "
        f"array, got {type(item).__name__}"
    )


def _encoded_bytes(item: Any, where: str) -> bytes:
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{where}: image file not found: {path}") from exc
        except IsADirectoryError as exc:
            raise InvalidInputError(
                f"{where}: expected an image file, got a folder: {path}"
            ) from exc
        _encoded_size(raw, f"{where} ({path})")
        return raw
    if isinstance(item, bytes | bytearray | memoryview):
        raw = bytes(item)
        _encoded_size(raw, where)
        return raw
    if isinstance(item, np.ndarray):
        from PIL import Image

        _check_array(item, where)
        return _png(Image.fromarray(np.ascontiguousarray(item)))
    if _is_pil(item):
        return _png(item)
    raise _not_an_image(item, where)


def _png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _check_array(array: npt.NDArray[Any], where: str) -> None:
    shape = array.shape
    if not (array.ndim == 2 or (array.ndim == 3 and shape[2] in (1, 3, 4))):
        raise InvalidInputError(
            f"{where}: expected an image array (height, width, 3), got shape {shape}"
        )
    if array.dtype != np.uint8:
        raise InvalidInputError(
            f"{where}: expected a uint8 image array, got {array.dtype}; convert it with "
            "(array * 255).clip(0, 255).astype(np.uint8) if its values are in [0, 1]"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InvalidInputError(f"{where}: expected a non-empty image, got shape {shape}")


def _encoded_size(raw: bytes, where: str) -> Size:
    """Displayed size of encoded image bytes (header only); raise if they are not an image."""
    try:
        info = image_info(raw)
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"{where}: {exc}; pass raw pixels as a uint8 array instead"
        ) from exc
    return info.width, info.height
