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

from detectkit.accessors import Datasets, Endpoints, Models, Runs, prelabel_inputs
from detectkit.backends.base import Backend
from detectkit.batch import BatchDeploymentSettings, BatchEndpoint, BatchEndpoints
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.labeling.project import Labeling
from detectkit.prelabel import PrelabelResult, prelabel_dataset
from detectkit.records import ScoreResult
from detectkit.resources import (
    DatasetAsset,
    DetectionRun,
    Endpoint,
    RegisteredModel,
)
from detectkit.settings.request import (
    DeploymentSettings,
    Limits,
    RunMetadata,
    SearchSpace,
    SweepSettings,
    TrainingParameters,
    TrainingRequest,
)

if TYPE_CHECKING:
    from detectkit.dataset import LabeledDataset

__all__ = ["Datasets", "Endpoints", "Models", "Project", "Runs"]


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
        self.batch_endpoints = BatchEndpoints(backend)

    @property
    def labeling(self) -> Labeling:
        """``project.labeling``: labeling projects (local and Azure backends)."""
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
        instance_type: str | None = ...,
        instance_count: int | None = ...,
        job_tier: str | None = ...,
        models: Sequence[str] | None = ...,
        search_space: Sequence[SearchSpace | Mapping[str, Any]] | None = ...,
        sweep: SweepSettings | Mapping[str, Any] | None = ...,
        limits: Limits | Mapping[str, Any] | None = ...,
        training_parameters: TrainingParameters | Mapping[str, Any] | None = ...,
        experiment: str | None = ...,
        name: str | None = ...,
        display_name: str | None = ...,
        description: str | None = ...,
        tags: Mapping[str, str] | None = ...,
        log_verbosity: str | None = ...,
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
        instance_type: str | None = ...,
        instance_count: int | None = ...,
        job_tier: str | None = ...,
        models: Sequence[str] | None = ...,
        search_space: Sequence[SearchSpace | Mapping[str, Any]] | None = ...,
        sweep: SweepSettings | Mapping[str, Any] | None = ...,
        limits: Limits | Mapping[str, Any] | None = ...,
        training_parameters: TrainingParameters | Mapping[str, Any] | None = ...,
        experiment: str | None = ...,
        name: str | None = ...,
        display_name: str | None = ...,
        description: str | None = ...,
        tags: Mapping[str, str] | None = ...,
        log_verbosity: str | None = ...,
        dry_run: Literal[True],
    ) -> object: ...
    def train(
        self,
        training_data: DatasetAsset | str,
        *,
        validation_data: DatasetAsset | str | None = None,
        validation_size: float | None = None,
        compute: str | None = None,
        instance_type: str | None = None,
        instance_count: int | None = None,
        job_tier: str | None = None,
        models: Sequence[str] | None = None,
        search_space: Sequence[SearchSpace | Mapping[str, Any]] | None = None,
        sweep: SweepSettings | Mapping[str, Any] | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        training_parameters: TrainingParameters | Mapping[str, Any] | None = None,
        experiment: str | None = None,
        name: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        log_verbosity: str | None = None,
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
            instance_type: Serverless compute instead of a cluster (Azure): the VM size, e.g.
                ``Standard_NC6s_v3``; leave ``compute`` None.
            instance_count: Serverless compute's node count (service default 1).
            job_tier: Serverless compute's queue tier: ``spot``, ``basic``, ``standard`` or
                ``premium``.
            models: Model names to try (shorthand for a search space over models).
            search_space: Conditional search space entries.
            sweep: Sampling algorithm and early termination policy.
            limits: max_trials, max_concurrent_trials, timeout_minutes.
            training_parameters: Fixed hyperparameters.
            experiment: Experiment name.
            name: The run's (job's) name; Azure generates one when None. Locally the MLflow
                run name, by which ``project.runs.get`` also finds it.
            display_name: A free-text name shown in the studio (locally the run name when
                ``name`` is None).
            description: The run's description (locally its MLflow note).
            tags: The run's tags.
            log_verbosity: AutoML's log level (``debug``, ``info``, ``warning`` ...; service
                default ``info``); no meaning locally.
            dry_run: Return what would be submitted (Azure: the azure-ai-ml job) without
                submitting anything.
        """

        request = TrainingRequest.build(
            _data_uri(training_data),
            validation_data=None if validation_data is None else _data_uri(validation_data),
            validation_size=validation_size,
            compute=compute,
            instance_type=instance_type,
            instance_count=instance_count,
            job_tier=job_tier,
            models=models,
            search_space=search_space,
            sweep=sweep,
            limits=limits,
            training_parameters=training_parameters,
            experiment=experiment,
        )
        metadata = RunMetadata.build(
            name=name,
            display_name=display_name,
            description=description,
            tags=None if tags is None else dict(tags),
            log_verbosity=log_verbosity,
        )
        if dry_run:
            return self._backend.plan_training(request, metadata)
        return DetectionRun(self._backend, self._backend.submit_training(request, metadata))

    def deploy_batch(
        self,
        model: RegisteredModel | str,
        endpoint: str,
        *,
        compute: str,
        deployment: str = "default",
        instance_count: int = 1,
        mini_batch_size: int = 10,
        max_concurrency_per_instance: int = 1,
        settings: BatchDeploymentSettings | Mapping[str, Any] | None = None,
    ) -> BatchEndpoint:
        """Create or update batch endpoint ``endpoint`` with a deployment of the MLflow
        ``model`` on the compute cluster ``compute``, made its default (Azure ML).

        ``settings`` holds the rest of :class:`~detectkit.BatchDeploymentSettings`
        (``output_file_name``, ``error_threshold``, retries). Settings out of range raise
        :class:`~detectkit.InvalidSettingsError`; the local backend raises
        :class:`~detectkit.InvalidInputError` (use :meth:`score` there).
        """
        _check_endpoint_name(endpoint, "endpoint")
        _check_endpoint_name(deployment, "deployment")
        resolved = BatchDeploymentSettings.build(
            settings,
            compute=compute,
            instance_count=instance_count,
            mini_batch_size=mini_batch_size,
            max_concurrency_per_instance=max_concurrency_per_instance,
        )
        if isinstance(model, str):
            name, _, version = model.partition(":")
            model = self.models.get(name, version or None)
        info = self._backend.deploy_batch(model.info, endpoint, deployment, resolved)
        return BatchEndpoint(self._backend, info)

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

    def score(
        self,
        model: RegisteredModel | str | os.PathLike[str],
        data: str | os.PathLike[str] | DatasetAsset | LabeledDataset | Sequence[str],
        *,
        out: str | os.PathLike[str],
        processes: int | None = None,
        batch_size: int = 8,
        resume: bool = False,
        overwrite: bool = False,
        runtime: Literal["auto", "torch", "onnx"] = "auto",
        progress: bool | None = None,
    ) -> ScoreResult:
        """Score many images on this machine, with no server, into a batch output file.

        Worker processes (one model copy and one torch thread each) score mini-batches and
        append ``{"filename", "boxes"}`` lines, the batch endpoint output, to ``out``, one
        atomic write per mini-batch: a killed run continues with ``resume=True`` and every
        image ends up in the file exactly once. ``detectkit evaluate`` and
        :func:`~detectkit.scoring.response.read_predictions` read the file.

        Args:
            model: A registered model (or ``"name[:version]"``) of the local backend, or an
                MLflow model folder (which runs locally with either backend).
            data: A folder of images (searched recursively), an image path, a list of image
                paths, a :class:`~detectkit.LabeledDataset`, or a data asset (or
                ``"name[:version]"``) of the local backend.
            out: The JSON-lines file to write.
            processes: Worker processes (default: one per CPU, at most 8).
            batch_size: Images per model call and per append.
            resume: Skip the images ``out`` already holds (and drop a torn last line).
            overwrite: Empty ``out`` first.
            runtime: ``"torch"``, ``"onnx"`` (ONNX Runtime) or ``"auto"``.
            progress: Show a progress bar (default: when stderr is a terminal).

        Returns:
            What was scored, skipped and failed (corrupt images, with the reason: they get
            no line), and the images per second.

        Raises:
            ConflictError: ``out`` holds lines and neither ``resume`` nor ``overwrite``.
            InvalidInputError: A bad argument; on Azure, a registered model (use a batch
                endpoint, or pass its downloaded folder).
            RunFailedError: A worker died; the lines written stay, resume to continue.
        """
        from detectkit.backends.local.score import image_files, score_images

        options: dict[str, Any] = {
            "out": Path(out),
            "processes": processes,
            "batch_size": batch_size,
            "resume": resume,
            "overwrite": overwrite,
            "runtime": runtime,
            "progress": progress,
        }
        images = _score_images_of(data, image_files)
        if isinstance(model, str | os.PathLike) and (Path(model) / "MLmodel").is_file():
            if isinstance(images, str):
                name, _, version = images.removeprefix("azureml:").partition(":")
                images = image_files(self._backend.get_dataset(name, version or None).uri)
            return score_images(Path(model), images, **options)
        if isinstance(model, RegisteredModel):
            name, version = model.name, model.version
        elif isinstance(model, str) and model:
            name, _, version = model.partition(":")
        else:
            raise InvalidInputError(
                "model: expected a registered model, 'name[:version]' or an MLflow model "
                f"folder, got {model!r}"
            )
        return self._backend.score_images(name, version or None, images, **options)

    def prelabel(
        self,
        source: RegisteredModel | str | Endpoint | DetectionRun,
        data: str | os.PathLike[str] | DatasetAsset | LabeledDataset | Sequence[str],
        *,
        min_score: float | Literal["auto"] = 0.5,
        target_precision: float = 0.9,
        batch_size: int = 16,
        processes: int | None = None,
    ) -> PrelabelResult:
        """Give every image draft labels (``source="model"``, with ``score`` and
        ``model_version``) from a model, keeping the human labels already there.

        See :mod:`detectkit.prelabel` for the rules (drafts overlapping a human box of their
        class are dropped; how ``"auto"`` calibrates).

        Args:
            source: A registered model (or ``"name[:version]"``), scored on this machine; an
                endpoint (local or Azure), called in batches; or a run, whose best trial's
                model is downloaded to a temporary folder and scored here.
            data: A :class:`~detectkit.LabeledDataset` (its labels are kept), a folder of
                images, image paths, or a local data asset.
            min_score: Keep drafts scoring at least this; ``"auto"`` picks the lowest threshold
                reaching ``target_precision`` on the images of ``data`` that have human labels,
                which must be held out from the model's training data.
            target_precision: The precision ``"auto"`` aims for.
            batch_size: Images per model call (or per request).
            processes: Scoring processes for a model or a run (default: one per CPU, at most 8).

        Raises:
            InvalidInputError: A bad argument, or ``"auto"`` cannot reach the target.
        """
        from detectkit.backends.local.score import image_files

        images = _score_images_of(data, image_files)
        dataset, predictions, version_tag = prelabel_inputs(
            self._backend, self.models, self.score, source, data, images, batch_size, processes
        )
        return prelabel_dataset(
            dataset,
            predictions,
            model_version=version_tag,
            min_score=min_score,
            target_precision=target_precision,
        )


def _data_uri(data: DatasetAsset | str) -> str:
    if isinstance(data, DatasetAsset):
        return data.uri
    if isinstance(data, str) and data:
        return data
    raise InvalidInputError(
        f"training_data: expected a DatasetAsset or a data asset URI, got {type(data).__name__}; "
        "create one with project.datasets.create(name, dataset)"
    )


def _score_images_of(data: Any, image_files: Any) -> list[str] | str:
    """Image paths for ``project.score``, or a data asset reference for the backend."""
    if hasattr(data, "records") and hasattr(data, "classes"):  # a LabeledDataset
        return [record.image for record in data.records]
    if isinstance(data, DatasetAsset):
        return f"{data.name}:{data.version}"
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if path.is_dir():
            return list(image_files(path))
        if path.is_file():
            return [os.fspath(path)]
        if isinstance(data, str) and data and not any(c in data for c in "/\\"):
            return data
        raise NotFoundError(f"data: {path} is neither a folder, an image nor a data asset name")
    if isinstance(data, Sequence) and data:
        return [os.fspath(p) for p in data]
    raise InvalidInputError(
        "data: expected a folder of images, image paths, a LabeledDataset or a data asset, "
        f"got {type(data).__name__}"
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
