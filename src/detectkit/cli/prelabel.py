"""``detectkit prelabel``: draft labels from a model, with provenance (project.prelabel)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from detectkit.cli._common import UsageError, add_backend_options, emit, examples, open_project
from detectkit.formats import FORMATS

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``prelabel``."""
    cmd = sub.add_parser(
        "prelabel",
        help="give images draft labels from a model (kept apart from human labels)",
        description="Score DATA with MODEL and write every image with its human labels kept "
        'and the model\'s boxes as drafts (source "model", their score and model_version). '
        "Drafts overlapping a human box of their class (IoU >= 0.5) are dropped. With "
        "--min-score auto the threshold is the lowest whose precision reaches "
        "--target-precision on the images of DATA that already have human labels (they must "
        "be held out from the model's training data).",
        epilog=examples(
            "detectkit prelabel cards-detector:1 photos/ --out drafts.jsonl --local ./project",
            "detectkit prelabel endpoint:cards-ep labels.jsonl --out drafts --min-score auto "
            "--to labelstudio --local p",
            "detectkit prelabel run:sweep-7 annotations.json --out d.json --to coco --local p",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "model",
        metavar="MODEL",
        help="registered model NAME[:VERSION], endpoint:NAME, or run:NAME (its best trial)",
    )
    cmd.add_argument(
        "data",
        metavar="DATA",
        help="an annotation file or folder in any format (its labels are kept), a folder of "
        "images, or a data asset NAME[:VERSION]",
    )
    cmd.add_argument("--out", required=True, metavar="PATH", help="the file or folder to write")
    cmd.add_argument(
        "--to", choices=FORMATS, default="azureml", help="output format (default: azureml)"
    )
    cmd.add_argument(
        "--min-score",
        default="0.5",
        metavar="S|auto",
        help="keep drafts scoring at least S (default 0.5), or calibrate with 'auto'",
    )
    cmd.add_argument(
        "--target-precision", type=float, default=0.9, help="precision 'auto' aims for"
    )
    cmd.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    cmd.add_argument("--batch-size", type=int, default=16, help="images per model call")
    cmd.add_argument(
        "--processes", type=int, default=None, help="scoring processes (default: one per CPU)"
    )
    add_backend_options(cmd)
    cmd.set_defaults(func=_cmd_prelabel)


def _min_score(text: str) -> float | Literal["auto"]:
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--min-score: expected a number in [0, 1] or 'auto', got {text!r}")
    return value


def _data(text: str) -> Any:
    """An annotation file or folder as a LabeledDataset; anything else as given."""
    from detectkit.errors import InvalidInputError, NotFoundError
    from detectkit.formats import detect_format, read_dataset

    if not Path(text).exists():
        return text  # a data asset name
    try:
        fmt = detect_format(text)
    except (InvalidInputError, NotFoundError):
        return text  # a folder of images, or one image
    return read_dataset(text, fmt)


def _cmd_prelabel(args: argparse.Namespace) -> int:
    from detectkit.formats import write_dataset

    if args.batch_size < 1:
        raise UsageError(f"--batch-size: expected 1 or more, got {args.batch_size}")
    min_score = _min_score(args.min_score)
    project = open_project(args)
    source: Any = args.model
    kind, _, name = args.model.partition(":")
    if kind == "endpoint" and name:
        source = project.endpoints.get(name)
    elif kind == "run" and name:
        source = project.runs.get(name)
    result = project.prelabel(
        source,
        _data(args.data),
        min_score=min_score,
        target_precision=args.target_precision,
        batch_size=args.batch_size,
        processes=args.processes,
    )
    out = write_dataset(result.dataset, args.out, args.to, overwrite=args.overwrite)
    cal = result.calibration
    data = {
        "out": str(out),
        "format": args.to,
        "images": result.images,
        "drafts": result.drafts,
        "dropped_overlapping": result.dropped_overlapping,
        "threshold": result.threshold,
        "model_version": result.model_version,
        "calibration": None if cal is None else cal.model_dump(mode="json"),
    }

    def text() -> str:
        lines = [
            f"{result.drafts} drafts on {result.images} images from {result.model_version} "
            f"(min score {result.threshold:.3f}; {result.dropped_overlapping} dropped over "
            "human boxes)"
        ]
        if cal is not None:
            lines.append(
                f"calibrated on {cal.images} labeled images ({cal.boxes} boxes): precision "
                f"{cal.precision:.3f}, recall {cal.recall:.3f}"
            )
        lines.append(f"wrote {out}")
        return "\n".join(lines)

    emit(args, data, text)
    return 0
