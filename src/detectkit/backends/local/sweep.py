"""Local sweeps: a :class:`~detectkit.settings.TrainingRequest` run as Azure AutoML would,
on this machine.

:func:`run_training` runs one trial, a sweep (random or grid sampling over the search space,
planned by :func:`plan_trials`, with early termination by :func:`termination_reason`) or
AutoMode, each trial an MLflow child run of one parent run. It returns when the last trial
ends; the parent run then carries the tag ``automl_best_child_run_id`` and the best trial's
``mean_average_precision``, ``precision`` and ``recall``. Each trial is fitted by
:func:`detectkit.backends.local.train.fit`.

torch and MLflow are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectkit.backends.local.models import ensure_backbone_weights, import_torch
from detectkit.backends.local.owner import owner_tags
from detectkit.backends.local.train import (
    EpochRecord,
    Terminate,
    TrialConfig,
    TrialResult,
    fit,
    trial_config,
)
from detectkit.backends.mlflow_runs import BEST_CHILD_TAG, LABELS_FOLDER, MODEL_ARTIFACT
from detectkit.errors import InvalidSettingsError, NotFoundError
from detectkit.settings.request import Choice, LogUniform, SearchSpace

if TYPE_CHECKING:
    import numpy as np

    from detectkit.dataset import LabeledDataset
    from detectkit.settings.request import (
        BanditPolicy,
        MedianStoppingPolicy,
        TrainingParameters,
        TrainingRequest,
        TruncationSelectionPolicy,
    )

__all__ = [
    "AUTOMODE_MODELS",
    "plan_trials",
    "run_training",
    "termination_reason",
]

logger = logging.getLogger("detectkit.local")

#: Tag of the parent run naming its best trial, as Azure AutoML sets it.
#: Where a trial's MLflow model is logged, as on Azure (``outputs/mlflow-model``).
#: Models AutoMode tries locally (CPU-friendly first).
AUTOMODE_MODELS = (
    "ssdlite_mobilenet_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "ssdlite320_mobilenet_v3_large",
)


# ====================================================================== trial plans
def plan_trials(request: TrainingRequest, rng: np.random.Generator) -> Iterator[TrainingParameters]:
    """The parameters of each trial, in order (a generator: random sampling draws lazily).

    * one trial: ``request.parameters``;
    * a grid sweep: every combination of every search-space entry, in order, cut at
      ``max_trials``;
    * a random sweep: an entry picked at random, then each distribution sampled, until
      ``max_trials`` (repeated draws are skipped, at most 100 times in a row);
    * AutoMode: a random sweep over :data:`AUTOMODE_MODELS` and the learning rate.

    Raises:
        InvalidSettingsError: Bayesian sampling (the local backend samples at random or on
            a grid).
    """
    limit = request.limits.max_trials
    base = request.parameters
    mode = request.mode
    if mode == "single":
        yield base
        return
    spaces: tuple[SearchSpace, ...]
    if mode == "automode":
        spaces = (
            SearchSpace(
                model_name=Choice(list(AUTOMODE_MODELS)),
                learning_rate=LogUniform(min_value=math.log(0.002), max_value=math.log(0.05)),
            ),
        )
        algorithm = "random"
    else:
        spaces = request.search_spaces
        assert request.sweep is not None
        algorithm = request.sweep.sampling_algorithm
    if algorithm == "bayesian":
        raise InvalidSettingsError(
            "sampling_algorithm: the local backend samples 'random' or 'grid', got 'bayesian'; "
            "use sweep={'sampling_algorithm': 'random'} locally (Azure runs bayesian)"
        )
    if algorithm == "grid":
        count = 0
        for space in spaces:
            for params in space.grid(base):
                if count >= limit:
                    return
                count += 1
                yield params
        return
    seen: set[str] = set()
    misses = 0
    count = 0
    while count < limit and misses < 100:
        space = spaces[int(rng.integers(len(spaces)))]
        params = space.sample(rng, base)
        key = params.model_dump_json(exclude_none=True)
        if key in seen:
            misses += 1
            continue
        misses = 0
        seen.add(key)
        count += 1
        yield params


# ====================================================================== early termination
def _value_at(history: Sequence[tuple[int, float]], epoch: int) -> float | None:
    """The last metric a trial reported at or before ``epoch``."""
    found = None
    for at, value in history:
        if at > epoch:
            break
        found = value
    return found


def termination_reason(
    policy: BanditPolicy | MedianStoppingPolicy | TruncationSelectionPolicy,
    epoch: int,
    current: Sequence[tuple[int, float]],
    previous: Sequence[Sequence[tuple[int, float]]],
) -> str | None:
    """Why the running trial should stop at ``epoch``, or None.

    Trials run one after another, so the running trial is compared with what the earlier
    trials reported at the same epoch (Azure compares concurrent runs at the same interval):

    * bandit: stop when the metric is below ``best / (1 + slack_factor)`` or
      ``best - slack_amount``, ``best`` the highest value earlier trials had at that epoch;
    * median stopping: stop when the trial's best value so far is below the median of the
      earlier trials' running averages up to that epoch;
    * truncation selection: stop when the trial ranks in the lowest
      ``truncation_percentage`` % of all trials at that epoch.

    No policy acts before ``delay_evaluation`` epochs, between ``evaluation_interval``
    epochs, or without an earlier trial to compare with.
    """
    if epoch < max(policy.delay_evaluation, 1) or epoch % policy.evaluation_interval:
        return None
    value = _value_at(current, epoch)
    if value is None:
        return None
    others = [v for v in (_value_at(h, epoch) for h in previous) if v is not None]
    if not others:
        return None
    if policy.type == "bandit":
        best = max(others)
        if policy.slack_factor is not None:
            limit = best / (1.0 + policy.slack_factor)
            rule = f"best {best:.4f} / (1 + slack_factor {policy.slack_factor})"
        else:
            limit = best - float(policy.slack_amount or 0.0)
            rule = f"best {best:.4f} - slack_amount {policy.slack_amount}"
        if value < limit:
            return f"bandit policy at epoch {epoch}: mAP {value:.4f} < {limit:.4f} ({rule})"
        return None
    if policy.type == "median_stopping":
        averages = []
        for h in previous:
            seen = [v for at, v in h if at <= epoch]
            if seen:
                averages.append(sum(seen) / len(seen))
        own = max(v for at, v in current if at <= epoch)
        median = statistics.median(averages)
        if own < median:
            return (
                f"median stopping at epoch {epoch}: best mAP {own:.4f} < median of running "
                f"averages {median:.4f}"
            )
        return None
    everyone = sorted([*others, value])
    cut = math.floor(len(everyone) * policy.truncation_percentage / 100)
    if cut and value < everyone[cut] and value <= everyone[cut - 1]:
        return (
            f"truncation selection at epoch {epoch}: mAP {value:.4f} in the lowest "
            f"{policy.truncation_percentage}% of {len(everyone)} trials"
        )
    return None


# ====================================================================== the sweep
@dataclass
class _SweepState:
    histories: list[list[tuple[int, float]]] = field(default_factory=list)
    best_run: str | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def run_training(
    request: TrainingRequest,
    trials: Sequence[TrainingParameters],
    train_data: LabeledDataset,
    validation_data: LabeledDataset,
    *,
    client: Any,
    experiment_id: str,
    parent_run_id: str,
    device: str | None = None,
    progress: bool | None = None,
) -> str:
    """Run ``trials`` (from :func:`plan_trials`) as child runs of ``parent_run_id``; return
    the final MLflow status of the parent: ``FINISHED``, or ``FAILED`` when no trial finished.

    Trials run one after another (``max_concurrent_trials`` is not used locally). The
    parent's ``timeout_minutes`` stops the sweep: the running trial is evaluated and kept,
    no new trial starts. Each trial gets ``trial_timeout_minutes``, or an equal share of the
    time left when only ``timeout_minutes`` is set. A ``KeyboardInterrupt`` keeps the
    finished trials and the best tag (the interrupted trial is saved and ends ``KILLED``)
    and is raised again.

    Raises:
        InvalidSettingsError: A trial's parameters cannot be honoured (checked for every
            planned grid trial before the first one starts).
        NotFoundError: Pretrained weights are needed and cannot be fetched.
    """
    torch = import_torch()
    start = time.monotonic()
    limits = request.limits
    deadline = None if limits.timeout_minutes is None else start + 60.0 * limits.timeout_minutes
    policy = request.sweep.early_termination if request.sweep is not None else None
    state = _SweepState()
    show = sys.stderr.isatty() if progress is None else progress
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    client.set_tag(parent_run_id, "detectkit.device", dev)
    interrupted = False
    for index, params in enumerate(trials):
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            client.set_tag(parent_run_id, "detectkit.stopped", "timeout")
            break
        config = trial_config(params, checkpoint=_checkpoint_path(client, params))
        if config.pretrained:
            ensure_backbone_weights(config.model_name)
        trial_deadline = _trial_deadline(request, now, deadline, len(trials) - index)
        child = client.create_run(
            experiment_id,
            tags={
                "mlflow.parentRunId": parent_run_id,
                "mlflow.runName": f"{_run_name(client, parent_run_id)}_{index}",
                "detectkit.trial_index": str(index),
                "detectkit.model_name": config.model_name,
                **owner_tags(),
            },
        )
        trial_id = child.info.run_id
        _log_params(client, trial_id, params, config)
        if show:
            sys.stderr.write(
                f"trial {index + 1}/{len(trials)}: {config.model_name} "
                f"(lr {config.learning_rate:g}, batch {config.batch_size})\n"
            )
        own: list[tuple[int, float]] = []
        callback = _epoch_logger(client, trial_id, own, policy, state)
        try:
            result = fit(
                config,
                train_data,
                validation_data,
                deadline=trial_deadline,
                on_epoch=callback,
                device=dev,
                progress=show,
            )
        except KeyboardInterrupt:
            client.set_terminated(trial_id, "KILLED")
            interrupted = True
            break
        except (InvalidSettingsError, NotFoundError):
            client.set_terminated(trial_id, "FAILED")
            raise
        except Exception as exc:  # a trial failing does not end the sweep
            logger.exception("trial %s failed", trial_id)
            client.set_tag(trial_id, "detectkit.error", f"{type(exc).__name__}: {exc}"[:5000])
            client.set_terminated(trial_id, "FAILED")
            state.failed.append(f"trial {index} ({config.model_name}): {type(exc).__name__}: {exc}")
            state.histories.append(own)
            continue
        last = result.history[-1] if result.history else None
        if last is not None and last.metrics is not None and (not own or own[-1][0] != last.epoch):
            own.append((last.epoch, last.metrics["mean_average_precision"]))
            _log_metrics(client, trial_id, last.metrics, last.epoch)
        _finish_trial(client, trial_id, result, config, train_data.classes)
        state.histories.append(own)
        terminated = result.stopped in ("early_termination", "interrupted")
        client.set_terminated(trial_id, "KILLED" if terminated else "FINISHED")
        if not terminated:
            score = result.metrics.get("mean_average_precision", -1.0)
            if state.best_run is None or score > state.best_metrics.get(
                "mean_average_precision", -1.0
            ):
                state.best_run, state.best_metrics = trial_id, result.metrics
                client.set_tag(parent_run_id, BEST_CHILD_TAG, trial_id)
                _log_metrics(client, parent_run_id, result.metrics, None)
        if result.stopped == "interrupted":
            interrupted = True
            break
    if state.failed:
        client.set_tag(parent_run_id, "detectkit.failed_trials", "\n".join(state.failed)[:5000])
    if interrupted:
        client.set_tag(parent_run_id, "detectkit.stopped", "interrupted")
        raise KeyboardInterrupt  # the caller ends the parent run KILLED
    if state.best_run is None:
        detail = "; ".join(state.failed) or "no trial finished (timeout before the first epoch?)"
        client.set_tag(parent_run_id, "detectkit.error", detail[:5000])
        return "FAILED"
    return "FINISHED"


def _run_name(client: Any, run_id: str) -> str:
    return str(client.get_run(run_id).info.run_name or run_id)


def _trial_deadline(
    request: TrainingRequest, now: float, deadline: float | None, left: int
) -> float | None:
    limits = request.limits
    own = (
        None if limits.trial_timeout_minutes is None else now + 60.0 * limits.trial_timeout_minutes
    )
    if deadline is None:
        return own
    if own is not None:
        return min(own, deadline)
    return now + (deadline - now) / max(left, 1)


def _checkpoint_path(client: Any, params: TrainingParameters) -> str | None:
    """The MLflow model folder of ``checkpoint_run_id`` (a trial of this store)."""
    if not params.checkpoint_run_id:
        return None
    try:
        path = client.download_artifacts(
            params.checkpoint_run_id, MODEL_ARTIFACT, tempfile.mkdtemp()
        )
    except Exception as exc:
        raise NotFoundError(
            f"checkpoint_run_id {params.checkpoint_run_id!r}: no {MODEL_ARTIFACT} in that run "
            f"({type(exc).__name__}); pass the id of a finished trial (run.trials())"
        ) from exc
    return str(path)


def _log_params(client: Any, run_id: str, params: TrainingParameters, config: TrialConfig) -> None:
    from mlflow.entities import Param

    given = {k: v for k, v in params.model_dump(exclude_none=True).items()}
    resolved = {
        "model_name": config.model_name,
        "pretrained": config.pretrained,
        "learning_rate": config.learning_rate,
        "number_of_epochs": config.epochs,
        "training_batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "learning_rate_scheduler": config.scheduler,
        "min_size": config.min_size,
        "max_size": config.max_size,
        "augmentation": config.augmentation,
        "precision": config.precision,
        "ema": config.ema,
    }
    merged = {**resolved, **given}
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(merged.items())])


def _log_metrics(client: Any, run_id: str, metrics: Mapping[str, float], step: int | None) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[Metric(k, float(v), stamp, step or 0) for k, v in sorted(metrics.items())]
    )


def _epoch_logger(
    client: Any,
    run_id: str,
    own: list[tuple[int, float]],
    policy: BanditPolicy | MedianStoppingPolicy | TruncationSelectionPolicy | None,
    state: _SweepState,
) -> Callable[[EpochRecord], None]:
    def on_epoch(record: EpochRecord) -> None:
        values = {
            f"train_{k}" if k != "loss" else "train_loss": v for k, v in record.losses.items()
        }
        values["learning_rate"] = record.learning_rate
        values["epoch_seconds"] = record.seconds
        if record.metrics is not None:
            values.update(record.metrics)
            own.append((record.epoch, record.metrics["mean_average_precision"]))
        _log_metrics(client, run_id, values, record.epoch)
        if policy is not None and record.metrics is not None:
            reason = termination_reason(policy, record.epoch, own, state.histories)
            if reason is not None:
                client.set_tag(run_id, "detectkit.early_termination", reason)
                raise Terminate(reason)

    return on_epoch


def _finish_trial(
    client: Any, run_id: str, result: TrialResult, config: TrialConfig, classes: Sequence[str]
) -> None:
    from detectkit.backends.local.pyfunc import save_model

    client.set_tag(run_id, "detectkit.stopped", result.stopped)
    client.set_tag(run_id, "detectkit.best_epoch", str(result.best_epoch))
    client.set_tag(run_id, "detectkit.epochs_run", str(result.epochs_run))
    with tempfile.TemporaryDirectory(prefix="detectkit-model-") as tmp:
        folder = save_model(
            Path(tmp) / "mlflow-model",
            state_dict=result.state_dict or {},
            classes=classes,
            settings=config.inference_settings(),
        )
        client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT)
        labels = Path(tmp) / "labels.json"
        labels.write_text(json.dumps(list(classes)), encoding="utf-8")
        client.log_artifact(run_id, str(labels), LABELS_FOLDER)
    if result.metrics:
        _log_metrics(client, run_id, result.metrics, result.epochs_run + 1)
