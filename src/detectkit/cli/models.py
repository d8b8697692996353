"""``detectkit models``: register, list and download models (az ml model create/list/download)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from detectkit.cli._common import (
    add_backend_options,
    command_group,
    emit,
    examples,
    open_project,
    record,
    table,
)

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add the ``models`` group."""
    _, models_sub = command_group(
        sub,
        "models",
        help="register, list and download models (az ml model create/list/download)",
        description="The model registry of the chosen backend.",
    )
    fmt = argparse.RawDescriptionHelpFormatter
    register = models_sub.add_parser(
        "register",
        help="register a run's best trial (or an MLflow model folder) as NAME",
        epilog=examples(
            "detectkit models register brave_lamp_1 cards-detector --local ./project",
            "detectkit models register ./download/mlflow-model cards-detector --json --local p",
        ),
        formatter_class=fmt,
    )
    register.add_argument("source", metavar="RUN", help="run name, or an MLflow model folder")
    register.add_argument("name", metavar="NAME", help="model name")
    register.add_argument("--version", help="version (default: the next number)")
    register.add_argument("--description", help="description")
    add_backend_options(register)
    register.set_defaults(func=_cmd_register)

    listing = models_sub.add_parser(
        "list",
        help="list models (every version of NAME, or the latest of each)",
        epilog=examples("detectkit models list --local ./project", "detectkit models list cards"),
        formatter_class=fmt,
    )
    listing.add_argument("name", metavar="NAME", nargs="?", help="one model's versions")
    add_backend_options(listing)
    listing.set_defaults(func=_cmd_list)

    download = models_sub.add_parser(
        "download",
        help="download a registered model's MLflow folder into DIR",
        epilog=examples("detectkit models download cards-detector:2 ./model --local ./project"),
        formatter_class=fmt,
    )
    download.add_argument("ref", metavar="NAME[:VERSION]", help="model (latest by default)")
    download.add_argument("dir", metavar="DIR", help="target folder")
    add_backend_options(download)
    download.set_defaults(func=_cmd_download)

    export = models_sub.add_parser(
        "export-onnx",
        help="export a local model to an ONNX file (AutoML's ONNX inputs and outputs)",
        epilog=examples(
            "detectkit models export-onnx cards-detector:2 model.onnx --local ./project"
        ),
        formatter_class=fmt,
    )
    export.add_argument("ref", metavar="NAME[:VERSION]", help="model (latest by default)")
    export.add_argument("path", metavar="PATH", help="the .onnx file to write")
    add_backend_options(export)
    export.set_defaults(func=_cmd_export_onnx)


def _cmd_register(args: argparse.Namespace) -> int:
    project = open_project(args)
    source: Any = args.source
    if not Path(source).is_dir():
        source = project.runs.get(args.source)
    model = project.models.register(
        source, args.name, version=args.version, description=args.description
    )
    emit(args, record(model.info), f"registered {model.reference} ({model.uri})")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [record(m.info) for m in open_project(args).models.list(args.name)]
    emit(args, rows, lambda: table(rows, ["name", "version", "run_name", "uri"]))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    name, _, version = args.ref.removeprefix("azureml:").partition(":")
    model = open_project(args).models.get(name, version or None)
    path = model.download(args.dir)
    emit(args, {**record(model.info), "path": str(path)}, f"downloaded {model.reference} to {path}")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    name, _, version = args.ref.removeprefix("azureml:").partition(":")
    model = open_project(args).models.get(name, version or None)
    path = model.export_onnx(args.path)
    emit(args, {**record(model.info), "path": str(path)}, f"exported {model.reference} to {path}")
    return 0
