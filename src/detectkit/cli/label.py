"""``detectkit label DATA``: the labeling page, for a local project or an Azure ML workspace
(see :mod:`detectkit.labeling.command`)."""

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
        "  detectkit label photos/ --local my-project --port 8890\n"
        "  detectkit label photos/ --classes ace,king --ml-assist --min-labeled 10\n"
        "  detectkit label azureml:cards:1 --workspace config.json --classes ace,king\n"
        "  detectkit label azureml:cards:1 --workspace config.json --ml-assist "
        "--assist-compute gpu-cluster"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(func=_cmd_label)


def _cmd_label(args: argparse.Namespace) -> int:
    from detectkit.labeling import command

    return command.run(args)
