"""Synthesis checks: the spike-sparse accumulate engine has no multiplier, before technology
mapping (`$mul`) or after it (ECP5 DSP blocks), with spikes and with multi-bit inputs (whose
`w << plane` is multiplexers and whose sign inverts the term and sets the carry-in). Six Yosys
runs in all."""

import pytest

from fpga.yosys import multiplier_cells, synth_cells
from gen.verilog import to_verilog
from hw.sae import SpikeAccumulator
from spec.sae import SAEConfig, SAEParams

CONFIGS = {
    # kernel x kernel x out_groups weight addresses per input channel: the channel's weight
    # base is a product with a constant, built by `mul_const`
    "conv": SAEConfig(mode="conv", in_channels=6, out_channels=12, kernel=3, stride=2,
                      padding=1, height=8, width=6, lanes=4, in_lanes=4, w_bits=6,
                      acc_bits=12),
    "depthwise": SAEConfig(mode="depthwise", in_channels=6, out_channels=6, kernel=5, stride=1,
                           padding=2, height=6, width=5, lanes=4, in_lanes=4, w_bits=6,
                           acc_bits=12),
    # the conv engine fed 12-bit signed values (acc_bits = its lossless_acc_bits)
    "conv-in12-signed": SAEConfig(mode="conv", in_channels=6, out_channels=12, kernel=3,
                                  stride=2, padding=1, height=8, width=6, lanes=4, in_lanes=4,
                                  w_bits=6, acc_bits=23, in_bits=12, in_signed=True),
}
REPORTED = ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD")


def verilog(name):
    config = CONFIGS[name]
    return to_verilog(SpikeAccumulator(config, SAEParams.seeded(config, 0)), "sae")


@pytest.fixture(scope="module", params=list(CONFIGS))
def design(request):
    return request.param, verilog(request.param)


def test_ecp5_has_no_multiplier(design):
    name, text = design
    cells = synth_cells(text, "sae", "ecp5")
    print(f"\nSAE {name} {CONFIGS[name]}: ECP5 cells "
          + ", ".join(f"{cell} {cells.get(cell, 0)}" for cell in REPORTED))
    assert multiplier_cells(cells) == {}
    assert cells.get("LUT4", 0) > 0 and cells.get("TRELLIS_FF", 0) > 0  # the design is there


def test_coarse_has_no_mul_cell(design):
    _, text = design
    cells = synth_cells(text, "sae", "coarse")
    assert multiplier_cells(cells) == {}
    assert "$mul" not in cells
    assert cells.get("$add", 0) + cells.get("$sub", 0) > 0  # the datapath is there


def test_multi_bit_config_is_lossless():
    config = CONFIGS["conv-in12-signed"]
    assert config.acc_bits == config.lossless_acc_bits
