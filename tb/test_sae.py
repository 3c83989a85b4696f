"""Co-simulation of generated spike-sparse accumulate engines under Verilator (`pytest tb/`)."""

import pytest

from sim.cosim import prepare_sae, read_report, run_cocotb
from spec.sae import SAEConfig

#: One Verilator build each: linear; conv with stride 1 and 2, padding 0/1/3, kernel 1/3/7,
#: non-square maps; depthwise 7x7 and strided 3x3; multi-bit conv and linear. Small
#: accumulators make some outputs saturate; few output groups exercise the update-hazard wait.
CONFIGS = {
    "linear": SAEConfig(mode="linear", in_channels=24, out_channels=40, kernel=1, padding=0,
                        height=3, width=5, lanes=8, in_lanes=16, acc_bits=12),
    "conv-k3-s1-p1": SAEConfig(in_channels=6, out_channels=32, kernel=3, stride=1, padding=1,
                               height=5, width=7, lanes=8, in_lanes=8, acc_bits=14),
    "conv-k3-s2-p0": SAEConfig(in_channels=5, out_channels=16, kernel=3, stride=2, padding=0,
                               height=8, width=7, lanes=8, in_lanes=4),
    "conv-k7-s1-p3": SAEConfig(in_channels=3, out_channels=24, kernel=7, stride=1, padding=3,
                               height=9, width=8, lanes=8, in_lanes=4, bias=False),
    "conv-k1-s2-p0": SAEConfig(in_channels=20, out_channels=16, kernel=1, stride=2, padding=0,
                               height=6, width=5, lanes=16, in_lanes=16),
    "depthwise-k7-p3": SAEConfig(mode="depthwise", in_channels=16, out_channels=16, kernel=7,
                                 padding=3, height=7, width=6, lanes=8, in_lanes=8),
    "depthwise-k3-s2": SAEConfig(mode="depthwise", in_channels=12, out_channels=12, kernel=3,
                                 stride=2, padding=1, height=5, width=5, lanes=8, in_lanes=8,
                                 acc_bits=10),
    # multi-bit inputs, one event per set magnitude bit (acc_bits = lossless_acc_bits): a first
    # layer of 5-bit unsigned pixels; a SepConv's second 1x1 on 12-bit signed values (4 output
    # words per token, so a token's many events never wait for each other's writes)
    "conv-in5-first": SAEConfig(in_channels=1, out_channels=16, kernel=3, stride=1, padding=1,
                                height=6, width=5, lanes=8, in_lanes=1, acc_bits=17, in_bits=5),
    "linear-in12-signed": SAEConfig(mode="linear", in_channels=16, out_channels=32, kernel=1,
                                    padding=0, height=2, width=3, lanes=8, in_lanes=16,
                                    acc_bits=24, in_bits=12, in_signed=True),
}
#: for multi-bit inputs, the fraction of nonzero values
DENSITIES = (0.0, 0.05, 0.25, 1.0)

CASES = [(d, "test_no_stalls_matches_cycle_model") for d in DENSITIES] + [
    (0.25, "test_random_stalls_both_sides"),
    (0.25, "test_reset_mid_frame_then_clean_frames"),
    (0.25, "test_corrupted_expectation_is_caught"),
]


#: the benches' seed (SPIKEGEN_SEED)
SEED = 13


def prepare(name, work):
    """(bundle per density, Verilog path) of configuration `name`, made in `work`."""
    return prepare_sae(CONFIGS[name], work, densities=DENSITIES, seed=5)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            work = tmp_path_factory.mktemp(f"sae-{name}")
            cache[name] = (work, *prepare(name, work))
        return cache[name]

    return get


@pytest.mark.parametrize("density, testcase", CASES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_sae_cosim(name, density, testcase, prepared, build_root):
    work, bundles, verilog = prepared(name)
    run_dir = work / f"{testcase}-d{density}"
    report = work / f"{run_dir.name}.json"  # not with_suffix: "-d0.05" has a dot
    run_cocotb(verilog, toplevel="sae", module="tb.cocotb_sae", testcase=testcase,
               test_dir=run_dir, build_root=build_root,
               env={"SPIKEGEN_BUNDLE": bundles[density], "SPIKEGEN_SEED": SEED,
                    "SPIKEGEN_REPORT": report})
    if testcase == "test_no_stalls_matches_cycle_model":
        figures = read_report(report)
        assert figures["measured_cycles"] == figures["model_cycles"]
        assert figures["measured_cycles"] >= figures["ideal_cycles"]
        assert figures["in_bits"] == CONFIGS[name].in_bits


def test_multi_bit_configs_are_lossless():
    multi = [c for c in CONFIGS.values() if c.in_bits > 1]
    assert {c.in_signed for c in multi} == {True, False}
    assert all(c.acc_bits == c.lossless_acc_bits for c in multi)
