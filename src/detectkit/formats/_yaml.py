"""The one small YAML subset detectkit reads: MLTable ``paths:`` and ``data.yaml`` ``names:``.

No YAML library is needed. Both readers share one scanner, so a comment, a quote and a plain
scalar mean the same thing in an ``MLTable`` file and in a ``data.yaml``. As in YAML, a quote
opens a quoted string only at the start of a scalar: in ``- file: ./queen's_cards.jsonl  #
exported`` the apostrophe is plain text and ``# exported`` is a comment.

:func:`read_names` reads Ultralytics class names; :func:`read_path_list` reads the block list
under a top-level key (an ``MLTable``'s ``paths:``). Both raise :class:`YamlError`, which
carries the 1-based line number; each format turns it into its own typed error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from detectkit.formats._common import to_float

__all__ = ["YamlError", "read_names", "read_path_list", "strip_comment", "unquote"]


class YamlError(ValueError):
    """Text outside the subset; ``line`` is the 1-based line number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _unquoted(text: str) -> Iterator[tuple[int, str]]:
    """Positions and characters of ``text`` that lie outside quoted strings.

    As in YAML, a quote starts a quoted string only at the start of a scalar (``queen's`` is
    plain text); ``\\"`` escapes a quote inside double quotes, ``''`` one inside single quotes.
    """
    quote = ""
    escaped = False
    prev = ""  # the last non-blank character outside quotes
    for k, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"" and prev in ("", "[", "{", ",", ":", "-"):
            quote = ch
        else:
            if not ch.isspace():
                prev = ch
            yield k, ch


def strip_comment(line: str) -> str:
    """``line`` without its ``# comment`` (a ``#`` after a blank, outside quotes), right-stripped."""
    for k, ch in _unquoted(line):
        if ch == "#" and (k == 0 or line[k - 1] in " \t"):
            return line[:k].rstrip()
    return line.rstrip()


def unquote(token: str) -> str:
    """A scalar's value: ``"..."`` read with JSON escapes, ``'...'`` with ``''`` for ``'``."""
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] == '"':
        try:
            value = json.loads(token)
        except ValueError:
            value = token[1:-1]
        return str(value)
    if len(token) >= 2 and token[0] == token[-1] == "'":
        return token[1:-1].replace("''", "'")
    return token


# ---------------------------------------------------------------------------- MLTable paths
def read_path_list(text: str, key: str) -> list[tuple[int, dict[str, str]]]:
    """The items of the block list under the top-level ``key``, with their line numbers.

    Each item is a small mapping (``- file: ./train.jsonl``, more ``name: value`` lines may
    follow, indented). Other top-level keys are skipped.

    Raises:
        YamlError: ``key`` holds an inline value, or an item is not ``name: value``.
    """
    items: list[tuple[int, dict[str, str]]] = []
    inside = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = strip_comment(raw)
        body = line.strip()
        if not body:
            continue
        top_level = not line[0].isspace()
        if top_level and not body.startswith("-"):
            name, _, rest = body.partition(":")
            inside = name.strip() == key
            if inside and rest.strip():
                raise YamlError(
                    lineno,
                    f"{key}: expected a block list ('- file: ./train.jsonl' on the next lines), "
                    f"got {rest.strip()!r}",
                )
            continue
        if not inside:
            continue
        if body.startswith("-"):
            items.append((lineno, {}))
            body = body[1:].strip()
            if not body:
                continue
        name, sep, value = body.partition(":")
        if not items or not sep:
            raise YamlError(lineno, f"{key}: expected '- file: <path>', got {body!r}")
        items[-1][1][name.strip()] = unquote(value)
    return items


# ---------------------------------------------------------------------------- data.yaml names
def read_names(text: str) -> tuple[list[str] | None, int | None]:
    """``names`` (in id order) and ``nc`` of an Ultralytics ``data.yaml``.

    Understands the shapes data sets use: ``names: [a, 'b c']`` (also over several lines),
    ``names: {0: a, 1: b}``, a block list (``- a``) and a block mapping (``0: a``), with
    comments and quoted names. ``None`` for a key that is absent.

    Raises:
        YamlError: ``names`` is present but in none of those shapes.
    """
    lines = text.splitlines()
    names: list[str] | None = None
    nc: int | None = None
    i = 0
    while i < len(lines):
        line = strip_comment(lines[i])
        key, sep, rest = line.partition(":")
        if not sep or not line or line[0] in " \t-":  # only top-level keys
            i += 1
            continue
        rest = rest.strip()
        if key.strip() == "nc":
            value = to_float(rest)
            nc = int(value) if value is not None and value.is_integer() else None
        elif key.strip() == "names":
            if rest[:1] in ("[", "{"):
                start, flow = i, rest
                while not _closed(flow):
                    i += 1
                    if i >= len(lines):
                        raise YamlError(start + 1, f"{flow[0]} is never closed")
                    flow += " " + strip_comment(lines[i]).strip()
                names = _flow(flow, start + 1)
            elif rest:
                raise YamlError(i + 1, f"expected a list or a mapping, got {rest!r}")
            else:
                items: list[tuple[int, str]] = []
                while i + 1 < len(lines):
                    nxt = strip_comment(lines[i + 1])
                    if nxt.strip() and not (nxt[0] in " \t" or nxt.startswith("-")):
                        break
                    i += 1
                    if nxt.strip():
                        items.append((i + 1, nxt.strip()))
                names = _block(items, i + 1)
        i += 1
    return names, nc


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quotes."""
    cuts = [k for k, ch in _unquoted(text) if ch == sep]
    return [text[a + 1 : b] for a, b in zip([-1, *cuts], [*cuts, len(text)], strict=True)]


def _closed(flow: str) -> bool:
    """True when the brackets opened by ``flow[0]`` are all closed (quotes respected)."""
    closing = "]" if flow[0] == "[" else "}"
    return len(_split_top(flow, flow[0])) == len(_split_top(flow, closing))


def _flow(flow: str, line: int) -> list[str]:
    body = flow.strip()[1:-1].strip()
    items = [item.strip() for item in _split_top(body, ",")] if body else []
    if items and not items[-1]:
        items.pop()  # trailing comma
    if flow.startswith("["):
        return [_name(item, line) for item in items]
    return _from_mapping([_pair(item, line) for item in items], line)


def _block(items: list[tuple[int, str]], last_line: int) -> list[str]:
    if not items:
        raise YamlError(last_line, "names is empty")
    if all(text.startswith("-") for _, text in items):
        return [_name(text[1:], line) for line, text in items]
    return _from_mapping([_pair(text, line) for line, text in items], items[0][0])


def _pair(item: str, line: int) -> tuple[int, str]:
    key, sep, value = item.partition(":")
    number = to_float(key)
    if not sep or number is None or not number.is_integer():
        raise YamlError(line, f"expected 'id: name', got {item!r}")
    return int(number), _name(value, line)


def _from_mapping(pairs: list[tuple[int, str]], line: int) -> list[str]:
    ids = sorted(k for k, _ in pairs)
    if ids != list(range(len(pairs))):
        raise YamlError(line, f"class ids must be 0..{len(pairs) - 1}, got {ids}")
    return [name for _, name in sorted(pairs)]


def _name(token: str, line: int) -> str:
    token = token.strip()
    if token[:1] in ("[", "{"):
        raise YamlError(line, f"expected a class name, got {token!r}")
    name = unquote(token)
    if not name:
        raise YamlError(line, "class name is empty")
    return name
