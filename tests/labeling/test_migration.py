"""Leaving Azure ML Data Labeling: its COCO export (normalized boxes, AmlDatastore:// URLs)
becomes a local labeling project, with its labels shown and kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from detectkit.backends.local import LocalBackend
from detectkit.formats.coco import read_coco
from detectkit.labeling import Labeling


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
