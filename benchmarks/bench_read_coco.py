"""Reading COCO at scale: ``read_dataset`` versus the standard library's ``json.load``.

Generates COCO files of ``--images`` images with 8 boxes each (seeded, full float precision;
the generator of ``bench_convert.py``), then measures, each in a fresh interpreter so peaks do
not mix:

* ``json.load``: the standard library decoding the file, nothing else (the yardstick);
* ``msgspec``: the decoder detectkit uses, on the same file (the floor detectkit pays);
* detectkit: ``read_dataset(path, "coco")``: decode, check every id, reference, box and
  size, and build the ``LabeledDataset``.

Time is wall-clock of the call; memory is the process's peak resident set (``VmHWM``) minus
its resident set just before the call, with numpy, pydantic and detectkit already imported in
every child, so only the reading is counted. Medians of ``--rounds`` runs each. Two sizes
(default 50,000 and 100,000 images: 400,000 and 800,000 boxes) show whether cost stays linear
in boxes. Targets: at most 1.5x the time and 1.2x the peak memory of ``json.load``.

Run: ``python benchmarks/bench_read_coco.py [--images 50000 100000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("json.load", "msgspec", "detectkit")


def _status(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def child(kind: str, path: str) -> None:
    """Read ``path`` one way; print ``{"s": seconds, "mb": peak MiB above the start}``."""
    import msgspec
    import numpy  # noqa: F401  (imported in every child, so the baselines match)
    import pydantic  # noqa: F401

    from detectkit.formats import read_dataset

    before = _status("VmRSS:")
    start = time.perf_counter()
    if kind == "json.load":
        with open(path, "rb") as fh:
            result: object = json.load(fh)
    elif kind == "msgspec":
        with open(path, "rb") as fh:
            result = msgspec.json.decode(fh.read())
    else:
        result = read_dataset(path, "coco")
    seconds = time.perf_counter() - start
    peak = _status("VmHWM:") - before
    del result
    print(json.dumps({"s": seconds, "mb": peak}))


def measure(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return {}

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_convert import make_coco

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.images:
            path = Path(tmp) / f"coco_{n}.json"
            boxes = make_coco(path, n)
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
            for _ in range(args.rounds):  # rounds interleave the three
                for kind in KINDS:
                    runs[kind].append(measure(kind, path))
            med = {
                k: (statistics.median(r["s"] for r in v), statistics.median(r["mb"] for r in v))
                for k, v in runs.items()
            }
            t_json, m_json = med["json.load"]
            print(
                f"{n} images, {boxes} boxes, {path.stat().st_size / 1e6:.0f} MB, "
                f"median of {args.rounds}:"
            )
            for kind in KINDS:
                t, m = med[kind]
                print(
                    f"  {kind:>10}: {t:6.2f} s ({t / t_json:.2f}x) | peak +{m:5.0f} MiB "
                    f"({m / m_json:.2f}x) | {t / boxes * 1e6:.2f} us per box"
                )
                results[f"{n}: {kind} s"] = t
                results[f"{n}: {kind} MiB"] = m
    return results


if __name__ == "__main__":
    main()
