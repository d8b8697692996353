"""Pre-labels in a labeling project: drafts kept, accepted, rejected, counted and exported."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit import Box, ImageRecord, LabeledDataset
from detectkit.backends.local import LocalBackend
from detectkit.errors import InvalidInputError
from detectkit.labeling import Labeling, LabelingProject
from detectkit.labeling.labels import annotation, is_draft
from detectkit.labeling.review import labeling_order

CLASSES = ["cat", "dog"]


def _box(x: float) -> Box:
    return Box(top_x=x, top_y=0.1, bottom_x=x + 0.2, bottom_y=0.4)


def _draft(label: str, x: float, score: float) -> object:
    return annotation(label, _box(x), score=score, source="model", model_version="toy:3")


@pytest.fixture
def project(tmp_path: Path) -> LabelingProject:
    folder = tmp_path / "imgs"
    folder.mkdir()
    records = []
    objects: list[tuple[object, ...]] = [
        (_draft("cat", 0.1, 0.9), _draft("dog", 0.5, 0.4)),  # pre-labeled
        (annotation("cat", _box(0.2)),),  # a person's label
        (_draft("dog", 0.3, 0.55),),  # pre-labeled, less sure
        (),  # untouched
    ]
    for i, objs in enumerate(objects):
        Image.new("RGB", (100, 80), (30 * i, 60, 90)).save(folder / f"im{i}.png")
        records.append(
            ImageRecord(image=str(folder / f"im{i}.png"), width=100, height=80, objects=objs)
        )
    dataset = LabeledDataset(records, CLASSES, root=folder)
    return Labeling(LocalBackend(tmp_path / "proj")).create("pets", dataset, classes=CLASSES)


def _ids(project: LabelingProject) -> list[str]:
    return [e.id for e in project.store.entries]


def test_drafts_are_kept_with_score_and_model_version(project: LabelingProject) -> None:
    ids = _ids(project)
    labels = project.store.labels(ids[0])
    assert labels.state.value == "prelabeled"
    assert [(o.label, o.score, is_draft(o)) for o in labels.objects] == [
        ("cat", 0.9, True),
        ("dog", 0.4, True),
    ]
    assert getattr(labels.objects[0], "model_version", None) == "toy:3"
    assert project.store.labels(ids[1]).state.value == "labeled"
    assert project.store.labels(ids[3]).state.value == "unlabeled"
    p = project.progress
    assert (p.prelabeled, p.labeled, p.reviewed, p.unlabeled, p.skipped) == (2, 1, 0, 1, 0)
    assert (p.boxes, p.drafts, p.boxes_per_class) == (1, 3, {"cat": 1, "dog": 0})


def test_accept_makes_a_human_label_and_only_human_labels_are_exported(
    project: LabelingProject,
) -> None:
    ids = _ids(project)
    saved = project.accept(ids[0], [0])
    assert saved.state.value == "labeled"
    assert [(o.label, o.score, is_draft(o)) for o in saved.objects] == [
        ("cat", None, False),
        ("dog", 0.4, True),
    ]
    p = project.progress
    assert (p.prelabeled, p.labeled, p.boxes, p.drafts) == (1, 2, 2, 2)
    exported = project.export()
    by_name = {r.name: r for r in exported.records}
    assert sorted(by_name) == ["im0.png", "im1.png"]
    assert [(o.label, is_draft(o)) for o in by_name["im0.png"].objects] == [("cat", False)]
    assert by_name["im0.png"].objects[0].box == _box(0.1)
    # asked for: the drafts come too, still drafts (never mixed up with the human labels)
    handed = project.store.to_dataset(include_drafts=True)  # what export(include_drafts) writes
    drafts = {r.name: [(o.label, o.score) for o in r.objects if is_draft(o)] for r in handed}
    assert drafts == {"im0.png": [("dog", 0.4)], "im1.png": [], "im2.png": [("dog", 0.55)]}
    everything = project.export(include_drafts=True)
    assert {r.name: len(r.objects) for r in everything} == {
        "im0.png": 2,
        "im1.png": 1,
        "im2.png": 1,
    }


def test_reject_and_mark_reviewed(project: LabelingProject) -> None:
    ids = _ids(project)
    saved = project.reject(ids[0], [1])
    assert [o.label for o in saved.objects] == ["cat"] and saved.state.value == "labeled"
    reviewed = project.mark_reviewed(ids[2])
    assert reviewed.state.value == "reviewed" and is_draft(reviewed.objects[0])
    p = project.progress
    assert (p.reviewed, p.prelabeled, p.labeled, p.drafts) == (1, 0, 2, 2)
    # a reviewed image's leftover draft stays out of the export
    exported = {r.name: r.objects for r in project.export()}
    assert exported["im2.png"] == ()
    with pytest.raises(InvalidInputError, match="expected positions 0..0"):
        project.accept(ids[0], [5])


def test_rejecting_every_draft_leaves_a_labeled_empty_image(project: LabelingProject) -> None:
    ids = _ids(project)
    saved = project.reject(ids[2])
    assert saved.objects == () and saved.state.value == "labeled"


def test_saving_drafts_back_as_unlabeled_keeps_them_prelabeled(project: LabelingProject) -> None:
    ids = _ids(project)
    labels = project.store.labels(ids[0])
    saved = project.store.save(
        ids[0], revision=labels.revision, state="unlabeled", objects=labels.objects
    )
    assert saved.state.value == "prelabeled"


def test_uncertainty_order_ranks_the_drafted_images_first(project: LabelingProject) -> None:
    ids = _ids(project)
    # im0's best draft 0.9 (1 - 0.9 = 0.1), im2's 0.55 (0.45): im2 first; im3 has no draft,
    # im1 is labeled already
    assert labeling_order(project.store, "uncertainty") == [2, 0, 3, 1]
    assert labeling_order(project.store, "index") == [0, 1, 2, 3]
    server = project.serve(order="uncertainty")
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/images",
            headers={"X-Detectkit-Token": server.token},
        )
        with urllib.request.urlopen(req) as answer:
            listed = json.load(answer)
        assert listed["ids"] == [ids[2], ids[0], ids[3], ids[1]]
        assert listed["states"] == "ppul"
    finally:
        server.stop()
    with pytest.raises(InvalidInputError, match="order: expected one of"):
        labeling_order(project.store, "hardest")


def _get(server: Any, path: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", headers={"X-Detectkit-Token": server.token}
    )
    try:
        with urllib.request.urlopen(req) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_the_image_list_comes_in_windows_in_the_labeling_order(project: LabelingProject) -> None:
    ids = _ids(project)
    server = project.serve(order="uncertainty")  # order [2, 0, 3, 1], states "ppul"
    try:
        status, window = _get(server, "/api/images?offset=1&limit=2")
        assert status == 200 and window["ids"] == [ids[0], ids[3]]
        assert (window["total"], window["offset"], window["positions"]) == (4, 1, [1, 2])
        assert window["states"] == "pu" and window["boxes"][1] == 0
        _, todo = _get(server, "/api/images?state=up&limit=10")
        assert todo["ids"] == [ids[2], ids[0], ids[3]] and todo["total"] == 3
        # next after position 1 among the unlabeled, previous before position 3 among "up"
        _, after = _get(server, "/api/images?state=u&at=2&limit=1")
        assert after["ids"] == [ids[3]] and after["positions"] == [2]
        _, before = _get(server, "/api/images?state=up&at=3&offset=-1&limit=1")
        assert before["ids"] == [ids[3]] and before["offset"] == 2
        _, none = _get(server, "/api/images?at=0&offset=-1&limit=1")
        assert none["ids"] == [] and none["total"] == 4
        # a save moves the image between the filters at once
        labels = project.store.labels(ids[3])
        project.store.save(ids[3], revision=labels.revision, state="skipped", objects=())
        _, skipped = _get(server, "/api/images?state=s")
        assert skipped["ids"] == [ids[3]] and skipped["states"] == "s"
        assert _get(server, "/api/images?state=x")[0] == 400
        assert _get(server, "/api/images?limit=5000")[0] == 400
        assert _get(server, "/api/images?offset=two")[0] == 400
    finally:
        server.stop()


def test_a_saved_draft_round_trips_through_the_api(project: LabelingProject) -> None:
    ids = _ids(project)
    server = project.serve()
    try:
        box = {"label": "dog", "top_x": 0.5, "top_y": 0.5, "bottom_x": 0.7, "bottom_y": 0.7}
        boxes = [{**box, "score": 0.3, "source": "model", "model_version": "toy:4"}, box]
        body = json.dumps({"revision": 0, "state": "unlabeled", "boxes": boxes}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/images/{ids[3]}",
            data=body,
            method="PUT",
            headers={"X-Detectkit-Token": server.token},
        )
        with urllib.request.urlopen(req) as answer:
            saved = json.load(answer)
        assert saved["state"] == "prelabeled"
        assert saved["boxes"][0]["source"] == "model" and "source" not in saved["boxes"][1]
        assert saved["boxes"][0]["model_version"] == "toy:4"
        assert saved["progress"]["drafts"] == 4
    finally:
        server.stop()
