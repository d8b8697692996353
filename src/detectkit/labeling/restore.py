"""Restoring a remote labeling project's state from the files the workspace keeps
(``project.json``, ``index.jsonl``, ``labels.jsonl``; see :mod:`detectkit.labeling.project`)."""

from __future__ import annotations

import json
from pathlib import Path

from detectkit.errors import InvalidInputError
from detectkit.labeling.labels import ImageEntry, ImageLabels
from detectkit.labeling.sources import CachedSource
from detectkit.labeling.store import LabelingStore

__all__ = ["STATE_FILES", "read_labels", "restore"]

STATE_FILES = ("project.json", "index.jsonl", "labels.jsonl")


def read_labels(folder: Path) -> list[ImageLabels]:
    path = folder / "labels.jsonl"
    if not path.is_file():
        return []
    out = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                out.append(ImageLabels.from_json(json.loads(line), where=f"{path}, line {number}"))
    return out


def restore(
    downloaded: Path, target: Path, source: CachedSource, labels: list[ImageLabels]
) -> LabelingStore:
    """A store in ``target`` built from a downloaded state (project.json, index.jsonl)."""
    missing = [f for f in STATE_FILES[:2] if not (downloaded / f).is_file()]
    if missing:
        raise InvalidInputError(
            f"labeling state: {', '.join(missing)} missing; the state in the workspace is "
            "incomplete (sync the project again from a machine that has it)"
        )
    meta = LabelingStore.read_meta(downloaded)
    entries = []
    with (downloaded / "index.jsonl").open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    entries.append(ImageEntry(**json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise InvalidInputError(
                        f"labeling state index.jsonl, line {number}: not an index entry ({exc})"
                    ) from exc
    return LabelingStore.create(
        target,
        name=str(meta["name"]),
        classes=list(meta["classes"]),
        images=entries,
        labels=labels,
        source=source,
        instructions=meta.get("instructions")
        if isinstance(meta.get("instructions"), str)
        else None,
        info=meta.get("info") if isinstance(meta.get("info"), dict) else None,
    )
