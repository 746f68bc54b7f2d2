"""The package's layout rules: layered imports without cycles, no underscore names across
modules, chapter notebooks committed as their only source (outputs stripped)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "nnmiplib"
BIN = Path(sys.executable).parent


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_import_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, line", [
    ("network.py", "from .bounds import Bounds  # injected: a low layer imports a high one\n"),
    ("queries/core.py", "from . import pv  # injected: a cycle inside queries\n"),
])
def test_import_contracts_catch_an_injected_violation(tmp_path, module, line):
    shutil.copytree(PKG, tmp_path / "nnmiplib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "nnmiplib" / module
    text = target.read_text()
    cut = text.index("\n\n", text.index('"""', 3) + 3) + 2  # after the module docstring
    target.write_text(text[:cut] + line + text[cut:])
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "BROKEN" in proc.stdout


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_pkg: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def test_no_module_imports_another_modules_underscore_names():
    """A name that starts with one underscore is private to its module: a helper that two
    modules share is public in the lower one."""
    offences = []
    for path in sorted(PKG.rglob("*.py")):
        me = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(me, path.name == "__init__.py", node.level, node.module)
            if not source.startswith("nnmiplib") or source == me:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {source}")
    assert not offences, "\n".join(offences)


def test_the_underscore_check_sees_relative_imports():
    assert _resolve("nnmiplib.queries.pv", False, 1, "core") == "nnmiplib.queries.core"
    assert _resolve("nnmiplib.queries", True, 2, "bounds") == "nnmiplib.bounds"
    assert _resolve("nnmiplib.study.ch2", False, 2, None) == "nnmiplib"


def test_chapter_notebooks_are_stripped_sources():
    """notebooks/*.ipynb are the chapters' only source: no outputs, no execution counts,
    sequential cell ids (what ``nbstripout`` writes), a papermill ``parameters`` cell each."""
    import nbformat

    books = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(books) >= 5
    proc = subprocess.run([str(BIN / "nbstripout"), "--verify", *map(str, books)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"run `nbstripout notebooks/*.ipynb` before committing:\n{proc.stdout}{proc.stderr}"
    for path in books:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
        assert tags.count("parameters") == 1, path.name
        assert [c.id for c in nb.cells] == [str(i) for i in range(len(nb.cells))], path.name
    assert not list((ROOT / "tools").glob("make_notebook_*.py")), "no script writes a chapter"


def test_every_experiment_section_shows_a_library_call():
    """Each chapter that runs experiments has visible code cells that call ``nm.<package>``."""
    import nbformat

    for name in ("01_training_and_rounding", "02_bounds", "03_verification", "04_comparator"):
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        shown = [c.source for c in nb.cells if c.cell_type == "code"
                 and not {"remove-input", "remove-cell"} & set(c.metadata.get("tags", []))]
        calls = [s for s in shown if "nm." in s]
        assert calls, f"{name}: no visible cell calls the library"


def test_ruff_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "check", "nnmiplib", "tests", "benchmarks"], cwd=ROOT, check=False,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
