"""``detectkit label`` on an Azure workspace, through recorded HTTP replay (no network).

azure-ai-ml and azure-storage-blob run their real code against ``ReplayTransport`` (the routes
and blobs of ``test_azure_labeling``), injected as the CLI injects it: through
``detectkit.cli._common.AZURE_OPTIONS``. The page is a real server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit.cli import _common, main
from detectkit.labeling.assist import MLAssist
from detectkit.labeling.command import add_parser, run

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from test_azure_labeling import (
    ANNOTATIONS,
    BLOB,
    IMAGES,
    NAMES,
    PREFIX,
    STORE,
    _serve_blobs,
    _version,
)

from azure_replay import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    FakeCredential,
    ReplayTransport,
    fixture,
)

ASSET = "azureml:cards:1"


@pytest.fixture
def transport() -> ReplayTransport:
    """The workspace of ``test_azure_labeling``: ``cards:1`` (3 images, 1 labeled) and no
    labeling project yet."""
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
    for v in ("1", "2"):
        uri = STORE + f"detectkit/labeling/cards/{v}/"
        t.add(
            "PUT",
            rf"/data/cards-labeling/versions/{v}$",
            body=_version("cards-labeling", v, "uri_folder", uri),
        )
    return t


@pytest.fixture
def config(transport: ReplayTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace config.json; the transport injected as ``detectkit.cli.main`` does it."""
    import azure.ai.ml.operations._data_operations as data_ops

    monkeypatch.setattr(  # azure-ai-ml reads an MLTable back through its own client: offline
        data_ops,
        "read_remote_mltable_metadata_contents",
        lambda **kw: (_ for _ in ()).throw(OSError("offline")),
    )
    monkeypatch.setenv("DETECTKIT_LABELING_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DETECTKIT_PROJECT", raising=False)
    for key, value in (
        ("credential", FakeCredential()),
        ("transport", transport),
        ("enable_telemetry", False),
    ):
        monkeypatch.setitem(_common.AZURE_OPTIONS, key, value)
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "subscription_id": SUBSCRIPTION,
                "resource_group": RESOURCE_GROUP,
                "workspace_name": WORKSPACE,
            }
        )
    )
    return path


def _label(*argv: str) -> tuple[int, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="detectkit")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["label", *argv])
    return run(args, block=False), args


def _get(server: Any, path: str) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", headers={"X-Detectkit-Token": server.token}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        data: bytes = answer.read()
    return data


def _put_labels(server: Any, image: str, label: str) -> None:
    body = {
        "revision": 0,
        "state": "labeled",
        "boxes": [{"label": label, "top_x": 0.2, "top_y": 0.25, "bottom_x": 0.6, "bottom_y": 0.5}],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/images/{image}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"X-Detectkit-Token": server.token},
    )
    urllib.request.urlopen(request, timeout=10).close()


def _state_puts(t: ReplayTransport, version: str) -> dict[str, bytes]:
    prefix = f"detectkit/labeling/cards/{version}/"
    return {
        r.path.split(prefix, 1)[1]: r.body for r in t.sent("PUT", BLOB + "/") if prefix in r.path
    }


def _one_version_listed(t: ReplayTransport) -> None:
    """The workspace holds state version 1 now (the next sync stores version 2)."""
    t.add(
        "GET",
        r"/data/cards-labeling/versions$",
        body={"value": [_version("cards-labeling", "1", "uri_folder", STORE)]},
    )


def test_label_an_asset_on_azure_serves_syncs_on_stop_and_reopens(
    config: Path, transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    code, args = _label(ASSET, "--workspace", str(config), "--classes", "clubs,hearts")
    out, err = capsys.readouterr()
    assert code == 0, err
    server = args.server
    try:
        assert "labeling 'cards' on workspace ws-detectkit" in out
        assert server.url in out and "stored in the workspace when the page stops" in out
        # create read the asset and stored the state as cards-labeling:1
        transport.one("GET", r"/data/cards/versions/1$")
        put = transport.one("PUT", r"/data/cards-labeling/versions/1$").json()["properties"]
        assert put["dataUri"].endswith("/paths/detectkit/labeling/cards/1/")
        project = json.loads(_state_puts(transport, "1")["project.json"])
        assert project["classes"] == ["clubs", "hearts"]
        # the page answers with its token: the image list, then an image fetched on demand
        with urllib.request.urlopen(server.url, timeout=10) as answer:
            assert b"<html" in answer.read().lower()
        listed = json.loads(_get(server, "/api/images"))
        assert listed["names"] == NAMES and listed["states"] == "luu"
        second = listed["ids"][1]
        assert _get(server, f"/api/images/{second}/file") == IMAGES[PREFIX + "images/" + NAMES[1]]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/images", timeout=10)
        assert refused.value.code in (401, 403)
        _one_version_listed(transport)
        _put_labels(server, second, "clubs")
        assert not transport.sent("PUT", r"/data/cards-labeling/versions/2$")  # not yet
    finally:
        server.stop()
    # stopping stored the state with the new box as version 2, and said so
    out, err = capsys.readouterr()
    assert "labeling state version 2" in out, err
    assert server.last_sync_error is None
    transport.one("PUT", r"/data/cards-labeling/versions/2$")
    state = _state_puts(transport, "2")
    assert sorted(state) == ["index.jsonl", "labels.jsonl", "project.json"]
    saved = {json.loads(x)["id"]: json.loads(x) for x in state["labels.jsonl"].splitlines()}
    assert [b["label"] for b in saved[second]["boxes"]] == ["clubs"]
    assert saved[second]["revision"] == 1

    # again: the project is reopened from the workspace (no new asset read, no new create)
    container = copy.deepcopy(fixture("data_containers_list")["value"][0])
    container["name"] = "cards-labeling"
    container["properties"]["latestVersion"] = "2"
    transport.add("GET", r"/data/cards-labeling$", body=container)
    transport.add("GET", r"/data$", body={"value": [container]})
    transport.add(
        "GET",
        r"/data/cards-labeling/versions/2$",
        body=_version("cards-labeling", "2", "uri_folder", STORE + "detectkit/labeling/cards/2/"),
    )
    _serve_blobs(transport, {f"detectkit/labeling/cards/2/{n}": d for n, d in state.items()})
    code, args = _label(ASSET, "--workspace", str(config))
    assert code == 0, capsys.readouterr().err
    try:
        store = args.server.store
        assert store.labels(second).objects[0].label == "clubs"
        assert store.progress().labeled == 2
    finally:
        args.server.stop()  # nothing new saved: nothing stored
    assert "labeling state version" not in capsys.readouterr().out
    transport.one("GET", r"/data/cards/versions/1$")
    assert not transport.sent("PUT", r"/data/cards-labeling/versions/3$")


def test_a_failed_sync_on_stop_is_printed_and_kept_for_the_page(
    config: Path, transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--subscription", SUBSCRIPTION, "--resource-group", RESOURCE_GROUP]
    code, args = _label(ASSET, *argv, "--workspace-name", WORKSPACE, "--classes", "clubs")
    server = args.server
    try:
        assert code == 0, capsys.readouterr().err
        _one_version_listed(transport)
        transport.add(
            "PUT",
            r"/data/cards-labeling/versions/2$",
            status=403,
            body={"error": {"code": "AuthorizationFailed", "message": "no write access"}},
        )
        _put_labels(server, server.store.entries[2].id, "clubs")
    finally:
        server.stop()
    out, err = capsys.readouterr()
    assert "labeling state version" not in out
    assert "could not store the labeling state of 'cards' in the workspace" in err
    assert "no write access" in err and "Traceback" not in err
    assert str(server.store.folder) in err  # where the labels still are
    assert server.last_sync_error is not None
    transport.one("PUT", r"/data/cards-labeling/versions/2$")  # tried once


def test_in_place_on_azure_is_a_usage_error(
    config: Path, transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["label", ASSET, "--workspace", str(config), "--classes", "a", "--in-place"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "--in-place" in err and "the labels live in the workspace" in err
    assert "project.labeling.get(name).export()" in err and "Traceback" not in err
    assert transport.requests == []  # refused before anything was sent


def test_ml_assist_on_azure_needs_assist_compute_and_saves_it(
    config: Path, transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["label", ASSET, "--workspace", str(config), "--classes", "hearts", "--ml-assist"]
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert "--assist-compute" in err and "Traceback" not in err
    assert all(r.method == "GET" for r in transport.requests)  # only asked what exists

    code, args = _label(*argv[1:], "--assist-compute", "gpu-cluster", "--min-labeled", "5")
    try:
        assert code == 0, capsys.readouterr().err
        settings = MLAssist.of(args.server.store)
        assert args.server.assistant is not None
    finally:
        args.server.stop()
    assert settings is not None
    assert (settings.compute, settings.min_labeled) == ("gpu-cluster", 5)
    # the settings went to the workspace with the state create stored
    stored = json.loads(_state_puts(transport, "1")["project.json"])
    assert stored["info"]["ml_assist"]["compute"] == "gpu-cluster"
    assert not transport.sent("PUT", r"/jobs/")  # 1 labeled < 5: no training yet

    # reopened with --ml-assist alone: the saved compute (and --min-labeled) are kept
    state = _state_puts(transport, "1")
    container = copy.deepcopy(fixture("data_containers_list")["value"][0])
    container["name"] = "cards-labeling"
    container["properties"]["latestVersion"] = "1"
    transport.add("GET", r"/data/cards-labeling$", body=container)
    transport.add("GET", r"/data$", body={"value": [container]})
    transport.add(
        "GET",
        r"/data/cards-labeling/versions/1$",
        body=_version("cards-labeling", "1", "uri_folder", STORE + "detectkit/labeling/cards/1/"),
    )
    _serve_blobs(transport, {f"detectkit/labeling/cards/1/{n}": d for n, d in state.items()})
    code, args = _label(*argv[1:])
    try:
        assert code == 0, capsys.readouterr().err
        again = MLAssist.of(args.server.store)
    finally:
        args.server.stop()
    assert again is not None and (again.compute, again.min_labeled) == ("gpu-cluster", 5)


def test_a_local_folder_and_a_workspace_together_are_a_usage_error(
    config: Path,
    transport: ReplayTransport,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = str(tmp_path / "p")
    assert main(["label", ASSET, "--local", p, "--workspace", str(config)]) == 2
    _, err = capsys.readouterr()
    assert "--local/--project" in err and "--workspace" in err and "Traceback" not in err
    azure = ["--subscription", SUBSCRIPTION, "--resource-group", RESOURCE_GROUP]
    assert main(["label", ASSET, "--project", p, *azure, "--workspace-name", WORKSPACE]) == 2
    _, err = capsys.readouterr()
    assert "--local/--project" in err and "--subscription/--resource-group" in err
    assert main(["label", ASSET, *azure, "--classes", "a"]) == 2  # one part missing
    assert "--workspace-name" in capsys.readouterr().err
    assert transport.requests == [] and not Path(p).exists()
    # a new project from a data asset needs its classes (the workspace was asked what it holds)
    assert main(["label", ASSET, "--workspace", str(config)]) == 2
    assert "needs --classes a,b,c" in capsys.readouterr().err
    assert not transport.sent("PUT")
    # $DETECTKIT_PROJECT is only a default: with --workspace the project is on Azure
    monkeypatch.setenv("DETECTKIT_PROJECT", p)
    assert main(["label", ASSET, "--workspace", str(config), "--in-place"]) == 2
    assert "the labels live in the workspace" in capsys.readouterr().err


def test_local_defaults_stay_as_they_were(
    config: Path,
    transport: ReplayTransport,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "My Photos"
    folder.mkdir()
    Image.new("RGB", (32, 24)).save(folder / "a.png")
    monkeypatch.setenv("DETECTKIT_PROJECT", str(tmp_path / "env-project"))
    code, args = _label(str(folder), "--classes", "cat")
    try:
        assert code == 0, capsys.readouterr().err
        assert args.server.store.name == "My-Photos"
        assert args.server.syncer is None
    finally:
        args.server.stop()
    assert (tmp_path / "env-project" / "labeling" / "My-Photos" / "project.json").is_file()
    assert transport.requests == []


def test_a_datastore_folder_is_named_after_its_last_part(
    config: Path, transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_blobs(transport, {"shots/photos/a.png": IMAGES[PREFIX + "images/" + NAMES[0]]})
    transport.add("GET", r"/data/photos-labeling/versions$", body={"value": []})
    transport.add(
        "PUT",
        r"/data/photos-labeling/versions/1$",
        body=_version("photos-labeling", "1", "uri_folder", STORE + "detectkit/labeling/p/1/"),
    )
    url = "azureml://datastores/workspaceblobstore/paths/shots/photos/"
    code, args = _label(url, "--workspace", str(config), "--classes", "cat")
    try:
        assert code == 0, capsys.readouterr().err
        store = args.server.store
        assert store.name == "photos"
        assert [e.ref for e in store.entries] == [STORE + "shots/photos/a.png"]
    finally:
        args.server.stop()
    transport.one("PUT", r"/data/photos-labeling/versions/1$")
    assert not transport.sent("GET", r"/data/cards/")
