"""The fast JSON decoder gives what ``json.loads`` gives, so parsed responses are unchanged.

``load_json`` decodes with msgspec and hands anything msgspec refuses to the standard library:
these tests hold it to the standard library's result on generated documents and on the edge
cases where the two decoders differ (``NaN``, ``1e400``, huge integers, lone surrogates, a
byte order mark), and hold the response parser to the same predictions either way.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectkit.errors import InvalidResponseError
from detectkit.scoring import parse_batch_output, parse_response, read_predictions
from detectkit.scoring.contract import load_json


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down, ``-0.0`` told from ``0.0`` and NaN equal."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


_value = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.integers(min_value=2**63 - 4, max_value=2**200)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=_value, ascii_only=st.booleans())
def test_load_json_gives_what_json_loads_gives(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    expected = json.loads(text)
    assert same(load_json(text), expected)
    assert same(load_json(text.encode("utf-8")), expected)


@pytest.mark.parametrize(
    "text",
    [
        "[-0.0, 0.0, -0, 5e-324, 1.7976931348623157e308, 0.1, 2.2250738585072014e-308]",
        "[18446744073709551616, -9223372036854775809, %s]" % ("9" * 4300),
        "[1e400, -1e400, NaN, Infinity, -Infinity]",  # not JSON; the standard library reads them
        '["\\ud800", "\\udfff x", "\\ud83d\\ude00"]',  # lone surrogates, then a valid pair
        '{"a": 1, "a": 2}',  # the last duplicate wins in both
        "\ufeff[1]",  # a byte order mark in text: refused, as json.loads refuses it
    ],
)
def test_edge_cases_decode_as_the_standard_library_does(text: str) -> None:
    for doc in (text, text.encode("utf-8", "surrogatepass")):
        try:
            expected: Any = json.loads(doc)
        except json.JSONDecodeError as exc:
            expected = exc
        if isinstance(expected, json.JSONDecodeError):
            with pytest.raises(json.JSONDecodeError, match=re.escape(expected.msg)):
                load_json(doc)
        else:
            assert same(load_json(doc), expected)


def test_text_holding_a_lone_surrogate_decodes_as_the_standard_library_does() -> None:
    text = '["\ud800", {"label": "a\udfff"}]'  # the characters themselves, not escapes
    assert load_json(text) == json.loads(text) == ["\ud800", {"label": "a\udfff"}]


def test_utf16_and_a_utf8_byte_order_mark_still_decode_from_bytes() -> None:
    assert load_json("[1]".encode("utf-16")) == [1]
    assert load_json(b"\xef\xbb\xbf[1]") == [1]


def test_invalid_utf8_names_line_and_column() -> None:
    with pytest.raises(json.JSONDecodeError) as err:
        load_json(b'[\n  "ok",\n  "\xff"\n]')
    assert "not UTF-8 text (byte 13" in err.value.msg
    assert (err.value.lineno, err.value.colno) == (3, 4)


def _response(seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for count in rng.integers(0, 6, size=40).tolist():
        xy = rng.uniform(0, 0.5, size=(count, 2))
        corners = np.concatenate([xy, xy + rng.uniform(0, 0.5, size=(count, 2))], axis=1)
        boxes = [
            {
                "box": dict(zip(("topX", "topY", "bottomX", "bottomY"), c, strict=True)),
                "label": str(rng.choice(["can", "é", "milk"])),
                "score": float(s),
            }
            for c, s in zip(corners.tolist(), rng.uniform(0, 1, size=count).tolist(), strict=True)
        ]
        out.append({"boxes": boxes})
    out[0]["boxes"].append(
        {"box": {"topX": -0.0, "topY": 0, "bottomX": 1, "bottomY": 1.0}, "label": "can", "score": 1}
    )
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_predictions_are_bit_identical_to_the_standard_library_decode(seed: int) -> None:
    response = _response(seed)
    body = json.dumps(response, ensure_ascii=False).encode("utf-8")
    fast = parse_response(body)
    slow = parse_response(json.loads(body))  # an already decoded list skips load_json
    assert len(fast) == len(slow) == len(response)
    for a, b in zip(fast, slow, strict=True):
        assert a.detections.xyxy.tobytes() == b.detections.xyxy.tobytes()
        assert a.detections.scores.tobytes() == b.detections.scores.tobytes()
        assert a.labels.tolist() == b.labels.tolist()
    assert np.signbit(fast[0].detections.xyxy[-1, 0])  # -0.0 kept, as json.loads keeps it


def test_nan_and_infinity_literals_are_refused_as_not_finite() -> None:
    body = '[{"boxes": [{"box": {"topX": NaN, "topY": 0, "bottomX": 1, "bottomY": 1}, "label": "a", "score": 1}]}]'
    with pytest.raises(
        InvalidResponseError,
        match=r"response\[0\]\.boxes\[0\]\.box\.topX: expected a finite number",
    ):
        parse_response(body)


def test_invalid_utf8_in_a_batch_file_names_the_file_and_line(tmp_path: Path) -> None:
    good = b'{"filename": "a.png", "boxes": []}\n'
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(good * 3 + b'{"filename": "b\xff.png", "boxes": []}\n')
    for read in (parse_batch_output, read_predictions):
        with pytest.raises(
            InvalidResponseError,
            match=r"predictions\.jsonl: not UTF-8 text \(byte 120: b'\\xff', line 4\)",
        ):
            read(path)
    with pytest.raises(InvalidResponseError, match="line 2: not UTF-8 text"):
        parse_batch_output([good, b'{"filename": "\xff"}'])


def test_without_msgspec_the_standard_library_decodes_the_same() -> None:
    """A saved MLflow model carries detectkit's source into an environment that may lack
    msgspec: the contract module still imports, and decodes as before."""
    script = (
        "import sys; sys.modules['msgspec'] = None\n"
        "from detectkit.scoring.contract import load_json\n"
        "assert 'msgspec' not in {m for m in sys.modules if sys.modules[m] is not None}\n"
        "print(repr(load_json(b'[1.5, -0.0, 18446744073709551616, NaN, \"\\\\ud800\"]')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[1.5, -0.0, 18446744073709551616, nan, '\\ud800']"
