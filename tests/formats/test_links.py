"""The link rule: no reader reads a file outside the data set folder through a symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detectkit.errors import DetectkitError
from detectkit.formats import read_dataset, write_dataset
from detectkit.synthetic import make_dataset

SECRET = "TOP-SECRET-CONTENT"


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text(f"0 0.5 0.5 0.1 {SECRET}\n")
    make_dataset(out / "imgs", n_images=1, seed=9)
    return out


@pytest.fixture
def yolo(tmp_path: Path) -> Path:
    ds = make_dataset(tmp_path / "src", n_images=2, seed=4)
    return write_dataset(ds, tmp_path / "yolo", "yolo")


def test_yolo_symlinked_image_outside_is_refused(tmp_path: Path, yolo: Path) -> None:
    outside = _outside(tmp_path)
    target = next((outside / "imgs" / "images").iterdir())
    os.symlink(target, yolo / "images" / "z.png")
    ds, report = read_dataset(yolo, "yolo", errors="collect")
    assert len(ds) == 2 and "unsafe_path" in report.counts()
    assert str(target) in report.to_text()


def test_yolo_symlinked_label_outside_is_not_echoed(tmp_path: Path, yolo: Path) -> None:
    outside = _outside(tmp_path)
    label = next((yolo / "labels").iterdir())
    label.unlink()
    os.symlink(outside / "secret.txt", label)
    _, report = read_dataset(yolo, "yolo", errors="collect")
    assert "unsafe_path" in report.counts() and SECRET not in report.to_text()


@pytest.mark.parametrize("name", ["classes.txt", "data.yaml"])
def test_yolo_symlinked_class_files_are_not_read(tmp_path: Path, yolo: Path, name: str) -> None:
    outside = _outside(tmp_path)
    (outside / name).write_text("names: [x, y, z, w]\n" if name == "data.yaml" else "x\ny\nz\nw\n")
    (yolo / "data.yaml").unlink()
    (yolo / "classes.txt").unlink()
    os.symlink(outside / name, yolo / name)
    ds, report = read_dataset(yolo, "yolo", errors="collect")
    assert "x" not in ds.classes and "unsafe_path" in report.counts()


def test_yolo_symlinked_images_folder_is_refused(tmp_path: Path, yolo: Path) -> None:
    outside = _outside(tmp_path)
    os.rename(yolo / "images", tmp_path / "moved")
    os.symlink(outside / "imgs" / "images", yolo / "images")
    with pytest.raises(DetectkitError, match="outside the data set folder"):
        read_dataset(yolo, "yolo", errors="collect")


def test_voc_symlinked_xml_outside_is_refused(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "src", n_images=1, seed=4)
    voc = write_dataset(ds, tmp_path / "voc", "voc", copy_images=True)
    outside = _outside(tmp_path)
    (outside / "a.xml").write_text(f"<annotation><filename>{SECRET}</filename></annotation>")
    os.symlink(outside / "a.xml", voc / "zz.xml")
    got, report = read_dataset(voc, "voc", errors="collect")
    assert len(got) == 1 and "unsafe_path" in report.counts() and SECRET not in report.to_text()


def test_mltable_folder_and_pattern_outside_are_refused(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "src", n_images=1, seed=4)
    write_dataset(ds, tmp_path / "outside-jsonl", "azureml", copy_images=True)
    table = tmp_path / "table"
    table.mkdir()
    os.symlink(tmp_path / "outside-jsonl", table / "data")
    (table / "MLTable").write_text("paths:\n  - folder: ./data\n")
    with pytest.raises(DetectkitError, match="leaves the MLTable's folder"):
        read_dataset(table, "azureml")
    (table / "MLTable").write_text("paths:\n  - pattern: ./data/*.jsonl\n")
    with pytest.raises(DetectkitError, match="outside the data set folder"):
        read_dataset(table, "azureml")
    (table / "MLTable").write_text("paths:\n  - pattern: ../outside-jsonl/*.jsonl\n")
    with pytest.raises(DetectkitError, match="outside the data set folder"):
        read_dataset(table, "azureml")


def test_labelstudio_symlinked_image_outside_is_refused(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "src", n_images=1, seed=4)
    out = write_dataset(ds, tmp_path / "ls", "labelstudio", copy_images=True)
    image = next((tmp_path / "ls" / "images").iterdir())
    image.unlink()
    outside = _outside(tmp_path)
    os.symlink(next((outside / "imgs" / "images").iterdir()), image)
    got, report = read_dataset(
        out if out.is_file() else next(out.glob("*.json")), "labelstudio", errors="collect"
    )
    assert len(got) == 0 and "unsafe_path" in report.counts()
