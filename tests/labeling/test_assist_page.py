"""ML assistance in the page, in headless Chromium (the pattern of test_review_page.py): the
server starts the background trainer, the page shows its state, and its drafts appear after a
reload."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detectkit import LabeledDataset
from detectkit.labeling.assist import MLAssist
from detectkit.labeling.labels import box_json
from detectkit.project import Project
from detectkit.synthetic import make_dataset

CHROMIUM = os.environ.get("DETECTKIT_CHROMIUM", "/usr/bin/chromium")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (the browser tests need it)"
)
pytest.importorskip("torch")
pytest.importorskip("torchvision")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

TINY = {"number_of_epochs": 1, "min_size": 64, "max_size": 64, "box_score_threshold": 0.0}
TINY |= {"box_detections_per_image": 3, "advanced_settings": {"pretrained": False}}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def test_the_server_starts_the_trainer_and_its_drafts_show_after_a_reload(
    browser: Any, tmp_path: Path
) -> None:
    data = make_dataset(tmp_path / "data", n_images=8, size=(64, 64), seed=7)
    records = [r if k < 3 else r.model_copy(update={"objects": ()}) for k, r in enumerate(data)]
    project = Project.local(tmp_path / "project")
    labeling = project.labeling.create(
        "assisted",
        LabeledDataset(records, data.classes, root=data.root),
        classes=list(data.classes),
        ml_assist=MLAssist(min_labeled=4, min_score=0.0, training_parameters=TINY),
    )
    store = labeling.store
    assert store.progress().labeled == 3  # the labels the images came with
    server = labeling.serve()
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 760}, bypass_csp=True)
        page.set_default_timeout(5000)
        page.goto(server.url)
        page.wait_for_function("document.body.dataset.shown")
        page.wait_for_function("document.getElementById('assistant').dataset.state === 'idle'")
        assert "4 labeled images" in page.inner_text("#assistant")
        assert labeling.assistant is not None and not labeling.assistant.running
        # the fourth label, saved through the page's API, starts the trainer
        fourth = store.entries[3].id
        labels = store.labels(fourth)
        answer = page.evaluate(
            """async ([id, body, token]) => {
                const r = await fetch('api/images/' + id, {method: 'PUT', body: JSON.stringify(body),
                    headers: {'X-Detectkit-Token': token, 'Content-Type': 'application/json'}});
                return r.status; }""",
            [
                fourth,
                {
                    "revision": labels.revision,
                    "state": "labeled",
                    "boxes": [box_json(o) for o in data.records[3].objects],
                },
                server.token,
            ],
        )
        assert answer == 200
        assert labeling.assistant.running  # started by the save
        page.wait_for_function(
            "['training', 'prelabeling', 'ready'].includes("
            "document.getElementById('assistant').dataset.state)",
            timeout=60_000,
        )
        page.wait_for_function(
            "document.getElementById('assistant').dataset.state === 'ready'", timeout=90_000
        )
        text = page.inner_text("#assistant")
        assert "ready" in text and "val mAP" in text
        status = labeling.assistant.status()
        assert status.state == "ready" and status.drafted > 0
        # after a reload the first image still to label is a pre-labeled one: drafts, dashed
        page.reload()
        page.wait_for_function("document.body.dataset.shown")
        shown = page.evaluate("document.body.dataset.shown")
        assert shown in {e.id for e in store.entries[4:]}
        assert store.state(shown).value == "prelabeled"
        assert page.locator(".box.draft").count() == len(store.labels(shown).objects) > 0
        style = page.eval_on_selector(".box.draft", "e => getComputedStyle(e).borderStyle")
        assert style == "dashed"
        assert "pre-labeled" in page.inner_text("#count")
        page.close()
    finally:
        server.stop()
