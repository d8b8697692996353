"""Generate a small labeled data set, convert it to Azure ML JSONL + MLTable and COCO, validate
it and print its statistics. Runs offline in a few seconds.

    python examples/quickstart/quickstart.py [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import detectkit
from detectkit.synthetic import make_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="quickstart-data", help="folder to write into")
    parser.add_argument("--images", type=int, default=24, help="number of images to generate")
    args = parser.parse_args(argv)
    out = Path(args.out)

    dataset = make_dataset(out, n_images=args.images, seed=0)
    print(f"generated {len(dataset)} images with {dataset.num_boxes} boxes in {out / 'images'}")

    jsonl = dataset.to_azureml(out / "azureml")
    print(f"Azure ML JSONL + MLTable: {jsonl} (+ {jsonl.parent / 'MLTable'})")
    coco = dataset.to_coco(out / "coco.json")
    print(f"COCO: {coco}")

    again = detectkit.read_dataset(out / "azureml", images_root=out)
    assert again.num_boxes == dataset.num_boxes
    report = again.validate()
    print(f"validation: {report.to_text()}")
    print()
    print(again.summary().to_text())
    chart = out / "class_distribution.png"
    again.plot_class_distribution().savefig(chart, dpi=100, bbox_inches="tight")
    print(f"\nclass distribution chart: {chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
