"""Tests of the analytic resource estimate (`fpga.estimate`): block RAM mapping on known
shapes, which memories go to LUT RAM or logic, growth with lanes and sizes, bad arguments, the
error check (a corrupted expectation must fail it), and one real Yosys synthesis per unit.

The synthesis checks use small configurations outside the calibration set
(`bench.estimate.CALIBRATION_SET`) and outside the sweep grid, Yosys only (no place-and-route).
"""

import json

import pytest

import fpga.build
import fpga.sweep
from fpga.estimate import (
    CALIBRATION,
    DESIGNS,
    FAMILIES,
    TOLERANCE,
    Memory,
    apply_calibration,
    bram_blocks,
    calibrate,
    estimate,
    map_memory,
    modelled,
    out_of_tolerance,
    relative_errors,
    synthesized,
    terms,
)
from fpga.yosys import synth_cells
from gen.verilog import to_verilog
from hw.lif import LIFArray
from hw.sae import SpikeAccumulator
from hw.sdsa import sdsa_unit
from spec.errors import ConfigError
from spec.lif import LIFConfig
from spec.sae import SAEConfig, SAEParams
from spec.sdsa import SDSAConfig

# -- block RAM mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize("width, depth, family, rom, blocks", [
    (256, 64, "ecp5", False, 8),      # PDPW16KD 512x36: 261 bits (bytes of 9) in 36-bit words
    (640, 64, "ecp5", False, 18),     # 648 / 36
    (96, 512, "ecp5", False, 3),      # 99 / 36
    (16, 3136, "ecp5", False, 4),     # 4096x4, one address range
    (128, 576, "ecp5", True, 8),      # a ROM has no bytes: 128 / 18 in 1024x18
    (128, 1152, "ecp5", True, 11),    # three 512-word ranges share blocks: 3 x 128 / 36
    (64, 64, "ice40", False, 4),      # 256x16
    (32, 288, "ice40", True, 4),      # 512x8
    (20, 8, "ice40", False, 2),       # 256x16, no padding (a mask per bit)
])
def test_bram_blocks_known_shapes(width, depth, family, rom, blocks):
    assert bram_blocks(width, depth, family, rom=rom) == blocks


def test_bram_blocks_unknown_family():
    with pytest.raises(ValueError, match=r"unknown family 'gowin' \(known: ecp5, ice40\)"):
        bram_blocks(8, 8, "gowin")


@pytest.mark.parametrize("memory, family, kind", [
    (Memory("fifo", 258, 7, rw_checked=True), "ecp5", "lutram"),   # 65 TRELLIS_DPR16X4
    (Memory("fifo", 6, 9, rw_checked=True), "ice40", "logic"),     # 54 bits: cheaper as FFs
    (Memory("fifo", 10, 9, rw_checked=True), "ice40", "bram"),
    (Memory("queue", 40, 4, comb_read=True), "ice40", "logic"),    # no combinational block read
    (Memory("bias", 256, 4, rom=True), "ecp5", "logic"),           # a small table
    (Memory("weights", 72, 16, rom=True, block=True), "ecp5", "bram"),   # ram_style "block"
    (Memory("touched", 16, 16, rw_checked=True, bit_enables=True), "ecp5", "lutram"),
    (Memory("touched", 32, 4, rw_checked=True, bit_enables=True), "ecp5", "logic"),
])
def test_map_memory_kind(memory, family, kind):
    assert map_memory(memory, family).kind == kind


def test_map_memory_counts():
    lutram = map_memory(Memory("fifo", 258, 7, rw_checked=True), "ecp5")
    assert (lutram.lutram, lutram.bram, lutram.ff) == (65, 0, 258)   # the registered read
    ram = map_memory(Memory("ram", 256, 64), "ecp5")
    assert (ram.kind, ram.bram, ram.lutram, ram.ff) == ("bram", 8, 0, 0)
    constant = map_memory(Memory("rom", 32, 1, rom=True), "ecp5")
    assert (constant.kind, constant.ff, constant.lut) == ("logic", 0, 0)


@pytest.mark.parametrize("design, config, family, io, blocks", [
    # the block RAMs Yosys 0.70 maps these to (the sweep grid's configurations)
    ("lif", LIFConfig(neurons=1024, lanes=16, timesteps=4), "ecp5", "ooc", 8),
    ("sae", SAEConfig(in_channels=16, out_channels=64, height=8, width=8), "ecp5", "ooc", 16),
    ("sdsa", SDSAConfig(), "ecp5", "ooc", 12),
    ("lif", LIFConfig(neurons=256, lanes=4, timesteps=4), "ice40", "harness", 4),
    ("sae", SAEConfig(in_channels=8, out_channels=16, height=8, width=8, lanes=4, in_lanes=4),
     "ice40", "harness", 13),
    ("sdsa", SDSAConfig(channels=32, tokens=16, heads=2, lanes=4), "ice40", "harness", 7),
])
def test_unit_block_rams(design, config, family, io, blocks):
    assert estimate(design, config, family, io=io)["bram"] == blocks


# -- shape of the estimate -----------------------------------------------------------------------


def _grows(values):
    return all(a < b for a, b in zip(values, values[1:], strict=False))


@pytest.mark.parametrize("family", FAMILIES)
def test_estimates_grow_with_lanes_and_sizes(family):
    lif = [estimate("lif", LIFConfig(neurons=1024, lanes=lanes, timesteps=4), family)
           for lanes in (4, 8, 16, 32)]
    assert _grows([e["lut4"] for e in lif]) and _grows([e["ff"] for e in lif])
    wide = [estimate("lif", LIFConfig(neurons=1024, lanes=16, timesteps=4, v_bits=v), family)
            for v in (12, 16, 24)]
    assert _grows([e["ff"] for e in wide]) and _grows([e["lut4"] for e in wide])
    deep = [estimate("lif", LIFConfig(neurons=n, lanes=16, timesteps=4), family)["bram"]
            for n in (4096, 16384, 65536)]
    assert _grows(deep)
    sae = [estimate("sae", SAEConfig(in_channels=16, out_channels=64, height=8, width=8,
                                     lanes=lanes, in_lanes=16), family) for lanes in (4, 8, 16)]
    assert _grows([e["lut4"] for e in sae]) and _grows([e["ff"] for e in sae])
    channels = [estimate("sae", SAEConfig(in_channels=c, out_channels=64, height=8, width=8),
                         family)["bram"] for c in (16, 64, 256)]
    assert _grows(channels)
    sdsa = [estimate("sdsa", SDSAConfig(channels=c, heads=c // 32), family)
            for c in (128, 256, 512)]
    assert _grows([e["lut4"] for e in sdsa]) and _grows([e["ff"] for e in sdsa])


def test_harness_adds_its_flip_flops_and_output_luts():
    config = LIFConfig(neurons=256, lanes=4, timesteps=4)
    ooc, harness = estimate("lif", config, "ice40"), estimate("lif", config, "ice40",
                                                              io="harness")
    # ports: 4 x 8-bit x, first, last, valid, o.ready in; 4 spikes, markers, valid, ready out
    assert harness["ff"] - ooc["ff"] == 36 + 8
    assert harness["lut4"] - ooc["lut4"] == 8
    assert harness["bram"] == ooc["bram"]


def test_config_dict_equals_config():
    config = SDSAConfig(channels=64, tokens=49, heads=4, lanes=8)
    assert estimate("sdsa", config.to_dict()) == estimate("sdsa", config)


def test_calibration_covers_every_design_and_family():
    assert set(CALIBRATION) == {(d, f) for d in DESIGNS for f in FAMILIES}
    for lut_scale, _, ff_scale, _ in CALIBRATION.values():
        assert 0.5 < lut_scale < 2 and 0.5 < ff_scale < 2


def test_calibrate_recovers_constants():
    samples = []
    for lanes in (4, 8, 16, 32):
        t = terms("lif", LIFConfig(neurons=1024, lanes=lanes, timesteps=4))
        samples.append((t, apply_calibration(t, (0.8, 30.0, 0.95, -10.0))))
    lut_scale, lut_offset, ff_scale, ff_offset = calibrate(samples)
    assert lut_scale == pytest.approx(0.8, abs=0.01) and lut_offset == pytest.approx(30, abs=2)
    assert ff_scale == pytest.approx(0.95, abs=0.01) and ff_offset == pytest.approx(-10, abs=2)
    with pytest.raises(ValueError, match="at least 3 samples"):
        calibrate(samples[:2])


# -- bad arguments -------------------------------------------------------------------------------


def test_unknown_design():
    with pytest.raises(ValueError, match=r"unknown design 'mlp' \(known: lif, sae, sdsa\)"):
        estimate("mlp", LIFConfig())


def test_unknown_family_and_io():
    with pytest.raises(ValueError, match=r"unknown family 'xc7' \(known: ecp5, ice40\)"):
        estimate("lif", LIFConfig(), "xc7")
    with pytest.raises(ValueError, match="io must be 'ooc' or 'harness', not 'pins'"):
        estimate("lif", LIFConfig(), io="pins")


def test_wrong_config_type():
    with pytest.raises(TypeError, match="the lif estimate needs a LIFConfig .or its dict., "
                                        "not SAEConfig"):
        estimate("lif", SAEConfig())
    with pytest.raises(TypeError, match="the sdsa estimate needs a SDSAConfig .or its dict., "
                                        "not list"):
        estimate("sdsa", [256, 196])


def test_multi_bit_engines_are_not_modelled():
    multi = SAEConfig(mode="linear", kernel=1, padding=0, in_channels=16, out_channels=8,
                      in_bits=4, acc_bits=20)
    assert not modelled("sae", multi) and not modelled("sae", multi.to_dict())
    assert modelled("sae", SAEConfig()) and modelled("sae", SAEConfig().to_dict())
    assert modelled("lif", LIFConfig()) and not modelled("block", {})
    with pytest.raises(ValueError, match=r"does not model multi-bit engine inputs \(in_bits > 1"):
        estimate("sae", multi)


def test_bad_config_dict():
    with pytest.raises(ConfigError, match="unknown SAE configuration key 'lane'"):
        estimate("sae", {"lane": 4})


# -- the error check -----------------------------------------------------------------------------


def test_relative_errors_and_tolerance():
    est = {"lut4": 110, "ff": 70, "bram": 0}
    assert relative_errors(est, {"lut4": 100, "ff": 100, "bram": 0}) == pytest.approx(
        {"lut4": 0.1, "ff": -0.3, "bram": 0.0})
    assert out_of_tolerance(est, {"lut4": 100, "ff": 100, "bram": 0}) == [
        ("ff", pytest.approx(-0.3))]
    assert out_of_tolerance(est, {"lut4": 100, "ff": 80, "bram": 0}) == []
    # an estimate of block RAM where synthesis has none has no relative error: flagged
    assert relative_errors({"bram": 2}, {"bram": 0}) == {"bram": None}
    assert out_of_tolerance({"bram": 2}, {"bram": 0}) == [("bram", None)]


# -- real synthesis (Yosys only), one small unit of each kind ------------------------------------

SMALL = {
    "lif": LIFConfig(neurons=64, lanes=4, timesteps=2),
    "sae": SAEConfig(in_channels=4, out_channels=8, height=4, width=4, lanes=4, in_lanes=4),
    "sdsa": SDSAConfig(channels=16, tokens=8, heads=2, lanes=4),
}


def _verilog(design, config):
    if design == "lif":
        return to_verilog(LIFArray(config), design)
    if design == "sae":
        return to_verilog(SpikeAccumulator(config, SAEParams.seeded(config)), design)
    return to_verilog(sdsa_unit(config), design)


@pytest.fixture(scope="module")
def synthesis():
    """{design: synthesized resources} of the `SMALL` units on ECP5, synthesized lazily."""
    done = {}

    def get(design):
        if design not in done:
            cells = synth_cells(_verilog(design, SMALL[design]), design, "ecp5")
            done[design] = synthesized(cells, "ecp5")
        return done[design]

    return get


@pytest.mark.parametrize("design", DESIGNS)
def test_estimate_matches_synthesis(design, synthesis):
    measured = synthesis(design)
    est = estimate(design, SMALL[design], "ecp5")
    assert out_of_tolerance(est, measured, resources=("lut4", "ff")) == [], (est, measured)
    assert abs(est["bram"] - measured["bram"]) <= 1, (est, measured)
    assert est["lutram"] == measured["lutram"]


@pytest.mark.parametrize("design", DESIGNS)
def test_corrupted_expectation_fails_the_check(design, synthesis):
    measured = synthesis(design)
    est = estimate(design, SMALL[design], "ecp5")
    for resource in ("lut4", "ff"):
        # the synthesized count moved away from the estimate by twice the tolerance
        factor = 1 + 2 * TOLERANCE
        factor = factor if est[resource] < measured[resource] else 1 / factor
        corrupted = {**measured, resource: round(measured[resource] * factor)}
        assert [r for r, _ in out_of_tolerance(est, corrupted)] == [resource]
    corrupted = {**measured, "bram": measured["bram"] + 2}
    assert [r for r, _ in out_of_tolerance(est, corrupted)] == ["bram"]


# -- the reports -----------------------------------------------------------------------------------


def test_build_report_has_the_estimate(tmp_path, monkeypatch):
    """`fpga.build.build` with Yosys and nextpnr replaced by canned results: the report carries
    the estimate and its error against the report's resources."""
    cells = {"LUT4": 130, "TRELLIS_FF": 550, "DP16KD": 0, "TRELLIS_DPR16X4": 18, "CCU2C": 100}
    util = {"TRELLIS_COMB": (300, 24288), "TRELLIS_FF": (600, 24288), "DP16KD": (0, 56)}
    monkeypatch.setattr(fpga.build, "synthesize", lambda *a, **k: dict(cells))
    monkeypatch.setattr(fpga.build, "run_nextpnr",
                        lambda *a, **k: ({"utilization": util, "fmax": {}}, ""))
    monkeypatch.setattr(fpga.build, "tool_version", lambda tool: "fake")
    report = fpga.build.build("lif", ["--neurons", "64", "--lanes", "4", "--timesteps", "2"],
                              "ecp5-25k", out=tmp_path, log=lambda s: None)
    est = estimate("lif", SMALL["lif"], "ecp5")
    assert {k: report["estimate"][k] for k in est} == est
    assert report["estimate"]["error"] == {
        "lut4": round((est["lut4"] - 130) / 130, 4), "ff": round((est["ff"] - 600) / 600, 4),
        "bram": 0.0}
    assert json.loads((tmp_path / "report.json").read_text())["estimate"] == report["estimate"]


def test_sweep_table_has_estimate_columns():
    row = {"label": "lif 64/4", "target": "ecp5-25k", "speed_grade": 6, "io": "ooc",
           "resources": {"lut4": 114, "logic_cells": 300, "ff": 623, "carry": 100, "bram": 0,
                         "dsp": 0},
           "fmax_mhz": 180.0, "seconds": 9.5,
           "estimate": {"lut4": 127, "ff": 601, "bram": 0, "lutram": 18,
                        "error": {"lut4": 0.114, "ff": -0.0353, "bram": 0.0}}}
    failed = {"label": "big", "target": "ice40-up5k", "speed_grade": None, "seconds": 3.0,
              "error": "the design does not fit ice40-up5k: SB_IO 46/39 (117 %)"}
    head, rule, line, failure = fpga.sweep.markdown([row, failed]).splitlines()
    assert head.endswith("| est. LUT4 | est. FF | est. BRAM |")
    assert rule.count("|") == head.count("|") == line.count("|") == failure.count("|")
    assert line.endswith("| 127 (+11.4 %) | 601 (-3.5 %) | 0 (+0.0 %) |")
