"""COCO JSON (and the Azure ML Data Labeling COCO export): reading, writing, problems."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from detectkit import read_dataset
from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError, InvalidInputError, NotFoundError
from detectkit.formats._common import trusted_model
from detectkit.formats.azureml import read_azureml, write_azureml
from detectkit.formats.coco import read_coco, write_coco
from detectkit.validation import ProblemKind, Severity

Doc = dict[str, Any]


def _base() -> Doc:
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 10, 100, 50], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0.0, 0.0, 10.0, 10.0]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [50, 50, 50, 50], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "can"}, {"id": 2, "name": "milk"}],
    }


def _dump(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _objects(ds: LabeledDataset) -> list[list[tuple[str, tuple[float, ...], bool]]]:
    return [
        [(o.label, tuple(o.box.to_array().tolist()), o.is_crowd) for o in r.objects]
        for r in ds.records
    ]


# --------------------------------------------------------------------------- reading: table
def _data_labeling() -> Doc:
    """The shape of the Azure ML Data Labeling COCO export: normalized bbox, area 0.0."""
    path = "UI/2023-05-11_165452_UTC/fridge/a.jpg"
    return {
        "images": [
            {
                "id": 1,
                "width": 8000.0,
                "height": 6000.0,
                "file_name": path,
                "coco_url": f"AmlDatastore://workspaceblobstore/{path}",
                "absolute_url": f"https://acct.blob.core.windows.net/container/{path}",
                "date_captured": "2023-05-11T16:54:52.000Z",
            }
        ],
        "annotations": [
            {"id": 1, "category_id": 1, "image_id": 1, "area": 0.0, "bbox": [0.1, 0.2, 0.3, 0.4]}
        ],
        "categories": [{"id": 1, "name": "carton"}],
    }


def _zero_size_remote() -> Doc:
    doc = _data_labeling()
    doc["images"][0].update(width=0.0, height=0.0)
    return doc


DL_URL = "azureml://datastores/workspaceblobstore/paths/UI/2023-05-11_165452_UTC/fridge/a.jpg"

READ_CASES: list[tuple[str, Doc, dict[str, Any], list[Any], list[Any], list[str]]] = [
    (
        "pixels",
        _base(),
        {},
        [("a.jpg", 200, 100), ("b.jpg", 100, 100)],
        [
            [("can", (0.1, 0.1, 0.6, 0.6), False), ("milk", (0.0, 0.0, 0.05, 0.1), False)],
            [("can", (0.5, 0.5, 1.0, 1.0), True)],
        ],
        [],
    ),
    (
        "string ids",
        {
            "images": [{"id": "img-7", "file_name": "a.jpg", "width": 10, "height": 10}],
            "annotations": [
                {"id": "x", "image_id": "img-7", "category_id": "c", "bbox": [1, 2, 3, 4]}
            ],
            "categories": [{"id": "c", "name": "can"}],
        },
        {},
        [("a.jpg", 10, 10)],
        [[("can", (0.1, 0.2, 0.4, 0.6), False)]],
        [],
    ),
    (
        "data labeling export",
        _data_labeling(),
        {},
        [(DL_URL, 8000, 6000)],
        [[("carton", (0.1, 0.2, 0.4, 0.6000000000000001), False)]],
        [],
    ),
    (
        "data labeling, size 0.0 and no local file",
        _zero_size_remote(),
        {},
        [(DL_URL, None, None)],
        [[("carton", (0.1, 0.2, 0.4, 0.6000000000000001), False)]],
        ["missing_field"],
    ),
    (
        "explicit pixels for tiny boxes",
        {
            "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.5, 0.5, 1, 1]}],
            "categories": [{"id": 1, "name": "dot"}],
        },
        {"bbox_units": "pixels"},
        [("a.jpg", 10, 10)],
        [[("dot", (0.05, 0.05, 0.15, 0.15), False)]],
        [],
    ),
    (
        "explicit normalized",
        {
            "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.5, 0.5, 0.5, 0.5]}
            ],
            "categories": [{"id": 1, "name": "dot"}],
        },
        {"bbox_units": "normalized"},
        [("a.jpg", 10, 10)],
        [[("dot", (0.5, 0.5, 1.0, 1.0), False)]],
        [],
    ),
    (
        "no annotations list (test split)",
        {"images": _base()["images"], "categories": _base()["categories"]},
        {},
        [("a.jpg", 200, 100), ("b.jpg", 100, 100)],
        [[], []],
        ["missing_field"],
    ),
]


@pytest.mark.parametrize(
    ("doc", "kwargs", "images", "objects", "warnings"),
    [c[1:] for c in READ_CASES],
    ids=[c[0] for c in READ_CASES],
)
def test_read(
    tmp_path: Path,
    doc: Doc,
    kwargs: dict[str, Any],
    images: list[tuple[str, int | None, int | None]],
    objects: list[Any],
    warnings: list[str],
) -> None:
    ds, report = read_coco(_dump(tmp_path / "coco.json", doc), **kwargs)
    expected_refs = [
        ref if "://" in ref else str((tmp_path / ref).resolve()) for ref, _, _ in images
    ]
    assert [r.image for r in ds.records] == expected_refs
    assert [(r.width, r.height) for r in ds.records] == [(w, h) for _, w, h in images]
    assert _objects(ds) == objects
    assert [p.kind.value for p in report.problems] == warnings
    assert report.ok


def test_class_order_follows_category_ids(tmp_path: Path) -> None:
    doc = _base()
    doc["categories"] = [{"id": 5, "name": "b"}, {"id": 1, "name": "z"}, {"id": 9, "name": "a"}]
    doc["annotations"] = []
    ds, _ = read_coco(_dump(tmp_path / "c.json", doc))
    assert ds.classes == ("z", "b", "a")


def test_data_labeling_image_found_locally_stays_local(tmp_path: Path) -> None:
    doc = _data_labeling()
    local = tmp_path / doc["images"][0]["file_name"]
    local.parent.mkdir(parents=True)
    local.write_bytes(b"")
    ds, _ = read_coco(_dump(tmp_path / "export.json", doc))
    assert ds.records[0].image == str(local.resolve())


def test_units_auto_rule(tmp_path: Path) -> None:
    doc = _base()
    doc["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.1, 0.1, 1.5, 0.2]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0.1, 0.1, 0.2, 0.2]},
    ]
    ds, report = read_coco(_dump(tmp_path / "n.json", doc), errors="collect")
    # every number <= 1.5 -> normalized: the first box ends at x = 1.6, outside the image;
    # with no AmlDatastore:// coco_url the guess itself is reported as a warning
    assert [p.kind for p in report.problems] == [ProblemKind.BAD_VALUE, ProblemKind.OUT_OF_RANGE]
    assert report.problems[0].severity is Severity.WARNING
    doc["annotations"][0]["bbox"] = [0.1, 0.1, 1.6, 0.2]  # one number > 1.5 -> pixels
    ds, report = read_coco(_dump(tmp_path / "p.json", doc))
    assert report.ok
    assert ds.records[0].objects[0].box.bottom_x == pytest.approx(1.7 / 200)
    with pytest.raises(InvalidInputError, match="bbox_units"):
        read_coco(tmp_path / "p.json", bbox_units="percent")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- problems
def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        *keys, last = path.split(".")
        target: Any = doc
        for key in keys:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return apply


def _append(key: str, value: Any) -> Callable[[Doc], None]:
    return lambda doc: doc[key].append(value)


def _delete(path: str) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        *keys, last = path.split(".")
        target: Any = doc
        for key in keys:
            target = target[int(key)] if key.isdigit() else target[key]
        del target[last]

    return apply


E, W = Severity.ERROR, Severity.WARNING
PROBLEMS: list[tuple[str, Callable[[Doc], None], list[tuple[ProblemKind, Severity, str]], int]] = [
    (
        "duplicate image id",
        _append("images", {"id": 1, "file_name": "dup.jpg", "width": 5, "height": 5}),
        [(ProblemKind.DUPLICATE_ID, E, "images[2] (dup.jpg)")],
        3,
    ),
    (
        "image id 0",
        lambda d: (_set("images.1.id", 0)(d), _set("annotations.2.image_id", 0)(d)),
        [(ProblemKind.INVALID_ID, W, "images[1] (b.jpg)")],
        3,
    ),
    (
        "duplicate annotation id",
        _set("annotations.1.id", 1),
        [(ProblemKind.DUPLICATE_ID, W, "annotations[1]")],
        3,
    ),
    (
        "annotation id 0",
        _set("annotations.0.id", 0),
        [(ProblemKind.INVALID_ID, W, "annotations[0]")],
        3,
    ),
    (
        "annotation without id",
        _delete("annotations.0.id"),
        [(ProblemKind.MISSING_FIELD, W, "annotations[0]")],
        3,
    ),
    (
        "category id 0",
        _append("categories", {"id": 0, "name": "zero"}),
        [(ProblemKind.INVALID_ID, W, "categories[2]")],
        3,
    ),
    (
        "duplicate category id",
        _append("categories", {"id": 2, "name": "other"}),
        [(ProblemKind.DUPLICATE_ID, E, "categories[2]")],
        3,
    ),
    (
        "two ids, one name",
        _append("categories", {"id": 3, "name": "can"}),
        [(ProblemKind.DUPLICATE_ID, W, "category id 3")],
        3,
    ),
    (
        "unknown image",
        _set("annotations.1.image_id", 42),
        [(ProblemKind.UNREFERENCED, E, "annotations[1] (id 2)")],
        2,
    ),
    (
        "image id type mismatch",
        _set("annotations.1.image_id", "1"),
        [(ProblemKind.UNREFERENCED, E, "annotations[1] (id 2)")],
        2,
    ),
    (
        "unknown category",
        _set("annotations.0.category_id", 7),
        [(ProblemKind.UNKNOWN_LABEL, E, "annotations[0] (id 1)")],
        2,
    ),
    (
        "box outside the image",
        _set("annotations.0.bbox", [150, 10, 100, 50]),
        [(ProblemKind.OUT_OF_RANGE, E, "annotations[0] (id 1, image a.jpg)")],
        2,
    ),
    (
        "box a hair outside",
        _set("annotations.0.bbox", [100, 10, 100.1, 50]),
        [(ProblemKind.CLIPPED, W, "annotations[0] (id 1, image a.jpg)")],
        3,
    ),
    (
        "negative width",
        _set("annotations.0.bbox", [100, 10, -10, 50]),
        [(ProblemKind.INVERTED_BOX, E, "annotations[0] (id 1, image a.jpg)")],
        2,
    ),
    (
        "no bbox",
        _delete("annotations.0.bbox"),
        [(ProblemKind.MISSING_FIELD, E, "annotations[0] (id 1)")],
        2,
    ),
    (
        "bbox of strings",
        _set("annotations.0.bbox", ["1", "2", "3", "4"]),
        [(ProblemKind.BAD_VALUE, E, "annotations[0] (id 1)")],
        2,
    ),
    (
        "bad iscrowd",
        _set("annotations.0.iscrowd", 2),
        [(ProblemKind.BAD_VALUE, E, "annotations[0] (id 1)")],
        2,
    ),
    (
        "image id a list",
        _set("images.1.id", [2]),
        [
            (ProblemKind.BAD_VALUE, E, "images[1] (b.jpg)"),
            (ProblemKind.UNREFERENCED, E, "annotations[2] (id 3)"),
        ],
        2,
    ),
    (
        "annotation image_id a list",
        _set("annotations.2.image_id", [2]),
        [(ProblemKind.UNREFERENCED, E, "annotations[2] (id 3)")],
        2,
    ),
    (
        "no file_name",
        _delete("images.1.file_name"),
        [(ProblemKind.MISSING_FIELD, E, "images[1] (id 2)")],
        2,
    ),
    (
        "path escape",
        _set("images.1.file_name", "../../etc/passwd"),
        [(ProblemKind.UNSAFE_PATH, E, "images[1] (id 2)")],
        2,
    ),
    (
        "remote image without size",
        lambda d: d["images"][1].update(file_name="https://h/b.jpg", width=0),
        [(ProblemKind.MISSING_FIELD, E, "images[1] (id 2)")],
        2,
    ),
    (
        "local image without size, file missing",
        _delete("images.1.width"),
        [(ProblemKind.MISSING_FIELD, E, "images[1] (id 2)")],
        2,
    ),
    ("no images list", _delete("images"), [(ProblemKind.MISSING_FIELD, E, "")], 0),
    (
        "categories not a list",
        _set("categories", {"1": "can"}),
        [(ProblemKind.BAD_VALUE, E, "")],
        0,
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected", "kept"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS]
)
def test_problems_collect(
    tmp_path: Path,
    mutate: Callable[[Doc], None],
    expected: list[tuple[ProblemKind, Severity, str]],
    kept: int,
) -> None:
    doc = copy.deepcopy(_base())
    mutate(doc)
    ds, report = read_coco(_dump(tmp_path / "coco.json", doc), errors="collect")
    assert [(p.kind, p.severity, p.location or "") for p in report.problems] == expected
    assert all(p.file == str(tmp_path / "coco.json") for p in report.problems)
    assert ds.num_boxes == kept


@pytest.mark.parametrize(
    ("mutate", "expected", "kept"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS]
)
def test_problems_raise(
    tmp_path: Path,
    mutate: Callable[[Doc], None],
    expected: list[tuple[ProblemKind, Severity, str]],
    kept: int,
) -> None:
    doc = copy.deepcopy(_base())
    mutate(doc)
    path = _dump(tmp_path / "coco.json", doc)
    if expected[0][1] is Severity.WARNING:
        ds, report = read_coco(path)
        assert ds.num_boxes == kept
        assert [p.kind for p in report.warnings] == [k for k, _, _ in expected]
        return
    with pytest.raises(InvalidAnnotationError) as info:
        read_coco(path)
    assert info.value.file == str(path)
    assert (info.value.location or "") == expected[0][2]
    assert str(path) in str(info.value)


def test_unreferenced_hint_names_the_type_mismatch(tmp_path: Path) -> None:
    doc = _base()
    doc["annotations"][1]["image_id"] = "1"
    with pytest.raises(InvalidAnnotationError, match="the string '1' is not the number 1"):
        read_coco(_dump(tmp_path / "coco.json", doc))


@pytest.mark.parametrize(
    ("text", "kind", "location"),
    [
        ('{"images": [', ProblemKind.PARSE, "line 1 column 13"),
        ("[1, 2]", ProblemKind.BAD_VALUE, None),
        ('{"images": [1], "categories": []}', ProblemKind.BAD_VALUE, "images[0]"),
        (
            '{"images": [], "annotations": [7], "categories": []}',
            ProblemKind.BAD_VALUE,
            "annotations[0]",
        ),
        ('{"images": [], "categories": [{"id": 1}]}', ProblemKind.MISSING_FIELD, "categories[0]"),
    ],
    ids=[
        "broken json",
        "not an object",
        "image not an object",
        "annotation not an object",
        "nameless category",
    ],
)
def test_malformed_files(
    tmp_path: Path, text: str, kind: ProblemKind, location: str | None
) -> None:
    path = tmp_path / "coco.json"
    path.write_text(text, encoding="utf-8")
    ds, report = read_coco(path, errors="collect")
    assert [(p.kind, p.location) for p in report.errors] == [(kind, location)]
    assert len(ds) == 0
    with pytest.raises(InvalidAnnotationError, match=r"coco\.json"):
        read_coco(path)


def test_size_read_from_the_image_when_missing(cards: LabeledDataset) -> None:
    out = write_coco(cards, cards.root / "coco.json")  # type: ignore[operator]
    doc = json.loads(out.read_text())
    for image in doc["images"]:
        image["width"] = 0
        del image["height"]
    ds, report = read_coco(_dump(out, doc))
    assert report.ok
    assert {r.size for r in ds.records} == {(160, 120)}


def _exif_jpeg(path: Path) -> Path:
    """A 40x30 JPEG whose EXIF orientation 6 makes it display as 30x40."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path, exif=exif.tobytes())
    return path


def test_exif_rotated_image(tmp_path: Path) -> None:
    _exif_jpeg(tmp_path / "rot.jpg")
    doc = {
        "images": [{"id": 1, "file_name": "rot.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [3, 4, 10, 20]}],
        "categories": [{"id": 1, "name": "card"}],
    }
    ds, report = read_coco(_dump(tmp_path / "stored.json", doc))
    assert report.ok
    assert ds.records[0].size == (40, 30)  # the stored size is kept, never silently "fixed"
    problems = ds.validate()
    assert [(p.kind, p.expected, p.got) for p in problems.problems] == [
        (ProblemKind.EXIF_SWAPPED, "30x40 (EXIF orientation 6)", "'40x30'")
    ]
    del doc["images"][0]["width"], doc["images"][0]["height"]
    ds, report = read_coco(_dump(tmp_path / "unsized.json", doc))
    assert ds.records[0].size == (30, 40)  # read from the file, rotation applied
    assert ds.records[0].objects[0].box.to_xywh(30, 40) == pytest.approx((3, 4, 10, 20))
    assert ds.validate().ok
    assert len(ds.validate()) == 0


def test_folder_lookup(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_coco(tmp_path / "nope.json")
    with pytest.raises(NotFoundError, match=r"no annotations\.json"):
        read_coco(tmp_path)
    _dump(tmp_path / "instances_train.json", _base())
    (tmp_path / "notes.json").write_text('{"hello": 1}', encoding="utf-8")
    assert read_coco(tmp_path, errors="collect")[0].num_boxes == 3
    _dump(tmp_path / "instances_val.json", _base())
    with pytest.raises(InvalidInputError, match=r"instances_train\.json, instances_val\.json"):
        read_coco(tmp_path)
    _dump(tmp_path / "annotations.json", _base())
    assert len(read_coco(tmp_path, errors="collect")[0]) == 2


# --------------------------------------------------------------------------- writing
def test_write_ids_boxes_and_crowd(tmp_path: Path) -> None:
    third = 1.0 / 3.0
    records = [
        ImageRecord(
            image=str(tmp_path / "imgs" / "a.jpg"),
            width=640,
            height=480,
            objects=(
                ObjectAnnotation(
                    label="milk", box=Box(top_x=third, top_y=0.25, bottom_x=0.5, bottom_y=1.0)
                ),
                ObjectAnnotation(
                    label="can",
                    box=Box(top_x=0.0, top_y=0.0, bottom_x=0.1, bottom_y=0.1),
                    is_crowd=True,
                ),
            ),
        ),
        ImageRecord(image="https://h/b.jpg", width=100, height=50),
        ImageRecord(
            image="https://h/c.jpg",
            width=10,
            height=10,
            objects=(
                ObjectAnnotation(
                    label="can", box=Box(top_x=0.5, top_y=0.5, bottom_x=1, bottom_y=1)
                ),
            ),
        ),
    ]
    ds = LabeledDataset(records, ["milk", "can", "unused"])
    out = write_coco(ds, tmp_path)
    assert out == tmp_path / "annotations.json"
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["categories"] == [
        {"id": 1, "name": "milk", "supercategory": "none"},
        {"id": 2, "name": "can", "supercategory": "none"},
        {"id": 3, "name": "unused", "supercategory": "none"},
    ]
    assert doc["images"] == [
        {"id": 1, "file_name": "imgs/a.jpg", "width": 640, "height": 480},
        {"id": 2, "file_name": "https://h/b.jpg", "width": 100, "height": 50},
        {"id": 3, "file_name": "https://h/c.jpg", "width": 10, "height": 10},
    ]
    anns = doc["annotations"]
    assert [(a["id"], a["image_id"], a["category_id"], a["iscrowd"]) for a in anns] == [
        (1, 1, 1, 0),
        (2, 1, 2, 1),
        (3, 3, 2, 0),
    ]
    x = third * 640
    assert anns[0]["bbox"] == [x, 120.0, 320.0 - x, 360.0]  # full precision, no rounding
    assert anns[0]["area"] == (320.0 - x) * 360.0
    assert anns[2]["bbox"] == [5.0, 5.0, 5.0, 5.0]
    back, report = read_coco(out, images_root=tmp_path)
    assert report.ok
    assert back.classes == ds.classes
    for a, b in zip(ds.records, back.records, strict=True):
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert oa.box.to_array() == pytest.approx(ob.box.to_array(), abs=1e-12, rel=0)


def test_pycocotools_loads_the_written_file(cards: LabeledDataset, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    out = write_coco(cards, tmp_path / "gt.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out))
    assert sorted(coco.getImgIds()) == list(range(1, len(cards) + 1))
    assert sorted(coco.getAnnIds()) == list(range(1, cards.num_boxes + 1))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(cards.classes)


def test_write_reads_missing_sizes_and_refuses_what_it_cannot(
    cards: LabeledDataset, tmp_path: Path
) -> None:
    unsized = LabeledDataset(
        [r.model_copy(update={"width": None, "height": None}) for r in cards],
        cards.classes,
        root=cards.root,
    )
    out = write_coco(unsized, tmp_path / "sized.json")
    assert {(i["width"], i["height"]) for i in json.loads(out.read_text())["images"]} == {
        (160, 120)
    }
    assert unsized.records[0].width is None  # the input is not changed

    remote = LabeledDataset([ImageRecord(image="azureml://datastores/ds/paths/x.jpg")])
    with pytest.raises(
        InvalidInputError, match=r"record 0 \(azureml://datastores/ds/paths/x.jpg\)"
    ):
        write_coco(remote, tmp_path / "r.json")
    missing = LabeledDataset([ImageRecord(image=str(tmp_path / "gone.png"))])
    with pytest.raises(InvalidInputError, match=r"gone\.png"):
        write_coco(missing, tmp_path / "m.json")
    box = Box(top_x=0, top_y=0, bottom_x=1, bottom_y=1)
    stray = LabeledDataset(
        [
            ImageRecord(
                image="https://h/a.jpg",
                width=1,
                height=1,
                objects=(ObjectAnnotation(label="x", box=box),),
            )
        ],
        ["y"],
    )
    with pytest.raises(InvalidInputError, match="label 'x' is not in the data set's classes"):
        write_coco(stray, tmp_path / "s.json")
    (tmp_path / "notes.txt").touch()
    with pytest.raises(InvalidInputError, match=r"expected a folder or a \.json file"):
        write_coco(cards, tmp_path / "notes.txt")
    assert not list(tmp_path.glob("*.tmp"))


def test_image_base_url(cards: LabeledDataset, tmp_path: Path) -> None:
    out = write_coco(cards, tmp_path / "c.json", image_base_url="https://acct.blob/c/cards")
    names = [i["file_name"] for i in json.loads(out.read_text())["images"]]
    assert names == [f"https://acct.blob/c/cards/images/img_{i:04d}.png" for i in range(len(cards))]


# --------------------------------------------------------------------------- round trips
def test_coco_jsonl_coco_round_trip(cards: LabeledDataset) -> None:
    root = cards.root
    assert root is not None
    first = write_coco(cards, root / "first.json")
    ds, report = read_coco(first)
    assert report.ok
    via_jsonl, report = read_azureml(write_azureml(ds, root))
    assert report.ok
    second = write_coco(via_jsonl, root / "second.json")
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["images"] == b["images"]
    assert a["categories"] != b["categories"]  # JSONL has no class list: sorted names
    names_a = {c["id"]: c["name"] for c in a["categories"]}
    names_b = {c["id"]: c["name"] for c in b["categories"]}
    sizes = {i["id"]: (i["width"], i["height"]) for i in a["images"]}
    assert len(a["annotations"]) == len(b["annotations"]) == cards.num_boxes
    for x, y in zip(a["annotations"], b["annotations"], strict=True):
        assert (x["id"], x["image_id"], x["iscrowd"]) == (y["id"], y["image_id"], y["iscrowd"])
        assert names_a[x["category_id"]] == names_b[y["category_id"]]
        w, h = sizes[x["image_id"]]
        scale = [w, h, w, h]
        assert [v / s for v, s in zip(x["bbox"], scale, strict=True)] == pytest.approx(
            [v / s for v, s in zip(y["bbox"], scale, strict=True)], abs=1e-9, rel=0
        )
    for ra, rb in zip(ds.records, read_coco(second)[0].records, strict=True):
        for oa, ob in zip(ra.objects, rb.objects, strict=True):
            assert oa.box.to_array() == pytest.approx(ob.box.to_array(), abs=1e-9, rel=0)


def test_read_dataset_recognises_coco(cards: LabeledDataset) -> None:
    write_coco(cards, cards.root)  # type: ignore[arg-type]
    ds = read_dataset(cards.root / "annotations.json")  # type: ignore[operator]
    assert ds.classes == cards.classes
    assert [r.image for r in ds] == [r.image for r in cards]


# --------------------------------------------------------------------------- the fast path
def test_trusted_model_matches_model_construct() -> None:
    values = {"top_x": 0.1, "top_y": 0.2, "bottom_x": 0.3, "bottom_y": 0.4}
    fast, slow = trusted_model(Box, dict(values)), Box.model_construct(**values)
    assert fast == slow == Box(**values)
    assert hash(fast) == hash(slow)
    assert fast.model_fields_set == slow.model_fields_set
    assert repr(fast) == repr(slow)
    with pytest.raises(ValidationError):
        fast.top_x = 0.5  # type: ignore[misc]
    obj = trusted_model(
        ObjectAnnotation, {"label": "a", "box": fast, "is_crowd": False, "score": None}
    )
    other = trusted_model(
        ObjectAnnotation, {"label": "b", "box": fast, "is_crowd": True, "score": None}
    )
    assert obj == ObjectAnnotation(label="a", box=Box(**values))
    renamed = obj.model_copy(update={"label": "c"})
    assert (renamed.label, obj.label, other.label) == ("c", "a", "b")
    assert other.model_fields_set == {
        "label",
        "box",
        "is_crowd",
        "score",
        "source",
        "model_version",
    }
    assert ObjectAnnotation.model_validate(obj.model_dump()) == obj
    record = trusted_model(
        ImageRecord, {"image": "x.jpg", "width": 2, "height": 3, "format": None, "objects": (obj,)}
    )
    assert record == ImageRecord(image="x.jpg", width=2, height=3, objects=(obj,))
    with pytest.raises(TypeError, match="expected values for"):
        trusted_model(Box, {"top_x": 0.1})


def test_auto_units_warns_when_tiny_pixel_boxes_look_normalized(tmp_path: Path) -> None:
    from detectkit.formats.coco import read_coco

    path = tmp_path / "tiny.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
                "categories": [{"id": 1, "name": "dot"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
            }
        )
    )
    ds, report = read_coco(path, errors="collect")
    assert any("bbox_units" in (p.hint or "") for p in report.warnings)
    pixels, _ = read_coco(path, bbox_units="pixels", errors="collect")
    assert pixels[0].objects[0].box.bottom_x == pytest.approx(1 / 640)
    assert ds[0].objects[0].box.bottom_x == pytest.approx(1.0)
