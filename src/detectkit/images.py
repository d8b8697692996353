"""Image files: the one EXIF-aware size function every reader uses, loading, and safe paths.

Phone photos often store pixels unrotated and an EXIF ``Orientation`` tag telling viewers to
rotate them. Labeling tools draw boxes on the *displayed* (rotated) image, so the size that
matters is the displayed one: for orientations 5 to 8 (the 90-degree ones) width and height
are swapped relative to the stored pixel array. :func:`image_size` returns the displayed size
and :func:`load_image` returns displayed pixels; every reader, writer and validator in detectkit
goes through them.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from detectkit.errors import InvalidAnnotationError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import numpy.typing as npt
    from PIL import Image as PILImage

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "ImageInput",
    "image_info",
    "image_size",
    "is_remote",
    "load_image",
    "resolve_image_path",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".jpe", ".jfif", ".bmp", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112
#: Why Pillow gives up on a header: not an image (``UnidentifiedImageError`` is an
#: ``OSError``), a decompression bomb, or a header cut short (the others).
_UNREADABLE = (OSError, ValueError, SyntaxError, IndexError, TypeError, struct.error)
_REMOTE_PREFIXES = ("azureml://", "https://", "http://", "amldatastore://", "wasbs://", "abfss://")


#: One image given to detectkit: a file path, encoded image bytes, a Pillow image or a
#: ``uint8`` array ``(height, width[, 3 | 4])`` in RGB order.
ImageInput: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | PILImage.Image | npt.NDArray[Any]"
)


class ImageInfo(NamedTuple):
    """Displayed size, format and EXIF orientation of an image file."""

    width: int
    height: int
    format: str | None
    orientation: int


def is_remote(ref: str) -> bool:
    """True when ``ref`` is a URL (``azureml://``, ``https://`` ...) rather than a local path."""
    return ref.lower().startswith(_REMOTE_PREFIXES)


def image_info(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> ImageInfo:
    """Displayed size, format and EXIF orientation of an image file or its bytes, reading
    only the header: the one EXIF rule every reader, the request builder and the local
    scoring server share.

    Raises:
        NotFoundError: The file does not exist.
        InvalidAnnotationError: The file is not an image Pillow can read.
        InvalidInputError: The bytes are not an image Pillow can read (the message says what
            they start with).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        raw = bytes(source)
        if not raw:
            raise InvalidInputError("expected an encoded image, got empty bytes")
        try:
            return _header(io.BytesIO(raw))
        except _UNREADABLE as exc:
            raise InvalidInputError(
                f"not an image Pillow can read ({_reason(exc)}; expected JPEG, PNG, BMP, TIFF "
                f"or WebP file bytes, got {raw[:12]!r}...)"
            ) from exc
    p = Path(source)
    try:
        return _header(p)
    except FileNotFoundError as exc:
        raise NotFoundError(f"image file not found: {p}") from exc
    except _UNREADABLE as exc:
        raise InvalidAnnotationError(
            "file is not a readable image",
            file=str(p),
            expected="a JPEG, PNG, BMP, TIFF or WebP image",
            got=type(exc).__name__,
            hint="re-export the image or remove it from the data set",
        ) from exc


def _header(source: Path | io.BytesIO) -> ImageInfo:
    from PIL import Image

    try:
        with Image.open(source) as im:
            width, height = im.size
            fmt = im.format
            try:
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
            except Exception:  # a broken EXIF block must not hide the image itself
                orientation = 1
    except Image.DecompressionBombError as exc:  # an Exception, not an OSError
        raise ValueError(f"DecompressionBombError: {exc}") from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(width, height, fmt.lower() if fmt else None, orientation)


def _reason(exc: BaseException) -> str:
    if type(exc).__name__ == "UnidentifiedImageError":  # its text names a BytesIO object
        return "an unknown format"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Displayed ``(width, height)`` of an image, honouring EXIF orientation.

    Orientations 5 to 8 swap width and height. Only the header is read.
    """
    info = image_info(path)
    return info.width, info.height


def load_image(source: str | os.PathLike[str] | bytes) -> PILImage.Image:
    """Load an image as displayed (EXIF orientation applied), in RGB."""
    from PIL import Image, ImageOps

    im: PILImage.Image
    if isinstance(source, bytes | bytearray):
        im = Image.open(io.BytesIO(source))
    else:
        try:
            im = Image.open(Path(source))
        except FileNotFoundError as exc:
            raise NotFoundError(f"image file not found: {source}") from exc
    im = ImageOps.exif_transpose(im) or im
    return im.convert("RGB") if im.mode != "RGB" else im


def resolve_image_path(root: Path, ref: str) -> Path:
    """Resolve an image reference from an annotation file inside the data set folder ``root``.

    Relative references are taken relative to ``root``; absolute ones are accepted only when
    they lie inside it. A reference that escapes the folder (``../``, an absolute path elsewhere,
    a symlink pointing out) is refused, so an annotation file cannot make detectkit read or
    upload arbitrary files.

    Raises:
        InvalidAnnotationError: The reference escapes ``root``.
    """
    root_resolved = root.resolve()
    candidate = Path(ref)
    full = candidate if candidate.is_absolute() else root_resolved / candidate
    resolved = full.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise InvalidAnnotationError(
            "image path escapes the data set folder",
            field="image",
            expected=f"a path inside {root_resolved}",
            got=ref,
            hint="move the image into the data set folder or fix the path in the annotation file",
        )
    return resolved
