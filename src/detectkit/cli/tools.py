"""``detectkit draw``, ``evaluate``, ``demo`` and ``serve``: work on files and this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from detectkit.formats import FORMATS

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add the file and local-machine commands to the top-level subparsers."""
    # draw / evaluate -------------------------------------------------------------
    draw = sub.add_parser(
        "draw",
        help="draw predicted boxes on an image",
        description="Draw the boxes of a scoring response (online response, batch line or COCO "
        "results) on IMAGE and write a PNG.",
    )
    draw.add_argument("image", metavar="IMAGE", help="image file")
    draw.add_argument(
        "--prediction", required=True, metavar="RESPONSE.json", help="scoring response"
    )
    draw.add_argument("--out", required=True, metavar="OUT.png", help="output image")
    draw.add_argument("--min-score", type=float, default=None, help="hide boxes scoring below this")
    draw.set_defaults(func=_cmd_draw)

    ev = sub.add_parser(
        "evaluate",
        help="COCO mAP of predictions against ground truth",
        description="Evaluate PREDICTIONS (scoring responses, batch output lines or COCO results) "
        "against GROUND_TRUTH (any data set format) with the COCO protocol; numbers equal "
        "pycocotools'.",
    )
    ev.add_argument("ground_truth", metavar="GROUND_TRUTH", help="labeled data set")
    ev.add_argument("predictions", metavar="PREDICTIONS", help="predictions file")
    ev.add_argument("--from", dest="from_", choices=FORMATS, help="ground-truth format")
    ev.add_argument(
        "--images-root", metavar="DIR", help="folder ground-truth image paths are relative to"
    )
    ev.add_argument("--plots", metavar="DIR", help="write PR curves and the confusion matrix here")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument(
        "--score-threshold", type=float, default=0.5, help="for P/R/F1 and the confusion matrix"
    )
    ev.set_defaults(func=_cmd_evaluate)

    # local backend -----------------------------------------------------------------
    demo = sub.add_parser(
        "demo",
        help="the whole lifecycle on this machine in a few minutes",
        description="Generate a small data set, validate it, train a model, register it, serve "
        "it on 127.0.0.1, predict, evaluate and draw, all locally (needs the [local] extra).",
    )
    demo.add_argument(
        "--root", default="detectkit-demo", help="project folder (default detectkit-demo)"
    )
    demo.add_argument("--quick", action="store_true", help="a tiny run for smoke tests (seconds)")
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser(
        "serve",
        help="serve an MLflow model folder on 127.0.0.1 (foreground)",
        description="Serve MODEL (an MLflow model folder) with the Azure ML scoring contract on "
        "POST /score until interrupted.",
    )
    serve.add_argument("model", metavar="MODEL", help="MLflow model folder")
    serve.add_argument("--port", type=int, default=5001, help="port (default 5001)")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument(
        "--processes",
        type=int,
        default=None,
        help="server processes sharing the port (default: 1 for a torch model, else one per "
        "CPU up to 4)",
    )
    serve.set_defaults(func=_cmd_serve)


def _cmd_draw(args: argparse.Namespace) -> int:
    from detectkit.images import image_size
    from detectkit.scoring.response import read_predictions
    from detectkit.viz.drawing import draw

    size = image_size(args.image)
    predictions = read_predictions(args.prediction, images=[args.image], sizes=[size])
    name = Path(args.image).name
    match = [p for p in predictions if p.image and Path(p.image).name == name] or predictions[:1]
    if not match:
        print(f"detectkit: error: {args.prediction}: no prediction found", file=sys.stderr)
        return 2
    picture = draw(args.image, match[0], min_score=args.min_score)
    picture.save(args.out)
    print(f"wrote {args.out} ({len(match[0].detections)} boxes before filtering)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from detectkit.evaluation.pipeline import evaluate, evaluate_coco_files
    from detectkit.scoring.response import read_predictions

    results = _coco_results(Path(args.predictions))
    if results is not None:
        gt = Path(args.ground_truth)
        if not (gt.is_file() and gt.suffix.lower() == ".json"):
            print(
                f"detectkit: error: {args.predictions} holds COCO results (image_id, bbox, score); "
                "their image_id values refer to a COCO ground-truth file, so GROUND_TRUTH must be "
                f"that .json file, got {gt}",
                file=sys.stderr,
            )
            return 2
        report = evaluate_coco_files(gt, results, score_threshold=args.score_threshold)
    else:
        from detectkit.formats import read_dataset

        dataset = read_dataset(args.ground_truth, args.from_, images_root=args.images_root)
        images = [r.image for r in dataset]
        sizes = [r.size for r in dataset]
        predictions = read_predictions(args.predictions, images=images, sizes=sizes)
        report = evaluate(dataset, predictions, score_threshold=args.score_threshold)
    if args.json:
        print(report.to_json())
    else:
        print(report.to_text())
    if args.plots:
        from detectkit.viz.charts import plot_confusion_matrix, plot_pr_curves

        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        plot_pr_curves(report).savefig(folder / "pr_curves.png", dpi=120, bbox_inches="tight")
        plot_confusion_matrix(report).savefig(
            folder / "confusion_matrix.png", dpi=120, bbox_inches="tight"
        )
        print(f"plots written to {folder}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _coco_results(path: Path) -> list[dict[str, object]] | None:
    """The parsed file when it is a COCO results list (``image_id`` + ``bbox``), else None."""
    import json

    try:
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip()
    except OSError:
        return None
    if not head.startswith(b"[") or b'"image_id"' not in head:
        return None
    try:
        data = json.loads(path.read_bytes())
    except ValueError:
        return None
    if isinstance(data, list) and data and isinstance(data[0], dict) and "bbox" in data[0]:
        return data
    return None


def _cmd_demo(args: argparse.Namespace) -> int:
    from detectkit.demo import run_demo

    run_demo(args.root, quick=args.quick)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from detectkit.backends.local.serve import ServerOptions, serve_forever

    if args.processes is not None and args.processes < 1:
        print(
            f"detectkit serve: --processes: expected 1 or more, got {args.processes}",
            file=sys.stderr,
        )
        return 2
    options = ServerOptions(processes=args.processes)
    serve_forever(Path(args.model), host=args.host, port=args.port, options=options)
    return 0
