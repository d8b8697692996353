"""Local endpoints: real scoring-server processes on 127.0.0.1 serving a tiny MLflow pyfunc.

The model (saved with ``mlflow.pyfunc.save_model`` from code) answers one box per image whose
label is the image's ``<width>x<height>``, so every answer can be matched to its request, and
raises on images 13 pixels wide, to see a model error. One server serves the module; the
lifecycle tests start their own.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit.backends.local.endpoints import EndpointRecord, LocalEndpoints
from detectkit.backends.local.serve import (
    NO_INPUT_DATA,
    ScoringRequestError,
    ServerOptions,
    create_app,
    normalize_output,
    parse_scoring_request,
)
from detectkit.errors import EndpointError, InvalidInputError, NotFoundError
from detectkit.resources import Endpoint, ModelInfo
from detectkit.settings.request import DeploymentSettings

pytestmark = pytest.mark.local

ECHO_MODEL = """
import base64, io
import mlflow
import pandas as pd
from PIL import Image


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        out = []
        for value in model_input["image"]:
            raw = value if isinstance(value, bytes) else base64.b64decode(value)
            with Image.open(io.BytesIO(raw)) as image:
                width, height = image.size
            if width == 13:
                raise ValueError(f"boom: cannot score a {width}-pixel-wide image")
            box = {"topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}
            out.append({"boxes": [{"box": box, "label": f"{width}x{height}", "score": 0.9}]})
        return out


mlflow.models.set_model(Echo())
"""
MAX_BODY = 1 << 20


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_with_big_exif() -> bytes:
    """A JPEG whose EXIF block (20 KB of comment) puts its size marker far from the start."""
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x9286] = "x" * 20_000  # UserComment
    Image.new("RGB", (33, 17), (10, 20, 30)).save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def body(*images: str) -> bytes:
    return json.dumps({"input_data": {"columns": ["image"], "data": list(images)}}).encode()


def post(
    port: int, payload: bytes, headers: dict[str, str], path: str = "/score"
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def info(version: str, path: Path) -> ModelInfo:
    return ModelInfo(name="echo", version=version, uri=str(path))


def stop_all(endpoints: LocalEndpoints) -> None:
    """Stop every server under the root, even if deleting fails."""
    for entry in endpoints.list_endpoints():
        try:
            endpoints.delete_endpoint(entry.name)
        except Exception:
            record = json.loads((endpoints.folder / entry.name / "endpoint.json").read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record["pid"], signal.SIGKILL)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    code = folder / "echo_model.py"
    code.write_text(ECHO_MODEL, encoding="utf-8")
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(
        str(folder / "echo"), python_model=str(code), pip_requirements=["mlflow"]
    )
    return folder / "echo"


@pytest.fixture(scope="module")
def served(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalEndpoints, Endpoint]]:
    root = tmp_path_factory.mktemp("project")
    options = ServerOptions(max_body_bytes=MAX_BODY)
    endpoints = LocalEndpoints(root, lambda m: Path(m.uri), options=options)
    try:
        created = endpoints.deploy(info("1", model_dir), "cards", "blue", DeploymentSettings())
        yield endpoints, Endpoint(endpoints, created)  # type: ignore[arg-type]
    finally:
        stop_all(endpoints)


@pytest.fixture
def port_key(served: tuple[LocalEndpoints, Endpoint]) -> tuple[int, str]:
    endpoints, endpoint = served
    assert endpoint.scoring_uri is not None
    port = int(endpoint.scoring_uri.rsplit(":", 1)[1].split("/")[0])
    return port, endpoints.endpoint_keys("cards").primary.get_secret_value()


# ------------------------------------------------------------------ the contract, no server
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (body(b64(png(3, 2))), 1),
        (json.dumps({"input_data": {"data": [[b64(png(3, 2))]]}}).encode(), 1),  # split rows
        (body(base64.encodebytes(png(40, 30)).decode(), b64(png(2, 2))), 2),  # line breaks
        (body(b64(jpeg_with_big_exif())), 1),  # the header lies past the decoded prefix
    ],
)
def test_parse_accepts_contract_shapes(payload: bytes, expected: int) -> None:
    assert len(parse_scoring_request(payload)) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"{}", NO_INPUT_DATA),
        (b'{"dataframe_split": {}}', "got keys ['dataframe_split']"),
        (b'{"input_data": []}', "input_data: expected an object, got a list"),
        (b'{"input_data": {"data": "abc"}}', "input_data.data: expected a list"),
        (b'{"input_data": {"data": []}}', "expected at least one image"),
        (b'{"input_data": {"columns": ["img"], "data": ["x"]}}', "input_data.columns"),
        (b'{"input_data": {"data": [7]}}', "input_data.data[0]: expected a base64 string"),
        (body(b64(png(2, 2)), "@@not base64@@"), "input_data.data[1]: not valid base64"),
        (body(b64(png(2, 2)) + "é"), "not valid base64 (character 'é' at"),
        (body(b64(png(9, 9))[:-8] + "*" + b64(png(9, 9))[-7:]), "not valid base64 (character '*'"),
        (body("QUJD" + "=" + "QUJD"), "not valid base64 ('=' padding at 4)"),
        (body(b64(png(2, 2))[:-1]), "expected a multiple of 4"),
        (body(b64(b"hello, not an image")), "input_data.data[0]: not an image"),
        (body(b64(png(64, 64))[:12]), "input_data.data[0]: not an image"),  # cut in the header
    ],
)
def test_parse_names_the_problem(payload: bytes, message: str) -> None:
    with pytest.raises(ScoringRequestError) as caught:
        parse_scoring_request(payload)
    assert caught.value.status == 400
    assert message in caught.value.message


def test_normalize_output_reads_dataframes_and_json_strings() -> None:
    import pandas as pd

    frame = pd.DataFrame({"boxes": ['[{"label": "a"}]', "[]"]})
    assert normalize_output(frame, 2) == [{"boxes": [{"label": "a"}]}, {"boxes": []}]
    with pytest.raises(ValueError, match="2 answers for 3 images"):
        normalize_output([{}, {}], 3)
    with pytest.raises(ValueError, match="returned str"):
        normalize_output("nope", 1)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        ServerOptions(max_batch=0)
    with pytest.raises(ValueError, match="processes"):
        ServerOptions(processes=0)


@pytest.mark.parametrize(
    ("cpus", "torch_model", "given", "expected"),
    [
        (2, True, {}, (2, 1, 1)),  # torch: a process per CPU, one model and one torch thread
        (2, False, {}, (2, 0, 1)),  # plain Python: a process per CPU, the model on the loop
        (16, False, {}, (4, 0, 1)),  # at most 4 processes by default
        (1, False, {}, (1, 1, 1)),  # one CPU: one process, one model thread
        (8, False, {"processes": 1}, (1, 2, 3)),  # one process: decodes beside the loop
        (8, True, {"processes": 1}, (1, 1, 7)),  # one torch process: all CPUs but the loop's
        (8, True, {"processes": 3, "workers": 2}, (3, 2, 1)),  # what is given is kept
    ],
)
def test_process_and_thread_counts_follow_the_model_and_the_machine(
    monkeypatch: pytest.MonkeyPatch,
    cpus: int,
    torch_model: bool,
    given: dict[str, int],
    expected: tuple[int, int, int],
) -> None:
    from detectkit.backends.local import serve

    monkeypatch.setattr(serve, "cpu_count", lambda: cpus)
    resolved = serve._resolve_options(ServerOptions(**given), torch_model=torch_model)
    assert (resolved.processes, resolved.workers, resolved.threads) == expected


def test_forked_torch_processes_refuse_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from detectkit.backends.local import serve
    from detectkit.errors import DetectkitError

    monkeypatch.setattr(serve, "cpu_count", lambda: 8)
    with pytest.raises(DetectkitError, match="got threads=2; use processes=1"):
        serve._resolve_options(ServerOptions(processes=2, threads=2), torch_model=True)
    plain = serve._resolve_options(ServerOptions(processes=2, threads=2), torch_model=False)
    assert plain.threads == 2  # no torch, no forked pool


def test_modules_import_light() -> None:
    code = (
        "import sys, detectkit.backends.local.endpoints, detectkit.backends.local.serve\n"
        "heavy = {'fastapi', 'uvicorn', 'mlflow', 'pandas', 'torch'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_model_folder_is_refused_before_starting(tmp_path: Path) -> None:
    endpoints = LocalEndpoints(tmp_path, lambda m: Path(m.uri))
    with pytest.raises(NotFoundError, match="no MLflow model folder"):
        endpoints.deploy(info("1", tmp_path / "nope"), "cards", "blue", DeploymentSettings())
    assert endpoints.list_endpoints() == []
    with pytest.raises(NotFoundError, match="no local endpoint named 'cards'"):
        endpoints.get_endpoint("cards")


# ------------------------------------------------------------------ the app, in-process model
@contextlib.contextmanager
def app_server(predict: Any, options: ServerOptions) -> Iterator[int]:
    """``create_app(predict)`` served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(predict, options=options), log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def widths(images: list[str]) -> list[int]:
    return [Image.open(io.BytesIO(base64.b64decode(v))).width for v in images]


def post_all(
    port: int, payloads: list[bytes], headers: dict[str, str] | None = None
) -> list[tuple[int, Any]]:
    """Post every payload at once, one thread each; the answers in order."""
    answers: list[tuple[int, Any]] = [(0, None)] * len(payloads)

    def one(i: int) -> None:
        answers[i] = post(
            port, payloads[i], {"Content-Type": "application/json", **(headers or {})}
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # in this order
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.parametrize("workers", [1, 0], ids=["model-thread", "on-the-event-loop"])
def test_queued_requests_share_one_model_call_and_a_bad_one_fails_alone(workers: int) -> None:
    calls: list[list[int]] = []

    def predict(images: list[str]) -> list[Any]:
        sizes = widths(images)
        calls.append(sizes)
        time.sleep(0.3)  # the others queue meanwhile
        if 13 in sizes:
            raise ValueError("boom")
        return [{"boxes": [], "width": w} for w in sizes]

    with app_server(predict, ServerOptions(workers=workers, max_batch=8)) as port:
        answers = post_all(port, [body(b64(png(w, 4))) for w in (3, 4, 5, 13, 6)])
    assert [status for status, _ in answers] == [200, 200, 200, 500, 200]
    assert [a[0]["width"] for s, a in answers if s == 200] == [3, 4, 5, 6]
    assert answers[3][1]["error"]["message"] == "the model raised ValueError: boom"
    # the requests that queued while the first call ran went in one call; it failed on 13
    # and was retried request by request
    batch = next(c for c in calls if 13 in c and len(c) > 1)
    assert len(batch) >= 3
    retried = calls[calls.index(batch) + 1 :]
    assert sorted(retried) == sorted([w] for w in batch)


def test_a_slow_model_answers_408_and_a_full_queue_429() -> None:
    def predict(images: list[str]) -> list[Any]:
        time.sleep(1.0 if 17 in widths(images) else 0.2)
        return [{"boxes": []} for _ in images]

    options = ServerOptions(workers=1, max_batch=1, max_pending=1, request_timeout_s=0.6)
    with app_server(predict, options) as port:
        status, answer = post(port, body(b64(png(17, 4))), {"Content-Type": "application/json"})
        assert (status, answer["error"]["code"]) == (408, "RequestTimeout")
        assert "upstream request timeout" in answer["error"]["message"]
        time.sleep(0.5)  # the slow call ends
        answers = post_all(port, [body(b64(png(w, 4))) for w in (3, 4, 5)])
        assert [status for status, _ in answers] == [200, 200, 429]
        assert post(port, body(b64(png(3, 4))), {})[0] == 200


# ------------------------------------------------------------------ a served model
def test_predict_round_trip(served: tuple[LocalEndpoints, Endpoint]) -> None:
    _, endpoint = served
    assert endpoint.state == "Succeeded"
    assert endpoint.traffic == {"blue": 100}
    assert endpoint.scoring_uri is not None
    assert endpoint.scoring_uri.startswith("http://127.0.0.1:")
    predictions = endpoint.predict([png(40, 30), png(64, 48)])
    assert [p.labels.tolist() for p in predictions] == [["40x30"], ["64x48"]]
    assert [p.size for p in predictions] == [(40, 30), (64, 48)]
    assert predictions[1].to_pixels()[0].tolist() == pytest.approx([6.4, 9.6, 32.0, 28.8])


def test_predict_takes_a_batch_array_as_build_request_does(
    served: tuple[LocalEndpoints, Endpoint],
) -> None:
    """One image-list rule: ``Endpoint.predict`` once refused an ``(n, h, w, 3)`` array that
    ``build_request`` splits ("images[0]: expected an image array (height, width, 3), got
    shape (2, 4, 6, 3)")."""
    import numpy as np

    from detectkit.scoring import build_request

    _, endpoint = served
    batch = np.zeros((2, 4, 6, 3), np.uint8)
    assert len(build_request(batch)["input_data"]["data"]) == 2
    predictions = endpoint.predict(batch)
    assert [p.labels.tolist() for p in predictions] == [["6x4"], ["6x4"]]
    assert [p.size for p in predictions] == [(6, 4), (6, 4)]
    with pytest.raises(InvalidInputError, match="expected at least one image"):
        endpoint.predict([])


def test_key_file_is_private(served: tuple[LocalEndpoints, Endpoint]) -> None:
    endpoints, _ = served
    folder = endpoints.folder / "cards"
    assert (folder / "keys.json").stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    keys = endpoints.endpoint_keys("cards")
    assert keys.secondary is not None
    assert len(keys.primary.get_secret_value()) >= 40
    assert keys.primary.get_secret_value() not in repr(keys)


def test_concurrent_load_has_no_errors(served: tuple[LocalEndpoints, Endpoint]) -> None:
    endpoints, _ = served
    failures: list[str] = []

    def client(n: int) -> None:
        for i in range(100):
            width, height = 20 + n, 10 + i % 7
            try:
                answer = json.loads(endpoints.invoke("cards", body(b64(png(width, height)))))
                label = answer[0]["boxes"][0]["label"]
                if label != f"{width}x{height}":
                    failures.append(f"client {n} request {i}: got {label}")
            except Exception as exc:
                failures.append(f"client {n} request {i}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


BAD_REQUESTS = [
    # (name, body, extra headers, status, message fragment)
    ("not json", b"{oops", {}, 400, "not valid JSON"),
    ("no input_data", b'{"data": []}', {}, 400, NO_INPUT_DATA),
    ("data not a list", b'{"input_data": {"data": {}}}', {}, 400, "expected a list"),
    ("empty data", b'{"input_data": {"data": []}}', {}, 400, "at least one image"),
    ("bad base64", body("%%%"), {}, 400, "input_data.data[0]: not valid base64"),
    ("not an image", body(b64(png(4, 4)), b64(b"GIF? no")), {}, 400, "data[1]: not an image"),
    ("too large", body("A" * MAX_BODY), {}, 413, f"limit of {MAX_BODY} bytes"),
    ("content type", body(b64(png(4, 4))), {"Content-Type": "text/plain"}, 415, "text/plain"),
    ("model error", body(b64(png(13, 5))), {}, 500, "ValueError: boom"),
]


@pytest.mark.parametrize(
    ("payload", "headers", "status", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(
    port_key: tuple[int, str], payload: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    port, key = port_key
    sent = {"Content-Type": "application/json", "Authorization": f"Bearer {key}", **headers}
    got, answer = post(port, payload, sent)
    assert got == status
    assert message in answer["error"]["message"]
    assert "Traceback" not in answer["error"]["message"]
    ok, answer = post(port, body(b64(png(5, 6))), sent | {"Content-Type": "application/json"})
    assert (ok, answer[0]["boxes"][0]["label"]) == (200, "5x6")


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic abc"])
def test_score_needs_the_key(port_key: tuple[int, str], auth: str | None) -> None:
    port, _ = port_key
    headers = {"Content-Type": "application/json"} | ({"Authorization": auth} if auth else {})
    status, answer = post(port, body(b64(png(5, 6))), headers)
    assert status == 401
    assert answer["error"]["code"] == "Unauthorized"


def test_health_needs_no_key(port_key: tuple[int, str]) -> None:
    port, _ = port_key
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["status"] == "Healthy"
    conn.close()


def test_invoke_errors_carry_status_and_hint(served: tuple[LocalEndpoints, Endpoint]) -> None:
    endpoints, endpoint = served
    with pytest.raises(EndpointError) as caught:
        endpoint.predict(png(13, 5))
    assert caught.value.status_code == 500
    assert "boom" in str(caught.value)
    assert "endpoint.logs()" in str(caught.value)
    assert "ValueError: boom" in endpoint.logs(lines=200)  # the traceback is in the log
    with pytest.raises(NotFoundError, match="no deployment 'green'"):
        endpoint.predict(png(5, 5), deployment="green")
    with pytest.raises(NotFoundError, match="no deployment 'green'"):
        endpoint.set_traffic({"green": 100})
    assert endpoint.set_traffic({"blue": 100}).traffic == {"blue": 100}
    with pytest.raises(InvalidInputError):
        endpoints.get_endpoint("../escape")


# ------------------------------------------------------------------ lifecycle
def test_lifecycle_outlives_the_handle_redeploys_and_deletes(
    model_dir: Path, tmp_path: Path
) -> None:
    first = LocalEndpoints(tmp_path, lambda m: Path(m.uri))
    try:
        created = first.deploy(info("1", model_dir), "shelf", "blue", DeploymentSettings())
        key = first.endpoint_keys("shelf").primary.get_secret_value()
        old_pid = json.loads((tmp_path / "endpoints/shelf/endpoint.json").read_text())["pid"]

        # another Python process finds it by name and scores through it
        again = LocalEndpoints(tmp_path, lambda m: Path(m.uri))
        found = Endpoint(again, again.get_endpoint("shelf"))  # type: ignore[arg-type]
        assert (found.state, found.scoring_uri, found.info.model) == (
            "Succeeded",
            created.scoring_uri,
            "echo:1",
        )
        assert [e.name for e in again.list_endpoints()] == ["shelf"]
        assert found.predict(png(7, 8))[0].labels.tolist() == ["7x8"]
        assert "serving" in found.logs()

        # redeploying replaces the server; the keys stay
        replaced = again.deploy(info("2", model_dir), "shelf", "green", DeploymentSettings())
        record = json.loads((tmp_path / "endpoints/shelf/endpoint.json").read_text())
        assert (replaced.model, replaced.traffic) == ("echo:2", {"green": 100})
        assert record["pid"] != old_pid
        assert not Path(f"/proc/{old_pid}").exists() or _zombie_or_gone(old_pid)
        assert again.endpoint_keys("shelf").primary.get_secret_value() == key
        # the first handle follows the move to the new port
        assert json.loads(first.invoke("shelf", body(b64(png(9, 9)))))[0]["boxes"]

        # deleting stops the live server and removes its folder
        pid = record["pid"]
        found.delete()
        assert _zombie_or_gone(pid)
        assert not (tmp_path / "endpoints/shelf").exists()
        assert again.list_endpoints() == []
        with pytest.raises(NotFoundError):
            again.get_endpoint("shelf")
    finally:
        stop_all(first)


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.add(int(stat.parent.name))
    return found


@pytest.mark.skipif(not hasattr(os, "fork"), reason="several processes need fork")
def test_several_processes_share_the_port_restart_and_stop_together(
    model_dir: Path, tmp_path: Path
) -> None:
    endpoints = LocalEndpoints(tmp_path, lambda m: Path(m.uri), options=ServerOptions(processes=2))
    try:
        endpoints.deploy(info("1", model_dir), "pair", "blue", DeploymentSettings())
        record = json.loads((tmp_path / "endpoints/pair/endpoint.json").read_text())
        supervisor, port = record["pid"], record["port"]
        key = endpoints.endpoint_keys("pair").primary.get_secret_value()
        deadline = time.monotonic() + 30
        while len(_children(supervisor)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        first = _children(supervisor)
        assert len(first) == 2
        auth = {"Authorization": f"Bearer {key}"}
        payloads = [body(b64(png(20 + i, 6))) for i in range(16)]
        results = post_all(port, payloads, auth)
        assert [s for s, _ in results] == [200] * 16, [r for r in results if r[0] != 200][:2]
        assert [answer[0]["boxes"][0]["label"] for _, answer in results] == [
            f"{20 + i}x6" for i in range(16)
        ]
        for _ in range(4):  # whichever process answers, it names the supervisor
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/health")
            assert json.loads(conn.getresponse().read())["pid"] == supervisor
            conn.close()

        victim = min(first)
        os.kill(victim, signal.SIGKILL)  # a crashed process is replaced
        deadline = time.monotonic() + 30
        while (victim in _children(supervisor) or len(_children(supervisor)) < 2) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        second = _children(supervisor)
        assert len(second) == 2 and victim not in second
        assert all(status == 200 for status, _ in post_all(port, payloads[:4], auth))

        endpoints.delete_endpoint("pair")
        assert _zombie_or_gone(supervisor)
        assert all(_zombie_or_gone(pid) for pid in first | second)
    finally:
        stop_all(endpoints)


def test_cli_serve_runs_in_the_foreground_until_interrupted(model_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "detectkit", "serve", str(model_dir), "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--processes", "2"], stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and server.poll() is None:
            with contextlib.suppress(OSError):
                status, answer = post(port, body(b64(png(31, 7))), {})
                if status == 200:
                    break
            time.sleep(0.2)
        assert status == 200 and answer[0]["boxes"][0]["label"] == "31x7"  # no key: none needed
        children = _children(server.pid)
        assert len(children) == 2
        os.kill(server.pid, signal.SIGINT)  # Ctrl-C
        assert server.wait(timeout=30) == 0
        assert all(_zombie_or_gone(pid) for pid in children)
        assert server.stderr is not None
        log = server.stderr.read().decode()
        assert "NO authentication" in log and "supervising 2 server processes" in log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        if server.stderr is not None:
            server.stderr.close()

    bad = subprocess.run([*command, "--processes", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "expected 1 or more, got 0" in bad.stderr


def test_a_dead_server_is_reported_stopped_with_its_log(tmp_path: Path) -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path / "endpoints" / "old"
    folder.mkdir(parents=True)
    now = datetime.now(timezone.utc)
    record = EndpointRecord(
        name="old", deployment="blue", model="echo:1", model_uri="x", model_path="x",
        port=port, pid=done.pid, traffic={"blue": 100}, created=now, updated=now,
    )  # fmt: skip
    (folder / "endpoint.json").write_text(record.model_dump_json())
    (folder / "keys.json").write_text('{"primary": "k1", "secondary": "k2"}')
    (folder / "server.log").write_text("INFO serving\nERROR out of memory: killed\n")
    endpoints = LocalEndpoints(tmp_path, lambda m: Path(m.uri))
    endpoint = Endpoint(endpoints, endpoints.get_endpoint("old"))  # type: ignore[arg-type]
    assert endpoint.state == "Stopped"
    assert endpoint.info.error is not None
    assert "out of memory: killed" in endpoint.info.error
    assert "deploy again" in endpoint.info.error
    with pytest.raises(EndpointError, match="is not running") as caught:
        endpoint.predict(png(7, 8))
    assert "out of memory" in str(caught.value)
    assert "project.deploy('echo:1', endpoint='old')" in str(caught.value)
    endpoint.delete()
    assert not folder.exists()


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: {}\n", encoding="utf-8")  # no python_function
    endpoints = LocalEndpoints(tmp_path, lambda m: Path(m.uri))
    try:
        with pytest.raises(EndpointError, match="exited while starting") as caught:
            endpoints.deploy(info("1", broken), "broken", "blue", DeploymentSettings())
        assert "python_function" in str(caught.value)  # MLflow's own error, from the log
        assert endpoints.list_endpoints() == []
    finally:
        stop_all(endpoints)


def _zombie_or_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")
