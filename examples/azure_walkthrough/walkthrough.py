"""The whole object-detection lifecycle on an Azure ML workspace, in one script.

    python examples/azure_walkthrough/walkthrough.py --config config.json --compute gpu-cluster

Steps: read (or generate) a labeled data set, split it, upload it as two data assets, check
the AutoML settings with a dry run, train a sweep, list its trials, register the best trial,
deploy it to a managed online endpoint with 100% traffic, predict on validation images, save
drawings, and delete the endpoint (unless --keep-endpoint). Needs a workspace, a GPU cluster
and credentials (`az login`); training and deployment take tens of minutes and cost money.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import detectkit
from detectkit import Project


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=None, help="workspace config.json (default: search)")
    parser.add_argument("--compute", default="gpu-cluster", help="GPU compute cluster name")
    parser.add_argument(
        "--data", default=None, help="labeled data (any format); default: generated cards"
    )
    parser.add_argument("--name", default="cards", help="data asset and model name prefix")
    parser.add_argument("--endpoint", default=None, help="endpoint name (default: <name>-<time>)")
    parser.add_argument(
        "--models", nargs="+", default=["yolov5", "fasterrcnn_resnet50_fpn"], help="models to try"
    )
    parser.add_argument("--max-trials", type=int, default=4, help="trials in the sweep")
    parser.add_argument("--out", default="walkthrough-out", help="local folder for outputs")
    parser.add_argument("--dry-run", action="store_true", help="stop after checking the job")
    parser.add_argument("--keep-endpoint", action="store_true", help="do not delete the endpoint")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. data ------------------------------------------------------------------------
    if args.data:
        dataset = detectkit.read_dataset(args.data)
    else:
        from detectkit.synthetic import make_dataset

        dataset = make_dataset(out / "cards", n_images=60, size=(320, 240), seed=0)
    print(dataset.summary().to_text())
    split = dataset.split(val=0.2, seed=0)

    project = Project.from_config(args.config)
    print(project)

    # 2. check the job before any GPU starts -----------------------------------------------
    settings = {
        "compute": args.compute,
        "models": args.models,
        "limits": {"max_trials": args.max_trials, "max_concurrent_trials": 2},
        "sweep": {"sampling_algorithm": "random"},
    }
    job = project.train(f"azureml:{args.name}-train:1", dry_run=True, **settings)
    print(f"job checked: {type(job).__name__} on {getattr(job, 'compute', None)}")
    if args.dry_run:
        return 0

    train_asset = project.datasets.create(f"{args.name}-train", split.train)
    val_asset = project.datasets.create(f"{args.name}-val", split.val)
    print(train_asset, val_asset)

    # 3. train -------------------------------------------------------------------------
    run = project.train(train_asset, validation_data=val_asset, **settings)
    print(f"{run}: {run.studio_url}")
    run.wait()
    for trial in run.trials():
        print(" ", trial, trial.hyperparameters.get("model_name"))
    print("best trial metrics:", run.metrics)

    # 4. register and deploy -------------------------------------------------------------
    model = project.models.register(run, f"{args.name}-detector")
    print(model)
    endpoint_name = args.endpoint or f"{args.name}-{int(time.time()) % 100000}"
    endpoint = project.deploy(model, endpoint_name, deployment="blue")
    print(endpoint)

    # 5. predict and draw ----------------------------------------------------------------
    from detectkit.viz import draw

    try:
        images = [record.image for record in split.val.records[:4]]
        for image, prediction in zip(images, endpoint.predict(images, min_score=0.3), strict=True):
            path = out / f"prediction_{Path(image).stem}.png"
            draw(image, prediction).save(path)
            print(f"{Path(image).name}: {len(prediction)} boxes -> {path}")
    finally:
        if not args.keep_endpoint:
            endpoint.delete()
            print(f"deleted endpoint {endpoint_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
