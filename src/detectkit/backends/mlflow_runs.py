"""What both backends share: the AutoML-shaped run layout in MLflow, and its one error map.

An AutoML object-detection job (and a local sweep, which copies its layout) is a parent run
whose trials are child runs (``tags.mlflow.parentRunId``); the parent carries the best trial's
id in :data:`BEST_CHILD_TAG`; each trial logs its MLflow model under :data:`MODEL_ARTIFACT` and
its class list at :data:`LABELS_ARTIFACT`. These names are on disk and in the workspace: they
never change.

Nothing here imports MLflow: the functions take the client or run objects the caller made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from detectkit.errors import ConflictError, DetectkitError, InvalidInputError, NotFoundError
from detectkit.records import RunStatus, Trial

__all__ = [
    "BEST_CHILD_TAG",
    "LABELS_ARTIFACT",
    "LABELS_FOLDER",
    "MODEL_ARTIFACT",
    "child_runs",
    "is_sweep_parent",
    "mlflow_error",
    "param_value",
    "quiet_mlflow",
    "trial_from_run",
    "version_key",
]

#: Tag on the parent run naming its best trial (set by AutoML, and by the local sweep).
BEST_CHILD_TAG = "automl_best_child_run_id"
#: Artifact path of a trial's MLflow model.
MODEL_ARTIFACT = "outputs/mlflow-model"
#: Artifact folder of a trial's training files, and the class list inside it.
LABELS_FOLDER = "train_artifacts"
LABELS_ARTIFACT = f"{LABELS_FOLDER}/labels.json"


def version_key(version: Any) -> tuple[int, int, str]:
    """Sort key for asset and model versions: numbers in numeric order, after any names."""
    text = str(version)
    return (1, int(text), "") if text.isdigit() else (0, 0, text)


def child_runs(client: Any, experiment: str, parent_id: str) -> list[Any]:
    """The child runs (trials) of ``parent_id`` in ``experiment``."""
    return list(
        client.search_runs(
            [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000
        )
    )


def is_sweep_parent(run: Any) -> bool:
    """The ``<job>_HD`` HyperDrive run that sits between an AutoML job and its trials."""
    names = (run.info.run_id, run.info.run_name or "", run.data.tags.get("mlflow.runName", ""))
    return any(n.endswith("_HD") for n in names)


def trial_from_run(run: Any, best: str | None) -> Trial:
    """A :class:`~detectkit.records.Trial` from an MLflow child run."""
    return Trial(
        name=run.info.run_id,
        status=RunStatus.parse(run.info.status),
        hyperparameters={k: param_value(v) for k, v in run.data.params.items()},
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        is_best=run.info.run_id == best,
    )


def param_value(text: str) -> Any:
    """An MLflow parameter (always a string) as int, float, bool or string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def mlflow_error(exc: Exception, what: str) -> DetectkitError:
    """The detectkit error for an MLflow exception about ``what`` (one map for both backends).

    The error code decides: ``RESOURCE_DOES_NOT_EXIST`` (or, with no code, a "not found"
    message) is :class:`NotFoundError`,
    ``RESOURCE_ALREADY_EXISTS`` :class:`ConflictError`, ``INVALID_PARAMETER_VALUE``
    :class:`InvalidInputError`; anything else a :class:`DetectkitError` naming the code.
    """
    code = str(getattr(exc, "error_code", "") or "")
    message = str(getattr(exc, "message", exc)).splitlines()[0][:500] if str(exc) else ""
    if code == "RESOURCE_DOES_NOT_EXIST" or (not code and "not found" in message.lower()):
        return NotFoundError(f"{what} was not found in MLflow ({message}); check the name")
    if code == "RESOURCE_ALREADY_EXISTS":
        return ConflictError(f"{what}: already exists in MLflow ({message})")
    if code == "INVALID_PARAMETER_VALUE":
        return InvalidInputError(f"{what}: MLflow refused a value ({message})")
    return DetectkitError(f"{what}: MLflow error {code or type(exc).__name__}: {message}")


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Hide MLflow's progress bars, info logs and advice warnings for the duration (the
    caller reports what happened); an explicit ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` wins."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    had = key in os.environ
    logger = logging.getLogger("mlflow")
    level = logger.level
    if not had:
        os.environ[key] = "false"
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow\..*")
            yield
    finally:
        logger.setLevel(level)
        if not had:
            os.environ.pop(key, None)
