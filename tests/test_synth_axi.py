"""Synthesis checks of the AXI4 master: no multiplier in the reader or the writer, before
technology mapping (`$mul`, `$macc`) or after it (ECP5 DSP blocks), at 64 and 256 bits; the
reader's data buffer lands in block RAM. Six Yosys runs in all (about 5 s)."""

import pytest

from fpga.yosys import multiplier_cells, synth_cells
from gen.verilog import to_verilog
from hw.axi import AxiReader, AxiWriter
from spec.axi import AxiConfig

CONFIGS = {
    "d64-b16": AxiConfig(),
    "d256-b256": AxiConfig(data_bits=256, max_burst=256, outstanding=2),
}
UNITS = {"axi_reader": AxiReader, "axi_writer": AxiWriter}


@pytest.mark.parametrize("top", UNITS)
@pytest.mark.parametrize("name", CONFIGS)
def test_coarse_has_no_multiplier(name, top):
    cells = synth_cells(to_verilog(UNITS[top](CONFIGS[name]), top), top, "coarse")
    assert multiplier_cells(cells) == {}
    assert cells.get("$add", 0) > 0 and cells.get("$sub", 0) > 0


@pytest.mark.parametrize("top", UNITS)
def test_ecp5_has_no_multiplier(top):
    cells = synth_cells(to_verilog(UNITS[top](AxiConfig()), top), top, "ecp5")
    print(f"\n{top} (default AxiConfig): ECP5 cells "
          + ", ".join(f"{c} {cells.get(c, 0)}" for c in ("LUT4", "CCU2C", "TRELLIS_FF",
                                                         "TRELLIS_DPR16X4", "DP16KD")))
    assert multiplier_cells(cells) == {}
    if top == "axi_reader":      # 64 beats x 65 bits of buffer
        assert cells.get("DP16KD", 0) >= 1
