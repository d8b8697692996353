"""``detectkit score``: batch scoring on this machine, with no server (project.score)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from detectkit.cli._common import UsageError, add_backend_options, emit, examples, open_project

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``score``."""
    score = sub.add_parser(
        "score",
        help="score a folder of images on this machine into batch output lines (no server)",
        description="Score DATA with MODEL in worker processes on this machine and append one "
        'JSON line per image to --out: {"filename", "boxes": [...]}, the batch endpoint output '
        "(normalized coordinates), which `detectkit evaluate` reads. Each mini-batch is one "
        "atomic append: a killed run continues with --resume. Images that cannot be scored "
        "are listed (exit code 1) and get no line.",
        epilog=examples(
            "detectkit score cards-detector:1 photos/ --out predictions.jsonl --local ./project",
            "detectkit score cards-detector cards-data:2 --out p.jsonl --resume --local p",
            "detectkit score ./mlflow-model photos/ --out p.jsonl --processes 2 --json --local p",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument(
        "model", metavar="MODEL", help="registered model NAME[:VERSION], or an MLflow model folder"
    )
    score.add_argument(
        "data", metavar="DATA", help="a folder of images, an image, or a data asset NAME[:VERSION]"
    )
    score.add_argument(
        "--out", required=True, metavar="predictions.jsonl", help="the JSON-lines file to write"
    )
    score.add_argument(
        "--processes", type=int, default=None, help="worker processes (default: one per CPU, <= 8)"
    )
    score.add_argument(
        "--batch-size", type=int, default=8, help="images per model call and per append"
    )
    again = score.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="skip the images --out already holds")
    again.add_argument("--overwrite", action="store_true", help="empty --out first")
    score.add_argument(
        "--runtime",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="model runtime: ONNX Runtime, torch, or auto (default)",
    )
    add_backend_options(score)
    score.set_defaults(func=_cmd_score)


def _cmd_score(args: argparse.Namespace) -> int:
    if args.processes is not None and args.processes < 1:
        raise UsageError(f"--processes: expected 1 or more, got {args.processes}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: expected 1 or more, got {args.batch_size}")
    result = open_project(args).score(
        args.model,
        args.data,
        out=args.out,
        processes=args.processes,
        batch_size=args.batch_size,
        resume=args.resume,
        overwrite=args.overwrite,
        runtime=args.runtime,
    )
    data = result.model_dump(mode="json")

    def text() -> str:
        lines = [
            f"scored {result.scored} images in {result.seconds:.1f} s "
            f"({result.images_per_second:.2f} images/s, {result.processes} processes)"
            + (f", skipped {result.skipped} already in {result.out}" if result.skipped else ""),
            f"wrote {result.out}",
        ]
        lines += [f"failed: {f.image}: {f.reason}" for f in result.failed]
        return "\n".join(lines)

    emit(args, data, text)
    if result.failed:
        print(
            f"detectkit: {len(result.failed)} images could not be scored (no line written); "
            "fix or remove them and run again with --resume",
            file=sys.stderr,
        )
        return 1
    return 0
