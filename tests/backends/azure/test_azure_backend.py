"""AzureBackend against replayed HTTP (no network, no credentials) and a local MLflow store.

Every azure-ai-ml call runs the real client code over ``tests/azure_replay.ReplayTransport``,
which answers from ``tests/fixtures/azure/*.json`` and records each request, so the tests
assert what detectkit sends (paths, payload fields, headers) as well as what it returns.
The MLflow side (trials, metrics, best model download) runs against a real SQLite store.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from detectkit.errors import (
    AuthenticationError,
    ConflictError,
    DetectkitError,
    EndpointError,
    InvalidSettingsError,
    NotFoundError,
    OperationTimeoutError,
    QuotaError,
    RunFailedError,
)
from detectkit.resources import DetectionRun, RunStatus
from detectkit.synthetic import make_dataset

sys.path.insert(0, str(Path(__file__).parents[2]))
from azure_replay import (
    PRIMARY_KEY,
    RESOURCE_GROUP,
    SECONDARY_KEY,
    SUBSCRIPTION,
    WORKSPACE,
    Answer,
    FakeCredential,
    ReplayTransport,
    fixture,
)
from mlflow_sweep import sweep_store

SCORE_HOST = "cards-ep.westeurope.inference.ml.azure.com"
EP = r"/onlineEndpoints/cards-ep"


@pytest.fixture(scope="module")
def azure_ml() -> None:
    """Pay the azure-ai-ml import (~3 s) once per module."""
    import azure.ai.ml  # noqa: F401


@pytest.fixture
def transport(azure_ml: None) -> ReplayTransport:
    t = ReplayTransport()
    t.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    t.add("GET", EP + "$", fixture_name="online_endpoint")
    t.add("GET", EP + "/deployments$", fixture_name="online_deployments_list")
    t.add("POST", EP + "/listKeys$", fixture_name="endpoint_keys")
    return t


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def project(transport: ReplayTransport, sleeps: list[float]) -> Any:
    from detectkit.project import Project

    return Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=FakeCredential(),
        transport=transport,
        enable_telemetry=False,
        retry_sleep=sleeps.append,
    )


@pytest.fixture
def image(tmp_path: Path) -> Path:
    ds = make_dataset(tmp_path / "one", n_images=1, size=(200, 100))
    return Path(ds.records[0].image)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# ---------------------------------------------------------------------- import cost
def test_import_detectkit_loads_no_azure_or_mlflow() -> None:
    code = (
        "import sys, detectkit, detectkit.project, detectkit.backends.azure; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'azure', 'mlflow', 'azureml'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------- endpoints
def test_get_endpoint_maps_the_service_record(project: Any, transport: ReplayTransport) -> None:
    endpoint = project.endpoints.get("cards-ep")
    assert endpoint.name == "cards-ep"
    assert endpoint.scoring_uri == f"https://{SCORE_HOST}/score"
    assert endpoint.traffic == {"blue": 100}
    assert endpoint.state == "Succeeded"
    assert endpoint.info.auth_mode == "key"
    assert endpoint.info.deployments == ("blue",)
    assert repr(endpoint) == "Endpoint(name='cards-ep', state='Succeeded', traffic={'blue': 100})"
    assert [r.method for r in transport.requests] == ["GET", "GET"]


def test_list_endpoints(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", r"/onlineEndpoints$", fixture_name="online_endpoints_list")
    (endpoint,) = project.endpoints.list()
    assert (endpoint.name, endpoint.traffic, endpoint.state) == (
        "cards-ep",
        {"blue": 100},
        "Succeeded",
    )


def test_endpoint_keys_are_secret_everywhere(
    project: Any, transport: ReplayTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = project.endpoints.get("cards-ep")
    keys = endpoint.keys()
    assert keys.primary.get_secret_value() == PRIMARY_KEY
    assert keys.secondary is not None
    assert keys.secondary.get_secret_value() == SECONDARY_KEY
    shown = " ".join([repr(keys), str(keys), keys.model_dump_json(), repr(endpoint), caplog.text])
    assert PRIMARY_KEY not in shown
    assert SECONDARY_KEY not in shown
    transport.one("POST", EP + "/listKeys$")


def test_endpoint_logs_and_traffic_and_delete(project: Any, transport: ReplayTransport) -> None:
    transport.add("POST", EP + "/deployments/blue/getLogs$", fixture_name="deployment_logs")
    transport.add("PUT", EP + "$", fixture_name="online_endpoint")
    transport.add("DELETE", EP + "$", status=200, body={})
    endpoint = project.endpoints.get("cards-ep")

    logs = endpoint.logs(lines=50)
    assert "Liveness probe failed" in logs
    assert transport.one("POST", "/getLogs$").json() == {"tail": 50}

    endpoint.set_traffic({"blue": 100})
    assert transport.one("PUT", EP + "$").json()["properties"]["traffic"] == {"blue": 100}
    with pytest.raises(NotFoundError, match="no deployment 'green'"):
        endpoint.set_traffic({"green": 100})

    endpoint.delete()
    transport.one("DELETE", EP + "$")


# ---------------------------------------------------------------------- predict
def test_predict_posts_in_memory_with_the_key(
    project: Any, transport: ReplayTransport, image: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport.add("POST", rf"https://{SCORE_HOST}/score", fixture_name="score_response")
    endpoint = project.endpoints.get("cards-ep")

    (pred,) = endpoint.predict(image)
    assert pred.labels.tolist() == ["hearts", "spades", "clubs"]
    assert pred.scores.tolist() == pytest.approx([0.937, 0.891, 0.276])
    assert pred.size == (200, 100)
    assert pred.to_pixels()[0].tolist() == pytest.approx([44.8, 28.5, 79.8, 62.0])

    post = transport.one("POST", "/score$")
    assert post.host == SCORE_HOST
    assert post.headers["Authorization"] == f"Bearer {PRIMARY_KEY}"
    assert post.headers["Content-Type"] == "application/json"
    assert "azureml-model-deployment" not in post.headers
    body = post.json()
    assert body["input_data"]["columns"] == ["image"]
    assert base64.b64decode(body["input_data"]["data"][0]) == image.read_bytes()

    (filtered,) = endpoint.predict(image, min_score=0.5, deployment="blue")
    assert filtered.labels.tolist() == ["hearts", "spades"]
    second = transport.sent("POST", "/score$")[1]
    assert second.headers["azureml-model-deployment"] == "blue"
    # the scoring target (URI and key) is fetched once, then cached
    assert len(transport.sent("POST", "/listKeys$")) == 1
    assert PRIMARY_KEY not in caplog.text


FAILURES = [
    pytest.param(
        404,
        "No valid deployments to route to. Please check that the endpoint has at least one "
        "deployment with positive weight values or use a deployment specific header to route.",
        {},
        "set_traffic",
        id="404-no-deployments",
    ),
    pytest.param(404, "Not found", {}, "endpoint and deployment names", id="404-other"),
    pytest.param(408, "upstream request timeout", {}, "request_timeout_ms", id="408"),
    pytest.param(
        424,
        "model error",
        {
            "ms-azureml-model-error-statuscode": "500",
            "ms-azureml-model-error-reason": "model_error",
        },
        "logs()",
        id="424",
    ),
    pytest.param(502, "Bad gateway", {}, "probes", id="502"),
]


@pytest.mark.parametrize(("status", "text", "headers", "hint"), FAILURES)
def test_predict_failures_raise_endpoint_error_with_hint(
    project: Any,
    transport: ReplayTransport,
    image: Path,
    status: int,
    text: str,
    headers: dict[str, str],
    hint: str,
) -> None:
    transport.add("POST", "/score$", status=status, body=text, headers=headers)
    endpoint = project.endpoints.get("cards-ep")
    with pytest.raises(EndpointError) as info:
        endpoint.predict(image)
    err = info.value
    assert err.status_code == status
    assert err.hint is not None
    assert hint in err.hint
    assert f"HTTP {status}" in str(err)
    assert "cards-ep" in str(err)
    assert PRIMARY_KEY not in str(err)
    assert PRIMARY_KEY not in repr(err)
    if status == 424:
        assert "model error 500: model_error" in str(err)
    assert len(transport.sent("POST", "/score$")) == 1  # not retried


def test_401_refreshes_the_key_once_then_raises(
    project: Any, transport: ReplayTransport, image: Path
) -> None:
    transport.add("POST", "/score$", status=401, body=f"bad key {PRIMARY_KEY}")
    with pytest.raises(EndpointError) as info:
        project.endpoints.get("cards-ep").predict(image)
    assert info.value.status_code == 401
    assert PRIMARY_KEY not in str(info.value)
    assert len(transport.sent("POST", "/score$")) == 2
    assert len(transport.sent("POST", "/listKeys$")) == 2


def test_429_is_retried_honouring_retry_after(
    project: Any, transport: ReplayTransport, image: Path, sleeps: list[float]
) -> None:
    transport.add(
        "POST",
        "/score$",
        Answer(429, "Too many requests", {"Retry-After": "7"}),
        Answer(429, "Too many requests"),
        Answer(200, fixture("score_response")),
    )
    (pred,) = project.endpoints.get("cards-ep").predict(image)
    assert len(pred) == 3
    assert sleeps == [7.0, 2.0]  # Retry-After, then exponential backoff (1, 2, 4 s)


@pytest.mark.parametrize("header", ["soon", "nan", "-inf", "Thu, 99 Foo 2026"])
def test_a_retry_after_that_is_no_delay_falls_back_to_the_backoff(
    project: Any, transport: ReplayTransport, image: Path, sleeps: list[float], header: str
) -> None:
    transport.add(
        "POST",
        "/score$",
        Answer(503, "busy", {"Retry-After": header}),
        Answer(200, fixture("score_response")),
    )
    (pred,) = project.endpoints.get("cards-ep").predict(image)
    assert len(pred) == 3
    assert sleeps == [1.0]


def test_an_echoed_key_or_token_never_reaches_the_error(
    project: Any, transport: ReplayTransport, image: Path
) -> None:
    escaped = json.dumps(PRIMARY_KEY)[1:-1]
    body = f'{{"key": "{escaped}", "auth": "Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"}}'
    transport.add("POST", "/score$", status=403, body=body)
    with pytest.raises(EndpointError) as info:
        project.endpoints.get("cards-ep").predict(image)
    text = str(info.value)
    assert PRIMARY_KEY not in text and "eyJhbGciOi" not in text
    assert "Bearer **********" in text
    assert info.value.hint is not None and "auth mode" in info.value.hint


@pytest.mark.parametrize("status", [429, 503])
def test_retries_are_bounded(
    project: Any, transport: ReplayTransport, image: Path, sleeps: list[float], status: int
) -> None:
    transport.add("POST", "/score$", status=status, body="busy")
    with pytest.raises(EndpointError) as info:
        project.endpoints.get("cards-ep").predict(image)
    assert info.value.status_code == status
    assert f"still {status} after 3 retries" in str(info.value)
    assert len(transport.sent("POST", "/score$")) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_scoring_timeout_and_unreachable(
    project: Any, transport: ReplayTransport, image: Path
) -> None:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseTimeoutError

    transport.add("POST", "/score$", Answer(raises=ServiceResponseTimeoutError("read timed out")))
    endpoint = project.endpoints.get("cards-ep")
    with pytest.raises(OperationTimeoutError, match=r"within 5 s; pass a larger timeout="):
        endpoint.predict(image, timeout=5)
    transport.add("POST", "/score$", Answer(raises=ServiceRequestError("connection refused")))
    with pytest.raises(EndpointError, match="cannot reach endpoint 'cards-ep'"):
        endpoint.predict(image)


# ---------------------------------------------------------------------- deploy
def _deploy_routes(transport: ReplayTransport, deployment_state: str = "Succeeded") -> None:
    deployment = fixture("online_deployment")
    deployment["properties"]["provisioningState"] = deployment_state
    transport.add("GET", r"/models/cards-model/versions/1$", fixture_name="model_version")
    transport.add(
        "GET",
        EP + "$",
        Answer(404, error_body("NotFound", "endpoint not found")),  # a new endpoint
        Answer(200, fixture("online_endpoint")),
    )
    transport.add("PUT", EP + "$", fixture_name="online_endpoint")
    transport.add("PUT", EP + "/deployments/blue$", body=deployment)
    transport.add("GET", EP + "/deployments/blue$", body=deployment)
    transport.add("POST", EP + "/deployments/blue/getLogs$", fixture_name="deployment_logs")


def test_deploy_creates_then_routes_all_traffic(project: Any, transport: ReplayTransport) -> None:
    _deploy_routes(transport)
    endpoint = project.deploy(
        "cards-model:1",
        "cards-ep",
        deployment="blue",
        instance_type="Standard_DS3_v2",
        settings={"request_timeout_ms": 90_000},
    )
    assert endpoint.traffic == {"blue": 100}

    puts = [r for r in transport.requests if r.method == "PUT"]
    assert [p.path.rsplit("/", 1)[-1] for p in puts] == ["cards-ep", "blue", "cards-ep"]
    first, dep, last = (p.json() for p in puts)
    assert first["properties"]["authMode"] == "Key"
    assert not first["properties"].get("traffic")
    props = dep["properties"]
    assert props["model"].endswith("/models/cards-model/versions/1")
    assert props["instanceType"] == "Standard_DS3_v2"
    assert props["requestSettings"]["requestTimeout"] == "PT1M30S"
    assert set(props["livenessProbe"]) >= {"initialDelay", "period", "timeout", "failureThreshold"}
    assert set(props["readinessProbe"]) >= {"initialDelay", "period", "timeout"}
    assert last["properties"]["traffic"] == {"blue": 100}


def test_deploy_failed_deployment_raises_and_keeps_traffic(
    project: Any, transport: ReplayTransport
) -> None:
    _deploy_routes(transport, deployment_state="Failed")
    with pytest.raises(EndpointError) as info:
        project.deploy("cards-model:1", "cards-ep", deployment="blue")
    message = str(info.value)
    assert "deployment 'blue'" in message
    assert "Failed" in message
    assert "Liveness probe failed" in message  # the deployment's own log tail
    assert "endpoint.logs(deployment='blue')" in (info.value.hint or "")
    endpoint_puts = transport.sent("PUT", EP + "$")
    assert len(endpoint_puts) == 1  # traffic never moved to the failed deployment


def test_deploy_quota_error(project: Any, transport: ReplayTransport) -> None:
    _deploy_routes(transport)
    transport.add(
        "PUT",
        EP + "/deployments/blue$",
        status=400,
        body=error_body("BadArgument", "Not enough Quota for Standard_NC6s_v3 in westeurope"),
    )
    with pytest.raises(QuotaError, match="Quota"):
        project.deploy("cards-model:1", "cards-ep", deployment="blue")


# ---------------------------------------------------------------------- jobs
@pytest.mark.parametrize(
    ("service", "status"),
    [
        ("Running", RunStatus.RUNNING),
        ("Completed", RunStatus.COMPLETED),
        ("Scheduled", RunStatus.SCHEDULED),
        ("CancelRequested", RunStatus.CANCEL_REQUESTED),
        ("Hibernating", RunStatus.UNKNOWN),
    ],
)
def test_get_run_maps_status(
    project: Any, transport: ReplayTransport, service: str, status: RunStatus
) -> None:
    job = fixture("job_automl_od")
    job["properties"]["status"] = service
    transport.add("GET", r"/jobs/sweep_job_1$", body=job)
    run = project.runs.get("sweep_job_1")
    assert run.status is status
    assert run.info.status_raw == service
    assert run.info.display_name == "cards-sweep"
    assert run.info.experiment == "cards"
    assert run.info.tags == {"team": "vision"}
    assert run.studio_url is not None
    assert run.studio_url.startswith("https://ml.azure.com/runs/")
    assert run.info.error is None
    assert repr(run) == f"DetectionRun(name='sweep_job_1', status={status.value})"


def test_failed_run_carries_the_job_error(project: Any, transport: ReplayTransport) -> None:
    job = fixture("job_automl_od")
    job["properties"]["status"] = "Failed"
    transport.add("GET", r"/jobs/sweep_job_1$", body=job)
    transport.add("GET", r"/discovery$", fixture_name="discovery")
    transport.add("GET", r"/runs/sweep_job_1/details$", fixture_name="run_details_failed")
    run = project.runs.get("sweep_job_1")
    assert run.status is RunStatus.FAILED
    assert run.info.error is not None
    assert "MLTable input is invalid" in run.info.error
    with pytest.raises(RunFailedError, match="MLTable input is invalid"):
        run.wait(progress=False, poll_interval=0)


def test_list_runs_maps_each_job(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", r"/jobs$", body={"value": [fixture("job_automl_od")]})
    (run,) = project.runs.list()
    assert isinstance(run, DetectionRun)
    assert (run.name, run.status) == ("sweep_job_1", RunStatus.RUNNING)
    assert run.info.experiment == "cards"
    assert run.info.display_name == "cards-sweep"
    transport.one("GET", r"/jobs$")


def test_missing_job_is_not_found(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", r"/jobs/nope$", status=404, body=error_body("UserError", "no such job"))
    with pytest.raises(NotFoundError, match="job 'nope'"):
        project.runs.get("nope")


def test_cancel_run(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", r"/jobs/sweep_job_1$", fixture_name="job_automl_od")
    transport.add("POST", r"/jobs/sweep_job_1/cancel$", status=200, body={})
    project.runs.get("sweep_job_1").cancel()
    transport.one("POST", r"/jobs/sweep_job_1/cancel$")


def test_dry_run_sends_nothing(project: Any, transport: ReplayTransport) -> None:
    job = project.train("azureml:cards:1", compute="gpu-cluster", models=["yolov5"], dry_run=True)
    assert type(job).__name__ == "ImageObjectDetectionJob"
    assert job.compute == "gpu-cluster"
    assert transport.requests == []
    with pytest.raises(InvalidSettingsError, match="compute: expected a compute cluster name"):
        project.train("azureml:cards:1", models=["yolov5"], dry_run=True)
    with pytest.raises(InvalidSettingsError, match="compute"):
        project.train("azureml:cards:1", models=["yolov5"])
    assert transport.requests == []


def test_dry_run_carries_the_runs_own_fields(project: Any, transport: ReplayTransport) -> None:
    job = project.train(
        "azureml:cards:1",
        compute="gpu-cluster",
        models=["yolov5"],
        name="cards-yolo-1",
        display_name="Cards, yolov5",
        description="one yolov5 trial",
        tags={"team": "vision"},
        log_verbosity="Debug",
        dry_run=True,
    )
    rest = job._to_rest_object().as_dict()
    assert rest["properties"]["displayName"] == "Cards, yolov5"
    assert rest["properties"]["description"] == "one yolov5 trial"
    assert rest["properties"]["tags"] == {"team": "vision"}
    assert rest["properties"]["taskDetails"]["logVerbosity"] == "Debug"
    assert job.name == "cards-yolo-1"
    assert transport.requests == []
    with pytest.raises(InvalidSettingsError, match="log_verbosity") as info:
        project.train(
            "azureml:cards:1", compute="g", models=["yolov5"], log_verbosity="loud", dry_run=True
        )
    assert "'debug'" in str(info.value)
    with pytest.raises(InvalidSettingsError, match="display_name"):
        project.train("azureml:cards:1", compute="g", models=["yolov5"], name="a b", dry_run=True)


def test_submit_training(project: Any, transport: ReplayTransport) -> None:
    transport.add("PUT", r"/jobs/[^/]+$", fixture_name="job_automl_od")
    transport.add("GET", r"/computes/gpu-cluster$", status=404, body=error_body("NotFound", "x"))
    run = project.train("azureml:cards:1", compute="gpu-cluster", models=["yolov5"])
    assert (run.name, run.status) == ("sweep_job_1", RunStatus.RUNNING)
    body = transport.one("PUT", r"/jobs/[^/]+$").json()["properties"]
    assert body["jobType"] == "AutoML"
    assert body["taskDetails"]["taskType"] == "ImageObjectDetection"
    training = body["taskDetails"]["trainingData"]
    assert training["jobInputType"] == "mltable"
    assert training["uri"].endswith("/workspaces/ws-detectkit/data/cards/versions/1")
    assert body["computeId"].endswith("/computes/gpu-cluster")


def test_submit_on_serverless_compute(project: Any, transport: ReplayTransport) -> None:
    transport.add("PUT", r"/jobs/[^/]+$", fixture_name="job_automl_od")
    run = project.train(
        "azureml:cards:1", instance_type="Standard_NC6s_v3", job_tier="Spot", models=["yolov5"]
    )
    assert run.name == "sweep_job_1"
    body = transport.one("PUT", r"/jobs/[^/]+$").json()["properties"]
    assert body.get("computeId") is None
    assert body["resources"]["instance_type"] == "Standard_NC6s_v3"
    assert body["queueSettings"]["job_tier"] == "spot"
    with pytest.raises(InvalidSettingsError, match="not both"):
        project.train("azureml:cards:1", compute="gpu", instance_type="Standard_NC6s_v3")
    with pytest.raises(InvalidSettingsError, match="give instance_type too"):
        project.train("azureml:cards:1", compute="gpu", job_tier="spot")


# ---------------------------------------------------------------------- models
def _version_answer(name: str, version: str) -> dict[str, Any]:
    """A recorded asset version answer, renumbered."""
    answer: dict[str, Any] = fixture(name)
    answer["id"] = answer["id"].replace("/versions/1", f"/versions/{version}")
    answer["name"] = version
    return answer


def _model_answer(version: str) -> dict[str, Any]:
    return _version_answer("model_version", version)


def test_register_best_trial_of_a_run(project: Any, transport: ReplayTransport) -> None:
    job = fixture("job_automl_od")
    job["properties"]["status"] = "Completed"
    job["properties"]["tags"]["automl_best_child_run_id"] = "sweep_job_1_HD_2"
    transport.add("GET", r"/jobs/sweep_job_1$", body=job)
    transport.add("GET", r"/models/cards-model/versions$", fixture_name="model_versions_list")
    transport.add("PUT", r"/models/cards-model/versions/11$", body=_model_answer("11"))
    run = project.runs.get("sweep_job_1")

    model = project.models.register(run, "cards-model", description="best trial")
    assert (model.name, model.version, model.uri) == ("cards-model", "11", "azureml:cards-model:11")
    put = transport.one("PUT", r"/models/cards-model/versions/11$").json()["properties"]
    assert put["modelType"] == "mlflow_model"
    assert (
        put["modelUri"] == "azureml://jobs/sweep_job_1_HD_2/outputs/artifacts/outputs/mlflow-model/"
    )
    assert put["description"] == "best trial"
    assert put["tags"] == {"detectkit.trial": "sweep_job_1_HD_2", "detectkit.run": "sweep_job_1"}


def test_get_model_latest_and_list(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", r"/models/cards-model/versions$", fixture_name="model_versions_list")
    assert project.models.get("cards-model").version == "10"  # numeric, not text order
    assert [m.version for m in project.models.list("cards-model")] == ["1", "2", "10"]
    transport.add("GET", r"/models/cards-model/versions/2$", body=_model_answer("2"))
    model = project.models.get("cards-model", "2")
    assert repr(model) == "RegisteredModel(name='cards-model', version='2')"
    assert model.info.run_name == "sweep_job_1"


def test_list_latest_models_and_datasets(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", r"/models$", fixture_name="model_containers_list")
    transport.add("GET", r"/data$", fixture_name="data_containers_list")
    (model,) = project.models.list()
    assert (model.name, model.version, model.uri) == ("cards-model", "10", "azureml:cards-model:10")
    (asset,) = project.datasets.list()
    assert (asset.name, asset.version, asset.uri) == ("cards", "3", "azureml:cards:3")


# ---------------------------------------------------------------------- datasets
def test_create_dataset_uploads_one_mltable_asset(
    project: Any, transport: ReplayTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azure.ai.ml.operations._data_operations as data_ops

    def offline(**kwargs: Any) -> Any:  # azure-ai-ml reads the MLTable back through its own
        raise OSError("offline")  # storage client; it skips validation when that fails

    monkeypatch.setattr(data_ops, "read_remote_mltable_metadata_contents", offline)
    ds = make_dataset(tmp_path / "cards", n_images=3, seed=4)
    answer = fixture("data_version")
    answer["properties"]["tags"] = {"detectkit.images": "3", "detectkit.boxes": str(ds.num_boxes)}
    transport.add("GET", r"/data/cards/versions$", body={"value": []})
    transport.add("GET", r"/data/cards/versions/1$", status=404, body=error_body("NotFound", "x"))
    transport.add("GET", r"/datastores$", fixture_name="datastores_default")
    transport.add(
        "POST", r"/datastores/workspaceblobstore/listSecrets$", fixture_name="datastore_secrets"
    )
    transport.add("PUT", r"blob\.core\.windows\.net/", status=201, body=b"")
    transport.add("PUT", r"/data/cards/versions/1$", body=answer)

    asset = project.datasets.create("cards", ds, description="generated cards")
    assert (asset.name, asset.version, asset.uri) == ("cards", "1", "azureml:cards:1")
    assert (asset.images, asset.boxes) == (3, ds.num_boxes)

    blobs = {r.path: r for r in transport.sent("PUT", r"blob\.core\.windows\.net/")}
    container = "/azureml-blobstore-11111111-1111-1111-1111-111111111111/"
    prefix = container + "detectkit/datasets/cards/1/"
    assert set(blobs) == {
        prefix + "images/img_0000.png",
        prefix + "images/img_0001.png",
        prefix + "images/img_0002.png",
        prefix + "annotations.jsonl",
        prefix + "MLTable",
    }
    assert blobs[prefix + "images/img_0001.png"].body == Path(ds.records[1].image).read_bytes()
    lines = [json.loads(x) for x in blobs[prefix + "annotations.jsonl"].body.splitlines()]
    assert lines[0]["image_url"] == (
        f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/"
        f"{WORKSPACE}/datastores/workspaceblobstore/paths/detectkit/datasets/cards/1/images/img_0000.png"
    )
    assert lines[0]["image_details"] == {"format": "png", "width": 160, "height": 120}
    assert b"stream_info" in blobs[prefix + "MLTable"].body
    data_put = transport.one("PUT", r"/data/cards/versions/1$").json()["properties"]
    assert data_put["dataType"] == "mltable"
    assert data_put["dataUri"].endswith(
        "/datastores/workspaceblobstore/paths/detectkit/datasets/cards/1/"
    )
    assert data_put["description"] == "generated cards"


def test_create_dataset_uploads_rotated_photos_upright(
    project: Any, transport: ReplayTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import azure.ai.ml.operations._data_operations as data_ops
    import numpy as np
    from PIL import Image, ImageOps

    from detectkit import Box, ImageRecord, LabeledDataset, ObjectAnnotation

    monkeypatch.setattr(
        data_ops,
        "read_remote_mltable_metadata_contents",
        lambda **kw: (_ for _ in ()).throw(OSError("offline")),
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    stored = np.zeros((30, 40, 3), np.uint8)
    stored[:10, :20] = (250, 20, 20)  # a red block in the stored (unrotated) pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees: 30 wide, 40 high
    Image.fromarray(stored).save(folder / "phone.jpg", "JPEG", exif=exif.tobytes(), quality=98)
    Image.new("RGB", (20, 20), (0, 90, 0)).save(folder / "flat.png")
    box = Box(top_x=0.1, top_y=0.1, bottom_x=0.5, bottom_y=0.5)
    ds = LabeledDataset(
        [
            ImageRecord(image=str(folder / n), objects=(ObjectAnnotation(label="a", box=box),))
            for n in ("phone.jpg", "flat.png")
        ],
        ["a"],
        root=folder,
    )
    transport.add("GET", r"/data/photos/versions$", body={"value": []})
    transport.add("GET", r"/data/photos/versions/1$", status=404, body=error_body("NotFound", "x"))
    transport.add("GET", r"/datastores$", fixture_name="datastores_default")
    transport.add(
        "POST", r"/datastores/workspaceblobstore/listSecrets$", fixture_name="datastore_secrets"
    )
    transport.add("PUT", r"blob\.core\.windows\.net/", status=201, body=b"")
    transport.add("PUT", r"/data/photos/versions/1$", fixture_name="data_version")
    project.datasets.create("photos", ds)

    blobs = {r.path.rsplit("/", 1)[-1]: r.body for r in transport.sent("PUT", r"blob\.core")}
    assert blobs["flat.png"] == (folder / "flat.png").read_bytes()  # upright already: as is
    with (
        Image.open(io.BytesIO(blobs["phone.jpg"])) as sent,
        Image.open(folder / "phone.jpg") as src,
    ):
        assert sent.size == (30, 40)
        assert sent.getexif().get(0x0112, 1) == 1
        shown = np.asarray(ImageOps.exif_transpose(src), np.float64)
        assert np.abs(np.asarray(sent, np.float64) - shown).mean() < 3
    lines = [json.loads(x) for x in blobs["annotations.jsonl"].splitlines()]
    assert [line["image_details"]["width"] for line in lines] == [30, 20]
    tags = transport.one("PUT", r"/data/photos/versions/1$").json()["properties"]["tags"]
    assert tags["detectkit.exif_rotated"] == "1"


def test_create_existing_dataset_version_is_refused_before_upload(
    project: Any, transport: ReplayTransport, tmp_path: Path
) -> None:
    transport.add("GET", r"/data/cards/versions/1$", fixture_name="data_version")
    ds = make_dataset(tmp_path / "cards", n_images=2, seed=4)
    with pytest.raises(ConflictError, match="cards:1 already exists"):
        project.datasets.create("cards", ds, version="1")
    assert not transport.sent("PUT")


def test_get_dataset(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", r"/data/cards/versions/1$", fixture_name="data_version")
    asset = project.datasets.get("cards", "1")
    assert (asset.uri, asset.images, asset.boxes) == ("azureml:cards:1", 6, 12)
    container = fixture("data_containers_list")["value"][0]  # latestVersion 3
    transport.add("GET", r"/data/cards$", body=container)
    transport.add("GET", r"/data/cards/versions/3$", body=_version_answer("data_version", "3"))
    assert project.datasets.get("cards").uri == "azureml:cards:3"  # latest
    transport.add("GET", r"/data/cards/versions/7$", status=404, body=error_body("NotFound", "x"))
    with pytest.raises(NotFoundError, match="data asset 'cards:7'"):
        project.datasets.get("cards", "7")


# ---------------------------------------------------------------------- error boundary
def _http_error(cls_name: str, status: int, message: str) -> Exception:
    from azure.core import exceptions as az

    exc: Exception = getattr(az, cls_name)(message=message)
    exc.status_code = status  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("make", "expected", "text"),
    [
        (lambda: _auth_error(), AuthenticationError, "az login"),
        (lambda: _http_error("ResourceNotFoundError", 404, "gone"), NotFoundError, "endpoint 'x'"),
        (lambda: _http_error("ResourceExistsError", 409, "exists"), ConflictError, "exists"),
        (lambda: _http_error("HttpResponseError", 429, "slow down"), QuotaError, "quota"),
        (lambda: _http_error("HttpResponseError", 400, "Quota exceeded"), QuotaError, "Quota"),
        (lambda: _http_error("HttpResponseError", 403, "denied"), AuthenticationError, "role"),
        (lambda: _http_error("HttpResponseError", 500, "boom"), DetectkitError, "HTTP 500: boom"),
        (lambda: _validation_error(), InvalidSettingsError, "bad field"),
        (lambda: _missing_asset_error(), NotFoundError, "does not exist in workspace"),
        (lambda: _mlflow_error("RESOURCE_DOES_NOT_EXIST"), NotFoundError, "MLflow"),
        (lambda: _mlflow_error("INTERNAL_ERROR"), DetectkitError, "INTERNAL_ERROR"),
    ],
)
def test_translate_error(make: Any, expected: type[Exception], text: str, azure_ml: None) -> None:
    from detectkit.backends.azure.backend import translate_error

    err = translate_error(make(), "endpoint 'x'")
    assert type(err) is expected
    assert text in str(err)
    assert translate_error(KeyError("a bug"), "endpoint 'x'") is None


def _auth_error() -> Exception:
    from azure.core.exceptions import ClientAuthenticationError

    return ClientAuthenticationError("token expired")


def _validation_error() -> Exception:
    from azure.ai.ml.exceptions import ValidationException

    return ValidationException(message="bad field", no_personal_data_message="bad field")


def _missing_asset_error() -> Exception:
    """What azure-ai-ml raises for ``data.get(name, label="latest")`` of no such asset."""
    from azure.ai.ml.exceptions import ValidationErrorType, ValidationException

    text = "Asset cards-labeling does not exist in workspace ws."
    return ValidationException(
        message=text,
        no_personal_data_message=text,
        error_type=ValidationErrorType.RESOURCE_NOT_FOUND,
    )


def _mlflow_error(code: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    return MlflowException("run 'r' not found", error_code=getattr(databricks_pb2, code))


def test_refused_credentials_become_authentication_error(azure_ml: None) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from detectkit.project import Project

    class Refusing(FakeCredential):
        def get_token_info(self, *scopes: str, options: Any = None) -> Any:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            return self.get_token_info()

    t = ReplayTransport()
    project = Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=Refusing(),
        transport=t,
        enable_telemetry=False,
    )
    with pytest.raises(AuthenticationError, match="az login") as info:
        project.endpoints.get("cards-ep")
    assert "AZURE_CLIENT_ID" in str(info.value)


# ---------------------------------------------------------------------- MLflow side
@pytest.fixture(scope="module")
def mlflow_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return sweep_store(request, tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def ml_project(mlflow_store: dict[str, Any], transport: ReplayTransport) -> Any:
    from detectkit.project import Project

    return Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=FakeCredential(),
        transport=transport,
        enable_telemetry=False,
        mlflow_tracking_uri=mlflow_store["uri"],
    )


def _handle(project: Any, name: str) -> Any:
    from detectkit.resources import DetectionRun, RunInfo

    return DetectionRun(project.backend, RunInfo(name=name))


def test_trials_through_the_hd_parent(ml_project: Any, mlflow_store: dict[str, Any]) -> None:
    trials = _handle(ml_project, mlflow_store["parent"]).trials()
    assert [t.name for t in trials] == mlflow_store["trials"]
    first, best, killed = trials
    assert first.hyperparameters == {
        "model_name": "yolov5",
        "learning_rate": 0.01,
        "early_stopping": True,
    }
    assert first.metrics["mean_average_precision"] == pytest.approx(0.61)
    assert set(first.metrics) == {"mean_average_precision", "precision", "recall"}
    assert (first.status, killed.status) == (RunStatus.COMPLETED, RunStatus.CANCELED)
    assert [t.is_best for t in trials] == [False, True, False]
    assert "best" in repr(best)
    assert "0.7400" in repr(best)


def test_best_trial_and_metrics(ml_project: Any, mlflow_store: dict[str, Any]) -> None:
    run = _handle(ml_project, mlflow_store["parent"])
    best = run.best_trial
    assert best is not None
    assert best.name == mlflow_store["best"]
    assert best.is_best
    assert best.hyperparameters["model_name"] == "fasterrcnn_resnet50_fpn"
    assert run.metrics == pytest.approx(
        {"mean_average_precision": 0.74, "precision": 0.84, "recall": 0.64}
    )
    assert _handle(ml_project, mlflow_store["pending"]).best_trial is None


def test_trials_without_hd_parent(ml_project: Any, mlflow_store: dict[str, Any]) -> None:
    trials = _handle(ml_project, mlflow_store["flat"]).trials()
    assert [t.name for t in trials] == mlflow_store["flat_children"]
    assert not any(t.is_best for t in trials)


def test_download_model(ml_project: Any, mlflow_store: dict[str, Any], tmp_path: Path) -> None:
    path = _handle(ml_project, mlflow_store["parent"]).download_model(tmp_path / "model")
    assert path == tmp_path / "model" / "mlflow-model"
    assert (path / "MLmodel").is_file()
    assert json.loads((path / "artifacts" / "settings.json").read_text()) == {
        "box_score_thresh": 0.3
    }
    assert json.loads((tmp_path / "model" / "labels.json").read_text())[0] == "clubs"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["labels.json", "mlflow-model"]
    with pytest.raises(ConflictError, match="not empty"):
        _handle(ml_project, mlflow_store["parent"]).download_model(tmp_path / "model")
    with pytest.raises(NotFoundError, match="no best trial yet"):
        _handle(ml_project, mlflow_store["pending"]).download_model(tmp_path / "other")


def test_register_run_without_best_trial_says_wait(
    ml_project: Any, mlflow_store: dict[str, Any], transport: ReplayTransport
) -> None:
    name = mlflow_store["pending"]  # no best-child tag on the job, nor on the MLflow run
    job = fixture("job_automl_od")
    job["name"] = name
    transport.add("GET", rf"/jobs/{name}$", body=job)
    with pytest.raises(NotFoundError, match=r"no best trial yet .*run.wait\(\)"):
        ml_project.models.register(_handle(ml_project, name), "cards-model")
    assert not transport.sent("PUT")


def test_unknown_mlflow_run_is_not_found(ml_project: Any) -> None:
    with pytest.raises(NotFoundError, match="run 'no-such-run'"):
        _handle(ml_project, "no-such-run").trials()


# ---------------------------------------------------------------------- live
@pytest.mark.azure_live
@pytest.mark.skipif(not os.environ.get("DETECTKIT_AZURE_LIVE"), reason="set DETECTKIT_AZURE_LIVE=1")
def test_live_workspace_lists_endpoints() -> None:  # pragma: no cover - needs Azure
    from detectkit.project import Project

    project = Project.from_config()
    assert isinstance(project.endpoints.list(), list)
