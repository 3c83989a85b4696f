"""Synthesis checks: the LIF array has no multiplier and keeps its membranes in block RAM."""

import pytest

from fpga.yosys import SynthError, multiplier_cells, synth_cells
from gen.verilog import to_verilog
from hw.lif import LIFArray
from spec.lif import LIFConfig

MULTIPLY = """
module mulby(input clk, input [15:0] a, input [15:0] b, output reg [31:0] y);
  always @(posedge clk) y <= a * b;
endmodule
"""


@pytest.fixture(scope="module")
def ecp5_cells():
    config = LIFConfig(neurons=1024, lanes=16, channels=8, timesteps=4,
                       v_th=[1.0, 0.5, 2.0, 1.5, 1.0, 3.0, 0.5, 1.0], expose_membrane=True)
    return synth_cells(to_verilog(LIFArray(config), "lif"), "lif", "ecp5")


def test_lif_ecp5_has_no_multiplier(ecp5_cells):
    assert multiplier_cells(ecp5_cells) == {}


def test_lif_ecp5_membranes_in_block_ram(ecp5_cells):
    # 64 words x 256 bits: block RAM, not thousands of flip-flops
    assert ecp5_cells.get("DP16KD", 0) + ecp5_cells.get("PDPW16KD", 0) >= 1
    assert ecp5_cells.get("TRELLIS_FF", 0) < 4000


def test_lif_ice40_has_no_multiplier():
    config = LIFConfig(neurons=64, lanes=4, timesteps=2)
    cells = synth_cells(to_verilog(LIFArray(config), "lif"), "lif", "ice40")
    assert multiplier_cells(cells) == {}
    assert cells.get("SB_RAM40_4K", 0) >= 1


def test_multiplier_check_catches_a_multiplier():
    cells = synth_cells(MULTIPLY, "mulby", "ecp5")
    assert multiplier_cells(cells) == {"MULT18X18D": cells["MULT18X18D"]}
    coarse = synth_cells(MULTIPLY, "mulby", "coarse")
    assert multiplier_cells(coarse) == {"$mul": 1}


def test_lif_coarse_has_no_mul_cell():
    config = LIFConfig(neurons=64, lanes=4, channels=2, v_th=[1.0, 2.0], timesteps=2)
    cells = synth_cells(to_verilog(LIFArray(config), "lif"), "lif", "coarse")
    assert multiplier_cells(cells) == {}
    assert cells.get("$add", 0) + cells.get("$sub", 0) > 0  # the datapath is there


def test_unknown_target_rejected():
    with pytest.raises(SynthError, match="unknown synthesis target 'xc7'"):
        synth_cells(MULTIPLY, "mulby", "xc7")
