"""Data assets of the local backend: versioned folders under ``root/datasets``.

Layout::

    datasets/<name>/<version>/   images/, annotations.jsonl, MLTable, asset.json

A version is immutable and appears at once (written into a temporary folder, then renamed).
``asset.json`` keeps the class order, which JSONL cannot: :meth:`LocalAssets.load` restores it.
A training input names an asset as ``name``, ``name:version`` or ``azureml:name:version``
(:func:`parse_reference`), as on Azure, or is a path.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from detectkit.backends.mlflow_runs import version_key
from detectkit.dataset import LabeledDataset
from detectkit.errors import ConflictError, NotFoundError
from detectkit.formats import copy_images_into, read_dataset
from detectkit.formats.azureml import write_azureml
from detectkit.records import DatasetAsset, check_name

__all__ = ["ASSET_FILE", "LocalAssets", "asset_versions", "next_number", "parse_reference"]

#: The record of one asset version, beside its data.
ASSET_FILE = "asset.json"


class LocalAssets:
    """Create, read and list the data assets under ``root/datasets``."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "datasets"

    def create(
        self,
        name: str,
        dataset: LabeledDataset,
        *,
        version: str | None,
        description: str | None,
    ) -> DatasetAsset:
        """Copy (hard-link when possible) the images and write JSONL + ``MLTable`` into
        ``root/datasets/<name>/<version>/``; ``version`` defaults to the next number.

        Raises:
            ConflictError: ``name:version`` exists already (versions are immutable).
        """
        base = self.folder / check_name(name, "name")
        given = check_name(version, "version") if version else None
        version = given or str(next_number(asset_versions(base)))
        folder = base / version
        if folder.exists():
            raise ConflictError(_exists(name, version, folder))
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".new-", dir=base))
        try:
            copied = copy_images_into(dataset, work)
            write_azureml(copied, work)
            asset = {
                "name": name,
                "version": version,
                "description": description,
                "images": len(dataset),
                "boxes": dataset.num_boxes,
                "classes": list(dataset.classes),
                "created": datetime.now(timezone.utc).isoformat(),
            }
            # The rename is the allocation: of two writers of one version, one wins and the
            # other (the folder is there and not empty) takes the next number, or, for a
            # version the caller named, gets a ConflictError.
            for _ in range(_RENAME_ATTEMPTS):
                (work / ASSET_FILE).write_text(json.dumps(asset, indent=2), encoding="utf-8")
                try:
                    work.rename(folder)
                    break
                except OSError as exc:
                    if not folder.exists():
                        raise
                    if given is not None:
                        raise ConflictError(_exists(name, version, folder)) from exc
                version = str(next_number(asset_versions(base)))
                asset["version"] = version
                folder = base / version
            else:
                raise ConflictError(
                    f"data asset {name}: {_RENAME_ATTEMPTS} other writers took each next "
                    "version first; try again"
                )
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return self.record(folder)

    def get(self, name: str, version: str | None = None) -> DatasetAsset:
        """A data asset (the highest version when ``version`` is None).

        Raises:
            NotFoundError: No such asset or version.
        """
        base = self.folder / check_name(name, "name")
        versions = asset_versions(base)
        if not versions:
            known = ", ".join(a.name for a in self.latest()) or "none"
            raise NotFoundError(
                f"no data asset {name!r} under {self.folder} (assets: {known}); "
                "create one with project.datasets.create(name, dataset)"
            )
        chosen = version or max(versions, key=version_key)
        if chosen not in versions:
            raise NotFoundError(
                f"data asset {name!r} has no version {chosen!r} (versions: "
                f"{', '.join(sorted(versions, key=version_key))})"
            )
        return self.record(base / chosen)

    def latest(self) -> list[DatasetAsset]:
        """The latest version of every data asset, by name."""
        if not self.folder.is_dir():
            return []
        out = []
        for base in sorted(self.folder.iterdir()):
            versions = asset_versions(base)
            if versions:
                out.append(self.record(base / max(versions, key=version_key)))
        return out

    def load(self, reference: str) -> LabeledDataset:
        """The labeled data behind a training input.

        Args:
            reference: A data asset (``name``, ``name:version``, ``azureml:name:version`` or
                its folder, :attr:`DatasetAsset.uri`), or any local data set folder or file
                :func:`detectkit.read_dataset` reads.

        Raises:
            NotFoundError: Neither an asset nor an existing path.
        """
        path = Path(reference)
        if not path.exists():
            name, version = parse_reference(reference)
            path = Path(self.get(name, version).uri)
        dataset = read_dataset(path)
        meta = path / ASSET_FILE
        if meta.is_file():  # JSONL has no class list: restore the asset's order
            classes = json.loads(meta.read_text(encoding="utf-8")).get("classes") or []
            extra = [c for c in dataset.classes if c not in classes]
            dataset = LabeledDataset(dataset.records, [*classes, *extra], root=dataset.root)
        return dataset

    def record(self, folder: Path) -> DatasetAsset:
        """The record of the asset version in ``folder`` (from its ``asset.json``)."""
        meta = json.loads((folder / ASSET_FILE).read_text(encoding="utf-8"))
        return DatasetAsset(
            name=meta["name"],
            version=meta["version"],
            uri=str(folder),
            description=meta.get("description"),
            images=meta.get("images"),
            boxes=meta.get("boxes"),
        )


_RENAME_ATTEMPTS = 20


def _exists(name: str, version: str, folder: Path) -> str:
    return (
        f"data asset {name}:{version} already exists at {folder}; versions are "
        "immutable: pass another version= (or none, for the next number)"
    )


def parse_reference(reference: str) -> tuple[str, str | None]:
    """``(name, version or None)`` of a data asset reference: ``name``, ``name:version`` or
    ``azureml:name:version``.

    Raises:
        NotFoundError: ``reference`` is a path (it holds a slash) or empty.
    """
    name, _, version = reference.removeprefix("azureml:").partition(":")
    if "/" in name or "\\" in name or not name:
        raise NotFoundError(
            f"training data {reference!r}: no such file or folder, and not a data asset "
            "reference (expected name, name:version or a path)"
        )
    return name, version or None


def asset_versions(base: Path) -> list[str]:
    """The versions of the asset folder ``base`` (none when it does not exist)."""
    if not base.is_dir():
        return []
    return [
        p.name for p in base.iterdir() if not p.name.startswith(".") and (p / ASSET_FILE).is_file()
    ]


def next_number(existing: list[str]) -> int:
    """The version number after the highest numeric one of ``existing`` (1 for none)."""
    return max((int(v) for v in existing if v.isdigit()), default=0) + 1
