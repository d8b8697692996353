"""Benchmark: COCO -> Azure ML JSONL -> COCO conversion time and peak memory.

Generates a COCO file of N images with about 8 boxes each (default 50,000 images / 400,000
boxes), then times ``read_coco -> write_azureml -> read_azureml -> write_coco`` (median of
``--repeat`` runs) at 1/4, 1/2 and the full size to show that the cost is linear, and loads the
same file with ``supervision.DetectionDataset.from_coco`` for comparison. supervision does not
open the images while loading, so no image files are created (the references point at files
that do not exist, which neither reader needs).

Generating the file and each measurement run in their own subprocess, so that the peak memory
reported (``VmHWM``, the resident-set high-water mark of the process) is that run's own.
Not part of the test suite::

    python benchmarks/bench_convert.py                 # 50,000 images
    python benchmarks/bench_convert.py --images 5000   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

CLASSES = ("hearts", "spades", "diamonds", "clubs", "joker", "ace", "king", "queen", "jack", "ten")
SIZES = ((640, 480), (1280, 720), (1920, 1080), (800, 800))


def make_coco(path: Path, n_images: int, boxes_per_image: int = 8, seed: int = 0) -> int:
    """Write a COCO file of ``n_images`` with ``boxes_per_image`` boxes each; return the count."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = []
    annotations = []
    aid = 0
    for i in range(1, n_images + 1):
        width, height = SIZES[i % len(SIZES)]
        images.append(
            {"id": i, "file_name": f"images/{i:07d}.jpg", "width": width, "height": height}
        )
        xy = rng.uniform(0.0, 0.7, size=(boxes_per_image, 2))
        wh = rng.uniform(0.02, 0.3, size=(boxes_per_image, 2))
        cats = rng.integers(1, len(CLASSES) + 1, size=boxes_per_image)
        for (x, y), (w, h), c in zip(xy, wh, cats, strict=True):
            aid += 1
            bw, bh = float(w * width), float(h * height)
            annotations.append(
                {
                    "id": aid,
                    "image_id": i,
                    "category_id": int(c),
                    "bbox": [float(x * width), float(y * height), bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k, "name": name} for k, name in enumerate(CLASSES, 1)]
    with path.open("w", encoding="utf-8") as fh:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, fh)
    return aid


def _peak_mb() -> float:
    """Peak resident memory of this process in MiB.

    ``/proc/self/status`` VmHWM belongs to this program's own address space; ``ru_maxrss``
    (the fallback off Linux) can carry over the parent's peak across ``fork``/``exec``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def run_one(folder: Path, repeat: int) -> dict[str, Any]:
    """Time the conversion chain on ``folder/coco.json`` in this process.

    Wall and CPU seconds are both reported: on a shared machine the CPU time is the steadier
    measure of the work done.
    """
    from detectkit.formats.azureml import read_azureml, write_azureml
    from detectkit.formats.coco import read_coco, write_coco

    coco = folder / "coco.json"
    base_mb = _peak_mb()
    names = ("read_coco", "write_azureml", "read_azureml", "write_coco")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    boxes = 0
    for _ in range(repeat):
        marks = [_clock()]
        ds, report = read_coco(coco)
        marks.append(_clock())
        jsonl = write_azureml(ds, folder / "train.jsonl")
        marks.append(_clock())
        del ds
        ds2, report2 = read_azureml(jsonl)
        marks.append(_clock())
        write_coco(ds2, folder / "back.json")
        marks.append(_clock())
        if not (report.ok and report2.ok):
            raise RuntimeError(report.to_text(5) + "\n" + report2.to_text(5))
        boxes = ds2.num_boxes
        del ds2
        for k, name in enumerate(names):
            wall[name].append(marks[k + 1][0] - marks[k][0])
            cpu[name].append(marks[k + 1][1] - marks[k][1])
    wall_median = {name: statistics.median(v) for name, v in wall.items()}
    cpu_median = {name: statistics.median(v) for name, v in cpu.items()}
    return {
        "boxes": boxes,
        "seconds": {k: round(v, 3) for k, v in wall_median.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in cpu_median.items()},
        "total_seconds": round(sum(wall_median.values()), 3),
        "total_cpu_seconds": round(sum(cpu_median.values()), 3),
        "peak_rss_mb": round(_peak_mb(), 1),
        "rss_after_imports_mb": round(base_mb, 1),
    }


def run_supervision(folder: Path, repeat: int) -> dict[str, Any]:
    """Time ``supervision.DetectionDataset.from_coco`` on the same file, in this process."""
    warnings.simplefilter("ignore")
    import supervision as sv

    base_mb = _peak_mb()
    wall: list[float] = []
    cpu: list[float] = []
    count = 0
    for _ in range(repeat):
        start = _clock()
        ds = sv.DetectionDataset.from_coco(
            images_directory_path=str(folder), annotations_path=str(folder / "coco.json")
        )
        end = _clock()
        wall.append(end[0] - start[0])
        cpu.append(end[1] - start[1])
        count = len(ds)
        del ds
    return {
        "images": count,
        "from_coco_seconds": round(statistics.median(wall), 3),
        "from_coco_cpu_seconds": round(statistics.median(cpu), 3),
        "peak_rss_mb": round(_peak_mb(), 1),
        "rss_after_imports_mb": round(base_mb, 1),
    }


def _child(kind: str, folder: Path, repeat: int, images: int = 0) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--folder", str(folder)]
    command += ["--repeat", str(repeat), "--images", str(images)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _ratios(sizes: list[dict[str, Any]], with_supervision: bool) -> dict[str, Any]:
    quarter, full = sizes[0], sizes[-1]
    dk_quarter, dk_half, dk_full = (s["detectkit"] for s in sizes)

    def per_box(entry: dict[str, Any], key: str) -> float:
        return round(float(entry["detectkit"][key]) / float(entry["boxes"]) * 1e6, 2)

    ratios: dict[str, Any] = {
        "images_full_over_quarter": round(full["images"] / quarter["images"], 2),
        "cpu_full_over_quarter": round(
            dk_full["total_cpu_seconds"] / dk_quarter["total_cpu_seconds"], 2
        ),
        "cpu_full_over_half": round(dk_full["total_cpu_seconds"] / dk_half["total_cpu_seconds"], 2),
        "wall_full_over_quarter": round(dk_full["total_seconds"] / dk_quarter["total_seconds"], 2),
        "cpu_microseconds_per_box": [per_box(s, "total_cpu_seconds") for s in sizes],
        "wall_microseconds_per_box": [per_box(s, "total_seconds") for s in sizes],
    }
    if with_supervision:
        sv_full = full["supervision"]
        ratios["read_coco_over_supervision_from_coco_cpu"] = round(
            dk_full["cpu_seconds"]["read_coco"] / sv_full["from_coco_cpu_seconds"], 2
        )
        ratios["read_coco_over_supervision_from_coco_wall"] = round(
            dk_full["seconds"]["read_coco"] / sv_full["from_coco_seconds"], 2
        )
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="images at full size")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument("--no-supervision", action="store_true", help="skip the comparison")
    parser.add_argument(
        "--child", choices=("make", "detectkit", "supervision"), help=argparse.SUPPRESS
    )
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "make":
        print(json.dumps({"boxes": make_coco(args.folder / "coco.json", args.images)}))
        return
    if args.child:
        run = run_one if args.child == "detectkit" else run_supervision
        print(json.dumps(run(args.folder, args.repeat)))
        return

    sizes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        for fraction in (0.25, 0.5, 1.0):
            n = max(1, round(args.images * fraction))
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            entry: dict[str, Any] = {
                "images": n,
                "boxes": _child("make", folder, 1, images=n)["boxes"],
                "coco_mb": round((folder / "coco.json").stat().st_size / 2**20, 1),
                "detectkit": _child("detectkit", folder, args.repeat),
            }
            if not args.no_supervision:
                entry["supervision"] = _child("supervision", folder, args.repeat)
            sizes.append(entry)
            print(json.dumps(entry), file=sys.stderr)  # progress
    result = {
        "images": args.images,
        "repeat": args.repeat,
        "sizes": sizes,
        "ratios": _ratios(sizes, not args.no_supervision),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
