"""The overlay core's configuration: defaults, validation messages, YAML round trip, and the
block-RAM budget of the default core on an LFE5U-25F."""

import pytest

from fpga.estimate import CAPACITY, estimate_core
from spec.core import CoreConfig
from spec.errors import ConfigError


def test_defaults():
    cfg = CoreConfig()
    assert (cfg.lanes, cfg.in_lanes, cfg.w_bits, cfg.axi_data_bits) == (8, 8, 8, 64)
    assert cfg.axi_bytes == 8 and cfg.weight_word_bytes == 8 and cfg.count_bits == 11
    assert cfg.table_bits == 3 + 9 + 12            # taps, accumulator and weight offsets
    names = [m.name for m in cfg.memories()]
    assert sorted(names) == sorted(["weights", "accumulators", "membranes", "acc_bias",
                                    "shortcut", "lif", "row_table", "col_table", "attention",
                                    "layer_cycles"])


def test_no_membranes_at_one_timestep():
    assert "membranes" not in [m.name for m in CoreConfig(max_timesteps=1).memories()]


@pytest.mark.parametrize("changes, message", [
    ({"lanes": 12}, "lanes must be one of 1, 2, 4, 8, 16, 32, not 12"),
    ({"in_lanes": 0}, "in_lanes must be at least 1, not 0"),
    ({"lanes": True}, "lanes must be an integer, not True"),
    ({"w_bits": 1}, "w_bits must be at least 2, not 1"),
    ({"w_bits": 17}, "w_bits must be at most 16, not 17"),
    ({"acc_bits": 8}, "acc_bits must be at least 9, not 8"),
    ({"stream_bits": 33}, "stream_bits must be at most 32, not 33"),
    ({"max_channels": "64"}, "max_channels must be an integer, not '64'"),
    ({"max_map": 0}, "max_map must be at least 1, not 0"),
    ({"max_stride": 8}, "max_stride must be at most 7, not 8"),
    ({"max_head_dim": 4096}, "max_head_dim must be at most 2048, not 4096"),
    ({"max_tokens": 70000}, "max_tokens must be at most 65536, not 70000"),
    ({"max_timesteps": 17}, "max_timesteps must be at most 16, not 17"),
    ({"weight_words": 48}, "weight_words must be at least 49, not 48"),
    ({"acc_words": 0}, "acc_words must be at least 1, not 0"),
    ({"axi_data_bits": 48}, "axi_data_bits must be one of 32, 64, 128, 256, not 48"),
    ({"axi_data_bits": 16}, "axi_data_bits must be at least 32, not 16"),
    ({"axi_addr_bits": 8}, "axi_addr_bits must be at least 16, not 8"),
    ({"max_burst": 24}, "max_burst must be a power of two, not 24"),
    ({"max_tokens": 4096, "acc_bits": 12},
     "attention counts of max_tokens (4096) need 13 bits, more than acc_bits (12), where they "
     "are kept"),
    ({"max_burst": 256, "axi_data_bits": 256, "lanes": 32},
     "max_burst (256) beats of 32 bytes cross a 4 KiB boundary; at most 128 beats"),
    ({"axi_data_bits": 256},
     "lanes (8) must be at least the bytes of an AXI beat (32, axi_data_bits 256): a word "
     "of lanes values of 1 byte or more fills whole beats"),
])
def test_bad_values(changes, message):
    with pytest.raises(ConfigError) as info:
        CoreConfig(**changes)
    assert str(info.value) == message


def test_unknown_key():
    with pytest.raises(ConfigError, match=r"^unknown core configuration key 'lane' \(known: "):
        CoreConfig.from_dict({"lane": 16})


def test_yaml_round_trip(tmp_path):
    cfg = CoreConfig(lanes=16, max_timesteps=1, axi_data_bits=128)
    cfg.save(tmp_path / "core.yaml")
    assert CoreConfig.load(tmp_path / "core.yaml") == cfg
    assert (tmp_path / "core.yaml").read_text().startswith("unit: core\nconfig: {lanes: 16,")


def test_default_core_memories_fit_an_ecp5_25f():
    """The issue's budget: at most 80 % of the LFE5U-25F's 56 block RAMs for the core, the
    rest for a DRAM controller."""
    est = estimate_core(CoreConfig())
    assert est["lut4"] is None and est["ff"] is None          # not modelled: no guess
    assert est["bram"] <= 0.8 * CAPACITY["ecp5-25k"]["bram"]
    assert est["bram"] == sum(m["bram"] for m in est["memories"])
    by_name = {m["name"]: m for m in est["memories"]}
    assert by_name["weights"]["kind"] == "bram" and by_name["lif"]["kind"] == "lutram"


def test_the_budget_check_can_fail():
    """Can-fail check of the test above: a core holding a 3x3 layer's weights of C_in 1024
    whole does not fit the budget, nor does a 16-lane core."""
    assert estimate_core(CoreConfig(lanes=16, in_lanes=16))["bram"] > 0.8 * 56
    est = estimate_core(CoreConfig(weight_words=1024 * 9))
    assert est["bram"] > 0.8 * CAPACITY["ecp5-25k"]["bram"]


def test_estimate_core_bad_arguments():
    with pytest.raises(TypeError, match="the core estimate needs a CoreConfig"):
        estimate_core(3)
    with pytest.raises(ValueError, match="unknown family 'xilinx'"):
        estimate_core(CoreConfig(), "xilinx")
    assert estimate_core(CoreConfig().to_dict()) == estimate_core(CoreConfig())
