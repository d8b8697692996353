"""``detectkit demo``: the whole object-detection lifecycle on this machine, in a few minutes.

:func:`run_demo` generates a small synthetic data set (card-like images with known boxes),
imports and validates it, prints its statistics, stores it as a data asset, trains a small
detector from scratch (no download), registers it, serves it on 127.0.0.1, predicts on
generated images the model has never seen, evaluates the answers (COCO protocol), draws an
annotated image and a class-distribution chart, and stops the endpoint. Each step prints what
it did and where its files are.

It needs the ``local`` extra (torch, torchvision, FastAPI, uvicorn) and nothing else.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from detectkit.evaluation.pipeline import EvaluationReport

__all__ = ["DemoResult", "run_demo"]

#: What the demo trains: a MobileNetV2 SSDLite on 160-pixel inputs, from scratch.
DEMO_MODEL = "ssdlite_mobilenet_v2"


@dataclass(frozen=True)
class _Recipe:
    train_images: int
    holdout_images: int
    image_size: tuple[int, int]
    input_size: int
    epochs: int
    learning_rate: float


_FULL = _Recipe(
    train_images=160,
    holdout_images=40,
    image_size=(160, 120),
    input_size=160,
    epochs=18,
    learning_rate=0.02,
)
_QUICK = _Recipe(
    train_images=10,
    holdout_images=3,
    image_size=(64, 64),
    input_size=64,
    epochs=1,
    learning_rate=0.02,
)


@dataclass(frozen=True)
class DemoResult:
    """What the demo made, and where.

    Attributes:
        root: The demo folder.
        project_root: The local project (data assets, ``mlflow.db``, artifacts, endpoints).
        dataset: The data asset reference ``name:version``.
        run: The MLflow run id of the training run.
        model: The registered model ``name:version``.
        endpoint: The endpoint's name (deleted at the end).
        report: The evaluation on the held-out images.
        map50: COCO mAP@0.5 on the held-out images.
        map: COCO mAP@[.5:.95] on the held-out images.
        annotated_image: The PNG with the predicted boxes of one held-out image.
        class_distribution: The PNG with boxes and images per class.
        seconds: How long the whole demo took.
    """

    root: Path
    project_root: Path
    dataset: str
    run: str
    model: str
    endpoint: str
    report: EvaluationReport
    map50: float
    map: float
    annotated_image: Path
    class_distribution: Path
    seconds: float


def run_demo(
    root: str | os.PathLike[str] = "detectkit-demo",
    *,
    quick: bool = False,
    stream: TextIO | None = None,
) -> DemoResult:
    """Run the demo under ``root`` and return what it made.

    Args:
        root: Folder for everything the demo writes (created if needed; an earlier demo's
            project in it is reused: its data asset and model get new versions).
        quick: A tiny run for smoke tests: 10 images of 64 x 64 pixels, one epoch (seconds;
            the model learns nothing).
        stream: Where to print the steps (default: stdout).

    The full run trains ``ssdlite_mobilenet_v2`` from scratch on 128 of 160 generated images
    of 160 x 120 pixels (32 validate) for 18 epochs (about three to five minutes on two CPU
    cores) and reaches a COCO mAP@0.5 above 0.7 on 40 held-out images.

    Raises:
        MissingDependencyError: torch, torchvision, FastAPI or uvicorn is not installed.
    """
    from detectkit.backends.local.models import import_torch

    torch = import_torch()
    out = stream if stream is not None else sys.stdout
    started = time.monotonic()
    recipe = _QUICK if quick else _FULL
    folder = Path(root).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    threads = _threads()
    torch.set_num_threads(threads)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    say(f"detectkit demo in {folder} ({'quick' if quick else 'full'} run, {threads} CPU thread(s))")
    dataset, holdout = _step_data(folder, recipe, say)
    project, asset = _step_asset(folder, dataset, say)
    run = _step_train(project, asset, recipe, say)
    model = project.models.register(run, "demo-cards-detector", description="detectkit demo")
    say(
        f"\n[5/8] registered model {model.reference} ({model.uri}) in {folder / 'project' / 'mlflow.db'}"
    )
    endpoint = project.deploy(model, "demo-cards")
    try:
        say(
            f"\n[6/8] endpoint {endpoint.name!r} serving at {endpoint.scoring_uri} ({endpoint.state})"
        )
        report, predictions = _step_predict(endpoint, holdout, say)
        annotated, distribution = _step_pictures(folder, dataset, holdout, predictions, say)
    finally:
        endpoint.delete()
        say(f"\n[8/8] endpoint {endpoint.name!r} stopped and deleted")
    stats = report.stats
    assert stats is not None
    seconds = time.monotonic() - started
    say(
        f"\ndone in {seconds:.0f} s: mAP@0.5 {stats.map50 or 0.0:.3f} on {len(holdout)} held-out images"
    )
    return DemoResult(
        root=folder,
        project_root=folder / "project",
        dataset=f"{asset.name}:{asset.version}",
        run=run.name,
        model=model.reference,
        endpoint=endpoint.name,
        report=report,
        map50=stats.map50 or 0.0,
        map=stats.map or 0.0,
        annotated_image=annotated,
        class_distribution=distribution,
        seconds=seconds,
    )


def _threads() -> int:
    """CPU threads for torch: the cores not busy with other work (at least one). On a shared
    machine two threads fighting for one free core are many times slower than one."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, round(cores - busy + 0.25)))


def _step_data(folder: Path, recipe: _Recipe, say: Callable[[str], None]) -> tuple[Any, Any]:
    from detectkit.formats import read_dataset
    from detectkit.synthetic import make_dataset

    data = folder / "data"
    generated = make_dataset(
        data / "generated", recipe.train_images, size=recipe.image_size, seed=7
    )
    coco = generated.to_coco(data / "generated" / "annotations.json")
    holdout = make_dataset(data / "holdout", recipe.holdout_images, size=recipe.image_size, seed=8)
    say(
        f"\n[1/8] generated {len(generated)} training images and {len(holdout)} held-out "
        f"images ({recipe.image_size[0]}x{recipe.image_size[1]}) under {data}"
    )
    dataset = read_dataset(coco)
    report = dataset.validate()
    say(f"\n[2/8] imported {coco} (format coco) and validated it: {_report_line(report)}")
    say(dataset.summary().to_text())
    return dataset, holdout


def _report_line(report: Any) -> str:
    if report.ok and not len(report):
        return "no problems"
    return str(report.to_text(limit=5))


def _step_asset(folder: Path, dataset: Any, say: Callable[[str], None]) -> tuple[Any, Any]:
    from detectkit.project import Project

    project = Project.local(folder / "project")
    asset = project.datasets.create("demo-cards", dataset, description="detectkit demo cards")
    say(
        f"\n[3/8] data asset {asset.name}:{asset.version} at {asset.uri} (JSONL + MLTable + images)"
    )
    return project, asset


def _step_train(project: Any, asset: Any, recipe: _Recipe, say: Callable[[str], None]) -> Any:
    say(
        f"\n[4/8] training {DEMO_MODEL} from scratch: {recipe.epochs} epoch(s) at "
        f"{recipe.input_size}x{recipe.input_size}, 20% of the images held out for validation"
    )
    tick = time.monotonic()
    run = project.train(
        asset,
        models=[DEMO_MODEL],
        validation_size=0.2,
        training_parameters={
            "number_of_epochs": recipe.epochs,
            "learning_rate": recipe.learning_rate,
            "min_size": recipe.input_size,
            "max_size": recipe.input_size,
            "box_score_threshold": 0.2,
            "early_stopping": False,
            "advanced_settings": {"pretrained": False, "augmentation": "flip"},
        },
        experiment="detectkit-demo",
    )
    run.wait(progress=False)
    metrics = run.metrics
    say(
        f"      run {run.name} {run.status.value} in {time.monotonic() - tick:.0f} s: validation "
        f"mAP@0.5 {metrics.get('map_50', 0.0):.3f}, mAP@[.5:.95] {metrics.get('map_50_95', 0.0):.3f}, "
        f"precision {metrics.get('precision', 0.0):.3f}, recall {metrics.get('recall', 0.0):.3f}"
    )
    return run


def _step_predict(endpoint: Any, holdout: Any, say: Callable[[str], None]) -> tuple[Any, Any]:
    from detectkit.evaluation.pipeline import evaluate

    images = [record.image for record in holdout.records]
    predictions = []
    for start in range(0, len(images), 8):
        predictions += endpoint.predict(images[start : start + 8])
    report = evaluate(holdout, predictions, score_threshold=0.5)
    boxes = sum(len(p) for p in predictions)
    say(f"\n[7/8] predicted {boxes} boxes on {len(images)} held-out images; evaluation:")
    say(report.to_text())
    return report, predictions


def _step_pictures(
    folder: Path, dataset: Any, holdout: Any, predictions: Any, say: Callable[[str], None]
) -> tuple[Path, Path]:
    from detectkit.viz.charts import plot_class_distribution
    from detectkit.viz.drawing import draw

    annotated = folder / "prediction.png"
    draw(holdout.records[0].image, predictions[0], min_score=0.5).save(annotated)
    distribution = folder / "class_distribution.png"
    figure = plot_class_distribution(dataset)
    figure.savefig(distribution, dpi=100)
    say(f"      wrote {annotated} (predicted boxes) and {distribution} (boxes per class)")
    return annotated, distribution
