"""Drafts survive every format that can hold them: human labels and a model's drafts come back
with the same ``source``, ``score`` and ``model_version``; files without a provenance field are
read by each reader's documented rule; ``AmlDatastore://`` URLs follow one rule everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectkit import Box, ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.formats import read_dataset, write_dataset
from detectkit.formats._common import datastore_url
from detectkit.formats.azureml import read_azureml
from detectkit.formats.coco import read_coco
from detectkit.formats.labelstudio import read_labelstudio

B1 = Box(top_x=0.1, top_y=0.1, bottom_x=0.4, bottom_y=0.5)
B2 = Box(top_x=0.5, top_y=0.2, bottom_x=0.9, bottom_y=0.6)
B3 = Box(top_x=0.25, top_y=0.5, bottom_x=0.75, bottom_y=1.0)


def mixed(root: Path) -> LabeledDataset:
    objects = (
        ObjectAnnotation(label="cat", box=B1),
        ObjectAnnotation(label="dog", box=B2, score=0.8125, source="model", model_version="m:2"),
        ObjectAnnotation(label="cat", box=B3, score=0.375, source="model", model_version="ep-1"),
    )
    records = [
        ImageRecord(image=str(root / "a.png"), width=64, height=48, objects=objects),
        ImageRecord(
            image=str(root / "b.png"),
            width=64,
            height=48,
            objects=(ObjectAnnotation(label="dog", box=B1),),
        ),
        ImageRecord(image=str(root / "c.png"), width=64, height=48),
    ]
    return LabeledDataset(records, ["cat", "dog"], root=root)


def _key(o: ObjectAnnotation) -> tuple[object, ...]:
    coords = tuple(round(v, 9) for v in o.box.model_dump().values())  # COCO goes via pixels
    return (o.label, o.source, o.score, o.model_version, coords)


@pytest.mark.parametrize("fmt", ["azureml", "coco", "labelstudio"])
def test_human_labels_and_drafts_round_trip(tmp_path: Path, fmt: str) -> None:
    ds = mixed(tmp_path)
    suffix = {"azureml": "out.jsonl", "coco": "out.json", "labelstudio": "tasks.json"}[fmt]
    path = write_dataset(ds, tmp_path / suffix, fmt)  # type: ignore[arg-type]
    if fmt == "labelstudio":
        back, report = read_labelstudio(path, predictions="all", errors="collect")
        assert report.ok
    else:
        back = read_dataset(path, fmt)  # type: ignore[arg-type]
    assert len(back) == 3
    for before, after in zip(ds.records, back.records, strict=True):
        assert sorted(map(_key, after.objects), key=repr) == sorted(
            map(_key, before.objects), key=repr
        )
    assert back.select(source="human").num_boxes == 2


def test_jsonl_writes_label_confidence_and_lists_azure_ignores(tmp_path: Path) -> None:
    path = write_dataset(mixed(tmp_path), tmp_path / "out.jsonl", "azureml")
    first, second, third = (json.loads(x) for x in path.read_text().splitlines())
    assert first["label_confidence"] == [1.0, 0.8125, 0.375]
    assert first["label_source"] == ["human", "model", "model"]
    assert first["label_model_version"] == [None, "m:2", "ep-1"]
    assert [set(b) for b in first["label"]] == [
        {"label", "topX", "topY", "bottomX", "bottomY", "isCrowd"}
    ] * 3  # the boxes AutoML reads are unchanged
    assert "label_confidence" not in second and "label_source" not in third  # human only


def test_jsonl_without_label_source_follows_the_data_labeling_rule(tmp_path: Path) -> None:
    """Data Labeling writes 1.0 for a person's box; AutoML's scorer writes model scores."""
    lines = [
        {
            "image_url": "a.png",
            "image_width": 64,
            "image_height": 48,
            "label": [
                {"label": "cat", "topX": 0.1, "topY": 0.1, "bottomX": 0.4, "bottomY": 0.5},
                {"label": "dog", "topX": 0.5, "topY": 0.2, "bottomX": 0.9, "bottomY": 0.6},
            ],
            "label_confidence": [1.0, 0.73],
        },
        {
            "image_url": "b.png",
            "label": [{"label": "cat", "topX": 0.1, "topY": 0.1, "bottomX": 0.4, "bottomY": 0.5}],
            "label_confidence": [0.5, 0.9],  # one too many: warned and ignored
        },
    ]
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ds, report = read_azureml(path, errors="collect")
    person, drafted = ds.records[0].objects
    assert (person.source, person.score) == ("human", None)
    assert (drafted.source, drafted.score, drafted.model_version) == ("model", 0.73, None)
    assert ds.records[1].objects[0].source == "human"
    assert [p.field for p in report.problems] == ["label_confidence"]


def test_a_bad_score_or_source_skips_the_box_with_its_field(tmp_path: Path) -> None:
    line = {
        "image_url": "a.png",
        "label": [
            {"label": "cat", "topX": 0.1, "topY": 0.1, "bottomX": 0.4, "bottomY": 0.5},
            {"label": "dog", "topX": 0.5, "topY": 0.2, "bottomX": 0.9, "bottomY": 0.6},
        ],
        "label_confidence": [1.7, 0.5],
        "label_source": ["model", "robot"],
    }
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps(line) + "\n")
    ds, report = read_azureml(path, errors="collect")
    assert ds.records[0].objects == ()
    assert [p.field for p in report.problems] == ["label_confidence[0]", "label_source[1]"]


def test_coco_results_with_score_and_no_source_are_drafts(tmp_path: Path) -> None:
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 30, 30], "score": 0.6},
        ],
    }
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    person, drafted = read_coco(path)[0].records[0].objects
    assert (person.source, person.score) == ("human", None)
    assert (drafted.source, drafted.score) == ("model", 0.6)


def test_label_studio_reads_annotations_as_human_and_predictions_as_drafts(
    tmp_path: Path,
) -> None:
    def result(label: str, x: float, score: float | None = None) -> dict[str, object]:
        item: dict[str, object] = {
            "type": "rectanglelabels",
            "original_width": 100,
            "original_height": 100,
            "value": {"x": x, "y": 10, "width": 20, "height": 20, "rectanglelabels": [label]},
        }
        if score is not None:
            item["score"] = score
        return item

    task = {
        "data": {"image": "a.png"},
        "annotations": [{"result": [result("cat", 10)]}],
        "predictions": [
            {"model_version": "yolo-3", "score": 0.4, "result": [result("dog", 50)]},
            {"model_version": "yolo-4", "result": [result("dog", 60, 0.9)]},
        ],
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task]))
    ds, _ = read_labelstudio(path, predictions="all", errors="collect")
    got = [(o.label, o.source, o.score, o.model_version) for o in ds.records[0].objects]
    assert got == [
        ("cat", "human", None, None),
        ("dog", "model", 0.4, "yolo-3"),
        ("dog", "model", 0.9, "yolo-4"),
    ]
    first_only, _ = read_labelstudio(path, errors="collect")  # "unlabeled": humans only here
    assert [o.source for o in first_only.records[0].objects] == ["human"]


# ------------------------------------------------------------------ AmlDatastore://
def test_datastore_url_rule() -> None:
    assert datastore_url("AmlDatastore://workspaceblobstore/UI/x/a.jpg") == (
        "azureml://datastores/workspaceblobstore/paths/UI/x/a.jpg"
    )
    assert datastore_url("amldatastore://ds/p.png") == "azureml://datastores/ds/paths/p.png"
    assert datastore_url("AmlDatastore://only-a-datastore") == "AmlDatastore://only-a-datastore"
    assert datastore_url("https://host/a.jpg") == "https://host/a.jpg"


def test_jsonl_and_coco_readers_rewrite_aml_datastore_the_same_way(tmp_path: Path) -> None:
    url = "AmlDatastore://workspaceblobstore/UI/cards/a.jpg"
    want = "azureml://datastores/workspaceblobstore/paths/UI/cards/a.jpg"
    jsonl = tmp_path / "labels.jsonl"
    box = {"label": "cat", "topX": 0.1, "topY": 0.1, "bottomX": 0.4, "bottomY": 0.5}
    jsonl.write_text(json.dumps({"image_url": url, "label": [box]}) + "\n")
    coco = tmp_path / "coco.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "coco_url": url, "width": 100, "height": 100}],
                "categories": [{"id": 1, "name": "cat"}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.1, 0.1, 0.3, 0.4]}
                ],
            }
        )
    )
    from_jsonl, _ = read_azureml(jsonl, errors="collect")
    from_coco, _ = read_coco(coco, errors="collect")
    assert from_jsonl.records[0].image == from_coco.records[0].image == want
