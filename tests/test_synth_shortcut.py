"""Synthesis checks of the membrane-shortcut datapath: no multiplier before technology mapping
(`$mul`, `$macc`) or after it (ECP5 DSP blocks), with and without a residual, with extreme and
mixed per-lane shifts; a residual buffer of 64 words x 256 bits lands in block RAM (DP16KD).
Five Yosys runs in all."""

import numpy as np
import pytest

from fpga.yosys import multiplier_cells, synth_cells
from gen.verilog import to_verilog
from hw.shortcut import Shortcut
from spec.shortcut import ShortcutConfig, ShortcutParams

REPORTED = ("LUT4", "CCU2C", "TRELLIS_FF", "TRELLIS_DPR16X4", "DP16KD")


def shifts(config):
    """Both extreme shifts and small ones, cycled over the channels (mixed within a lane)."""
    cycle = (15, -24, 0, -3, 2, -1, 7)
    return np.array([cycle[c % len(cycle)] for c in range(config.channels)])


CONFIGS = {
    # 6 channels over 4 lanes: 2 groups, padding lanes, per-lane shift multiplexers
    "residual": ShortcutConfig(channels=6, height=2, width=2, lanes=4, acc_bits=12, bits=8),
    "no-residual": ShortcutConfig(channels=6, height=3, width=3, lanes=4, acc_bits=16, bits=10,
                                  residual=False),
    # 64 words x (16 lanes x 16 bits): the buffer is 16384 bits
    "big-buffer": ShortcutConfig(channels=16, height=8, width=8, lanes=16, acc_bits=12, bits=16),
}


def verilog(name):
    config = CONFIGS[name]
    bias = np.random.default_rng(1).integers(-(1 << (config.bits - 1)), 1 << (config.bits - 1),
                                             size=config.channels)
    return to_verilog(Shortcut(config, ShortcutParams.checked(config, shifts(config), bias)),
                      "shortcut")


@pytest.fixture(scope="module")
def texts():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = verilog(name)
        return cache[name]

    return get


def report(name, cells):
    print(f"\nshortcut {name} {CONFIGS[name]}: ECP5 cells "
          + ", ".join(f"{cell} {cells.get(cell, 0)}" for cell in REPORTED))


@pytest.mark.parametrize("name", ["residual", "no-residual"])
def test_coarse_has_no_multiplier(texts, name):
    cells = synth_cells(texts(name), "shortcut", "coarse")
    assert multiplier_cells(cells) == {}
    assert "$mul" not in cells and "$macc" not in cells and "$macc_v2" not in cells
    assert cells.get("$add", 0) > 0  # the datapath is there


@pytest.mark.parametrize("name", ["residual", "no-residual"])
def test_ecp5_has_no_dsp(texts, name):
    cells = synth_cells(texts(name), "shortcut", "ecp5")
    report(name, cells)
    assert multiplier_cells(cells) == {}
    assert cells.get("MULT18X18D", 0) == 0 and cells.get("ALU54B", 0) == 0
    assert cells.get("LUT4", 0) > 0 and cells.get("TRELLIS_FF", 0) > 0  # the design is there


def test_residual_buffer_maps_to_block_ram(texts):
    config = CONFIGS["big-buffer"]
    assert (config.buffer_words, config.lanes * config.bits) == (64, 256)
    cells = synth_cells(texts("big-buffer"), "shortcut", "ecp5")
    report("big-buffer", cells)
    assert multiplier_cells(cells) == {}
    # 256 bits wide: at least ceil(256 / 36) DP16KD side by side, and not in flip-flops
    assert cells.get("DP16KD", 0) >= 8
    assert cells.get("TRELLIS_FF", 0) < config.buffer_bits // 4
