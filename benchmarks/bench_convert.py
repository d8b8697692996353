"""Benchmark: COCO -> Azure ML JSONL -> COCO conversion time and peak memory.

Generates a COCO file of N images with about 8 boxes each (default 50,000 images / 400,000
boxes), then times ``read_coco -> write_azureml -> read_azureml -> write_coco`` (median of
``--repeat`` runs) at 1/4, 1/2 and the full size to show that the cost is linear, and loads the
same file with ``supervision.DetectionDataset.from_coco`` for comparison. supervision does not
open the images while loading, so no image files are created (the references point at files
that do not exist, which neither reader needs).

Each size runs in its own subprocess so that peak memory (``ru_maxrss``) is that size's own.
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def run_one(folder: Path, repeat: int) -> dict[str, object]:
    """Time the conversion chain on ``folder/coco.json`` in this process."""
    from detectkit.formats.azureml import read_azureml, write_azureml
    from detectkit.formats.coco import read_coco, write_coco

    coco = folder / "coco.json"
    base_mb = _peak_mb()
    stages: dict[str, list[float]] = {
        "read_coco": [],
        "write_azureml": [],
        "read_azureml": [],
        "write_coco": [],
    }
    boxes = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        ds, report = read_coco(coco)
        t1 = time.perf_counter()
        jsonl = write_azureml(ds, folder / "train.jsonl")
        t2 = time.perf_counter()
        del ds
        ds2, report2 = read_azureml(jsonl)
        t3 = time.perf_counter()
        write_coco(ds2, folder / "back.json")
        t4 = time.perf_counter()
        assert report.ok and report2.ok, (report.to_text(5), report2.to_text(5))
        boxes = ds2.num_boxes
        del ds2
        for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[name].append(seconds)
    medians = {name: statistics.median(v) for name, v in stages.items()}
    return {
        "boxes": boxes,
        "seconds": {k: round(v, 3) for k, v in medians.items()},
        "total_seconds": round(sum(medians.values()), 3),
        "peak_rss_mb": round(_peak_mb(), 1),
        "rss_after_imports_mb": round(base_mb, 1),
    }


def run_supervision(folder: Path, repeat: int) -> dict[str, object]:
    """Time ``supervision.DetectionDataset.from_coco`` on the same file, in this process."""
    warnings.simplefilter("ignore")
    import supervision as sv

    base_mb = _peak_mb()
    times = []
    count = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        ds = sv.DetectionDataset.from_coco(
            images_directory_path=str(folder), annotations_path=str(folder / "coco.json")
        )
        times.append(time.perf_counter() - t0)
        count = len(ds)
        del ds
    return {
        "images": count,
        "from_coco_seconds": round(statistics.median(times), 3),
        "peak_rss_mb": round(_peak_mb(), 1),
        "rss_after_imports_mb": round(base_mb, 1),
    }


def _child(kind: str, folder: Path, repeat: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--folder", str(folder), "--repeat", str(repeat)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="images at full size")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument("--no-supervision", action="store_true", help="skip the comparison")
    parser.add_argument("--child", choices=("detectkit", "supervision"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run = run_one if args.child == "detectkit" else run_supervision
        print(json.dumps(run(args.folder, args.repeat)))
        return

    results: dict[str, object] = {"images": args.images, "repeat": args.repeat, "sizes": []}
    sizes: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        for fraction in (0.25, 0.5, 1.0):
            n = max(1, round(args.images * fraction))
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            boxes = make_coco(folder / "coco.json", n)
            entry: dict[str, object] = {
                "images": n,
                "boxes": boxes,
                "coco_mb": round((folder / "coco.json").stat().st_size / 2**20, 1),
                "detectkit": _child("detectkit", folder, args.repeat),
            }
            if not args.no_supervision:
                entry["supervision"] = _child("supervision", folder, args.repeat)
            sizes.append(entry)
            print(json.dumps(entry), file=sys.stderr)
    results["sizes"] = sizes
    full, quarter = sizes[-1], sizes[0]

    def total(entry: dict[str, object]) -> float:
        detail = entry["detectkit"]
        assert isinstance(detail, dict)
        return float(detail["total_seconds"])

    n_full, n_quarter = float(str(full["images"])), float(str(quarter["images"]))
    results["ratios"] = {
        "time_full_over_quarter": round(total(full) / max(total(quarter), 1e-9), 2),
        "images_full_over_quarter": round(n_full / n_quarter, 2),
        "microseconds_per_box_full": round(total(full) / float(str(full["boxes"])) * 1e6, 2),
    }
    if not args.no_supervision:
        sv_full = full["supervision"]
        dk_full = full["detectkit"]
        assert isinstance(sv_full, dict) and isinstance(dk_full, dict)
        seconds = dk_full["seconds"]
        assert isinstance(seconds, dict)
        results["ratios"]["read_coco_over_supervision_from_coco"] = round(  # type: ignore[index]
            float(seconds["read_coco"]) / max(float(sv_full["from_coco_seconds"]), 1e-9), 2
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
