"""``detectkit models export-onnx``: a registered tiny local model exported to ONNX."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from detectkit.cli import main
from detectkit.project import Project

pytest.importorskip("torch", reason="the local extra (torch) is not installed")
pytest.importorskip("onnx", reason="onnx is not installed (the onnx extra)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")

sys.path.insert(0, str(Path(__file__).parents[1] / "backends" / "local"))
from test_onnx_runtime import _save  # noqa: E402

pytestmark = pytest.mark.local


def test_export_onnx_writes_automl_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "project"
    Project.local(root).models.register(_save(tmp_path / "model"), "tiny")
    out = tmp_path / "exported" / "tiny.onnx"
    command = ["models", "export-onnx", "tiny:1", str(out), "--local", str(root), "--json"]
    assert main(command) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(out) and printed["version"] == "1"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["boxes_0", "labels_0", "scores_0"]
    assert main(["models", "export-onnx", "nope", str(out), "--local", str(root)]) == 2
