"""Pascal VOC: one XML file per image.

Coordinates
-----------
VOC ``<bndbox>`` values are **1-based, inclusive pixel indices**: a box with ``xmin=1`` and
``xmax=10`` covers the first ten pixel columns of the image. detectkit works in continuous
coordinates (pixel column ``i``, counted from 1, spans ``[i - 1, i]``), so::

    x1 = xmin - 1        x2 = xmax        (box width  = xmax - xmin + 1)
    y1 = ymin - 1        y2 = ymax        (box height = ymax - ymin + 1)
    top_x = x1 / width   bottom_x = x2 / width   (and the same for y with height)

:func:`write_voc` inverts this: ``xmin = round(x1) + 1``, ``xmax = round(x2)``. VOC stores
integers, so a pixel coordinate is first rounded to 6 decimals (which removes the noise of the
normalization) and then to the nearest integer, halves rounded up (``47.5`` -> ``48``). A box
read from VOC integers therefore comes back to the same integers after any detour through
another format. Float coordinates such as ``48.5`` are accepted when reading.

Coordinates up to one pixel outside the image (``xmin`` of ``0``, written by 0-based tools, or
``xmax = width + 1``) are clipped with a ``clipped`` warning; further out they are an
``out_of_range`` error for that object.

Images
------
The image is found from ``<path>`` and ``<filename>``, resolved inside ``images_root``: the first
of ``<path>``, ``<filename>`` and the last component of ``<path>`` that names an existing file
inside ``images_root`` wins; when none exists the record keeps ``<filename>`` (the image may be
added later; :meth:`~detectkit.LabeledDataset.validate` reports it). References that leave
``images_root`` are never followed (annotators' absolute paths such as ``C:\\data\\img.jpg`` are
simply skipped). ``images_root`` defaults to the folder of the XML files, or to the sibling
``JPEGImages/`` folder for the VOC layout (``Annotations/`` + ``JPEGImages/``).

``<size>`` gives the image size; when it is missing or 0 the size is read from the image header,
EXIF orientation applied (:func:`detectkit.images.image_info`).

VOC has no notion of an image without an XML file: image files without one are not records.
An XML file with no ``<object>`` is an image without boxes.

Other fields
------------
``<difficult>1`` becomes ``is_crowd=True`` with ``difficult="crowd"`` (the default, as Azure ML's
own VOC converter does, so the COCO protocol ignores those objects), or a normal object with
``difficult="object"``. ``<pose>``, ``<truncated>``, ``<occluded>``, ``<segmented>`` and
``<part>`` are not kept; :func:`write_voc` writes ``Unspecified``, ``0`` and ``0``, and drops
scores (VOC has none).

Security: documents with a ``<!DOCTYPE>`` or ``<!ENTITY>`` declaration are refused (no entity
expansion, no external entities), using only the standard library's expat parser.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal
from xml.parsers import expat

from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError, InvalidInputError, NotFoundError
from detectkit.formats._common import (
    MAX_IMAGE_SIDE,
    RefResolver,
    gc_paused,
    inside_folder,
    output_ref,
    to_float,
    unique_stems,
)
from detectkit.formats.voc_xml import ForbiddenXML, XmlElement, parse_xml
from detectkit.images import image_info, is_remote
from detectkit.validation import (
    ErrorMode,
    ProblemCollector,
    ProblemKind,
    Severity,
    ValidationReport,
)

__all__ = ["read_voc", "write_voc"]

DifficultMode = Literal["crowd", "object"]

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


# ---------------------------------------------------------------------------- reading
def read_voc(
    path: str | os.PathLike[str],
    *,
    images_root: str | os.PathLike[str] | None = None,
    difficult: DifficultMode = "crowd",
    origin: Literal[0, 1] = 1,
    errors: ErrorMode = "raise",
) -> tuple[LabeledDataset, ValidationReport]:
    """Read Pascal VOC XML annotations.

    Args:
        path: A folder of ``.xml`` files, a VOC folder holding ``Annotations/`` (and
            ``JPEGImages/``), or one ``.xml`` file.
        images_root: Folder image references are resolved in. Default: the folder of the XML
            files, or ``JPEGImages/`` beside ``Annotations/`` in the VOC layout.
        difficult: ``"crowd"`` turns ``<difficult>1`` objects into crowd regions (ignored by
            the COCO protocol, as Azure ML does); ``"object"`` keeps them as normal objects.
        origin: ``1`` (default): ``<bndbox>`` values are 1-based inclusive pixel indices, the
            VOC devkit's convention (see the module docs). ``0``: they are 0-based corner
            coordinates (``x1 = xmin``, ``x2 = xmax``), as written by tools that count pixels
            from 0 and as Azure ML's own VOC converter reads every file (``xmin / width``).
        errors: ``"raise"`` stops at the first error; ``"collect"`` keeps every valid image and
            object and lists every problem (file, ``<object>`` number and line, field).

    Returns:
        The data set (classes: the sorted unique labels; one record per XML file, in file name
        order) and the report of every problem found (warnings only in ``raise`` mode).

    Raises:
        NotFoundError: ``path`` does not exist or holds no ``.xml`` file.
        InvalidAnnotationError: In ``raise`` mode, the first error found.

    Example:
        >>> ds, report = read_voc("cards/Annotations")  # doctest: +SKIP
    """
    if difficult not in ("crowd", "object"):
        raise InvalidInputError(f'difficult: expected "crowd" or "object", got {difficult!r}')
    if origin not in (0, 1):
        raise InvalidInputError(f"origin: expected 0 or 1, got {origin!r}")
    files, default_root = _xml_files(Path(path))
    root = Path(images_root) if images_root is not None else default_root
    col = ProblemCollector(errors)
    if Path(path).is_dir():  # the link rule: no annotation file read from outside the folder
        files = [f for f in files if inside_folder(f, f.parent, col, what="annotation file")]
    probe = RefResolver(root, ProblemCollector("collect"))  # candidates: escapes not reported
    refs = RefResolver(root, col)
    with gc_paused():
        records = [
            rec
            for xml_path in files
            if (rec := _read_file(xml_path, probe, refs, difficult, origin, col)) is not None
        ]
    return LabeledDataset(records, root=root.resolve()), col.report()


def _xml_files(p: Path) -> tuple[list[Path], Path]:
    """The XML files to read and the default images root."""
    if not p.exists():
        raise NotFoundError(f"{p}: no such file or folder (expected VOC .xml annotations)")
    if p.is_file():
        return [p], _default_images_root(p.parent)
    folder = p / "Annotations" if (p / "Annotations").is_dir() else p
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() == ".xml" and f.is_file())
    if not files:
        raise NotFoundError(
            f"{folder}: no .xml files found; pass a folder of Pascal VOC XML files, "
            "a VOC folder with Annotations/, or one .xml file"
        )
    return files, _default_images_root(folder)


def _default_images_root(xml_folder: Path) -> Path:
    if xml_folder.name == "Annotations" and (xml_folder.parent / "JPEGImages").is_dir():
        return xml_folder.parent / "JPEGImages"
    return xml_folder


def _read_file(
    xml_path: Path,
    probe: RefResolver,
    refs: RefResolver,
    difficult: DifficultMode,
    origin: int,
    col: ProblemCollector,
) -> ImageRecord | None:
    file = col.file = str(xml_path)  # every problem of this file names it
    doc = _parse_file(xml_path, col)
    if doc is None:
        return None
    image = _image_ref(doc, probe, refs, col, file)
    if image is None:
        return None
    size = _image_size(doc, image, col, file)
    if size is None:
        return None
    width, height = size
    objects: list[ObjectAnnotation] = []
    for k, obj in enumerate(doc.findall("object"), start=1):
        ann = _read_object(
            obj, f"<object> #{k} (line {obj.line})", width, height, difficult, origin, col, file
        )
        if ann is not None:
            objects.append(ann)
    return ImageRecord(image=image, width=width, height=height, objects=tuple(objects))


def _parse_file(xml_path: Path, col: ProblemCollector) -> XmlElement | None:
    file = str(xml_path)
    try:
        doc = parse_xml(xml_path.read_bytes())
    except OSError as exc:
        col.add(ProblemKind.PARSE, "file cannot be read", file=file, got=type(exc).__name__)
        return None
    except ForbiddenXML as exc:
        col.add(
            ProblemKind.PARSE,
            f"document contains {exc.what}; DTDs and entities are refused for safety",
            file=file,
            location=f"line {exc.line}",
            expected="a plain <annotation> document",
            got=exc.what,
            hint="remove the DOCTYPE/ENTITY declarations from the file",
        )
        return None
    except expat.ExpatError as exc:
        col.add(
            ProblemKind.PARSE,
            "file is not well-formed XML",
            file=file,
            location=f"line {exc.lineno}, column {exc.offset}",
            got=expat.errors.messages[exc.code],
            hint="fix or re-export the file",
        )
        return None
    if doc.tag != "annotation":
        col.add(
            ProblemKind.PARSE,
            "root element is not <annotation>",
            file=file,
            location=f"line {doc.line}",
            expected="<annotation>",
            got=f"<{doc.tag}>",
            hint="pass Pascal VOC XML files only",
        )
        return None
    return doc


def _image_ref(
    doc: XmlElement, probe: RefResolver, refs: RefResolver, col: ProblemCollector, file: str
) -> str | None:
    """The first of ``<path>``, ``<filename>``, basename of ``<path>`` that exists inside the
    root (``probe`` reports nothing), else ``<filename>`` (``refs`` reports an escape)."""
    filename = (doc.findtext("filename") or "").replace("\\", "/")
    path = (doc.findtext("path") or "").replace("\\", "/")
    basename = path.rsplit("/", 1)[-1]
    candidates = [ref for ref in (path, filename, basename) if ref]
    if not candidates:
        col.add(
            ProblemKind.MISSING_FIELD,
            "the annotation names no image",
            file=file,
            field="filename",
            expected="<filename> or <path>",
            got="neither",
            hint="add <filename> with the image file name",
        )
        return None
    for ref in candidates:
        resolved = probe.resolve(ref, location="")  # None: escapes the root, never followed
        if resolved is not None and (is_remote(resolved) or os.path.isfile(resolved)):
            return resolved
    el = doc.find("filename") or doc.find("path")
    location = f"line {el.line}" if el is not None else "<annotation>"
    return refs.resolve(filename or basename, location=location, field="filename")


def _image_size(
    doc: XmlElement, image: str, col: ProblemCollector, file: str
) -> tuple[int, int] | None:
    stored: list[int] = []
    for name in ("width", "height"):
        raw = doc.findtext(f"size/{name}")
        value = to_float(raw) if raw else None
        if raw and (value is None or value < 0 or not value.is_integer() or value > MAX_IMAGE_SIDE):
            col.add(
                ProblemKind.BAD_VALUE,
                "image size is not a whole number; the size is read from the image",
                severity=Severity.WARNING,
                file=file,
                field=f"size/{name}",
                expected=f"a positive integer up to {MAX_IMAGE_SIDE}",
                got=raw,
            )
            value = None
        if value:
            stored.append(int(value))
    if len(stored) == 2:
        return stored[0], stored[1]
    if is_remote(image):
        col.add(
            ProblemKind.MISSING_FIELD,
            "image size is missing and the image is remote",
            file=file,
            field="size",
            expected="<size><width> and <height>",
            got="missing or 0",
            hint="add <size> to the XML file",
        )
        return None
    try:
        info = image_info(image)
    except NotFoundError:
        col.add(
            ProblemKind.MISSING_IMAGE,
            "image size is missing and the image file does not exist",
            file=file,
            field="size",
            expected=f"<size> in the XML or an image at {image}",
            got="neither",
            hint="add <size>, or pass images_root= pointing at the images",
        )
        return None
    except InvalidAnnotationError as exc:
        col.add(
            ProblemKind.UNREADABLE_IMAGE,
            "image size is missing and the image file cannot be read",
            file=file,
            field="size",
            expected=f"a readable image at {image}",
            got=exc.got,
            hint="add <size> to the XML file or re-export the image",
        )
        return None
    return info.width, info.height


def _read_object(
    obj: XmlElement,
    loc: str,
    width: int,
    height: int,
    difficult: DifficultMode,
    origin: int,
    col: ProblemCollector,
    file: str,
) -> ObjectAnnotation | None:
    name = obj.findtext("name")
    if not name:
        col.add(
            ProblemKind.MISSING_FIELD,
            "object has no class name",
            file=file,
            location=loc,
            field="name",
            expected="<name>class</name>",
            got="missing" if name is None else "empty",
        )
        return None
    pixels: list[float] = []
    for corner in _CORNERS:
        raw = obj.findtext(f"bndbox/{corner}")
        value = to_float(raw) if raw else None
        if value is None:
            col.add(
                ProblemKind.MISSING_FIELD if not raw else ProblemKind.BAD_VALUE,
                "box coordinate is missing" if not raw else "box coordinate is not a number",
                file=file,
                location=loc,
                field=f"bndbox/{corner}",
                expected="a pixel coordinate such as 48 or 48.5",
                got=raw if raw else "missing",
            )
            return None
        pixels.append(value)
    box = _pixel_box(pixels, width, height, col, file, loc, origin)
    if box is None:
        return None
    return ObjectAnnotation(
        label=name, box=box, is_crowd=difficult == "crowd" and _is_difficult(obj, col, file, loc)
    )


def _is_difficult(obj: XmlElement, col: ProblemCollector, file: str, loc: str) -> bool:
    raw = obj.findtext("difficult")
    if not raw:
        return False
    value = raw.lower()
    if value in ("1", "true"):
        return True
    if value not in ("0", "false"):
        col.add(
            ProblemKind.BAD_VALUE,
            "difficult flag is not 0 or 1; the object is read as not difficult",
            severity=Severity.WARNING,
            file=file,
            location=loc,
            field="difficult",
            expected="0 or 1",
            got=raw,
        )
    return False


def _pixel_box(
    pixels: list[float],
    width: int,
    height: int,
    col: ProblemCollector,
    file: str,
    loc: str,
    origin: int = 1,
) -> Box | None:
    """Continuous corners from VOC values (1-based inclusive indices, or 0-based corners with
    ``origin=0``), checked against the image."""
    xmin, ymin, xmax, ymax = pixels
    shift = 1.0 if origin == 1 else 0.0
    corners = [xmin - shift, ymin - shift, xmax, ymax]
    limits = (width, height, width, height)
    for k, (name, limit) in enumerate(zip(_CORNERS, limits, strict=True)):
        value = corners[k]
        if 0.0 <= value <= limit:
            continue
        if -1.0 <= value <= limit + 1.0:  # one pixel out: 0-based tools write xmin 0
            clipped = min(max(value, 0.0), float(limit))
            col.add(
                ProblemKind.CLIPPED,
                "coordinate up to one pixel outside the image was clipped",
                severity=Severity.WARNING,
                file=file,
                location=loc,
                field=f"bndbox/{name}",
                expected=f"1-based pixel index in [1, {limit}]",
                got=pixels[k],
                hint=f"stored as {clipped + 1 if k < 2 else clipped:g}",
            )
            corners[k] = clipped
            continue
        fits_rotated = xmax <= height + 1 and ymax <= width + 1 and xmin >= 0 and ymin >= 0
        col.add(
            ProblemKind.OUT_OF_RANGE,
            "box coordinate is outside the image",
            file=file,
            location=loc,
            field=f"bndbox/{name}",
            expected=f"1-based pixel index in [1, {limit}] (image {width}x{height})",
            got=pixels[k],
            hint=(
                f"the box fits the image rotated by 90 degrees ({height}x{width}): <size> may be "
                "the un-rotated size of an EXIF-rotated photo; store the displayed size"
                if fits_rotated
                else "fix <size> or the box"
            ),
        )
        return None
    x1, y1, x2, y2 = corners
    for lo, hi, lo_name, hi_name, lo_raw, hi_raw in (
        (x1, x2, "xmin", "xmax", xmin, xmax),
        (y1, y2, "ymin", "ymax", ymin, ymax),
    ):
        if hi < lo:
            col.add(
                ProblemKind.INVERTED_BOX,
                f"box is inverted: {hi_name} {hi_raw:g} < {lo_name} {lo_raw:g} - 1",
                file=file,
                location=loc,
                field=f"bndbox/{hi_name}",
                expected=f">= {lo_name} - 1 ({lo_raw - 1:g})",
                got=hi_raw,
                hint="swap the corners or fix the annotation",
            )
            return None
    return Box.trusted(
        min(x1 / width, 1.0), min(y1 / height, 1.0), min(x2 / width, 1.0), min(y2 / height, 1.0)
    )


# ---------------------------------------------------------------------------- writing
def write_voc(dataset: LabeledDataset, path: str | os.PathLike[str]) -> Path:
    """Write one Pascal VOC XML file per image into the folder ``path``.

    Files are named after the image (``img_0001.png`` -> ``img_0001.xml``; a second image with
    the same stem gets ``img_0001_2.xml``). ``<filename>`` is the image file name; ``<path>`` is
    the image path relative to ``path`` when the image lies inside it, else absolute (or the
    URL). Reading the folder back needs ``images_root=`` a folder holding the images when they
    lie outside ``path``. Box corners follow the 1-based inclusive convention of the module
    docstring (``xmin = round(x1) + 1``, ``xmax = round(x2)``); crowd objects are written
    ``<difficult>1</difficult>``. Missing image sizes are read from the image files. The
    data set is not modified.

    Args:
        dataset: The data set to write.
        path: Output folder (created when missing); existing files of the same names are
            replaced.

    Returns:
        The output folder.

    Raises:
        NotFoundError: A record has no stored size and its image file does not exist.
        InvalidAnnotationError: A record has no stored size and its image cannot be read.
    """
    out = Path(path)
    documents = {
        stem: _to_xml(record, _size_of(record, i), out, dataset.root)
        for i, (record, stem) in enumerate(zip(dataset, unique_stems(dataset), strict=True))
    }
    out.mkdir(parents=True, exist_ok=True)
    for stem, text in documents.items():
        (out / f"{stem}.xml").write_text(text, encoding="utf-8")
    return out


def _size_of(record: ImageRecord, index: int) -> tuple[int, int]:
    """The record's stored ``(width, height)``, else read from its image file."""
    if record.size is not None:
        return record.size
    try:
        info = image_info(record.image)
    except NotFoundError as exc:
        raise NotFoundError(
            f"record {index} ({record.image}): no stored width/height and the image file "
            "does not exist; VOC needs the image size - store width/height in the record "
            "or fix the image path"
        ) from exc
    return info.width, info.height


def _to_xml(record: ImageRecord, size: tuple[int, int], out: Path, root: Path | None) -> str:
    width, height = size
    ann = ET.Element("annotation")
    folder = "" if is_remote(record.image) else Path(record.image).parent.name
    _sub(ann, "folder", folder)
    _sub(ann, "filename", record.name)
    _sub(ann, "path", output_ref(record, out, image_base_url=None, root=root))
    _sub(_sub(ann, "source"), "database", "Unknown")
    size_el = _sub(ann, "size")
    _sub(size_el, "width", str(width))
    _sub(size_el, "height", str(height))
    _sub(size_el, "depth", "3")
    _sub(ann, "segmented", "0")
    for obj in record.objects:
        x1, y1, x2, y2 = obj.box.to_xyxy(width, height)
        el = _sub(ann, "object")
        _sub(el, "name", obj.label)
        _sub(el, "pose", "Unspecified")
        _sub(el, "truncated", "0")
        _sub(el, "difficult", "1" if obj.is_crowd else "0")
        bnd = _sub(el, "bndbox")
        _sub(bnd, "xmin", str(to_pixel_index(x1) + 1))
        _sub(bnd, "ymin", str(to_pixel_index(y1) + 1))
        _sub(bnd, "xmax", str(to_pixel_index(x2)))
        _sub(bnd, "ymax", str(to_pixel_index(y2)))
    ET.indent(ann, space="\t")
    return ET.tostring(ann, encoding="unicode") + "\n"


def to_pixel_index(value: float) -> int:
    """Round a continuous pixel coordinate to an integer: to 6 decimals first (removing the
    noise of normalization), then to the nearest integer, halves up."""
    return math.floor(round(value, 6) + 0.5)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el
