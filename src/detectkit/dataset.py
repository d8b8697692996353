"""The labeled data set: :class:`ObjectAnnotation`, :class:`ImageRecord`, :class:`LabeledDataset`.

One canonical model for every format. Boxes are normalized (:class:`~detectkit.Box`); images are
referenced by path or URL and decoded only on demand, so a data set of 50,000 images costs its
annotations, not its pixels. Records are frozen: every operation returns a new data set and never
changes the caller's objects.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple, overload

import numpy as np

from detectkit.annotations import (
    BoxStats,
    DatasetSummary,
    ImageRecord,
    ObjectAnnotation,
    check_image_file,
)
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.images import is_remote
from detectkit.progress import track
from detectkit.validation import (
    ErrorMode,
    ProblemCollector,
    ProblemKind,
    Severity,
    ValidationReport,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from detectkit.formats import Format as Format

__all__ = [
    "BoxStats",
    "DatasetSplit",
    "DatasetSummary",
    "ImageRecord",
    "LabeledDataset",
    "ObjectAnnotation",
]


def __getattr__(name: str) -> object:
    # ``Format`` lives in detectkit.formats (which imports this module); kept importable here.
    if name == "Format":
        from detectkit.formats import Format

        return Format
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DatasetSplit(NamedTuple):
    """The parts of a split: ``train, val, test = dataset.split(0.2)``."""

    train: LabeledDataset
    val: LabeledDataset
    test: LabeledDataset


class LabeledDataset:
    """Images with labeled boxes and an ordered class list.

    Args:
        records: The images and their objects.
        classes: Ordered class names (class ids follow this order). Defaults to the sorted
            labels found in ``records``.
        root: Folder the image paths are relative to when written out (usually the folder the
            data set was read from).

    Example:
        >>> from detectkit import Box, ImageRecord, LabeledDataset, ObjectAnnotation
        >>> card = ObjectAnnotation(label="ace", box=Box(top_x=0.1, top_y=0.1, bottom_x=0.4, bottom_y=0.5))
        >>> ds = LabeledDataset([ImageRecord(image="a.jpg", width=640, height=480, objects=(card,))])
        >>> len(ds), ds.classes
        (1, ('ace',))
    """

    __slots__ = ("_classes", "_records", "root")

    def __init__(
        self,
        records: Iterable[ImageRecord],
        classes: Sequence[str] | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        self._records: tuple[ImageRecord, ...] = tuple(records)
        if classes is None:
            classes = sorted({o.label for r in self._records for o in r.objects})
        if len(set(classes)) != len(classes):
            dupes = sorted(name for name, n in Counter(classes).items() if n > 1)
            raise InvalidInputError(f"classes: expected unique names, got duplicates {dupes}")
        self._classes: tuple[str, ...] = tuple(classes)
        self.root: Path | None = Path(root) if root is not None else None

    # ------------------------------------------------------------------ container
    @property
    def records(self) -> tuple[ImageRecord, ...]:
        """The image records, in order."""
        return self._records

    @property
    def classes(self) -> tuple[str, ...]:
        """Ordered class names; a class id is an index into this tuple."""
        return self._classes

    @property
    def num_boxes(self) -> int:
        """Total number of boxes."""
        return sum(len(r.objects) for r in self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self._records)

    @overload
    def __getitem__(self, index: int) -> ImageRecord: ...
    @overload
    def __getitem__(self, index: slice) -> LabeledDataset: ...
    def __getitem__(self, index: int | slice) -> ImageRecord | LabeledDataset:
        if isinstance(index, slice):
            return self._replace(self._records[index])
        return self._records[index]

    def __repr__(self) -> str:
        return (
            f"LabeledDataset(images={len(self)}, boxes={self.num_boxes}, "
            f"classes={list(self._classes)!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabeledDataset):
            return NotImplemented
        return self._records == other._records and self._classes == other._classes

    __hash__ = None  # type: ignore[assignment]

    def _replace(
        self, records: Iterable[ImageRecord], classes: Sequence[str] | None = None
    ) -> LabeledDataset:
        return LabeledDataset(
            records, self._classes if classes is None else classes, root=self.root
        )

    def class_id(self, label: str) -> int:
        """Index of ``label`` in :attr:`classes`."""
        try:
            return self._classes.index(label)
        except ValueError:
            raise NotFoundError(
                f"label {label!r} is not a class of this data set; classes: {list(self._classes)}"
            ) from None

    # ------------------------------------------------------------------ transforms
    def filter(
        self,
        predicate: Callable[[ImageRecord], bool] | None = None,
        *,
        labels: Iterable[str] | None = None,
    ) -> LabeledDataset:
        """Keep the images for which ``predicate`` is true; with ``labels``, keep only those
        objects (and only those classes, in their current order)."""
        records: Iterable[ImageRecord] = self._records
        if predicate is not None:
            records = [r for r in records if predicate(r)]
        if labels is None:
            return self._replace(records)
        keep = set(labels)
        unknown = keep - set(self._classes)
        if unknown:
            raise InvalidInputError(
                f"labels: expected names from {list(self._classes)}, got unknown {sorted(unknown)}"
            )
        kept = [
            r.model_copy(update={"objects": tuple(o for o in r.objects if o.label in keep)})
            for r in records
        ]
        return self._replace(kept, [c for c in self._classes if c in keep])

    def select(
        self, *, source: Literal["human", "model"], min_score: float | None = None
    ) -> LabeledDataset:
        """Keep only the objects made by ``source`` (every image stays, with its size).

        ``select(source="human")`` is what to train on: the labels people drew or accepted,
        without the model's unreviewed drafts; ``select(source="model")`` gives the drafts,
        with ``min_score`` those scoring at least that.
        """
        if source not in ("human", "model"):
            raise InvalidInputError(f'source: expected "human" or "model", got {source!r}')
        floor = -1.0 if min_score is None else float(min_score)
        records = [
            r
            if all(o.source == source and (o.score or 0.0) >= floor for o in r.objects)
            else r.model_copy(
                update={
                    "objects": tuple(
                        o
                        for o in r.objects
                        if o.source == source and (min_score is None or (o.score or 0.0) >= floor)
                    )
                }
            )
            for r in self._records
        ]
        return self._replace(records)

    def merge(self, *others: LabeledDataset) -> LabeledDataset:
        """Concatenate data sets; classes keep this data set's order, new ones are appended."""
        classes = list(self._classes)
        records = list(self._records)
        for other in others:
            classes += [c for c in other.classes if c not in classes]
            records += other.records
        roots = {d.root for d in (self, *others)}
        return LabeledDataset(records, classes, root=roots.pop() if len(roots) == 1 else None)

    def rename_labels(self, mapping: Mapping[str, str]) -> LabeledDataset:
        """Rename classes; two names mapped to one merge into that class."""
        unknown = set(mapping) - set(self._classes)
        if unknown:
            raise InvalidInputError(
                f"mapping: expected keys from {list(self._classes)}, got unknown {sorted(unknown)}"
            )
        classes: list[str] = []
        for c in self._classes:
            new = mapping.get(c, c)
            if new not in classes:
                classes.append(new)
        records = [
            r.model_copy(
                update={
                    "objects": tuple(
                        o.model_copy(update={"label": mapping.get(o.label, o.label)})
                        if o.label in mapping
                        else o
                        for o in r.objects
                    )
                }
            )
            for r in self._records
        ]
        return self._replace(records, classes)

    def split(self, val: float = 0.2, *, test: float = 0.0, seed: int = 0) -> DatasetSplit:
        """Split into train / val / test, seeded, deterministic and stratified by class.

        Each image is grouped by the rarest class it contains (images without boxes form their
        own group), so every class is spread over the parts in proportion. Within a group,
        images are ordered by their reference and shuffled with ``seed``: the result does not
        depend on the order of the records, and the same seed always gives the same split.

        Args:
            val: Fraction of images for validation, in ``[0, 1)``.
            test: Fraction of images for test.
            seed: Random seed.
        """
        if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
            raise InvalidInputError(
                f"split: expected val and test fractions in [0, 1) with val + test < 1, "
                f"got val={val}, test={test}"
            )
        image_count = Counter(lbl for r in self._records for lbl in {o.label for o in r.objects})
        groups: dict[tuple[int, str], list[int]] = defaultdict(list)
        for i, r in enumerate(self._records):
            labels = {o.label for o in r.objects}
            key = min(((image_count[lbl], lbl) for lbl in labels), default=(0, ""))
            groups[key].append(i)
        n = len(self._records)
        targets = {"val": round(n * val), "test": round(n * test)}
        part_of = np.zeros(n, dtype=np.int8)  # 0 train, 1 val, 2 test
        rng = np.random.default_rng(seed)
        ordered_keys = sorted(groups)
        shuffled: dict[tuple[int, str], list[int]] = {}
        for key in ordered_keys:
            members = sorted(groups[key], key=lambda i: (self._records[i].image, i))
            shuffled[key] = [members[j] for j in rng.permutation(len(members))]
        taken = {key: 0 for key in ordered_keys}
        for part, code in (("val", 1), ("test", 2)):
            frac = val if part == "val" else test
            quotas = {k: len(shuffled[k]) * frac for k in ordered_keys}
            counts = {k: math.floor(q) for k, q in quotas.items()}
            remaining = targets[part] - sum(counts.values())
            by_remainder = sorted(ordered_keys, key=lambda k: (-(quotas[k] - counts[k]), k))
            for k in by_remainder:
                if remaining <= 0:
                    break
                if taken[k] + counts[k] < len(shuffled[k]):
                    counts[k] += 1
                    remaining -= 1
            for k in ordered_keys:
                chosen = shuffled[k][taken[k] : taken[k] + counts[k]]
                part_of[chosen] = code
                taken[k] += len(chosen)
        parts = [
            [r for r, p in zip(self._records, part_of, strict=True) if p == c] for c in range(3)
        ]
        return DatasetSplit(*(self._replace(p) for p in parts))

    # ------------------------------------------------------------------ statistics
    def summary(self) -> DatasetSummary:
        """Counts per class and box size statistics."""
        boxes_per_class: Counter[str] = Counter()
        images_per_class: Counter[str] = Counter()
        widths: list[float] = []
        heights: list[float] = []
        pixel_areas: list[float] = []
        aspects: list[float] = []
        empty = crowd = 0
        for r in self._records:
            if not r.objects:
                empty += 1
            for lbl in {o.label for o in r.objects}:
                images_per_class[lbl] += 1
            rw, rh = r.width or 0, r.height or 0
            sized = 0 < rw < 1e300 and 0 < rh < 1e300  # 10**400 would overflow a float
            for o in r.objects:
                boxes_per_class[o.label] += 1
                crowd += o.is_crowd
                widths.append(o.box.width)
                heights.append(o.box.height)
                if sized:
                    pw, ph = o.box.width * rw, o.box.height * rh
                    pixel_areas.append(pw * ph)
                    if ph > 0:
                        aspects.append(pw / ph)
        w = np.asarray(widths)
        h = np.asarray(heights)
        classes = self._classes + tuple(sorted(set(boxes_per_class) - set(self._classes)))
        return DatasetSummary(
            images=len(self._records),
            boxes=len(widths),
            classes=classes,
            boxes_per_class={c: boxes_per_class.get(c, 0) for c in classes},
            images_per_class={c: images_per_class.get(c, 0) for c in classes},
            images_without_boxes=empty,
            crowd_boxes=crowd,
            box_width=BoxStats.of(w),
            box_height=BoxStats.of(h),
            box_area=BoxStats.of(w * h),
            box_pixel_area=BoxStats.of(pixel_areas),
            aspect_ratio=BoxStats.of(aspects),
        )

    def plot_class_distribution(self, *, title: str | None = None) -> Figure:
        """Bar chart of boxes and images per class (matplotlib ``Figure``)."""
        from detectkit.viz.charts import plot_class_distribution

        return plot_class_distribution(self, title=title)

    def validate(self, *, check_images: bool = True, progress: bool = False) -> ValidationReport:
        """Check the data set and return every problem found.

        Checks: labels missing from :attr:`classes`, zero-area boxes, duplicate images and,
        with ``check_images``, that local image files exist, are readable and have the stored
        size (a stored size that is the un-rotated size of an EXIF-rotated photo is reported as
        ``exif_swapped``). ``progress`` draws a progress bar on a terminal.
        """
        col = ProblemCollector("collect")
        known = set(self._classes)
        seen: dict[str, int] = {}
        records = track(
            self._records, description="validating", enabled=None if progress else False
        )
        for i, r in enumerate(records):
            loc = f"record {i} ({r.name})"
            if r.image in seen:
                col.add(
                    ProblemKind.DUPLICATE_IMAGE,
                    "image appears in more than one record",
                    severity=Severity.WARNING,
                    file=r.image,
                    location=loc,
                    expected="each image once",
                    got=f"also record {seen[r.image]}",
                    hint="merge the records' objects into one record",
                )
            else:
                seen[r.image] = i
            for j, o in enumerate(r.objects):
                if o.label not in known:
                    col.add(
                        ProblemKind.UNKNOWN_LABEL,
                        "label is not in the class list",
                        file=r.image,
                        location=f"{loc} object {j}",
                        field="label",
                        expected=f"one of {list(self._classes)}",
                        got=o.label,
                        hint="add the class or rename the label (rename_labels)",
                    )
                if o.box.width <= 0.0 or o.box.height <= 0.0:
                    col.add(
                        ProblemKind.EMPTY_BOX,
                        "box has zero width or height",
                        severity=Severity.WARNING,
                        file=r.image,
                        location=f"{loc} object {j}",
                        field="box",
                        expected="bottom > top",
                        got=repr(o.box),
                    )
            if check_images and not is_remote(r.image):
                check_image_file(r, col, location=loc)
        return col.report()

    # ------------------------------------------------------------------ formats
    @overload
    @classmethod
    def from_coco(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = ...,
        errors: Literal["raise"] = ...,
    ) -> LabeledDataset: ...
    @overload
    @classmethod
    def from_coco(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = ...,
        errors: Literal["collect"],
    ) -> tuple[LabeledDataset, ValidationReport]: ...
    @classmethod
    def from_coco(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = None,
        errors: ErrorMode = "raise",
    ) -> LabeledDataset | tuple[LabeledDataset, ValidationReport]:
        """Read a COCO JSON file (also the Azure ML Data Labeling COCO export).

        See :func:`detectkit.formats.coco.read_coco`.
        """
        from detectkit.formats.coco import read_coco

        ds, report = read_coco(path, images_root=images_root, errors=errors)
        return ds if errors == "raise" else (ds, report)

    @overload
    @classmethod
    def from_azureml(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = ...,
        errors: Literal["raise"] = ...,
    ) -> LabeledDataset: ...
    @overload
    @classmethod
    def from_azureml(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = ...,
        errors: Literal["collect"],
    ) -> tuple[LabeledDataset, ValidationReport]: ...
    @classmethod
    def from_azureml(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = None,
        errors: ErrorMode = "raise",
    ) -> LabeledDataset | tuple[LabeledDataset, ValidationReport]:
        """Read Azure ML JSONL (a ``.jsonl`` file or an ``MLTable`` folder).

        See :func:`detectkit.formats.azureml.read_azureml`.
        """
        from detectkit.formats.azureml import read_azureml

        ds, report = read_azureml(path, images_root=images_root, errors=errors)
        return ds if errors == "raise" else (ds, report)

    @overload
    @classmethod
    def from_voc(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = ...,
        difficult: Literal["crowd", "object"] = ...,
        errors: Literal["raise"] = ...,
    ) -> LabeledDataset: ...
    @overload
    @classmethod
    def from_voc(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = ...,
        difficult: Literal["crowd", "object"] = ...,
        errors: Literal["collect"],
    ) -> tuple[LabeledDataset, ValidationReport]: ...
    @classmethod
    def from_voc(
        cls,
        path: str | os.PathLike[str],
        *,
        images_root: str | os.PathLike[str] | None = None,
        difficult: Literal["crowd", "object"] = "crowd",
        errors: ErrorMode = "raise",
    ) -> LabeledDataset | tuple[LabeledDataset, ValidationReport]:
        """Read a folder of Pascal VOC XML files. See :func:`detectkit.formats.voc.read_voc`."""
        from detectkit.formats.voc import read_voc

        ds, report = read_voc(path, images_root=images_root, difficult=difficult, errors=errors)
        return ds if errors == "raise" else (ds, report)

    @overload
    @classmethod
    def from_yolo(
        cls, path: str | os.PathLike[str], *, errors: Literal["raise"] = ...
    ) -> LabeledDataset: ...
    @overload
    @classmethod
    def from_yolo(
        cls, path: str | os.PathLike[str], *, errors: Literal["collect"]
    ) -> tuple[LabeledDataset, ValidationReport]: ...
    @classmethod
    def from_yolo(
        cls, path: str | os.PathLike[str], *, errors: ErrorMode = "raise"
    ) -> LabeledDataset | tuple[LabeledDataset, ValidationReport]:
        """Read a YOLO folder (``images/``, ``labels/``, ``data.yaml`` or ``classes.txt``).

        See :func:`detectkit.formats.yolo.read_yolo`.
        """
        from detectkit.formats.yolo import read_yolo

        ds, report = read_yolo(path, errors=errors)
        return ds if errors == "raise" else (ds, report)

    def to_coco(self, path: str | os.PathLike[str], *, image_base_url: str | None = None) -> Path:
        """Write a COCO JSON file. See :func:`detectkit.formats.coco.write_coco`."""
        from detectkit.formats.coco import write_coco

        return write_coco(self, path, image_base_url=image_base_url)

    def to_azureml(
        self, path: str | os.PathLike[str], *, image_base_url: str | None = None
    ) -> Path:
        """Write Azure ML JSONL plus its ``MLTable`` file.

        See :func:`detectkit.formats.azureml.write_azureml`.
        """
        from detectkit.formats.azureml import write_azureml

        return write_azureml(self, path, image_base_url=image_base_url)

    def to_voc(self, path: str | os.PathLike[str]) -> Path:
        """Write a folder of Pascal VOC XML files. See :func:`detectkit.formats.voc.write_voc`."""
        from detectkit.formats.voc import write_voc

        return write_voc(self, path)

    def to_yolo(self, path: str | os.PathLike[str]) -> Path:
        """Write a YOLO folder. See :func:`detectkit.formats.yolo.write_yolo`."""
        from detectkit.formats.yolo import write_yolo

        return write_yolo(self, path)
