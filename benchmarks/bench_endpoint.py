"""Local endpoint serving: detectkit's server versus ``mlflow models serve`` of the same model.

Saves two MLflow pyfunc models (``mlflow.pyfunc.save_model``, models from code) in a temporary
folder:

* ``decode``: decodes each image with Pillow and returns no boxes: the serving overhead alone
  (HTTP, JSON, base64, DataFrame, one image decode);
* ``ssdlite``: torchvision's SSDLite-320 (MobileNetV3, random weights, no download) on each
  image under ``torch.no_grad()``, answering normalized AutoML boxes: a real CPU model.

For each model it starts both servers on 127.0.0.1 once: detectkit's through
``LocalEndpoints.deploy`` (the path ``project.deploy`` takes: a detached server with its default
options, so one process for the torch model and one per CPU (up to 4) for the decode-only one,
key auth, micro-batching) and ``mlflow models serve -m <folder> --env-manager local`` (one uvicorn
worker, the model called in a thread per request). Then, in alternating rounds, closed-loop
clients (1 and 4 threads, one kept-alive connection each) post a 378x504 JPEG, one image per
request: ``{"input_data": ...}`` with the Bearer key to detectkit's ``/score``,
``{"dataframe_split": {"columns": ["image"], "data": [[<base64>]]}}`` to MLflow's
``/invocations`` (the body its pyfunc server wants for a DataFrame with an ``image`` column).
Reported: requests per second, p50 and p99 latency, the servers' CPU milliseconds per request
(``/proc`` user + system time of every process of each server, the least noisy number on a
shared machine), medians over rounds, and the ratios detectkit / MLflow; the targets are at
least 1.5x MLflow's throughput at 4 clients with p99 no worse for ``ssdlite``, and at least 2x
for ``decode``. Last, the RSS of detectkit's server processes (``/proc/<pid>/status`` VmRSS,
summed, and the growth of each) after 10 and after ``--memory-requests`` requests.

Everything talks to 127.0.0.1 only, counts are bounded, and the servers are stopped at the
end (also on Ctrl-C).

Run: ``python benchmarks/bench_endpoint.py [--models decode,ssdlite] [--rounds 3]
[--requests 1000] [--ssdlite-requests 40] [--memory-requests 1000] [--processes N]``
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from detectkit.backends.local.endpoints import LocalEndpoints
from detectkit.backends.local.serve import ServerOptions
from detectkit.resources import ModelInfo
from detectkit.settings.request import DeploymentSettings
from detectkit.synthetic import CARD_CLASSES, render_image

HOST = "127.0.0.1"

DECODE_MODEL = """
import base64, io
import mlflow
import pandas as pd
from PIL import Image


class DecodeOnly(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        out = []
        for value in model_input["image"]:
            raw = value if isinstance(value, bytes) else base64.b64decode(value)
            with Image.open(io.BytesIO(raw)) as image:
                image.load()
            out.append({"boxes": []})
        return out


mlflow.models.set_model(DecodeOnly())
"""

SSDLITE_MODEL = """
import base64, io
import mlflow
import pandas as pd
import torch
import torchvision
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

LABELS = ["hearts", "spades", "diamonds", "clubs"]


class SSDLite(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        torch.manual_seed(0)
        self.model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=len(LABELS) + 1,
            score_thresh=0.3, detections_per_img=100,
        ).eval()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        tensors, sizes = [], []
        for value in model_input["image"]:
            raw = value if isinstance(value, bytes) else base64.b64decode(value)
            image = Image.open(io.BytesIO(raw)).convert("RGB")
            sizes.append(image.size)
            tensors.append(pil_to_tensor(image).float().div_(255.0))
        with torch.no_grad():
            outputs = self.model(tensors)
        answers = []
        for (w, h), out in zip(sizes, outputs):
            boxes = []
            for (x1, y1, x2, y2), label, score in zip(
                out["boxes"].tolist(), out["labels"].tolist(), out["scores"].tolist()
            ):
                boxes.append({
                    "box": {"topX": x1 / w, "topY": y1 / h, "bottomX": x2 / w, "bottomY": y2 / h},
                    "label": LABELS[(label - 1) % len(LABELS)],
                    "score": score,
                })
            answers.append({"boxes": boxes})
        return answers


mlflow.models.set_model(SSDLite())
"""


# --------------------------------------------------------------------------- setup
def save_models(folder: Path, names: list[str]) -> dict[str, Path]:
    import mlflow.pyfunc

    sources = {"decode": DECODE_MODEL, "ssdlite": SSDLITE_MODEL}
    out = {}
    for name in names:
        code = folder / f"{name}_model.py"
        code.write_text(sources[name], encoding="utf-8")
        path = folder / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlflow.pyfunc.save_model(str(path), python_model=str(code), pip_requirements=["mlflow"])
        out[name] = path
    return out


def make_jpeg() -> bytes:
    pixels, _ = render_image(378, 504, CARD_CLASSES, np.random.default_rng(7), max_objects=3)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_mlflow(model: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model),
        "--env-manager", "local", "-h", HOST, "-p", str(port),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited:\n{log.read_text()[-2000:]}")
        try:
            status, _ = request(port, "GET", "/ping", None, {})
            if status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.3)
    stop_process(proc)
    raise RuntimeError("mlflow models serve did not answer /ping in 240 s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def request(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- load
class Target:
    """One server: where to post, what, with which headers."""

    def __init__(
        self, name: str, port: int, path: str, body: bytes, headers: dict[str, str], pids: list[int]
    ):
        self.name = name
        self.pids = pids
        self.port = port
        self.path = path
        self.body = body
        self.headers = {"Content-Type": "application/json", **headers}


def load(target: Target, clients: int, total: int) -> dict[str, float]:
    """``total`` requests from ``clients`` closed-loop threads; throughput and latencies."""
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, target.port, timeout=120)
        mine = []
        try:
            while True:
                with lock:
                    if next(counter, None) is None:
                        break
                start = time.perf_counter()
                conn.request("POST", target.path, body=target.body, headers=target.headers)
                response = conn.getresponse()
                content = response.read()
                mine.append(time.perf_counter() - start)
                if response.status != 200:
                    errors.append(f"{response.status} {content[:200]!r}")
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    cpu = cpu_seconds(target.pids)
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    cpu = cpu_seconds(target.pids) - cpu
    if errors:
        raise RuntimeError(f"{target.name}: {len(errors)} errors, first: {errors[0]}")
    lat = np.array(latencies) * 1000.0
    return {
        "rps": len(latencies) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "cpu_ms": cpu * 1000.0 / len(latencies),
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group (``mlflow models serve`` runs uvicorn as a child)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids``."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- main
def bench_model(
    name: str,
    model: Path,
    image: bytes,
    endpoints: LocalEndpoints,
    workdir: Path,
    *,
    rounds: int,
    requests: int,
    memory_requests: int,
    stops: list[Callable[[], None]],
) -> dict[str, object]:
    info = endpoints.deploy(
        ModelInfo(name=name, version="1", uri=str(model)), f"bench-{name}", "default",
        DeploymentSettings(),
    )  # fmt: skip
    stops.append(lambda: endpoints.delete_endpoint(info.name))
    record = endpoints._require(info.name)  # the benchmark reads the record for pid and port
    key = endpoints.endpoint_keys(info.name).primary.get_secret_value()
    proc, mport = start_mlflow(model, workdir / f"mlflow-{name}.log")
    stops.append(lambda: stop_process(proc))

    b64 = base64.b64encode(image).decode("ascii")
    ours = Target(
        "detectkit",
        record.port,
        "/score",
        json.dumps({"input_data": {"columns": ["image"], "data": [b64]}}).encode(),
        {"Authorization": f"Bearer {key}"},
        group_pids(record.pid),  # the supervisor and its server processes
    )
    theirs = Target(
        "mlflow",
        mport,
        "/invocations",
        json.dumps({"dataframe_split": {"columns": ["image"], "data": [[b64]]}}).encode(),
        {},
        group_pids(proc.pid),
    )
    status, answer = request(record.port, "POST", "/score", ours.body, ours.headers)
    status2, answer2 = request(mport, "POST", "/invocations", theirs.body, theirs.headers)
    assert status == 200 and status2 == 200, (status, answer[:200], status2, answer2[:200])
    boxes = len(json.loads(answer)[0]["boxes"])

    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for clients in (1, 4):
            for target in (ours, theirs):
                load(target, clients, max(clients * 4, 8))  # warm the connections and caches
                results.setdefault((target.name, clients), []).append(
                    load(target, clients, requests)
                )
    table: dict[str, object] = {"boxes_per_image": boxes}
    for (server, clients), runs in results.items():
        table[f"{server}_{clients}"] = {
            k: round(statistics.median(r[k] for r in runs), 1)
            for k in ("rps", "p50", "p99", "cpu_ms")
        }
    for clients in (1, 4):
        ours_r = table[f"detectkit_{clients}"]
        theirs_r = table[f"mlflow_{clients}"]
        assert isinstance(ours_r, dict) and isinstance(theirs_r, dict)
        table[f"ratio_rps_{clients}"] = round(ours_r["rps"] / theirs_r["rps"], 2)
        table[f"ratio_p99_{clients}"] = round(ours_r["p99"] / theirs_r["p99"], 2)

    if memory_requests:
        load(ours, 1, 10)
        before = {pid: rss_kib(pid) for pid in ours.pids}
        load(ours, 4, memory_requests)
        after = {pid: rss_kib(pid) for pid in ours.pids}
        table["processes"] = len(ours.pids)
        table["rss_mib_after_10"] = round(sum(before.values()) / 1024, 1)
        table[f"rss_mib_after_{memory_requests + 10}"] = round(sum(after.values()) / 1024, 1)
        table["rss_growth_mib_per_process"] = [
            round((after[pid] - before[pid]) / 1024, 2) for pid in ours.pids
        ]
        table["rss_mlflow_mib"] = round(sum(rss_kib(p) for p in theirs.pids) / 1024, 1)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="decode,ssdlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="per round, decode model")
    parser.add_argument("--ssdlite-requests", type=int, default=40, help="per round, ssdlite")
    parser.add_argument("--memory-requests", type=int, default=1000, help="0 to skip")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--processes", type=int, default=None, help="server processes")
    parser.add_argument("--workers", type=int, default=None, help="model threads (server)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (server)")
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]

    stops: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        workdir = Path(tmp)
        try:
            models = save_models(workdir, names)
            image = make_jpeg()
            print(f"image: 378x504 JPEG, {len(image)} bytes; cpus: {os.cpu_count()}")
            options = ServerOptions(
                max_batch=args.max_batch, threads=args.threads, processes=args.processes
            )
            if args.workers:
                options = options.model_copy(update={"workers": args.workers})
            print(f"server options: {options!r}")
            endpoints = LocalEndpoints(workdir / "project", lambda m: Path(m.uri), options=options)
            for name in names:
                requests = args.requests if name == "decode" else args.ssdlite_requests
                table = bench_model(
                    name, models[name], image, endpoints, workdir, rounds=args.rounds,
                    requests=requests,
                    memory_requests=args.memory_requests if name == "decode" else 0,
                    stops=stops,
                )  # fmt: skip
                print(f"\n== {name} ({requests} requests per run, {args.rounds} rounds)")
                for key, value in table.items():
                    print(f"  {key:<28} {value}")
                for stop in reversed(stops):
                    stop()
                stops.clear()
        finally:
            for stop in reversed(stops):
                try:
                    stop()
                except Exception as exc:  # keep stopping the others
                    print(f"cleanup: {exc!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
