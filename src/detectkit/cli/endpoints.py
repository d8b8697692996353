"""``detectkit deploy`` and ``detectkit endpoints``: online endpoints
(az ml online-deployment create, az ml online-endpoint list/show/get-logs/delete)."""

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
    """Add ``deploy`` and the ``endpoints`` group."""
    fmt = argparse.RawDescriptionHelpFormatter
    deploy = sub.add_parser(
        "deploy",
        help="deploy a registered model to an online endpoint, with 100%% of the traffic",
        description="Create or update ENDPOINT with a deployment of MODEL and route all traffic "
        "to it once it is serving (locally: a server on 127.0.0.1).",
        epilog=examples(
            "detectkit deploy cards-detector:1 cards-ep --local ./project",
            "detectkit deploy cards-detector:1 cards-ep --instance-type Standard_DS3_v2 "
            "--workspace config.json --json",
        ),
        formatter_class=fmt,
    )
    deploy.add_argument("model", metavar="MODEL", help="registered model NAME[:VERSION]")
    deploy.add_argument("endpoint", metavar="ENDPOINT", help="endpoint name")
    deploy.add_argument("--deployment", default="default", help="deployment name")
    deploy.add_argument("--instance-type", help="VM size (Azure)")
    deploy.add_argument("--instance-count", type=int, help="number of instances")
    add_backend_options(deploy)
    deploy.set_defaults(func=_cmd_deploy)

    _, ep_sub = command_group(
        sub,
        "endpoints",
        help="list, show, read logs of and delete online endpoints",
        description="Online endpoints of the chosen backend.",
    )
    listing = ep_sub.add_parser(
        "list",
        help="list endpoints",
        epilog=examples("detectkit endpoints list --local p"),
        formatter_class=fmt,
    )
    add_backend_options(listing)
    listing.set_defaults(func=_cmd_list)

    show = ep_sub.add_parser(
        "show",
        help="scoring URI, traffic and state (never the key unless --show-keys)",
        epilog=examples("detectkit endpoints show cards-ep --workspace config.json --json"),
        formatter_class=fmt,
    )
    show.add_argument("name", metavar="NAME", help="endpoint name")
    show.add_argument("--show-keys", action="store_true", help="also print the auth keys")
    add_backend_options(show)
    show.set_defaults(func=_cmd_show)

    logs = ep_sub.add_parser(
        "logs",
        help="the last lines of a deployment's log",
        epilog=examples("detectkit endpoints logs cards-ep --lines 200 --local ./project"),
        formatter_class=fmt,
    )
    logs.add_argument("name", metavar="NAME", help="endpoint name")
    logs.add_argument("--lines", type=int, default=100, help="how many lines (default 100)")
    logs.add_argument("--deployment", help="deployment (default: the one with most traffic)")
    add_backend_options(logs)
    logs.set_defaults(func=_cmd_logs)

    delete = ep_sub.add_parser(
        "delete",
        help="delete an endpoint and its deployments",
        epilog=examples("detectkit endpoints delete cards-ep --local ./project"),
        formatter_class=fmt,
    )
    delete.add_argument("name", metavar="NAME", help="endpoint name")
    add_backend_options(delete)
    delete.set_defaults(func=_cmd_delete)


def _endpoint_data(info: Any) -> dict[str, Any]:
    return record(info)


def _cmd_deploy(args: argparse.Namespace) -> int:
    endpoint = open_project(args).deploy(
        args.model,
        args.endpoint,
        deployment=args.deployment,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
    )
    emit(
        args,
        _endpoint_data(endpoint.info),
        f"endpoint {endpoint.name}: {endpoint.state}, traffic {endpoint.traffic}\n"
        f"  {endpoint.scoring_uri}",
    )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [_endpoint_data(e.info) for e in open_project(args).endpoints.list()]
    emit(args, rows, lambda: table(rows, ["name", "state", "traffic", "scoring_uri"]))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    endpoint = open_project(args).endpoints.get(args.name)
    data = _endpoint_data(endpoint.info)
    if args.show_keys:
        keys = endpoint.keys()
        data["keys"] = {
            "primary": keys.primary.get_secret_value(),
            "secondary": keys.secondary.get_secret_value() if keys.secondary else None,
        }
    emit(args, data, lambda: "\n".join(f"{k}: {v}" for k, v in data.items() if v not in (None, "")))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    text = open_project(args).endpoints.get(args.name).logs(args.lines, deployment=args.deployment)
    emit(args, {"name": args.name, "logs": text}, text)
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    open_project(args).endpoints.get(args.name).delete()
    emit(args, {"name": args.name, "deleted": True}, f"deleted endpoint {args.name}")
    return 0
