"""The labeling project on the local backend and its page's API, over a real HTTP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit.backends.local import LocalBackend
from detectkit.errors import ConflictError, NotFoundError
from detectkit.labeling import Labeling, LabelingProject, LabelingServer

BOX = {"label": "cat", "top_x": 0.125, "top_y": 0.25, "bottom_x": 0.5, "bottom_y": 0.75}


@pytest.fixture
def labeling(tmp_path: Path) -> Labeling:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 48), (i * 60, 100, 100)).save(images / f"im{i}.png")
    return Labeling(LocalBackend(tmp_path / "proj"))


@pytest.fixture
def project(labeling: Labeling, tmp_path: Path) -> LabelingProject:
    return labeling.create("pets", tmp_path / "imgs", classes="cat,dog")


def call(
    server: LabelingServer, path: str, method: str = "GET", body: Any = None, token: bool = True
) -> tuple[int, Any]:
    headers = {"X-Detectkit-Token": server.token} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    url = f"http://127.0.0.1:{server.port}{path}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def test_create_get_list_and_export_a_new_asset_version(
    labeling: Labeling, project: LabelingProject
) -> None:
    assert project.classes == ("cat", "dog")
    assert project.progress.images == 3 and project.progress.unlabeled == 3
    first = project.store.entries[0].id
    project.store.save(first, revision=0, state="labeled", objects=_objects([BOX]))
    dataset = project.export()
    assert project.last_export is not None and project.last_export.version == "2"
    assert len(dataset) == 1 and dataset.records[0].objects[0].box.top_x == 0.125
    assert [p.name for p in labeling.list()] == ["pets"]
    assert labeling.get("pets").progress.boxes_per_class == {"cat": 1, "dog": 0}
    with pytest.raises(ConflictError):
        labeling.create("pets", dataset, classes=["cat"])
    labeling.get("pets").delete()
    with pytest.raises(NotFoundError, match="no labeling project 'pets'"):
        labeling.get("pets")


def test_the_api_needs_the_token_and_refuses_unknown_ids(project: LabelingProject) -> None:
    server = project.serve()
    try:
        assert project.url is not None and server.token in project.url
        assert call(server, "/api/images", token=False)[0] == 401
        assert call(server, "/?token=wrong", token=False)[0] == 401
        status, listing = call(server, "/api/images")
        assert status == 200 and listing["states"] == "uuu"
        for bad in ("/api/images/../../etc/passwd", "/api/images/%2e%2e%2fproject.json/file"):
            assert call(server, bad)[0] == 404
        assert call(server, "/api/images/deadbeefdead/file")[0] == 404
        status, image = call(server, f"/api/images/{listing['ids'][0]}/file")
        assert status == 200 and image[:4] == b"\x89PNG"
    finally:
        server.stop()


def test_a_stale_save_gets_409_with_the_other_edit(project: LabelingProject) -> None:
    server = project.serve()
    try:
        image = project.store.entries[1].id
        body = {"revision": 0, "state": "labeled", "boxes": [BOX]}
        status, saved = call(server, f"/api/images/{image}", "PUT", body)
        assert status == 200 and saved["revision"] == 1
        assert saved["progress"]["boxes_per_class"]["cat"] == 1
        status, conflict = call(server, f"/api/images/{image}", "PUT", {**body, "boxes": []})
        assert status == 409 and conflict["error"]["code"] == "conflict"
        assert conflict["current"]["boxes"] == [BOX]
    finally:
        server.stop()


def test_kill_9_during_a_burst_of_saves_leaves_old_or_new(
    project: LabelingProject, tmp_path: Path
) -> None:
    folder = project.store.folder
    script = textwrap.dedent(
        f"""
        from detectkit.labeling.sources import FolderSource
        from detectkit.labeling.store import LabelingStore
        from detectkit.labeling.labels import parse_boxes
        store = LabelingStore.open({str(folder)!r}, FolderSource({project.store.info["folder"]!r}))
        image = store.entries[0].id
        rev = 0
        print("ready", flush=True)
        while True:
            boxes = [dict({BOX!r}, top_x=(rev % 100) / 1000)] * (1 + rev % 50)
            rev = store.save(image, revision=rev, state="labeled", objects=parse_boxes(boxes)).revision
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(0.8)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    image = project.store.entries[0].id
    raw = json.loads((folder / "labels" / f"{image}.json").read_text())  # never torn
    assert raw["revision"] > 1
    assert len(raw["boxes"]) == 1 + (raw["revision"] - 1) % 50
    project.refresh()
    assert project.store.labels(image).revision == raw["revision"]


def test_kill_9_of_the_server_during_a_burst_of_http_saves_leaves_old_or_new(
    project: LabelingProject,
) -> None:
    import http.client

    folder = project.store.folder
    script = textwrap.dedent(
        f"""
        from detectkit.labeling.server import LabelingServer
        from detectkit.labeling.sources import FolderSource
        from detectkit.labeling.store import LabelingStore
        store = LabelingStore.open({str(folder)!r}, FolderSource({project.store.info["folder"]!r}))
        server = LabelingServer(store, token="t0ken")
        print(server.port, store.entries[0].id, flush=True)
        server.run()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port_text, image = proc.stdout.readline().decode().split()
    saved: list[int] = []
    errors: list[BaseException] = []

    def burst() -> None:
        revision = 0
        conn = http.client.HTTPConnection("127.0.0.1", int(port_text), timeout=5)
        try:
            while True:
                boxes = [dict(BOX, top_x=(revision % 100) / 1000)] * (1 + revision % 50)
                body = json.dumps({"revision": revision, "state": "labeled", "boxes": boxes})
                headers = {"X-Detectkit-Token": "t0ken", "Content-Type": "application/json"}
                conn.request("PUT", f"/api/images/{image}", body, headers)
                answer = conn.getresponse()
                assert answer.status == 200, answer.read()
                revision = json.loads(answer.read())["revision"]
                saved.append(revision)
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            errors.append(exc)  # the server was killed mid-request: expected

    client = threading.Thread(target=burst)
    client.start()
    deadline = time.monotonic() + 10
    while len(saved) < 20 and time.monotonic() < deadline and client.is_alive():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    client.join(10)
    assert len(saved) >= 20, errors
    assert errors, "the client should have seen the server go away"
    raw = json.loads((folder / "labels" / f"{image}.json").read_text())  # never torn
    # the file holds the last answered save, or the one in flight when the server died
    assert raw["revision"] in (saved[-1], saved[-1] + 1)
    assert len(raw["boxes"]) == 1 + (raw["revision"] - 1) % 50
    project.refresh()
    assert project.store.labels(image).revision == raw["revision"]


def _objects(boxes: list[dict[str, Any]]) -> Any:
    from detectkit.labeling.labels import parse_boxes

    return parse_boxes(boxes)
