"""Cross-format round trips (A -> B -> A for every pair of formats) and Box properties."""

from __future__ import annotations

import importlib.util
import itertools
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detectkit
from detectkit import Box, LabeledDataset, ObjectAnnotation
from detectkit.boxes import (
    box_iou_matrix,
    cxcywh_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from detectkit.dataset import Format
from detectkit.synthetic import make_dataset

FORMATS: tuple[Format, ...] = ("azureml", "coco", "voc", "yolo")


def _require(*formats: Format) -> None:
    for fmt in formats:
        if importlib.util.find_spec(f"detectkit.formats.{fmt}") is None:
            pytest.skip(f"detectkit.formats.{fmt} is not written yet")


def _write(ds: LabeledDataset, fmt: Format, folder: Path) -> Path:
    target = {"azureml": folder / "train.jsonl", "coco": folder / "coco.json"}.get(fmt, folder)
    return detectkit.write_dataset(ds, target, fmt)


def _read(path: Path, fmt: Format, images_root: Path) -> LabeledDataset:
    ds, report = detectkit.read_dataset(path, fmt, images_root=images_root, errors="collect")
    assert not report.problems, report.to_text()
    return ds


def _jittered(ds: LabeledDataset, seed: int) -> LabeledDataset:
    """Move every corner by a fraction of a pixel (inside the image), every third object a crowd:
    boxes that no format holds by accident."""
    rng = np.random.default_rng(seed)
    records = []
    for r in ds:
        assert r.width is not None
        assert r.height is not None
        w, h = r.width, r.height
        objects = []
        for k, o in enumerate(r.objects):
            x1, y1, x2, y2 = np.array(o.box.to_xyxy(w, h)) + rng.uniform(-0.45, 0.45, 4)
            box = Box.from_xyxy(
                max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h), width=w, height=h
            )
            objects.append(o.model_copy(update={"box": box, "is_crowd": k % 3 == 1}))
        records.append(r.model_copy(update={"objects": tuple(objects)}))
    return LabeledDataset(records, ds.classes, root=ds.root)


def _rounded_to_pixels(ds: LabeledDataset) -> LabeledDataset:
    """Boxes with corners rounded as VOC stores them (halves up)."""
    from detectkit.formats.voc import to_pixel_index

    records = []
    for r in ds:
        assert r.width is not None
        assert r.height is not None
        w, h = r.width, r.height
        objects = tuple(
            o.model_copy(
                update={
                    "box": Box.from_xyxy(
                        *(float(to_pixel_index(v)) for v in o.box.to_xyxy(w, h)), width=w, height=h
                    )
                }
            )
            for o in r.objects
        )
        records.append(r.model_copy(update={"objects": objects}))
    return LabeledDataset(records, ds.classes, root=ds.root)


def _by_name(ds: LabeledDataset) -> dict[str, list[ObjectAnnotation]]:
    return {r.name: list(r.objects) for r in ds}


def _assert_same_boxes(
    expected: LabeledDataset, got: LabeledDataset, *, crowd_kept: bool, tol: float = 1e-9
) -> None:
    assert {r.name: r.size for r in got} == {r.name: r.size for r in expected}
    want, have = _by_name(expected), _by_name(got)
    for name, objects in want.items():
        assert [o.label for o in have[name]] == [o.label for o in objects], name
        for a, b in zip(objects, have[name], strict=True):
            assert np.abs(a.box.to_array() - b.box.to_array()).max() <= tol, (name, a.box, b.box)
        crowd = [o.is_crowd for o in objects] if crowd_kept else [False] * len(objects)
        assert [o.is_crowd for o in have[name]] == crowd, name


def _voc_pixels(folder: Path) -> dict[str, list[tuple[str, ...]]]:
    out = {}
    for xml in sorted(folder.glob("*.xml")):
        root = ET.parse(xml).getroot()
        out[root.findtext("filename") or ""] = [
            (
                *(obj.findtext(f"bndbox/{k}") or "" for k in ("xmin", "ymin", "xmax", "ymax")),
                obj.findtext("name") or "",
                obj.findtext("difficult") or "",
            )
            for obj in root.iter("object")
        ]
    return out


@pytest.mark.parametrize(("a", "b"), list(itertools.product(FORMATS, FORMATS)))
def test_a_to_b_to_a_reproduces_every_box(tmp_path: Path, a: Format, b: Format) -> None:
    _require(a, b)
    root = tmp_path / "cards"
    base = _jittered(make_dataset(root, n_images=6, seed=11, min_objects=0, max_objects=4), 11)
    assert base.num_boxes > 6
    assert any(o.is_crowd for r in base for o in r.objects)

    first_path = _write(base, a, root / "first")
    first = _read(first_path, a, root)
    middle = _read(_write(first, b, root / "middle"), b, root)
    last_path = _write(middle, a, root / "last")
    last = _read(last_path, a, root)

    # base -> A: exact, except VOC rounds to whole pixels (within half a pixel plus noise)
    pixel = 0.5 / min(160, 120) + 1e-9
    _assert_same_boxes(base, first, crowd_kept=a != "yolo", tol=pixel if a == "voc" else 1e-9)
    # A -> B -> A: every box back to 1e-9 (YOLO holds no crowd flag: crowds become objects);
    # through VOC, every box back rounded to whole pixels the documented way
    expected = _rounded_to_pixels(first) if b == "voc" else first
    _assert_same_boxes(expected, last, crowd_kept="yolo" not in (a, b))
    if a == "voc":  # and to the pixel: the very same integers in the XML files
        assert _voc_pixels(last_path) == {
            name: [(*box[:5], box[5] if b != "yolo" else "0") for box in boxes]
            for name, boxes in _voc_pixels(first_path).items()
        }
    if {a, b} <= {"coco", "yolo"}:  # formats with a class list keep its order
        assert last.classes == first.classes == base.classes


def test_voc_half_pixels_are_stable_through_every_format(tmp_path: Path) -> None:
    """A box read from VOC floats (48.5) is rounded once and then never moves again."""
    _require(*FORMATS)
    root = tmp_path / "cards"
    ds = make_dataset(root, n_images=1, seed=5, min_objects=3, max_objects=3)
    (root / "src").mkdir()
    objects = "".join(
        f"<object><name>ace</name><bndbox><xmin>{x}.5</xmin><ymin>{y}.5</ymin>"
        f"<xmax>{x + 20}.5</xmax><ymax>{y + 30}.5</ymax></bndbox></object>"
        for x, y in ((1, 1), (40, 20), (100, 60))
    )
    image = Path(ds[0].image).relative_to(root).as_posix()
    (root / "src" / "a.xml").write_text(
        f"<annotation><path>{image}</path><size><width>160</width><height>120</height></size>"
        f"{objects}</annotation>",
        encoding="utf-8",
    )
    voc = _read(root / "src", "voc", root)
    reference = _voc_pixels(_write(voc, "voc", root / "ref"))
    assert reference["img_0000.png"][0][:4] == ("2", "2", "22", "32")  # 0.5 .. 21.5 -> halves up
    for k, fmt in enumerate(("azureml", "coco", "yolo")):
        through = _read(_write(voc, fmt, root / f"via_{fmt}"), fmt, root)
        assert _voc_pixels(_write(through, "voc", root / f"back_{k}")) == reference


# ---------------------------------------------------------------------------- Box properties
_sizes = st.integers(min_value=1, max_value=8192)


@st.composite
def _pixel_boxes(draw: st.DrawFn) -> tuple[int, int, tuple[float, float, float, float]]:
    width, height = draw(_sizes), draw(_sizes)
    xs = sorted(draw(st.floats(0, width)) for _ in range(2))
    ys = sorted(draw(st.floats(0, height)) for _ in range(2))
    return width, height, (xs[0], ys[0], xs[1], ys[1])


@st.composite
def _unit_boxes(draw: st.DrawFn) -> Box:
    xs = sorted(draw(st.floats(0, 1)) for _ in range(2))
    ys = sorted(draw(st.floats(0, 1)) for _ in range(2))
    return Box(top_x=xs[0], top_y=ys[0], bottom_x=xs[1], bottom_y=ys[1])


@settings(max_examples=150, deadline=None)
@given(_pixel_boxes())
def test_box_pixel_conversions_round_trip(case: tuple[int, int, tuple[float, ...]]) -> None:
    width, height, (x1, y1, x2, y2) = case
    tol = 1e-9 * max(width, height)
    box = Box.from_xyxy(x1, y1, x2, y2, width=width, height=height)
    assert box.to_xyxy(width, height) == pytest.approx((x1, y1, x2, y2), abs=tol)
    xywh = box.to_xywh(width, height)
    assert xywh == pytest.approx((x1, y1, x2 - x1, y2 - y1), abs=tol)
    again = Box.from_xywh(*xywh, width=width, height=height)
    assert again.to_array() == pytest.approx(box.to_array(), abs=1e-12)
    cxcywh = box.to_cxcywh(width, height)
    assert cxcywh == pytest.approx(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), abs=tol)


@settings(max_examples=150, deadline=None)
@given(_unit_boxes())
def test_normalized_cxcywh_round_trip_stays_in_the_image(box: Box) -> None:
    """The YOLO path: centre/size and back must not leave [0, 1] by float noise."""
    cx, cy, w, h = box.to_cxcywh()
    corners = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    assert np.abs(np.array(corners) - box.to_array()).max() <= 1e-15
    clipped = [min(max(v, 0.0), 1.0) for v in corners]
    assert Box(top_x=clipped[0], top_y=clipped[1], bottom_x=clipped[2], bottom_y=clipped[3])


@settings(max_examples=150, deadline=None)
@given(_unit_boxes(), _unit_boxes())
def test_iou_is_symmetric_and_bounded(a: Box, b: Box) -> None:
    iou = a.iou(b)
    assert iou == b.iou(a)
    assert 0.0 <= iou <= 1.0
    if a.area > 0:
        assert a.iou(a) == pytest.approx(1.0)
    matrix = box_iou_matrix([a.to_array()], [b.to_array()])
    assert matrix.shape == (1, 1)
    assert matrix[0, 0] == pytest.approx(iou, abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(st.lists(_unit_boxes(), min_size=0, max_size=6), st.lists(_unit_boxes(), max_size=6))
def test_vectorized_helpers_agree_with_box_methods(boxes: list[Box], others: list[Box]) -> None:
    xyxy = np.array([b.to_array() for b in boxes]).reshape(-1, 4)
    assert xyxy_to_xywh(xyxy) == pytest.approx(
        np.array([b.to_xywh() for b in boxes]).reshape(-1, 4)
    )
    assert xyxy_to_cxcywh(xyxy) == pytest.approx(
        np.array([b.to_cxcywh() for b in boxes]).reshape(-1, 4)
    )
    assert xywh_to_xyxy(xyxy_to_xywh(xyxy)) == pytest.approx(xyxy, abs=1e-15)
    assert cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)) == pytest.approx(xyxy, abs=1e-15)
    other = np.array([b.to_array() for b in others]).reshape(-1, 4)
    matrix = box_iou_matrix(xyxy, other)
    assert matrix.shape == (len(boxes), len(others))
    expected = [[a.iou(b) for b in others] for a in boxes]
    assert matrix == pytest.approx(np.array(expected).reshape(len(boxes), len(others)), abs=1e-12)
    assert box_iou_matrix(other, xyxy) == pytest.approx(matrix.T)


@st.composite
def _voc_boxes(draw: st.DrawFn) -> tuple[int, int, tuple[int, int, int, int]]:
    """An image size and a VOC box inside it: 1 <= xmin <= xmax <= width (same for y)."""
    width, height = draw(_sizes), draw(_sizes)
    xmin = draw(st.integers(1, width))
    ymin = draw(st.integers(1, height))
    xmax = draw(st.integers(xmin, width))
    ymax = draw(st.integers(ymin, height))
    return width, height, (xmin, ymin, xmax, ymax)


@settings(max_examples=150, deadline=None)
@given(_voc_boxes())
def test_voc_integers_survive_normalization(case: tuple[int, int, tuple[int, ...]]) -> None:
    """VOC -> normalized -> VOC gives the same integers for any image size."""
    from detectkit.formats.voc import to_pixel_index

    width, height, (xmin, ymin, xmax, ymax) = case
    box = Box.trusted((xmin - 1) / width, (ymin - 1) / height, xmax / width, ymax / height)
    x1, y1, x2, y2 = box.to_xyxy(width, height)
    assert (to_pixel_index(x1) + 1, to_pixel_index(y1) + 1) == (xmin, ymin)
    assert (to_pixel_index(x2), to_pixel_index(y2)) == (xmax, ymax)
    assert math.isclose(box.width * width, xmax - xmin + 1, abs_tol=1e-9)
