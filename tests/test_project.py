"""The Project facade's own checks and the resource records (no backend calls needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectkit import InvalidInputError, NotFoundError
from detectkit.project import Project, _check_endpoint_name, _find_config
from detectkit.resources import EndpointKeys, RunStatus


def test_from_config_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFoundError, match="config.json"):
        Project.from_config()
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        Project.from_config()
    (tmp_path / "config.json").write_text(
        json.dumps({"subscription_id": "s", "resource_group": "r"})
    )
    with pytest.raises(InvalidInputError, match="workspace_name"):
        Project.from_config()


def test_find_config_walks_up_to_dot_azureml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".azureml").mkdir()
    cfg = tmp_path / ".azureml" / "config.json"
    cfg.write_text("{}")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert _find_config(None) == cfg.resolve()
    assert _find_config(tmp_path / ".azureml") == tmp_path / ".azureml" / "config.json"


@pytest.mark.parametrize("name", ["ab", "1cards", "cards-", "cards_1", "x" * 33])
def test_endpoint_names_follow_azure_rules(name: str) -> None:
    with pytest.raises(InvalidInputError, match="3-32 characters"):
        _check_endpoint_name(name, "endpoint")


def test_azure_requires_workspace_coordinates() -> None:
    with pytest.raises(InvalidInputError, match="subscription_id"):
        Project.azure("", "rg", "ws")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("Completed", RunStatus.COMPLETED),
        ("FINISHED", RunStatus.COMPLETED),
        ("running", RunStatus.RUNNING),
        ("CancelRequested", RunStatus.CANCEL_REQUESTED),
        ("Scheduled", RunStatus.SCHEDULED),
        ("SomethingNew", RunStatus.UNKNOWN),
        (None, RunStatus.UNKNOWN),
    ],
)
def test_run_status_tolerates_unknown_values(raw: str | None, status: RunStatus) -> None:
    assert RunStatus.parse(raw) is status
    assert RunStatus.COMPLETED.is_terminal and not RunStatus.RUNNING.is_terminal


def test_endpoint_keys_never_show_the_secret() -> None:
    keys = EndpointKeys(primary="super-secret-key", secondary="other-secret")  # type: ignore[arg-type]
    for text in (repr(keys), str(keys), keys.model_dump_json(), f"{keys}"):
        assert "super-secret-key" not in text and "other-secret" not in text
    assert keys.primary.get_secret_value() == "super-secret-key"
