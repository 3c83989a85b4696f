"""The AXI4 burst plan (`spec.axi.bursts`) by hand-worked cases, its properties on random
transfers, its error messages; the AXI master's configuration (`AxiConfig`)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spec.axi import AxiConfig, bursts
from spec.core import CoreConfig
from spec.errors import ConfigError


@pytest.mark.parametrize("args, want", [
    # 64-bit beats, 16 per burst: an exact burst, an exact pair
    ((0x0000, 128, 8, 16), [(0x0000, 16)]),
    ((0x0000, 256, 8, 16), [(0x0000, 16), (0x0080, 16)]),
    # not aligned to a burst: bursts stay greedy (not re-aligned to 128 bytes)
    ((0x0008, 256, 8, 16), [(0x0008, 16), (0x0088, 16)]),
    # a 4 KiB crossing: 2 beats before 0x1000, 2 after
    ((0x0FF0, 32, 8, 16), [(0x0FF0, 2), (0x1000, 2)]),
    # ending exactly on the boundary, starting exactly on it
    ((0x0F80, 0x100, 8, 16), [(0x0F80, 16), (0x1000, 16)]),
    # 7 beats to the boundary (0x38 bytes), then 25 beats: 16 + 9
    ((0x0FC8, 0x100, 8, 16), [(0x0FC8, 7), (0x1000, 16), (0x1080, 9)]),
    # fewer bytes than a burst; nothing at all
    ((0x2000, 24, 8, 16), [(0x2000, 3)]),
    ((0x2000, 0, 8, 16), []),
    # max_burst 1: one beat per burst, across a boundary too
    ((0x0FF8, 24, 8, 1), [(0x0FF8, 1), (0x1000, 1), (0x1008, 1)]),
    # 32-bit beats, 256 per burst: a page is 1,024 beats, four full bursts
    ((0x0000, 4096, 4, 256), [(0x0000, 256), (0x0400, 256), (0x0800, 256), (0x0C00, 256)]),
    ((0x0FFC, 8, 4, 256), [(0x0FFC, 1), (0x1000, 1)]),
    ((0x0F00, 0x500, 4, 256), [(0x0F00, 64), (0x1000, 256)]),
    # 256-bit beats, 256 per burst: a page is only 128 beats, the boundary limits every burst
    ((0x0000, 8192, 32, 256), [(0x0000, 128), (0x1000, 128)]),
    ((0x0020, 8192, 32, 256), [(0x0020, 127), (0x1000, 128), (0x2000, 1)]),
    # 256-bit beats, 8 per burst, across a boundary
    ((0x1FA0, 0x100, 32, 8), [(0x1FA0, 3), (0x2000, 5)]),
    # the top of the 32-bit space
    ((0xFFFFFFF0, 16, 8, 16), [(0xFFFFFFF0, 2)]),
])
def test_hand_worked(args, want):
    assert bursts(*args) == want


@given(st.sampled_from([1, 4, 8, 16, 32, 128]), st.sampled_from([1, 2, 16, 64, 256]),
       st.integers(0, 1 << 20), st.integers(0, 3000))
def test_properties(beat_bytes, max_burst, addr_beats, length_beats):
    """Contiguous, in order, every burst within one 4 KiB page and `max_burst`, and greedy:
    a burst shorter than both limits is the transfer's last."""
    addr, length = addr_beats * beat_bytes, length_beats * beat_bytes
    plan = bursts(addr, length, beat_bytes, max_burst)
    at = addr
    for n, (start, beats) in enumerate(plan):
        assert start == at and 1 <= beats <= max_burst
        end = start + beats * beat_bytes
        assert start >> 12 == (end - 1) >> 12
        if beats < max_burst and end % 4096:
            assert n == len(plan) - 1
        at = end
    assert at == addr + length


@pytest.mark.parametrize("args, kwargs, message", [
    ((0, 8, 3, 16), {}, "beat_bytes must be a power of two from 1 to 128, not 3"),
    ((0, 8, 0, 16), {}, "beat_bytes must be a power of two from 1 to 128, not 0"),
    ((0, 8, 256, 16), {}, "beat_bytes must be a power of two from 1 to 128, not 256"),
    ((0, 8, True, 16), {}, "beat_bytes must be a power of two from 1 to 128, not True"),
    ((0, 8, 8.0, 16), {}, "beat_bytes must be a power of two from 1 to 128, not 8.0"),
    ((0, 8, 8, 0), {}, "max_burst must be a power of two from 1 to 256, not 0"),
    ((0, 8, 8, 24), {}, "max_burst must be a power of two from 1 to 256, not 24"),
    ((0, 8, 8, 512), {}, "max_burst must be a power of two from 1 to 256, not 512"),
    ((0, 8, 8, 16), {"addr_bits": 8}, "addr_bits must be an integer of at least 12, not 8"),
    ((-8, 8, 8, 16), {}, "addr must be a non-negative integer, not -8"),
    ((1.5, 8, 8, 16), {}, "addr must be a non-negative integer, not 1.5"),
    ((0, -8, 8, 16), {}, "length must be a non-negative integer, not -8"),
    ((0, "8", 8, 16), {}, "length must be a non-negative integer, not '8'"),
    ((0x1004, 8, 8, 16), {}, "addr 0x1004 is not a multiple of the beat (8 bytes)"),
    ((0x1000, 12, 8, 16), {}, "length 12 is not a multiple of the beat (8 bytes)"),
    ((0xFFFFFFF8, 16, 8, 16), {}, "16 bytes at 0xfffffff8 run past the 32-bit address space"),
    ((0xFFF8, 16, 8, 16), {"addr_bits": 16},
     "16 bytes at 0xfff8 run past the 16-bit address space"),
])
def test_errors(args, kwargs, message):
    with pytest.raises(ValueError) as info:
        bursts(*args, **kwargs)
    assert str(info.value) == message


def test_config_defaults_and_derived():
    cfg = AxiConfig()
    assert (cfg.data_bits, cfg.addr_bits, cfg.id_bits, cfg.max_burst, cfg.outstanding) == \
        (64, 32, 4, 16, 4)
    assert (cfg.beat_bytes, cfg.size, cfg.read_buffer_beats) == (8, 3, 64)
    assert cfg.bursts(0x0FC8, 0x100) == [(0x0FC8, 7), (0x1000, 16), (0x1080, 9)]
    assert [f.name for f in cfg.command_fields()] == ["addr", "length"]
    assert [(f.name, f.bits) for f in cfg.write_fields()] == [("data", 64), ("strb", 8)]
    assert [(f.name, f.bits) for f in cfg.burst_fields()] == [("addr", 32), ("beats", 5),
                                                              ("final", 1)]


def test_config_from_core():
    core = CoreConfig(axi_data_bits=256, lanes=32, max_burst=8, axi_id_bits=2)
    cfg = AxiConfig.from_core(core, outstanding=2)
    assert (cfg.data_bits, cfg.addr_bits, cfg.id_bits, cfg.max_burst, cfg.outstanding) == \
        (256, 32, 2, 8, 2)


@pytest.mark.parametrize("changes, message", [
    ({"data_bits": 48}, "data_bits must be a power of two, not 48"),
    ({"data_bits": 4}, "data_bits must be at least 8, not 4"),
    ({"data_bits": 2048}, "data_bits must be at most 1024, not 2048"),
    ({"addr_bits": 12}, "addr_bits must be at least 16, not 12"),
    ({"id_bits": 0}, "id_bits must be at least 1, not 0"),
    ({"max_burst": 12}, "max_burst must be a power of two, not 12"),
    ({"max_burst": 512}, "max_burst must be at most 256, not 512"),
    ({"outstanding": 0}, "outstanding must be at least 1, not 0"),
    ({"length_bits": 3}, "length_bits must be at least 4, not 3"),
    ({"length_bits": 33}, "length_bits must be at most 32, not 33"),
    ({"counter_bits": "32"}, "counter_bits must be an integer, not '32'"),
])
def test_config_bad_values(changes, message):
    with pytest.raises(ConfigError) as info:
        AxiConfig(**changes)
    assert str(info.value) == message


def test_config_yaml_round_trip(tmp_path):
    cfg = AxiConfig(data_bits=128, outstanding=8)
    cfg.save(tmp_path / "axi.yaml")
    assert AxiConfig.load(tmp_path / "axi.yaml") == cfg
