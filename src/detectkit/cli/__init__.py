"""The ``detectkit`` command: thin over the library, one module per command group.

Exit codes: 0 success; 1 failure (``dataset validate`` found problems, a run failed, an endpoint
answered with an error); 2 bad usage or bad input. A detectkit error is printed as one readable
message with its hint; ``--debug`` adds the traceback.

Lifecycle commands choose their backend once with ``--local DIR`` (default
``$DETECTKIT_PROJECT``), ``--workspace config.json`` or ``--subscription/--resource-group/
--workspace-name`` (see :mod:`detectkit.cli._common`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from detectkit.cli import (
    batch,
    datasets,
    endpoints,
    label,
    models,
    predict,
    prelabel,
    runs,
    score,
    tools,
    train,
)
from detectkit.cli._common import AZURE_OPTIONS, report_error
from detectkit.errors import DetectkitError

__all__ = ["main"]

#: The command groups, in ``--help`` order.
GROUPS = (label, datasets, train, runs, models, endpoints, batch, predict, score, prelabel, tools)


def main(
    argv: Sequence[str] | None = None, *, azure_options: Mapping[str, Any] | None = None
) -> int:
    """Run the ``detectkit`` command line; returns the exit code.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).
        azure_options: Extra keyword arguments for ``Project.azure`` (``credential=``,
            ``transport=``): how tests replay Azure's HTTP.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    previous = dict(AZURE_OPTIONS)
    AZURE_OPTIONS.update(azure_options or {})
    try:
        code: int = args.func(args)
    except DetectkitError as exc:
        return report_error(exc, debug=args.debug)
    except KeyboardInterrupt:
        print("detectkit: interrupted", file=sys.stderr)
        return 130
    finally:
        AZURE_OPTIONS.clear()
        AZURE_OPTIONS.update(previous)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    from detectkit import __version__

    parser = argparse.ArgumentParser(
        prog="detectkit",
        description="Object detection datasets, training, endpoints, predictions and evaluation "
        "on Azure ML or on this machine.",
    )
    parser.add_argument("--version", action="version", version=f"detectkit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an error as well"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(sub)
    return parser


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
