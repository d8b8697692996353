"""Chunked ``Endpoint.predict``: the request plan, the retry policy, and the Azure backend's
concurrency and chunked calls over replayed HTTP (``tests/azure_replay.py``).

The local endpoint end to end (order, concurrency, a 503 proxy, a corrupt image) is in
``tests/backends/local/test_endpoint_scale.py``.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detectkit.errors import EndpointError, InvalidInputError
from detectkit.scoring import encode_request
from detectkit.scoring.chunks import (
    MAX_RETRY_DELAY,
    Chunk,
    ImageFailure,
    PredictionBatch,
    plan_chunks,
    predict_many,
    request_body,
    retry_delay,
)
from detectkit.scoring.request import build_request

sys.path.insert(0, str(Path(__file__).parents[1]))
from azure_replay import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    Answer,
    FakeCredential,
    ReplayTransport,
    fixture,
)

EP = r"/onlineEndpoints/cards-ep"


def png(width: int, height: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def encoded(items: list[Any]) -> list[tuple[int, str]]:
    return [(i, build_request(x)["input_data"]["data"][0]) for i, x in enumerate(items)]


# ---------------------------------------------------------------------- the plan
def test_request_body_is_the_body_encode_request_makes() -> None:
    items = [png(5), png(7), np.zeros((3, 4, 3), np.uint8)]
    texts = [t for _, t in encoded(items)]
    assert request_body(texts) == encode_request(items)
    assert Chunk((0, 1, 2), tuple(texts)).body_bytes == len(encode_request(items))


@pytest.mark.parametrize(
    ("sizes", "batch_size", "limit", "expected"),
    [
        ([10] * 5, 2, 1 << 20, [(0, 1), (2, 3), (4,)]),
        ([10] * 3, 16, 1 << 20, [(0, 1, 2)]),
        # the byte limit: exactly two of the three images fit
        ([100, 100, 100], 16, len(request_body(["A" * 100] * 2)), [(0, 1), (2,)]),
        # an image over the limit goes alone, never dropped
        ([10, 5000, 10], 16, 200, [(0,), (1,), (2,)]),
    ],
)
def test_plan_chunks_keeps_order_and_both_limits(
    sizes: list[int], batch_size: int, limit: int, expected: list[tuple[int, ...]]
) -> None:
    pairs = [(i, "A" * n) for i, n in enumerate(sizes)]
    chunks = list(plan_chunks(pairs, batch_size=batch_size, max_request_bytes=limit))
    assert [c.indices for c in chunks] == expected
    for chunk in chunks:
        if len(chunk.indices) > 1:
            assert len(request_body(chunk.encoded)) <= limit


@pytest.mark.parametrize(
    ("headers", "attempt", "expected"),
    [
        ({}, 0, 1.0),
        ({}, 3, 8.0),
        ({}, 20, MAX_RETRY_DELAY),
        ({"Retry-After": "7"}, 0, 7.0),
        ({"retry-after": "0"}, 2, 0.0),
        ({"Retry-After": "soon"}, 1, 2.0),
        ({"Retry-After": "nan"}, 1, 2.0),
        ({"Retry-After": "-5"}, 1, 0.0),
        ({"Retry-After": "1e9"}, 0, MAX_RETRY_DELAY),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0, 0.0),  # in the past
    ],
)
def test_retry_delay_honours_retry_after_within_bounds(
    headers: dict[str, str], attempt: int, expected: float
) -> None:
    assert retry_delay(headers, attempt) == expected


def test_azure_errors_reuse_the_shared_retry_policy() -> None:
    from detectkit.backends.azure import errors

    assert errors.retry_delay is retry_delay


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size: expected a whole number of at least 1, got 0"),
        ({"max_request_bytes": -1}, "max_request_bytes"),
        ({"concurrency": 0}, "concurrency"),
        ({"errors": "ignore"}, "errors: expected 'raise' or 'collect', got 'ignore'"),
    ],
)
def test_arguments_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        predict_many([png(5)], lambda body: b"[]", **kwargs)


def test_an_image_that_is_not_an_image_fails_alone_when_collected() -> None:
    bodies: list[int] = []

    def send(body: bytes) -> bytes:
        n = len(json.loads(body)["input_data"]["data"])
        bodies.append(n)
        return json.dumps([{"boxes": []}] * n).encode()

    batch = predict_many([png(5), b"not an image", png(6)], send, errors="collect")
    assert isinstance(batch, PredictionBatch)
    assert batch.indices == [0, 2] and [p.size for p in batch] == [(5, 8), (6, 8)]
    assert bodies == [2]
    (failure,) = batch.failures
    assert failure == ImageFailure(
        index=1,
        source="images[1]",
        error_type="InvalidInputError",
        message=failure.message,
        status_code=None,
    )
    assert "not an image" in failure.message or "image" in failure.message
    with pytest.raises(InvalidInputError, match=r"images\[1\]"):
        predict_many([png(5), b"not an image"], send)


# ---------------------------------------------------------------------- Azure, replayed
@pytest.fixture(scope="module")
def azure_ml() -> None:
    import azure.ai.ml  # noqa: F401


@pytest.fixture
def transport(azure_ml: None) -> ReplayTransport:
    t = ReplayTransport()
    t.add("GET", r"/workspaces/ws-detectkit$", fixture_name="workspace")
    t.add("GET", EP + "$", fixture_name="online_endpoint")
    t.add("GET", EP + "/deployments$", fixture_name="online_deployments_list")
    t.add("POST", EP + "/listKeys$", fixture_name="endpoint_keys")
    return t


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def project(transport: ReplayTransport, sleeps: list[float]) -> Any:
    from detectkit.project import Project

    return Project.azure(
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        credential=FakeCredential(),
        transport=transport,
        enable_telemetry=False,
        retry_sleep=sleeps.append,
    )


def scaled_deployment(instances: int, per_instance: int) -> dict[str, Any]:
    record = fixture("online_deployment")
    record["sku"]["capacity"] = instances
    record["properties"]["requestSettings"]["maxConcurrentRequestsPerInstance"] = per_instance
    return record


def test_azure_concurrency_is_instances_times_requests_per_instance(
    project: Any, transport: ReplayTransport
) -> None:
    transport.add("GET", EP + "/deployments/blue$", fixture_name="online_deployment")
    backend = project.backend
    assert backend.endpoint_concurrency("cards-ep", None) == 1  # the recording: 1 x 1
    transport.add("GET", EP + "/deployments/blue$", body=scaled_deployment(2, 3))
    assert backend.endpoint_concurrency("cards-ep", "blue") == 6
    assert transport.sent("GET", EP + "/deployments/blue$")


def test_azure_predict_of_many_images_is_chunked_and_retried_once(
    project: Any, transport: ReplayTransport, sleeps: list[float]
) -> None:
    transport.add("GET", EP + "/deployments/blue$", body=scaled_deployment(2, 2))
    one = fixture("score_response")[0]
    transport.add(
        "POST",
        "/score$",
        Answer(503, "busy", {"Retry-After": "2"}),
        Answer(200, [one] * 8),
    )
    endpoint = project.endpoints.get("cards-ep")
    images = [png(20 + i, 10) for i in range(40)]
    preds = endpoint.predict(images, batch_size=8)
    assert type(preds) is list
    assert [p.size for p in preds] == [(20 + i, 10) for i in range(40)]
    posts = transport.sent("POST", "/score$")
    assert len(posts) == 5 + 1  # five chunks of 8, one of them answered 503 first
    assert sorted(len(p.json()["input_data"]["data"]) for p in posts) == [8] * 6
    assert sleeps == [2.0]  # Retry-After, retried by the Scorer alone
    assert len(transport.sent("GET", EP + "/deployments/blue$")) == 1


def test_azure_collect_splits_a_request_the_model_failed(
    project: Any, transport: ReplayTransport
) -> None:
    transport.add("GET", EP + "/deployments/blue$", fixture_name="online_deployment")
    one = fixture("score_response")[0]
    transport.add(
        "POST",
        "/score$",
        Answer(424, "model failed", {"ms-azureml-model-error-statuscode": "500"}),  # 4 images
        Answer(200, [one] * 2),  # first half
        Answer(424, "model failed"),  # second half
        Answer(200, [one]),  # image 2
        Answer(424, "model failed"),  # image 3
    )
    endpoint = project.endpoints.get("cards-ep")
    batch = endpoint.predict([png(30 + i) for i in range(4)], batch_size=4, errors="collect")
    assert batch.indices == [0, 1, 2]
    (failure,) = batch.failures
    assert (failure.index, failure.status_code, failure.error_type) == (3, 424, "EndpointError")
    assert len(transport.sent("POST", "/score$")) == 5
    with pytest.raises(EndpointError, match="HTTP 424"):
        endpoint.predict([png(30 + i) for i in range(4)], batch_size=4)
