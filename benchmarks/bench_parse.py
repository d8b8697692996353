"""Parsing speed: detectkit.parse_response versus json.loads alone and versus supervision.

Generates ``--images`` online-response elements holding ``--boxes`` boxes in total (seeded,
full float precision, as a model emits them), then times, over ``--rounds`` runs:

* ``json.loads``: decoding the bytes, nothing else (the floor every parser pays, and the
  yardstick of the ratios);
* ``msgspec`` and ``orjson``: the two fast decoders on the same bytes (detectkit decodes with
  msgspec; orjson is timed when it is installed, for the comparison);
* detectkit: ``parse_response(body, sizes=...)``: decode, validate every key, type and range,
  build one ``Prediction`` (columnar ``Detections``) per image;
* supervision: ``json.loads``, then per image numpy arrays of pixel corners, scores and class
  ids, and ``sv.Detections(xyxy=..., confidence=..., class_id=..., data={"class_name": ...})``:
  the plain way to get typed, columnar detections out of the same bytes (no validation).

Two shapes of the same data are measured: one body holding every image (a batch request),
and one body per image (one request per image, as a camera loop sends them), where the
per-call overhead shows. Rounds interleave the three and run with the garbage collector off
(as ``timeit`` does), so a collection triggered by one does not land on another. Medians are
reported with their ratios to ``json.loads`` (the target is at most 1.2x) and to supervision,
and the best round of each too (the least disturbed, on a shared machine).

Run: ``python benchmarks/bench_parse.py [--images 5000] [--boxes 150000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from detectkit.scoring.response import parse_response

CLASSES = ("can", "carton", "milk_bottle", "water_bottle", "juice", "yogurt", "egg", "apple")
WIDTH, HEIGHT = 1024, 768


def make_response(n_images: int, n_boxes: int, seed: int = 0) -> list[dict[str, Any]]:
    """An online response: ``n_boxes`` spread over ``n_images`` (a few images get none)."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_boxes, np.full(n_images, 1.0 / n_images))
    out = []
    for count in counts.tolist():
        wh = rng.uniform(0.02, 0.4, size=(count, 2))
        xy = rng.uniform(0.0, 1.0, size=(count, 2)) * (1.0 - wh)
        corners = np.concatenate([xy, xy + wh], axis=1).tolist()
        scores = rng.uniform(0.1, 1.0, size=count).tolist()
        labels = rng.integers(0, len(CLASSES), size=count).tolist()
        out.append(
            {
                "boxes": [
                    {
                        "box": {"topX": c[0], "topY": c[1], "bottomX": c[2], "bottomY": c[3]},
                        "label": CLASSES[k],
                        "score": s,
                    }
                    for c, s, k in zip(corners, scores, labels, strict=True)
                ]
            }
        )
    return out


def supervision_parse(body: bytes, sizes: list[tuple[int, int]]) -> list[Any]:
    """json.loads + per-image numpy arrays + sv.Detections (what a user would write)."""
    import supervision as sv

    index = {name: i for i, name in enumerate(CLASSES)}
    out = []
    for item, (w, h) in zip(json.loads(body), sizes, strict=True):
        boxes = item["boxes"]
        xyxy = np.array(
            [
                (b["box"]["topX"], b["box"]["topY"], b["box"]["bottomX"], b["box"]["bottomY"])
                for b in boxes
            ],
            dtype=np.float64,
        ).reshape(-1, 4) * np.array([w, h, w, h])
        out.append(
            sv.Detections(
                xyxy=xyxy,
                confidence=np.array([b["score"] for b in boxes], dtype=np.float64),
                class_id=np.array([index[b["label"]] for b in boxes], dtype=np.int64),
                data={"class_name": np.array([b["label"] for b in boxes], dtype=np.str_)},
            )
        )
    return out


def median_times(fns: list[Callable[[], object]], rounds: int) -> list[tuple[float, float]]:
    """``(median, min)`` seconds of each function; rounds interleave them, GC off (as timeit).

    The median is the figure reported; the minimum is the least disturbed run, the better
    estimate on a machine shared with other work.
    """
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, spent in zip(fns, times, strict=True):
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                fn()
                spent.append(time.perf_counter() - start)
            finally:
                gc.enable()
    return [(statistics.median(spent), min(spent)) for spent in times]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--boxes", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    with warnings.catch_warnings():  # supervision warns when OpenCV is absent
        warnings.simplefilter("ignore")
        import supervision  # noqa: F401

    response = make_response(args.images, args.boxes)
    sizes = [(WIDTH, HEIGHT)] * args.images
    body = json.dumps(response).encode("utf-8")
    bodies = [json.dumps([item]).encode("utf-8") for item in response]
    one = [(WIDTH, HEIGHT)]

    # the results agree before anything is timed
    predictions = parse_response(body, sizes=sizes)
    reference = supervision_parse(body, sizes)
    assert sum(len(p) for p in predictions) == args.boxes
    for pred, ref in zip(predictions, reference, strict=True):
        np.testing.assert_allclose(pred.to_pixels(), ref.xyxy)
        assert pred.labels.tolist() == ref.data["class_name"].tolist()

    print(
        f"{args.images} images, {args.boxes} boxes, body {len(body) / 1e6:.1f} MB, "
        f"median of {args.rounds} rounds"
    )
    results: dict[str, float] = {}
    decoders: list[tuple[str, Callable[[bytes], object]]] = [
        ("json.loads", json.loads),
        ("msgspec", msgspec.json.Decoder().decode),
    ]
    try:
        import orjson
    except ImportError:
        print("(orjson not installed: not timed)")
    else:
        decoders.append(("orjson", orjson.loads))
    for shape, payloads in (("one body", [body]), ("body per image", bodies)):
        timed = median_times(
            [lambda fn=fn, docs=payloads: [fn(b) for b in docs] for _, fn in decoders], args.rounds
        )
        base = timed[0][0]
        print(
            f"{shape:>15}: decode only: "
            + " | ".join(
                f"{name} {t * 1e3:.1f} ms ({t / base:.2f}x)"
                for (name, _), (t, _) in zip(decoders, timed, strict=True)
            )
        )
        for (name, _), (t, _) in zip(decoders, timed, strict=True):
            results[f"{shape}: {name} decode s"] = t
    for shape, run_json, run_dk, run_sv in (
        (
            "one body",
            lambda: json.loads(body),
            lambda: parse_response(body, sizes=sizes),
            lambda: supervision_parse(body, sizes),
        ),
        (
            "body per image",
            lambda: [json.loads(b) for b in bodies],
            lambda: [parse_response(b, sizes=one) for b in bodies],
            lambda: [supervision_parse(b, one) for b in bodies],
        ),
    ):
        (t_json, m_json), (t_dk, m_dk), (t_sv, m_sv) = median_times(
            [run_json, run_dk, run_sv], args.rounds
        )
        results[f"{shape}: json.loads s"] = t_json
        results[f"{shape}: detectkit s"] = t_dk
        results[f"{shape}: supervision s"] = t_sv
        print(
            f"{shape:>15}: json.loads {t_json * 1e3:8.1f} ms | detectkit {t_dk * 1e3:8.1f} ms "
            f"({t_dk / t_json:.2f}x json.loads) | supervision {t_sv * 1e3:8.1f} ms "
            f"({t_sv / t_json:.2f}x json.loads) | detectkit / supervision {t_dk / t_sv:.2f}"
        )
        print(
            f"{'(best round)':>15}: json.loads {m_json * 1e3:8.1f} ms | detectkit "
            f"{m_dk * 1e3:8.1f} ms ({m_dk / m_json:.2f}x) | supervision {m_sv * 1e3:8.1f} ms "
            f"({m_sv / m_json:.2f}x)"
        )
    return results


if __name__ == "__main__":
    main()
