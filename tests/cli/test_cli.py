"""The detectkit command line, run in-process and as the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detectkit.cli import main
from detectkit.dataset import LabeledDataset
from detectkit.formats import read_dataset


@pytest.mark.parametrize("fmt", ["azureml", "coco", "voc", "yolo"])
def test_convert_writes_a_self_contained_data_set(
    cards: LabeledDataset, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"out-{fmt}"
    src = cards.to_coco(cards.root / "annotations.json")  # type: ignore[operator]
    assert main(["dataset", "convert", str(src), str(out), "--to", fmt]) == 0
    assert f"as {fmt}" in capsys.readouterr().out
    again = read_dataset(out)  # no images_root needed: images were copied inside
    assert again.num_boxes == cards.num_boxes
    assert all(Path(r.image).is_relative_to(out.resolve()) for r in again)


def test_convert_with_image_base_url(cards: LabeledDataset, tmp_path: Path) -> None:
    src = cards.to_coco(tmp_path / "cards" / "annotations.json")
    base = "azureml://subscriptions/s/resourcegroups/r/workspaces/w/datastores/workspaceblobstore/paths/cards/"
    assert (
        main(
            [
                "dataset",
                "convert",
                str(src),
                str(tmp_path / "aml"),
                "--to",
                "azureml",
                "--image-base-url",
                base,
            ]
        )
        == 0
    )
    lines = (tmp_path / "aml" / "annotations.jsonl").read_text().splitlines()
    assert all(json.loads(line)["image_url"].startswith(base + "images/") for line in lines)
    assert (tmp_path / "aml" / "MLTable").is_file()


def test_stats_json_and_plot(
    cards: LabeledDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cards.to_azureml(cards.root)  # type: ignore[arg-type]
    png = tmp_path / "classes.png"
    assert main(["dataset", "stats", str(cards.root), "--json", "--plot", str(png)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == len(cards) and summary["boxes"] == cards.num_boxes
    assert png.stat().st_size > 1000


def test_validate_exit_codes(
    cards: LabeledDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = cards.to_azureml(cards.root)  # type: ignore[arg-type]
    assert main(["dataset", "validate", str(cards.root)]) == 0
    lines = jsonl.read_text().splitlines()
    bad = json.loads(lines[0])
    bad["label"][0]["bottomX"] = 5.0
    lines[0] = json.dumps(bad)
    lines.append("{not json")
    jsonl.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["dataset", "validate", str(cards.root)]) == 1
    text = capsys.readouterr().out
    assert "line 1" in text and "bottomX" in text and f"line {len(lines)}" in text


def test_split_writes_parts(cards: LabeledDataset, tmp_path: Path) -> None:
    src = cards.to_coco(cards.root / "annotations.json")  # type: ignore[operator]
    out = tmp_path / "split"
    assert (
        main(["dataset", "split", str(src), "--out", str(out), "--val", "0.25", "--seed", "0"]) == 0
    )
    train = read_dataset(out / "train")
    val = read_dataset(out / "val")
    assert len(train) + len(val) == len(cards) and len(val) == 3
    assert not (out / "test").exists()


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "stats", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([]) == 2


def test_console_script_help() -> None:
    exe = shutil.which("detectkit") or str(Path(sys.executable).parent / "detectkit")
    for args in (
        ["--help"],
        ["dataset", "--help"],
        ["dataset", "convert", "--help"],
        ["evaluate", "--help"],
    ):
        out = subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout
        assert "usage: detectkit" in out
