"""Replay recorded Azure ML HTTP answers through the real azure-core pipeline, offline.

``ReplayTransport`` is an azure-core ``RequestsTransport`` whose ``send()`` never touches the
network: it matches each request by method and URL regex to a recorded answer (a JSON file under
``tests/fixtures/azure/`` or an inline body), and records every request it gets so a test can
assert the method, the path and the payload fields that matter. Pass it to ``MLClient(...,
transport=ReplayTransport())`` (through ``Project.azure(..., transport=...)``); azure-ai-ml then
runs its own serialization, polling and deserialization code against the recorded answers.

A route answers with its responses in order; the last one repeats. Unmatched requests raise
``AssertionError`` naming the request and the known routes.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse

FIXTURES = Path(__file__).parent / "fixtures" / "azure"

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-detectkit"
WORKSPACE = "ws-detectkit"
WORKSPACE_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    f"/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)
#: Obvious fakes: the tests assert these strings never leak into a repr, a log or an error.
PRIMARY_KEY = "FAKE-PRIMARY-KEY-0000000000000000"
SECONDARY_KEY = "FAKE-SECONDARY-KEY-000000000000000"


def fixture(name: str) -> Any:
    """The parsed JSON of ``tests/fixtures/azure/<name>.json``."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@dataclass
class Answer:
    """One recorded HTTP answer."""

    status: int = 200
    body: Any = None  # dict/list (sent as JSON), str or bytes
    headers: dict[str, str] = field(default_factory=dict)
    raises: Exception | None = None  # raised by the transport instead (timeouts, resets)

    def content(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


@dataclass
class Route:
    """Requests with ``method`` whose URL (without the query) matches ``pattern``."""

    method: str
    pattern: re.Pattern[str]
    answers: list[Answer]
    hits: int = 0

    def next_answer(self) -> Answer:
        answer = self.answers[min(self.hits, len(self.answers) - 1)]
        self.hits += 1
        return answer


@dataclass(frozen=True)
class Recorded:
    """A request the transport received."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self) -> str:
        return f"{self.method} {self.url}"


class ReplayTransport(RequestsTransport):  # type: ignore[misc]
    """An azure-core transport that answers from recorded fixtures and records requests."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[Route] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()

    # -------------------------------------------------------------- building routes
    def add(
        self,
        method: str,
        pattern: str,
        *answers: Answer,
        status: int = 200,
        body: Any = None,
        fixture_name: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ReplayTransport:
        """Answer ``method`` requests whose URL matches ``pattern`` (a regex, ``re.search``).

        Give either several ``Answer`` objects (played in order, the last repeats) or one
        answer through ``status``/``body``/``fixture_name``/``headers``. Later routes win.
        """
        if not answers:
            payload = fixture(fixture_name) if fixture_name else body
            answers = (Answer(status, payload, dict(headers or {})),)
        self.routes.insert(0, Route(method.upper(), re.compile(pattern), list(answers)))
        return self

    # -------------------------------------------------------------- inspecting
    def sent(self, method: str | None = None, pattern: str | None = None) -> list[Recorded]:
        """Recorded requests, optionally filtered by method and URL regex."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (pattern is None or re.search(pattern, r.url.split("?", 1)[0]))
        ]

    def one(self, method: str, pattern: str) -> Recorded:
        """The single recorded request matching ``method`` and ``pattern``."""
        found = self.sent(method, pattern)
        assert len(found) == 1, f"expected one {method} {pattern}, got {found}"
        return found[0]

    # -------------------------------------------------------------- transport
    def open(self) -> None:  # no session, no network
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> RestRequestsTransportResponse:
        body = _request_body(request)
        headers = {k: str(v) for k, v in request.headers.items()}
        recorded = Recorded(request.method.upper(), request.url, headers, body)
        url = request.url.split("?", 1)[0]
        with self._lock:
            self.requests.append(recorded)
            route = next(
                (r for r in self.routes if r.method == recorded.method and r.pattern.search(url)),
                None,
            )
            if route is None:
                known = "\n  ".join(f"{r.method} {r.pattern.pattern}" for r in self.routes)
                raise AssertionError(f"unexpected request {recorded}; routes:\n  {known}")
            answer = route.next_answer()
        if answer.raises is not None:
            raise answer.raises
        response = _response(request, answer)
        if not kwargs.get("stream", False):
            response.read()  # as RequestsTransport does for non-streamed answers
        return response


def _request_body(request: Any) -> bytes:
    for attr in ("content", "data", "body"):
        try:
            value = getattr(request, attr)
        except (AttributeError, TypeError, ValueError):
            continue
        if value is None:
            continue
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        if hasattr(value, "read"):
            data = value.read()
            return data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if isinstance(value, Iterable) and not isinstance(value, Mapping):
            return b"".join(bytes(chunk) for chunk in value)
    return b""


def _response(request: Any, answer: Answer) -> RestRequestsTransportResponse:
    data = answer.content()
    headers = {"Content-Type": "application/json", **answer.headers}
    raw = urllib3.HTTPResponse(
        body=io.BytesIO(data),
        headers=headers,
        status=answer.status,
        preload_content=False,
        decode_content=False,
    )
    internal = requests.Response()
    internal.status_code = answer.status
    internal.headers = requests.structures.CaseInsensitiveDict(headers)
    internal.raw = raw
    internal.url = request.url
    internal.reason = "recorded"
    internal.encoding = "utf-8"
    return RestRequestsTransportResponse(request=request, internal_response=internal)  # type: ignore[no-untyped-call]


class FakeCredential:
    """A token credential that hands out an obvious fake token, offline."""

    token = "FAKE-AAD-TOKEN"

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, 4_102_444_800)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self.token, 4_102_444_800)
