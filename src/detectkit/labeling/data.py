"""What a labeling project is made from, and writing labels back to the user's own file.

:func:`read_input` turns what ``project.labeling.create`` takes (a folder of images, a labeled
data set file or folder in any format detectkit reads, or a
:class:`~detectkit.LabeledDataset`) into a data set; :func:`index_dataset` turns a data set
into the store's index and its existing labels. :func:`write_back` writes a labeled data set
over the COCO or Azure ML JSONL file it was read from, atomically (``detectkit label
--in-place``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from detectkit.dataset import Format, ImageRecord, LabeledDataset
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.formats import detect_format, read_dataset
from detectkit.formats.azureml import mltable_paths, write_azureml
from detectkit.formats.coco import write_coco
from detectkit.images import IMAGE_EXTENSIONS, image_info, is_remote
from detectkit.labeling.labels import ImageEntry, ImageLabels, image_id, is_draft
from detectkit.labeling.records import ImageState
from detectkit.labeling.store import write_atomic

__all__ = [
    "IN_PLACE_FORMATS",
    "check_classes",
    "index_dataset",
    "read_input",
    "scan_images",
    "source_file",
    "write_back",
]

#: Formats ``--in-place`` writes back: one annotation file, replaced atomically.
IN_PLACE_FORMATS: tuple[Format, ...] = ("azureml", "coco")


def check_classes(classes: Sequence[str] | str) -> tuple[str, ...]:
    """Class names as a tuple: non-empty, unique, without surrounding spaces or line breaks.

    A single string is split on commas (``"cat,dog"``), as the command line gives it.

    Raises:
        InvalidInputError: Naming the bad class.
    """
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    names = tuple(classes)
    if not names:
        raise InvalidInputError("classes: expected at least one class name, got none")
    seen: set[str] = set()
    for k, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise InvalidInputError(
                f"classes[{k}]: expected a non-empty name without surrounding spaces, got {name!r}"
            )
        if "\n" in name or "\r" in name or len(name) > 100:
            raise InvalidInputError(
                f"classes[{k}]: expected one line of at most 100 characters, got {name[:40]!r}"
            )
        if name in seen:
            raise InvalidInputError(f"classes: expected unique names, got {name!r} twice")
        seen.add(name)
    return names


def scan_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted; hidden files and folders skipped)."""
    root = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return found


def read_input(data: LabeledDataset | str | os.PathLike[str]) -> LabeledDataset:
    """The data set a labeling project starts from.

    A :class:`~detectkit.LabeledDataset` is taken as it is. A path is read as a labeled data set
    when detectkit recognises its format (its labels are kept), else as a folder of images
    (searched recursively).

    Raises:
        NotFoundError: The path does not exist.
        InvalidInputError: A folder with no images, or a data set that cannot be read.
    """
    if isinstance(data, LabeledDataset):
        return data
    path = Path(data)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or folder")
    if path.is_file() or _has_annotations(path):
        return read_dataset(path)
    images = scan_images(path)
    if not images:
        raise InvalidInputError(
            f"{path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} files, "
            "recursively) and no annotation files recognised"
        )
    records = []
    for image in images:
        info = image_info(image)
        records.append(
            ImageRecord(
                image=str(image.resolve()), width=info.width, height=info.height, format=info.format
            )
        )
    return LabeledDataset(records, (), root=path.resolve())


def source_file(data: str | os.PathLike[str]) -> tuple[Path, Format]:
    """The one annotation file of a COCO or Azure ML JSONL data set (``--in-place``).

    Raises:
        InvalidInputError: Another format, or no single annotation file.
    """
    path = Path(data)
    fmt = detect_format(path)
    if fmt not in IN_PLACE_FORMATS:
        raise InvalidInputError(
            f"{path}: --in-place writes back COCO and Azure ML JSONL files, got {fmt}; export "
            "a new version instead (leave out --in-place)"
        )
    if path.is_file():
        if path.name == "MLTable":
            path = _single(mltable_paths(path), path)
        return path, fmt
    if fmt == "azureml":
        if (path / "MLTable").is_file():
            return _single(mltable_paths(path / "MLTable"), path), fmt
        return _single(sorted(path.glob("*.jsonl")), path), fmt
    candidates = [path / "annotations.json"] if (path / "annotations.json").is_file() else []
    return _single(candidates or sorted(path.glob("*.json")), path), fmt


def index_dataset(
    dataset: LabeledDataset,
    folder: Path,
    *,
    originals: Sequence[ImageRecord] | None = None,
) -> tuple[list[ImageEntry], list[ImageLabels]]:
    """The store's index and existing labels for a data set whose images lie in ``folder``.

    Images with human boxes start ``labeled``, images with only a model's drafts
    (``source="model"``) ``prelabeled`` (the drafts are kept, with their score and model
    version), the others ``unlabeled``.

    Args:
        dataset: The data set (local images inside ``folder``).
        folder: The image folder of the store's source.
        originals: The records the user gave, in the same order, whose ``image`` becomes
            each entry's original reference and whose objects (with their provenance) become
            its labels (default: ``dataset``'s own).

    Raises:
        InvalidInputError: An image is a URL or lies outside ``folder``.
    """
    base = os.path.realpath(folder).rstrip(os.sep) + os.sep
    refs = originals if originals is not None else dataset.records
    if len(refs) != len(dataset):
        raise InvalidInputError(
            f"expected {len(dataset)} original records, got {len(refs)} (they must match)"
        )
    entries: list[ImageEntry] = []
    labels: list[ImageLabels] = []
    taken: set[str] = set()
    for record, original in zip(dataset.records, refs, strict=True):
        if is_remote(record.image):
            raise InvalidInputError(
                f"image {record.image}: a URL; label remote images on the Azure backend, or "
                "download them first"
            )
        real = os.path.realpath(record.image)
        if not real.startswith(base):
            raise InvalidInputError(f"image {record.image}: expected a file inside {folder}")
        rel = real[len(base) :].replace(os.sep, "/")
        entry = ImageEntry(
            id=image_id(rel, taken),
            path=rel,
            name=record.name,
            width=record.width,
            height=record.height,
            ref=original.image,
        )
        taken.add(entry.id)
        entries.append(entry)
        # the user's own objects: their provenance (draft or human) survives any asset format
        objects = original.objects if originals is not None else record.objects
        if objects:
            labels.append(
                ImageLabels(
                    id=entry.id,
                    state=ImageState.PRELABELED
                    if all(is_draft(o) for o in objects)
                    else ImageState.LABELED,
                    objects=objects,
                    width=record.width,
                    height=record.height,
                )
            )
    return entries, labels


def write_back(dataset: LabeledDataset, target: Path, fmt: Format) -> Path:
    """Write ``dataset`` over the COCO or Azure ML JSONL file ``target``, atomically.

    The new file is written beside ``target`` under a temporary name (so relative image
    references come out the same), flushed to disk and renamed over it; an ``MLTable`` beside
    a JSONL file is left as it was.

    Raises:
        InvalidInputError: ``fmt`` is not COCO or Azure ML.
    """
    if fmt not in IN_PLACE_FORMATS:
        raise InvalidInputError(f"format: --in-place writes coco or azureml, got {fmt!r}")
    folder = target.parent
    suffix = ".jsonl" if fmt == "azureml" else ".json"
    tmp = folder / f".{target.name}.detectkit-{os.getpid()}{suffix}"
    mltable = folder / "MLTable"
    before = mltable.read_bytes() if mltable.is_file() else None
    try:
        if fmt == "coco":
            write_coco(dataset, tmp)
        else:
            write_azureml(dataset, tmp)
            if before is None:
                mltable.unlink(missing_ok=True)
            else:  # write_azureml pointed MLTable at the temporary name: restore it first
                write_atomic(mltable, before)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _has_annotations(folder: Path) -> bool:
    try:
        detect_format(folder)
    except InvalidInputError:
        return False
    return True


def _single(candidates: Sequence[Path], where: Path) -> Path:
    if len(candidates) != 1:
        raise InvalidInputError(
            f"{where}: --in-place needs exactly one annotation file, found "
            f"{[str(c) for c in candidates] or 'none'}; pass that file as DATA"
        )
    return Path(candidates[0])
