"""``detectkit predict``: score images on an endpoint (az ml online-endpoint invoke)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from detectkit.cli._common import add_backend_options, emit, examples, open_project

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``predict``."""
    predict = sub.add_parser(
        "predict",
        help="score images on an online endpoint (az ml online-endpoint invoke)",
        description="Send IMAGES to the endpoint (in memory, with its key) and print or write "
        'one JSON line per image: {"filename", "boxes": [...]}, normalized coordinates.',
        epilog=examples(
            "detectkit predict a.jpg b.jpg --endpoint cards-ep --local ./project",
            "detectkit predict imgs/*.png --endpoint cards-ep --out predictions.jsonl "
            "--draw drawn/ --min-score 0.5 --workspace config.json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("images", metavar="IMAGES", nargs="+", help="image files")
    predict.add_argument("--endpoint", required=True, metavar="NAME", help="endpoint name")
    predict.add_argument("--deployment", help="route to this deployment")
    predict.add_argument("--out", metavar="predictions.jsonl", help="write JSON lines here")
    predict.add_argument("--draw", metavar="DIR", help="write each image with its boxes here")
    predict.add_argument("--min-score", type=float, help="drop boxes scoring below this")
    predict.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    predict.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="most images per request"
    )
    predict.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="requests in flight at once (default: what the deployment serves in parallel)",
    )
    add_backend_options(predict)
    predict.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from detectkit.scoring.response import format_response

    endpoint = open_project(args).endpoints.get(args.endpoint)
    preds = endpoint.predict(
        args.images,
        min_score=args.min_score,
        deployment=args.deployment,
        timeout=args.timeout,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
    )
    bodies = format_response(preds)
    lines = [{"filename": image, **body} for image, body in zip(args.images, bodies, strict=True)]
    if args.out:
        Path(args.out).write_text(
            "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
        )
    if args.draw:
        from detectkit.viz.drawing import draw

        folder = Path(args.draw)
        folder.mkdir(parents=True, exist_ok=True)
        for image, pred in zip(args.images, preds, strict=True):
            draw(image, pred).save(folder / f"{Path(image).stem}.png")
    summary = "\n".join(f"{line['filename']}: {len(line['boxes'])} boxes" for line in lines) + (
        f"\nwrote {args.out}" if args.out else ""
    )
    emit(args, lines, summary)
    return 0
