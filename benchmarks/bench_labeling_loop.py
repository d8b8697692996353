"""ML-assisted labeling, simulated: the labeler's work with pre-labels, and mAP per strategy.

How much work a model's drafts save a labeler, and how fast each way of picking the next images
makes the model good.

Data: ``../shared/datasets/playing-cards/train`` (296 photos, Pascal VOC, 6 classes). A fixed,
class-stratified 20% is the test set (``LabeledDataset.split(0.2, seed=SEED)``); the other 80%
is the pool a labeler works through.

The simulated labeler knows the true boxes. It starts with ``--start`` labeled images (a seeded
draw from the pool, the same for every strategy, and one model trained on them for all), then
works in ``--rounds`` rounds of ``--step`` images (strategies run ``--together`` at a time,
round by round, so a run stopped early has every strategy of a group at the same point):

1. The current model (``Project.local(tmp).train`` on the labeled images so far:
   ``ssdlite_mobilenet_v2`` at ``--size``; the first model from the ImageNet MobileNetV2
   backbone for ``--epochs``, raised for small sets to at least ``--min-steps`` steps of 8
   images; with ``--warm-start`` (the default) each later model from the previous round's
   model for at least ``--fine-tune-steps`` steps; scored only after its last epoch) scores
   every photo once with
   ``project.score``.
2. Its boxes become drafts through the pre-label machinery (:func:`detectkit.prelabel_dataset`):
   at the fixed threshold ``min_score=0.5`` (the figures quoted), and also at ``"auto"``, the
   threshold calibrated on the labeled images for precision 0.9 (those images are the model's
   training data, so that threshold is optimistic; it is reported beside the other).
3. A strategy (:func:`detectkit.rank_for_labeling`: ``least_confident``, ``margin``,
   ``entropy``, or ``random`` with the seed) picks the next ``--step`` images of the pool.
4. For each picked image the labeler's work is counted. Drafts are matched to true boxes
   one to one, greedily by IoU: first the drafts with IoU >= 0.7 with a true box of the same
   class (**accepted** as they are), then the rest with IoU >= 0.3 with any remaining true box
   (**corrected**: one action, moving a side or changing the class). True boxes left over are
   **drawn** from nothing, drafts left over are **deleted**. Actions per image = corrected +
   drawn + deleted; accepting needs no drawing (one key accepts all of an image's drafts).
   Without a model every true box is drawn: the baseline is true boxes per image.
5. The picks join the labeled images and the next model trains on them.

Each model is also scored on the test set with :func:`detectkit.evaluate` (COCO protocol,
mAP@0.5). CPU minutes are the process's own and its children's user + system time
(training, scoring workers), per round and in total.

Targets (issue 12): after 60 labeled images at least 70% of the next round's true boxes are
accepted as they are; an active strategy reaches the test mAP@0.5 that random reaches with 100
labeled images using at most 80; the whole simulation runs in under 30 minutes on 2 cores.

Run::

    python benchmarks/bench_labeling_loop.py --plot docs/images/labeling/loop_map.png
    python benchmarks/bench_labeling_loop.py --strategies least_confident random --rounds 4

It prints a table and writes the rows as JSON (``--out``, default
``/tmp/bench_labeling_loop.json``) and, with ``--plot``, test mAP against labeled images per
strategy. The ImageNet checkpoint ``mobilenet_v2-b0353104.pth`` must be in
``~/.cache/torch/hub/checkpoints/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "playing-cards" / "train"
ACCEPT_IOU = 0.7
CORRECT_IOU = 0.3
BATCH = 8
WARMUP_STEPS = 20


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def labeler_actions(drafts: list[Any], truth: list[Any]) -> dict[str, int]:
    """What a labeler who knows ``truth`` does with ``drafts`` (module docstring, step 4)."""
    pairs = sorted(
        ((d.box.iou(t.box), i, j) for i, d in enumerate(drafts) for j, t in enumerate(truth)),
        reverse=True,
    )
    used_d: set[int] = set()
    used_t: set[int] = set()
    accepted = corrected = 0
    for same_class_pass in (True, False):
        for iou, i, j in pairs:
            if i in used_d or j in used_t:
                continue
            if same_class_pass:
                if iou < ACCEPT_IOU or drafts[i].label != truth[j].label:
                    continue
                accepted += 1
            else:
                if iou < CORRECT_IOU:
                    break
                corrected += 1
            used_d.add(i)
            used_t.add(j)
    return {
        "true_boxes": len(truth),
        "accepted": accepted,
        "corrected": corrected,
        "drawn": len(truth) - accepted - corrected,
        "deleted": len(drafts) - accepted - corrected,
    }


class _Draft:
    """A scored box as :func:`labeler_actions` reads a draft (``label``, ``box``)."""

    def __init__(self, label: str, xyxy: tuple[float, float, float, float]) -> None:
        from detectkit.boxes import Box

        self.label = label
        self.box = Box(top_x=xyxy[0], top_y=xyxy[1], bottom_x=xyxy[2], bottom_y=xyxy[3])


class Simulation:
    """The project, the data and one scoring pass per trained model."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        from detectkit import read_dataset
        from detectkit.project import Project

        self.args = args
        self.tmp = tmp
        dataset = read_dataset(args.data, format="voc")
        pool, test, _ = dataset.split(0.2, seed=args.seed)
        self.classes = list(dataset.classes)
        self.root = dataset.root
        self.pool = list(pool.records)
        self.test = test
        self.project = Project.local(tmp / "project")
        self.test_asset = self.project.datasets.create("cards-test", test)
        self.all_paths = [r.image for r in self.pool] + [r.image for r in test.records]
        self.sizes = [r.size for r in self.pool] + [r.size for r in test.records]
        print(
            f"{args.data}: {len(dataset)} images, {dataset.num_boxes} boxes, "
            f"{len(self.classes)} classes; pool {len(self.pool)}, test {len(test)}",
            flush=True,
        )

    def dataset(self, indices: list[int]) -> Any:
        from detectkit import LabeledDataset

        return LabeledDataset([self.pool[i] for i in indices], self.classes, root=self.root)

    def train_and_score(
        self, name: str, labeled: list[int], init: Path | None = None
    ) -> dict[str, Any]:
        """Train on ``labeled`` (pool indices), from the model folder ``init`` when given (the
        previous round's model: ``advanced_settings.checkpoint_path``); the model's predictions
        on every photo and its test mAP@0.5."""
        from detectkit import evaluate
        from detectkit.scoring.response import read_predictions

        a = self.args
        started = time.monotonic()
        cpu = cpu_seconds()
        asset = self.project.datasets.create(name, self.dataset(labeled))
        steps = math.ceil(len(labeled) / BATCH)
        min_steps = a.min_steps if init is None else a.fine_tune_steps
        epochs = max(a.epochs if init is None else 1, math.ceil(min_steps / steps))
        base_lr = a.lr if init is None or a.fine_tune_lr is None else a.fine_tune_lr
        lr = base_lr
        advanced: dict[str, Any] = {"pretrained": True}
        if init is not None:
            advanced["checkpoint_path"] = str(init)
        while True:
            run = self.project.train(
                asset,
                validation_data=self.test_asset,
                models=["ssdlite_mobilenet_v2"],
                limits={"timeout_minutes": a.budget_minutes},
                training_parameters={
                    "number_of_epochs": epochs,
                    "training_batch_size": BATCH,
                    "learning_rate": lr,
                    # warm up over about WARMUP_STEPS steps: a few steps diverge on 20 images
                    "warmup_cosine_lr_warmup_epochs": math.ceil(WARMUP_STEPS / steps),
                    "min_size": a.size,
                    "evaluation_frequency": 10_000,  # validate only after the last epoch
                    "early_stopping": False,
                    "advanced_settings": advanced,
                },
                experiment="bench-labeling-loop",
                name=f"{name}-{round(base_lr / lr)}",
            )
            if run.best_trial is not None or lr < base_lr / 4:
                break
            print(f"{name}: training diverged at learning rate {lr:g}; halving it", flush=True)
            lr /= 2
        trained = time.monotonic()
        model_dir = run.download_model(self.tmp / f"model-{name}")
        out = self.tmp / f"scores-{name}.jsonl"
        self.project.score(
            model_dir, self.all_paths, out=out, processes=a.processes, batch_size=8, progress=False
        )
        got = read_predictions(out, images=self.all_paths, sizes=self.sizes)
        by_image = {p.image: p for p in got}
        from detectkit import Prediction

        preds = [by_image.get(p, Prediction(image=p)) for p in self.all_paths]
        n = len(self.pool)
        report = evaluate(self.test, preds[n:])
        map50 = report.stats.map50 if report.stats is not None else None
        test_work = [
            labeler_actions(
                [_Draft(d.label, d.xyxy) for d in p.detections if d.score >= 0.5],
                [o for o in r.objects if not o.is_crowd],
            )
            for p, r in zip(preds[n:], self.test.records, strict=True)
        ]
        test_accepted = sum(w["accepted"] for w in test_work) / max(
            sum(w["true_boxes"] for w in test_work), 1
        )
        return {
            "pool": preds[:n],
            "map50": map50,
            "test_accepted": round(test_accepted, 4),
            "train_s": trained - started,
            "score_s": time.monotonic() - trained,
            "model_version": name,
            "dir": model_dir,
            "epochs": epochs,
            "lr": lr,
            "cpu_min": round((cpu_seconds() - cpu) / 60, 2),
        }

    def drafts(self, model: dict[str, Any], labeled: list[int], picks: list[int]) -> dict[str, Any]:
        """Drafts on ``picks`` at 0.5 and at the calibrated threshold, via prelabel_dataset."""
        from detectkit import InvalidInputError, LabeledDataset
        from detectkit.prelabel import prelabel_dataset

        records = [self.pool[i] for i in labeled] + [
            self.pool[i].model_copy(update={"objects": ()}) for i in picks
        ]
        data = LabeledDataset(records, self.classes, root=self.root)
        preds = [model["pool"][i] for i in labeled + picks]
        out: dict[str, Any] = {}
        for key, min_score in (("fixed", 0.5), ("auto", "auto")):
            try:
                res = prelabel_dataset(
                    data, preds, model_version=model["model_version"], min_score=min_score
                )
            except InvalidInputError as exc:
                out[key] = {"threshold": None, "note": str(exc).splitlines()[0]}
                continue
            drafts = res.dataset.records[len(labeled) :]
            counts = [
                labeler_actions(
                    [o for o in r.objects if o.source == "model"],
                    [o for o in self.pool[i].objects if not o.is_crowd],
                )
                for r, i in zip(drafts, picks, strict=True)
            ]
            total = {k: sum(c[k] for c in counts) for k in counts[0]}
            out[key] = {
                "threshold": round(res.threshold, 4),
                "calibrated_precision": (
                    None if res.calibration is None else round(res.calibration.precision, 4)
                ),
                **total,
                "accepted_share": round(total["accepted"] / max(total["true_boxes"], 1), 4),
                "actions_per_image": round(
                    (total["corrected"] + total["drawn"] + total["deleted"]) / len(picks), 3
                ),
                "true_boxes_per_image": round(total["true_boxes"] / len(picks), 3),
            }
        return out


def run_strategies(
    sim: Simulation, strategies: list[str], start: list[int], first: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rounds of ``strategies``, interleaved round by round, from the shared first model.

    A row per strategy and model: the model's test mAP and CPU minutes (training and scoring;
    0 for the shared first model), and what the labeler does with the next round's picks.
    """
    from detectkit.ranking import rank_for_labeling

    a = sim.args
    labeled = {s: list(start) for s in strategies}
    model = dict.fromkeys(strategies, first)
    rows: list[dict[str, Any]] = []
    for k in range(a.rounds + 1):
        for strategy in strategies:
            m, done = model[strategy], labeled[strategy]
            row: dict[str, Any] = {
                "strategy": strategy,
                "labeled": len(done),
                "test_map50": None if m["map50"] is None else round(m["map50"], 4),
                "test_accepted": m["test_accepted"],
                "epochs": m["epochs"],
                "lr": m["lr"],
                "train_s": round(m["train_s"], 1),
                "score_s": round(m["score_s"], 1),
                "cpu_min": 0.0 if k == 0 else m["cpu_min"],
            }
            taken = set(done)
            remaining = [i for i in range(len(sim.pool)) if i not in taken]
            if k < a.rounds and remaining:
                ranked = rank_for_labeling(
                    [m["pool"][i] for i in remaining],
                    strategy,
                    seed=a.seed + k,
                    diversity=a.diversity,
                    images=[sim.pool[i].image for i in remaining] if a.diversity else None,
                )
                picks = [remaining[r.position] for r in ranked[: a.step]]
                row["next_round"] = sim.drafts(m, done, picks)
                done += picks
            rows.append(row)
            print_row(row)
            if k < a.rounds and remaining:
                init = m["dir"] if a.warm_start else None
                model[strategy] = sim.train_and_score(f"{strategy}-{len(done)}", done, init)
    return rows


def _worker(
    args: argparse.Namespace,
    tmp: Path,
    index: int,
    group: list[str],
    start: list[int],
    first: dict[str, Any],
) -> None:
    """One ``--workers`` process: the rounds of ``group`` in its own project, one thread."""
    import torch

    torch.set_num_threads(1)
    args.threads, args.processes = 1, 1
    sim = Simulation(args, tmp / f"worker-{index}")
    rows = run_strategies(sim, group, start, first)
    (tmp / f"rows-{index}.json").write_text(json.dumps(rows, default=str))


def run_in_workers(
    args: argparse.Namespace,
    tmp: Path,
    groups: list[list[str]],
    start: list[int],
    first: dict[str, Any],
) -> list[dict[str, Any]]:
    """The groups in ``--workers`` processes at a time (spawned, one torch thread each, each
    with its own project folder: the shared first model is read from its folder); rows in
    group order."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    os.environ["OMP_NUM_THREADS"] = "1"  # the spawned workers inherit it
    shared = {k: v for k, v in first.items()}
    rows: list[dict[str, Any]] = []
    for at in range(0, len(groups), args.workers):
        batch = list(enumerate(groups))[at : at + args.workers]
        procs = [
            ctx.Process(target=_worker, args=(args, tmp, k, g, start, shared)) for k, g in batch
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            if proc.exitcode != 0:
                raise RuntimeError(f"a worker ended with exit status {proc.exitcode}")
        for k, _ in batch:
            rows += json.loads((tmp / f"rows-{k}.json").read_text())
    return rows


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def print_row(row: dict[str, Any]) -> None:
    nxt = row.get("next_round", {})
    fixed, auto = nxt.get("fixed", {}), nxt.get("auto", {})
    cells = [
        f"{row['strategy']:>16}",
        f"{row['labeled']:>4}",
        f"{row['test_map50'] if row['test_map50'] is not None else '-':>7}",
        f"{pct(row.get('test_accepted')):>6}",
        f"{pct(fixed.get('accepted_share')):>6}",
        f"{fixed.get('actions_per_image', '-')!s:>6}",
        f"{fixed.get('true_boxes_per_image', '-')!s:>6}",
        f"{auto.get('threshold', '-')!s:>7}",
        f"{pct(auto.get('accepted_share')):>6}",
        f"{auto.get('actions_per_image', '-')!s:>6}",
        f"{row['cpu_min']:>6}",
    ]
    print(" ".join(cells), flush=True)


def targets(rows: list[dict[str, Any]], elapsed_min: float) -> dict[str, Any]:
    """The issue's three targets, from the rows."""
    out: dict[str, Any] = {"elapsed_min": round(elapsed_min, 2), "under_30_min": elapsed_min < 30}
    at60 = [
        (r["strategy"], r["next_round"]["fixed"]["accepted_share"])
        for r in rows
        if r["labeled"] == 60 and "next_round" in r
    ]
    out["accepted_after_60"] = dict(at60)
    out["accepted_after_60_ok"] = bool(at60) and all(s >= 0.7 for _, s in at60)
    ref = [r["test_map50"] for r in rows if r["strategy"] == "random" and r["labeled"] == 100]
    if ref and ref[0] is not None:
        out["random_map50_at_100"] = ref[0]
        reach: dict[str, int | None] = {}
        for strategy in {r["strategy"] for r in rows} - {"random"}:
            hit = [
                r["labeled"]
                for r in rows
                if r["strategy"] == strategy
                and r["test_map50"] is not None
                and r["test_map50"] >= ref[0]
            ]
            reach[strategy] = min(hit) if hit else None
        out["labeled_to_reach_random_100"] = reach
        out["active_within_80"] = any(v is not None and v <= 80 for v in reach.values())
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        pts = [(r["labeled"], r["test_map50"]) for r in rows if r["strategy"] == strategy]
        style = "--" if strategy == "random" else "-"
        ax.plot(*zip(*pts, strict=True), style, marker="o", label=strategy)
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test mAP@0.5")
    ax.set_title("Playing cards: test mAP against labeled images")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="VOC folder of photos")
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["least_confident", "random", "margin", "entropy"],
        help="rank_for_labeling strategies, run in this order",
    )
    parser.add_argument(
        "--together", type=int, default=2, help="strategies run round by round at once"
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds after the start")
    parser.add_argument("--start", type=int, default=20, help="images labeled at the start")
    parser.add_argument("--step", type=int, default=20, help="images labeled per round")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per model")
    parser.add_argument(
        "--min-steps", type=int, default=250, help="at least this many steps per model"
    )
    parser.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train each round's model from the previous round's (default) or from ImageNet",
    )
    parser.add_argument(
        "--diversity",
        action="store_true",
        help="rank_for_labeling(..., diversity=True): near-duplicates of a pick go last",
    )
    parser.add_argument(
        "--fine-tune-steps",
        type=int,
        default=120,
        help="with --warm-start: at least this many steps per later model",
    )
    parser.add_argument("--lr", type=float, default=0.04, help="learning rate (halved on NaN)")
    parser.add_argument(
        "--fine-tune-lr", type=float, default=None, help="with --warm-start: later models' rate"
    )
    parser.add_argument("--size", type=int, default=320, help="SSD input side (min_size)")
    parser.add_argument("--budget-minutes", type=int, default=5, help="cap per model")
    parser.add_argument("--seed", type=int, default=0, help="split, start and random seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--processes", type=int, default=2, help="scoring processes")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run the strategy groups in this many processes of one thread each (after the "
        "shared first model)",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_labeling_loop.json"))
    parser.add_argument("--plot", type=Path, default=None, help="write the mAP plot here")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("MPLBACKEND", "Agg")
    started = time.monotonic()
    cpu0 = cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="bench-labeling-loop-") as tmp:
        sim = Simulation(args, Path(tmp))
        rng = np.random.default_rng(args.seed)
        start = sorted(rng.choice(len(sim.pool), size=args.start, replace=False).tolist())
        first = sim.train_and_score(f"start-{args.start}", start)
        print(
            f"{'strategy':>16} {'n':>4} {'mAP50':>7} {'t_acc':>6} {'acc':>6} {'act/im':>6} {'box/im':>6} "
            f"{'auto_t':>7} {'acc@a':>6} {'act@a':>6} {'cpu':>6}",
            flush=True,
        )
        rows: list[dict[str, Any]] = []
        first_cpu = first["cpu_min"]
        groups = [args.strategies[i : i + args.together] for i in range(0, 99, args.together)]
        groups = [g for g in groups if g]
        if args.workers > 1:
            rows = run_in_workers(args, Path(tmp), groups, start, first)
        for group in groups if args.workers <= 1 else []:
            rows += run_strategies(sim, group, start, first)
            partial = {"args": vars(args) | {"data": str(args.data), "out": str(args.out)}}
            args.out.write_text(json.dumps({**partial, "rows": rows}, indent=1, default=str))
    elapsed = (time.monotonic() - started) / 60
    total_cpu = (cpu_seconds() - cpu0) / 60
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "first_model_cpu_min": round(first_cpu, 2),
        "cpu_min": round(total_cpu, 2),
        "wall_min": round(elapsed, 2),
        "targets": targets(rows, elapsed),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["targets"], indent=1))
    print(f"wall {elapsed:.1f} min, CPU {total_cpu:.1f} min; rows in {args.out}")
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
