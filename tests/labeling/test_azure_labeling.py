"""``project.labeling`` on the Azure backend, through recorded HTTP replay.

The data asset, datastore and blob requests go through ``tests/azure_replay.ReplayTransport``
(azure-ai-ml and azure-storage-blob run their real code); the labeling page is a real server on
127.0.0.1.
"""

from __future__ import annotations

import copy
import io
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1]))
from azure_replay import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    FakeCredential,
    ReplayTransport,
    fixture,
)

BLOB = (
    r"stdetectkit\.blob\.core\.windows\.net/azureml-blobstore-11111111-1111-1111-1111-111111111111"
)
STORE = (
    f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/"
    f"{WORKSPACE}/datastores/workspaceblobstore/paths/"
)
PREFIX = "detectkit/datasets/cards/1/"
NAMES = [f"img_000{k}.png" for k in range(3)]


def _png(k: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (k * 80, 90, 90)).save(out, "PNG")
    return out.getvalue()


IMAGES = {PREFIX + "images/" + n: _png(k) for k, n in enumerate(NAMES)}
ANNOTATIONS = "".join(
    json.dumps(
        {
            "image_url": STORE + PREFIX + "images/" + n,
            "image_details": {"format": "png", "width": 64, "height": 48},
            "label": [{"label": "hearts", "topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}]
            if k == 0
            else [],
        }
    )
    + "\n"
    for k, n in enumerate(NAMES)
).encode()


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


@pytest.fixture
def transport() -> ReplayTransport:
    import azure.ai.ml  # noqa: F401

    t = ReplayTransport()
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
    for v in ("1", "2", "3"):
        uri = STORE + f"detectkit/labeling/cards/{v}/"
        t.add(
            "PUT",
            rf"/data/cards-labeling/versions/{v}$",
            body=_version("cards-labeling", v, "uri_folder", uri),
        )
    return t


@pytest.fixture
def project(transport: ReplayTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from detectkit.project import Project

    monkeypatch.setenv("DETECTKIT_LABELING_CACHE", str(tmp_path / "cache"))
    return Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=FakeCredential(),
        transport=transport,
        enable_telemetry=False,
    )


def _state_puts(t: ReplayTransport, version: str) -> dict[str, bytes]:
    prefix = f"detectkit/labeling/cards/{version}/"
    return {
        r.path.split(prefix, 1)[1]: r.body for r in t.sent("PUT", BLOB + "/") if prefix in r.path
    }


def _image_gets(t: ReplayTransport) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in t.sent("GET", BLOB + "/.*/images/")]


def test_create_label_sync_restore_export_on_azure(
    project: Any, transport: ReplayTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azure.ai.ml.operations._data_operations as data_ops

    from detectkit import Box, ObjectAnnotation

    monkeypatch.setattr(
        data_ops,
        "read_remote_mltable_metadata_contents",
        lambda **kw: (_ for _ in ()).throw(OSError("offline")),
    )
    lab = project.labeling.create("cards", "azureml:cards:1", classes=["clubs", "hearts"])

    # the asset, its datastore and one listing were read; the JSONL, but no image
    transport.one("GET", r"/data/cards/versions/1$")
    transport.one("GET", r"/datastores/workspaceblobstore$")
    listing = transport.sent("GET", BLOB + "$")[0]
    assert listing.query["prefix"] == [PREFIX]
    transport.one("GET", BLOB + "/" + PREFIX + "annotations.jsonl$")
    assert _image_gets(transport) == []
    progress = lab.progress
    assert (progress.images, progress.labeled, progress.boxes) == (3, 1, 1)
    # create stored the state as cards-labeling:1, a uri_folder
    put = transport.one("PUT", r"/data/cards-labeling/versions/1$").json()["properties"]
    assert put["dataType"] == "uri_folder"
    assert put["dataUri"].endswith("/paths/detectkit/labeling/cards/1/")
    assert sorted(_state_puts(transport, "1")) == ["index.jsonl", "labels.jsonl", "project.json"]
    assert lab.last_sync == "1"

    # the page fetches the image it shows: that one blob, once
    first, second, _third = lab.store.entries
    server = lab.serve()
    try:
        for _ in range(2):
            request = urllib.request.Request(
                f"http://127.0.0.1:{server.port}/api/images/{second.id}/file",
                headers={"X-Detectkit-Token": server.token},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.read() == IMAGES[PREFIX + "images/img_0001.png"]
    finally:
        server.stop()
    assert _image_gets(transport) == ["img_0001.png"]

    box = Box(top_x=0.25, top_y=0.25, bottom_x=0.75, bottom_y=0.5)
    lab.store.save(
        second.id, revision=0, state="labeled", objects=[ObjectAnnotation(label="clubs", box=box)]
    )
    # an explicit sync stores version 2, the new box in labels.jsonl
    transport.add(
        "GET",
        r"/data/cards-labeling/versions$",
        body={"value": [_version("cards-labeling", "1", "uri_folder", STORE)]},
    )
    assert lab.sync() == "2"
    state = _state_puts(transport, "2")
    saved = {json.loads(x)["id"]: json.loads(x) for x in state["labels.jsonl"].splitlines()}
    assert saved[second.id]["boxes"][0]["label"] == "clubs"
    assert saved[second.id]["revision"] == 1
    assert first.id in saved  # the labels the asset came with

    # a fresh machine (empty cache) restores the state from the workspace
    monkeypatch.setenv("DETECTKIT_LABELING_CACHE", str(tmp_path / "other-machine"))
    container = copy.deepcopy(fixture("data_containers_list")["value"][0])
    container["properties"]["latestVersion"] = "2"
    transport.add("GET", r"/data/cards-labeling$", body=container)
    state_uri = STORE + "detectkit/labeling/cards/2/"
    transport.add(
        "GET",
        r"/data/cards-labeling/versions/2$",
        body=_version("cards-labeling", "2", "uri_folder", state_uri),
    )
    _serve_blobs(transport, {f"detectkit/labeling/cards/2/{n}": d for n, d in state.items()})
    before = len(_image_gets(transport))
    again = project.labeling.get("cards")
    assert again.store.folder.is_relative_to(tmp_path / "other-machine")
    assert again.store.labels(second.id).objects[0].box == box
    assert again.store.labels(second.id).revision == 1
    assert again.progress.labeled == 2
    assert again.last_sync == "2"
    assert transport.sent("GET", BLOB + "$")[-1].query["prefix"] == ["detectkit/labeling/cards/2/"]
    assert len(_image_gets(transport)) == before  # images stay where they are

    # export: a new MLTable version whose image_url values point at the existing blobs
    transport.add(
        "GET",
        r"/data/cards-labeling/versions$",
        body={"value": [_version("cards-labeling", v, "uri_folder", STORE) for v in "12"]},
    )
    transport.add("GET", r"/data/cards/versions$", body={"value": [fixture("data_version")]})
    transport.add(
        "GET",
        r"/data/cards/versions/2$",
        status=404,
        body={"error": {"code": "NotFound", "message": "x"}},
    )
    transport.add(
        "PUT",
        r"/data/cards/versions/2$",
        body=_version("cards", "2", "mltable", STORE + "detectkit/datasets/cards/2/"),
    )
    puts_before = len(transport.sent("PUT", BLOB + "/"))
    exported = again.export()
    assert [r.image for r in exported.records] == [
        STORE + PREFIX + "images/img_0000.png",
        STORE + PREFIX + "images/img_0001.png",
    ]
    new_blobs = transport.sent("PUT", BLOB + "/")[puts_before:]
    names = sorted(
        r.path.split("/azureml-blobstore-11111111-1111-1111-1111-111111111111/")[1]
        for r in new_blobs
    )
    assert names == [
        "detectkit/datasets/cards/2/MLTable",
        "detectkit/datasets/cards/2/annotations.jsonl",
        "detectkit/labeling/cards/3/index.jsonl",
        "detectkit/labeling/cards/3/labels.jsonl",
        "detectkit/labeling/cards/3/project.json",
    ]  # no image uploaded again
    jsonl = next(r.body for r in new_blobs if r.path.endswith("annotations.jsonl"))
    lines = [json.loads(x) for x in jsonl.splitlines()]
    assert [line["image_url"] for line in lines] == [r.image for r in exported.records]
    assert [len(line["label"]) for line in lines] == [1, 1]
    assert lines[1]["label"][0]["label"] == "clubs"
    assert lines[1]["image_details"] == {"format": "png", "width": 64, "height": 48}
    data_put = transport.one("PUT", r"/data/cards/versions/2$").json()["properties"]
    assert data_put["dataType"] == "mltable"
    assert data_put["dataUri"].endswith("/paths/detectkit/datasets/cards/2/")
    assert again.last_export is not None and again.last_export.version == "2"


def test_create_from_a_datastore_folder_then_list(project: Any, transport: ReplayTransport) -> None:
    from detectkit.errors import ConflictError

    photos = {"photos/a.png": _png(0), "photos/sub/b.png": _png(1), "photos/notes.txt": b"x"}
    _serve_blobs(transport, photos)
    transport.add("GET", r"/data/shots-labeling/versions$", body={"value": []})
    uri = STORE + "detectkit/labeling/shots/1/"
    transport.add(
        "PUT",
        r"/data/shots-labeling/versions/1$",
        body=_version("shots-labeling", "1", "uri_folder", uri),
    )
    lab = project.labeling.create(
        "shots", "azureml://datastores/workspaceblobstore/paths/photos/", classes="cat"
    )
    assert transport.sent("GET", BLOB + "$")[0].query["prefix"] == ["photos/"]
    assert [e.ref for e in lab.store.entries] == [
        STORE + "photos/a.png",
        STORE + "photos/sub/b.png",
    ]
    assert _image_gets(transport) == []
    assert not transport.sent("GET", r"/data/[^/]+/versions/")  # no data asset read
    # the size is read from the image itself, fetched on demand
    assert lab.store.image_size(lab.store.entries[1].id) == (64, 48)
    assert [r.path.rsplit("/", 1)[1] for r in transport.sent("GET", BLOB + "/photos/")] == ["b.png"]

    container = copy.deepcopy(fixture("data_containers_list")["value"][0])
    container["name"] = "shots-labeling"
    others = copy.deepcopy(fixture("data_containers_list")["value"][0])
    transport.add("GET", r"/data$", body={"value": [container, others]})
    with pytest.raises(ConflictError, match="'shots' already exists"):
        project.labeling.create("shots", "azureml:cards:1", classes="cat")
    assert project._backend.list_labeling_states() == ["shots"]
