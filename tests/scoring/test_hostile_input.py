"""Hostile scoring bodies and prediction files end in a typed error, never anything else.

Each case reproduces an input that once escaped untyped (``RecursionError``, ``ValueError``
from the int-conversion limit, ``UnicodeDecodeError``, ``OSError``); the fuzz test then asserts
the same promise over generated input, within a time bound.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectkit.errors import DetectkitError, InvalidInputError
from detectkit.scoring import parse_batch_output, parse_response, read_predictions
from detectkit.scoring.contract import RequestContractError, request_rows

BOX = '{"box":{"topX":%s,"topY":0.1,"bottomX":0.5,"bottomY":0.5},"label":"a","score":0.9}'
DEEP = "[" * 3000 + "]" * 3000

CASES: dict[str, bytes] = {
    "invalid-utf8": b'[{"boxes":[]}]\xff\xfe',
    "deep-document": DEEP.encode(),
    "deep-box": ('[{"boxes":[' + BOX % DEEP + "]}]").encode(),
    "5000-digit-int": ('[{"boxes":[' + BOX % ("1" * 5000) + "]}]").encode(),
    "10**400": ('[{"boxes":[' + BOX % ("1" + "0" * 400) + "]}]").encode(),
    "1e400": ('[{"boxes":[' + BOX % "1e400" + "]}]").encode(),
}


def _as_batch_line(body: bytes) -> bytes:
    return b'{"filename":"x.png",' + body[2:-1] if body.startswith(b"[{") else body


READERS: dict[str, Callable[[bytes, Path], Any]] = {
    "parse_response": lambda body, _: parse_response(body),
    "read_predictions-bytes": lambda body, _: read_predictions(body),
    "parse_batch_output": lambda body, _: parse_batch_output(_as_batch_line(body)),
    "read_predictions-file": lambda body, tmp: read_predictions(_write(tmp / "p.json", body)),
    "batch-file": lambda body, tmp: parse_batch_output(_write(tmp / "b.jsonl", body)),
}


def _write(path: Path, body: bytes) -> Path:
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", CASES)
def test_hostile_input_gets_a_typed_error(case: str, reader: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        READERS[reader](CASES[case], tmp_path)


def test_the_error_names_the_file_and_the_byte(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"p\.json: not UTF-8 text \(byte 14"):
        read_predictions(_write(tmp_path / "p.json", CASES["invalid-utf8"]))
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        parse_response(CASES["deep-document"])
    with pytest.raises(InvalidInputError, match="number too long"):
        parse_response(CASES["5000-digit-int"])


def test_a_content_string_mistaken_for_a_path_is_typed() -> None:
    with pytest.raises(InvalidInputError, match="cannot read it as a predictions file"):
        parse_batch_output("x" * 5000)
    with pytest.raises(InvalidInputError):
        read_predictions("a\x00b.json")


@pytest.mark.parametrize("body", [DEEP, '{"input_data": ' + DEEP + "}", "1" * 5000, b"\xff{"])
def test_a_hostile_request_body_breaks_the_contract_typed(body: str | bytes) -> None:
    with pytest.raises(RequestContractError):
        request_rows(body)


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
_box = st.fixed_dictionaries(
    {"box": st.dictionaries(st.sampled_from(["topX", "topY", "bottomX", "bottomY"]), _json)},
    optional={"label": _json, "score": _json},
)
_body = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    st.lists(st.fixed_dictionaries({"boxes": st.lists(_box, max_size=3)}), max_size=3).map(
        lambda v: json.dumps(v).encode()
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_body)
def test_fuzzed_bodies_give_data_or_a_typed_error(body: bytes) -> None:
    for name in ("parse_response", "read_predictions-bytes", "parse_batch_output"):
        start = time.perf_counter()
        with contextlib.suppress(DetectkitError):
            READERS[name](body, Path("."))
        assert time.perf_counter() - start < 2.0, name
    with contextlib.suppress(DetectkitError):
        request_rows(body)
