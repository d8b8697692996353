"""Resident memory of one local endpoint server process over 10,000 small requests.

Deploys a tiny MLflow model (it decodes each image, as a detection model does) as a local
endpoint with 2 server processes, sends ``--requests`` requests of one small JPEG from one
client, and every ``--every`` requests prints the RSS of each server process (from /proc).

    python benchmarks/bench_endpoint_memory.py --requests 10000 --every 1000
    python benchmarks/bench_endpoint_memory.py --model ssdlite --size 160

``--model ssdlite`` serves a torch detection model instead (``ssdlite_mobilenet_v2`` with
random weights at ``--size``, saved as the local backend saves a trial), where allocator
growth would show.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from detectkit.backends.local.app import ServerOptions
from detectkit.backends.local.endpoints import LocalEndpoints
from detectkit.backends.local.processes import PIDS_FILE
from detectkit.records import ModelInfo
from detectkit.settings.request import DeploymentSettings

MODEL = """
import base64, io
import mlflow
import pandas as pd
from PIL import Image


class Decode(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        out = []
        for value in model_input["image"]:
            with Image.open(io.BytesIO(base64.b64decode(value))) as image:
                w, h = image.convert("RGB").size
            box = {"topX": 0.1, "topY": 0.1, "bottomX": 0.5, "bottomY": 0.5}
            out.append({"boxes": [{"box": box, "label": f"{w}x{h}", "score": 0.5}]})
        return out


mlflow.models.set_model(Decode())
"""


def _save_ssdlite(target: Path, size: int) -> None:
    import torch

    from detectkit.backends.local.models import build_model
    from detectkit.backends.local.pyfunc import save_model

    torch.manual_seed(0)
    classes = ["a", "b", "c"]
    model = build_model("ssdlite_mobilenet_v2", len(classes), pretrained=False, min_size=size)
    settings = {
        "model_name": "ssdlite_mobilenet_v2",
        "pretrained": False,
        "min_size": size,
        "max_size": size,
        "box_score_thresh": 0.3,
        "nms_iou_thresh": 0.5,
        "box_detections_per_img": 100,
    }
    saved = save_model(target, state_dict=model.state_dict(), classes=classes, settings=settings)
    assert saved.exists()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--model", choices=["decode", "ssdlite"], default="decode")
    parser.add_argument("--size", type=int, default=160, help="ssdlite input size")
    args = parser.parse_args()
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.model == "ssdlite":
            _save_ssdlite(folder / "m", args.size)
        else:
            (folder / "model.py").write_text(MODEL, encoding="utf-8")
            mlflow.pyfunc.save_model(
                str(folder / "m"), python_model=str(folder / "model.py"), pip_requirements=[]
            )
        endpoints = LocalEndpoints(
            folder / "project", lambda m: Path(m.uri), options=ServerOptions(processes=2)
        )
        endpoints.deploy(
            ModelInfo(name="m", version="1", uri=str(folder / "m")),
            "mem",
            "blue",
            DeploymentSettings(),
        )
        try:
            pids = json.loads((endpoints.folder / "mem" / PIDS_FILE).read_text())["processes"]
            buf = io.BytesIO()
            Image.effect_noise((96, 72), 40).convert("RGB").save(buf, "JPEG")
            data = [base64.b64encode(buf.getvalue()).decode()]
            body = json.dumps({"input_data": {"columns": ["image"], "data": data}}).encode()
            print(f"server processes {pids}; RSS MB per process")
            print(f"{'requests':>9} " + " ".join(f"{pid:>9}" for pid in pids) + "   seconds")
            started = time.monotonic()
            print(f"{0:>9} " + " ".join(f"{rss_mb(p):9.1f}" for p in pids) + f" {0:9.1f}")
            for i in range(1, args.requests + 1):
                endpoints.invoke("mem", body)
                if i % args.every == 0:
                    line = " ".join(f"{rss_mb(p):9.1f}" for p in pids)
                    print(f"{i:>9} {line} {time.monotonic() - started:9.1f}", flush=True)
        finally:
            endpoints.delete_endpoint("mem")


if __name__ == "__main__":
    main()
