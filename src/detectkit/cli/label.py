"""``detectkit label DATA``: the local labeling page (see :mod:`detectkit.labeling.command`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    from detectkit.labeling import command

    parser = command.add_parser(sub)
    parser.epilog = (
        "examples:\n"
        "  detectkit label photos/ --classes can,carton,milk_bottle --open\n"
        "  detectkit label cards/annotations.json --in-place\n"
        "  detectkit label photos/ --local my-project --port 8890"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(func=_cmd_label)


def _cmd_label(args: argparse.Namespace) -> int:
    from detectkit.labeling import command

    return command.run(args)
