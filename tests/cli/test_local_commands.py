"""Lifecycle commands on the local backend, for real: a temporary project, generated data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectkit.cli import main
from detectkit.synthetic import make_dataset


def test_no_backend_says_how_to_pick_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DETECTKIT_PROJECT", raising=False)
    assert main(["dataset", "list"]) == 2
    err = capsys.readouterr().err
    assert "no backend chosen" in err and "--local DIR" in err and "--workspace" in err


def test_dataset_assets_create_list_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path / "cards", n_images=4, size=(64, 64), seed=3)
    coco = data.to_coco(tmp_path / "cards" / "annotations.json")
    project = tmp_path / "project"
    monkeypatch.setenv("DETECTKIT_PROJECT", str(project))  # the default --local
    assert main(["dataset", "create", "cards", str(coco), "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["name"], created["version"], created["images"]) == ("cards", "1", 4)
    assert Path(created["uri"]).is_relative_to(project.resolve())
    assert main(["dataset", "create", "cards", str(coco), "--local", str(project)]) == 0
    assert "cards:2" in capsys.readouterr().out
    assert main(["dataset", "list", "--json"]) == 0
    assert [(a["name"], a["version"]) for a in json.loads(capsys.readouterr().out)] == [
        ("cards", "2")
    ]
    assert main(["dataset", "show", "cards:1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["boxes"] == data.num_boxes
    assert main(["dataset", "show", "dogs"]) == 2
    assert "dogs" in capsys.readouterr().err


def test_unknown_run_and_model_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--local", str(tmp_path / "project")]
    assert main(["runs", "show", "nope", *root]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["models", "download", "dogs", str(tmp_path / "m"), *root]) == 2
    assert "dogs" in capsys.readouterr().err


def test_train_needs_data_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--local", str(tmp_path)]) == 2
    assert "give DATA or -f JOB.yml" in capsys.readouterr().err
