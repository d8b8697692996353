"""ML assistance in a labeling project: a model that learns while people label.

With ML assistance on (``project.labeling.create(..., ml_assist=True)``, ``detectkit label DATA
--ml-assist``), once :attr:`MLAssist.min_labeled` images are labeled by people the page starts
a trainer in the background (the backend's ``start_assistant``: the local backend's is a process,
:mod:`detectkit.backends.local.assist`, at low CPU priority; the Azure backend's a thread that
waits for AutoML and an online endpoint, :mod:`detectkit.backends.azure.assist`). It trains a
model on the human labels with ``project.train`` (its own run, tagged
``detectkit.labeling=<project>``) and pre-labels the images nobody has touched. It trains
again every :attr:`MLAssist.retrain_every` new labels.

Files in the labeling folder (next to ``project.json``, which holds the settings under
``info.ml_assist``)::

    assistant.json   the trainer's state (:class:`AssistantStatus`), replaced atomically
    assistant.lock   {"pid": ...} while a trainer runs (a dead pid's lock is taken over)
    assistant.log    the trainer's output

The trainer holds no label state: it saves drafts through the store like the page does (an
atomic write per image, based on the image's revision), and only on images no person has
touched, so killing the page or the trainer loses no label.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import ConflictError, InvalidInputError, OperationTimeoutError
from detectkit.labeling.files import utc_now, write_atomic
from detectkit.labeling.labels import is_draft
from detectkit.labeling.records import ImageState
from detectkit.labeling.store import LabelingStore, StaleRevisionError
from detectkit.prelabel import calibrate

__all__ = [
    "LOCK_FILE",
    "LOG_FILE",
    "SETTINGS_KEY",
    "STATUS_FILE",
    "Assistant",
    "AssistantStatus",
    "MLAssist",
    "acquire_lock",
    "check_backend",
    "choose_threshold",
    "human_labeled",
    "lock_holder",
    "pid_alive",
    "read_status",
    "release_lock",
    "save_drafts",
    "training_parameters",
    "untouched",
    "write_status",
]

STATUS_FILE = "assistant.json"
LOCK_FILE = "assistant.lock"
LOG_FILE = "assistant.log"
#: Where the settings live in ``project.json`` (under ``info``).
SETTINGS_KEY = "ml_assist"
#: What the page shows for a trainer whose process is gone while it said it was working.
GONE_MESSAGE = "the trainer stopped before it finished (its process is gone)"


class MLAssist(BaseModel):
    """How the background model of a labeling project trains and pre-labels.

    Attributes:
        min_labeled: Human-labeled images (labeled or reviewed) before the first training.
        retrain_every: New human-labeled images after which it trains again.
        time_budget_minutes: The training run's time limit (``timeout_minutes``).
        model: The model to train; default: the backend's (local: ``ssdlite_mobilenet_v2``,
            one of ``detectkit.LOCAL_MODELS``; Azure: AutoML's ``yolov5``).
        min_score: Drafts are kept at this score or above; ``"auto"`` calibrates the threshold
            on the held-out human-labeled images (the run's validation images) for
            ``target_precision``, falling back to ``fallback_score`` when none reaches it.
        target_precision: The precision ``"auto"`` aims for.
        fallback_score: The threshold when ``"auto"`` cannot reach ``target_precision``.
        training_parameters: Passed to ``project.train`` (for example a few epochs, or a small
            image size); default: the model's defaults.
        warm_start: Each training after the first starts from the model of the last finished
            one (``checkpoint_run_id`` = its best trial) instead of from ImageNet weights, while
            the class list is unchanged: in the labeling benchmark this raised test mAP@0.5 at
            100 labeled images from 0.43-0.52 to 0.65-0.80 for the same CPU time.
        compute: Azure: the GPU compute cluster AutoML trains on (required there); ignored
            locally.
        endpoint: Azure: the online endpoint the model is deployed to for pre-labeling
            (default: ``lab-<project>-<hash>``, kept across trainings).
        instance_type: Azure: the endpoint's VM size (default: ``project.deploy``'s,
            ``Standard_DS3_v2``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_labeled: int = Field(default=20, ge=2)
    retrain_every: int = Field(default=20, ge=1)
    time_budget_minutes: int = Field(default=5, ge=1, le=240)
    model: str | None = None
    min_score: float | Literal["auto"] = "auto"
    target_precision: float = Field(default=0.9, gt=0.0, le=1.0)
    fallback_score: float = Field(default=0.5, ge=0.0, le=1.0)
    training_parameters: dict[str, Any] | None = None
    warm_start: bool = True
    compute: str | None = None
    endpoint: str | None = None
    instance_type: str | None = None

    @classmethod
    def build(cls, value: bool | MLAssist | Mapping[str, Any] | None) -> MLAssist | None:
        """The settings from ``ml_assist=`` (``True``: the defaults; ``False``/``None``: off).

        Raises:
            InvalidInputError: A field out of range (named, with what was given).
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, MLAssist):
            return value
        if isinstance(value, Mapping):
            try:
                return cls.model_validate(dict(value))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise InvalidInputError(
                    f"ml_assist.{where}: {first['msg']} (got {first.get('input')!r}); see "
                    "detectkit.labeling.assist.MLAssist for the fields and their defaults"
                ) from exc
        raise InvalidInputError(
            f"ml_assist: expected True, False, an MLAssist or a mapping, got {type(value).__name__}"
        )

    @classmethod
    def of(cls, store: LabelingStore) -> MLAssist | None:
        """The settings saved in the project (``None``: ML assistance is off)."""
        raw = store.info.get(SETTINGS_KEY)
        if not isinstance(raw, dict):
            return None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise InvalidInputError(
                f"{store.folder}/project.json: info.{SETTINGS_KEY} is not valid ({exc})"
            ) from exc


class AssistantStatus(BaseModel):
    """The trainer's state, as ``assistant.json`` holds it and ``/api/assistant`` answers.

    Attributes:
        state: ``idle`` (never ran), ``training``, ``prelabeling``, ``ready`` or ``failed``.
        run: The training run's name (also the drafts' ``model_version``).
        map: The run's validation mean average precision.
        labeled: Human-labeled images it trained on (validation included).
        drafted: Images it gave drafts to.
        threshold: The score threshold the drafts were kept at.
        started: When the latest training started (UTC, ISO 8601).
        finished: When it last finished (ready or failed).
        error: Why it failed.
        pid: The trainer's process id while it runs.
        trial: The best trial of the last finished run (the model behind the drafts; with
            ``warm_start`` the next training starts from it).
        classes: The class list that trial was trained on.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: Literal["idle", "training", "prelabeling", "ready", "failed"] = "idle"
    run: str | None = None
    map: float | None = None
    labeled: int = 0
    drafted: int = 0
    threshold: float | None = None
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    pid: int | None = None
    trial: str | None = None
    classes: tuple[str, ...] | None = None

    @property
    def working(self) -> bool:
        """Whether it says it is training or pre-labeling."""
        return self.state in ("training", "prelabeling")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, finished but not reaped, does not)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = ""
    if stat:
        fields = stat.rsplit(")", 1)[-1].split()
        return not (fields and fields[0] in ("Z", "X"))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(folder: Path) -> AssistantStatus:
    """The trainer's state in ``folder``; a trainer that said it was working but whose process
    is gone reads ``failed``."""
    path = folder / STATUS_FILE
    try:
        status = AssistantStatus.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return AssistantStatus()
    except ValidationError as exc:
        return AssistantStatus(state="failed", error=f"{path}: not readable ({exc})")
    if status.working and (status.pid is None or not pid_alive(status.pid)):
        return status.model_copy(update={"state": "failed", "error": GONE_MESSAGE, "pid": None})
    return status


def write_status(folder: Path, status: AssistantStatus) -> None:
    """Replace ``assistant.json`` atomically."""
    write_atomic(folder / STATUS_FILE, status.model_dump_json(indent=1).encode("utf-8"))


def lock_holder(folder: Path) -> int | None:
    """The pid of the live trainer holding the lock, or ``None`` (no lock, or a stale one)."""
    try:
        data = json.loads((folder / LOCK_FILE).read_text(encoding="utf-8"))
        pid = int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid_alive(pid) else None


def acquire_lock(folder: Path, pid: int | None = None) -> None:
    """Take the trainer lock for ``pid`` (default: this process); a lock whose process is gone
    is taken over.

    Raises:
        ConflictError: A live trainer holds it.
    """
    me = os.getpid() if pid is None else pid
    path = folder / LOCK_FILE
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            holder = lock_holder(folder)
            if holder is not None and holder != me:
                raise ConflictError(
                    f"{path}: a trainer (process {holder}) is running for this project; wait "
                    "for it (assistant.json says how far it is) or stop that process"
                ) from None
            with suppress(FileNotFoundError):
                os.unlink(path)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"pid": me, "since": utc_now()}, fh)
        return
    raise ConflictError(f"{path}: could not take the trainer lock (another trainer took it)")


def release_lock(folder: Path) -> None:
    """Remove the lock if this process holds it."""
    path = folder / LOCK_FILE
    with suppress(OSError, ValueError, KeyError, TypeError):
        if int(json.loads(path.read_text(encoding="utf-8"))["pid"]) == os.getpid():
            path.unlink()


def human_labeled(store: LabelingStore) -> int:
    """Images a person labeled or reviewed (what the model can learn from)."""
    p = store.progress()
    return p.labeled + p.reviewed


class Assistant:
    """The background model of one labeling project: its settings, state, and when to train.

    ``project.assistant`` on a :class:`~detectkit.labeling.LabelingProject` with ML assistance
    on; the page server calls :meth:`maybe_start` after every save and :meth:`poll` when the page
    asks for the state.

    Args:
        store: The project's store.
        settings: The saved settings.
        starter: The backend's ``start_assistant(folder) -> pid``.
    """

    def __init__(
        self,
        store: LabelingStore,
        settings: MLAssist,
        starter: Callable[[Path], int],
    ) -> None:
        self.store = store
        self.settings = settings
        self._starter = starter
        self._seen: str | None = read_status(store.folder).finished
        self._started_at: int | None = None
        self._starting = threading.RLock()

    def __repr__(self) -> str:
        s = self.status()
        shown = f", map={s.map:.3f}" if s.map is not None else ""
        return f"Assistant(project={self.store.name!r}, state={s.state!r}, run={s.run!r}{shown})"

    def status(self) -> AssistantStatus:
        """The trainer's state now."""
        return read_status(self.store.folder)

    @property
    def running(self) -> bool:
        """Whether a trainer process holds the lock."""
        return lock_holder(self.store.folder) is not None

    def due(self) -> bool:
        """Whether enough new human labels exist for a (first or next) training."""
        n = human_labeled(self.store)
        if n < self.settings.min_labeled or self.running:
            return False
        status = self.status()
        if status.state == "idle":
            return True
        trained_on = self._started_at if self._started_at is not None else status.labeled
        if status.state == "failed":
            return n > trained_on  # try again once something changed
        return n - trained_on >= self.settings.retrain_every

    def start(self) -> int:
        """Start a trainer now (whatever the label count); returns its process id.

        Raises:
            ConflictError: A trainer is running.
            InvalidInputError: No image is labeled by a person yet.
        """
        holder = lock_holder(self.store.folder)
        if holder is not None:
            raise ConflictError(
                f"labeling project {self.store.name!r}: a trainer (process {holder}) is running; "
                "wait for it (project.assistant.status())"
            )
        n = human_labeled(self.store)
        if n < 2:
            raise InvalidInputError(
                f"labeling project {self.store.name!r}: {n} image(s) labeled by a person; label "
                "at least 2 before a model can train"
            )
        with self._starting:
            self._started_at = n
            pid = self._starter(self.store.folder)
            if pid != os.getpid():  # a trainer thread of this process holds the lock itself
                acquire_lock(self.store.folder, pid=pid)  # held for it until it takes it
            return pid

    def maybe_start(self) -> int | None:
        """Start a trainer if one is due (:meth:`due`); returns its pid, else ``None``."""
        with self._starting:
            if not self.due():
                return None
            try:
                return self.start()
            except ConflictError:
                return None

    def poll(self) -> AssistantStatus:
        """The state; when a training finished since the last poll, the store is read again
        (the trainer saved drafts from its own process)."""
        status = self.status()
        if status.finished is not None and status.finished != self._seen:
            self._seen = status.finished
            self.store.reload()
        return status

    def wait(self, timeout: float = 600.0, poll_interval: float = 0.5) -> AssistantStatus:
        """Block until no trainer runs; returns the state (the store is read again).

        Raises:
            OperationTimeoutError: Still running after ``timeout`` seconds.
        """
        end = time.monotonic() + timeout
        time.sleep(min(poll_interval, 0.2))
        while self.running or self.status().working:
            if time.monotonic() > end:
                raise OperationTimeoutError(
                    f"labeling project {self.store.name!r}: the trainer still runs after "
                    f"{timeout:.0f} s (see {self.store.folder / LOG_FILE})"
                )
            time.sleep(poll_interval)
        return self.poll()


def training_parameters(
    settings: MLAssist, previous: AssistantStatus, classes: tuple[str, ...]
) -> dict[str, Any] | None:
    """The ``training_parameters`` of the next training: the settings' own, plus
    ``checkpoint_run_id`` (the last finished run's best trial) when ``warm_start`` is on and
    that model was trained on the same class list."""
    params = dict(settings.training_parameters or {})
    if (
        settings.warm_start
        and previous.trial is not None
        and previous.classes == tuple(classes)
        and "checkpoint_run_id" not in params
    ):
        params["checkpoint_run_id"] = previous.trial
    return params or None


def untouched(store: LabelingStore) -> list[str]:
    """Ids of the images no person has touched: unlabeled, or holding only drafts."""
    return [
        e.id
        for e in store.entries
        if store.state(e.id) in (ImageState.UNLABELED, ImageState.PRELABELED)
    ]


def check_backend(settings: MLAssist, kind: str) -> None:
    """Check that the backend ``kind`` (``"local"``, ``"azure"``) can run ``settings``.

    Raises:
        InvalidInputError: On Azure, no ``compute`` (AutoML trains on a compute cluster).
    """
    if kind == "azure" and not settings.compute:
        raise InvalidInputError(
            "ml_assist.compute: expected the GPU compute cluster AutoML trains on (the Azure "
            "backend trains there), got none; pass ml_assist={'compute': 'gpu-cluster'} "
            "(create one in Azure ML studio > Compute > Compute clusters)"
        )


def choose_threshold(
    settings: MLAssist, val: LabeledDataset, scored: Sequence[ImageRecord]
) -> float:
    """The drafts' score threshold: ``min_score``, or with ``"auto"`` the lowest threshold
    reaching ``target_precision`` on the validation images ``val`` (human boxes), scored as
    ``scored`` (the same images, in order, with the model's boxes); ``fallback_score`` when
    no threshold reaches it or no validation image has a box."""
    if settings.min_score != "auto":
        return float(settings.min_score)
    humans = [[o for o in r.objects if not o.is_crowd] for r in val.records]
    drafts = [[o for o in r.objects if o.source == "model"] for r in scored]
    keep = [k for k, h in enumerate(humans) if h]
    if not keep:
        return settings.fallback_score
    found = calibrate(
        [drafts[k] for k in keep],
        [humans[k] for k in keep],
        target_precision=settings.target_precision,
    )
    return found.threshold if found.threshold is not None else settings.fallback_score


def save_drafts(store: LabelingStore, image: str, drafts: tuple[ObjectAnnotation, ...]) -> int:
    """Replace an untouched image's drafts; returns 1 when saved with drafts (0: a person
    touched it meanwhile, or there is nothing to change)."""
    current = store.labels(image)
    if current.state not in (ImageState.UNLABELED, ImageState.PRELABELED):
        return 0
    if any(not is_draft(o) for o in current.objects):
        return 0
    if not drafts and not current.objects:
        return 0
    try:
        store.save(
            image,
            revision=current.revision,
            state=ImageState.PRELABELED,
            objects=drafts,
        )
    except StaleRevisionError:  # the page saved it between the read and the write
        return 0
    return 1 if drafts else 0
