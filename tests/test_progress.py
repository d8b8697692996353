"""The progress bar draws on a terminal and stays quiet otherwise."""

from __future__ import annotations

import io

from detectkit.progress import track


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_when_not_a_terminal() -> None:
    out = io.StringIO()
    assert list(track(range(5), stream=out, description="x")) == [0, 1, 2, 3, 4]
    assert out.getvalue() == ""


def test_draws_on_a_terminal() -> None:
    out = _Tty()
    assert list(track([1, 2, 3], stream=out, description="copying", min_interval=0.0)) == [1, 2, 3]
    text = out.getvalue()
    assert "copying" in text and "3/3" in text and text.endswith("\n")
    forced = io.StringIO()
    list(track(iter([1, 2]), stream=forced, enabled=True, min_interval=0.0))
    assert "2" in forced.getvalue()
