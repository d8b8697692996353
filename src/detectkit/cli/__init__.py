"""The ``detectkit`` command: thin over the library.

Exit codes: 0 success, 1 problems found (``dataset validate``) , 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from detectkit.errors import DetectkitError

if TYPE_CHECKING:
    from detectkit.dataset import Format, LabeledDataset
    from detectkit.validation import ValidationReport

__all__ = ["main"]

_FORMATS = ("azureml", "coco", "voc", "yolo")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``detectkit`` command line; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except DetectkitError as exc:
        print(f"detectkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detectkit: interrupted", file=sys.stderr)
        return 130
    return code


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detectkit",
        description="Object detection datasets, training, endpoints, predictions and evaluation "
        "on Azure ML or on this machine.",
    )
    from detectkit import __version__

    parser.add_argument("--version", action="version", version=f"detectkit {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    # dataset ---------------------------------------------------------------------
    ds = sub.add_parser(
        "dataset",
        help="convert, inspect, validate and split labeled data sets",
        description="Work with labeled data sets in Azure ML JSONL/MLTable, COCO, Pascal VOC "
        "or YOLO format (recognised automatically unless --from is given).",
    )
    ds_sub = ds.add_subparsers(title="dataset commands", metavar="ACTION")

    def _dataset_help(_args: argparse.Namespace) -> int:
        ds.print_help()
        return 2

    ds.set_defaults(func=_dataset_help)

    conv = ds_sub.add_parser(
        "convert",
        help="convert between formats",
        description="Read SRC and write it to DST in another format. Every box is kept exactly.",
    )
    conv.add_argument("src", metavar="SRC", help="annotation file or folder to read")
    conv.add_argument("dst", metavar="DST", help="file or folder to write")
    conv.add_argument("--to", required=True, choices=_FORMATS, help="output format")
    conv.add_argument(
        "--from", dest="from_", choices=_FORMATS, help="input format (default: recognised)"
    )
    conv.add_argument(
        "--image-base-url",
        metavar="URL",
        help="rewrite image references under this URL (azureml and coco), e.g. "
        "azureml://subscriptions/.../datastores/workspaceblobstore/paths/cards/",
    )
    conv.add_argument(
        "--images-root", metavar="DIR", help="folder the source's image paths are relative to"
    )
    conv.add_argument(
        "--no-copy-images",
        action="store_true",
        help="do not copy images into DST; reference them by absolute path instead "
        "(reading DST back then needs --images-root)",
    )
    conv.add_argument(
        "--keep-going",
        action="store_true",
        help="skip invalid records (listed on stderr) instead of stopping at the first problem",
    )
    conv.set_defaults(func=_cmd_convert)

    stats = ds_sub.add_parser(
        "stats",
        help="print counts per class and box statistics",
        description="Summarise a data set.",
    )
    stats.add_argument("src", metavar="SRC", help="annotation file or folder")
    stats.add_argument("--from", dest="from_", choices=_FORMATS, help="input format")
    stats.add_argument("--images-root", metavar="DIR", help="folder image paths are relative to")
    stats.add_argument("--plot", metavar="FILE.png", help="also write the class distribution chart")
    stats.add_argument("--json", action="store_true", help="print the summary as JSON")
    stats.set_defaults(func=_cmd_stats)

    val = ds_sub.add_parser(
        "validate",
        help="list every problem in a data set (exit code 1 when there are errors)",
        description="Read SRC collecting every problem (bad boxes, unknown labels, missing or "
        "unreadable images, EXIF-swapped sizes, duplicate ids ...) and print the report.",
    )
    val.add_argument("src", metavar="SRC", help="annotation file or folder")
    val.add_argument("--from", dest="from_", choices=_FORMATS, help="input format")
    val.add_argument("--images-root", metavar="DIR", help="folder image paths are relative to")
    val.add_argument("--no-images", action="store_true", help="do not open the image files")
    val.add_argument("--json", action="store_true", help="print the report as JSON")
    val.set_defaults(func=_cmd_validate)

    split = ds_sub.add_parser(
        "split",
        help="split into train/val(/test), stratified by class",
        description="Seeded, deterministic split stratified by class; writes one data set per "
        "part under --out (train/, val/, test/) in the input's format or --to.",
    )
    split.add_argument("src", metavar="SRC", help="annotation file or folder")
    split.add_argument("--out", required=True, metavar="DIR", help="output folder")
    split.add_argument("--val", type=float, default=0.2, help="validation fraction (default 0.2)")
    split.add_argument("--test", type=float, default=0.0, help="test fraction (default 0)")
    split.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    split.add_argument("--from", dest="from_", choices=_FORMATS, help="input format")
    split.add_argument("--to", choices=_FORMATS, help="output format (default: azureml)")
    split.add_argument("--images-root", metavar="DIR", help="folder image paths are relative to")
    split.set_defaults(func=_cmd_split)

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
    ev.add_argument("--from", dest="from_", choices=_FORMATS, help="ground-truth format")
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
    return parser


# ----------------------------------------------------------------------------- commands
def _source(args: argparse.Namespace) -> str:
    return str(args.src if hasattr(args, "src") else args.ground_truth)


def _read(args: argparse.Namespace) -> LabeledDataset:
    from detectkit.formats import read_dataset

    return read_dataset(_source(args), args.from_, images_root=getattr(args, "images_root", None))


def _read_collect(args: argparse.Namespace) -> tuple[LabeledDataset, ValidationReport]:
    from detectkit.formats import read_dataset

    return read_dataset(
        _source(args),
        args.from_,
        images_root=getattr(args, "images_root", None),
        errors="collect",
    )


def _cmd_convert(args: argparse.Namespace) -> int:
    from detectkit.formats import read_dataset, write_dataset

    if args.keep_going:
        dataset, report = read_dataset(
            args.src, args.from_, images_root=args.images_root, errors="collect"
        )
        if report.problems:
            print(report.to_text(), file=sys.stderr)
    else:
        dataset = read_dataset(args.src, args.from_, images_root=args.images_root)
    out = write_dataset(
        dataset,
        args.dst,
        args.to,
        image_base_url=args.image_base_url,
        copy_images=not args.no_copy_images,
    )
    print(f"wrote {len(dataset)} images, {dataset.num_boxes} boxes as {args.to}: {out}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    dataset = _read(args)
    summary = dataset.summary()
    if args.json:
        print(summary.model_dump_json(indent=2))
    else:
        print(summary.to_text())
    if args.plot:
        fig = dataset.plot_class_distribution()
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(
            f"class distribution chart: {args.plot}", file=sys.stderr if args.json else sys.stdout
        )
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    dataset, report = _read_collect(args)
    full = report.merge(dataset.validate(check_images=not args.no_images, progress=True))
    if args.json:
        print(full.model_dump_json(indent=2))
    else:
        print(f"{len(dataset)} valid images, {dataset.num_boxes} boxes")
        print(full.to_text(limit=None))
    return 0 if full.ok else 1


def _cmd_split(args: argparse.Namespace) -> int:
    from detectkit.formats import write_dataset

    dataset = _read(args)
    fmt: Format = args.to or "azureml"
    parts = dataset.split(args.val, test=args.test, seed=args.seed)
    out = Path(args.out)
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        if name == "test" and args.test == 0:
            continue
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        path = write_dataset(part, target, fmt, copy_images=True)
        print(f"{name}: {len(part)} images, {part.num_boxes} boxes -> {path}")
    return 0


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
        dataset = _read(args)
        images = [r.image for r in dataset]
        sizes = [r.size for r in dataset]
        predictions = read_predictions(args.predictions, images=images, sizes=sizes)
        report = evaluate(dataset, predictions, score_threshold=args.score_threshold)
    if args.json:
        print(report.to_json())
    else:
        print(report.to_text())
    if args.plots:
        from detectkit.viz.drawing import plot_confusion_matrix, plot_pr_curves

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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
