"""Batch endpoints on Azure against replayed HTTP: the real azure-ai-ml client code runs over
``tests/azure_replay.ReplayTransport``, answering from ``tests/fixtures/azure/batch_*.json``
(written from the batchEndpoints / batchEndpoints deployments / jobs REST schemas), so the
tests assert what detectkit sends as well as the typed results."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from detectkit.batch import BatchEndpoint, BatchScoringJob, batch_output_lines
from detectkit.errors import (
    EndpointError,
    InvalidInputError,
    InvalidResponseError,
    InvalidSettingsError,
    RunFailedError,
)
from detectkit.records import RunStatus
from detectkit.synthetic import make_dataset

sys.path.insert(0, str(Path(__file__).parents[2]))
from azure_replay import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    WORKSPACE_PATH,
    FakeCredential,
    ReplayTransport,
    fixture,
)

EP = r"/batchEndpoints/cards-batch"
JOB = "cards-batch-0123456789ab"
SCORING = "https://cards-batch.westeurope.inference.ml.azure.com/jobs"
CONTAINER = "azureml-blobstore-11111111-1111-1111-1111-111111111111"
OUTPUT_PREFIX = f"detectkit/batch-outputs/cards-batch/{JOB}/"
BOX = {"topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}


@pytest.fixture(scope="module")
def azure_ml() -> None:
    import azure.ai.ml  # noqa: F401


@pytest.fixture
def transport(azure_ml: None) -> ReplayTransport:
    t = ReplayTransport()
    t.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    t.add("GET", r"/models/cards-model/versions/1$", fixture_name="model_version")
    t.add("PUT", EP + "$", fixture_name="batch_endpoint")
    t.add("GET", EP + "$", fixture_name="batch_endpoint")
    t.add("PUT", EP + "/deployments/default$", fixture_name="batch_deployment")
    t.add("GET", EP + "/deployments$", fixture_name="batch_deployments_list")
    t.add("GET", r"/datastores/workspaceblobstore$", body=_default_store())
    t.add("GET", r"/datastores$", fixture_name="datastores_default")
    t.add("POST", r"/datastores/workspaceblobstore/listSecrets$", fixture_name="datastore_secrets")
    return t


@pytest.fixture
def project(transport: ReplayTransport) -> Any:
    from detectkit.project import Project

    return Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=FakeCredential(),
        transport=transport,
        enable_telemetry=False,
    )


def _default_store() -> Any:
    return fixture("datastores_default")["value"][0]


def _job(status: str) -> dict[str, Any]:
    job = copy.deepcopy(fixture("batch_job"))
    job["properties"]["status"] = status
    return job


def _invoke_answer(status: str = "NotStarted") -> dict[str, Any]:
    """What the scoring URI answers to a job submission (a BatchJobResource)."""
    return {
        "id": f"{WORKSPACE_PATH}/batchEndpoints/cards-batch/jobs/{JOB}",
        "name": JOB,
        "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs",
        "properties": {"status": status},
    }


def _serve_output(transport: ReplayTransport, files: dict[str, bytes]) -> None:
    """The blob listing and downloads of the job's output folder."""
    blobs = "".join(
        f"<Blob><Name>{OUTPUT_PREFIX}{name}</Name><Properties><Content-Length>{len(data)}"
        "</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>"
        for name, data in files.items()
    )
    listing = (
        '<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint='
        f'"https://stdetectkit.blob.core.windows.net/" ContainerName="{CONTAINER}">'
        f"<Prefix>{OUTPUT_PREFIX}</Prefix><Blobs>{blobs}</Blobs><NextMarker /></EnumerationResults>"
    )
    transport.add("GET", CONTAINER + "$", body=listing, headers={"Content-Type": "application/xml"})
    for name, data in files.items():
        transport.add(
            "GET",
            f"{CONTAINER}/{OUTPUT_PREFIX}{name}$",
            status=206,
            body=data,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
                "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
                "x-ms-blob-type": "BlockBlob",
            },
        )


# ---------------------------------------------------------------------- deploy
def test_deploy_batch_creates_endpoint_deployment_and_sets_the_default(
    project: Any, transport: ReplayTransport
) -> None:
    endpoint = project.deploy_batch(
        "cards-model:1",
        "cards-batch",
        compute="cpu-cluster",
        instance_count=2,
        mini_batch_size=20,
        max_concurrency_per_instance=2,
    )
    assert isinstance(endpoint, BatchEndpoint)
    assert endpoint.default_deployment == "default"
    assert endpoint.info.deployments == ("default",)
    assert endpoint.info.scoring_uri == SCORING
    assert repr(endpoint) == (
        "BatchEndpoint(name='cards-batch', state='Succeeded', default_deployment='default')"
    )
    first, last = transport.sent("PUT", EP + "$")
    assert first.json()["properties"]["authMode"] == "aadToken"
    assert "defaults" not in first.json()["properties"]
    assert last.json()["properties"]["defaults"] == {"deploymentName": "default"}
    dep = transport.one("PUT", EP + "/deployments/default$").json()["properties"]
    assert dep["miniBatchSize"] == 20
    assert dep["maxConcurrencyPerInstance"] == 2
    assert dep["resources"]["instanceCount"] == 2
    assert dep["outputAction"] == "AppendRow"
    assert dep["outputFileName"] == "predictions.csv"
    assert dep["retrySettings"] == {"maxRetries": 3, "timeout": "PT5M"}
    assert dep["compute"] == f"{WORKSPACE_PATH}/computes/cpu-cluster"
    assert dep["model"]["assetId"] == f"{WORKSPACE_PATH}/models/cards-model/versions/1"
    # the deployment is created between the two endpoint updates
    order = [r.method + " " + r.path.rsplit("/", 1)[-1] for r in transport.requests]
    assert order.index("PUT default") < max(
        i for i, x in enumerate(order) if x == "PUT cards-batch"
    )


def test_deploy_batch_failed_deployment_is_not_made_default(
    project: Any, transport: ReplayTransport
) -> None:
    failed = copy.deepcopy(fixture("batch_deployment"))
    failed["properties"]["provisioningState"] = "Failed"
    transport.add("PUT", EP + "/deployments/default$", body=failed)
    with pytest.raises(EndpointError, match="ended Failed; it was not made the default"):
        project.deploy_batch("cards-model:1", "cards-batch", compute="cpu-cluster")
    assert len(transport.sent("PUT", EP + "$")) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mini_batch_size": 0}, "mini_batch_size"),
        ({"instance_count": -1}, "instance_count"),
        ({"settings": {"output_file_name": "../x.csv"}}, "output_file_name"),
        ({"settings": {"max_retry": 1}}, "max_retry"),
        ({"compute": ""}, "compute"),
    ],
)
def test_deploy_batch_checks_settings_before_any_request(
    project: Any, transport: ReplayTransport, kwargs: dict[str, Any], field: str
) -> None:
    kwargs = {"compute": "cpu-cluster", **kwargs}
    with pytest.raises(InvalidSettingsError, match=field):
        project.deploy_batch("cards-model:1", "cards-batch", **kwargs)
    assert transport.requests == []


def test_get_and_list_batch_endpoints(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", r"/batchEndpoints$", fixture_name="batch_endpoints_list")
    assert project.batch_endpoints.get("cards-batch").default_deployment == "default"
    (listed,) = project.batch_endpoints.list()
    assert (listed.name, listed.state) == ("cards-batch", "Succeeded")


# ---------------------------------------------------------------------- score
def test_score_a_datastore_folder_submits_the_job(project: Any, transport: ReplayTransport) -> None:
    transport.add("POST", SCORING + "$", body=_invoke_answer())
    endpoint = project.batch_endpoints.get("cards-batch")
    folder = "azureml://datastores/workspaceblobstore/paths/photos/"
    job = endpoint.score(folder, job_name=JOB)
    assert isinstance(job, BatchScoringJob)
    assert (job.name, job.status) == (JOB, RunStatus.NOT_STARTED)
    assert job.info.output_file_name == "predictions.csv"
    assert repr(job) == f"BatchScoringJob(name={JOB!r}, status=NotStarted)"
    post = transport.one("POST", SCORING + "$")
    assert post.headers["Authorization"] == f"Bearer {FakeCredential.token}"
    body = post.json()["properties"]
    assert body["name"] == JOB
    assert body["inputData"] == {"input": {"jobInputType": "UriFolder", "uri": folder}}
    assert body["outputData"]["score"]["uri"] == (
        f"azureml://datastores/workspaceblobstore/paths/{OUTPUT_PREFIX}"
    )


def test_score_a_local_folder_uploads_it_as_a_uri_folder_asset(
    project: Any, transport: ReplayTransport, tmp_path: Path
) -> None:
    make_dataset(tmp_path / "photos", n_images=2, size=(64, 48))
    images = sorted((tmp_path / "photos").rglob("*.png"))
    transport.add("PUT", r"blob\.core\.windows\.net/", status=201, body=b"")
    asset = {
        "id": f"{WORKSPACE_PATH}/data/cards-batch-input/versions/{JOB}",
        "name": JOB,
        "properties": {
            "dataType": "uri_folder",
            "dataUri": "azureml://datastores/workspaceblobstore/paths/x/",
            "isAnonymous": False,
            "isArchived": False,
            "properties": {},
            "tags": {},
        },
    }
    transport.add("PUT", rf"/data/cards-batch-input/versions/{JOB}$", body=asset)
    transport.add("POST", SCORING + "$", body=_invoke_answer())
    job = project.batch_endpoints.get("cards-batch").score(tmp_path / "photos", job_name=JOB)
    assert job.images == tuple(images)
    uploads = {
        r.path.split(f"/{CONTAINER}/", 1)[1]: r.body
        for r in transport.sent("PUT", r"blob\.core\.windows\.net/")
    }
    prefix = f"detectkit/batch-inputs/cards-batch/{JOB}/"
    expected = {prefix + p.relative_to(tmp_path / "photos").as_posix(): p for p in images}
    assert set(uploads) == set(expected)
    assert all(uploads[k] == v.read_bytes() for k, v in expected.items())
    data = transport.one("PUT", r"/data/cards-batch-input/versions/").json()["properties"]
    assert data["dataType"] == "uri_folder"
    assert data["dataUri"].endswith(f"/datastores/workspaceblobstore/paths/{prefix}")
    sent_input = transport.one("POST", SCORING + "$").json()["properties"]["inputData"]["input"]
    assert sent_input["uri"].endswith(f"/data/cards-batch-input/versions/{JOB}")


def test_score_refuses_a_path_that_is_no_folder(project: Any, tmp_path: Path) -> None:
    endpoint = BatchEndpoint(project.backend, project.backend.get_batch_endpoint("cards-batch"))
    with pytest.raises(InvalidInputError, match="not a local folder"):
        endpoint.score(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="holds no images"):
        endpoint.score(tmp_path / "empty")


def test_score_an_unknown_deployment_is_not_found(project: Any, transport: ReplayTransport) -> None:
    from detectkit.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no deployment 'blue'"):
        project.batch_endpoints.get("cards-batch").score("azureml:photos:1", deployment="blue")
    assert transport.sent("POST", SCORING) == []


# ---------------------------------------------------------------------- jobs
def test_wait_then_predictions_are_matched_to_the_inputs(
    project: Any, transport: ReplayTransport, tmp_path: Path
) -> None:
    make_dataset(tmp_path / "photos", n_images=2, size=(200, 100))
    images = sorted((tmp_path / "photos").rglob("*.png"))
    transport.add("GET", rf"/jobs/{JOB}$", body=_job("Running"), status=200)
    job = BatchScoringJob(project.backend, project.backend.get_batch_job(JOB), images=images)
    assert job.status is RunStatus.RUNNING
    transport.add("GET", rf"/jobs/{JOB}$", body=_job("Completed"))
    assert job.wait(progress=False, poll_interval=0) is job
    lines = [
        {
            "filename": f"/mnt/azureml/cr/j/{JOB}/inputs/{p.name}",
            "boxes": [{"box": BOX, "label": "can", "score": 0.9}],
        }
        for p in images
    ]
    lines[1]["boxes"] = []
    output = "".join(json.dumps(x) + "\n" for x in reversed(lines)).encode()
    _serve_output(transport, {"predictions.csv": output, "logs.txt": b"not predictions"})
    predictions = job.predictions()
    assert [p.image for p in predictions] == [str(images[1]), str(images[0])]
    assert [(p.width, p.height) for p in predictions] == [(200, 100), (200, 100)]
    assert predictions[0].detections.xyxy.shape == (0, 4)
    assert predictions[1].to_pixels().tolist() == [[20.0, 20.0, 100.0, 60.0]]
    assert predictions[1].labels.tolist() == ["can"]
    listing = transport.one("GET", CONTAINER + "$")
    assert listing.query["prefix"] == [OUTPUT_PREFIX]


def test_predictions_of_a_job_from_its_name_keep_the_compute_file_names(
    project: Any, transport: ReplayTransport
) -> None:
    transport.add("GET", rf"/jobs/{JOB}$", body=_job("Completed"))
    row = '"/mnt/inputs/a.png","[{""box"": {""topX"": 0.1, ""topY"": 0.2, ""bottomX"": 0.5, ""bottomY"": 0.6}, ""label"": ""can"", ""score"": 0.8}]"\n'
    _serve_output(transport, {"predictions.csv": row.encode()})
    job = project.batch_endpoints.job(JOB)
    assert job.info.endpoint == "cards-batch"
    assert job.info.input_uri == f"azureml:cards-batch-input:{JOB}"
    (pred,) = job.predictions()
    assert pred.image == "/mnt/inputs/a.png"
    assert pred.scores.tolist() == [0.8]


def test_a_failed_job_carries_the_service_error(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", rf"/jobs/{JOB}$", body=_job("Failed"))
    transport.add("GET", r"/discovery$", fixture_name="discovery")
    transport.add("GET", rf"/runs/{JOB}/details$", fixture_name="batch_run_details_failed")
    job = project.batch_endpoints.job(JOB)
    assert job.status is RunStatus.FAILED
    assert job.error is not None
    assert job.error.startswith("UserError: There is 3 mini batch failures")
    with pytest.raises(RunFailedError, match="ended Failed: UserError: There is 3 mini batch"):
        job.wait(progress=False, poll_interval=0)
    with pytest.raises(RunFailedError, match="not Completed"):
        job.predictions()
    assert transport.sent("GET", CONTAINER) == []


def test_cancel_asks_azure_and_refreshes(project: Any, transport: ReplayTransport) -> None:
    transport.add("GET", rf"/jobs/{JOB}$", body=_job("Running"))
    transport.add("POST", rf"/jobs/{JOB}/cancel$", status=200, body={})
    job = project.batch_endpoints.job(JOB)
    transport.add("GET", rf"/jobs/{JOB}$", body=_job("CancelRequested"))
    job.cancel()
    assert job.status is RunStatus.CANCEL_REQUESTED
    transport.one("POST", rf"/jobs/{JOB}/cancel$")


# ---------------------------------------------------------------------- layouts
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"filename": "a.png", "boxes": []}\n\n', [{"filename": "a.png", "boxes": []}]),
        ('a.png,"[]"\n', [{"filename": "a.png", "boxes": []}]),
        ('a.png,"{""boxes"": []}"\n', [{"filename": "a.png", "boxes": []}]),
    ],
)
def test_batch_output_lines_reads_both_layouts(text: str, expected: list[Any]) -> None:
    assert [json.loads(x) for x in batch_output_lines(text)] == expected


def test_batch_output_lines_names_a_bad_line() -> None:
    with pytest.raises(InvalidResponseError, match="predictions.csv line 2: expected a JSON"):
        batch_output_lines('{"filename": "a", "boxes": []}\nnot,json\n', "predictions.csv")


def test_local_backend_points_to_project_score(tmp_path: Path) -> None:
    from detectkit.batch import BatchDeploymentSettings
    from detectkit.project import Project
    from detectkit.records import ModelInfo

    project = Project.local(tmp_path / "p")
    model = ModelInfo(name="m", version="1", uri="models:/m/1")
    settings = BatchDeploymentSettings(compute="cpu-cluster")
    with pytest.raises(InvalidInputError, match=r"project\.score\(model, data"):
        project.backend.deploy_batch(model, "cards-batch", "default", settings)
    with pytest.raises(InvalidInputError, match=r"detectkit score MODEL DATA"):
        project.batch_endpoints.get("cards-batch")
    assert project.batch_endpoints.list() == []
