"""Speed and agreement of ``detectkit.evaluate`` against faster-coco-eval and pycocotools.

The workload (defaults): 5,000 images of random sizes, ~40,000 ground-truth boxes of 10
classes (1% crowd regions, small, medium and large objects), ~150,000 detections (jittered
copies of the ground truth, some with the wrong class, plus random false positives; scores
rounded to 3 decimals, so there are ties). All three evaluators get the same pixel boxes:
the COCO dicts are built from the data set's normalized boxes times the image size, and the
results are listed in detectkit's tie-break order, so the numbers must be identical.

Timed ``--repeat`` runs each (best and median shown; the ratio is of medians), each run from
its own inputs:

* ``detectkit.evaluate``: a LabeledDataset and a list of Prediction -> EvaluationReport
  (COCO numbers plus per-class table, operating point, confusion matrix and per-image
  matches);
* ``detectkit.evaluate_coco_files``: the COCO dicts -> EvaluationReport;
* faster-coco-eval: ``COCO(gt)``, ``loadRes``, ``COCOeval_faster`` evaluate / accumulate /
  summarize;
* pycocotools: the same with ``COCOeval`` (run once: it takes ~20 s).

Run: ``python benchmarks/bench_evaluate.py`` (``--images 500`` for a quick look).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from detectkit import Box, ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.evaluation.pipeline import evaluate, evaluate_coco_files
from detectkit.prediction import Detections, Prediction


def make_workload(
    n_images: int, n_classes: int = 10, seed: int = 0
) -> tuple[LabeledDataset, list[Prediction], dict[str, Any], list[dict[str, Any]]]:
    """The data set, its predictions and the equivalent COCO ground truth and results."""
    rng = np.random.default_rng(seed)
    classes = [f"class_{k}" for k in range(n_classes)]
    records: list[ImageRecord] = []
    predictions: list[Prediction] = []
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i in range(n_images):
        width, height = int(rng.integers(320, 1280)), int(rng.integers(240, 960))
        n_gt = int(rng.poisson(8))
        side = np.exp(rng.uniform(np.log(6), np.log(420), n_gt))
        aspect = np.exp(rng.normal(0.0, 0.4, n_gt))
        cx, cy = rng.uniform(0, width, n_gt), rng.uniform(0, height, n_gt)
        bw, bh = np.minimum(side * aspect, width), np.minimum(side / aspect, height)
        gt = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        gt = np.clip(gt, 0, [width, height, width, height]) / [width, height, width, height]
        gt_cls = rng.integers(0, n_classes, n_gt)
        crowd = rng.random(n_gt) < 0.01
        objects = tuple(
            ObjectAnnotation(
                label=classes[gt_cls[j]], box=Box.trusted(*gt[j].tolist()), is_crowd=bool(crowd[j])
            )
            for j in range(n_gt)
        )
        name = f"img_{i:05d}.jpg"
        records.append(ImageRecord(image=name, width=width, height=height, objects=objects))
        # detections: 60% jittered ground truth (10% of those with a wrong class), 40% random
        n_det = int(rng.poisson(30))
        near = (rng.random(n_det) < 0.6) & (n_gt > 0)
        src = rng.integers(0, max(n_gt, 1), n_det)
        base = gt[src] if n_gt else np.zeros((n_det, 4))
        size = np.where(
            near[:, None], base[:, 2:] - base[:, :2], rng.uniform(0.02, 0.4, (n_det, 2))
        )
        corner = np.where(near[:, None], base[:, :2], rng.uniform(0.0, 0.9, (n_det, 2)))
        corner = corner + rng.normal(0, 0.08, (n_det, 2)) * size
        size = size * np.exp(rng.normal(0, 0.1, (n_det, 2)))
        det = np.clip(np.c_[corner, corner + size], 0.0, 1.0)
        det_cls = rng.integers(0, n_classes, n_det)
        keep_class = near & (rng.random(n_det) < 0.9)
        det_cls[keep_class] = gt_cls[src[keep_class]]
        scores = np.round(rng.random(n_det), 3)
        predictions.append(
            Prediction(image=name, width=width, height=height,
                       detections=Detections(det, scores, det_cls, classes))
        )  # fmt: skip
        # the same boxes in COCO pixels, computed the way detectkit converts them
        images.append({"id": i + 1, "width": width, "height": height, "file_name": name})
        gx, gy = gt[:, 0] * width, gt[:, 1] * height
        gw, gh = gt[:, 2] * width - gx, gt[:, 3] * height - gy
        for j in range(n_gt):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(gt_cls[j]) + 1,
                 "bbox": [gx[j], gy[j], gw[j], gh[j]], "area": gw[j] * gh[j],
                 "iscrowd": int(crowd[j])}
            )  # fmt: skip
        dx, dy = det[:, 0] * width, det[:, 1] * height
        dw_px, dh_px = det[:, 2] * width - dx, det[:, 3] * height - dy
        # detectkit's tie-break: score desc, then box x, y, w, h, then class
        order = np.lexsort((det_cls, dh_px, dw_px, dy, dx, -scores))
        for j in order.tolist():
            results.append(
                {"image_id": i + 1, "category_id": int(det_cls[j]) + 1,
                 "bbox": [dx[j], dy[j], dw_px[j], dh_px[j]], "score": float(scores[j])}
            )  # fmt: skip
    categories = [{"id": k + 1, "name": c} for k, c in enumerate(classes)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    return LabeledDataset(records, classes), predictions, coco, results


def _cocoeval(module: str, gt: dict[str, Any], results: list[dict[str, Any]]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        if module == "faster_coco_eval":
            from faster_coco_eval import COCO, COCOeval_faster

            coco_gt = COCO(gt)
            coco_dt = coco_gt.loadRes(results)
            ev: Any = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *_: None)
        else:
            from pycocotools.coco import COCO as PCOCO
            from pycocotools.cocoeval import COCOeval

            coco_gt = PCOCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(results)
            ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def _timed(
    run: Callable[..., Any], make_inputs: Callable[[], tuple[Any, ...]], repeat: int
) -> tuple[list[float], Any]:
    """Wall times of ``repeat`` runs, each on fresh inputs (made outside the timing)."""
    times, out = [], None
    for _ in range(repeat):
        inputs = make_inputs()
        start = time.perf_counter()
        out = run(*inputs)
        times.append(time.perf_counter() - start)
    return times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each")
    parser.add_argument("--no-pycocotools", action="store_true", help="skip the slow reference")
    args = parser.parse_args()

    t0 = time.perf_counter()
    dataset, predictions, coco_gt, coco_results = make_workload(args.images)
    print(
        f"workload: {len(dataset)} images, {dataset.num_boxes} ground-truth boxes, "
        f"{len(coco_results)} detections, {len(dataset.classes)} classes "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    rows: list[tuple[str, list[float], np.ndarray]] = []
    t, report = _timed(lambda d, p: evaluate(d, p), lambda: (dataset, predictions), args.repeat)
    rows.append(("detectkit.evaluate (LabeledDataset)", t, np.array(report.stats.as_list())))
    print("\n\n".join(report.to_text().split("\n\n")[:2]))
    t, report_files = _timed(
        evaluate_coco_files,
        lambda: (copy.deepcopy(coco_gt), copy.deepcopy(coco_results)),
        args.repeat,
    )
    rows.append(("detectkit.evaluate_coco_files", t, np.array(report_files.stats.as_list())))
    t, stats = _timed(
        lambda g, r: _cocoeval("faster_coco_eval", g, r),
        lambda: (copy.deepcopy(coco_gt), copy.deepcopy(coco_results)),
        args.repeat,
    )
    rows.append(("faster-coco-eval", t, stats))
    if not args.no_pycocotools:
        t, stats = _timed(
            lambda g, r: _cocoeval("pycocotools", g, r),
            lambda: (copy.deepcopy(coco_gt), copy.deepcopy(coco_results)),
            1,
        )
        rows.append(("pycocotools", t, stats))
    reference = rows[-1][2]
    fce = float(np.median(rows[2][1]))
    print(f"\n{'evaluator':<38}{'best s':>8}{'median s':>10}{'vs FCE':>8}   max |Δ stats| vs "
          f"{rows[-1][0]}")  # fmt: skip
    for name, times, values in rows:
        delta = float(np.max(np.abs(values - reference)))
        median = float(np.median(times))
        print(f"{name:<38}{min(times):>8.2f}{median:>10.2f}{median / fce:>7.2f}x   {delta:.3g}")
    print("\nstats (pycocotools order):", np.round(rows[0][2], 4).tolist())


if __name__ == "__main__":
    main()
