"""ML assistance on the Azure backend, through recorded HTTP replay (no network).

The trainer is a thread of this process: its data assets, AutoML job, model, endpoint,
deployment, scoring requests and state upload all go through ``ReplayTransport`` (azure-ai-ml
and azure-storage-blob run their real code); the job's MLflow side is a real SQLite store.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import re
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit import Box, ObjectAnnotation
from detectkit.errors import InvalidInputError
from detectkit.labeling.assist import LOCK_FILE, MLAssist, read_status

sys.path.insert(0, str(Path(__file__).parents[1]))
from azure_replay import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    Answer,
    FakeCredential,
    ReplayTransport,
    fixture,
)
from mlflow_sweep import sweep_store

BLOB = (
    r"stdetectkit\.blob\.core\.windows\.net/azureml-blobstore-11111111-1111-1111-1111-111111111111"
)
STORE = (
    f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/"
    f"{WORKSPACE}/datastores/workspaceblobstore/paths/"
)
PREFIX = "detectkit/datasets/cards/1/"
EP = r"/onlineEndpoints/cards-ep"
NAMES = [f"img_000{k}.png" for k in range(7)]
#: the recorded score response's boxes above 0.5: the people drew the same on images 0-3
HEARTS = {"topX": 0.224, "topY": 0.285, "bottomX": 0.399, "bottomY": 0.620}
SPADES = {"topX": 0.664, "topY": 0.484, "bottomX": 0.959, "bottomY": 0.812}
SETTINGS = {
    "min_labeled": 2,
    "compute": "gpu-cluster",
    "endpoint": "cards-ep",
    "instance_type": "Standard_DS4_v2",
}


def _png(k: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (k * 30, 90, 90)).save(out, "PNG")
    return out.getvalue()


IMAGES = {PREFIX + "images/" + n: _png(k) for k, n in enumerate(NAMES)}
ANNOTATIONS = "".join(
    json.dumps(
        {
            "image_url": STORE + PREFIX + "images/" + n,
            "image_details": {"format": "png", "width": 64, "height": 48},
            "label": [{"label": "hearts", **HEARTS}, {"label": "spades", **SPADES}]
            if k < 4
            else [],
        }
    )
    + "\n"
    for k, n in enumerate(NAMES)
).encode()


class ScoringReplay(ReplayTransport):
    """Answers each scoring request with the recorded answer, once per image it sends; a job's
    state is answered once ``job_ends`` is set (so a test acts while the job runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.job_ends = threading.Event()
        self.job_ends.set()

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = request.url.split("?")[0]
        if request.method.upper() == "POST" and url.endswith("/score"):
            images = len(json.loads(request.content)["input_data"]["data"])
            self.add("POST", r"/score$", body=fixture("score_response") * images)
        if request.method.upper() == "GET" and "/jobs/" in url:
            assert self.job_ends.wait(30), "the test never let the job end"
        return super().send(request, **kwargs)


def _listing(names: dict[str, bytes]) -> str:
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


def _serve_blobs(t: ReplayTransport, files: dict[str, bytes]) -> None:
    t.add("GET", BLOB + "$", body=_listing(files), headers={"Content-Type": "xml"})
    for name, data in files.items():
        t.add(
            "GET",
            BLOB + "/" + name + "$",
            status=206,
            body=data,
            headers={
                "Content-Length": str(len(data)),
                "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
                "x-ms-blob-type": "BlockBlob",
            },
        )


def _version(name: str, version: str, data_type: str, uri: str) -> dict[str, Any]:
    answer = copy.deepcopy(fixture("data_version"))
    answer["id"] = answer["id"].replace(
        "/data/cards/versions/1", f"/data/{name}/versions/{version}"
    )
    answer["name"] = version
    answer["properties"].update(dataType=data_type, dataUri=uri, tags={})
    return answer


def _renamed(answer: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return json.loads(json.dumps(answer).replace(old, new))


@pytest.fixture(scope="module")
def mlflow_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return sweep_store(request, tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def transport(mlflow_store: dict[str, Any]) -> ScoringReplay:
    import azure.ai.ml  # noqa: F401

    t = ScoringReplay()
    t.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    store = fixture("datastores_default")["value"][0]
    t.add("GET", r"/datastores/workspaceblobstore$", body=store)
    t.add("GET", r"/datastores$", fixture_name="datastores_default")
    t.add("POST", r"/datastores/workspaceblobstore/listSecrets$", fixture_name="datastore_secrets")
    t.add("GET", r"/data/cards/versions/1$", fixture_name="data_version")
    t.add("GET", r"/data$", body={"value": []})
    t.add("PUT", BLOB + "/", status=201, body=b"")
    _serve_blobs(
        t, {PREFIX + "MLTable": b"paths: []\n", PREFIX + "annotations.jsonl": ANNOTATIONS, **IMAGES}
    )
    t.add("GET", r"/data/cards-labeling/versions$", body={"value": []})
    for v in ("1", "2"):
        uri = STORE + f"detectkit/labeling/cards/{v}/"
        t.add(
            "PUT",
            rf"/data/cards-labeling/versions/{v}$",
            body=_version("cards-labeling", v, "uri_folder", uri),
        )
    for asset in ("cards-assist-train", "cards-assist-val"):  # the trainer's two data assets
        t.add("GET", rf"/data/{asset}/versions$", body={"value": []})
        t.add(
            "GET",
            rf"/data/{asset}/versions/1$",
            status=404,
            body={"error": {"code": "NotFound", "message": "x"}},
        )
        uri = STORE + f"detectkit/datasets/{asset}/1/"
        t.add("PUT", rf"/data/{asset}/versions/1$", body=_version(asset, "1", "mltable", uri))
    t.add("GET", r"/computes/gpu-cluster$", status=404, body={"error": {"code": "NotFound"}})
    return t


@pytest.fixture
def project(
    transport: ScoringReplay,
    mlflow_store: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    import azure.ai.ml.operations._data_operations as data_ops

    from detectkit.project import Project

    monkeypatch.setattr(  # azure-ai-ml reads an MLTable back through its own client: offline
        data_ops,
        "read_remote_mltable_metadata_contents",
        lambda **kw: (_ for _ in ()).throw(OSError("offline")),
    )
    monkeypatch.setenv("DETECTKIT_LABELING_CACHE", str(tmp_path / "cache"))
    return Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=FakeCredential(),
        transport=transport,
        enable_telemetry=False,
        mlflow_tracking_uri=mlflow_store["uri"],
    )


def _labeling(project: Any, transport: ScoringReplay, *, skip: bool = True) -> Any:
    """The project: images 0-3 labeled (from the asset), 4 untouched, 5 holding an older
    model's draft, 6 skipped by a person (unless ``skip`` is False); the state in the
    workspace is version 1."""
    lab = project.labeling.create(
        "cards", "azureml:cards:1", classes=["clubs", "hearts", "spades"], ml_assist=SETTINGS
    )
    entries = lab.store.entries
    old = ObjectAnnotation(
        label="clubs",
        box=Box(top_x=0.1, top_y=0.1, bottom_x=0.3, bottom_y=0.3),
        score=0.6,
        source="model",
        model_version="older-run",
    )
    lab.store.save(entries[5].id, revision=0, state="prelabeled", objects=[old])
    if skip:
        lab.store.save(entries[6].id, revision=0, state="skipped", objects=[])
    transport.add(
        "GET",
        r"/data/cards-labeling/versions$",
        body={"value": [_version("cards-labeling", "1", "uri_folder", STORE)]},
    )
    return lab


def _page(server: Any, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"X-Detectkit-Token": server.token},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _job(name: str, status: str, **tags: str) -> dict[str, Any]:
    job = fixture("job_automl_od")
    job["name"] = name
    job["id"] = job["id"].replace("/jobs/sweep_job_1", f"/jobs/{name}")
    job["properties"]["status"] = status
    job["properties"]["tags"].update(tags)
    return job


def test_create_with_ml_assist_on_azure_needs_a_compute_cluster(
    project: Any, transport: ScoringReplay
) -> None:
    with pytest.raises(InvalidInputError, match=r"ml_assist\.compute: expected the GPU") as info:
        project.labeling.create("cards", "azureml:cards:1", classes=["hearts"], ml_assist=True)
    assert "ml_assist={'compute': 'gpu-cluster'}" in str(info.value)
    assert transport.requests == []  # refused before anything was read or created


def test_the_azure_trainer_trains_deploys_and_prelabels_untouched_images(
    project: Any, transport: ScoringReplay, mlflow_store: dict[str, Any]
) -> None:
    parent, best = mlflow_store["parent"], mlflow_store["best"]
    lab = _labeling(project, transport, skip=False)
    saved = json.loads((lab.store.folder / "project.json").read_text())["info"]["ml_assist"]
    assert (saved["compute"], saved["endpoint"], saved["model"]) == (
        "gpu-cluster",
        "cards-ep",
        None,
    )
    transport.add("PUT", r"/jobs/[^/]+$", body=_job(parent, "Running"))
    transport.add(
        "GET", rf"/jobs/{parent}$", body=_job(parent, "Completed", automl_best_child_run_id=best)
    )
    transport.add("GET", r"/models/cards-assist/versions$", body={"value": []})
    model = _renamed(fixture("model_version"), "/models/cards-model/", "/models/cards-assist/")
    transport.add("PUT", r"/models/cards-assist/versions/1$", body=model)
    deployment = _renamed(fixture("online_deployment"), "/deployments/blue", "/deployments/assist")
    deployment["name"] = "assist"
    transport.add(
        "GET",
        EP + "$",
        Answer(404, {"error": {"code": "NotFound", "message": "endpoint not found"}}),
        Answer(200, fixture("online_endpoint")),
    )
    transport.add("PUT", EP + "$", fixture_name="online_endpoint")
    transport.add("PUT", EP + "/deployments/assist$", body=deployment)
    transport.add("GET", EP + "/deployments/assist$", body=deployment)
    transport.add("GET", EP + "/deployments$", fixture_name="online_deployments_list")
    transport.add("POST", EP + "/listKeys$", fixture_name="endpoint_keys")
    entries = lab.store.entries
    assistant = lab.assistant
    assert assistant is not None and assistant.status().state == "idle"

    # the page starts the trainer (4 labeled >= min_labeled 2); while the job runs a person
    # skips image 6, which then gets no draft
    transport.job_ends.clear()
    server = lab.serve()
    try:
        assert assistant.running
        _page(
            server,
            "PUT",
            f"/api/images/{entries[6].id}",
            {"revision": 0, "state": "skipped", "boxes": []},
        )
        transport.job_ends.set()
        status = assistant.wait(timeout=120, poll_interval=0.05)
        shown = _page(server, "GET", "/api/assistant")
    finally:
        server.stop()
    before = {e.id: lab.store.labels(e.id) for e in [*entries[:4], entries[6]]}
    log = (lab.store.folder / "assistant.log").read_text()
    assert status.state == "ready", (status, log)
    assert (status.run, status.trial, status.labeled) == (parent, best, 4)
    assert status.map == pytest.approx(0.74)
    assert status.threshold == pytest.approx(0.891)  # the lowest reaching precision 0.9
    assert status.drafted == 2 and status.error is None and status.pid is None
    assert not (lab.store.folder / LOCK_FILE).exists() and not assistant.running
    assert (shown["state"], shown["run"], shown["drafted"]) == ("ready", parent, 2)
    assert lab.store.state(entries[6].id) == "skipped"

    # the AutoML job: the compute named, one trial, the time budget, the project's tag
    body = transport.one("PUT", r"/jobs/[^/]+$").json()["properties"]
    assert body["computeId"].endswith("/computes/gpu-cluster")
    task = body["taskDetails"]
    assert task["limitSettings"]["maxTrials"] == 1
    assert task["limitSettings"]["timeout"] == "PT5M"
    assert task["modelSettings"]["modelName"] == "yolov5"
    assert task["trainingData"]["uri"].endswith("/data/cards-assist-train/versions/1")
    assert task["validationData"]["uri"].endswith("/data/cards-assist-val/versions/1")
    assert body["tags"]["detectkit.labeling"] == "cards"
    assert body["experimentName"] == "detectkit-labeling"
    # the two assets refer to the images where they are: no image uploaded again
    puts = [r.path for r in transport.sent("PUT", BLOB + "/")]
    assert not [p for p in puts if "/cards-assist-" in p and "/images/" in p]
    jsonl = [
        r.body for r in transport.sent("PUT", BLOB + "/") if r.path.endswith("annotations.jsonl")
    ]
    lines = [json.loads(x) for body in jsonl for x in body.splitlines()]
    assert len(lines) == 4
    assert {line["image_url"] for line in lines} == {
        STORE + PREFIX + "images/" + n for n in NAMES[:4]
    }
    # the best trial registered, deployed with the instance type, all traffic moved to it
    put = transport.one("PUT", r"/models/cards-assist/versions/1$").json()["properties"]
    assert put["modelUri"] == f"azureml://jobs/{best}/outputs/artifacts/outputs/mlflow-model/"
    dep = transport.one("PUT", EP + "/deployments/assist$").json()["properties"]
    assert dep["instanceType"] == "Standard_DS4_v2"
    assert dep["model"].endswith("/models/cards-assist/versions/1")
    assert transport.sent("PUT", EP + "$")[-1].json()["properties"]["traffic"] == {"assist": 100}
    # the validation image and the two untouched ones went to the endpoint, in one request
    (score,) = transport.sent("POST", r"/score$")
    assert score.headers["azureml-model-deployment"] == "assist"
    assert len(score.json()["input_data"]["data"]) == 3

    # drafts on the untouched images only, from this run, above the threshold
    lab.refresh()
    for image, labels in before.items():
        assert lab.store.labels(image) == labels
    for entry in entries[4:6]:
        labels = lab.store.labels(entry.id)
        assert labels.state == "prelabeled"
        assert [o.label for o in labels.objects] == ["hearts", "spades"]
        assert {(o.source, o.model_version) for o in labels.objects} == {("model", parent)}
    # the state with the drafts was stored in the workspace as version 2
    state = {
        r.path.rsplit("/", 1)[1]: r.body
        for r in transport.sent("PUT", BLOB + "/")
        if "/detectkit/labeling/cards/2/" in r.path
    }
    assert sorted(state) == ["index.jsonl", "labels.jsonl", "project.json"]
    synced = {json.loads(x)["id"]: json.loads(x) for x in state["labels.jsonl"].splitlines()}
    boxes = synced[entries[4].id]["boxes"]
    assert [b["source"] for b in boxes] == ["model", "model"]
    assert {b["model_version"] for b in boxes} == {parent}
    transport.one("PUT", r"/data/cards-labeling/versions/2$")


def test_a_failed_job_reads_failed_with_its_error_and_frees_the_lock(
    project: Any, transport: ScoringReplay
) -> None:
    lab = _labeling(project, transport)
    transport.add("PUT", r"/jobs/[^/]+$", body=_job("sweep_job_1", "Running"))
    transport.add("GET", r"/jobs/sweep_job_1$", body=_job("sweep_job_1", "Failed"))
    transport.add("GET", r"/discovery$", fixture_name="discovery")
    transport.add("GET", r"/runs/sweep_job_1/details$", fixture_name="run_details_failed")
    drafted = lab.store.entries[5].id
    before = lab.store.labels(drafted)
    assistant = lab.assistant
    assert assistant is not None
    assert assistant.start() == os.getpid()  # a thread of this process holds the lock
    status = assistant.wait(timeout=120, poll_interval=0.05)
    assert status.state == "failed"
    assert status.error is not None and "MLTable input is invalid" in status.error
    assert "RunFailedError" in status.error and status.finished is not None
    assert not (lab.store.folder / LOCK_FILE).exists() and not assistant.running
    assert read_status(lab.store.folder).state == "failed"  # not "gone": the pid is alive
    assert "trainer failed" in (lab.store.folder / "assistant.log").read_text()
    # nothing deployed, nothing scored, no draft changed, no state stored
    assert not transport.sent("PUT", r"/onlineEndpoints/")
    assert not transport.sent("POST", r"/score$")
    lab.refresh()
    assert lab.store.labels(drafted) == before
    assert lab.store.labels(lab.store.entries[4].id).objects == ()
    assert not transport.sent("PUT", r"/data/cards-labeling/versions/2$")
    # a failed trainer can start again once a person labeled more
    assert assistant.running is False and assistant.due() is False


def test_a_project_without_compute_fails_in_the_trainer_with_the_field(
    project: Any, transport: ScoringReplay
) -> None:
    lab = _labeling(project, transport)
    lab.store.set_info("ml_assist", MLAssist(min_labeled=2).model_dump())  # saved elsewhere
    assistant = lab.assistant
    assert assistant is not None
    assistant.start()
    status = assistant.wait(timeout=30, poll_interval=0.05)
    assert status.state == "failed" and "ml_assist.compute" in (status.error or "")
    assert not (lab.store.folder / LOCK_FILE).exists()
    assert not transport.sent("PUT", r"/jobs/")


def test_default_endpoint_names_are_valid_and_per_project() -> None:
    from detectkit.backends.azure.assist import default_endpoint

    rule = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]")
    names = [
        default_endpoint("cards", "ws"),
        default_endpoint("cards", "other-ws"),
        default_endpoint("Fridge.Items_2026-very-long-project-name", "ws"),
        default_endpoint("...", "ws"),
    ]
    assert all(rule.fullmatch(n) for n in names), names
    assert len(set(names)) == 4
    assert names[0] == default_endpoint("cards", "ws")  # the same across trainings


def test_label_command_passes_the_compute(tmp_path: Path) -> None:
    from detectkit.labeling.command import add_parser, run

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 32)).save(folder / "a.png")
    parser = argparse.ArgumentParser(prog="detectkit")
    add_parser(parser.add_subparsers())
    argv = ["label", str(folder), "--classes", "cat", "--project", str(tmp_path / "p")]
    args = parser.parse_args([*argv, "--ml-assist", "--assist-compute", "gpu-cluster"])
    assert run(args, block=False) == 0
    try:
        settings = MLAssist.of(args.server.store)
    finally:
        args.server.stop()
    assert settings is not None and settings.compute == "gpu-cluster"
