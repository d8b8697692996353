"""``detectkit batch``: batch endpoints on Azure ML (az ml batch-deployment create,
az ml batch-endpoint invoke/list, az ml job show)."""

from __future__ import annotations

import argparse
import json
import os
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
    """Add the ``batch`` group: deploy, score, show, list."""
    fmt = argparse.RawDescriptionHelpFormatter
    _, batch_sub = command_group(
        sub,
        "batch",
        help="deploy to batch endpoints and score folders of images with them (Azure ML)",
        description="Batch endpoints of an Azure ML workspace: a compute cluster scores a "
        "folder in parallel mini-batches. On this machine use `detectkit score` instead.",
    )
    deploy = batch_sub.add_parser(
        "deploy",
        help="deploy a registered MLflow model to a batch endpoint, as its default",
        epilog=examples(
            "detectkit batch deploy cards-detector:1 cards-batch --compute cpu-cluster "
            "--instance-count 2 --workspace config.json --json"
        ),
        formatter_class=fmt,
    )
    deploy.add_argument("model", metavar="MODEL", help="registered model NAME[:VERSION]")
    deploy.add_argument("endpoint", metavar="ENDPOINT", help="batch endpoint name")
    deploy.add_argument("--compute", required=True, help="compute cluster the jobs run on")
    deploy.add_argument("--deployment", default="default", help="deployment name")
    deploy.add_argument("--instance-count", type=int, default=1, help="nodes per job")
    deploy.add_argument("--mini-batch-size", type=int, default=10, help="images per call")
    deploy.add_argument(
        "--max-concurrency-per-instance", type=int, default=1, help="processes per node"
    )
    deploy.add_argument(
        "--output-file-name", default="predictions.csv", help="the predictions file's name"
    )
    add_backend_options(deploy)
    deploy.set_defaults(func=_cmd_deploy)

    score = batch_sub.add_parser(
        "score",
        help="start a batch scoring job over a folder, data asset or datastore URI",
        epilog=examples(
            "detectkit batch score cards-batch ./photos --wait --out predictions.jsonl "
            "--workspace config.json",
            "detectkit batch score cards-batch azureml:cards-photos:1 --workspace config.json",
            "detectkit batch score cards-batch "
            "azureml://datastores/workspaceblobstore/paths/photos/ --workspace config.json",
        ),
        formatter_class=fmt,
    )
    score.add_argument("endpoint", metavar="ENDPOINT", help="batch endpoint name")
    score.add_argument(
        "data",
        metavar="DATA",
        help="a local folder (uploaded), azureml:NAME:VERSION or azureml://datastores/...",
    )
    score.add_argument("--deployment", help="deployment (default: the endpoint's default)")
    score.add_argument("--job-name", help="the job's name (default ENDPOINT-<12 hex digits>)")
    score.add_argument("--wait", action="store_true", help="wait until the job ends")
    score.add_argument(
        "--out",
        metavar="FILE",
        help="write the predictions as batch output lines (implies --wait)",
    )
    score.add_argument("--timeout", type=float, help="seconds to wait at most")
    add_backend_options(score)
    score.set_defaults(func=_cmd_score)

    show = batch_sub.add_parser(
        "show",
        help="a batch scoring job's status, output location and error",
        epilog=examples("detectkit batch show cards-batch-0123456789ab --workspace config.json"),
        formatter_class=fmt,
    )
    show.add_argument("job", metavar="JOB", help="batch job name")
    add_backend_options(show)
    show.set_defaults(func=_cmd_show)

    listing = batch_sub.add_parser(
        "list",
        help="list batch endpoints",
        epilog=examples("detectkit batch list --workspace config.json"),
        formatter_class=fmt,
    )
    add_backend_options(listing)
    listing.set_defaults(func=_cmd_list)


def _cmd_deploy(args: argparse.Namespace) -> int:
    endpoint = open_project(args).deploy_batch(
        args.model,
        args.endpoint,
        compute=args.compute,
        deployment=args.deployment,
        instance_count=args.instance_count,
        mini_batch_size=args.mini_batch_size,
        max_concurrency_per_instance=args.max_concurrency_per_instance,
        settings={"output_file_name": args.output_file_name},
    )
    emit(
        args,
        record(endpoint.info),
        f"batch endpoint {endpoint.name}: {endpoint.state}, default deployment "
        f"{endpoint.default_deployment}",
    )
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from detectkit.scoring import format_response

    project = open_project(args)
    endpoint = project.batch_endpoints.get(args.endpoint)
    job = endpoint.score(args.data, deployment=args.deployment, job_name=args.job_name)
    if args.wait or args.out:
        job.wait(args.timeout, progress=not args.json)
    data = record(job.info)
    text = f"batch job {job.name}: {job.status.value}\n  output {job.info.output_uri}"
    if args.out:
        predictions = job.predictions()
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for pred, entry in zip(predictions, format_response(predictions), strict=True):
                fh.write(json.dumps({"filename": pred.image, "boxes": entry["boxes"]}) + "\n")
        os.replace(tmp, out)
        data["predictions"] = len(predictions)
        data["out"] = str(out)
        text += f"\n  {len(predictions)} predictions written to {out}"
    emit(args, data, text)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    job = open_project(args).batch_endpoints.job(args.job)
    data = record(job.info)
    emit(args, data, lambda: "\n".join(f"{k}: {v}" for k, v in data.items() if v not in (None, "")))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [record(e.info) for e in open_project(args).batch_endpoints.list()]
    emit(args, rows, lambda: table(rows, ["name", "state", "default_deployment", "scoring_uri"]))
    return 0
