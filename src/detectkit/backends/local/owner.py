"""Which process owns a local training run, and whether it is still there.

Local training runs in the calling process. If that process is killed (``kill -9``, a closed
laptop lid that ends a notebook kernel, an out-of-memory kill), MLflow never hears that the run
ended and it would read ``Running`` forever. So every run the local backend starts records its
owner in tags: the host name, the process id and the process's start time (the start time tells
a reused process id from the original). When a run that reads ``Running`` has an owner on this
host that is gone, :mod:`detectkit.backends.local.runs` marks it ``Failed`` with
:data:`STOPPED_MESSAGE`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

__all__ = ["HOST_TAG", "PID_TAG", "START_TAG", "STOPPED_MESSAGE", "owner_gone", "owner_tags"]

HOST_TAG = "detectkit.owner.host"
PID_TAG = "detectkit.owner.pid"
START_TAG = "detectkit.owner.start"
STOPPED_MESSAGE = "the process that ran it stopped"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = stat.rsplit(")", 1)[-1].split()
    state = fields[0] if fields else ""
    if state in ("Z", "X"):
        return None
    return fields[19] if len(fields) > 19 else None


def owner_tags() -> dict[str, str]:
    """Tags naming the current process as a run's owner."""
    pid = os.getpid()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid)}
    start = _start_time(pid)
    if start is not None:
        tags[START_TAG] = start
    return tags


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def owner_gone(tags: Mapping[str, str]) -> str | None:
    """Why the run's owner is known to be gone (a message), or None when it may be running.

    A run without owner tags (an older project), or owned by a process on another host, is
    never judged: None.
    """
    host, pid_text = tags.get(HOST_TAG), tags.get(PID_TAG)
    if host is None or pid_text is None or host != socket.gethostname():
        return None
    try:
        pid = int(pid_text)
    except ValueError:
        return None
    recorded = tags.get(START_TAG)
    if Path("/proc/self/stat").exists():
        now = _start_time(pid)
        if now is None:
            return f"{STOPPED_MESSAGE} (process {pid} on {host} is gone)"
        if recorded is not None and now != recorded:
            return f"{STOPPED_MESSAGE} (process {pid} on {host} is gone; the id was reused)"
        return None
    if not _alive(pid):
        return f"{STOPPED_MESSAGE} (process {pid} on {host} is gone)"
    return None
