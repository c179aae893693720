"""The layers (docs/architecture.md) as a test: `lint-imports` with the contracts in
pyproject.toml, on this tree — and on a copy of it with one forbidden import added, to prove the
contract really fails when someone breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ground", "artifacts", "sandbox", "tasks", "flows", "papyrus_ops")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def copy_tree(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=ignore)
    shutil.copytree(ROOT / "service" / "papyrus", dest / "papyrus", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_tree_keeps_every_layer_contract():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("sandbox/_offender.py", "import tasks.taskdef\n", "ground < artifacts | sandbox"),
    ("ground/_offender.py", "from artifacts import bundle\n", "ground < artifacts | sandbox"),
    ("tasks/_offender.py", "import sandbox.seed\n", "the product never imports the sandbox"),
    ("papyrus/_offender.py", "import ground.settings\n", "the service stands alone"),
])
def test_a_forbidden_import_breaks_the_contract(tmp_path, module, line, contract):
    tree = copy_tree(tmp_path / "tree")
    (tree / module).write_text(f'"""An import the layers forbid."""\n\n{line}')
    r = lint(tree)
    assert r.returncode != 0, r.stdout[-3000:]
    broken = [ln for ln in r.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), r.stdout[-3000:]
    assert module.replace("/", ".").removesuffix(".py") in r.stdout
