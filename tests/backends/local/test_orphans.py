"""Issue 10 item 7 and issue 13 item 1: an endpoint's server processes die with their
supervisor, ``delete`` leaves none behind, and connections spread over the processes.

Real server processes on 127.0.0.1 serving a tiny MLflow model.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectkit.backends.local.app import ServerOptions
from detectkit.backends.local.endpoints import LocalEndpoints
from detectkit.backends.local.processes import PIDS_FILE, alive, stop
from detectkit.backends.local.serve import PROCESS_HEADER
from detectkit.records import ModelInfo
from detectkit.settings.request import DeploymentSettings

pytestmark = pytest.mark.local

TINY_MODEL = """
import mlflow
import pandas as pd


class Tiny(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> list:
        return [{"boxes": []} for _ in model_input["image"]]


mlflow.models.set_model(Tiny())
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow.pyfunc

    folder = tmp_path_factory.mktemp("tiny")
    code = folder / "tiny_model.py"
    code.write_text(TINY_MODEL, encoding="utf-8")
    mlflow.pyfunc.save_model(str(folder / "m"), python_model=str(code), pip_requirements=[])
    return folder / "m"


@pytest.fixture
def endpoints(tmp_path: Path) -> Iterator[LocalEndpoints]:
    local = LocalEndpoints(tmp_path, lambda m: Path(m.uri), options=ServerOptions(processes=2))
    try:
        yield local
    finally:
        for entry in local.list_endpoints():
            local.delete_endpoint(entry.name)


def deploy(
    endpoints: LocalEndpoints, model: Path, name: str = "cards"
) -> tuple[int, int, list[int]]:
    """(supervisor pid, port, server process pids) of a fresh 2-process endpoint."""
    endpoints.deploy(
        ModelInfo(name="tiny", version="1", uri=str(model)), name, "blue", DeploymentSettings()
    )
    record = json.loads((endpoints.folder / name / "endpoint.json").read_text())
    listed = json.loads((endpoints.folder / name / PIDS_FILE).read_text())
    assert listed["supervisor"] == record["pid"]
    assert len(listed["processes"]) == 2
    assert all(alive(pid) for pid in listed["processes"])
    return record["pid"], record["port"], listed["processes"]


def answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_gone(pids: list[int], seconds: float) -> float:
    started = time.monotonic()
    while any(alive(pid) for pid in pids):
        assert time.monotonic() - started < seconds, [p for p in pids if alive(p)]
        time.sleep(0.05)
    return time.monotonic() - started


def test_server_processes_die_with_a_killed_supervisor(
    endpoints: LocalEndpoints, tiny_model: Path
) -> None:
    supervisor, port, workers = deploy(endpoints, tiny_model)
    assert answers(port)
    os.kill(supervisor, signal.SIGKILL)
    wait_gone([supervisor, *workers], 5.0)
    assert not answers(port)
    assert endpoints.get_endpoint("cards").state == "Stopped"


def test_delete_after_a_supervisor_kill_leaves_no_process(
    endpoints: LocalEndpoints, tiny_model: Path
) -> None:
    supervisor, port, workers = deploy(endpoints, tiny_model)
    os.kill(supervisor, signal.SIGKILL)
    endpoints.delete_endpoint("cards")
    assert not any(alive(pid) for pid in [supervisor, *workers])
    assert not answers(port)
    assert not (endpoints.folder / "cards").exists()


def test_stop_kills_recorded_processes_outside_the_group(
    endpoints: LocalEndpoints, tiny_model: Path
) -> None:
    """A recorded server process that left the supervisor's group (so the group signal misses
    it) and whose supervisor is gone is still stopped through the processes file."""
    supervisor, _, workers = deploy(endpoints, tiny_model)
    os.kill(supervisor, signal.SIGSTOP)  # no more parent-death: the supervisor is only paused
    try:
        assert stop(supervisor, 5.0, endpoints.folder / "cards" / PIDS_FILE) == []
    finally:
        for pid in [supervisor, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not any(alive(pid) for pid in [supervisor, *workers])


def test_fresh_connections_reach_both_server_processes(
    endpoints: LocalEndpoints, tiny_model: Path
) -> None:
    supervisor, port, workers = deploy(endpoints, tiny_model)
    seen: list[int] = []
    for _ in range(32):  # all 32 on one process by chance: 2 ** -31
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        response = conn.getresponse()
        assert json.loads(response.read())["pid"] == supervisor
        seen.append(int(response.getheader(PROCESS_HEADER) or 0))
        conn.close()
    assert set(seen) == set(workers), seen


def test_the_supervisor_does_not_listen(endpoints: LocalEndpoints, tiny_model: Path) -> None:
    """No connection may wait on a socket that no server process accepts: only the server
    processes hold listening sockets on the port."""
    supervisor, port, workers = deploy(endpoints, tiny_model)
    if not hasattr(socket, "SO_REUSEPORT") or not Path("/proc/net/tcp").exists():
        pytest.skip("SO_REUSEPORT and /proc are Linux features")
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            listening.add(fields[9])  # inode
    owners = set()
    for pid in [supervisor, *workers]:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:[") and target[8:-1] in listening:
                owners.add(pid)
    assert owners == set(workers)
    assert len(listening) == 2
