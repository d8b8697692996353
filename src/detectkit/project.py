"""The :class:`Project` facade: one typed entry point for the whole lifecycle.

``Project.azure(...)`` works against an Azure ML workspace, ``Project.local(...)`` against this
machine; the rest of a script is the same. Facade methods check their arguments, make one
backend call and return one typed object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from detectkit.backends.base import Backend, ModelSource
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.labeling.project import Labeling
from detectkit.records import check_name
from detectkit.resources import (
    DatasetAsset,
    DetectionRun,
    Endpoint,
    RegisteredModel,
    Trial,
)
from detectkit.settings.request import (
    DeploymentSettings,
    Limits,
    SearchSpace,
    SweepSettings,
    TrainingParameters,
    TrainingRequest,
)

if TYPE_CHECKING:
    from detectkit.dataset import LabeledDataset

__all__ = ["Datasets", "Endpoints", "Models", "Project", "Runs"]


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


class Project:
    """The object-detection lifecycle in one place.

    Build one with :meth:`azure`, :meth:`from_config` or :meth:`local`; the methods and the
    returned handles are the same for both.

    Example:
        >>> import detectkit
        >>> project = detectkit.Project.local("my-project")  # doctest: +SKIP
        >>> asset = project.datasets.create("cards", dataset)  # doctest: +SKIP
        >>> run = project.train(asset, models=["ssdlite320_mobilenet_v3_large"])  # doctest: +SKIP
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.datasets = Datasets(backend)
        self.runs = Runs(backend)
        self.models = Models(backend)
        self.endpoints = Endpoints(backend)

    @property
    def labeling(self) -> Labeling:
        """``project.labeling``: labeling projects (local backend)."""
        return Labeling(self._backend)

    @property
    def backend(self) -> Backend:
        """The backend doing the work."""
        return self._backend

    def __repr__(self) -> str:
        return f"Project(backend={self._backend!r})"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def azure(
        cls,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        credential: Any = None,
        **client_kwargs: Any,
    ) -> Project:
        """A project on an Azure ML workspace.

        Args:
            subscription_id: Azure subscription id.
            resource_group: Resource group of the workspace.
            workspace: Workspace name.
            credential: An azure-identity credential; ``DefaultAzureCredential()`` by default.
            **client_kwargs: Passed to ``azure.ai.ml.MLClient`` (e.g. ``transport=``), except
                ``mlflow_tracking_uri`` (an MLflow tracking URI to use instead of the
                workspace's) and ``retry_sleep`` (the sleep function between scoring retries),
                which the backend takes.
        """
        for value, field in (
            (subscription_id, "subscription_id"),
            (resource_group, "resource_group"),
            (workspace, "workspace"),
        ):
            if not value or not isinstance(value, str):
                raise InvalidInputError(f"{field}: expected a non-empty string, got {value!r}")
        from detectkit.backends.azure.backend import AzureBackend

        return cls(
            AzureBackend(
                subscription_id, resource_group, workspace, credential=credential, **client_kwargs
            )
        )

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        credential: Any = None,
        **client_kwargs: Any,
    ) -> Project:
        """A project on the workspace named in an Azure ML ``config.json``.

        Without ``path``, looks for ``config.json`` or ``.azureml/config.json`` in the current
        folder and its parents, as azure-ai-ml does.
        """
        config_path = _find_config(Path(path) if path is not None else None)
        try:
            data = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InvalidInputError(f"{config_path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"{config_path}: expected a JSON object, got {type(data).__name__}"
            )
        values = {}
        for key, alternatives in (
            ("subscription_id", ("subscription_id", "Subscription")),
            ("resource_group", ("resource_group", "ResourceGroup")),
            ("workspace", ("workspace_name", "Workspace", "workspace")),
        ):
            found = next((data[a] for a in alternatives if data.get(a)), None)
            if not isinstance(found, str):
                raise InvalidInputError(
                    f"{config_path}: missing {alternatives[0]!r} (expected a string, got {found!r}); "
                    "download config.json again from the workspace page in Azure ML studio"
                )
            values[key] = found
        return cls.azure(
            values["subscription_id"],
            values["resource_group"],
            values["workspace"],
            credential=credential,
            **client_kwargs,
        )

    @classmethod
    def local(cls, root: str | os.PathLike[str] = "detectkit-project") -> Project:
        """A project on this machine, stored under ``root`` (created if needed).

        Data assets, an MLflow tracking store and model registry (SQLite), artifacts and
        endpoint records all live there.
        """
        from detectkit.backends.local import LocalBackend

        return cls(LocalBackend(Path(root)))

    # ------------------------------------------------------------------ lifecycle
    @overload
    def train(
        self,
        training_data: DatasetAsset | str,
        *,
        validation_data: DatasetAsset | str | None = ...,
        validation_size: float | None = ...,
        compute: str | None = ...,
        models: Sequence[str] | None = ...,
        search_space: Sequence[SearchSpace | Mapping[str, Any]] | None = ...,
        sweep: SweepSettings | Mapping[str, Any] | None = ...,
        limits: Limits | Mapping[str, Any] | None = ...,
        training_parameters: TrainingParameters | Mapping[str, Any] | None = ...,
        experiment: str | None = ...,
        dry_run: Literal[False] = ...,
    ) -> DetectionRun: ...
    @overload
    def train(
        self,
        training_data: DatasetAsset | str,
        *,
        validation_data: DatasetAsset | str | None = ...,
        validation_size: float | None = ...,
        compute: str | None = ...,
        models: Sequence[str] | None = ...,
        search_space: Sequence[SearchSpace | Mapping[str, Any]] | None = ...,
        sweep: SweepSettings | Mapping[str, Any] | None = ...,
        limits: Limits | Mapping[str, Any] | None = ...,
        training_parameters: TrainingParameters | Mapping[str, Any] | None = ...,
        experiment: str | None = ...,
        dry_run: Literal[True],
    ) -> object: ...
    def train(
        self,
        training_data: DatasetAsset | str,
        *,
        validation_data: DatasetAsset | str | None = None,
        validation_size: float | None = None,
        compute: str | None = None,
        models: Sequence[str] | None = None,
        search_space: Sequence[SearchSpace | Mapping[str, Any]] | None = None,
        sweep: SweepSettings | Mapping[str, Any] | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        training_parameters: TrainingParameters | Mapping[str, Any] | None = None,
        experiment: str | None = None,
        dry_run: bool = False,
    ) -> DetectionRun | object:
        """Train object detection models (an AutoML sweep on Azure, torchvision locally).

        Every setting is checked on the client before anything is submitted: unknown model
        names, sampling rules, policy and limit ranges raise
        :class:`~detectkit.InvalidSettingsError`.

        Args:
            training_data: A data asset (or its URI / ``azureml:name:version``).
            validation_data: A validation data asset; or use ``validation_size``.
            validation_size: Fraction of the training data held out for validation.
            compute: Compute cluster name (Azure; ignored locally).
            models: Model names to try (shorthand for a search space over models).
            search_space: Conditional search space entries.
            sweep: Sampling algorithm and early termination policy.
            limits: max_trials, max_concurrent_trials, timeout_minutes.
            training_parameters: Fixed hyperparameters.
            experiment: Experiment name.
            dry_run: Return what would be submitted (Azure: the azure-ai-ml job) without
                submitting anything.
        """

        request = TrainingRequest.build(
            _data_uri(training_data),
            validation_data=None if validation_data is None else _data_uri(validation_data),
            validation_size=validation_size,
            compute=compute,
            models=models,
            search_space=search_space,
            sweep=sweep,
            limits=limits,
            training_parameters=training_parameters,
            experiment=experiment,
        )
        if dry_run:
            return self._backend.plan_training(request)
        return DetectionRun(self._backend, self._backend.submit_training(request))

    def deploy(
        self,
        model: RegisteredModel | str,
        endpoint: str,
        *,
        deployment: str = "default",
        instance_type: str | None = None,
        instance_count: int | None = None,
        settings: DeploymentSettings | Mapping[str, Any] | None = None,
    ) -> Endpoint:
        """Create or update ``endpoint`` with a deployment of ``model`` and route 100% of the
        traffic to it.

        Args:
            model: A registered model or ``"name:version"``.
            endpoint: Endpoint name (3-32 characters, letters, digits and dashes).
            deployment: Deployment name.
            instance_type: VM size on Azure (default ``Standard_DS3_v2``).
            instance_count: Number of instances.
            settings: Probe, timeout and scaling settings (defaults suit detection models).
        """

        _check_endpoint_name(endpoint, "endpoint")
        _check_endpoint_name(deployment, "deployment")
        if isinstance(model, str):
            name, _, version = model.partition(":")
            model = self.models.get(name, version or None)
        updates: dict[str, Any] = {}
        if instance_type is not None:
            updates["instance_type"] = instance_type
        if instance_count is not None:
            updates["instance_count"] = instance_count
        resolved = DeploymentSettings.build(settings, **updates)
        info = self._backend.deploy(model.info, endpoint, deployment, resolved)
        return Endpoint(self._backend, info)


def _data_uri(data: DatasetAsset | str) -> str:
    if isinstance(data, DatasetAsset):
        return data.uri
    if isinstance(data, str) and data:
        return data
    raise InvalidInputError(
        f"training_data: expected a DatasetAsset or a data asset URI, got {type(data).__name__}; "
        "create one with project.datasets.create(name, dataset)"
    )


def _check_endpoint_name(name: str, field: str) -> None:
    import re

    if not isinstance(name, str) or not re.fullmatch(
        r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]", name
    ):
        raise InvalidInputError(
            f"{field}: expected 3-32 characters, starting with a letter, letters, digits and "
            f"dashes only, not ending with a dash (Azure's rule), got {name!r}"
        )


def _find_config(path: Path | None) -> Path:
    if path is not None:
        candidate = path / "config.json" if path.is_dir() else path
        if not candidate.is_file():
            raise NotFoundError(f"{candidate}: workspace config file not found")
        return candidate
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        for candidate in (folder / "config.json", folder / ".azureml" / "config.json"):
            if candidate.is_file():
                return candidate
    raise NotFoundError(
        "no config.json found in the current folder or its parents; download it from the "
        "workspace page in Azure ML studio, or call Project.azure(subscription_id, "
        "resource_group, workspace)"
    )
