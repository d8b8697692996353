"""Azure ML's AutoML image object detection job YAML, read into detectkit's typed settings.

The file ``az ml job create -f job.yml`` takes (``type: automl``, ``task:
image_object_detection``, ``training_data``, ``validation_data``, ``limits``,
``training_parameters``, ``sweep``, ``search_space``, ``compute`` ...) becomes a
:class:`~detectkit.settings.TrainingRequest` plus the job's own fields (name, description,
tags, log verbosity). Every mistake is reported at once, each with its YAML path and line
(``job.yml line 41: search_space[1].learning_rate: ...``), before anything is submitted.

Nothing here imports azure-ai-ml.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from detectkit.errors import InvalidSettingsError
from detectkit.settings.request import TrainingRequest

__all__ = ["LOCAL_IGNORED", "JobSpec", "read_job_yaml"]

#: Top-level keys of an AutoML image job YAML detectkit reads.
_KEYS = frozenset(
    {
        "$schema",
        "type",
        "task",
        "name",
        "display_name",
        "experiment_name",
        "description",
        "tags",
        "properties",
        "compute",
        "log_verbosity",
        "primary_metric",
        "target_column_name",
        "training_data",
        "validation_data",
        "validation_data_size",
        "limits",
        "training_parameters",
        "sweep",
        "search_space",
        "outputs",
        "identity",
        "resources",
        "queue_settings",
    }
)
#: Job fields that mean nothing on the local backend (named, then ignored, there).
LOCAL_IGNORED = ("compute", "log_verbosity", "identity", "resources", "queue_settings")
# TrainingRequest field -> YAML key, for error paths.
_YAML_NAME = {
    "experiment": "experiment_name",
    "validation_size": "validation_data_size",
    "instance_type": "resources.instance_type",
    "instance_count": "resources.instance_count",
    "job_tier": "queue_settings.job_tier",
}
_SWITCHES = ("log_training_metrics", "log_validation_loss")


@dataclass(frozen=True)
class JobSpec:
    """A checked job YAML.

    Attributes:
        path: The file.
        request: The training settings.
        name: Job name (Azure generates one when None).
        description: Job description.
        display_name: Display name.
        tags: Job tags.
        log_verbosity: AutoML log level (``debug``, ``info`` ...), lower-cased.
        present: The top-level keys the file sets.
    """

    path: Path
    request: TrainingRequest
    name: str | None = None
    description: str | None = None
    display_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    log_verbosity: str | None = None
    present: tuple[str, ...] = ()

    def local_ignored(self) -> list[str]:
        """The fields this file sets that the local backend ignores."""
        return [k for k in LOCAL_IGNORED if k in self.present]


def _lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    """Record the 1-based line of every YAML path under ``node``."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = str(key.value)
            child = f"{path}.{name}" if path else name
            out[child] = key.start_mark.line + 1
            _lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, f"{path}[{i}]", out)


def _where(lines: Mapping[str, int], path: str) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def _data_path(value: object, key: str, base: Path, problems: list[tuple[str, str]]) -> Any:
    if value is None:
        return None
    if not isinstance(value, Mapping) or "path" not in value:
        problems.append((key, "expected {path: ..., type: mltable}"))
        return None
    kind = value.get("type", "mltable")
    if kind != "mltable":
        problems.append((f"{key}.type", f"AutoML image jobs read mltable data, got {kind!r}"))
    ref = str(value["path"])
    if "://" in ref or ref.startswith("azureml:") or os.path.isabs(ref):
        return ref
    local = base / ref
    # relative to the YAML file, as az ml does; shown relative to the current folder
    return os.path.relpath(local) if local.exists() else ref


def read_job_yaml(path: str | os.PathLike[str]) -> JobSpec:
    """Read and check an AutoML image object detection job YAML.

    Raises:
        InvalidSettingsError: The file is not YAML, is another kind of job, or has invalid
            settings; every problem is listed with its YAML path and line.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSettingsError(f"{file}: cannot read the job file ({exc.strerror})") from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InvalidSettingsError(
            f"{file}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from exc
    if not isinstance(data, dict) or node is None:
        raise InvalidSettingsError(f"{file}: expected a job (a YAML mapping), got {data!r}")
    lines: dict[str, int] = {}
    _lines(node, "", lines)
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), sorted(_KEYS), n=1, cutoff=0.6)
            problems.append(
                (str(key), "unknown job field" + (f"; did you mean {close[0]!r}?" if close else ""))
            )
    if data.get("type", "automl") != "automl":
        problems.append(("type", f"expected 'automl', got {data.get('type')!r}"))
    if data.get("task") != "image_object_detection":
        problems.append(("task", f"expected 'image_object_detection', got {data.get('task')!r}"))
    base = file.parent
    training = _data_path(data.get("training_data"), "training_data", base, problems)
    if "training_data" not in data:
        problems.append(("training_data", "missing; expected {path: ..., type: mltable}"))
    parameters = dict(data.get("training_parameters") or {})
    for switch in _SWITCHES:
        value = parameters.get(switch)
        if isinstance(value, str) and value.lower() in ("enable", "disable"):
            parameters[switch] = value.lower() == "enable"
    primary = str(data.get("primary_metric", "mean_average_precision"))
    fields: dict[str, Any] = {
        "training_data": training or "",
        "validation_data": _data_path(
            data.get("validation_data"), "validation_data", base, problems
        ),
        "validation_size": data.get("validation_data_size"),
        "compute": data.get("compute"),
        **_serverless(data, problems),
        "search_space": data.get("search_space") or (),
        "sweep": data.get("sweep"),
        "limits": data.get("limits") or {},
        "training_parameters": parameters,
        "experiment": data.get("experiment_name"),
        "primary_metric": primary.replace("MeanAveragePrecision", "mean_average_precision"),
        "target_column_name": data.get("target_column_name", "label"),
    }
    request = None
    try:
        request = TrainingRequest.model_validate(fields)
    except ValidationError as exc:
        for error in exc.errors():
            loc = list(error["loc"])
            if loc and isinstance(loc[0], str):
                loc[0] = _YAML_NAME.get(loc[0], loc[0])
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown setting"
            elif error["type"] not in ("value_error", "missing"):
                message += f" (got {error.get('input')!r})"
            for part in message.split("\n"):
                problems.append((where, part))
    if problems or request is None:
        shown = []
        for where, message in problems:
            line = _where(lines, where)
            at = f" line {line}" if line else ""
            shown.append(f"  {file}{at}: {where + ': ' if where else ''}{message}")
        count = f"{len(shown)} problem{'s' if len(shown) != 1 else ''}"
        raise InvalidSettingsError(f"invalid job {file} ({count}):\n" + "\n".join(shown))
    tags = data.get("tags") or {}
    verbosity = data.get("log_verbosity")
    return JobSpec(
        path=file,
        request=request,
        name=data.get("name"),
        description=data.get("description"),
        display_name=data.get("display_name"),
        tags={str(k): str(v) for k, v in dict(tags).items()},
        log_verbosity=str(verbosity).lower() if verbosity is not None else None,
        present=tuple(str(k) for k in data),
    )


def _serverless(data: Mapping[str, Any], problems: list[tuple[str, str]]) -> dict[str, Any]:
    """``resources: {instance_type, instance_count}`` and ``queue_settings: {job_tier}``, the
    serverless compute of a job without ``compute:``."""
    fields: dict[str, Any] = {}
    for section, keys in (
        ("resources", {"instance_type": "instance_type", "instance_count": "instance_count"}),
        ("queue_settings", {"job_tier": "job_tier"}),
    ):
        value = data.get(section)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            problems.append((section, f"expected a mapping, got {value!r}"))
            continue
        for key in value:
            if key not in keys:
                problems.append(
                    (f"{section}.{key}", f"not supported for AutoML jobs (known: {sorted(keys)})")
                )
        for key, name in keys.items():
            if value.get(key) is not None:
                fields[name] = value[key]
    if isinstance(fields.get("job_tier"), str):
        fields["job_tier"] = fields["job_tier"].lower()
    return fields
