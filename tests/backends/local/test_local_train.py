"""The local training pieces: trial plans, parameters, early termination, the model zoo, one
tiny trial and the MLflow pyfunc model it saves (real torch, real MLflow, no network)."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from detectkit.errors import InvalidSettingsError, NotFoundError
from detectkit.settings.request import (
    BanditPolicy,
    Choice,
    MedianStoppingPolicy,
    SearchSpace,
    TrainingParameters,
    TrainingRequest,
    TruncationSelectionPolicy,
    Uniform,
)

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from detectkit.backends.local import models, sweep, train  # noqa: E402
from detectkit.synthetic import make_dataset  # noqa: E402

pytestmark = pytest.mark.local

SCRATCH = {"pretrained": False}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# ------------------------------------------------------------------ trial plans
def _plan(request: TrainingRequest, seed: int = 0) -> list[TrainingParameters]:
    return list(sweep.plan_trials(request, np.random.default_rng(seed)))


def test_single_trial_is_the_fixed_parameters() -> None:
    request = TrainingRequest.build(
        "d", models="ssdlite_mobilenet_v2", training_parameters={"learning_rate": 0.01}
    )
    (only,) = _plan(request)
    assert only.model_name == "ssdlite_mobilenet_v2"
    assert only.learning_rate == 0.01


def test_grid_sweep_visits_every_combination_up_to_max_trials() -> None:
    space = SearchSpace(
        model_name=Choice(["ssdlite_mobilenet_v2", "fasterrcnn_mobilenet_v2_fpn"]),
        learning_rate=Choice([0.01, 0.02, 0.03]),
    )
    full = TrainingRequest.build(
        "d", search_space=[space], sweep={"sampling_algorithm": "grid"}, limits={"max_trials": 6}
    )
    trials = _plan(full)
    assert len({(t.model_name, t.learning_rate) for t in trials}) == 6
    cut = TrainingRequest.build(
        "d", search_space=[space], sweep={"sampling_algorithm": "grid"}, limits={"max_trials": 4}
    )
    assert _plan(cut) == trials[:4]


def test_models_shorthand_is_a_grid_with_one_trial_per_model() -> None:
    request = TrainingRequest.build("d", models=["ssdlite_mobilenet_v2", "retinanet_resnet50_fpn"])
    assert [t.model_name for t in _plan(request)] == [
        "ssdlite_mobilenet_v2",
        "retinanet_resnet50_fpn",
    ]


def test_random_sweep_is_seeded_distinct_and_inside_the_space() -> None:
    space = SearchSpace(model_name="ssdlite_mobilenet_v2", learning_rate=Uniform(0.001, 0.05))
    request = TrainingRequest.build(
        "d", search_space=[space], sweep={"sampling_algorithm": "random"}, limits={"max_trials": 5}
    )
    first, again, other = _plan(request, 3), _plan(request, 3), _plan(request, 4)
    rates = [t.learning_rate for t in first]
    assert rates == [t.learning_rate for t in again]
    assert rates != [t.learning_rate for t in other]
    assert len(set(rates)) == 5 and all(r is not None and 0.001 <= r <= 0.05 for r in rates)


def test_random_sweep_over_a_small_choice_stops_when_it_runs_out() -> None:
    space = SearchSpace(model_name=Choice(["ssdlite_mobilenet_v2", "fasterrcnn_mobilenet_v2_fpn"]))
    request = TrainingRequest.build(
        "d", search_space=[space], sweep={"sampling_algorithm": "random"}, limits={"max_trials": 10}
    )
    assert sorted(str(t.model_name) for t in _plan(request)) == [
        "fasterrcnn_mobilenet_v2_fpn",
        "ssdlite_mobilenet_v2",
    ]


def test_automode_draws_local_models() -> None:
    trials = _plan(TrainingRequest.build("d", limits={"max_trials": 3}))
    assert len(trials) == 3
    assert {t.model_name for t in trials} <= set(sweep.AUTOMODE_MODELS)
    assert all(t.learning_rate is not None and 0.002 <= t.learning_rate <= 0.05 for t in trials)


def test_bayesian_sampling_is_refused_locally() -> None:
    request = TrainingRequest.build(
        "d",
        search_space=[
            {"model_name": "ssdlite_mobilenet_v2", "learning_rate": Uniform(0.001, 0.01)}
        ],
        sweep={"sampling_algorithm": "bayesian"},
    )
    with pytest.raises(InvalidSettingsError, match="'random' or 'grid'"):
        _plan(request)


# ------------------------------------------------------------------ parameters
def test_trial_config_uses_the_model_defaults_and_the_given_values() -> None:
    config = train.trial_config(
        TrainingParameters(
            model_name="fasterrcnn_resnet50_fpn", learning_rate=0.001, optimizer="adamw"
        )
    )
    assert (config.min_size, config.max_size, config.batch_size) == (600, 1333, 2)
    assert config.learning_rate == 0.001 and config.optimizer == "adamw"
    assert config.pretrained and not config.epochs_fixed
    ssd = train.trial_config(TrainingParameters(min_size=192, number_of_epochs=3))
    assert ssd.model_name == models.DEFAULT_MODEL
    assert (ssd.min_size, ssd.epochs, ssd.epochs_fixed, ssd.augmentation) == (192, 3, True, "flip")
    assert ssd.inference_settings()["box_score_thresh"] == 0.3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tile_grid_size": "3x2"}, "tiling is not implemented"),
        ({"advanced_settings": {"mosaic": True}}, r"unknown key\(s\) \['mosaic'\]"),
        ({"advanced_settings": {"pretrained": "yes"}}, "expected true or false"),
        ({"advanced_settings": {"augmentation": "heavy"}}, "'none', 'flip' or 'ssd'"),
        ({"advanced_settings": {"precision": "fp16"}}, "'auto', 'fp32' or 'bf16', got 'fp16'"),
        ({"advanced_settings": {"ema": "on"}}, "ema: expected true or false"),
        ({"model_name": "yolov5"}, "not a model the local backend can train"),
    ],
)
def test_trial_config_refuses_what_it_cannot_honour(
    params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidSettingsError, match=message):
        train.trial_config(TrainingParameters.model_validate(params, context={"trial": True}))


def test_unsupported_model_error_lists_the_local_models() -> None:
    with pytest.raises(InvalidSettingsError) as info:
        models.model_spec("fasterrcnn_resnet18_fpn")
    text = str(info.value)
    assert "'fasterrcnn_resnet18_fpn' is not a model the local backend can train" in text
    for name in models.LOCAL_MODELS:
        assert name in text


def test_precision_and_weight_average_settings() -> None:
    default = train.trial_config(TrainingParameters())
    assert (default.precision, default.ema) == ("auto", True)
    plain = train.trial_config(
        TrainingParameters(advanced_settings={"precision": "fp32", "ema": False})
    )
    assert (plain.precision, plain.ema) == ("fp32", False)
    assert not train.use_bf16("fp32", "cpu") and train.use_bf16("bf16", "cpu")
    native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert train.use_bf16("auto", "cpu") == native
    assert not train.use_bf16("auto", "cpu", from_scratch=True)  # overflows early on
    assert train.use_bf16("bf16", "cpu", from_scratch=True)  # asked for: given


def test_weight_average_follows_the_model_over_about_two_epochs() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = train._Ema(model, steps_per_epoch=50)
    assert ema.decay == pytest.approx(0.99)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # first update: decay (1 + 1) / (10 + 1)
    expected = start + (1.0 - 2.0 / 11.0)
    assert torch.allclose(ema.state["0.weight"], expected)
    assert int(ema.state["1.num_batches_tracked"]) == 7  # integers are copied, not averaged
    for _ in range(2000):
        ema.update(model)
    assert torch.allclose(ema.state["0.weight"], model[0].weight, atol=1e-6)


def test_learning_rate_schedules() -> None:
    cosine = train.trial_config(
        TrainingParameters(number_of_epochs=10, warmup_cosine_lr_warmup_epochs=2)
    )
    factors = [train._lr_factor(cosine, step, 10, 10) for step in range(100)]
    assert factors[0] < factors[10] < factors[19]  # warm-up
    assert max(factors) == pytest.approx(1.0, abs=0.01)
    assert factors[-1] < 0.35  # 0.45 cosine cycles: far down by the end
    step = train.trial_config(
        TrainingParameters(learning_rate_scheduler="step", step_lr_step_size=3, step_lr_gamma=0.1)
    )
    assert [train._lr_factor(step, e * 10, 10, 10) for e in (0, 3, 6)] == pytest.approx(
        [1, 0.1, 0.01]
    )


# ------------------------------------------------------------------ early termination
H = list[tuple[int, float]]


@pytest.mark.parametrize(
    ("policy", "current", "previous", "stops"),
    [
        (BanditPolicy(slack_factor=0.1), [(1, 0.5)], [[(1, 0.8)]], True),  # 0.5 < 0.8/1.1
        (BanditPolicy(slack_factor=0.1), [(1, 0.75)], [[(1, 0.8)]], False),
        (BanditPolicy(slack_amount=0.2), [(1, 0.59)], [[(1, 0.8)], [(1, 0.1)]], True),
        (BanditPolicy(slack_factor=0.1, delay_evaluation=3), [(1, 0.1)], [[(1, 0.9)]], False),
        (BanditPolicy(slack_factor=0.1, evaluation_interval=2), [(1, 0.1)], [[(1, 0.9)]], False),
        (BanditPolicy(slack_factor=0.1), [(1, 0.1)], [], False),  # nothing to compare with
        (MedianStoppingPolicy(), [(1, 0.3)], [[(1, 0.5)], [(1, 0.6)], [(1, 0.1)]], True),
        (MedianStoppingPolicy(), [(1, 0.55)], [[(1, 0.5)], [(1, 0.6)], [(1, 0.1)]], False),
        (
            TruncationSelectionPolicy(truncation_percentage=50),
            [(1, 0.2)],
            [[(1, 0.5)], [(1, 0.6)], [(1, 0.7)]],
            True,
        ),
        (
            TruncationSelectionPolicy(truncation_percentage=50),
            [(1, 0.65)],
            [[(1, 0.5)], [(1, 0.6)], [(1, 0.7)]],
            False,
        ),
    ],
)
def test_termination_policies(policy: object, current: H, previous: list[H], stops: bool) -> None:
    reason = sweep.termination_reason(policy, current[-1][0], current, previous)  # type: ignore[arg-type]
    assert (reason is not None) == stops


def test_termination_compares_with_the_value_an_earlier_trial_had_at_that_epoch() -> None:
    earlier = [(1, 0.2), (2, 0.9)]
    policy = BanditPolicy(slack_factor=0.1)
    assert sweep.termination_reason(policy, 1, [(1, 0.19)], [earlier]) is None
    reason = sweep.termination_reason(policy, 2, [(1, 0.19), (2, 0.3)], [earlier])
    assert reason is not None and "epoch 2" in reason and "0.9000" in reason


# ------------------------------------------------------------------ model zoo
@pytest.mark.parametrize("name", sorted(models.LOCAL_MODELS))
def test_every_local_model_builds_and_predicts_from_scratch(name: str) -> None:
    model = models.build_model(name, 3, pretrained=False, min_size=64, max_size=96)
    model.eval()
    with torch.inference_mode():
        (out,) = model([torch.rand(3, 48, 64)])
    assert set(out) == {"boxes", "scores", "labels"}
    assert out["boxes"].shape[1] == 4


def test_pretrained_structure_differs_but_needs_no_download_to_rebuild() -> None:
    scratch = models.build_model("fasterrcnn_mobilenet_v2_fpn", 2, pretrained=False)
    frozen = models.build_model(
        "fasterrcnn_mobilenet_v2_fpn", 2, pretrained=True, load_weights=False
    )
    assert "backbone.body.0.1.num_batches_tracked" in scratch.state_dict()
    assert "backbone.body.0.1.num_batches_tracked" not in frozen.state_dict()  # FrozenBatchNorm2d
    assert not any(p.requires_grad for p in frozen.backbone.body["0"].parameters())


def test_layers_to_freeze_freezes_the_first_stages_and_their_batch_norms() -> None:
    model = models.build_model("ssdlite_mobilenet_v2", 2, pretrained=False, layers_to_freeze=3)
    stem, late = model.backbone.features[0][0], model.backbone.features[1][-1]
    assert not any(p.requires_grad for p in stem.parameters())
    assert all(p.requires_grad for p in late.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    train._train_mode(model)
    assert not stem[1].training and late[1].training  # frozen BN keeps its statistics


def test_missing_weights_say_where_to_put_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import MobileNet_V2_Weights

    def offline(self: object, *args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(type(MobileNet_V2_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(NotFoundError) as info:
        models.build_model("ssdlite_mobilenet_v2", 2, pretrained=True)
    text = str(info.value)
    assert "mobilenet_v2-b0353104.pth" in text
    assert str(tmp_path / "checkpoints") in text
    assert "'pretrained': False" in text
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mobilenet_v2-b0353104.pth").write_bytes(b"")
    assert (
        models.ensure_backbone_weights("ssdlite_mobilenet_v2").name == "mobilenet_v2-b0353104.pth"
    )


# ------------------------------------------------------------------ one trial, saved and loaded
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    root = tmp_path_factory.mktemp("tiny")
    return (
        make_dataset(root / "train", n_images=8, size=(64, 64), seed=3),
        make_dataset(root / "val", n_images=3, size=(64, 64), seed=4),
    )


@pytest.fixture(scope="module")
def trained(tiny: tuple[object, object]) -> train.TrialResult:
    config = train.trial_config(
        TrainingParameters(
            model_name="ssdlite_mobilenet_v2",
            number_of_epochs=2,
            min_size=64,
            advanced_settings=SCRATCH,
        )
    )
    torch.set_num_threads(1)
    return train.fit(config, *tiny, progress=False)  # type: ignore[arg-type]


def test_fit_reports_losses_metrics_and_keeps_the_best_epoch(trained: train.TrialResult) -> None:
    assert trained.stopped == "completed" and trained.epochs_run == 2
    assert [r.epoch for r in trained.history] == [1, 2]
    assert all(r.metrics is not None for r in trained.history)
    assert {"loss", "classification", "bbox_regression"} <= set(trained.history[0].losses)
    assert math.isfinite(trained.history[-1].losses["loss"])
    scores = [r.metrics["mean_average_precision"] for r in trained.history if r.metrics]
    assert trained.metrics["mean_average_precision"] == max(scores)
    assert trained.best_epoch == 1 + scores.index(max(scores))
    assert {"map_50", "map_50_95", "precision", "recall"} <= set(trained.metrics)
    assert (
        trained.state_dict is not None
        and "head.classification_head.module_list.0.1.weight" in trained.state_dict
    )


def test_fit_without_weight_average_or_augmentation_in_float32(tiny: tuple[object, object]) -> None:
    config = train.trial_config(
        TrainingParameters(
            model_name="ssdlite_mobilenet_v2",
            number_of_epochs=1,
            min_size=64,
            advanced_settings={
                "pretrained": False,
                "precision": "fp32",
                "ema": False,
                "augmentation": "none",
            },
        )
    )
    result = train.fit(config, *tiny, progress=False)  # type: ignore[arg-type]
    assert result.stopped == "completed" and result.state_dict is not None
    assert math.isfinite(result.history[-1].losses["loss"])


def test_fit_stops_at_the_deadline_and_keeps_what_it_has(tiny: tuple[object, object]) -> None:
    import time

    config = train.trial_config(
        TrainingParameters(
            model_name="ssdlite_mobilenet_v2", min_size=64, advanced_settings=SCRATCH
        )
    )
    result = train.fit(config, *tiny, deadline=time.monotonic(), progress=False)  # type: ignore[arg-type]
    assert result.stopped == "timeout" and result.epochs_run == 1
    assert result.state_dict is not None and "mean_average_precision" in result.metrics


def test_saved_model_loads_with_mlflow_and_answers_the_scoring_contract(
    trained: train.TrialResult, tiny: tuple[object, object], tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import pandas as pd
    from PIL import Image

    from detectkit.backends.local.pyfunc import save_model
    from detectkit.scoring.response import format_response, parse_response

    dataset = tiny[0]
    classes = dataset.classes  # type: ignore[attr-defined]
    settings = {
        "model_name": "ssdlite_mobilenet_v2",
        "pretrained": False,
        "min_size": 64,
        "max_size": 64,
        "box_score_thresh": 0.0,
        "nms_iou_thresh": 0.5,
        "box_detections_per_img": 7,
    }
    folder = save_model(
        tmp_path / "m", state_dict=trained.state_dict or {}, classes=classes, settings=settings
    )
    assert json.loads((folder / "artifacts" / "labels.json").read_text()) == list(classes)
    assert (
        json.loads((folder / "artifacts" / "settings.json").read_text())["box_detections_per_img"]
        == 7
    )
    assert (folder / "code" / "detectkit" / "backends" / "local" / "pyfunc.py").is_file()
    requirements = (folder / "requirements.txt").read_text()
    assert "torch==" in requirements and "torchvision==" in requirements
    model = mlflow.pyfunc.load_model(str(folder))
    first = dataset.records[0].image  # type: ignore[attr-defined]
    png = Path(first).read_bytes()
    buffer = io.BytesIO()
    Image.open(first).convert("RGB").save(buffer, format="JPEG")
    frame = pd.DataFrame(
        {"image": [base64.b64encode(png).decode(), base64.encodebytes(buffer.getvalue()).decode()]}
    )
    out = model.predict(frame)
    assert list(out.columns) == ["boxes"] and len(out) == 2
    answers = out.to_dict(orient="records")
    for answer in answers:
        assert len(answer["boxes"]) == 7  # score threshold 0: the cap decides
        for box in answer["boxes"]:
            assert set(box) == {"box", "label", "score"} and box["label"] in classes
            assert 0.0 <= box["box"]["topX"] <= box["box"]["bottomX"] <= 1.0
    preds = parse_response(json.dumps(answers), classes=classes)
    assert format_response(preds) == answers
    raw = model.predict(
        pd.DataFrame({"image": [png]})
    )  # what MLflow's server gives a binary column
    assert raw.iloc[0]["boxes"] == answers[0]["boxes"]
    with pytest.raises(ValueError, match="image 0: not a readable image"):
        model.predict(pd.DataFrame({"image": [base64.b64encode(b"not an image").decode()]}))


def test_checkpoint_path_starts_from_saved_weights(
    trained: train.TrialResult, tiny: tuple[object, object], tmp_path: Path
) -> None:
    file = tmp_path / "w.pt"
    torch.save(trained.state_dict, file)
    config = train.trial_config(
        TrainingParameters(
            model_name="ssdlite_mobilenet_v2",
            min_size=64,
            advanced_settings={"pretrained": False, "checkpoint_path": str(file)},
        )
    )
    model = train._new_model(config, 4)
    state = trained.state_dict or {}
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    wrong = train.trial_config(
        TrainingParameters(
            model_name="fasterrcnn_mobilenet_v2_fpn",
            advanced_settings={"pretrained": False, "checkpoint_path": str(file)},
        )
    )
    with pytest.raises(InvalidSettingsError, match="does not fit fasterrcnn_mobilenet_v2_fpn"):
        train._new_model(wrong, 4)
