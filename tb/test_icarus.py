"""The units' own cocotb benches under Icarus Verilog, in both language modes (`-g2005`, and
`-g2012` as cocotb's runner uses by default), with the same bundles, seeds and checks as under
Verilator. Skipped with the reason when `iverilog` is not on PATH.

`make test` runs one or two cases of every unit here (random stalls on every stream, the exact
cycle model, a reset mid-run, a corrupted expectation that must be caught);
`make test-icarus` runs every cocotb bench of tb/ under both modes
(`SPIKEGEN_SIMULATOR=icarus-2005|icarus-2012`).

Amaranth's own Verilog backend writes combinational processes as `always @*` blocks that run at
time 0 only through a Verilog-2005 event (a dummy reg's declaration initialiser); under `-g2012`
the SDSA-3 unit then hung with no output beat. `gen.verilog.to_verilog` sets that reg in an
`initial` statement, an event in both modes; the last test keeps the hazard visible: the same
unit through Amaranth's backend unchanged hangs under `-g2012` and passes under `-g2005`, so
the benches here would catch a generator that brought it back.
"""


import pytest
from amaranth.back import verilog as amaranth_verilog

from hw.sdsa import sdsa_unit
from sim.cosim import (
    CosimFailure,
    prepare_sdsa,
    read_report,
    run_cocotb,
)
from sim.icarus import IcarusNotFound, find_icarus

from . import test_axi, test_csr, test_lif, test_sae, test_sdsa, test_shortcut

MODES = ("icarus-2005", "icarus-2012")

#: (unit, configuration name in its tb/test_<unit>.py, density or spread, testcase)
CASES = [
    ("lif", "l16-t4-hard-decay-perchannel", None, "test_random_stalls_both_sides"),
    ("lif", "l4-t4-hard-nodecay-tau4", None, "test_reset_mid_sample_then_clean_sample"),
    ("sae", "conv-k3-s1-p1", 0.25, "test_random_stalls_both_sides"),
    ("sae", "depthwise-k3-s2", 1.0, "test_no_stalls_matches_cycle_model"),
    ("sae", "conv-in5-first", 0.25, "test_random_stalls_both_sides"),
    ("sdsa", "v3-h8-t1", 1.0, "test_no_stalls_matches_cycle_model"),
    ("sdsa", "v3-h2-t4", 0.5, "test_random_stalls_all_streams"),
    ("sdsa", "v4-h1-t1", 0.5, "test_reset_mid_sample_then_clean_samples"),
    ("sdsa", "v1-h2-t4", 0.5, "test_random_stalls_all_streams"),
    ("sdsa", "v2-h8-t1", 1.0, "test_no_stalls_matches_cycle_model"),
    ("sdsa", "v4-h1-t1", 0.5, "test_corrupted_expectation_is_caught"),
    ("shortcut", "groups3-pad", 3.0, "test_random_stalls_every_stream"),
    ("axi_master", "d64-b16", None, "test_random_transfers_written_then_read_back"),
    ("csr", "csr", None, "test_random_accesses_with_pauses"),
]


@pytest.fixture(scope="module")
def icarus_root(build_root):
    try:
        find_icarus()
    except IcarusNotFound as exc:
        pytest.skip(str(exc))
    return build_root


#: the units whose tb/test_<unit>.py prepares bundles per configuration
UNIT_TESTS = {"lif": test_lif, "sae": test_sae, "sdsa": test_sdsa, "shortcut": test_shortcut}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(unit, name) -> (work folder, bundle(s) or None, Verilog path), made by the unit's own
    tb/test_<unit>.py."""
    cache = {}

    def get(unit, name):
        if (unit, name) not in cache:
            work = tmp_path_factory.mktemp(f"icarus-{unit}-{name}")
            if unit in UNIT_TESTS:
                made = UNIT_TESTS[unit].prepare(name, work)
            elif unit == "axi_master":
                made = (None, test_axi.prepare(name, work))
            else:
                made = (None, test_csr.prepare(work))
            cache[unit, name] = (work, *made)
        return cache[unit, name]

    return get


def _env(unit, name, bundles, density):
    if unit == "axi_master":
        return test_axi.env(name)
    if unit == "csr":
        return test_csr.ENV
    return {"SPIKEGEN_BUNDLE": bundles if density is None else bundles[density],
            "SPIKEGEN_SEED": UNIT_TESTS[unit].SEED}


@pytest.mark.parametrize("simulator", MODES)
@pytest.mark.parametrize("unit, name, density, testcase", CASES)
def test_unit_bench_under_icarus(unit, name, density, testcase, simulator, prepared,
                                 icarus_root):
    work, bundles, verilog = prepared(unit, name)
    run_dir = work / f"{simulator}-{testcase}-{density}"
    report = work / f"{run_dir.name}-report.json"
    module = f"tb.cocotb_{'axi' if unit == 'axi_master' else unit}"
    run_cocotb(verilog, toplevel=unit, module=module, testcase=testcase, test_dir=run_dir,
               build_root=icarus_root, simulator=simulator,
               env={**_env(unit, name, bundles, density), "SPIKEGEN_REPORT": report})
    if testcase == "test_no_stalls_matches_cycle_model":
        figures = read_report(report)
        assert figures["measured_cycles"] == figures["model_cycles"]


def test_amaranth_backend_hangs_sdsa3_under_2012_only(tmp_path, icarus_root):
    """The hazard the generator avoids: Amaranth's backend text of the SDSA-3 unit hangs under
    `-g2012` (no output beat: the bench's completion timeout) and passes under `-g2005`, while
    `gen.verilog`'s text passes in both modes (the first SDSA case above)."""
    config = test_sdsa.CONFIGS["v3-h8-t1"]
    bundles, _ = prepare_sdsa(config, tmp_path, densities=(1.0,), seed=5)
    text = amaranth_verilog.convert(sdsa_unit(config), name="sdsa", emit_src=False,
                                    strip_internal_attrs=True)
    assert "always @*" in text
    path = tmp_path / "amaranth_sdsa.v"
    path.write_text(text)

    def run(simulator):
        run_cocotb(path, toplevel="sdsa", module="tb.cocotb_sdsa",
                   testcase="test_no_stalls_matches_cycle_model", test_dir=tmp_path / simulator,
                   build_root=icarus_root, simulator=simulator, log_file=tmp_path / "log.txt",
                   env={"SPIKEGEN_BUNDLE": bundles[1.0], "SPIKEGEN_SEED": test_sdsa.SEED})

    run("icarus-2005")
    with pytest.raises((CosimFailure, SystemExit)):   # SystemExit: cocotb's runner in pytest
        run("icarus-2012")
    assert "no completion after" in (tmp_path / "log.txt").read_text()


def test_waves_under_icarus(tmp_path, prepared, icarus_root):
    """`run_cocotb(..., waves=FILE, simulator="icarus-2012")`: cocotb's FST dump module in a
    build of its own; pywellen opens the file and finds the design's ports."""
    pywellen = pytest.importorskip("pywellen")
    work, bundle, verilog = prepared("lif", "l4-t4-hard-nodecay-tau4")
    fst = tmp_path / "lif.fst"
    run_cocotb(verilog, toplevel="lif", module="tb.cocotb_lif",
               testcase="test_no_stalls_matches_cycle_model", test_dir=tmp_path / "run",
               build_root=icarus_root, simulator="icarus-2012", waves=fst,
               env={"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": test_lif.SEED,
                    "SPIKEGEN_REPORT": tmp_path / "report.json"})
    names = {v.full_name for v in pywellen.Waveform(str(fst)).all_vars()}
    assert {"lif.clk", "lif.i__valid", "lif.o__ready", "lif.rst"} <= names, sorted(names)[:20]
