"""``detectkit label``, called through its parser and run() (not through detectkit.cli)."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path

from PIL import Image

from detectkit.dataset import ImageRecord, LabeledDataset
from detectkit.formats.coco import read_coco, write_coco
from detectkit.labeling.command import add_parser, run


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="detectkit")
    add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_label_a_coco_file_in_place(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("RGB", (50, 40)).save(folder / "a.png")
    dataset = LabeledDataset(
        [ImageRecord(image=str(folder / "a.png"), width=50, height=40)], ["cat"], root=folder
    )
    write_coco(dataset, folder / "annotations.json")
    args = _parse(
        [
            "label",
            str(folder),
            "--classes",
            "cat,dog",
            "--in-place",
            "--project",
            str(tmp_path / "p"),
        ]
    )
    assert args.port is None and args.in_place
    assert run(args, block=False) == 0
    server = args.server
    try:
        image = server.store.entries[0].id
        body = {
            "revision": 0,
            "state": "labeled",
            "boxes": [
                {"label": "dog", "top_x": 0.2, "top_y": 0.25, "bottom_x": 0.6, "bottom_y": 0.5}
            ],
        }
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/images/{image}",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"X-Detectkit-Token": server.token},
        )
        urllib.request.urlopen(req).close()
    finally:
        server.stop()  # the last sync writes the file back
    back, report = read_coco(folder / "annotations.json")
    assert report.ok
    assert back.classes == ("cat", "dog")
    (obj,) = back.records[0].objects
    assert obj.label == "dog" and obj.box.to_xyxy(50, 40) == (10.0, 10.0, 30.0, 20.0)
    assert Path(back.records[0].image).resolve() == (folder / "a.png").resolve()


def test_a_missing_folder_is_a_usage_error(tmp_path: Path, capsys: object) -> None:
    args = _parse(["label", str(tmp_path / "nope"), "--classes", "a", "--project", str(tmp_path)])
    assert run(args, block=False) == 2
    time.sleep(0)
