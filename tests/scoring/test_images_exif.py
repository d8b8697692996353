"""One EXIF rule: a file and its bytes give the same displayed size everywhere."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from detectkit.errors import InvalidInputError
from detectkit.images import image_info, image_size
from detectkit.scoring import image_sizes


def _rotated_jpeg(width: int, height: int, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 40, 10)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("orientation", "expected"), [(1, (40, 30)), (3, (40, 30)), (6, (30, 40)), (8, (30, 40))]
)
def test_path_and_bytes_give_the_same_displayed_size(
    tmp_path: Path, orientation: int, expected: tuple[int, int]
) -> None:
    raw = _rotated_jpeg(40, 30, orientation)
    path = tmp_path / "photo.jpg"
    path.write_bytes(raw)
    from_bytes, from_path = image_info(raw), image_info(path)
    assert from_bytes == from_path
    assert (from_path.width, from_path.height) == expected
    assert from_path.orientation == orientation and from_path.format == "jpeg"
    assert image_size(path) == expected
    assert image_sizes([path, raw, bytearray(raw)]) == [expected] * 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "got empty bytes"),
        (b"hello, not an image", r"not an image Pillow can read \(an unknown format"),
        (_rotated_jpeg(40, 30, 1)[:40], "not an image Pillow can read"),
    ],
)
def test_bytes_that_are_not_an_image_are_named(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        image_info(raw)
    with pytest.raises(InvalidInputError, match=r"images\[0\]: "):
        image_sizes([raw])
