"""``detectkit label DATA``: label images in the browser, on this machine or on Azure.

:mod:`detectkit.cli.label` adds :func:`add_parser` and :func:`run` to detectkit's command
line. The labeling project lives in a local project (``--local DIR``, default
``$DETECTKIT_PROJECT``, else ``detectkit-project``) or in an Azure ML workspace
(``--workspace config.json``, or ``--subscription ID --resource-group RG --workspace-name WS``),
named after DATA (``--name``); running the command again on the same DATA reopens it. The
page always runs here, on 127.0.0.1, with an access token in its URL.

Locally, ``--in-place`` writes the labels back into DATA's own COCO or Azure ML JSONL file,
atomically, after saves and on exit; otherwise export from the page (or
``project.labeling.get(name).export()``).

On Azure, DATA is a data asset (``azureml:name:version``, ``name[:version]``), a datastore
folder (``azureml://datastores/<store>/paths/<folder>/``) or a local folder or labeled data
set (uploaded as the data asset ``<name>`` first); the default name is the asset's name or the
folder's last part. The images stay in the workspace's storage and are fetched as the page
shows them. The labeling state is stored in the workspace (``project.sync()``) when the page
stops (Ctrl-C) and every :data:`AZURE_SYNC_INTERVAL` seconds while there are new saves; each
stored version is printed, and a failed sync is printed on stderr (exit status 1 when the last
one failed). ``--in-place`` is refused there (the labels live in the workspace), and
``--ml-assist`` needs ``--assist-compute``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from detectkit.backends.local import LocalBackend
from detectkit.cli._common import UsageError, exit_code, open_project
from detectkit.errors import DetectkitError
from detectkit.labeling.assist import SETTINGS_KEY, MLAssist
from detectkit.labeling.data import read_input, source_file, write_back
from detectkit.labeling.project import Labeling, LabelingProject
from detectkit.labeling.remote import ASSET_REFERENCE, remote_backend
from detectkit.labeling.review import ORDERS
from detectkit.labeling.server import LabelingServer

__all__ = ["AZURE_SYNC_INTERVAL", "add_parser", "run"]

#: Seconds between syncs of an Azure project's state while there are new saves (and on stop).
AZURE_SYNC_INTERVAL = 300.0
_AZURE_FLAGS = "--subscription/--resource-group/--workspace-name"
_DATASTORE_PATH = re.compile(r"^azureml://.*?/paths/(?P<path>.*)$")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``label`` to an ``argparse`` sub-parser collection; returns the new parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "label",
        help="label images in a local page (127.0.0.1, with an access token)",
        description="Label a folder of images (or a labeled data set, or on Azure a data asset "
        "or datastore folder) in the browser: a page on 127.0.0.1 with an access token in its "
        "URL; every change is saved as it is made.",
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        help="a folder of images or a labeled data set; on Azure also a data asset "
        "(azureml:name:version, name:version) or azureml://datastores/<store>/paths/<folder>/",
    )
    parser.add_argument("--classes", help="class names, comma separated (a,b,c)")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--open", action="store_true", help="open the page in the browser")
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="write the labels back into DATA's own file (local projects only)",
    )
    backend = parser.add_argument_group("backend (one of them; default: the local project)")
    backend.add_argument(
        "--local",
        "--project",
        dest="project",
        metavar="DIR",
        default=None,
        help="local project folder (default: $DETECTKIT_PROJECT, else detectkit-project)",
    )
    backend.add_argument(
        "--workspace",
        metavar="CONFIG.json",
        default=None,
        help="label on the Azure ML workspace this config.json names",
    )
    backend.add_argument("--subscription", metavar="ID", help="Azure subscription id")
    backend.add_argument("--resource-group", metavar="RG", help="Azure resource group")
    backend.add_argument("--workspace-name", metavar="WS", help="Azure ML workspace name")
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
        "on Azure (required there; saved with the settings; ignored locally)",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace, *, block: bool = True) -> int:
    """Run ``detectkit label``; returns the exit status: 0; 1 when an operation failed
    (credentials refused, a conflict, the last sync to the workspace); 2 on a usage error or
    bad input.

    Args:
        args: What :func:`add_parser`'s parser produced.
        block: Serve until Ctrl-C (``False``: start in the background and return, for tests;
            the server is then ``args.server``, and its ``stop()`` syncs an Azure project).
    """
    try:
        azure = _azure_options(args)
        if azure is not None:
            project = _open_azure(args, azure)
            syncer: Callable[[], None] | None = _workspace_syncer(project)
            interval = AZURE_SYNC_INTERVAL
        else:
            project = _open_project(args)
            syncer = _in_place_syncer(args, project) if args.in_place else None
            interval = 1.0
        server = LabelingServer(
            project.store,
            port=args.port,
            exporter=_exporter(project),
            syncer=syncer,
            sync_interval=interval,
            order=getattr(args, "order", "index"),
            assistant=project.assistant,
        )
    except DetectkitError as exc:
        print(f"detectkit label: {exc}", file=sys.stderr)
        return exit_code(exc)
    where = f" on workspace {project.store.info.get('scope')}" if azure is not None else ""
    print(f"labeling {project.name!r}{where}: {project.progress!r}")
    print(f"open {server.url}")
    if azure is not None:
        print("the labels are stored in the workspace when the page stops (Ctrl-C)")
    args.server = server
    if not block:
        server.start(open_browser=args.open)
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        server.run(open_browser=args.open)
    print(f"stopped; {project.progress!r}")
    return 1 if server.last_sync_error is not None else 0


def _open_project(args: argparse.Namespace) -> LabelingProject:
    root = args.project or os.environ.get("DETECTKIT_PROJECT") or "detectkit-project"
    labeling = Labeling(LocalBackend(Path(root)))
    data = Path(args.data)
    name = args.name or _slug(data.resolve().name)
    assist = _assist_settings(args)
    if any(p.name == name for p in labeling.list()):
        project = labeling.get(name)
        _reopened(project, args, assist)
        return project
    if not args.classes:
        classes: list[str] | tuple[str, ...] = read_input(data).classes
    else:
        classes = args.classes
    return labeling.create(name, data, classes=classes, ml_assist=assist or False)


def _azure_options(args: argparse.Namespace) -> argparse.Namespace | None:
    """The Azure options as :func:`~detectkit.cli._common.open_project` reads them, or
    ``None`` for the local project.

    Raises:
        UsageError: A local folder and an Azure workspace were both given.
    """
    workspace = getattr(args, "workspace", None)
    parts = tuple(
        getattr(args, k, None) for k in ("subscription", "resource_group", "workspace_name")
    )
    if workspace is None and not any(parts):
        return None
    if args.project is not None:
        chosen = "--workspace" if workspace is not None else _AZURE_FLAGS
        raise UsageError(
            f"--local/--project {args.project} and {chosen} name different backends (a local "
            "project folder and an Azure ML workspace); give one of them"
        )
    subscription, resource_group, workspace_name = parts
    return argparse.Namespace(
        local=None,
        workspace=workspace,
        subscription=subscription,
        resource_group=resource_group,
        workspace_name=workspace_name,
    )


def _open_azure(args: argparse.Namespace, options: argparse.Namespace) -> LabelingProject:
    """Open (or create) the labeling project on the workspace ``options`` names.

    Raises:
        UsageError: ``--in-place``, or ``--ml-assist`` without ``--assist-compute`` (before
            anything is sent); a new project from a remote DATA without ``--classes``.
    """
    if args.in_place:
        raise UsageError(
            "--in-place writes DATA's own file, but on Azure the labels live in the workspace "
            "(stored when the page stops); export them with the page's Export button or "
            "project.labeling.get(name).export(), or drop --in-place"
        )
    assist = _assist_settings(args)
    data = _azure_data(args.data)
    name = args.name or _remote_name(data)
    workspace = open_project(options)
    labeling = workspace.labeling
    remote = remote_backend(workspace.backend)
    # the workspace's list: get() of a name only in the local cache would restore that copy
    existing = remote is not None and name in remote.list_labeling_states()
    project = labeling.get(name) if existing else None
    saved = MLAssist.of(project.store) if project is not None else None
    if assist is not None and not assist.compute and not (saved and saved.compute):
        raise UsageError(
            "--ml-assist on Azure needs --assist-compute NAME: the GPU compute cluster AutoML "
            "trains on (Azure ML studio > Compute > Compute clusters)"
        )
    if project is not None:
        if _reopened(project, args, assist):
            project.sync()
        return project
    if not args.classes and not isinstance(data, Path):
        raise UsageError(
            f"a new labeling project on Azure needs --classes a,b,c (got DATA {args.data!r}; "
            "the classes its labels use are added after them)"
        )
    classes = args.classes or read_input(data).classes
    return labeling.create(name, data, classes=classes, ml_assist=assist or False)


def _azure_data(data: str) -> Path | str:
    """A local path as a :class:`~pathlib.Path` (``labeling.create`` uploads it), a data asset
    reference or ``azureml://`` URL as it is."""
    if Path(data).exists():
        return Path(data)
    if data.startswith("azureml:") or ASSET_REFERENCE.match(data):
        return data
    return Path(data)  # not there: read_input says so


def _remote_name(data: Path | str) -> str:
    if isinstance(data, Path):
        return _slug(data.resolve().name)
    found = _DATASTORE_PATH.match(data)
    if found is not None:
        return _slug(PurePosixPath(found["path"].strip("/")).name)
    return _slug(data.removeprefix("azureml:").partition(":")[0])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "images"


def _reopened(project: LabelingProject, args: argparse.Namespace, assist: MLAssist | None) -> bool:
    """Add ``--classes`` and the ML assistance settings to a reopened project; whether it
    changed."""
    changed = False
    if args.classes:
        before = project.store.classes
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
        changed = project.store.add_classes(names) != before
    saved = MLAssist.of(project.store)
    given = {
        k: v
        for k, v in (("min_labeled", args.min_labeled), ("compute", args.assist_compute))
        if v is not None
    }
    if assist is not None and (saved is None or given):
        # the flags given change the saved settings; the others stay as saved
        merged = assist if saved is None else saved.model_copy(update=given)
        project.store.set_info(SETTINGS_KEY, merged.model_dump())
        changed = True
    return changed


def _assist_settings(args: argparse.Namespace) -> MLAssist | None:
    if not getattr(args, "ml_assist", False):
        return None
    given = {
        "min_labeled": getattr(args, "min_labeled", None),
        "compute": getattr(args, "assist_compute", None),
    }
    return MLAssist.build({k: v for k, v in given.items() if v is not None})


def _workspace_syncer(project: LabelingProject) -> Callable[[], None]:
    """Store the state in the workspace, printing the version (or the failure, re-raised so
    the page shows it and the next sync tries again)."""

    def sync() -> None:
        try:
            version = project.sync()
        except Exception as exc:
            print(
                f"detectkit label: could not store the labeling state of {project.name!r} in "
                f"the workspace: {exc}; the labels are kept in {project.store.folder}; run the "
                "command again (or project.labeling.get(name).sync()) to store them",
                file=sys.stderr,
            )
            raise
        print(f"synced {project.name!r} to the workspace: labeling state version {version}")

    return sync


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
