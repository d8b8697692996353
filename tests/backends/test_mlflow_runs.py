"""What both backends share: one MLflow error map, one version order, one run layout."""

from __future__ import annotations

import pytest

from detectkit.backends import mlflow_runs
from detectkit.errors import ConflictError, DetectkitError, InvalidInputError, NotFoundError


def _exc(code: str, message: str) -> Exception:
    mlflow_exceptions = pytest.importorskip("mlflow.exceptions")
    from mlflow.protos import databricks_pb2

    return mlflow_exceptions.MlflowException(message, error_code=getattr(databricks_pb2, code))


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("RESOURCE_DOES_NOT_EXIST", "Run 'abc' not found", NotFoundError),
        ("RESOURCE_ALREADY_EXISTS", "Registered model 'm' already exists", ConflictError),
        ("INVALID_PARAMETER_VALUE", "bad filter", InvalidInputError),
        # the code decides: an internal error that mentions "not found" is not a missing run
        ("INTERNAL_ERROR", "run 'r' not found", DetectkitError),
    ],
)
def test_both_backends_translate_mlflow_errors_alike(
    code: str, message: str, expected: type[Exception]
) -> None:
    pytest.importorskip("azure.core")
    from detectkit.backends.azure.errors import translate_error

    exc = _exc(code, message)
    local = mlflow_runs.mlflow_error(exc, "run 'r'")
    azure = translate_error(exc, "run 'r'")
    assert type(local) is expected
    assert type(azure) is expected
    assert str(azure) == str(local)


def test_versions_sort_numerically_after_names() -> None:
    versions = ["10", "2", "latest", "1"]
    assert sorted(versions, key=mlflow_runs.version_key) == ["latest", "1", "2", "10"]


def test_run_layout_names_stay_what_is_on_disk() -> None:
    assert mlflow_runs.BEST_CHILD_TAG == "automl_best_child_run_id"
    assert mlflow_runs.MODEL_ARTIFACT == "outputs/mlflow-model"
    assert mlflow_runs.LABELS_ARTIFACT == "train_artifacts/labels.json"
    assert mlflow_runs.LABELS_ARTIFACT.startswith(mlflow_runs.LABELS_FOLDER + "/")


@pytest.mark.parametrize(
    ("text", "value"), [("3", 3), ("0.5", 0.5), ("True", True), ("false", False), ("yolo", "yolo")]
)
def test_param_values_come_back_typed(text: str, value: object) -> None:
    got = mlflow_runs.param_value(text)
    assert got == value
    assert type(got) is type(value)
