"""A local training run whose process is killed reads ``Failed`` instead of ``Running`` forever.

A real training process (a tiny model, many epochs) is started in a subprocess, killed with
SIGKILL once its trial is running, and the project is read again from this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from detectkit import Project
from detectkit.backends.local.owner import (
    HOST_TAG,
    PID_TAG,
    START_TAG,
    STOPPED_MESSAGE,
    owner_gone,
    owner_tags,
)
from detectkit.errors import RunFailedError
from detectkit.records import RunStatus
from detectkit.synthetic import make_dataset

pytest.importorskip("torch")
pytestmark = pytest.mark.local

TRAIN = """
import torch
from detectkit import Project
torch.set_num_threads(1)
project = Project.local({root!r})
project.train(
    "cards:1",
    models=["ssdlite_mobilenet_v2"],
    training_parameters={{
        "number_of_epochs": 500,
        "min_size": 64,
        "max_size": 64,
        "advanced_settings": {{"pretrained": False}},
    }},
)
"""


def test_owner_tags_name_this_process_and_a_gone_one_is_detected() -> None:
    tags = owner_tags()
    assert tags[PID_TAG] == str(os.getpid())
    assert owner_gone(tags) is None  # this very process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {**tags, PID_TAG: str(child.pid)}
    gone.pop(START_TAG, None)
    assert owner_gone(gone) is not None and STOPPED_MESSAGE in str(owner_gone(gone))
    if START_TAG in tags:  # a reused process id: same pid, other start time
        reused = {**tags, START_TAG: str(int(tags[START_TAG]) - 1)}
        assert "reused" in str(owner_gone(reused))
    assert owner_gone({**gone, HOST_TAG: "another-host"}) is None  # never judged
    assert owner_gone({}) is None  # runs from before owner tags


def test_a_killed_training_run_reads_failed_and_wait_returns(tmp_path: Path) -> None:
    root = tmp_path / "project"
    project = Project.local(root)
    data = make_dataset(tmp_path / "cards", n_images=6, size=(64, 64), seed=2)
    project.datasets.create("cards", data)
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TRAIN.format(root=str(root))), encoding="utf-8")
    log = tmp_path / "train.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, str(script)], stderr=sink)
    try:
        deadline = time.monotonic() + 120
        runs = []
        while time.monotonic() < deadline:
            runs = project.runs.list()
            if runs and runs[0].trials():
                break
            assert proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.5)
        (run,) = runs
        assert run.status is RunStatus.RUNNING  # its process is alive: not judged
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    run = project.runs.get(run.name)
    assert run.status is RunStatus.FAILED
    assert run.info.error is not None and STOPPED_MESSAGE in run.info.error
    assert [t.status for t in run.trials()] == [RunStatus.FAILED]
    started = time.monotonic()
    with pytest.raises(RunFailedError, match=STOPPED_MESSAGE):
        run.wait(progress=False, poll_interval=0)
    assert time.monotonic() - started < 10
