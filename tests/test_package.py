"""The package surface: light import, explicit __all__, typed marker."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import detectkit

HEAVY = (
    "azure",
    "mlflow",
    "matplotlib",
    "torch",
    "torchvision",
    "fastapi",
    "uvicorn",
    "pandas",
    "scipy",
)


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {m.split(".")[0] for m in out}


def test_import_detectkit_loads_no_heavy_module() -> None:
    loaded = _loaded_after("import detectkit")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_domain_modules_stay_light() -> None:
    code = (
        "import detectkit, detectkit.dataset, detectkit.formats, detectkit.project, "
        "detectkit.resources, detectkit.validation, detectkit.boxes, detectkit.images\n"
        "from detectkit import Box, LabeledDataset, read_dataset"
    )
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_all_names_resolve_and_are_sorted() -> None:
    assert detectkit.__all__ == sorted(detectkit.__all__)
    for name in detectkit.__all__:
        assert getattr(detectkit, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="does_not_exist"):
        detectkit.does_not_exist  # noqa: B018


def test_py_typed_marker_ships() -> None:
    assert (Path(detectkit.__file__).parent / "py.typed").is_file()


def test_every_module_imports() -> None:
    src = Path(detectkit.__file__).parent
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        if name.endswith("__main__"):
            continue
        importlib.import_module(name)


def test_lazy_table_matches_all() -> None:
    from detectkit import _LAZY

    assert set(_LAZY) == set(detectkit.__all__) - {"__version__"}
