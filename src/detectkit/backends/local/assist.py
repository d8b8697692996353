"""The local backend's labeling trainer: a background process that trains on the human labels
of a labeling project and pre-labels the images nobody has touched.

:func:`start_assistant` starts ``python -m detectkit.backends.local.assist ROOT FOLDER`` in its
own session and returns its pid; :func:`main` is that process:

1. lowers its CPU priority (``os.nice(10)``, one torch thread) so the page stays responsive,
   and takes the lock (``assistant.lock``; one trainer per project, a dead pid's lock is taken
   over);
2. exports the human labels (labeled and reviewed images) as two data assets, a seeded 80/20
   split (``<project>-assist-train``, ``<project>-assist-val``), and trains one trial of
   :attr:`~detectkit.labeling.assist.MLAssist.model` with ``project.train`` within the time
   budget (its own run, ``assist-<project>-<time>``, tagged ``detectkit.labeling=<project>``),
   from the last finished run's best trial when ``warm_start`` is on and the classes are the
   same (:func:`~detectkit.labeling.assist.training_parameters`);
3. scores the validation images and the untouched images with the run's best trial; with
   ``min_score="auto"`` the threshold is calibrated on the validation images (never trained
   on), else it is the number given;
4. saves the drafts (``model_version`` = the run's name) into the store, one atomic save per
   image based on the revision it read, only on images still untouched: an image a person
   saved meanwhile is skipped.

Its state goes to ``assistant.json`` at every step (see :mod:`detectkit.labeling.assist`). A
killed trainer loses nothing: it holds no label, its run reads ``Failed`` (the owner tags of
:mod:`detectkit.backends.local.owner`), and the next start takes its lock over.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

from detectkit.backends.local.models import DEFAULT_MODEL
from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.labeling.assist import (
    LOG_FILE,
    STATUS_FILE,
    AssistantStatus,
    MLAssist,
    acquire_lock,
    choose_threshold,
    release_lock,
    save_drafts,
    training_parameters,
    untouched,
    write_status,
)
from detectkit.labeling.files import utc_now
from detectkit.labeling.store import LabelingStore
from detectkit.project import Project
from detectkit.records import RunStatus

__all__ = ["EXPERIMENT", "LABELING_TAG", "main", "start_assistant", "train_and_prelabel"]

#: The MLflow experiment the trainer's runs go to.
EXPERIMENT = "detectkit-labeling"
#: The tag naming the labeling project on the trainer's runs.
LABELING_TAG = "detectkit.labeling"


def start_assistant(root: Path, folder: Path) -> int:
    """Start the trainer for the labeling project in ``folder`` (a project under ``root``) in
    the background; returns its process id (its output goes to ``assistant.log``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.setdefault("MPLBACKEND", "Agg")
    with (folder / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detectkit.backends.local.assist", str(root), str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in the page's terminal does not reach it
        )
    # reap it when it ends, so a finished trainer is not left a zombie of the page
    threading.Thread(target=proc.wait, name="detectkit-assistant-reaper", daemon=True).start()
    return proc.pid


def main(argv: list[str] | None = None) -> int:
    """The trainer process: ``ROOT FOLDER``; exit status 0 when ready, 1 when it failed."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m detectkit.backends.local.assist ROOT FOLDER", file=sys.stderr)
        return 2
    root, folder = Path(args[0]), Path(args[1])
    with suppress(OSError):  # a platform without nice runs at normal priority
        os.nice(10)
    acquire_lock(folder)
    try:
        project = Project.local(root)
        labeling = project.labeling.get(folder.name)
        settings = MLAssist.of(labeling.store) or MLAssist()
        try:
            train_and_prelabel(project, labeling.store, settings)
        except Exception as exc:
            previous = _status(folder)
            update: dict[str, object] = {
                "state": "failed",
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "finished": utc_now(),
                "pid": None,
            }
            if previous.state == "training":  # the next try starts from ImageNet weights
                update.update(trial=None, classes=None)
            write_status(folder, previous.model_copy(update=update))
            print(f"trainer failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        release_lock(folder)


def train_and_prelabel(project: Project, store: LabelingStore, settings: MLAssist) -> None:
    """Train on the human labels of ``store`` and pre-labels its untouched images (the steps
    of the module docstring), writing the state as it goes."""
    import torch

    torch.set_num_threads(1)
    folder = store.folder
    humans = store.to_dataset()  # labeled and reviewed images, human boxes only
    run_name = f"assist-{store.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    previous = _status(folder)
    parameters = training_parameters(settings, previous, tuple(humans.classes))
    status = AssistantStatus(
        state="training",
        run=run_name,
        labeled=len(humans),
        started=utc_now(),
        pid=os.getpid(),
        # the model behind the current drafts; a warm start that fails forgets it (main)
        trial=previous.trial,
        classes=previous.classes,
    )
    write_status(folder, status)
    train, val, _ = humans.split(0.2, seed=0)
    if len(val) == 0 and len(train) > 1:  # too few images for 20%: keep one aside
        train, val = (
            LabeledDataset(train.records[1:], train.classes, root=train.root),
            LabeledDataset(train.records[:1], train.classes, root=train.root),
        )
    described = f"human labels of labeling project {store.name} ({run_name})"
    train_asset = project.datasets.create(
        f"{store.name}-assist-train", train, description=described
    )
    val_asset = project.datasets.create(f"{store.name}-assist-val", val, description=described)
    run = project.train(
        train_asset,
        validation_data=val_asset,
        models=[settings.model or DEFAULT_MODEL],
        limits={"max_trials": 1, "timeout_minutes": settings.time_budget_minutes},
        training_parameters=parameters,
        experiment=EXPERIMENT,
        name=run_name,
        description=f"trained by the labeling assistant of {store.name}",
        tags={LABELING_TAG: store.name},
    )
    if run.status is not RunStatus.COMPLETED:
        raise RuntimeError(f"run {run.name} ended {run.status.value}: {run.info.error}")
    metric = run.metrics.get("mean_average_precision")
    best = run.best_trial
    status = status.model_copy(
        update={
            "state": "prelabeling",
            "run": run.name,
            "map": metric,
            "trial": best.name if best is not None else None,
            "classes": tuple(humans.classes),
        }
    )
    write_status(folder, status)

    store.reload()  # the page saved images while it trained: score only those still untouched
    targets = untouched(store)
    records = [r.model_copy(update={"objects": ()}) for r in val.records]  # raw drafts
    for image in targets:
        width, height = store.image_size(image)
        records.append(ImageRecord(image=str(store.image_file(image)), width=width, height=height))
    scored = project.prelabel(
        run, LabeledDataset(records, store.classes), min_score=0.0, processes=1
    ).dataset.records
    threshold = choose_threshold(settings, val, scored[: len(val)])
    drafted = 0
    for image, record in zip(targets, scored[len(val) :], strict=True):
        drafts = tuple(
            o
            for o in record.objects
            if o.source == "model" and o.score is not None and o.score >= threshold
        )
        drafted += save_drafts(store, image, drafts)
    write_status(
        folder,
        status.model_copy(
            update={
                "state": "ready",
                "drafted": drafted,
                "threshold": threshold,
                "finished": utc_now(),
                "pid": None,
                "error": None,
            }
        ),
    )


def _status(folder: Path) -> AssistantStatus:
    path = folder / STATUS_FILE
    try:
        return AssistantStatus.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return AssistantStatus()


if __name__ == "__main__":  # pragma: no cover - run as a process
    sys.exit(main())
