"""``Endpoint.predict`` of many card photos: one request (the call of before) versus chunked,
concurrent requests, against one local endpoint.

Builds ``ssdlite_mobilenet_v2`` at 480x480 the way the local backend does
(``backends.local.models.build_model`` with the ImageNet backbone from the torch hub cache and
random head weights: the same compute as a trained model) and saves it with
``backends.local.pyfunc.save_model``. Deploys it with ``LocalEndpoints.deploy`` and the
default server options except a 64 MiB body limit (the one-request body of 300 photos is
~25 MB, over the default 16 MiB) and a 180 s request timeout (Azure's maximum): on this
2-CPU machine the default is 2 server processes with one torch thread each.

Then, in alternating rounds, scores the same photos with
``predict(images, batch_size=len(images), concurrency=1)`` (everything in one request: one
server process works, the other idles) and with the default ``predict(images)`` (requests of
16 images, as many in flight as the endpoint has processes). Reported: seconds per call
(median of rounds), the ratio, and the largest difference between the two calls' boxes and
scores (the server batches images differently, so float noise of ~1e-6 is allowed; labels and
box counts must be equal).

Run: ``python benchmarks/bench_predict_many.py [--images 300] [--rounds 3]
[--photos ../shared/datasets/playing-cards/train]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from detectkit.backends.local.endpoints import LocalEndpoints
from detectkit.backends.local.serve import ServerOptions
from detectkit.prediction import Prediction
from detectkit.resources import Endpoint, ModelInfo
from detectkit.settings.request import DeploymentSettings
from detectkit.synthetic import CARD_CLASSES

PHOTOS = Path(__file__).resolve().parents[2] / "shared/datasets/playing-cards/train"


def save_ssdlite(folder: Path, size: int) -> Path:
    """An MLflow model folder of SSDLite MobileNetV2 at ``size`` (ImageNet backbone)."""
    import torch

    from detectkit.backends.local.models import build_model
    from detectkit.backends.local.pyfunc import save_model

    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", len(CARD_CLASSES), pretrained=True, min_size=size)
    settings = {
        "model_name": "ssdlite_mobilenet_v2",
        "pretrained": True,
        "min_size": size,
        "box_score_thresh": 0.02,  # random heads score low: keep some boxes to compare
        "nms_iou_thresh": 0.5,
        "box_detections_per_img": 100,
    }
    return save_model(
        folder / "ssdlite", state_dict=model.state_dict(), classes=CARD_CLASSES, settings=settings
    )


def difference(a: list[Prediction], b: list[Prediction]) -> float:
    """Largest absolute difference of boxes and scores; raises if labels or counts differ."""
    worst = 0.0
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.labels.tolist() != y.labels.tolist():
            raise AssertionError(f"image {i}: labels differ: {x.labels} vs {y.labels}")
        if len(x.labels):
            worst = max(worst, float(np.abs(x.to_pixels() - y.to_pixels()).max()))
            worst = max(worst, float(np.abs(x.scores - y.scores).max()))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    args = parser.parse_args()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() == ".jpg")
    images = [photos[i % len(photos)] for i in range(args.images)]
    print(f"{len(images)} images ({len(photos)} distinct photos from {args.photos})")

    with tempfile.TemporaryDirectory(prefix="bench-predict-many-") as tmp:
        root = Path(tmp)
        model_dir = save_ssdlite(root, args.size)
        options = ServerOptions(max_body_bytes=64 << 20)
        endpoints = LocalEndpoints(root / "project", lambda m: Path(m.uri), options=options)
        info = ModelInfo(name="ssdlite", version="1", uri=str(model_dir))
        settings = DeploymentSettings(request_timeout_ms=180_000)
        try:
            created = endpoints.deploy(info, "cards", "blue", settings)
            endpoint = Endpoint(endpoints, created)  # type: ignore[arg-type]
            processes = endpoints.endpoint_concurrency("cards", None)
            print(f"endpoint: {processes} server process(es), model {args.size}x{args.size}")
            endpoint.predict(images[:4], progress=False)  # warm up both processes
            endpoint.predict(images[4:8], batch_size=2, progress=False)
            single: list[float] = []
            chunked: list[float] = []
            worst = 0.0
            for r in range(args.rounds):
                start = time.perf_counter()
                one = endpoint.predict(
                    images,
                    batch_size=len(images),
                    max_request_bytes=1 << 30,
                    concurrency=1,
                    timeout=600,
                    progress=False,
                )
                single.append(time.perf_counter() - start)
                start = time.perf_counter()
                many = endpoint.predict(images, timeout=600, progress=False)
                chunked.append(time.perf_counter() - start)
                worst = max(worst, difference(one, many))
                print(f"round {r + 1}: one request {single[-1]:.1f} s, chunked {chunked[-1]:.1f} s")
        finally:
            for entry in endpoints.list_endpoints():
                endpoints.delete_endpoint(entry.name)
    one_s, many_s = statistics.median(single), statistics.median(chunked)
    boxes = sum(len(p.labels) for p in many)
    print(
        f"median of {args.rounds}: one request {one_s:.1f} s ({len(images) / one_s:.1f} img/s), "
        f"chunked x{processes} {many_s:.1f} s ({len(images) / many_s:.1f} img/s): "
        f"{one_s / many_s:.2f}x; {boxes} boxes, largest difference {worst:.2g}"
    )
    if worst > 1e-3:
        print("predictions differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
