"""Co-simulation of generated SDSA units under Verilator (`pytest tb/`)."""

import pytest

from sim.cosim import prepare_sdsa, read_report, run_cocotb
from spec.sdsa import SDSAConfig

#: One Verilator build each: all four variants; heads 1, 2 and 8; token counts that are not
#: multiples of lanes; T = 1 and T = 4; one and several KV words per head.
CONFIGS = {
    "v3-h8-t1": SDSAConfig(variant=3, heads=8, channels=64, tokens=10, lanes=4),
    "v3-h2-t4": SDSAConfig(variant=3, heads=2, channels=16, tokens=7, lanes=4, timesteps=4),
    "v4-h1-t1": SDSAConfig(variant=4, heads=1, channels=16, tokens=9, lanes=8, v_th=0.375),
    "v1-h2-t4": SDSAConfig(variant=1, heads=2, channels=24, tokens=5, lanes=8, timesteps=4),
    "v2-h8-t1": SDSAConfig(variant=2, heads=8, channels=32, tokens=6, lanes=16),
}
DENSITIES = (0.0, 0.1, 0.5, 1.0)

CASES = [(d, "test_no_stalls_matches_cycle_model") for d in DENSITIES] + [
    (0.5, "test_random_stalls_all_streams"),
    (0.5, "test_reset_mid_sample_then_clean_samples"),
    (0.5, "test_corrupted_expectation_is_caught"),
]


#: the benches' seed (SPIKEGEN_SEED)
SEED = 17


def prepare(name, work):
    """(bundle per density, Verilog path) of configuration `name`, made in `work`."""
    return prepare_sdsa(CONFIGS[name], work, densities=DENSITIES, seed=5)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            work = tmp_path_factory.mktemp(f"sdsa-{name}")
            cache[name] = (work, *prepare(name, work))
        return cache[name]

    return get


@pytest.mark.parametrize("density, testcase", CASES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_sdsa_cosim(name, density, testcase, prepared, build_root):
    work, bundles, verilog = prepared(name)
    run_dir = work / f"{testcase}-d{density}"
    report = run_dir.with_suffix(".json")
    run_cocotb(verilog, toplevel="sdsa", module="tb.cocotb_sdsa", testcase=testcase,
               test_dir=run_dir, build_root=build_root,
               env={"SPIKEGEN_BUNDLE": bundles[density], "SPIKEGEN_SEED": SEED,
                    "SPIKEGEN_REPORT": report})
    if testcase == "test_no_stalls_matches_cycle_model":
        figures = read_report(report)
        assert figures["measured_cycles"] == figures["model_cycles"]
        assert figures["measured_cycles"] >= figures["ideal_cycles"]
