"""The one boundary where Azure's and MLflow's exceptions become detectkit errors.

:func:`translate_error` maps azure.core, azure-ai-ml and MLflow exceptions to the error tree;
:func:`boundary` applies it to a block. :func:`endpoint_error` turns a scoring answer's error
status into an :class:`~detectkit.EndpointError` with the hint that usually fixes it, never
including the endpoint key.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pydantic import SecretStr

from detectkit.backends.mlflow_runs import mlflow_error
from detectkit.errors import (
    AuthenticationError,
    ConflictError,
    DetectkitError,
    EndpointError,
    InvalidSettingsError,
    NotFoundError,
    QuotaError,
)
from detectkit.scoring.chunks import MAX_RETRIES, MAX_RETRY_DELAY, RETRY_STATUSES, retry_delay

__all__ = [
    "MAX_RETRIES",
    "MAX_RETRY_DELAY",
    "RETRY_STATUSES",
    "boundary",
    "endpoint_error",
    "retry_delay",
    "translate_error",
]

# The retry policy (which answers, how often, how long) is shared with the local backend:
# it lives in detectkit.scoring.chunks and is re-exported here.

_ENDPOINT_HINTS: dict[int, str] = {
    400: "the scoring script refused the request: check the images are JPEG or PNG and read "
    "endpoint.logs() for what it expected",
    403: "the key or token is not allowed to call this endpoint: check its auth mode and your "
    "role on the workspace (AzureML Data Scientist can invoke endpoints)",
    409: "the endpoint is being updated (a deployment or traffic change is in progress): wait "
    "for it to finish (project.endpoints.get(name).state) and call again",
    401: "the endpoint refused the key (detectkit fetched fresh keys and retried once): check "
    "the endpoint's auth mode is key and that your identity can list its keys",
    408: "the model took longer than request_timeout_ms: raise it in DeploymentSettings "
    "(at most 180000) and deploy again, or send fewer or smaller images per call",
    424: "the model itself failed on this request: read endpoint.logs() for its traceback",
    429: "too many requests (rate limit, or more pending than 2 x "
    "max_concurrent_requests_per_instance x instances): send fewer requests at once or add "
    "instances",
    502: "the scoring container crashed or failed its probes: read endpoint.logs(); the "
    "DeploymentSettings default probes give the model time to load",
    500: "the scoring container failed on this request: read endpoint.logs() for the error",
    503: "the deployment is busy or scaling: retry later, or add instances",
    504: "the request timed out inside Azure: send fewer or smaller images per call",
}
#: An AAD token echoed in a body (``Bearer eyJ...``): redacted like the key.
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-_.~+/]+=*")
_NO_ROUTE = "No valid deployments to route to"


@contextmanager
def boundary(kind: str, name: str) -> Iterator[None]:
    """Translate foreign exceptions raised inside into detectkit errors naming ``kind name``."""
    try:
        yield
    except DetectkitError:
        raise
    except Exception as exc:
        translated = translate_error(exc, f"{kind} {name!r}")
        if translated is None:
            raise
        raise translated from exc


def translate_error(exc: BaseException, what: str) -> DetectkitError | None:
    """The detectkit error for a foreign exception about ``what`` (``"endpoint 'x'"``).

    Returns ``None`` for exceptions that are not Azure's or MLflow's (bugs stay visible).
    """
    from azure.core import exceptions as az

    ml_exceptions = sys.modules.get("azure.ai.ml.exceptions")
    if ml_exceptions is not None and isinstance(exc, ml_exceptions.ValidationException):
        kind = getattr(exc, "_error_type", None)
        if kind is ml_exceptions.ValidationErrorType.RESOURCE_NOT_FOUND:  # "latest" of nothing
            return NotFoundError(f"{what} was not found ({exc.message}); check the name")
        return InvalidSettingsError(f"{what}: {exc.message}")
    if isinstance(exc, az.ClientAuthenticationError):
        return AuthenticationError(
            f"{what}: Azure refused the credentials ({_message(exc)}); run `az login` or set "
            "the AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET variables"
        )
    if isinstance(exc, az.ResourceNotFoundError):
        return NotFoundError(f"{what} was not found ({_message(exc)}); check the name")
    if isinstance(exc, az.ResourceExistsError):
        return ConflictError(f"{what} already exists ({_message(exc)})")
    if isinstance(exc, az.HttpResponseError):
        status = exc.status_code
        message = _message(exc)
        if status == 429 or "quota" in message.lower():
            return QuotaError(
                f"{what}: quota or rate limit reached ({message}); request more quota in the "
                "Azure portal (Quotas), or use a smaller VM size or fewer instances"
            )
        if status == 403:
            return AuthenticationError(
                f"{what}: access denied ({message}); ask for a role such as 'AzureML Data "
                "Scientist' on the workspace"
            )
        if status == 409:
            return ConflictError(f"{what}: conflict ({message})")
        shown = f"HTTP {status}" if status else "an error"
        return DetectkitError(f"{what}: Azure ML answered {shown}: {message}")
    if isinstance(exc, az.AzureError):
        return DetectkitError(f"{what}: {type(exc).__name__}: {_message(exc)}")
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions is not None and isinstance(exc, mlflow_exceptions.MlflowException):
        return mlflow_error(exc, what)
    return None


def _message(exc: BaseException) -> str:
    """One line of an Azure exception's message."""
    error = getattr(exc, "error", None)
    text = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    return " ".join(str(text).split())[:500]


def endpoint_error(
    name: str,
    deployment: str | None,
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    key: SecretStr,
    *,
    retries: int,
) -> EndpointError:
    text = content.decode("utf-8", "replace").strip()
    text = redact(text, key.get_secret_value())
    where = f"endpoint {name!r}" + (f" (deployment {deployment!r})" if deployment else "")
    message = f"{where} answered: {' '.join(text.split())[:300] or '(empty body)'}"
    hint = _ENDPOINT_HINTS.get(status)
    lower = {k.lower(): v for k, v in headers.items()}
    if status == 404:
        hint = (
            "no deployment receives traffic: call endpoint.set_traffic({'<deployment>': 100}) "
            "or pass deployment='<deployment>' to predict()"
            if _NO_ROUTE.lower() in text.lower()
            else "check the endpoint and deployment names (project.endpoints.list())"
        )
    elif status == 424:
        code = lower.get("ms-azureml-model-error-statuscode")
        reason = lower.get("ms-azureml-model-error-reason")
        if code or reason:
            message += f" [model error {code or '?'}: {reason or 'no reason given'}]"
    if status in RETRY_STATUSES and retries:
        message += f" (still {status} after {retries} retries)"
    return EndpointError(message, status_code=status, hint=hint)


def redact(text: str, secret: str) -> str:
    """``text`` without ``secret``, in any of the spellings a service echoes it (verbatim,
    JSON-escaped such as ``\\/`` for ``/``), and without bearer tokens."""
    if secret:
        for spelling in {secret, json.dumps(secret)[1:-1], secret.replace("/", "\\/")}:
            text = text.replace(spelling, "**********")
    return _BEARER.sub(r"\1**********", text)
