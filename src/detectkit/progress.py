"""A small progress bar for long work, quiet when the output is not a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TextIO, TypeVar

__all__ = ["track"]

T = TypeVar("T")


def track(
    items: Iterable[T],
    *,
    total: int | None = None,
    description: str = "",
    stream: TextIO | None = None,
    enabled: bool | None = None,
    min_interval: float = 0.1,
) -> Iterator[T]:
    """Yield ``items`` while drawing a one-line progress bar on ``stream`` (stderr).

    The bar is drawn only when ``stream`` is a terminal (or ``enabled=True``), so logs and
    pipes stay clean.
    """
    out = stream if stream is not None else sys.stderr
    show = enabled if enabled is not None else out.isatty()
    if not show:
        yield from items
        return
    if total is None and isinstance(items, Sized):
        total = len(items)
    start = last = time.monotonic()
    count = 0
    for item in items:
        yield item
        count += 1
        now = time.monotonic()
        if now - last >= min_interval:
            last = now
            _draw(out, description, count, total, now - start)
    _draw(out, description, count, total, time.monotonic() - start)
    out.write("\n")
    out.flush()


def _draw(out: TextIO, description: str, count: int, total: int | None, elapsed: float) -> None:
    if total:
        width = 28
        filled = int(width * count / total)
        bar = "#" * filled + "-" * (width - filled)
        text = f"\r{description} [{bar}] {count}/{total} {elapsed:5.1f}s"
    else:
        text = f"\r{description} {count} {elapsed:5.1f}s"
    out.write(text)
    out.flush()
