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
(see :mod:`detectkit.backends.local.endpoints`). This module is the process (supervisor,
socket, entry point); the application it runs (request checks, batching, the FastAPI app) is
:mod:`detectkit.backends.local.app`, whose documented names are re-exported here. FastAPI,
uvicorn, MLflow and pandas are imported only when a server starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from detectkit.backends.local.app import (
    NO_INPUT_DATA,
    ModelRunner,
    ScoringRequestError,
    ServerOptions,
    cpu_count,
    create_app,
    load_model,
    normalize_output,
    parse_scoring_request,
)
from detectkit.errors import DetectkitError, missing_dependency

__all__ = [
    "NO_INPUT_DATA",
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

#: ``sys.setswitchinterval`` of a server process (see :func:`serve_forever`).
SWITCH_INTERVAL_S = 0.0005


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
    model = load_model(model_path, runtime=opts.runtime)
    onnx = getattr(model, "runtime", None) == "onnx"
    opts = _resolve_options(opts, torch_model="torch" in sys.modules and not onnx)
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
        f"inference_mode, {threads} threads each"
        if runner.uses_torch
        else f"not used (runtime {runner.runtime})",
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
    cpus = cpu_count()
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
    parser.add_argument("--runtime", choices=["auto", "torch", "onnx"], default=defaults.runtime)
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
        runtime=args.runtime,
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
