"""Azure ML JSONL / MLTable: reading, writing, problems, round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectkit import read_dataset
from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError, InvalidInputError, NotFoundError
from detectkit.formats.azureml import mltable_paths, mltable_text, read_azureml, write_azureml
from detectkit.formats.coco import read_coco, write_coco
from detectkit.validation import ProblemKind, Severity

BOX = {"label": "can", "topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}


def _line(**extra: Any) -> dict[str, Any]:
    return {"image_url": "images/a.jpg", "label": [dict(BOX)], **extra}


def _write(path: Path, *lines: object) -> Path:
    text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
    path.write_text(text, encoding="utf-8")
    return path


def _boxes(ds: LabeledDataset) -> list[list[tuple[str, tuple[float, ...], bool]]]:
    return [
        [(o.label, tuple(o.box.to_array().tolist()), o.is_crowd) for o in r.objects]
        for r in ds.records
    ]


# --------------------------------------------------------------------------- reading: table
READ_CASES: list[
    tuple[str, dict[str, Any], tuple[int | None, int | None], list[Any], list[str]]
] = [
    (
        "plain",
        _line(image_details={"format": "jpg", "width": 640, "height": 480}),
        (640, 480),
        [("can", (0.1, 0.2, 0.5, 0.6), False)],
        [],
    ),
    (
        "px strings",
        _line(image_details={"format": "jpg", "width": "499px", "height": " 666 px"}),
        (499, 666),
        [("can", (0.1, 0.2, 0.5, 0.6), False)],
        [],
    ),
    ("no details", _line(), (None, None), [("can", (0.1, 0.2, 0.5, 0.6), False)], []),
    (
        "data labeling export",
        {
            "image_url": "images/a.jpg",
            "label": [dict(BOX)],
            "label_confidence": [1.0],
            "image_width": 800,
            "image_height": 600,
        },
        (800, 600),
        [("can", (0.1, 0.2, 0.5, 0.6), False)],
        [],
    ),
    (
        "crowd flags",
        {
            "image_url": "images/a.jpg",
            "label": [
                {**BOX, "isCrowd": 1},
                {**BOX, "isCrowd": True},
                {**BOX, "isCrowd": "0"},
                {**BOX, "isCrowd": 0},
            ],
        },
        (None, None),
        [("can", (0.1, 0.2, 0.5, 0.6), c) for c in (True, True, False, False)],
        [],
    ),
    (
        "integer and string coordinates",
        {
            "image_url": "images/a.jpg",
            "label": [{"label": "can", "topX": 0, "topY": "0.25", "bottomX": 1, "bottomY": 1.0}],
        },
        (None, None),
        [("can", (0.0, 0.25, 1.0, 1.0), False)],
        [],
    ),
    (
        "hair outside is clipped",
        {"image_url": "images/a.jpg", "label": [{**BOX, "bottomX": 1.0004, "topY": -1e-7}]},
        (None, None),
        [("can", (0.1, 0.0, 1.0, 0.6), False)],
        ["clipped", "clipped"],
    ),
    ("no objects", {"image_url": "images/a.jpg", "label": []}, (None, None), [], []),
    ("missing label list", {"image_url": "images/a.jpg"}, (None, None), [], ["missing_field"]),
    (
        "unreadable size dropped with a warning",
        _line(image_details={"width": "wide", "height": -3}),
        (None, None),
        [("can", (0.1, 0.2, 0.5, 0.6), False)],
        ["bad_value", "bad_value"],
    ),
]


@pytest.mark.parametrize(
    ("line", "size", "objects", "warnings"),
    [c[1:] for c in READ_CASES],
    ids=[c[0] for c in READ_CASES],
)
def test_read_line(
    tmp_path: Path,
    line: dict[str, Any],
    size: tuple[int | None, int | None],
    objects: list[Any],
    warnings: list[str],
) -> None:
    ds, report = read_azureml(_write(tmp_path / "train.jsonl", line))
    (record,) = ds.records
    assert record.image == str((tmp_path / "images" / "a.jpg").resolve())
    assert (record.width, record.height) == size
    assert _boxes(ds) == [objects]
    assert [p.kind.value for p in report.problems] == warnings
    assert all(p.severity is Severity.WARNING for p in report.problems)
    assert ds.classes == tuple(sorted({o[0] for o in objects}))


ERROR_CASES: list[tuple[str, str, ProblemKind, str, str | None]] = [
    ("broken json", '{"image_url": "images/a.jpg", "label": [', ProblemKind.PARSE, "line 2", None),
    ("not an object", "[1, 2]", ProblemKind.BAD_VALUE, "line 2", None),
    ("no image_url", json.dumps({"label": []}), ProblemKind.MISSING_FIELD, "line 2", "image_url"),
    (
        "classification label",
        json.dumps({"image_url": "b.jpg", "label": "can"}),
        ProblemKind.BAD_VALUE,
        "line 2",
        "label",
    ),
    (
        "out of range",
        json.dumps({"image_url": "b.jpg", "label": [{**BOX, "bottomX": 1.2}]}),
        ProblemKind.OUT_OF_RANGE,
        "line 2 label[0] (can)",
        "bottomX",
    ),
    (
        "inverted",
        json.dumps({"image_url": "b.jpg", "label": [{**BOX, "bottomY": 0.1}]}),
        ProblemKind.INVERTED_BOX,
        "line 2 label[0] (can)",
        "bottomY",
    ),
    (
        "missing coordinate",
        json.dumps({"image_url": "b.jpg", "label": [{"label": "can", "topX": 0.1}]}),
        ProblemKind.MISSING_FIELD,
        "line 2 label[0] (can)",
        "topY",
    ),
    (
        "no label name",
        json.dumps({"image_url": "b.jpg", "label": [{**BOX, "label": ""}]}),
        ProblemKind.BAD_VALUE,
        "line 2 label[0]",
        "label",
    ),
    (
        "bad crowd flag",
        json.dumps({"image_url": "b.jpg", "label": [{**BOX, "isCrowd": 2}]}),
        ProblemKind.BAD_VALUE,
        "line 2 label[0] (can)",
        "isCrowd",
    ),
    (
        "path escape",
        json.dumps({"image_url": "../outside.jpg", "label": []}),
        ProblemKind.UNSAFE_PATH,
        "line 2",
        "image_url",
    ),
    (
        "absolute path elsewhere",
        json.dumps({"image_url": "/etc/passwd", "label": []}),
        ProblemKind.UNSAFE_PATH,
        "line 2",
        "image_url",
    ),
]


@pytest.mark.parametrize(
    ("bad", "kind", "location", "field"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_errors_raise_naming_file_and_line(
    tmp_path: Path, bad: str, kind: ProblemKind, location: str, field: str | None
) -> None:
    path = _write(tmp_path / "train.jsonl", _line(), bad)
    with pytest.raises(InvalidAnnotationError) as info:
        read_azureml(path)
    err = info.value
    assert err.file == str(path)
    assert err.location == location
    assert err.field == field
    assert str(err).startswith(f"{path}, {location}: ")


@pytest.mark.parametrize(
    ("bad", "kind", "location", "field"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_errors_collect_keep_the_rest(
    tmp_path: Path, bad: str, kind: ProblemKind, location: str, field: str | None
) -> None:
    path = _write(tmp_path / "train.jsonl", _line(), bad, _line(image_url="images/c.jpg"))
    ds, report = read_azureml(path, errors="collect")
    assert [(p.kind, p.location, p.severity) for p in report.problems] == [
        (kind, location, Severity.ERROR)
    ]
    names = [r.name for r in ds.records]
    assert names[0] == "a.jpg"
    assert names[-1] == "c.jpg"
    # a bad box drops the box only: its line's image is kept
    assert len(ds) == (3 if location.startswith("line 2 label") else 2)


def test_collect_lists_every_problem_and_skips_blank_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "train.jsonl",
        _line(),
        "",
        "   ",
        "{not json}",
        {"image_url": "b.jpg", "label": [{**BOX, "topX": 7}, dict(BOX), {**BOX, "bottomY": 0}]},
        "",
        {"image_url": "../../x.jpg", "label": []},
    )
    ds, report = read_azureml(path, errors="collect")
    assert [(p.kind.value, p.location) for p in report.errors] == [
        ("parse", "line 4"),
        ("out_of_range", "line 5 label[0] (can)"),
        ("inverted_box", "line 5 label[2] (can)"),
        ("unsafe_path", "line 7"),
    ]
    assert not report.ok
    assert [len(r.objects) for r in ds.records] == [1, 1]
    assert "4 error(s)" in report.to_text()


def test_bom_and_unicode_labels(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    line = json.dumps(
        {"image_url": "a.jpg", "label": [{**BOX, "label": "café"}]}, ensure_ascii=False
    )
    path.write_bytes(b"\xef\xbb\xbf" + line.encode("utf-8") + b"\n")
    ds, _ = read_azureml(path)
    assert ds.classes == ("café",)


def test_invalid_utf8_is_a_parse_error_for_that_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(json.dumps(_line()).encode() + b"\n" + b'{"image_url": "\xff"}\n')
    ds, report = read_azureml(path, errors="collect")
    assert len(ds) == 1
    assert [(p.kind, p.location) for p in report.problems] == [(ProblemKind.PARSE, "line 2")]


def test_urls_kept_verbatim_and_images_root(tmp_path: Path) -> None:
    url = "azureml://subscriptions/s/resourcegroups/r/workspaces/w/datastores/ds/paths/x/1.jpg"
    (tmp_path / "ann").mkdir()
    path = _write(
        tmp_path / "ann" / "train.jsonl",
        _line(image_url=url),
        _line(image_url="https://host/a.png"),
        _line(image_url="sub/b.png"),
    )
    ds, _ = read_azureml(path, images_root=tmp_path / "pics")
    assert [r.image for r in ds.records] == [
        url,
        "https://host/a.png",
        str((tmp_path / "pics" / "sub" / "b.png").resolve()),
    ]
    assert ds.root == tmp_path / "pics"


def test_classes_are_sorted_labels(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.jsonl",
        {"image_url": "a.jpg", "label": [{**BOX, "label": "zebra"}]},
        {"image_url": "b.jpg", "label": [{**BOX, "label": "apple"}, {**BOX, "label": "mango"}]},
    )
    assert read_azureml(path)[0].classes == ("apple", "mango", "zebra")


# --------------------------------------------------------------------------- MLTable and paths
def test_mltable_text_is_what_automl_expects() -> None:
    assert mltable_text("train_annotations.jsonl") == (
        "paths:\n"
        "  - file: ./train_annotations.jsonl\n"
        "transformations:\n"
        "  - read_json_lines:\n"
        "        encoding: utf8\n"
        "        invalid_lines: error\n"
        "        include_path_column: false\n"
        "  - convert_column_types:\n"
        "      - columns: image_url\n"
        "        column_type: stream_info\n"
    )
    assert "  - file: './my labels.jsonl'\n" in mltable_text("my labels.jsonl")


MLTABLES = [
    ("written", mltable_text("train.jsonl"), ["train.jsonl"]),
    (
        "comments and quotes",
        "# an MLTable\n$schema: https://x/MLTable.json\ntype: mltable\npaths:  # the data\n"
        "- file: './train.jsonl'  # first\n-   file: \"extra.jsonl\"\ntransformations:\n"
        "  - read_json_lines:\n      encoding: utf8\n",
        ["train.jsonl", "extra.jsonl"],
    ),
    ("folder", "paths:\n  - folder: ./parts\n", ["parts/p1.jsonl", "parts/p2.jsonl"]),
    ("pattern", "paths:\n  - pattern: ./parts/*.jsonl\n", ["parts/p1.jsonl", "parts/p2.jsonl"]),
    ("json", json.dumps({"paths": [{"file": "./train.jsonl"}]}), ["train.jsonl"]),
]


@pytest.mark.parametrize(
    ("text", "expected"), [m[1:] for m in MLTABLES], ids=[m[0] for m in MLTABLES]
)
def test_mltable_paths(tmp_path: Path, text: str, expected: list[str]) -> None:
    (tmp_path / "parts").mkdir()
    for name in ("train.jsonl", "extra.jsonl", "parts/p1.jsonl", "parts/p2.jsonl"):
        _write(tmp_path / name, _line(image_url=f"{name}.png"))
    (tmp_path / "MLTable").write_text(text, encoding="utf-8")
    assert mltable_paths(tmp_path) == [tmp_path / e for e in expected]
    ds, _ = read_azureml(tmp_path / "MLTable")
    assert [Path(r.image).name for r in ds.records] == [f"{Path(e).name}.png" for e in expected]


@pytest.mark.parametrize(
    ("text", "raises", "match"),
    [
        ("paths:\n  - file: ./missing.jsonl\n", NotFoundError, "missing.jsonl"),
        (
            "paths:\n  - file: azureml://datastores/ds/paths/t.jsonl\n",
            InvalidInputError,
            "cloud URL",
        ),
        ("paths: [{file: ./train.jsonl}]\n", InvalidInputError, "block list"),
        ("type: mltable\n", InvalidInputError, "no entries"),
        ("paths:\n  - url: x\n", InvalidInputError, "'file:'"),
        ("paths:\n  file ./train.jsonl\n", InvalidInputError, "line 2"),
        ("paths:\n  - folder: ./empty\n", NotFoundError, "holds no"),
        ("paths:\n  - pattern: ./*.csv\n", NotFoundError, "matches no file"),
    ],
    ids=[
        "missing file",
        "cloud url",
        "flow style",
        "no paths",
        "unknown key",
        "not a list",
        "empty folder",
        "pattern without match",
    ],
)
def test_mltable_problems(tmp_path: Path, text: str, raises: type[Exception], match: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "MLTable").write_text(text, encoding="utf-8")
    with pytest.raises(raises, match=match):
        read_azureml(tmp_path)


def test_folder_lookup(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_azureml(tmp_path / "nope")
    with pytest.raises(NotFoundError, match="no MLTable"):
        read_azureml(tmp_path)
    _write(tmp_path / "a.jsonl", _line())
    assert len(read_azureml(tmp_path)[0]) == 1
    _write(tmp_path / "b.jsonl", _line())
    with pytest.raises(InvalidInputError, match=r"a\.jsonl, b\.jsonl"):
        read_azureml(tmp_path)


# --------------------------------------------------------------------------- writing
def test_write_folder_and_file(cards: LabeledDataset, tmp_path: Path) -> None:
    out = write_azureml(cards, cards.root)  # type: ignore[arg-type]
    assert out == cards.root / "annotations.jsonl"  # type: ignore[operator]
    assert (out.parent / "MLTable").read_text(encoding="utf-8") == mltable_text("annotations.jsonl")
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["image_url"] == "images/img_0000.png"
    assert first["image_details"] == {"format": "png", "width": 160, "height": 120}
    assert set(first["label"][0]) == {"label", "topX", "topY", "bottomX", "bottomY", "isCrowd"}

    other = write_azureml(cards, tmp_path / "elsewhere" / "train.jsonl")
    assert mltable_paths(other.parent) == [other]
    assert json.loads(other.read_text().splitlines()[0])["image_url"] == cards.records[0].image
    with pytest.raises(InvalidInputError, match=r"expected a folder or a \.jsonl"):
        write_azureml(cards, out.parent / "MLTable")


def test_each_line_keeps_its_own_image_details(tmp_path: Path) -> None:
    box = Box(top_x=0.1, top_y=0.1, bottom_x=0.2, bottom_y=0.2)
    ds = LabeledDataset(
        [
            ImageRecord(image="https://h/a.jpg", width=640, height=480, objects=()),
            ImageRecord(image="https://h/b.png", width=100, height=900, format="png"),
            ImageRecord(image="https://h/c", objects=(ObjectAnnotation(label="x", box=box),)),
        ]
    )
    lines = [json.loads(s) for s in write_azureml(ds, tmp_path).read_text().splitlines()]
    assert [ln.get("image_details") for ln in lines] == [
        {"format": "jpg", "width": 640, "height": 480},
        {"format": "png", "width": 100, "height": 900},
        None,
    ]
    assert lines[2]["label"] == [
        {"label": "x", "topX": 0.1, "topY": 0.1, "bottomX": 0.2, "bottomY": 0.2, "isCrowd": 0}
    ]


def test_image_base_url(cards: LabeledDataset, tmp_path: Path) -> None:
    base = "azureml://subscriptions/s/resourcegroups/r/workspaces/w/datastores/ds/paths/cards"
    out = write_azureml(cards, tmp_path / "out", image_base_url=base + "/")
    urls = [json.loads(s)["image_url"] for s in out.read_text().splitlines()]
    assert urls == [f"{base}/images/img_{i:04d}.png" for i in range(len(cards))]
    ds, report = read_azureml(out)
    assert report.ok
    assert [r.image for r in ds.records] == urls


def test_write_does_not_mutate_and_crowd_is_written(tmp_path: Path) -> None:
    box = Box(top_x=0.25, top_y=0.5, bottom_x=0.75, bottom_y=1.0)
    record = ImageRecord(
        image="https://h/a.jpg",
        width=10,
        height=10,
        format="jpg",
        objects=(ObjectAnnotation(label="a", box=box, is_crowd=True),),
    )
    ds = LabeledDataset([record])
    before = record.model_dump()
    back, _ = read_azureml(write_azureml(ds, tmp_path / "x.jsonl"))
    assert record.model_dump() == before
    assert back == ds


# --------------------------------------------------------------------------- round trips
def test_jsonl_coco_jsonl_round_trip(cards: LabeledDataset, tmp_path: Path) -> None:
    src = write_azureml(cards, cards.root)  # type: ignore[arg-type]
    ds, report = read_azureml(src)
    assert report.ok
    coco = write_coco(ds, cards.root / "coco.json")  # type: ignore[operator]
    via_coco, report = read_coco(coco)
    assert report.ok
    back, _ = read_azureml(write_azureml(via_coco, cards.root / "again.jsonl"))  # type: ignore[operator]
    assert [r.image for r in back] == [r.image for r in ds]
    assert [r.size for r in back] == [r.size for r in ds]
    for a, b in zip(ds.records, back.records, strict=True):
        assert [(o.label, o.is_crowd) for o in a.objects] == [
            (o.label, o.is_crowd) for o in b.objects
        ]
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert oa.box.to_array() == pytest.approx(ob.box.to_array(), abs=1e-9, rel=0)


def test_read_dataset_recognises_mltable(cards: LabeledDataset) -> None:
    write_azureml(cards, cards.root)  # type: ignore[arg-type]
    ds = read_dataset(cards.root)  # type: ignore[arg-type]
    assert len(ds) == len(cards)
    assert _boxes(ds) == _boxes(cards)


_unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def _boxes_st(draw: st.DrawFn) -> Box:
    x1, x2 = sorted((draw(_unit), draw(_unit)))
    y1, y2 = sorted((draw(_unit), draw(_unit)))
    return Box(top_x=x1, top_y=y1, bottom_x=x2, bottom_y=y2)


_objects = st.lists(
    st.builds(
        ObjectAnnotation,
        label=st.text(min_size=1, max_size=8),
        box=_boxes_st(),
        is_crowd=st.booleans(),
    ),
    max_size=4,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(
        st.builds(
            ImageRecord,
            image=st.from_regex(r"https://h/[a-z]{1,6}\.jpg", fullmatch=True),
            width=st.one_of(st.none(), st.integers(1, 10_000)),
            height=st.one_of(st.none(), st.integers(1, 10_000)),
            objects=_objects.map(tuple),
        ),
        max_size=5,
    )
)
def test_write_read_is_exact(tmp_path: Path, records: list[ImageRecord]) -> None:
    ds = LabeledDataset(records)
    back, report = read_azureml(write_azureml(ds, tmp_path / "h.jsonl"))
    assert report.ok
    assert [(r.image, r.width, r.height, r.objects) for r in back] == [
        (r.image, r.width, r.height, r.objects) for r in ds
    ]


def test_mltable_paths_must_stay_in_its_folder(tmp_path: Path) -> None:
    from detectkit.errors import InvalidInputError
    from detectkit.formats.azureml import read_azureml

    (tmp_path / "outside.jsonl").write_text("")
    folder = tmp_path / "asset"
    folder.mkdir()
    (folder / "MLTable").write_text("paths:\n  - file: ../outside.jsonl\n")
    with pytest.raises(InvalidInputError, match="leaves the MLTable's folder"):
        read_azureml(folder)
