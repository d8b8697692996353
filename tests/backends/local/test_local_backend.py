"""The local backend end to end on real parts: data assets on disk, a tiny sweep trained in
seconds, MLflow tracking and registry in SQLite (checked through MlflowClient), model download
and the registered pyfunc model predicting on a base64 image."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from detectkit.errors import ConflictError, InvalidInputError, InvalidSettingsError, NotFoundError
from detectkit.project import Project
from detectkit.resources import DetectionRun, RunStatus
from detectkit.synthetic import make_dataset

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

pytestmark = pytest.mark.local

TINY = {
    "number_of_epochs": 1,
    "min_size": 64,
    "max_size": 64,
    "advanced_settings": {"pretrained": False},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One project with one data asset and one two-trial grid sweep, shared by the tests."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("local")
    dataset = make_dataset(tmp / "cards", n_images=10, size=(64, 64), seed=5)
    project = Project.local(tmp / "project")
    asset = project.datasets.create("cards", dataset, description="tiny cards")
    run = project.train(
        asset,
        models=["ssdlite_mobilenet_v2", "fasterrcnn_mobilenet_v2_fpn"],
        training_parameters=TINY,
        experiment="tests",
    )
    return {"tmp": tmp, "dataset": dataset, "project": project, "asset": asset, "run": run}


def _client(project: Project) -> Any:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project.backend.root / 'mlflow.db'}"  # type: ignore[attr-defined]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# ------------------------------------------------------------------ data assets
def test_data_asset_is_jsonl_mltable_and_images_under_root(world: dict[str, Any]) -> None:
    asset, project, dataset = world["asset"], world["project"], world["dataset"]
    folder = Path(asset.uri)
    assert folder == project.backend.root / "datasets" / "cards" / "1"
    assert (asset.version, asset.images, asset.boxes) == ("1", 10, dataset.num_boxes)
    assert {"MLTable", "annotations.jsonl", "asset.json"} <= {p.name for p in folder.iterdir()}
    assert len(list((folder / "images").iterdir())) == 10
    line = json.loads((folder / "annotations.jsonl").read_text().splitlines()[0])
    assert line["image_url"].startswith("images/")
    loaded = project.backend.load_dataset("cards:1")  # type: ignore[attr-defined]
    assert loaded.classes == dataset.classes  # the class order survives JSONL
    assert len(loaded) == 10 and loaded.num_boxes == dataset.num_boxes
    assert project.backend.load_dataset("azureml:cards").records == loaded.records  # type: ignore[attr-defined]


def test_data_asset_versions(world: dict[str, Any]) -> None:
    project, dataset = world["project"], world["dataset"]
    second = project.datasets.create("cards", dataset[:4])
    assert second.version == "2" and second.images == 4
    assert project.datasets.get("cards").version == "2"
    assert project.datasets.get("cards", "1").images == 10
    assert [(a.name, a.version) for a in project.datasets.list()] == [("cards", "2")]
    with pytest.raises(ConflictError, match="cards:1 already exists"):
        project.datasets.create("cards", dataset, version="1")
    with pytest.raises(NotFoundError, match="no version '9'"):
        project.datasets.get("cards", "9")
    with pytest.raises(NotFoundError, match="no data asset 'dogs'"):
        project.datasets.get("dogs")


# ------------------------------------------------------------------ runs in MLflow
def test_sweep_is_a_parent_run_with_child_trials_and_the_best_tag(world: dict[str, Any]) -> None:
    run: DetectionRun = world["run"]
    project = world["project"]
    assert run.status is RunStatus.COMPLETED
    assert run.wait(progress=False) is run  # already finished: returns at once
    client = _client(project)
    parent = client.get_run(run.name)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == "tests"
    assert experiment.artifact_location == (project.backend.root / "mlartifacts" / "tests").as_uri()  # type: ignore[attr-defined]
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.name}'"
    )
    assert sorted(c.data.tags["detectkit.model_name"] for c in children) == [
        "fasterrcnn_mobilenet_v2_fpn",
        "ssdlite_mobilenet_v2",
    ]
    best_id = parent.data.tags["automl_best_child_run_id"]
    best = client.get_run(best_id)
    assert best.data.tags["mlflow.parentRunId"] == run.name
    scores = [c.data.metrics["mean_average_precision"] for c in children]
    assert best.data.metrics["mean_average_precision"] == max(scores)
    for key in ("mean_average_precision", "precision", "recall"):
        assert parent.data.metrics[key] == best.data.metrics[key]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["number_of_epochs"] == "1"
        assert child.data.params["pretrained"] == "False"
        history = client.get_metric_history(child.info.run_id, "train_loss")
        assert [m.step for m in history] == [1]
        artifacts = {
            a.path for a in client.list_artifacts(child.info.run_id, "outputs/mlflow-model")
        }
        assert "outputs/mlflow-model/MLmodel" in artifacts
    assert parent.data.params["mode"] == "sweep"
    assert parent.data.params["sampling_algorithm"] == "grid"


def test_run_handle_reads_trials_metrics_and_best_trial(world: dict[str, Any]) -> None:
    run: DetectionRun = world["run"]
    trials = run.trials()
    assert len(trials) == 2 and sum(t.is_best for t in trials) == 1
    best = run.best_trial
    assert best is not None and best.is_best and best.name in {t.name for t in trials}
    assert best.hyperparameters["min_size"] == 64
    assert run.metrics["mean_average_precision"] == best.metrics["mean_average_precision"]
    again = world["project"].runs.get(run.name)
    assert again.status is RunStatus.COMPLETED
    assert again.info.tags["automl_best_child_run_id"] == best.name
    assert world["project"].runs.get(again.info.display_name).name == run.name  # by run name
    with pytest.raises(NotFoundError, match="no run 'nope'"):
        world["project"].runs.get("nope")
    with pytest.raises(ConflictError, match="has ended"):
        again.cancel()


def test_download_model_writes_the_mlflow_folder_and_labels(world: dict[str, Any]) -> None:
    run: DetectionRun = world["run"]
    target = run.download_model(world["tmp"] / "download")
    assert (target / "MLmodel").is_file() and target.name == "mlflow-model"
    labels = json.loads((target.parent / "labels.json").read_text())
    assert labels == list(world["dataset"].classes)
    with pytest.raises(ConflictError, match="not empty"):
        run.download_model(world["tmp"] / "download")


# ------------------------------------------------------------------ registry
def test_registry_round_trip(world: dict[str, Any]) -> None:
    import mlflow.pyfunc
    import pandas as pd

    project, run = world["project"], world["run"]
    first = project.models.register(run, "cards-detector", description="from the sweep")
    assert (first.version, first.uri) == ("1", "models:/cards-detector/1")
    best = run.best_trial
    assert best is not None and first.info.tags["detectkit.trial"] == best.name
    assert first.info.run_name == run.name
    other = next(t for t in run.trials() if not t.is_best)
    second = project.models.register(other, "cards-detector", version="2")
    assert second.info.tags["detectkit.trial"] == other.name
    folder = run.download_model(world["tmp"] / "for-registry")
    third = project.models.register(folder, "cards-detector")
    assert third.version == "3" and third.info.tags["detectkit.source"] == str(folder)
    assert project.models.get("cards-detector").version == "3"
    assert project.models.get("cards-detector", "1").info.description == "from the sweep"
    assert [m.version for m in project.models.list("cards-detector")] == ["1", "2", "3"]
    assert [(m.name, m.version) for m in project.models.list()] == [("cards-detector", "3")]
    with pytest.raises(ConflictError, match="cards-detector:2 already exists"):
        project.models.register(run, "cards-detector", version="2")
    with pytest.raises(InvalidInputError, match="next version of 'cards-detector' is 4"):
        project.models.register(run, "cards-detector", version="7")
    with pytest.raises(NotFoundError, match="no registered model 'dogs'"):
        project.models.get("dogs")
    client = _client(project)
    assert client.get_model_version("cards-detector", "1").run_id == best.name
    # the registered model loads through MLflow's own registry URI and predicts
    import mlflow

    store = f"sqlite:///{project.backend.root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)  # type: ignore[attr-defined]
    try:
        model = mlflow.pyfunc.load_model("models:/cards-detector/1")
    finally:
        mlflow.set_registry_uri("")  # type: ignore[attr-defined]
        mlflow.set_tracking_uri(previous)
    image = world["dataset"].records[0].image
    out = model.predict(
        pd.DataFrame({"image": [base64.b64encode(Path(image).read_bytes()).decode()]})
    )
    assert list(out.columns) == ["boxes"] and len(out) == 1
    assert project.backend.model_path(first.info).name == "mlflow-model"  # type: ignore[attr-defined]


# ------------------------------------------------------------------ errors before training
def test_a_model_the_local_backend_cannot_train_is_refused(world: dict[str, Any]) -> None:
    project, asset = world["project"], world["asset"]
    with pytest.raises(InvalidSettingsError) as info:
        project.train(asset, models=["yolov5"])
    text = str(info.value)
    assert "'yolov5' is not a model the local backend can train" in text
    assert "ssdlite_mobilenet_v2" in text and "fasterrcnn_resnet50_fpn" in text


def test_dry_run_lists_the_trials_without_training(world: dict[str, Any]) -> None:
    project, asset = world["project"], world["asset"]
    plan = project.train(
        asset,
        search_space=[
            {
                "model_name": "ssdlite_mobilenet_v2",
                "learning_rate": {"type": "uniform", "min_value": 0.001, "max_value": 0.01},
            }
        ],
        sweep={
            "sampling_algorithm": "random",
            "early_termination": {"type": "bandit", "slack_factor": 0.1},
        },
        limits={"max_trials": 3},
        dry_run=True,
    )
    assert len(plan.trials) == 3  # type: ignore[attr-defined]
    assert plan.device in ("cpu", "cuda")  # type: ignore[attr-defined]
    assert "TrainingPlan(trials=3" in repr(plan)


def test_missing_pretrained_weights_fail_before_a_run_starts(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import MobileNet_V2_Weights

    def offline(self: object, *args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    project, asset = world["project"], world["asset"]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(type(MobileNet_V2_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    client = _client(project)

    def runs() -> int:
        ids = [e.experiment_id for e in client.search_experiments()]
        return len(client.search_runs(ids, max_results=1000))

    before = runs()
    with pytest.raises(NotFoundError, match="mobilenet_v2-b0353104.pth"):
        project.train(
            asset, models=["ssdlite_mobilenet_v2"], training_parameters={"number_of_epochs": 1}
        )
    assert runs() == before


def test_validation_data_with_unknown_classes_is_refused(world: dict[str, Any]) -> None:
    project, asset, tmp = world["project"], world["asset"], world["tmp"]
    other = make_dataset(tmp / "other", n_images=3, size=(64, 64), classes=["moons"], seed=9)
    val = project.datasets.create("moons", other)
    with pytest.raises(InvalidInputError, match=r"classes the training data lacks: \['moons'\]"):
        project.train(
            asset, validation_data=val, models=["ssdlite_mobilenet_v2"], training_parameters=TINY
        )


def test_unknown_training_data_is_not_found(world: dict[str, Any]) -> None:
    with pytest.raises(NotFoundError, match="no data asset 'missing'"):
        world["project"].train(
            "missing:3", models=["ssdlite_mobilenet_v2"], training_parameters=TINY
        )


def test_an_interrupted_sweep_keeps_its_finished_trials_and_the_best_tag(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from detectkit.backends.local import sweep

    real_fit, calls = sweep.fit, []

    def fit_then_interrupt(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(sweep, "fit", fit_then_interrupt)
    project = world["project"]
    with pytest.raises(KeyboardInterrupt):
        project.train(
            world["asset"],
            models=["ssdlite_mobilenet_v2", "ssdlite320_mobilenet_v3_large"],
            training_parameters=TINY,
            experiment="interrupted",
        )
    client = _client(project)
    experiment = client.get_experiment_by_name("interrupted")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED"
    assert parent.data.tags["detectkit.stopped"] == "interrupted"
    trials = {r.data.tags["detectkit.model_name"]: r for r in runs if r is not parent}
    assert trials["ssdlite_mobilenet_v2"].info.status == "FINISHED"
    assert trials["ssdlite320_mobilenet_v3_large"].info.status == "KILLED"
    assert (
        parent.data.tags["automl_best_child_run_id"] == trials["ssdlite_mobilenet_v2"].info.run_id
    )
    handle = project.runs.get(parent.info.run_id)
    assert handle.status is RunStatus.CANCELED
    assert handle.best_trial is not None
    assert project.models.register(handle, "after-interrupt").version == "1"
