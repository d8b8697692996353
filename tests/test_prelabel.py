"""Pre-labels: provenance on annotations, the merge and calibration rules of
:mod:`detectkit.prelabel` on hand-made predictions, and ``project.prelabel`` end to end with a
registered tiny model scored by real worker processes."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from detectkit import Box, ImageRecord, LabeledDataset, ObjectAnnotation, Prediction
from detectkit.detections import Detections
from detectkit.errors import InvalidInputError
from detectkit.prelabel import Calibration, calibrate, merge_drafts, prelabel_dataset

CLS = ("cat", "dog")


def box(x: float, y: float, w: float = 0.2, h: float = 0.2) -> Box:
    return Box(top_x=x, top_y=y, bottom_x=x + w, bottom_y=y + h)


def human(label: str, b: Box) -> ObjectAnnotation:
    return ObjectAnnotation(label=label, box=b)


def draft(label: str, b: Box, score: float) -> ObjectAnnotation:
    return ObjectAnnotation(label=label, box=b, score=score, source="model", model_version="m:1")


def prediction(image: str, rows: list[tuple[str, Box, float]]) -> Prediction:
    det = Detections(
        [(b.top_x, b.top_y, b.bottom_x, b.bottom_y) for _, b, _ in rows],
        [s for _, _, s in rows],
        [CLS.index(label) for label, _, _ in rows],
        CLS,
    )
    return Prediction(image=image, detections=det)


# ------------------------------------------------------------------ the annotation fields
def test_provenance_fields_default_to_human_and_are_validated() -> None:
    a = human("cat", box(0.1, 0.1))
    assert (a.source, a.model_version, a.score, a.is_draft) == ("human", None, None, False)
    d = draft("cat", box(0.1, 0.1), 0.7)
    assert d.is_draft and d.model_version == "m:1" and d != a
    with pytest.raises(ValidationError):
        ObjectAnnotation(label="cat", box=box(0, 0), source="robot")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):  # extra="forbid" still holds
        ObjectAnnotation(label="cat", box=box(0, 0), origin="model")  # type: ignore[call-arg]
    assert ObjectAnnotation.model_validate(d.model_dump()) == d
    assert pickle.loads(pickle.dumps(d)) == d


def test_a_pickle_from_before_provenance_loads_as_a_human_label() -> None:
    a = human("cat", box(0.1, 0.1))
    state = a.__getstate__()
    old = {
        **state,
        "__dict__": {
            k: v for k, v in state["__dict__"].items() if k in ("label", "box", "is_crowd", "score")
        },
        "__pydantic_fields_set__": {"label", "box"},
    }
    back = ObjectAnnotation.__new__(ObjectAnnotation)
    back.__setstate__(old)
    assert back == a and back.source == "human" and back.model_version is None


def test_select_keeps_reviewed_labels_or_drafts() -> None:
    rec = ImageRecord(
        image="a.png",
        objects=(
            human("cat", box(0, 0)),
            draft("dog", box(0.5, 0.5), 0.4),
            draft("cat", box(0.3, 0.3), 0.8),
        ),
    )
    ds = LabeledDataset([rec, ImageRecord(image="b.png")], CLS)
    reviewed = ds.select(source="human")
    assert [o.label for o in reviewed.records[0].objects] == ["cat"] and len(reviewed) == 2
    assert all(o.source == "human" for r in reviewed for o in r.objects)
    assert [o.score for o in ds.select(source="model").records[0].objects] == [0.4, 0.8]
    assert [o.score for o in ds.select(source="model", min_score=0.5).records[0].objects] == [0.8]
    with pytest.raises(InvalidInputError, match="source"):
        ds.select(source="people")  # type: ignore[arg-type]


# ------------------------------------------------------------------ merging
def test_merge_keeps_humans_and_drops_drafts_over_a_human_box_of_their_class() -> None:
    person = human("cat", box(0.1, 0.1))
    rec = ImageRecord(image="a.png", objects=(person, draft("cat", box(0.6, 0.6), 0.9)))
    drafts = [
        draft("cat", box(0.11, 0.11), 0.9),  # IoU ~0.82 with the human cat: dropped
        draft("dog", box(0.11, 0.11), 0.9),  # same place, other class: kept
        draft("cat", box(0.5, 0.1), 0.9),  # elsewhere: kept
        draft("cat", box(0.5, 0.5), 0.2),  # below min_score: not added
    ]
    merged, dropped = merge_drafts(rec, drafts, min_score=0.5)
    assert dropped == 1
    assert merged.objects[0] is person  # the human label, untouched
    assert [(o.label, o.box.top_x) for o in merged.objects[1:]] == [("dog", 0.11), ("cat", 0.5)]
    assert all(o.source == "model" for o in merged.objects[1:])  # the old draft was replaced


def test_overlap_rule_is_iou_half() -> None:
    person = human("cat", box(0.0, 0.0, 0.4, 0.2))
    rec = ImageRecord(image="a.png", objects=(person,))
    # shifted by a third of the width: IoU = (0.267 * 0.2) / (2 * 0.08 - 0.0533) = 0.5
    at_half = draft("cat", box(0.4 / 3, 0.0, 0.4, 0.2), 0.9)
    below = draft("cat", box(0.15, 0.0, 0.4, 0.2), 0.9)  # IoU 0.455
    assert at_half.box.iou(person.box) == pytest.approx(0.5)
    assert merge_drafts(rec, [at_half], min_score=0.0)[1] == 1
    assert merge_drafts(rec, [below], min_score=0.0)[1] == 0


# ------------------------------------------------------------------ calibration
def _calibration_case() -> tuple[list[list[ObjectAnnotation]], list[list[ObjectAnnotation]]]:
    """Two images, four human boxes (and a crowd box, not counted). Drafts by score: .95 TP,
    .9 TP, .8 FP (a duplicate), .7 FP and .7 TP (a tie), .6 FP (wrong class), .5 TP.
    Precision (recall) at each threshold: .95: 1 (1/4), .9: 1 (2/4), .8: 2/3, .7: 3/5 (3/4),
    .6: 3/6, .5: 4/7 (4/4)."""
    gts = [
        [human("cat", box(0.0, 0.0)), human("dog", box(0.5, 0.5))],
        [
            human("cat", box(0.0, 0.5)),
            human("dog", box(0.5, 0.0)),
            human(
                "dog",
                box(0.3, 0.3),
            ),
        ],
    ]
    gts[1][2] = gts[1][2].model_copy(update={"is_crowd": True})  # left out of the count
    preds = [
        [
            draft("cat", box(0.0, 0.0), 0.95),
            draft("dog", box(0.5, 0.5), 0.9),
            draft("cat", box(0.0, 0.0), 0.8),  # a duplicate: the cat is already matched
            draft("dog", box(0.51, 0.0, 0.05, 0.05), 0.7),  # nothing there
        ],
        [
            draft("cat", box(0.0, 0.5), 0.7),
            draft("cat", box(0.5, 0.0), 0.6),  # right place, wrong class
            draft("dog", box(0.5, 0.0), 0.5),
        ],
    ]
    return preds, gts


def test_calibration_picks_the_lowest_threshold_reaching_the_target() -> None:
    preds, gts = _calibration_case()
    cal = calibrate(preds, gts, target_precision=0.9)
    assert cal == Calibration(
        threshold=0.9,
        precision=1.0,
        recall=0.5,
        images=2,
        boxes=4,
        target_precision=0.9,
        reached=True,
    )
    lower = calibrate(preds, gts, target_precision=0.6)  # ties at .7 are kept together
    assert (lower.threshold, lower.precision, lower.recall) == (0.7, 0.6, 0.75)
    assert calibrate(preds, gts, target_precision=0.55).threshold == 0.5  # 4/7 = 0.571


def test_calibration_that_cannot_reach_the_target_says_so() -> None:
    gts = [[human("cat", box(0.0, 0.0))]]
    preds = [[draft("dog", box(0.0, 0.0), 0.9), draft("cat", box(0.0, 0.0), 0.8)]]
    cal = calibrate(preds, gts, target_precision=0.9)
    assert not cal.reached and cal.threshold is None and cal.precision == 0.5
    with pytest.raises(InvalidInputError, match="target_precision"):
        calibrate(preds, gts, target_precision=0.0)


def test_prelabel_dataset_auto_uses_the_labeled_images_and_drafts_the_rest() -> None:
    preds, gts = _calibration_case()
    records = [
        ImageRecord(image="l0.png", objects=tuple(gts[0])),
        ImageRecord(image="l1.png", objects=tuple(gts[1])),
        ImageRecord(image="new.png"),
    ]
    ds = LabeledDataset(records, CLS)
    predictions = [
        prediction(r.image, [(o.label, o.box, o.score or 0.0) for o in p])
        for r, p in zip(records[:2], preds, strict=True)
    ]
    predictions.append(
        prediction("new.png", [("cat", box(0.2, 0.2), 0.95), ("dog", box(0.6, 0.6), 0.85)])
    )
    result = prelabel_dataset(ds, predictions, model_version="cards:3", min_score="auto")
    assert result.threshold == 0.9 and result.calibration is not None
    assert result.calibration.images == 2  # only the images with human labels
    new = result.dataset.records[2].objects
    assert [(o.label, o.score, o.source, o.model_version) for o in new] == [
        ("cat", 0.95, "model", "cards:3")
    ]
    assert result.dataset.records[0].objects == tuple(gts[0])  # the drafts on it all overlap
    assert result.dropped_overlapping == 2 and result.drafts == 1  # .8 and below: not kept
    wrong = LabeledDataset([ImageRecord(image="w.png", objects=(human("cat", box(0, 0)),))], CLS)
    with pytest.raises(InvalidInputError, match="no score threshold reaches precision 0.9"):
        prelabel_dataset(
            wrong,
            [prediction("w.png", [("dog", box(0, 0), 0.9)])],
            model_version="m",
            min_score="auto",
        )
    with pytest.raises(InvalidInputError, match="no image has human labels"):
        prelabel_dataset(
            LabeledDataset(records[2:], CLS), predictions[2:], model_version="m", min_score="auto"
        )
    with pytest.raises(InvalidInputError, match="min_score"):
        prelabel_dataset(ds, predictions, model_version="m", min_score=1.5)


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, LabeledDataset, Path]:
    """A local project with a registered tiny model, and four images: two labeled, two not."""
    sys.path.insert(0, str(Path(__file__).parent / "backends" / "local"))
    from test_batch_score import CLASSES, save_tiny_model

    from detectkit.project import Project
    from detectkit.synthetic import make_dataset

    tmp = tmp_path_factory.mktemp("prelabel")
    project = Project.local(tmp / "project")
    project.models.register(save_tiny_model(tmp / "model"), "tiny")
    data = make_dataset(tmp / "data", n_images=4, classes=CLASSES, size=(64, 64), seed=3)
    records = list(data.records)
    records[2] = records[2].model_copy(update={"objects": ()})
    records[3] = records[3].model_copy(update={"objects": ()})
    return project, LabeledDataset(records, data.classes, root=data.root), tmp


def _check_drafts(ds: LabeledDataset, out: LabeledDataset, version: str) -> None:
    for before, after in zip(ds.records, out.records, strict=True):
        assert after.image == before.image
        humans = tuple(o for o in after.objects if o.source == "human")
        assert humans == before.objects  # kept as they are
        for d in (o for o in after.objects if o.source == "model"):
            assert d.model_version == version and d.score is not None
            assert not any(h.label == d.label and h.box.iou(d.box) >= 0.5 for h in humans)


@pytest.mark.local
def test_project_prelabel_with_a_registered_tiny_model(
    local: tuple[object, LabeledDataset, Path],
) -> None:
    from detectkit.project import Project

    project, ds, tmp = local
    assert isinstance(project, Project)
    result = project.prelabel("tiny", ds, min_score=0.0, batch_size=2, processes=1)
    assert result.model_version == "tiny:1" and result.images == 4 and result.threshold == 0.0
    assert result.drafts > 0 and result.calibration is None
    _check_drafts(ds, result.dataset, "tiny:1")
    assert result.dataset.select(source="human").num_boxes == ds.num_boxes
    # the drafts survive a format that holds them
    back = LabeledDataset.from_azureml(result.dataset.to_azureml(tmp / "out"), images_root=tmp)
    assert [r.objects for r in back] == [r.objects for r in result.dataset]


@pytest.mark.local
def test_project_prelabel_through_a_local_endpoint(
    local: tuple[object, LabeledDataset, Path],
) -> None:
    from detectkit.project import Project

    project, ds, _ = local
    assert isinstance(project, Project)
    endpoint = project.deploy("tiny:1", "tiny-ep")
    try:
        result = project.prelabel(endpoint, ds, min_score=0.0, batch_size=3)
    finally:
        endpoint.delete()
    assert result.model_version == "tiny-ep" and result.images == 4 and result.drafts > 0
    _check_drafts(ds, result.dataset, "tiny-ep")
