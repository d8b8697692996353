"""Two processes creating the same data asset name at once get distinct versions or a typed
conflict, never a raw ``OSError``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from detectkit import Project
from detectkit.synthetic import make_dataset

WRITER = """
import json, sys, time
from detectkit import ConflictError, Project, read_dataset
project = Project.local({root!r})
data = read_dataset({data!r})
start = {start}
while time.time() < start:
    time.sleep(0.001)
out = []
for _ in range(3):
    try:
        out.append(project.datasets.create("cards", data, version={version}).version)
    except ConflictError as exc:
        out.append("conflict: " + str(exc))
print(json.dumps(out))
"""


def _race(tmp_path: Path, version: str | None, writers: int = 2) -> list[list[str]]:
    import time

    data = make_dataset(tmp_path / "cards", n_images=30, size=(64, 48), seed=3)
    data.to_azureml(tmp_path / "cards")
    root = tmp_path / "project"
    Project.local(root)  # created once, before the race
    start = time.time() + 3.0
    script = textwrap.dedent(
        WRITER.format(
            root=str(root), data=str(tmp_path / "cards"), start=start, version=repr(version)
        )
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(writers)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_concurrent_creates_get_distinct_versions(tmp_path: Path) -> None:
    results = _race(tmp_path, None)
    versions = [v for r in results for v in r]
    assert sorted(versions, key=int) == [str(n) for n in range(1, 7)]  # each exactly once
    project = Project.local(tmp_path / "project")
    assert project.datasets.get("cards").version == "6"
    for v in versions:
        asset = project.datasets.get("cards", v)
        assert asset.images == 30
        meta = json.loads((Path(asset.uri) / "asset.json").read_text())
        assert meta["version"] == v
    leftovers = [p.name for p in (tmp_path / "project" / "datasets" / "cards").iterdir()]
    assert sorted(leftovers, key=int) == sorted(versions, key=int) and all(
        not n.startswith(".") for n in leftovers
    )


def test_concurrent_creates_of_one_named_version_conflict(tmp_path: Path) -> None:
    results = _race(tmp_path, "v1")
    outcomes = [v for r in results for v in r]
    assert outcomes.count("v1") == 1
    assert all(
        o.startswith("conflict: data asset cards:v1 already exists") for o in outcomes if o != "v1"
    )
