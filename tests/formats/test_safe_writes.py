"""Writers never mix two data sets, never tear, and never overwrite silently."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from detectkit.cli import main
from detectkit.errors import ConflictError
from detectkit.formats import FORMATS, read_dataset, write_dataset
from detectkit.synthetic import make_dataset


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "coco"] + ["coco"])
def test_non_empty_destination_is_refused_then_replaced_whole(tmp_path: Path, fmt: str) -> None:
    old = make_dataset(tmp_path / "old", n_images=6, seed=1)
    new = make_dataset(tmp_path / "new", n_images=3, seed=2)
    dest = tmp_path / "dest"
    write_dataset(old, dest, fmt, copy_images=True)  # type: ignore[arg-type]
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    with pytest.raises(ConflictError, match="overwrite"):
        write_dataset(new, dest, fmt, copy_images=True)  # type: ignore[arg-type]
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    write_dataset(new, dest, fmt, copy_images=True, overwrite=True)  # type: ignore[arg-type]
    images = [p for p in dest.rglob("*.png")]
    assert len(images) == 3  # only the new data set's files
    source = next(dest.glob("*.json")) if fmt == "labelstudio" else dest
    assert len(read_dataset(source, fmt)) == 3  # type: ignore[arg-type]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_interrupted_write_leaves_destination_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = make_dataset(tmp_path / "old", n_images=4, seed=1)
    new = make_dataset(tmp_path / "new", n_images=4, seed=2)
    dest = tmp_path / "dest"
    write_dataset(old, dest, "yolo")
    snapshot = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    real_open = builtins.open
    calls = {"n": 0}

    def failing_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if "w" in str(mode) and str(file).endswith(".txt"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing_open)
    monkeypatch.setattr("io.open", failing_open)
    with pytest.raises(OSError, match="No space"):
        write_dataset(new, dest, "yolo", overwrite=True)
    monkeypatch.undo()
    assert calls["n"] == 3
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == snapshot
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_cli_convert_refuses_then_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_dataset(tmp_path / "a", n_images=2, seed=1)
    src = write_dataset(
        read_dataset(tmp_path / "a" / "images", "yolo"), tmp_path / "src", "voc", copy_images=True
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale.png").write_bytes(b"old")
    assert main(["dataset", "convert", str(src), str(dest), "--to", "yolo"]) != 0
    assert "--overwrite" in capsys.readouterr().err
    assert main(["dataset", "convert", str(src), str(dest), "--to", "yolo", "--overwrite"]) == 0
    assert not (dest / "stale.png").exists() and len(list((dest / "images").iterdir())) == 2
    out = tmp_path / "parts"
    assert main(["dataset", "split", str(src), "--out", str(out), "--to", "voc"]) == 0
    assert main(["dataset", "split", str(src), "--out", str(out), "--to", "voc"]) != 0
    assert (
        main(["dataset", "split", str(src), "--out", str(out), "--to", "voc", "--overwrite"]) == 0
    )
