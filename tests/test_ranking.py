"""rank_for_labeling: each strategy on hand-made predictions with a known order."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from detectkit import Detections, Prediction
from detectkit.errors import InvalidInputError, NotFoundError
from detectkit.ranking import difference_hash, image_uncertainty, rank_for_labeling

CLASSES = ["cat", "dog"]


def _pred(
    *boxes: tuple[tuple[float, float, float, float], float, int], image: str | None = None
) -> Prediction:
    if not boxes:
        return Prediction(image=image, detections=Detections.empty(CLASSES))
    return Prediction(
        image=image,
        detections=Detections(
            [b[0] for b in boxes], [b[1] for b in boxes], [b[2] for b in boxes], CLASSES
        ),
    )


A = (0.1, 0.1, 0.4, 0.4)
B = (0.6, 0.6, 0.9, 0.9)


def test_least_confident_ranks_by_the_best_box_and_nothing_found_is_most_uncertain() -> None:
    preds = [
        _pred((A, 0.95, 0)),  # sure: 0.05
        _pred((A, 0.6, 0), (B, 0.3, 1)),  # 0.4
        _pred((A, 0.02, 0)),  # below the floor: nothing found, 1.0
        _pred((A, 0.8, 0)),  # 0.2
    ]
    ranked = rank_for_labeling(preds, "least_confident")
    assert [r.position for r in ranked] == [2, 1, 3, 0]
    assert [round(r.uncertainty, 6) for r in ranked] == [1.0, 0.4, 0.2, 0.05]


def test_margin_sees_two_classes_competing_for_one_object() -> None:
    overlapping = (0.12, 0.1, 0.42, 0.4)  # IoU with A > 0.5
    preds = [
        _pred((A, 0.9, 0), (B, 0.9, 1)),  # two sure, separate objects: 1 - 0.9
        _pred((A, 0.9, 0), (overlapping, 0.85, 1)),  # cat or dog? margin 0.05
        _pred((A, 0.7, 0)),  # one box: margin 0.7
    ]
    ranked = rank_for_labeling(preds, "margin")
    assert [r.position for r in ranked] == [1, 2, 0]
    assert ranked[0].uncertainty == pytest.approx(0.95)
    assert ranked[1].uncertainty == pytest.approx(0.3)
    # the same boxes of one class are not rivals
    same = _pred((A, 0.9, 0), (overlapping, 0.85, 0))
    assert image_uncertainty(same, "margin") == pytest.approx(1 - 0.85)


def test_entropy_is_the_mean_binary_entropy_of_the_boxes() -> None:
    preds = [_pred((A, 0.99, 0), (B, 0.98, 1)), _pred((A, 0.5, 0)), _pred((A, 0.9, 0), (B, 0.6, 1))]
    ranked = rank_for_labeling(preds, "entropy")
    assert [r.position for r in ranked] == [1, 2, 0]
    assert ranked[0].uncertainty == pytest.approx(1.0)

    def h(s: float) -> float:
        return -(s * math.log2(s) + (1 - s) * math.log2(1 - s))

    assert ranked[1].uncertainty == pytest.approx((h(0.9) + h(0.6)) / 2)
    assert image_uncertainty(_pred(), "entropy") == 1.0


def test_random_is_seeded() -> None:
    preds = [_pred((A, 0.5, 0)) for _ in range(20)]
    one = [r.position for r in rank_for_labeling(preds, "random", seed=3)]
    again = [r.position for r in rank_for_labeling(preds, "random", seed=3)]
    other = [r.position for r in rank_for_labeling(preds, "random", seed=4)]
    assert one == again
    assert one != other
    assert sorted(one) == list(range(20))


def _photo(path: Path, shade: int, stripes: bool) -> str:
    im = Image.new("RGB", (64, 48), (shade, shade, shade))
    for x in range(0, 64, 16 if stripes else 8):
        im.paste((255 - shade, 40, 40), (x, 0, x + 4, 48))
    im.save(path)
    return str(path)


def test_diversity_moves_a_near_duplicate_after_the_distinct_picks(tmp_path: Path) -> None:
    first = _photo(tmp_path / "a.png", 30, True)
    twin = tmp_path / "a-again.png"
    Image.open(first).resize((64, 48)).point(lambda v: min(255, v + 3)).save(twin)
    other = tmp_path / "b.png"
    gradient = Image.linear_gradient("L").resize((64, 48)).rotate(90)
    gradient.convert("RGB").save(other)
    assert (difference_hash(first) ^ difference_hash(twin)).bit_count() <= 10
    assert (difference_hash(first) ^ difference_hash(other)).bit_count() > 10
    preds = [_pred((A, 0.3, 0)), _pred((A, 0.35, 0)), _pred((A, 0.9, 0))]
    images = [first, str(twin), str(other)]
    plain = rank_for_labeling(preds, "least_confident", images=images)
    assert [r.position for r in plain] == [0, 1, 2]
    diverse = rank_for_labeling(preds, "least_confident", images=images, diversity=True)
    assert [r.position for r in diverse] == [0, 2, 1]
    assert diverse[2].duplicate_of == 0 and diverse[0].duplicate_of is None


def test_bad_arguments_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="strategy: expected one of"):
        rank_for_labeling([_pred()], "confidence")
    with pytest.raises(InvalidInputError, match="images: expected one per prediction"):
        rank_for_labeling([_pred()], images=[])
    with pytest.raises(NotFoundError, match="pass images="):
        rank_for_labeling([_pred()], diversity=True)
    with pytest.raises(NotFoundError, match="cannot read the image"):
        rank_for_labeling([_pred()], images=[tmp_path / "missing.png"], diversity=True)
