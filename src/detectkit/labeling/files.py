"""Small file helpers of the labeling store: atomic replace, and clearing what a killed save left."""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["remove_stale_temp_files", "utc_now", "write_atomic"]

_STALE_TEMP_SECONDS = 60.0


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file in the same folder,
    flushed to disk (``durable``), then renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(folder: Path) -> None:
    """Temporary files a killed save left behind (older than a minute: not in flight)."""
    if not folder.is_dir():
        return
    cutoff = time.time() - _STALE_TEMP_SECONDS
    with os.scandir(folder) as found:
        for item in found:
            if item.name.startswith(".") and item.name.endswith(".tmp"):
                with suppress(OSError):
                    if item.stat().st_mtime < cutoff:
                        os.unlink(item.path)


def utc_now() -> str:
    """Now, UTC, ISO 8601 with milliseconds and a ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
