"""Batch scoring on this machine: ``project.score`` images per second, worker memory.

Scores the card photos (296) of ``../shared/datasets/playing-cards/train`` with an
``ssdlite_mobilenet_v2`` at 480 (ImageNet backbone from the torch hub cache, random head,
saved as the local backend saves a trial), with each runtime the model loader offers, then
2,960 images (the photos linked 10 times under distinct names) to see that the workers'
resident memory does not grow.

Run: ``python benchmarks/bench_score.py [--processes N] [--big]`` (``--big`` adds the 2,960).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
from pathlib import Path

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "playing-cards" / "train"


def save_model(folder: Path) -> Path:
    import torch

    from detectkit.backends.local.models import build_model
    from detectkit.backends.local.pyfunc import save_model as save

    torch.manual_seed(0)
    classes = [f"card{i}" for i in range(52)]
    model = build_model("ssdlite_mobilenet_v2", len(classes), pretrained=True, min_size=480)
    settings = {
        "model_name": "ssdlite_mobilenet_v2",
        "pretrained": True,
        "min_size": 480,
        "max_size": 480,
        "box_score_thresh": 0.3,
        "nms_iou_thresh": 0.5,
        "box_detections_per_img": 100,
    }
    return save(folder / "model", state_dict=model.state_dict(), classes=classes, settings=settings)


def main() -> None:
    from detectkit.backends.local.app import load_model
    from detectkit.backends.local.score import score_images

    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--big", action="store_true", help="also score 3,000 images")
    args = parser.parse_args()
    photos = sorted(str(p) for p in PHOTOS.iterdir() if p.suffix.lower() == ".jpg")[:300]
    runtimes = ["torch"]
    if "runtime" in inspect.signature(load_model).parameters:
        runtimes.append("onnx")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        work = Path(tmp)
        model = save_model(work)
        for runtime in runtimes:
            result = score_images(
                model,
                photos,
                out=work / f"{runtime}.jsonl",
                processes=args.processes,
                runtime=runtime,
                progress=False,
            )
            rows.append({"images": len(photos), **result.model_dump(mode="json")})
            print(json.dumps(rows[-1]), file=sys.stderr)
        if args.big:
            links = work / "links"
            links.mkdir()
            many = []
            for k in range(10):
                for p in photos:
                    target = links / f"{k}_{Path(p).name}"
                    os.symlink(p, target)
                    many.append(str(target))
            result = score_images(
                model, many, out=work / "big.jsonl", processes=args.processes, progress=False
            )
            rows.append({"images": len(many), **result.model_dump(mode="json")})
            print(json.dumps(rows[-1]), file=sys.stderr)
    for row in rows:
        print(
            f"{row['images']:5d} images  runtime={row['runtime']:5s}  processes={row['processes']}"
            f"  {row['seconds']:7.1f} s  {row['images_per_second']:6.2f} images/s"
            f"  worker RSS MiB {row['worker_rss_mb']}"
        )


if __name__ == "__main__":
    main()
