"""A model folder saved by detectkit 0.1 (before the package redesign) still loads and scores.

Saved models pickle ``detectkit.backends.local.pyfunc.DetectionModel`` and rebuild their network
through ``detectkit.backends.local.models.build_model``; a move of either breaks every model on
disk. ``tests/fixtures/models/make_saved_model.py`` wrote the fixture with the old code.
"""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.local

FIXTURES = Path(__file__).parents[2] / "fixtures" / "models"


def test_model_saved_by_0_1_scores_the_same_boxes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    pd = pytest.importorskip("pandas")
    with tarfile.open(FIXTURES / "ssdlite-0.1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / "mlflow-model"
    assert "detectkit.backends.local.pyfunc" in (folder / "python_model.pkl").read_bytes().decode(
        "latin-1"
    )
    model = mlflow_pyfunc.load_model(str(folder))
    image = base64.b64encode((FIXTURES / "probe.png").read_bytes()).decode("ascii")
    got = model.predict(pd.DataFrame({"image": [image]}))["boxes"].tolist()
    expected = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
    assert len(got) == len(expected) == 1
    assert [b["label"] for b in got[0]] == [b["label"] for b in expected[0]]
    for mine, theirs in zip(got[0], expected[0], strict=True):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
        for key in ("topX", "topY", "bottomX", "bottomY"):
            assert mine["box"][key] == pytest.approx(theirs["box"][key], abs=1e-5)


def test_saved_model_loads_through_the_local_server_loader(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from detectkit.backends.local.serve import load_model

    with tarfile.open(FIXTURES / "ssdlite-0.1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    model = load_model(tmp_path / "mlflow-model")
    assert type(model.unwrap_python_model()).__module__ == "detectkit.backends.local.pyfunc"
