"""Small generated detection data sets: card-like images with known boxes.

Used by the demo, the examples, the docs and the tests, so that everything runs on any machine
with no download. Each image has a textured background and a few "cards": filled rectangles
with a class-specific colour and symbol, so a small detector can learn them in minutes on a CPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation

__all__ = ["CARD_CLASSES", "make_dataset", "render_image"]

#: Default classes: each a distinct colour and symbol.
CARD_CLASSES: tuple[str, ...] = ("hearts", "spades", "diamonds", "clubs")

_COLOURS = [
    (220, 40, 40),
    (30, 30, 30),
    (240, 150, 20),
    (40, 90, 220),
    (40, 170, 70),
    (160, 60, 200),
    (0, 170, 170),
    (120, 80, 40),
]


def render_image(
    width: int,
    height: int,
    classes: Sequence[str],
    rng: np.random.Generator,
    *,
    max_objects: int = 3,
    min_objects: int = 1,
) -> tuple[np.ndarray, list[ObjectAnnotation]]:
    """Render one image (``uint8`` array ``(height, width, 3)``) and its annotations."""
    from PIL import Image, ImageDraw

    bg = rng.integers(150, 235, size=3)
    noise = rng.integers(-12, 12, size=(height, width, 3))
    pixels = np.clip(bg[None, None, :] + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    objects: list[ObjectAnnotation] = []
    placed: list[tuple[float, float, float, float]] = []
    n = int(rng.integers(min_objects, max_objects + 1))
    short = min(width, height)
    for _ in range(n * 10):
        if len(objects) == n:
            break
        bw = float(rng.uniform(0.22, 0.42) * short)
        bh = bw * float(rng.uniform(1.2, 1.5))
        if bh > 0.95 * height:
            bh = 0.95 * height
        x1 = float(rng.uniform(0, width - bw))
        y1 = float(rng.uniform(0, height - bh))
        x2, y2 = x1 + bw, y1 + bh
        if any(not (x2 < a - 2 or x1 > c + 2 or y2 < b - 2 or y1 > d + 2) for a, b, c, d in placed):
            continue
        cls = int(rng.integers(0, len(classes)))
        colour = _COLOURS[cls % len(_COLOURS)]
        x1i, y1i, x2i, y2i = round(x1), round(y1), round(x2), round(y2)
        draw.rectangle((x1i, y1i, x2i - 1, y2i - 1), fill=(250, 250, 245), outline=colour, width=2)
        _symbol(draw, cls, colour, (x1i, y1i, x2i, y2i))
        placed.append((x1i, y1i, x2i, y2i))
        objects.append(
            ObjectAnnotation(
                label=classes[cls],
                box=Box.from_xyxy(x1i, y1i, x2i, y2i, width=width, height=height),
            )
        )
    return np.asarray(image), objects


def _symbol(draw: object, cls: int, colour: tuple[int, int, int], box: tuple[int, ...]) -> None:
    from PIL import ImageDraw

    assert isinstance(draw, ImageDraw.ImageDraw)
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    r = 0.28 * min(x2 - x1, y2 - y1)
    shape = cls % 4
    if shape == 0:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == 1:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    elif shape == 2:
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    else:
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    if cls >= 4:  # more classes than shapes: add a bar to tell them apart
        draw.rectangle((x1 + 3, y2 - 8, x2 - 3, y2 - 4), fill=colour)


def make_dataset(
    root: str | os.PathLike[str],
    n_images: int = 24,
    *,
    classes: Sequence[str] = CARD_CLASSES,
    size: tuple[int, int] = (160, 120),
    max_objects: int = 3,
    min_objects: int = 1,
    seed: int = 0,
    image_format: str = "png",
) -> LabeledDataset:
    """Generate ``n_images`` card images under ``root/images`` and return their data set.

    Args:
        root: Folder to write into (created if needed); the data set's root.
        n_images: How many images.
        classes: Class names (distinct colour and symbol each).
        size: ``(width, height)`` of every image.
        max_objects: Most cards per image.
        min_objects: Fewest cards per image (0 gives some images without boxes).
        seed: Random seed; the same seed gives the same images and boxes.
        image_format: ``png`` or ``jpg``.

    Example:
        >>> from detectkit.synthetic import make_dataset
        >>> ds = make_dataset("cards", n_images=4)  # doctest: +SKIP
    """
    from PIL import Image

    out = Path(root)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    records = []
    ext = "jpg" if image_format.lower() in ("jpg", "jpeg") else "png"
    for i in range(n_images):
        pixels, objects = render_image(
            width, height, classes, rng, max_objects=max_objects, min_objects=min_objects
        )
        path = out / "images" / f"img_{i:04d}.{ext}"
        Image.fromarray(pixels).save(path, quality=95) if ext == "jpg" else Image.fromarray(
            pixels
        ).save(path)
        records.append(
            ImageRecord(
                image=str(path.resolve()),
                width=width,
                height=height,
                format=ext,
                objects=tuple(objects),
            )
        )
    return LabeledDataset(records, list(classes), root=out.resolve())
