"""What a data set is made of: :class:`ObjectAnnotation` (one labeled box) and
:class:`ImageRecord` (one image with its objects), and what it reports about itself
(:class:`DatasetSummary`, :class:`BoxStats`, the check of one record's image file).

All are re-exported by :mod:`detectkit.dataset`, where they are documented.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from detectkit.boxes import Box
from detectkit.errors import InvalidAnnotationError, NotFoundError
from detectkit.images import image_info
from detectkit.validation import (
    ProblemCollector,
    ProblemKind,
)


class ObjectAnnotation(BaseModel):
    """One labeled object in an image.

    Attributes:
        label: Class name.
        box: Normalized box.
        is_crowd: A crowd region (COCO ``iscrowd``, Azure ML ``isCrowd``, VOC ``difficult`` by
            default): kept in the data, ignored by the COCO evaluation protocol.
        score: The model's confidence, for pre-labels made from predictions; usually ``None``
            for human labels.
        source: Who made the box: ``"human"`` (a person drew or accepted it) or ``"model"``
            (a draft, a pre-label not reviewed yet). Set explicitly, never guessed from
            ``score``, except by readers of formats that have no such field (each reader
            documents its rule).
        model_version: The model that made a draft (``"<model name>:<version>"``, an endpoint
            or run name); ``None`` for human labels.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    box: Box
    is_crowd: bool = False
    score: float | None = None
    source: Literal["human", "model"] = "human"
    model_version: str | None = None

    @property
    def is_draft(self) -> bool:
        """A model's pre-label not reviewed by a person (``source == "model"``)."""
        return self.source == "model"

    def __setstate__(self, state: dict[Any, Any]) -> None:
        # a pickle written before ``source``/``model_version`` existed lacks them
        values = state.get("__dict__")
        if isinstance(values, dict) and "source" not in values:
            state = {
                **state,
                "__dict__": {**values, "source": "human", "model_version": None},
                "__pydantic_fields_set__": set(state.get("__pydantic_fields_set__") or ()),
            }
        super().__setstate__(state)


class ImageRecord(BaseModel):
    """One image and its objects.

    Attributes:
        image: Local path (absolute once read from a file) or URL (``azureml://``, ``https://``).
        width: Displayed width in pixels (EXIF orientation applied), when known.
        height: Displayed height in pixels, when known.
        format: Image format (``jpg``, ``png`` ...), when known.
        objects: The labeled objects.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    format: str | None = None
    objects: tuple[ObjectAnnotation, ...] = ()

    @property
    def name(self) -> str:
        """File name of the image (last path component)."""
        return self.image.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` when both are known."""
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)

    def with_size(self) -> ImageRecord:
        """This record with width, height and format read from the image file when missing."""
        if self.size is not None and self.format is not None:
            return self
        info = image_info(self.image)
        return self.model_copy(
            update={
                "width": self.width or info.width,
                "height": self.height or info.height,
                "format": self.format or info.format,
            }
        )


class BoxStats(BaseModel):
    """Distribution of one box measure over a data set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int
    min: float
    max: float
    mean: float
    median: float
    std: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray[Any, Any]) -> BoxStats:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return cls(count=0, min=0.0, max=0.0, mean=0.0, median=0.0, std=0.0)
        return cls(
            count=int(arr.size),
            min=float(arr.min()),
            max=float(arr.max()),
            mean=float(arr.mean()),
            median=float(np.median(arr)),
            std=float(arr.std()),
        )


class DatasetSummary(BaseModel):
    """Counts and box statistics of a data set (``LabeledDataset.summary()``).

    Widths, heights and areas are normalized (fractions of the image); ``box_pixel_area`` and
    ``aspect_ratio`` (width / height in pixels) cover the boxes whose image size is known.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    images: int
    boxes: int
    classes: tuple[str, ...]
    boxes_per_class: dict[str, int]
    images_per_class: dict[str, int]
    images_without_boxes: int
    crowd_boxes: int
    box_width: BoxStats
    box_height: BoxStats
    box_area: BoxStats
    box_pixel_area: BoxStats
    aspect_ratio: BoxStats

    def to_text(self) -> str:
        """A readable table of the summary."""
        lines = [
            f"images: {self.images}   boxes: {self.boxes}   classes: {len(self.classes)}   "
            f"images without boxes: {self.images_without_boxes}   crowd boxes: {self.crowd_boxes}",
            "",
            f"{'class':<24}{'boxes':>8}{'images':>8}",
        ]
        for name in self.classes:
            lines.append(
                f"{name:<24}{self.boxes_per_class.get(name, 0):>8}"
                f"{self.images_per_class.get(name, 0):>8}"
            )
        if self.boxes:
            lines += [
                "",
                "box size (fraction of image)   min     median  max",
                f"  width                        {self.box_width.min:<8.3f}"
                f"{self.box_width.median:<8.3f}{self.box_width.max:.3f}",
                f"  height                       {self.box_height.min:<8.3f}"
                f"{self.box_height.median:<8.3f}{self.box_height.max:.3f}",
            ]
            if self.aspect_ratio.count:
                lines.append(
                    f"  aspect (w/h, pixels)         {self.aspect_ratio.min:<8.3f}"
                    f"{self.aspect_ratio.median:<8.3f}{self.aspect_ratio.max:.3f}"
                )
        return "\n".join(lines)


def check_image_file(record: ImageRecord, col: ProblemCollector, *, location: str) -> None:
    """Report a missing or unreadable image, or a stored size that disagrees with the file."""
    try:
        info = image_info(record.image)
    except NotFoundError:
        col.add(
            ProblemKind.MISSING_IMAGE,
            "image file does not exist",
            file=record.image,
            location=location,
            hint="fix the path, pass images_root=, or remove the record",
        )
        return
    except InvalidAnnotationError as exc:
        col.add(
            ProblemKind.UNREADABLE_IMAGE,
            "image file cannot be read",
            file=record.image,
            location=location,
            got=exc.got,
            hint="re-export the image or remove the record",
        )
        return
    if record.size is None or record.size == (info.width, info.height):
        return
    if info.orientation in (5, 6, 7, 8) and record.size == (info.height, info.width):
        col.add(
            ProblemKind.EXIF_SWAPPED,
            "stored size is the un-rotated size of an EXIF-rotated photo",
            file=record.image,
            location=location,
            field="width/height",
            expected=f"{info.width}x{info.height} (EXIF orientation {info.orientation})",
            got=f"{record.width}x{record.height}",
            hint="the labeling tool read the size before rotation; check the boxes "
            "against the rotated image and store the displayed size",
        )
    else:
        col.add(
            ProblemKind.SIZE_MISMATCH,
            "stored size disagrees with the image file",
            file=record.image,
            location=location,
            field="width/height",
            expected=f"{info.width}x{info.height}",
            got=f"{record.width}x{record.height}",
            hint="store the image's real size (detectkit reads it with image_size())",
        )
