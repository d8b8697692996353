"""Local online endpoints: scoring-server processes on 127.0.0.1 that outlive their starter.

Each endpoint lives in ``<root>/endpoints/<name>/`` (mode 0700)::

    endpoint.json   the record: name, deployment, model, port, pid, traffic, created
    keys.json       primary and secondary keys (mode 0600), kept across redeploys
    server.log      the server's stdout and stderr, appended to by every deploy

:meth:`LocalEndpoints.deploy` starts ``python -m detectkit.backends.local.serve --detach``
(see :mod:`detectkit.backends.local.serve`), which forks a server in its own session and
exits: the server keeps running after this Python process ends, and any later process finds
it again by name through the record. Redeploying a name starts the new server first and stops
the old one only once the new one answers ``/health`` (a failed redeploy leaves the old one
serving, as on Azure); the port may change, and ``invoke`` follows the record.

An endpoint has one deployment locally: its traffic is ``{deployment: 100}``, and
``set_traffic`` only records a split naming that deployment. Deployment settings that have no
meaning on one machine (instance type and count, probes) are ignored;
``request_timeout_ms`` becomes the server's per-request timeout (408 past it) and
``environment_variables`` are set in the server's environment.

:meth:`LocalEndpoints.invoke` is the one retry layer of local scoring: 429 and 503 answers
and reset connections (a server process restarting) are retried with the backoff of
:mod:`detectkit.scoring.chunks`, honouring ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from detectkit.backends.local.app import ServerOptions, cpu_count
from detectkit.backends.local.processes import (
    PIDS_FILE,
    SERVER_MODULE,
    alive,
    health,
    option_args,
    stop,
    tail,
)
from detectkit.errors import (
    DetectkitError,
    EndpointError,
    InvalidInputError,
    NotFoundError,
    OperationTimeoutError,
)
from detectkit.records import EndpointInfo, EndpointKeys, ModelInfo
from detectkit.scoring.chunks import MAX_RETRIES, RETRY_STATUSES, retry_delay

if TYPE_CHECKING:
    from detectkit.settings.request import DeploymentSettings

__all__ = ["EndpointRecord", "LocalEndpoints"]

#: Seconds :meth:`LocalEndpoints.deploy` waits for a new server to answer ``/health``.
START_TIMEOUT = 180.0
#: Seconds :meth:`LocalEndpoints.delete_endpoint` waits after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0
_HOST = "127.0.0.1"
_LOG_ROTATE_BYTES = 8 << 20
#: Larger requests get a connection each, so that they spread over the server processes.
_FRESH_CONNECTION_BYTES = 256 << 10

_HINTS: dict[int, str] = {
    400: "the request does not follow the scoring contract; the message names the field",
    401: "the server refused the key: redeploy to restart it with the keys in keys.json",
    404: "the server does not know this path; redeploy the endpoint",
    408: "the model took longer than request_timeout_ms: raise it in DeploymentSettings and "
    "deploy again, or send fewer or smaller images per call",
    413: "the body is over the server's size limit: send fewer or smaller images per call",
    415: "send Content-Type: application/json",
    429: "too many requests are waiting for the model: send fewer at once",
    500: "the model itself failed on this request: read endpoint.logs() for its traceback",
    503: "the server is starting or stopping: retry shortly",
}


class EndpointRecord(BaseModel):
    """What ``endpoint.json`` holds about a local endpoint."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    deployment: str
    model: str
    model_uri: str
    model_path: str
    host: str = _HOST
    port: int
    pid: int
    traffic: dict[str, int] = Field(default_factory=dict)
    created: datetime
    updated: datetime
    request_timeout_s: float = 90.0
    processes: int = Field(default=1, ge=1)

    @property
    def scoring_uri(self) -> str:
        """``http://127.0.0.1:<port>/score``."""
        return f"http://{self.host}:{self.port}/score"


class LocalEndpoints:
    """Endpoint operations of the local backend (the eight endpoint methods of ``Backend``).

    Args:
        root: The local project folder; endpoints live under ``root/endpoints/``.
        resolve_model: Turns a registered model into its MLflow model folder.
        start_timeout: Seconds ``deploy`` waits for a server to become healthy.
        options: How the servers take requests (body limit, batching, model threads); the
            request timeout comes from each deploy's ``DeploymentSettings``.
        sleep: Waits between retried calls.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        resolve_model: Callable[[ModelInfo], Path],
        *,
        start_timeout: float = START_TIMEOUT,
        options: ServerOptions | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.root = Path(root)
        self._sleep = sleep
        self._resolve_model = resolve_model
        self._start_timeout = start_timeout
        self._options = options or ServerOptions()
        self._records: dict[str, EndpointRecord] = {}
        self._local = threading.local()

    @property
    def folder(self) -> Path:
        """``root/endpoints``."""
        return self.root / "endpoints"

    def __repr__(self) -> str:
        return f"LocalEndpoints(root={os.fspath(self.root)!r})"

    # ------------------------------------------------------------------ lifecycle
    def deploy(
        self, model: ModelInfo, endpoint: str, deployment: str, settings: DeploymentSettings
    ) -> EndpointInfo:
        """Start a server for ``model`` as ``endpoint`` (replacing a running one), wait until
        it answers ``/health``, and route all traffic to ``deployment``.

        Raises:
            NotFoundError: The model's MLflow folder does not exist.
            EndpointError: The server exited while starting (the message ends with its log).
            OperationTimeoutError: It did not become healthy within ``start_timeout``.
        """
        path = Path(self._resolve_model(model)).resolve()
        if not (path / "MLmodel").is_file():
            raise NotFoundError(
                f"model {model.name}:{model.version}: no MLflow model folder at {path} (no "
                "MLmodel file); register the model again"
            )
        folder = self._folder(endpoint)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        keys = self._ensure_keys(folder)
        old = self._read_record(endpoint)
        timeout_s = settings.request_timeout_ms / 1000.0
        pid, port = self._start(folder, path, keys, old, settings, timeout_s)
        now = datetime.now(timezone.utc)
        record = EndpointRecord(
            name=endpoint,
            deployment=deployment,
            model=f"{model.name}:{model.version}",
            model_uri=model.uri,
            model_path=str(path),
            port=port,
            pid=pid,
            traffic={deployment: 100},
            created=old.created if old else now,
            updated=now,
            request_timeout_s=timeout_s,
            processes=self._options.processes
            or (min(cpu_count(), 4) if hasattr(os, "fork") else 1),
        )
        self._write_record(record)
        if old is not None and old.pid != pid:
            stop(old.pid, STOP_TIMEOUT)
        return self._info(record, healthy=True)

    def get_endpoint(self, name: str) -> EndpointInfo:
        """The endpoint's state: ``Succeeded`` when its process is alive and ``/health``
        answers, ``Failed`` when alive but not answering, ``Stopped`` when the process is
        gone (``info.error`` then holds the end of the server log).

        Raises:
            NotFoundError: No local endpoint has that name.
        """
        record = self._require(name)
        return self._info(record, healthy=None)

    def list_endpoints(self) -> list[EndpointInfo]:
        """Every local endpoint, by name."""
        if not self.folder.is_dir():
            return []
        out = []
        for entry in sorted(self.folder.iterdir()):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            record = self._read_record(entry.name)
            if record is not None:
                out.append(self._info(record, healthy=None))
        return out

    def endpoint_keys(self, name: str) -> EndpointKeys:
        """The primary and secondary keys (``keys.json``, mode 0600)."""
        self._require(name)
        data = json.loads((self._folder(name) / "keys.json").read_text(encoding="utf-8"))
        return EndpointKeys(
            primary=SecretStr(data["primary"]), secondary=SecretStr(data["secondary"])
        )

    def endpoint_logs(self, name: str, *, deployment: str | None = None, lines: int = 100) -> str:
        """The last ``lines`` lines of the server log."""
        record = self._require(name)
        _check_deployment(record, deployment)
        return tail(self._folder(name) / "server.log", lines)

    def set_traffic(self, name: str, traffic: Mapping[str, int]) -> EndpointInfo:
        """Record the traffic split; locally it can only name the one deployment.

        Raises:
            NotFoundError: The split names another deployment.
        """
        record = self._require(name)
        unknown = sorted(set(traffic) - {record.deployment})
        if unknown:
            raise NotFoundError(
                f"endpoint {name!r} has no deployment {unknown[0]!r}; a local endpoint has one "
                f"deployment, {record.deployment!r} (deploy again to replace it)"
            )
        record = record.model_copy(
            update={"traffic": dict(traffic), "updated": datetime.now(timezone.utc)}
        )
        self._write_record(record)
        return self._info(record, healthy=None)

    def delete_endpoint(self, name: str) -> None:
        """Stop the server and every server process recorded for it (SIGTERM, SIGKILL after
        :data:`STOP_TIMEOUT` s; verified gone, else EndpointError) and remove its folder."""
        record = self._require(name)
        left = stop(record.pid, STOP_TIMEOUT, self._folder(name) / PIDS_FILE)
        if left:
            raise EndpointError(f"endpoint {name!r}: server processes {left} did not stop")
        self._records.pop(name, None)
        shutil.rmtree(self._folder(name), ignore_errors=True)

    # ------------------------------------------------------------------ scoring
    def invoke(
        self, name: str, body: bytes, *, deployment: str | None = None, timeout: float = 120.0
    ) -> bytes:
        """POST ``body`` to the endpoint's ``/score`` with its key; return the answer body.

        429 and 503 answers and reset connections are retried up to ``MAX_RETRIES`` times with
        exponential backoff (honouring ``Retry-After``). Safe to call from several threads.

        Raises:
            NotFoundError: No such endpoint, or it has no deployment ``deployment``.
            EndpointError: The server answered an error status (with a hint), or is not
                running (with the end of its log).
            OperationTimeoutError: No answer within ``timeout`` seconds.
        """
        record = self._records.get(name) or self._require(name)
        _check_deployment(record, deployment)
        retries = 0
        while True:
            try:
                status, answer_headers, content = self._attempt(record, body, timeout)
            except ConnectionResetError as exc:
                record = self._require(name)  # redeployed on another port meanwhile?
                if retries >= MAX_RETRIES:
                    raise self._not_running(record, exc) from exc
                self._sleep(retry_delay({}, retries))
                retries += 1
                continue
            if status in RETRY_STATUSES and retries < MAX_RETRIES:
                self._sleep(retry_delay(answer_headers, retries))
                retries += 1
                continue
            if status == 200:
                return content
            raise _endpoint_error(name, status, content, retries=retries)

    def endpoint_concurrency(self, name: str, deployment: str | None = None) -> int:
        """Requests the endpoint scores at once: its server processes (one model call each)."""
        record = self._records.get(name) or self._require(name)
        _check_deployment(record, deployment)
        return record.processes

    def _attempt(
        self, record: EndpointRecord, body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """One POST (again with fresh keys after a 401, or at the record's new port after a
        refused connection)."""
        name = record.name
        headers = {
            "Authorization": f"Bearer {self._key(name)}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            answer = self._post(record, body, headers, timeout)
            if answer[0] == 401:  # keys.json replaced (endpoint deleted and created again)?
                self._local.keys = {}
                headers["Authorization"] = f"Bearer {self._key(name)}"
                answer = self._post(record, body, headers, timeout)
        except ConnectionRefusedError as exc:
            fresh = self._require(name)  # redeployed on another port by another process?
            if fresh.port == record.port:
                raise self._not_running(fresh, exc) from exc
            try:
                answer = self._post(fresh, body, headers, timeout)
            except OSError as again:
                raise self._not_running(fresh, again) from again
        except TimeoutError as exc:
            raise OperationTimeoutError(
                f"endpoint {name!r} did not answer within {timeout:g} s; pass a larger "
                "timeout= or send fewer images per call (batch_size=)"
            ) from exc
        return answer

    def _post(
        self, record: EndpointRecord, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """One POST over this thread's kept-alive connection (reconnecting once when the
        server closed it)."""
        connections: _Connections | None = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = _Connections()
        address = (record.host, record.port)
        for attempt in (0, 1):
            conn = connections.get(address)
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection(*address, timeout=timeout)
                connections[address] = conn
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request("POST", "/score", body=body, headers=headers)
                response = conn.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                connections.pop(address, None)
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server had closed
                raise ConnectionResetError(
                    f"{address[0]}:{address[1]} closed the connection"
                ) from None
            except OSError:
                conn.close()
                connections.pop(address, None)
                raise
            if response.will_close or len(body) > _FRESH_CONNECTION_BYTES:
                conn.close()
                connections.pop(address, None)
            return response.status, dict(response.getheaders()), content
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ helpers
    def _folder(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise InvalidInputError(f"endpoint name: expected a plain name, got {name!r}")
        return self.folder / name

    def _read_record(self, name: str) -> EndpointRecord | None:
        path = self._folder(name) / "endpoint.json"
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            record = EndpointRecord.model_validate_json(text)
        except ValidationError as exc:
            raise DetectkitError(
                f"{path}: not a detectkit endpoint record ({exc.error_count()} problems); "
                f"delete the folder {path.parent} and deploy again"
            ) from exc
        self._records[name] = record
        return record

    def _require(self, name: str) -> EndpointRecord:
        record = self._read_record(name)
        if record is None:
            self._records.pop(name, None)
            known = [
                p.name for p in sorted(self.folder.glob("*")) if (p / "endpoint.json").is_file()
            ]
            raise NotFoundError(
                f"no local endpoint named {name!r} under {self.folder} (endpoints: "
                f"{', '.join(known) or 'none'}); create it with project.deploy(model, "
                f"endpoint={name!r})"
            )
        return record

    def _write_record(self, record: EndpointRecord) -> None:
        path = self._folder(record.name) / "endpoint.json"
        tmp = path.with_name(f".endpoint.json.{os.getpid()}.tmp")
        tmp.write_text(record.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, path)
        self._records[record.name] = record

    def _key(self, name: str) -> str:
        cache: dict[str, str] = getattr(self._local, "keys", None) or {}
        self._local.keys = cache
        if name not in cache:
            cache[name] = self.endpoint_keys(name).primary.get_secret_value()
        return cache[name]

    @staticmethod
    def _ensure_keys(folder: Path) -> Path:
        path = folder / "keys.json"
        if not path.is_file():
            keys = {"primary": secrets.token_urlsafe(32), "secondary": secrets.token_urlsafe(32)}
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(keys, handle)
        os.chmod(path, 0o600)
        return path

    def _start(
        self,
        folder: Path,
        model_path: Path,
        keys: Path,
        old: EndpointRecord | None,
        settings: DeploymentSettings,
        request_timeout_s: float,
    ) -> tuple[int, int]:
        """Launch a detached server and wait until it is healthy: ``(pid, port)``."""
        token = secrets.token_hex(4)
        ready = folder / f"ready-{token}.json"
        pid_file = folder / f"pid-{token}.json"
        log = folder / "server.log"
        if log.is_file() and log.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(log, folder / "server.log.1")
        # a redeploy keeps the port when the old server is gone, else takes any free one
        port = old.port if old is not None and not alive(old.pid) else 0
        command = [
            sys.executable,
            "-m",
            SERVER_MODULE,
            str(model_path),
            *("--host", _HOST, "--port", str(port), "--port-fallback"),
            "--key-file",
            str(keys),
            "--ready-file",
            str(ready),
            *("--pid-file", str(pid_file), "--pids-file", str(folder / PIDS_FILE)),
            "--detach",
            *option_args(self._options.model_copy(update={"request_timeout_s": request_timeout_s})),
        ]
        env = {**os.environ, **settings.environment_variables, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as out:
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            out.write(f"---- {stamp} deploy {model_path}\n".encode())
            out.flush()
            launcher = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,
                env=env,
                start_new_session=True,
            )
            try:
                code = launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
                code = -1
        try:
            pid = int(json.loads(pid_file.read_text(encoding="utf-8"))["pid"])
        except (OSError, ValueError, KeyError) as exc:
            raise EndpointError(
                f"endpoint {folder.name!r}: the server launcher exited with code {code} before "
                f"starting a server; the log ends with:\n{tail(log, 20)}",
                hint="run `python -m detectkit.backends.local.serve MODEL` to see the error",
            ) from exc
        finally:
            pid_file.unlink(missing_ok=True)
        try:
            return pid, self._wait_ready(folder.name, pid, ready, log)
        except BaseException:
            stop(pid, STOP_TIMEOUT)
            raise
        finally:
            ready.unlink(missing_ok=True)

    def _wait_ready(self, name: str, pid: int, ready: Path, log: Path) -> int:
        deadline = time.monotonic() + self._start_timeout
        delay = 0.05
        port: int | None = None
        while time.monotonic() < deadline:
            if not alive(pid):
                raise EndpointError(
                    f"endpoint {name!r}: the server (pid {pid}) exited while starting; the log "
                    f"ends with:\n{tail(log, 20)}",
                    hint="fix the error above (the model folder, its dependencies) and deploy "
                    "again",
                )
            if port is None and ready.is_file():
                with contextlib.suppress(OSError, ValueError, KeyError):
                    port = int(json.loads(ready.read_text(encoding="utf-8"))["port"])
            if port is not None and health(_HOST, port, pid, timeout=2.0):
                return port
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise OperationTimeoutError(
            f"endpoint {name!r}: the server (pid {pid}) was not healthy after "
            f"{self._start_timeout:g} s and was stopped; the log ends with:\n{tail(log, 20)}"
        )

    def _info(self, record: EndpointRecord, *, healthy: bool | None) -> EndpointInfo:
        error = None
        if healthy is None:
            running = alive(record.pid)
            healthy = running and health(record.host, record.port, record.pid, timeout=2.0)
            state = "Succeeded" if healthy else ("Failed" if running else "Stopped")
            if not healthy:
                error = (
                    f"the server (pid {record.pid}) "
                    f"{'does not answer /health' if running else 'is not running'}; deploy again "
                    f"to restart it. The log ends with:\n"
                    f"{tail(self._folder(record.name) / 'server.log', 10)}"
                )
        else:
            state = "Succeeded"
        return EndpointInfo(
            name=record.name,
            scoring_uri=record.scoring_uri,
            traffic=dict(record.traffic),
            state=state,
            auth_mode="key",
            deployments=(record.deployment,),
            model=record.model,
            error=error,
        )

    def _not_running(self, record: EndpointRecord, exc: BaseException) -> EndpointError:
        state = "running but refusing connections" if alive(record.pid) else "not running"
        return EndpointError(
            f"endpoint {record.name!r} is {state} ({record.scoring_uri}: {exc}); the log ends "
            f"with:\n{tail(self._folder(record.name) / 'server.log', 10)}",
            hint=f"deploy it again: project.deploy({record.model!r}, endpoint={record.name!r})",
        )


class _Connections(dict[tuple[str, int], http.client.HTTPConnection]):
    """One thread's kept-alive connections, closed when the thread (or the owner) goes."""

    def __del__(self) -> None:
        for conn in self.values():
            conn.close()


def _check_deployment(record: EndpointRecord, deployment: str | None) -> None:
    if deployment is not None and deployment != record.deployment:
        raise NotFoundError(
            f"endpoint {record.name!r} has no deployment {deployment!r}; a local endpoint has "
            f"one deployment, {record.deployment!r}"
        )


def _endpoint_error(name: str, status: int, content: bytes, *, retries: int = 0) -> EndpointError:
    text = content.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        text = str(json.loads(text)["error"]["message"])
    shown = " ".join(text.split())[:500] or "(empty body)"
    if status in RETRY_STATUSES and retries:
        shown += f" (still {status} after {retries} retries)"
    return EndpointError(
        f"endpoint {name!r} answered: {shown}", status_code=status, hint=_HINTS.get(status)
    )
