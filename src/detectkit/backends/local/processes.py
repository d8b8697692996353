"""The processes behind local endpoints: is a server alive, healthy; stop it; read its log.

:mod:`detectkit.backends.local.endpoints` starts ``python -m detectkit.backends.local.serve``
with :func:`option_args` and manages the process with these functions, by process id.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from detectkit.backends.local.app import ServerOptions

__all__ = ["PIDS_FILE", "SERVER_MODULE", "alive", "health", "option_args", "stop", "tail"]

#: The module a server process runs (``python -m ...``); its command line names it.
SERVER_MODULE = "detectkit.backends.local.serve"
#: The file in an endpoint's folder where its supervisor lists its server processes.
PIDS_FILE = "processes.json"


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) detectkit server process."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        state = stat.rsplit(")", 1)[-1].split()[0]
        # an exiting process has an empty command line for a moment: still alive; another
        # command line means the pid was reused by something else
        return state not in ("Z", "X") and (not cmdline or SERVER_MODULE.encode() in cmdline)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def health(host: str, port: int, pid: int, *, timeout: float) -> bool:
    """Whether ``GET /health`` answers 200 from the server with process id ``pid``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return False
        data: Any = json.loads(body)
        return isinstance(data, dict) and data.get("pid") == pid
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def stop(pid: int, timeout: float, pids_file: Path | None = None) -> list[int]:
    """Stop a server and every server process recorded for it: SIGTERM, wait, SIGKILL.

    ``pid`` is the supervisor (its process group holds the server processes it forked);
    ``pids_file`` (:data:`PIDS_FILE`, written by the supervisor) lists those processes, so
    they are stopped even when the supervisor was killed before them. Only processes that
    still run the server module are signalled (a pid reused by another program is left alone).

    Returns:
        The recorded processes still alive afterwards (empty when all are gone).
    """
    pids = [pid, *_recorded(pids_file, pid)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        running = [p for p in pids if alive(p)]
        if not running:
            return []
        if pid in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        for p in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while any(alive(p) for p in running) and time.monotonic() < deadline:
            time.sleep(0.05)
    return [p for p in pids if alive(p)]


def _recorded(pids_file: Path | None, supervisor: int) -> list[int]:
    """The server processes ``pids_file`` lists for ``supervisor``."""
    if pids_file is None:
        return []
    try:
        data: Any = json.loads(pids_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("supervisor") != supervisor:
        return []
    listed = data.get("processes")
    return [p for p in listed if isinstance(p, int) and p > 1] if isinstance(listed, list) else []


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a text file (reading only its end)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            chunk = min(size, max(lines, 1) * 400 + 4096)
            handle.seek(size - chunk)
            data = handle.read()
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:]) if lines > 0 else ""


def option_args(options: ServerOptions) -> list[str]:
    """The server command-line flags for ``options``."""
    args = [
        f"--max-body-bytes={options.max_body_bytes}",
        f"--max-batch={options.max_batch}",
        f"--batch-wait-ms={options.batch_wait_ms:g}",
        f"--request-timeout={options.request_timeout_s:g}",
        f"--max-pending={options.max_pending}",
    ]
    if options.processes is not None:
        args.append(f"--processes={options.processes}")
    if options.workers is not None:
        args.append(f"--workers={options.workers}")
    if options.threads is not None:
        args.append(f"--threads={options.threads}")
    if options.access_log:
        args.append("--access-log")
    if options.runtime != "torch":
        args.append(f"--runtime={options.runtime}")
    args += [
        f"--max-image-pixels={options.max_image_pixels}",
        f"--max-request-pixels={options.max_request_pixels}",
        f"--read-timeout={options.read_timeout_s:g}",
    ]
    return args
