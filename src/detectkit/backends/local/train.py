"""Local training of one model: a torchvision detector trained in this process.

:func:`trial_config` resolves a trial's :class:`~detectkit.settings.TrainingParameters` with
the local defaults of its model. :func:`fit` preloads the images resized to the network's
input, trains with the parameters of :class:`TrialConfig`, evaluates the validation set every
``evaluation_frequency`` epochs with :func:`detectkit.evaluate` (COCO protocol) and returns
the weights of its best epoch; :func:`detect` predicts with a model (it and the preloading of
the images live in :mod:`detectkit.backends.local.samples`). Sweeps of trials, logged as MLflow
runs, are in :mod:`detectkit.backends.local.sweep`.

torch and torchvision are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from detectkit.backends.local.models import (
    DEFAULT_MODEL,
    build_model,
    import_torch,
    model_spec,
)
from detectkit.backends.local.samples import (
    augmenter,
    detect,
    load_samples,
    validation_metrics,
)
from detectkit.errors import InvalidSettingsError, NotFoundError

if TYPE_CHECKING:
    from detectkit.dataset import LabeledDataset
    from detectkit.settings.request import TrainingParameters

__all__ = [
    "EpochRecord",
    "Terminate",
    "TrialConfig",
    "TrialResult",
    "detect",
    "fit",
    "trial_config",
    "use_bf16",
]

Augmentation = Literal["none", "flip", "ssd"]

# Parameters that have no local meaning; rejected rather than silently ignored.
_UNSUPPORTED = {
    "tile_grid_size": "tiling is not implemented by the local backend",
    "tile_overlap_ratio": "tiling is not implemented by the local backend",
    "tile_predictions_nms_threshold": "tiling is not implemented by the local backend",
    "image_size": "image_size is a yolov5 parameter; use min_size (the square side of SSD models)",
    "model_size": "model_size is a yolov5 parameter",
    "multi_scale": "multi_scale is a yolov5 parameter",
}
_ADVANCED = ("pretrained", "checkpoint_path", "augmentation", "precision", "ema")
Precision = Literal["auto", "fp32", "bf16"]


# ====================================================================== configuration
@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs, resolved from :class:`~detectkit.TrainingParameters`
    and the model's local defaults (see :func:`trial_config`)."""

    model_name: str
    pretrained: bool
    epochs: int
    epochs_fixed: bool
    batch_size: int
    validation_batch_size: int
    learning_rate: float
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    beta1: float = 0.9
    beta2: float = 0.999
    ams_gradient: bool = False
    scheduler: Literal["warmup_cosine", "step", "none"] = "warmup_cosine"
    warmup_epochs: int = 2
    cosine_cycles: float = 0.45
    step_gamma: float = 0.5
    step_size: int = 5
    early_stopping: bool = True
    patience: int = 5
    delay: int = 5
    evaluation_frequency: int = 1
    gradient_accumulation: int = 1
    layers_to_freeze: int | None = None
    seed: int = 0
    min_size: int = 320
    max_size: int = 640
    box_score_threshold: float = 0.3
    nms_iou_threshold: float = 0.5
    detections_per_image: int = 100
    validation_iou_threshold: float = 0.5
    metric_type: Literal["voc", "coco"] = "voc"
    augmentation: Augmentation = "flip"
    precision: Precision = "auto"
    ema: bool = True
    checkpoint: str | None = None

    def inference_settings(self) -> dict[str, Any]:
        """The ``settings.json`` of the saved model (AutoML's keys, plus the architecture)."""
        return {
            "model_name": self.model_name,
            "pretrained": self.pretrained,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "box_score_thresh": self.box_score_threshold,
            "nms_iou_thresh": self.nms_iou_threshold,
            "box_detections_per_img": self.detections_per_image,
        }


def _advanced(
    advanced: dict[str, Any],
    key: str,
    default: Any,
    allowed: tuple[Any, ...],
    problems: list[str],
) -> Any:
    """``advanced[key]`` (or ``default``); a problem is noted when it is not one of ``allowed``
    (switches must be real booleans: ``1`` is not ``true``)."""
    value = advanced.get(key, default)
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    else:
        ok = value in allowed
        expected = ", ".join(map(repr, allowed[:-1])) + f" or {allowed[-1]!r}"
    if not ok:
        problems.append(f"advanced_settings.{key}: expected {expected}, got {value!r}")
    return value


def trial_config(params: TrainingParameters, *, checkpoint: str | None = None) -> TrialConfig:
    """Resolve one trial's parameters with the local defaults of its model.

    Local defaults differ from Azure's where a CPU needs it: SSD models train with batch 8
    for 30 epochs (learning rate 0.04 for ``ssdlite_mobilenet_v2``, 0.02 for the MobileNetV3
    one); the MobileNet Faster R-CNNs with a 320-pixel short side (see
    :data:`~detectkit.backends.local.models.LOCAL_MODELS`). ``advanced_settings`` may hold ``pretrained`` (default true: ImageNet backbone
    weights), ``checkpoint_path`` (an MLflow model folder or a ``state_dict`` file to start
    from), ``augmentation`` (``"none"``, ``"flip"`` (the default), ``"ssd"``), ``precision``
    (``"auto"``, the default: bfloat16 mixed precision for the training passes where the
    processor computes it natively (AVX512-BF16 or AMX CPUs, bfloat16 GPUs) and the model
    starts from trained weights, float32 elsewhere; ``"fp32"``; ``"bf16"``) and ``ema`` (default true: validate and keep an
    exponential moving average of the weights over about two epochs).

    Raises:
        InvalidSettingsError: The model is not a local model, a parameter has no local
            meaning (tiling, yolov5 sizes) or an advanced setting is unknown.
    """
    name = params.model_name or DEFAULT_MODEL
    spec = model_spec(name)
    given = params.model_dump(exclude_none=True)
    problems = [f"{key}: {why}" for key, why in _UNSUPPORTED.items() if key in given]
    advanced = params.advanced_settings_dict()
    unknown = sorted(set(advanced) - set(_ADVANCED))
    if unknown:
        problems.append(
            f"advanced_settings: unknown key(s) {unknown} for the local backend "
            f"(expected some of {list(_ADVANCED)})"
        )
    augmentation = _advanced(advanced, "augmentation", "flip", ("none", "flip", "ssd"), problems)
    pretrained = _advanced(advanced, "pretrained", True, (True, False), problems)
    precision = _advanced(advanced, "precision", "auto", ("auto", "fp32", "bf16"), problems)
    ema = _advanced(advanced, "ema", True, (True, False), problems)
    if problems:
        raise InvalidSettingsError(
            "training parameters the local backend cannot honour:\n  " + "\n  ".join(problems)
        )
    min_size = params.min_size or spec.min_size
    batch = params.training_batch_size or spec.batch_size
    metric = params.validation_metric_type
    return TrialConfig(
        model_name=name,
        pretrained=bool(pretrained),
        epochs=params.number_of_epochs or spec.epochs,
        epochs_fixed=params.number_of_epochs is not None,
        batch_size=batch,
        validation_batch_size=params.validation_batch_size or max(batch, 4),
        learning_rate=params.learning_rate or spec.learning_rate,
        optimizer=params.optimizer or "sgd",
        momentum=0.9 if params.momentum is None else params.momentum,
        weight_decay=1e-4 if params.weight_decay is None else params.weight_decay,
        nesterov=True if params.nesterov is None else params.nesterov,
        beta1=0.9 if params.beta1 is None else params.beta1,
        beta2=0.999 if params.beta2 is None else params.beta2,
        ams_gradient=bool(params.ams_gradient),
        scheduler=params.learning_rate_scheduler or "warmup_cosine",
        warmup_epochs=2
        if params.warmup_cosine_lr_warmup_epochs is None
        else params.warmup_cosine_lr_warmup_epochs,
        cosine_cycles=0.45
        if params.warmup_cosine_lr_cycles is None
        else params.warmup_cosine_lr_cycles,
        step_gamma=0.5 if params.step_lr_gamma is None else params.step_lr_gamma,
        step_size=params.step_lr_step_size or 5,
        early_stopping=True if params.early_stopping is None else params.early_stopping,
        patience=params.early_stopping_patience or 5,
        delay=params.early_stopping_delay or 5,
        evaluation_frequency=params.evaluation_frequency or 1,
        gradient_accumulation=params.gradient_accumulation_step or 1,
        layers_to_freeze=params.layers_to_freeze,
        seed=0 if params.random_seed is None else params.random_seed,
        min_size=min_size,
        max_size=max(params.max_size or spec.max_size, min_size),
        box_score_threshold=0.3
        if params.box_score_threshold is None
        else params.box_score_threshold,
        nms_iou_threshold=0.5 if params.nms_iou_threshold is None else params.nms_iou_threshold,
        detections_per_image=params.box_detections_per_image or 100,
        validation_iou_threshold=params.validation_iou_threshold or 0.5,
        metric_type="coco" if metric in ("coco", "coco_voc") else "voc",
        augmentation=augmentation,
        precision=precision,
        ema=ema,
        checkpoint=advanced.get("checkpoint_path") or checkpoint,
    )


# ====================================================================== model
def _new_model(config: TrialConfig, num_classes: int, *, load_weights: bool | None = None) -> Any:
    model = build_model(
        config.model_name,
        num_classes,
        pretrained=config.pretrained,
        load_weights=load_weights,
        min_size=config.min_size,
        max_size=config.max_size,
        score_threshold=0.01,  # validation scores the whole ranking; settings.json keeps 0.3
        nms_threshold=config.nms_iou_threshold,
        detections_per_image=config.detections_per_image,
        layers_to_freeze=config.layers_to_freeze,
    )
    if config.checkpoint:
        _load_checkpoint(model, config.checkpoint, config.model_name)
    return model


def _load_checkpoint(model: Any, path: str, model_name: str) -> None:
    torch = import_torch()
    source = Path(path)
    file = source / "artifacts" / "model.pt" if source.is_dir() else source
    if not file.is_file():
        raise NotFoundError(
            f"checkpoint {path}: no such file (expected an MLflow model folder saved by "
            "detectkit, or a state_dict .pt file)"
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InvalidSettingsError(
            f"checkpoint {path} does not fit {model_name} for these classes ({first}); start "
            "from a checkpoint of the same model trained on the same class list"
        ) from exc


# ====================================================================== one trial
@dataclass
class EpochRecord:
    """What one epoch produced: mean losses, learning rate, and validation metrics when the
    epoch was evaluated."""

    epoch: int
    losses: dict[str, float]
    learning_rate: float
    seconds: float
    metrics: dict[str, float] | None = None


@dataclass
class TrialResult:
    """A finished trial: the best epoch's weights and metrics, and why it stopped."""

    state_dict: dict[str, Any] | None
    metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    stopped: str  # "completed", "early_stopping", "early_termination", "timeout", "interrupted"
    history: list[EpochRecord] = field(default_factory=list)


def use_bf16(precision: str, device: str, *, from_scratch: bool = False) -> bool:
    """Whether training passes run under bfloat16 autocast: ``precision="auto"`` chooses it
    where the processor computes bfloat16 natively (emulated bfloat16 is slower than float32)
    and the model starts from trained weights (from scratch, early activations overflow
    bfloat16: a from-scratch SSD lost its loss to NaN in its first epoch)."""
    torch = import_torch()
    if precision != "auto":
        return precision == "bf16"
    if from_scratch:
        return False
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


class _Ema:
    """Exponential moving average of a model's weights (floating-point parameters and
    buffers; integer buffers are copied). The window is about two epochs, shorter while
    few steps have been taken."""

    def __init__(self, model: Any, steps_per_epoch: int) -> None:
        self.decay = 1.0 - 1.0 / max(2.0 * steps_per_epoch, 10.0)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model: Any) -> None:
        torch = import_torch()
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for key, value in model.state_dict().items():
                average = self.state[key]
                if average.dtype.is_floating_point:
                    average.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
                else:
                    average.copy_(value)


class Terminate(Exception):
    """Raised by an epoch callback to stop the trial (early termination policy)."""


def _train_mode(model: Any) -> None:
    """``model.train()``, except batch norms whose parameters are all frozen: they keep their
    pretrained statistics (a frozen stage computes exactly what it computed on ImageNet)."""
    torch = import_torch()
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def _optimizer(model: Any, config: TrialConfig) -> Any:
    torch = import_torch()
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov and config.momentum > 0,
        )
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return kind(
        params,
        lr=config.learning_rate,
        betas=(config.beta1, config.beta2),
        weight_decay=config.weight_decay,
        amsgrad=config.ams_gradient,
    )


def _lr_factor(config: TrialConfig, step: int, steps_per_epoch: int, total_epochs: int) -> float:
    """Learning-rate multiplier at ``step`` (AutoML's schedules: linear warm-up then cosine
    with ``cosine_cycles`` cycles; or step decay; or constant)."""
    epoch = step / steps_per_epoch
    if config.scheduler == "step":
        return float(config.step_gamma ** int(epoch // config.step_size))
    if config.scheduler == "none":
        return 1.0
    warmup = min(config.warmup_epochs, max(total_epochs - 1, 0))
    if epoch < warmup:
        return max(epoch / warmup, 0.01)
    span = max(total_epochs - warmup, 1e-9)
    progress = min((epoch - warmup) / span, 1.0)
    return max(0.5 * (1.0 + math.cos(math.pi * 2.0 * config.cosine_cycles * progress)), 0.0) + 1e-3


def fit(
    config: TrialConfig,
    train_data: LabeledDataset,
    validation_data: LabeledDataset,
    *,
    deadline: float | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> TrialResult:
    """Train one model and return the weights of its best validation epoch.

    Args:
        config: The trial's parameters.
        train_data: Training images (their ``classes`` fix the class ids).
        validation_data: Validation images, scored with :func:`detectkit.evaluate`.
        deadline: ``time.monotonic()`` value at which training stops (then the trial is
            evaluated and kept). When ``config.epochs_fixed`` is false, the number of epochs
            is fitted to the time left after each epoch, so that the learning-rate schedule
            ends by the deadline.
        on_epoch: Called after every epoch; raising :class:`Terminate` stops the trial
            (early termination).
        device: ``"cpu"`` or ``"cuda"`` (default: CUDA when available).
        progress: Print one line per epoch on stderr (default: when stderr is a terminal).

    A ``KeyboardInterrupt`` ends the trial like a timeout (the best weights so far are kept)
    and is raised again by the caller after the trial is saved.
    """
    torch = import_torch()
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(config.seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    show = sys.stderr.isatty() if progress is None else progress
    classes = train_data.classes
    train = load_samples(train_data, config, train=True)
    val = load_samples(validation_data, config, train=False)
    if len(train) == 0:
        raise InvalidSettingsError("training data: no images to train on")
    # channels-last convolutions are faster on CPUs (oneDNN) and on GPUs alike
    model = _new_model(config, len(classes)).to(device, memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    augment = augmenter(config)
    steps_per_epoch = max(
        1, math.ceil(len(train) / (config.batch_size * config.gradient_accumulation))
    )
    mixed = use_bf16(
        config.precision, device, from_scratch=not (config.pretrained or config.checkpoint)
    )
    ema = _Ema(model, steps_per_epoch) if config.ema else None

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if mixed:
            context: contextlib.AbstractContextManager[Any] = torch.autocast(
                device_type=device.split(":")[0], dtype=torch.bfloat16
            )
            return context
        return contextlib.nullcontext()

    def weights() -> dict[str, Any]:
        """The weights to validate and keep: the moving average when there is one."""
        return ema.state if ema is not None else model.state_dict()

    def validate() -> dict[str, float]:
        if ema is None:
            return validation_metrics(model, val, validation_data, config)
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(ema.state)
        try:
            return validation_metrics(model, val, validation_data, config)
        finally:
            model.load_state_dict(live)

    total_epochs = config.epochs
    history: list[EpochRecord] = []
    best: dict[str, float] = {}
    best_state: dict[str, Any] | None = None
    best_epoch = 0
    since_best = 0
    stopped = "completed"
    step = 0
    epoch = 0
    started = time.monotonic()
    while epoch < total_epochs:
        epoch += 1
        tick = time.monotonic()
        _train_mode(model)
        sums: dict[str, float] = {}
        batches = 0
        order = generator.permutation(len(train))
        chunk = config.batch_size
        timed_out = False
        try:
            for start in range(0, len(order), chunk):
                if deadline is not None and time.monotonic() >= deadline and (epoch > 1 or start):
                    timed_out = True
                    break
                images, targets = [], []
                for i in order[start : start + chunk]:
                    image, boxes, labels = augment(train.images[i], train.boxes[i], train.labels[i])
                    images.append(image.to(device).float().div_(255))
                    targets.append({"boxes": boxes.to(device).float(), "labels": labels.to(device)})
                with autocast():
                    losses = model(images, targets)
                losses = {k: v.float() for k, v in losses.items()}
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the training loss became {float(loss)} at epoch {epoch}; lower the "
                        f"learning_rate (was {config.learning_rate:g})"
                    )
                (loss / config.gradient_accumulation).backward()
                batches += 1
                if batches % config.gradient_accumulation == 0 or start + chunk >= len(order):
                    factor = _lr_factor(config, step, steps_per_epoch, total_epochs)
                    for group in optimizer.param_groups:
                        group["lr"] = config.learning_rate * factor
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if ema is not None:
                        ema.update(model)
                    step += 1
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        except KeyboardInterrupt:
            stopped = "interrupted"
        if timed_out and stopped == "completed":
            stopped = "timeout"
        record = EpochRecord(
            epoch=epoch,
            losses={k: v / max(batches, 1) for k, v in sums.items()},
            learning_rate=float(optimizer.param_groups[0]["lr"]),
            seconds=0.0,
        )
        last = stopped != "completed" or epoch >= total_epochs
        if batches and (last or epoch % config.evaluation_frequency == 0):
            record.metrics = validate()
            score = record.metrics["mean_average_precision"]
            if best_state is None or score > best["mean_average_precision"]:
                best, best_epoch, since_best = record.metrics, epoch, 0
                best_state = {k: v.detach().to("cpu").clone() for k, v in weights().items()}
            else:
                since_best += 1
        record.seconds = time.monotonic() - tick
        history.append(record)
        if show:
            _print_epoch(config.model_name, record, total_epochs)
        if stopped != "completed":
            break
        if on_epoch is not None:
            try:
                on_epoch(record)
            except Terminate:
                stopped = "early_termination"
                break
        if (
            config.early_stopping
            and record.metrics is not None
            and epoch >= config.delay
            and since_best >= config.patience
        ):
            stopped = "early_stopping"
            break
        if deadline is not None and not config.epochs_fixed:
            per_epoch = max((time.monotonic() - started) / epoch, 1e-6)
            total_epochs = epoch + max(0, int((deadline - time.monotonic()) // per_epoch))
    timed_out = deadline is not None and time.monotonic() >= deadline
    if stopped == "completed" and timed_out and epoch < config.epochs:
        stopped = "timeout"
    final = history[-1] if history else None
    if final is not None and final.metrics is None and stopped != "early_termination":
        final.metrics = validate()
        if (
            best_state is None
            or final.metrics["mean_average_precision"] > best["mean_average_precision"]
        ):
            best, best_epoch = final.metrics, final.epoch
            best_state = {k: v.detach().to("cpu").clone() for k, v in weights().items()}
    if best_state is None:  # stopped before any evaluation: score what there is
        best, best_epoch = validate(), epoch
        best_state = {k: v.detach().to("cpu").clone() for k, v in weights().items()}
    return TrialResult(best_state, best, best_epoch, epoch, stopped, history)


def _print_epoch(name: str, record: EpochRecord, total: int) -> None:
    text = (
        f"  {name} epoch {record.epoch}/{total}  loss {record.losses.get('loss', float('nan')):.3f}"
    )
    if record.metrics is not None:
        text += f"  mAP {record.metrics['mean_average_precision']:.3f}"
    sys.stderr.write(text + f"  {record.seconds:.0f}s\n")
    sys.stderr.flush()
