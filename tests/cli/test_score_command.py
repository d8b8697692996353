"""``detectkit score``: a registered tiny model of a local project, real worker processes, the
command killed with SIGKILL mid-run and resumed, and ``detectkit evaluate`` on its output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from detectkit.cli import main
from detectkit.project import Project
from detectkit.synthetic import make_dataset

sys.path.insert(0, str(Path(__file__).parents[1] / "backends" / "local"))
from test_batch_score import save_tiny_model

pytestmark = pytest.mark.local

SRC = Path(__file__).parents[2] / "src"


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    model = save_tiny_model(tmp_path_factory.mktemp("model"))
    Project.local(root).models.register(model, "tiny")
    return root


def test_killed_mid_run_then_resumed_scores_every_image_exactly_once(
    project_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path / "data", n_images=120, size=(48, 48), seed=11)
    out = tmp_path / "p.jsonl"
    command = [sys.executable, "-m", "detectkit", "score", "tiny:1", str(tmp_path / "data")]
    command += ["--out", str(out), "--processes", "1", "--batch-size", "1"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    child = subprocess.Popen(
        [*command, "--local", str(project_root)], env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if out.is_file() and out.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.005)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the command and its worker
        child.wait()
    before = out.read_bytes().count(b"\n")
    assert 3 <= before < len(data), f"killed after {before} lines"
    assert out.read_bytes().endswith(b"\n")  # whole lines only

    code = main(
        [*command[3:], "--resume", "--json", "--batch-size", "4", "--local", str(project_root)]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["skipped"] == before and result["scored"] == len(data) - before
    names = Counter(json.loads(line)["filename"] for line in out.read_text().splitlines())
    assert sorted(names) == sorted(r.image for r in data) and set(names.values()) == {1}


def test_evaluate_reads_the_output(
    project_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path / "data", n_images=4, size=(64, 64), seed=12)
    labels = data.to_coco(tmp_path / "labels.json")
    out = tmp_path / "p.jsonl"
    args = ["score", "tiny", str(tmp_path / "data" / "images"), "--out", str(out)]
    assert main([*args, "--local", str(project_root)]) == 0
    text = capsys.readouterr().out
    assert "scored 4 images" in text and "images/s" in text
    evaluate = ["evaluate", str(labels), str(out), "--json", "--score-threshold", "0"]
    assert main(evaluate) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 4 and "ace" in report["classes"]  # the model's classes
    # every prediction was matched to its image: the matrix counts boxes beyond the labels
    counted = sum(map(sum, report["confusion_matrix"]["matrix"]))
    assert counted > data.num_boxes


def test_an_existing_output_is_refused_and_a_corrupt_image_fails_the_command(
    project_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_dataset(tmp_path, n_images=2, size=(48, 48), seed=13)
    folder = tmp_path / "images"
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png at all")
    out = tmp_path / "p.jsonl"
    out.write_text('{"filename": "x.png", "boxes": []}\n', encoding="utf-8")
    args = ["score", "tiny", str(folder), "--out", str(out), "--local", str(project_root)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--resume" in err and "--overwrite" in err
    assert main([*args, "--overwrite", "--json"]) == 1  # one image failed
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["scored"] == 2 and [Path(f["image"]).name for f in result["failed"]] == [
        "broken.png"
    ]
    assert "1 images could not be scored" in captured.err
    assert "broken.png" not in out.read_text(encoding="utf-8")
    assert main([*args, "--resume", "--overwrite"]) == 2  # argparse: not allowed together
