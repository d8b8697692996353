"""Bounding boxes: the normalized :class:`Box` and vectorized coordinate conversions.

detectkit stores every box the way Azure ML AutoML does: normalized ``top_x, top_y, bottom_x,
bottom_y`` in ``[0, 1]`` (``top_x = xmin / width``). Pixel formats are conversions:

* ``xyxy``: ``(x_min, y_min, x_max, y_max)`` in pixels, continuous coordinates
  (the COCO / torchvision convention, no "+1").
* ``xywh``: ``(x_min, y_min, width, height)`` in pixels (COCO ``bbox``).
* ``cxcywh``: ``(x_center, y_center, width, height)`` in pixels (YOLO, when normalized).

Passing ``width=1, height=1`` to any conversion gives normalized values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "Box",
    "box_iou_matrix",
    "cxcywh_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_xywh",
]

FloatArray = npt.NDArray[np.float64]

_FIELDS = ("top_x", "top_y", "bottom_x", "bottom_y")


class Box(BaseModel):
    """An axis-aligned box in normalized image coordinates.

    Attributes:
        top_x: Left edge divided by the image width, in ``[0, 1]``.
        top_y: Top edge divided by the image height, in ``[0, 1]``.
        bottom_x: Right edge divided by the image width, in ``[top_x, 1]``.
        bottom_y: Bottom edge divided by the image height, in ``[top_y, 1]``.

    Example:
        >>> box = Box.from_xyxy(10, 20, 110, 70, width=200, height=100)
        >>> box
        Box(top_x=0.05, top_y=0.2, bottom_x=0.55, bottom_y=0.7)
        >>> box.to_xywh(200, 100)
        (10.0, 20.0, 100.0, 50.0)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_x: float
    top_y: float
    bottom_x: float
    bottom_y: float

    @model_validator(mode="after")
    def _check(self) -> Box:
        for name in _FIELDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(
                    f"{name}: expected a normalized coordinate in [0, 1], got {value!r}"
                    " (pixel values must be divided by the image size)"
                )
        if self.bottom_x < self.top_x:
            raise ValueError(
                f"bottom_x: expected >= top_x ({self.top_x!r}), got {self.bottom_x!r} (inverted box)"
            )
        if self.bottom_y < self.top_y:
            raise ValueError(
                f"bottom_y: expected >= top_y ({self.top_y!r}), got {self.bottom_y!r} (inverted box)"
            )
        return self

    def __repr__(self) -> str:
        return (
            f"Box(top_x={self.top_x!r}, top_y={self.top_y!r}, "
            f"bottom_x={self.bottom_x!r}, bottom_y={self.bottom_y!r})"
        )

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_xyxy(
        cls, x_min: float, y_min: float, x_max: float, y_max: float, *, width: float, height: float
    ) -> Box:
        """Build a box from pixel corners of an image ``width`` x ``height``."""
        _check_size(width, height)
        return cls(
            top_x=x_min / width,
            top_y=y_min / height,
            bottom_x=x_max / width,
            bottom_y=y_max / height,
        )

    @classmethod
    def from_xywh(
        cls, x: float, y: float, w: float, h: float, *, width: float, height: float
    ) -> Box:
        """Build a box from a pixel ``(x_min, y_min, width, height)`` (COCO ``bbox``)."""
        return cls.from_xyxy(x, y, x + w, y + h, width=width, height=height)

    @classmethod
    def from_cxcywh(
        cls, cx: float, cy: float, w: float, h: float, *, width: float, height: float
    ) -> Box:
        """Build a box from a pixel ``(x_center, y_center, width, height)``."""
        return cls.from_xyxy(
            cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0, width=width, height=height
        )

    # ----------------------------------------------------------------- conversions
    def to_xyxy(self, width: float = 1.0, height: float = 1.0) -> tuple[float, float, float, float]:
        """Corners in pixels of an image ``width`` x ``height`` (normalized with the defaults)."""
        return (
            self.top_x * width,
            self.top_y * height,
            self.bottom_x * width,
            self.bottom_y * height,
        )

    def to_xywh(self, width: float = 1.0, height: float = 1.0) -> tuple[float, float, float, float]:
        """``(x_min, y_min, box_width, box_height)`` in pixels (COCO ``bbox``)."""
        x1, y1, x2, y2 = self.to_xyxy(width, height)
        return (x1, y1, x2 - x1, y2 - y1)

    def to_cxcywh(
        self, width: float = 1.0, height: float = 1.0
    ) -> tuple[float, float, float, float]:
        """``(x_center, y_center, box_width, box_height)`` in pixels."""
        x1, y1, x2, y2 = self.to_xyxy(width, height)
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1)

    # ----------------------------------------------------------------- geometry
    @property
    def width(self) -> float:
        """Normalized width (fraction of the image width)."""
        return self.bottom_x - self.top_x

    @property
    def height(self) -> float:
        """Normalized height (fraction of the image height)."""
        return self.bottom_y - self.top_y

    @property
    def area(self) -> float:
        """Normalized area (fraction of the image area)."""
        return self.width * self.height

    def pixel_area(self, width: float, height: float) -> float:
        """Area in square pixels of an image ``width`` x ``height``."""
        return self.area * width * height

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0.0 when both are empty)."""
        iw = min(self.bottom_x, other.bottom_x) - max(self.top_x, other.top_x)
        ih = min(self.bottom_y, other.bottom_y) - max(self.top_y, other.top_y)
        if iw <= 0.0 or ih <= 0.0:
            return 0.0
        inter = iw * ih
        union = self.area + other.area - inter
        return inter / union if union > 0.0 else 0.0

    def to_array(self) -> FloatArray:
        """The box as a float64 array ``[top_x, top_y, bottom_x, bottom_y]``."""
        return np.array([self.top_x, self.top_y, self.bottom_x, self.bottom_y], dtype=np.float64)

    @classmethod
    def trusted(cls, top_x: float, top_y: float, bottom_x: float, bottom_y: float) -> Box:
        """Build a box from values the caller has already checked (readers' fast path)."""
        return cls.model_construct(top_x=top_x, top_y=top_y, bottom_x=bottom_x, bottom_y=bottom_y)


def _check_size(width: float, height: float) -> None:
    if not (width > 0 and height > 0):
        raise ValueError(f"image size: expected width and height > 0, got {width!r} x {height!r}")


# --------------------------------------------------------------------- vectorized helpers
def _as_boxes(arr: Any) -> FloatArray:
    out = np.asarray(arr, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] != 4:
        raise ValueError(f"boxes: expected an array of shape (n, 4), got shape {out.shape}")
    return out


def xyxy_to_xywh(boxes: Any) -> FloatArray:
    """Convert an ``(n, 4)`` array of corners to ``(x, y, w, h)``."""
    b = _as_boxes(boxes)
    out = b.copy()
    out[:, 2] = b[:, 2] - b[:, 0]
    out[:, 3] = b[:, 3] - b[:, 1]
    return out


def xywh_to_xyxy(boxes: Any) -> FloatArray:
    """Convert an ``(n, 4)`` array of ``(x, y, w, h)`` to corners."""
    b = _as_boxes(boxes)
    out = b.copy()
    out[:, 2] = b[:, 0] + b[:, 2]
    out[:, 3] = b[:, 1] + b[:, 3]
    return out


def xyxy_to_cxcywh(boxes: Any) -> FloatArray:
    """Convert an ``(n, 4)`` array of corners to ``(cx, cy, w, h)``."""
    b = _as_boxes(boxes)
    out = np.empty_like(b)
    out[:, 0] = (b[:, 0] + b[:, 2]) / 2.0
    out[:, 1] = (b[:, 1] + b[:, 3]) / 2.0
    out[:, 2] = b[:, 2] - b[:, 0]
    out[:, 3] = b[:, 3] - b[:, 1]
    return out


def cxcywh_to_xyxy(boxes: Any) -> FloatArray:
    """Convert an ``(n, 4)`` array of ``(cx, cy, w, h)`` to corners."""
    b = _as_boxes(boxes)
    out = np.empty_like(b)
    out[:, 0] = b[:, 0] - b[:, 2] / 2.0
    out[:, 1] = b[:, 1] - b[:, 3] / 2.0
    out[:, 2] = b[:, 0] + b[:, 2] / 2.0
    out[:, 3] = b[:, 1] + b[:, 3] / 2.0
    return out


def box_iou_matrix(a: Any, b: Any) -> FloatArray:
    """Pairwise IoU of two ``(n, 4)`` and ``(m, 4)`` xyxy arrays, shape ``(n, m)``."""
    aa = _as_boxes(a)
    bb = _as_boxes(b)
    if aa.shape[0] == 0 or bb.shape[0] == 0:
        return np.zeros((aa.shape[0], bb.shape[0]), dtype=np.float64)
    iw = np.minimum(aa[:, None, 2], bb[None, :, 2]) - np.maximum(aa[:, None, 0], bb[None, :, 0])
    ih = np.minimum(aa[:, None, 3], bb[None, :, 3]) - np.maximum(aa[:, None, 1], bb[None, :, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    area_a = (aa[:, 2] - aa[:, 0]) * (aa[:, 3] - aa[:, 1])
    area_b = (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0.0, inter / union, 0.0)
    return iou
