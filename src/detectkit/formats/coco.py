"""COCO object-detection JSON, including the Azure ML Data Labeling COCO export.

A COCO file holds three lists: ``images`` (``id``, ``file_name``, ``width``, ``height``),
``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox`` as pixel
``[x, y, width, height]``, ``iscrowd``) and ``categories`` (``id``, ``name``). The class order of
a data set read from COCO is the categories sorted by id; :func:`write_coco` numbers categories,
images and annotations from 1 in order, so every id is unique and none is 0.

The Azure ML Data Labeling export differs in three ways that :func:`read_coco` handles: ``bbox``
is **normalized** (fractions of the image), ``area`` is ``0.0``, and each image carries
``coco_url: AmlDatastore://<datastore>/<path>`` (with ``width``/``height`` sometimes ``0.0``).

The ``annotations`` list is read in :mod:`detectkit.formats.coco_annotations`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.formats._common import (
    MAX_IMAGE_SIDE,
    RefResolver,
    RefWriter,
    datastore_url,
    gc_paused,
    is_text,
    provenance_keys,
    trusted_model,
)
from detectkit.formats.coco_annotations import CocoImage, id_warning, is_id, read_annotations
from detectkit.images import image_info, is_remote
from detectkit.scoring.contract import load_json
from detectkit.validation import (
    ErrorMode,
    ProblemCollector,
    ProblemKind,
    Severity,
    ValidationReport,
)

__all__ = ["NORMALIZED_BBOX_MAX", "BboxUnits", "read_coco", "write_coco"]

BboxUnits = Literal["auto", "pixels", "normalized"]

#: With ``bbox_units="auto"``, a file whose every ``bbox`` number is at most this is read as
#: normalized (the Data Labeling export); any larger number means pixels. Same threshold as the
#: Azure ML sample converter, but decided once per file rather than per box.
NORMALIZED_BBOX_MAX = 1.5


# ---------------------------------------------------------------------------- reading
def read_coco(
    path: str | os.PathLike[str],
    *,
    images_root: str | os.PathLike[str] | None = None,
    errors: ErrorMode = "raise",
    bbox_units: BboxUnits = "auto",
) -> tuple[LabeledDataset, ValidationReport]:
    """Read a COCO object-detection JSON file.

    Args:
        path: A ``.json`` file, or a folder holding ``annotations.json`` (or a single COCO
            ``.json`` file).
        images_root: Folder ``file_name`` values are relative to (default: the JSON file's
            folder). A path escaping it is refused (``unsafe_path``); URLs are kept as they are.
        errors: ``"raise"`` stops at the first error with
            :class:`~detectkit.InvalidAnnotationError`; ``"collect"`` keeps every valid image
            and box and lists every problem.
        bbox_units: ``"pixels"`` (standard COCO), ``"normalized"`` (the Data Labeling export)
            or ``"auto"``: normalized when every ``bbox`` number in the file is at most
            :data:`NORMALIZED_BBOX_MAX` (1.5), pixels otherwise.

    Returns:
        The data set (classes: category names by ascending id) and the report.

    Rules:
        * Image sizes come from ``width``/``height``; only when one is missing or 0 is the
          file read (EXIF-aware :func:`~detectkit.images.image_info`). An image with no size
          and pixel boxes that cannot be read is dropped with an error.
        * A Data Labeling image (``coco_url: AmlDatastore://<ds>/<path>``) whose ``file_name``
          does not exist under ``images_root`` becomes
          ``azureml://datastores/<ds>/paths/<path>``.
        * ``iscrowd`` becomes ``is_crowd``; ``area`` and ``segmentation`` are not read.
        * A category ``name`` or ``file_name`` that is not writable UTF-8 text (a NUL byte,
          or a lone surrogate such as ``"\\ud800"`` from a JSON escape) is refused here, as a
          ``bad_value`` naming the field, so a data set read from COCO can always be written
          back. A ``width``/``height`` above 2**31 - 1 (``10**400``) and a ``bbox`` number
          beyond any float are ``bad_value`` errors too.
        * The file is decoded as ``json.loads`` decodes it, by the faster msgspec
          (``detectkit.scoring.contract.load_json``): ``NaN`` and ``Infinity`` literals
          read, and are refused as box values; JSON nested deeper than Python's recursion
          limit, a number over its digit limit, or bytes that are not UTF-8 (with their line
          and column) are a ``parse`` error.
        * Ids may be numbers or strings. A duplicate image or category id is an error (the
          later entry is dropped); a duplicate annotation id, or any id 0, is a warning (kept).
        * An annotation naming an unknown image (``unreferenced``) or category
          (``unknown_label``), or whose box is inverted or outside the image by more than
          0.1 %, is dropped with an error; a box a hair outside is clipped with a warning.

    Raises:
        NotFoundError: ``path`` does not exist.
        InvalidAnnotationError: ``errors="raise"`` and the file has an error.
    """
    if bbox_units not in ("auto", "pixels", "normalized"):
        raise InvalidInputError(
            f'bbox_units: expected "auto", "pixels" or "normalized", got {bbox_units!r}'
        )
    file = _coco_file(Path(path))
    col = ProblemCollector(errors, file=str(file))
    base = Path(images_root) if images_root is not None else file.parent
    with gc_paused():
        return _read(file, base, bbox_units, col)


def _read(
    file: Path, base: Path, bbox_units: BboxUnits, col: ProblemCollector
) -> tuple[LabeledDataset, ValidationReport]:
    empty = LabeledDataset([], root=base)
    try:
        data = load_json(file.read_bytes())
    except json.JSONDecodeError as exc:
        col.add(
            ProblemKind.PARSE,
            "file is not valid JSON",
            location=f"line {exc.lineno} column {exc.colno}" if exc.pos else None,
            expected="a COCO JSON object",
            got=exc.msg,
        )
        return empty, col.report()
    if type(data) is not dict:
        col.add(
            ProblemKind.BAD_VALUE,
            "file is not a COCO object",
            expected='{"images": [...], "annotations": [...], "categories": [...]}',
            got=type(data).__name__,
        )
        return empty, col.report()
    raw_images = _list(data, "images", col, required=True)
    raw_categories = _list(data, "categories", col, required=True)
    if raw_images is None or raw_categories is None:  # not a detection file: nothing to attach
        return empty, col.report()
    raw_anns = _list(data, "annotations", col, required=False) or []
    classes, names = _read_categories(raw_categories, col)
    units = _detect_units(raw_anns) if bbox_units == "auto" else bbox_units
    if bbox_units == "auto" and units == "normalized" and not _has_datastore_urls(raw_images):
        col.add(
            ProblemKind.BAD_VALUE,
            f"every bbox number is at most {NORMALIZED_BBOX_MAX}, so the boxes were read as "
            "normalized (the Azure ML Data Labeling export), but no image has an "
            "AmlDatastore:// coco_url",
            severity=Severity.WARNING,
            field="bbox",
            expected="pixel boxes, or normalized ones from a Data Labeling export",
            got="only values <= 1.5",
            hint='pass bbox_units="pixels" if these are tiny pixel boxes',
        )
    images, dropped = _read_images(raw_images, base, units, col)
    read_annotations(raw_anns, images, dropped, names, units, col)
    records = [
        trusted_model(
            ImageRecord,
            {
                "image": im.image,
                "width": im.width or None,
                "height": im.height or None,
                "format": None,
                "objects": tuple(im.objects),
            },
        )
        for im in images.values()
    ]
    return LabeledDataset(records, classes, root=base), col.report()


def _coco_file(p: Path) -> Path:
    if not p.exists():
        raise NotFoundError(f"{p}: no such file or folder")
    if p.is_file():
        return p
    if (p / "annotations.json").is_file():
        return p / "annotations.json"
    found = []
    for candidate in sorted(p.glob("*.json")):
        with candidate.open("rb") as fh:
            head = fh.read(1 << 16).decode("utf-8", "ignore")
        if '"images"' in head or '"annotations"' in head or '"categories"' in head:
            found.append(candidate)
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFoundError(f"{p}: no annotations.json and no COCO .json file in this folder")
    raise InvalidInputError(
        f"{p}: several COCO .json files ({', '.join(f.name for f in found)}); pass one of them"
    )


def _list(
    data: dict[str, Any], key: str, col: ProblemCollector, *, required: bool
) -> list[Any] | None:
    value = data.get(key)
    if type(value) is list:
        return value
    if value is None and not required:
        col.add(
            ProblemKind.MISSING_FIELD,
            f"file has no {key} list; read as empty",
            severity=Severity.WARNING,
            field=key,
            expected="a list",
            got=None,
        )
        return None
    col.add(
        ProblemKind.MISSING_FIELD if value is None else ProblemKind.BAD_VALUE,
        f"file has no usable {key} list",
        field=key,
        expected="a list",
        got=value if value is None else type(value).__name__,
        hint="is this a COCO object-detection file?",
    )
    return None


def _read_categories(
    raw: list[Any], col: ProblemCollector
) -> tuple[list[str], dict[int | str, str]]:
    names: dict[int | str, str] = {}
    for i, cat in enumerate(raw):
        loc = f"categories[{i}]"
        cid = cat.get("id") if type(cat) is dict else None
        name = cat.get("name") if type(cat) is dict else None
        if not is_id(cid) or type(name) is not str or not name or not is_text(name):
            bad_id = not is_id(cid)
            col.add(
                ProblemKind.MISSING_FIELD
                if (cid if bad_id else name) is None
                else ProblemKind.BAD_VALUE,
                "category is not usable; its annotations will be unknown labels",
                location=loc,
                field="id" if bad_id else "name",
                expected="an integer or string id"
                if bad_id
                else "a non-empty name of UTF-8 text (no NUL, no lone surrogate)",
                got=cat if type(cat) is not dict else (cid if bad_id else name),
            )
            continue
        assert isinstance(cid, int | str)
        if cid in names:
            col.add(
                ProblemKind.DUPLICATE_ID,
                f"category id is used twice ({names[cid]!r} and {name!r}); the second was dropped",
                location=loc,
                field="id",
                expected="unique category ids",
                got=cid,
            )
            continue
        if cid == 0:
            id_warning(col, "category", loc)
        names[cid] = name
    ordered = sorted(names, key=lambda k: (isinstance(k, str), k))
    classes: list[str] = []
    for cid in ordered:
        name = names[cid]
        if name in classes:
            col.add(
                ProblemKind.DUPLICATE_ID,
                "two category ids share a name; their annotations form one class",
                severity=Severity.WARNING,
                location=f"category id {cid}",
                field="name",
                expected="one id per name",
                got=name,
            )
        else:
            classes.append(name)
    return classes, names


def _has_datastore_urls(raw_images: list[Any]) -> bool:
    return any(
        type(im) is dict
        and isinstance(im.get("coco_url"), str)
        and im["coco_url"].lower().startswith("amldatastore://")
        for im in raw_images
    )


def _detect_units(raw_anns: list[Any]) -> Literal["pixels", "normalized"]:
    try:
        largest = max((max(a["bbox"]) for a in raw_anns), default=None)
    except (TypeError, KeyError, ValueError):  # malformed entries: look only at usable ones
        largest = False
    if largest is not None and type(largest) not in (int, float):  # {"x": 1} has str keys
        largest = None
        for a in raw_anns:
            bbox = a.get("bbox") if type(a) is dict else None
            if type(bbox) is list and bbox and all(type(v) in (int, float) for v in bbox):
                m = max(bbox)
                largest = m if largest is None else max(largest, m)
    if largest is None:
        return "pixels"
    return "normalized" if largest <= NORMALIZED_BBOX_MAX else "pixels"


def _read_images(
    raw: list[Any], base: Path, units: str, col: ProblemCollector
) -> tuple[dict[int | str, CocoImage], set[object]]:
    refs = RefResolver(base, col)
    images: dict[int | str, CocoImage] = {}
    dropped: set[object] = set()  # ids of images reported and dropped: their boxes go quietly
    for i, entry in enumerate(raw):
        if type(entry) is not dict:
            col.add(
                ProblemKind.BAD_VALUE,
                "image entry is not an object; it was skipped",
                location=f"images[{i}]",
                expected='{"id", "file_name", "width", "height"}',
                got=type(entry).__name__,
            )
            continue
        iid = entry.get("id")
        name = entry.get("file_name")
        if not is_id(iid) or iid in images:
            if is_id(iid):
                col.add(
                    ProblemKind.DUPLICATE_ID,
                    "image id is used twice; the second image was dropped",
                    location=f"images[{i}] ({name})",
                    field="id",
                    expected="unique image ids",
                    got=iid,
                    hint="its annotations are attached to the first image with this id",
                )
            else:
                col.add(
                    ProblemKind.MISSING_FIELD if iid is None else ProblemKind.BAD_VALUE,
                    "image has no usable id; it was skipped",
                    location=f"images[{i}] ({name})",
                    field="id",
                    expected="an integer or string id",
                    got=iid,
                )
            continue
        assert isinstance(iid, int | str)
        if iid == 0:
            id_warning(col, "image", f"images[{i}] ({name})")
        loc = f"images[{i}] (id {iid})"
        coco_url = entry.get("coco_url")
        if type(name) is not str or not name:
            if type(coco_url) is str and coco_url:
                name = coco_url
            else:
                col.add(
                    ProblemKind.MISSING_FIELD if name is None else ProblemKind.BAD_VALUE,
                    "image has no usable file_name; it was skipped",
                    location=loc,
                    field="file_name",
                    expected="a path or URL string",
                    got=name,
                )
                dropped.add(iid)
                continue
        if not is_text(name):
            col.add(
                ProblemKind.BAD_VALUE,
                "image file_name is not writable text; it was skipped",
                location=loc,
                field="file_name",
                expected="UTF-8 text (no NUL byte, no lone surrogate such as \\ud800)",
                got=name.encode("utf-8", "backslashreplace").decode("utf-8")[:200],
            )
            dropped.add(iid)
            continue
        image = refs.resolve(name, location=loc, field="file_name")
        if image is None:
            dropped.add(iid)
            continue
        if type(coco_url) is str and not is_remote(name) and not os.path.exists(image):
            rewritten = datastore_url(coco_url)  # the one AmlDatastore:// rule of every reader
            image = rewritten if rewritten != coco_url else image
        width = entry.get("width")
        height = entry.get("height")
        if (
            type(width) is not int
            or type(height) is not int
            or not 0 < width <= MAX_IMAGE_SIDE
            or not 0 < height <= MAX_IMAGE_SIDE
        ):
            size = _image_size(entry, image, loc, units, col)
            if size is None:
                dropped.add(iid)
                continue
            width, height = size[0] or 0, size[1] or 0
        images[iid] = CocoImage(image, name, width, height)
    return images, dropped


def _whole(value: object) -> int | None:
    if type(value) is float and value.is_integer() and 0 < value <= MAX_IMAGE_SIDE:
        return int(value)
    if type(value) is int and 0 < value <= MAX_IMAGE_SIDE:
        return value
    return None


def _too_large(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_IMAGE_SIDE


def _image_size(
    entry: dict[str, Any], image: str, loc: str, units: str, col: ProblemCollector
) -> tuple[int | None, int | None] | None:
    """The size of an image whose ``width``/``height`` are not positive integers."""
    width, height = _whole(entry.get("width")), _whole(entry.get("height"))
    if width is not None and height is not None:
        return width, height  # 8000.0 in Data Labeling exports
    got = f"{_short(entry.get('width'))} x {_short(entry.get('height'))}"
    if _too_large(entry.get("width")) or _too_large(entry.get("height")):
        col.add(
            ProblemKind.BAD_VALUE,
            "image size is larger than any image file can be; the image was dropped",
            location=loc,
            field="width/height",
            expected=f"positive integers up to {MAX_IMAGE_SIDE}",
            got=got,
            hint="fix the stored size, or remove it to have it read from the image",
        )
        return None
    if not is_remote(image):
        try:
            info = image_info(image)
        except (NotFoundError, InvalidInputError) as exc:
            reason = str(exc).splitlines()[0]
        else:
            return info.width, info.height
    else:
        reason = "the image is remote"
    needed = units == "pixels"
    col.add(
        ProblemKind.MISSING_FIELD,
        "image size is missing and could not be read from the file"
        + ("; the image was dropped (pixel boxes need it)" if needed else "; kept without size"),
        severity=Severity.ERROR if needed else Severity.WARNING,
        location=loc,
        field="width/height",
        expected="positive integers",
        got=f"{got} ({reason})",
        hint="store the image size in the file, or pass images_root= where the images are",
    )
    return None if needed else (None, None)


def _short(value: object) -> str:
    """``repr(value)``, shortened: a 400-digit width is named by its digit count."""
    text = repr(value) if type(value) is not int else str(value) if value < 10**30 else ""
    return text[:60] if text else f"an integer of {len(str(value))} digits"


# ---------------------------------------------------------------------------- writing
def write_coco(
    dataset: LabeledDataset,
    path: str | os.PathLike[str],
    *,
    image_base_url: str | None = None,
) -> Path:
    """Write a COCO object-detection JSON file.

    Args:
        dataset: The data set to write (not modified).
        path: A ``.json`` file path, or a folder (``<folder>/annotations.json`` is written).
        image_base_url: Write ``file_name`` as this URL plus the image's path relative to the
            data set root (see :func:`~detectkit.formats.azureml.write_azureml`). Without it,
            images inside the output folder are written relative to it.

    Returns:
        The path of the JSON file.

    Categories get ids ``1..n`` in :attr:`~detectkit.LabeledDataset.classes` order, images
    ``1..m`` in record order and annotations ``1..k``; ``bbox`` is pixel ``[x, y, w, h]`` at full
    float precision, ``area`` is ``w * h`` in pixels, ``iscrowd`` is 0 or 1; a box's ``score``
    is written when it has one, and a model's draft gets ``"source": "model"`` and its
    ``model_version`` (extra keys COCO tools ignore and :func:`read_coco` reads back). A record without a
    size gets it from its image file (EXIF-aware).

    Raises:
        InvalidInputError: A record's size is unknown and its image cannot be read (remote or
            missing), or an object's label is not in the data set's classes.
    """
    p = Path(path)
    if p.suffix.lower() == ".json":
        out = p
    elif p.is_file():
        raise InvalidInputError(
            f"path: expected a folder or a .json file, got the existing file {p}"
        )
    else:
        out = p / "annotations.json"
    category_ids = {name: k for k, name in enumerate(dataset.classes, 1)}
    sizes = [_record_size(r, k) for k, r in enumerate(dataset.records)]
    for k, record in enumerate(dataset.records):
        for o in record.objects:
            if o.label not in category_ids:
                raise InvalidInputError(
                    f"record {k} ({record.name}): label {o.label!r} is not in the data set's "
                    f"classes {list(dataset.classes)}; add it to classes or rename it "
                    "(LabeledDataset.rename_labels)"
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    refs = RefWriter(out.parent, image_base_url=image_base_url, root=dataset.root)
    encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
    categories = [{"id": k, "name": n, "supercategory": "none"} for n, k in category_ids.items()]
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        write = fh.write
        write('{"info": {"description": "written by detectkit"}, "licenses": [],\n')
        write(f'"categories": {encode(categories)},\n"images": [')
        sep = "\n"
        for k, (record, (width, height)) in enumerate(zip(dataset.records, sizes, strict=True), 1):
            write(
                f'{sep}{{"id": {k}, "file_name": {encode(refs.ref(record))}, '
                f'"width": {width}, "height": {height}}}'
            )
            sep = ",\n"
        write('\n],\n"annotations": [')
        sep = "\n"
        aid = 0
        for k, (record, (width, height)) in enumerate(zip(dataset.records, sizes, strict=True), 1):
            for o in record.objects:
                b = o.box
                x1 = b.top_x * width
                y1 = b.top_y * height
                w = b.bottom_x * width - x1
                h = b.bottom_y * height - y1
                aid += 1
                tail = "" if o.score is None else f', "score": {o.score!r}'
                if o.source != "human":
                    tail += ", " + encode(provenance_keys(o))[1:-1]
                write(
                    f'{sep}{{"id": {aid}, "image_id": {k}, "category_id": '
                    f"{category_ids[o.label]}, "
                    f'"bbox": [{x1!r}, {y1!r}, {w!r}, {h!r}], "area": {w * h!r}, '
                    f'"iscrowd": {1 if o.is_crowd else 0}{tail}}}'
                )
                sep = ",\n"
        write("\n]}\n")
    os.replace(tmp, out)
    return out


def _record_size(record: ImageRecord, k: int) -> tuple[int, int]:
    if record.width is not None and record.height is not None:
        return int(record.width), int(record.height)
    if is_remote(record.image):
        raise InvalidInputError(
            f"record {k} ({record.image}): width/height unknown and the image is remote; "
            "COCO needs pixel sizes. Set width and height on the record (or download the image "
            "and point at the local copy)"
        )
    try:
        sized = record.with_size()
    except (NotFoundError, InvalidInputError) as exc:
        raise InvalidInputError(
            f"record {k} ({record.image}): width/height unknown and the image cannot be read "
            f"({str(exc).splitlines()[0]}); fix the path or set width and height on the record"
        ) from exc
    return sized.width or 0, sized.height or 0
