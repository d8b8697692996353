"""The images going into a local model and the detections coming out of it.

:func:`load_samples` preloads a data set at the network's input scale, :func:`augmenter`
builds the training augmentation, :func:`detect` predicts with a model and
:func:`validation_metrics` scores those predictions with :func:`detectkit.evaluate`, for
:func:`detectkit.backends.local.train.fit`.

torch, torchvision and Pillow are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from detectkit.backends.local.models import import_torch, model_spec
from detectkit.evaluation.pipeline import evaluate
from detectkit.images import load_image
from detectkit.prediction import Detections

if TYPE_CHECKING:
    from detectkit.backends.local.train import TrialConfig
    from detectkit.dataset import LabeledDataset

__all__ = ["Samples", "augmenter", "detect", "load_samples", "validation_metrics"]


# ====================================================================== data
@dataclass
class Samples:
    """Images preloaded as ``uint8`` tensors at the network's input scale, with their boxes
    in pixels of that tensor and labels ``1..K`` (0 is background)."""

    images: list[Any]
    boxes: list[Any]
    labels: list[Any]
    refs: list[str]

    def __len__(self) -> int:
        return len(self.images)


def load_samples(dataset: LabeledDataset, config: TrialConfig, *, train: bool) -> Samples:
    """Read, orient and resize every image once (a square for SSD models; the short side to
    ``min_size`` with the long side at most ``max_size`` otherwise; training images of
    ``ssd`` augmentation keep 1.5x that resolution for the crops)."""
    torch = import_torch()
    from PIL import Image

    spec = model_spec(config.model_name)
    scale_up = 1.5 if train and config.augmentation == "ssd" else 1.0
    class_ids = {name: i + 1 for i, name in enumerate(dataset.classes)}
    out = Samples([], [], [], [])
    for record in dataset.records:
        image = load_image(record.image)
        width, height = image.size
        if spec.family == "ssd":
            side = round(config.min_size * scale_up)
            size = (side, side)
        else:
            ratio = min(config.min_size / min(width, height), config.max_size / max(width, height))
            size = (
                max(1, round(width * ratio * scale_up)),
                max(1, round(height * ratio * scale_up)),
            )
        if size != (width, height):
            image = image.resize(size, Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        objects = [o for o in record.objects if not o.is_crowd]
        xyxy = np.array(
            [[o.box.top_x, o.box.top_y, o.box.bottom_x, o.box.bottom_y] for o in objects],
            dtype=np.float32,
        ).reshape(-1, 4) * np.array([size[0], size[1], size[0], size[1]], dtype=np.float32)
        out.images.append(pixels.contiguous())
        out.boxes.append(torch.from_numpy(xyxy))
        out.labels.append(torch.tensor([class_ids[o.label] for o in objects], dtype=torch.int64))
        out.refs.append(record.image)
    return out


def augmenter(config: TrialConfig) -> Callable[[Any, Any, Any], tuple[Any, Any, Any]]:
    """The training augmentation: ``none``; ``flip`` (horizontal flip and a mild photometric
    change); ``ssd`` (torchvision's SSD recipe: photometric distortion, zoom out, IoU crop,
    flip)."""
    import_torch()
    import torchvision.transforms.v2 as T
    from torchvision import tv_tensors

    steps: list[Any]
    if config.augmentation == "none":
        steps = []
    elif config.augmentation == "flip":
        steps = [T.RandomPhotometricDistort(p=0.3), T.RandomHorizontalFlip()]
    else:
        steps = [
            T.RandomPhotometricDistort(p=0.5),
            T.RandomZoomOut(
                fill={tv_tensors.Image: (124, 116, 104), "others": 0}, side_range=(1.0, 2.0), p=0.3
            ),
            T.RandomIoUCrop(),
            T.RandomHorizontalFlip(),
            T.SanitizeBoundingBoxes(),
        ]
    pipeline = T.Compose(steps) if steps else None  # Compose refuses an empty list

    def apply(image: Any, boxes: Any, labels: Any) -> tuple[Any, Any, Any]:
        if pipeline is None:
            return image, boxes, labels
        height, width = image.shape[-2:]
        sample = {
            "image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": labels,
        }
        out = pipeline(sample)
        return (
            out["image"].as_subclass(type(image)),
            out["boxes"].as_subclass(type(boxes)),
            out["labels"],
        )

    return apply


def detect(
    model: Any, samples: Samples, classes: Sequence[str], batch_size: int = 8
) -> list[Detections]:
    """Predict every sample; boxes normalized by the sample's size (that is, the image's)."""
    torch = import_torch()

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            chunk = samples.images[start : start + batch_size]
            batch = [image.float().div_(255) for image in chunk]
            for image, result in zip(chunk, model(batch), strict=True):
                height, width = image.shape[-2:]
                scale = np.array([width, height, width, height], dtype=np.float64)
                xyxy = np.clip(result["boxes"].double().numpy() / scale, 0.0, 1.0)
                out.append(
                    Detections(
                        xyxy,
                        result["scores"].double().numpy(),
                        result["labels"].numpy() - 1,
                        classes,
                    )
                )
    return out


def validation_metrics(
    model: Any, samples: Samples, dataset: LabeledDataset, config: TrialConfig
) -> dict[str, float]:
    detections = detect(model, samples, dataset.classes, config.validation_batch_size)
    report = evaluate(
        dataset,
        dict(zip(samples.refs, detections, strict=True)),
        score_threshold=config.box_score_threshold,
        iou_threshold=config.validation_iou_threshold,
    )
    stats = report.stats
    assert stats is not None
    map50 = stats.map50 or 0.0
    coco = stats.map or 0.0
    return {
        "mean_average_precision": coco if config.metric_type == "coco" else map50,
        "map_50": map50,
        "map_75": stats.map75 or 0.0,
        "map_50_95": coco,
        "precision": report.overall.precision,
        "recall": report.overall.recall,
        "f1": report.overall.f1,
    }
