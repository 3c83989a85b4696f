"""Co-simulation of a whole Transformer-based block under Verilator against the integer network.

The block comes from a quantized digits model (`quant_helpers.stats_model`: dims (8, 16), one
head so the SDSA head dimension is 16 and every unit streams 16 lanes), exported as a block
bundle (`sw.netbundle.write_network_bundle(..., block=...)`) with the block's input and output
streams for two test images; `hw.block.TransformerBlock` is generated from the same bundle and
every output stream value of every sample and timestep is compared (tb/cocotb_block.py), at
T = 1 (no stalls) and T = 4 (random stalls on input and output), and a corrupted expectation
must be caught.
"""

import sys
from pathlib import Path

import pytest

from sim.cosim import read_report, run_cocotb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

BLOCK = "layers.3"
CALIBRATION_IMAGES = 64
TEST_IMAGES = 2
#: one Verilator build per T; the T = 4 run with random stalls checks every value as well
CASES = {1: ["test_block_matches_integer_model", "test_corrupted_expectation_is_caught"],
         4: ["test_block_random_stalls"]}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = {}

    def get(timesteps):
        if timesteps not in cache:
            from quant_helpers import digits, stats_model

            from gen.verilog import to_verilog
            from hw.block import TransformerBlock
            from sw.netbundle import read_network_bundle, write_network_bundle
            from sw.quant import quantize

            model = stats_model(timesteps=timesteps, dims=(8, 16), heads=1, seed=3)
            net = quantize(model, digits()[0][:CALIBRATION_IMAGES])
            work = tmp_path_factory.mktemp(f"block-t{timesteps}")
            bundle = work / "bundle"
            write_network_bundle(bundle, net, net.to_input(digits()[2][:TEST_IMAGES]),
                                 block=BLOCK)
            _, layers, b = read_network_bundle(bundle)
            verilog = work / "block.v"
            verilog.write_text(to_verilog(TransformerBlock(layers[0], b.config["widths"],
                                                           timesteps), "block"))
            cache[timesteps] = (work, bundle, verilog)
        return cache[timesteps]

    return get


@pytest.mark.parametrize("timesteps, testcase",
                         [(t, c) for t, cases in CASES.items() for c in cases])
def test_block_cosim(timesteps, testcase, prepared, build_root):
    work, bundle, verilog = prepared(timesteps)
    run_dir = work / testcase
    report = run_dir.with_suffix(".json")
    run_cocotb(verilog, toplevel="block", module="tb.cocotb_block", testcase=testcase,
               test_dir=run_dir, build_root=build_root,
               env={"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": 11, "SPIKEGEN_REPORT": report})
    if testcase == "test_block_matches_integer_model":
        figures = read_report(report)
        assert figures["samples"] == TEST_IMAGES and figures["timesteps"] == timesteps
        assert figures["measured_cycles"] > 0
