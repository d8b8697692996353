"""A workspace job as a :class:`~detectkit.records.RunInfo`: its status, and its own error.

Training runs and batch scoring jobs are both workspace jobs; :func:`run_info` maps either,
and :func:`job_error` reads a failed job's error from run history (azure-ai-ml has no public
call for it). Nothing here imports azure-ai-ml: the ``ml_client`` and ``job`` are duck-typed.
"""

from __future__ import annotations

import logging
from typing import Any

from detectkit.backends.azure.records import state_value
from detectkit.records import RunInfo, RunStatus

__all__ = ["job_error", "run_info"]

logger = logging.getLogger("detectkit.azure")


def run_info(ml_client: Any, job: Any) -> RunInfo:
    """The record of an azure-ai-ml job; a failed job carries its own error message."""
    raw = state_value(job.status) if job.status is not None else None
    status = RunStatus.parse(raw)
    error = None
    if status is RunStatus.FAILED:
        error = job_error(ml_client, job.name) or (
            f"no error detail was recorded; open {job.studio_url}"
            if job.studio_url
            else "no error detail was recorded"
        )
    created = getattr(job.creation_context, "created_at", None)
    return RunInfo(
        name=job.name,
        status=status,
        status_raw=raw,
        display_name=job.display_name,
        experiment=job.experiment_name,
        studio_url=job.studio_url,
        error=error,
        created_at=created,
        tags={str(k): str(v) for k, v in (job.tags or {}).items()},
    )


def job_error(ml_client: Any, name: str) -> str | None:
    """The failed job's own error, from run history (``code: message``), or None."""
    try:
        details: Any = ml_client.jobs._runs_operations.get_run_details(name)
        inner: Any = details.error.error
    except Exception as exc:  # private API: any failure only loses the detail
        logger.debug("no run details for %s: %s", name, exc)
        return None
    if not getattr(inner, "message", None):
        return None
    return f"{inner.code}: {inner.message}" if getattr(inner, "code", None) else inner.message
