"""Tests of `spec.sdsa.SDSAConfig` (validation, YAML, derived values, neuron, memory, ideal cost,
cycle model bounds) and of `spec.sdsa.load_sdsa_bundle` / `SDSATraces` (round trip, corrupt
bundles). Expected numbers are worked out by hand in the comments."""

import re
from fractions import Fraction

import numpy as np
import pytest
import yaml

from spec.bundle import read_bundle, write_bundle
from spec.errors import BundleError, ConfigError
from spec.lif import LIFConfig
from spec.sdsa import SDSA_VARIANTS, SDSAConfig, SDSATraces, load_sdsa_bundle
from sw.export import export_lif_bundle, export_sdsa_bundle, random_spikes

KNOWN_KEYS = "acc_bits, channels, count_bits, heads, lanes, timesteps, tokens, v_th, variant"


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


def tiny(**changes):
    """channels 4, heads 2 (d = 2), tokens 3, lanes 1: W = 4 beats per token, 12 per step."""
    kw = dict(channels=4, heads=2, tokens=3, lanes=1)
    kw.update(changes)
    return SDSAConfig(**kw)


# -- construction and validation ---------------------------------------------------------------


def test_defaults():
    c = SDSAConfig()
    assert (c.variant, c.heads, c.channels, c.tokens, c.lanes, c.timesteps) == (
        3, 8, 256, 196, 16, 1)
    assert c.v_th == 0.5
    assert c.count_bits is None and c.acc_bits is None
    assert SDSA_VARIANTS == (1, 2, 3, 4)
    hash(c)


INVALID = [
    ({"heads": 3}, "heads (3) must divide channels (256)"),
    ({"heads": 512}, "heads (512) must divide channels (256)"),
    ({"variant": 0}, "variant must be at least 1, not 0"),
    ({"variant": -1}, "variant must be at least 1, not -1"),
    ({"variant": 5}, "variant must be 1, 2, 3 or 4, not 5"),
    ({"variant": "3"}, "variant must be an integer, not '3'"),
    ({"variant": True}, "variant must be an integer, not True"),
    ({"variant": 3.0}, "variant must be an integer, not 3.0"),
    ({"heads": 0}, "heads must be at least 1, not 0"),
    ({"channels": 0}, "channels must be at least 1, not 0"),
    ({"channels": -8}, "channels must be at least 1, not -8"),
    ({"channels": 4097}, "channels must be at most 4096, not 4097"),
    ({"tokens": 0}, "tokens must be at least 1, not 0"),
    ({"tokens": -196}, "tokens must be at least 1, not -196"),
    ({"tokens": 16385}, "tokens must be at most 16384, not 16385"),
    ({"lanes": 0}, "lanes must be at least 1, not 0"),
    ({"lanes": 257}, "lanes must be at most 256, not 257"),
    ({"timesteps": 0}, "timesteps must be at least 1, not 0"),
    ({"timesteps": 17}, "timesteps must be at most 16, not 17"),
    ({"heads": True}, "heads must be an integer, not True"),
    ({"tokens": 196.0}, "tokens must be an integer, not 196.0"),
    ({"lanes": 3}, "lanes (3) must divide channels (256)"),
    ({"variant": 1, "lanes": 3}, "lanes (3) must divide channels (256)"),
    ({"lanes": 512, "channels": 512}, "lanes must be at most 256, not 512"),
    # d = 45: lanes 10 divides channels 90 but not the head dimension
    ({"heads": 2, "channels": 90, "lanes": 10},
     "lanes (10) must divide the head dimension channels/heads = 45 (variants 3/4 process KV "
     "rows lanes at a time); lanes that fit: 1, 3, 5, 9, 15, 45"),
    ({"variant": 4, "heads": 2, "channels": 90, "lanes": 6},
     "lanes (6) must divide the head dimension channels/heads = 45 (variants 3/4 process KV "
     "rows lanes at a time); lanes that fit: 1, 3, 5, 9, 15, 45"),
    # d = 32 by default: lanes 64 divides 256 but not 32
    ({"lanes": 64},
     "lanes (64) must divide the head dimension channels/heads = 32 (variants 3/4 process KV "
     "rows lanes at a time); lanes that fit: 1, 2, 4, 8, 16, 32"),
    # thresholds of variants 1-3 are the paper's
    ({"v_th": 1.0}, "variant 3 has the paper's fixed threshold 0.5, not 1.0; variant 4 takes a "
                    "threshold parameter"),
    ({"variant": 1, "v_th": 0.25}, "variant 1 has the paper's fixed threshold 0.5, not 0.25; "
                                   "variant 4 takes a threshold parameter"),
    ({"variant": 2, "channels": 4, "heads": 2, "lanes": 1, "v_th": [0.5] * 4},
     "variant 2 has the paper's fixed threshold 0.5, not (0.5, 0.5, 0.5, 0.5); variant 4 takes "
     "a threshold parameter"),
    # variant 4: positive, a multiple of 0.125 / 2**timesteps, one or `channels` values
    ({"variant": 4, "v_th": 0}, "v_th must be positive, not 0"),
    ({"variant": 4, "v_th": -0.5}, "v_th must be positive, not -0.5"),
    ({"variant": 4, "channels": 4, "heads": 2, "lanes": 1, "v_th": (0.5, -1.0, 0.5, 0.5)},
     "v_th[1] must be positive, not -1.0"),
    ({"variant": 4, "channels": 4, "heads": 2, "lanes": 1, "v_th": (0.5, 0.5, 0.5, 0.0)},
     "v_th[3] must be positive, not 0.0"),
    ({"variant": 4, "v_th": 0.03},
     "v_th 0.03 is not a multiple of 0.0625: with scale 0.125 and 1 fractional membrane bits "
     "(timesteps=1) the integer threshold must be exact"),
    ({"variant": 4, "timesteps": 2, "v_th": 0.515625},
     "v_th 0.515625 is not a multiple of 0.03125: with scale 0.125 and 2 fractional membrane bits "
     "(timesteps=2) the integer threshold must be exact"),
    ({"variant": 4, "channels": 4, "heads": 2, "lanes": 1, "v_th": (0.5, 0.25, 0.1, 0.5)},
     "v_th[2] 0.1 is not a multiple of 0.0625: with scale 0.125 and 1 fractional membrane bits "
     "(timesteps=1) the integer threshold must be exact"),
    ({"variant": 4, "v_th": [0.5] * 3}, "v_th has 3 values, but channels is 256"),
    ({"variant": 4, "channels": 4, "heads": 2, "lanes": 1, "v_th": (0.5,) * 5},
     "v_th has 5 values, but channels is 4"),
    ({"variant": 4, "v_th": float("nan")}, "v_th must be a finite number, not nan"),
    ({"variant": 4, "v_th": float("inf")}, "v_th must be a finite number, not inf"),
    ({"variant": 4, "v_th": True}, "v_th must be a finite number, not True"),
    ({"variant": 4, "v_th": "0.5"}, "v_th must be a finite number, not '0.5'"),
    # widths: tokens 196 needs 8 bits, d * tokens = 32 * 196 = 6272 needs 13
    ({"count_bits": 7},
     "count_bits=7 cannot hold the largest possible value 196 (needs at least 8 bits)"),
    ({"acc_bits": 12},
     "acc_bits=12 cannot hold the largest possible value 6272 (needs at least 13 bits)"),
    ({"tokens": 256, "count_bits": 8},
     "count_bits=8 cannot hold the largest possible value 256 (needs at least 9 bits)"),
    # d * tokens = 32 * 128 = 4096 = 2**12 needs 13 bits
    ({"tokens": 128, "acc_bits": 12},
     "acc_bits=12 cannot hold the largest possible value 4096 (needs at least 13 bits)"),
    ({"count_bits": 0}, "count_bits must be at least 1, not 0"),
    # variants 1/2 have no Q KV
    ({"variant": 1, "acc_bits": 13},
     "acc_bits (the width of Q KV) applies to variants 3/4 only; variant 1 has no Q KV"),
    ({"variant": 2, "acc_bits": 32},
     "acc_bits (the width of Q KV) applies to variants 3/4 only; variant 2 has no Q KV"),
    ({"acc_bits": 33}, "acc_bits must be at most 32, not 33"),
    ({"count_bits": 8.0}, "count_bits must be an integer, not 8.0"),
]


@pytest.mark.parametrize(("changes", "message"), INVALID, ids=[m[:60] for _, m in INVALID])
def test_invalid_configuration(changes, message):
    with pytest.raises(ConfigError, match=exact(message)):
        SDSAConfig(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"count_bits": 8, "acc_bits": 13},             # exactly enough (196, 6272)
        {"count_bits": 32, "acc_bits": 32},
        {"tokens": 255, "count_bits": 8},               # 255 fits 8 bits
        {"tokens": 256, "count_bits": 9},
        {"heads": 2, "channels": 90, "tokens": 91, "lanes": 15, "acc_bits": 12},  # 45*91 = 4095
        {"tokens": 128, "acc_bits": 13},
        {"variant": 1, "heads": 2, "channels": 90, "lanes": 10},   # no head-dimension rule
        {"variant": 2, "lanes": 64},
        {"heads": 2, "channels": 90, "lanes": 45},
        {"variant": 4, "v_th": 0.0625},                 # the step at T = 1
        {"variant": 4, "timesteps": 2, "v_th": 0.53125},   # 17 steps of 1/32
        {"variant": 4, "v_th": 2},
        {"variant": 1, "count_bits": 8},
        {"variant": 4, "count_bits": 8, "acc_bits": 13},
        {"heads": 256, "lanes": 1},                     # d = 1
        {"heads": 1, "lanes": 256},
    ],
)
def test_valid_edge_configurations(changes):
    SDSAConfig(**changes)


def test_per_channel_list_becomes_tuple_of_floats_and_is_hashable():
    c = tiny(variant=4, v_th=[1, 0.25, 0.5, 0.0625], acc_bits=6)
    assert c.v_th == (1.0, 0.25, 0.5, 0.0625)
    assert all(type(v) is float for v in c.v_th)
    hash(c)


def test_from_dict_unknown_key():
    with pytest.raises(ConfigError, match=exact(
        f"unknown SDSA configuration key 'head' (known: {KNOWN_KEYS})"
    )):
        SDSAConfig.from_dict({"variant": 3, "head": 8})


def test_from_dict_not_a_mapping():
    with pytest.raises(ConfigError, match=exact("an SDSA configuration must be a mapping, "
                                                "not list")):
        SDSAConfig.from_dict([("variant", 3)])


def test_from_dict_validates_and_replace():
    with pytest.raises(ConfigError, match=exact("heads (3) must divide channels (4)")):
        SDSAConfig.from_dict({"channels": 4, "heads": 3, "lanes": 1})
    c = tiny()
    d = c.replace(variant=1)
    assert (d.variant, d.channels, d.heads, d.tokens, d.lanes) == (1, 4, 2, 3, 1)
    with pytest.raises(ConfigError, match=exact("lanes (3) must divide channels (4)")):
        c.replace(lanes=3)


# -- YAML and dict round trips -----------------------------------------------------------------


ROUND_TRIP = {
    "defaults": SDSAConfig(),
    "variant1-widths": SDSAConfig(variant=1, heads=4, channels=64, tokens=49, lanes=8,
                                  timesteps=4, count_bits=12),
    "variant4-scalar": SDSAConfig(variant=4, v_th=0.75, timesteps=2),
    "variant4-per-channel": SDSAConfig(variant=4, heads=2, channels=8, tokens=5, lanes=2,
                                       timesteps=3,
                                       v_th=(0.5, 0.25, 1.0, 0.015625, 0.75, 0.5, 2.0, 0.125)),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_yaml_round_trip(tmp_path, name):
    config = ROUND_TRIP[name]
    path = tmp_path / "sdsa.yaml"
    config.save(path)
    loaded = SDSAConfig.load(path)
    assert loaded == config
    assert loaded.to_dict() == config.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sdsa.yaml"]
    doc = yaml.safe_load(path.read_text())
    assert doc == {"unit": "sdsa", "config": config.to_dict()}
    assert SDSAConfig.from_dict(config.to_dict()) == config


def test_to_dict_lists_per_channel_thresholds_and_none_widths():
    c = ROUND_TRIP["variant4-per-channel"]
    d = c.to_dict()
    assert d["v_th"] == [0.5, 0.25, 1.0, 0.015625, 0.75, 0.5, 2.0, 0.125]
    assert isinstance(d["v_th"], list)
    assert d["count_bits"] is None and d["acc_bits"] is None
    assert set(d) == set(KNOWN_KEYS.split(", "))


def test_none_widths_written_as_null(tmp_path):
    path = tmp_path / "sdsa.yaml"
    SDSAConfig().save(path)
    text = path.read_text()
    assert "count_bits: null" in text and "acc_bits: null" in text
    loaded = SDSAConfig.load(path)
    assert loaded.count_bits is None and loaded.acc_bits is None
    assert (loaded.kv_bits, loaded.a_bits) == (8, 13)


def test_load_of_a_lif_file(tmp_path):
    path = tmp_path / "lif.yaml"
    LIFConfig().save(path)
    with pytest.raises(ConfigError, match=exact(
        f"configuration file {str(path)!r} is not an SDSA configuration "
        f"(expected 'unit: sdsa' and a 'config' mapping)"
    )):
        SDSAConfig.load(path)


def test_load_of_a_file_with_an_invalid_value(tmp_path):
    path = tmp_path / "sdsa.yaml"
    path.write_text("unit: sdsa\nconfig: {variant: 2, v_th: 1.0}\n")
    with pytest.raises(ConfigError, match=exact(
        "variant 2 has the paper's fixed threshold 0.5, not 1.0; variant 4 takes a threshold "
        "parameter"
    )):
        SDSAConfig.load(path)


# -- derived values ----------------------------------------------------------------------------


def test_derived_values_of_the_defaults():
    c = SDSAConfig()
    assert c.head_dim == 32                     # 256 / 8
    assert c.words_per_token == 16              # 256 / 16
    assert c.words_per_head == 2                # 32 / 16
    assert c.kv_bits == 8                       # 196 < 256
    assert c.a_bits == 13                       # 32 * 196 = 6272 < 8192
    assert c.max_attention == 6272
    assert c.neuron_input_bits == 14            # signed: a_bits + 1
    assert c.frac_bits == 1
    assert c.scale == Fraction(1, 8)
    assert c.beats_per_step == 196 * 16


def test_explicit_widths_override_the_defaults():
    c = SDSAConfig(count_bits=10, acc_bits=20)
    assert (c.kv_bits, c.a_bits, c.neuron_input_bits) == (10, 20, 21)
    c1 = SDSAConfig(variant=1, count_bits=10)
    assert c1.neuron_input_bits == 11            # the counts feed the neuron
    assert c1.scale == 1


@pytest.mark.parametrize("timesteps", [1, 2, 4, 16])
def test_frac_bits_is_timesteps(timesteps):
    assert SDSAConfig(timesteps=timesteps).frac_bits == timesteps
    assert SDSAConfig(variant=1, timesteps=timesteps).neuron_config().frac_bits == timesteps


def test_small_width_defaults():
    # tokens 3 -> 2 bits; d * tokens = 2 * 3 = 6 -> 3 bits
    c = tiny()
    assert (c.head_dim, c.words_per_token, c.words_per_head) == (2, 4, 2)
    assert (c.kv_bits, c.a_bits, c.max_attention) == (2, 3, 6)
    # tokens 1 -> 1 bit
    assert tiny(variant=1, tokens=1).kv_bits == 1


def test_neuron_config_variant3_defaults():
    n = SDSAConfig().neuron_config()
    assert isinstance(n, LIFConfig)
    assert n.neurons == 196 * 256 == 50176
    assert (n.lanes, n.channels) == (16, 1)
    assert (n.in_bits, n.frac_bits, n.v_bits) == (14, 1, 15)
    assert (n.tau, n.decay_input, n.reset, n.v_reset, n.bias) == (2, True, "hard", 0.0, 0.0)
    assert n.v_th == 4.0                       # 0.5 / 0.125
    assert n.v_th_fixed == (8,)                # 4.0 with one fractional bit
    assert n.timesteps == 1


def test_neuron_config_variant1_and_2():
    for variant in (1, 2):
        n = SDSAConfig(variant=variant, timesteps=4).neuron_config()
        assert n.neurons == 256                 # one neuron per channel
        assert (n.in_bits, n.frac_bits, n.v_bits) == (9, 4, 13)
        assert n.v_th == 0.5                    # scale 1
        assert n.v_th_fixed == (8,)             # 0.5 * 16
        assert n.timesteps == 4


def test_neuron_config_variant4_per_channel():
    c = tiny(variant=4, timesteps=2, v_th=(0.5, 0.25, 0.03125, 1.0), acc_bits=8)
    n = c.neuron_config()
    assert n.neurons == 3 * 4 and n.channels == 4
    assert n.v_th == (4.0, 2.0, 0.25, 8.0)      # v_th / 0.125
    assert n.v_th_fixed == (16, 8, 1, 32)       # x 4 (two fractional bits)
    assert c.integer_threshold == (Fraction(4), Fraction(2), Fraction(1, 4), Fraction(8))


@pytest.mark.parametrize(
    ("changes", "threshold"),
    [({}, Fraction(4)), ({"timesteps": 3}, Fraction(4)), ({"variant": 1}, Fraction(1, 2)),
     ({"variant": 2, "timesteps": 2}, Fraction(1, 2)), ({"variant": 4, "v_th": 0.0625},
                                                        Fraction(1, 2)),
     ({"variant": 4, "v_th": 1.5}, Fraction(12))],
)
def test_integer_threshold(changes, threshold):
    assert SDSAConfig(**changes).integer_threshold == (threshold,)


def test_memory_report_defaults():
    assert SDSAConfig().memory_report() == {
        "q_buffer_bits": 196 * 256,            # 50176
        "v_buffer_bits": 196 * 256,
        "kv_memory_bits": 256 * 32 * 8,         # 65536: 8 heads x 32 x 32 counts of 8 bits
        "neuron_membrane_bits": 0,              # T = 1: no membrane outlives its timestep
        "row_touched_bits": 256,
    }
    assert SDSAConfig().memory_report()["q_buffer_bits"] == 50176


def test_memory_report_variant1():
    assert SDSAConfig(variant=1).memory_report() == {
        "q_buffer_bits": 50176,
        "v_buffer_bits": 0,
        "count_memory_bits": 256 * 8,           # 2048
        "neuron_membrane_bits": 0,
        "mask_bits": 256,
    }
    # T = 4: 256 membranes of 9 + 4 = 13 bits
    assert SDSAConfig(variant=2, timesteps=4).memory_report()["neuron_membrane_bits"] == 3328


def test_memory_report_variant3_membranes():
    # T = 2: 50176 membranes of 14 + 2 = 16 bits
    assert SDSAConfig(timesteps=2).memory_report()["neuron_membrane_bits"] == 802816
    assert SDSAConfig(count_bits=10).memory_report()["kv_memory_bits"] == 256 * 32 * 10


def test_stream_fields():
    fields = SDSAConfig(lanes=8).input_fields()
    assert [(f.name, f.bits, f.count) for f in fields] == [("spikes", 1, 8), ("first", 1, None),
                                                           ("last", 1, None)]
    assert SDSAConfig(lanes=8).output_fields() == fields


# -- ideal cost, dense cost, cycle model ------------------------------------------------------


def hand_spikes():
    """(1 sample, 2 timesteps, 3 tokens, 4 channels): K has 10 then 2 spikes, Q 3 then 12."""
    q = np.zeros((1, 2, 3, 4), np.uint8)
    k = np.zeros((1, 2, 3, 4), np.uint8)
    k[0, 0] = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]
    k[0, 1, 2, :2] = 1
    q[0, 0, 1, :3] = 1
    q[0, 1] = 1
    v = np.ones_like(q)
    assert (k[0, 0].sum(), k[0, 1].sum(), q[0, 0].sum(), q[0, 1].sum()) == (10, 2, 3, 12)
    return q, k, v


@pytest.mark.parametrize("variant", [3, 4])
def test_ideal_cycles_variants_3_4_by_hand(variant):
    q, k, v = hand_spikes()
    c = tiny(variant=variant, timesteps=2)
    # lanes 1: 12 beats per step, d / lanes = 2 cycles per spike
    # step 0: max(12, 10 * 2) + max(12, 3 * 2) = 20 + 12; step 1: max(12, 4) + max(12, 24)
    assert c.ideal_cycles(q, k, v) == (20 + 12) + (12 + 24) == 68
    # lanes 2: 6 beats, 1 cycle per spike: (max(6, 10) + max(6, 3)) + (max(6, 2) + max(6, 12))
    assert tiny(variant=variant, timesteps=2, lanes=2).ideal_cycles(q, k, v) == 16 + 18
    # V never matters
    assert c.ideal_cycles(q, k, np.zeros_like(v)) == 68


@pytest.mark.parametrize("variant", [1, 2])
def test_ideal_cycles_variants_1_2_by_hand(variant):
    q, k, v = hand_spikes()
    # 2 * tokens * channels / lanes per timestep, whatever the spikes
    assert tiny(variant=variant, timesteps=2).ideal_cycles(q, k, v) == 2 * (2 * 3 * 4)
    c = tiny(variant=variant, timesteps=2, lanes=2)
    three = np.concatenate([q, q, q])
    assert c.ideal_cycles(three, three, three) == 3 * 2 * (2 * 3 * 2) == 72
    zeros = np.zeros_like(three)
    assert c.ideal_cycles(zeros, zeros, zeros) == 72


def test_dense_cycles():
    # variants 3/4: 2 * tokens * channels * d / lanes per step
    assert tiny().dense_cycles() == 2 * 3 * 4 * 2 == 48
    assert tiny(variant=4).dense_cycles(samples=2) == 96
    assert SDSAConfig().dense_cycles() == 2 * 196 * 256 * 32 // 16 == 200704
    assert SDSAConfig(timesteps=4).dense_cycles(3) == 12 * 200704
    # variants 1/2: 2 * tokens * channels / lanes per step
    assert tiny(variant=1).dense_cycles(samples=2) == 2 * 2 * 12 == 48
    assert SDSAConfig(variant=2).dense_cycles() == 2 * 196 * 16 == 6272
    # d = 1: the KV pass costs no more than streaming
    assert SDSAConfig(heads=256, lanes=1, tokens=4).dense_cycles() == 2 * 4 * 256


CYCLE_CONFIGS = [
    dict(channels=4, heads=2, tokens=3, lanes=1),
    dict(channels=4, heads=2, tokens=5, lanes=2),
    dict(channels=8, heads=2, tokens=4, lanes=2, timesteps=2),
    dict(channels=8, heads=1, tokens=6, lanes=4, timesteps=3),
    dict(channels=12, heads=3, tokens=5, lanes=2),
    dict(channels=16, heads=2, tokens=4, lanes=8, timesteps=2),
]


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
@pytest.mark.parametrize("index", range(len(CYCLE_CONFIGS)))
def test_cycles_at_least_ideal(variant, index):
    c = SDSAConfig(variant=variant, **CYCLE_CONFIGS[index])
    shape = (2, c.timesteps, c.tokens, c.channels)
    for n, density in enumerate((0.0, 0.1, 0.5, 0.9, 1.0)):
        q, k, v = (random_spikes(shape, density, seed=10 * n + i) for i in range(3))
        assert c.cycles(q, k, v) >= c.ideal_cycles(q, k, v), (density, c)


@pytest.mark.parametrize("variant", [1, 2])
def test_cycles_of_variants_1_2_ignore_the_spikes(variant):
    c = SDSAConfig(variant=variant, channels=8, heads=2, tokens=5, lanes=2, timesteps=2)
    shape = (3, 2, 5, 8)
    zeros, ones = np.zeros(shape, np.uint8), np.ones(shape, np.uint8)
    ref = c.cycles(zeros, zeros, zeros)
    assert ref > 0
    assert c.cycles(ones, ones, ones) == ref
    for seed in range(4):
        q, k, v = (random_spikes(shape, 0.3, seed=seed * 3 + i) for i in range(3))
        assert c.cycles(q, k, v) == ref
    # more samples take longer
    assert c.cycles(ones[:1], ones[:1], ones[:1]) < ref


def test_cycles_of_variant3_grow_with_k_spikes():
    # with every K position a spike, KV building (nnz(K) * d / lanes = 5 * 8 * 4 = 160 cycles)
    # exceeds streaming (5 * 8 = 40 beats)
    c = SDSAConfig(channels=8, heads=2, tokens=5, lanes=1)
    shape = (1, 1, 5, 8)
    zeros, ones = np.zeros(shape, np.uint8), np.ones(shape, np.uint8)
    assert c.cycles(zeros, ones, zeros) >= 160 + 40
    assert c.cycles(zeros, ones, zeros) > c.cycles(zeros, zeros, zeros)


# -- bundles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
@pytest.mark.parametrize("name", ["b", "b.zip"], ids=["folder", "zip"])
def test_bundle_round_trip(tmp_path, name, variant):
    v_th = 0.375 if variant == 4 else 0.5
    config = tiny(variant=variant, v_th=v_th, timesteps=2)
    path = tmp_path / name
    traces = export_sdsa_bundle(path, config, samples=3, density=0.6, seed=4)
    assert isinstance(traces, SDSATraces) and traces.samples == 3
    loaded_config, loaded = load_sdsa_bundle(path)
    assert loaded_config == config
    assert isinstance(loaded, SDSATraces) and loaded.samples == 3
    for field in ("q", "k", "v", "spikes"):
        a = getattr(loaded, field)
        assert a.dtype == np.uint8 and a.shape == (3, 2, 3, 4)
        np.testing.assert_array_equal(a, getattr(traces, field))
    assert loaded.neuron_input.dtype == np.int64
    want = (3, 2, 3, 4) if variant >= 3 else (3, 2, 4)
    assert loaded.neuron_input.shape == want
    np.testing.assert_array_equal(loaded.neuron_input, traces.neuron_input)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def sdsa_arrays(config, samples=2, **changes):
    """Arrays of an all-zero SDSA bundle of `config`, with `changes` (None drops an array)."""
    shape = (samples, config.timesteps, config.tokens, config.channels)
    arrays = {name: np.zeros(shape, np.uint8) for name in ("q", "k", "v", "spikes")}
    if config.variant >= 3:
        arrays["attention"] = np.zeros(shape, np.int32)
    else:
        arrays["counts"] = np.zeros((samples, config.timesteps, config.channels), np.int32)
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def write_sdsa(path, config, **changes):
    write_bundle(path, unit="sdsa", config=config.to_dict(),
                 arrays=sdsa_arrays(config, **changes))
    return path


@pytest.mark.parametrize("variant", [1, 3])
def test_bundle_of_zeros_loads(tmp_path, variant):
    config, traces = load_sdsa_bundle(write_sdsa(tmp_path / "b", tiny(variant=variant)))
    assert config == tiny(variant=variant)
    assert traces.samples == 2
    assert not traces.spikes.any() and not traces.neuron_input.any()


def test_bundle_attention_at_its_limit_loads(tmp_path):
    # d * tokens = 2 * 3 = 6 is the largest legal A
    a = np.full((2, 1, 3, 4), 6, np.int32)
    _, traces = load_sdsa_bundle(write_sdsa(tmp_path / "b", tiny(), attention=a))
    assert traces.neuron_input.max() == 6


def test_bundle_counts_at_their_limit_load(tmp_path):
    counts = np.full((2, 1, 4), 3, np.int32)           # tokens = 3
    _, traces = load_sdsa_bundle(write_sdsa(tmp_path / "b", tiny(variant=2), counts=counts))
    assert traces.neuron_input.max() == 3


def _k_with_a_two():
    k = np.zeros((2, 1, 3, 4), np.uint8)
    k[1, 0, 2, 3] = 2
    return k


CORRUPT = [
    ("q-shape", 3, {"q": np.zeros((2, 1, 3, 5), np.uint8)},
     "array 'q' has shape [2, 1, 3, 5], but the configuration needs spikes of shape "
     "[samples, 1, 3, 4] (timesteps, tokens, channels)"),
    ("q-3d", 3, {"q": np.zeros((2, 3, 4), np.uint8)},
     "array 'q' has shape [2, 3, 4], but the configuration needs spikes of shape "
     "[samples, 1, 3, 4] (timesteps, tokens, channels)"),
    ("v-float", 3, {"v": np.zeros((2, 1, 3, 4), np.float32)},
     "array 'v' has shape [2, 1, 3, 4], but the configuration needs spikes of shape "
     "[samples, 1, 3, 4] (timesteps, tokens, channels)"),
    ("k-two", 3, {"k": _k_with_a_two()}, "k must be spikes (0 or 1)"),
    ("spikes-negative", 1, {"spikes": -np.ones((2, 1, 3, 4), np.int8)},
     "spikes must be spikes (0 or 1)"),
    ("attention-above", 3, {"attention": np.full((2, 1, 3, 4), 7, np.int32)},
     "attention outside 0 .. 6"),
    ("attention-negative", 4, {"attention": np.full((2, 1, 3, 4), -1, np.int32)},
     "attention outside 0 .. 6"),
    ("attention-shape", 3, {"attention": np.zeros((2, 1, 4), np.int32)},
     "array 'attention' has shape [2, 1, 4], but the configuration needs integers of shape "
     "[samples, 1, 3, 4]"),
    ("counts-above", 1, {"counts": np.full((2, 1, 4), 4, np.int32)}, "counts outside 0 .. 3"),
    ("counts-shape", 2, {"counts": np.zeros((2, 1, 3, 4), np.int32)},
     "array 'counts' has shape [2, 1, 3, 4], but the configuration needs integers of shape "
     "[samples, 1, 4]"),
    ("no-attention", 3,
     {"attention": None, "counts": np.zeros((2, 1, 4), np.int32)},
     "has no array 'attention'"),
    ("no-counts", 1,
     {"counts": None, "attention": np.zeros((2, 1, 3, 4), np.int32)},
     "has no array 'counts'"),
    ("no-v", 3, {"v": None}, "has no array 'v'"),
    ("samples-spikes", 3, {"spikes": np.zeros((3, 1, 3, 4), np.uint8)},
     "arrays disagree on the sample count"),
    ("samples-attention", 3, {"attention": np.zeros((1, 1, 3, 4), np.int32)},
     "arrays disagree on the sample count"),
    ("samples-counts", 1, {"counts": np.zeros((5, 1, 4), np.int32)},
     "arrays disagree on the sample count"),
]


@pytest.mark.parametrize(("variant", "changes", "phrase"), [c[1:] for c in CORRUPT],
                         ids=[c[0] for c in CORRUPT])
def test_corrupt_bundle(tmp_path, variant, changes, phrase):
    path = write_sdsa(tmp_path / "b", tiny(variant=variant), **changes)
    with pytest.raises(BundleError) as exc:
        load_sdsa_bundle(path)
    message = str(exc.value)
    assert message.startswith(f"bundle {str(path)!r}")
    assert message.endswith(phrase)


def test_bundle_of_another_unit(tmp_path):
    path = tmp_path / "lif"
    export_lif_bundle(path, LIFConfig(neurons=8, lanes=4))
    assert read_bundle(path).unit == "lif"
    with pytest.raises(BundleError, match=exact(
        f"bundle {str(path)!r} holds a 'lif' unit, not a 'sdsa' unit"
    )):
        load_sdsa_bundle(path)


def test_bundle_written_as_lif_with_sdsa_arrays(tmp_path):
    path = tmp_path / "b"
    config = tiny()
    write_bundle(path, unit="lif", config=config.to_dict(), arrays=sdsa_arrays(config))
    with pytest.raises(BundleError, match=exact(
        f"bundle {str(path)!r} holds a 'lif' unit, not a 'sdsa' unit"
    )):
        load_sdsa_bundle(path)


def test_bundle_with_invalid_configuration(tmp_path):
    path = tmp_path / "b"
    config = tiny()
    write_bundle(path, unit="sdsa", config={**config.to_dict(), "heads": 3},
                 arrays=sdsa_arrays(config))
    with pytest.raises(BundleError, match=exact(
        f"bundle {str(path)!r} has an invalid SDSA configuration: heads (3) must divide "
        f"channels (4)"
    )):
        load_sdsa_bundle(path)


def test_bundle_with_unknown_configuration_key(tmp_path):
    path = tmp_path / "b"
    config = tiny()
    write_bundle(path, unit="sdsa", config={**config.to_dict(), "scale": 0.125},
                 arrays=sdsa_arrays(config))
    with pytest.raises(BundleError, match=exact(
        f"bundle {str(path)!r} has an invalid SDSA configuration: unknown SDSA configuration "
        f"key 'scale' (known: {KNOWN_KEYS})"
    )):
        load_sdsa_bundle(path)


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_sdsa_bundle(tmp_path / "nothere.zip")


# -- defects found once, kept fixed ----------------------------------------------------------------


# the default acc_bits (least that holds d * tokens) once gave a neuron whose v_bits could not
# hold the fixed variant-3 threshold 4.0 when d * tokens < 4
@pytest.mark.parametrize("changes", [dict(channels=4, heads=2, tokens=1, lanes=1),
                                     dict(channels=4, heads=4, tokens=3, lanes=1)],
                         ids=["d2-tokens1", "d1-tokens3"])
def test_tiny_variant3_configuration_constructs(changes):
    c = SDSAConfig(**changes)
    # the attention can never reach 8: the unit is silent, but well defined
    assert c.max_attention < 8
    neuron = c.neuron_config()
    assert neuron.v_th_fixed == (8,)   # 4.0 with one fractional bit
    assert neuron.in_bits >= 4         # room for the threshold
