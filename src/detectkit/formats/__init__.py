"""Annotation formats: one module per format, pure read/write functions.

``read_dataset(path)`` recognises the format of a file or folder; ``write_dataset`` writes one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, overload

from detectkit.dataset import Format, LabeledDataset
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.validation import ErrorMode, ValidationReport

__all__ = ["FORMATS", "detect_format", "read_dataset", "write_dataset"]

FORMATS: tuple[Format, ...] = ("azureml", "coco", "voc", "yolo")


def detect_format(path: str | os.PathLike[str]) -> Format:
    """Recognise the annotation format of a file or folder.

    * ``.jsonl`` file, or a folder with an ``MLTable`` file or a ``.jsonl`` file: ``azureml``
    * ``.json`` file with ``images`` and ``annotations``, or a folder with one: ``coco``
    * ``.xml`` file, or a folder with ``.xml`` files (also under ``Annotations/``): ``voc``
    * a folder with ``data.yaml`` / ``classes.txt`` / ``labels/``: ``yolo``
    """
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"{p}: no such file or folder")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".jsonl" or p.name == "MLTable":
            return "azureml"
        if suffix == ".json":
            return "coco"
        if suffix == ".xml":
            return "voc"
        if suffix in (".yaml", ".yml") or p.name == "classes.txt":
            return "yolo"
        raise InvalidInputError(
            f"{p}: cannot tell the annotation format from the file name; "
            f"pass format= one of {list(FORMATS)}"
        )
    if (p / "MLTable").exists() or any(p.glob("*.jsonl")):
        return "azureml"
    if (p / "data.yaml").exists() or (p / "classes.txt").exists() or (p / "labels").is_dir():
        return "yolo"
    if any(p.glob("*.xml")) or (p / "Annotations").is_dir():
        return "voc"
    for candidate in sorted(p.glob("*.json")):
        try:
            with candidate.open("rb") as fh:
                head = fh.read(1 << 16).decode("utf-8", "ignore")
        except OSError:
            continue
        if '"images"' in head or '"annotations"' in head or '"categories"' in head:
            return "coco"
    raise InvalidInputError(
        f"{p}: no annotation files recognised (looked for MLTable/*.jsonl, *.json with COCO "
        f"keys, *.xml, data.yaml/classes.txt/labels/); pass format= one of {list(FORMATS)}"
    )


@overload
def read_dataset(
    path: str | os.PathLike[str],
    format: Format | None = ...,
    *,
    images_root: str | os.PathLike[str] | None = ...,
    errors: Literal["raise"] = ...,
) -> LabeledDataset: ...
@overload
def read_dataset(
    path: str | os.PathLike[str],
    format: Format | None = ...,
    *,
    images_root: str | os.PathLike[str] | None = ...,
    errors: Literal["collect"],
) -> tuple[LabeledDataset, ValidationReport]: ...
def read_dataset(
    path: str | os.PathLike[str],
    format: Format | None = None,
    *,
    images_root: str | os.PathLike[str] | None = None,
    errors: ErrorMode = "raise",
) -> LabeledDataset | tuple[LabeledDataset, ValidationReport]:
    """Read a labeled data set in any supported format.

    Args:
        path: A file or folder.
        format: ``azureml``, ``coco``, ``voc`` or ``yolo``; recognised when ``None``.
        images_root: Folder image paths are relative to (default: next to the annotations).
            Ignored for YOLO, whose images live in the folder itself.
        errors: ``"raise"`` stops at the first problem with
            :class:`~detectkit.InvalidAnnotationError`; ``"collect"`` returns
            ``(dataset, report)`` with every valid record and every problem.

    Example:
        >>> import detectkit
        >>> ds = detectkit.read_dataset("cards/")  # doctest: +SKIP
    """
    fmt = format or detect_format(path)
    ds, report = _read(path, fmt, images_root, errors)
    return ds if errors == "raise" else (ds, report)


def _read(
    path: str | os.PathLike[str],
    fmt: str,
    images_root: str | os.PathLike[str] | None,
    errors: ErrorMode,
) -> tuple[LabeledDataset, ValidationReport]:
    if fmt == "azureml":
        from detectkit.formats.azureml import read_azureml

        return read_azureml(path, images_root=images_root, errors=errors)
    if fmt == "coco":
        from detectkit.formats.coco import read_coco

        return read_coco(path, images_root=images_root, errors=errors)
    if fmt == "voc":
        from detectkit.formats.voc import read_voc

        return read_voc(path, images_root=images_root, errors=errors)
    if fmt == "yolo":
        from detectkit.formats.yolo import read_yolo

        return read_yolo(path, errors=errors)
    raise InvalidInputError(f"format: expected one of {list(FORMATS)}, got {fmt!r}")


def write_dataset(
    dataset: LabeledDataset,
    path: str | os.PathLike[str],
    format: Format,
    *,
    image_base_url: str | None = None,
) -> Path:
    """Write ``dataset`` in ``format``; returns the main file or folder written.

    ``image_base_url`` (``azureml`` and ``coco``) rewrites image references under that URL.
    """
    if format == "azureml":
        return dataset.to_azureml(path, image_base_url=image_base_url)
    if format == "coco":
        return dataset.to_coco(path, image_base_url=image_base_url)
    if image_base_url is not None:
        raise InvalidInputError(
            f"image_base_url: only the azureml and coco formats store image URLs, got format {format!r}"
        )
    if format == "voc":
        return dataset.to_voc(path)
    if format == "yolo":
        return dataset.to_yolo(path)
    raise InvalidInputError(f"format: expected one of {list(FORMATS)}, got {format!r}")


def _is_json(path: Path) -> bool:  # pragma: no cover - small helper kept for readers
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True
