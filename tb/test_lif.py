"""Co-simulation of generated LIF arrays under Verilator, every beat checked (`pytest tb/`)."""

import pytest

from sim.cosim import prepare_lif, read_report, run_cocotb
from spec.lif import LIFConfig

#: Each configuration is one Verilator build; together they cover T = 1 and 4, hard and soft
#: reset, decay_input on and off, lanes 1/4/16, neurons not a multiple of lanes, per-channel
#: parameters, a non-zero reset potential, tau 4, and timesteps shorter than the pipeline.
CONFIGS = {
    "l1-t1-hard-decay": LIFConfig(neurons=20, lanes=1, timesteps=1, expose_membrane=True),
    "l4-t4-soft-nodecay-short": LIFConfig(neurons=8, lanes=4, timesteps=4, reset="soft",
                                          decay_input=False, expose_membrane=True),
    "l16-t4-hard-decay-perchannel": LIFConfig(
        neurons=300, lanes=16, channels=12, timesteps=4, expose_membrane=True,
        v_th=[1.0, 0.5, 2.0, 1.5, 1.0, 3.0, 0.5, 1.0, 2.5, 1.0, 0.75, 1.25],
        bias=[0.0, 0.25, -0.5, 0.0, 1.0, 0.0, -1.0, 0.5, 0.0, 0.0, 0.125, -0.25]),
    "l16-t1-soft-talkingheads": LIFConfig(neurons=256, lanes=16, timesteps=1, reset="soft",
                                          v_th=0.5, expose_membrane=True),
    "l4-t4-hard-nodecay-tau4": LIFConfig(neurons=30, lanes=4, channels=3, timesteps=4,
                                         decay_input=False, tau=4, frac_bits=8, v_bits=20,
                                         v_reset=-0.5, v_th=[1.0, 2.0, 0.5],
                                         expose_membrane=True),
    "l16-t4-spikes-only": LIFConfig(neurons=100, lanes=16, timesteps=4),
}

TESTCASES = [
    "test_no_stalls_matches_cycle_model",
    "test_random_stalls_both_sides",
    "test_bursty_output_backpressure",
    "test_reset_mid_sample_then_clean_sample",
    "test_corrupted_expectation_is_caught",
]


#: the benches' seed (SPIKEGEN_SEED)
SEED = 11


def prepare(name, work):
    """(bundle, Verilog path) of configuration `name`, made in `work`."""
    return prepare_lif(CONFIGS[name], work, samples=3, seed=7)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            work = tmp_path_factory.mktemp(f"lif-{name}")
            cache[name] = (work, *prepare(name, work))
        return cache[name]

    return get


@pytest.mark.parametrize("testcase", TESTCASES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_lif_cosim(name, testcase, prepared, build_root):
    work, bundle, verilog = prepared(name)
    report = work / f"{testcase}.json"
    run_cocotb(verilog, toplevel="lif", module="tb.cocotb_lif", testcase=testcase,
               test_dir=work / testcase, build_root=build_root,
               env={"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": SEED, "SPIKEGEN_REPORT": report})
    if testcase == "test_no_stalls_matches_cycle_model":
        figures = read_report(report)
        assert figures["measured_cycles"] == CONFIGS[name].cycles(3)
        assert figures["beats"] == CONFIGS[name].beats_per_step * CONFIGS[name].timesteps * 3


@pytest.mark.slow      # `make test` opens the compiled harness's FST (tb/test_harness.py)
def test_waves_fst_of_a_cocotb_run(prepared, build_root, tmp_path):
    """`run_cocotb(..., waves=FILE)`: a build with FST tracing (beside the plain one) dumps the
    run; pywellen opens the file and finds the design's ports and a register inside."""
    pywellen = pytest.importorskip("pywellen")
    work, bundle, verilog = prepared("l4-t4-soft-nodecay-short")
    fst = tmp_path / "lif.fst"
    run_cocotb(verilog, toplevel="lif", module="tb.cocotb_lif",
               testcase="test_no_stalls_matches_cycle_model", test_dir=tmp_path / "run",
               build_root=build_root, waves=fst,
               env={"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": SEED,
                    "SPIKEGEN_REPORT": tmp_path / "report.json"})
    wave = pywellen.Waveform(str(fst))
    names = {v.full_name for v in wave.all_vars()}
    assert {"lif.clk", "lif.i__valid", "lif.o__ready", "lif.rst"} <= names, sorted(names)[:20]
    clk = {v.full_name: v for v in wave.all_vars()}["lif.clk"].signal
    assert len(clk) > 20
