"""`detectkit draw` and `detectkit evaluate` on the three predictions shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detectkit.cli import main
from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.prediction import Detections, Prediction
from detectkit.scoring.response import format_response


def _prediction(
    record: ImageRecord, classes: tuple[str, ...], *, drop_last: bool = False
) -> Prediction:
    objects = record.objects[:-1] if drop_last and record.objects else record.objects
    xyxy = [o.box.to_xyxy() for o in objects]
    ids = [classes.index(o.label) for o in objects]
    det = Detections(np.reshape(xyxy, (-1, 4)), np.linspace(0.9, 0.6, len(objects)), ids, classes)
    return Prediction(image=record.image, width=record.width, height=record.height, detections=det)


@pytest.fixture
def perfect(cards: LabeledDataset) -> tuple[Path, list[Prediction]]:
    gt = cards.to_coco(cards.root / "annotations.json")  # type: ignore[operator]
    return gt, [_prediction(r, cards.classes) for r in cards]


def test_evaluate_online_response_perfect_is_one(
    perfect: tuple[Path, list[Prediction]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, preds = perfect
    response = tmp_path / "response.json"
    response.write_text(json.dumps(format_response(preds)))
    plots = tmp_path / "plots"
    assert main(["evaluate", str(gt), str(response), "--json", "--plots", str(plots)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stats"]["map50"] == pytest.approx(1.0)
    assert (plots / "pr_curves.png").stat().st_size > 1000
    assert (plots / "confusion_matrix.png").stat().st_size > 1000


def test_evaluate_batch_lines_with_a_missed_box(
    cards: LabeledDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = cards.to_coco(cards.root / "annotations.json")  # type: ignore[operator]
    lines = []
    for record in cards:
        body = format_response([_prediction(record, cards.classes, drop_last=True)])[0]
        lines.append(json.dumps({"filename": f"/mnt/batch/inputs/{record.name}", **body}))
    batch = tmp_path / "predictions.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    assert main(["evaluate", str(gt), str(batch)]) == 0
    text = capsys.readouterr().out
    assert "0.9" in text or "0.8" in text  # recall below 1: some boxes were dropped
    assert main(["evaluate", str(gt), str(batch), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 < report["stats"]["ar100"] < 1.0


def test_evaluate_coco_results_needs_the_coco_ground_truth(
    perfect: tuple[Path, list[Prediction]],
    cards: LabeledDataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gt, preds = perfect
    coco = json.loads(gt.read_text())
    image_ids = {Path(img["file_name"]).name: img["id"] for img in coco["images"]}
    cat_ids = {c["name"]: c["id"] for c in coco["categories"]}
    results = [
        r for p in preds for r in p.to_coco_results(image_ids[Path(p.image or "").name], cat_ids)
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert main(["evaluate", str(gt), str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["map"] == pytest.approx(1.0)
    cards.to_azureml(cards.root)  # type: ignore[arg-type]
    assert main(["evaluate", str(cards.root), str(path)]) == 2
    assert "COCO results" in capsys.readouterr().err


def test_draw_writes_an_annotated_png(
    perfect: tuple[Path, list[Prediction]], tmp_path: Path
) -> None:
    _, preds = perfect
    image = preds[0].image
    assert image is not None
    response = tmp_path / "response.json"
    response.write_text(json.dumps(format_response(preds[:1])))
    out = tmp_path / "boxes.png"
    assert (
        main(
            ["draw", image, "--prediction", str(response), "--out", str(out), "--min-score", "0.5"]
        )
        == 0
    )
    drawn = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(image).convert("RGB"), dtype=np.int16)
    assert drawn.shape == original.shape
    assert np.abs(drawn - original).sum() > 0
