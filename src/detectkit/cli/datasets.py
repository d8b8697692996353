"""``detectkit dataset``: data set files (convert, stats, validate, split) and the data assets
of the chosen backend (create, list, show)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectkit.cli._common import (
    add_backend_options,
    command_group,
    emit,
    examples,
    open_project,
    record,
    table,
)
from detectkit.formats import FORMATS

if TYPE_CHECKING:
    from detectkit.dataset import Format, LabeledDataset
    from detectkit.validation import ValidationReport

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add the ``dataset`` group to the top-level subparsers."""
    _, ds_sub = command_group(
        sub,
        "dataset",
        help="convert, inspect, validate and split data sets; create and list data assets",
        description="Work with labeled data sets in Azure ML JSONL/MLTable, COCO, Pascal VOC "
        "or YOLO format (recognised automatically unless --from is given), and with the data "
        "assets of a backend.",
    )
    _file_commands(ds_sub)

    create = ds_sub.add_parser(
        "create",
        help="upload a data set as a data asset (az ml data create)",
        description="Validate SRC (any format) and store it as the data asset NAME: images, "
        "JSONL and MLTable. A data set with errors is refused before anything is uploaded.",
        epilog=examples(
            "detectkit dataset create cards ./cards --local ./project",
            "detectkit dataset create cards coco.json --workspace config.json --json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("name", metavar="NAME", help="data asset name")
    create.add_argument("src", metavar="SRC", help="annotation file or folder")
    create.add_argument("--from", dest="from_", choices=FORMATS, help="input format")
    create.add_argument("--images-root", metavar="DIR", help="folder image paths are relative to")
    create.add_argument("--version", help="version (default: the next number)")
    create.add_argument("--description", help="description")
    add_backend_options(create)
    create.set_defaults(func=_cmd_create)

    listing = ds_sub.add_parser(
        "list",
        help="list data assets (az ml data list)",
        epilog=examples("detectkit dataset list --local ./project --json"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_backend_options(listing)
    listing.set_defaults(func=_cmd_list)

    show = ds_sub.add_parser(
        "show",
        help="show one data asset (az ml data show)",
        epilog=examples("detectkit dataset show cards:2 --local ./project"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("ref", metavar="NAME[:VERSION]", help="data asset (latest by default)")
    add_backend_options(show)
    show.set_defaults(func=_cmd_show)


def _file_commands(ds_sub: Any) -> None:
    conv = ds_sub.add_parser(
        "convert",
        help="convert between formats",
        description="Read SRC and write it to DST in another format. Every box is kept exactly.",
    )
    conv.add_argument("src", metavar="SRC", help="annotation file or folder to read")
    conv.add_argument("dst", metavar="DST", help="file or folder to write")
    conv.add_argument("--to", required=True, choices=FORMATS, help="output format")
    conv.add_argument(
        "--from", dest="from_", choices=FORMATS, help="input format (default: recognised)"
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
        "--overwrite",
        action="store_true",
        help="replace DST whole when it already holds files (default: refuse)",
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
    stats.add_argument("--from", dest="from_", choices=FORMATS, help="input format")
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
    val.add_argument("--from", dest="from_", choices=FORMATS, help="input format")
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
    split.add_argument("--from", dest="from_", choices=FORMATS, help="input format")
    split.add_argument("--to", choices=FORMATS, help="output format (default: azureml)")
    split.add_argument("--images-root", metavar="DIR", help="folder image paths are relative to")
    split.add_argument(
        "--overwrite",
        action="store_true",
        help="replace each part's folder whole when it already holds files (default: refuse)",
    )
    split.set_defaults(func=_cmd_split)


# ----------------------------------------------------------------------------- assets
def _asset_rows(assets: list[Any]) -> list[dict[str, Any]]:
    return [record(a) for a in assets]


def _cmd_create(args: argparse.Namespace) -> int:
    from detectkit.formats import read_dataset

    project = open_project(args)
    dataset = read_dataset(args.src, args.from_, images_root=args.images_root)
    asset = project.datasets.create(
        args.name, dataset, version=args.version, description=args.description
    )
    emit(args, record(asset), f"created data asset {asset.name}:{asset.version} ({asset.uri})")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    rows = _asset_rows(open_project(args).datasets.list())
    emit(args, rows, lambda: table(rows, ["name", "version", "images", "boxes", "uri"]))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    name, _, version = args.ref.removeprefix("azureml:").partition(":")
    asset = open_project(args).datasets.get(name, version or None)
    data = record(asset)
    emit(args, data, lambda: "\n".join(f"{k}: {v}" for k, v in data.items() if v is not None))
    return 0


# ----------------------------------------------------------------------------- files
def _read(args: argparse.Namespace) -> LabeledDataset:
    from detectkit.formats import read_dataset

    return read_dataset(args.src, args.from_, images_root=getattr(args, "images_root", None))


def _read_collect(args: argparse.Namespace) -> tuple[LabeledDataset, ValidationReport]:
    from detectkit.formats import read_dataset

    return read_dataset(
        args.src, args.from_, images_root=getattr(args, "images_root", None), errors="collect"
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
        overwrite=args.overwrite,
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
        path = write_dataset(part, out / name, fmt, copy_images=True, overwrite=args.overwrite)
        print(f"{name}: {len(part)} images, {part.num_boxes} boxes -> {path}")
    return 0
