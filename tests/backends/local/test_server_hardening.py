"""Issue 10 item 8: every bad request gets a 4xx answer in the one JSON error shape, within
bounded memory and time. Real server processes on 127.0.0.1 serving a tiny model that decodes
the pixels (as a detection model does).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit.backends.local.app import ServerOptions
from detectkit.backends.local.endpoints import LocalEndpoints
from detectkit.backends.local.processes import PIDS_FILE
from detectkit.records import ModelInfo
from detectkit.settings.request import DeploymentSettings

pytestmark = pytest.mark.local

DECODING_MODEL = """
import base64, io
import mlflow
import pandas as pd
from PIL import Image


class Decode(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        out = []
        for value in model_input["image"]:
            with Image.open(io.BytesIO(base64.b64decode(value))) as image:
                image.convert("RGB")
            out.append({"boxes": []})
        return out


mlflow.models.set_model(Decode())
"""
OPTIONS = ServerOptions(
    processes=2, max_image_pixels=1_000_000, max_request_pixels=1_500_000, read_timeout_s=1.0
)


def image(width: int, height: int, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, fmt)
    return buf.getvalue()


def body(*images: bytes) -> bytes:
    data = [base64.b64encode(i).decode() for i in images]
    return json.dumps({"input_data": {"columns": ["image"], "data": data}}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, list[int]]]:
    import mlflow.pyfunc

    folder = tmp_path_factory.mktemp("decode")
    (folder / "decode_model.py").write_text(DECODING_MODEL, encoding="utf-8")
    mlflow.pyfunc.save_model(
        str(folder / "m"), python_model=str(folder / "decode_model.py"), pip_requirements=[]
    )
    endpoints = LocalEndpoints(folder / "project", lambda m: Path(m.uri), options=OPTIONS)
    endpoints.deploy(
        ModelInfo(name="d", version="1", uri=str(folder / "m")), "e", "blue", DeploymentSettings()
    )
    try:
        record = json.loads((endpoints.folder / "e/endpoint.json").read_text())
        key = endpoints.endpoint_keys("e").primary.get_secret_value()
        pids = json.loads((endpoints.folder / "e" / PIDS_FILE).read_text())["processes"]
        yield record["port"], key, pids
    finally:
        endpoints.delete_endpoint("e")


def call(
    port: int,
    payload: bytes,
    key: str | None,
    method: str = "POST",
    path: str = "/score",
    auth: str | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = auth if auth is not None else f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=payload if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        assert response.getheader("content-type") == "application/json"
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def assert_error(answer: tuple[int, Any], status: int, code: str, *words: str) -> None:
    got, data = answer
    assert got == status, data
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}
    assert data["error"]["code"] == code, data
    for word in words:
        assert word in data["error"]["message"], data


def test_a_good_request_still_scores(server: tuple[int, str, list[int]]) -> None:
    port, key, _ = server
    assert call(port, body(image(40, 30)), key) == (200, [{"boxes": []}])


def test_pixels_are_bounded_per_image_and_per_request(server: tuple[int, str, list[int]]) -> None:
    port, key, _ = server
    assert_error(
        call(port, body(image(1001, 1000)), key),
        413,
        "ImageTooLarge",
        "data[0]",
        "1,001,000 pixels",
        "1,000,000",
        "max_image_pixels",
    )
    assert_error(
        call(port, body(image(900, 900), image(900, 900)), key),
        413,
        "RequestTooLarge",
        "data[1]",
        "1,500,000",
        "max_request_pixels",
    )


def high_water_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_10000_pixel_jpeg_is_refused_before_decoding(server: tuple[int, str, list[int]]) -> None:
    """A 10000x10000 JPEG decodes to 300 MB of RGB (several GB in a model): the server reads
    its header only. Peak memory of both server processes grows by under 30 MB."""
    port, key, pids = server
    if not Path("/proc/self/status").exists():
        pytest.skip("reads /proc")
    big = image(10_000, 10_000, "JPEG")
    before = {pid: high_water_kb(pid) for pid in pids}
    for _ in range(4):
        assert_error(call(port, body(big), key), 413, "ImageTooLarge", "100,000,000 pixels")
    growth = max(high_water_kb(pid) - before[pid] for pid in pids)
    assert growth < 30_000, f"peak memory grew by {growth} kB"


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((320, 240), 60).convert("RGB").save(buf, "JPEG")
    data = buf.getvalue()
    return data[: len(data) // 2]  # the header is whole, half the scan is missing


def corrupt_png() -> bytes:
    """A PNG whose header is fine and whose pixel data (IDAT) is not zlib data."""
    data = bytearray(image(64, 48))
    at = data.index(b"IDAT")
    length = int.from_bytes(data[at - 4 : at], "big")
    chunk = b"IDAT" + b"\x07" * length
    data[at : at + 4 + length + 4] = chunk + zlib.crc32(chunk).to_bytes(4, "big")
    return bytes(data)


@pytest.mark.parametrize("make", [truncated_jpeg, corrupt_png])
def test_undecodable_pixels_are_a_400(server: tuple[int, str, list[int]], make: Any) -> None:
    port, key, _ = server
    assert_error(
        call(port, body(image(20, 20), make()), key),
        400,
        "InvalidImage",
        "data[1]",
        "does not decode",
    )


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b'{"input_data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"input_data": {"data": [' + b"9" * 5000 + b"]}}", "number too long"),
    ],
)
def test_hostile_json_is_a_400(
    server: tuple[int, str, list[int]], payload: bytes, words: str
) -> None:
    port, key, pids = server
    before = max(high_water_kb(pid) for pid in pids)
    assert_error(call(port, payload, key), 400, "InvalidJson", words)
    assert max(high_water_kb(pid) for pid in pids) - before < 50_000


@pytest.mark.parametrize("auth", ["Bearer  {key}", "Bearer {key}x", "Bearer {key} x", "{key}"])
def test_only_the_exact_key_is_accepted(server: tuple[int, str, list[int]], auth: str) -> None:
    port, key, _ = server
    answer = call(port, body(image(8, 8)), key, auth=auth.format(key=key))
    assert_error(answer, 401, "Unauthorized")


def test_every_answer_has_the_error_shape(server: tuple[int, str, list[int]]) -> None:
    port, key, _ = server
    assert_error(call(port, b"", key, method="GET", path="/nope"), 404, "NotFound", "/score")
    assert_error(call(port, b"", key, method="GET", path="/score"), 405, "MethodNotAllowed")
    assert_error(call(port, b"{}", key, path="/health"), 405, "MethodNotAllowed")


def test_slow_headers_are_disconnected(server: tuple[int, str, list[int]]) -> None:
    """200 clients trickling their headers are disconnected after read_timeout_s (1 s here),
    and a good request is answered meanwhile."""
    port, key, _ = server
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        for sock in slow:
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")
            sock.settimeout(0.05)
        assert call(port, body(image(16, 16)), key)[0] == 200
        started = time.monotonic()
        open_ = list(slow)
        while open_ and time.monotonic() - started < 6.0:
            for sock in list(open_):
                try:
                    sock.sendall(b"X")  # one byte more: it must not reset the bound
                    if sock.recv(100) == b"":
                        open_.remove(sock)
                except TimeoutError:
                    pass
                except OSError:
                    open_.remove(sock)
            time.sleep(0.2)
        assert not open_, f"{len(open_)} slow connections still open after 6 s"
    finally:
        for sock in slow:
            sock.close()


def test_a_slow_body_is_a_408(server: tuple[int, str, list[int]]) -> None:
    port, key, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"input_data"'
        )
        started = time.monotonic()
        answer = sock.recv(65536)
        assert time.monotonic() - started < 5.0
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(content)["error"]["code"] == "RequestTimeout"
