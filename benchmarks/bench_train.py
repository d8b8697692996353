"""Local training on real photos: mAP reached in a fixed CPU time budget, per model choice.

Data: ``../shared/datasets/playing-cards/train`` (296 photos of playing cards, Pascal VOC, 6
classes). A fixed, class-stratified 20% is held out (``LabeledDataset.split(0.2, seed=0)``);
the model trains on the other 80% through the product path (``Project.local`` -> data asset ->
``project.train`` with ``limits.timeout_minutes`` = the budget, so the number of epochs is
fitted to the time) and is scored once, after its last epoch, on the held-out photos with
``detectkit.evaluate`` (COCO protocol: mAP@0.5 and mAP@[.5:.95]). Evaluating only at the end
means no epoch is picked on the held-out set.

Configurations: each ``--models`` entry from scratch and/or with an ImageNet-pretrained
backbone (``--pretrained yes|no|both``). Pretrained backbones come from torchvision's weights
API, so their file must be in the torch cache (``~/.cache/torch/hub/checkpoints/``) or
downloadable; a configuration whose weights are missing is reported and skipped.

Run: ``python benchmarks/bench_train.py`` (10 minutes per configuration; ``--budget-minutes 2``
for a quick look). Set ``--threads 1`` on a busy machine: two torch threads fighting for one
free core are several times slower than one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "playing-cards" / "train"


def run_config(
    project: Any,
    train_asset: Any,
    holdout_asset: Any,
    model: str,
    pretrained: bool,
    budget: int,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Train one configuration for ``budget`` minutes; its held-out numbers."""
    from detectkit.errors import NotFoundError

    started = time.monotonic()
    parameters = {
        **params,
        "evaluation_frequency": 10_000,  # score only after the last epoch
        "early_stopping": False,
        "advanced_settings": {"pretrained": pretrained, **params.get("advanced_settings", {})},
    }
    try:
        run = project.train(
            train_asset,
            validation_data=holdout_asset,
            models=[model],
            limits={"timeout_minutes": budget},
            training_parameters=parameters,
            experiment="bench-train",
        )
    except NotFoundError as exc:
        return {"model": model, "pretrained": pretrained, "skipped": str(exc).splitlines()[0]}
    best = run.best_trial
    metrics = run.metrics
    tags = project.runs.get(best.name).info.tags if best else {}
    return {
        "model": model,
        "pretrained": pretrained,
        "status": run.status.value,
        "epochs": int(tags.get("detectkit.epochs_run", 0)),
        "minutes": round((time.monotonic() - started) / 60, 2),
        "map50": round(metrics.get("map_50", 0.0), 4),
        "map": round(metrics.get("map_50_95", 0.0), 4),
        "precision": round(metrics.get("precision", 0.0), 4),
        "recall": round(metrics.get("recall", 0.0), 4),
        "run": run.name,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="VOC folder of photos")
    parser.add_argument("--budget-minutes", type=int, default=10, help="per configuration")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["ssdlite_mobilenet_v2", "fasterrcnn_mobilenet_v2_fpn"],
        help="local model names",
    )
    parser.add_argument("--pretrained", choices=["yes", "no", "both"], default="both")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--batch", type=int, default=None, help="training batch size")
    parser.add_argument("--lr", type=float, default=None, help="learning rate")
    parser.add_argument("--size", type=int, default=None, help="min_size (SSD: square side)")
    parser.add_argument("--augmentation", choices=["none", "flip", "ssd"], default=None)
    parser.add_argument("--freeze", type=int, default=None, help="layers_to_freeze")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None)
    parser.add_argument("--no-ema", action="store_true", help="train without weight averaging")
    parser.add_argument("--root", type=Path, default=None, help="project folder (default: temp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    from detectkit import read_dataset
    from detectkit.project import Project

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = read_dataset(args.data)
    train, holdout, _ = dataset.split(0.2, seed=0)
    print(
        f"{args.data}: {len(dataset)} images, {dataset.num_boxes} boxes, {len(dataset.classes)} "
        f"classes; training on {len(train)}, held out {len(holdout)}; budget "
        f"{args.budget_minutes:g} min per configuration, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    params: dict[str, Any] = {}
    if args.batch:
        params["training_batch_size"] = args.batch
    if args.lr:
        params["learning_rate"] = args.lr
    if args.size:
        params["min_size"] = args.size
    if args.freeze is not None:
        params["layers_to_freeze"] = args.freeze
    advanced: dict[str, Any] = {}
    if args.augmentation:
        advanced["augmentation"] = args.augmentation
    if args.precision:
        advanced["precision"] = args.precision
    if args.no_ema:
        advanced["ema"] = False
    if advanced:
        params["advanced_settings"] = advanced
    choices = {"yes": [True], "no": [False], "both": [False, True]}[args.pretrained]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        project = Project.local(args.root or Path(tmp) / "project")
        train_asset = project.datasets.create("cards-train", train)
        holdout_asset = project.datasets.create("cards-holdout", holdout)
        results = []
        for model in args.models:
            for pretrained in choices:
                row = run_config(
                    project,
                    train_asset,
                    holdout_asset,
                    model,
                    pretrained,
                    args.budget_minutes,
                    params,
                )
                results.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(f"{'model':<34}{'backbone':<12}{'epochs':>7}{'min':>7}{'mAP@.5':>9}{'mAP@[.5:.95]':>14}")
    for row in results:
        backbone = "ImageNet" if row["pretrained"] else "scratch"
        if "skipped" in row:
            print(f"{row['model']:<34}{backbone:<12}  skipped: {row['skipped']}")
            continue
        print(
            f"{row['model']:<34}{backbone:<12}{row['epochs']:>7}{row['minutes']:>7.1f}"
            f"{row['map50']:>9.3f}{row['map']:>14.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
