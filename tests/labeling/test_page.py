"""The labeling page driven in headless Chromium (Playwright from PyPI, the system browser)."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from detectkit.backends.local import LocalBackend
from detectkit.labeling import Labeling, LabelingProject, LabelingServer

CHROMIUM = os.environ.get("DETECTKIT_CHROMIUM", "/usr/bin/chromium")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (the browser tests need it)"
)
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

#: The docs' screenshots are refreshed only when asked (DETECTKIT_SCREENSHOTS=1), so a test run
#: never changes the checkout; otherwise they go to a temporary folder and are still taken.
SHOTS = (
    Path(__file__).parents[2] / "docs" / "images" / "labeling"
    if os.environ.get("DETECTKIT_SCREENSHOTS")
    else Path(os.environ.get("TMPDIR", "/tmp")) / "detectkit-labeling-shots"
)
SHOTS.mkdir(parents=True, exist_ok=True)
W, H = 400, 300


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
    for i in range(3):
        im = Image.new("RGB", (W, H), (40 + 50 * i, 90, 120))
        for x in range(0, W, 50):
            for y in range(0, H, 50):
                if (x + y) // 50 % 2:
                    im.paste((200, 200, 170), (x, y, x + 25, y + 25))
        im.save(folder / f"img{i}.png")
    labeling = Labeling(LocalBackend(tmp_path / "proj"))
    project = labeling.create("shapes", folder, classes=["square", "circle", "triangle"])
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


def _drag(page: Any, a: tuple[float, float], b: tuple[float, float]) -> None:
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    page.mouse.move(*b)
    page.mouse.up()


def _wait_saved(page: Any, revision: int) -> None:
    page.wait_for_function(
        f"document.getElementById('status').textContent.includes('revision {revision}')"
    )


def test_draw_pick_move_resize_delete_undo_skip_reload_and_export(
    browser: Any, served: tuple[LabelingProject, LabelingServer]
) -> None:
    project, server = served
    page = _open(browser, server)
    first = page.evaluate("document.body.dataset.shown")
    # draw a box, pick "circle" with key 2
    _drag(page, _image_point(page, 0.1, 0.1), _image_point(page, 0.4, 0.5))
    _wait_saved(page, 1)
    page.keyboard.press("2")
    _wait_saved(page, 2)
    # a second box, then move the first by its body and resize it by its corner
    _drag(page, _image_point(page, 0.6, 0.6), _image_point(page, 0.9, 0.9))
    _wait_saved(page, 3)
    page.click(".box[data-index='0'] .tag", position={"x": 2, "y": 2}, force=True)
    _drag(page, _image_point(page, 0.25, 0.3), _image_point(page, 0.35, 0.4))  # move by +0.1
    _wait_saved(page, 4)
    se = page.eval_on_selector(
        ".box[data-index='0'] .h.se",
        "e => { const b = e.getBoundingClientRect(); return [b.x + b.width/2, b.y + b.height/2] }",
    )
    _drag(page, (se[0], se[1]), _image_point(page, 0.7, 0.7))
    _wait_saved(page, 5)
    # delete the second box, then undo and delete again: one box stays
    page.click(".box[data-index='1']", position={"x": 20, "y": 20})
    page.keyboard.press("Delete")
    _wait_saved(page, 6)
    page.keyboard.press("Control+z")
    _wait_saved(page, 7)
    assert page.locator(".box").count() == 2
    page.click(".box[data-index='1']", position={"x": 20, "y": 20})
    page.keyboard.press("Delete")
    _wait_saved(page, 8)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "page.png"))
    # skip the next image
    page.keyboard.press("n")
    page.wait_for_function(f"document.body.dataset.shown !== '{first}'")
    second = page.evaluate("document.body.dataset.shown")
    page.keyboard.press("k")
    page.wait_for_function(f"document.body.dataset.shown !== '{second}'")
    # reload: exactly that
    page.reload()
    page.wait_for_function("document.body.dataset.shown")
    assert page.locator("#images li .st").all_inner_texts() == ["l", "s", "u"]
    assert page.locator("#chart .row[data-cls='circle'] .n").inner_text() == "1"
    labels = project.store.labels(first)
    assert len(labels.objects) == 1 and labels.objects[0].label == "circle"
    box = labels.objects[0].box
    got = [round(v) for v in box.to_xyxy(W, H)]
    # drawn 0.1..0.4 x 0.1..0.5, moved +0.1, corner dragged to 0.7: pixels within the mouse step
    assert got == pytest.approx([80, 60, 280, 210], abs=2)
    dataset = project.export()
    exported = dataset.records[0].objects[0].box.to_xyxy(W, H)
    assert exported == pytest.approx(box.to_xyxy(W, H), abs=1e-9)
    assert len(dataset) == 1
    page.close()


def test_a_stale_save_shows_the_other_edit(
    browser: Any, served: tuple[LabelingProject, LabelingServer]
) -> None:
    project, server = served
    page = _open(browser, server)
    image = page.evaluate("document.body.dataset.shown")
    other = [{"label": "triangle", "top_x": 0.5, "top_y": 0.5, "bottom_x": 0.75, "bottom_y": 0.75}]
    body = json.dumps({"revision": 0, "state": "labeled", "boxes": other}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/images/{image}",
        data=body,
        method="PUT",
        headers={"X-Detectkit-Token": server.token},
    )
    urllib.request.urlopen(req).close()  # another tab saved revision 1
    _drag(page, _image_point(page, 0.1, 0.1), _image_point(page, 0.3, 0.3))
    page.wait_for_selector("#conflict:not([hidden])")
    assert "Someone else saved this image" in page.inner_text("#conflict")
    assert page.locator(".box").count() == 1
    assert page.get_attribute(".box", "data-label") == "triangle"
    page.wait_for_function(
        "document.querySelector(\"#chart .row[data-cls='triangle'] .n\").textContent === '1'"
    )
    page.screenshot(path=str(SHOTS / "conflict.png"))
    assert project.store.labels(image).objects[0].label == "triangle"
    page.close()


def test_the_page_without_the_token_is_refused(
    browser: Any, served: tuple[LabelingProject, LabelingServer]
) -> None:
    _, server = served
    page = browser.new_page()
    answer = page.goto(f"http://127.0.0.1:{server.port}/")
    assert answer is not None and answer.status == 401
    page.close()


def test_a_box_on_an_exif_rotated_photo_is_normalized_on_the_displayed_image(
    browser: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    stored = Image.new("RGB", (160, 80), (0, 0, 255))  # stored landscape ...
    stored.paste((255, 0, 0), (0, 0, 80, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # ... displayed portrait, rotated 90 degrees clockwise
    stored.save(folder / "phone.jpg", exif=exif.tobytes(), quality=95)
    project = Labeling(LocalBackend(tmp_path / "proj")).create("phone", folder, classes=["red"])
    server = project.serve()
    try:
        page = _open(browser, server)
        size = page.eval_on_selector("#image", "e => [e.naturalWidth, e.naturalHeight]")
        assert size == [80, 160]
        _drag(page, _image_point(page, 0.0, 0.0), _image_point(page, 0.5, 0.25))
        _wait_saved(page, 1)
        labels = project.store.labels(project.store.entries[0].id)
        assert (labels.width, labels.height) == (80, 160)
        got = labels.objects[0].box.to_xyxy(80, 160)
        assert got == pytest.approx((0, 0, 40, 40), abs=1.5)
        page.close()
    finally:
        server.stop()


def test_the_image_list_is_virtualized_filtered_and_walked_in_order(
    browser: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    Image.new("RGB", (16, 12), (90, 120, 150)).save(folder / "img000.png")
    data = (folder / "img000.png").read_bytes()
    for i in range(1, 300):
        (folder / f"img{i:03d}.png").write_bytes(data)
    project = Labeling(LocalBackend(tmp_path / "proj")).create("many", folder, classes=["a"])
    ids = {e.name: e.id for e in project.store.entries}
    for name in ("img010.png", "img150.png", "img290.png"):
        project.store.save(ids[name], revision=0, state="skipped", objects=())
    server = project.serve()
    try:
        page = _open(browser, server)
        assert page.evaluate("document.body.dataset.shown") == ids["img000.png"]
        rows = page.locator("#images li")
        assert 0 < rows.count() < 80  # only the rows in view (and a few around) are drawn
        page.eval_on_selector("#images", "e => { e.scrollTop = e.scrollHeight; }")
        page.wait_for_function(
            "[...document.querySelectorAll('#images li')].some(li => li.textContent.startsWith('img299'))"
        )
        assert rows.count() < 80
        page.select_option("#filter", "s")
        page.eval_on_selector("#filter", "e => e.blur()")
        page.wait_for_function("document.querySelectorAll('#images li .st').length === 3")
        assert page.locator("#images li .st").all_inner_texts() == ["s", "s", "s"]
        walked = []
        for key in ("n", "n", "n", "p"):
            before = page.evaluate("document.body.dataset.shown")
            page.keyboard.press(key)
            if key == "n" and before == ids["img290.png"]:
                page.wait_for_timeout(300)  # the last skipped one: nothing after it
            else:
                page.wait_for_function(f"document.body.dataset.shown !== '{before}'")
            walked.append(page.evaluate("document.body.dataset.shown"))
        names = {v: k for k, v in ids.items()}
        assert [names[i] for i in walked] == [
            "img010.png",
            "img150.png",
            "img290.png",
            "img150.png",
        ]
        assert page.locator("#images li.current").inner_text().startswith("img150")
        page.close()
    finally:
        server.stop()
