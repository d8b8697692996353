"""Drawing speed: detectkit.viz.drawing versus supervision's BoxAnnotator + LabelAnnotator.

Generates ``--images`` RGB images of 1024 x 768 with ``--boxes`` labelled, scored boxes each
(seeded, nothing read from disk), then times, per image:

* detectkit: ``draw(image, detections)``: boxes, labels with scores, non-overlapping label
  placement (always on), returning a new Pillow image; the column ``+asarray`` adds the
  conversion of that image back to a numpy array, for a like-for-like output type;
* supervision: ``BoxAnnotator().annotate`` then ``LabelAnnotator().annotate`` on a copy of the
  array (supervision draws in place), with the same boxes and label texts; and, with
  ``--smart``, ``LabelAnnotator(smart_position=True)``, supervision's own label de-overlap.

Each round draws every image once, the contenders taking turns image by image; the
medians over ``--rounds`` rounds are reported. supervision
draws with OpenCV when ``cv2`` is importable and with a slower pure-NumPy fallback otherwise:
the script prints which one it used.

Run: ``python benchmarks/bench_draw.py [--images 100] [--boxes 30] [--rounds 5] [--smart]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from detectkit import viz

CLASSES = ("person", "car", "bicycle", "dog", "traffic light", "bus", "truck", "bird")
WIDTH, HEIGHT = 1024, 768


def make_scenes(n_images: int, n_boxes: int, seed: int = 0) -> list[dict[str, Any]]:
    """Images (smooth colour gradient plus noise) with random boxes, scores and classes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    scenes = []
    for _ in range(n_images):
        base = rng.uniform(40, 200, size=3)
        grad = np.stack(
            [base[0] + 50 * xx / WIDTH, base[1] + 50 * yy / HEIGHT, base[2] + 0 * xx], axis=-1
        )
        noise = rng.normal(0, 8, size=(HEIGHT, WIDTH, 1))
        pixels = np.clip(grad + noise, 0, 255).astype(np.uint8)
        wh = rng.uniform(0.04, 0.3, size=(n_boxes, 2))
        xy = rng.uniform(0.0, 1.0, size=(n_boxes, 2)) * (1.0 - wh)
        xyxy = np.concatenate([xy, xy + wh], axis=1)
        scores = rng.uniform(0.3, 1.0, size=n_boxes)
        class_ids = rng.integers(0, len(CLASSES), size=n_boxes)
        scenes.append({"pixels": pixels, "xyxy": xyxy, "scores": scores, "class_ids": class_ids})
    return scenes


def detectkit_target(scene: dict[str, Any]) -> Any:
    """``Detections`` when detectkit.prediction exists, else scored ``ObjectAnnotation``s."""
    try:
        from detectkit.prediction import Detections
    except ImportError:
        from detectkit import Box, ObjectAnnotation

        return [
            ObjectAnnotation(label=CLASSES[c], box=Box.trusted(*b), score=float(s))
            for b, s, c in zip(
                scene["xyxy"].tolist(), scene["scores"], scene["class_ids"], strict=True
            )
        ]
    return Detections(
        xyxy=scene["xyxy"], scores=scene["scores"], class_ids=scene["class_ids"], classes=CLASSES
    )


def time_round(
    scenes: list[dict[str, Any]], contenders: dict[str, Callable[[dict[str, Any]], object]]
) -> dict[str, float]:
    """Seconds each contender takes to draw every scene once.

    The contenders take turns image by image, so a load spike on a shared machine hits them
    alike instead of one whole run.
    """
    totals = dict.fromkeys(contenders, 0.0)
    clock = time.perf_counter
    for scene in scenes:
        for name, fn in contenders.items():
            start = clock()
            fn(scene)
            totals[name] += clock() - start
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--boxes", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smart", action="store_true", help="also time smart_position=True")
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # supervision warns when it falls back to NumPy
        import supervision as sv
    try:
        import cv2

        backend = "OpenCV " + str(cv2.__version__)
    except ImportError:
        backend = "pure-NumPy fallback (cv2 not importable)"

    scenes = make_scenes(args.images, args.boxes)
    for scene in scenes:
        scene["target"] = detectkit_target(scene)
        px = scene["xyxy"] * np.array([WIDTH, HEIGHT, WIDTH, HEIGHT])
        scene["sv"] = sv.Detections(
            xyxy=px, confidence=scene["scores"], class_id=scene["class_ids"].astype(int)
        )
        scene["labels"] = [
            f"{CLASSES[c]} {s:.2f}"
            for c, s in zip(scene["class_ids"], scene["scores"], strict=True)
        ]

    box_annotator = sv.BoxAnnotator(thickness=2)
    label_annotator = sv.LabelAnnotator(text_padding=4)
    smart_annotator = sv.LabelAnnotator(text_padding=4, smart_position=True)

    def run_detectkit(scene: dict[str, Any]) -> object:
        return viz.draw(scene["pixels"], scene["target"])

    def run_detectkit_array(scene: dict[str, Any]) -> object:
        return np.asarray(viz.draw(scene["pixels"], scene["target"]))

    def run_supervision(scene: dict[str, Any], labels: Any = label_annotator) -> object:
        out = scene["pixels"].copy()
        out = box_annotator.annotate(out, scene["sv"])
        return labels.annotate(out, scene["sv"], labels=scene["labels"])

    def run_smart(scene: dict[str, Any]) -> object:
        return run_supervision(scene, smart_annotator)

    contenders: dict[str, Callable[[dict[str, Any]], object]] = {
        "detectkit draw": run_detectkit,
        "detectkit draw +asarray": run_detectkit_array,
        "supervision Box+Label": run_supervision,
    }
    if args.smart:
        contenders["supervision Box+Label smart"] = run_smart
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn in contenders.values():  # warm up: fonts, caches, imports
            fn(scenes[0])
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, seconds in time_round(scenes, contenders).items():
                times[name].append(seconds)

    print(
        f"{args.images} images {WIDTH}x{HEIGHT}, {args.boxes} labelled boxes each, "
        f"{args.rounds} rounds; supervision {sv.__version__} backend: {backend}"
    )
    reference = statistics.median(times["supervision Box+Label"])
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"  {name:<30} median {med:7.3f} s per {args.images} images "
            f"({1000 * med / args.images:6.2f} ms/image)  ratio to supervision {med / reference:5.2f}"
        )


if __name__ == "__main__":
    main()
