"""A real SQLite MLflow store shaped like an AutoML sweep, shared by the Azure tests.

AutoML writes its runs to the workspace's MLflow; these tests point the Azure backend's MLflow
side at a local SQLite store with the same shape (parent -> ``<job>_HD`` -> trials).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest


def migrated_store(request: pytest.FixtureRequest, folder: Path) -> str:
    """A new SQLite MLflow store in ``folder``. Creating one runs MLflow's migrations (5-10 s
    here), so the empty, migrated file is kept in pytest's cache per MLflow version."""
    import mlflow
    from mlflow.tracking import MlflowClient

    db = folder / "mlflow.db"
    cache = getattr(request.config, "cache", None)
    cached = None
    if cache is not None:
        cached = Path(cache.mkdir(f"detectkit-mlflow-{mlflow.__version__}")) / "empty.db"
        if cached.is_file():
            shutil.copyfile(cached, db)
            return f"sqlite:///{db}"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # creates the tables
    if cached is not None:
        partial = cached.with_suffix(f".{os.getpid()}")
        shutil.copyfile(db, partial)
        os.replace(partial, cached)
    return f"sqlite:///{db}"


def sweep_store(request: pytest.FixtureRequest, root: Path) -> dict[str, Any]:
    """A real SQLite MLflow store shaped like an AutoML sweep: parent -> <job>_HD -> trials
    (one with the best-child tag and an mlflow-model artifact), plus a parent with direct
    children."""
    from mlflow.tracking import MlflowClient

    uri = migrated_store(request, root)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cards", artifact_location=(root / "artifacts").as_uri())

    def run(name: str, parent: str | None = None, **tags: str) -> str:
        all_tags = {"mlflow.parentRunId": parent} if parent else {}
        r = client.create_run(exp, run_name=name, tags={**all_tags, **tags})
        return str(r.info.run_id)

    parent = run("sweep_job_1")
    hd = run("sweep_job_1_HD", parent)
    trials = []
    for i, (model, lr, m) in enumerate(
        [("yolov5", 0.01, 0.61), ("fasterrcnn_resnet50_fpn", 0.005, 0.74), ("yolov5", 0.002, 0.55)]
    ):
        tid = run(f"sweep_job_1_HD_{i}", hd)
        client.log_param(tid, "model_name", model)
        client.log_param(tid, "learning_rate", str(lr))
        client.log_param(tid, "early_stopping", "True")
        for key, value in (
            ("mean_average_precision", m),
            ("precision", m + 0.1),
            ("recall", m - 0.1),
        ):
            client.log_metric(tid, key, value)
        client.set_terminated(tid, "FINISHED" if i != 2 else "KILLED")
        trials.append(tid)
    best = trials[1]
    model_dir = root / "model_src" / "mlflow-model"
    (model_dir / "artifacts").mkdir(parents=True)
    (model_dir / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (model_dir / "artifacts" / "settings.json").write_text('{"box_score_thresh": 0.3}')
    client.log_artifacts(best, str(model_dir), "outputs/mlflow-model")
    labels = root / "model_src" / "labels.json"
    labels.write_text('["clubs", "diamonds", "hearts", "spades"]')
    client.log_artifact(best, str(labels), "train_artifacts")
    client.set_tag(parent, "automl_best_child_run_id", best)

    flat = run("automode_job")
    flat_children = [run(f"automode_job_{i}", flat) for i in range(2)]
    for i, cid in enumerate(flat_children):
        client.log_metric(cid, "mean_average_precision", 0.3 + i / 10)
    pending = run("pending_job")
    return {
        "uri": uri,
        "parent": parent,
        "trials": trials,
        "best": best,
        "flat": flat,
        "flat_children": flat_children,
        "pending": pending,
    }
