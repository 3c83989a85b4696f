"""Co-simulation of single layers under Verilator against the integer network: the Conv-based
block and the Transformer-based block of a small quantized digits model (dims 4 and 8, two heads
of 4 channels, T = 4), each generated alone as `gen.block` generates it (`hw.block`), fed the
previous layer's output stream from the network bundle's traces (tb/cocotb_block.py). Checked:
every value of the block's output stream without stalls, with random stalls on the block's own
input and output, and a corrupted expectation caught. (tb/test_network.py checks the same
blocks inside the network, at T = 1 and 4, with stalls at the network's ends only.)
"""

import sys
from pathlib import Path

import pytest

from sim.cosim import read_report, run_cocotb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

#: in `make test-slow`: `make test` runs these blocks inside the spatial network in the
#: compiled harness (tb/test_network.py), with stalls at the network's ends
pytestmark = pytest.mark.slow

TIMESTEPS = 4
TEST_IMAGES = 2
#: layer index -> its kind
LAYERS = {1: "IntConvBlock", 3: "IntTransformerBlock"}
CASES = ["test_block_matches_integer_model", "test_block_random_stalls",
         "test_block_corrupted_expectation_is_caught"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The network bundle, and the Verilog of each layer (made when first asked for)."""
    from quant_helpers import digits, stats_model

    from sw.netbundle import read_network_bundle, write_network_bundle
    from sw.quant import quantize

    model = stats_model(timesteps=TIMESTEPS, dims=(4, 8), heads=2, seed=3)
    _, _, x_test, y_test = digits()
    net = quantize(model, digits()[0][:64])
    work = tmp_path_factory.mktemp("block")
    bundle = work / "bundle"
    write_network_bundle(bundle, net, net.to_input(x_test[:TEST_IMAGES]), y_test[:TEST_IMAGES])
    _, net, _ = read_network_bundle(bundle)
    cache = {}

    def get(n):
        if n not in cache:
            from gen.verilog import to_verilog
            from hw.block import layer_component

            layer = net.layers[n]
            assert type(layer).__name__ == LAYERS[n]
            verilog = work / f"layer{n}.v"
            verilog.write_text(to_verilog(layer_component(layer, net.widths, net.timesteps),
                                          "block"))
            cache[n] = verilog
        return work, bundle, cache[n]

    return get


@pytest.mark.parametrize("testcase", CASES)
@pytest.mark.parametrize("n", list(LAYERS))
def test_block_cosim(n, testcase, prepared, build_root):
    work, bundle, verilog = prepared(n)
    run_dir = work / f"layer{n}-{testcase}"
    report = run_dir.with_suffix(".json")
    run_cocotb(verilog, toplevel="block", module="tb.cocotb_block", testcase=testcase,
               test_dir=run_dir, build_root=build_root,
               env={"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_LAYER": n, "SPIKEGEN_SEED": 17,
                    "SPIKEGEN_REPORT": report})
    if testcase == "test_block_matches_integer_model":
        figures = read_report(report)
        assert figures["samples"] == TEST_IMAGES and figures["timesteps"] == TIMESTEPS
        assert figures["measured_cycles"] >= figures["beats"] > 0
