"""``detectkit batch`` on the Azure backend, through recorded HTTP replay (no network)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from detectkit.cli import main

sys.path.insert(0, str(Path(__file__).parents[1]))
from azure_replay import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    FakeCredential,
    ReplayTransport,
    fixture,
)

EP = r"/batchEndpoints/cards-batch"
JOB = "cards-batch-0123456789ab"
SCORING = "https://cards-batch.westeurope.inference.ml.azure.com/jobs"
CONTAINER = "azureml-blobstore-11111111-1111-1111-1111-111111111111"
PREFIX = f"detectkit/batch-outputs/cards-batch/{JOB}/"
AZURE = ["--subscription", SUBSCRIPTION, "--resource-group", RESOURCE_GROUP]
AZURE += ["--workspace-name", WORKSPACE]


def _job(status: str) -> dict[str, Any]:
    job = copy.deepcopy(fixture("batch_job"))
    job["properties"]["status"] = status
    return job


@pytest.fixture
def transport() -> ReplayTransport:
    t = ReplayTransport()
    t.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    t.add("GET", r"/models/cards-model/versions/1$", fixture_name="model_version")
    t.add("PUT", EP + "$", fixture_name="batch_endpoint")
    t.add("GET", EP + "$", fixture_name="batch_endpoint")
    t.add("PUT", EP + "/deployments/default$", fixture_name="batch_deployment")
    t.add("GET", EP + "/deployments$", fixture_name="batch_deployments_list")
    return t


def run(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    options = {"credential": FakeCredential(), "transport": transport, "enable_telemetry": False}
    code = main([*argv, *AZURE], azure_options=options)
    out, err = capsys.readouterr()
    return code, out, err


def test_batch_deploy_prints_the_endpoint(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        transport, capsys, "batch", "deploy", "cards-model:1", "cards-batch",
        "--compute", "cpu-cluster", "--mini-batch-size", "20", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["default_deployment"] == "default"
    sent = transport.one("PUT", EP + "/deployments/default$").json()["properties"]
    assert sent["miniBatchSize"] == 20


def test_batch_deploy_needs_a_compute(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(transport, capsys, "batch", "deploy", "cards-model:1", "cards-batch")
    assert code == 2
    assert "--compute" in err
    assert transport.requests == []


def test_batch_score_waits_and_writes_predictions(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    transport.add("POST", SCORING + "$", body={"name": JOB, "properties": {"status": "Queued"}})
    transport.add("GET", rf"/jobs/{JOB}$", body=_job("Completed"))
    transport.add(
        "GET", r"/datastores/workspaceblobstore$", body=fixture("datastores_default")["value"][0]
    )
    transport.add("POST", r"/listSecrets$", fixture_name="datastore_secrets")
    line = (
        json.dumps(
            {
                "filename": "/mnt/in/a.png",
                "boxes": [
                    {
                        "box": {"topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6},
                        "label": "can",
                        "score": 0.9,
                    }
                ],
            }
        ).encode()
        + b"\n"
    )
    listing = (
        f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="{CONTAINER}">'
        f"<Blobs><Blob><Name>{PREFIX}predictions.csv</Name><Properties><Content-Length>"
        f"{len(line)}</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob></Blobs>"
        "<NextMarker /></EnumerationResults>"
    )
    transport.add("GET", CONTAINER + "$", body=listing, headers={"Content-Type": "application/xml"})
    transport.add(
        "GET", "predictions.csv$", status=206, body=line,
        headers={"Content-Range": f"bytes 0-{len(line) - 1}/{len(line)}",
                 "Content-Length": str(len(line)), "x-ms-blob-type": "BlockBlob"},
    )  # fmt: skip
    out_file = tmp_path / "out" / "predictions.jsonl"
    code, out, _ = run(
        transport, capsys, "batch", "score", "cards-batch",
        "azureml://datastores/workspaceblobstore/paths/photos/", "--job-name", JOB,
        "--out", str(out_file), "--json",
    )  # fmt: skip
    assert code == 0
    shown = json.loads(out)
    assert (shown["name"], shown["status"], shown["predictions"]) == (JOB, "Completed", 1)
    (written,) = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert written["filename"] == "/mnt/in/a.png"
    assert written["boxes"][0]["label"] == "can"
    assert written["boxes"][0]["box"]["topX"] == pytest.approx(0.1)


def test_batch_show_of_a_failed_job_and_score_wait_exit_1(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    transport.add("GET", rf"/jobs/{JOB}$", body=_job("Failed"))
    transport.add("GET", r"/discovery$", fixture_name="discovery")
    transport.add("GET", rf"/runs/{JOB}/details$", fixture_name="batch_run_details_failed")
    code, out, _ = run(transport, capsys, "batch", "show", JOB, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["status"] == "Failed"
    assert "mini batch failures" in shown["error"]
    transport.add("POST", SCORING + "$", body={"name": JOB, "properties": {"status": "Queued"}})
    code, _, err = run(
        transport, capsys, "batch", "score", "cards-batch", "azureml:photos:1",
        "--job-name", JOB, "--wait",
    )  # fmt: skip
    assert code == 1
    assert "ended Failed: UserError: There is 3 mini batch failures" in err


def test_batch_on_the_local_backend_points_to_detectkit_score(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["batch", "show", JOB, "--local", str(tmp_path / "p")])
    _, err = capsys.readouterr()
    assert code == 2
    assert "detectkit score MODEL DATA" in err
