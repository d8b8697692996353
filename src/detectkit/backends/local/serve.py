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
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import threading
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
#: The answer header naming the server process that answered.
PROCESS_HEADER = "X-Server-Process"
#: Seconds between a server process's checks that its supervisor is still there.
PARENT_POLL_S = 0.5


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
    pids_file: str | os.PathLike[str] | None = None,
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
        pids_file: Where the supervisor keeps ``{"supervisor": pid, "processes": [...]}``, the
            server processes it runs now (rewritten when one is replaced), so that whoever
            stops the endpoint can stop each of them, even after the supervisor was killed.

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

    # several processes: each listens on its own SO_REUSEPORT socket, so that the kernel
    # spreads the connections over them (on one shared socket the process that wakes first
    # accepts every pending connection, even while its model is busy); this one only reserves
    # the port and never listens, so no connection waits on a socket nobody accepts
    reuse_port = processes > 1 and hasattr(socket, "SO_REUSEPORT")
    sock = _bind(host, port, port_fallback, reuse_port=reuse_port)
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
        listening = sock
        if reuse_port:
            listening = _bind(host, bound, False, reuse_port=True, listen=True)
            sock.close()  # this process's copy of the reserving socket
        config = uvicorn.Config(
            app,
            log_level="info",
            access_log=opts.access_log,
            timeout_graceful_shutdown=5,
            log_config=None,
            http=_read_timeout_protocol(opts.read_timeout_s),
            # which server process answered (GET /health names the supervisor)
            headers=[(PROCESS_HEADER, str(os.getpid()))],
        )
        uvicorn.Server(config).run(sockets=[listening])

    if ready_file is not None:
        _write_json(Path(ready_file), {"pid": server_pid, "host": host, "port": bound})
    if processes > 1:
        _supervise(run, processes, Path(pids_file) if pids_file is not None else None)
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


def _supervise(run: Callable[[], None], processes: int, pids_file: Path | None = None) -> None:
    """Run ``run`` in ``processes`` forked children; restart a child that dies; on SIGTERM or
    SIGINT stop them all and return.

    The children inherit the loaded model (copy-on-write) and stay in this process group, so
    stopping the group stops every one of them; each also dies with this process (a
    parent-death signal on Linux, and everywhere a thread that watches its parent), so a
    killed supervisor leaves no server process behind. ``pids_file`` lists them.
    """
    children: dict[int, float] = {}
    quick_deaths = 0
    supervisor = os.getpid()

    def record(first: bool = False) -> None:
        # a redeploy's new supervisor takes the file over: rewrite only while it names this one
        if pids_file is None or (not first and _listed_supervisor(pids_file) != supervisor):
            return
        _write_json(pids_file, {"supervisor": supervisor, "processes": sorted(children)})

    def spawn() -> None:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child, reported through its exit
            code = 0
            try:
                _die_with_parent(supervisor)
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
        record(first=True)
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
            record()
    except _Stop:
        logger.info("stopping %d server processes", len(children))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_children(children)


def _listed_supervisor(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("supervisor")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _die_with_parent(parent: int) -> None:
    """Make this (forked) process exit when ``parent`` does: ``PR_SET_PDEATHSIG`` on Linux,
    and a daemon thread polling the parent id everywhere (and for the moment before the
    signal was armed)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


_PR_SET_PDEATHSIG = 1


def _read_timeout_protocol(timeout_s: float) -> type[Any]:
    """uvicorn's h11 protocol, closing a connection whose request headers have not all
    arrived ``timeout_s`` after it opened or after the previous answer (uvicorn's own
    keep-alive timer restarts on every byte, so a client trickling a byte a second would hold
    the connection forever)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ReadTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _expired(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                with contextlib.suppress(h11.LocalProtocolError):
                    self.conn.send(h11.ConnectionClosed())
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._waiting_for_headers():
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()
                if not self._waiting_for_headers():  # a pipelined request already in
                    self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return ReadTimeoutProtocol


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


def _bind(
    host: str, port: int, fallback: bool, *, reuse_port: bool = False, listen: bool | None = None
) -> socket.socket:
    """A socket bound to ``host:port`` (listening unless ``reuse_port``, when the caller's
    server processes each listen on their own socket of the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if reuse_port and listen is None:
        # a port held by another program's SO_REUSEPORT socket would be shared with it: take
        # the port first without the option, which fails when anything holds it
        probe = _bind(host, port, fallback, listen=False)
        port = probe.getsockname()[1]
        probe.close()
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP,
    # and headers and body are written apart (Nagle + delayed ACK would add 40 ms a request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
    if listen if listen is not None else not reuse_port:
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
    parser.add_argument("--pids-file", type=Path, help="where the server processes are listed")
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
    parser.add_argument("--max-image-pixels", type=int, default=defaults.max_image_pixels)
    parser.add_argument("--max-request-pixels", type=int, default=defaults.max_request_pixels)
    parser.add_argument("--read-timeout", type=float, default=defaults.read_timeout_s)
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
        max_image_pixels=args.max_image_pixels,
        max_request_pixels=args.max_request_pixels,
        read_timeout_s=args.read_timeout,
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
            pids_file=args.pids_file,
        )
    except DetectkitError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
