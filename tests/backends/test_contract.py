"""One contract, two backends: the same calls on a local and an Azure project give the same
typed results and the same typed errors.

The local backend runs for real (a project root in a temporary folder, its SQLite MLflow
store); the Azure backend runs azure-ai-ml's own code against recorded HTTP answers
(``tests/azure_replay.py``). Each case sets up the same world on both (a data asset
``cards:1`` of six images) and then asserts through ``Project`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from azure_replay import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    FakeCredential,
    ReplayTransport,
    fixture,
)
from detectkit.errors import ConflictError, NotFoundError
from detectkit.project import Project
from detectkit.records import DatasetAsset
from detectkit.resources import Endpoint, RegisteredModel
from detectkit.synthetic import make_dataset


@dataclass
class World:
    """A project holding data asset ``cards:1``, and what the backend sent to make it so."""

    kind: str
    project: Project
    images: int
    transport: ReplayTransport | None = None

    def sent(self, method: str) -> int:
        """Requests with ``method`` sent to the service (a local project sends none)."""
        return len(self.transport.sent(method)) if self.transport else 0


def _not_found(what: str) -> dict[str, Any]:
    return {"error": {"code": "UserError", "message": f"{what} not found"}}


def _local(tmp_path: Path) -> World:
    project = Project.local(tmp_path / "root")
    project.datasets.create(
        "cards", make_dataset(tmp_path / "cards", n_images=6, seed=3), version="1"
    )
    return World("local", project, images=6)


def _azure() -> World:
    pytest.importorskip("azure.ai.ml")
    t = ReplayTransport()
    t.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    t.add("GET", r"/data/cards/versions/1$", fixture_name="data_version")
    t.add("GET", r"/data/cards/versions/7$", status=404, body=_not_found("cards:7"))
    t.add("GET", r"/data$", fixture_name="data_containers_list")
    t.add("GET", r"/jobs/nope$", status=404, body=_not_found("job nope"))
    t.add("GET", r"/onlineEndpoints/nope$", status=404, body=_not_found("endpoint nope"))
    t.add("GET", r"/models/nope/versions$", body={"value": []})
    t.add("GET", r"/models/nope$", status=404, body=_not_found("model nope"))
    t.add("GET", r"/models$", fixture_name="model_containers_list")
    t.add("GET", r"/onlineEndpoints$", fixture_name="online_endpoints_list")
    project = Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=FakeCredential(),
        transport=t,
        enable_telemetry=False,
        retry_sleep=lambda _: None,
    )
    images = int(fixture("data_version")["properties"]["tags"]["detectkit.images"])
    return World("azure", project, images=images, transport=t)


@pytest.fixture(params=["local", "azure"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    return _local(tmp_path) if request.param == "local" else _azure()


def test_get_a_data_asset(world: World) -> None:
    asset = world.project.datasets.get("cards", "1")
    assert isinstance(asset, DatasetAsset)
    assert (asset.name, asset.version, asset.images) == ("cards", "1", world.images)
    assert "cards" in asset.uri  # azureml:cards:1 on Azure, the asset folder locally


def test_list_data_assets_includes_it(world: World) -> None:
    listed = world.project.datasets.list()
    assert all(isinstance(a, DatasetAsset) for a in listed)
    assert "cards" in {a.name for a in listed}


def test_an_existing_version_is_refused_before_anything_is_written(
    world: World, tmp_path: Path
) -> None:
    again = make_dataset(tmp_path / "again", n_images=2, seed=9)
    with pytest.raises(ConflictError, match="cards:1 already exists"):
        world.project.datasets.create("cards", again, version="1")
    assert world.sent("PUT") == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.datasets.get("cards", "7"), "cards.*7"),
        (lambda p: p.runs.get("nope"), "nope"),
        (lambda p: p.endpoints.get("nope"), "nope"),
        (lambda p: p.models.get("nope"), "nope"),
    ],
    ids=["data-version", "run", "endpoint", "model"],
)
def test_what_does_not_exist_is_not_found(world: World, call: Any, message: str) -> None:
    with pytest.raises(NotFoundError, match=message):
        call(world.project)


def test_handles_have_the_same_types(world: World) -> None:
    assert all(isinstance(m, RegisteredModel) for m in world.project.models.list())
    assert all(isinstance(e, Endpoint) for e in world.project.endpoints.list())
