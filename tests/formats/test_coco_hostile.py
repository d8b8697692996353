"""Hostile COCO files end in data plus a report, or a typed error naming the file: never a
``RecursionError``, ``ValueError``, ``OverflowError`` or ``UnicodeDecodeError``, and never a
data set that ``write_coco`` or ``summary()`` cannot handle later.

Each case reproduces an input that once escaped untyped; the fuzz test then asserts the same
promise over generated files, within a time bound.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectkit.errors import DetectkitError, InvalidAnnotationError
from detectkit.formats import read_dataset
from detectkit.formats.coco import read_coco, write_coco
from detectkit.validation import ProblemKind

DEEP = "[" * 3000 + "]" * 3000
HUGE = "1" + "0" * 400  # 10**400: an int no float can hold


def coco_text(*, bbox: str = "[10, 20, 30, 40]", width: str = "640", name: str = '"card"') -> str:
    return (
        (
            '{"images": [{"id": 1, "file_name": "a.jpg", "width": WIDTH, "height": 480}],'
            ' "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": BBOX}],'
            ' "categories": [{"id": 1, "name": NAME}]}'
        )
        .replace("WIDTH", width)
        .replace("BBOX", bbox)
        .replace("NAME", name)
    )


CASES: dict[str, bytes] = {
    "invalid-utf8": coco_text(name='"card\xff"').encode("latin-1"),
    "deep-document": DEEP.encode(),
    "deep-box": coco_text(bbox=DEEP).encode(),
    "deep-label": coco_text(name=DEEP).encode(),
    "5000-digit-int": coco_text(bbox=f"[1, 2, {'1' * 5000}, 4]").encode(),
    "10**400-coordinate": coco_text(bbox=f"[1, 2, {HUGE}, 4]").encode(),
    "10**400-width": coco_text(width=HUGE).encode(),
    "1e400-width": coco_text(width="1e400").encode(),
    "1e308-width": coco_text(width="1e308").encode(),
    "lone-surrogate-name": coco_text(name='"card\\ud800"').encode(),
    "bbox-is-an-object": coco_text(bbox='{"": null}').encode(),  # found by the fuzz below
}


def _write(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "annotations.json"
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("case", CASES)
def test_hostile_coco_raises_a_typed_error_naming_the_file(case: str, tmp_path: Path) -> None:
    path = _write(tmp_path, CASES[case])
    with pytest.raises(InvalidAnnotationError, match="annotations.json"):
        read_coco(path)


@pytest.mark.parametrize("case", CASES)
def test_hostile_coco_collects_and_the_result_can_be_used(case: str, tmp_path: Path) -> None:
    ds, report = read_coco(_write(tmp_path, CASES[case]), errors="collect")
    assert not report.ok
    ds.summary()  # once raised OverflowError for a 10**400 width
    write_coco(ds, tmp_path / "back.json")  # once raised UnicodeEncodeError
    back, again = read_coco(tmp_path / "back.json", errors="collect")
    assert again.ok, again.to_text()
    assert len(back) == len(ds)


def test_the_problems_name_the_place(tmp_path: Path) -> None:
    def problem(case: str) -> Any:
        _, report = read_coco(_write(tmp_path, CASES[case]), errors="collect")
        return report.errors[0]  # the first: later ones follow from it

    utf8 = problem("invalid-utf8")
    assert utf8.kind == ProblemKind.PARSE and "not UTF-8 text" in utf8.got
    column = CASES["invalid-utf8"].index(b"\xff") + 1  # the bad byte, counted from 1
    assert utf8.location == f"line 1 column {column}"
    assert "nested too deeply" in problem("deep-box").got
    assert "number too long" in problem("5000-digit-int").got
    overflow = problem("10**400-coordinate")
    assert (overflow.field, overflow.location) == ("bbox", "annotations[0] (id 1)")
    assert "too large" in overflow.message
    width = problem("10**400-width")
    assert width.field == "width/height" and "401 digits" in width.got
    surrogate = problem("lone-surrogate-name")
    assert (surrogate.field, surrogate.location) == ("name", "categories[0]")


def test_a_lone_surrogate_in_a_file_name_is_refused_at_read(tmp_path: Path) -> None:
    body = coco_text().replace('"a.jpg"', '"a\\udfff.jpg"').encode()
    ds, report = read_coco(_write(tmp_path, body), errors="collect")
    assert len(ds) == 0
    assert [p.field for p in report.errors] == ["file_name"]
    assert "\\udfff" in report.errors[0].got


def test_nan_and_infinity_literals_are_read_and_refused_as_boxes(tmp_path: Path) -> None:
    body = coco_text(bbox="[NaN, 2, Infinity, 4]").encode()
    ds, report = read_coco(_write(tmp_path, body), errors="collect")
    assert len(ds) == 1 and not ds.records[0].objects
    assert [(p.field, p.location) for p in report.errors] == [
        ("bbox x", "annotations[0] (id 1, image a.jpg)")
    ]


def test_a_good_file_reads_as_it_did_with_the_standard_library(tmp_path: Path) -> None:
    body = coco_text(bbox="[10.000000000000002, 20, 30.5, -0.0]").encode()
    ds, report = read_coco(_write(tmp_path, body), errors="collect")
    assert report.ok, report.to_text()
    doc = json.loads(body)
    (obj,) = ds.records[0].objects
    x, y, w, h = doc["annotations"][0]["bbox"]
    assert obj.box.top_y == y / 480 and obj.box.bottom_y == (y + h) / 480
    assert obj.box.top_x == x / 640 and obj.box.bottom_x == (x + w) / 640
    assert obj.label == "card" and ds.records[0].width == 640


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
_number = st.integers(-(10**30), 10**30) | st.floats() | _json
_image = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(-2, 3) | _json,
        "file_name": st.sampled_from(["a.jpg", "b/c.png", "../x.jpg", "a\ud800"]) | _json,
        "width": st.sampled_from([640, 0, 10**400, 1e308]) | _number,
        "height": st.sampled_from([480, -1]) | _number,
    },
)
_annotation = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(0, 3) | _json,
        "image_id": st.integers(0, 3) | _json,
        "category_id": st.integers(0, 3) | _json,
        "bbox": st.lists(_number, min_size=3, max_size=5) | _json,
        "iscrowd": st.sampled_from([0, 1, 2]) | _json,
    },
)
_category = st.fixed_dictionaries(
    {}, optional={"id": st.integers(0, 3) | _json, "name": st.text(max_size=5) | _json}
)
_doc = st.fixed_dictionaries(
    {},
    optional={
        "images": st.lists(_image, max_size=4) | _json,
        "annotations": st.lists(_annotation, max_size=5) | _json,
        "categories": st.lists(_category, max_size=3) | _json,
    },
)
_file = st.one_of(
    st.binary(max_size=200),
    _doc.map(lambda d: json.dumps(d).encode()),
    _doc.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_file)
def test_fuzzed_coco_gives_data_and_a_report_or_a_typed_error(body: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "annotations.json"
        path.write_bytes(body)
        start = time.perf_counter()
        with contextlib.suppress(DetectkitError):
            read_dataset(path, "coco")
        ds, _ = read_coco(path, errors="collect")
        ds.summary()
        with contextlib.suppress(DetectkitError):  # an image without a size cannot be written
            write_coco(ds, Path(tmp) / "out.json")
        assert time.perf_counter() - start < 2.0
