"""Synthesis checks of whole layers and a whole network: no multiplier cell (`$mul`, `$macc`)
in Yosys's word-level netlist (`proc; flatten; opt`, before technology mapping, so a DSP block
could only come from such a cell), while the adders of the datapath are there.

The layers are `gen.block`'s seeded ones (a Transformer-based block whose attention unit and
MLP run at other lane counts than the block, a Conv-based block, the first layer on multi-bit
pixels); the network is a small quantized digits model with every kind of layer. The checker
itself is shown to catch a multiplier in tests/test_synth_lif.py. Four Yosys runs, about 30 s.
"""

import sys
from pathlib import Path

import pytest

import fpga.build
from fpga.yosys import multiplier_cells, synth_cells

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAYERS = {
    "transformer": ["--kind", "transformer", "--channels", "8", "--heads", "2", "--height", "2",
                    "--width", "2"],
    "conv": ["--kind", "conv", "--channels", "4", "--height", "3", "--width", "3"],
    "downsample": ["--kind", "downsample", "--channels", "8", "--height", "4", "--width", "4"],
}


def assert_spike_driven(cells):
    assert multiplier_cells(cells) == {}
    assert not any(name in cells for name in ("$mul", "$macc", "$macc_v2", "$pow", "$div"))
    assert cells.get("$add", 0) + cells.get("$sub", 0) > 0   # the datapath is there
    assert any(name.startswith("$memwr") for name in cells)   # memories, not registers


@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_has_no_multiplier(kind):
    verilog, config = fpga.build.generate("block", LAYERS[kind], "block")
    cells = synth_cells(verilog, "block", "coarse")
    assert_spike_driven(cells)
    assert config["units"]      # the report lists the units


@pytest.mark.slow      # the blocks and first layer above are checked in the default run
def test_network_has_no_multiplier():
    from quant_helpers import digits, stats_model

    from gen.verilog import to_verilog
    from hw.network import Network
    from sw.quant import quantize

    net = quantize(stats_model(timesteps=1, dims=(4, 8), heads=2, seed=3), digits()[0][:32])
    cells = synth_cells(to_verilog(Network(net), "network"), "network", "coarse")
    assert_spike_driven(cells)
