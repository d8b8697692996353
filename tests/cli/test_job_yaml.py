"""``detectkit train -f job.yml``: Azure's AutoML job YAML read into typed settings.

For each fixture written from Azure's documented schema, the REST payload detectkit builds
equals the one azure-ai-ml's own ``load_job`` builds from the same file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from detectkit.backends.azure.jobs import build_job
from detectkit.cli import main
from detectkit.errors import InvalidSettingsError
from detectkit.settings.job_yaml import read_job_yaml
from detectkit.settings.request import RunMetadata

sys.path.insert(0, str(Path(__file__).parents[1]))
from azure_replay import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeCredential, ReplayTransport

JOBS = Path(__file__).parents[1] / "fixtures" / "jobs"
GOOD = ["fridge-sweep.yml", "automode.yml", "single-yolov5.yml", "serverless.yml"]
AZURE = ["--subscription", SUBSCRIPTION, "--resource-group", RESOURCE_GROUP]


@pytest.fixture
def in_jobs(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(JOBS)
    return JOBS


def _rest(job: Any) -> dict[str, Any]:
    payload: dict[str, Any] = job._to_rest_object().as_dict()
    return payload


@pytest.mark.parametrize("name", GOOD)
def test_payload_equals_load_job(in_jobs: Path, name: str) -> None:
    from azure.ai.ml import load_job

    spec = read_job_yaml(name)
    metadata = RunMetadata.build(
        name=spec.name,
        display_name=spec.display_name,
        description=spec.description,
        tags=spec.tags or None,
        log_verbosity=spec.log_verbosity,
    )
    job = build_job(spec.request, metadata)
    expected = _rest(load_job(name))
    assert _rest(job) == expected
    assert expected["properties"]["taskDetails"]["taskType"] == "ImageObjectDetection"


def test_the_fridge_sweep_reads_every_section(in_jobs: Path) -> None:
    spec = read_job_yaml("fridge-sweep.yml")
    request = spec.request
    assert request.limits.max_trials == 10
    assert request.sweep is not None and request.sweep.early_termination is not None
    assert request.sweep.early_termination.type == "bandit"
    assert [s.model_names() for s in request.search_spaces] == [
        ("yolov5",),
        ("fasterrcnn_resnet50_fpn",),
    ]
    assert spec.local_ignored() == ["compute", "log_verbosity"]
    assert spec.log_verbosity == "debug"


def test_cli_dry_run_prints_the_load_job_payload(
    in_jobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure.ai.ml import load_job

    transport = ReplayTransport()
    options = {"credential": FakeCredential(), "transport": transport, "enable_telemetry": False}
    argv = ["train", "-f", "single-yolov5.yml", "--dry-run", "--json", *AZURE]
    code = main([*argv, "--workspace-name", WORKSPACE], azure_options=options)
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == _rest(load_job("single-yolov5.yml"))
    assert printed["properties"]["taskDetails"]["modelSettings"]["modelName"] == "yolov5"
    assert transport.requests == []  # nothing was sent


def test_cli_serverless_flags_switch_the_compute(
    in_jobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {"credential": FakeCredential(), "transport": ReplayTransport()}
    base = ["train", "-f", "single-yolov5.yml", "--dry-run", "--json", *AZURE]
    argv = [*base, "--instance-type", "Standard_NC6s_v3", "--job-tier", "spot"]
    assert main([*argv, "--workspace-name", WORKSPACE], azure_options=options) == 0
    printed = json.loads(capsys.readouterr().out)["properties"]
    assert printed.get("computeId") is None
    assert printed["resources"]["instance_type"] == "Standard_NC6s_v3"
    assert printed["queueSettings"]["job_tier"] == "spot"
    code = main([*base, "--job-tier", "spot", "--workspace-name", WORKSPACE], azure_options=options)
    assert code == 2
    assert "give instance_type too" in capsys.readouterr().err


def test_serverless_mistakes_name_the_yaml_path(tmp_path: Path) -> None:
    text = (JOBS / "serverless.yml").read_text(encoding="utf-8")
    bad = text.replace("job_tier: standard", "job_tier: gold").replace(
        "  instance_count: 1", "  instance_count: 0\n  locations: [westeurope]"
    )
    (tmp_path / "job.yml").write_text(bad, encoding="utf-8")
    with pytest.raises(InvalidSettingsError) as info:
        read_job_yaml(tmp_path / "job.yml")
    message = str(info.value)
    assert "queue_settings.job_tier" in message and "'gold'" in message
    assert "resources.instance_count" in message
    assert "resources.locations: not supported" in message


def test_mistakes_are_listed_with_yaml_path_and_line(in_jobs: Path) -> None:
    with pytest.raises(InvalidSettingsError) as info:
        read_job_yaml("bad-search-space.yml")
    text = str(info.value)
    assert "bad-search-space.yml line 9: limits.max_concurent_trials: unknown setting" in text
    assert "line 19: search_space[1].learning_rate:" in text
    assert "can draw 0" in text


def test_cli_reports_a_bad_job_with_exit_2(
    in_jobs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "-f", "bad-search-space.yml", "--dry-run", "--local", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("detectkit: error: invalid job bad-search-space.yml (2 problems)")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type: automl\ntask: image_object_detection\n  bad: [", "not valid YAML"),
        ("type: command\ntask: image_object_detection\n", "type: expected 'automl'"),
        ("type: automl\ntask: image_classification\n", "line 2: task: expected"),
        ("type: automl\ntask: image_object_detection\ncompte: x\n", "did you mean 'compute'?"),
        ("- a\n- b\n", "expected a job"),
    ],
)
def test_broken_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "job.yml"
    path.write_text(text)
    with pytest.raises(InvalidSettingsError, match=message):
        read_job_yaml(path)


def test_submitting_a_job_file_keeps_its_name_description_tags_and_log_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (JOBS / "single-yolov5.yml").read_text(encoding="utf-8")
    text += "name: fridge-single-1\ndescription: one yolov5 trial\nlog_verbosity: debug\n"
    (tmp_path / "job.yml").write_text(text, encoding="utf-8")
    transport = ReplayTransport()
    transport.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    transport.add("GET", r"/data/fridge-items/versions/3$", fixture_name="data_version")
    transport.add("GET", r"/computes/gpu-cluster$", status=404, body={"error": {"code": "x"}})
    transport.add("PUT", r"/jobs/fridge-single-1$", fixture_name="job_automl_od")
    options = {"credential": FakeCredential(), "transport": transport, "enable_telemetry": False}
    argv = ["train", "-f", str(tmp_path / "job.yml"), "--json", *AZURE]
    code = main([*argv, "--workspace-name", WORKSPACE], azure_options=options)
    assert code == 0, capsys.readouterr().err
    body = transport.one("PUT", r"/jobs/fridge-single-1$").json()["properties"]
    assert body["description"] == "one yolov5 trial"
    assert body["tags"] == {"team": "vision"}
    assert body["taskDetails"]["logVerbosity"] == "Debug"
    assert json.loads(capsys.readouterr().out)["name"] == "sweep_job_1"
