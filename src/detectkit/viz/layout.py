"""Colours, label layout and the label rendering cache behind :mod:`detectkit.viz`.

:func:`layout_labels` places one label per box so that no two overlap (a greedy placer over a
spatial grid); :func:`text_colour` picks black or white text for a fill. The rest renders
label tiles once per text, size and colour, word by word, and keeps them in an LRU cache with
a byte budget (``LABELS``). :func:`class_colour` gives each class a stable colour from
:data:`PALETTE`.

Pillow is imported inside the functions: ``import detectkit.viz.layout`` loads neither Pillow
nor matplotlib. This module never imports :mod:`detectkit.viz`.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from detectkit.errors import InvalidInputError

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from PIL import ImageFont

__all__ = ["PALETTE", "RGB", "Rect", "class_colour", "layout_labels", "text_colour"]

RGB = tuple[int, int, int]
Rect = tuple[float, float, float, float]

#: Box colours by class id: strong, distinct hues that read on light and dark photos.
PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (255, 225, 25),
    (128, 0, 0),
    (128, 128, 0),
    (0, 0, 128),
    (250, 160, 190),
    (120, 120, 120),
)


# ============================================================================ colours
def class_colour(label: str, class_id: int | None = None) -> RGB:
    """The colour of a class: ``PALETTE[class_id]`` when the id is known, else from the name.

    The name picks a palette entry by a BLAKE2 digest of its UTF-8 bytes (not Python's salted
    ``hash()``), so a label has the same colour in every run, process and machine. Two names
    can share a colour; pass the class list to :func:`draw` to give each class its own.

    Args:
        label: Class name.
        class_id: Index of the class in its class list, when known.
    """
    if class_id is not None and class_id >= 0:
        return PALETTE[class_id % len(PALETTE)]
    digest = hashlib.blake2b(label.encode("utf-8"), digest_size=8).digest()
    return PALETTE[int.from_bytes(digest, "big") % len(PALETTE)]


def text_colour(fill: RGB) -> RGB:
    """Black or white, whichever contrasts more with ``fill`` (WCAG relative luminance)."""

    def channel(c: int) -> float:
        s = c / 255.0
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * channel(fill[0]) + 0.7152 * channel(fill[1]) + 0.0722 * channel(fill[2])
    # contrast with black is (lum + 0.05) / 0.05, with white 1.05 / (lum + 0.05)
    return (0, 0, 0) if (lum + 0.05) ** 2 > 0.0525 else (255, 255, 255)


# ============================================================================ label layout
def _median(values: list[float]) -> float:
    """The median of a non-empty list, as ``np.median`` gives it (a mean of the middle two)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


@lru_cache(maxsize=1)
def _ring_offsets(radius: int = 16) -> tuple[tuple[int, int], ...]:
    """Shifts in (label-step columns, label-height rows) around a label's first spot, nearest
    first (a column step counts as two rows: labels are wider than tall)."""
    offsets = [
        (dx, dy)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if (dx, dy) != (0, 0)
    ]
    offsets.sort(key=lambda o: ((2 * o[0]) ** 2 + o[1] ** 2, abs(o[1]), o[1], o[0]))
    return tuple(offsets)


def _candidates(
    box: Rect, w: float, h: float, width: float, height: float, max_tries: int
) -> Iterable[tuple[float, float]]:
    """Top-left corners to try for a ``w`` x ``h`` label of ``box``, best first."""
    x1, y1, x2, y2 = box
    yield (x1, y1 - h)  # above the box, left-aligned (outside: covers nothing of the object)
    yield (x1, y1)  # inside the top-left corner
    yield (x1, y2)  # below the box
    yield (x2 - w, y1 - h)  # above, right-aligned
    yield (x2 - w, y2)  # below, right-aligned
    yield (x1, y2 - h)  # inside the bottom-left corner
    yield (x2 - w, y1)  # inside the top-right corner
    # then shifted away from the first spot, nearest first: rows of one label height,
    # columns of a third of the label width; positions off the image are skipped
    step_x = max(w / 3.0, h)
    tries = 0
    for dx, dy in _ring_offsets():
        x, y = x1 + dx * step_x, y1 - h + dy * h
        if -w < x < width and -h < y < height:
            yield (x, y)
            tries += 1
            if tries >= max_tries:
                return


def layout_labels(
    boxes: npt.ArrayLike,
    sizes: npt.ArrayLike,
    image_size: tuple[float, float],
    *,
    max_tries: int = 600,
) -> list[Rect | None]:
    """Place one label per box so that no two labels overlap.

    A greedy placer, in the order given (pass the most important boxes first): for each box it
    tries the label above the box, inside its top-left corner, below it, right-aligned, then
    shifted away by label-sized steps, nearest first, and keeps the first position inside the
    image that overlaps no label placed before. A label finds no place when ``max_tries``
    shifted positions are taken: rather than putting it far from its box, it is left out. A
    spatial grid keeps each test to a few neighbours, so 100 labels take milliseconds and
    1,000 well under a second.

    Args:
        boxes: ``(n, 4)`` box corners ``x_min, y_min, x_max, y_max`` in pixels.
        sizes: ``(n, 2)`` label ``width, height`` in pixels.
        image_size: ``(width, height)`` of the image in pixels.
        max_tries: Shifted positions tried per label before leaving it out. The search
            never goes further than 16 label heights up or down and about 5 label widths
            sideways; after three labels in a row are left out (the image is full), the next
            ones get a tenth of the tries.

    Returns:
        One ``(x_min, y_min, x_max, y_max)`` rectangle per box, inside the image, no two
        overlapping (touching edges allowed); ``None`` for a label that found no free place near
        its box (the neighbourhood is full of labels) and is left out.

    Example:
        >>> layout_labels([[10, 40, 60, 90], [12, 42, 62, 92]], [[40, 12], [40, 12]], (200, 100))
        [(10.0, 28.0, 50.0, 40.0), (12.0, 42.0, 52.0, 54.0)]
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if b.shape[0] != s.shape[0]:
        raise InvalidInputError(
            f"layout_labels: expected one label size per box, got {b.shape[0]} boxes "
            f"and {s.shape[0]} sizes"
        )
    width, height = float(image_size[0]), float(image_size[1])
    if b.shape[0] == 0:
        return []
    sizes_px = s.tolist()
    # a uniform grid of the placed labels, so that an overlap test looks at a few cells only:
    # cells of about a label, of a few labels when there are few (fewer cells to visit)
    coarse = 2.0 if len(sizes_px) <= 64 else 1.0
    cw = max(coarse * _median([w for w, _ in sizes_px]), 1.0)
    ch = max(2.0 * coarse * _median([h for _, h in sizes_px]), 1.0)
    cells: dict[tuple[int, int], list[Rect]] = {}
    placed: list[Rect | None] = []
    misses = 0  # labels left out in a row: the image is full, search less
    for (x1, y1, x2, y2), (w, h) in zip(b.tolist(), sizes_px, strict=True):
        spot: Rect | None = None
        tries = max_tries if misses < 3 else max_tries // 10
        # keep the label inside the image (a label wider than the image starts at 0)
        right, bottom = max(width - w, 0.0), max(height - h, 0.0)
        for x, y in _candidates((x1, y1, x2, y2), w, h, width, height, tries):
            x = min(max(x, 0.0), right)
            y = min(max(y, 0.0), bottom)
            ex, ey = x + w, y + h
            columns = range(int(x // cw), int(ex // cw) + 1)
            rows = range(int(y // ch), int(ey // ch) + 1)
            taken = False
            for i in columns:  # (inlined: this loop is most of the time of a drawing)
                for j in rows:
                    for o in cells.get((i, j), ()):
                        if x < o[2] and o[0] < ex and y < o[3] and o[1] < ey:
                            taken = True
                            break
                    if taken:
                        break
                if taken:
                    break
            if not taken:
                spot = (x, y, ex, ey)
                for i in columns:
                    for j in rows:
                        cells.setdefault((i, j), []).append(spot)
                break
        misses = misses + 1 if spot is None else 0
        placed.append(spot)
    return placed


# ============================================================================ label rendering
@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@lru_cache(maxsize=32)
def font_metrics(size: int) -> tuple[int, int]:
    """Ascent and descent of the label font."""
    font = _font(size)
    if hasattr(font, "getmetrics"):
        ascent, descent = font.getmetrics()
        return int(ascent), int(descent)
    return size, 0  # Pillow's bitmap font, where FreeType is missing


def label_pad(size: int) -> int:
    """Space around the text of a label."""
    return max(1, size // 6)


@lru_cache(maxsize=8192)
def _advance(text: str, size: int) -> int:
    """Width of ``text`` in pixels, up to where the next word would start."""
    return math.ceil(_font(size).getlength(text))


@lru_cache(maxsize=8192)
def label_plan(text: str, size: int) -> tuple[int, tuple[tuple[str, int], ...]]:
    """Width of the label of ``text``, and each word to draw with its offset from the label's
    left edge (blank words take their room but draw nothing)."""
    pad = label_pad(size)
    space = _advance(" ", size) + max(1, size // 10)
    x = pad
    words: list[tuple[str, int]] = []
    for word in text.split(" "):
        if word.strip():
            words.append((word, x))
        x += _advance(word, size) + space
    return x - space + pad, tuple(words)


@lru_cache(maxsize=1024)
def _word_tile(text: str, size: int, fill: RGB) -> PILImage.Image:
    """One word of label text rendered once on the label's fill colour.

    Labels repeat the same class names and score strings: FreeType renders and blends each
    word once per size and colour, and labels are put together from these tiles.
    """
    from PIL import Image, ImageDraw

    font = _font(size)
    ascent, descent = font_metrics(size)
    tile_w = max(_advance(text, size), math.ceil(font.getbbox(text)[2]))
    tile = Image.new("RGB", (tile_w, ascent + descent), fill)
    ImageDraw.Draw(tile).text((0, 0), text, font=font, fill=text_colour(fill))
    return tile


def _label_tile(text: str, size: int, fill: RGB) -> PILImage.Image:
    """The label of ``text``: its fill with the words at their places."""
    from PIL import Image

    width, words = label_plan(text, size)
    ascent, descent = font_metrics(size)
    pad = label_pad(size)
    tile = Image.new("RGB", (width, ascent + descent + 2 * pad), fill)
    for word, dx in words:
        tile.paste(_word_tile(word, size, fill), (dx, pad))
    return tile


class LabelCache:
    """Rendered labels by text, font size and fill, the least recently used dropped first
    beyond ``budget`` bytes: labels repeat image after image, and a cached one is drawn with
    a single paste."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.tiles: OrderedDict[tuple[str, int, RGB], PILImage.Image] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, text: str, size: int, fill: RGB) -> PILImage.Image:
        key = (text, size, fill)
        with self.lock:
            tile = self.tiles.get(key)
            if tile is not None:
                self.tiles.move_to_end(key)
                return tile
        tile = _label_tile(text, size, fill)
        with self.lock:
            if key not in self.tiles:
                self.tiles[key] = tile
                self.used += 4 * tile.width * tile.height  # Pillow keeps 4 bytes a pixel
                while self.used > self.budget and len(self.tiles) > 1:
                    old = self.tiles.popitem(last=False)[1]
                    self.used -= 4 * old.width * old.height
        return tile


LABELS = LabelCache(budget=32 << 20)
