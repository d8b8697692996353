"""Batch scoring on this machine, with no server: ``project.score`` and ``detectkit score``.

Worker processes (spawned, so the caller's threads and torch state never leak into them) each
load one copy of the MLflow model with :func:`~detectkit.backends.local.app.load_model` and call
it through :class:`~detectkit.backends.local.app.ModelRunner` with one torch thread, as a local
endpoint's server processes do. The parent lists the images, hands them out in mini-batches of
``batch_size`` (at most two batches queued per worker, so memory stays flat on any number of
images) and writes each finished batch to the output file.

**Output**: the batch output lines Azure ML batch endpoints write and
:func:`detectkit.scoring.response.parse_batch_output` reads, one per image::

    {"filename": "/abs/path/a.jpg", "boxes": [{"box": {"topX": ...}, "label": ..., "score": ...}]}

``filename`` is the image path as given (a folder's images: their absolute paths), boxes are
normalized as AutoML writes them. Lines follow the order batches finish, not the input order.

**Atomic appends, resume.** Each mini-batch is one ``write`` of complete lines on a file opened
for appending, then ``fsync``: a killed scorer leaves whole lines only. ``resume=True`` reads the
file, drops a torn last line (possible only when the machine itself stopped mid-write) and
skips every image already in it, so a run killed at any point and resumed scores each image
exactly once in the output. An existing non-empty output is refused unless ``resume`` or
``overwrite`` says what to do with it.

**Failures.** An image that cannot be read or that the model refuses (a corrupt file) is
reported in :attr:`ScoreResult.failed` with its path and reason and gets no line: a batch that
fails is retried image by image, so one bad image costs only itself. A later ``resume=True``
tries the failed images again.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from detectkit.backends.local.app import ModelRunner, cpu_count, load_model
from detectkit.errors import ConflictError, InvalidInputError, NotFoundError, RunFailedError
from detectkit.images import IMAGE_EXTENSIONS
from detectkit.progress import track
from detectkit.records import ScoreFailure, ScoreResult

__all__ = [
    "RUNTIMES",
    "OutputFile",
    "default_processes",
    "image_files",
    "score_images",
]

RUNTIMES = ("auto", "torch", "onnx")
_MAX_DEFAULT_PROCESSES = 8


def default_processes() -> int:
    """One worker per CPU this process may use, at most 8 (each holds a model copy)."""
    return max(1, min(cpu_count(), _MAX_DEFAULT_PROCESSES))


def image_files(folder: str | os.PathLike[str]) -> list[str]:
    """The images under ``folder`` (recursively, by extension, hidden files left out),
    as sorted absolute paths.

    Raises:
        NotFoundError: ``folder`` is not a folder.
        InvalidInputError: It holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotFoundError(f"{root}: not a folder of images")
    found = sorted(
        str(p.resolve())
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    )
    if not found:
        raise InvalidInputError(
            f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} recursively)"
        )
    return found


# ===================================================================== the output file
class OutputFile:
    """The JSON-lines output: what it already holds, and atomic appends of whole lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def prepare(self, *, resume: bool, overwrite: bool) -> set[str]:
        """Check the file against ``resume``/``overwrite``; the file names already scored.

        Raises:
            ConflictError: The file holds lines and neither ``resume`` nor ``overwrite``.
            InvalidInputError: ``resume`` and a complete line is not a batch output line.
        """
        if self.path.is_dir():
            raise InvalidInputError(f"out: {self.path} is a folder; pass a file path")
        size = self.path.stat().st_size if self.path.exists() else 0
        if size == 0 or overwrite:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"")
            return set()
        if not resume:
            raise ConflictError(
                f"{self.path}: exists and is not empty ({size} bytes)\n  hint: pass "
                "--resume (resume=True) to score only the images not in it yet, or "
                "--overwrite (overwrite=True) to start again"
            )
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line: the machine stopped mid-write
            with self.path.open("r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
        done: set[str] = set()
        for lineno, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise InvalidInputError(
                    f"{self.path} line {lineno}: not valid JSON ({exc}); it is not a batch "
                    "output file detectkit wrote: pass another --out, or --overwrite"
                ) from None
            name = item.get("filename") if isinstance(item, dict) else None
            if not isinstance(name, str):
                raise InvalidInputError(
                    f'{self.path} line {lineno}: expected {{"filename": ..., "boxes": [...]}}, '
                    f"got {line[:80]!r}; pass another --out, or --overwrite"
                )
            done.add(name)
        return done

    def append(self, lines: Sequence[dict[str, Any]]) -> None:
        """Append complete lines in one write, then flush them to disk."""
        if not lines:
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        view = memoryview(data.encode("utf-8"))
        while view:  # one write() for regular files; the loop only guards a short write
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ===================================================================== the workers
_RUNNER: ModelRunner | None = None


def _takes_runtime() -> bool:
    return "runtime" in inspect.signature(load_model).parameters


def _check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise InvalidInputError(f"runtime: expected one of {list(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnx" and not _takes_runtime():
        raise InvalidInputError(
            "runtime: 'onnx' needs a model loader with ONNX Runtime support, which this "
            "detectkit does not have; use runtime='torch' or 'auto'"
        )


def _load(model_path: str, runtime: str) -> Any:
    """``load_model(path)``, passing ``runtime`` when the loader takes it."""
    if _takes_runtime():
        return load_model(model_path, runtime=runtime)  # type: ignore[call-arg,unused-ignore]
    return load_model(model_path)


def _init_worker(model_path: str, runtime: str) -> None:
    global _RUNNER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _RUNNER = ModelRunner(_load(model_path, runtime), threads=1)


def _rss_mb() -> float:
    """This process's resident memory in MiB."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1 << 20 if sys.platform == "darwin" else 1 << 10)


def _score_batch(paths: list[str]) -> tuple[list[tuple[str, Any, str | None]], int, float]:
    """``([(path, answer, error), ...], pid, rss MiB)`` for one mini-batch (in a worker)."""
    runner = _RUNNER
    assert runner is not None, "worker not initialised"
    encoded: list[tuple[str, str]] = []
    out: list[tuple[str, Any, str | None]] = []
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            out.append((path, None, f"cannot read the file ({type(exc).__name__}: {exc})"))
            continue
        encoded.append((path, base64.b64encode(raw).decode("ascii")))
    if encoded:
        try:
            answers = runner([b for _, b in encoded])
            out += [(p, a, None) for (p, _), a in zip(encoded, answers, strict=True)]
        except Exception:
            for path, b in encoded:  # one bad image must not fail the others
                try:
                    (answer,) = runner([b])
                    out.append((path, answer, None))
                except Exception as exc:
                    first = (str(exc).strip().splitlines() or [""])[0][:300]
                    out.append((path, None, f"the model raised {type(exc).__name__}: {first}"))
    return out, os.getpid(), _rss_mb()


def _line(path: str, answer: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The output line for a model answer, or why the answer is not one."""
    boxes = answer.get("boxes") if isinstance(answer, dict) else None
    if not isinstance(boxes, list):
        shown = json.dumps(answer, default=str)[:120]
        return None, f'the model answered {shown}, not {{"boxes": [...]}}'
    return {"filename": path, "boxes": boxes}, None


# ===================================================================== the engine
def score_images(
    model_path: str | os.PathLike[str],
    images: Sequence[str],
    *,
    out: str | os.PathLike[str],
    processes: int | None = None,
    batch_size: int = 8,
    resume: bool = False,
    overwrite: bool = False,
    runtime: str = "auto",
    progress: bool | None = None,
) -> ScoreResult:
    """Score ``images`` with the MLflow model folder ``model_path``; see the module docs.

    Args:
        model_path: An MLflow model folder (``MLmodel`` inside).
        images: Image paths (duplicates are scored once).
        out: The JSON-lines file to append to.
        processes: Worker processes (default :func:`default_processes`; never more than
            there are batches to score).
        batch_size: Images per model call and per atomic append.
        resume: Skip the images ``out`` already holds and append the rest.
        overwrite: Empty ``out`` first.
        runtime: ``"auto"``, ``"torch"`` or ``"onnx"``, passed to the model loader.
        progress: Draw a progress bar on stderr (default: when it is a terminal).

    Raises:
        NotFoundError: ``model_path`` is not an MLflow model folder.
        ConflictError: ``out`` holds lines and neither ``resume`` nor ``overwrite``.
        InvalidInputError: A bad argument, or ``out`` is not a batch output file.
        RunFailedError: A worker died (killed, out of memory) or could not load the model;
            the lines written so far stay, and ``resume=True`` continues.
    """
    started = time.monotonic()
    folder = Path(model_path)
    if not (folder / "MLmodel").is_file():
        raise NotFoundError(
            f"{folder}: not an MLflow model folder (no MLmodel file); pass a registered "
            "model NAME[:VERSION] or the folder that run.download_model() wrote"
        )
    _check_runtime(runtime)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidInputError(f"batch_size: expected an integer of 1 or more, got {batch_size!r}")
    if processes is not None and (
        not isinstance(processes, int) or isinstance(processes, bool) or not 1 <= processes <= 64
    ):
        raise InvalidInputError(f"processes: expected 1 to 64, got {processes!r}")
    if resume and overwrite:
        raise InvalidInputError("resume and overwrite: choose one of them")
    output = OutputFile(Path(out))
    done = output.prepare(resume=resume, overwrite=overwrite)
    unique = list(dict.fromkeys(os.fspath(p) for p in images))
    todo = [p for p in unique if p not in done]
    skipped = len(unique) - len(todo)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    workers = min(processes or default_processes(), max(len(batches), 1))
    failed: list[ScoreFailure] = []
    rss: dict[int, float] = {}
    scored = 0
    try:
        if batches:
            for count, problems in track(
                _run(str(folder.resolve()), batches, workers, runtime, output, rss),
                total=len(todo),
                description="scoring",
                enabled=progress,
            ):
                scored += count
                failed += problems
    finally:
        output.close()
    seconds = time.monotonic() - started
    return ScoreResult(
        out=Path(out),
        scored=scored,
        skipped=skipped,
        failed=tuple(failed),
        seconds=round(seconds, 3),
        images_per_second=round(scored / seconds, 3) if seconds > 0 else 0.0,
        processes=workers if batches else 0,
        runtime=runtime,
        worker_rss_mb=tuple(round(v, 1) for _, v in sorted(rss.items())),
    )


def _run(
    model_path: str,
    batches: list[list[str]],
    workers: int,
    runtime: str,
    output: OutputFile,
    rss: dict[int, float],
) -> Iterator[tuple[int, list[ScoreFailure]]]:
    """Run the batches on ``workers`` processes; yield ``(1, [])`` per image written and
    ``(0, [failure])`` per image failed (so the progress bar counts images)."""
    context = multiprocessing.get_context("spawn")
    pending: set[Future[Any]] = set()
    queue = iter(batches)
    executor = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(model_path, runtime)
    )
    try:
        for batch in queue:
            pending.add(executor.submit(_score_batch, batch))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                results, pid, mb = _result(future)
                rss[pid] = mb
                lines, problems = [], []
                for path, answer, error in results:
                    line, bad = (None, error) if error else _line(path, answer)
                    if line is not None:
                        lines.append(line)
                    else:
                        problems.append(ScoreFailure(image=path, reason=bad or "unknown"))
                output.append(lines)
                for _ in lines:
                    yield 1, []
                for problem in problems:
                    yield 0, [problem]
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(executor.submit(_score_batch, nxt))
    finally:
        for future in pending:
            future.cancel()
        with contextlib.suppress(Exception):
            executor.shutdown(wait=True, cancel_futures=True)


def _result(future: Future[Any]) -> Any:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise RunFailedError(
            "a scoring worker stopped (killed, out of memory, or the model could not load); "
            "the lines written so far are kept\n  hint: run again with resume=True "
            "(--resume) to score the rest, with fewer processes if memory ran out"
        ) from exc
    except InvalidInputError:
        raise
    except Exception as exc:
        raise RunFailedError(
            f"a scoring worker failed: {type(exc).__name__}: {exc}\n  hint: the lines written "
            "so far are kept; fix the cause and run again with resume=True (--resume)"
        ) from exc
