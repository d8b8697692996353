"""Typed training and deployment settings: ranges, rules, distributions, error messages.

No azure-ai-ml here: ``tests/backends/azure/test_azure_jobs.py`` checks the wire form against the real SDK.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from detectkit import InvalidSettingsError
from detectkit.settings.request import (
    AZURE_MODELS,
    BanditPolicy,
    Choice,
    DeploymentSettings,
    Distribution,
    Limits,
    LogNormal,
    LogUniform,
    MedianStoppingPolicy,
    Normal,
    ProbeSettings,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    SearchSpace,
    SweepSettings,
    TrainingParameters,
    TrainingRequest,
    TruncationSelectionPolicy,
    Uniform,
    check_model_name,
    parse_distribution,
    validate_models,
)

YOLO_SPACE = SearchSpace(
    model_name=Choice(["yolov5"]),
    learning_rate=Uniform(0.0001, 0.01),
    model_size=Choice(["small", "medium"]),
)
RCNN_SPACE = SearchSpace(
    model_name=Choice(["fasterrcnn_resnet50_fpn"]),
    learning_rate=Uniform(0.0001, 0.001),
    optimizer=Choice(["sgd", "adam", "adamw"]),
    min_size=Choice([600, 800]),
)


def fridge(**overrides: Any) -> TrainingRequest:
    """The official fridge-items sweep, with ``overrides`` applied to the build arguments."""
    kwargs: dict[str, Any] = {
        "compute": "gpu-cluster",
        "limits": {"timeout_minutes": 60, "max_trials": 10, "max_concurrent_trials": 2},
        "training_parameters": {"early_stopping": True, "evaluation_frequency": 1},
        "sweep": {
            "sampling_algorithm": "random",
            "early_termination": {
                "type": "bandit",
                "evaluation_interval": 2,
                "slack_factor": 0.2,
                "delay_evaluation": 6,
            },
        },
        "search_space": [YOLO_SPACE, RCNN_SPACE],
    }
    kwargs.update(overrides)
    return TrainingRequest.build("data/train", **kwargs)


# --- distributions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distribution", "wire"),
    [
        (Choice(["yolov5"]), "choice('yolov5')"),
        (Choice("yolov5"), "choice('yolov5')"),
        (Choice([600, 800]), "choice(600,800)"),
        (Choice([0.5, 1]), "choice(0.5,1)"),
        (Choice([True, False]), "choice(True,False)"),
        (Uniform(0.0001, 0.01), "uniform(0.0001,0.01)"),
        (Uniform(1e-05, 0.5), "uniform(0.00001,0.5)"),
        (LogUniform(-9.2, -4.6), "loguniform(-9.2,-4.6)"),
        (QUniform(600, 800, 100), "quniform(600,800,100)"),
        (QLogUniform(1.0, 3.0, 2), "qloguniform(1.0,3.0,2)"),
        (Normal(0.01, 0.001), "normal(0.01,0.001)"),
        (LogNormal(-4, 1), "lognormal(-4,1)"),
        (QNormal(10, 2, 1), "qnormal(10,2,1)"),
        (QLogNormal(2, 0.5, 1), "qlognormal(2,0.5,1)"),
        (Randint(5), "randint(5)"),
    ],
)
def test_distribution_wire_string_and_parse_back(distribution: Any, wire: str) -> None:
    assert distribution.to_azure_string() == wire
    assert str(distribution) == wire
    assert parse_distribution(wire) == distribution
    # the dict form (YAML) reads to the same object
    assert TypeAdapter(Distribution).validate_python(distribution.model_dump()) == distribution


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Uniform(0.2, 0.1), "min_value must be < max_value"),
        (lambda: Uniform(0.1, float("inf")), "finite"),
        (lambda: Choice([]), "at least 1"),
        (lambda: Choice(["a b"]), "cannot be sent"),
        (lambda: Choice(["it's"]), "cannot be sent"),
        (lambda: Randint(0), "greater than or equal to 1"),
        (lambda: QUniform(1, 10, 0), "greater than or equal to 1"),
        (lambda: Normal(0, 0), "greater than 0"),
    ],
)
def test_invalid_distributions_are_rejected(build: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build()


def test_parse_distribution_rejects_unknown_text() -> None:
    with pytest.raises(InvalidSettingsError, match="known: choice, uniform"):
        parse_distribution("gaussian(0,1)")
    with pytest.raises(InvalidSettingsError, match="min_value must be < max_value"):
        parse_distribution("uniform(0.2, 0.1)")
    with pytest.raises(
        InvalidSettingsError, match=r"takes 3 arguments \(min_value, max_value, q\)"
    ):
        parse_distribution("quniform(1, 10)")


def test_parse_distribution_reads_spaces_and_quotes() -> None:
    assert parse_distribution("choice('small', 'medium')") == Choice(["small", "medium"])
    assert parse_distribution("uniform(0.0001, 0.01)") == Uniform(0.0001, 0.01)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(finite, finite)
def test_uniform_wire_round_trip(a: float, b: float) -> None:
    if a == b:
        return
    low, high = min(a, b), max(a, b)
    dist = Uniform(low, high)
    assert parse_distribution(dist.to_azure_string()) == dist


@given(
    st.lists(
        st.integers(-(10**6), 10**6) | st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
        min_size=1,
        max_size=6,
    )
)
def test_choice_wire_round_trip(values: list[int | str]) -> None:
    dist = Choice(values)
    assert parse_distribution(dist.to_azure_string()) == dist


def test_samples_stay_in_their_range_and_are_reproducible() -> None:
    rng = np.random.default_rng(0)
    uniform = [Uniform(0.001, 0.01).sample(rng) for _ in range(200)]
    assert all(0.001 <= v <= 0.01 for v in uniform)
    logs = [LogUniform(math.log(1e-4), math.log(1e-2)).sample(rng) for _ in range(200)]
    assert all(1e-4 <= v <= 1e-2 for v in logs)
    assert min(logs) < 1e-3 < max(logs)  # log scale: both decades are visited
    quantized = [QUniform(600, 800, 100).sample(rng) for _ in range(50)]
    assert set(quantized) <= {600, 700, 800}
    assert all(isinstance(v, int) for v in quantized)
    assert {Randint(3).sample(rng) for _ in range(50)} == {0, 1, 2}
    assert {Choice(["a", "b"]).sample(rng) for _ in range(50)} == {"a", "b"}
    assert LogNormal(0, 1).sample(rng) > 0
    first = [Normal(0, 1).sample(np.random.default_rng(7)) for _ in range(2)]
    assert first[0] == first[1]


def test_grid_values_only_for_choice() -> None:
    assert Choice([600, 800]).grid_values() == (600, 800)
    with pytest.raises(InvalidSettingsError, match="use Choice"):
        Uniform(0.1, 0.2).grid_values()


# --- training parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "given_value", "stored"),
    [
        ("optimizer", "Adamw", "adamw"),
        ("optimizer", "SGD", "sgd"),
        ("learning_rate_scheduler", "WarmupCosine", "warmup_cosine"),
        ("learning_rate_scheduler", "warmup_cosine", "warmup_cosine"),
        ("model_size", "ExtraLarge", "extra_large"),
        ("validation_metric_type", "CocoVoc", "coco_voc"),
        ("model_name", " FasterRCNN_ResNet50_FPN ", "fasterrcnn_resnet50_fpn"),
        ("tile_grid_size", "3X2", "3x2"),
        ("tile_grid_size", (3, 2), "3x2"),
        ("advanced_settings", {"apply_mosaic_for_yolo": False}, '{"apply_mosaic_for_yolo": false}'),
        ("learning_rate", 1, 1.0),
    ],
)
def test_parameters_normalise_spellings(field: str, given_value: Any, stored: Any) -> None:
    assert getattr(TrainingParameters.model_validate({field: given_value}), field) == stored


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": 0}, "greater than 0"),
        ({"learning_rate": 1.5}, "less than or equal to 1"),
        ({"number_of_epochs": 0}, "greater than or equal to 1"),
        ({"box_score_threshold": 1.1}, "less than or equal to 1"),
        ({"tile_overlap_ratio": 1.0}, "less than 1"),
        ({"optimizer": "rmsprop"}, "'sgd', 'adam' or 'adamw'"),
        ({"learning_rate_scheduler": "Warmup_Cosine_X"}, "warmup_cosine"),
        ({"tile_grid_size": "3by2"}, "COLSxROWS"),
        ({"advanced_settings": "{bad"}, "not valid JSON"),
        ({"advanced_settings": "[1, 2]"}, "must be a JSON object"),
        ({"model_name": "maskrcnn_resnet50_fpn"}, "instance-segmentation"),
        ({"model_name": "mmd-3x-"}, "names no MMDetection model"),
        ({"model_name": "yolo v5"}, "characters a model name cannot have"),
        ({"min_size": 800, "max_size": 600}, "min_size 800 > max_size 600"),
        ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to optimizer 'sgd' only"),
        (
            {"optimizer": "sgd", "beta1": 0.9, "beta2": 0.99},
            "beta1, beta2 apply to optimizer 'adam'",
        ),
        ({"learning_rate_scheduler": "warmup_cosine", "step_lr_gamma": 0.5}, "'step' only"),
        ({"model_name": "fasterrcnn_resnet50_fpn", "model_size": "small"}, "yolov5 only"),
        ({"model_name": "yolov5", "min_size": 600}, "other than yolov5"),
        ({"learnin_rate": 0.1}, "Extra inputs"),
    ],
)
def test_parameters_reject_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingParameters.model_validate(values)


def test_parameters_are_frozen_and_merge() -> None:
    params = TrainingParameters(learning_rate=0.01, advanced_settings='{"a": 1}')
    with pytest.raises(ValidationError):
        params.learning_rate = 0.02  # type: ignore[misc]
    merged = params.merged({"number_of_epochs": 3})
    assert (merged.learning_rate, merged.number_of_epochs) == (0.01, 3)
    assert params.number_of_epochs is None
    assert params.advanced_settings_dict() == {"a": 1}


# --- model names ---------------------------------------------------------------------------


def test_validate_models_accepts_documented_names_and_mmdetection() -> None:
    validate_models(
        ["yolov5", "retinanet_resnet50_fpn", "mmd-3x-vfnet_r50-mdconv-c3-c5_fpn_ms-2x_coco"],
        AZURE_MODELS,
        "azure",
    )


def test_validate_models_names_the_nearest_supported_model() -> None:
    with pytest.raises(InvalidSettingsError) as info:
        validate_models(["yolov5", "fasterrcnn_resnet50"], AZURE_MODELS, "azure")
    text = str(info.value)
    assert "'fasterrcnn_resnet50' is not a model the azure backend can train" in text
    assert "did you mean 'fasterrcnn_resnet50_fpn'?" in text
    assert "retinanet_resnet50_fpn" in text
    assert "mmd-3x-<name>" in text
    assert "'yolov5'" not in text.split("expected")[0]  # only the unknown name is reported


def test_validate_models_is_backend_specific() -> None:
    local = {"fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"}
    validate_models(["ssdlite320_mobilenet_v3_large"], local, "local")
    with pytest.raises(InvalidSettingsError, match="the local backend can train"):
        validate_models(["yolov5"], local, "local")
    with pytest.raises(InvalidSettingsError, match="azure backend"):
        validate_models(["ssdlite320_mobilenet_v3_large"], AZURE_MODELS, "azure")


def test_check_model_name_lowercases() -> None:
    assert check_model_name("YOLOv5") == "yolov5"


# --- search space --------------------------------------------------------------------------


def test_search_space_accepts_dicts_and_strings_like_yaml() -> None:
    from_dicts = SearchSpace.model_validate(
        {
            "model_name": {"type": "choice", "values": ["yolov5"]},
            "learning_rate": {"type": "uniform", "min_value": 0.0001, "max_value": 0.01},
            "model_size": "choice('small', 'medium')",
        }
    )
    assert from_dicts == YOLO_SPACE
    assert YOLO_SPACE.to_azure_strings() == {
        "learning_rate": "uniform(0.0001,0.01)",
        "model_name": "choice('yolov5')",
        "model_size": "choice('small','medium')",
    }
    assert RCNN_SPACE.model_names() == ("fasterrcnn_resnet50_fpn",)


def test_search_space_normalises_choices_and_keeps_numbers() -> None:
    space = SearchSpace(optimizer=Choice(["SGD", "Adamw"]), learning_rate=Choice([0.01, 1]))
    assert space.optimizer == Choice(["sgd", "adamw"])
    assert space.to_azure_strings()["learning_rate"] == "choice(0.01,1)"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": Uniform(0, 0.01)}, "can draw 0.0, not a valid learning_rate"),
        ({"box_score_threshold": Uniform(0.5, 1.5)}, "can draw 1.5"),
        ({"number_of_epochs": Uniform(1, 10)}, "takes integers; use Choice, Randint"),
        ({"number_of_epochs": Randint(10)}, "can draw 0"),
        ({"optimizer": Uniform(0.1, 0.2)}, "use Choice"),
        ({"optimizer": Choice(["sgd", "rmsprop"])}, "can draw 'rmsprop', not a valid optimizer"),
        ({"model_name": Choice(["maskrcnn_resnet50_fpn"])}, "instance-segmentation"),
        ({"learning_rate": [0.01, 0.02]}, r"use Choice\(\[0.01, 0.02\]\)"),
        ({"learning_rate": {"type": "gaussian"}}, "is not a distribution"),
        ({}, "sets nothing"),
        ({"model_name": "yolov5", "min_size": Choice([600, 800])}, "other than yolov5"),
        ({"advanced_settings": "{}"}, "Extra inputs"),
    ],
)
def test_search_space_rejects_what_a_trial_could_not_run(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SearchSpace.model_validate(values)


def test_search_space_sample_and_grid_build_trials() -> None:
    base = TrainingParameters(number_of_epochs=2)
    trial = RCNN_SPACE.sample(np.random.default_rng(3), base)
    assert trial.model_name == "fasterrcnn_resnet50_fpn"
    assert trial.number_of_epochs == 2
    assert trial.learning_rate is not None
    assert 0.0001 <= trial.learning_rate <= 0.001
    grid = SearchSpace(model_name="yolov5", model_size=Choice(["small", "medium"])).grid(base)
    assert [t.model_size for t in grid] == ["small", "medium"]
    with pytest.raises(InvalidSettingsError):
        RCNN_SPACE.grid()


# --- sweep and limits ----------------------------------------------------------------------


def test_sweep_settings_read_dicts_case_insensitively() -> None:
    sweep = SweepSettings.model_validate(
        {
            "sampling_algorithm": "Random",
            "early_termination": {"type": "Bandit", "slack_amount": 0.1},
        }
    )
    assert sweep.sampling_algorithm == "random"
    assert sweep.early_termination == BanditPolicy(slack_amount=0.1)
    median = SweepSettings.model_validate({"early_termination": {"type": "median_stopping"}})
    assert median.early_termination == MedianStoppingPolicy()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: SweepSettings(
                sampling_algorithm="bayesian", early_termination=MedianStoppingPolicy()
            ),
            "does not support early termination",
        ),
        (lambda: SweepSettings(sampling_algorithm="hyperband"), "'random', 'grid' or 'bayesian'"),  # type: ignore[arg-type]
        (lambda: BanditPolicy(), "exactly one of slack_factor or slack_amount"),
        (lambda: BanditPolicy(slack_factor=0.1, slack_amount=0.1), "exactly one"),
        (
            lambda: BanditPolicy(slack_factor=0.1, evaluation_interval=0),
            "greater than or equal to 1",
        ),
        (lambda: TruncationSelectionPolicy(truncation_percentage=100), "less than or equal to 99"),
        (lambda: TruncationSelectionPolicy(truncation_percentage=0), "greater than or equal to 1"),
        (lambda: Limits(max_trials=0), "greater than or equal to 1"),
        (lambda: Limits(max_trials=1001), "less than or equal to 1000"),
        (lambda: Limits(max_trials=200, max_concurrent_trials=101), "less than or equal to 100"),
        (
            lambda: Limits(max_trials=2, max_concurrent_trials=4),
            "max_concurrent_trials 4 > max_trials 2",
        ),
        (lambda: Limits(timeout_minutes=60 * 24 * 61), "less than or equal to 86400"),
        (lambda: Limits(timeout_minutes=60, trial_timeout_minutes=90), "cannot outlive its job"),
    ],
)
def test_sweep_and_limit_rules(build: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build()


# --- the request ---------------------------------------------------------------------------


def test_fridge_request_builds_from_dicts_and_objects_alike() -> None:
    request = fridge()
    assert request.mode == "sweep"
    assert request.model_names() == ("yolov5", "fasterrcnn_resnet50_fpn")
    assert request.limits == Limits(timeout_minutes=60, max_trials=10, max_concurrent_trials=2)
    typed = fridge(
        sweep=SweepSettings(
            early_termination=BanditPolicy(
                evaluation_interval=2, slack_factor=0.2, delay_evaluation=6
            )
        ),
        limits=Limits(timeout_minutes=60, max_trials=10, max_concurrent_trials=2),
        training_parameters=TrainingParameters(early_stopping=True, evaluation_frequency=1),
        search_space=[YOLO_SPACE.model_dump(), RCNN_SPACE.model_dump()],
    )
    assert typed == request


def test_models_shorthand() -> None:
    several = TrainingRequest.build("data", models=["yolov5", "retinanet_resnet50_fpn"])
    assert several.sweep == SweepSettings(sampling_algorithm="grid")
    assert several.limits.max_trials == 2  # one trial per model
    assert several.search_spaces == (
        SearchSpace(model_name=Choice(["yolov5", "retinanet_resnet50_fpn"])),
    )
    with_timeout = TrainingRequest.build(
        "data", models=["yolov5", "retinanet_resnet50_fpn"], limits={"timeout_minutes": 30}
    )
    assert (with_timeout.limits.max_trials, with_timeout.limits.timeout_minutes) == (2, 30)
    one = TrainingRequest.build(
        "data", models="YOLOv5", training_parameters={"learning_rate": 0.01}
    )
    assert one.mode == "single"
    assert one.sweep is None
    assert one.search_spaces == ()
    assert (one.parameters.model_name, one.parameters.learning_rate) == ("yolov5", 0.01)
    assert one.training_parameters.model_name is None
    automode = TrainingRequest.build("data", limits={"max_trials": 10, "max_concurrent_trials": 2})
    assert automode.mode == "automode"
    assert automode.model_names() == ()


@pytest.mark.parametrize(
    ("overrides", "messages"),
    [
        (
            {"sweep": {"sampling_algorithm": "bayesian"}},
            ["bayesian sampling does not support a conditional search space (2 entries)"],
        ),
        (
            {
                "sweep": {
                    "sampling_algorithm": "bayesian",
                    "early_termination": {"type": "bandit", "slack_factor": 0.1},
                }
            },
            ["sweep: bayesian sampling does not support early termination"],
        ),
        (
            {"sweep": {"sampling_algorithm": "grid"}},
            [
                "grid sampling takes Choice only; search_space[0].learning_rate is uniform(0.0001,0.01)"
            ],
        ),
        (
            {
                "sweep": {"sampling_algorithm": "bayesian"},
                "search_space": [{"learning_rate": LogUniform(-9, -5)}],
            },
            ["bayesian sampling takes Choice, Uniform, QUniform only"],
        ),
        ({"sweep": None}, ["a search space needs sweep settings"]),
        ({"search_space": None}, ["sweep settings without a search space"]),
        (
            {"limits": {"max_trials": 0, "max_concurrent_trials": 200}},
            [
                "limits.max_trials: Input should be greater than or equal to 1 (got 0)",
                "limits.max_concurrent_trials: Input should be less than or equal to 100 (got 200)",
            ],
        ),
        (
            {"training_parameters": {"learning_rate": 0, "learnin_rate": 0.1}},
            [
                "training_parameters.learning_rate: Input should be greater than 0 (got 0)",
                "training_parameters.learnin_rate: unknown setting; did you mean 'learning_rate'?",
            ],
        ),
        (
            {"training_parameters": {"learning_rate": 0.01}},
            ["learning_rate set both in training_parameters and in search_space[0]; keep one"],
        ),
        (
            {"validation_data": "data/val", "validation_size": 0.2},
            ["give validation_data or validation_size"],
        ),
        ({"validation_size": 1.0}, ["validation_size: Input should be less than 1"]),
        ({"models": ["yolov5"]}, ["give models or search_space, not both"]),
        (
            {"models": ["yolov5", "YOLOv5"], "search_space": None, "sweep": None},
            ["models lists 'yolov5' twice"],
        ),
        ({"experiment": "my experiment!"}, ["experiment name 'my experiment!' is not valid"]),
        (
            {"search_space": [{"model_name": Choice(["maskrcnn_resnet50_fpn"])}]},
            ["instance-segmentation"],
        ),
    ],
)
def test_build_reports_every_problem_as_invalid_settings(
    overrides: dict[str, Any], messages: list[str]
) -> None:
    with pytest.raises(InvalidSettingsError) as info:
        fridge(**overrides)
    text = str(info.value)
    assert text.startswith("invalid training settings")
    for message in messages:
        assert message in text
    assert isinstance(info.value.__cause__, ValidationError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"models": "fasterrcnn_resnet50_fpn", "training_parameters": {"model_size": "small"}},
            "models ['fasterrcnn_resnet50_fpn']: model_size applies to yolov5 only",
        ),
        (
            {
                "search_space": [{"model_name": "fasterrcnn_resnet50_fpn", "optimizer": "adam"}],
                "sweep": {},
                "training_parameters": {"momentum": 0.9},
            },
            "training_parameters with search_space[0]: momentum applies to optimizer 'sgd' only",
        ),
        (
            {
                "search_space": [{"model_name": "yolov5", "learning_rate": Uniform(0.001, 0.01)}],
                "sweep": {},
                "training_parameters": {"min_size": 600},
            },
            "min_size applies to models other than yolov5",
        ),
    ],
)
def test_fixed_parameters_are_checked_against_each_search_space_entry(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSettingsError) as info:
        TrainingRequest.build("data", **kwargs)
    assert message in str(info.value)


def test_a_trial_keeps_fixed_parameters_meant_for_other_trials() -> None:
    # momentum is for the sgd trials; an adam trial carries it and ignores it
    request = TrainingRequest.build(
        "data",
        search_space={
            "model_name": "fasterrcnn_resnet50_fpn",
            "optimizer": Choice(["adam", "sgd"]),
        },
        sweep={},
        training_parameters={"momentum": 0.9},
    )
    rng = np.random.default_rng(0)
    trials = [request.search_spaces[0].sample(rng, request.parameters) for _ in range(20)]
    assert {t.optimizer for t in trials} == {"adam", "sgd"}
    assert all(t.momentum == 0.9 for t in trials)


def test_reprs_show_what_was_set() -> None:
    assert repr(TrainingParameters(learning_rate=0.1, optimizer="Adam")) == (
        "TrainingParameters(learning_rate=0.1, optimizer='adam')"
    )
    assert repr(Uniform(0.001, 0.01)) == "Uniform(min_value=0.001, max_value=0.01)"
    assert repr(SearchSpace(model_name="yolov5")) == "SearchSpace(model_name='yolov5')"
    text = repr(TrainingRequest.build("data", models="yolov5"))
    assert text.startswith("TrainingRequest(training_data='data', models=('yolov5',), limits=")
    assert "None" not in text.split("limits=")[0]


def test_build_accepts_a_single_search_space_entry() -> None:
    request = fridge(search_space=RCNN_SPACE)
    assert request.search_spaces == (RCNN_SPACE,)


def test_request_is_frozen() -> None:
    request = fridge()
    with pytest.raises(ValidationError):
        request.compute = "other"  # type: ignore[misc]


# --- deployment ----------------------------------------------------------------------------


def test_deployment_defaults_suit_detection_models() -> None:
    settings = DeploymentSettings()
    assert settings.request_timeout_ms == 90_000
    assert settings.instance_type == "Standard_DS3_v2"
    assert settings.instance_count == 1
    assert settings.liveness_probe.initial_delay >= 300  # a no-code MLflow container needs minutes
    assert settings.readiness_probe.timeout >= 10
    built = DeploymentSettings.build({"instance_count": 2}, request_timeout_ms=120_000)
    assert (built.instance_count, built.request_timeout_ms) == (2, 120_000)
    assert DeploymentSettings.build(built, instance_count=3).request_timeout_ms == 120_000


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"request_timeout_ms": 200_000},
            "request_timeout_ms: Input should be less than or equal to 180000",
        ),
        ({"instance_count": 0}, "instance_count: Input should be greater than or equal to 1"),
        (
            {"liveness_probe": {"success_threshold": 2}},
            "liveness_probe.success_threshold must be 1",
        ),
        ({"readiness_probe": {"period": 0}}, "readiness_probe.period"),
        ({"instance_typ": "x"}, "unknown setting; did you mean 'instance_type'?"),
    ],
)
def test_deployment_settings_are_checked(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSettingsError, match="invalid deployment settings") as info:
        DeploymentSettings.build(values)
    assert message in str(info.value)


def test_probe_settings_are_seconds() -> None:
    assert ProbeSettings(initial_delay=30).model_dump() == {
        "initial_delay": 30,
        "period": 10,
        "timeout": 2,
        "failure_threshold": 30,
        "success_threshold": 1,
    }


def test_settings_module_imports_no_azure() -> None:
    code = "import sys, detectkit.settings; print(any(m.startswith('azure') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
