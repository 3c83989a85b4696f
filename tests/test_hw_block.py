"""The unit lists of layers (`hw.block`): lanes per beat may change inside a block's branches,
and every link between units is checked (each check shown to fail on a broken unit list)."""

from dataclasses import replace

import pytest

from hw.block import _check_attention_lanes, _check_links, block_units
from sw.seeded import seeded_network


@pytest.fixture(scope="module")
def units():
    """A Transformer block of 8 channels with 2 heads: 8-lane layers, a 16-lane MLP hidden
    layer (32 channels), a 4-lane attention unit."""
    net = seeded_network("transformer", channels=8, heads=2, height=2, width=2)
    return block_units(net.layers[1], net.widths, net.timesteps)


def test_lanes_change_inside_the_branches(units):
    assert units["head_lif"].lanes == units["q_lif"].lanes == 8
    assert units["fc1_sae"][0].in_lanes == 8 and units["fc1_sae"][0].lanes == 16
    assert units["mlp_lif2"].lanes == 16
    assert units["fc2_sae"][0].in_lanes == 16 and units["fc2_sae"][0].lanes == 8
    assert units["sdsa"].lanes == 4


def test_a_broken_link_is_named(units):
    broken = dict(units, mlp_lif2=replace(units["mlp_lif2"], lanes=8))
    with pytest.raises(ValueError, match=r"^fc1_sae -> mlp_lif2: fc1_sae emits beats of 16 x "
                                         r"\d+ bits, mlp_lif2 takes 8 x \d+ bits$"):
        _check_links(broken, [("q_sae", "q_lif"), ("fc1_sae", "mlp_lif2")])
    _check_links(units, [("q_sae", "q_lif"), ("fc1_sae", "mlp_lif2")])   # intact: passes


def test_attention_lanes_must_agree(units):
    _check_attention_lanes(units)
    cfg, params = units["proj_sae"]
    broken = dict(units, proj_sae=(replace(cfg, in_lanes=4), params))
    with pytest.raises(ValueError, match="attention half's units disagree on lanes per beat: "
                                         "head_lif 8, proj_sae.in 4, q_lif 8"):
        _check_attention_lanes(broken)
