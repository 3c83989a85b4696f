"""The overlay core (`hw.core.OverlayCore`) under Verilator + cocotb: compiled programs run
from cocotbext-axi's `AxiRam` (random pauses on all five channels), controlled over
AXI4-Lite; every operation's output region is checked against the integer model's traces
(tests in tb/cocotb_core.py). One Verilator build of the default core, shared."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from bench.overlay import digits_network
from gen.program import compile_network, write_program
from gen.verilog import to_verilog
from hw.core import IMPLEMENTED_OPS, OverlayCore
from sim.cosim import CosimFailure, run_cocotb
from spec.core import CoreConfig
from spec.program import HEADER_WORDS, checksum
from sw.netbundle import write_network_bundle

CORE = CoreConfig()


@pytest.fixture(scope="module")
def verilog(tmp_path_factory):
    path = tmp_path_factory.mktemp("core") / "overlay_core.v"
    path.write_text(to_verilog(OverlayCore(CORE), "overlay_core"))
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    net, pixels = digits_network(1, 2)
    write_network_bundle(folder / "net.zip", net, pixels)
    image = compile_network(net, CORE)
    write_program(folder / "prog", image, None)
    return folder, image


def truncated(image_bytes, layers):
    """The image with its header's layer count set to `layers` (checksum recomputed)."""
    words = list(struct.unpack(f"<{HEADER_WORDS}I", image_bytes[:HEADER_WORDS * 4]))
    words[3] = layers
    words[-1] = checksum(words[:-1])
    return struct.pack(f"<{HEADER_WORDS}I", *words) + image_bytes[HEADER_WORDS * 4:]


def runnable(image):
    """Operations from the first, up to the first the core does not implement."""
    n = 0
    for op in image.ops:
        if op.opcode not in IMPLEMENTED_OPS:
            break
        n += 1
    return n


def run_case(verilog, build_root, folder, name, **case):
    work = folder / name
    work.mkdir(exist_ok=True)
    case.setdefault("seed", 1)
    case.setdefault("pause", 0.2)
    case["core"] = CORE.to_dict()
    case["report"] = str(work / "report.json")
    path = work / "case.json"
    path.write_text(json.dumps(case))
    run_cocotb(verilog, toplevel="overlay_core", module="tb.cocotb_core",
               testcase=case.pop("testcase", "test_images"), test_dir=work,
               env={"SPIKEGEN_CASE": path}, build_root=build_root)
    return json.loads(Path(case["report"]).read_text())


def test_digits_layers_bit_exact(verilog, build_root, digits):
    folder, image = digits
    layers = runnable(image)
    prog = folder / f"prog-{layers}"
    prog.mkdir(exist_ok=True)
    (prog / "image.bin").write_bytes(truncated(image.data, layers))
    (prog / "layout.json").write_text((folder / "prog" / "layout.json").read_text())
    report = run_case(verilog, build_root, folder, "digits", program=str(prog),
                      bundle=str(folder / "net.zip"), layers=layers, samples=[0],
                      memory=len(image.data) + image.activation_bytes, budget=20_000_000)
    print(report)
    assert report[0]["compared"] > 0


def test_corrupted_expectation_is_caught(verilog, build_root, digits):
    """The same run with one output bit flipped before the check: the checker names it."""
    folder, image = digits
    prog = folder / "prog-2"
    prog.mkdir(exist_ok=True)
    (prog / "image.bin").write_bytes(truncated(image.data, 2))
    (prog / "layout.json").write_text((folder / "prog" / "layout.json").read_text())
    run_case(verilog, build_root, folder, "corrupt", program=str(prog),
             bundle=str(folder / "net.zip"), layers=2, samples=[0], corrupt=True,
             memory=len(image.data) + image.activation_bytes, budget=2_000_000)
