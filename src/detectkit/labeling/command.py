"""``detectkit label DATA``: label a folder of images (or a labeled data set) in the browser.

:mod:`detectkit.cli.label` adds :func:`add_parser` and :func:`run` to detectkit's command
line. The labeling project lives in a local project (``--local DIR``, default
``$DETECTKIT_PROJECT``, else ``detectkit-project``), named after
DATA (``--name``); running the command again on the same DATA reopens it. ``--in-place``
writes the labels back into DATA's own COCO or Azure ML JSONL file, atomically, after saves
and on exit; otherwise export from the page (or ``project.labeling.get(name).export()``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from detectkit.backends.local import LocalBackend
from detectkit.errors import DetectkitError
from detectkit.labeling.assist import SETTINGS_KEY, MLAssist
from detectkit.labeling.data import read_input, source_file, write_back
from detectkit.labeling.project import Labeling, LabelingProject
from detectkit.labeling.review import ORDERS
from detectkit.labeling.server import LabelingServer

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``label`` to an ``argparse`` sub-parser collection; returns the new parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "label",
        help="label images in a local page (127.0.0.1, with an access token)",
        description="Label a folder of images (or a labeled data set) in the browser: a page on "
        "127.0.0.1 with an access token in its URL; every change is saved as it is made.",
    )
    parser.add_argument("data", metavar="DATA", help="a folder of images or a labeled data set")
    parser.add_argument("--classes", help="class names, comma separated (a,b,c)")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--open", action="store_true", help="open the page in the browser")
    parser.add_argument(
        "--in-place", action="store_true", help="write the labels back into DATA's own file"
    )
    parser.add_argument(
        "--local",
        "--project",
        dest="project",
        metavar="DIR",
        default=os.environ.get("DETECTKIT_PROJECT", "detectkit-project"),
        help="local project folder (default: $DETECTKIT_PROJECT, else detectkit-project)",
    )
    parser.add_argument("--name", default=None, help="labeling project name (default: DATA's)")
    parser.add_argument(
        "--order",
        choices=ORDERS,
        default="index",
        help="the order images are served in: index (default), random, or uncertainty (also "
        "least_confident, margin, entropy): the most uncertain pre-labeled images first",
    )
    parser.add_argument(
        "--ml-assist",
        action="store_true",
        help="train a model in the background once enough images are labeled (at low CPU "
        "priority) and pre-label the rest with it; retrains as labels accumulate",
    )
    parser.add_argument(
        "--min-labeled",
        type=int,
        default=None,
        help="with --ml-assist: labeled images before the first training (default 20)",
    )
    parser.add_argument(
        "--assist-compute",
        metavar="NAME",
        default=None,
        help="with --ml-assist: the GPU compute cluster AutoML trains on when the project is "
        "on Azure (saved with the settings; ignored locally)",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace, *, block: bool = True) -> int:
    """Run ``detectkit label``; returns the exit status (0, or 2 on a usage error).

    Args:
        args: What :func:`add_parser`'s parser produced.
        block: Serve until Ctrl-C (``False``: start in the background and return, for tests;
            the server is then ``args.server``).
    """
    try:
        project = _open_project(args)
        syncer = _in_place_syncer(args, project) if args.in_place else None
        server = LabelingServer(
            project.store,
            port=args.port,
            exporter=_exporter(project),
            syncer=syncer,
            sync_interval=1.0,
            order=getattr(args, "order", "index"),
            assistant=project.assistant,
        )
    except DetectkitError as exc:
        print(f"detectkit label: {exc}", file=sys.stderr)
        return 2
    print(f"labeling {project.name!r}: {project.progress!r}")
    print(f"open {server.url}")
    args.server = server
    if not block:
        server.start(open_browser=args.open)
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        server.run(open_browser=args.open)
    print(f"stopped; {project.progress!r}")
    return 0


def _open_project(args: argparse.Namespace) -> LabelingProject:
    labeling = Labeling(LocalBackend(Path(args.project)))
    data = Path(args.data)
    name = (
        args.name or re.sub(r"[^A-Za-z0-9_.-]+", "-", data.resolve().name).strip("-.") or "images"
    )
    assist = _assist_settings(args)
    if any(p.name == name for p in labeling.list()):
        project = labeling.get(name)
        if args.classes:
            project.store.add_classes([c.strip() for c in args.classes.split(",") if c.strip()])
        changed = args.min_labeled or getattr(args, "assist_compute", None)
        if assist is not None and (MLAssist.of(project.store) is None or changed):
            project.store.set_info(SETTINGS_KEY, assist.model_dump())
        return project
    if not args.classes:
        classes: list[str] | tuple[str, ...] = read_input(data).classes
    else:
        classes = args.classes
    return labeling.create(name, data, classes=classes, ml_assist=assist or False)


def _assist_settings(args: argparse.Namespace) -> MLAssist | None:
    if not getattr(args, "ml_assist", False):
        return None
    given = {
        "min_labeled": getattr(args, "min_labeled", None),
        "compute": getattr(args, "assist_compute", None),
    }
    return MLAssist.build({k: v for k, v in given.items() if v is not None})


def _in_place_syncer(args: argparse.Namespace, project: LabelingProject) -> Any:
    target, fmt = source_file(args.data)
    root = Path(args.data) if Path(args.data).is_dir() else target.parent

    def sync() -> None:
        dataset = project.store.to_dataset(
            states=("labeled", "reviewed", "unlabeled", "prelabeled", "skipped"),
            original_refs=True,
            root=root,
            include_drafts=True,
        )
        write_back(dataset, target, fmt)

    return sync


def _exporter(project: LabelingProject) -> Any:
    def export() -> str:
        project.export()
        asset = project.last_export
        assert asset is not None
        return (
            f"exported {asset.images} images, {asset.boxes} boxes as {asset.name}:{asset.version}"
        )

    return export
