"""Tests for detectkit.prediction: columnar Detections and Prediction with its adapters."""

from __future__ import annotations

import io
import sys
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectkit import InvalidInputError, MissingDependencyError
from detectkit.boxes import box_iou_matrix
from detectkit.prediction import DetectedBox, Detections, Prediction
from detectkit.synthetic import make_dataset

with warnings.catch_warnings():  # supervision warns at import when OpenCV is absent
    warnings.simplefilter("ignore")
    import supervision as sv

CLASSES = ("can", "carton", "milk_bottle", "water_bottle")
# the real sample of the Azure ML docs: milk_bottle, can, water_bottle
XYXY = [[0.224, 0.285, 0.399, 0.620], [0.664, 0.484, 0.959, 0.812], [0.423, 0.253, 0.632, 0.725]]
SCORES = [0.937, 0.891, 0.876]
IDS = [2, 0, 3]


@pytest.fixture
def det() -> Detections:
    return Detections(XYXY, SCORES, IDS, CLASSES)


@pytest.fixture
def pred(det: Detections) -> Prediction:
    return Prediction(image="fridge/10.jpg", width=499, height=666, detections=det)


# ----------------------------------------------------------------------- Detections
def test_detections_columns(det: Detections) -> None:
    assert det.xyxy.dtype == np.float64
    assert det.xyxy.shape == (3, 4)
    assert det.scores.dtype == np.float64
    assert det.class_ids.dtype == np.int64
    assert det.classes == CLASSES
    assert det.labels.tolist() == ["milk_bottle", "can", "water_bottle"]
    assert len(det) == 3


def test_detections_are_read_only_and_do_not_touch_the_callers_arrays() -> None:
    mine = np.array(XYXY)
    det = Detections(mine, SCORES, IDS, CLASSES)
    with pytest.raises(ValueError, match="read-only"):
        det.xyxy[0, 0] = 0.5
    assert mine.flags.writeable
    mine[0, 0] = 0.0
    assert det.xyxy[0, 0] == 0.224


@pytest.mark.parametrize(
    ("xyxy", "scores", "ids", "classes", "message"),
    [
        ([[0.1, 0.1, 0.2]], [0.5], [0], CLASSES, r"xyxy: expected shape \(n, 4\)"),
        ([[0.1, 0.1, 0.2, 0.2]], [0.5, 0.6], [0], CLASSES, r"scores: expected shape \(1,\)"),
        ([[0.1, 0.1, 0.2, 0.2]], [0.5], [0, 1], CLASSES, r"class_ids: expected shape \(1,\)"),
        ([[0.1, 0.1, 1.5, 0.2]], [0.5], [0], CLASSES, r"xyxy\[0\]: expected normalized"),
        ([[0.1, -0.1, 0.2, 0.2]], [0.5], [0], CLASSES, r"xyxy\[0\]: expected normalized"),
        ([[0.1, np.nan, 0.2, 0.2]], [0.5], [0], CLASSES, r"xyxy\[0\]: expected normalized"),
        ([[0.3, 0.1, 0.2, 0.2]], [0.5], [0], CLASSES, r"xyxy\[0\]: expected bottom >= top"),
        ([[0.1, 0.1, 0.2, 0.2]], [np.inf], [0], CLASSES, r"scores\[0\]: expected a finite"),
        ([[0.1, 0.1, 0.2, 0.2]], [0.5], [4], CLASSES, r"class_ids\[0\]: expected an index"),
        ([[0.1, 0.1, 0.2, 0.2]], [0.5], [-1], CLASSES, r"class_ids\[0\]: expected an index"),
        ([[0.1, 0.1, 0.2, 0.2]], [0.5], [0.5], CLASSES, "expected integer class indices"),
        ([[0.1, 0.1, 0.2, 0.2]], [0.5], [0], ("a", "a"), r"duplicates \['a'\]"),
        ([[0.1, 0.1, 0.2, 0.2]], [0.5], [0], "can", "got the string 'can'"),
    ],
)
def test_detections_rejects(xyxy: Any, scores: Any, ids: Any, classes: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Detections(xyxy, scores, ids, classes)


def test_detections_accept_integral_float_ids_and_empty_inputs() -> None:
    assert Detections([[0.1, 0.1, 0.2, 0.2]], [0.5], [1.0], CLASSES).class_ids.tolist() == [1]
    empty = Detections([], [], [], CLASSES)
    assert len(empty) == 0
    assert empty.xyxy.shape == (0, 4)
    assert empty.labels.shape == (0,)
    assert Detections.empty() == Detections([], [], [], ())
    assert Detections.empty(CLASSES).classes == CLASSES


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, [0]),
        (-1, [2]),
        (np.int64(1), [1]),
        (slice(1, None), [1, 2]),
        ([2, 0], [2, 0]),
        (np.array([True, False, True]), [0, 2]),
        ([], []),
        (np.array([], dtype=np.int64), []),
    ],
)
def test_detections_indexing(det: Detections, index: Any, expected: list[int]) -> None:
    sub = det[index]
    assert isinstance(sub, Detections)
    assert sub.scores.tolist() == [SCORES[i] for i in expected]
    assert sub.classes == CLASSES


@pytest.mark.parametrize(
    ("index", "error"),
    [(3, IndexError), (-4, IndexError), (np.array([True, False]), IndexError), ([0.5], TypeError)],
)
def test_detections_bad_index(det: Detections, index: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        det[index]


def test_detections_iterate_as_named_tuples(det: Detections) -> None:
    first = next(iter(det))
    assert first == DetectedBox("milk_bottle", 0.937, 2, (0.224, 0.285, 0.399, 0.620))
    assert [b.label for b in det] == ["milk_bottle", "can", "water_bottle"]


def test_pickle_and_copy_round_trip(pred: Prediction) -> None:
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(pred)) == pred
    assert copy.deepcopy(pred.detections) == pred.detections
    assert not pickle.loads(pickle.dumps(pred.detections)).xyxy.flags.writeable


def test_detections_equality_and_repr(det: Detections) -> None:
    assert det == Detections(XYXY, SCORES, IDS, CLASSES)
    assert det != Detections(XYXY, SCORES, IDS, (*CLASSES, "extra"))
    assert det != det[:2]
    assert "milk_bottle 0.937" in repr(det)
    assert "3 boxes" in repr(det)


def test_pixels_round_trip_and_clipping() -> None:
    px = [[-3.0, 20.0, 100.0, 60.0], [150.0, 0.0, 205.0, 100.0]]
    det = Detections.from_pixels(px, [0.9, 0.8], [0, 1], CLASSES, width=200, height=100)
    assert det.xyxy.tolist() == [[0.0, 0.2, 0.5, 0.6], [0.75, 0.0, 1.0, 1.0]]
    assert det.to_pixels(200, 100).tolist() == [
        [0.0, 20.0, 100.0, 60.0],
        [150.0, 0.0, 200.0, 100.0],
    ]
    with pytest.raises(InvalidInputError, match="image size"):
        det.to_pixels(0, 100)


def test_filter(det: Detections) -> None:
    assert det.filter(min_score=0.89).labels.tolist() == ["milk_bottle", "can"]
    assert det.filter(labels="can").labels.tolist() == ["can"]
    assert det.filter(labels=["can", "water_bottle"], min_score=0.88).labels.tolist() == ["can"]
    assert len(det.filter(labels=["not-a-class"])) == 0
    assert det.filter(labels=[]).classes == CLASSES


def test_top_k_orders_by_score_with_stable_ties() -> None:
    det = Detections([[0.1, 0.1, 0.2, 0.2]] * 4, [0.5, 0.9, 0.5, 0.7], [0, 1, 2, 3], CLASSES)
    assert det.top_k(3).class_ids.tolist() == [1, 3, 0]
    assert len(det.top_k(10)) == 4
    assert len(det.top_k(0)) == 0
    with pytest.raises(InvalidInputError, match="k: expected a count"):
        det.top_k(-1)


def _brute_force_nms(det: Detections, iou: float, agnostic: bool) -> list[int]:
    """The textbook definition, one pair at a time."""
    order = sorted(range(len(det)), key=lambda i: (-det.scores[i], i))
    overlaps = box_iou_matrix(det.xyxy, det.xyxy)
    kept: list[int] = []
    for i in order:
        if not any(
            overlaps[i, k] > iou and (agnostic or det.class_ids[i] == det.class_ids[k])
            for k in kept
        ):
            kept.append(i)
    return sorted(kept)


@st.composite
def detections(draw: st.DrawFn) -> Detections:
    n = draw(st.integers(0, 25))
    corners = []
    for _ in range(n):  # an 8 x 8 grid: many identical and touching boxes, exact IoUs
        x1, x2 = sorted(draw(st.lists(st.integers(0, 8), min_size=2, max_size=2)))
        y1, y2 = sorted(draw(st.lists(st.integers(0, 8), min_size=2, max_size=2)))
        corners.append([x1 / 8, y1 / 8, x2 / 8, y2 / 8])
    scores = draw(st.lists(st.sampled_from([0.2, 0.5, 0.9]), min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return Detections(np.array(corners).reshape(-1, 4), scores, ids, ("a", "b", "c"))


@settings(max_examples=150, deadline=None)
@given(det=detections(), iou=st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]), agnostic=st.booleans())
def test_nms_matches_brute_force(det: Detections, iou: float, agnostic: bool) -> None:
    kept = det.nms(iou, class_agnostic=agnostic)
    expected = _brute_force_nms(det, iou, agnostic)
    assert kept == det[expected]


def test_nms_keeps_the_earlier_box_on_equal_scores() -> None:
    det = Detections([[0.1, 0.1, 0.5, 0.5]] * 3, [0.8, 0.8, 0.8], [0, 0, 1], CLASSES)
    assert det.nms(0.5).class_ids.tolist() == [0, 1]
    assert det.nms(0.5, class_agnostic=True).scores.shape == (1,)
    with pytest.raises(InvalidInputError, match="iou"):
        det.nms(1.5)


# ----------------------------------------------------------------------- Prediction
def test_prediction_delegates_and_keeps_the_image(pred: Prediction) -> None:
    for derived in (pred.filter(min_score=0.9), pred.nms(0.5), pred.top_k(1)):
        assert isinstance(derived, Prediction)
        assert (derived.image, derived.size) == ("fridge/10.jpg", (499, 666))
    assert pred.top_k(1).labels.tolist() == ["milk_bottle"]
    assert len(pred) == 3
    assert pred.classes == CLASSES
    assert repr(pred).startswith("Prediction(image='fridge/10.jpg', 499x666, 3 boxes: [")


def test_prediction_defaults_and_validation() -> None:
    empty = Prediction()
    assert empty.image is None
    assert empty.size is None
    assert len(empty) == 0
    for bad in ({"width": 0}, {"height": -2}, {"width": 1.5}, {"width": True}):
        with pytest.raises(InvalidInputError, match="expected a pixel count"):
            Prediction(**bad)
    with pytest.raises(InvalidInputError, match="detections: expected Detections"):
        Prediction(detections=[])  # type: ignore[arg-type]


def test_pixels_need_the_image_size(det: Detections) -> None:
    unsized = Prediction(image="a.jpg", detections=det)
    for call in (unsized.to_pixels, unsized.to_supervision, lambda: unsized.to_coco_results(1)):
        with pytest.raises(InvalidInputError, match=r"size of image 'a\.jpg' is unknown"):
            call()


def test_to_coco_results(pred: Prediction) -> None:
    results = pred.to_coco_results(image_id=10)
    assert [set(r) for r in results] == [{"image_id", "category_id", "bbox", "score"}] * 3
    assert [r["category_id"] for r in results] == [3, 1, 4]  # class index + 1
    x, y, w, h = results[1]["bbox"]
    assert (x, y, x + w, y + h) == pytest.approx(
        (0.664 * 499, 0.484 * 666, 0.959 * 499, 0.812 * 666)
    )
    named = pred.to_coco_results(7, {"can": 11, "milk_bottle": 13, "water_bottle": 14})
    assert [r["category_id"] for r in named] == [13, 11, 14]
    with pytest.raises(InvalidInputError, match=r"no id for label\(s\) \['water_bottle'\]"):
        pred.to_coco_results(7, {"can": 1, "milk_bottle": 2})


def test_to_coco_results_loads_in_pycocotools(pred: Prediction) -> None:
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 10, "width": 499, "height": 666}],
        "annotations": [],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)],
    }
    gt.createIndex()
    res = gt.loadRes(pred.to_coco_results(10))
    assert len(res.getAnnIds()) == 3
    assert res.loadAnns(res.getAnnIds())[0]["area"] == pytest.approx(0.175 * 499 * 0.335 * 666)


def test_to_records_and_pandas(pred: Prediction) -> None:
    records = pred.to_records()
    assert records[1]["label"] == "can"
    assert records[1]["class_id"] == 0
    assert records[1]["top_x"] == 0.664
    assert records[1]["x_min"] == pytest.approx(0.664 * 499)
    frame = pred.to_pandas()
    assert frame.shape == (3, 12)
    assert frame["label"].tolist() == [
        "milk_bottle",
        "can",
        "water_bottle",
    ]
    unsized = Prediction(detections=pred.detections).to_records()
    assert unsized[0]["x_min"] is None
    assert unsized[0]["top_x"] == 0.224
    assert Prediction().to_pandas().columns.tolist() == list(records[0])


def test_to_pandas_without_pandas(pred: Prediction, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match="pip install pandas"):
        pred.to_pandas()


def test_supervision_round_trip(pred: Prediction) -> None:
    svd = pred.to_supervision()
    assert isinstance(svd, sv.Detections)
    np.testing.assert_allclose(svd.xyxy, pred.to_pixels())
    assert svd.data["class_name"].tolist() == pred.labels.tolist()
    assert svd.class_id.tolist() == IDS
    assert svd.confidence.tolist() == SCORES
    back = Prediction.from_supervision(
        svd, width=499, height=666, classes=CLASSES, image="fridge/10.jpg"
    )
    assert back.classes == CLASSES
    assert back.image == "fridge/10.jpg"
    np.testing.assert_allclose(back.detections.xyxy, pred.detections.xyxy, atol=1e-12)
    assert back.detections.class_ids.tolist() == IDS


def test_from_supervision_reads_names_ids_and_missing_confidence() -> None:
    svd = sv.Detections(
        xyxy=np.array([[10.0, 10.0, 50.0, 40.0], [0.0, 0.0, 20.0, 20.0]]),
        class_id=np.array([1, 0]),
        data={"class_name": np.array(["dog", "cat"])},
    )
    by_name = Prediction.from_supervision(svd, width=100, height=50)
    assert by_name.classes == ("cat", "dog")  # sorted names found
    assert by_name.labels.tolist() == ["dog", "cat"]
    assert by_name.scores.tolist() == [1.0, 1.0]
    no_names = SimpleNamespace(xyxy=svd.xyxy, confidence=np.array([0.3, 0.6]), class_id=[1, 0])
    by_id = Prediction.from_supervision(no_names, width=100, height=50, classes=["x", "y"])
    assert by_id.labels.tolist() == ["y", "x"]
    assert by_id.scores.tolist() == [0.3, 0.6]
    with pytest.raises(InvalidInputError, match="pass classes="):
        Prediction.from_supervision(no_names, width=100, height=50)
    with pytest.raises(InvalidInputError, match=r"label\(s\) \['dog'\] are not in classes"):
        Prediction.from_supervision(svd, width=100, height=50, classes=["cat"])
    nothing = SimpleNamespace(xyxy=np.zeros((0, 4)), confidence=None, class_id=None, data={})
    assert len(Prediction.from_supervision(nothing, width=10, height=10)) == 0


def test_to_annotations_and_record(pred: Prediction) -> None:
    drafts = pred.to_annotations(min_score=0.88)
    assert [(a.label, a.score) for a in drafts] == [("milk_bottle", 0.937), ("can", 0.891)]
    assert drafts[1].box.to_xyxy() == (0.664, 0.484, 0.959, 0.812)
    record = pred.to_record(min_score=0.0)
    assert (record.image, record.width, record.height, len(record.objects)) == (
        "fridge/10.jpg",
        499,
        666,
        3,
    )
    with pytest.raises(InvalidInputError, match="the image is unknown"):
        Prediction(detections=pred.detections).to_record()


def test_repr_png_draws_local_images_only(tmp_path: Any, det: Detections) -> None:
    from PIL import Image

    record = make_dataset(tmp_path, n_images=1, size=(64, 48)).records[0]
    png = Prediction(image=record.image, width=64, height=48, detections=det)._repr_png_()
    assert png is not None
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).size == (64, 48)
    assert Prediction(detections=det)._repr_png_() is None
    assert Prediction(image=str(tmp_path / "missing.png"), detections=det)._repr_png_() is None
    assert Prediction(image="https://example.invalid/a.png", detections=det)._repr_png_() is None


def test_a_pickle_names_the_restore_path_older_versions_know() -> None:
    import pickle
    import pickletools

    from detectkit.prediction import Detections

    det = Detections([[0.1, 0.1, 0.5, 0.5]], [0.9], [0], classes=["a"])
    data = pickle.dumps(det)
    names = [arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
    assert names[:2] == ["detectkit.prediction", "_restore"]
    back = pickle.loads(data)
    assert back.classes == ("a",) and back.xyxy.tolist() == det.xyxy.tolist()
