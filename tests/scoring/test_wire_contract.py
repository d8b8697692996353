"""The scoring contract, written once: the request walker, the base64 check and the box writer."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

import pytest

from detectkit.prediction import Detections
from detectkit.scoring import contract, format_response
from detectkit.scoring.contract import (
    COORDINATE_KEYS,
    RESPONSE_CLIP_TOLERANCE,
    RequestContractError,
    box_entry,
    decode_base64,
    image_bytes,
    request_rows,
)


def test_the_contract_module_needs_neither_numpy_nor_pillow() -> None:
    tree = ast.parse(Path(contract.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == {
        "__future__",
        "binascii",
        "json",
        "collections.abc",
        "typing",
        "msgspec",
        "detectkit.errors",
    }


def test_the_old_names_still_import() -> None:
    from detectkit.scoring import CLIP_TOLERANCE
    from detectkit.scoring import COORDINATE_KEYS as keys

    assert CLIP_TOLERANCE == RESPONSE_CLIP_TOLERANCE == 0.01
    assert keys == COORDINATE_KEYS == ("topX", "topY", "bottomX", "bottomY")


@pytest.mark.parametrize(
    ("body", "rows"),
    [
        ({"input_data": {"columns": ["image"], "data": ["QUJD"]}}, ["QUJD"]),
        ('{"input_data": {"data": [["QUJD"], "REVG"]}}', ["QUJD", "REVG"]),
        (b'{"input_data": {"data": ["QU\\nJD"]}}', ["QU\nJD"]),
    ],
)
def test_request_rows(body: object, rows: list[str]) -> None:
    assert request_rows(body) == rows  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ("{", "InvalidJson", "request: not valid JSON"),
        ("{}", "MissingInputData", 'missing key "input_data"'),
        ('{"input_data": 3}', "InvalidInputData", "input_data: expected an object, got 3"),
        ('{"input_data": {"data": []}}', "InvalidInputData", "expected at least one image"),
        ('{"input_data": {"data": [null]}}', "InvalidInputData", "data[0]: expected a base64"),
    ],
)
def test_request_rows_name_the_problem(body: str, code: str, message: str) -> None:
    with pytest.raises(RequestContractError) as caught:
        request_rows(body)
    assert caught.value.code == code
    assert message in caught.value.message


def test_base64_is_checked_strictly_and_line_breaks_are_allowed() -> None:
    raw = bytes(range(200))
    assert decode_base64(base64.encodebytes(raw).decode(), "x") == raw
    with pytest.raises(RequestContractError, match=r"x: not valid base64 \(character '-'"):
        decode_base64("QU-D", "x")


def test_image_bytes_takes_raw_files_and_base64() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
    assert image_bytes(png, "image 0") == png
    assert image_bytes(base64.b64encode(png).decode() + "\n", "image 0") == png
    with pytest.raises(ValueError, match="image 1: expected a base64 string or image bytes"):
        image_bytes(3, "image 1")


def test_box_writer_is_what_format_response_writes() -> None:
    det = Detections([[0.1, 0.2, 0.5, 0.6]], [0.9], [0], classes=["can"])
    (answer,) = format_response([det])
    assert answer == {"boxes": [box_entry([0.1, 0.2, 0.5, 0.6], "can", 0.9)]}
    assert json.dumps(answer) == (
        '{"boxes": [{"box": {"topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}, '
        '"label": "can", "score": 0.9}]}'
    )
