"""``detectkit runs``: list, show, wait for and cancel training runs."""

from __future__ import annotations

import argparse
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
    """Add the ``runs`` group."""
    _, runs_sub = command_group(
        sub,
        "runs",
        help="follow training runs (az ml job list/show/stream/cancel)",
        description="List, show, wait for and cancel training runs.",
    )
    fmt = argparse.RawDescriptionHelpFormatter
    listing = runs_sub.add_parser(
        "list",
        help="list runs",
        epilog=examples("detectkit runs list --local ./project --json"),
        formatter_class=fmt,
    )
    add_backend_options(listing)
    listing.set_defaults(func=_cmd_list)

    show = runs_sub.add_parser(
        "show",
        help="status, metrics and trials of a run (the best marked)",
        epilog=examples("detectkit runs show brave_lamp_1 --workspace config.json --json"),
        formatter_class=fmt,
    )
    show.add_argument("run", metavar="RUN", help="run (job) name")
    add_backend_options(show)
    show.set_defaults(func=_cmd_show)

    wait = runs_sub.add_parser(
        "wait",
        help="wait until a run ends (exit 1 when it fails)",
        epilog=examples("detectkit runs wait brave_lamp_1 --timeout 3600 --workspace config.json"),
        formatter_class=fmt,
    )
    wait.add_argument("run", metavar="RUN", help="run (job) name")
    wait.add_argument("--timeout", type=float, help="seconds to wait at most")
    wait.add_argument("--poll", type=float, default=10.0, help="seconds between checks")
    add_backend_options(wait)
    wait.set_defaults(func=_cmd_wait)

    cancel = runs_sub.add_parser(
        "cancel",
        help="cancel a run",
        epilog=examples("detectkit runs cancel brave_lamp_1 --workspace config.json"),
        formatter_class=fmt,
    )
    cancel.add_argument("run", metavar="RUN", help="run (job) name")
    add_backend_options(cancel)
    cancel.set_defaults(func=_cmd_cancel)


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [record(r.info) for r in open_project(args).runs.list()]
    emit(args, rows, lambda: table(rows, ["name", "status", "experiment", "created_at"]))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    run = open_project(args).runs.get(args.run)
    trials = run.trials()
    metrics = run.metrics
    data = {
        **record(run.info),
        "metrics": metrics,
        "trials": [record(t) for t in trials],
    }

    def text() -> str:
        lines = [f"run {run.name}: {run.status.value}"]
        if run.studio_url:
            lines.append(f"  {run.studio_url}")
        if run.info.error:
            lines.append(f"  error: {run.info.error}")
        for key, value in sorted(metrics.items()):
            lines.append(f"  {key}: {value:.4f}")
        rows = [
            {
                "best": "*" if t.is_best else "",
                "trial": t.name,
                "status": t.status.value,
                "model": t.hyperparameters.get("model_name"),
                "mAP": f"{t.metrics['mean_average_precision']:.4f}"
                if "mean_average_precision" in t.metrics
                else None,
            }
            for t in trials
        ]
        if rows:
            lines += ["", table(rows, ["best", "trial", "status", "model", "mAP"])]
        return "\n".join(lines)

    emit(args, data, text)
    return 0


def _cmd_wait(args: argparse.Namespace) -> int:
    run = open_project(args).runs.get(args.run)
    run.wait(args.timeout, progress=not args.json, poll_interval=args.poll)
    emit(args, record(run.info), f"run {run.name}: {run.status.value}")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    run = open_project(args).runs.get(args.run)
    run.cancel()
    emit(args, record(run.info), f"run {run.name}: {run.status.value}")
    return 0
