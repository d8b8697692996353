"""Box, dataset model, validation report and images: the core types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
from PIL import Image

from detectkit import (
    Box,
    ImageRecord,
    InvalidAnnotationError,
    InvalidInputError,
    LabeledDataset,
    ObjectAnnotation,
    ProblemKind,
    image_size,
)
from detectkit.images import image_info, resolve_image_path
from detectkit.validation import ProblemCollector, Severity, ValidationReport


def _obj(
    label: str, x1: float = 0.1, y1: float = 0.1, x2: float = 0.5, y2: float = 0.6
) -> ObjectAnnotation:
    return ObjectAnnotation(label=label, box=Box(top_x=x1, top_y=y1, bottom_x=x2, bottom_y=y2))


# ---------------------------------------------------------------------------- Box
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((0.5, 0.1, 0.2, 0.6), "bottom_x: expected >= top_x"),
        ((0.1, 0.7, 0.2, 0.6), "bottom_y: expected >= top_y"),
        ((0.1, 0.1, 1.2, 0.6), "bottom_x: expected a normalized coordinate in [0, 1], got 1.2"),
        ((-0.1, 0.1, 0.2, 0.6), "top_x: expected a normalized coordinate"),
        ((float("nan"), 0.1, 0.2, 0.6), "top_x"),
    ],
)
def test_box_rejects_bad_values_with_expected_versus_got(
    values: tuple[float, ...], message: str
) -> None:
    x1, y1, x2, y2 = values
    with pytest.raises(
        pydantic.ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        Box(top_x=x1, top_y=y1, bottom_x=x2, bottom_y=y2)


def test_box_is_frozen_and_forbids_extra() -> None:
    box = Box(top_x=0.1, top_y=0.2, bottom_x=0.3, bottom_y=0.4)
    with pytest.raises(pydantic.ValidationError):
        box.top_x = 0.2  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Box(top_x=0.1, top_y=0.2, bottom_x=0.3, bottom_y=0.4, score=1)  # type: ignore[call-arg]


def test_box_conversions_and_geometry() -> None:
    box = Box.from_xywh(10, 20, 100, 50, width=200, height=100)
    assert box.to_xyxy(200, 100) == pytest.approx((10, 20, 110, 70))
    assert box.to_cxcywh(200, 100) == pytest.approx((60, 45, 100, 50))
    assert Box.from_cxcywh(60, 45, 100, 50, width=200, height=100) == box
    assert box.area == pytest.approx(0.5 * 0.5)
    assert box.pixel_area(200, 100) == pytest.approx(5000)
    other = Box(top_x=0.3, top_y=0.2, bottom_x=0.8, bottom_y=0.7)
    assert box.iou(other) == pytest.approx((0.25 * 0.5) / (0.25 + 0.25 - 0.125))
    assert box.iou(Box(top_x=0.9, top_y=0.9, bottom_x=1, bottom_y=1)) == 0.0
    with pytest.raises(ValueError, match="image size"):
        Box.from_xyxy(0, 0, 1, 1, width=0, height=10)


# ---------------------------------------------------------------------------- dataset
def _ds(n: int = 40) -> LabeledDataset:
    rng = np.random.default_rng(0)
    labels = ["common"] * 6 + ["rare"]
    records = []
    for i in range(n):
        objs = tuple(
            _obj(labels[int(rng.integers(0, len(labels)))]) for _ in range(int(rng.integers(0, 3)))
        )
        records.append(
            ImageRecord(image=f"/data/img_{i:03d}.jpg", width=64, height=48, objects=objs)
        )
    return LabeledDataset(records, ["common", "rare"])


def test_container_protocol() -> None:
    ds = _ds(10)
    assert len(ds) == 10
    assert next(iter(ds)) is ds[0]
    assert isinstance(ds[2:5], LabeledDataset) and len(ds[2:5]) == 3
    assert ds.classes == ("common", "rare")
    assert "images=10" in repr(ds)
    with pytest.raises(InvalidInputError, match="duplicates"):
        LabeledDataset([], ["a", "a"])


def test_split_is_deterministic_order_independent_and_stratified() -> None:
    ds = _ds(200)
    a = ds.split(0.25, seed=3)
    b = LabeledDataset(list(reversed(ds.records)), ds.classes).split(0.25, seed=3)
    assert {r.image for r in a.val} == {r.image for r in b.val}
    assert len(a.val) == 50 and len(a.train) == 150 and len(a.test) == 0
    assert {r.image for r in a.train}.isdisjoint({r.image for r in a.val})
    c = ds.split(0.25, seed=4)
    assert {r.image for r in a.val} != {r.image for r in c.val}
    # the rare class is spread in proportion (within one image of its share)
    rare_total = sum(1 for r in ds if any(o.label == "rare" for o in r.objects))
    rare_val = sum(1 for r in a.val if any(o.label == "rare" for o in r.objects))
    assert abs(rare_val - rare_total * 0.25) <= 1
    three = ds.split(0.2, test=0.1, seed=0)
    assert (len(three.train), len(three.val), len(three.test)) == (140, 40, 20)
    with pytest.raises(InvalidInputError, match="val"):
        ds.split(1.2)


def test_filter_merge_rename_do_not_mutate() -> None:
    ds = _ds(30)
    before = [r.model_dump() for r in ds]
    only_rare = ds.filter(labels=["rare"])
    assert only_rare.classes == ("rare",)
    assert all(o.label == "rare" for r in only_rare for o in r.objects)
    with_boxes = ds.filter(lambda r: bool(r.objects))
    assert all(r.objects for r in with_boxes)
    renamed = ds.rename_labels({"rare": "common"})
    assert renamed.classes == ("common",)
    assert renamed.num_boxes == ds.num_boxes
    merged = ds.merge(LabeledDataset([ImageRecord(image="/x.jpg", objects=(_obj("new"),))]))
    assert merged.classes == ("common", "rare", "new") and len(merged) == 31
    assert [r.model_dump() for r in ds] == before
    with pytest.raises(InvalidInputError, match="unknown"):
        ds.filter(labels=["nope"])


def test_summary_counts() -> None:
    records = [
        ImageRecord(
            image="a.jpg", width=100, height=50, objects=(_obj("x", 0, 0, 0.5, 0.5), _obj("y"))
        ),
        ImageRecord(image="b.jpg", width=100, height=50, objects=(_obj("x"),)),
        ImageRecord(image="c.jpg", width=100, height=50),
    ]
    s = LabeledDataset(records).summary()
    assert (s.images, s.boxes, s.images_without_boxes) == (3, 3, 1)
    assert s.boxes_per_class == {"x": 2, "y": 1}
    assert s.images_per_class == {"x": 2, "y": 1}
    assert s.box_width.max == pytest.approx(0.5)
    assert s.aspect_ratio.max == pytest.approx((0.5 * 100) / (0.5 * 50))
    assert s.aspect_ratio.min == pytest.approx((0.4 * 100) / (0.5 * 50))
    assert "images: 3" in s.to_text()


def _exif_jpeg(path: Path, size: tuple[int, int], orientation: int) -> None:
    im = Image.new("RGB", size, (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes())


def test_image_size_honours_exif_orientation(tmp_path: Path) -> None:
    for orientation, expected in ((1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))):
        p = tmp_path / f"o{orientation}.jpg"
        _exif_jpeg(p, (40, 20), orientation)
        assert image_size(p) == expected
        assert image_info(p).orientation == orientation


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.jpg"
    _exif_jpeg(rotated, (40, 20), 6)  # displayed 20 x 40
    plain = tmp_path / "plain.png"
    Image.new("RGB", (30, 30)).save(plain)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    records = [
        ImageRecord(image=str(rotated), width=40, height=20, objects=(_obj("x"),)),
        ImageRecord(image=str(plain), width=31, height=30, objects=(_obj("ghost"),)),
        ImageRecord(image=str(tmp_path / "missing.jpg"), objects=(_obj("x", 0.2, 0.2, 0.2, 0.5),)),
        ImageRecord(image=str(broken)),
        ImageRecord(image=str(plain)),
        ImageRecord(image="azureml://datastores/ds/paths/a.jpg", objects=(_obj("x"),)),
    ]
    report = LabeledDataset(records, ["x"]).validate()
    kinds = report.counts()
    assert kinds == {
        "exif_swapped": 1,
        "size_mismatch": 1,
        "unknown_label": 1,
        "missing_image": 1,
        "empty_box": 1,
        "unreadable_image": 1,
        "duplicate_image": 1,
    }
    assert not report.ok
    swapped = next(p for p in report.problems if p.kind is ProblemKind.EXIF_SWAPPED)
    assert swapped.expected and "20x40" in swapped.expected and swapped.got == "'40x20'"
    text = report.to_text()
    assert "missing.jpg" in text and "ghost" in text
    with pytest.raises(InvalidAnnotationError, match="rotated.jpg"):
        report.raise_for_errors()


def test_collector_modes() -> None:
    col = ProblemCollector("collect", file="labels.jsonl")
    col.add(
        ProblemKind.CLIPPED, "clipped", severity=Severity.WARNING, location="line 3", got=1.0004
    )
    col.add(
        ProblemKind.OUT_OF_RANGE,
        "outside",
        location="line 4",
        field="topX",
        expected="[0, 1]",
        got=3,
    )
    report = col.report()
    assert len(report.errors) == 1 and len(report.warnings) == 1
    assert str(report.errors[0]) == "labels.jsonl, line 4: topX: outside (expected [0, 1], got 3)"
    strict = ProblemCollector("raise", file="a.json")
    strict.add(ProblemKind.CLIPPED, "clipped", severity=Severity.WARNING)  # warnings never raise
    with pytest.raises(InvalidAnnotationError) as info:
        strict.add(
            ProblemKind.BAD_VALUE,
            "bad",
            location="annotations[2]",
            field="bbox",
            expected="4 numbers",
            got="abc",
        )
    assert (info.value.file, info.value.location, info.value.field) == (
        "a.json",
        "annotations[2]",
        "bbox",
    )
    with pytest.raises(ValueError, match="errors"):
        ProblemCollector("ignore")  # type: ignore[arg-type]
    assert ValidationReport().ok and ValidationReport().to_text() == "No problems found."


def test_resolve_image_path_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    assert resolve_image_path(root, "images/a.jpg") == (root / "images" / "a.jpg").resolve()
    for bad in ("../secret.jpg", "images/../../x.jpg", "/etc/passwd"):
        with pytest.raises(InvalidAnnotationError, match="escapes"):
            resolve_image_path(root, bad)
