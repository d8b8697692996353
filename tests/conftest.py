"""Shared fixtures: generated data sets, no network, no credentials."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detectkit.dataset import LabeledDataset
from detectkit.synthetic import make_dataset

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def _no_stray_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """MLflow's default store is ``./mlflow.db``: point any call that names no store at a
    temporary one, so no test writes into the checkout (detectkit itself always names its
    store)."""
    stray = tmp_path_factory.mktemp("mlflow-default") / "mlflow.db"
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{stray}")


SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DETECTKIT_AZURE_LIVE"):
        return
    skip = pytest.mark.skip(reason="needs a real Azure ML workspace; set DETECTKIT_AZURE_LIVE=1")
    for item in items:
        if "azure_live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cards(tmp_path: Path) -> LabeledDataset:
    """A small generated data set (12 PNG images, 4 classes) under ``tmp_path/cards``."""
    return make_dataset(tmp_path / "cards", n_images=12, seed=1)


@pytest.fixture(scope="session")
def cards_session(tmp_path_factory: pytest.TempPathFactory) -> LabeledDataset:
    """The same kind of data set, shared by a whole session (do not write into its folder)."""
    return make_dataset(tmp_path_factory.mktemp("cards_session"), n_images=16, seed=2)
