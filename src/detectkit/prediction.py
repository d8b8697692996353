"""Predictions: :class:`Detections` (columnar boxes of one image) and :class:`Prediction`.

A model's answer for one image is a handful of numpy arrays, not one Python object per box
(supervision's ``Detections`` is the model): ``xyxy`` holds normalized corners, the same
convention as the Azure ML scoring contract and :class:`~detectkit.Box`, so a prediction is
independent of the image size until pixels are asked for. :class:`Prediction` adds the image
reference and its size, which pixel conversions, COCO results and supervision need.

Both are immutable: arrays are read-only and every operation (``filter``, ``nms``, ``top_k``,
indexing) returns a new object sharing or copying the arrays, never changing the caller's.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, ObjectAnnotation
from detectkit.detections import (
    DetectedBox,
    Detections,
    FloatArray,
    restore_detections,
)
from detectkit.detections import class_tuple as class_tuple
from detectkit.errors import InvalidInputError, MissingDependencyError
from detectkit.images import is_remote

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    import supervision as sv

__all__ = ["DetectedBox", "Detections", "Prediction"]


@dataclass(frozen=True, slots=True, repr=False)
class Prediction:
    """A model's boxes for one image, with the image it was made for.

    Args:
        image: Path or URL of the image, when known (batch output gives the file name; the
            online response does not, so :func:`~detectkit.parse_response` takes it from the
            images the caller sent).
        width: Displayed width of the image in pixels, when known.
        height: Displayed height in pixels, when known.
        detections: The boxes (normalized).

    Pixel conversions (:meth:`to_pixels`, :meth:`to_coco_results`, :meth:`to_supervision`)
    need ``width`` and ``height``.
    """

    image: str | None = None
    width: int | None = None
    height: int | None = None
    detections: Detections = field(default_factory=Detections.empty)

    def __post_init__(self) -> None:
        if isinstance(self.image, os.PathLike):
            object.__setattr__(self, "image", os.fspath(self.image))
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0
            ):
                raise InvalidInputError(
                    f"Prediction: {name}: expected a pixel count > 0 or None, got {value!r}"
                )
            if value is not None:
                object.__setattr__(self, name, int(value))
        if not isinstance(self.detections, Detections):
            raise InvalidInputError(
                f"Prediction: detections: expected Detections, got {type(self.detections).__name__}"
            )

    @classmethod
    def _trusted(
        cls, image: str | None, width: int | None, height: int | None, detections: Detections
    ) -> Prediction:
        """Build from checked values (parsers' fast path, skips ``__post_init__``)."""
        self = object.__new__(cls)
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "detections", detections)
        return self

    def __len__(self) -> int:
        return len(self.detections)

    def __repr__(self) -> str:
        size = f"{self.width}x{self.height}" if self.size else "size unknown"
        shown = ", ".join(f"{b.label} {b.score:.3f}" for b in self.detections[:3])
        more = f", ... {len(self) - 3} more" if len(self) > 3 else ""
        return f"Prediction(image={self.image!r}, {size}, {len(self)} boxes: [{shown}{more}])"

    # ---------------------------------------------------------------- shortcuts
    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` when both are known."""
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names the detections' class ids index."""
        return self.detections.classes

    @property
    def labels(self) -> npt.NDArray[np.str_]:
        """``(n,)`` class name of each box."""
        return self.detections.labels

    @property
    def scores(self) -> FloatArray:
        """``(n,)`` confidences."""
        return self.detections.scores

    def _replace(self, detections: Detections) -> Prediction:
        return dataclasses.replace(self, detections=detections)

    def filter(
        self, min_score: float | None = None, labels: str | Iterable[str] | None = None
    ) -> Prediction:
        """This prediction with only the boxes :meth:`Detections.filter` keeps."""
        return self._replace(self.detections.filter(min_score, labels))

    def nms(self, iou: float = 0.5, class_agnostic: bool = False) -> Prediction:
        """This prediction after :meth:`Detections.nms`."""
        return self._replace(self.detections.nms(iou, class_agnostic))

    def top_k(self, k: int) -> Prediction:
        """This prediction with its ``k`` best boxes (:meth:`Detections.top_k`)."""
        return self._replace(self.detections.top_k(k))

    # ---------------------------------------------------------------- pixels
    def _pixel_size(self, what: str) -> tuple[int, int]:
        if self.width is None or self.height is None:
            raise InvalidInputError(
                f"Prediction.{what}: the size of image {self.image!r} is unknown, so pixel "
                "coordinates cannot be computed\n  hint: pass images= or sizes= to "
                "parse_response / parse_batch_output, or build the Prediction with width= "
                "and height="
            )
        return (self.width, self.height)

    def to_pixels(self) -> FloatArray:
        """``(n, 4)`` corners in pixels of this image.

        Raises:
            InvalidInputError: The image size is unknown.
        """
        width, height = self._pixel_size("to_pixels")
        return self.detections.to_pixels(width, height)

    def to_coco_results(
        self, image_id: int | str, category_ids: Mapping[str, int] | None = None
    ) -> list[dict[str, Any]]:
        """COCO detection results (``loadRes`` input): one dict per box.

        Args:
            image_id: The image's id in the COCO ground truth.
            category_ids: Class name to COCO category id. Defaults to the class index + 1
                (COCO ids start at 1); pass the ground truth's mapping when it differs.

        Returns:
            One dict per box with ``image_id``, ``category_id``, ``bbox`` (pixel
            ``[x, y, width, height]``) and ``score``.

        Raises:
            InvalidInputError: The image size is unknown, or a label has no category id.
        """
        width, height = self._pixel_size("to_coco_results")
        det = self.detections
        if category_ids is None:
            cat_of = [i + 1 for i in range(len(det.classes))]
        else:
            missing = [c for c in set(det.labels.tolist()) if c not in category_ids]
            if missing:
                raise InvalidInputError(
                    f"to_coco_results: category_ids: no id for label(s) {sorted(missing)}; "
                    f"the mapping has {sorted(category_ids)}"
                )
            cat_of = [category_ids.get(c, -1) for c in det.classes]
        px = det.to_pixels(width, height)
        px[:, 2:] -= px[:, :2]
        return [
            {"image_id": image_id, "category_id": cat_of[cid], "bbox": bbox, "score": score}
            for bbox, score, cid in zip(
                px.tolist(), det.scores.tolist(), det.class_ids.tolist(), strict=True
            )
        ]

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per box: image, label, class id, score, normalized and pixel corners.

        Pixel corners (``x_min, y_min, x_max, y_max``) are ``None`` when the size is unknown.
        """
        det = self.detections
        labels = det.classes
        pixels: list[list[float]] | list[None]
        if self.width is not None and self.height is not None:
            pixels = det.to_pixels(self.width, self.height).tolist()
        else:
            pixels = [None] * len(det)
        records = []
        for norm, px, score, cid in zip(
            det.xyxy.tolist(), pixels, det.scores.tolist(), det.class_ids.tolist(), strict=True
        ):
            records.append(
                {
                    "image": self.image,
                    "label": labels[cid],
                    "class_id": cid,
                    "score": score,
                    "top_x": norm[0],
                    "top_y": norm[1],
                    "bottom_x": norm[2],
                    "bottom_y": norm[3],
                    "x_min": px[0] if px else None,
                    "y_min": px[1] if px else None,
                    "x_max": px[2] if px else None,
                    "y_max": px[3] if px else None,
                }
            )
        return records

    def to_pandas(self) -> pd.DataFrame:
        """The :meth:`to_records` rows as a pandas ``DataFrame`` (one row per box).

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        try:
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise MissingDependencyError(
                "pandas is not installed; Prediction.to_pandas needs it. "
                "Install it with: pip install pandas"
            ) from exc
        return pd.DataFrame(self.to_records(), columns=list(_RECORD_COLUMNS))

    # ---------------------------------------------------------------- supervision
    def to_supervision(self) -> sv.Detections:
        """A ``supervision.Detections`` in pixels, with ``data["class_name"]`` set.

        Raises:
            InvalidInputError: The image size is unknown.
            MissingDependencyError: supervision is not installed.
        """
        width, height = self._pixel_size("to_supervision")
        try:
            import supervision
        except ImportError as exc:
            raise MissingDependencyError(
                "supervision is not installed; Prediction.to_supervision needs it. "
                "Install it with: pip install supervision"
            ) from exc
        det = self.detections
        return supervision.Detections(
            xyxy=det.to_pixels(width, height),
            confidence=det.scores.copy(),
            class_id=det.class_ids.copy(),
            data={"class_name": det.labels},
        )

    @classmethod
    def from_supervision(
        cls,
        detections: Any,
        *,
        width: int,
        height: int,
        classes: Sequence[str] | None = None,
        image: str | os.PathLike[str] | None = None,
    ) -> Prediction:
        """Build from a ``supervision.Detections`` (duck-typed: supervision is not imported).

        Reads ``xyxy`` (pixels), ``confidence`` (``None`` reads as 1.0, e.g. ground truth),
        ``class_id`` and ``data["class_name"]``.

        Args:
            detections: The supervision detections of one image.
            width: Width of the image the pixels refer to.
            height: Height of that image.
            classes: Class names. With ``data["class_name"]``, labels are looked up in it
                (an unknown one is an error); without, ``class_id`` indexes it. Defaults to
                the sorted class names found in ``data["class_name"]``.
            image: The image path or URL, if known.

        Raises:
            InvalidInputError: No class names can be found, or a label / id does not fit
                ``classes``.
        """
        xyxy = np.asarray(detections.xyxy, dtype=np.float64).reshape(-1, 4)
        n = xyxy.shape[0]
        conf = getattr(detections, "confidence", None)
        scores = np.ones(n) if conf is None else np.asarray(conf, dtype=np.float64)
        data = getattr(detections, "data", None)
        names = data.get("class_name") if isinstance(data, Mapping) else None
        raw_ids = getattr(detections, "class_id", None)
        if names is not None:
            label_list = [str(x) for x in np.asarray(names).reshape(-1).tolist()]
            vocab = tuple(classes) if classes is not None else tuple(sorted(set(label_list)))
            index = {name: i for i, name in enumerate(vocab)}
            unknown = sorted({x for x in label_list if x not in index})
            if unknown:
                raise InvalidInputError(
                    f"from_supervision: data['class_name']: label(s) {unknown} are not in "
                    f"classes {list(vocab)}; add them to classes or leave classes=None"
                )
            ids = np.array([index[x] for x in label_list], dtype=np.int64)
        elif raw_ids is not None:
            if classes is None:
                raise InvalidInputError(
                    "from_supervision: the detections have class_id but no data['class_name'], "
                    "so class names are unknown; pass classes=[...] (the model's class names, "
                    "in class id order)"
                )
            vocab = tuple(classes)
            ids = np.asarray(raw_ids)
        else:
            if n:
                raise InvalidInputError(
                    "from_supervision: the detections have neither class_id nor "
                    "data['class_name']; a Prediction needs a class per box"
                )
            vocab = tuple(classes or ())
            ids = np.zeros(0, dtype=np.int64)
        return cls(
            image=os.fspath(image) if image is not None else None,
            width=width,
            height=height,
            detections=Detections.from_pixels(xyxy, scores, ids, vocab, width, height),
        )

    # ---------------------------------------------------------------- data set
    def to_annotations(
        self, min_score: float = 0.5, *, model_version: str | None = None
    ) -> tuple[ObjectAnnotation, ...]:
        """Draft labels (pre-labels) from the boxes scoring at least ``min_score``.

        Each annotation is a draft (``source="model"``) that keeps its ``score`` and the
        ``model_version`` that made it, so a labeling tool or a reviewer tells it from a human
        label.
        """
        det = self.detections.filter(min_score=min_score)
        labels = det.classes
        return tuple(
            ObjectAnnotation(
                label=labels[cid],
                box=Box.trusted(*row),
                score=score,
                source="model",
                model_version=model_version,
            )
            for row, score, cid in zip(
                det.xyxy.tolist(), det.scores.tolist(), det.class_ids.tolist(), strict=True
            )
        )

    def to_record(self, min_score: float = 0.5) -> ImageRecord:
        """A draft :class:`~detectkit.ImageRecord` of this image (:meth:`to_annotations`).

        Raises:
            InvalidInputError: The image is unknown.
        """
        if self.image is None:
            raise InvalidInputError(
                "Prediction.to_record: the image is unknown; pass images= to parse_response "
                "or build the Prediction with image="
            )
        return ImageRecord(
            image=self.image,
            width=self.width,
            height=self.height,
            objects=self.to_annotations(min_score),
        )

    # ---------------------------------------------------------------- notebooks
    def _repr_png_(self) -> bytes | None:
        """The image with its boxes drawn, for Jupyter; ``None`` unless a local file."""
        if self.image is None or is_remote(self.image) or not Path(self.image).is_file():
            return None
        try:
            from detectkit.viz.drawing import draw

            picture = draw(self.image, self)
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
        except Exception:  # a notebook repr must never raise; the text repr is shown instead
            return None
        return buffer.getvalue()


_RECORD_COLUMNS = (
    "image",
    "label",
    "class_id",
    "score",
    "top_x",
    "top_y",
    "bottom_x",
    "bottom_y",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
)


#: Pickles saved before :class:`Detections` moved to its own module name this function.
_restore = restore_detections
# Pickles name the function by this path (as they did before Detections moved to
# detectkit.detections), so a pickle written now still loads in an older detectkit.
_restore.__module__, _restore.__qualname__ = __name__, "_restore"
