"""The package's shape, checked by an ``ast`` scan of ``src/detectkit`` (no import needed).

Rules (docs/layout.md draws them):

1. a private ``_name`` is never imported from another detectkit module;
2. domain modules never import ``detectkit.backends``; neither backend imports the other;
3. function-level imports of detectkit's own modules only where listed in ``LAZY_OK``
   (``pkg.*`` covers the modules of a package);
4. no module over 600 lines.

``DEBT`` lists what the redesign has not reached yet, so that nothing new joins it; an entry
that no longer applies fails the test too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "detectkit"
DOMAIN = (
    "boxes",
    "images",
    "dataset",
    "prediction",
    "formats",
    "scoring",
    "evaluation",
    "settings",
    "viz",
    "records",
    "validation",
    "annotations",
    "detections",
    "errors",
)
MAX_LINES = 600

#: module -> detectkit modules it may import inside a function, and why.
LAZY_OK: dict[str, tuple[str, ...]] = {
    # LabeledDataset.from_*/to_* and plot_class_distribution: the dataset <-> formats loop
    "detectkit.dataset": ("detectkit.formats", "detectkit.viz"),
    # Prediction._repr_png_ draws itself: the prediction <-> viz loop
    "detectkit.prediction": ("detectkit.viz",),
    # a backend is imported only when a Project for it is made (azure-ai-ml costs ~3 s)
    "detectkit.project": ("detectkit.backends",),
    # each command imports what it runs, so `detectkit --help` stays fast
    "detectkit.cli": ("detectkit",),
    "detectkit.cli.*": ("detectkit",),
    "detectkit.demo": ("detectkit",),
    # a finished trial saves its model with pyfunc, which imports mlflow (~4.5 s)
    "detectkit.backends.local.sweep": ("detectkit.backends.local.pyfunc",),
    # the top-level names are loaded on first use
    "detectkit": ("detectkit",),
}

#: Not reached by the redesign yet (issue 9): (rule, module, detail).
DEBT: set[tuple[str, str, str]] = set()


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def _imports(tree: ast.Module) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import with whether it sits inside a function."""
    found: list[tuple[ast.ImportFrom | ast.Import, bool]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, in_function))
            walk(child, inside)

    walk(tree, False)
    return found


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return [alias.name for alias in node.names]


def _violations() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for module, tree in _modules().items():
        top = module.split(".")[1] if "." in module else ""
        for node, in_function in _imports(tree):
            for target in _targets(node):
                if not target.startswith("detectkit"):
                    continue
                if isinstance(node, ast.ImportFrom):
                    for alias in node.names:
                        name = alias.name
                        if name.startswith("_") and not name.startswith("__"):
                            found.add(("private", module, f"{target}.{name}"))
                if top in DOMAIN and target.startswith("detectkit.backends"):
                    found.add(("domain-imports-backend", module, target))
                for a, b in (("azure", "local"), ("local", "azure")):
                    if module.startswith(f"detectkit.backends.{a}") and target.startswith(
                        f"detectkit.backends.{b}"
                    ):
                        found.add(("backend-imports-backend", module, target))
                if in_function:
                    package = module.rsplit(".", 1)[0] + ".*"
                    allowed = LAZY_OK.get(module, ()) + LAZY_OK.get(package, ())
                    if not any(target == p or target.startswith(p + ".") for p in allowed):
                        found.add(("function-level-import", module, target))
        path = SRC.parent.joinpath(*module.split("."))
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        lines = len(file.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            found.add(("too-long", module, ""))
    return found


def test_no_new_violations_of_the_layers() -> None:
    new = sorted(_violations() - DEBT)
    assert not new, "new layering problems:\n" + "\n".join(map(str, new))


def test_the_debt_list_only_shrinks() -> None:
    gone = sorted(DEBT - _violations())
    assert not gone, "fixed: remove these from DEBT in tests/test_layers.py:\n" + "\n".join(
        map(str, gone)
    )


def test_domain_never_imports_a_backend_and_backends_not_each_other() -> None:
    bad = [
        v for v in _violations() if v[0] in ("domain-imports-backend", "backend-imports-backend")
    ]
    assert not bad


def test_the_scan_sees_what_it_checks() -> None:
    modules = _modules()
    assert "detectkit.scoring.request" in modules
    assert "detectkit.backends.mlflow_runs" in modules
    assert any(in_fn for _, in_fn in _imports(modules["detectkit.project"]))
