"""``detectkit demo --quick``: every step of the lifecycle runs and leaves its files."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from detectkit.demo import _threads, run_demo

pytestmark = pytest.mark.local


@pytest.mark.slow  # starts a scoring server process (MLflow and torch imports)
def test_quick_demo_runs_every_step_and_stops_its_endpoint(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_demo(tmp_path / "demo", quick=True, stream=out)
    text = out.getvalue()
    for step in range(1, 9):
        assert f"[{step}/8]" in text
    assert "validated it: no problems" in text
    assert result.root == (tmp_path / "demo").resolve()
    assert result.dataset == "demo-cards:1" and result.model == "demo-cards-detector:1"
    asset = result.project_root / "datasets" / "demo-cards" / "1"
    assert (asset / "MLTable").is_file() and (asset / "annotations.jsonl").is_file()
    assert (result.project_root / "mlflow.db").is_file()
    assert result.annotated_image.is_file() and result.annotated_image.suffix == ".png"
    assert result.class_distribution.is_file()
    assert result.report.num_images == 3
    assert 0.0 <= result.map50 <= 1.0 and 0.0 <= result.map <= result.map50 + 1e-9
    assert not (result.project_root / "endpoints" / result.endpoint).exists()  # deleted
    assert str(result.annotated_image) in text and str(result.class_distribution) in text

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{result.project_root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    parent = client.get_run(result.run)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["automl_best_child_run_id"]
    assert (
        client.get_model_version("demo-cards-detector", "1").run_id
        == parent.data.tags["automl_best_child_run_id"]
    )
    request = json.loads(
        Path(client.download_artifacts(result.run, "request.json", str(tmp_path))).read_text()
    )
    assert request["training_parameters"]["number_of_epochs"] == 1


def test_threads_leave_busy_cores_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.0, 0.0))
    assert _threads() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert _threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert _threads() == 1
