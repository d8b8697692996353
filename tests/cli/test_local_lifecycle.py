"""The whole lifecycle from the command line on the local backend, on real parts: a tiny model
trained for seconds, the SQLite registry, a real endpoint on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detectkit.cli import main
from detectkit.synthetic import make_dataset

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytestmark = pytest.mark.local

TINY = ["--epochs", "1", "--param", "min_size=64", "--param", "max_size=64"]
TINY += ["--param", 'advanced_settings={"pretrained": false}']


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_train_register_deploy_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    torch.set_num_threads(1)
    data = make_dataset(tmp_path / "cards", n_images=8, size=(64, 64), seed=5)
    data.to_azureml(tmp_path / "cards")
    local = ["--local", str(tmp_path / "project")]
    cli(capsys, "dataset", "create", "cards", str(tmp_path / "cards"), *local)

    plan = cli(
        capsys, "train", "cards:1", "--models", "ssdlite_mobilenet_v2", *TINY, "--dry-run", *local
    )
    assert [t["model_name"] for t in plan["trials"]] == ["ssdlite_mobilenet_v2"]

    run = cli(capsys, "train", "cards:1", "--models", "ssdlite_mobilenet_v2", *TINY, *local)
    assert run["status"] == "Completed"
    shown = cli(capsys, "runs", "show", run["name"], *local)
    (trial,) = shown["trials"]
    assert trial["is_best"] and trial["hyperparameters"]["number_of_epochs"] == 1
    assert trial["hyperparameters"]["min_size"] == 64  # the settings read back
    assert "mean_average_precision" in shown["metrics"]
    assert main(["runs", "show", run["name"], *local]) == 0
    table = capsys.readouterr().out
    assert "*" in table and "ssdlite_mobilenet_v2" in table

    model = cli(capsys, "models", "register", run["name"], "cards-detector", *local)
    assert (model["name"], model["version"]) == ("cards-detector", "1")
    assert [m["version"] for m in cli(capsys, "models", "list", "cards-detector", *local)] == ["1"]

    listed = cli(capsys, "runs", "list", *local)
    assert [r["name"] for r in listed] == [run["name"]]  # the parent run, not its trial
    assert listed[0]["status"] == "Completed"
    downloaded = cli(capsys, "models", "download", "cards-detector:1", str(tmp_path / "dl"), *local)
    assert (Path(downloaded["path"]) / "MLmodel").is_file()
    assert main(["models", "download", "cards-detector", str(tmp_path / "dl"), *local]) != 0
    assert "already exists" in capsys.readouterr().err

    endpoint = cli(capsys, "deploy", "cards-detector:1", "cards-ep", *local)
    try:
        assert endpoint["state"] == "Succeeded"
        assert endpoint["scoring_uri"].startswith("http://127.0.0.1:")
        shown = cli(capsys, "endpoints", "show", "cards-ep", *local)
        assert "keys" not in shown
        lines = cli(capsys, "predict", data.records[0].image, "--endpoint", "cards-ep", *local)
        assert len(lines) == 1 and isinstance(lines[0]["boxes"], list)
        assert cli(capsys, "endpoints", "logs", "cards-ep", *local)["logs"]
    finally:
        assert main(["endpoints", "delete", "cards-ep", *local]) == 0
    assert "deleted endpoint cards-ep" in capsys.readouterr().out
    assert cli(capsys, "endpoints", "list", *local) == []


def test_a_job_file_trains_locally_and_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    torch.set_num_threads(1)
    data = make_dataset(tmp_path / "cards", n_images=6, size=(64, 64), seed=6)
    data.to_azureml(tmp_path / "cards")
    local = ["--local", str(tmp_path / "project")]
    cli(capsys, "dataset", "create", "cards", str(tmp_path / "cards"), *local)
    job = tmp_path / "job.yml"
    job.write_text(
        "$schema: https://azuremlsdk2.blob.core.windows.net/preview/0.0.1/autoMLJob.schema.json\n"
        "type: automl\n"
        "task: image_object_detection\n"
        "name: cards-local-1\n"
        "description: one tiny trial\n"
        "experiment_name: cards\n"
        "compute: azureml:gpu-cluster\n"
        "primary_metric: mean_average_precision\n"
        "target_column_name: label\n"
        "training_data:\n  path: azureml:cards:1\n  type: mltable\n"
        "validation_data_size: 0.34\n"
        "tags:\n  team: vision\n"
        "training_parameters:\n"
        "  model_name: ssdlite_mobilenet_v2\n"
        "  number_of_epochs: 1\n"
        "  learning_rate: 0.02\n"
        "  min_size: 64\n"
        "  max_size: 64\n"
        "  advanced_settings: '{\"pretrained\": false}'\n",
        encoding="utf-8",
    )
    run = cli(capsys, "train", "-f", str(job), *local)
    # the job's name names the run; the MLflow run id stays its key
    assert (run["display_name"], run["status"]) == ("cards-local-1", "Completed")
    shown = cli(capsys, "runs", "show", "cards-local-1", *local)
    assert shown["description"] == "one tiny trial"
    assert shown["tags"]["team"] == "vision"
    (trial,) = shown["trials"]
    params = trial["hyperparameters"]
    assert (params["model_name"], params["number_of_epochs"]) == ("ssdlite_mobilenet_v2", 1)
    assert params["learning_rate"] == pytest.approx(0.02)
    assert "mean_average_precision" in shown["metrics"]
