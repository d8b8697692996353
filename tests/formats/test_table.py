"""The one table of formats behind read_dataset, write_dataset and detect_format."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

import detectkit.dataset
from detectkit import formats
from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.errors import InvalidInputError, NotFoundError


def _dataset(tmp_path: Path) -> LabeledDataset:
    return LabeledDataset([ImageRecord(image=str(tmp_path / "a.jpg"), width=4, height=3)])


def test_every_format_name_has_one_entry() -> None:
    assert get_args(formats.Format) == formats.FORMATS
    assert formats.FORMATS == ("azureml", "coco", "voc", "yolo", "labelstudio")


def test_format_stays_importable_from_dataset() -> None:
    assert detectkit.dataset.Format is formats.Format
    with pytest.raises(AttributeError, match="no attribute 'Formats'"):
        detectkit.dataset.Formats  # noqa: B018


@pytest.mark.parametrize(
    ("fmt", "stores_urls"),
    [("azureml", True), ("coco", True), ("voc", False), ("yolo", False), ("labelstudio", False)],
)
def test_image_base_url_only_where_the_format_stores_urls(
    tmp_path: Path, fmt: formats.Format, stores_urls: bool
) -> None:
    out = tmp_path / ("out.json" if fmt == "coco" else "out")
    if stores_urls:
        written = formats.write_dataset(
            _dataset(tmp_path), out, fmt, image_base_url="https://example.org/d"
        )
        assert written.exists()
        return
    with pytest.raises(
        InvalidInputError,
        match=f"only the azureml and coco formats store image URLs, got format '{fmt}'",
    ):
        formats.write_dataset(_dataset(tmp_path), out, fmt, image_base_url="https://x/")
    assert not out.exists()  # refused before anything was written


def test_unknown_format_is_named_with_the_choices(tmp_path: Path) -> None:
    message = (
        r"format: expected one of \['azureml', 'coco', 'voc', 'yolo', 'labelstudio'\], got 'csv'"
    )
    with pytest.raises(InvalidInputError, match=message):
        formats.write_dataset(_dataset(tmp_path), tmp_path / "out", "csv")  # type: ignore[arg-type]
    (tmp_path / "a.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=message):
        formats.read_dataset(tmp_path / "a.json", "csv")  # type: ignore[arg-type]


def test_detect_format_names_the_choices(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"pass format= one of \['azureml', 'coco'"):
        formats.detect_format(tmp_path / "notes.txt")
    with pytest.raises(NotFoundError):
        formats.detect_format(tmp_path / "missing")
