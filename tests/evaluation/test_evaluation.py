"""detectkit.evaluate: the COCO numbers equal pycocotools', and the extras are right.

The pycocotools reference is fed the very pixel values detectkit uses (normalized box times
image size; ``w = bottom_x * W - top_x * W``) and the detections in detectkit's documented
tie-break order, which this file implements on its own: score descending, then box left,
top, width, height in pixels, then class.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectkit import Box, ImageRecord, InvalidInputError, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidAnnotationError
from detectkit.evaluation.pipeline import (
    CocoStats,
    EvaluationReport,
    evaluate,
    evaluate_coco_files,
)
from detectkit.prediction import Detections, Prediction

pycocotools = pytest.importorskip("pycocotools")

CLASSES = ("cat", "dog", "bird", "ghost")  # "ghost" never has ground truth
EXTRA = "zebra"  # a predicted label that is not a ground-truth class


# ----------------------------------------------------------------------- data
def make_case(
    seed: int,
    n_images: int = 12,
    *,
    score_decimals: int | None = 1,
    max_gt: int = 7,
    max_det: int = 14,
) -> tuple[LabeledDataset, list[Prediction], dict[str, Any], list[dict[str, Any]]]:
    """A small data set with every edge case, its predictions, and the same in COCO form.

    Crowd regions, tied scores (``score_decimals=1``), images without ground truth or without
    a prediction, a class without ground truth, a class ("bird" in some seeds) without
    detections, a predicted label that is no class, exact duplicate detections, and objects
    of every COCO size.
    """
    rng = np.random.default_rng(seed)
    records, predictions, images, annotations, results = [], [], [], [], []
    det_classes = (*CLASSES, EXTRA)
    no_bird_dets = seed % 2 == 0
    for i in range(n_images):
        w, h = int(rng.integers(60, 640)), int(rng.integers(60, 640))
        n_gt = 0 if i % 5 == 1 else int(rng.integers(0, max_gt + 1))
        side = np.exp(rng.uniform(np.log(3), np.log(300), n_gt))
        cx, cy = rng.uniform(0, w, n_gt), rng.uniform(0, h, n_gt)
        bw = np.minimum(side * np.exp(rng.normal(0, 0.3, n_gt)), w)
        bh = np.minimum(side * np.exp(rng.normal(0, 0.3, n_gt)), h)
        px = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        norm = np.clip(px / [w, h, w, h], 0.0, 1.0)
        gt_cls = rng.integers(0, 3, n_gt)  # never "ghost"
        crowd = rng.random(n_gt) < 0.15
        objects = tuple(
            ObjectAnnotation(
                label=CLASSES[gt_cls[j]],
                box=Box(
                    top_x=norm[j, 0], top_y=norm[j, 1], bottom_x=norm[j, 2], bottom_y=norm[j, 3]
                ),
                is_crowd=bool(crowd[j]),
            )
            for j in range(n_gt)
        )
        name = f"img_{i:03d}.png"
        records.append(ImageRecord(image=f"/data/{name}", width=w, height=h, objects=objects))
        images.append({"id": i + 1, "width": w, "height": h, "file_name": name})
        gx, gy = norm[:, 0] * w, norm[:, 1] * h
        gw, gh = norm[:, 2] * w - gx, norm[:, 3] * h - gy
        for j in range(n_gt):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(gt_cls[j]) + 1,
                 "bbox": [gx[j], gy[j], gw[j], gh[j]], "area": gw[j] * gh[j],
                 "iscrowd": int(crowd[j])}
            )  # fmt: skip
        if i % 4 == 2:
            continue  # an image without a prediction
        n_det = int(rng.integers(0, max_det + 1))
        boxes, labels = [], []
        for _ in range(n_det):
            if n_gt and rng.random() < 0.7:  # near a ground-truth box
                j = int(rng.integers(0, n_gt))
                jitter = rng.normal(0, 0.12, 4) * [bw[j], bh[j], bw[j], bh[j]] / [w, h, w, h]
                boxes.append(norm[j] + jitter)
                label = int(gt_cls[j]) if rng.random() < 0.85 else int(rng.integers(0, 5))
            else:
                x, y = rng.uniform(0, 0.9, 2)
                boxes.append([x, y, x + rng.uniform(0.01, 0.5), y + rng.uniform(0.01, 0.5)])
                label = int(rng.integers(0, 5))
            if no_bird_dets and label == 2:
                label = 0
            labels.append(label)
        xyxy = np.clip(np.array(boxes, dtype=np.float64).reshape(-1, 4), 0.0, 1.0)
        xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2])
        scores = rng.random(n_det)
        if score_decimals is not None:
            scores = np.round(scores, score_decimals)
        ids = np.array(labels, dtype=np.int64)
        if n_det >= 2:  # an exact duplicate of the first detection
            xyxy, scores, ids = (np.r_[a, a[:1]] for a in (xyxy, scores, ids))
        predictions.append(
            Prediction(image=name, detections=Detections(xyxy, scores, ids, det_classes))
        )
        dx, dy = xyxy[:, 0] * w, xyxy[:, 1] * h
        dw, dh = xyxy[:, 2] * w - dx, xyxy[:, 3] * h - dy
        # the documented tie-break; class order = ground-truth classes, then extra labels
        for j in np.lexsort((ids, dh, dw, dy, dx, -scores)).tolist():
            results.append(
                {"image_id": i + 1, "category_id": int(ids[j]) + 1 if ids[j] < 4 else 99,
                 "bbox": [dx[j], dy[j], dw[j], dh[j]], "score": float(scores[j])}
            )  # fmt: skip
    categories = [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    return LabeledDataset(records, CLASSES), predictions, coco, results


def run_pycocotools(
    gt: dict[str, Any], results: list[dict[str, Any]], max_dets: list[int] | None = None
) -> Any:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if max_dets is not None:
            ev.params.maxDets = max_dets
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_equal_to_pycocotools(report: EvaluationReport, ev: Any) -> None:
    assert report.stats is not None
    ours = np.array(report.stats.as_list())
    np.testing.assert_allclose(ours, ev.stats, rtol=0, atol=1e-9)
    assert report.precision is not None
    assert report.recall is not None
    np.testing.assert_allclose(report.precision, ev.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(report.recall, ev.eval["recall"], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------- COCO = pycocotools
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7])
def test_stats_equal_pycocotools_with_ties_crowds_and_empty_images(seed: int) -> None:
    dataset, predictions, gt, results = make_case(seed)
    report = evaluate(dataset, predictions)
    assert report.area_source == "box"
    assert report.classes == (*CLASSES, EXTRA)
    assert_equal_to_pycocotools(report, run_pycocotools(gt, results))


def test_every_edge_case_is_present_in_the_generated_data() -> None:
    dataset, predictions, _, results = make_case(0)
    report = evaluate(dataset, predictions)
    rows = {r.label: r for r in report.per_class}
    assert rows["ghost"].gt == 0
    assert rows["ghost"].detections > 0
    assert rows["ghost"].ap is None
    assert rows["bird"].gt > 0
    assert rows["bird"].detections == 0
    assert rows["bird"].ap == 0.0
    assert rows[EXTRA].detections > 0
    assert rows[EXTRA].ap is None
    assert sum(r.crowd for r in report.per_class) > 0
    assert any(len(r.objects) == 0 for r in dataset)
    assert len(predictions) < len(dataset)
    scores = [r["score"] for r in results]
    assert len(set(scores)) < len(scores)  # ties
    areas = [b.box.pixel_area(r.width or 0, r.height or 0) for r in dataset for b in r.objects]
    assert min(areas) < 32**2
    assert max(areas) > 96**2
    assert any(32**2 < a < 96**2 for a in areas)


def test_distinct_scores_match_pycocotools_in_any_input_order() -> None:
    dataset, predictions, gt, results = make_case(11, score_decimals=None)
    random.Random(0).shuffle(results)  # no ties: pycocotools' order no longer matters
    assert_equal_to_pycocotools(evaluate(dataset, predictions), run_pycocotools(gt, results))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_images=st.integers(1, 8), max_det=st.integers(0, 25))
def test_stats_equal_pycocotools_property(seed: int, n_images: int, max_det: int) -> None:
    dataset, predictions, gt, results = make_case(seed, n_images, max_det=max_det)
    report = evaluate(dataset, predictions)
    if not results:  # pycocotools cannot load an empty results list
        assert report.stats is not None
        assert report.stats.map in (None, 0.0)
        return
    assert_equal_to_pycocotools(report, run_pycocotools(gt, results))


def test_many_detections_per_image_hit_the_max_detections_cut() -> None:
    dataset, predictions, gt, results = make_case(5, n_images=4, max_gt=12, max_det=150)
    report = evaluate(dataset, predictions)
    assert max(len(p.detections) for p in predictions) > 100
    assert_equal_to_pycocotools(report, run_pycocotools(gt, results))
    ignored = sum(int(m.det_ignored.sum()) for m in report.matches)
    assert ignored > 0  # past the cut, or on a crowd region


def test_custom_max_detections_give_no_minus_one() -> None:
    dataset, predictions, gt, results = make_case(3, max_det=30)
    report = evaluate(dataset, predictions, max_detections=(20, 1, 5))
    ev = run_pycocotools(gt, results, max_dets=[1, 5, 20])
    assert report.max_detections == (1, 5, 20)
    np.testing.assert_allclose(report.precision, ev.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(report.recall, ev.eval["recall"], rtol=0, atol=1e-12)
    stats = report.stats
    assert stats is not None
    assert set(stats.ar) == {1, 5, 20}
    assert all(v is not None and v >= 0 for v in stats.as_dict().values())
    # pycocotools' summary hard-codes maxDets=100 (-1 here); ours uses the largest cut
    assert ev.stats[0] == -1
    precision = ev.eval["precision"][:, :, :, 0, 2]
    assert stats.map == pytest.approx(np.mean(precision[precision > -1]), abs=1e-12)
    recall = ev.eval["recall"][:, :, 0, 1]
    assert stats.ar[5] == pytest.approx(np.mean(recall[recall > -1]), abs=1e-12)
    assert "ar5" in stats.as_dict()
    assert len(stats.as_list()) == 12
    with pytest.raises(AttributeError, match="max_detections"):
        _ = stats.ar100


# ----------------------------------------------------------------------- determinism
def _shuffled(predictions: list[Prediction], seed: int) -> tuple[list[Prediction], list[Any]]:
    rng = np.random.default_rng(seed)
    out, perms = [], []
    for p in predictions:
        perm = rng.permutation(len(p.detections))
        out.append(Prediction(image=p.image, detections=p.detections[perm]))
        perms.append(perm)
    order = rng.permutation(len(out))
    return [out[i] for i in order], [(int(i), perms[i]) for i in order]


def test_shuffling_predictions_changes_nothing() -> None:
    dataset, predictions, _, _ = make_case(4, score_decimals=1)
    base = evaluate(dataset, predictions)
    shuffled, perms = _shuffled(predictions, 1)
    again = evaluate(dataset, shuffled)
    assert again.stats == base.stats
    assert again.per_class == base.per_class
    np.testing.assert_array_equal(again.precision, base.precision)
    np.testing.assert_array_equal(again.confusion_matrix, base.confusion_matrix)
    # per-detection flags follow each detection to its new position
    for i, perm in perms:
        image = predictions[i].image
        assert image is not None
        old, new = base.matches[image], again.matches[image]
        np.testing.assert_array_equal(new.gt_matched, old.gt_matched)
        assert new.det_tp.sum() == old.det_tp.sum()
        # exact duplicates are interchangeable; every other detection keeps its flags
        unique = np.unique(predictions[i].detections.xyxy, axis=0, return_counts=True)[1]
        if (unique == 1).all():
            np.testing.assert_array_equal(new.det_tp, old.det_tp[perm])
            np.testing.assert_array_equal(new.det_gt, old.det_gt[perm])


# ----------------------------------------------------------------------- COCO files
def test_coco_files_equal_evaluate_and_pycocotools(tmp_path: Any) -> None:
    dataset, predictions, gt, results = make_case(6)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    from_files = evaluate_coco_files(tmp_path / "gt.json", tmp_path / "res.json")
    from_dataset = evaluate(dataset, predictions)
    assert from_files.area_source == "annotation"
    assert from_files.stats == from_dataset.stats
    assert from_files.classes[:4] == CLASSES
    assert from_files.classes[4] == "category_id=99"
    assert_equal_to_pycocotools(from_files, run_pycocotools(gt, results))


def test_coco_files_ids_are_renumbered_and_area_field_is_used() -> None:
    _, _, gt, results = make_case(8)
    reference = run_pycocotools(gt, results)
    # the same data with awkward ids: image id 0, annotation ids all 0, category ids 0/10/20/30
    odd = copy.deepcopy(gt)
    image_id = {im["id"]: (im["id"] - 1) * 7 for im in odd["images"]}
    cat_id = {c["id"]: (c["id"] - 1) * 10 for c in odd["categories"]}
    for im in odd["images"]:
        im["id"] = image_id[im["id"]]
    for c in odd["categories"]:
        c["id"] = cat_id[c["id"]]
    for a in odd["annotations"]:
        a.update(id=0, image_id=image_id[a["image_id"]], category_id=cat_id[a["category_id"]])
    odd_results = [
        {**r, "image_id": image_id[r["image_id"]], "category_id": cat_id.get(r["category_id"], 99)}
        for r in results
    ]
    report = evaluate_coco_files(odd, odd_results)
    np.testing.assert_allclose(report.stats.as_list(), reference.stats, rtol=0, atol=1e-9)  # type: ignore[union-attr]
    # mask-like areas (half the box) move objects between size ranges, as in pycocotools
    halved = copy.deepcopy(gt)
    for a in halved["annotations"]:
        a["area"] = a["area"] / 2
    report = evaluate_coco_files(halved, results)
    assert report.area_source == "annotation"
    assert_equal_to_pycocotools(report, run_pycocotools(halved, results))
    for a in halved["annotations"]:
        del a["area"]
    assert evaluate_coco_files(halved, results).area_source == "box"


def test_coco_files_reject_duplicate_image_ids_and_unknown_images() -> None:
    _, _, gt, results = make_case(9, n_images=3)
    dup = copy.deepcopy(gt)
    dup["images"][1]["id"] = dup["images"][0]["id"]
    with pytest.raises(InvalidAnnotationError, match="duplicate image id"):
        evaluate_coco_files(dup, results)
    stray = [*results, {"image_id": 12345, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]
    with pytest.raises(InvalidInputError, match=r"results\[\d+\]: image_id 12345"):
        evaluate_coco_files(gt, stray)
    bad = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5], "score": 0.5}]
    with pytest.raises(InvalidAnnotationError, match="bbox"):
        evaluate_coco_files(gt, bad)


# ----------------------------------------------------------------------- hand-checked cases
def _box(x1: float, y1: float, x2: float, y2: float) -> Box:
    return Box(top_x=x1, top_y=y1, bottom_x=x2, bottom_y=y2)


def _hand_case() -> tuple[LabeledDataset, Prediction, list[int]]:
    """One 100x100 image: two "a" objects and a crowd "a" region; five "a" detections."""
    objects = (
        ObjectAnnotation(label="a", box=_box(0.0, 0.0, 0.5, 0.5)),
        ObjectAnnotation(label="a", box=_box(0.5, 0.5, 1.0, 1.0)),
        ObjectAnnotation(label="a", box=_box(0.0, 0.6, 0.4, 1.0), is_crowd=True),
    )
    dataset = LabeledDataset([ImageRecord(image="x.png", width=100, height=100, objects=objects)])
    # by score: d1 on object 0 (TP), d2 on object 0 again (FP), d3 on the crowd (ignored),
    # d4 on nothing (FP), d5 on object 1 (TP)
    boxes = [
        [0.0, 0.0, 0.5, 0.5],
        [0.0, 0.0, 0.45, 0.45],
        [0.0, 0.6, 0.4, 1.0],
        [0.6, 0.0, 0.9, 0.3],
        [0.5, 0.5, 1.0, 1.0],
    ]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    perm = [3, 0, 4, 2, 1]  # given out of order: flags must come back in this order
    det = Detections(np.array(boxes)[perm], np.array(scores)[perm], [0] * 5, ["a"])
    return dataset, Prediction(image="x.png", detections=det), perm


def test_voc_protocol_on_a_hand_computed_case() -> None:
    dataset, prediction, perm = _hand_case()
    report = evaluate(dataset, [prediction], protocol="voc")
    # TP FP (ignored) FP TP over 2 objects: recall .5 .5 .5 1, precision 1 .5 .33 .5
    # all-point AP = 0.5 * 1 + 0.5 * 0.5
    assert report.protocol == "voc"
    assert report.stats is None
    assert report.precision is None
    assert report.voc_map50 == pytest.approx(0.75)
    assert report.map == report.voc_map50
    row = report.class_metrics("a")
    assert row.voc_ap50 == pytest.approx(0.75)
    assert row.ap is None
    m = report.matches["x.png"]
    inverse = np.argsort(perm)
    np.testing.assert_array_equal(m.det_tp[inverse], [True, False, False, False, True])
    np.testing.assert_array_equal(m.det_ignored[inverse], [False, False, True, False, False])
    assert "VOC mAP@0.5" in report.to_text()
    assert "voc_map50" in repr(report)


def test_voc_duplicate_on_the_best_object_is_a_false_positive() -> None:
    # VOC gives a detection to the object it overlaps most; if that one is taken: FP,
    # even when another free object overlaps enough (COCO would take the other one)
    objects = (
        ObjectAnnotation(label="a", box=_box(0.0, 0.0, 0.5, 0.5)),
        ObjectAnnotation(label="a", box=_box(0.05, 0.0, 0.55, 0.5)),
    )
    dataset = LabeledDataset([ImageRecord(image="y.png", width=100, height=100, objects=objects)])
    det = Detections([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]], [0.9, 0.8], [0, 0], ["a"])
    prediction = [Prediction(image="y.png", detections=det)]
    assert evaluate(dataset, prediction, protocol="voc").voc_map50 == pytest.approx(0.5)
    coco = evaluate(dataset, prediction)
    assert coco.class_metrics("a").ap50 == pytest.approx(1.0)


def test_operating_point_and_matches_on_a_hand_computed_case() -> None:
    dataset, prediction, perm = _hand_case()
    report = evaluate(dataset, [prediction], score_threshold=0.5, iou_threshold=0.5)
    o = report.overall
    assert (o.tp, o.fp, o.fn) == (2, 2, 0)
    assert (o.precision, o.recall) == (0.5, 1.0)
    assert o.f1 == pytest.approx(2 / 3)
    assert report.class_metrics("a").at_threshold == o
    m = report.matches[0]
    inverse = np.argsort(perm)  # position in the given order of each detection by score
    np.testing.assert_array_equal(m.det_tp[inverse], [True, False, False, False, True])
    np.testing.assert_array_equal(m.det_gt[inverse], [0, -1, 2, -1, 1])
    np.testing.assert_array_equal(m.det_ignored[inverse], [False, False, True, False, False])
    np.testing.assert_array_equal(m.det_fp[inverse], [False, True, False, True, False])
    np.testing.assert_array_equal(m.gt_matched, [True, True, True])
    np.testing.assert_array_equal(m.gt_missed, [False, False, False])
    # a higher threshold drops d5: object 1 becomes a miss
    strict = evaluate(dataset, [prediction], score_threshold=0.55).overall
    assert (strict.tp, strict.fp, strict.fn) == (1, 2, 1)


def test_confusion_matrix_on_a_hand_built_case() -> None:
    objects = (
        ObjectAnnotation(label="a", box=_box(0.0, 0.0, 0.5, 0.5)),
        ObjectAnnotation(label="b", box=_box(0.5, 0.5, 1.0, 1.0)),
        ObjectAnnotation(label="a", box=_box(0.0, 0.6, 0.3, 0.9)),  # missed
        ObjectAnnotation(label="b", box=_box(0.6, 0.0, 0.9, 0.3), is_crowd=True),  # left out
    )
    dataset = LabeledDataset(
        [ImageRecord(image="z.png", width=200, height=100, objects=objects)], ["a", "b"]
    )
    det = Detections(
        [
            [0.0, 0.0, 0.5, 0.5],  # a on a
            [0.5, 0.5, 1.0, 1.0],  # a on b: confusion
            [0.3, 0.0, 0.45, 0.1],  # b on nothing: background
            [0.0, 0.6, 0.3, 0.9],  # a on the missed a, but below the score threshold
            [0.6, 0.0, 0.9, 0.3],  # c (not a class) on the crowd region: left out
            [0.6, 0.6, 0.7, 0.7],  # c on nothing: background
        ],
        [0.9, 0.8, 0.7, 0.3, 0.9, 0.6],
        [0, 0, 1, 0, 2, 2],
        ["a", "b", "c"],
    )
    report = evaluate(dataset, [Prediction(image="z.png", detections=det)], score_threshold=0.5)
    assert report.confusion_labels == ("a", "b", "c", "background")
    expected = [
        [1, 0, 0, 1],  # a: one found as a, one missed
        [1, 0, 0, 0],  # b: found as a
        [0, 0, 0, 0],  # c has no ground truth
        [0, 1, 1, 0],  # background: a b box and a c box on nothing
    ]
    np.testing.assert_array_equal(report.confusion_matrix, expected)
    c = report.class_metrics("c")
    assert (c.gt, c.detections, c.ap) == (0, 2, None)
    # per class, the crowd region is a "b": both "c" boxes are false positives there
    assert c.at_threshold.fp == 2
    assert report.class_metrics("a").at_threshold.fp == 1


# ----------------------------------------------------------------------- inputs
def test_predictions_are_matched_by_file_name_mapping_or_order() -> None:
    dataset, predictions, _, _ = make_case(10, n_images=5)
    base = evaluate(dataset, predictions)
    by_path = [Prediction(image=f"/data/{p.image}", detections=p.detections) for p in predictions]
    assert evaluate(dataset, by_path).stats == base.stats
    mapping = {str(p.image): p.detections for p in predictions}
    assert evaluate(dataset, mapping).stats == base.stats
    names = {p.image: p for p in predictions}
    in_order = [
        Prediction(image=None, detections=names[r.name].detections if r.name in names else
                   Detections.empty(("cat",)))
        for r in dataset
    ]  # fmt: skip
    assert evaluate(dataset, in_order).stats == base.stats


def test_labels_are_matched_by_name_not_by_class_id() -> None:
    dataset, predictions, _, _ = make_case(12, n_images=6)
    base = evaluate(dataset, predictions)
    reordered = []
    for p in predictions:
        det = p.detections
        classes = tuple(reversed(det.classes))
        ids = len(classes) - 1 - det.class_ids
        reordered.append(
            Prediction(image=p.image, detections=Detections(det.xyxy, det.scores, ids, classes))
        )
    again = evaluate(dataset, reordered)
    assert again.stats == base.stats
    assert again.classes == base.classes
    np.testing.assert_array_equal(again.confusion_matrix, base.confusion_matrix)


def test_missing_image_sizes_are_read_from_the_files(tmp_path: Any) -> None:
    from detectkit.synthetic import make_dataset

    cards = make_dataset(tmp_path / "cards", n_images=3, size=(96, 64), seed=2)
    rng = np.random.default_rng(0)
    predictions = []
    for r in cards:
        boxes = np.array([o.box.to_array() for o in r.objects]).reshape(-1, 4)
        boxes = np.clip(boxes + rng.normal(0, 0.03, boxes.shape), 0, 1)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
        ids = [cards.classes.index(o.label) for o in r.objects]
        det = Detections(boxes, rng.random(len(ids)), ids, cards.classes)
        predictions.append(Prediction(image=r.image, detections=det))
    unsized = LabeledDataset(
        [r.model_copy(update={"width": None, "height": None}) for r in cards], cards.classes
    )
    assert evaluate(unsized, predictions).stats == evaluate(cards, predictions).stats


def test_bad_predictions_name_the_problem() -> None:
    dataset, predictions, _, _ = make_case(10, n_images=3)
    det = predictions[0].detections
    with pytest.raises(InvalidInputError, match=r"predictions\[1\]: image 'nope.png' is not in"):
        evaluate(dataset, [predictions[0], Prediction(image="nope.png", detections=det)])
    with pytest.raises(InvalidInputError, match="already has a prediction"):
        evaluate(dataset, [predictions[0], predictions[0]])
    with pytest.raises(InvalidInputError, match="matched by order"):
        evaluate(dataset, [Prediction(image=None, detections=det)])
    with pytest.raises(InvalidInputError, match="max_detections"):
        evaluate(dataset, predictions, max_detections=(0, 10))
    with pytest.raises(InvalidInputError, match="protocol"):
        evaluate(dataset, predictions, protocol="yolo")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="iou_threshold"):
        evaluate(dataset, predictions, iou_threshold=1.5)


def test_no_predictions_at_all() -> None:
    dataset, _, _, _ = make_case(2, n_images=4)
    report = evaluate(dataset, [])
    assert report.stats is not None
    assert report.stats.map == 0.0
    assert report.overall.tp == 0
    assert report.overall.fn == sum(r.gt for r in report.per_class)
    assert all(not m.det_tp.size for m in report.matches)


# ----------------------------------------------------------------------- the report
def test_report_json_round_trip_and_text() -> None:
    dataset, predictions, _, _ = make_case(1)
    report = evaluate(dataset, predictions)
    full = EvaluationReport.from_json(report.to_json(full=True))
    assert full.to_dict(full=True) == json.loads(report.to_json(full=True))
    assert full.stats == report.stats
    assert full.per_class == report.per_class
    np.testing.assert_array_equal(full.precision, report.precision)
    np.testing.assert_array_equal(full.matches[3].det_gt, report.matches[3].det_gt)
    for label, curve in report.pr_curves.items():
        np.testing.assert_array_equal(full.pr_curves[label].precision, curve.precision)
    compact = report.to_dict()
    assert "matches" not in compact
    assert compact["stats"]["ar100"] == report.stats.ar100
    again = EvaluationReport.from_dict(json.loads(json.dumps(compact)))
    assert again.to_dict() == compact
    assert again.precision is None
    text = report.to_text()
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in text
    assert "ghost" in text
    assert EXTRA in text
    assert repr(report).startswith("EvaluationReport(protocol='coco', map=")
    assert len(repr(report)) < 120
    with pytest.raises(InvalidInputError, match="to_dict"):
        EvaluationReport.from_dict({"protocol": "coco"})


def test_report_curves_and_precision_array() -> None:
    dataset, predictions, _, _ = make_case(3)
    report = evaluate(dataset, predictions)
    assert report.precision is not None
    table = report.precision_at(0.5)
    assert table.shape == (len(CLASSES), 101)
    k = CLASSES.index("cat")
    np.testing.assert_array_equal(table[k], report.pr_curves["cat"].interpolated())
    curve = report.pr_curves["cat"]
    assert curve.recall.shape == curve.precision.shape == curve.scores.shape
    assert (np.diff(curve.scores) <= 0).all()
    assert (np.diff(curve.recall) >= 0).all()
    assert (table[CLASSES.index("ghost")] == -1).all()
    with pytest.raises(InvalidInputError, match="iou"):
        report.precision_at(0.52)


def test_stats_names_and_list() -> None:
    stats = CocoStats(
        map=0.5, map50=0.7, map75=0.4, map_small=None, map_medium=0.3, map_large=0.6,
        ar={1: 0.2, 10: 0.5, 100: 0.6}, ar_small=None, ar_medium=0.4, ar_large=0.7,
    )  # fmt: skip
    assert stats.as_list() == [0.5, 0.7, 0.4, -1.0, 0.3, 0.6, 0.2, 0.5, 0.6, -1.0, 0.4, 0.7]
    assert (stats.ar1, stats.ar10, stats.ar100) == (0.2, 0.5, 0.6)
    assert CocoStats.from_named(stats.as_dict()) == stats
