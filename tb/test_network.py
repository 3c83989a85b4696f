"""Co-simulation of a whole network under Verilator against the integer network.

Two small quantized digits models (`quant_helpers.stats_model`), each exported as a network
bundle with two test images and generated as one design with taps on every layer's output
stream (`hw.network.Network`); every value of every layer's stream, sample and timestep is
compared (tb/cocotb_network.py). Their layers: a first convolution on 5-bit pixels, a
Conv-based block, a downsampling layer with its LIF, a Transformer-based block, and the head.

- T = 1, dims (8, 16), two heads of 8 channels: the attention unit takes 8 lanes between
  16-lane engines (`hw.regroup`); no stalls; a corrupted expectation must be caught.
- T = 4, dims (4, 8), two heads of 4 channels: the blocks' engines change the lanes per beat
  inside the branches (the Transformer block's MLP runs at 16 lanes between 8-lane layers, the
  attention unit at 4); random stalls on input and output.

So both block kinds are checked value by value inside the network, at T = 1 and T = 4.
"""

import sys
from pathlib import Path

import pytest

from sim.cosim import read_report, run_cocotb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CALIBRATION_IMAGES = 64
TEST_IMAGES = 2
#: one Verilator build per T
CASES = {1: ["test_network_matches_integer_model", "test_corrupted_expectation_is_caught"],
         4: ["test_network_random_stalls"]}
#: cases in `make test-slow` only (cocotb; `make test` runs the spatial network in the compiled
#: harness instead, test_network_in_the_compiled_harness: the T = 4 network with random input
#: gaps and output backpressure, every layer's stream and class sum checked by the same
#: scoreboards, and a changed expectation caught)
SLOW = {(4, "test_network_random_stalls"), (1, "test_network_matches_integer_model"),
        (1, "test_corrupted_expectation_is_caught")}
#: (dims, heads) of the model per T
MODELS = {1: ((8, 16), 2), 4: ((4, 8), 2)}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = {}

    def get(timesteps):
        if timesteps not in cache:
            from quant_helpers import digits, stats_model

            from gen.verilog import to_verilog
            from hw.network import Network
            from sw.netbundle import read_network_bundle, write_network_bundle
            from sw.quant import quantize

            dims, heads = MODELS[timesteps]
            model = stats_model(timesteps=timesteps, dims=dims, heads=heads, seed=3)
            _, _, x_test, y_test = digits()
            net = quantize(model, digits()[0][:CALIBRATION_IMAGES])
            work = tmp_path_factory.mktemp(f"network-t{timesteps}")
            bundle = work / "bundle"
            write_network_bundle(bundle, net, net.to_input(x_test[:TEST_IMAGES]),
                                 y_test[:TEST_IMAGES])
            _, net, _ = read_network_bundle(bundle)
            verilog = work / "network.v"
            verilog.write_text(to_verilog(Network(net, taps=True), "network"))
            cache[timesteps] = (work, bundle, verilog)
        return cache[timesteps]

    return get


@pytest.mark.parametrize("timesteps, testcase",
                         [pytest.param(t, c, marks=pytest.mark.slow) if (t, c) in SLOW else (t, c)
                          for t, cases in CASES.items() for c in cases])
def test_network_cosim(timesteps, testcase, prepared, build_root):
    work, bundle, verilog = prepared(timesteps)
    run_dir = work / testcase
    report = run_dir.with_suffix(".json")
    run_cocotb(verilog, toplevel="network", module="tb.cocotb_network", testcase=testcase,
               test_dir=run_dir, build_root=build_root,
               env={"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": 11, "SPIKEGEN_REPORT": report})
    if testcase == "test_network_matches_integer_model":
        figures = read_report(report)
        assert figures["samples"] == TEST_IMAGES and figures["timesteps"] == timesteps
        assert figures["rtl_predictions"] == figures["int_predictions"]
        assert figures["measured_cycles"] > 0


def test_network_in_the_compiled_harness(prepared, build_root):
    """The T = 4 network in the compiled stream harness (sim.harness.build_stream): random gaps
    on the pixel input, random backpressure on the class output; every layer's stream (taps)
    and every class accumulation checked by the cocotb bench's scoreboards, the scores equal
    the integer model's. Then a changed value in layer 1's expected stream is named with the
    layer, the beat's place and its cycle."""
    from hw.network import Network
    from sim.harness import build_stream
    from sim.network import run_in_harness
    from sim.scoreboard import Expected, ScoreboardMismatch
    from spec.bundle import read_bundle
    from sw.netbundle import read_network_bundle

    work, bundle_dir, verilog = prepared(4)
    _, net, _ = read_network_bundle(bundle_dir)
    bundle = read_bundle(bundle_dir)
    hw = Network(net, taps=True)
    binary, taps = build_stream(verilog.read_text(), "network", build_root / "harness",
                                opt="-O1")
    assert sorted(taps) == list(range(len(net.layers)))
    figures = run_in_harness(hw, net, bundle, binary, taps, in_pause=0.3, out_pause=0.5,
                             seed=11)
    assert figures["samples"] == TEST_IMAGES and figures["timesteps"] == 4
    assert figures["rtl_predictions"] == figures["int_predictions"]
    changed = {}

    def corrupt(n, expected):
        if n == 1:
            k = len(expected) // 2 + 1
            beat = expected[k]
            x = list(beat.values["x"])
            x[0] += 1
            expected[k] = Expected({**beat.values, "x": x}, beat.where, beat.lane_name,
                                   beat.lane_base)
            changed.update(k=k, where=beat.where)

    with pytest.raises(ScoreboardMismatch) as info:
        run_in_harness(hw, net, bundle, binary, taps, corrupt=corrupt)
    where = ", ".join(f"{k} {v}" for k, v in changed["where"].items())
    assert str(info.value).startswith(f"{net.layers[1].name}: first divergence at output beat "
                                      f"{changed['k']}, cycle ")
    assert where in str(info.value)
