"""The one YAML subset (``formats/_yaml.py``) read through both of its users.

The MLTable reader and the data.yaml reader used to strip comments differently: the MLTable
one took the apostrophe in ``queen's_cards.jsonl`` for an opening quote and kept
``# exported 2024-05`` as part of the path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from detectkit.errors import InvalidInputError
from detectkit.formats._yaml import YamlError, read_names, read_path_list, strip_comment, unquote
from detectkit.formats.azureml import mltable_paths
from detectkit.formats.yolo import parse_data_yaml

APOSTROPHE = "  - file: ./queen's_cards.jsonl  # exported 2024-05"


def test_an_apostrophe_in_a_plain_scalar_is_not_a_quote() -> None:
    assert strip_comment(APOSTROPHE) == "  - file: ./queen's_cards.jsonl"
    assert strip_comment("  - 'jack # not a comment'  # a comment") == "  - 'jack # not a comment'"


def test_the_apostrophe_case_through_the_mltable_reader(tmp_path: Path) -> None:
    (tmp_path / "queen's_cards.jsonl").write_text("", encoding="utf-8")
    text = f"paths:\n{APOSTROPHE}\n"
    (tmp_path / "MLTable").write_text(text, encoding="utf-8")
    assert mltable_paths(tmp_path) == [tmp_path / "queen's_cards.jsonl"]
    # the same meaning as a real YAML parser
    assert yaml.safe_load(text)["paths"] == [{"file": "./queen's_cards.jsonl"}]


def test_the_apostrophe_case_through_the_data_yaml_reader() -> None:
    text = "nc: 2\nnames:\n  - queen's_cards.jsonl  # exported 2024-05\n  - ace\n"
    assert parse_data_yaml(text) == (["queen's_cards.jsonl", "ace"], 2)
    assert yaml.safe_load(text)["names"] == ["queen's_cards.jsonl", "ace"]


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("paths:\n  - file: ./a.jsonl\n", [(2, {"file": "./a.jsonl"})]),
        ("type: mltable\npaths:\n- folder: 'x y'\n", [(3, {"folder": "x y"})]),
        ('paths:\n  - pattern: "*.jsonl"  # all\nother: 1\n', [(2, {"pattern": "*.jsonl"})]),
        ("paths:\n  -\n    file: a.jsonl\n", [(2, {"file": "a.jsonl"})]),
        ("type: mltable\n", []),
    ],
)
def test_path_list_shapes(text: str, items: list[tuple[int, dict[str, str]]]) -> None:
    assert read_path_list(text, "paths") == items
    loaded = yaml.safe_load(text).get("paths", [])
    assert loaded == [item for _, item in items]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("paths: [a.jsonl]\n", 1, "expected a block list"),
        ("type: mltable\npaths:\n  - a.jsonl\n", 3, "expected '- file: <path>'"),
    ],
)
def test_path_list_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(YamlError, match=message) as info:
        read_path_list(text, "paths")
    assert info.value.line == line


def test_mltable_errors_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "MLTable").write_text("paths:\n  - a.jsonl\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"MLTable, line 2: paths: expected '- file:"):
        mltable_paths(tmp_path)


def test_one_unquoting_rule() -> None:
    assert unquote(" 'it''s' ") == "it's"
    assert unquote('"caf\\u00e9"') == "café"
    assert unquote("queen's") == "queen's"
    assert read_names("names: ['it''s', \"caf\\u00e9\"]\n") == (["it's", "café"], None)
