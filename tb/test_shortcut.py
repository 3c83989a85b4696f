"""Co-simulation of generated membrane-shortcut datapaths against `sw.shortcut_int`
(cocotb + Verilator; the tests themselves are in tb/cocotb_shortcut.py)."""

import pytest

from sim.cosim import prepare_shortcut, read_report, run_cocotb
from spec.shortcut import ShortcutConfig

#: One Verilator build each: several groups per pixel with padding lanes and mixed shifts; one
#: group, no residual (a downsampling layer); a wide stream as the quantizer sizes them.
CONFIGS = {
    "groups3-pad": ShortcutConfig(channels=20, height=3, width=4, lanes=8, acc_bits=12, bits=10),
    "no-residual": ShortcutConfig(channels=16, height=4, width=3, lanes=16, acc_bits=14, bits=12,
                                  residual=False),
    "wide": ShortcutConfig(channels=32, height=2, width=3, lanes=16, acc_bits=16, bits=21),
}
#: value spreads: within range (little saturation), and 3x the range clipped (saturation and
#: the extremes of every width)
SPREADS = (0.25, 3.0)

CASES = [(s, "test_no_stalls_matches_cycle_model") for s in SPREADS] + [
    (3.0, "test_random_stalls_every_stream"),
    (0.25, "test_residual_late"),
    (0.25, "test_reset_mid_frame_then_clean_frames"),
    (0.25, "test_corrupted_expectation_is_caught"),
]


#: the benches' seed (SPIKEGEN_SEED)
SEED = 13


def prepare(name, work):
    """(bundle per spread, Verilog path) of configuration `name`, made in `work`."""
    return prepare_shortcut(CONFIGS[name], work, spreads=SPREADS, frames=3, seed=5)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            work = tmp_path_factory.mktemp(f"shortcut-{name}")
            cache[name] = (work, *prepare(name, work))
        return cache[name]

    return get


@pytest.mark.parametrize("spread, testcase", CASES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_shortcut_cosim(name, spread, testcase, prepared, build_root):
    work, bundles, verilog = prepared(name)
    run_dir = work / f"{testcase}-s{spread}"
    report = run_dir.with_suffix(".json")
    run_cocotb(verilog, toplevel="shortcut", module="tb.cocotb_shortcut", testcase=testcase,
               test_dir=run_dir, build_root=build_root,
               env={"SPIKEGEN_BUNDLE": bundles[spread], "SPIKEGEN_SEED": SEED,
                    "SPIKEGEN_REPORT": report})
    if testcase == "test_no_stalls_matches_cycle_model":
        figures = read_report(report)
        assert figures["measured_cycles"] == figures["model_cycles"]
        assert figures["measured_cycles"] >= figures["ideal_cycles"]
