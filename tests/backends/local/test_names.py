"""Names and versions cannot leave the project root (Azure's rule for asset names, both ways)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectkit.errors import InvalidInputError
from detectkit.project import Project
from detectkit.records import check_name
from detectkit.synthetic import make_dataset

BAD = [
    "..",
    ".",
    "../escaped",
    "../../../escaped",
    "/abs",
    "a/b",
    "a\\b",
    "",
    "-x",
    "a..b",
    "x" * 256,
]


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_name_or_version_is_refused_before_anything_is_written(
    tmp_path: Path, bad: str
) -> None:
    project = Project.local(tmp_path / "root")
    data = make_dataset(tmp_path / "data", n_images=1, seed=1)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidInputError, match="Azure's rule for asset names") as name_error:
        project.datasets.create(bad, data)
    with pytest.raises(InvalidInputError, match="version: expected"):
        project.datasets.create("cards", data, version=bad)
    with pytest.raises(InvalidInputError, match="name: expected"):
        project.datasets.get(bad)
    assert repr(bad) in str(name_error.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("good", ["cards", "Cards_2", "v1.0", "7", "a-b.c_d"])
def test_good_names_pass(good: str) -> None:
    assert check_name(good, "name") == good
