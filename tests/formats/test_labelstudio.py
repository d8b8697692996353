"""Label Studio import files and exports: box-exact round trips, and what the reader refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError
from detectkit.formats.labelstudio import read_labelstudio, write_labelstudio

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    a, b = sorted((draw(unit), draw(unit)))
    c, d = sorted((draw(unit), draw(unit)))
    if a == b or c == d:
        b, d = min(1.0, a + 0.5), min(1.0, c + 0.5)
        a, c = b - 0.5, d - 0.5
    return Box(top_x=a, top_y=c, bottom_x=b, bottom_y=d)


@settings(max_examples=60, deadline=None)
@given(st.lists(boxes(), min_size=1, max_size=5), st.booleans())
def test_round_trip_is_box_exact(
    tmp_path_factory: pytest.TempPathFactory, bs: list[Box], scored: bool
) -> None:
    root = tmp_path_factory.mktemp("ls")
    objects = tuple(
        ObjectAnnotation(label=f"c{k % 2}", box=b, score=0.5 + k / 20 if scored else None)
        for k, b in enumerate(bs)
    )
    ds = LabeledDataset(
        [ImageRecord(image=str(root / "a.png"), width=640, height=480, objects=objects)],
        ["c0", "c1"],
        root=root,
    )
    path = write_labelstudio(ds, root / "tasks.json")
    back, report = read_labelstudio(path, predictions="all")
    assert report.ok
    assert back.records[0].objects == objects
    assert back.records[0].size == (640, 480)


def test_the_file_is_label_studio_rectangles_in_percent(tmp_path: Path) -> None:
    box = Box(top_x=0.25, top_y=0.5, bottom_x=0.75, bottom_y=1.0)
    ds = LabeledDataset(
        [
            ImageRecord(
                image=str(tmp_path / "d" / "a b.png"),
                width=200,
                height=100,
                objects=(ObjectAnnotation(label="cat", box=box, score=0.9, source="model"),),
            )
        ],
        ["cat"],
        root=tmp_path,
    )
    path = write_labelstudio(
        ds, tmp_path / "out", image_url="https://host/files/", model_version="m1"
    )
    (task,) = json.loads(path.read_text())
    assert task["data"]["image"] == "https://host/files/d/a%20b.png"
    assert task["annotations"] == []
    (pred,) = task["predictions"]
    assert pred["model_version"] == "m1" and pred["score"] == 0.9
    (r,) = pred["result"]
    assert r["original_width"] == 200 and r["original_height"] == 100 and r["score"] == 0.9
    assert r["value"] == {
        "x": 25.0,
        "y": 50.0,
        "width": 50.0,
        "height": 50.0,
        "rotation": 0,
        "rectanglelabels": ["cat"],
    }


@pytest.mark.parametrize(
    ("image", "errors", "raises"),
    [
        ("/data/local-files/?d=../../etc/passwd", "raise", InvalidAnnotationError),
        ("/data/local-files/?d=imgs/a.png", "raise", None),
        ("https://x/a.png", "raise", None),
    ],
)
def test_image_references(tmp_path: Path, image: str, errors: str, raises: type | None) -> None:
    task = {"data": {"image": image}, "annotations": [{"result": [], "was_cancelled": False}]}
    (tmp_path / "t.json").write_text(json.dumps([task]))
    if raises is not None:
        with pytest.raises(raises, match="escapes"):
            read_labelstudio(tmp_path / "t.json", errors=errors)  # type: ignore[arg-type]
        back, report = read_labelstudio(tmp_path / "t.json", errors="collect")
        assert len(back) == 0 and report.errors[0].kind == "unsafe_path"
    else:
        back, _ = read_labelstudio(tmp_path / "t.json")
        assert back.records[0].image.endswith("a.png")


def test_a_cancelled_annotation_is_ignored_and_predictions_fill_in(tmp_path: Path) -> None:
    value = {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["dog"]}
    result = [
        {"type": "rectanglelabels", "value": value, "original_width": 50, "original_height": 50}
    ]
    task = {
        "data": {"image": "https://x/a.png"},
        "annotations": [{"result": result, "was_cancelled": True}],
        "predictions": [{"score": 0.4, "result": result}],
    }
    (tmp_path / "t.json").write_text(json.dumps([task]))
    back, _ = read_labelstudio(tmp_path / "t.json")
    (obj,) = back.records[0].objects
    assert obj.score == 0.4 and obj.box.to_xyxy(50, 50) == (5.0, 5.0, 15.0, 15.0)


def test_the_format_table_reads_and_writes_label_studio(tmp_path: Path) -> None:
    from detectkit.formats import detect_format, read_dataset, write_dataset
    from detectkit.synthetic import make_dataset

    data = make_dataset(tmp_path / "src", n_images=3, seed=5)
    out = write_dataset(data, tmp_path / "tasks.json", "labelstudio")
    assert detect_format(out) == "labelstudio"
    back, report = read_dataset(out, images_root=tmp_path / "src", errors="collect")
    assert report.ok
    assert [len(r.objects) for r in back] == [len(r.objects) for r in data]
    assert [o.box for r in back for o in r.objects] == [o.box for r in data for o in r.objects]
