"""What every settings model shares: one frozen model config and the translation of errors.

:data:`FROZEN` is the config of every settings model; :func:`settings_error` turns a pydantic
``ValidationError`` into one readable :class:`~detectkit.errors.InvalidSettingsError`, and
:func:`messages` puts its messages on one line. This module imports no other settings module,
so each of them can import it at the top.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, ValidationError

from detectkit.errors import InvalidSettingsError

__all__ = ["FROZEN", "messages", "settings_error"]

#: The config of every settings model: immutable, no unknown fields. protected_namespaces=():
#: fields such as ``model_name`` are AutoML's names (pydantic < 2.10 would warn about the
#: "model_" prefix).
FROZEN = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def messages(exc: ValidationError) -> str:
    """The messages of a ValidationError, without pydantic's prefixes, in one line."""
    return "; ".join(_clean(e["msg"]) for e in exc.errors())


def settings_error(
    exc: ValidationError, what: str, models: Iterable[type[BaseModel]] = ()
) -> InvalidSettingsError:
    """Turn a pydantic ``ValidationError`` into one readable :class:`InvalidSettingsError`.

    Each problem is one line: where (``limits.max_trials``), what is wrong, what was given.
    An unknown setting gets a "did you mean" from the field names of ``models``.
    """
    names = sorted({name for model in models for name in model.model_fields})
    lines = []
    for error in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        where = where.lstrip(".")
        message = _clean(error["msg"])
        kind = error["type"]
        if kind == "extra_forbidden":
            name = str(error["loc"][-1])
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            message = "unknown setting" + (f"; did you mean {close[0]!r}?" if close else "")
        elif kind not in ("value_error", "assertion_error", "missing"):
            got = repr(error.get("input"))
            message += f" (got {got if len(got) <= 80 else got[:77] + '...'})"
        for part in message.split("\n"):
            line = f"  {where}: {part}" if where else f"  {part}"
            if line not in lines:
                lines.append(line)
    count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
    return InvalidSettingsError(f"invalid {what} ({count}):\n" + "\n".join(lines))
