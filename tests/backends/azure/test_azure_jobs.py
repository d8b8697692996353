"""detectkit settings -> azure-ai-ml entities, checked against azure-ai-ml itself, offline.

The central check: for the settings of the official fridge-items sweep, ``build_job`` gives the
job ``load_job`` reads from the equivalent YAML (same REST payload, field for field).
azure-ai-ml takes seconds to import: it is imported once, by the module-scoped ``aml`` fixture.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from detectkit import InvalidSettingsError
from detectkit.backends.azure.jobs import (
    build_deployment_entities,
    build_job,
    data_input_path,
    model_reference,
)
from detectkit.settings.request import (
    BanditPolicy,
    Choice,
    DeploymentSettings,
    Limits,
    LogNormal,
    LogUniform,
    Normal,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    RunMetadata,
    SearchSpace,
    SweepSettings,
    TrainingParameters,
    TrainingRequest,
    Uniform,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "azure"
FRIDGE_YAML = FIXTURES / "fridge-sweep.yml"
TRAIN = "data/training-mltable-folder"
VALID = "data/validation-mltable-folder"


@pytest.fixture(scope="module")
def aml() -> ModuleType:
    """azure.ai.ml, imported once for the module."""
    import azure.ai.ml

    return azure.ai.ml


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Any attempt to open a connection fails the test (and is recorded)."""
    attempts: list[object] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert attempts == []


@pytest.fixture
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work from the fixture folder, so the YAML's relative MLTable paths resolve."""
    monkeypatch.chdir(FIXTURES)
    return FIXTURES


def fridge_request() -> TrainingRequest:
    return TrainingRequest.build(
        TRAIN,
        validation_data=VALID,
        compute="azureml:gpu-cluster",
        experiment="dpv2-cli-automl-image-object-detection-experiment",
        limits=Limits(timeout_minutes=60, max_trials=10, max_concurrent_trials=2),
        training_parameters=TrainingParameters(early_stopping=True, evaluation_frequency=1),
        sweep=SweepSettings(
            sampling_algorithm="random",
            early_termination=BanditPolicy(
                evaluation_interval=2, slack_factor=0.2, delay_evaluation=6
            ),
        ),
        search_space=[
            SearchSpace(
                model_name=Choice(["yolov5"]),
                learning_rate=Uniform(0.0001, 0.01),
                model_size=Choice(["small", "medium"]),
            ),
            SearchSpace(
                model_name=Choice(["fasterrcnn_resnet50_fpn"]),
                learning_rate=Uniform(0.0001, 0.001),
                optimizer=Choice(["sgd", "adam", "adamw"]),
                min_size=Choice([600, 800]),
            ),
        ],
    )


def rest(job: Any) -> dict[str, Any]:
    payload: dict[str, Any] = job._to_rest_object().as_dict()
    return payload


def task(job: Any) -> dict[str, Any]:
    details: dict[str, Any] = rest(job)["properties"]["taskDetails"]
    return details


def test_fridge_sweep_equals_the_official_yaml(aml: ModuleType, in_fixtures: Path) -> None:
    job = build_job(
        fridge_request(),
        RunMetadata(
            description="An Image Object Detection job using fridge items dataset",
            log_verbosity="debug",
        ),
    )
    loaded = aml.load_job(FRIDGE_YAML)
    assert rest(job) == rest(loaded)
    assert job == loaded
    # the comparison is not vacuous: the payload carries the whole sweep
    details = task(job)
    assert details["limitSettings"] == {
        "maxConcurrentTrials": 2,
        "maxTrials": 10,
        "timeout": "PT1H",
    }
    assert details["sweepSettings"]["earlyTermination"]["policyType"] == "Bandit"
    assert details["searchSpace"][1] == {
        "modelName": "choice('fasterrcnn_resnet50_fpn')",
        "learningRate": "uniform(0.0001,0.001)",
        "optimizer": "choice('sgd','adam','adamw')",
        "minSize": "choice(600,800)",
    }
    assert rest(job)["properties"]["computeId"] == "gpu-cluster"


def test_search_space_strings_match_azure_ml(aml: ModuleType) -> None:
    from azure.ai.ml.entities._job.automl.search_space_utils import _convert_to_rest_object

    from detectkit.backends.azure.jobs import _distribution

    distributions = [
        Choice(["yolov5", "fasterrcnn_resnet50_fpn"]),
        Choice([600, 800]),
        Choice([0.5, 1, True]),
        Uniform(1e-05, 0.01),
        LogUniform(-9.2, -4.6),
        QUniform(600, 800, 100),
        QLogUniform(1.0, 3.0, 2),
        Normal(0.01, 0.001),
        LogNormal(-4, 1),
        QNormal(10, 2, 1),
        QLogNormal(2, 0.5, 1),
        Randint(5),
    ]
    for dist in distributions:
        assert dist.to_azure_string() == _convert_to_rest_object(_distribution(dist)), dist
    space = SearchSpace(
        model_name="yolov5", learning_rate=0.01, number_of_epochs=QUniform(5, 20, 5)
    )
    sent = task(
        build_job(
            TrainingRequest.build("azureml:fridge:1", compute="gpu", search_space=space, sweep={})
        )
    )["searchSpace"][0]
    assert sent == {
        "modelName": "yolov5",
        "learningRate": "0.01",
        "numberOfEpochs": "quniform(5,20,5)",
    }
    assert sorted(sent.values()) == sorted(space.to_azure_strings().values())


def test_single_model_automode_and_model_shorthand(aml: ModuleType) -> None:
    single = TrainingRequest.build(
        "fridge:3",
        compute="gpu",
        models="yolov5",
        validation_size=0.25,
        training_parameters={
            "optimizer": "Adamw",
            "learning_rate_scheduler": "WarmupCosine",
            "model_size": "ExtraLarge",
            "validation_metric_type": "coco_voc",
            "log_training_metrics": True,
            "advanced_settings": {"apply_mosaic_for_yolo": False},
        },
    )
    details = task(build_job(single, RunMetadata(name="od-single")))
    assert details["modelSettings"] == {
        "advancedSettings": '{"apply_mosaic_for_yolo": false}',
        "logTrainingMetrics": "Enable",
        "learningRateScheduler": "WarmupCosine",
        "modelName": "yolov5",
        "optimizer": "Adamw",
        "modelSize": "ExtraLarge",
        "validationMetricType": "CocoVoc",
    }
    assert details["trainingData"] == {"uri": "fridge:3", "jobInputType": "mltable"}
    assert details["limitSettings"] == {}  # nothing set: the service defaults apply
    assert details["validationDataSize"] == 0.25
    assert "sweepSettings" not in details
    assert "searchSpace" not in details

    automode = task(
        build_job(TrainingRequest.build("fridge@latest", compute="gpu", limits={"max_trials": 10}))
    )
    assert automode["limitSettings"] == {"maxTrials": 10}
    assert "modelSettings" not in automode
    assert "searchSpace" not in automode

    several = task(
        build_job(
            TrainingRequest.build(
                "azureml:fridge:1", compute="gpu", models=["yolov5", "retinanet_resnet50_fpn"]
            )
        )
    )
    assert several["sweepSettings"] == {"samplingAlgorithm": "grid"}
    assert several["searchSpace"] == [{"modelName": "choice('yolov5','retinanet_resnet50_fpn')"}]
    assert several["limitSettings"]["maxTrials"] == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compute": None}, "compute: Azure training needs a GPU compute cluster"),
        ({"models": "fasterrcnn_resnet50"}, "did you mean 'fasterrcnn_resnet50_fpn'?"),
        ({"models": "ssdlite320_mobilenet_v3_large"}, "not a model the azure backend can train"),
        ({"limits": {"timeout_minutes": 60, "trial_timeout_minutes": 10}}, "no per-trial timeout"),
        ({"training_data": "data"}, "has no MLTable file"),
        ({"training_data": "no-such-folder"}, "is not a local folder, a data asset or a URI"),
        ({"validation_data": "data"}, "validation_data: folder 'data' has no MLTable file"),
    ],
)
def test_build_job_rejects_what_azure_would_fail_on_later(
    aml: ModuleType, in_fixtures: Path, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"training_data": TRAIN, "compute": "gpu-cluster", **kwargs}
    request = TrainingRequest.build(arguments.pop("training_data"), **arguments)
    with pytest.raises(InvalidSettingsError, match=message):
        build_job(request)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("azureml:fridge:1", "azureml:fridge:1"),
        ("fridge:1", "azureml:fridge:1"),
        ("fridge@latest", "azureml:fridge@latest"),
        ("azureml://datastores/blob/paths/fridge/", "azureml://datastores/blob/paths/fridge/"),
        (
            "https://acct.blob.core.windows.net/c/fridge",
            "https://acct.blob.core.windows.net/c/fridge",
        ),
        (TRAIN, TRAIN),
    ],
)
def test_data_input_path(in_fixtures: Path, ref: str, expected: str) -> None:
    assert data_input_path(ref) == expected


def test_model_reference() -> None:
    assert model_reference("fridge-od:3") == "azureml:fridge-od:3"
    assert model_reference("azureml:fridge-od:3") == "azureml:fridge-od:3"
    with pytest.raises(InvalidSettingsError, match="names no version"):
        model_reference("fridge-od")


def test_deployment_entities(aml: ModuleType) -> None:
    settings = DeploymentSettings(instance_count=2, environment_variables={"LOG_LEVEL": "info"})
    endpoint, deployment = build_deployment_entities("fridge-od:3", "fridge-ep", "blue", settings)
    ep = endpoint._to_rest_online_endpoint("westeurope").as_dict()
    assert ep["properties"]["authMode"] == "Key"
    dep = deployment._to_rest_object(location="westeurope").as_dict()
    props = dep["properties"]
    assert dep["sku"]["capacity"] == 2
    assert props["instanceType"] == "Standard_DS3_v2"
    assert props["model"] == "azureml:fridge-od:3"
    assert props["requestSettings"]["requestTimeout"] == "PT1M30S"
    assert props["requestSettings"]["maxConcurrentRequestsPerInstance"] == 1
    assert props["livenessProbe"]["initialDelay"] == "PT10M"
    assert props["livenessProbe"]["failureThreshold"] == 30
    assert props["readinessProbe"]["timeout"] == "PT10S"
    assert props["environmentVariables"] == {"LOG_LEVEL": "info"}


@pytest.mark.parametrize(
    ("endpoint", "deployment", "message"),
    [
        ("ep", "blue", "endpoint name 'ep' is not valid"),
        ("1-endpoint", "blue", "starting with a letter"),
        ("fridge-ep", "blue_green", "deployment name 'blue_green'"),
    ],
)
def test_deployment_names_are_checked(endpoint: str, deployment: str, message: str) -> None:
    with pytest.raises(InvalidSettingsError, match=message):
        build_deployment_entities("m:1", endpoint, deployment, DeploymentSettings())


def test_checks_fail_before_azure_ml_is_imported() -> None:
    code = (
        "import sys\n"
        "from detectkit import InvalidSettingsError, TrainingRequest\n"
        "from detectkit.backends.azure.jobs import build_job, build_deployment_entities\n"
        "from detectkit.settings import DeploymentSettings\n"
        "for call in (\n"
        "    lambda: build_job(TrainingRequest.build('fridge:1', models='yolov8')),\n"
        "    lambda: build_deployment_entities('m', 'fridge-ep', 'blue', DeploymentSettings()),\n"
        "):\n"
        "    try:\n"
        "        call()\n"
        "    except InvalidSettingsError:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('azure')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
