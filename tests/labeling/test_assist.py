"""ML assistance on the local backend, on real parts: a tiny model trained in a real background
process (the SQLite MLflow store), drafts saved into the real store, and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detectkit import LabeledDataset
from detectkit.errors import ConflictError, InvalidInputError
from detectkit.labeling.assist import (
    LOCK_FILE,
    STATUS_FILE,
    AssistantStatus,
    MLAssist,
    acquire_lock,
    lock_holder,
    read_status,
    release_lock,
    training_parameters,
)
from detectkit.labeling.labels import is_draft
from detectkit.project import Project
from detectkit.records import RunStatus
from detectkit.synthetic import make_dataset

pytest.importorskip("torch")
pytest.importorskip("torchvision")

TINY = {"number_of_epochs": 1, "min_size": 64, "max_size": 64}
TINY |= {"advanced_settings": {"pretrained": False}}
#: an untrained model scores low: keep its few best boxes, so there are drafts to check
TINY |= {"box_score_threshold": 0.0, "box_detections_per_image": 3}


def _project(tmp: Path, epochs: int = 1, name: str = "cards") -> tuple[Project, object]:
    data = make_dataset(tmp / "data", n_images=8, size=(64, 64), seed=7)
    records = [r if k < 4 else r.model_copy(update={"objects": ()}) for k, r in enumerate(data)]
    project = Project.local(tmp / "project")
    settings = MLAssist(
        min_labeled=4, min_score=0.0, training_parameters={**TINY, "number_of_epochs": epochs}
    )
    labeling = project.labeling.create(
        name,
        LabeledDataset(records, data.classes, root=data.root),
        classes=list(data.classes),
        ml_assist=settings,
    )
    for entry in labeling.store.entries[:4]:  # a person labeled the first four
        labels = labeling.store.labels(entry.id)
        labeling.store.save(
            entry.id, revision=labels.revision, state="labeled", objects=labels.objects
        )
    return project, labeling


def _wait(predicate: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_settings_have_documented_defaults_and_are_checked() -> None:
    s = MLAssist.build(True)
    assert s is not None
    assert (s.min_labeled, s.retrain_every, s.time_budget_minutes, s.model, s.min_score) == (
        20,
        20,
        5,
        None,  # the backend's default: ssdlite_mobilenet_v2 locally, yolov5 on Azure
        "auto",
    )
    assert MLAssist.build(False) is None
    with pytest.raises(InvalidInputError, match=r"ml_assist\.min_labeled"):
        MLAssist.build({"min_labeled": 0})


def test_the_assistant_trains_then_prelabels_only_untouched_images(tmp_path: Path) -> None:
    project, labeling = _project(tmp_path)
    store = labeling.store  # type: ignore[attr-defined]
    assistant = labeling.assistant  # type: ignore[attr-defined]
    assert assistant is not None and assistant.status().state == "idle"
    assert json.loads((store.folder / "project.json").read_text())["info"]["ml_assist"][
        "min_labeled"
    ] == (4)
    before = {e.id: store.labels(e.id) for e in store.entries[:4]}
    assert assistant.due()
    pid = assistant.maybe_start()
    assert isinstance(pid, int)
    _wait(lambda: read_status(store.folder).state != "idle", 20, "the trainer to start")
    seen = {read_status(store.folder).state}
    assert assistant.maybe_start() is None  # one trainer at a time
    while assistant.running:
        seen.add(read_status(store.folder).state)
        time.sleep(0.05)
    status = assistant.wait(timeout=120)
    log = (store.folder / "assistant.log").read_text()
    assert status.state == "ready", (status, log)
    assert "training" in seen
    assert status.run and status.map is not None and 0.0 <= status.map <= 1.0
    assert status.labeled == 4 and status.started and status.finished and status.pid is None
    assert not (store.folder / LOCK_FILE).exists()
    # the run: its own, tagged with the labeling project, completed
    run = project.runs.get(status.run)
    assert run.status is RunStatus.COMPLETED
    assert run.info.tags["detectkit.labeling"] == "cards"
    # the people's labels are untouched; the unlabeled images hold drafts of the run
    for image, labels in before.items():
        assert store.labels(image) == labels
    drafted = [store.labels(e.id) for e in store.entries[4:]]
    assert status.drafted == sum(1 for d in drafted if d.objects) and status.drafted > 0
    for labels in drafted:
        assert labels.state.value in ("prelabeled", "unlabeled")
        for o in labels.objects:
            assert is_draft(o) and o.model_version == status.run and o.score is not None
    assert store.progress().prelabeled == status.drafted  # the handle's store was read again
    assert not assistant.due()  # retrain_every (20) new labels not reached
    first = run.best_trial
    assert first is not None and status.trial == first.name
    assert status.classes == store.classes

    # the next training starts from that model (warm start), and says so in its parameters
    image = store.entries[4].id
    labels = store.labels(image)
    store.save(image, revision=labels.revision, state="labeled", objects=labels.objects)
    assistant.start()
    again = assistant.wait(timeout=120)
    assert again.state == "ready", (again, (store.folder / "assistant.log").read_text())
    assert again.run != status.run and again.labeled == 5
    trial = project.runs.get(again.run).best_trial
    assert trial is not None and trial.name == again.trial != first.name
    assert trial.hyperparameters["checkpoint_run_id"] == first.name


def test_warm_start_only_from_a_model_of_the_same_classes() -> None:
    settings = MLAssist(training_parameters={"number_of_epochs": 2})
    before = AssistantStatus(state="ready", trial="abc", classes=("ace", "king"))
    assert training_parameters(settings, before, ("ace", "king")) == {
        "number_of_epochs": 2,
        "checkpoint_run_id": "abc",
    }
    # a class was added since: the old model's head does not fit, start from ImageNet
    assert training_parameters(settings, before, ("ace", "king", "queen")) == {
        "number_of_epochs": 2
    }
    assert training_parameters(MLAssist(warm_start=False), before, ("ace", "king")) is None
    assert training_parameters(MLAssist(), AssistantStatus(), ("ace",)) is None


def test_kill_9_mid_training_keeps_labels_and_the_run_reads_failed(tmp_path: Path) -> None:
    project, labeling = _project(tmp_path, epochs=200, name="killed")
    store = labeling.store  # type: ignore[attr-defined]
    assistant = labeling.assistant  # type: ignore[attr-defined]
    before = {e.id: store.labels(e.id) for e in store.entries}
    pid = assistant.start()
    _wait(lambda: read_status(store.folder).state == "training", 30, "training")
    run_name = read_status(store.folder).run
    assert run_name

    def run_started() -> bool:
        try:
            return project.runs.get(run_name).status is RunStatus.RUNNING
        except Exception:
            return False

    _wait(run_started, 60, "the MLflow run")
    time.sleep(1.0)  # inside the epochs
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: lock_holder(store.folder) is None, 10, "the process to end")
    assert {e.id: store.labels(e.id) for e in store.entries} == before
    status = read_status(store.folder)
    assert status.state == "failed" and "stopped" in (status.error or "")
    assert project.runs.get(run_name).status is RunStatus.FAILED  # owner.py sees it gone
    assert (store.folder / LOCK_FILE).exists()  # stale, left by the killed trainer
    assert assistant.due() is False  # failed: waits for a new label before trying again


def test_a_stale_lock_is_taken_over_and_a_live_one_refused(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LOCK_FILE).write_text(json.dumps({"pid": dead.pid}))
    assert lock_holder(folder) is None
    acquire_lock(folder)
    assert lock_holder(folder) == os.getpid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        other = tmp_path / "other"
        other.mkdir()
        acquire_lock(other, pid=sleeper.pid)
        with pytest.raises(ConflictError, match=f"process {sleeper.pid}"):
            acquire_lock(other)
    finally:
        sleeper.kill()
        sleeper.wait()
    acquire_lock(other)  # its holder is gone now
    release_lock(folder)
    assert not (folder / LOCK_FILE).exists()
    # a status file that says training, from a gone process, reads failed
    (folder / STATUS_FILE).write_text(json.dumps({"state": "training", "pid": dead.pid}))
    assert read_status(folder).state == "failed"


def test_ml_assist_on_azure_needs_a_compute_cluster(tmp_path: Path) -> None:
    class Remote:  # the remote labeling protocol's methods: a backend like Azure's
        def labeling_scope(self) -> str:
            return "ws"

        labeling_images = fetch_image = save_labeling_state = labeling_scope
        load_labeling_state = list_labeling_states = labeling_scope

    from detectkit.labeling import Labeling

    with pytest.raises(InvalidInputError, match=r"ml_assist\.compute: expected the GPU"):
        Labeling(Remote(), cache=tmp_path).create("x", tmp_path, classes=["a"], ml_assist=True)
