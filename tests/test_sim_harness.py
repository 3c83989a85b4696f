"""The compiled harness's parts that need no Verilator build: the AXI4 memory model's checks
(compiled alone with the C++ compiler), the input wrapper, the memory image, the build's
refusals. The harness on the core is tested in tb/test_harness.py."""

import shutil
import subprocess

import numpy as np
import pytest

from sim.harness import HERE, HarnessError, _config_header, core_memory, input_wrapper, ports
from sim.run import main as run_cli
from spec.cli import run_main
from spec.core import CoreConfig
from spec.program import FIELDS, pack_values

CXX = shutil.which("g++") or shutil.which("c++")


@pytest.fixture(scope="module")
def model_check(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path_factory.mktemp("axi") / "check"
    subprocess.run([CXX, "-O1", "-std=c++17", f"-I{HERE}", str(HERE / "axi_slave_check.cpp"),
                    "-o", str(exe)], check=True)
    return subprocess.run([str(exe)], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _line(lines, case):
    """The model's report line of `case` (not its "ok=" or "rresp=" lines)."""
    found = [rest for name, rest in (line.split(": ", 1) for line in lines)
             if name == case and not rest.startswith(("ok=", "rresp="))]
    assert len(found) == 1, lines
    return found[0]


def test_good_bursts_pass(model_check):
    assert "read: ok=1" in model_check and "write: ok=1" in model_check
    assert _line(model_check, "read") == "fault=0 decerr=0"
    assert _line(model_check, "write") == "fault=0 decerr=0"


@pytest.mark.parametrize("case, message", [
    ("wrap", "read burst at 0x100 is not INCR (burst type 2)"),
    ("size", "read burst at 0x100 has beats of 4 bytes; the bus has 8"),
    ("cross4k", "read burst at 0xff8 of 16 bytes crosses a 4 KiB boundary"),
    ("wlast", "write burst at 0x100: wlast is 1 on beat 1 of 2"),
])
def test_broken_bursts_are_reported(model_check, case, message):
    """Each broken burst (the can-fail cases of the memory's protocol checks) is a fault with
    its message."""
    assert _line(model_check, case) == f"fault=1 decerr=0 what={message}"


def test_outside_the_memory_answers_decerr(model_check):
    assert "outside: rresp=3" in model_check
    assert _line(model_check, "outside") == "fault=0 decerr=1"


def test_pause_chances(model_check):
    none, always, half = map(int, _line(model_check, "pauses").split())
    assert none == 0 and always == 10_000 and 4_700 < half < 5_300


def test_ports_and_wrapper():
    text = ("module top(clk, rst, a__b, q);\n  input clk;\n  input rst;\n  input [7:0] a__b;\n"
            "  output [3:0] q;\nendmodule\nmodule other(x);\n  input x;\nendmodule\n")
    assert ports(text, "top") == [("input", 1, "clk"), ("input", 1, "rst"), ("input", 8, "a__b"),
                                  ("output", 4, "q")]
    wrapper = input_wrapper(text, "top")
    assert "reg [7:0] a_b_q = 8'd0;" in wrapper and "a_b_q <= a_b;" in wrapper
    assert "rst_q <= rst;" in wrapper and ".a__b(a_b_q)" in wrapper
    assert ".clk(clk)" in wrapper and ".q(q)" in wrapper and "clk_q" not in wrapper
    with pytest.raises(HarnessError, match="no module nope"):
        ports(text, "nope")
    with pytest.raises(HarnessError, match="no one-bit clk"):
        input_wrapper(text, "other")


def test_config_header_names_every_register():
    header = _config_header(CoreConfig())
    assert "#define BEAT_BYTES 8" in header and "#define CSR_LAYER_CYCLES 0x44" in header


def test_core_memory_places_the_pixels():
    core = CoreConfig()
    image = bytearray(256)
    words = np.zeros(64, "<u4")
    words[5] = 64                                   # the first descriptor
    words[9] = 192                                  # the input address
    image[:256] = words.tobytes()
    image[64 + 4 * FIELDS.index("in_bits"):64 + 4 * FIELDS.index("in_bits") + 4] = \
        (8).to_bytes(4, "little")
    pixels = np.arange(12).reshape(3, 2, 2)
    mem = core_memory(bytes(image), 1024, core, pixels)
    packed = pack_values(pixels[None], 8, core, signed=False)
    assert len(mem) == 1024 and mem[192:192 + len(packed)] == packed
    with pytest.raises(HarnessError, match="cannot hold"):
        core_memory(bytes(image), 100, core, pixels)


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "--images must be 1 to 360 (the test set), not 0"),
    (["--pause", "1"], "--pause must be at least 0 and below 1, not 1.0"),
    (["--waves-window", "1:2"], "--waves-window needs --waves FILE.fst"),
    (["--waves", "x.vcd"], "--waves writes an FST file; name it *.fst, not 'x.vcd'"),
    (["--waves", "w.fst", "--waves-window", "5:3"],
     "argument --waves-window: FIRST must be 0 or more and at most LAST, not '5:3'"),
    (["--waves", "w.fst", "--waves-window", "a:b"],
     "argument --waves-window: takes FIRST:LAST (two whole numbers of cycles), not 'a:b'"),
    (["--json", "/nonexistent/f.json"], "output folder '/nonexistent' does not exist"),
    (["--checkpoint", "/nonexistent.pt"], "checkpoint '/nonexistent.pt' does not exist"),
    (["--plot", "/nonexistent/plots"],
     "--plot '/nonexistent/plots': folder '/nonexistent' does not exist"),
    (["--plot", __file__], f"--plot {__file__!r} exists and is not a folder"),
    (["--workers", "0"], "--workers must be at least 1, not 0"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "--workers sizes a LocalCluster; with --scheduler the cluster has its own"),
    (["--waves", "w.fst", "--workers", "2"],
     "--waves writes one waveform from one harness process: leave out --workers and "
     "--scheduler"),
])
def test_sim_run_bad_input(capsys, tmp_path, argv, message):
    status = run_main("sim.run", run_cli, argv + ["--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "") and err == f"sim.run: error: {message}\n", err
    assert not (tmp_path / "run").exists()
