"""Labeling page speed: first image shown, image-to-image switch, save latency (p50/p95, from
the browser's fetch), and the server's memory, on generated projects of 500 and 5,000 images
(8 boxes each: 4,000 and 40,000 boxes).

The server runs in a process of its own (the project opened from disk, as ``detectkit label``
does), so its peak memory is the server's alone, not the project generation's.

Run: ``python benchmarks/labeling_page.py [SIZES ...]`` (default 500 5000; needs ``pip install
playwright`` and Chromium at /usr/bin/chromium, or DETECTKIT_CHROMIUM).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from detectkit.backends.local import LocalBackend
from detectkit.boxes import Box
from detectkit.dataset import ImageRecord, LabeledDataset, ObjectAnnotation
from detectkit.labeling import Labeling

WAIT_FOR_SAVE = """() => { window.__wait = new Promise(ok => window.addEventListener(
  'detectkit:saved', e => ok(e.detail.ms), {once: true})); }"""
CHROMIUM = os.environ.get("DETECTKIT_CHROMIUM", "/usr/bin/chromium")
# the server's own peak (VmHWM: ru_maxrss would carry the parent's peak over the exec)
SERVE = """
import re, sys
from detectkit.backends.local import LocalBackend
from detectkit.labeling import Labeling
server = Labeling(LocalBackend(sys.argv[1])).get("bench").serve()
print(server.url, flush=True)
sys.stdin.read()
server.stop()
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1)) / 1024, flush=True)
"""


def make(root: Path, n: int) -> LabeledDataset:
    folder = root / "imgs"
    folder.mkdir()
    Image.new("RGB", (320, 240), (90, 120, 150)).save(folder / "base.png")
    data = (folder / "base.png").read_bytes()
    records = []
    for i in range(n):
        path = folder / f"img{i:05d}.png"
        path.write_bytes(data)
        objects = tuple(
            ObjectAnnotation(
                label=("a", "b", "c")[k % 3],
                box=Box(top_x=k / 10, top_y=k / 10, bottom_x=k / 10 + 0.1, bottom_y=k / 10 + 0.15),
            )
            for k in range(8)
        )
        records.append(ImageRecord(image=str(path), width=320, height=240, objects=objects))
    (folder / "base.png").unlink()
    return LabeledDataset(records, ["a", "b", "c"], root=folder)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = make(root, n)
        t0 = time.perf_counter()
        project = Labeling(LocalBackend(root / "proj")).create("bench", dataset, classes="a,b,c")
        created = time.perf_counter() - t0
        del dataset, project
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(root / "proj")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdin is not None and server.stdout is not None
        url = server.stdout.readline().strip()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1200, "height": 760}, bypass_csp=True)
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_function("document.body.dataset.shown")
            first = (time.perf_counter() - t0) * 1000
            switches = []
            for _ in range(30):
                shown = page.evaluate("document.body.dataset.shown")
                t0 = time.perf_counter()
                page.keyboard.press("n")
                page.wait_for_function(f"document.body.dataset.shown !== '{shown}'", polling="raf")
                switches.append((time.perf_counter() - t0) * 1000)
            saves: list[float] = []
            # select a box and change its class by key: one save each
            page.click(".box[data-index='0']", position={"x": 3, "y": 3}, force=True)
            for i in range(60):
                page.evaluate(WAIT_FOR_SAVE)
                page.keyboard.press(str(1 + (i + 1) % 3))
                saves.append(page.evaluate("window.__wait"))
            # scroll the image list to its end: only the rows in view are in the DOM
            page.eval_on_selector("#images", "e => { e.scrollTop = e.scrollHeight; }")
            last = f"img{n - 1:05d}.png"
            page.wait_for_function(
                f"[...document.querySelectorAll('#images li')].some(li => li.textContent.includes('{last}'))"
            )
            rows = page.locator("#images li").count()
            browser.close()
        server.stdin.close()
        rss = float(server.stdout.read().strip().splitlines()[-1])
        server.wait(timeout=60)
        return {
            "images": n,
            "create_s": created,
            "first_image_ms": first,
            "switch_p50_ms": statistics.median(switches),
            "switch_p95_ms": pct(switches, 0.95),
            "save_p50_ms": statistics.median(saves),
            "save_p95_ms": pct(saves, 0.95),
            "server_peak_rss_mb": rss,
            "list_rows_in_dom": rows,
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[500, 5000], help="images")
    for n in parser.parse_args().sizes:
        r = measure(n)
        print(
            "  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
        )
