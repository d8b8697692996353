"""azure-ai-ml entities built from detectkit's typed settings: the AutoML job, the endpoint.

:func:`build_job` turns a :class:`~detectkit.TrainingRequest` into the
``ImageObjectDetectionJob`` that ``ml_client.jobs.create_or_update`` submits, and
:func:`build_deployment_entities` turns :class:`~detectkit.DeploymentSettings` into a managed
online endpoint and deployment. Both only build objects: nothing here talks to Azure.

azure-ai-ml takes ~3 s to import, so it is imported inside the functions, never at module level.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from detectkit.errors import InvalidSettingsError, MissingDependencyError
from detectkit.settings.request import (
    AZURE_MODELS,
    Choice,
    DeploymentSettings,
    LogNormal,
    LogUniform,
    Normal,
    ProbeSettings,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    RunMetadata,
    SearchSpace,
    TrainingRequest,
    Uniform,
    validate_models,
)

if TYPE_CHECKING:
    from azure.ai.ml.automl import ImageObjectDetectionJob
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint

__all__ = ["build_deployment_entities", "build_job", "data_input_path", "model_reference"]


# An asset reference without the "azureml:" prefix: "name:version" or "name@latest".
_ASSET = re.compile(r"^[A-Za-z0-9][\w.\-]*(:[\w.\-]+|@latest)$")
_URI = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
# Online endpoint and deployment names: 3-32 characters, a letter first, letters, digits, '-'.
_ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-]{1,30}[A-Za-z0-9]$")


def _azure_ml() -> None:
    try:
        import azure.ai.ml  # noqa: F401
    except ImportError as exc:  # pragma: no cover - azure-ai-ml is a core dependency
        raise MissingDependencyError(
            "azure-ai-ml is not installed; the Azure backend needs it. "
            "Install it with: pip install azure-ai-ml"
        ) from exc


def data_input_path(ref: str, field: str = "training_data") -> str:
    """The ``Input(type="mltable", path=...)`` path for a data reference.

    A local folder (relative paths stay relative: azure-ai-ml uploads them from the current
    folder at submit time) must contain its ``MLTable`` file; ``name:version`` and
    ``name@latest`` become ``azureml:`` asset references; ``azureml:...`` and URIs
    (``azureml://``, ``https://``, ``abfss://`` ...) are passed through.

    Raises:
        InvalidSettingsError: A local folder without an ``MLTable`` file, or a reference that
            is neither an existing folder nor a data asset or URI.
    """
    if ref.startswith("azureml:") or _URI.match(ref):
        return ref
    if os.path.isdir(ref):
        if not os.path.isfile(os.path.join(ref, "MLTable")):
            raise InvalidSettingsError(
                f"{field}: folder {ref!r} has no MLTable file; Azure AutoML reads an MLTable "
                "next to the JSONL annotations (the job would fail minutes after submission "
                "with 'Not able to find MLTable file'). Write one with "
                "LabeledDataset.to_azureml(folder) or register the data with create_dataset()"
            )
        return ref
    if _ASSET.match(ref):
        return "azureml:" + ref
    raise InvalidSettingsError(
        f"{field}: {ref!r} is not a local folder, a data asset or a URI (expected a folder "
        "holding an MLTable file, 'azureml:<name>:<version>', '<name>:<version>', "
        "'<name>@latest' or 'azureml://datastores/<store>/paths/<path>')"
    )


def _asset_path(path: str) -> str:
    """A data asset reference as ``load_job`` writes it: ``azureml:name:1`` -> ``name:1``.

    azure-ai-ml resolves ``name:version`` and ``name@latest`` to the asset at submission
    either way; URIs (``azureml://...``) and folders are kept as they are.
    """
    if path.startswith("azureml:") and not path.startswith("azureml://"):
        return path.removeprefix("azureml:")
    return path


def _distribution(value: object) -> Any:
    """A detectkit distribution as the azure-ai-ml sweep object (scalars pass through)."""
    from azure.ai.ml import sweep

    if isinstance(value, Choice):
        return sweep.Choice(values=list(value.values))
    if isinstance(value, Uniform):
        return sweep.Uniform(min_value=value.min_value, max_value=value.max_value)
    if isinstance(value, LogUniform):
        return sweep.LogUniform(min_value=value.min_value, max_value=value.max_value)
    if isinstance(value, QUniform):
        return sweep.QUniform(min_value=value.min_value, max_value=value.max_value, q=value.q)
    if isinstance(value, QLogUniform):
        return sweep.QLogUniform(min_value=value.min_value, max_value=value.max_value, q=value.q)
    if isinstance(value, Normal):
        return sweep.Normal(mu=value.mu, sigma=value.sigma)
    if isinstance(value, LogNormal):
        return sweep.LogNormal(mu=value.mu, sigma=value.sigma)
    if isinstance(value, QNormal):
        return sweep.QNormal(mu=value.mu, sigma=value.sigma, q=value.q)
    if isinstance(value, QLogNormal):
        return sweep.QLogNormal(mu=value.mu, sigma=value.sigma, q=value.q)
    if isinstance(value, Randint):
        return sweep.Randint(upper=value.upper)
    return value


def _search_space(space: SearchSpace) -> Any:
    from azure.ai.ml.automl import ImageObjectDetectionSearchSpace

    values: dict[str, Any] = {name: _distribution(v) for name, v in space.items().items()}
    return ImageObjectDetectionSearchSpace(**values)


def _policy(request: TrainingRequest) -> Any:
    from azure.ai.ml import sweep

    policy = request.sweep.early_termination if request.sweep else None
    if policy is None:
        return None
    fields = policy.model_dump(exclude={"type"}, exclude_none=True)
    if policy.type == "bandit":
        return sweep.BanditPolicy(**fields)
    if policy.type == "median_stopping":
        return sweep.MedianStoppingPolicy(**fields)
    return sweep.TruncationSelectionPolicy(**fields)


def build_job(
    request: TrainingRequest, metadata: RunMetadata | None = None
) -> ImageObjectDetectionJob:
    """The AutoML object-detection job for ``request``, ready for ``jobs.create_or_update``.

    Built with ``automl.image_object_detection`` and its setters (``set_limits``,
    ``set_sweep``, ``set_training_parameters``, ``extend_search_space``), so it equals the job
    ``load_job`` reads from the equivalent YAML.

    Args:
        request: The checked training request.
        metadata: The job's name (Azure generates one when unset), display name, description,
            tags and AutoML log level (service default ``info``).

    Raises:
        InvalidSettingsError: No compute, a model Azure AutoML does not train, a per-trial
            timeout (not supported by AutoML image jobs), or a bad data reference.
    """
    if request.compute is None and request.instance_type is None:
        raise InvalidSettingsError(
            "compute: Azure training needs a GPU compute cluster (expected a cluster name such "
            "as 'gpu-cluster', got None); create one in the workspace and pass compute=..., "
            "or use serverless compute with instance_type='Standard_NC6s_v3'"
        )
    if request.limits.trial_timeout_minutes is not None:
        raise InvalidSettingsError(
            "limits.trial_timeout_minutes: Azure AutoML image jobs have no per-trial timeout "
            f"(got {request.limits.trial_timeout_minutes}); use limits.timeout_minutes for "
            "the whole job"
        )
    validate_models(request.model_names(), AZURE_MODELS, "azure")
    meta = metadata or RunMetadata()
    training = data_input_path(request.training_data)
    validation = request.validation_data
    if validation is not None:
        validation = data_input_path(validation, "validation_data")

    # every check is done: only now pay for importing azure-ai-ml
    _azure_ml()
    from azure.ai.ml import Input, automl

    job: ImageObjectDetectionJob = automl.image_object_detection(
        training_data=Input(type="mltable", path=_asset_path(training)),
        target_column_name=request.target_column_name,
        primary_metric=request.primary_metric,
        validation_data=None
        if validation is None
        else Input(type="mltable", path=_asset_path(validation)),
        validation_data_size=request.validation_size,
        compute=None if request.compute is None else request.compute.removeprefix("azureml:"),
        experiment_name=request.experiment,
        name=meta.name,
        display_name=meta.display_name,
        description=meta.description,
        tags=dict(meta.tags) or None,
        **({"log_verbosity": meta.log_verbosity} if meta.log_verbosity else {}),
    )
    if request.instance_type is not None:  # serverless compute, as load_job reads it
        from azure.ai.ml.entities import JobResourceConfiguration, QueueSettings

        resources = JobResourceConfiguration(instance_type=request.instance_type)
        if request.instance_count is not None:
            resources.instance_count = request.instance_count
        target: Any = job  # azure-ai-ml types these as its REST models; it takes the entities
        target.resources = resources
        if request.job_tier is not None:
            target.queue_settings = QueueSettings(job_tier=request.job_tier)
    # only what the user set, as load_job does: the service applies its own defaults
    given = request.limits.model_dump(
        include={"max_trials", "max_concurrent_trials", "timeout_minutes"},
        exclude_unset=True,
        exclude_none=True,
    )
    if given:
        job.set_limits(**given)
    if request.sweep is not None:
        job.set_sweep(
            sampling_algorithm=request.sweep.sampling_algorithm,
            early_termination=_policy(request),
        )
    parameters: dict[str, Any] = request.parameters.model_dump(exclude_none=True)
    for switch in ("log_training_metrics", "log_validation_loss"):
        if switch in parameters:
            parameters[switch] = "enable" if parameters[switch] else "disable"
    if parameters:
        job.set_training_parameters(**parameters)
    if request.search_spaces:
        job.extend_search_space([_search_space(space) for space in request.search_spaces])
    return job


def model_reference(model: str) -> str:
    """A registered model as azure-ai-ml names it: ``name:version`` -> ``azureml:name:version``.

    Raises:
        InvalidSettingsError: ``model`` names no version.
    """
    if model.startswith("azureml:"):
        return model
    if re.match(r"^[A-Za-z0-9][\w.\-]*:[\w.\-]+$", model):
        return "azureml:" + model
    raise InvalidSettingsError(
        f"model {model!r} names no version (expected '<name>:<version>' or "
        "'azureml:<name>:<version>'); list versions with project.list_models(name)"
    )


def _check_name(kind: str, name: str) -> None:
    if not _ENDPOINT_NAME.match(name):
        raise InvalidSettingsError(
            f"{kind} name {name!r} is not valid (expected 3-32 letters, digits or '-', starting "
            "with a letter and not ending with '-')"
        )


def _probe(probe: ProbeSettings) -> Any:
    from azure.ai.ml.entities import ProbeSettings as AzureProbeSettings

    return AzureProbeSettings(**probe.model_dump())


def build_deployment_entities(
    model_ref: str, endpoint: str, deployment: str, settings: DeploymentSettings
) -> tuple[ManagedOnlineEndpoint, ManagedOnlineDeployment]:
    """The managed online endpoint (key auth) and the deployment serving ``model_ref``.

    MLflow models need no environment or scoring script. Traffic is not set here: a new
    deployment receives 0 % until the endpoint is updated with ``traffic={deployment: 100}``.

    Args:
        model_ref: Registered model, ``name:version`` or ``azureml:name:version``.
        endpoint: Endpoint name.
        deployment: Deployment name (``blue``, ``green`` ...).
        settings: Instance type and count, request limits and probes.

    Raises:
        InvalidSettingsError: An endpoint or deployment name Azure would refuse, or a model
            reference without a version.
    """
    _check_name("endpoint", endpoint)
    _check_name("deployment", deployment)
    model = model_reference(model_ref)
    _azure_ml()
    from azure.ai.ml.entities import (
        ManagedOnlineDeployment,
        ManagedOnlineEndpoint,
        OnlineRequestSettings,
    )

    online_endpoint = ManagedOnlineEndpoint(name=endpoint, auth_mode="key")
    online_deployment = ManagedOnlineDeployment(
        name=deployment,
        endpoint_name=endpoint,
        model=model,
        instance_type=settings.instance_type,
        instance_count=settings.instance_count,
        request_settings=OnlineRequestSettings(
            request_timeout_ms=settings.request_timeout_ms,
            max_concurrent_requests_per_instance=settings.max_concurrent_requests_per_instance,
        ),
        liveness_probe=_probe(settings.liveness_probe),
        readiness_probe=_probe(settings.readiness_probe),
        environment_variables=dict(settings.environment_variables) or None,
    )
    return online_endpoint, online_deployment
