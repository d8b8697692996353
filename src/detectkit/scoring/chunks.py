"""Scoring many images through an online endpoint: chunked, concurrent, retried, collected.

:meth:`Endpoint.predict <detectkit.Endpoint.predict>` hands its images to :func:`predict_many`,
which

1. encodes each image once and packs them, in order, into requests of at most ``batch_size``
   images and ``max_request_bytes`` of JSON body (:func:`plan_chunks`);
2. sends up to ``concurrency`` requests at once on a thread pool and puts the answers back in
   input order;
3. splits a request that failed because of its content (400, 413, 422, 424, 500: a corrupt
   image, a body too large, a model error) in halves and sends those, down to single images,
   so that one bad image fails only itself;
4. with ``errors="raise"`` raises the first failure; with ``errors="collect"`` returns a
   :class:`PredictionBatch` of the images that succeeded plus ``failures``, one
   :class:`ImageFailure` per image that did not.

Errors about the endpoint rather than the images (401, 403, 404, a missing deployment) raise
in both modes: every other request would fail the same way.

**Retries** of busy answers (429, 503) and of connection resets happen in one place, the
backend's ``invoke`` (each backend sees the ``Retry-After`` header and the socket errors); the
policy they share, :func:`retry_delay` with :data:`RETRY_STATUSES`, :data:`MAX_RETRIES` and
:data:`MAX_RETRY_DELAY`, lives here so both use the same numbers.

**Defaults.** :data:`DEFAULT_BATCH_SIZE` (16 images) keeps one request of a CPU detection
model well inside the default 90 s request timeout (Azure's maximum is 180 s): 16 card
photos take about 4 s on one core at 480x480. :data:`DEFAULT_MAX_REQUEST_BYTES` (4 MiB of
body) stays under the 5 MB/s bandwidth quota of a managed online endpoint and a quarter of the
local server's 16 MiB body limit. This module knows nothing of the backends: it calls the
``send`` function it is given.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Literal

from detectkit.errors import (
    AuthenticationError,
    DetectkitError,
    EndpointError,
    InvalidInputError,
    NotFoundError,
)
from detectkit.prediction import Prediction
from detectkit.progress import track
from detectkit.scoring.contract import IMAGE_COLUMN
from detectkit.scoring.request import build_request, image_sizes
from detectkit.scoring.response import parse_response

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_REQUEST_BYTES",
    "MAX_RETRIES",
    "MAX_RETRY_DELAY",
    "RETRY_STATUSES",
    "SPLIT_STATUSES",
    "Chunk",
    "ErrorMode",
    "ImageFailure",
    "PredictionBatch",
    "plan_chunks",
    "predict_many",
    "request_body",
    "retry_delay",
]

#: Most images in one request.
DEFAULT_BATCH_SIZE = 16
#: Most bytes of JSON body in one request (a single larger image still goes alone).
DEFAULT_MAX_REQUEST_BYTES = 4 << 20
#: Answers retried with backoff (rate limited, busy), how often, and the longest wait.
RETRY_STATUSES = (429, 503)
MAX_RETRIES = 3
MAX_RETRY_DELAY = 60.0
#: Answers caused by a request's content: such a request is split to find the image at fault.
SPLIT_STATUSES = frozenset({400, 413, 422, 424, 500})
#: Lists shorter than this show no progress bar.
PROGRESS_MIN_IMAGES = 50

ErrorMode = Literal["raise", "collect"]
Send = Callable[[bytes], bytes]

_BODY_HEAD = b'{"input_data":{"columns":["' + IMAGE_COLUMN.encode() + b'"],"data":['
_BODY_TAIL = b"]}}"


def retry_delay(headers: Mapping[str, str], attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``Retry-After`` (seconds or an HTTP
    date) or 1, 2, 4 ... s, at most :data:`MAX_RETRY_DELAY`.

    A value that is neither (``soon``, ``nan``, a negative or endless number) falls back to
    the backoff, so a bad header never stops the retry loop.

    Examples:
        >>> retry_delay({}, 2), retry_delay({"Retry-After": "7"}, 0)
        (4.0, 7.0)
    """
    backoff = min(2.0**attempt, MAX_RETRY_DELAY)
    lower = {k.lower(): v for k, v in headers.items()}
    value = (lower.get("retry-after") or "").strip()
    if not value:
        return backoff
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return backoff
        if when.tzinfo is None:  # an HTTP date is GMT
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return MAX_RETRY_DELAY if seconds == math.inf else backoff
    return min(max(seconds, 0.0), MAX_RETRY_DELAY)


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be scored.

    Attributes:
        index: Its position in the list given to ``predict``.
        source: Its file path, or ``images[<index>]`` for bytes, arrays and Pillow images.
        error_type: The detectkit error class (``EndpointError``, ``InvalidInputError`` ...).
        message: What went wrong, with the hint that usually fixes it.
        status_code: The HTTP status of the answer, when the endpoint answered.
    """

    index: int
    source: str
    error_type: str
    message: str
    status_code: int | None = None


class PredictionBatch(list[Prediction]):
    """The predictions that succeeded, in input order, and the images that failed.

    A plain ``list`` of :class:`~detectkit.Prediction` (the failed images are left out), with
    ``failures`` and ``indices`` (the input position of each prediction).
    """

    def __init__(
        self,
        predictions: Sequence[Prediction] = (),
        *,
        indices: Sequence[int] = (),
        failures: Sequence[ImageFailure] = (),
    ) -> None:
        super().__init__(predictions)
        self.indices: list[int] = list(indices)
        self.failures: list[ImageFailure] = list(failures)

    @property
    def ok(self) -> bool:
        """Whether every image was scored."""
        return not self.failures

    def __repr__(self) -> str:
        return f"PredictionBatch(predictions={len(self)}, failures={len(self.failures)})"


@dataclass(frozen=True)
class Chunk:
    """One planned request: the input positions of its images and their base64 strings."""

    indices: tuple[int, ...]
    encoded: tuple[str, ...]

    @property
    def body_bytes(self) -> int:
        """Size of its JSON body."""
        return len(_BODY_HEAD) + len(_BODY_TAIL) + sum(len(e) + 3 for e in self.encoded) - 1


def request_body(encoded: Sequence[str]) -> bytes:
    """The scoring request body for already base64-encoded images (the bytes
    :func:`~detectkit.scoring.encode_request` makes for the same images)."""
    return _BODY_HEAD + ",".join(json.dumps(e) for e in encoded).encode("ascii") + _BODY_TAIL


def plan_chunks(
    encoded: Sequence[tuple[int, str]], *, batch_size: int, max_request_bytes: int
) -> Iterator[Chunk]:
    """Pack ``(index, base64)`` pairs, in order, into chunks of at most ``batch_size`` images
    and ``max_request_bytes`` of body; an image larger than the limit goes alone.

    Examples:
        >>> [c.indices for c in plan_chunks([(i, "AAAA") for i in range(5)], batch_size=2,
        ...                                 max_request_bytes=1 << 20)]
        [(0, 1), (2, 3), (4,)]
    """
    base = len(_BODY_HEAD) + len(_BODY_TAIL) - 1  # n images: n quoted texts, n - 1 commas
    indices: list[int] = []
    texts: list[str] = []
    size = base
    for index, text in encoded:
        extra = len(text) + 3  # quotes and a comma
        if indices and (len(indices) >= batch_size or size + extra > max_request_bytes):
            yield Chunk(tuple(indices), tuple(texts))
            indices, texts, size = [], [], base
        indices.append(index)
        texts.append(text)
        size += extra
    if indices:
        yield Chunk(tuple(indices), tuple(texts))


def predict_many(
    items: Sequence[Any],
    send: Send,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    concurrency: int | Callable[[], int] = 1,
    errors: ErrorMode = "raise",
    progress: bool | None = None,
    description: str = "scoring",
) -> PredictionBatch:
    """Score ``items`` through ``send`` (one request body in, one answer body out).

    Args:
        items: Images (paths, bytes, Pillow images, arrays), as :func:`image_list` gives them.
        send: Posts one body and returns the answer; raises a detectkit error on failure
            (retrying busy answers itself).
        batch_size: Most images per request.
        max_request_bytes: Most bytes of JSON body per request.
        concurrency: Requests in flight at once, or a function giving it (called only when
            there is more than one request to send).
        errors: ``"raise"``: a failure raises (no request is split). ``"collect"``: a
            request that failed for its content is split down to the image at fault, and
            failures are returned in ``PredictionBatch.failures``.
        progress: Draw a progress bar (default: on a terminal, for 50 images or more).
        description: The progress bar's label.

    Raises:
        InvalidInputError: ``batch_size``, ``max_request_bytes`` or ``concurrency`` below 1,
            or an unknown ``errors``.
        DetectkitError: With ``errors="raise"``, the first failure; in both modes, errors that
            concern the endpoint rather than the images (401, 403, 404).
    """
    _check_args(
        batch_size, max_request_bytes, concurrency if isinstance(concurrency, int) else 1, errors
    )
    results: dict[int, Prediction] = {}
    failures: dict[int, ImageFailure] = {}
    encoded: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        try:
            encoded.append((index, build_request(item)["input_data"]["data"][0]))
        except DetectkitError as exc:
            if errors == "raise":
                raise _renamed(exc, index) from exc
            failures[index] = _failure(index, item, exc)
    chunks = list(plan_chunks(encoded, batch_size=batch_size, max_request_bytes=max_request_bytes))
    if callable(concurrency):
        concurrency = concurrency() if len(chunks) > 1 else 1
        _check_args(batch_size, max_request_bytes, concurrency, errors)
    show = progress if progress is not None else len(items) >= PROGRESS_MIN_IMAGES
    ticker = _Ticker(sum(len(c.indices) for c in chunks), show, description)
    split = errors == "collect"

    def run(chunk: Chunk) -> list[tuple[int, Prediction | DetectkitError]]:
        return _score(chunk, items, send, ticker, split=split)

    with ThreadPoolExecutor(max_workers=min(concurrency, max(len(chunks), 1))) as pool:
        pending: set[Future[list[tuple[int, Prediction | DetectkitError]]]] = set()
        queue = iter(chunks)
        try:
            for chunk in queue:
                pending.add(pool.submit(run, chunk))
                if len(pending) >= concurrency * 2:  # bounded memory of answers in flight
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _collect(finished, items, results, failures, errors)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                _collect(finished, items, results, failures, errors)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        finally:
            ticker.close()
    order = sorted(results)
    return PredictionBatch(
        [results[i] for i in order],
        indices=order,
        failures=[failures[i] for i in sorted(failures)],
    )


def _check_args(batch_size: int, max_request_bytes: int, concurrency: int, errors: str) -> None:
    for name, value in (
        ("batch_size", batch_size),
        ("max_request_bytes", max_request_bytes),
        ("concurrency", concurrency),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name}: expected a whole number of at least 1, got {value!r}")
    if errors not in ("raise", "collect"):
        raise InvalidInputError(f"errors: expected 'raise' or 'collect', got {errors!r}")


def _score(
    chunk: Chunk, items: Sequence[Any], send: Send, ticker: _Ticker, *, split: bool
) -> list[tuple[int, Prediction | DetectkitError]]:
    """Score one chunk; split it on a content error until the image at fault stands alone."""
    try:
        answer = send(request_body(chunk.encoded))
        images = [items[i] for i in chunk.indices]
        preds = parse_response(answer, images=images, sizes=image_sizes(images))
    except DetectkitError as exc:
        if _is_fatal(exc):
            raise
        if split and len(chunk.indices) > 1 and _splittable(exc):
            half = len(chunk.indices) // 2
            left = Chunk(chunk.indices[:half], chunk.encoded[:half])
            right = Chunk(chunk.indices[half:], chunk.encoded[half:])
            return _score(left, items, send, ticker, split=True) + _score(
                right, items, send, ticker, split=True
            )
        ticker.advance(len(chunk.indices))
        return [(i, exc) for i in chunk.indices]
    ticker.advance(len(chunk.indices))
    return list(zip(chunk.indices, preds, strict=True))


def _collect(
    finished: set[Future[list[tuple[int, Prediction | DetectkitError]]]],
    items: Sequence[Any],
    results: dict[int, Prediction],
    failures: dict[int, ImageFailure],
    errors: ErrorMode,
) -> None:
    for future in finished:
        for index, outcome in future.result():
            if isinstance(outcome, Prediction):
                results[index] = outcome
            elif errors == "raise":
                raise outcome
            else:
                failures[index] = _failure(index, items[index], outcome)


def _is_fatal(exc: DetectkitError) -> bool:
    """Errors about the endpoint, which every request would meet."""
    if isinstance(exc, NotFoundError | AuthenticationError):
        return True
    return isinstance(exc, EndpointError) and exc.status_code in (401, 403, 404)


def _splittable(exc: DetectkitError) -> bool:
    if isinstance(exc, EndpointError):
        return exc.status_code in SPLIT_STATUSES
    return isinstance(exc, InvalidInputError)  # an answer that does not parse


def _source(index: int, item: Any) -> str:
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    return f"images[{index}]"


def _failure(index: int, item: Any, exc: DetectkitError) -> ImageFailure:
    return ImageFailure(
        index=index,
        source=_source(index, item),
        error_type=type(exc).__name__,
        message=" ".join(str(exc).split()),
        status_code=getattr(exc, "status_code", None),
    )


def _renamed(exc: DetectkitError, index: int) -> DetectkitError:
    """``exc`` as raised for a single image, naming its position in the whole list."""
    text = str(exc).replace("images[0]", f"images[{index}]", 1)
    return type(exc)(text) if type(exc) in (InvalidInputError, NotFoundError) else exc


class _Ticker:
    """A thread-safe progress counter drawn by :func:`detectkit.progress.track`."""

    def __init__(self, total: int, show: bool, description: str) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._drawn = 0
        self._bar: Iterator[int] | None = None
        if show and total:
            self._bar = track(range(total), total=total, description=description)

    def advance(self, n: int) -> None:
        if self._bar is None:
            return
        with self._lock:
            self._count += n
            while self._drawn < self._count:
                next(self._bar, None)
                self._drawn += 1

    def close(self) -> None:
        if self._bar is not None:
            with self._lock:
                for _ in self._bar:  # draw the last state and the newline
                    pass
                self._bar = None
