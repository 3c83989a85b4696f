"""Tests of the FPGA flow (`fpga.build`, `fpga.pnr`): reading nextpnr's log and report, nextpnr's
arguments, running a (fake) nextpnr and reading its failures, the I/O harness, real builds of the
smallest unit of each kind, and the `python -m fpga.build` command line's bad input.

Real place-and-route runs are few and small: one iCE40 UP5K build per unit (the LIF one also packs
a bitstream) and one ECP5 out-of-context build, each run once per module (fixtures).
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import CLI

import fpga.build
import fpga.pnr
from fpga.build import (
    PROG,
    build,
    component_for,
    config_from_argv,
    harness_verilog,
    main,
    resources,
    top_ports,
)
from fpga.pnr import (
    TARGETS,
    FitError,
    PnrError,
    find_tool,
    nextpnr_args,
    parse_log,
    parse_report,
    run_nextpnr,
)
from fpga.yosys import MULTIPLIER_CELLS, SynthError, synth_cells
from gen.verilog import to_verilog
from hw.lif import LIFArray
from spec.cli import UsageError
from spec.core import CoreConfig
from spec.lif import LIFConfig

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "nextpnr"
ICE40_OVERFLOW_LOG = (DATA / "ice40-up5k-io-overflow.log").read_text()
ECP5_TIMING_LOG = (DATA / "ecp5-25k-lif-timing-fail.log").read_text()
ECP5_REPORT = (DATA / "ecp5-25k-lif-report.json").read_text()

ECP5, ICE40 = TARGETS["ecp5-25k"], TARGETS["ice40-up5k"]

_CLI = CLI(PROG, main)
run = _CLI.run
assert_one_line_error = _CLI.assert_one_line_error


def fits(utilization):
    """Every resource within what the device has ({cell: (used, available)})."""
    return all(used <= available for used, available in utilization.values())


# -- parse_log ---------------------------------------------------------------------------------


def test_parse_log_failed_ice40_fit():
    info = parse_log(ICE40_OVERFLOW_LOG)
    util = info["utilization"]
    assert util["ICESTORM_LC"] == (381, 5280)
    assert util["ICESTORM_RAM"] == (0, 30)
    assert util["SB_IO"] == (46, 39)
    assert util["SB_GB"] == (2, 8)
    assert util["ICESTORM_DSP"] == (0, 8)
    assert util["ICESTORM_SPRAM"] == (0, 4)
    assert len(util) == 15  # the whole table, nothing else
    assert info["over"] == {"SB_IO": (46, 39)}
    assert not fits(util)
    assert info["error"] == ("ERROR: Unable to find a placement location for cell "
                             "'i__payload[3]$sb_io'")
    assert info["fmax"] == {}  # it never got to timing


def test_parse_log_ecp5_timing_failure_last_fmax_counts():
    info = parse_log(ECP5_TIMING_LOG)
    util = info["utilization"]
    assert util["TRELLIS_FF"] == (2038, 24288)
    assert util["TRELLIS_COMB"] == (1352, 24288)
    assert util["DP16KD"] == (8, 56)
    assert util["TRELLIS_RAMW"] == (5, 3036)
    assert util["MULT18X18D"] == (0, 28)
    assert util["TRELLIS_IO"] == (0, 197)
    # the "Logic utilisation before packing" lines ("Total LUT4s: ...") are not cell types
    assert not any(" " in cell for cell in util)
    assert "Total" not in util and "logic" not in util
    assert len(util) == 28
    assert info["over"] == {} and fits(util)
    assert info["error"] == ""
    # two Fmax lines (after placement 123.92, after routing 132.75): the last one counts
    assert info["fmax"] == {"clk": {"achieved_mhz": 132.75, "met": False,
                                    "constraint_mhz": 150.0}}


def test_parse_log_sees_changed_input():
    # the checks above can fail: a log that fits, that passes, or whose lines come in another
    # order reads differently
    fitting = ICE40_OVERFLOW_LOG.replace("SB_IO:      46/     39   117%",
                                         "SB_IO:      38/     39    97%")
    assert parse_log(fitting)["over"] == {}
    assert parse_log(fitting)["utilization"]["SB_IO"] == (38, 39)
    passing = ECP5_TIMING_LOG.replace("132.75 MHz (FAIL at 150.00 MHz)",
                                      "152.50 MHz (PASS at 150.00 MHz)")
    assert parse_log(passing)["fmax"]["clk"] == {"achieved_mhz": 152.5, "met": True,
                                                 "constraint_mhz": 150.0}
    first, second = "123.92 MHz (FAIL", "132.75 MHz (FAIL"
    swapped = (ECP5_TIMING_LOG.replace(first, "@@").replace(second, first)
               .replace("@@", second))
    assert parse_log(swapped)["fmax"]["clk"]["achieved_mhz"] == 123.92
    # the last utilisation table wins, the first ERROR line wins
    again = ICE40_OVERFLOW_LOG + "Info: \t         ICESTORM_LC:     400/   5280     7%\n"
    assert parse_log(again)["utilization"]["ICESTORM_LC"] == (400, 5280)
    two_errors = ICE40_OVERFLOW_LOG + "ERROR: a later error\n"
    assert parse_log(two_errors)["error"].startswith("ERROR: Unable to find")
    assert parse_log("")["utilization"] == {} and parse_log("")["error"] == ""
    # a full resource is not over-used; "ERROR" inside an Info line is not an error line
    full = ICE40_OVERFLOW_LOG.replace("SB_IO:      46/     39   117%",
                                      "SB_IO:      39/     39   100%")
    assert parse_log(full)["over"] == {}
    mention = "Info: net 'ERROR_flag' has no driver\n" + fitting.replace("ERROR:", "Error:")
    assert parse_log(mention)["error"] == ""


# -- parse_report ------------------------------------------------------------------------------


def test_parse_report_captured_json():
    report = parse_report(ECP5_REPORT)
    util = report["utilization"]
    assert util["TRELLIS_FF"] == (2038, 24288)
    assert util["TRELLIS_COMB"] == (1352, 24288)
    assert util["DP16KD"] == (8, 56)
    assert util["ALU54B"] == (0, 14)
    assert all(isinstance(u, int) and isinstance(a, int) for u, a in util.values())
    assert report["fmax"] == {"clk": {"achieved_mhz": 132.75, "constraint_mhz": 150.0,
                                      "met": False}}
    # the same run, read from its log, says the same
    info = parse_log(ECP5_TIMING_LOG)
    assert util == info["utilization"]
    assert report["fmax"] == info["fmax"]


def test_parse_report_met_follows_the_constraint():
    data = json.loads(ECP5_REPORT)
    data["fmax"]["clk"]["constraint"] = 100
    assert parse_report(json.dumps(data))["fmax"]["clk"] == {
        "achieved_mhz": 132.75, "constraint_mhz": 100.0, "met": True}
    data["fmax"]["clk"]["achieved"] = data["fmax"]["clk"]["constraint"] = 150
    assert parse_report(json.dumps(data))["fmax"]["clk"]["met"] is True  # exactly met
    data["fmax"]["clk"]["achieved"] = 132.74923706054688
    data["fmax"]["clk"]["constraint"] = 132.75
    assert parse_report(json.dumps(data))["fmax"]["clk"]["met"] is False  # 132.7492 < 132.75
    del data["fmax"]
    assert parse_report(json.dumps(data))["fmax"] == {}


def _report_with(**changes):
    data = json.loads(ECP5_REPORT)
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize("text, message", [
    ('{"utilization": {', "nextpnr's report is not JSON: "),
    ("", "nextpnr's report is not JSON: "),
    ('{"fmax": {}}', "nextpnr's report has no 'utilization'"),
    ("[1, 2]", "nextpnr's report has no 'utilization'"),
    ('{"utilization": [1, 2]}', "nextpnr's report has no 'utilization'"),
    (_report_with(utilization={"DP16KD": {"used": 8}}),
     "nextpnr's report: bad utilization entry for 'DP16KD'"),
    (_report_with(utilization={"DP16KD": {"used": "eight", "available": 56}}),
     "nextpnr's report: bad utilization entry for 'DP16KD'"),
    (_report_with(utilization={"DP16KD": 8}),
     "nextpnr's report: bad utilization entry for 'DP16KD'"),
    (_report_with(fmax={"clk": {"achieved": 132.7}}), "nextpnr's report: bad fmax entry for 'clk'"),
    (_report_with(fmax={"clk": {"achieved": None, "constraint": 150}}),
     "nextpnr's report: bad fmax entry for 'clk'"),
    (_report_with(fmax={"clk": 132.7}), "nextpnr's report: bad fmax entry for 'clk'"),
])
def test_parse_report_rejects_bad_reports(text, message):
    with pytest.raises(PnrError) as info:
        parse_report(text)
    assert str(info.value).startswith(message)
    if message.endswith(": "):
        assert len(str(info.value)) > len(message)  # says where the JSON broke


def test_parse_report_rejects_fmax_that_is_not_an_object():
    with pytest.raises(PnrError):
        parse_report(_report_with(fmax=[132.7]))


# -- nextpnr_args ------------------------------------------------------------------------------


def test_nextpnr_args_ecp5_out_of_context():
    assert nextpnr_args(ECP5, speed=8, freq=100, out_of_context=True, seed=3) == [
        "--25k", "--package", "CABGA381", "--speed", "8", "--json", "netlist.json",
        "--report", "nextpnr-report.json", "--seed", "3", "--freq", "100",
        "--timing-allow-fail", "--out-of-context"]


def test_nextpnr_args_defaults_and_pins():
    # the default speed grade, no --freq without a frequency, a text config for a bitstream
    args = nextpnr_args(TARGETS["ecp5-85k"])
    assert args[:5] == ["--85k", "--package", "CABGA381", "--speed", "6"]
    assert "--freq" not in args and "--timing-allow-fail" not in args
    assert "--out-of-context" not in args
    assert args[-2:] == ["--textcfg", "placed.config"]
    assert args[args.index("--seed") + 1] == "1"
    assert nextpnr_args(TARGETS["ecp5-45k"], speed=7)[:5] == [
        "--45k", "--package", "CABGA381", "--speed", "7"]


def test_nextpnr_args_ice40():
    args = nextpnr_args(ICE40, freq=62.5)
    assert args == ["--up5k", "--package", "sg48", "--json", "netlist.json", "--report",
                    "nextpnr-report.json", "--seed", "1", "--freq", "62.5",
                    "--timing-allow-fail", "--asc", "placed.asc"]
    assert "--speed" not in nextpnr_args(ICE40, speed=8)  # iCE40 has no speed grades
    with pytest.raises(PnrError, match=r"^ice40-up5k: nextpnr-ice40 has no out-of-context mode$"):
        nextpnr_args(ICE40, out_of_context=True)


def test_targets():
    assert set(TARGETS) == {"ecp5-25k", "ecp5-45k", "ecp5-85k", "ice40-up5k"}
    assert all(TARGETS[n].name == n for n in TARGETS)
    assert ECP5.family == "ecp5" and ECP5.speeds == (6, 7, 8) and ECP5.default_speed == 6
    assert ICE40.family == "ice40" and ICE40.speeds == () and ICE40.default_speed is None


# -- run_nextpnr with a fake nextpnr -----------------------------------------------------------

FAKE_NEXTPNR = textwrap.dedent("""\
    import json, sys
    from pathlib import Path
    spec = json.loads(Path(sys.argv[1]).read_text())
    Path("argv.json").write_text(json.dumps(sys.argv[2:]))
    sys.stdout.write(spec["stdout"])
    sys.stderr.write(spec["log"])
    if spec["report"] is not None:
        Path("nextpnr-report.json").write_text(spec["report"])
    sys.exit(spec["status"])
""")


@pytest.fixture
def fake_nextpnr(tmp_path, monkeypatch):
    """fake(log, status, report=None) -> workdir; run_nextpnr then runs a script that prints
    `log`, writes `report` as nextpnr-report.json (when given) and exits with `status`."""
    tools = tmp_path / "tools"
    tools.mkdir()
    script = tools / "fake_nextpnr.py"
    script.write_text(FAKE_NEXTPNR)
    wanted = []

    def find(name):
        wanted.append(name)
        return [sys.executable, str(script), str(tools / "spec.json")]

    monkeypatch.setattr(fpga.pnr, "find_tool", find)

    def fake(log, status, report=None, stdout=""):
        (tools / "spec.json").write_text(json.dumps(
            {"log": log, "status": status, "report": report, "stdout": stdout}))
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        return work

    fake.wanted = wanted
    return fake


def test_run_nextpnr_success(fake_nextpnr):
    work = fake_nextpnr(ECP5_TIMING_LOG, 0, ECP5_REPORT, stdout="out\n")
    report, log = run_nextpnr(work, ECP5, speed=8, freq=150, out_of_context=True, seed=2)
    assert fake_nextpnr.wanted == ["nextpnr-ecp5"]
    assert report == parse_report(ECP5_REPORT)
    assert report["fmax"]["clk"]["met"] is False  # a missed frequency is a result
    assert log == "out\n" + ECP5_TIMING_LOG  # stdout then stderr
    assert (work / "nextpnr.log").read_text() == log
    # it ran in the work folder with nextpnr_args's arguments
    assert json.loads((work / "argv.json").read_text()) == nextpnr_args(
        ECP5, speed=8, freq=150, out_of_context=True, seed=2)


def test_run_nextpnr_failed_fit(fake_nextpnr):
    work = fake_nextpnr(ICE40_OVERFLOW_LOG, 1)
    with pytest.raises(FitError) as info:
        run_nextpnr(work, ICE40)
    assert fake_nextpnr.wanted == ["nextpnr-ice40"]
    assert str(info.value) == "the design does not fit ice40-up5k: SB_IO 46/39 (117 %)"
    assert info.value.over == {"SB_IO": (46, 39)}
    assert isinstance(info.value, PnrError)
    assert (work / "nextpnr.log").read_text() == ICE40_OVERFLOW_LOG  # kept for a look


def test_run_nextpnr_failure_that_is_not_a_fit(fake_nextpnr):
    # the same failed run with every resource within the device: not a FitError, the ERROR line
    log = ICE40_OVERFLOW_LOG.replace("SB_IO:      46/     39   117%",
                                     "SB_IO:      38/     39    97%")
    work = fake_nextpnr(log, 1)
    with pytest.raises(PnrError) as info:
        run_nextpnr(work, ICE40)
    assert not isinstance(info.value, FitError)
    assert str(info.value) == ("nextpnr failed for ice40-up5k: ERROR: Unable to find a placement "
                               "location for cell 'i__payload[3]$sb_io'")


def test_run_nextpnr_failure_without_error_line(fake_nextpnr):
    work = fake_nextpnr("Info: something odd\n", 3, ECP5_REPORT)
    with pytest.raises(PnrError, match=r"^nextpnr failed for ecp5-25k: exit status 3$") as info:
        run_nextpnr(work, ECP5, out_of_context=True)
    assert not isinstance(info.value, FitError)


def test_run_nextpnr_success_without_report(fake_nextpnr):
    work = fake_nextpnr(ECP5_TIMING_LOG, 0)
    with pytest.raises(PnrError, match=r"^nextpnr wrote no report$"):
        run_nextpnr(work, ECP5, out_of_context=True)


def test_run_nextpnr_success_with_a_broken_report(fake_nextpnr):
    work = fake_nextpnr(ECP5_TIMING_LOG, 0, '{"fmax": {}}')
    with pytest.raises(PnrError, match=r"^nextpnr's report has no 'utilization'$"):
        run_nextpnr(work, ECP5, out_of_context=True)


def test_find_tool():
    assert Path(find_tool("nextpnr-ecp5")[0]).name.endswith("nextpnr-ecp5")
    with pytest.raises(PnrError, match=r"^no nextpnr-nosuchfamily found: "
                                       r"pip install yowasp-nextpnr-nosuchfamily$"):
        find_tool("nextpnr-nosuchfamily")


# -- resources ---------------------------------------------------------------------------------


def test_resources_ecp5_counts_dsp_blocks():
    cells = {"LUT4": 10, "CCU2C": 3, "TRELLIS_DPR16X4": 2, "MULT18X18D": 2}
    util = {"TRELLIS_COMB": (12, 24288), "TRELLIS_FF": (7, 24288), "DP16KD": (1, 56),
            "MULT18X18D": (2, 28), "ALU54B": (1, 14)}
    assert resources("ecp5", cells, util) == {"lut4": 10, "logic_cells": 12, "ff": 7, "carry": 3,
                                              "bram": 1, "lutram": 2, "dsp": 3}
    assert resources("ecp5", {}, {})["dsp"] == 0


def test_resources_ice40_counts_every_flip_flop_kind():
    cells = {"SB_LUT4": 9, "SB_CARRY": 4, "SB_DFF": 1, "SB_DFFE": 2, "SB_DFFESR": 3,
             "SB_DFFSR": 4, "SB_RAM40_4K": 1}
    util = {"ICESTORM_LC": (20, 5280), "ICESTORM_RAM": (1, 30), "ICESTORM_SPRAM": (2, 4),
            "ICESTORM_DSP": (1, 8)}
    assert resources("ice40", cells, util) == {"lut4": 9, "logic_cells": 20, "ff": 10,
                                               "carry": 4, "bram": 1, "spram": 2, "dsp": 1}


# -- top_ports and the harness -----------------------------------------------------------------

TINY = """\
module tiny_helper(clk, q);
  input clk;
  input [7:0] q;
endmodule
module tiny(clk, a, rst, b, y, z);
  input clk;
  input [2:0] a;
  input rst;
  input signed [0:4] b;
  output reg [3:0] y;
  output z;
  wire [4:0] unused_w;
  reg [3:0] r;
  always @(posedge clk) y <= rst ? 4'd0 : a + b[3:0];
  assign z = ^b;
endmodule
module tiny2(clk, rst, c);
  input clk;
  input rst;
  input [15:0] c;
endmodule
"""


def test_top_ports_order_and_widths():
    assert top_ports(TINY, "tiny") == [("input", "clk", 1), ("input", "a", 3),
                                       ("input", "rst", 1), ("input", "b", 5),
                                       ("output", "y", 4), ("output", "z", 1)]
    # each module's own ports, not a neighbour's (nor one whose name starts the same)
    assert top_ports(TINY, "tiny_helper") == [("input", "clk", 1), ("input", "q", 8)]
    assert top_ports(TINY, "tiny2") == [("input", "clk", 1), ("input", "rst", 1),
                                        ("input", "c", 16)]


def test_top_ports_of_generated_verilog():
    verilog, _ = fpga.build.generate("lif", ["--neurons", "8", "--lanes", "4",
                                             "--timesteps", "2"], "lif")
    ports = top_ports(verilog, "lif")
    assert ports == [("input", "clk", 1), ("input", "i__payload", 34), ("output", "i__ready", 1),
                     ("input", "i__valid", 1), ("output", "o__payload", 6),
                     ("input", "o__ready", 1), ("output", "o__valid", 1), ("input", "rst", 1)]


def test_top_ports_missing_module():
    with pytest.raises(SynthError, match=r"^no module 'nope' in the Verilog$"):
        top_ports(TINY, "nope")
    with pytest.raises(SynthError, match=r"^no module 'tin' in the Verilog$"):
        top_ports(TINY, "tin")


def test_top_ports_several_names_on_one_line():
    verilog = ("module m(clk, rst, a, b, y);\n  input clk;\n  input rst;\n"
               "  input [3:0] a, b;\n  output y;\nendmodule\n")
    assert top_ports(verilog, "m") == [("input", "clk", 1), ("input", "rst", 1),
                                       ("input", "a", 4), ("input", "b", 4), ("output", "y", 1)]


def test_harness_verilog_text():
    text, meta = harness_verilog(TINY, "tiny")
    assert meta == {"ff": 3 + 5 + 4 + 1, "in_bits": 8, "out_bits": 5}
    assert text.startswith(TINY)  # the unit, unchanged, then the harness
    harness = text[len(TINY):]
    assert "module harness(clk, rst, sin, load, sout);" in harness
    assert "reg [7:0] isr;" in harness and "reg [4:0] osr;" in harness
    for conn in (".a(isr[2:0])", ".b(isr[7:3])", ".y(o[3:0])", ".z(o[4:4])", ".clk(clk)",
                 ".rst(rst)"):
        assert conn in harness
    # a unit with one input bit, and one without outputs
    one = ("module one(clk, rst, x, y);\n  input clk;\n  input rst;\n  input x;\n"
           "  output [1:0] y;\nendmodule\n")
    assert harness_verilog(one, "one")[1] == {"ff": 3, "in_bits": 1, "out_bits": 2}
    assert harness_verilog(TINY, "tiny2")[1] == {"ff": 16, "in_bits": 16, "out_bits": 0}


def test_harness_needs_clk_and_rst():
    with pytest.raises(SynthError, match=r"^module 'tiny_helper' has no clk/rst ports$"):
        harness_verilog(TINY, "tiny_helper")
    with pytest.raises(SynthError, match=r"^no module 'nope' in the Verilog$"):
        harness_verilog(TINY, "nope")


def _flip_flops(cells):
    return sum(n for cell, n in cells.items() if cell.startswith("SB_DFF"))


def test_harness_passes_yosys_and_adds_in_plus_out_flip_flops():
    unit = TINY.split("module tiny2")[0]
    text, meta = harness_verilog(unit, "tiny")
    alone = synth_cells(unit, "tiny", "ice40")
    wrapped = synth_cells(text, "harness", "ice40")
    assert _flip_flops(alone) == 4  # y
    assert _flip_flops(wrapped) - _flip_flops(alone) == meta["ff"] == 13
    assert set(MULTIPLIER_CELLS).isdisjoint(wrapped)


# -- real builds -------------------------------------------------------------------------------

SMALL = {
    "lif": ["--neurons", "64", "--lanes", "4", "--timesteps", "2"],
    "sae": ["--mode", "conv", "--in-ch", "4", "--out-ch", "8", "--height", "4", "--width", "4",
            "--lanes", "4", "--in-lanes", "4"],
    "sdsa": ["--channels", "16", "--tokens", "8", "--heads", "2", "--lanes", "4"],
}
IO_PINS = 5  # clk, rst, sin, load, sout


@pytest.fixture(scope="module")
def ice40_builds(tmp_path_factory):
    """{design: (out folder, report)} of the smallest unit of each kind on an iCE40 UP5K, built
    lazily; the LIF one also packs a bitstream."""
    done = {}

    def get(design):
        if design not in done:
            out = tmp_path_factory.mktemp("fpga") / f"{design}-ice40"
            done[design] = out, build(design, SMALL[design], "ice40-up5k", out=out,
                                      bitstream=design == "lif", log=lambda s: None)
        return done[design]

    return get


@pytest.mark.parametrize("design", [d if d == "lif" else pytest.param(d, marks=pytest.mark.slow)
                                    for d in SMALL])
def test_smallest_unit_fits_ice40_without_multipliers(design, ice40_builds):
    out, report = ice40_builds(design)
    assert (report["design"], report["target"], report["family"]) == (design, "ice40-up5k",
                                                                      "ice40")
    assert report["io"] == "harness" and report["speed_grade"] is None
    assert report["requested_mhz"] is None and report["met"] is None
    # it fits: every resource within the device, through five pins
    util = {k: (v["used"], v["available"]) for k, v in report["utilization"].items()}
    assert util and fits(util)
    assert util["SB_IO"] == (IO_PINS, 39)
    assert 0 < report["resources"]["logic_cells"] <= 5280
    assert report["resources"]["logic_cells"] == util["ICESTORM_LC"][0]
    # no DSP, no multiplier of any kind
    assert report["resources"]["dsp"] == 0
    assert "ICESTORM_DSP" not in util
    assert report["multiplier_cells"] == {}
    assert set(MULTIPLIER_CELLS).isdisjoint(report["yosys_cells"])
    # the harness: one flip-flop per input and output bit of the unit
    verilog = (out / "design.v").read_text()
    ports = top_ports(verilog, design)
    n_in = sum(w for d, n, w in ports if d == "input" and n not in ("clk", "rst"))
    n_out = sum(w for d, n, w in ports if d == "output")
    assert report["harness"] == {"ff": n_in + n_out, "in_bits": n_in, "out_bits": n_out}
    assert report["resources"]["ff"] > report["harness"]["ff"]  # the unit's own are there too
    assert report["config"] == fpga.build.generate(design, SMALL[design], design)[1]
    # one clock, timed
    assert len(report["fmax"]) == 1
    (clock,) = report["fmax"].values()
    assert clock["achieved_mhz"] > 0
    assert json.loads((out / "report.json").read_text()) == report
    for name in ("design.v", "netlist.json", "nextpnr.log", "placed.asc"):
        assert (out / name).is_file()


def test_ice40_bitstream(ice40_builds):
    out, report = ice40_builds("lif")
    assert report["bitstream"] == "bitstream.bin"
    data = (out / "bitstream.bin").read_bytes()
    assert len(data) > 1000
    assert set(report["times"]) == {"generate_s", "synth_s", "pnr_s", "pack_s", "total_s"}
    assert not (out / "bitstream.bit").exists()


@pytest.fixture(scope="module")
def ecp5_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("fpga") / "lif-ecp5"
    return out, build("lif", SMALL["lif"], "ecp5-25k", out=out, speed=8, freq=100,
                      log=lambda s: None)


def test_ecp5_out_of_context_build(ecp5_build):
    out, report = ecp5_build
    assert (report["design"], report["target"], report["family"]) == ("lif", "ecp5-25k", "ecp5")
    assert report["speed_grade"] == 8
    assert report["io"] == "ooc" and report["harness"] is None
    assert report["requested_mhz"] == 100
    assert report["fmax"]
    for clock in report["fmax"].values():
        assert clock["achieved_mhz"] > 0 and clock["constraint_mhz"] == 100.0
        assert clock["met"] == (clock["achieved_mhz"] >= 100)
    assert isinstance(report["met"], bool)
    assert report["met"] == all(c["met"] for c in report["fmax"].values())
    assert {"lut4", "logic_cells", "ff", "carry", "bram", "dsp"} <= set(report["resources"])
    assert report["resources"]["dsp"] == 0 and report["multiplier_cells"] == {}
    assert report["resources"]["lut4"] > 0 and report["resources"]["ff"] > 0
    assert report["resources"]["logic_cells"] == report["utilization"]["TRELLIS_COMB"]["used"]
    assert report["resources"]["ff"] == report["utilization"]["TRELLIS_FF"]["used"]
    assert "TRELLIS_IO" not in report["utilization"]  # out of context: no pins
    assert report["tools"]["yosys"].startswith("Yosys")
    assert "nextpnr" in report["tools"]["nextpnr"]
    assert "bitstream" not in report
    assert json.loads((out / "report.json").read_text()) == report
    assert (out / "nextpnr-report.json").is_file()
    assert not (out / "placed.config").exists()


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def fake_build(monkeypatch):
    """Replace the flow with one that records its arguments and returns a canned report."""
    calls = []

    def fake(design, unit_argv, target, **kwargs):
        calls.append((design, unit_argv, target, kwargs))
        kwargs["log"]("working")
        return {"resources": {"logic_cells": 472, "lut4": 114, "ff": 623, "bram": 0, "dsp": 0},
                "fmax": {"clk": {"achieved_mhz": 250.0}},
                "speed_grade": (kwargs["speed"] or 6) if TARGETS[target].speeds else None,
                "io": kwargs["io"] or ("ooc" if TARGETS[target].family == "ecp5" else "harness")}

    monkeypatch.setattr(fpga.build, "build", fake)
    return calls


def test_cli_passes_its_flags_to_the_flow(capsys, tmp_path, fake_build):
    out = tmp_path / "o"
    status, stdout, err = run(capsys, "--design", "lif", "--target", "ecp5-25k", "--speed", "8",
                              "--freq", "100", "--out", out, "--seed", "4", "--quiet",
                              "--neurons", "64", "--lanes", "4")
    assert (status, err) == (0, "")
    assert stdout == (f"{PROG}: lif on ecp5-25k grade 8 (ooc): 472 logic cells, 114 LUT4, 623 FF, "
                      f"0 BRAM, 0 DSP; Fmax clk 250.0 MHz; report {out / 'report.json'}\n")
    ((design, unit_argv, target, kwargs),) = fake_build
    assert (design, unit_argv, target) == ("lif", ["--neurons", "64", "--lanes", "4"], "ecp5-25k")
    assert {k: v for k, v in kwargs.items() if k != "log"} == {
        "out": out, "speed": 8, "freq": 100.0, "io": None, "bitstream": False, "seed": 4}


def test_cli_default_out_and_progress(capsys, tmp_path, monkeypatch, fake_build):
    monkeypatch.chdir(tmp_path)
    status, stdout, err = run(capsys, "--design", "sdsa", "--target", "ice40-up5k",
                              "--bitstream")
    assert status == 0 and stdout.startswith(f"{PROG}: sdsa on ice40-up5k (harness)")
    assert err == f"[{PROG}] working\n"
    kwargs = fake_build[0][3]
    assert kwargs["out"] == Path("build/fpga/sdsa-ice40-up5k") and kwargs["bitstream"]
    # a bitstream on ECP5 is fine with pins
    assert run(capsys, "--design", "lif", "--target", "ecp5-45k", "--io", "harness",
               "--bitstream", "--quiet")[0] == 0


BAD = [
    (["--design", "nope", "--target", "ice40-up5k"],
     "unknown design 'nope' (known: lif, sae, sdsa, block, network, core)"),
    (["--design", "lif", "--target", "xc7a35t"],
     "unknown target 'xc7a35t' (known: ecp5-25k, ecp5-45k, ecp5-85k, ice40-up5k)"),
    (["--design", "lif", "--target", "ecp5-25k", "--speed", "9"],
     "ecp5-25k has no speed grade 9 (grades: 6, 7, 8)"),
    (["--design", "lif", "--target", "ice40-up5k", "--speed", "6"],
     "ice40-up5k has no speed grade 6 (it has no speed grades)"),
    (["--design", "lif", "--target", "ice40-up5k", "--io", "ooc"],
     "ice40-up5k has no out-of-context flow (nextpnr-ice40); use --io harness"),
    (["--design", "lif", "--target", "ecp5-25k", "--bitstream"],
     "a bitstream needs pins: add --io harness"),
    (["--design", "lif", "--target", "ecp5-25k", "--io", "ooc", "--bitstream"],
     "a bitstream needs pins: add --io harness"),
    (["--design", "lif", "--target", "ecp5-25k", "--freq", "0"],
     "--freq must be between 1 and 1000 MHz, not 0"),
    (["--design", "lif", "--target", "ecp5-25k", "--freq", "2000"],
     "--freq must be between 1 and 1000 MHz, not 2000"),
    (["--design", "lif", "--target", "ecp5-25k", "-o", "x.v"],
     "-o is not a unit flag here (fpga.build names the outputs)"),
    (["--design", "lif", "--target", "ecp5-25k", "--name", "foo"],
     "--name is not a unit flag here (fpga.build names the outputs)"),
    (["--design", "sae", "--target", "ecp5-25k", "--report=r.json"],
     "--report is not a unit flag here (fpga.build names the outputs)"),
    (["--design", "lif", "--target", "ecp5-25k", "--io", "pins"],
     "argument --io: invalid choice: 'pins' (choose from ooc, harness)"),
    (["--target", "ecp5-25k"], "the following arguments are required: --design"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[m.split(" (")[0][:40] for _, m in BAD])
def test_cli_bad_input(capsys, tmp_path, argv, message, fake_build):
    out = tmp_path / "out"
    status, stdout, err = run(capsys, *argv, "--out", out)
    if "invalid choice" in message:  # argparse quotes the choices one way or another
        assert status == 2 and stdout == "" and err.count("\n") == 1
        assert err.startswith(f"{PROG}: error: argument --io: invalid choice: 'pins'")
    else:
        assert_one_line_error(status, stdout, err, message)
    assert not out.exists()
    assert fake_build == []  # no work started


def test_cli_bad_input_checks_can_fail(capsys, tmp_path, fake_build):
    # the same command lines with the bad part put right do run
    out = tmp_path / "out"
    for argv in (["--design", "lif", "--target", "ecp5-25k", "--speed", "7"],
                 ["--design", "lif", "--target", "ice40-up5k", "--io", "harness"],
                 ["--design", "lif", "--target", "ecp5-25k", "--freq", "1"],
                 ["--design", "lif", "--target", "ecp5-25k", "--freq", "1000"],
                 ["--design", "lif", "--target", "ecp5-25k", "--neurons", "8"]):
        status, stdout, err = run(capsys, *argv, "--out", out, "--quiet")
        assert (status, err) == (0, ""), argv
    assert len(fake_build) == 5


def test_cli_out_is_an_existing_file(capsys, tmp_path, fake_build):
    out = tmp_path / "report.txt"
    out.write_text("keep me\n")
    status, stdout, err = run(capsys, "--design", "lif", "--target", "ecp5-25k", "--out", out)
    assert_one_line_error(status, stdout, err, f"--out {str(out)!r} exists and is not a folder")
    assert out.read_text() == "keep me\n"
    assert fake_build == []


@pytest.mark.parametrize("argv, message", [
    (["--neurons", "0"], "neurons must be at least 1, not 0"),
    (["--neurons", "x"], "argument --neurons: invalid int value: 'x'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_cli_bad_unit_flags(capsys, tmp_path, argv, message):
    # the generator's own error, as one line under fpga.build's name (the real flow: it fails
    # before Yosys runs)
    status, stdout, err = run(capsys, "--design", "lif", "--target", "ice40-up5k",
                              "--out", tmp_path / "out", *argv)
    assert_one_line_error(status, stdout, err, message)
    assert not (tmp_path / "out" / "design.v").exists()


@pytest.mark.parametrize("design, argv, message", [
    ("block", ["--heads", "3"], "--heads (3) must divide --channels (64)"),
    ("block", ["--kind", "conv", "--heads", "2"], "--heads is for --kind transformer, not conv"),
    ("block", ["--bundle", "nowhere"], "bundle 'nowhere' does not exist"),
    ("network", [], "--bundle is required: a network bundle from python -m sw.export "
                    "--checkpoint F --out DIR"),
])
def test_cli_bad_block_and_network_flags(capsys, tmp_path, design, argv, message):
    # blocks and networks take gen.block's and gen.network's flags, with their errors
    status, stdout, err = run(capsys, "--design", design, "--target", "ecp5-85k",
                              "--out", tmp_path / "out", *argv)
    assert_one_line_error(status, stdout, err, message)
    assert not (tmp_path / "out").exists()


def test_composed_designs_have_no_estimate(monkeypatch, tmp_path):
    # a block runs the flow like a unit (synthesis and nextpnr faked here: tests/test_synth_block
    # synthesizes blocks); its report lists the units and has no analytic estimate
    monkeypatch.setattr(fpga.build, "synthesize", lambda *a, **k: {"LUT4": 10, "TRELLIS_FF": 5})
    monkeypatch.setattr(fpga.build, "run_nextpnr", lambda *a, **k: (
        {"utilization": {"TRELLIS_COMB": (12, 83640), "TRELLIS_FF": (5, 83640)},
         "fmax": {"clk": {"achieved_mhz": 80.0, "constraint_mhz": 12.0, "met": True}}}, ""))
    monkeypatch.setattr(fpga.build, "tool_version", lambda tool: "fake")
    report = build("block", ["--kind", "downsample", "--channels", "8", "--height", "4",
                             "--width", "4"], "ecp5-85k", out=tmp_path, log=lambda s: None)
    assert report["estimate"] is None
    assert report["config"]["kind"] == "IntDownsample"
    assert {u["type"] for u in report["config"]["units"].values()} == {"SAEConfig",
                                                                      "ShortcutConfig"}
    assert report["resources"]["lut4"] == 10 and report["multiplier_cells"] == {}
    assert "module block(" in (tmp_path / "design.v").read_text()


def test_cli_bad_unit_flags_write_nothing(capsys, tmp_path):
    out = tmp_path / "out"
    status, stdout, err = run(capsys, "--design", "lif", "--target", "ice40-up5k",
                              "--out", out, "--neurons", "0")
    assert status == 2
    assert not out.exists()


def test_cli_fit_error_is_one_line(capsys, tmp_path, monkeypatch):
    def fit_error(*args, **kwargs):
        raise FitError("the design does not fit ice40-up5k: SB_IO 46/39 (117 %)",
                       {"SB_IO": (46, 39)})

    monkeypatch.setattr(fpga.build, "build", fit_error)
    status, stdout, err = run(capsys, "--design", "lif", "--target", "ice40-up5k",
                              "--out", tmp_path / "o")
    assert_one_line_error(status, stdout, err,
                          "the design does not fit ice40-up5k: SB_IO 46/39 (117 %)")


def test_cli_bad_input_in_a_fresh_interpreter(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "fpga.build", "--design", "lif", "--target",
                             "ice40-up5k", "--io", "ooc", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (f"{PROG}: error: ice40-up5k has no out-of-context flow "
                             f"(nextpnr-ice40); use --io harness\n")
    assert not out.exists()


def test_top_ports_rejects_ansi_headers():
    verilog = "module m(input clk, input rst, output y);\nendmodule\n"
    with pytest.raises(SynthError, match="ANSI"):
        top_ports(verilog, "m")


def test_build_component_takes_a_configuration_object(tmp_path, monkeypatch):
    """`build_component(component, design, config, ...)` (the Python API's build: no argv of a
    generator) writes the same design and report as `build` from the generator's flags (the
    tools replaced by stand-ins here; their runs are tested above)."""
    monkeypatch.setattr(fpga.build, "synthesize", lambda out, top, family, noiopad:
                        {"SB_LUT4": 100, "SB_DFF": 50, "SB_RAM40_4K": 1})
    monkeypatch.setattr(fpga.build, "run_nextpnr", lambda out, target, **kw: (
        {"fmax": {"clk": {"achieved_mhz": 60.0, "constraint_mhz": 12.0, "met": True}},
         "utilization": {"ICESTORM_LC": (120, 5280), "ICESTORM_RAM": (1, 30)}}, None))
    monkeypatch.setattr(fpga.build, "tool_version", lambda cmd: "stand-in")
    config = LIFConfig(neurons=16, lanes=4)
    a = fpga.build.build("lif", ["--neurons", "16", "--lanes", "4"], "ice40-up5k",
                         out=tmp_path / "a", log=lambda s: None)
    b = fpga.build.build_component(LIFArray(config), "lif", config, "ice40-up5k",
                                   out=tmp_path / "b", log=lambda s: None)
    assert (tmp_path / "a" / "design.v").read_text() == (tmp_path / "b" / "design.v").read_text()
    assert {k: v for k, v in a.items() if k != "times"} == \
        {k: v for k, v in b.items() if k != "times"}
    assert b["config"] == config.to_dict() and b["fmax"]["clk"]["achieved_mhz"] == 60.0


def test_configuration_objects_are_the_way_in():
    """The command line's flags become a configuration object (`config_from_argv`), and the
    hardware comes from the object (`component_for`, which `build_config` and `Flow.build`
    use): the same object from flags or from Python gives the same report configuration."""
    lif = config_from_argv("lif", ["--neurons", "64", "--lanes", "8"])
    assert lif == LIFConfig(neurons=64, lanes=8)
    a, config_a = component_for("lif", lif)
    b, config_b = component_for("lif", LIFConfig(neurons=64, lanes=8))
    assert config_a == config_b and to_verilog(a, "lif") == to_verilog(b, "lif")
    core = config_from_argv("core", ["--set", "lanes=16"])
    assert core == CoreConfig().replace(lanes=16)
    with pytest.raises(UsageError, match="--taps adds simulation ports"):
        config_from_argv("network", ["--bundle", "x", "--taps"])
