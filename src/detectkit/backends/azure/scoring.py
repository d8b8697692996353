"""Scoring calls to Azure online endpoints: POST from memory, retries, a cached key.

:class:`Scorer` does the work of :meth:`AzureBackend.invoke
<detectkit.backends.azure.AzureBackend.invoke>`; :func:`deployment_concurrency` says how many
requests a deployment serves at once. azure-core is imported inside the methods.

This is the one retry layer for Azure scoring: busy answers and dropped connections are
retried here, where the ``Retry-After`` header and the transport's errors are seen, with the
policy of :mod:`detectkit.scoring.chunks`; the chunked ``Endpoint.predict`` does not retry
them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr

from detectkit.backends.azure.errors import endpoint_error
from detectkit.errors import EndpointError, NotFoundError, OperationTimeoutError
from detectkit.records import EndpointInfo
from detectkit.scoring.chunks import MAX_RETRIES, RETRY_STATUSES, retry_delay

__all__ = ["Scorer", "deployment_concurrency", "serving_deployment"]

logger = logging.getLogger("detectkit.azure")


class Scorer:
    """POSTs scoring requests to endpoints.

    Args:
        lookup: Gives an endpoint's scoring URI and key; called once per endpoint, and again
            after :meth:`forget` or a 401.
        transport: An azure-core transport (``RequestsTransport()`` when None).
        sleep: Waits between retried calls.
    """

    def __init__(
        self,
        lookup: Callable[[str], tuple[str, SecretStr]],
        *,
        transport: Any,
        sleep: Callable[[float], None],
    ) -> None:
        self._lookup = lookup
        self._transport = transport
        self._sleep = sleep
        self._http: Any = None
        self._targets: dict[str, tuple[str, SecretStr]] = {}

    def forget(self, name: str) -> None:
        """Drop the cached URI and key of an endpoint (after a deploy or delete)."""
        self._targets.pop(name, None)

    def invoke(self, name: str, body: bytes, *, deployment: str | None, timeout: float) -> bytes:
        """POST ``body`` to the scoring URI, from memory, with the endpoint key.

        429 and 503 answers and dropped connections are retried up to ``MAX_RETRIES`` times
        with exponential backoff (honouring ``Retry-After``); a 401 refreshes the key once.
        Other errors raise :class:`~detectkit.EndpointError` with a hint; the key never
        appears in a message. Safe to call from several threads at once.
        """
        refreshed = False
        retries = 0
        while True:
            uri, key = self._target(name)
            headers = {
                "Authorization": f"Bearer {key.get_secret_value()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
            if deployment:
                headers["azureml-model-deployment"] = deployment
            try:
                status, answer_headers, content = self._post(uri, body, headers, timeout, name)
            except _Dropped as dropped:
                if retries >= MAX_RETRIES:
                    raise EndpointError(
                        f"cannot reach endpoint {name!r} at {uri}: {dropped} (after {retries} "
                        "retries)",
                        hint="check the network and that the endpoint still exists",
                    ) from dropped.__cause__
                logger.debug("scoring %s: %s; retrying", name, dropped)
                self._sleep(retry_delay({}, retries))
                retries += 1
                continue
            logger.debug("scoring %s (deployment %s): HTTP %d", name, deployment, status)
            if status == 200:
                return content
            if status == 401 and not refreshed:
                self.forget(name)
                refreshed = True
                continue
            if status in RETRY_STATUSES and retries < MAX_RETRIES:
                self._sleep(retry_delay(answer_headers, retries))
                retries += 1
                continue
            raise endpoint_error(
                name, deployment, status, answer_headers, content, key, retries=retries
            )

    def _target(self, name: str) -> tuple[str, SecretStr]:
        """Scoring URI and key of an endpoint, fetched once and cached."""
        if name not in self._targets:
            self._targets[name] = self._lookup(name)
        return self._targets[name]

    def _post(
        self, uri: str, body: bytes, headers: dict[str, str], timeout: float, name: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError
        from azure.core.pipeline import Pipeline
        from azure.core.pipeline.transport import RequestsTransport
        from azure.core.rest import HttpRequest

        if self._http is None:
            self._http = Pipeline(transport=self._transport or RequestsTransport(), policies=[])
        request = HttpRequest("POST", uri, headers=headers, content=body)
        try:
            response = self._http.run(
                request, connection_timeout=min(timeout, 30.0), read_timeout=timeout
            ).http_response
            content = response.read()
        except (ServiceRequestError, ServiceResponseError) as exc:
            if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower():
                raise OperationTimeoutError(
                    f"endpoint {name!r} did not answer within {timeout:.0f} s; pass a larger "
                    "timeout= to predict(), or send fewer images per call (batch_size=)"
                ) from exc
            raise _Dropped(type(exc).__name__) from exc
        return response.status_code, dict(response.headers), bytes(content)


class _Dropped(Exception):
    """The connection failed or was reset before an answer came."""


def deployment_concurrency(deployment: Any) -> int:
    """Requests an azure-ai-ml ``OnlineDeployment`` serves at once: ``instance_count x
    request_settings.max_concurrent_requests_per_instance`` (Azure's defaults: 1 and 1)."""
    instances = getattr(deployment, "instance_count", None) or 1
    settings = getattr(deployment, "request_settings", None)
    per_instance = getattr(settings, "max_concurrent_requests_per_instance", None) or 1
    return max(int(instances) * int(per_instance), 1)


def serving_deployment(info: EndpointInfo) -> str:
    """The deployment of an endpoint with the most traffic.

    Raises:
        NotFoundError: The endpoint has no deployment.
    """
    if not info.deployments:
        raise NotFoundError(f"endpoint {info.name!r} has no deployments; deploy a model first")
    return max(info.deployments, key=lambda d: info.traffic.get(d, 0))
