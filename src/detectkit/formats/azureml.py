"""Azure ML JSONL and ``MLTable``: the training data format of AutoML for Images.

One JSON object per line, one line per image, boxes normalized to ``[0, 1]``::

    {"image_url": "azureml://.../paths/images/10.jpg",
     "image_details": {"format": "jpg", "width": 499, "height": 666},
     "label": [{"label": "can", "topX": 0.1, "topY": 0.2, "bottomX": 0.5,
                "bottomY": 0.6, "isCrowd": 0}]}

``image_details`` is optional and its sizes may be strings such as ``"499px"``; ``isCrowd`` is
optional. The Data Labeling "dataset with labels" export writes the same lines with
``image_width`` / ``image_height`` at the top level and a ``label_confidence`` list, one number
per box (``1.0`` for a label a person made; AutoML's runtime reads the same column). An
``MLTable`` file beside the JSONL tells Azure ML how to read it; :func:`write_azureml` writes
both, :func:`read_azureml` reads either.

Provenance: ``label_confidence`` gives each box's ``score``. detectkit adds two lists Azure ML
ignores, ``label_source`` (``"human"`` or ``"model"``) and ``label_model_version``, when a line
holds a model's draft. A file without ``label_source`` (a Data Labeling export, AutoML's scorer)
is read by this rule: a confidence of exactly ``1.0`` is a human label (``score=None``), any
other a model's draft with that score. ``AmlDatastore://`` image URLs are rewritten to
``azureml://datastores/...`` by :func:`~detectkit.formats._common.datastore_url`, as by every
reader.

There is no class list in JSONL: the classes of a data set read from it are the sorted unique
labels (deterministic, whatever the line order).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError, InvalidInputError, NotFoundError
from detectkit.formats._common import (
    RefResolver,
    RefWriter,
    gc_paused,
    inside_folder,
    is_text,
    label_provenance,
    make_box,
    pixel_size,
    read_provenance,
    regular_file_problem,
    to_float,
    trusted_model,
)
from detectkit.formats._yaml import YamlError, read_path_list
from detectkit.images import IMAGE_EXTENSIONS, is_remote
from detectkit.validation import (
    ErrorMode,
    ProblemCollector,
    ProblemKind,
    Severity,
    ValidationReport,
)

__all__ = ["mltable_paths", "mltable_text", "read_azureml", "write_azureml"]

_COORDS = ("topX", "topY", "bottomX", "bottomY")
_PLAIN_YAML = re.compile(r"[A-Za-z0-9_./-]+")


# ---------------------------------------------------------------------------- MLTable
def mltable_text(jsonl_name: str) -> str:
    """The ``MLTable`` file AutoML for Images expects beside ``jsonl_name``.

    Example:
        >>> print(mltable_text("train.jsonl").splitlines()[1])
          - file: ./train.jsonl
    """
    name = f"./{jsonl_name}"
    if not _PLAIN_YAML.fullmatch(jsonl_name):
        name = "'" + name.replace("'", "''") + "'"
    return (
        "paths:\n"
        f"  - file: {name}\n"
        "transformations:\n"
        "  - read_json_lines:\n"
        "        encoding: utf8\n"
        "        invalid_lines: error\n"
        "        include_path_column: false\n"
        "  - convert_column_types:\n"
        "      - columns: image_url\n"
        "        column_type: stream_info\n"
    )


def mltable_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The local JSONL files an ``MLTable`` file lists under ``paths:``.

    Entries are ``- file: <path>``, ``- folder: <path>`` (its ``*.jsonl`` files) or
    ``- pattern: <glob>``, relative to the ``MLTable``'s folder. Only that list is parsed (a
    small, safe reader of the YAML block list, or JSON); transformations are not interpreted.

    Raises:
        NotFoundError: The ``MLTable`` or a listed file does not exist.
        InvalidInputError: The ``paths`` list is missing, malformed or names a cloud URL.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "MLTable"
    why = regular_file_problem(p)
    if why == "no such file":
        raise NotFoundError(f"{p}: no such MLTable file")
    if why is not None:
        raise InvalidInputError(f"{p}: expected an MLTable text file, got {why}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise InvalidAnnotationError(
            "MLTable file is not UTF-8 text",
            file=str(p),
            location=f"line {line}",
            expected="UTF-8 text",
            got=f"byte {exc.object[exc.start : exc.start + 1]!r}",
            hint="save the MLTable file as UTF-8",
        ) from None
    entries = _json_paths(text, p) if text.lstrip().startswith("{") else _yaml_paths(text, p)
    if not entries:
        raise InvalidInputError(
            f"{p}: paths: expected a list such as '- file: ./train.jsonl', got no entries"
        )
    base = p.parent
    files: list[Path] = []
    for kind, value in entries:
        if is_remote(value) or "://" in value:
            raise InvalidInputError(
                f"{p}: paths: {kind} {value!r} is a cloud URL; detectkit reads local copies. "
                "Download the data (e.g. az ml data download) and point at the local MLTable"
            )
        if not is_text(value, path=True):
            raise InvalidInputError(f"{p}: paths: {kind} {value!r} holds a NUL byte or surrogate")
        if kind == "pattern" and (os.path.isabs(value) or value.startswith("~")):
            raise InvalidInputError(
                f"{p}: paths: pattern {value!r} is absolute; expected a pattern relative to the "
                "MLTable's folder such as './*.jsonl'"
            )
        target = base / value
        if kind != "pattern" and not _inside(target, base):
            raise InvalidInputError(
                f"{p}: paths: {kind} {value!r} leaves the MLTable's folder; Azure ML uploads "
                "only that folder, so keep the JSONL beside the MLTable file"
            )
        if kind == "file":
            if not target.is_file():
                raise NotFoundError(f"{p}: paths: file {value!r} does not exist ({target})")
            files.append(target)
        elif kind == "folder":
            if not target.is_dir():
                raise NotFoundError(f"{p}: paths: folder {value!r} does not exist ({target})")
            found = sorted(target.glob("*.jsonl"))
            if not found:
                raise NotFoundError(f"{p}: paths: folder {value!r} holds no *.jsonl file")
            files += [_listed(f, base) for f in found]
        else:
            try:
                matches = sorted(base.glob(value))
            except (ValueError, NotImplementedError, IndexError) as exc:
                raise InvalidInputError(
                    f"{p}: paths: pattern {value!r} is not a valid glob pattern "
                    f"({type(exc).__name__}: {exc}); expected e.g. './*.jsonl'"
                ) from None
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise NotFoundError(f"{p}: paths: pattern {value!r} matches no file in {base}")
            files += [_listed(m, base) for m in matches]
    return [_listed(f, base) for f in files]


def _listed(file: Path, base: Path) -> Path:
    """A JSONL file an MLTable lists: inside its folder (links resolved) and a regular file."""
    inside_folder(file, base, None, what="file listed in the MLTable")
    why = regular_file_problem(file)
    if why is not None:
        raise InvalidInputError(f"{file}: expected a JSONL file, got {why}")
    return file


def _inside(path: Path, folder: Path) -> bool:
    resolved, root = path.resolve(), folder.resolve()
    return resolved == root or root in resolved.parents


def _json_paths(text: str, where: Path) -> list[tuple[str, str]]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{where}: not valid JSON or YAML: {exc}") from None
    raw = doc.get("paths") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        raise InvalidInputError(f"{where}: paths: expected a list, got {type(raw).__name__}")
    return [_path_entry(item, where, f"paths[{i}]") for i, item in enumerate(raw)]


def _yaml_paths(text: str, where: Path) -> list[tuple[str, str]]:
    try:
        items = read_path_list(text, "paths")
    except YamlError as exc:
        raise InvalidInputError(f"{where}, line {exc.line}: {exc}") from None
    return [_path_entry(item, where, f"paths[{i}]") for i, (_, item) in enumerate(items)]


def _path_entry(item: object, where: Path, loc: str) -> tuple[str, str]:
    if isinstance(item, dict):
        for kind in ("file", "folder", "pattern"):
            value = item.get(kind)
            if isinstance(value, str) and value:
                return kind, value
    raise InvalidInputError(
        f"{where}: {loc}: expected one of 'file:', 'folder:' or 'pattern:' with a path, "
        f"got {item!r}"
    )


def _jsonl_files(p: Path) -> list[Path]:
    if not p.exists():
        raise NotFoundError(f"{p}: no such file or folder")
    if not p.is_dir():
        if p.name == "MLTable":
            return mltable_paths(p)
        why = regular_file_problem(p)
        if why is not None:
            raise InvalidInputError(f"{p}: expected a JSONL file, got {why}")
        return [p]
    if (p / "MLTable").exists():
        return mltable_paths(p / "MLTable")
    found = sorted(p.glob("*.jsonl"))
    if len(found) == 1:
        return [_listed(found[0], p)]
    if not found:
        raise NotFoundError(f"{p}: no MLTable file and no *.jsonl file in this folder")
    raise InvalidInputError(
        f"{p}: several *.jsonl files and no MLTable ({', '.join(f.name for f in found)}); "
        "pass one .jsonl file, or write an MLTable listing them"
    )


# ---------------------------------------------------------------------------- reading
def read_azureml(
    path: str | os.PathLike[str],
    *,
    images_root: str | os.PathLike[str] | None = None,
    errors: ErrorMode = "raise",
) -> tuple[LabeledDataset, ValidationReport]:
    """Read Azure ML object-detection JSONL.

    Args:
        path: A ``.jsonl`` file, an ``MLTable`` file, or a folder holding an ``MLTable`` (or a
            single ``.jsonl`` file).
        images_root: Folder local ``image_url`` values are relative to (default: the folder of
            each JSONL file). A local path escaping it is refused (``unsafe_path``).
            ``azureml://``, ``https://`` and other URLs are kept as they are.
        errors: ``"raise"`` stops at the first error with
            :class:`~detectkit.InvalidAnnotationError` naming the file and ``line N``;
            ``"collect"`` keeps every valid line and object and lists every problem.

    Returns:
        The data set (classes: sorted unique labels) and the report of problems found.

    Lines are streamed; blank lines are skipped. A line that is not valid JSON, or has no
    usable ``image_url`` or ``label`` list, is dropped with an error. A box outside ``[0, 1]``
    by more than 0.001 or inverted drops only that object; a hair outside is clipped with a
    warning. A size that cannot be read (``"wide"``, ``-3``) is dropped with a warning.

    Raises:
        NotFoundError: ``path`` (or a file its ``MLTable`` lists) does not exist.
        InvalidAnnotationError: ``errors="raise"`` and a line has an error.
    """
    files = _jsonl_files(Path(path))
    col = ProblemCollector(errors)
    records: list[ImageRecord] = []
    with gc_paused():
        for file in files:
            col.file = str(file)
            base = Path(images_root) if images_root is not None else file.parent
            _read_jsonl(file, RefResolver(base, col), col, records)
    root = Path(images_root) if images_root is not None else files[0].parent if files else None
    return LabeledDataset(records, root=root), col.report()


def _read_jsonl(
    file: Path, refs: RefResolver, col: ProblemCollector, records: list[ImageRecord]
) -> None:
    loads = json.loads
    append = records.append
    with file.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.isspace():
                continue
            try:
                doc = loads(raw)
            except (ValueError, RecursionError) as exc:  # bad JSON, not UTF-8, too deep
                col.add(
                    ProblemKind.PARSE,
                    "line is not valid JSON; the line was skipped",
                    location=f"line {lineno}",
                    expected="one JSON object per line",
                    got=f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}",
                    hint="fix or remove the line (a JSON object must not span lines)",
                )
                continue
            record = _parse_line(doc, lineno, refs, col)
            if record is not None:
                append(record)


def _parse_line(
    doc: object, lineno: int, refs: RefResolver, col: ProblemCollector
) -> ImageRecord | None:
    loc = f"line {lineno}"
    if type(doc) is not dict:
        col.add(
            ProblemKind.BAD_VALUE,
            "line is not a JSON object; the line was skipped",
            location=loc,
            expected='an object {"image_url": ..., "label": [...]}',
            got=type(doc).__name__,
        )
        return None
    url = doc.get("image_url")
    if type(url) is not str or not url.strip():
        col.add(
            ProblemKind.MISSING_FIELD if url is None else ProblemKind.BAD_VALUE,
            "line has no usable image_url; the line was skipped",
            location=loc,
            field="image_url",
            expected="a path or URL string",
            got=url,
        )
        return None
    image = refs.resolve(url, location=loc, field="image_url")
    if image is None:
        return None
    width = height = None
    fmt: str | None = None
    details = doc.get("image_details")
    if type(details) is dict:
        width = pixel_size(details.get("width"), col, loc, "image_details.width")
        height = pixel_size(details.get("height"), col, loc, "image_details.height")
        value = details.get("format")
        if type(value) is str and value.strip(". "):
            fmt = value.strip(". ").lower()
    elif details is not None:
        col.add(
            ProblemKind.BAD_VALUE,
            "image_details is not an object; it was ignored",
            severity=Severity.WARNING,
            location=loc,
            field="image_details",
            expected='{"format": ..., "width": ..., "height": ...}',
            got=details,
        )
    if width is None and "image_width" in doc:  # the Data Labeling MLTable export
        width = pixel_size(doc["image_width"], col, loc, "image_width")
    if height is None and "image_height" in doc:
        height = pixel_size(doc["image_height"], col, loc, "image_height")
    labels = doc.get("label")
    if type(labels) is list:
        objects = _parse_objects(labels, loc, col, label_provenance(doc, len(labels), loc, col))
    elif labels is None:
        col.add(
            ProblemKind.MISSING_FIELD,
            "line has no label list; the image is kept with no objects",
            severity=Severity.WARNING,
            location=loc,
            field="label",
            expected="a list of boxes ([] for an image without objects)",
            got=None if "label" not in doc else "null",
        )
        objects = ()
    else:
        col.add(
            ProblemKind.BAD_VALUE,
            "label is not a list of boxes; the line was skipped",
            location=loc,
            field="label",
            expected='a list of {"label", "topX", "topY", "bottomX", "bottomY"} objects',
            got=labels,
            hint="a string label is image classification JSONL, not object detection"
            if type(labels) is str
            else None,
        )
        return None
    return trusted_model(
        ImageRecord,
        {"image": image, "width": width, "height": height, "format": fmt, "objects": objects},
    )


def _parse_objects(
    labels: list[object],
    loc: str,
    col: ProblemCollector,
    provenance: list[tuple[object, object, object]] | None = None,
) -> tuple[ObjectAnnotation, ...]:
    objects: list[ObjectAnnotation] = []
    for j, item in enumerate(labels):
        if type(item) is not dict:
            col.add(
                ProblemKind.BAD_VALUE,
                "box is not a JSON object; it was skipped",
                location=f"{loc} label[{j}]",
                expected='{"label", "topX", "topY", "bottomX", "bottomY"}',
                got=item,
            )
            continue
        name = item.get("label")
        if type(name) is not str or not name or not is_text(name):
            col.add(
                ProblemKind.MISSING_FIELD if name is None else ProblemKind.BAD_VALUE,
                "box has no usable label; it was skipped",
                location=f"{loc} label[{j}]",
                field="label",
                expected="a non-empty class name string",
                got=name,
            )
            continue
        x1 = item.get("topX")
        y1 = item.get("topY")
        x2 = item.get("bottomX")
        y2 = item.get("bottomY")
        if (
            type(x1) is float
            and type(y1) is float
            and type(x2) is float
            and type(y2) is float
            and 0.0 <= x1 <= x2 <= 1.0
            and 0.0 <= y1 <= y2 <= 1.0
        ):
            box = trusted_model(Box, {"top_x": x1, "top_y": y1, "bottom_x": x2, "bottom_y": y2})
        else:
            checked = _checked_box(item, col, f"{loc} label[{j}] ({name})")
            if checked is None:
                continue
            box = checked
        crowd = item.get("isCrowd")
        if crowd is None or crowd == 0:
            is_crowd = False
        elif crowd == 1:
            is_crowd = True
        else:
            parsed = _flag(crowd)
            if parsed is None:
                col.add(
                    ProblemKind.BAD_VALUE,
                    "isCrowd is not a flag; the box was skipped",
                    location=f"{loc} label[{j}] ({name})",
                    field="isCrowd",
                    expected="0, 1, true or false",
                    got=crowd,
                )
                continue
            is_crowd = parsed
        values: dict[str, object] = {"label": name, "box": box, "is_crowd": is_crowd}
        if provenance is not None:
            extra = read_provenance(
                *provenance[j],
                col,
                location=f"{loc} label[{j}] ({name})",
                fields=(
                    f"label_confidence[{j}]",
                    f"label_source[{j}]",
                    f"label_model_version[{j}]",
                ),
            )
            if extra is None:
                continue
            values.update(extra)
        objects.append(trusted_model(ObjectAnnotation, values))
    return tuple(objects)


def _checked_box(item: dict[str, object], col: ProblemCollector, loc: str) -> Box | None:
    coords: list[float] = []
    for name in _COORDS:
        raw = item.get(name)
        value = to_float(raw)
        if value is None:
            col.add(
                ProblemKind.MISSING_FIELD if raw is None else ProblemKind.BAD_VALUE,
                "box coordinate is missing or not a number; the box was skipped",
                location=loc,
                field=name,
                expected="a normalized number in [0, 1]",
                got=raw,
            )
            return None
        coords.append(value)
    x1, y1, x2, y2 = coords
    return make_box((x1, y1, x2, y2), col, location=loc)


def _flag(value: object) -> bool | None:
    if isinstance(value, str):
        return {"0": False, "1": True, "false": False, "true": True}.get(value.strip().lower())
    return None


# ---------------------------------------------------------------------------- writing
def write_azureml(
    dataset: LabeledDataset,
    path: str | os.PathLike[str],
    *,
    image_base_url: str | None = None,
) -> Path:
    """Write Azure ML JSONL and the ``MLTable`` file beside it.

    Args:
        dataset: The data set to write (not modified).
        path: A folder (``<folder>/annotations.jsonl`` and ``<folder>/MLTable`` are written) or
            a ``.jsonl`` file path (the ``MLTable`` goes in the same folder).
        image_base_url: Rewrite image references under this URL, e.g.
            ``azureml://subscriptions/<sub>/resourcegroups/<rg>/workspaces/<ws>/datastores/<ds>/paths/cards/``:
            each image's path relative to the data set root (its file name when outside it) is
            appended. Without it, local images inside the output folder are written relative
            to it, and other references as they are.

    Returns:
        The path of the JSONL file.

    Each line gets its own ``image_details`` (``format``, and integer ``width``/``height`` when
    known); ``isCrowd`` is written as ``0``/``1``; coordinates are written at full precision.
    A line with a scored box or a model's draft gets ``label_confidence`` (``1.0`` for an
    unscored human label), and with a draft ``label_source`` and ``label_model_version``.
    """
    p = Path(path)
    if p.suffix.lower() == ".jsonl":
        jsonl, folder = p, p.parent
    elif p.is_file():
        raise InvalidInputError(
            f"path: expected a folder or a .jsonl file, got the existing file {p}"
        )
    else:
        jsonl, folder = p / "annotations.jsonl", p
    folder.mkdir(parents=True, exist_ok=True)
    refs = RefWriter(folder, image_base_url=image_base_url, root=dataset.root)
    encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
    tmp = jsonl.with_name(jsonl.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        write = fh.write
        for record in dataset.records:
            details: dict[str, object] = {}
            fmt = record.format or _format_from_name(record.name)
            if fmt:
                details["format"] = fmt
            if record.width is not None:
                details["width"] = int(record.width)
            if record.height is not None:
                details["height"] = int(record.height)
            line: dict[str, object] = {"image_url": refs.ref(record)}
            if details:
                line["image_details"] = details
            line["label"] = [
                {
                    "label": o.label,
                    "topX": o.box.top_x,
                    "topY": o.box.top_y,
                    "bottomX": o.box.bottom_x,
                    "bottomY": o.box.bottom_y,
                    "isCrowd": 1 if o.is_crowd else 0,
                }
                for o in record.objects
            ]
            objs = record.objects
            if any(o.score is not None or o.source != "human" for o in objs):
                line["label_confidence"] = [
                    o.score if o.score is not None or o.source == "model" else 1.0 for o in objs
                ]
                if any(o.source != "human" for o in objs):
                    line["label_source"] = [o.source for o in objs]
                    line["label_model_version"] = [o.model_version for o in objs]
            write(encode(line))
            write("\n")
    os.replace(tmp, jsonl)
    (folder / "MLTable").write_text(mltable_text(jsonl.name), encoding="utf-8")
    return jsonl


def _format_from_name(name: str) -> str | None:
    dot = name.rfind(".")
    if dot < 0:
        return None
    ext = name[dot:].lower()
    return ext[1:] if ext in IMAGE_EXTENSIONS else None
