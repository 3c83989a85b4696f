"""Synthesis checks: the spike-driven self-attention units have no multiplier, before technology
mapping (`$mul`) or after it (ECP5 / iCE40 DSP blocks), and keep their buffers in RAM.

Seven Yosys runs in all: ECP5 for one small unit of each variant, the word-level (`coarse`) netlist
of both components (LinearSDSA for variants 3/4, ColumnSDSA for 1/2), and iCE40 for the smallest.
That the multiplier check catches a `*` is shown by tests/test_synth_lif.py
(`test_multiplier_check_catches_a_multiplier`); here we check that the check covers the DSP cells
of the targets used and that the cells we count are the ones Yosys reports.
"""

import functools

import pytest

from fpga.yosys import MULTIPLIER_CELLS, multiplier_cells, synth_cells
from gen.verilog import to_verilog
from hw.sdsa import sdsa_unit
from spec.sdsa import SDSAConfig

CONFIGS = {
    # Y = Q KV per head: 2 heads of d = 8, KV rows 4 lanes at a time
    "v3": SDSAConfig(variant=3, heads=2, channels=16, tokens=8, lanes=4),
    # a threshold per channel, over T = 2 timesteps
    "v4": SDSAConfig(variant=4, heads=2, channels=16, tokens=8, lanes=4, timesteps=2,
                     v_th=(0.25, 0.5, 0.75, 1.0) * 4),
    # column counts of K AND V, a mask neuron over T = 4 timesteps
    "v1": SDSAConfig(variant=1, heads=2, channels=16, tokens=8, lanes=4, timesteps=4),
    # column counts of V alone
    "v2": SDSAConfig(variant=2, heads=2, channels=16, tokens=8, lanes=4),
}
ECP5_RAM = ("DP16KD", "PDPW16KD", "TRELLIS_DPR16X4")
REPORTED = ("LUT4", "CCU2C", "TRELLIS_FF", *ECP5_RAM)


@functools.cache
def verilog(name):
    return to_verilog(sdsa_unit(CONFIGS[name]), "sdsa")


@functools.cache
def cells_of(name, target):
    return synth_cells(verilog(name), "sdsa", target)


def test_multiplier_cells_cover_the_targets():
    # Yosys's word-level multipliers and the DSP blocks of ECP5 and iCE40
    assert {"$mul", "$macc", "MULT18X18D", "ALU54B", "SB_MAC16"} <= set(MULTIPLIER_CELLS)
    assert multiplier_cells({"LUT4": 5, "MULT18X18D": 2, "SB_MAC16": 0}) == {"MULT18X18D": 2}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ecp5_has_no_multiplier(name):
    cells = cells_of(name, "ecp5")
    print(f"\nSDSA {name} {CONFIGS[name]}: ECP5 cells "
          + ", ".join(f"{cell} {cells.get(cell, 0)}" for cell in REPORTED))
    assert multiplier_cells(cells) == {}
    assert "MULT18X18D" not in cells and "ALU54B" not in cells
    # the design is there: logic, registers and its buffers in (block or distributed) RAM
    assert cells.get("LUT4", 0) > 100
    assert cells.get("TRELLIS_FF", 0) > 100
    assert sum(cells.get(cell, 0) for cell in ECP5_RAM) >= 1


@pytest.mark.parametrize("name", ["v3", "v1"])
def test_coarse_has_no_mul_cell(name):
    # before technology mapping a `*` would be a `$mul` cell, however small its operands
    cells = cells_of(name, "coarse")
    assert multiplier_cells(cells) == {}
    assert "$mul" not in cells
    assert cells.get("$add", 0) > 0  # the counters and accumulators are there
    assert cells.get("$memrd", 0) + cells.get("$memrd_v2", 0) > 0  # and the buffers


def test_ice40_has_no_multiplier():
    cells = cells_of("v2", "ice40")
    assert multiplier_cells(cells) == {}
    assert "SB_MAC16" not in cells
    assert cells.get("SB_LUT4", 0) > 100
    assert cells.get("SB_RAM40_4K", 0) >= 1
