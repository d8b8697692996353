"""The labeling page's HTTP server: the standard library only, on 127.0.0.1, with a token.

:class:`LabelingServer` serves one :class:`~detectkit.labeling.store.LabelingStore`: the page
(``/?token=...``; its script and style sheet ship inside the package, nothing is loaded from
the internet) and a small JSON API the page calls. Every API call must carry the token, in the
``X-Detectkit-Token`` header or the ``token`` query parameter (images, which an ``<img>``
element loads); without it the answer is 401. Errors share one shape::

    {"error": {"status": 409, "code": "conflict", "message": "..."}, "current": {...}}

API (``<id>`` is an opaque image id from the index; anything else is a 404 that reads no file):

=======  ==========================  =====================================================
GET      ``/api/project``            name, classes, instructions, progress
GET      ``/api/images``             ids, names, states and box counts, in labeling order
GET      ``/api/images?offset=&limit=``  one window of that list (see below)
GET      ``/api/images/<id>``        an image's labels, revision and displayed size
GET      ``/api/images/<id>/file``   the image file
PUT      ``/api/images/<id>``        save ``{"revision", "state", "boxes"}``; 409 when stale
GET      ``/api/progress``           counts by state and boxes by class
GET      ``/api/assistant``          the background model's state (``null`` when it is off)
POST     ``/api/export``             export (when the project can), answers a message
=======  ==========================  =====================================================

The page asks for windows, so what it loads does not grow with the project:
``/api/images?state=up&at=P&offset=K&limit=N`` answers the images whose state code is one of
``state`` (all when empty), in labeling order, starting ``K`` rows after the first one at or
after position ``P`` of the labeling order (``K`` may be negative: ``at=P&offset=-1&limit=1``
is the image before ``P``), as ``{"images", "total", "offset", "positions", "ids", "names",
"states", "boxes"}`` (``total``: the images matching ``state``; ``offset``: the first row's
index among them). Without any of these parameters the answer is the whole list.
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import secrets
import threading
import webbrowser
from bisect import bisect_left
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from detectkit.errors import ConflictError, DetectkitError, InvalidInputError, NotFoundError
from detectkit.labeling.labels import parse_boxes
from detectkit.labeling.review import ORDERS, labeling_order
from detectkit.labeling.store import StaleRevisionError

if TYPE_CHECKING:
    from detectkit.labeling.assist import Assistant
    from detectkit.labeling.store import LabelingStore

__all__ = ["MAX_BODY_BYTES", "LabelingServer"]

logger = logging.getLogger("detectkit.labeling")

#: The largest request body accepted (a save of a few thousand boxes fits easily).
MAX_BODY_BYTES = 1 << 20
TOKEN_HEADER = "X-Detectkit-Token"
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
_CODES |= {409: "conflict", 413: "too_large", 500: "internal_error"}
_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_WINDOW_KEYS = frozenset({"offset", "limit", "state", "at"})
_STATE_CODES = frozenset("uplsr")
#: The most rows one window request answers.
MAX_WINDOW = 1000
_TRANSCODE = (".tif", ".tiff")  # browsers do not show TIFF: sent as PNG (orientation applied)


class LabelingServer:
    """The labeling page for one store, served on ``127.0.0.1``.

    Start it in a background thread with :meth:`start` (or as a context manager), or in the
    foreground with :meth:`run` (the command line); :meth:`stop` ends it.

    Args:
        store: The project's store.
        port: The port (default: a free one).
        token: The access token (default: a new random one).
        exporter: Called by the page's Export button; returns the message to show.
        syncer: Called every ``sync_interval`` seconds while there are new saves, and on stop
            (the Azure backend pushes the labels to the workspace; ``--in-place`` writes the
            source file back).
        sync_interval: Seconds between syncs.
        order: ``"index"`` (file order), ``"random"`` (a fixed shuffle), or ``"uncertainty"``
            (also ``"least_confident"``, ``"margin"``, ``"entropy"``): the images still to label
            ranked by their drafts' scores, most uncertain first (see
            :func:`~detectkit.labeling.review.labeling_order`; fixed when first asked for).
        assistant: The background model of ML assistance (see
            :mod:`detectkit.labeling.assist`): started when the server starts and after a save
            once it is due; ``/api/assistant`` answers its state.
    """

    def __init__(
        self,
        store: LabelingStore,
        *,
        port: int | None = None,
        token: str | None = None,
        exporter: Callable[[], str] | None = None,
        syncer: Callable[[], None] | None = None,
        sync_interval: float = 5.0,
        order: str = "index",
        assistant: Assistant | None = None,
    ) -> None:
        if order not in ORDERS:
            raise InvalidInputError(f"order: expected one of {list(ORDERS)}, got {order!r}")
        self.store = store
        self.token = token or secrets.token_urlsafe(24)
        self.exporter = exporter
        self.syncer = syncer
        self.sync_interval = sync_interval
        self.order = order
        #: The background model (ML assistance), started when enough images are labeled.
        self.assistant = assistant
        try:
            self._httpd = _HTTPServer(("127.0.0.1", port or 0), _Handler, app=self)
        except OSError as exc:
            raise ConflictError(
                f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; pass another port "
                "(or none, for a free one)"
            ) from exc
        self.port: int = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None
        self._sync_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._synced = store.changes
        self._sync_lock = threading.Lock()
        self.last_sync_error: str | None = None
        self._order: list[int] | None = None

    # ---------------------------------------------------------------- public
    @property
    def url(self) -> str:
        """The page to open, token included."""
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` has run."""
        return self._stopped.is_set()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped.is_set() else "serving"
        return f"LabelingServer(project={self.store.name!r}, port={self.port}, {state})"

    def start(self, *, open_browser: bool = False) -> LabelingServer:
        """Serve in a background thread; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"detectkit-labeling-{self.port}",
                daemon=True,
            )
            self._thread.start()
            self._start_syncing()
            self.start_assistant_if_due()
        if open_browser:
            webbrowser.open(self.url)
        return self

    def run(self, *, open_browser: bool = False) -> None:
        """Serve in this thread until :meth:`stop` or Ctrl-C (``KeyboardInterrupt``)."""
        self._start_syncing()
        self.start_assistant_if_due()
        if open_browser:
            threading.Timer(0.2, webbrowser.open, args=(self.url,)).start()
        try:
            self._httpd.serve_forever(poll_interval=0.1)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, sync once more, and close the socket."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
        self._httpd.server_close()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=10)
        self.sync()

    def sync(self) -> None:
        """Call the syncer now if there were saves since the last sync."""
        if self.syncer is None:
            return
        with self._sync_lock:
            changes = self.store.changes
            if changes == self._synced:
                return
            try:
                self.syncer()
            except Exception as exc:  # keep serving; the next sync tries again
                self.last_sync_error = f"{type(exc).__name__}: {exc}"
                logger.warning("labeling project %s: sync failed: %s", self.store.name, exc)
            else:
                self._synced = changes
                self.last_sync_error = None

    def __enter__(self) -> LabelingServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals
    def _start_syncing(self) -> None:
        if self.syncer is None or self._sync_thread is not None:
            return

        def loop() -> None:
            while not self._stopped.wait(self.sync_interval):
                self.sync()

        self._sync_thread = threading.Thread(
            target=loop, name="detectkit-labeling-sync", daemon=True
        )
        self._sync_thread.start()

    def start_assistant_if_due(self) -> None:
        """Start the background trainer when enough new labels are saved (never fails a save)."""
        if self.assistant is None:
            return
        try:
            self.assistant.maybe_start()
        except Exception as exc:  # the labels are saved; the trainer tries again next save
            logger.warning("labeling project %s: trainer not started: %s", self.store.name, exc)

    def authorized(self, given: str | None) -> bool:
        """Whether ``given`` is the token (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def ordered(self) -> list[int]:
        """Index positions in labeling order (computed once, so the list stays put)."""
        if self._order is None:
            self._order = labeling_order(self.store, self.order)
        return self._order


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], handler: Any, *, app: LabelingServer) -> None:
        self.app = app
        super().__init__(address, handler)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms ACK wait)
    server_version = "detectkit-labeling"
    sys_version = ""
    server: _HTTPServer

    # ---------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        parts = urlsplit(self.path)
        self._query = parse_qs(parts.query)
        segments = [s for s in parts.path.split("/") if s]
        try:
            self._route(app, method, segments)
        except _HTTPError as exc:
            self._error(exc.status, str(exc), exc.extra)
        except StaleRevisionError as exc:
            self._error(409, str(exc), {"current": exc.current.to_json()})
        except NotFoundError as exc:
            self._error(404, str(exc))
        except ConflictError as exc:
            self._error(409, str(exc))
        except InvalidInputError as exc:
            self._error(400, str(exc))
        except DetectkitError as exc:
            self._error(500, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            logger.exception("labeling server: %s %s failed", method, parts.path)
            self._error(500, f"{type(exc).__name__}: {exc}")

    def _route(self, app: LabelingServer, method: str, seg: list[str]) -> None:
        if not seg or seg == ["index.html"]:
            self._allow(method, "GET")
            self._check_token(app, page=True)
            return self._static("index.html", "text/html; charset=utf-8", page=True)
        if seg[0] == "static" and len(seg) == 2 and seg[1] in _STATIC:
            self._allow(method, "GET")
            return self._static(seg[1], _STATIC[seg[1]])
        if seg[0] != "api":
            raise _HTTPError(404, f"no page at {self.path.split('?', 1)[0]}")
        self._check_token(app)
        store = app.store
        if seg == ["api", "project"]:
            self._allow(method, "GET")
            return self._json(
                {
                    "name": store.name,
                    "classes": list(store.classes),
                    "instructions": store.instructions,
                    "progress": store.progress().model_dump(),
                    "can_export": app.exporter is not None,
                    "sync_error": app.last_sync_error,
                    "order": app.order,
                }
            )
        if seg == ["api", "assistant"]:
            self._allow(method, "GET")
            assistant = app.assistant
            if assistant is None:
                return self._json(None)
            shown = assistant.poll().model_dump()
            return self._json({**shown, "min_labeled": assistant.settings.min_labeled})
        if seg == ["api", "progress"]:
            self._allow(method, "GET")
            return self._json(store.progress().model_dump())
        if seg == ["api", "export"]:
            self._allow(method, "POST")
            if app.exporter is None:
                raise _HTTPError(404, "this labeling project has no export here")
            self._read_body()
            return self._json({"message": app.exporter()})
        if seg == ["api", "images"]:
            self._allow(method, "GET")
            if _WINDOW_KEYS.isdisjoint(self._query):
                return self._json(_image_list(app))
            return self._json(_image_window(app, self._query))
        if len(seg) == 3 and seg[1] == "images":
            entry = store.entry(seg[2])  # NotFoundError (404) before any file is touched
            self._allow(method, "GET", "PUT")
            if method == "GET":
                return self._json(_labels_json(store, entry.id))
            body = self._read_body()
            if not isinstance(body, dict):
                raise _HTTPError(400, "expected a JSON object {revision, state, boxes}")
            revision = body.get("revision")
            if isinstance(revision, bool) or not isinstance(revision, int):
                raise _HTTPError(400, f"revision: expected an integer, got {revision!r}")
            saved = store.save(
                entry.id,
                revision=revision,
                state=body.get("state", "labeled"),
                objects=parse_boxes(body.get("boxes"), where="boxes"),
            )
            app.start_assistant_if_due()
            return self._json({**saved.to_json(), "progress": store.progress().model_dump()})
        if len(seg) == 4 and seg[1] == "images" and seg[3] == "file":
            entry = store.entry(seg[2])
            self._allow(method, "GET")
            return self._image(store, entry.id)
        raise _HTTPError(404, f"no API at {self.path.split('?', 1)[0]}")

    # ---------------------------------------------------------------- checks
    def _allow(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _HTTPError(405, f"{method} is not allowed here; use {' or '.join(allowed)}")

    def _check_token(self, app: LabelingServer, *, page: bool = False) -> None:
        given = self.headers.get(TOKEN_HEADER)
        if given is None:
            values = self._query.get("token")
            given = values[0] if values else None
        if not app.authorized(given):
            what = "the page" if page else "every API call"
            raise _HTTPError(
                401,
                f"missing or wrong token: {what} needs the token from the URL that "
                "`detectkit label` (or LabelingProject.serve()) printed",
            )

    def _read_body(self) -> Any:
        length_text = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            raise _HTTPError(
                400, f"Content-Length: expected a number, got {length_text!r}"
            ) from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            raise _HTTPError(413, f"request body of {length} bytes; at most {MAX_BODY_BYTES}")
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _HTTPError(400, f"request body: not valid JSON ({exc})") from exc

    # ---------------------------------------------------------------- answers
    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json", {"Cache-Control": "no-store"})

    def _error(self, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
        payload = {
            "error": {"status": status, "code": _CODES.get(status, "error"), "message": message}
        }
        headers = {"Cache-Control": "no-store"}
        if status == 405:
            headers["Allow"] = "GET, PUT, POST"
        body = json.dumps({**payload, **(extra or {})}, ensure_ascii=False).encode("utf-8")
        try:
            self._send(status, body, "application/json", headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _static(self, name: str, content_type: str, *, page: bool = False) -> None:
        data = resources.files("detectkit.labeling").joinpath("static", name).read_bytes()
        headers = {"Cache-Control": "no-cache"}
        if page:
            headers["Content-Security-Policy"] = _PAGE_POLICY
        self._send(200, data, content_type, headers)

    def _image(self, store: LabelingStore, image: str) -> None:
        path = store.image_file(image)
        if path.suffix.lower() in _TRANSCODE:
            import io

            from PIL import Image as PILImage
            from PIL import ImageOps

            with PILImage.open(path) as im:
                shown = ImageOps.exif_transpose(im).convert("RGB")
            out = io.BytesIO()
            shown.save(out, format="PNG")
            data, content_type = out.getvalue(), "image/png"
        else:
            data = path.read_bytes()
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(200, data, content_type, {"Cache-Control": "private, max-age=3600"})


def _image_list(app: LabelingServer) -> dict[str, Any]:
    store = app.store
    entries = store.entries
    states, counts = store.overview()
    order = app.ordered()
    return {
        "ids": [entries[i].id for i in order],
        "names": [entries[i].name for i in order],
        "states": "".join(states[i] for i in order),
        "boxes": [counts[i] for i in order],
    }


def _query_int(query: dict[str, list[str]], key: str, default: int) -> int:
    values = query.get(key)
    if not values or values[0] == "":
        return default
    try:
        return int(values[0])
    except ValueError:
        raise _HTTPError(400, f"{key}: expected an integer, got {values[0]!r}") from None


def _image_window(app: LabelingServer, query: dict[str, list[str]]) -> dict[str, Any]:
    """One window of the image list (see the module docstring); its cost is the window's, plus
    one pass over a byte per image when a state filter is given."""
    store = app.store
    wanted = (query.get("state") or [""])[0]
    if not set(wanted) <= _STATE_CODES:
        raise _HTTPError(400, f"state: expected letters of 'uplsr', got {wanted!r}")
    limit = _query_int(query, "limit", 100)
    if not 0 <= limit <= MAX_WINDOW:
        raise _HTTPError(400, f"limit: expected 0 to {MAX_WINDOW}, got {limit}")
    at = max(0, _query_int(query, "at", 0))
    offset = _query_int(query, "offset", 0)
    order = app.ordered()
    codes = store.codes()
    if wanted:
        keep = {ord(c) for c in wanted}
        positions: list[int] | range = [p for p, i in enumerate(order) if codes[i] in keep]
    else:
        positions = range(len(order))
    total = len(positions)
    start = bisect_left(positions, at) + offset
    first = min(max(0, start), total)
    rows = positions[first : max(first, start + limit)]
    entries = store.entries
    return {
        "images": len(order),
        "total": total,
        "offset": first,
        "positions": list(rows),
        "ids": [entries[order[p]].id for p in rows],
        "names": [entries[order[p]].name for p in rows],
        "states": "".join(chr(codes[order[p]]) for p in rows),
        "boxes": [store.box_count(order[p]) for p in rows],
    }


def _labels_json(store: LabelingStore, image: str) -> dict[str, Any]:
    labels = store.labels(image)
    if labels.width is None or labels.height is None:
        width, height = store.image_size(image)
        labels = labels.model_copy(update={"width": width, "height": height})
    entry = store.entry(image)
    return {**labels.to_json(), "name": entry.name}
