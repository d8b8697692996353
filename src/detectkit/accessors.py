"""``project.datasets``, ``project.runs``, ``project.models`` and ``project.endpoints``: the
collections a :class:`~detectkit.Project` offers, each a thin layer over the backend that
returns live handles (``project.batch_endpoints`` is in :mod:`detectkit.batch`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectkit.backends.base import Backend, ModelSource
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.prediction import Prediction
from detectkit.prelabel import unlabeled
from detectkit.records import check_name
from detectkit.resources import (
    DatasetAsset,
    DetectionRun,
    Endpoint,
    RegisteredModel,
    Trial,
)
from detectkit.scoring.response import read_predictions

if TYPE_CHECKING:
    from detectkit.dataset import LabeledDataset

__all__ = ["Datasets", "Endpoints", "Models", "Runs", "prelabel_inputs"]


class Datasets:
    """``project.datasets``: labeled data assets."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def create(
        self,
        name: str,
        dataset: LabeledDataset,
        *,
        version: str | None = None,
        description: str | None = None,
    ) -> DatasetAsset:
        """Upload the images and JSONL + ``MLTable`` annotations as a data asset.

        The data set is validated first: a data set with errors is refused before anything is
        uploaded (fix it, or keep only the valid records with ``errors="collect"`` when reading).
        """
        check_name(name, "name")
        if version is not None:
            check_name(version, "version")
        if len(dataset) == 0:
            raise InvalidInputError(f"dataset: expected at least one image for {name!r}, got none")
        report = dataset.validate(check_images=True)
        if not report.ok:
            raise InvalidInputError(
                f"dataset {name!r} has problems; nothing was uploaded:\n{report.to_text(limit=10)}"
            )
        return self._backend.create_dataset(name, dataset, version=version, description=description)

    def get(self, name: str, version: str | None = None) -> DatasetAsset:
        """A data asset (latest version by default)."""
        return self._backend.get_dataset(name, version)

    def list(self) -> list[DatasetAsset]:
        """Every data asset."""
        return self._backend.list_datasets()


class Runs:
    """``project.runs``: training runs."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get(self, name: str) -> DetectionRun:
        """A handle on the run called ``name``."""
        return DetectionRun(self._backend, self._backend.get_run(name))

    def list(self) -> list[DetectionRun]:
        """Handles on the training runs (not their trials), newest first."""
        return [DetectionRun(self._backend, info) for info in self._backend.list_runs()]


class Models:
    """``project.models``: the model registry."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def register(
        self,
        source: DetectionRun | Trial | str | os.PathLike[str],
        name: str,
        *,
        version: str | None = None,
        description: str | None = None,
    ) -> RegisteredModel:
        """Register a model: a run's best trial, one trial, or a local MLflow model folder."""
        check_name(name, "name")
        if version is not None:
            check_name(version, "version")
        if isinstance(source, DetectionRun):
            src = ModelSource(run_name=source.name)
        elif isinstance(source, Trial):
            src = ModelSource(trial_name=source.name)
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            if not (path / "MLmodel").is_file():
                raise NotFoundError(
                    f"{path}: not an MLflow model folder (no MLmodel file); pass a run, a trial, "
                    "or the folder that DetectionRun.download_model() wrote"
                )
            src = ModelSource(path=path)
        else:
            raise InvalidInputError(
                "source: expected a DetectionRun, a Trial or an MLflow model folder, "
                f"got {type(source).__name__}"
            )
        info = self._backend.register_model(src, name, version=version, description=description)
        return RegisteredModel(self._backend, info)

    def get(self, name: str, version: str | None = None) -> RegisteredModel:
        """A model version (latest by default)."""
        return RegisteredModel(self._backend, self._backend.get_model(name, version))

    def list(self, name: str | None = None) -> list[RegisteredModel]:
        """Model versions."""
        return [RegisteredModel(self._backend, m) for m in self._backend.list_models(name)]


class Endpoints:
    """``project.endpoints``: online endpoints."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get(self, name: str) -> Endpoint:
        """A handle on the endpoint called ``name``."""
        return Endpoint(self._backend, self._backend.get_endpoint(name))

    def list(self) -> list[Endpoint]:
        """Every endpoint."""
        return [Endpoint(self._backend, e) for e in self._backend.list_endpoints()]


def prelabel_inputs(
    backend: Backend,
    models: Models,
    score: Callable[..., Any],
    source: RegisteredModel | str | Endpoint | DetectionRun,
    data: object,
    images: list[str] | str,
    batch_size: int,
    processes: int | None,
) -> tuple[LabeledDataset, list[Prediction], str]:
    """For :meth:`~detectkit.Project.prelabel`: the images as a data set, one prediction per
    image from ``source`` and the ``model_version`` the drafts get.

    ``images`` is what ``project.score`` makes of ``data`` (paths, or ``"name:version"`` of a
    data asset); ``score`` is ``project.score``.
    """
    if hasattr(data, "records") and hasattr(data, "classes"):
        dataset: LabeledDataset = data  # type: ignore[assignment]
    elif isinstance(images, str):
        name, _, version = images.removeprefix("azureml:").partition(":")
        uri = backend.get_dataset(name, version or None).uri
        if not Path(uri).exists():
            raise InvalidInputError(
                f"data: the data asset {images!r} is not on this machine ({uri}); download "
                "it and pass the LabeledDataset"
            )
        dataset = type(unlabeled([])).from_azureml(uri)
    else:
        dataset = unlabeled(images)
    paths = [r.image for r in dataset.records]
    if isinstance(source, Endpoint):
        return dataset, source.predict(paths, batch_size=batch_size), source.name
    if isinstance(source, str) and source:
        name, _, version = source.partition(":")
        source = models.get(name, version or None)
    with tempfile.TemporaryDirectory(prefix="detectkit-prelabel-") as tmp:
        model: RegisteredModel | Path
        if isinstance(source, DetectionRun):
            model, tag = source.download_model(tmp), source.name
        elif isinstance(source, RegisteredModel):
            model, tag = source, f"{source.name}:{source.version}"
        else:
            raise InvalidInputError(
                "source: expected a registered model, 'name[:version]', an endpoint or a run, "
                f"got {source!r}"
            )
        out = Path(tmp) / "predictions.jsonl"
        score(model, paths, out=out, batch_size=batch_size, processes=processes, progress=False)
        got = read_predictions(out, images=paths, sizes=[r.size for r in dataset.records])
    by_image = {p.image: p for p in got}
    return dataset, [by_image.get(p, Prediction(image=p)) for p in paths], tag
