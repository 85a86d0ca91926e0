"""The house's shape: rooms that import only downward (import-linter's contracts in
pyproject.toml), no import cycles, and no module reaching for another's private names."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
needs_linter = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[test]')"
)


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with root's pyproject.toml, on the package under root/src."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip


@needs_linter
def test_the_package_keeps_its_import_contracts():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Rooms import only downward KEPT" in done.stdout


@needs_linter
def test_a_layer_that_imports_the_training_room_breaks_the_contract(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "src" / "alexnet", tmp_path / "src" / "alexnet",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    conv = tmp_path / "src" / "alexnet" / "nn" / "conv.py"
    conv.write_text(conv.read_text() + "\nimport alexnet.train.config  # noqa: E402\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1
    assert "alexnet.nn is not allowed to import alexnet.train" in done.stdout


def imports_of(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from alexnet... import name` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alexnet")
        for alias in node.names
    ]


def test_no_module_imports_another_modules_private_names():
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
             *(ROOT / "tools").glob("*.py")]  # fmt: skip
    private = [
        f"{path.relative_to(ROOT)}: from {module} import {name}"
        for path in files
        for module, name in imports_of(path)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private


def test_no_two_modules_import_each_other():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter")
    graph = grimp.build_graph("alexnet")
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    )
    assert not cycles
