"""Per-image latency of a local model with torch versus ONNX Runtime, one thread each.

    python benchmarks/bench_onnx.py [--images 40] [--rounds 3]

The model is ``ssdlite_mobilenet_v2`` at 480 x 480 with the ImageNet backbone (from the torch
hub cache) and a random head, saved as the local backend saves a trained model; each runtime
scores the same card photos one image per call through :class:`ModelRunner`, as a local
endpoint or the batch scorer does. Prints the median per-image milliseconds of each round,
their medians and the ratio, and the largest box difference between the two runtimes.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "playing-cards"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", default=str(PHOTOS / "train"))
    args = parser.parse_args()

    import torch

    from detectkit.backends.local.app import ModelRunner, load_model
    from detectkit.backends.local.models import build_model
    from detectkit.backends.local.pyfunc import save_model

    torch.manual_seed(0)
    files = sorted(Path(args.photos).glob("*.jpg"))[: args.images]
    images = [base64.b64encode(f.read_bytes()).decode() for f in files]
    model = build_model("ssdlite_mobilenet_v2", 52, pretrained=True, min_size=480, max_size=480)
    settings = {
        "model_name": "ssdlite_mobilenet_v2",
        "pretrained": True,
        "min_size": 480,
        "max_size": 480,
        "box_score_thresh": 0.3,
        "nms_iou_thresh": 0.5,
        "box_detections_per_img": 100,
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp
        folder = save_model(
            Path(tmp) / "model",
            state_dict=model.state_dict(),
            classes=[f"c{i}" for i in range(52)],
            settings=settings,
        )
        started = time.perf_counter()
        runners = {
            "torch": ModelRunner(load_model(folder, runtime="torch"), threads=1),
            "onnx": ModelRunner(load_model(folder, runtime="onnx"), threads=1),
        }
        print(f"export + load: {time.perf_counter() - started:.1f} s; {len(images)} photos")
        answers = {
            name: [runner([image])[0] for image in images] for name, runner in runners.items()
        }
        diff = 0.0
        for a, b in zip(answers["torch"], answers["onnx"], strict=True):
            for x, y in zip(a["boxes"], b["boxes"], strict=True):
                diff = max(diff, *(abs(x["box"][k] - y["box"][k]) for k in x["box"]))
        medians: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, runner in runners.items():
                times = []
                for image in images:
                    start = time.perf_counter()
                    runner([image])
                    times.append((time.perf_counter() - start) * 1000)
                medians[name].append(statistics.median(times))
        for name, values in medians.items():
            rounds = ", ".join(f"{v:.1f}" for v in values)
            print(f"{name:6s} ms/image per round: {rounds}; median {statistics.median(values):.1f}")
        ratio = statistics.median(medians["torch"]) / statistics.median(medians["onnx"])
        print(f"onnxruntime speed-up: {ratio:.2f}x; largest box difference {diff:.2e}")
        boxes = sum(len(a["boxes"]) for a in answers["torch"])
        print(f"boxes per image (threshold 0.3): {boxes / len(images):.1f}")


if __name__ == "__main__":
    main()
