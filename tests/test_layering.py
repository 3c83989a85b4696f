"""The layering contracts of pyproject.toml ([tool.importlinter]): spec <- hw <- gen <- fpga and
spec <- sw. `lint-imports` keeps them on the real tree, and breaks one on a copy with a single
forbidden import added (a checker shown to fail on a broken input)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("spec", "hw", "gen", "fpga", "sw", "sim")
FORBIDDEN = "spec, hw, gen and fpga import neither sw, sim nor torch"


def lint(root):
    """`lint-imports` run in `root` (it imports the packages from there): (exit status,
    output)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_the_tree_keeps_every_contract():
    status, out = lint(ROOT)
    assert status == 0, out
    assert "Contracts: 3 kept, 0 broken." in out, out


def test_a_forbidden_import_breaks_the_contract(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        for src in (ROOT / package).rglob("*.py"):
            dst = tmp_path / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    assert lint(tmp_path)[0] == 0, "the copy keeps the contracts before the change"
    lif = tmp_path / "hw" / "lif.py"
    lif.write_text(lif.read_text() + "\nimport sw.int_model\n")
    status, out = lint(tmp_path)
    assert status != 0, out
    assert f"{FORBIDDEN} BROKEN" in out, out
    assert "hw.lif -> sw.int_model" in out, out
