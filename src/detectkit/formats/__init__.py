"""Annotation formats: one module per format, pure read/write functions.

``read_dataset(path)`` recognises the format of a file or folder; ``write_dataset`` writes one.
Both go through one table, ``name -> FormatIO(read, write)``: a new format is one entry there
(and its name in :data:`Format`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, NamedTuple, overload

from detectkit.dataset import LabeledDataset
from detectkit.errors import ConflictError, InvalidInputError, NotFoundError
from detectkit.formats.azureml import read_azureml, write_azureml
from detectkit.formats.coco import read_coco, write_coco
from detectkit.formats.labelstudio import read_labelstudio, write_labelstudio
from detectkit.formats.voc import read_voc, write_voc
from detectkit.formats.yolo import data_yaml_text, read_yolo, write_yolo
from detectkit.images import is_remote
from detectkit.progress import track
from detectkit.validation import ErrorMode, ValidationReport

__all__ = [
    "FORMATS",
    "Format",
    "FormatIO",
    "copy_images_into",
    "detect_format",
    "read_dataset",
    "write_dataset",
]

#: The name of an annotation format, as ``format=`` takes it.
Format = Literal["azureml", "coco", "voc", "yolo", "labelstudio"]


class FormatIO(NamedTuple):
    """How one annotation format is read and written."""

    #: ``read(path, errors=..., [images_root=...]) -> (dataset, report)``
    read: Callable[..., tuple[LabeledDataset, ValidationReport]]
    #: ``write(dataset, path, [image_base_url=...]) -> main file or folder written``
    write: Callable[..., Path]
    #: the reader takes ``images_root=`` (image paths are relative to a folder of your choice)
    images_root: bool = True
    #: the writer takes ``image_base_url=`` (the format stores image URLs)
    image_urls: bool = False


_TABLE: Mapping[Format, FormatIO] = {
    "azureml": FormatIO(read_azureml, write_azureml, image_urls=True),
    "coco": FormatIO(read_coco, write_coco, image_urls=True),
    "voc": FormatIO(read_voc, write_voc),
    "yolo": FormatIO(read_yolo, write_yolo, images_root=False),
    "labelstudio": FormatIO(read_labelstudio, write_labelstudio),
}

#: Every format name, in table order.
FORMATS: tuple[Format, ...] = tuple(_TABLE)


def _io(fmt: str) -> FormatIO:
    for name, io in _TABLE.items():
        if name == fmt:
            return io
    raise InvalidInputError(f"format: expected one of {list(FORMATS)}, got {fmt!r}")


def detect_format(path: str | os.PathLike[str]) -> Format:
    """Recognise the annotation format of a file or folder.

    * ``.jsonl`` file, or a folder with an ``MLTable`` file or a ``.jsonl`` file: ``azureml``
    * ``.json`` file with ``images`` and ``annotations``, or a folder with one: ``coco``
    * ``.json`` file holding a list (of Label Studio tasks): ``labelstudio``
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
            return "labelstudio" if _starts_with(p, b"[") else "coco"
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


def _starts_with(path: Path, char: bytes) -> bool:
    """Whether the file's first character (after a BOM and white space) is ``char``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == char


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
        format: A name in :data:`FORMATS`; recognised when ``None``.
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
    io = _io(fmt)
    if io.images_root:
        return io.read(path, images_root=images_root, errors=errors)
    return io.read(path, errors=errors)


def write_dataset(
    dataset: LabeledDataset,
    path: str | os.PathLike[str],
    format: Format,
    *,
    image_base_url: str | None = None,
    copy_images: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``dataset`` in ``format``; returns the main file or folder written.

    A folder is written whole beside its destination (``.<name>.partial-*``) and moved into
    place only when complete, so an interrupted write leaves the destination as it was. A
    destination folder that is not empty is refused (:class:`~detectkit.ConflictError`)
    unless ``overwrite=True``, which replaces it whole: no file of the earlier data set is
    kept beside the new ones. A file destination (``.json`` / ``.jsonl``) that exists is
    refused the same way.

    Args:
        dataset: The data set.
        path: Output file or folder (see each format).
        format: A name in :data:`FORMATS`.
        image_base_url: (formats that store image URLs: ``azureml``, ``coco``) rewrite image
            references under this URL.
        copy_images: Copy (hard-link when possible) local images that are not already inside
            the output folder into ``<output folder>/images/``, so the output is a
            self-contained data set whose image references are relative. Without it, such
            images are referenced by absolute path, and reading the output back needs
            ``images_root=`` (readers refuse paths that leave the data set folder).
        overwrite: Replace a destination that already holds files.

    Raises:
        ConflictError: The destination holds files and ``overwrite`` is not set, or it holds
            the images being written (replacing it would delete them).
    """
    io = _io(format)
    if image_base_url is not None and not io.image_urls:
        stores = [name for name, entry in _TABLE.items() if entry.image_urls]
        raise InvalidInputError(
            f"image_base_url: only the {' and '.join(stores)} formats store image URLs, "
            f"got format {format!r}"
        )
    out = Path(path)
    if out.suffix.lower() in (".json", ".jsonl"):
        _refuse_existing([out, out.parent / "MLTable"] if format == "azureml" else [out], overwrite)
        if copy_images and image_base_url is None:
            _refuse_existing([out.parent / "images"], overwrite)
            dataset = copy_images_into(dataset, out.parent)
        return _write(io, dataset, out, image_base_url)
    _refuse_existing([out], overwrite, dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        staged = (
            copy_images_into(dataset, stage) if copy_images and image_base_url is None else dataset
        )
        _write(io, staged, stage, image_base_url)
        if format == "yolo":  # data.yaml names the folder: the final one, not the stage
            (stage / "data.yaml").write_text(data_yaml_text(dataset.classes, out), encoding="utf-8")
        _move_into_place(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def _write(io: FormatIO, dataset: LabeledDataset, out: Path, image_base_url: str | None) -> Path:
    if io.image_urls:
        return io.write(dataset, out, image_base_url=image_base_url)
    return io.write(dataset, out)


def _refuse_existing(
    paths: list[Path], overwrite: bool, dataset: LabeledDataset | None = None
) -> None:
    for p in paths:
        if not p.exists() and not p.is_symlink():
            continue
        if p.is_dir() and not p.is_symlink():
            if not any(p.iterdir()):
                continue
            if overwrite and dataset is not None:
                real = os.path.realpath(p) + os.sep
                inside = [r.image for r in dataset if not is_remote(r.image)]
                if any(os.path.realpath(i).startswith(real) for i in inside):
                    raise ConflictError(
                        f"{p}: holds images of the data set being written; overwriting it "
                        "would delete them. Write to another folder"
                    )
        if not overwrite:
            raise ConflictError(
                f"{p}: already exists and is not empty; detectkit does not mix two data sets. "
                "Choose an empty or new destination, or pass overwrite=True (--overwrite) "
                "to replace it whole"
            )


def _move_into_place(stage: Path, out: Path) -> None:
    """Move the complete ``stage`` folder to ``out``, replacing ``out`` whole."""
    if out.is_symlink() or out.is_file():
        out.unlink()
    elif out.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(stage, out)


def copy_images_into(
    dataset: LabeledDataset, folder: str | os.PathLike[str], *, progress: bool = True
) -> LabeledDataset:
    """A copy of ``dataset`` whose local images live inside ``folder``.

    A progress bar is drawn on a terminal (``progress=False`` to never draw it).
    Images already inside ``folder`` stay where they are; others are hard-linked (copied when
    linking is not possible) to ``folder/images/<path relative to the data set root>`` (or
    ``folder/images/<file name>`` when not under the root; clashing names get a numeric
    suffix). Remote images (URLs) are left as they are. The input is not changed.
    """
    target = Path(folder).resolve()
    root = dataset.root.resolve() if dataset.root is not None else None
    used: set[Path] = set()
    records = []
    for record in track(dataset, description="copying images", enabled=None if progress else False):
        if is_remote(record.image):
            records.append(record)
            continue
        src = Path(record.image).resolve()
        if target == src.parent or target in src.parents:
            records.append(record)
            continue
        rel = Path(src.name)
        if root is not None and root in src.parents:
            rel = src.relative_to(root)
            if rel.parts and rel.parts[0] == "images":
                rel = Path(*rel.parts[1:])
        dest = target / "images" / rel
        stem, n = dest.with_suffix(""), 1
        while dest in used:
            dest = stem.with_name(f"{stem.name}_{n}").with_suffix(src.suffix)
            n += 1
        used.add(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and not os.path.samefile(src, dest):
            dest.unlink()  # a file of another data set under this name: never kept
        if not dest.exists():
            try:
                os.link(src, dest)
            except OSError:
                shutil.copy2(src, dest)
        records.append(record.model_copy(update={"image": str(dest)}))
    return LabeledDataset(records, dataset.classes, root=target)
