"""``Endpoint.predict`` of many images against a real local endpoint on 127.0.0.1.

The model (an MLflow pyfunc saved from code) decodes each image fully, waits a little (so
that requests overlap), and answers one box labelled ``<width>x<height>``, so every answer
can be matched to its image; a truncated JPEG makes it raise. A loopback proxy in front of
the server counts the requests, the images in each and the requests in flight, and answers
503 with ``Retry-After`` to the first ones it is told to.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detectkit.backends.local.endpoints import LocalEndpoints
from detectkit.backends.local.serve import ServerOptions
from detectkit.errors import EndpointError
from detectkit.resources import Endpoint, ModelInfo
from detectkit.scoring.chunks import PredictionBatch
from detectkit.settings.request import DeploymentSettings

pytestmark = pytest.mark.local

SLOW_ECHO = """
import base64, io, time
import mlflow
import pandas as pd
from PIL import Image


class SlowEcho(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        time.sleep(0.1)
        out = []
        for value in model_input["image"]:
            raw = value if isinstance(value, bytes) else base64.b64decode(value)
            with Image.open(io.BytesIO(raw)) as image:
                image.load()  # a truncated file fails here
                width, height = image.size
            box = {"topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}
            out.append({"boxes": [{"box": box, "label": f"{width}x{height}", "score": 0.9}]})
        return out


mlflow.models.set_model(SlowEcho())
"""


def jpeg(width: int, height: int = 9) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, "JPEG")
    return buf.getvalue()


def truncated_jpeg() -> bytes:
    """A JPEG whose header is intact (the client and the server's checks pass) but whose
    pixels are cut off (the model fails)."""
    noise = np.random.default_rng(0).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG")
    full = buf.getvalue()
    return full[: int(len(full) * 0.7)]


class Proxy:
    """A loopback HTTP proxy to the endpoint that records what passes through it."""

    def __init__(self, target_port: int, busy: int = 0, retry_after: str = "1") -> None:
        self.target_port = target_port
        self.busy = busy
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.sizes: list[int] = []  # images per request, in arrival order
        self.answered_503 = 0
        self.in_flight = 0
        self.max_in_flight = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    proxy.sizes.append(len(json.loads(body)["input_data"]["data"]))
                    if proxy.answered_503 < proxy.busy:
                        proxy.answered_503 += 1
                        busy = True
                    else:
                        busy = False
                        proxy.in_flight += 1
                        proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                if busy:
                    self._answer(503, {"Retry-After": proxy.retry_after}, b'{"error": {}}')
                    return
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=60)
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn.request("POST", self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    content = answer.read()
                    conn.close()
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1
                self._answer(answer.status, {}, content)

            def _answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    code = folder / "slow_echo.py"
    code.write_text(SLOW_ECHO, encoding="utf-8")
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(
        str(folder / "echo"), python_model=str(code), pip_requirements=["mlflow"]
    )
    return folder / "echo"


@pytest.fixture(scope="module")
def served(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, int, int]]:
    """A two-process endpoint ``cards``: (project root, its port, its pid)."""
    root = tmp_path_factory.mktemp("project")
    endpoints = LocalEndpoints(root, lambda m: Path(m.uri), options=ServerOptions(processes=2))
    info = ModelInfo(name="echo", version="1", uri=str(model_dir))
    endpoints.deploy(info, "cards", "blue", DeploymentSettings())
    record = json.loads((root / "endpoints/cards/endpoint.json").read_text())
    try:
        yield root, record["port"], record["pid"]
    finally:
        try:
            endpoints.delete_endpoint("cards")
        except Exception:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record["pid"], signal.SIGKILL)


def through(root: Path, proxy: Proxy, name: str) -> None:
    """Make endpoint ``name`` a copy of ``cards`` whose record points at the proxy."""
    folder = root / "endpoints" / name
    folder.mkdir(mode=0o700)
    shutil.copy(root / "endpoints/cards/keys.json", folder / "keys.json")
    record = json.loads((root / "endpoints/cards/endpoint.json").read_text())
    record.update(name=name, port=proxy.port)
    (folder / "endpoint.json").write_text(json.dumps(record))


def handle(root: Path, name: str, sleeps: list[float] | None = None) -> Endpoint:
    endpoints = LocalEndpoints(
        root,
        lambda m: Path(m.uri),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )
    return Endpoint(endpoints, endpoints.get_endpoint(name))  # type: ignore[arg-type]


def labels(preds: list[Any]) -> list[str]:
    return [str(p.labels[0]) for p in preds]


def test_concurrency_defaults_to_the_server_processes(served: tuple[Path, int, int]) -> None:
    root, _, _ = served
    endpoints = LocalEndpoints(root, lambda m: Path(m.uri))
    assert endpoints.endpoint_concurrency("cards", None) == 2
    assert endpoints.endpoint_concurrency("cards", "blue") == 2


def test_many_images_go_in_chunks_in_order_and_concurrently(
    served: tuple[Path, int, int],
) -> None:
    root, port, _ = served
    images = [jpeg(20 + i) for i in range(37)]
    with Proxy(port) as proxy:
        through(root, proxy, "chunked")
        endpoint = handle(root, "chunked")
        preds = endpoint.predict(images, batch_size=5, concurrency=3)
    assert type(preds) is list
    assert labels(preds) == [f"{20 + i}x9" for i in range(37)]
    assert sorted(proxy.sizes) == sorted([5] * 7 + [2])
    assert 1 < proxy.max_in_flight <= 3
    # the default: one request at a time per server process
    with Proxy(port) as proxy:
        through(root, proxy, "default")
        preds = handle(root, "default").predict(images, batch_size=4)
    assert labels(preds) == [f"{20 + i}x9" for i in range(37)]
    assert len(proxy.sizes) == 10 and proxy.max_in_flight == 2


def test_busy_answers_are_retried_after_retry_after(served: tuple[Path, int, int]) -> None:
    root, port, _ = served
    sleeps: list[float] = []
    with Proxy(port, busy=2, retry_after="1") as proxy:
        through(root, proxy, "busy")
        preds = handle(root, "busy", sleeps).predict([jpeg(30), jpeg(31)], batch_size=1)
    assert labels(preds) == ["30x9", "31x9"]
    assert proxy.answered_503 == 2 and len(proxy.sizes) == 4
    assert sleeps == [1.0, 1.0]


def test_a_server_busy_for_too_long_fails_with_the_count_of_retries(
    served: tuple[Path, int, int],
) -> None:
    root, port, _ = served
    sleeps: list[float] = []
    with Proxy(port, busy=100, retry_after="0") as proxy:
        through(root, proxy, "full")
        with pytest.raises(EndpointError, match=r"HTTP 503.*still 503 after 3 retries"):
            handle(root, "full", sleeps).predict(jpeg(30))
    assert len(proxy.sizes) == 4 and sleeps == [0.0, 0.0, 0.0]


def test_collect_returns_the_good_images_and_names_the_corrupt_one(
    served: tuple[Path, int, int], tmp_path: Path
) -> None:
    root, port, _ = served
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(truncated_jpeg())
    images: list[Any] = [jpeg(40 + i) for i in range(12)]
    images[7] = bad
    images.insert(3, b"\x00 not an image")
    with Proxy(port) as proxy:
        through(root, proxy, "collect")
        endpoint = handle(root, "collect")
        batch = endpoint.predict(images, batch_size=6, concurrency=2, errors="collect")
        sent = len(proxy.sizes)
        with pytest.raises(EndpointError, match="HTTP 400"):
            endpoint.predict(images[4:], batch_size=6)  # errors="raise": no split
        assert len(proxy.sizes) - sent == 2
    assert isinstance(batch, PredictionBatch)
    expected = [i for i in range(13) if i not in (3, 8)]  # the insert moved the bad file to 8
    assert batch.indices == expected
    assert labels(batch) == [f"{40 + (i if i < 3 else i - 1)}x9" for i in expected]
    assert [(f.index, f.source, f.error_type) for f in batch.failures] == [
        (3, "images[3]", "InvalidInputError"),
        (8, str(bad), "EndpointError"),
    ]
    assert batch.failures[1].status_code == 400
    # the failed request of 6 was split 3 + 3, then 1 + 2, then 1 + 1: only image 8 failed
    assert sent == 2 + 6
    assert not batch.ok and "failures=2" in repr(batch)
