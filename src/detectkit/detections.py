"""Columnar boxes of one image: :class:`Detections` and the :class:`DetectedBox` it yields.

A model's answer for one image is a handful of numpy arrays, not one Python object per box
(supervision's ``Detections`` is the model): ``xyxy`` holds normalized corners, the same
convention as the Azure ML scoring contract and :class:`~detectkit.Box`. The arrays are
read-only and every operation (``filter``, ``nms``, ``top_k``, indexing) returns a new object.

Both names are re-exported by :mod:`detectkit.prediction`, where they are documented.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from detectkit.errors import InvalidInputError

if TYPE_CHECKING:
    pass


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Index = int | np.integer[Any] | slice | Sequence[int] | Sequence[bool] | npt.NDArray[Any]

_EMPTY_XYXY = np.zeros((0, 4), dtype=np.float64)


class DetectedBox(NamedTuple):
    """One box, as yielded by iterating a :class:`Detections` (normalized corners)."""

    label: str
    score: float
    class_id: int
    xyxy: tuple[float, float, float, float]


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.setflags(write=False)
    return array


class Detections:
    """The boxes predicted for one image, as columns.

    Args:
        xyxy: ``(n, 4)`` normalized corners ``(top_x, top_y, bottom_x, bottom_y)`` in ``[0, 1]``
            (pixel corners divided by the image width and height; see :meth:`from_pixels`).
        scores: ``(n,)`` confidences.
        class_ids: ``(n,)`` integer indices into ``classes``.
        classes: Ordered class names (a model's ``labels.json``, or ``dataset.classes``).

    Raises:
        InvalidInputError: Shapes disagree, a coordinate is outside ``[0, 1]`` or inverted,
            a value is not finite, a class id is out of range, or class names repeat.

    Examples:
        >>> det = Detections([[0.1, 0.2, 0.5, 0.6]], [0.9], [0], classes=["can"])
        >>> len(det), det.labels.tolist(), det.to_pixels(200, 100).tolist()
        (1, ['can'], [[20.0, 20.0, 100.0, 60.0]])
    """

    __slots__ = ("class_ids", "classes", "scores", "xyxy")

    xyxy: FloatArray
    scores: FloatArray
    class_ids: IntArray
    classes: tuple[str, ...]

    def __init__(
        self,
        xyxy: npt.ArrayLike,
        scores: npt.ArrayLike,
        class_ids: npt.ArrayLike,
        classes: Sequence[str],
    ) -> None:
        boxes = np.array(xyxy, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InvalidInputError(f"Detections: xyxy: expected shape (n, 4), got {boxes.shape}")
        n = boxes.shape[0]
        conf = np.array(scores, dtype=np.float64).reshape(-1)
        if conf.shape != (n,):
            raise InvalidInputError(
                f"Detections: scores: expected shape ({n},) to match xyxy, got {conf.shape}"
            )
        ids = _as_class_ids(class_ids, n)
        names = _as_classes(classes)
        _check_boxes(boxes, "Detections: xyxy")
        if not np.isfinite(conf).all():
            bad = int(np.flatnonzero(~np.isfinite(conf))[0])
            raise InvalidInputError(
                f"Detections: scores[{bad}]: expected a finite number, got {conf[bad]}"
            )
        if n and (ids.min() < 0 or ids.max() >= len(names)):
            bad = int(np.flatnonzero((ids < 0) | (ids >= len(names)))[0])
            raise InvalidInputError(
                f"Detections: class_ids[{bad}]: expected an index into the {len(names)} classes "
                f"{list(names)}, got {ids[bad]}",
            )
        self.xyxy = _read_only(boxes)
        self.scores = _read_only(conf)
        self.class_ids = _read_only(ids)
        self.classes = names

    @classmethod
    def _trusted(
        cls, xyxy: FloatArray, scores: FloatArray, class_ids: IntArray, classes: tuple[str, ...]
    ) -> Detections:
        """Build from arrays the caller has already checked (parsers' fast path, no copy)."""
        self = cls.__new__(cls)
        self.xyxy = _read_only(xyxy)
        self.scores = _read_only(scores)
        self.class_ids = _read_only(class_ids)
        self.classes = classes
        return self

    # ---------------------------------------------------------------- constructors
    @classmethod
    def empty(cls, classes: Sequence[str] = ()) -> Detections:
        """No boxes (the answer for an image where the model found nothing)."""
        return cls._trusted(
            _EMPTY_XYXY.copy(),
            np.zeros(0, dtype=np.float64),
            np.zeros(0, dtype=np.int64),
            _as_classes(classes),
        )

    @classmethod
    def from_pixels(
        cls,
        xyxy: npt.ArrayLike,
        scores: npt.ArrayLike,
        class_ids: npt.ArrayLike,
        classes: Sequence[str],
        width: float,
        height: float,
    ) -> Detections:
        """Build from pixel corners of an image ``width`` x ``height``.

        Corners are divided by the image size and clipped to the image (detectors often
        place an edge a little outside it).
        """
        check_size(width, height, "Detections.from_pixels")
        boxes = np.array(xyxy, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InvalidInputError(
                f"Detections.from_pixels: xyxy: expected shape (n, 4), got {boxes.shape}"
            )
        scale = np.array([width, height, width, height], dtype=np.float64)
        return cls(np.clip(boxes / scale, 0.0, 1.0), scores, class_ids, classes)

    # ---------------------------------------------------------------- container
    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getitem__(self, index: Index) -> Detections:
        """Select boxes by position, slice, boolean mask or integer array (always Detections)."""
        n = len(self)
        selector: slice | npt.NDArray[Any]
        if isinstance(index, int | np.integer):
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"Detections index {i} out of range for {n} boxes")
            selector = np.array([i % n])
        elif isinstance(index, slice):
            selector = index
        else:
            selector = np.asarray(index)
            if selector.size == 0:
                selector = np.zeros(0, dtype=np.int64)
            elif selector.dtype == np.bool_:
                if selector.shape != (n,):
                    raise IndexError(
                        f"Detections boolean mask: expected shape ({n},), got {selector.shape}"
                    )
            elif selector.dtype.kind not in "iu":
                raise TypeError(
                    "Detections index: expected an int, slice, boolean mask or integer array, "
                    f"got an array of {selector.dtype}"
                )
        return Detections._trusted(
            self.xyxy[selector], self.scores[selector], self.class_ids[selector], self.classes
        )

    def __iter__(self) -> Iterator[DetectedBox]:
        labels = self.classes
        for row, score, cid in zip(
            self.xyxy.tolist(), self.scores.tolist(), self.class_ids.tolist(), strict=True
        ):
            yield DetectedBox(labels[cid], score, cid, (row[0], row[1], row[2], row[3]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        return (
            self.classes == other.classes
            and np.array_equal(self.xyxy, other.xyxy)
            and np.array_equal(self.scores, other.scores)
            and np.array_equal(self.class_ids, other.class_ids)
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # numpy does not pickle the read-only flag: rebuild through the read-only constructor
        return (restore_detections, (self.xyxy, self.scores, self.class_ids, self.classes))

    def __repr__(self) -> str:
        shown = ", ".join(f"{b.label} {b.score:.3f}" for b in self[:5])
        more = f", ... {len(self) - 5} more" if len(self) > 5 else ""
        return f"Detections({len(self)} boxes: [{shown}{more}], classes={list(self.classes)})"

    # ---------------------------------------------------------------- views
    @property
    def labels(self) -> npt.NDArray[np.str_]:
        """``(n,)`` class name of each box."""
        return np.array(self.classes, dtype=np.str_)[self.class_ids]

    def to_pixels(self, width: float, height: float) -> FloatArray:
        """``(n, 4)`` corners in pixels of an image ``width`` x ``height`` (a new array)."""
        check_size(width, height, "Detections.to_pixels")
        return self.xyxy * np.array([width, height, width, height], dtype=np.float64)

    # ---------------------------------------------------------------- selection
    def filter(
        self, min_score: float | None = None, labels: str | Iterable[str] | None = None
    ) -> Detections:
        """Boxes scoring at least ``min_score`` and, if given, labeled one of ``labels``.

        A label that is not one of ``classes`` matches nothing (a response only knows the
        labels it contains). The class list is kept, so class ids stay comparable.
        """
        mask = np.ones(len(self), dtype=np.bool_)
        if min_score is not None:
            mask &= self.scores >= min_score
        if labels is not None:
            wanted = {labels} if isinstance(labels, str) else set(labels)
            ids = [i for i, name in enumerate(self.classes) if name in wanted]
            mask &= np.isin(self.class_ids, np.array(ids, dtype=np.int64))
        return self[mask]

    def nms(self, iou: float = 0.5, class_agnostic: bool = False) -> Detections:
        """Greedy non-maximum suppression.

        Boxes are visited from the highest score down (equal scores: the earlier box first,
        so the result is deterministic); each kept box removes the later boxes whose IoU with
        it is greater than ``iou``. Per class unless ``class_agnostic``. Kept boxes stay in
        their original order.

        Args:
            iou: IoU above which the lower-scoring box is dropped, in ``[0, 1]``.
            class_agnostic: Suppress across classes too.
        """
        if not 0.0 <= iou <= 1.0:
            raise InvalidInputError(f"nms: iou: expected a value in [0, 1], got {iou!r}")
        n = len(self)
        if n < 2:
            return self
        x1, y1, x2, y2 = (self.xyxy[:, k] for k in range(4))
        areas = (x2 - x1) * (y2 - y1)
        ids = self.class_ids
        order = np.argsort(-self.scores, kind="stable")
        keep = np.zeros(n, dtype=np.bool_)
        while order.size:
            i = order[0]
            keep[i] = True
            rest = order[1:]
            iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0, None)
            ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0, None)
            inter = iw * ih
            union = areas[i] + areas[rest] - inter
            overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)
            suppress = overlap > iou
            if not class_agnostic:
                suppress &= ids[rest] == ids[i]
            order = rest[~suppress]
        return self[keep]

    def top_k(self, k: int) -> Detections:
        """The ``k`` highest-scoring boxes, best first (equal scores keep their order)."""
        if k < 0:
            raise InvalidInputError(f"top_k: k: expected a count >= 0, got {k}")
        return self[np.argsort(-self.scores, kind="stable")[:k]]


# --------------------------------------------------------------------- checks
def check_size(width: float, height: float, where: str) -> None:
    if not (width > 0 and height > 0):
        raise InvalidInputError(
            f"{where}: image size: expected width and height > 0, got {width!r} x {height!r}"
        )


def _as_classes(classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, str):
        raise InvalidInputError(
            f"classes: expected a sequence of class names, got the string {classes!r}"
        )
    names = tuple(classes)
    if len(set(names)) != len(names):
        dupes = sorted(name for name, count in Counter(names).items() if count > 1)
        raise InvalidInputError(f"classes: expected unique names, got duplicates {dupes}")
    for name in names:
        if not isinstance(name, str):
            raise InvalidInputError(
                f"classes: expected class names (str), got {name!r} ({type(name).__name__})"
            )
    return names


def class_tuple(classes: Sequence[str]) -> tuple[str, ...]:
    """A model's class list (``labels.json``) as the scoring parsers check it."""
    if isinstance(classes, str):
        raise InvalidInputError(
            f"classes: expected a list of class names, got the string {classes!r}"
        )
    names = tuple(classes)
    if len(set(names)) != len(names) or not all(isinstance(c, str) for c in names):
        raise InvalidInputError(f"classes: expected unique class names, got {list(names)}")
    return names


def _as_class_ids(class_ids: npt.ArrayLike, n: int) -> IntArray:
    raw = np.asarray(class_ids)
    if raw.size == 0:
        raw = raw.reshape(0)
    raw = raw.reshape(-1) if raw.ndim > 1 and raw.size == n else raw
    if raw.shape != (n,):
        raise InvalidInputError(
            f"Detections: class_ids: expected shape ({n},) to match xyxy, got {raw.shape}"
        )
    if raw.dtype.kind in "iu":
        return raw.astype(np.int64, copy=True)
    if raw.dtype.kind == "f" and np.isfinite(raw).all() and (raw == np.round(raw)).all():
        return raw.astype(np.int64)
    raise InvalidInputError(
        f"Detections: class_ids: expected integer class indices, got an array of {raw.dtype}"
    )


def _check_boxes(boxes: FloatArray, where: str) -> None:
    """Raise on the first non-finite, out-of-range or inverted normalized box."""
    finite = np.all(np.isfinite(boxes), axis=1, keepdims=False)
    inside = np.all((boxes >= 0.0) & (boxes <= 1.0), axis=1)
    ordered = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    ok = finite & inside & ordered
    if ok.all():
        return
    i = int(np.flatnonzero(~ok)[0])
    row = boxes[i].tolist()
    if not finite[i] or not inside[i]:
        raise InvalidInputError(
            f"{where}[{i}]: expected normalized corners in [0, 1], got {row} "
            "(divide pixel corners by the image size, or use Detections.from_pixels)"
        )
    raise InvalidInputError(
        f"{where}[{i}]: expected bottom >= top (x_min <= x_max, y_min <= y_max), got {row}"
    )


def restore_detections(
    xyxy: FloatArray, scores: FloatArray, class_ids: IntArray, classes: tuple[str, ...]
) -> Detections:
    """Unpickle a :class:`Detections` (module level, so pickle can find it)."""
    return Detections._trusted(xyxy, scores, class_ids, classes)
