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
import re
import stat
import struct
import warnings
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
    "max_image_pixels",
    "resolve_image_path",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".jpe", ".jfif", ".bmp", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112
#: Why Pillow gives up on a header: not an image (``UnidentifiedImageError`` is an
#: ``OSError``), a decompression bomb, or a header cut short (the others).
_UNREADABLE = (OSError, ValueError, SyntaxError, IndexError, TypeError, struct.error)
#: The environment variable that sets the largest image, in pixels, detectkit opens.
PIXEL_LIMIT_ENV = "DETECTKIT_MAX_IMAGE_PIXELS"
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
        InvalidAnnotationError: The file is not an image Pillow can read, is not a regular
            file (a FIFO is never opened), or has more pixels than :func:`max_image_pixels`.
        InvalidInputError: The bytes are not an image Pillow can read (the message says what
            they start with).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        raw = bytes(source)
        if not raw:
            raise InvalidInputError("expected an encoded image, got empty bytes")
        try:
            return _header(io.BytesIO(raw))
        except _PixelLimit as exc:
            raise InvalidInputError(
                f"image has {exc.width * exc.height:,} pixels, more than the limit of "
                f"{exc.limit:,}; raise it with the environment variable {PIXEL_LIMIT_ENV}"
            ) from None
        except _UNREADABLE as exc:
            raise InvalidInputError(
                f"not an image Pillow can read ({_reason(exc)}; expected JPEG, PNG, BMP, TIFF "
                f"or WebP file bytes, got {raw[:12]!r}...)"
            ) from exc
    p = Path(source)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError as exc:
        raise NotFoundError(f"image file not found: {p}") from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise InvalidAnnotationError(
            "image path cannot be opened",
            file=repr(os.fspath(p)),
            expected="a path to an image file",
            got=type(exc).__name__,
            hint="fix the image path in the annotation file",
        ) from exc
    if not stat.S_ISREG(mode):  # a FIFO would block forever, a device never end
        raise InvalidAnnotationError(
            "image path is not a regular file",
            file=str(p),
            expected="a JPEG, PNG, BMP, TIFF or WebP file",
            got="a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket",
            hint="point the annotation at the image file itself",
        )
    try:
        return _header(p)
    except FileNotFoundError as exc:
        raise NotFoundError(f"image file not found: {p}") from exc
    except _PixelLimit as exc:
        raise InvalidAnnotationError(
            "image has more pixels than detectkit opens",
            file=str(p),
            expected=f"at most {exc.limit:,} pixels",
            got=f"{exc.width * exc.height:,} pixels"
            + (f" ({exc.width}x{exc.height})" if exc.height > 1 else ""),
            hint=f"to open it, raise the limit: set the environment variable "
            f"{PIXEL_LIMIT_ENV}={exc.width * exc.height} (0 for no limit)",
        ) from None
    except _UNREADABLE as exc:
        raise InvalidAnnotationError(
            "file is not a readable image",
            file=str(p),
            expected="a JPEG, PNG, BMP, TIFF or WebP image",
            got=type(exc).__name__,
            hint="re-export the image or remove it from the data set",
        ) from exc


class _PixelLimit(Exception):
    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(width, height, limit)
        self.width, self.height, self.limit = width, height, limit


def max_image_pixels() -> int | None:
    """The largest image, in pixels, detectkit opens (``None``: no limit).

    The one rule for every reader, writer and the scoring server: the environment variable
    ``DETECTKIT_MAX_IMAGE_PIXELS`` when set (``0`` for no limit), else twice Pillow's
    ``PIL.Image.MAX_IMAGE_PIXELS`` (178,956,970 pixels by default: Pillow's own
    decompression-bomb limit). A larger image is an ``unreadable_image`` problem naming the
    file and the limit, read from the header only.

    Raises:
        InvalidInputError: The environment variable is not a whole number.
    """
    raw = os.environ.get(PIXEL_LIMIT_ENV, "").strip().replace("_", "")
    if raw:
        if not raw.isdigit():
            raise InvalidInputError(
                f"{PIXEL_LIMIT_ENV}: expected a whole number of pixels (0 for no limit), "
                f"got {raw[:40]!r}"
            )
        return int(raw[:30]) or None
    from PIL import Image

    pillow = Image.MAX_IMAGE_PIXELS
    return None if pillow is None else 2 * int(pillow)


def _header(source: Path | io.BytesIO) -> ImageInfo:
    from PIL import Image

    limit = max_image_pixels()
    if os.environ.get(PIXEL_LIMIT_ENV, "").strip():
        Image.MAX_IMAGE_PIXELS = None  # opted in: detectkit checks the limit set there itself
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
        with im:
            width, height = im.size
            if limit is not None and width * height > limit:
                raise _PixelLimit(width, height, limit)
            fmt = im.format
            try:
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
            except Exception:  # a broken EXIF block must not hide the image itself
                orientation = 1
    except Image.DecompressionBombError as exc:  # an Exception, not an OSError
        numbers = [int(n) for n in re.findall(r"\d+", str(exc))[:2]]
        pixels = numbers[0] if numbers else 0
        raise _PixelLimit(pixels, 1, limit or 0) from exc
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
    try:
        resolved = full.resolve()
    except (ValueError, OSError) as exc:  # a NUL byte, a lone surrogate, a link loop
        raise InvalidAnnotationError(
            "image path cannot be resolved",
            field="image",
            expected="a file path",
            got=f"{type(exc).__name__} for {ref!r}",
            hint="fix the path in the annotation file",
        ) from None
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise InvalidAnnotationError(
            "image path escapes the data set folder",
            field="image",
            expected=f"a path inside {root_resolved}",
            got=ref,
            hint="move the image into the data set folder or fix the path in the annotation file",
        )
    return resolved
