"""detectkit.viz: colours, label layout, draw, the comparison picture and the plots."""

from __future__ import annotations

import dataclasses
import io
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detectkit import viz
from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.errors import InvalidInputError
from detectkit.evaluation.pipeline import EvaluationReport, ImageMatches, evaluate
from detectkit.prediction import Detections, Prediction
from detectkit.synthetic import make_dataset
from detectkit.viz import drawing as viz_draw
from detectkit.viz import layout as viz_layout

GREY = (128, 128, 128)


def grey(width: int = 320, height: int = 240) -> np.ndarray:
    return np.full((height, width, 3), GREY, dtype=np.uint8)


def obj(label: str, x1: float, y1: float, x2: float, y2: float, **kw: object) -> ObjectAnnotation:
    return ObjectAnnotation(
        label=label, box=Box(top_x=x1, top_y=y1, bottom_x=x2, bottom_y=y2), **kw
    )


def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# ----------------------------------------------------------------------------- colours
def test_colours_are_stable_across_processes_and_import_is_light() -> None:
    """One fresh interpreter, another hash seed: same colours; and no matplotlib or Pillow."""
    names = ["person", "car", "traffic light", "été"]
    here = [viz.class_colour(n) for n in names]
    code = (
        "import sys; from detectkit.viz import class_colour; "
        f"print([class_colour(n) for n in {names!r}]); "
        "print(sorted(m for m in ('matplotlib', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.splitlines()
    assert out == [str(here), "[]"]
    assert all(c in viz.PALETTE for c in here)


def test_class_colour_by_id_uses_the_palette_in_order() -> None:
    assert viz.class_colour("anything", 0) == viz.PALETTE[0]
    assert viz.class_colour("anything", 3) == viz.PALETTE[3]
    assert viz.class_colour("x", len(viz.PALETTE) + 1) == viz.PALETTE[1]
    assert len(set(viz.PALETTE)) == len(viz.PALETTE)


@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        ((255, 225, 25), (0, 0, 0)),  # yellow: black text
        ((255, 255, 255), (0, 0, 0)),
        ((0, 0, 128), (255, 255, 255)),  # navy: white text
        ((0, 0, 0), (255, 255, 255)),
        ((128, 0, 0), (255, 255, 255)),
    ],
)
def test_text_colour_contrasts_with_the_fill(
    fill: tuple[int, int, int], expected: tuple[int, int, int]
) -> None:
    assert viz.text_colour(fill) == expected


# ----------------------------------------------------------------------------- layout
def dense_boxes(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wh = rng.uniform(0.05, 0.25, size=(n, 2)) * [width, height]
    xy = rng.uniform(0.2, 0.6, size=(n, 2)) * [width, height]  # all crowded in the middle
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize(("n", "seed"), [(40, 0), (40, 1), (100, 2)])
def test_layout_labels_of_a_dense_scene_never_overlap(n: int, seed: int) -> None:
    width, height = 640, 480
    boxes = dense_boxes(n, width, height, seed)
    sizes = np.column_stack([np.random.default_rng(seed).uniform(40, 110, n), np.full(n, 16.0)])
    rects = viz.layout_labels(boxes, sizes, (width, height))
    assert len(rects) == n
    placed = [r for r in rects if r is not None]
    assert len(placed) == n  # there is room for every label on this image
    for a, b in itertools.combinations(placed, 2):
        assert not overlaps(a, b), (a, b)
    for r, (w, h) in zip(placed, sizes, strict=True):
        assert r[0] >= 0
        assert r[1] >= 0
        assert r[2] <= width
        assert r[3] <= height
        assert r[2] - r[0] == pytest.approx(w)
        assert r[3] - r[1] == pytest.approx(h)


def test_layout_prefers_above_the_box_then_inside() -> None:
    rects = viz.layout_labels(
        [[50, 50, 150, 120], [50, 0, 150, 60]], [[60, 20], [60, 20]], (300, 200)
    )
    assert rects[0] == (50.0, 30.0, 110.0, 50.0)  # above, left-aligned
    # the second box touches the top edge: its label goes inside, below the first label? no:
    # above is clamped to y=0, which is free
    assert rects[1] == (50.0, 0.0, 110.0, 20.0)


def test_layout_gives_up_only_when_the_image_is_full() -> None:
    # 30 labels of 100 x 50 cannot fit in a 200 x 100 image (room for 4 at most)
    rects = viz.layout_labels(
        np.tile([10, 10, 50, 50], (30, 1)), np.tile([100, 50], (30, 1)), (200, 100)
    )
    placed = [r for r in rects if r is not None]
    assert 2 <= len(placed) <= 4
    assert rects[0] is not None
    assert rects[-1] is None
    for a, b in itertools.combinations(placed, 2):
        assert not overlaps(a, b)


def test_layout_checks_its_input() -> None:
    assert viz.layout_labels(np.zeros((0, 4)), np.zeros((0, 2)), (10, 10)) == []
    with pytest.raises(InvalidInputError, match="one label size per box"):
        viz.layout_labels([[0, 0, 5, 5]], [[1, 1], [2, 2]], (10, 10))


# ----------------------------------------------------------------------------- draw
def two_detections() -> Detections:
    return Detections(
        xyxy=[[0.1, 0.3, 0.4, 0.8], [0.55, 0.3, 0.9, 0.8]],
        scores=[0.95, 0.4],
        class_ids=[0, 2],
        classes=["can", "bottle", "cup"],
    )


def test_draw_outline_pixels_have_the_class_colour_and_input_is_untouched() -> None:
    image = grey()
    before = image.copy()
    out = viz.draw(image, two_detections(), line_width=3)
    assert isinstance(out, Image.Image)
    assert out.size == (320, 240)
    assert out.mode == "RGB"
    np.testing.assert_array_equal(image, before)
    px = np.asarray(out)
    # left edge of box 0 starts at x = 32; the outline is drawn inside the box, 3 px wide
    for x in (32, 33, 34):
        assert tuple(px[132, x]) == viz.PALETTE[0]
    assert tuple(px[132, 35]) == GREY
    assert tuple(px[132, 31]) == GREY
    assert tuple(px[132, 176]) == viz.PALETTE[2]  # box 1 (class id 2) left edge at 0.55 * 320
    assert tuple(px[230, 300]) == GREY  # far from any box


def test_draw_min_score_hides_low_scores_but_keeps_ground_truth() -> None:
    out = np.asarray(viz.draw(grey(), two_detections(), min_score=0.5, line_width=2))
    assert tuple(out[132, 32]) == viz.PALETTE[0]
    assert tuple(out[132, 176]) == GREY  # the 0.4 box is gone
    gt = [obj("can", 0.1, 0.3, 0.4, 0.8)]  # no score: always drawn
    out = np.asarray(viz.draw(grey(), gt, min_score=0.99, classes=["can"], line_width=2))
    assert tuple(out[132, 32]) == viz.PALETTE[0]


def test_draw_classes_align_colours_of_ground_truth_and_prediction() -> None:
    classes = ["can", "bottle", "cup"]
    gt = ImageRecord(image="x.png", objects=(obj("cup", 0.1, 0.3, 0.4, 0.8),))
    out = np.asarray(viz.draw(grey(), gt, classes=classes, line_width=2))
    assert tuple(out[132, 32]) == viz.PALETTE[2]
    without = np.asarray(viz.draw(grey(), gt, line_width=2))
    assert tuple(without[132, 32]) == viz.class_colour("cup")
    # a Detections' own class ids give the same colour as the data set's class list
    det = Detections([[0.1, 0.3, 0.4, 0.8]], [0.9], [2], classes=classes)
    assert tuple(np.asarray(viz.draw(grey(), det, line_width=2))[132, 32]) == viz.PALETTE[2]


def test_draw_label_is_filled_with_the_class_colour_above_the_box() -> None:
    out = np.asarray(viz.draw(grey(), two_detections(), font_size=14, line_width=2))
    # the label of box 0 sits above its top-left corner (x 32.., y < 72)
    label = out[50:72, 32:60]
    colour_share = np.mean(np.all(label == viz.PALETTE[0], axis=-1))
    assert colour_share > 0.5
    text = np.all(label == viz.text_colour(viz.PALETTE[0]), axis=-1)
    assert text.any()  # some text pixels are fully inked


@pytest.mark.parametrize("x_px", [10.5, 11.5])  # a label's corners rounding apart or together
def test_draw_label_fill_covers_its_rounded_spot_at_half_pixels(x_px: float) -> None:
    det = Detections([[x_px / 200, 0.5, 0.9, 0.9]], [0.5], [0], classes=["can"])
    out = np.asarray(viz.draw(grey(200, 120), det, font_size=13, line_width=1))
    width, _ = viz_layout.label_plan("can 0.50", 13)
    left, right = round(x_px), round(x_px + width)  # half to even, as the layout's spot
    row = out[60 - 2]  # in the label's bottom padding, just above the box
    assert tuple(row[left - 1]) == GREY
    assert all(tuple(px) == viz.PALETTE[0] for px in row[left:right])
    assert tuple(row[right]) == GREY


def test_label_cache_keeps_to_its_byte_budget() -> None:
    cache = viz_layout.LabelCache(budget=60_000)
    tiles = [cache.get(f"label {i}", 17, viz.PALETTE[0]) for i in range(40)]
    assert cache.used == sum(4 * t.width * t.height for t in cache.tiles.values())
    assert cache.used <= 60_000
    assert 1 < len(cache.tiles) < 40  # the oldest were dropped
    assert cache.get("label 39", 17, viz.PALETTE[0]) is tiles[-1]  # the newest stay cached


def test_draw_accepts_paths_bytes_pil_and_arrays(tmp_path: Path) -> None:
    det = Prediction(image=None, width=80, height=60, detections=two_detections())
    path = tmp_path / "a.png"
    Image.fromarray(grey(80, 60)).save(path)
    pil = Image.open(path)
    sources: list[object] = [
        path,
        str(path),
        path.read_bytes(),
        pil,
        grey(80, 60),
        np.full((60, 80), 128, dtype=np.uint8),
        np.full((60, 80, 4), 128, dtype=np.uint8),
        np.full((60, 80, 3), 0.5, dtype=np.float32),
    ]
    for source in sources:
        out = viz.draw(source, det)  # type: ignore[arg-type]
        assert out.size == (80, 60), type(source)
        assert out.mode == "RGB"
    assert viz.draw(pil, det) is not pil
    assert np.asarray(pil).max() == 128  # the caller's image is not drawn on


def test_draw_applies_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80 x 40, displayed 40 x 80
    Image.new("RGB", (80, 40), GREY).save(path, exif=exif)
    det = [obj("a", 0.1, 0.1, 0.9, 0.5)]
    assert viz.draw(path, det).size == (40, 80)
    with Image.open(path) as im:
        assert viz.draw(im, det).size == (40, 80)


def test_draw_dense_scene_is_fast_and_readable(tmp_path: Path) -> None:
    boxes = dense_boxes(40, 1024, 768) / [1024, 768, 1024, 768]
    det = Detections(boxes, np.linspace(0.3, 0.99, 40), np.arange(40) % 5, list("abcde"))
    out = viz.draw(grey(1024, 768), det)
    out.save(tmp_path / "dense.png")
    assert out.size == (1024, 768)


def test_draw_scales_line_and_font_with_the_image() -> None:
    assert viz_draw._auto_sizes(1024, 768) == (2, 17)
    small_line, small_font = viz_draw._auto_sizes(160, 120)
    big_line, big_font = viz_draw._auto_sizes(4000, 3000)
    assert small_line == 1
    assert small_font >= 11
    assert big_line > 2
    assert big_font > 17


@pytest.mark.parametrize(
    ("image", "target", "match"),
    [
        (grey(), "not a target", "target: expected a Prediction"),
        (grey(), 42, "target: expected a Prediction"),
        (np.zeros((4, 4, 2), np.uint8), [], r"image: expected an array of shape"),
        (3.5, [], "image: expected a path, bytes"),
    ],
)
def test_draw_rejects_what_it_cannot_draw(image: object, target: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        viz.draw(image, target)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- comparison
CLASSES = ["can", "cup"]


def comparison_case() -> tuple[ImageRecord, Detections]:
    record = ImageRecord(
        image="x.png",
        objects=(
            obj("can", 0.10, 0.10, 0.30, 0.40),  # found by detection 0
            obj("cup", 0.60, 0.50, 0.90, 0.90),  # missed
        ),
    )
    det = Detections(
        xyxy=[
            [0.11, 0.11, 0.31, 0.41],  # TP
            [0.40, 0.60, 0.50, 0.80],  # FP: nothing there
            [0.62, 0.52, 0.88, 0.88],  # right place, wrong class: FP, and the cup stays missed
            [0.12, 0.12, 0.30, 0.40],  # a duplicate of the can: FP
        ],
        scores=[0.9, 0.8, 0.7, 0.6],
        class_ids=[0, 0, 0, 0],
        classes=CLASSES,
    )
    return record, det


def edge(out: np.ndarray, x: float, y1: float, y2: float) -> tuple[int, ...]:
    """Colour of the left outline of a box at normalized x, halfway down."""
    h, w = out.shape[:2]
    return tuple(out[round((y1 + y2) / 2 * h), round(x * w)])


def test_comparison_colours_true_false_and_missed() -> None:
    record, det = comparison_case()
    out = np.asarray(viz.plot_comparison(grey(400, 300), record, det, line_width=3, min_score=0.0))
    assert edge(out, 0.11, 0.11, 0.41) == viz.TP_COLOUR
    assert edge(out, 0.40, 0.60, 0.80) == viz.FP_COLOUR
    assert edge(out, 0.62, 0.52, 0.88) == viz.FP_COLOUR
    assert edge(out, 0.60, 0.50, 0.90) == viz.FN_COLOUR


def test_comparison_min_score_hides_detections_and_their_matches() -> None:
    record, det = comparison_case()
    out = np.asarray(viz.plot_comparison(grey(400, 300), record, det, line_width=3, min_score=0.95))
    assert edge(out, 0.40, 0.60, 0.80) == GREY  # hidden
    assert edge(out, 0.10, 0.10, 0.40) == viz.FN_COLOUR  # its only match is hidden: missed


def test_comparison_follows_the_evaluations_matches() -> None:
    record, det = comparison_case()
    matches = ImageMatches(
        image="x.png",
        det_tp=np.array([False, True, False, False]),
        det_gt=np.array([-1, 1, -1, -1]),
        det_ignored=np.array([False, False, False, True]),
        gt_matched=np.array([False, True]),
        gt_ignored=np.array([False, False]),
    )
    out = np.asarray(
        viz.plot_comparison(grey(400, 300), record, det, matches, line_width=3, min_score=None)
    )
    assert edge(out, 0.11, 0.11, 0.41) == viz.FP_COLOUR
    assert edge(out, 0.40, 0.60, 0.80) == viz.TP_COLOUR
    assert edge(out, 0.10, 0.10, 0.40) == viz.FN_COLOUR  # ground truth 0 unmatched
    one = dataclasses.replace(matches, det_tp=np.array([True]))
    with pytest.raises(InvalidInputError, match="aligned with the prediction's 4 detections"):
        viz.plot_comparison(grey(), record, det, one)


def test_comparison_breaks_iou_ties_as_the_evaluation_does() -> None:
    # One detection overlaps two ground-truth boxes by exactly the same IoU: the picture must
    # mark as matched the box evaluate() matched (an own matcher once picked the other one).
    record = ImageRecord(
        image="tie.png",
        width=400,
        height=400,
        objects=(obj("can", 0.125, 0.125, 0.5, 0.5), obj("can", 0.25, 0.125, 0.625, 0.5)),
    )
    det = Detections([[0.1875, 0.125, 0.5625, 0.5]], [0.9], [0], classes=CLASSES)
    truth = LabeledDataset([record])
    report = evaluate(truth, [Prediction(image="tie.png", width=400, height=400, detections=det)])
    matched = int(report.matches["tie.png"].det_gt[0])
    assert matched in (0, 1)
    out = np.asarray(viz.plot_comparison(grey(400, 400), record, det, line_width=3))
    missed = record.objects[1 - matched].box
    assert edge(out, missed.top_x, missed.top_y, missed.bottom_y) == viz.FN_COLOUR
    hit = record.objects[matched].box
    assert edge(out, hit.top_x, hit.top_y, hit.bottom_y) == viz.TP_COLOUR


def test_comparison_ignores_detections_of_crowd_regions() -> None:
    record = ImageRecord(image="x", objects=(obj("can", 0.1, 0.1, 0.5, 0.5, is_crowd=True),))
    det = Detections([[0.1, 0.1, 0.5, 0.5]], [0.9], [0], classes=CLASSES)
    out = np.asarray(viz.plot_comparison(grey(400, 300), record, det, line_width=3))
    assert edge(out, 0.1, 0.1, 0.5) == viz_draw._IGNORED_COLOUR


# ----------------------------------------------------------------------------- matplotlib
def test_plot_makes_a_figure_or_draws_into_axes(cards_session: LabeledDataset) -> None:
    from matplotlib.figure import Figure

    record = cards_session[0]
    fig = viz.plot(record.image, record, title=record.name)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.images) == 1
    assert ax.get_title() == record.name
    assert np.asarray(ax.images[0].get_array()).shape[:2] == (record.height, record.width)
    other = Figure()
    target_ax = other.add_subplot()
    assert viz.plot(record.image, record, ax=target_ax) is target_ax
    assert len(target_ax.images) == 1


def test_plot_grid_has_one_axes_per_image(cards_session: LabeledDataset) -> None:
    fig = viz.plot_grid(cards_session[:5], cols=2)
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == [r.name for r in cards_session[:5]]
    pairs = [(r.image, r) for r in cards_session[:3]]
    assert len(viz.plot_grid(pairs).axes) == 3
    with pytest.raises(InvalidInputError, match="at least one image"):
        viz.plot_grid([])
    with pytest.raises(InvalidInputError, match=r"images_and_targets\[0\]"):
        viz.plot_grid(["just a path"])  # type: ignore[list-item]


def test_plot_class_distribution_bars_match_the_summary(cards_session: LabeledDataset) -> None:
    extra = LabeledDataset(cards_session.records, [*cards_session.classes, "jokers"])
    fig = extra.plot_class_distribution(title="cards")
    (ax,) = fig.axes
    summary = extra.summary()
    n = len(extra.classes)
    assert len(ax.patches) == 2 * n  # boxes and images per class
    assert ax.get_title() == "cards"
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(names) == sorted(extra.classes)
    boxes = [int(p.get_width()) for p in ax.containers[0]]
    images = [int(p.get_width()) for p in ax.containers[1]]
    assert boxes == [summary.boxes_per_class[c] for c in names]
    assert images == [summary.images_per_class[c] for c in names]
    assert boxes == sorted(boxes, reverse=True)  # largest class first
    assert names[-1] == "jokers"
    assert boxes[-1] == 0
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # renders headless, without pyplot
    assert buffer.getvalue().startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- report plots
Evaluated = tuple[LabeledDataset, EvaluationReport, list[Prediction]]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    """A data set, predictions with misses, swaps and extra boxes, and their report."""
    ds = make_dataset(tmp_path_factory.mktemp("eval"), n_images=8, size=(200, 150), seed=4)
    rng = np.random.default_rng(0)
    predictions = []
    for r in ds:
        boxes = np.array([o.box.to_xyxy() for o in r.objects]).reshape(-1, 4)
        ids = np.array([ds.classes.index(o.label) for o in r.objects])
        swap = rng.random(len(ids)) < 0.2
        ids = np.where(swap, (ids + 1) % len(ds.classes), ids)
        boxes = np.vstack([boxes, [[0.40, 0.40, 0.55, 0.60]]])  # a false positive each
        ids = np.r_[ids, rng.integers(0, len(ds.classes))]
        det = Detections(boxes, rng.uniform(0.2, 1.0, len(ids)), ids, ds.classes)
        predictions.append(
            Prediction(image=r.image, width=r.width, height=r.height, detections=det)
        )
    return ds, evaluate(ds, predictions), predictions


def test_plot_pr_curves_draws_one_curve_per_class(evaluated: Evaluated) -> None:
    _, report, _ = evaluated
    fig = viz.plot_pr_curves(report)
    (ax,) = fig.axes
    steps = [line for line in ax.get_lines() if line.get_linestyle() != "None"]
    assert len(steps) == len(report.pr_curves)
    legend_box = ax.get_legend()
    assert legend_box is not None
    legend = [t.get_text() for t in legend_box.get_texts()]
    assert legend[0].startswith(f"{next(iter(report.pr_curves))} (AP50 ")
    curve = report.pr_curves[next(iter(report.pr_curves))]
    xs = np.asarray(steps[0].get_xdata())
    np.testing.assert_allclose(xs[1:], curve.recall)
    ys = np.asarray(steps[0].get_ydata())
    assert np.all(np.diff(ys[1:]) <= 1e-12)  # the monotone envelope never rises
    one = viz.plot_pr_curves(report, classes=[report.classes[1]])
    assert len([ln for ln in one.axes[0].get_lines() if ln.get_linestyle() != "None"]) == 1
    with pytest.raises(InvalidInputError, match="ground-truth classes of the report"):
        viz.plot_pr_curves(report, classes=["nope"])


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_confusion_matrix_shows_the_reports_counts(
    evaluated: Evaluated, normalize: bool
) -> None:
    _, report, _ = evaluated
    fig = viz.plot_confusion_matrix(report, normalize=normalize)
    ax = fig.axes[0]
    shown = np.asarray(ax.images[0].get_array())
    counts = np.asarray(report.confusion_matrix, dtype=float)
    n = len(report.confusion_labels)
    assert shown.shape == (n, n)
    if normalize:
        rows = counts.sum(axis=1)
        np.testing.assert_allclose(shown.sum(axis=1)[rows > 0], 1.0)
    else:
        np.testing.assert_array_equal(shown, counts)
        texts = {
            (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
        }
        assert texts == {(r, c): str(int(v)) for (r, c), v in np.ndenumerate(counts) if v}
    assert [t.get_text() for t in ax.get_xticklabels()] == list(report.confusion_labels)
    assert report.confusion_labels[-1] == "background"


def test_comparison_looks_up_a_reports_matches(evaluated: Evaluated) -> None:
    ds, report, predictions = evaluated
    record, prediction = ds[0], predictions[0]
    matches = report.matches[record.image]
    by_report = np.asarray(
        viz.plot_comparison(record.image, record, prediction, report, min_score=None)
    )
    by_matches = np.asarray(
        viz.plot_comparison(record.image, record, prediction, matches, min_score=None)
    )
    np.testing.assert_array_equal(by_report, by_matches)
    other = ImageRecord(image="elsewhere.png", width=200, height=150)
    with pytest.raises(InvalidInputError, match="no matches for image"):
        viz.plot_comparison(
            record.image, other, Prediction(image=None, detections=prediction.detections), report
        )
