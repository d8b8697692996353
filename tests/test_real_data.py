"""The real playing-cards photos (Pascal VOC) beside the checkout: read, then a tour of every format.

Skipped when the shared data set is not there (it is never copied into the repository).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import detectkit
from detectkit import LabeledDataset
from detectkit.images import image_info

_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "shared/datasets/playing-cards/train",
    Path(__file__).resolve().parents[1].parent / "shared/datasets/playing-cards/train",
)
CARDS = next((p for p in _CANDIDATES if p.is_dir()), None)

pytestmark = pytest.mark.skipif(
    CARDS is None,
    reason=f"real data set not found (looked in {', '.join(map(str, dict.fromkeys(_CANDIDATES)))})",
)


@pytest.fixture(scope="module")
def cards() -> LabeledDataset:
    assert CARDS is not None
    return detectkit.read_dataset(CARDS)


def test_counts_classes_and_sizes(cards: LabeledDataset) -> None:
    assert CARDS is not None
    assert detectkit.detect_format(CARDS) == "voc"
    summary = cards.summary()
    assert (summary.images, summary.boxes) == (296, 527)
    assert set(summary.classes) == {"nine", "ten", "jack", "queen", "king", "ace"}
    assert summary.images_without_boxes == 0
    assert summary.crowd_boxes == 0
    assert sum(summary.boxes_per_class.values()) == 527
    assert {r.size for r in cards} >= {(378, 504), (960, 540)}


def test_stored_sizes_are_the_displayed_sizes(cards: LabeledDataset) -> None:
    """The XML sizes agree with the EXIF-aware image headers, so the boxes are placed right."""
    report = cards.validate()
    assert report.ok, report.to_text()
    assert not report.problems
    for record in cards[:20]:
        info = image_info(record.image)
        assert (info.width, info.height) == record.size


def _bndboxes(folder: Path) -> dict[str, list[tuple[str, ...]]]:
    """filename -> [(name, xmin, ymin, xmax, ymax)] of every XML file in ``folder``."""
    out = {}
    for xml in sorted(folder.glob("*.xml")):
        root = ET.parse(xml).getroot()
        out[(root.findtext("filename") or "").lower()] = [
            (
                obj.findtext("name") or "",
                *(
                    str(int(float(obj.findtext(f"bndbox/{k}") or "nan")))
                    for k in ("xmin", "ymin", "xmax", "ymax")
                ),
            )
            for obj in root.iter("object")
        ]
    return out


def test_voc_jsonl_coco_yolo_voc_reproduces_every_box_to_the_pixel(
    cards: LabeledDataset, tmp_path: Path
) -> None:
    assert CARDS is not None
    jsonl = detectkit.write_dataset(cards, tmp_path / "jsonl" / "train.jsonl", "azureml")
    from_jsonl, report = detectkit.read_dataset(jsonl, images_root=CARDS, errors="collect")
    assert not report.problems, report.to_text()

    coco = detectkit.write_dataset(from_jsonl, tmp_path / "coco" / "train.json", "coco")
    from_coco, report = detectkit.read_dataset(coco, images_root=CARDS, errors="collect")
    assert not report.problems, report.to_text()

    yolo = detectkit.write_dataset(from_coco, tmp_path / "yolo", "yolo")
    from_yolo, report = detectkit.read_dataset(yolo, errors="collect")
    assert not report.problems, report.to_text()
    assert from_yolo.classes == from_coco.classes

    voc = detectkit.write_dataset(from_yolo, tmp_path / "voc", "voc")
    back, report = detectkit.read_dataset(voc, images_root=yolo, errors="collect")
    assert not report.problems, report.to_text()

    assert len(back) == 296
    assert back.num_boxes == 527
    original = _bndboxes(CARDS)
    assert len(original) == 296
    assert _bndboxes(voc) == original  # every label and every corner, to the pixel
    by_name = {r.name.lower(): r for r in cards}
    for record in back:  # and the normalized boxes to float noise
        source = by_name[record.name.lower()]
        assert record.size == source.size
        for a, b in zip(source.objects, record.objects, strict=True):
            assert abs(a.box.to_array() - b.box.to_array()).max() < 1e-9
