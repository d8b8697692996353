"""What every lifecycle command shares: choosing the backend once, output, errors.

Exit codes: 0 success; 1 the operation failed (a run failed, an endpoint answered with an
error, credentials were refused, a conflict); 2 bad usage or bad input (a wrong argument, an
invalid setting or file, a name that does not exist).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from detectkit.errors import DetectkitError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from detectkit.project import Project

__all__ = [
    "BACKEND_HINT",
    "UsageError",
    "add_backend_options",
    "add_json_option",
    "command_group",
    "emit",
    "examples",
    "exit_code",
    "open_project",
    "report_error",
]

BACKEND_HINT = (
    "choose a backend: --local DIR (a project folder on this machine; or set "
    "DETECTKIT_PROJECT=DIR), --workspace config.json, or --subscription ID "
    "--resource-group RG --workspace-name WS"
)

#: Extra keyword arguments for ``Project.azure`` (``credential=``, ``transport=``), set by
#: :func:`detectkit.cli.main` for an injected transport; empty for the console script.
AZURE_OPTIONS: dict[str, Any] = {}


class UsageError(DetectkitError):
    """The command line itself is wrong (exit code 2)."""


def command_group(sub: Any, name: str, *, help: str, description: str) -> tuple[Any, Any]:
    """Add a command group (``detectkit NAME ACTION``): ``(its parser, its sub-parsers)``.

    The group alone prints its help and exits with 2 (a usage error).
    """
    group = sub.add_parser(name, help=help, description=description)
    actions = group.add_subparsers(title=f"{name} commands", metavar="ACTION")

    def _help(_args: argparse.Namespace) -> int:
        group.print_help()
        return 2

    group.set_defaults(func=_help)
    return group, actions


def examples(*lines: str) -> str:
    """An ``--help`` epilog listing example command lines."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: machine-readable output on stdout."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--local DIR`` or ``--workspace FILE`` or ``--subscription/--resource-group/
    --workspace-name``, plus ``--json``."""
    group = parser.add_argument_group("backend (choose one)")
    group.add_argument(
        "--local",
        metavar="DIR",
        default=None,
        help="a local project folder (default: $DETECTKIT_PROJECT)",
    )
    group.add_argument(
        "--workspace", metavar="CONFIG.json", help="an Azure ML workspace config.json"
    )
    group.add_argument("--subscription", metavar="ID", help="Azure subscription id")
    group.add_argument("--resource-group", metavar="RG", help="Azure resource group")
    group.add_argument("--workspace-name", metavar="WS", help="Azure ML workspace name")
    add_json_option(parser)


def open_project(args: argparse.Namespace) -> Project:
    """The project the backend options name.

    Raises:
        UsageError: None or several backends were chosen.
    """
    from detectkit.project import Project

    parts = (args.subscription, args.resource_group, args.workspace_name)
    azure_parts = any(parts)
    chosen = [
        name
        for name, given in (
            ("--local", args.local is not None),
            ("--workspace", args.workspace is not None),
            ("--subscription/--resource-group/--workspace-name", azure_parts),
        )
        if given
    ]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} name different backends; give one of them")
    if args.workspace is not None:
        return Project.from_config(args.workspace, **AZURE_OPTIONS)
    if azure_parts:
        missing = [
            flag
            for flag, value in zip(
                ("--subscription", "--resource-group", "--workspace-name"), parts, strict=True
            )
            if not value
        ]
        if missing:
            raise UsageError(f"an Azure workspace also needs {', '.join(missing)}")
        return Project.azure(
            args.subscription, args.resource_group, args.workspace_name, **AZURE_OPTIONS
        )
    root = args.local if args.local is not None else os.environ.get("DETECTKIT_PROJECT")
    if not root:
        raise UsageError(f"no backend chosen; {BACKEND_HINT}")
    return Project.local(root)


def emit(args: argparse.Namespace, data: object, text: str | Callable[[], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text() if callable(text) else text)


def record(model: Any) -> dict[str, Any]:
    """A pydantic record as JSON-ready data (secrets stay masked)."""
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


def table(rows: Sequence[Mapping[str, object]], columns: list[str]) -> str:
    """A plain text table (no rows: ``(none)``)."""
    if not rows:
        return "(none)"
    cells = [[str(r.get(c, "") if r.get(c) is not None else "") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def exit_code(exc: DetectkitError) -> int:
    """2 for bad usage or input (and names that do not exist), 1 for failed operations."""
    return 2 if isinstance(exc, UsageError | InvalidInputError | NotFoundError) else 1


def report_error(exc: DetectkitError, *, debug: bool) -> int:
    """Print one readable message (its hint included); the traceback only with ``--debug``."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    text = str(exc).strip() or type(exc).__name__
    print(f"detectkit: error: {text}", file=sys.stderr)
    if isinstance(exc, UsageError):
        print("  run the command with --help for examples", file=sys.stderr)
    return exit_code(exc)
