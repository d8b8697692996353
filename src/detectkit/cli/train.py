"""``detectkit train``: from arguments, or from an Azure AutoML job YAML (``-f job.yml``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from detectkit.cli._common import UsageError, add_backend_options, emit, examples, open_project

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``train``."""
    train = sub.add_parser(
        "train",
        help="train object detection models (az ml job create -f job.yml)",
        description="Train on DATA (a data asset name[:version], azureml:... URI or folder) with "
        "the given settings, or from an AutoML image object detection job YAML in Azure's own "
        "schema (-f). Every setting is checked before anything is submitted; mistakes in a YAML "
        "are reported with their path and line. The local backend trains now, in this "
        "process; Azure submits a job and returns (follow it with `detectkit runs wait`).",
        epilog=examples(
            "detectkit train cards:1 --models ssdlite_mobilenet_v2 --local ./project",
            "detectkit train cards:1 --models yolov5 fasterrcnn_resnet50_fpn --compute gpu "
            "--workspace config.json",
            "detectkit train -f job.yml --dry-run --workspace config.json",
            "detectkit train -f job.yml --local ./project --json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("data", metavar="DATA", nargs="?", help="training data (not with -f)")
    train.add_argument("-f", "--file", metavar="JOB.yml", help="an AutoML job YAML")
    train.add_argument("--validation-data", metavar="DATA", help="validation data")
    train.add_argument("--validation-size", type=float, help="fraction held out for validation")
    train.add_argument("--models", nargs="+", metavar="MODEL", help="model name(s) to try")
    train.add_argument("--max-trials", type=int, help="limits.max_trials")
    train.add_argument("--max-concurrent-trials", type=int, help="limits.max_concurrent_trials")
    train.add_argument("--timeout-minutes", type=int, help="limits.timeout_minutes")
    train.add_argument("--epochs", type=int, help="training_parameters.number_of_epochs")
    train.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training parameter (JSON value), e.g. --param learning_rate=0.01 (repeatable)",
    )
    train.add_argument("--compute", help="compute cluster (Azure)")
    train.add_argument(
        "--instance-type", help="serverless compute VM size instead of --compute (Azure)"
    )
    train.add_argument(
        "--job-tier",
        choices=["spot", "basic", "standard", "premium"],
        help="serverless compute queue tier (Azure)",
    )
    train.add_argument("--experiment", help="experiment name")
    train.add_argument(
        "--dry-run", action="store_true", help="check and print the job; submit nothing"
    )
    add_backend_options(train)
    train.set_defaults(func=_cmd_train)


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in args.param:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param: expected KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(text)
        except ValueError:
            values[key.strip()] = text
    if args.epochs is not None:
        values["number_of_epochs"] = args.epochs
    return values


def _limits(args: argparse.Namespace) -> dict[str, Any] | None:
    limits = {
        k: v
        for k, v in (
            ("max_trials", args.max_trials),
            ("max_concurrent_trials", args.max_concurrent_trials),
            ("timeout_minutes", args.timeout_minutes),
        )
        if v is not None
    }
    return limits or None


def _cmd_train(args: argparse.Namespace) -> int:
    if (args.file is None) == (args.data is None):
        raise UsageError("give DATA or -f JOB.yml (one of them)")
    if args.file is not None:
        return _train_file(args)
    project = open_project(args)
    kwargs: dict[str, Any] = {
        "validation_data": args.validation_data,
        "validation_size": args.validation_size,
        "compute": args.compute,
        "instance_type": args.instance_type,
        "job_tier": args.job_tier,
        "models": args.models,
        "limits": _limits(args),
        "training_parameters": _parameters(args) or None,
        "experiment": args.experiment,
    }
    if args.dry_run:
        plan = project.train(args.data, dry_run=True, **kwargs)
        _print_plan(args, plan)
        return 0
    run = project.train(args.data, **kwargs)
    _print_run(args, run)
    return 0


def _train_file(args: argparse.Namespace) -> int:
    from detectkit.settings.job_yaml import read_job_yaml
    from detectkit.settings.request import RunMetadata

    given = [
        flag
        for flag, value in (
            ("--models", args.models),
            ("--validation-data", args.validation_data),
            ("--max-trials", args.max_trials),
            ("--param", args.param),
        )
        if value
    ]
    if given:
        raise UsageError(f"{', '.join(given)}: the job file holds the settings; edit it instead")
    spec = read_job_yaml(args.file)
    request = spec.request
    project = open_project(args)
    if project.backend.kind == "local":
        ignored = spec.local_ignored()
        if ignored:
            print(
                f"detectkit: note: {', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} "
                "no meaning on the local backend and are ignored",
                file=sys.stderr,
            )
    updates: dict[str, Any] = {}
    if args.compute:
        updates.update(compute=args.compute, instance_type=None, instance_count=None, job_tier=None)
    if args.instance_type:
        updates.update(compute=None, instance_type=args.instance_type)
    if args.job_tier:
        updates["job_tier"] = args.job_tier
    if args.experiment:
        updates["experiment"] = args.experiment
    if updates:  # checked again, with only what was set kept as set
        from pydantic import ValidationError

        from detectkit.settings.request import TrainingRequest, settings_error

        try:
            request = TrainingRequest.model_validate(
                {**request.model_dump(exclude_unset=True), **updates}
            )
        except ValidationError as exc:
            raise settings_error(exc, "training settings", (TrainingRequest,)) from exc
    metadata = RunMetadata.build(
        name=spec.name,
        display_name=spec.display_name,
        description=spec.description,
        tags=spec.tags or None,
        log_verbosity=spec.log_verbosity,
    )
    if project.backend.kind == "azure" and args.dry_run:
        job: Any = project.backend.plan_training(request, metadata)
        payload = job._to_rest_object().as_dict()
        emit(args, payload, lambda: json.dumps(payload, indent=2))
        return 0
    if args.dry_run:
        _print_plan(args, project.backend.plan_training(request, metadata))
        return 0
    from detectkit.resources import DetectionRun

    info = project.backend.submit_training(request, metadata)
    run = DetectionRun(project.backend, info)
    _print_run(args, run)
    return 0


def _print_plan(args: argparse.Namespace, plan: object) -> None:
    request = getattr(plan, "request", None)
    if request is not None:  # the local plan
        trials = [t.model_dump(exclude_none=True) for t in getattr(plan, "trials", ())]
        data = {"request": request.model_dump(mode="json", exclude_none=True), "trials": trials}
        emit(
            args,
            data,
            lambda: f"{plan!r}\n" + "\n".join(f"  trial {i}: {t}" for i, t in enumerate(trials)),
        )
        return
    payload = plan._to_rest_object().as_dict()  # type: ignore[attr-defined]
    emit(args, payload, lambda: json.dumps(payload, indent=2))


def _print_run(args: argparse.Namespace, run: Any) -> None:
    data = run.info.model_dump(mode="json")
    emit(
        args,
        data,
        f"run {run.name}: {run.status.value}" + (f"\n  {run.studio_url}" if run.studio_url else ""),
    )
