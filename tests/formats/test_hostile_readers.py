"""Hostile inputs for the JSONL/MLTable, YOLO, VOC and Label Studio readers: every case ends
in data plus a report or a DetectkitError subclass, never an untyped exception or a hang."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectkit import LabeledDataset
from detectkit.errors import DetectkitError, InvalidAnnotationError
from detectkit.formats import read_dataset, write_dataset
from detectkit.formats.coco import write_coco
from detectkit.images import PIXEL_LIMIT_ENV, image_info
from detectkit.synthetic import make_dataset
from detectkit.validation import ValidationReport

BOX = {"label": "a", "topX": 0.1, "topY": 0.1, "bottomX": 0.5, "bottomY": 0.5}


def _line(**changes: object) -> bytes:
    doc: dict[str, object] = {"image_url": "x.png", "label": [BOX]}
    doc.update(changes)
    return json.dumps(doc).encode()


# (name, JSONL bytes, the field / text the problem must name, records kept of the two lines)
JSONL_CASES: list[tuple[str, bytes, str, int]] = [
    ("invalid-utf8", b'{"image_url": "x.png", "label": [{"label": "\xff"}]}', "line 1", 1),
    (
        "deep-nesting",
        b'{"image_url": "x.png", "label": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        "line 1",
        1,
    ),
    (
        "5000-digit-int",
        _line(label=[{**BOX, "topX": 0}])[:-2] + b', "n": ' + b"9" * 5000 + b"}",
        "line 1",
        1,
    ),
    ("1e400-coordinate", _line(label=[{**BOX, "bottomX": 10**400}]), "bottomX", 2),
    ("1e400-width", _line(image_details={"width": 10**400, "height": 5}), "image_details.width", 2),
    ("nul-in-path", _line(image_url="im\u0000age.png"), "image_url", 1),
    (
        "lone-surrogate-label",
        b'{"image_url": "x.png", "label": [{"label": "\\ud800", "topX": 0.1,'
        b' "topY": 0.1, "bottomX": 0.5, "bottomY": 0.5}]}',
        "label",
        2,
    ),
    ("lone-surrogate-path", b'{"image_url": "\\ud800.png", "label": []}', "image_url", 1),
]


@pytest.mark.parametrize(
    ("name", "data", "named", "kept"), JSONL_CASES, ids=[c[0] for c in JSONL_CASES]
)
def test_jsonl_hostile_line_is_a_named_problem(
    tmp_path: Path, name: str, data: bytes, named: str, kept: int
) -> None:
    from PIL import Image

    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    file = tmp_path / "a.jsonl"
    file.write_bytes(data + b"\n" + _line() + b"\n")
    ds, report = read_dataset(file, "azureml", errors="collect")
    assert len(ds) == kept  # the good line is kept, and the bad one when only a box is bad
    text = report.to_text()
    assert not report.ok or report.warnings, text
    assert named in text and str(file) in text
    # nothing read makes a later writer fail on encoding
    write_coco(ds, tmp_path / "out.json")
    if report.errors:
        with pytest.raises(InvalidAnnotationError):
            read_dataset(file, "azureml")


def test_summary_of_a_huge_stored_width_does_not_overflow(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_bytes(_line(image_details={"width": 10**400, "height": 10**400}) + b"\n")
    (tmp_path / "x.png").write_bytes(b"")
    ds, report = read_dataset(file, "azureml", errors="collect")
    assert ds.records[0].width is None and report.warnings
    assert ds.summary().boxes == 1


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [("/etc/*", "absolute"), ("a**b", "not a valid glob"), (".", "not a valid glob")],
)
def test_mltable_bad_patterns_are_typed(tmp_path: Path, pattern: str, needle: str) -> None:
    (tmp_path / "MLTable").write_text(f"paths:\n  - pattern: '{pattern}'\n")
    with pytest.raises(DetectkitError, match=needle):
        read_dataset(tmp_path, "azureml")


def test_mltable_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "MLTable").write_bytes(b"paths:\n  - file: ./\xff.jsonl\n")
    with pytest.raises(InvalidAnnotationError, match=r"MLTable, line 2") as info:
        read_dataset(tmp_path, "azureml")
    assert info.value.file == str(tmp_path / "MLTable")


def test_big_png_is_a_problem_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("1", (20000, 20000)).save(path)  # 1-bit: a small file, 400 M pixels
    with pytest.raises(InvalidAnnotationError, match="178,956,970") as info:
        image_info(path)
    assert info.value.file == str(path) and PIXEL_LIMIT_ENV in str(info.value)
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "500000000")
    assert image_info(path).width == 20000
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "1000")
    with pytest.raises(InvalidAnnotationError, match="at most 1,000 pixels"):
        image_info(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_image_is_refused_without_opening(tmp_path: Path) -> None:
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(InvalidAnnotationError, match="not a regular file"):
        image_info(fifo)
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>x.png</filename><object><name>a</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>"
    )
    ds, report = read_dataset(tmp_path, "voc", errors="collect")
    assert len(ds) == 0 and "FIFO" in report.to_text()
    assert time.monotonic() - start < 5


def test_nul_byte_image_path_is_typed(tmp_path: Path) -> None:
    with pytest.raises(InvalidAnnotationError, match="cannot be opened"):
        image_info(str(tmp_path / "a\0.png"))


def test_yolo_huge_class_id_without_names_is_bounded(tmp_path: Path) -> None:
    make_dataset(tmp_path, n_images=1, seed=3)
    (tmp_path / "labels").mkdir()
    stem = next((tmp_path / "images").iterdir()).stem
    (tmp_path / "labels" / f"{stem}.txt").write_text(
        "30000000 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.2 0.2\n"
    )
    start = time.monotonic()
    ds, report = read_dataset(tmp_path, "yolo", errors="collect")
    assert time.monotonic() - start < 5
    assert ds.classes == ("0", "1") and ds.num_boxes == 1
    assert "unknown_label" in report.counts() and "9999" in report.to_text()


def test_classes_txt_duplicate_check_is_linear(tmp_path: Path) -> None:
    make_dataset(tmp_path, n_images=1, seed=3)
    (tmp_path / "classes.txt").write_text("".join(f"c{k}\n" for k in range(30_000)))
    start = time.monotonic()
    ds, _ = read_dataset(tmp_path, "yolo", errors="collect")
    assert time.monotonic() - start < 2.0  # 30,000 names; was 3.8 s when quadratic
    assert len(ds.classes) == 30_000


# ------------------------------------------------------------------------------- fuzzing
def _fixture_set(root: Path, fmt: str) -> Path:
    """A tiny valid data set in ``fmt`` under ``root``; returns the file to mutate."""
    ds = make_dataset(root / "src", n_images=2, seed=5, size=(32, 24))
    out = root / fmt
    write_dataset(ds, out, fmt, copy_images=True)  # type: ignore[arg-type]
    pattern = {"azureml": "*.jsonl", "yolo": "labels/*.txt", "voc": "*.xml"}.get(fmt, "*.json")
    return sorted(out.glob(pattern))[0]


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for pos, kind, chunk in edits:
        at = pos % (len(out) + 1)
        if kind == 0:
            out[at:at] = chunk  # insert
        elif kind == 1:
            out[at : at + len(chunk)] = chunk  # overwrite
        else:
            del out[at : at + len(chunk) + 1]  # delete
    return bytes(out)


_HOSTILE = [b"\xff", b"\x00", b"[[[[", b"9" * 40, b"1e400", b"\\ud800", b"-", b"..", b"/", b'"']
EDITS = st.lists(
    st.tuples(
        st.integers(0, 1 << 16),
        st.integers(0, 2),
        st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(_HOSTILE)),
    ),
    min_size=1,
    max_size=6,
)
FUZZ_COUNTS: dict[str, dict[str, int]] = {}
FUZZ_MEMORY_BOUND = 64 * 2**20  # bytes allocated at the peak, per input (tracemalloc)


@pytest.mark.parametrize("fmt", ["azureml", "yolo", "voc", "labelstudio"])
def test_fuzzed_files_give_data_and_report_or_a_typed_error(
    tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    root = tmp_path_factory.mktemp(f"fuzz-{fmt}")
    target = _fixture_set(root, fmt)
    original = target.read_bytes()
    counts = FUZZ_COUNTS.setdefault(fmt, {"inputs": 0, "data": 0, "typed": 0})
    source = target if fmt == "labelstudio" else root / fmt
    read: Callable[[], object] = lambda: read_dataset(source, fmt, errors="collect")  # noqa: E731

    @settings(
        max_examples=150,
        deadline=5000,  # generous: a loaded 2-core CI machine; a hang is far longer
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(EDITS)
    def check(edits: list[tuple[int, int, bytes]]) -> None:
        target.write_bytes(_mutate(original, edits))
        counts["inputs"] += 1
        tracemalloc.start()  # the memory bound: a few-KB input may not cost 64 MB
        try:
            try:
                result = read()
            except DetectkitError:
                counts["typed"] += 1
                return
            assert isinstance(result, tuple)
            ds, report = result
            assert isinstance(ds, LabeledDataset) and isinstance(report, ValidationReport)
            ds.summary()
            report.to_text()
            counts["data"] += 1
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak < FUZZ_MEMORY_BOUND, f"{peak / 2**20:.0f} MiB for one fuzzed input"

    check()
    print(f"fuzz {fmt}: {counts}")  # shown with pytest -s (docs/benchmarks.md quotes it)
    assert counts["inputs"] >= 100


def test_problem_values_too_large_to_show_are_named_by_type() -> None:
    from detectkit.validation import ProblemCollector

    nested: list[object] = []
    for _ in range(5000):
        nested = [nested]
    collector = ProblemCollector("collect", file="x.json")
    collector.add("bad_value", "a box", got=nested)
    collector.add("bad_value", "a width", got=10**5000)
    got = [p.got for p in collector.report().problems]
    assert got == ["<list too large to show>", "<int too large to show>"]
