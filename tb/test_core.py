"""The overlay core (`hw.core.OverlayCore`) under Verilator + cocotb: compiled programs run
from cocotbext-axi's `AxiRam` (random pauses on all five AXI channels), controlled over
AXI4-Lite; every operation's output region is checked against the integer model's traces and
the class scores against the model's (tests in tb/cocotb_core.py). One Verilator build of the
default core, shared by every test.

- the trained digits network at T = 1 (`-m slow`: one image, and two more; make test runs it
  in the compiled harness, and its first layers in the tests below);
- a seeded network at T = 4 (membranes across timesteps; every operation; `-m slow`: make
  test runs it in the compiled harness, tb/test_harness.py);
  (the attention in two tiles runs in the compiled harness: tb/test_harness.py);
- a corrupted expectation caught; damaged programs (unknown opcode, an address outside the
  program's memory, checksums, another core's fingerprint, magic, a kernel above the core's
  maximum) end in the error register with the code and layer `sim.overlay` gives, within a
  cycle budget, and the core runs the good program next;
- a soft reset in the middle of a layer, then a clean image.
"""

import json
import struct
import sys
from pathlib import Path

import pytest

from bench.networks import digits_network
from gen.program import compile_network, write_program
from gen.verilog import to_verilog
from hw.core import OverlayCore
from sim.cosim import run_cocotb
from sim.overlay import Memory, read_descriptors
from spec.core import CoreConfig
from spec.program import DESCRIPTOR_WORDS, FIELDS, HEADER_WORDS, ProgramError, checksum
from sw.netbundle import write_network_bundle
from sw.quant import quantize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from quant_helpers import digits as digits_data  # noqa: E402
from quant_helpers import stats_model  # noqa: E402

CORE = CoreConfig()


@pytest.fixture(scope="module")
def verilog(tmp_path_factory):
    path = tmp_path_factory.mktemp("core") / "overlay_core.v"
    path.write_text(to_verilog(OverlayCore(CORE), "overlay_core"))
    return path


def _program(folder, net, pixels):
    write_network_bundle(folder / "net.zip", net, pixels)
    image = compile_network(net, CORE)
    write_program(folder / "prog", image, None)
    return image


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    net, pixels = digits_network(1, 3)
    return folder, _program(folder, net, pixels), net


@pytest.fixture(scope="module")
def seeded_t4(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeded")
    net = quantize(stats_model(timesteps=4, dims=(8, 16), heads=2, seed=3),
                   digits_data()[0][:32])
    return folder, _program(folder, net, net.to_input(digits_data()[2][:2])), net


def with_header(image_bytes, **fields):
    """The image with header words changed (checksum recomputed unless given)."""
    words = list(struct.unpack(f"<{HEADER_WORDS}I", image_bytes[:HEADER_WORDS * 4]))
    names = ("magic", "version", "core", "layers")
    for name, value in fields.items():
        if name != "checksum":
            words[names.index(name)] = value
    words[-1] = fields.get("checksum", checksum(words[:-1]))
    return struct.pack(f"<{HEADER_WORDS}I", *words) + image_bytes[HEADER_WORDS * 4:]


def with_descriptor(image_bytes, layer, *, fix_checksum=True, **fields):
    """The image with fields of descriptor `layer` changed."""
    data = bytearray(image_bytes)
    at = struct.unpack("<I", data[20:24])[0] + layer * DESCRIPTOR_WORDS * 4
    words = list(struct.unpack(f"<{DESCRIPTOR_WORDS}I", data[at:at + DESCRIPTOR_WORDS * 4]))
    for name, value in fields.items():
        words[FIELDS.index(name)] = value
    if fix_checksum:
        words[-1] = checksum(words[:-1])
    data[at:at + DESCRIPTOR_WORDS * 4] = struct.pack(f"<{DESCRIPTOR_WORDS}I", *words)
    return bytes(data)


def run_case(verilog, build_root, folder, name, image, layers, testcase="test_images",
             **case):
    """Run one cocotb test on the shared build; returns its report."""
    work = folder / name
    work.mkdir(exist_ok=True)
    prog = work / "prog"
    prog.mkdir(exist_ok=True)
    (prog / "image.bin").write_bytes(with_header(image.data, layers=layers))
    (prog / "layout.json").write_text((folder / "prog" / "layout.json").read_text())
    case.setdefault("seed", 1)
    case.setdefault("pause", 0.2)
    case.update(core=CORE.to_dict(), report=str(work / "report.json"), program=str(prog),
                bundle=str(folder / "net.zip"), layers=layers,
                memory=len(image.data) + image.activation_bytes)
    path = work / "case.json"
    path.write_text(json.dumps(case))
    run_cocotb(verilog, toplevel="overlay_core", module="tb.cocotb_core", testcase=testcase,
               test_dir=work, env={"SPIKEGEN_CASE": path}, build_root=build_root)
    return json.loads(Path(case["report"]).read_text())


@pytest.mark.slow
def test_digits_network_bit_exact(verilog, build_root, digits):
    """The trained digits network, T = 1, one image: every layer, the scores. (`make test`
    runs this network through the compiled harness, tb/test_harness.py, three images back to
    back with 30 % memory pauses; here, with cocotbext-axi's AxiRam, it is in `make
    test-slow`; the bad-program and soft-reset tests below run its first layers here.)"""
    folder, image, net = digits
    report = run_case(verilog, build_root, folder, "digits", image, len(image.ops),
                      samples=[0], budget=3_000_000, classes=net.head.fc.out_channels,
                      timesteps=1)
    assert report[0]["compared"] > 100_000 and report[0]["EVENTS_LO"] > 0
    assert len(report[0]["layer_cycles"]) == len(image.ops)
    assert sum(report[0]["layer_cycles"]) <= report[0]["cycles"]


@pytest.mark.slow
def test_digits_network_more_images(verilog, build_root, digits):
    folder, image, net = digits
    report = run_case(verilog, build_root, folder, "digits-more", image, len(image.ops),
                      samples=[1, 2], budget=3_000_000, classes=net.head.fc.out_channels,
                      timesteps=1, seed=7)
    assert [r["sample"] for r in report] == [1, 2]


@pytest.mark.slow
def test_seeded_network_t4_bit_exact(verilog, build_root, seeded_t4):
    """A seeded network at T = 4: every operation kind, membranes across timesteps. (`make
    test` runs the same network, program and checks in the compiled harness,
    tb/test_harness.py, with 20 % memory pauses; this cocotb run is in `make test-slow`.)"""
    folder, image, net = seeded_t4
    assert {op.opcode for op in image.ops} == {"conv_lif", "conv_stream", "depthwise", "lif",
                                               "sdsa", "head"}
    report = run_case(verilog, build_root, folder, "t4", image, len(image.ops),
                      samples=[0], budget=3_000_000, classes=net.head.fc.out_channels,
                      timesteps=4, seed=3, pause=0.3)
    assert report[0]["compared"] > 1_000


def test_corrupted_expectation_is_caught(verilog, build_root, digits):
    """After a clean check, one flipped output bit must be named by the checker."""
    folder, image, _ = digits
    run_case(verilog, build_root, folder, "corrupt", image, 2, samples=[0], corrupt=True,
             budget=1_000_000)


def _expected_error(image_bytes, size):
    mem = Memory(0, size)
    mem.write(0, image_bytes)
    with pytest.raises(ProgramError) as info:
        read_descriptors(mem, 0, CORE)
    return info.value.code, info.value.layer


def test_bad_programs_end_in_the_error_register(verilog, build_root, digits):
    folder, image, _ = digits
    layers = 3
    base = with_header(image.data, layers=layers)
    header = struct.unpack(f"<{HEADER_WORDS}I", base[:HEADER_WORDS * 4])
    act_end = header[7] + header[8]
    bad = {
        "unknown opcode": with_descriptor(base, 2, opcode=99),
        "address": with_descriptor(base, 1, out_addr=act_end + 64),
        "header checksum": with_header(base, checksum=0),
        "descriptor checksum": with_descriptor(base, 1, fix_checksum=False, in_channels=33),
        "core": with_header(base, core=header[2] ^ 1),
        "magic": with_header(base, magic=0x12345678),
        "shape": with_descriptor(base, 0, kernel=CORE.max_kernel + 2),
    }
    work = folder / "bad"
    work.mkdir(exist_ok=True)
    cases = []
    for name, data in bad.items():
        path = work / (name.replace(" ", "-") + ".bin")
        path.write_bytes(data)
        code, layer = _expected_error(data, len(image.data) + image.activation_bytes)
        cases.append({"name": name, "image": str(path), "code": code, "layer": layer})
    assert len({c["code"] for c in cases}) == 7
    report = run_case(verilog, build_root, folder, "bad", image, layers,
                      testcase="test_bad_programs", bad=cases, error_budget=50_000,
                      budget=1_000_000)
    assert [r["name"] for r in report[:-1]] == list(bad)
    assert report[-1]["compared"] > 0


def test_soft_reset_mid_layer_then_a_clean_image(verilog, build_root, digits):
    folder, image, _ = digits
    report = run_case(verilog, build_root, folder, "soft-reset", image, 6,
                      testcase="test_soft_reset", reset_after=12_000, budget=1_000_000)
    assert report[0]["reset_in_layer"] > 0 and report[1]["compared"] > 0
