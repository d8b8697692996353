"""The local scoring server's application: request checks, the model runner, the micro-batcher
and the FastAPI app.

What it serves::

    POST /score    {"input_data": {"columns": ["image"], "data": ["<base64>", ...]}}
                   -> [{"boxes": [...]}, ...]       (one element per image, in order)
    GET  /health   {"status": "Healthy", "pid": ...}  (no key needed, like Azure's probes)

The contract itself (keys, the request walker, the base64 check) is
:mod:`detectkit.scoring.contract`; the process around the app (supervisor, socket, ``python -m``
entry point) is :mod:`detectkit.backends.local.serve`, which re-exports the names here that its
documentation promises. FastAPI, MLflow and pandas are imported only when a server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from detectkit.backends.local import onnx_runtime
from detectkit.backends.local.checks import (
    ERROR_SHAPE,
    ScoringRequestError,
    parse_scoring_request,
    undecodable_image,
)
from detectkit.errors import InvalidInputError, NotFoundError, missing_dependency
from detectkit.scoring.contract import (
    NO_INPUT_DATA,
    normalize_output,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "ERROR_SHAPE",
    "NO_INPUT_DATA",
    "RUNTIMES",
    "ModelRunner",
    "ScoringRequestError",
    "ServerOptions",
    "cpu_count",
    "create_app",
    "load_model",
    "normalize_output",
    "parse_scoring_request",
    "undecodable_image",
]


logger = logging.getLogger("detectkit.serve")

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
        runtime: ``"torch"`` (default: the MLflow model as saved), ``"onnx"`` (ONNX Runtime;
            SSD local models, exported on first use and cached) or ``"auto"`` (ONNX Runtime
            when installed and the model can use it): see :func:`load_model`.
        max_image_pixels: Most pixels (width x height, read from the image header before
            anything is decoded) of one image; larger ones get 413. Default 40 million
            (a 7,700 x 5,200 photo): memory grows with pixels, not bytes (a 1.5 MB
            10,000 x 10,000 JPEG decodes to 300 MB of RGB and several GB in a model).
        max_request_pixels: Most pixels of all the images of one request; more get 413.
            Default 100 million.
        read_timeout_s: Seconds a client may take to send a request's headers (from the
            connection or the previous answer) and, separately, its body; a slower one is
            disconnected (headers) or answered 408 (body), so slow or stalled clients hold
            no connection longer than this.
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
    runtime: Literal["auto", "torch", "onnx"] = "torch"
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_request_pixels: int = Field(default=100_000_000, ge=1)
    read_timeout_s: float = Field(default=10.0, gt=0.0)


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
        model: What :func:`load_model` returns: an ``mlflow.pyfunc.PyFuncModel`` or an
            ONNX Runtime model (anything with ``predict(DataFrame)``).
        threads: ``torch.set_num_threads`` value when the model uses torch, or the ONNX
            Runtime session's intra-op threads (default: one less than the CPUs this
            process may use, at least 1).
    """

    def __init__(self, model: Any, *, threads: int | None = None) -> None:
        import pandas as pd

        self._model = model
        self._frame = pd.DataFrame
        self._series = pd.Series
        # an ONNX Runtime model (runtime "onnx") sets its own session threads
        self._onnx = getattr(model, "runtime", None) == "onnx"
        self._torch = None if self._onnx else sys.modules.get("torch")
        # one core stays with the event loop (HTTP, JSON, base64); a torch pool as large
        # as the machine spins against it (measured 2-10x slower on 2 busy cores)
        self._threads = threads or max(cpu_count() - 1, 1)
        self.set_threads()

    def set_threads(self) -> None:
        """Apply the thread count to this process (again after a fork): torch's, or the
        ONNX Runtime session's intra-op threads."""
        if self._onnx:
            self._model.set_threads(self._threads)
        elif self._torch is not None:
            self._torch.set_num_threads(self._threads)

    @property
    def runtime(self) -> str:
        """``"onnx"`` for an ONNX Runtime model, else ``"torch"``."""
        return "onnx" if self._onnx else "torch"

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


RUNTIMES = ("auto", "torch", "onnx")


def load_model(
    path: str | os.PathLike[str], *, runtime: str = "torch", threads: int | None = None
) -> Any:
    """Load an MLflow model folder for :class:`ModelRunner`.

    Args:
        path: The MLflow model folder.
        runtime: ``"torch"`` (default, what callers that do not choose get):
            ``mlflow.pyfunc.load_model``. ``"onnx"``: an ONNX Runtime
            session (:mod:`detectkit.backends.local.onnx_runtime`) of the folder's
            ``artifacts/model.onnx``, or of an export of a local model, cached. ``"auto"``:
            ONNX Runtime when it is installed and the folder has or can export an ONNX
            model (a local model), else torch.
        threads: ONNX Runtime intra-op threads (default 1; :class:`ModelRunner` applies
            its own count). torch threads are set by :class:`ModelRunner`.

    Raises:
        NotFoundError: The folder or its ``MLmodel`` file does not exist; with
            ``runtime="onnx"``, the folder has no ONNX model and cannot export one.
        MissingDependencyError: MLflow is not installed; with ``runtime="onnx"``,
            onnxruntime is not installed.
        InvalidInputError: ``runtime`` is not one of ``"auto"``, ``"torch"``, ``"onnx"``.
    """
    if runtime not in RUNTIMES:
        raise InvalidInputError(f"runtime: expected one of {list(RUNTIMES)}, got {runtime!r}")
    folder = Path(path)
    if not (folder / "MLmodel").is_file():
        raise NotFoundError(
            f"{folder}: not an MLflow model folder (no MLmodel file); pass the folder that "
            "run.download_model() or mlflow.pyfunc.save_model() wrote"
        )
    if runtime == "onnx" or (runtime == "auto" and onnx_runtime.usable(folder)):
        try:
            return onnx_runtime.load_onnx_model(folder, threads=threads or 1)
        except Exception as exc:
            if runtime == "onnx":
                raise
            logger.warning("ONNX Runtime not used for %s (%s); using torch", folder, exc)
    try:
        import mlflow.pyfunc
    except ImportError as exc:
        raise missing_dependency("mlflow", "local") from exc
    return mlflow.pyfunc.load_model(str(folder))


def cpu_count() -> int:
    """The CPUs this process may use."""
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
        from starlette.exceptions import HTTPException as StarletteHTTPException
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
            # compared exactly: a key with a space or a character more is another key
            if not any(hmac.compare_digest(token.encode("utf-8"), k) for k in accepted):
                return error(401, "Unauthorized", "the key was refused: use endpoint.keys()")
        media = request.headers.get("content-type", "application/json")
        media = media.split(";", 1)[0].strip().lower()
        if media and not (media.endswith("/json") or media.endswith("+json") or media == "*/*"):
            return error(
                415,
                "UnsupportedMediaType",
                f"Content-Type: expected application/json, got {media!r}",
            )
        try:
            body = await asyncio.wait_for(
                _read_body(request, opts.max_body_bytes), opts.read_timeout_s
            )
        except TimeoutError:
            return error(
                408,
                "RequestTimeout",
                f"the request body did not arrive within {opts.read_timeout_s:g} s "
                "(ServerOptions.read_timeout_s)",
            )
        if body is None:
            return error(
                413,
                "PayloadTooLarge",
                f"the body is larger than the limit of {opts.max_body_bytes} bytes: send "
                "fewer or smaller images per request",
            )
        parse = functools.partial(
            parse_scoring_request,
            max_image_pixels=opts.max_image_pixels,
            max_request_pixels=opts.max_request_pixels,
        )
        try:
            if len(body) > _BIG_BODY:
                return await asyncio.to_thread(parse, body)
            return parse(body)
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
            bad = await asyncio.to_thread(undecodable_image, images)
            if bad is not None:
                return error(400, "InvalidImage", bad)
            logger.error("model failed on a request of %d images", len(images), exc_info=exc)
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            return error(500, "ModelError", f"the model raised {type(exc).__name__}: {first}")
        try:
            content = json.dumps(answers, separators=(",", ":"), default=_json_default)
        except (TypeError, ValueError) as exc:
            return error(500, "ModelError", f"the model's answer is not JSON: {exc}")
        return Response(content, 200, media_type="application/json")

    async def http_error(_: Request, exc: Exception) -> Response:
        status = int(getattr(exc, "status_code", 500))
        if status == 404:
            return error(404, "NotFound", "no such path: POST /score, GET /health")
        if status == 405:
            return error(405, "MethodNotAllowed", "use POST /score or GET /health")
        detail = str(getattr(exc, "detail", "") or exc)
        return error(status, "HttpError", detail, **dict(getattr(exc, "headers", None) or {}))

    async def server_error(_: Request, exc: Exception) -> Response:
        logger.error("unexpected error", exc_info=exc)
        return error(500, "InternalServerError", f"the server raised {type(exc).__name__}")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, server_error)
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
