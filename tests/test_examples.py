"""The scripts under examples/ run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_generates_converts_and_summarises(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/quickstart/quickstart.py"),
            "--out",
            str(out),
            "--images",
            "8",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "No problems found." in result.stdout
    assert (out / "azureml" / "MLTable").is_file()
    assert (out / "coco.json").is_file()
    assert (out / "class_distribution.png").stat().st_size > 1000


def test_azure_walkthrough_explains_itself_without_azure() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/azure_walkthrough/walkthrough.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--compute" in result.stdout and "--dry-run" in result.stdout
