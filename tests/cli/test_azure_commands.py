"""Lifecycle commands on the Azure backend, through recorded HTTP replay (no network)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from detectkit.cli import main

sys.path.insert(0, str(Path(__file__).parents[1]))
from azure_replay import (
    PRIMARY_KEY,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    Answer,
    FakeCredential,
    ReplayTransport,
    fixture,
)

EP = r"/onlineEndpoints/cards-ep"
AZURE = [
    "--subscription",
    SUBSCRIPTION,
    "--resource-group",
    RESOURCE_GROUP,
    "--workspace-name",
    WORKSPACE,
]


@pytest.fixture
def transport() -> ReplayTransport:
    t = ReplayTransport()
    t.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    t.add("GET", EP + "$", fixture_name="online_endpoint")
    t.add("GET", EP + "/deployments$", fixture_name="online_deployments_list")
    t.add("POST", EP + "/listKeys$", fixture_name="endpoint_keys")
    t.add("GET", r"/onlineEndpoints$", fixture_name="online_endpoints_list")
    t.add("GET", r"/models$", fixture_name="model_containers_list")
    t.add("GET", r"/data$", fixture_name="data_containers_list")
    return t


def run(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    options: dict[str, Any] = {
        "credential": FakeCredential(),
        "transport": transport,
        "enable_telemetry": False,
    }
    code = main([*argv, *AZURE], azure_options=options)
    out, err = capsys.readouterr()
    return code, out, err


def test_endpoint_show_hides_the_key_unless_asked(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(transport, capsys, "endpoints", "show", "cards-ep", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["traffic"] == {"blue": 100}
    assert shown["scoring_uri"].endswith("/score")
    assert PRIMARY_KEY not in out
    assert not transport.sent("POST", "/listKeys$")
    code, out, _ = run(transport, capsys, "endpoints", "show", "cards-ep", "--show-keys", "--json")
    assert code == 0
    assert json.loads(out)["keys"]["primary"] == PRIMARY_KEY


def test_lists(transport: ReplayTransport, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(transport, capsys, "endpoints", "list", "--json")
    assert (code, [e["name"] for e in json.loads(out)]) == (0, ["cards-ep"])
    code, out, _ = run(transport, capsys, "models", "list", "--json")
    assert (code, [(m["name"], m["version"]) for m in json.loads(out)]) == (
        0,
        [("cards-model", "10")],
    )
    code, out, _ = run(transport, capsys, "dataset", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "VERSION", "IMAGES", "BOXES", "URI"]
    assert "azureml:cards:3" in out


def test_unknown_run_is_exit_2_with_one_message(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"error": {"code": "UserError", "message": "no such job"}}
    transport.add("GET", r"/jobs/nope$", status=404, body=body)
    code, _, err = run(transport, capsys, "runs", "show", "nope")
    assert code == 2
    assert err.startswith("detectkit: error:") and "job 'nope'" in err
    assert "Traceback" not in err
    code, _, err = run(transport, capsys, "--debug", "runs", "show", "nope")
    assert code == 2 and "Traceback" in err


def test_endpoint_logs_and_delete(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    transport.add("POST", EP + "/deployments/blue/getLogs$", fixture_name="deployment_logs")
    transport.add("DELETE", EP + "$", status=200, body={})
    code, out, _ = run(transport, capsys, "endpoints", "logs", "cards-ep", "--lines", "20")
    assert code == 0 and "Liveness probe failed" in out
    assert transport.one("POST", "/getLogs$").json() == {"tail": 20}
    code, out, _ = run(transport, capsys, "endpoints", "delete", "cards-ep", "--json")
    assert code == 0 and json.loads(out) == {"name": "cards-ep", "deleted": True}
    transport.one("DELETE", EP + "$")


def test_predict_writes_lines_and_drawings(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from detectkit.synthetic import make_dataset

    transport.add("POST", r"inference\.ml\.azure\.com/score", fixture_name="score_response")
    image = make_dataset(tmp_path / "one", n_images=1, size=(200, 100)).records[0].image
    out_file, drawn = tmp_path / "p.jsonl", tmp_path / "drawn"
    code, out, _ = run(
        transport,
        capsys,
        "predict",
        str(image),
        "--endpoint",
        "cards-ep",
        "--out",
        str(out_file),
        "--draw",
        str(drawn),
        "--min-score",
        "0.5",
    )
    assert code == 0, out
    (line,) = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert line["filename"] == str(image)
    assert [b["label"] for b in line["boxes"]] == ["hearts", "spades"]  # 0.276 dropped
    assert len(list(drawn.iterdir())) == 1
    assert "2 boxes" in out


def test_two_backends_at_once_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["dataset", "list", "--local", str(tmp_path), *AZURE])
    assert code == 2
    assert "give one of them" in capsys.readouterr().err
    code = main(["dataset", "list", "--subscription", SUBSCRIPTION])
    assert code == 2
    assert "also needs --resource-group, --workspace-name" in capsys.readouterr().err


def test_runs_cancel_and_wait_on_a_failed_run(
    transport: ReplayTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_replay import fixture

    transport.add("GET", r"/jobs/sweep_job_1$", fixture_name="job_automl_od")
    transport.add("POST", r"/jobs/sweep_job_1/cancel$", status=200, body={})
    code, out, _ = run(transport, capsys, "runs", "cancel", "sweep_job_1", "--json")
    assert code == 0 and json.loads(out)["name"] == "sweep_job_1"
    transport.one("POST", r"/jobs/sweep_job_1/cancel$")

    failed = fixture("job_automl_od")
    failed["properties"]["status"] = "Failed"
    transport.add("GET", r"/jobs/sweep_job_1$", body=failed)
    transport.add("GET", r"/discovery$", fixture_name="discovery")
    transport.add("GET", r"/runs/sweep_job_1/details$", fixture_name="run_details_failed")
    code, _, err = run(transport, capsys, "runs", "wait", "sweep_job_1", "--poll", "0")
    assert code == 1  # the run failed: not a usage error
    assert "MLTable input is invalid" in err


@pytest.mark.parametrize("group", ["train", "runs show", "deploy", "predict", "dataset create"])
def test_help_has_examples(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*group.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:\n  detectkit " + group.split()[0] in out
    assert "--local DIR" in out and "--workspace" in out


def test_deploy_creates_the_endpoint_and_routes_all_traffic(
    capsys: pytest.CaptureFixture[str],
) -> None:
    transport = ReplayTransport()
    transport.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    deployment = fixture("online_deployment")
    transport.add("GET", r"/models/cards-model/versions/1$", fixture_name="model_version")
    transport.add(
        "GET",
        EP + "$",
        Answer(404, {"error": {"code": "NotFound", "message": "endpoint not found"}}),
        Answer(200, fixture("online_endpoint")),
    )
    transport.add("PUT", EP + "$", fixture_name="online_endpoint")
    transport.add("PUT", EP + "/deployments/blue$", body=deployment)
    transport.add("GET", EP + "/deployments/blue$", body=deployment)
    transport.add("GET", EP + "/deployments$", fixture_name="online_deployments_list")
    transport.add("POST", EP + "/listKeys$", fixture_name="endpoint_keys")
    argv = ["deploy", "cards-model:1", "cards-ep", "--deployment", "blue"]
    code, out, err = run(transport, capsys, *argv, "--instance-type", "Standard_DS3_v2", "--json")
    assert code == 0, err
    puts = [r for r in transport.requests if r.method == "PUT"]
    assert [p.path.rsplit("/", 1)[-1] for p in puts] == ["cards-ep", "blue", "cards-ep"]
    assert puts[1].json()["properties"]["instanceType"] == "Standard_DS3_v2"
    assert puts[-1].json()["properties"]["traffic"] == {"blue": 100}
    shown = json.loads(out)
    assert shown["name"] == "cards-ep"
    assert PRIMARY_KEY not in out
