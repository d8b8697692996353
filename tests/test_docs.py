"""Every ```python block in the README and docs/ runs, so examples cannot rot.

Blocks of one page run in order in one namespace, in a fresh temporary folder. Blocks fenced as
```py are shown only (they need an Azure workspace or minutes of training).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "page", [p for p in PAGES if _blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, code in enumerate(_blocks(page)):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(
                f"{page.relative_to(ROOT)} block {i} failed: {exc!r}\n{code}"
            ) from exc


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = re.findall(r"^```(?:bash|sh|console)\n(.*?)^```", readme, re.S | re.M)
    test_cmd = [c.strip() for c in commands if "pytest" in c]
    assert test_cmd, "README must show the command that installs and runs the tests"
    assert test_cmd[0] in ci, ".ci/run must run the README's test command verbatim"
    assert os.access(ROOT / ".ci" / "run", os.R_OK)
