"""``detectkit prelabel``: a registered tiny model of a local project drafts labels for an
Azure ML JSONL data set; the written file keeps the human labels and marks the drafts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from detectkit.cli import main
from detectkit.formats.azureml import read_azureml
from detectkit.project import Project
from detectkit.synthetic import make_dataset

sys.path.insert(0, str(Path(__file__).parents[1] / "backends" / "local"))
from test_batch_score import CLASSES, save_tiny_model

pytestmark = pytest.mark.local


def test_prelabel_writes_drafts_beside_human_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "project"
    Project.local(root).models.register(save_tiny_model(tmp_path / "model"), "tiny")
    data = make_dataset(tmp_path / "data", n_images=3, classes=CLASSES, size=(64, 64), seed=4)
    labels = data.to_azureml(tmp_path / "data" / "labels.jsonl")
    out = tmp_path / "drafts" / "drafts.jsonl"
    args = ["prelabel", "tiny", str(labels), "--out", str(out), "--min-score", "0.0"]
    assert main([*args, "--processes", "1", "--json", "--local", str(root)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model_version"] == "tiny:1" and result["images"] == 3
    assert result["drafts"] > 0 and result["threshold"] == 0.0 and result["calibration"] is None
    back, report = read_azureml(out, images_root=tmp_path, errors="collect")
    assert report.ok
    humans = [tuple(o for o in r.objects if o.source == "human") for r in back]
    assert humans == [r.objects for r in data]  # the human labels, unchanged
    drafts = [o for r in back for o in r.objects if o.source == "model"]
    assert len(drafts) == result["drafts"]
    assert all(o.model_version == "tiny:1" and o.score is not None for o in drafts)


def test_prelabel_refuses_a_bad_min_score(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prelabel", "tiny", "x", "--out", "o.jsonl", "--min-score", "high"])
    assert code == 2
    assert "--min-score: expected a number in [0, 1] or 'auto', got 'high'" in (
        capsys.readouterr().err
    )
