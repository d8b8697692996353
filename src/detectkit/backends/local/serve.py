"""The local scoring server: an MLflow model folder behind the Azure ML scoring contract.

One process serves one model on one address::

    POST /score    {"input_data": {"columns": ["image"], "data": ["<base64>", ...]}}
                   -> [{"boxes": [...]}, ...]       (one element per image, in order)
    GET  /health   {"status": "Healthy", "pid": ...}  (no key needed, like Azure's probes)

``/score`` wants ``Authorization: Bearer <key>`` when the server was given keys (401
otherwise), ``Content-Type: application/json`` (415), a body of at most
:attr:`ServerOptions.max_body_bytes` (413) and a well-formed request (400, naming the field
or the image index). A model that raises answers 500 with the exception's type and first
line; the traceback goes to the server log only. Every error body is
``{"error": {"code": ..., "message": ...}}`` and the server keeps serving.

**Throughput.** A supervisor loads the model, opens the port and forks one server process
per CPU (up to 4, :attr:`ServerOptions.processes`); they share the port and the loaded model.
In each, requests are validated on the event loop (JSON, base64, image header; large bodies in
a thread) and queued; the model takes every queued request, waiting at most
:attr:`ServerOptions.batch_wait_ms` for more, up to :attr:`ServerOptions.max_batch` images,
and is called once for all of them (a micro-batch). A batch that fails is retried request by
request, so one bad image fails only its own request. A torch model is called on one model
thread under ``torch.inference_mode()`` with one torch thread per process (one call at a time:
concurrent torch calls oversubscribe the cores); other models are called on the event loop
itself when several processes serve, the processes being the parallelism.

Run in the foreground with ``detectkit serve MODEL`` (:func:`serve_forever`); the local backend
starts it as a detached process with ``python -m detectkit.backends.local.serve --detach``
(see :mod:`detectkit.backends.local.endpoints`). FastAPI, uvicorn, MLflow and pandas are
imported only when a server starts.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import contextlib
import hmac
import io
import json
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from detectkit.errors import DetectkitError, NotFoundError, missing_dependency

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "ScoringRequestError",
    "ServerOptions",
    "create_app",
    "load_model",
    "main",
    "normalize_output",
    "parse_scoring_request",
    "serve_forever",
]

logger = logging.getLogger("detectkit.serve")

#: Azure's answer when the body has no ``input_data`` (inference server wording).
NO_INPUT_DATA = "A value is not provided for the 'input_data' parameter."
_EXPECTED = '{"input_data": {"columns": ["image"], "data": ["<base64 image>", ...]}}'
#: ``sys.setswitchinterval`` of a server process (see :func:`serve_forever`).
SWITCH_INTERVAL_S = 0.0005
_BIG_BODY = 1 << 20  # parse bodies above this in a thread, not on the event loop


class ServerOptions(BaseModel):
    """How a local scoring server takes requests.

    Attributes:
        max_body_bytes: Largest request body accepted; larger ones get 413.
        max_batch: Most images in one model call (a larger request still goes in one call).
        batch_wait_ms: How long the model thread may wait for requests still arriving to
            fill a batch (it never waits when none is arriving).
        request_timeout_s: Seconds a request may wait for the model before a 408.
        max_pending: Requests queued for the model at most; more get 429.
        processes: Server processes sharing the port, each with its own event loop and its
            own copy of the model (forked from the process that loaded it). Default: one per
            CPU, up to 4 (Python code is bound by one interpreter lock per process, and
            torch runs best with one thread per process beside the event loop).
        workers: Model calls that may run at once in one process, each on its own thread; 0
            calls the model on the event loop itself. Default: 1 for a torch model (one
            batched call at a time, torch's own threads use the cores); for others 2 in a
            single process (Pillow decodes outside the interpreter lock while the event loop
            reads the next requests) and 0 when several processes serve (the processes are
            the parallelism, and handing each call to a thread only costs time: measured
            ~10% of the server's CPU per request).
        threads: ``torch.set_num_threads`` value. Default: 1 with several processes (and
            no more is allowed for a torch model there: a forked torch thread pool hangs);
            with one process, the CPUs less one for the event loop, shared by the workers.
        access_log: Log one line per request.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=16 << 20, ge=1024)
    max_batch: int = Field(default=8, ge=1)
    batch_wait_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    request_timeout_s: float = Field(default=90.0, gt=0.0)
    max_pending: int = Field(default=256, ge=1)
    processes: int | None = Field(default=None, ge=1, le=64)
    workers: int | None = Field(default=None, ge=0)
    threads: int | None = Field(default=None, ge=1)
    access_log: bool = False


class ScoringRequestError(DetectkitError):
    """A scoring request the server refuses: an HTTP status, a code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"HTTP {status} {code}: {message}")


# ===================================================================== request and answer
def parse_scoring_request(body: bytes) -> list[str]:
    """The base64 images of a scoring request body, each checked to decode to an image.

    Accepts rows as strings or one-element lists (pandas ``split`` orient) and base64 with
    line breaks (``base64.encodebytes``). Only image headers are read, not pixels.

    Raises:
        ScoringRequestError: 400 naming the problem (``input_data.data[3]: not valid
            base64``).
    """

    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(
            "InvalidJson", f"the request body is not valid JSON ({exc}); send {_EXPECTED}"
        ) from None
    if not isinstance(request, dict) or "input_data" not in request:
        got = f"keys {sorted(request)}" if isinstance(request, dict) else _kind(request)
        raise _bad("MissingInputData", f"{NO_INPUT_DATA} Expected {_EXPECTED}, got {got}.")
    table = request["input_data"]
    if not isinstance(table, dict):
        raise _bad("InvalidInputData", f"input_data: expected an object, got {_kind(table)}")
    columns = table.get("columns", ["image"])
    if columns != ["image"]:
        raise _bad(
            "InvalidInputData",
            f'input_data.columns: expected ["image"], got {json.dumps(columns)[:80]}',
        )
    data = table.get("data")
    if not isinstance(data, list):
        raise _bad(
            "InvalidInputData",
            f"input_data.data: expected a list of base64 images, got {_kind(data)}",
        )
    if not data:
        raise _bad("InvalidInputData", "input_data.data: expected at least one image, got []")
    images: list[str] = []
    for i, row in enumerate(data):
        value = row[0] if isinstance(row, list) and len(row) == 1 else row
        if not isinstance(value, str):
            raise _bad(
                "InvalidInputData",
                f"input_data.data[{i}]: expected a base64 string, got {_kind(value)}",
            )
        encoded = _check_base64(value, i)
        # the header is near the start: decode a prefix, and all of it only when that fails
        head = binascii.a2b_base64(encoded[:_HEAD_CHARS])
        problem = _image_problem(head)
        if problem is not None and len(encoded) > _HEAD_CHARS:
            head = binascii.a2b_base64(encoded)
            problem = _image_problem(head)
        if problem is not None:
            raise _bad(
                "InvalidImage",
                f"input_data.data[{i}]: not an image Pillow can read (base64 of "
                f"{len(encoded) // 4 * 3} bytes starting {head[:8]!r}: {problem})",
            )
        images.append(value)
    return images


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_HEAD_CHARS = 4096  # base64 characters decoded to read an image header (3 KiB)


def _check_base64(value: str, index: int) -> bytes:
    """``value`` as ASCII bytes without line breaks, checked to be strict base64 (the
    alphabet, padding only at the end, a length that is a multiple of 4) without decoding it:
    the model decodes it anyway, and checking costs a tenth of decoding."""
    where = f"input_data.data[{index}]"
    try:
        encoded = value.encode("ascii")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise _bad(
            "InvalidBase64", f"{where}: not valid base64 (character {bad!r} at {exc.start})"
        ) from None
    if encoded.translate(None, _B64_ALPHABET):  # something besides base64 digits
        encoded = encoded.translate(None, b" \t\r\n")  # base64.encodebytes breaks lines
        stray = encoded.translate(None, _B64_ALPHABET)
        if stray:
            raise _bad(
                "InvalidBase64",
                f"{where}: not valid base64 (character {chr(stray[0])!r} at "
                f"{encoded.index(stray[:1])})",
            )
    padding = encoded.find(b"=")
    if padding != -1 and (padding < len(encoded) - 2 or encoded[padding:] not in (b"=", b"==")):
        raise _bad("InvalidBase64", f"{where}: not valid base64 ('=' padding at {padding})")
    if len(encoded) % 4:
        raise _bad(
            "InvalidBase64",
            f"{where}: not valid base64 ({len(encoded)} characters: expected a multiple of 4)",
        )
    return encoded


def _image_problem(data: bytes) -> str | None:
    """Why Pillow cannot read an image header from ``data``, or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width < 1 or image.height < 1:
                return "zero-sized image"
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    except (SyntaxError, IndexError, TypeError, struct.error) as exc:  # truncated headers
        return f"{type(exc).__name__}: {exc}"
    return None


def normalize_output(output: Any, expected: int) -> list[Any]:
    """One JSON-ready answer per image from what a pyfunc returned.

    Accepts a list, a numpy array or a pandas DataFrame (records); a ``boxes`` value that is a
    JSON string (the AutoML signature declares a string column) is decoded.

    Raises:
        ValueError: The model returned something else, or not one answer per image.
    """
    if hasattr(output, "to_dict") and hasattr(output, "columns"):
        output = output.to_dict(orient="records")
    elif hasattr(output, "tolist"):
        output = output.tolist()
    if not isinstance(output, list | tuple):
        raise ValueError(
            f"the model returned {type(output).__name__}; expected a list or a DataFrame "
            'with one {"boxes": [...]} per image'
        )
    if len(output) != expected:
        raise ValueError(f"the model returned {len(output)} answers for {expected} images")
    answers = list(output)
    for i, item in enumerate(answers):
        if isinstance(item, dict) and isinstance(item.get("boxes"), str):
            answers[i] = {**item, "boxes": json.loads(item["boxes"])}
    return answers


def _bad(code: str, message: str) -> ScoringRequestError:
    return ScoringRequestError(400, code, message)


def _kind(value: object) -> str:
    if isinstance(value, str):
        return f"a string {value[:40]!r}"
    if value is None:
        return "null"
    return type(value).__name__


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")


# ===================================================================== the model
class ModelRunner:
    """Calls a loaded pyfunc on base64 images: one DataFrame, one ``predict``, one answer each.

    Args:
        model: A loaded ``mlflow.pyfunc.PyFuncModel`` (anything with ``predict(DataFrame)``).
        threads: ``torch.set_num_threads`` value when the model uses torch (default: one less
            than the CPUs this process may use, at least 1).
    """

    def __init__(self, model: Any, *, threads: int | None = None) -> None:
        import pandas as pd

        self._model = model
        self._frame = pd.DataFrame
        self._series = pd.Series
        self._torch = sys.modules.get("torch")
        # one core stays with the event loop (HTTP, JSON, base64); a torch pool as large
        # as the machine spins against it (measured 2-10x slower on 2 busy cores)
        self._threads = threads or max(_cpu_count() - 1, 1)
        self.set_threads()

    def set_threads(self) -> None:
        """Apply the torch thread count to this process (again after a fork)."""
        if self._torch is not None:
            self._torch.set_num_threads(self._threads)

    @property
    def uses_torch(self) -> bool:
        """Whether calls run under ``torch.inference_mode()``."""
        return self._torch is not None

    def __call__(self, images: list[str]) -> list[Any]:
        # object dtype: the strings go in as they are (pandas' Arrow strings would copy each)
        frame = self._frame({"image": self._series(images, dtype=object)})
        if self._torch is not None:
            with self._torch.inference_mode():
                output = self._model.predict(frame)
        else:
            output = self._model.predict(frame)
        return normalize_output(output, len(images))


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load an MLflow model folder with ``mlflow.pyfunc.load_model``.

    Raises:
        NotFoundError: The folder or its ``MLmodel`` file does not exist.
        MissingDependencyError: MLflow is not installed.
    """
    folder = Path(path)
    if not (folder / "MLmodel").is_file():
        raise NotFoundError(
            f"{folder}: not an MLflow model folder (no MLmodel file); pass the folder that "
            "run.download_model() or mlflow.pyfunc.save_model() wrote"
        )
    try:
        import mlflow.pyfunc
    except ImportError as exc:
        raise missing_dependency("mlflow", "local") from exc
    return mlflow.pyfunc.load_model(str(folder))


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


# ===================================================================== batching
class _Job(NamedTuple):
    images: list[str]
    future: asyncio.Future[list[Any]]


class _Batcher:
    """Gathers queued requests into model calls on ``workers`` model threads.

    When a model thread is free it takes every queued request at once; it waits (at most
    ``batch_wait_ms``) for more only while requests are still arriving (``arriving``: being
    read or checked), so a lone client never waits for a batch that will not come.
    """

    def __init__(self, predict: Callable[[list[str]], list[Any]], options: ServerOptions) -> None:
        self.arriving = 0
        self._predict = predict
        self._options = options
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._inline = options.workers == 0  # call the model on the event loop
        self._workers = max(options.workers or 1, 1)
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in [self._task, *self._calls]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def submit(self, images: list[str]) -> list[Any]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(images, future))
        return await asyncio.wait_for(future, self._options.request_timeout_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wait_s = self._options.batch_wait_ms / 1000.0
        limit = self._options.max_batch
        free = asyncio.Semaphore(self._workers)
        while True:
            await free.acquire()
            jobs = [await self._queue.get()]
            size = len(jobs[0].images)
            deadline = loop.time() + wait_s
            while size < limit:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or not self.arriving:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                jobs.append(job)
                size += len(job.images)
            live = [job for job in jobs if not job.future.done()]  # timed-out ones are gone
            call = loop.create_task(self._call(loop, live))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
            call.add_done_callback(lambda _: free.release())

    async def _call(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        if not jobs:
            return
        images = [image for job in jobs for image in job.images]
        try:
            if self._inline:
                answers = self._predict(images)
            else:
                answers = await loop.run_in_executor(self._executor, self._predict, images)
        except Exception as exc:
            if len(jobs) == 1:
                _settle(jobs[0].future, exc=exc)
                return
            for job in jobs:  # one bad request must not fail the others
                await self._call(loop, [job])
            return
        start = 0
        for job in jobs:
            _settle(job.future, answers[start : start + len(job.images)])
            start += len(job.images)


def _settle(
    future: asyncio.Future[list[Any]], value: list[Any] | None = None, exc: Exception | None = None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value or [])


# ===================================================================== the app
def create_app(
    predict: Callable[[list[str]], list[Any]],
    *,
    keys: Sequence[str] = (),
    options: ServerOptions | None = None,
    description: str = "",
    pid: int | None = None,
) -> FastAPI:
    """The FastAPI application serving ``predict`` behind the scoring contract.

    Args:
        predict: Called with a list of base64 images; returns one JSON-ready answer per
            image (a :class:`ModelRunner`, or any function in tests).
        keys: Accepted ``Bearer`` keys; empty means no authentication.
        options: Limits and batching (default :class:`ServerOptions`).
        description: Shown by ``GET /health`` under ``"model"``.
        pid: The server's process id shown by ``GET /health`` (default: this process; the
            supervisor's when several processes serve).
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import Response
    except ImportError as exc:
        raise missing_dependency("fastapi", "local") from exc

    opts = options or ServerOptions()
    batcher = _Batcher(predict, opts)
    accepted = [key.encode("utf-8") for key in keys if key]
    pid = pid or os.getpid()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="detectkit local endpoint",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def error(status: int, code: str, message: str, **headers: str) -> Response:
        logger.warning("HTTP %d %s: %s", status, code, message)
        return Response(_error_body(code, message), status, headers or None, "application/json")

    # plain Starlette routes: no dependency injection to solve per request
    async def health(_: Request) -> Response:
        body = {"status": "Healthy", "pid": pid, "model": description, "pending": batcher.pending}
        return Response(json.dumps(body), 200, media_type="application/json")

    async def root(_: Request) -> Response:
        return Response("Healthy", 200, media_type="text/plain")

    async def score(request: Request) -> Response:
        batcher.arriving += 1
        try:
            checked = await receive(request)
        finally:
            batcher.arriving -= 1
        if isinstance(checked, Response):
            return checked
        return await answer(checked)

    async def receive(request: Request) -> list[str] | Response:
        """The request's images, or the error answer."""
        if accepted:
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if not given or scheme.lower() != "bearer":
                return error(
                    401,
                    "Unauthorized",
                    "no key: send the header 'Authorization: Bearer <key>' "
                    "(endpoint.keys().primary)",
                )
            if not any(hmac.compare_digest(token.strip().encode("utf-8"), k) for k in accepted):
                return error(401, "Unauthorized", "the key was refused: use endpoint.keys()")
        media = request.headers.get("content-type", "application/json")
        media = media.split(";", 1)[0].strip().lower()
        if media and not (media.endswith("/json") or media.endswith("+json") or media == "*/*"):
            return error(
                415,
                "UnsupportedMediaType",
                f"Content-Type: expected application/json, got {media!r}",
            )
        body = await _read_body(request, opts.max_body_bytes)
        if body is None:
            return error(
                413,
                "PayloadTooLarge",
                f"the body is larger than the limit of {opts.max_body_bytes} bytes: send "
                "fewer or smaller images per request",
            )
        try:
            if len(body) > _BIG_BODY:
                return await asyncio.to_thread(parse_scoring_request, body)
            return parse_scoring_request(body)
        except ScoringRequestError as exc:
            return error(exc.status, exc.code, exc.message)

    async def answer(images: list[str]) -> Response:
        if batcher.pending >= opts.max_pending:
            return error(
                429,
                "TooManyRequests",
                f"{batcher.pending} requests are waiting for the model; retry shortly",
                **{"Retry-After": "1"},
            )
        try:
            answers = await batcher.submit(images)
        except TimeoutError:
            return error(
                408,
                "RequestTimeout",
                f"upstream request timeout: the model did not answer within "
                f"{opts.request_timeout_s:g} s",
            )
        except Exception as exc:
            logger.error("model failed on a request of %d images", len(images), exc_info=exc)
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            return error(500, "ModelError", f"the model raised {type(exc).__name__}: {first}")
        try:
            content = json.dumps(answers, separators=(",", ":"), default=_json_default)
        except (TypeError, ValueError) as exc:
            return error(500, "ModelError", f"the model's answer is not JSON: {exc}")
        return Response(content, 200, media_type="application/json")

    app.router.add_route("/health", health, methods=["GET"])
    app.router.add_route("/", root, methods=["GET"])
    app.router.add_route("/score", score, methods=["POST"])
    return app


async def _read_body(request: Any, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` (read to the end anyway, so the client
    gets the 413 instead of a reset connection, up to 16 times the limit)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= limit:
        body: bytes = await request.body()
        return body
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > 16 * limit:
            break
    return b"".join(chunks) if size <= limit else None


# ===================================================================== running
def serve_forever(
    model_path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 5001,
    key: str | None = None,
    *,
    keys: Sequence[str] = (),
    options: ServerOptions | None = None,
    ready_file: str | os.PathLike[str] | None = None,
    port_fallback: bool = False,
) -> None:
    """Serve an MLflow model folder on ``host:port`` until SIGINT / SIGTERM (``detectkit serve``).

    Args:
        model_path: The MLflow model folder (loaded once, before the port opens).
        host: Address to listen on; keep ``127.0.0.1`` unless you set a key.
        port: Port (0: any free port; the one chosen is logged and written to ``ready_file``).
        key: Bearer key required on ``/score``; None (and no ``keys``) serves without
            authentication, like Azure's local (Docker) endpoints.
        keys: More accepted keys (the local backend passes primary and secondary).
        options: Limits and batching.
        ready_file: Where to write ``{"pid", "host", "port"}`` once the port is open.
        port_fallback: Take any free port when ``port`` is in use instead of failing.

    Raises:
        NotFoundError: ``model_path`` is not an MLflow model folder.
        MissingDependencyError: MLflow, FastAPI or uvicorn is not installed.
    """
    _configure_logging()
    # The event loop wakes on every socket event and then waits for the GIL; with the default
    # 5 ms switch interval a model thread holding it (pandas, the pyfunc's Python code) makes
    # each wake-up cost up to 5 ms. 0.5 ms measured 2-3x the requests per second here.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    opts = options or ServerOptions()
    accepted = [k for k in (key, *keys) if k]
    started = time.monotonic()
    model = load_model(model_path)
    opts = _resolve_options(opts, torch_model="torch" in sys.modules)
    workers = opts.workers or 0
    processes = opts.processes or 1
    threads = opts.threads or 1
    runner = ModelRunner(model, threads=threads)
    logger.info(
        "loaded %s in %.1f s (%d process(es), %s each; torch: %s)",
        model_path,
        time.monotonic() - started,
        processes,
        f"{workers} model thread(s)" if workers else "the model on the event loop",
        f"inference_mode, {threads} threads each" if runner.uses_torch else "not used",
    )
    try:
        import uvicorn
    except ImportError as exc:
        raise missing_dependency("uvicorn", "local") from exc

    sock = _bind(host, port, port_fallback)
    bound = sock.getsockname()[1]
    server_pid = os.getpid()
    logger.info(
        "serving %s on http://%s:%d/score (pid %d, %s, max batch %d, body limit %d bytes)",
        model_path,
        host,
        bound,
        server_pid,
        "key required" if accepted else "NO authentication",
        opts.max_batch,
        opts.max_body_bytes,
    )
    if not accepted and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s without a key: anyone who can reach it can score", host)

    def run() -> None:
        runner.set_threads()
        app = create_app(
            runner, keys=accepted, options=opts, description=str(model_path), pid=server_pid
        )
        config = uvicorn.Config(
            app,
            log_level="info",
            access_log=opts.access_log,
            timeout_graceful_shutdown=5,
            log_config=None,
        )
        uvicorn.Server(config).run(sockets=[sock])

    if ready_file is not None:
        _write_json(Path(ready_file), {"pid": server_pid, "host": host, "port": bound})
    if processes > 1:
        _supervise(run, processes)
    else:
        run()


def _resolve_options(opts: ServerOptions, *, torch_model: bool) -> ServerOptions:
    """``opts`` with the process, model-thread and torch-thread counts decided for this model
    and machine.

    Raises:
        DetectkitError: Several processes and several torch threads each were asked for a
            torch model: a torch thread pool forked from the process that loaded the model
            hangs (GNU OpenMP), so forked processes run one torch thread each.
    """
    cpus = _cpu_count()
    processes = opts.processes or min(cpus, 4)
    if not hasattr(os, "fork"):
        processes = 1
    workers = opts.workers
    if workers is None and torch_model:
        workers = 1  # one batched call at a time, beside the event loop
    elif workers is None:
        workers = 0 if processes > 1 else min(cpus, 2)
    threads = opts.threads
    if threads is None:
        # one process: the model threads share the CPUs but one, which the event loop keeps
        threads = 1 if processes > 1 else max((cpus - 1) // max(workers, 1), 1)
    if torch_model and processes > 1 and threads > 1:
        raise DetectkitError(
            f"threads: a torch model served by {processes} processes runs one torch thread in "
            f"each (a torch thread pool forked from the process that loaded the model hangs), "
            f"got threads={threads}; use processes=1 for one process with {threads} threads"
        )
    return opts.model_copy(update={"processes": processes, "workers": workers, "threads": threads})


class _Stop(Exception):
    """Raised by the supervisor's signal handler to leave ``os.wait``."""


def _supervise(run: Callable[[], None], processes: int) -> None:
    """Run ``run`` in ``processes`` forked children sharing the listening socket; restart a
    child that dies; on SIGTERM or SIGINT stop them all and return.

    The children inherit the loaded model (copy-on-write) and stay in this process group, so
    stopping the group stops every one of them.
    """
    import signal

    children: dict[int, float] = {}
    quick_deaths = 0

    def spawn() -> None:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child, reported through its exit
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                run()
            except BaseException:
                logger.exception("server process %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[child] = time.monotonic()

    def stop(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(processes):
            spawn()
        logger.info("supervising %d server processes: %s", processes, sorted(children))
        while True:
            pid, status = os.wait()
            born = children.pop(pid, None)
            if born is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            quick_deaths = quick_deaths + 1 if time.monotonic() - born < 5.0 else 0
            if quick_deaths >= 3:
                logger.error("server processes keep exiting (last code %d); stopping", code)
                break
            logger.warning("server process %d exited with %d; starting another", pid, code)
            spawn()
    except _Stop:
        logger.info("stopping %d server processes", len(children))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_children(children)


def _stop_children(children: dict[int, float], timeout: float = 10.0) -> None:
    import signal

    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while children and time.monotonic() < deadline:
        for pid in list(children):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            children.pop(pid, None)
        time.sleep(0.05)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _bind(host: str, port: int, fallback: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP,
    # and headers and body are written apart (Nagle + delayed ACK would add 40 ms a request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if not fallback or port == 0:
            sock.close()
            raise DetectkitError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port "
                "(0 takes any free one)"
            ) from exc
        sock.bind((host, 0))
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    logger.setLevel(logging.INFO)
    logging.getLogger("uvicorn").setLevel(logging.INFO)


def _read_keys(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [v for v in (data.get("primary"), data.get("secondary")) if isinstance(v, str) and v]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m detectkit.backends.local.serve MODEL [options]``: the server process.

    With ``--detach`` the process forks: the parent writes the child's pid to ``--pid-file``
    and exits at once, the child leaves the session and serves (so it outlives its starter and
    is never left a zombie of it).
    """
    parser = argparse.ArgumentParser(prog="python -m detectkit.backends.local.serve")
    parser.add_argument("model", help="MLflow model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--port-fallback", action="store_true", help="any free port if taken")
    parser.add_argument("--key-file", type=Path, help='JSON {"primary", "secondary"} keys')
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--detach", action="store_true")
    defaults = ServerOptions()
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch)
    parser.add_argument("--batch-wait-ms", type=float, default=defaults.batch_wait_ms)
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout_s)
    parser.add_argument("--max-pending", type=int, default=defaults.max_pending)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    if args.detach and hasattr(os, "fork"):
        child = os.fork()
        if child:
            if args.pid_file is not None:
                _write_json(args.pid_file, {"pid": child})
            os._exit(0)
        os.setsid()
    elif args.pid_file is not None:
        _write_json(args.pid_file, {"pid": os.getpid()})
    options = ServerOptions(
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        request_timeout_s=args.request_timeout,
        max_pending=args.max_pending,
        processes=args.processes,
        workers=args.workers,
        threads=args.threads,
        access_log=args.access_log,
    )
    try:
        serve_forever(
            args.model,
            args.host,
            args.port,
            keys=_read_keys(args.key_file) if args.key_file else (),
            options=options,
            ready_file=args.ready_file,
            port_fallback=args.port_fallback,
        )
    except DetectkitError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
