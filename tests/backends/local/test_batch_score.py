"""Batch scoring on this machine (``project.score``): real worker processes, a real MLflow
model folder (a tiny SSDLite with random weights, saved as the local backend saves a trial),
generated images, and the batch output reader."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectkit.backends.base import ScoreResult
from detectkit.backends.local.app import ModelRunner, load_model
from detectkit.backends.local.score import OutputFile, image_files, score_images
from detectkit.errors import ConflictError, InvalidInputError, NotFoundError
from detectkit.project import Project
from detectkit.scoring.response import parse_batch_output, parse_response, read_predictions
from detectkit.synthetic import make_dataset

pytestmark = pytest.mark.local

CLASSES = ["ace", "king", "queen"]


def save_tiny_model(folder: Path) -> Path:
    """A 64-pixel SSDLite with random weights and a low score threshold (so it finds boxes)."""
    import torch

    from detectkit.backends.local.models import build_model
    from detectkit.backends.local.pyfunc import save_model

    torch.manual_seed(0)
    settings = {
        "model_name": "ssdlite_mobilenet_v2",
        "pretrained": False,
        "min_size": 64,
        "max_size": 64,
        "box_score_thresh": 0.001,
        "nms_iou_thresh": 0.5,
        "box_detections_per_img": 5,
    }
    model = build_model(
        "ssdlite_mobilenet_v2", len(CLASSES), pretrained=False, load_weights=False, min_size=64
    )
    return save_model(
        folder / "tiny-model", state_dict=model.state_dict(), classes=CLASSES, settings=settings
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def scored(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[str], Path, ScoreResult, Path]:
    """Seven good images and a corrupt one, scored by two workers in batches of two."""
    root = tmp_path_factory.mktemp("data")
    make_dataset(root, n_images=7, size=(80, 64), seed=5)
    bad = root / "images" / "img_0003_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    out = root / "out" / "predictions.jsonl"
    result = score_images(
        model_dir, image_files(root), out=out, processes=2, batch_size=2, runtime="torch"
    )
    return image_files(root), out, result, bad


def test_lines_are_batch_output_matching_the_endpoint_answers(
    model_dir: Path, scored: tuple[list[str], Path, ScoreResult, Path]
) -> None:
    images, out, result, bad = scored
    good = [p for p in images if p != str(bad.resolve())]
    assert result.scored == len(good) == 7 and result.skipped == 0 and result.processes == 2
    assert result.images_per_second > 0 and 1 <= len(result.worker_rss_mb) <= 2
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(line["filename"] for line in lines) == good
    assert all(set(line) == {"filename", "boxes"} for line in lines)
    batch = {p.image: p for p in parse_batch_output(out, classes=CLASSES)}
    # what an endpoint of the same model answers: the server's own runner, in this process
    runner = ModelRunner(load_model(model_dir), threads=1)
    encoded = [base64.b64encode(Path(p).read_bytes()).decode("ascii") for p in good]
    body = json.dumps(runner(encoded))
    online = parse_response(body, images=good, classes=CLASSES)
    assert sum(len(p.detections) for p in online) > 0
    for expected in online:
        got = batch[expected.image]
        np.testing.assert_allclose(got.detections.xyxy, expected.detections.xyxy, atol=1e-6)
        np.testing.assert_allclose(got.detections.scores, expected.detections.scores, atol=1e-6)
        assert got.detections.class_ids.tolist() == expected.detections.class_ids.tolist()
        assert float(got.detections.xyxy.max(initial=0.0)) <= 1.0  # normalized, as AutoML


def test_a_corrupt_image_is_a_failure_with_its_name_and_no_line(
    scored: tuple[list[str], Path, ScoreResult, Path],
) -> None:
    _, out, result, bad = scored
    assert [f.image for f in result.failed] == [str(bad.resolve())]
    assert "not a readable image" in result.failed[0].reason
    assert bad.name not in out.read_text(encoding="utf-8")


def test_resume_scores_only_what_is_missing_and_drops_a_torn_line(
    model_dir: Path, scored: tuple[list[str], Path, ScoreResult, Path], tmp_path: Path
) -> None:
    images, out, _, bad = scored
    good = [p for p in images if p != str(bad.resolve())]
    kept = out.read_text(encoding="utf-8").splitlines()[:3]
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(kept) + '\n{"filename": "' + good[0][:5], encoding="utf-8")
    result = score_images(model_dir, good, out=partial, resume=True, processes=1, batch_size=3)
    assert result.skipped == 3 and result.scored == len(good) - 3 and not result.failed
    names = [p.image for p in read_predictions(partial)]
    assert sorted(names) == good  # each image exactly once, the torn line gone


def test_an_existing_output_is_refused_without_resume_or_overwrite(
    model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.jsonl"
    out.write_text('{"filename": "a.png", "boxes": []}\n', encoding="utf-8")
    with pytest.raises(ConflictError) as caught:
        score_images(model_dir, ["a.png"], out=out)
    assert "--resume" in str(caught.value) and "--overwrite" in str(caught.value)
    assert out.read_text(encoding="utf-8").count("\n") == 1  # untouched
    with pytest.raises(InvalidInputError, match="choose one"):
        score_images(model_dir, ["a.png"], out=out, resume=True, overwrite=True)


def test_resume_refuses_a_file_that_is_not_batch_output(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    out.write_text('{"filename": "a.png", "boxes": []}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="p.jsonl line 2"):
        OutputFile(out).prepare(resume=True, overwrite=False)


def test_all_done_already_starts_no_worker(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    out.write_text('{"filename": "a.png", "boxes": []}\n', encoding="utf-8")
    result = score_images(model_dir, ["a.png", "a.png"], out=out, resume=True)
    assert (result.scored, result.skipped, result.processes) == (0, 1, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"runtime": "tensorrt"}, InvalidInputError, "runtime: expected one of"),
        ({"batch_size": 0}, InvalidInputError, "batch_size: expected an integer"),
        ({"processes": 0}, InvalidInputError, "processes: expected 1 to 64"),
    ],
)
def test_bad_arguments_are_refused(
    model_dir: Path, tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        score_images(model_dir, ["a.png"], out=tmp_path / "p.jsonl", **kwargs)


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no MLmodel file"):
        score_images(tmp_path, ["a.png"], out=tmp_path / "p.jsonl")


def test_project_score_on_a_registered_model_and_a_data_asset(
    model_dir: Path, tmp_path: Path
) -> None:
    project = Project.local(tmp_path / "project")
    model = project.models.register(model_dir, "tiny")
    asset = project.datasets.create("cards", make_dataset(tmp_path / "d", n_images=3, seed=8))
    result = project.score(f"{model.name}:{model.version}", asset, out=tmp_path / "p.jsonl")
    assert result.scored == 3 and not result.failed
    names = {Path(p.image or "").name for p in read_predictions(tmp_path / "p.jsonl")}
    assert names == {Path(r.image).name for r in project.backend.load_dataset("cards")}  # type: ignore[attr-defined]


def test_project_score_on_azure_points_to_batch_endpoints(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[2]))
    from azure_replay import (
        RESOURCE_GROUP,
        SUBSCRIPTION,
        WORKSPACE,
        FakeCredential,
        ReplayTransport,
    )

    project = Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=FakeCredential(),
        transport=ReplayTransport(),
        enable_telemetry=False,
    )
    images = make_dataset(tmp_path / "d", n_images=1, seed=1)
    with pytest.raises(InvalidInputError, match=r"batch endpoint \(project.deploy_batch"):
        project.score("cards-detector:1", images, out=tmp_path / "p.jsonl")
    assert not (tmp_path / "p.jsonl").exists()
