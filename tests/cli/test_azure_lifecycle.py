"""Data asset, model and run commands on the Azure backend, through recorded HTTP replay.

The blob storage answers (list and download) go through the same replay transport as the
Azure ML REST calls: detectkit builds its storage clients on the ``MLClient``'s transport.
"""

from __future__ import annotations

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
from mlflow_sweep import sweep_store

AZURE = [
    "--subscription",
    SUBSCRIPTION,
    "--resource-group",
    RESOURCE_GROUP,
    "--workspace-name",
    WORKSPACE,
]
BLOB = (
    r"stdetectkit\.blob\.core\.windows\.net/azureml-blobstore-11111111-1111-1111-1111-111111111111"
)
STORE_URI = (
    f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/"
    f"{WORKSPACE}/datastores/workspaceblobstore/paths/LocalUpload/abc123/mlflow-model"
)


@pytest.fixture
def transport() -> ReplayTransport:
    t = ReplayTransport()
    t.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    return t


@pytest.fixture(scope="module")
def mlflow_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return sweep_store(request, tmp_path_factory.mktemp("mlflow"))


def run(
    transport: ReplayTransport,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    tracking: str | None = None,
) -> tuple[int, str, str]:
    options: dict[str, Any] = {
        "credential": FakeCredential(),
        "transport": transport,
        "enable_telemetry": False,
    }
    if tracking:
        options["mlflow_tracking_uri"] = tracking
    code = main([*argv, *AZURE], azure_options=options)
    out, err = capsys.readouterr()
    return code, out, err


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _datastore(t: ReplayTransport) -> None:
    store = fixture("datastores_default")["value"][0]
    t.add("GET", r"/datastores/workspaceblobstore$", body=store)
    t.add("GET", r"/datastores$", fixture_name="datastores_default")
    t.add("POST", r"/datastores/workspaceblobstore/listSecrets$", fixture_name="datastore_secrets")


def _blob_listing(names: dict[str, bytes]) -> str:
    blobs = "".join(
        f"<Blob><Name>{name}</Name><Properties><Content-Length>{len(data)}</Content-Length>"
        "<BlobType>BlockBlob</BlobType></Properties></Blob>"
        for name, data in names.items()
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
        'ServiceEndpoint="https://stdetectkit.blob.core.windows.net/">'
        f"<Blobs>{blobs}</Blobs><NextMarker /></EnumerationResults>"
    )


def test_dataset_create_uploads_then_show_reads_it_back(
    transport: ReplayTransport,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import azure.ai.ml.operations._data_operations as data_ops

    from detectkit.formats import write_coco
    from detectkit.synthetic import make_dataset

    def offline(**kwargs: Any) -> Any:  # azure-ai-ml reads the MLTable back through its own
        raise OSError("offline")  # storage client; it skips that check when it fails

    monkeypatch.setattr(data_ops, "read_remote_mltable_metadata_contents", offline)
    ds = make_dataset(tmp_path / "cards", n_images=2, seed=3)
    coco = tmp_path / "cards" / "coco.json"
    write_coco(ds, coco)
    answer = fixture("data_version")
    answer["properties"]["tags"] = {"detectkit.images": "2", "detectkit.boxes": str(ds.num_boxes)}
    transport.add("GET", r"/data/cards/versions$", body={"value": []})
    transport.add("GET", r"/data/cards/versions/1$", status=404, body=_error("NotFound", "x"))
    _datastore(transport)
    transport.add("PUT", BLOB + "/", status=201, body=b"")
    transport.add("PUT", r"/data/cards/versions/1$", body=answer)

    code, out, err = run(
        transport, capsys, "dataset", "create", "cards", str(coco), "--description", "d", "--json"
    )
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["name"], shown["version"], shown["uri"]) == ("cards", "1", "azureml:cards:1")
    assert (shown["images"], shown["boxes"]) == (2, ds.num_boxes)
    uploaded = sorted(r.path.rsplit("/", 1)[-1] for r in transport.sent("PUT", BLOB))
    assert uploaded == ["MLTable", "annotations.jsonl", "img_0000.png", "img_0001.png"]
    put = transport.one("PUT", r"/data/cards/versions/1$").json()["properties"]
    assert (put["dataType"], put["description"]) == ("mltable", "d")

    transport.add("GET", r"/data/cards/versions/1$", body=answer)
    code, out, err = run(transport, capsys, "dataset", "show", "cards:1", "--json")
    assert code == 0, err
    assert json.loads(out)["uri"] == "azureml:cards:1"
    transport.add("GET", r"/data/cards/versions/9$", status=404, body=_error("NotFound", "x"))
    code, _, err = run(transport, capsys, "dataset", "show", "cards:9")
    assert code == 2 and "data asset 'cards:9'" in err and "Traceback" not in err


def test_models_register_a_run_then_download_from_the_datastore(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    job = fixture("job_automl_od")
    job["properties"]["status"] = "Completed"
    job["properties"]["tags"]["automl_best_child_run_id"] = "sweep_job_1_HD_2"
    answer = fixture("model_version")
    answer["id"] = answer["id"].replace("/versions/1", "/versions/11")
    answer["name"] = "11"
    transport.add("GET", r"/jobs/sweep_job_1$", body=job)
    transport.add("GET", r"/models/cards-model/versions$", fixture_name="model_versions_list")
    transport.add("PUT", r"/models/cards-model/versions/11$", body=answer)
    code, out, err = run(transport, capsys, "models", "register", "sweep_job_1", "cards-model")
    assert code == 0, err
    assert "cards-model:11" in out
    put = transport.one("PUT", r"/models/cards-model/versions/11$").json()["properties"]
    assert put["modelUri"].startswith("azureml://jobs/sweep_job_1_HD_2/outputs/artifacts/")

    files = {
        "LocalUpload/abc123/mlflow-model/MLmodel": b"flavors:\n  python_function: {}\n",
        "LocalUpload/abc123/mlflow-model/artifacts/settings.json": b'{"box_score_thresh": 0.3}',
    }
    stored = fixture("model_version")
    stored["properties"]["modelUri"] = STORE_URI
    transport.add("GET", r"/models/cards-model/versions/1$", body=stored)
    _datastore(transport)
    transport.add("GET", BLOB + "$", body=_blob_listing(files), headers={"Content-Type": "xml"})
    for name, data in files.items():
        transport.add(
            "GET",
            BLOB + "/" + name + "$",
            status=206,  # storage answers the first ranged GET with its part
            body=data,
            headers={
                "Content-Length": str(len(data)),
                "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
                "x-ms-blob-type": "BlockBlob",
            },
        )
    target = tmp_path / "model"
    code, out, err = run(transport, capsys, "models", "download", "cards-model:1", str(target))
    assert code == 0, err
    assert (target / "MLmodel").read_bytes() == files["LocalUpload/abc123/mlflow-model/MLmodel"]
    assert json.loads((target / "artifacts" / "settings.json").read_text()) == {
        "box_score_thresh": 0.3
    }
    assert sorted(p.name for p in target.iterdir()) == ["MLmodel", "artifacts"]
    listing = transport.sent("GET", BLOB + "$")[0]
    assert listing.query["prefix"] == ["LocalUpload/abc123/mlflow-model/"]
    code, _, err = run(transport, capsys, "models", "download", "cards-model:1", str(target))
    assert code != 0 and "not an empty folder" in err


def test_models_download_of_a_job_output_reads_the_run_artifacts(
    transport: ReplayTransport,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mlflow_store: dict[str, Any],
) -> None:
    model = fixture("model_version")
    model["properties"]["modelUri"] = (
        f"azureml://jobs/{mlflow_store['best']}/outputs/artifacts/outputs/mlflow-model/"
    )
    transport.add("GET", r"/models/cards-model/versions/1$", body=model)
    target = tmp_path / "m"
    code, _, err = run(
        transport,
        capsys,
        "models",
        "download",
        "cards-model:1",
        str(target),
        tracking=mlflow_store["uri"],
    )
    assert code == 0, err
    assert (target / "MLmodel").is_file()
    assert json.loads((target / "artifacts" / "settings.json").read_text()) == {
        "box_score_thresh": 0.3
    }


def test_runs_show_marks_the_best_trial(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str], mlflow_store: dict[str, Any]
) -> None:
    parent = mlflow_store["parent"]
    job = fixture("job_automl_od")
    job["name"] = parent
    job["properties"]["status"] = "Completed"
    job["properties"]["tags"]["automl_best_child_run_id"] = mlflow_store["best"]
    transport.add("GET", rf"/jobs/{parent}$", body=job)
    code, out, err = run(
        transport, capsys, "runs", "show", parent, "--json", tracking=mlflow_store["uri"]
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["status"] == "Completed"
    best = [t for t in shown["trials"] if t["is_best"]]
    assert [t["name"] for t in best] == [mlflow_store["best"]]
    assert shown["metrics"]["mean_average_precision"] == pytest.approx(0.74)
    code, out, err = run(transport, capsys, "runs", "show", parent, tracking=mlflow_store["uri"])
    assert code == 0, err
    (marked,) = [line for line in out.splitlines() if mlflow_store["best"] in line]
    assert "*" in marked or "best" in marked
    assert "fasterrcnn_resnet50_fpn" in marked


def test_train_from_flags_then_runs_list(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    transport.add("GET", r"/data/cards/versions/1$", fixture_name="data_version")
    transport.add("GET", r"/computes/gpu-cluster$", status=404, body=_error("NotFound", "x"))
    transport.add("PUT", r"/jobs/[^/]+$", fixture_name="job_automl_od")
    argv = ["train", "cards:1", "--models", "yolov5", "--compute", "gpu-cluster"]
    code, out, err = run(transport, capsys, *argv, "--max-trials", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "sweep_job_1"
    body = transport.one("PUT", r"/jobs/[^/]+$").json()["properties"]
    assert body["taskDetails"]["modelSettings"]["modelName"] == "yolov5"
    assert body["taskDetails"]["limitSettings"]["maxTrials"] == 1
    assert body["computeId"].endswith("/computes/gpu-cluster")

    transport.add("GET", r"/jobs$", body={"value": [fixture("job_automl_od")]})
    code, out, err = run(transport, capsys, "runs", "list", "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    assert (listed["name"], listed["status"]) == ("sweep_job_1", "Running")
    code, out, _ = run(transport, capsys, "runs", "list")
    assert code == 0 and "sweep_job_1" in out and "Running" in out
