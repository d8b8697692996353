"""Reviewing pre-labels in the page, in headless Chromium (the pattern of test_page.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit import Box, ImageRecord, LabeledDataset
from detectkit.backends.local import LocalBackend
from detectkit.labeling import Labeling, LabelingProject, LabelingServer
from detectkit.labeling.labels import annotation, is_draft

CHROMIUM = os.environ.get("DETECTKIT_CHROMIUM", "/usr/bin/chromium")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (the browser tests need it)"
)
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

SHOTS = (
    Path(__file__).parents[2] / "docs" / "images" / "labeling"
    if os.environ.get("DETECTKIT_SCREENSHOTS")
    else Path(os.environ.get("TMPDIR", "/tmp")) / "detectkit-labeling-shots"
)
SHOTS.mkdir(parents=True, exist_ok=True)
W, H = 400, 300
CLASSES = ["square", "circle"]
#: The drafts on the first image: (label, corners, score).
DRAFTS = [
    ("square", (0.05, 0.1, 0.3, 0.4), 0.92),
    ("circle", (0.4, 0.1, 0.6, 0.4), 0.81),
    ("square", (0.7, 0.1, 0.95, 0.4), 0.66),
    ("circle", (0.1, 0.6, 0.3, 0.85), 0.21),
]


def _box(c: tuple[float, float, float, float]) -> Box:
    return Box(top_x=c[0], top_y=c[1], bottom_x=c[2], bottom_y=c[3])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LabelingProject, LabelingServer]]:
    folder = tmp_path / "imgs"
    folder.mkdir()
    records = []
    for i in range(2):
        im = Image.new("RGB", (W, H), (40 + 60 * i, 90, 120))
        for x in range(0, W, 50):
            for y in range(0, H, 50):
                if (x + y) // 50 % 2:
                    im.paste((200, 200, 170), (x, y, x + 25, y + 25))
        im.save(folder / f"img{i}.png")
        objects = (
            tuple(
                annotation(label, _box(corners), score=score, source="model", model_version="toy:1")
                for label, corners, score in DRAFTS
            )
            if i == 0
            else ()
        )
        records.append(
            ImageRecord(image=str(folder / f"img{i}.png"), width=W, height=H, objects=objects)
        )
    labeling = Labeling(LocalBackend(tmp_path / "proj"))
    project = labeling.create(
        "review", LabeledDataset(records, CLASSES, root=folder), classes=CLASSES
    )
    server = project.serve()
    yield project, server
    server.stop()


def _open(browser: Any, server: LabelingServer) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 760}, bypass_csp=True)
    page.set_default_timeout(5000)
    page.goto(server.url)
    page.wait_for_function("document.body.dataset.shown")
    return page


def _image_point(page: Any, fx: float, fy: float) -> tuple[float, float]:
    r = page.eval_on_selector(
        "#image",
        "e => { const b = e.getBoundingClientRect(); return [b.x, b.y, b.width, b.height] }",
    )
    return r[0] + fx * r[2], r[1] + fy * r[3]


def _wait_saved(page: Any, revision: int) -> None:
    page.wait_for_function(
        f"document.getElementById('status').textContent.includes('revision {revision}')"
    )


def _threshold(page: Any, value: float) -> None:
    page.eval_on_selector(
        "#threshold",
        f"e => {{ e.value = '{value}'; e.dispatchEvent(new Event('input')); }}",
    )


def test_accept_reject_edit_and_mark_reviewed_export_only_human_boxes(
    browser: Any, served: tuple[LabelingProject, LabelingServer]
) -> None:
    project, server = served
    page = _open(browser, server)
    first = project.store.entries[0].id
    assert page.evaluate("document.body.dataset.shown") == first
    assert page.locator(".box.draft").count() == 4
    assert page.locator(".box.draft .tag").all_inner_texts()[0] == "square 0.92"
    assert "2 of" not in page.inner_text("#count") and "1 pre-labeled" in page.inner_text("#count")
    # the slider hides the low draft (kept, not deleted)
    _threshold(page, 0.5)
    assert page.locator(".box.draft").count() == 3
    # accept the first by key, with the pointer over it
    page.mouse.move(*_image_point(page, 0.17, 0.25))
    page.keyboard.press("a")
    _wait_saved(page, 1)
    assert page.locator(".box.draft").count() == 2 and page.locator(".box").count() == 3
    page.screenshot(path=str(SHOTS / "review.png"))
    # reject the second by key
    page.mouse.move(*_image_point(page, 0.5, 0.25))
    page.keyboard.press("r")
    _wait_saved(page, 2)
    # edit the third: moved by its body, it becomes a human label
    a, b = _image_point(page, 0.82, 0.25), _image_point(page, 0.77, 0.3)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    page.mouse.move(*b)
    page.mouse.up()
    _wait_saved(page, 3)
    assert page.locator(".box.draft").count() == 0  # the low draft is still hidden
    _threshold(page, 0.0)
    assert page.locator(".box.draft").count() == 1
    # mark reviewed: the page moves on
    page.keyboard.press("v")
    page.wait_for_function(f"document.body.dataset.shown !== '{first}'")
    labels = project.store.labels(first)
    assert labels.state.value == "reviewed" and labels.revision == 4
    assert [(o.label, is_draft(o)) for o in labels.objects] == [
        ("square", False),
        ("square", False),
        ("circle", True),
    ]
    p = project.progress
    assert (p.reviewed, p.prelabeled, p.unlabeled, p.boxes, p.drafts) == (1, 0, 1, 2, 1)
    page.wait_for_function("document.getElementById('count').textContent.includes('(1 reviewed)')")
    assert "1 untouched" in page.inner_text("#count")
    # the export holds exactly the accepted and the edited box, as human labels
    dataset = project.export()
    assert len(dataset) == 1
    objects = dataset.records[0].objects
    assert [(o.label, o.score, is_draft(o)) for o in objects] == [
        ("square", None, False),
        ("square", None, False),
    ]
    assert objects[0].box.to_xyxy(W, H) == pytest.approx(_box(DRAFTS[0][1]).to_xyxy(W, H), abs=1e-6)
    moved = objects[1].box.to_xyxy(W, H)
    want = _box(DRAFTS[2][1]).to_xyxy(W, H)
    assert moved[0] == pytest.approx(want[0] - 0.05 * W, abs=2)
    assert moved[1] == pytest.approx(want[1] + 0.05 * H, abs=2)
    assert moved[2] - moved[0] == pytest.approx(want[2] - want[0], abs=1e-6)
    page.close()


def test_shift_a_accepts_every_shown_draft_and_relabeling_makes_a_draft_human(
    browser: Any, served: tuple[LabelingProject, LabelingServer]
) -> None:
    project, server = served
    page = _open(browser, server)
    first = project.store.entries[0].id
    _threshold(page, 0.7)  # two drafts shown: 0.92 and 0.81
    page.keyboard.press("Shift+A")
    _wait_saved(page, 1)
    assert page.locator(".box.draft").count() == 0
    _threshold(page, 0.0)
    assert page.locator(".box.draft").count() == 2
    # relabel the 0.66 draft with the class key: human now
    page.click(".box[data-index='2'] .tag", position={"x": 2, "y": 2}, force=True)
    page.keyboard.press("2")
    _wait_saved(page, 2)
    objects = project.store.labels(first).objects
    assert [(o.label, is_draft(o)) for o in objects] == [
        ("square", False),
        ("circle", False),
        ("circle", False),
        ("circle", True),
    ]
    page.close()
