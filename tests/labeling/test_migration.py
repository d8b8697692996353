"""Leaving Azure ML Data Labeling: its COCO export (normalized boxes, AmlDatastore:// URLs) and
its MLTable/JSONL export (label_confidence per box) become a local labeling project, with its
labels shown and kept: a person's as human labels, the ML-assisted pre-labels as drafts."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit import ImageRecord, LabeledDataset
from detectkit.backends.local import LocalBackend
from detectkit.formats.azureml import read_azureml
from detectkit.formats.coco import read_coco
from detectkit.labeling import Labeling
from detectkit.labeling.server import LabelingServer


def test_a_data_labeling_coco_export_goes_on_being_labeled(tmp_path: Path) -> None:
    export = tmp_path / "export"
    (export / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (100, 50)).save(export / "images" / name)
    coco = {
        "images": [
            {
                "id": 1,
                "width": 0.0,
                "height": 0.0,
                "file_name": "images/a.jpg",
                "coco_url": "AmlDatastore://workspaceblobstore/UI/cards/a.jpg",
            },
            {
                "id": 2,
                "width": 0.0,
                "height": 0.0,
                "file_name": "images/b.jpg",
                "coco_url": "AmlDatastore://workspaceblobstore/UI/cards/b.jpg",
            },
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0.1, 0.2, 0.3, 0.4],
                "area": 0.12,
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "ace"}],
    }
    (export / "labels.json").write_text(json.dumps(coco))
    dataset, report = read_coco(export / "labels.json")
    assert report.ok
    labeling = Labeling(LocalBackend(tmp_path / "proj"))
    project = labeling.create("cards", dataset, classes=["ace", "king"])
    assert project.classes == ("ace", "king")
    assert project.progress.labeled == 1 and project.progress.unlabeled == 1
    first = project.store.entries[0].id
    (obj,) = project.store.labels(first).objects
    assert obj.box.to_xyxy(100, 50) == pytest.approx((10.0, 10.0, 40.0, 30.0), abs=1e-9)
    second = project.store.entries[1].id
    project.store.save(
        second, revision=0, state="labeled", objects=[obj.model_copy(update={"label": "king"})]
    )
    out = project.export()
    assert [len(r.objects) for r in out.records] == [1, 1]
    assert sorted(o.label for r in out.records for o in r.objects) == ["ace", "king"]


def _line(name: str, boxes: list[tuple[str, float, tuple[float, float, float, float]]]) -> str:
    # a Data Labeling "dataset with labels" (MLTable) line: sizes at the top level, one
    # label_confidence per box (1.0: a person's label; below 1: an ML-assisted pre-label)
    return json.dumps(
        {
            "image_url": f"AmlDatastore://workspaceblobstore/UI/2026-09-01_101010_UTC/{name}",
            "image_width": 100,
            "image_height": 50,
            "label": [
                {"label": c, "topX": x1, "topY": y1, "bottomX": x2, "bottomY": y2, "isCrowd": 0}
                for c, _, (x1, y1, x2, y2) in boxes
            ],
            "label_confidence": [conf for _, conf, _ in boxes],
        }
    )


def test_a_data_labeling_mltable_export_goes_on_being_labeled(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    lines = [
        _line("a.jpg", [("ace", 1.0, (0.1, 0.2, 0.4, 0.6))]),
        _line("b.jpg", [("king", 0.8, (0.5, 0.1, 0.9, 0.5)), ("ace", 0.6, (0, 0, 0.2, 0.2))]),
    ]
    (export / "labeledDatapoints_1.jsonl").write_text("\n".join(lines) + "\n")
    (export / "MLTable").write_text(
        "paths:\n  - file: ./labeledDatapoints_1.jsonl\ntransformations:\n"
        "  - read_json_lines:\n      encoding: utf8\n      include_path_column: false\n"
    )
    # the datastore folder, downloaded (azcopy / az storage blob download-batch)
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (100, 50)).save(downloaded / name)
    dataset, report = read_azureml(export)
    assert report.ok
    prefix = "azureml://datastores/workspaceblobstore/paths/UI/2026-09-01_101010_UTC/"
    assert all(r.image.startswith(prefix) for r in dataset.records)
    local = LabeledDataset(
        [
            r.model_copy(update={"image": str(downloaded / r.image.removeprefix(prefix))})
            for r in dataset.records
        ]
        + [ImageRecord(image=str(downloaded / "c.jpg"))],  # not labeled yet: not in the export
        dataset.classes,
        root=downloaded,
    )
    labeling = Labeling(LocalBackend(tmp_path / "proj"))
    project = labeling.create("cards", local, classes=["ace", "king", "queen"])
    progress = project.progress
    assert (progress.labeled, progress.prelabeled, progress.unlabeled) == (1, 1, 1)
    assert progress.boxes_per_class == {"ace": 1, "king": 0, "queen": 0} and progress.drafts == 2
    a, b, _ = (e.id for e in project.store.entries)
    server = project.serve()
    try:
        status, shown_a = _call(server, f"/api/images/{a}")
        (human,) = shown_a["boxes"]
        assert status == 200 and shown_a["state"] == "labeled"
        assert "source" not in human and "score" not in human  # a person's label, no draft
        _, shown_b = _call(server, f"/api/images/{b}")
        assert shown_b["state"] == "prelabeled"
        assert [(x["label"], x.get("source"), x.get("score")) for x in shown_b["boxes"]] == [
            ("king", "model", 0.8),
            ("ace", "model", 0.6),
        ]
        # accept the king draft (it becomes human), keep the ace draft, draw a queen
        king = {k: v for k, v in shown_b["boxes"][0].items() if k not in ("source", "score")}
        queen = {"label": "queen", "top_x": 0.3, "top_y": 0.5, "bottom_x": 0.45, "bottom_y": 0.9}
        body = {"revision": shown_b["revision"], "state": "labeled"}
        body["boxes"] = [king, shown_b["boxes"][1], queen]
        status, saved = _call(server, f"/api/images/{b}", "PUT", body)
        assert status == 200 and saved["progress"]["boxes_per_class"] == {
            "ace": 1,
            "king": 1,
            "queen": 1,
        }
        assert saved["progress"]["drafts"] == 1 and saved["progress"]["unlabeled"] == 1
    finally:
        server.stop()
    out = project.export()
    by_name = {Path(r.image).name: r for r in out.records}
    assert sorted(by_name) == ["a.jpg", "b.jpg"]  # c.jpg is still to label
    assert [(o.label, o.source, o.score) for o in by_name["a.jpg"].objects] == [
        ("ace", "human", None)
    ]
    assert [(o.label, o.source) for o in by_name["b.jpg"].objects] == [
        ("king", "human"),
        ("queen", "human"),
    ]  # the ace draft nobody accepted stays out of the human labels
    queen_box = by_name["b.jpg"].objects[1].box
    assert queen_box.to_xyxy(100, 50) == pytest.approx((30.0, 25.0, 45.0, 45.0), abs=1e-6)
    drafts = project.export(include_drafts=True)
    kept = {Path(r.image).name: r for r in drafts.records}["b.jpg"].objects
    assert [(o.label, o.source, o.score) for o in kept] == [
        ("king", "human", None),
        ("ace", "model", 0.6),
        ("queen", "human", None),
    ]


def _call(server: LabelingServer, path: str, method: str = "GET", body: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"X-Detectkit-Token": server.token},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.load(answer)
