"""Save latency of the labeling page while the ML-assistance trainer trains.

A generated project (``--images`` images of 256x256, a quarter labeled) served on 127.0.0.1;
``--saves`` saves of one image's boxes through the page's HTTP API (``PUT /api/images/<id>``),
timed from the request to the answer: first with no trainer, then while the background trainer
(``nice 10``, one torch thread) trains ``ssdlite_mobilenet_v2`` from scratch. Prints p50 / p95
of each, as JSON.

    python benchmarks/bench_assist_latency.py [--images 40] [--saves 300]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from detectkit import LabeledDataset
from detectkit.labeling.assist import MLAssist
from detectkit.labeling.labels import box_json
from detectkit.project import Project
from detectkit.synthetic import make_dataset


def _saves(server: object, store: object, image: str, boxes: list[object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        revision = store.labels(image).revision  # type: ignore[attr-defined]
        body = json.dumps({"revision": revision, "state": "labeled", "boxes": boxes}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/images/{image}",  # type: ignore[attr-defined]
            data=body,
            method="PUT",
            headers={"X-Detectkit-Token": server.token, "Content-Type": "application/json"},  # type: ignore[attr-defined]
        )
        start = time.perf_counter()
        with urllib.request.urlopen(request) as answer:
            answer.read()
        out.append((time.perf_counter() - start) * 1000)
        time.sleep(0.02)
    return out


def _p(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[int(q) - 1], 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--saves", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", n_images=args.images, size=(256, 256), seed=1)
        keep = args.images // 4
        records = [
            r if k < keep else r.model_copy(update={"objects": ()}) for k, r in enumerate(data)
        ]
        project = Project.local(Path(tmp) / "project")
        params = {"number_of_epochs": 15, "min_size": 256, "max_size": 256}
        params |= {"advanced_settings": {"pretrained": False}}
        labeling = project.labeling.create(
            "bench",
            LabeledDataset(records, data.classes, root=data.root),
            classes=list(data.classes),
            ml_assist=MLAssist(
                min_labeled=keep + 1, time_budget_minutes=3, training_parameters=params
            ),
        )
        store = labeling.store
        image = store.entries[0].id
        boxes = [box_json(o) for o in data.records[0].objects]
        assistant = labeling.assistant
        assert assistant is not None
        server = labeling.serve()  # not due yet (min_labeled is one more): no trainer
        try:
            idle = _saves(server, store, image, boxes, args.saves)
            pid = assistant.start()
            end = time.monotonic() + 60
            while assistant.status().state != "training" and time.monotonic() < end:
                time.sleep(0.2)
            time.sleep(3.0)  # past the imports, into the epochs
            busy = _saves(server, store, image, boxes, args.saves)
            still = assistant.status().state
            os.kill(pid, signal.SIGKILL)  # measured; the run reads Failed
        finally:
            server.stop()
        print(
            json.dumps(
                {
                    "images": args.images,
                    "saves": args.saves,
                    "idle_p50_ms": _p(idle, 50),
                    "idle_p95_ms": _p(idle, 95),
                    "training_p50_ms": _p(busy, 50),
                    "training_p95_ms": _p(busy, 95),
                    "state_after_the_saves": still,
                }
            )
        )


if __name__ == "__main__":
    main()
