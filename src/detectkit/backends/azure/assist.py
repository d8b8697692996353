"""The Azure backend's labeling trainer: AutoML trains on the human labels of a labeling project,
and the model, deployed to an online endpoint, pre-labels the images nobody has touched.

:func:`start_assistant` takes the lock (``assistant.lock``, one trainer per project) and runs
:func:`train_and_prelabel` in a background **thread** of this process: AutoML trains remotely,
so the thread only sends requests and waits, with the backend's own credential and transport
(a subprocess would have neither). It returns this process's id. The steps, as on the local
backend (:mod:`detectkit.backends.local.assist`):

1. exports the human labels (labeled and reviewed images, by their ``azureml://`` URLs: no
   image is uploaded again) as two data assets, a seeded 80/20 split
   (``<project>-assist-train``, ``<project>-assist-val``), and submits one AutoML trial of
   :attr:`~detectkit.labeling.assist.MLAssist.model` (default ``yolov5``) on
   :attr:`~detectkit.labeling.assist.MLAssist.compute` within the time budget
   (``assist-<project>-<time>``, tagged ``detectkit.labeling=<project>``; with ``warm_start``
   from the last run's best trial, ``checkpoint_run_id``), then waits for it;
2. registers its best trial as the model ``<project>-assist`` and deploys it to the online
   endpoint :attr:`~detectkit.labeling.assist.MLAssist.endpoint` (default
   :func:`default_endpoint`), deployment ``assist``, 100% of the traffic (an existing endpoint
   and deployment are updated);
3. scores the validation images and the untouched images through the endpoint (each image
   fetched into the project's cache first); with ``min_score="auto"`` the threshold is
   calibrated on the validation images, never trained on;
4. saves the drafts (``model_version`` = the run's name) on the images still untouched, then
   stores the labeling state in the workspace (as ``project.sync()`` does).

Its state goes to ``assistant.json`` at every step, and a line per step to ``assistant.log``.
Whatever fails, the thread writes ``failed`` with the error and releases the lock (the page's
process stays alive, so its pid never reads gone). The endpoint is kept between trainings;
delete it with ``project.endpoints.get(name).delete()`` when labeling is done.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import traceback
from pathlib import Path

from detectkit.backends.base import Backend
from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.errors import ConflictError, DetectkitError, InvalidInputError
from detectkit.labeling.assist import (
    LOG_FILE,
    STATUS_FILE,
    AssistantStatus,
    MLAssist,
    acquire_lock,
    check_backend,
    choose_threshold,
    lock_holder,
    release_lock,
    save_drafts,
    training_parameters,
    untouched,
    write_status,
)
from detectkit.labeling.files import utc_now
from detectkit.labeling.remote import RemoteLabelingBackend, open_cached, remote_backend, sync_state
from detectkit.labeling.store import LabelingStore
from detectkit.prelabel import drafts_of
from detectkit.project import Project

__all__ = [
    "DEFAULT_MODEL",
    "DEPLOYMENT",
    "EXPERIMENT",
    "LABELING_TAG",
    "POLL_SECONDS",
    "WAIT_MARGIN_MINUTES",
    "default_endpoint",
    "start_assistant",
    "train_and_prelabel",
]

#: The AutoML model trained when the settings name none.
DEFAULT_MODEL = "yolov5"
#: The experiment the trainer's jobs go to.
EXPERIMENT = "detectkit-labeling"
#: The tag naming the labeling project on the trainer's jobs.
LABELING_TAG = "detectkit.labeling"
#: The endpoint's deployment the model goes to (updated in place by the next training).
DEPLOYMENT = "assist"
#: Seconds between two looks at the AutoML job.
POLL_SECONDS = 30.0
#: Minutes the trainer waits for the job beyond its time budget (queueing, compute start-up).
WAIT_MARGIN_MINUTES = 60

logger = logging.getLogger("detectkit.azure")
_starting = threading.Lock()


def default_endpoint(project: str, scope: str) -> str:
    """The endpoint a labeling project's model is deployed to when the settings name none:
    ``lab-<project>-<hash of scope/project>``, a valid endpoint name (3-32 characters, unique
    per workspace and project).

    >>> default_endpoint("cards", "ws")
    'lab-cards-6d575d'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-")[:21].strip("-")
    digest = hashlib.sha256(f"{scope}/{project}".encode()).hexdigest()[:6]
    return f"lab-{slug}-{digest}" if slug else f"lab-{digest}"


def start_assistant(backend: Backend, folder: Path) -> int:
    """Start the trainer of the labeling project whose store is ``folder`` (in the cache) in a
    background thread; returns this process's id (the thread holds the lock).

    Raises:
        ConflictError: A trainer already runs for this project.
        InvalidInputError: ``backend`` keeps no remote labeling state.
    """
    folder = Path(folder)
    remote = remote_backend(backend)
    if remote is None:
        raise InvalidInputError(
            f"{type(backend).__name__}: not a backend with remote labeling projects; the Azure "
            "trainer runs for Project.azure(...) labeling projects"
        )
    with _starting:
        holder = lock_holder(folder)
        if holder is not None:
            raise ConflictError(
                f"{folder / 'assistant.lock'}: a trainer (process {holder}) is running for "
                "this project; wait for it (project.assistant.wait())"
            )
        acquire_lock(folder)
        try:
            thread = threading.Thread(
                target=_run,
                args=(backend, remote, folder),
                name=f"detectkit-assistant-{folder.parent.name}",
                daemon=True,  # the AutoML job goes on if the page stops; the lock is freed
            )
            thread.start()
        except BaseException:
            release_lock(folder)
            raise
    return os.getpid()


def _run(backend: Backend, remote: RemoteLabelingBackend, folder: Path) -> None:
    """The thread: the steps, then ``failed`` with the error if anything raised; the lock is
    released in any case."""
    try:
        store = open_cached(remote, folder)
        settings = MLAssist.of(store) or MLAssist()
        train_and_prelabel(Project(backend), remote, store, settings)
    except BaseException as exc:
        _fail(folder, exc)
        if not isinstance(exc, Exception):
            raise
    finally:
        release_lock(folder)


def train_and_prelabel(
    project: Project, remote: RemoteLabelingBackend, store: LabelingStore, settings: MLAssist
) -> None:
    """Train on the human labels of ``store`` with AutoML, deploy, and pre-label its untouched
    images through the endpoint (the steps of the module docstring), writing the state as it
    goes.

    Raises:
        InvalidInputError: No ``compute`` in the settings.
        RunFailedError: The AutoML job failed (its error is in the message).
        OperationTimeoutError: The job still runs long after its time budget.
    """
    check_backend(settings, "azure")
    folder = store.folder
    humans = store.to_dataset(original_refs=True)  # human boxes, by their azureml:// URLs
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", store.name)
    run_name = f"assist-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    previous = _status(folder)
    status = AssistantStatus(
        state="training",
        run=run_name,
        labeled=len(humans),
        started=utc_now(),
        pid=os.getpid(),
        trial=previous.trial,  # the model behind the current drafts
        classes=previous.classes,
    )
    write_status(folder, status)
    _log(folder, f"training {run_name} on {len(humans)} images ({settings.compute})")
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
        compute=settings.compute,
        models=[settings.model or DEFAULT_MODEL],
        limits={"max_trials": 1, "timeout_minutes": settings.time_budget_minutes},
        training_parameters=training_parameters(settings, previous, tuple(humans.classes)),
        experiment=EXPERIMENT,
        name=run_name,
        description=f"trained by the labeling assistant of {store.name}",
        tags={LABELING_TAG: store.name},
    )
    wait = (settings.time_budget_minutes + WAIT_MARGIN_MINUTES) * 60.0
    run.wait(timeout=wait, progress=False, poll_interval=POLL_SECONDS)
    metric: float | None = None
    trial: str | None = None
    try:  # the job's MLflow side; the drafts do not need it
        metric = run.metrics.get("mean_average_precision")
        best = run.best_trial
        trial = best.name if best is not None else None
    except DetectkitError as exc:
        _log(folder, f"no metrics for {run.name}: {exc}")
    status = status.model_copy(
        update={
            "state": "prelabeling",
            "run": run.name,
            "map": metric,
            "trial": trial,
            "classes": tuple(humans.classes),
        }
    )
    write_status(folder, status)
    model = project.models.register(
        run, f"{store.name}-assist", description=f"labeling assistant of {store.name}"
    )
    name = settings.endpoint or default_endpoint(store.name, remote.labeling_scope())
    _log(folder, f"deploying {model.name}:{model.version} to {name}/{DEPLOYMENT}")
    endpoint = project.deploy(
        model, name, deployment=DEPLOYMENT, instance_type=settings.instance_type
    )

    by_ref = {e.ref: e.id for e in store.entries if e.ref}
    store.reload()  # what people saved while the job ran (hours, maybe) counts
    targets = untouched(store)
    images = [by_ref[r.image] for r in val.records] + targets
    paths = [str(store.image_file(image)) for image in images]  # fetched into the cache
    predictions = endpoint.predict(paths, deployment=DEPLOYMENT) if paths else []
    known = set(store.classes)
    drafts = [tuple(o for o in drafts_of(p, run.name) if o.label in known) for p in predictions]
    scored = [ImageRecord(image=paths[k], objects=drafts[k]) for k in range(len(val))]
    threshold = choose_threshold(settings, val, scored)
    drafted = 0
    for image, found in zip(targets, drafts[len(val) :], strict=True):
        kept = tuple(o for o in found if o.score is not None and o.score >= threshold)
        drafted += save_drafts(store, image, kept)
    store.reload()  # the page's saves meanwhile join the state stored in the workspace
    version = sync_state(remote, store)
    _log(folder, f"ready: {drafted} images drafted at {threshold:.3f}; state version {version}")
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


def _fail(folder: Path, exc: BaseException) -> None:
    previous = _status(folder)
    update: dict[str, object] = {
        "state": "failed",
        "error": f"{type(exc).__name__}: {exc}"[:2000],
        "finished": utc_now(),
        "pid": None,
    }
    if previous.state == "training":  # the next try starts from the model's own weights
        update.update(trial=None, classes=None)
    try:
        write_status(folder, previous.model_copy(update=update))
        _log(folder, "trainer failed:\n" + "".join(traceback.format_exception(exc)))
    except OSError:  # the folder is gone (the project was deleted): nothing to tell
        logger.warning("labeling trainer in %s failed: %s", folder, exc)


def _status(folder: Path) -> AssistantStatus:
    try:
        return AssistantStatus.model_validate_json((folder / STATUS_FILE).read_bytes())
    except (OSError, ValueError):
        return AssistantStatus()


def _log(folder: Path, line: str) -> None:
    with (folder / LOG_FILE).open("a", encoding="utf-8") as fh:
        fh.write(f"{utc_now()} {line}\n")
