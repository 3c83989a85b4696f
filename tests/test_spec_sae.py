"""Tests of `spec.sae.SAEConfig` (validation, YAML, geometry against torch, ideal cost, memory
footprint, lossless accumulator width) and of `spec.sae.SAEParams` (checking, seeding)."""

import itertools
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from spec.errors import ConfigError
from spec.lif import LIFConfig
from spec.ports import Field
from spec.sae import SAE_MODES, SAEConfig, SAEParams
from sw.sae_int import sae_int

KNOWN_KEYS = (
    "acc_bits, bias, height, in_bits, in_channels, in_lanes, in_signed, kernel, lanes, mode, "
    "out_channels, padding, stride, w_bits, width"
)
INT_FIELDS = ("in_channels", "out_channels", "kernel", "stride", "height", "width", "lanes",
              "in_lanes", "w_bits", "acc_bits", "in_bits")


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


# -- construction and validation ---------------------------------------------------------------


def test_defaults_construct():
    c = SAEConfig()
    assert c.mode == "conv"
    assert (c.in_channels, c.out_channels, c.kernel, c.stride, c.padding) == (64, 128, 3, 1, 1)
    assert (c.height, c.width, c.lanes, c.in_lanes) == (14, 14, 16, 16)
    assert (c.w_bits, c.acc_bits, c.bias) == (8, 16, True)
    assert (c.in_bits, c.in_signed) == (1, False)
    assert (c.out_height, c.out_width) == (14, 14)
    assert c.weight_shape == (128, 64, 3, 3)
    assert c.fan_in == 64 * 9
    assert (c.out_groups, c.in_beats_per_pixel) == (8, 4)
    assert SAE_MODES == ("linear", "conv", "depthwise")
    hash(c)


INVALID = [
    ({"mode": "dense"}, "mode must be one of linear, conv, depthwise, not 'dense'"),
    ({"mode": None}, "mode must be one of linear, conv, depthwise, not None"),
    ({"padding": -1}, "padding must be at least 0, not -1"),
    ({"padding": True}, "padding must be an integer, not True"),
    ({"padding": 16}, "padding must be at most 15, not 16"),
    ({"in_channels": (1 << 14) + 1}, f"in_channels must be at most {1 << 14}, not {(1 << 14) + 1}"),
    ({"height": 4097}, "height must be at most 4096, not 4097"),
    ({"kernel": 16}, "kernel must be at most 15, not 16"),
    ({"lanes": 257}, "lanes must be at most 256, not 257"),
    ({"w_bits": 1}, "w_bits must be at least 2, not 1"),
    ({"w_bits": 17}, "w_bits must be at most 16, not 17"),
    ({"acc_bits": 49}, "acc_bits must be at most 48, not 49"),
    ({"stride": 2.0}, "stride must be an integer, not 2.0"),
    ({"lanes": "16"}, "lanes must be an integer, not '16'"),
    ({"bias": 1}, "bias must be true or false, not 1"),
    ({"bias": "yes"}, "bias must be true or false, not 'yes'"),
    ({"mode": "linear"},
     "linear mode needs kernel 1, stride 1, padding 0, not kernel 3, stride 1, padding 1"),
    ({"mode": "linear", "kernel": 3, "padding": 0},
     "linear mode needs kernel 1, stride 1, padding 0, not kernel 3, stride 1, padding 0"),
    ({"mode": "linear", "kernel": 1, "padding": 0, "stride": 2},
     "linear mode needs kernel 1, stride 1, padding 0, not kernel 1, stride 2, padding 0"),
    ({"mode": "depthwise"}, "depthwise mode needs out_channels == in_channels, not 128 and 64"),
    ({"mode": "depthwise", "in_channels": 8, "out_channels": 4},
     "depthwise mode needs out_channels == in_channels, not 4 and 8"),
    ({"kernel": 3, "padding": 3}, "padding (3) must be smaller than kernel (3)"),
    ({"kernel": 1, "padding": 1}, "padding (1) must be smaller than kernel (1)"),
    ({"kernel": 7, "padding": 9}, "padding (9) must be smaller than kernel (7)"),
    ({"kernel": 5, "padding": 1, "height": 2},
     "kernel (5) is larger than the padded map: height 2 + 2 x padding 1 = 4"),
    ({"kernel": 7, "padding": 0, "height": 10, "width": 6},
     "kernel (7) is larger than the padded map: width 6 + 2 x padding 0 = 6"),
    ({"kernel": 7, "padding": 0, "height": 3, "width": 3},
     "kernel (7) is larger than the padded map: height 3 + 2 x padding 0 = 3"),
    ({"w_bits": 8, "acc_bits": 8},
     "acc_bits (8) is too small: weights of w_bits=8 need at least 9"),
    ({"w_bits": 16, "acc_bits": 2},
     "acc_bits (2) is too small: weights of w_bits=16 need at least 17"),
    # multi-bit inputs
    ({"in_bits": 25, "acc_bits": 48}, "in_bits must be at most 24, not 25"),
    ({"in_bits": 4.0}, "in_bits must be an integer, not 4.0"),
    ({"in_signed": 1}, "in_signed must be true or false, not 1"),
    ({"in_signed": "yes"}, "in_signed must be true or false, not 'yes'"),
    ({"in_signed": True}, "in_signed needs in_bits >= 2 (a sign and a magnitude bit), not 1"),
    ({"in_signed": True, "in_bits": 1, "acc_bits": 40},
     "in_signed needs in_bits >= 2 (a sign and a magnitude bit), not 1"),
    ({"mode": "depthwise", "in_channels": 8, "out_channels": 8, "in_bits": 4, "acc_bits": 40},
     "in_bits > 1 (multi-bit inputs) needs mode linear or conv, not depthwise"),
    # 64 x 3 x 3 inputs of 5 bits (0 .. 31) times 8-bit weights: -128 x 31 x 576 needs 23 bits
    ({"in_bits": 5}, "in_bits > 1 needs acc_bits >= lossless_acc_bits = 23 (so that no add "
                     "saturates), not 16"),
    ({"in_bits": 5, "acc_bits": 22}, "in_bits > 1 needs acc_bits >= lossless_acc_bits = 23 "
                                     "(so that no add saturates), not 22"),
    ({"mode": "linear", "kernel": 1, "padding": 0, "in_channels": 3, "w_bits": 4, "in_bits": 5,
      "in_signed": True, "acc_bits": 9},
     "in_bits > 1 needs acc_bits >= lossless_acc_bits = 10 (so that no add saturates), not 9"),
]
for _name in INT_FIELDS:
    _minimum = 2 if _name in ("w_bits", "acc_bits") else 1
    INVALID += [
        ({_name: 0}, f"{_name} must be at least {_minimum}, not 0"),
        ({_name: -3}, f"{_name} must be at least {_minimum}, not -3"),
        ({_name: True}, f"{_name} must be an integer, not True"),
        ({_name: False}, f"{_name} must be an integer, not False"),
    ]


@pytest.mark.parametrize(("changes", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_configuration(changes, message):
    with pytest.raises(ConfigError) as exc:
        SAEConfig(**changes)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "linear", "kernel": 1, "padding": 0},
        {"mode": "depthwise", "in_channels": 32, "out_channels": 32, "kernel": 7, "padding": 3},
        {"kernel": 5, "padding": 1, "height": 3, "width": 3},  # exactly the padded map
        {"kernel": 1, "padding": 0, "height": 1, "width": 1},
        {"w_bits": 8, "acc_bits": 9},
        {"w_bits": 2, "acc_bits": 3, "bias": False},
        {"stride": 15, "kernel": 15, "padding": 14, "height": 1, "width": 1},
        {"in_bits": 5, "acc_bits": 23},
        {"in_bits": 2, "in_signed": True, "in_lanes": 1, "acc_bits": 40},
        {"mode": "linear", "kernel": 1, "padding": 0, "in_channels": 1, "w_bits": 2,
         "in_bits": 24, "acc_bits": 26},
        {"mode": "linear", "kernel": 1, "padding": 0, "in_channels": 3, "w_bits": 4,
         "in_bits": 5, "in_signed": True, "acc_bits": 10},
    ],
)
def test_valid_edge_configurations(changes):
    SAEConfig(**changes)


def test_from_dict_unknown_key():
    with pytest.raises(ConfigError) as exc:
        SAEConfig.from_dict({"kernel": 3, "kernels": 3})
    assert str(exc.value) == f"unknown SAE configuration key 'kernels' (known: {KNOWN_KEYS})"


def test_from_dict_first_unknown_key_in_sorted_order():
    with pytest.raises(ConfigError) as exc:
        SAEConfig.from_dict({"zeta": 1, "alpha": 2})
    assert str(exc.value) == f"unknown SAE configuration key 'alpha' (known: {KNOWN_KEYS})"


@pytest.mark.parametrize(("data", "kind"), [([("kernel", 3)], "list"), (None, "NoneType"),
                                            ("conv", "str")])
def test_from_dict_not_a_mapping(data, kind):
    with pytest.raises(ConfigError) as exc:
        SAEConfig.from_dict(data)
    assert str(exc.value) == f"an SAE configuration must be a mapping, not {kind}"


def test_from_dict_mixed_key_types():
    with pytest.raises(ConfigError, match="unknown SAE configuration key"):
        SAEConfig.from_dict({1: 2, "kernels": 3})


def test_from_dict_validates_and_replace():
    with pytest.raises(ConfigError, match=exact("lanes must be at least 1, not 0")):
        SAEConfig.from_dict({"lanes": 0})
    c = SAEConfig(in_channels=8, out_channels=8)
    d = c.replace(mode="depthwise", kernel=7, padding=3)
    assert (d.mode, d.kernel, d.padding, d.in_channels) == ("depthwise", 7, 3, 8)
    with pytest.raises(ConfigError, match=exact("padding (3) must be smaller than kernel (3)")):
        c.replace(padding=3)
    assert SAEConfig.from_dict(c.to_dict()) == c


# -- YAML ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        SAEConfig(),
        SAEConfig(mode="linear", in_channels=384, out_channels=1536, kernel=1, padding=0,
                  height=7, width=9, lanes=32, in_lanes=8, w_bits=6, acc_bits=20, bias=False),
        SAEConfig(mode="depthwise", in_channels=96, out_channels=96, kernel=7, stride=2,
                  padding=3, height=28, width=20, lanes=4, in_lanes=4, w_bits=4, acc_bits=12),
        SAEConfig(mode="linear", in_channels=16, out_channels=8, kernel=1, padding=0, height=2,
                  width=3, lanes=8, in_lanes=16, acc_bits=24, in_bits=12, in_signed=True),
    ],
    ids=["defaults", "linear", "depthwise", "multi-bit"],
)
def test_yaml_round_trip(tmp_path, config):
    path = tmp_path / "sae.yaml"
    config.save(path)
    loaded = SAEConfig.load(path)
    assert loaded == config
    assert loaded.to_dict() == config.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae.yaml"]
    assert yaml.safe_load(path.read_text()) == {"unit": "sae", "config": config.to_dict()}


def test_multi_bit_fields_round_trip():
    c = SAEConfig(in_channels=1, out_channels=8, height=6, width=6, in_lanes=1, in_bits=5,
                  acc_bits=17)
    d = c.to_dict()
    assert (d["in_bits"], d["in_signed"]) == (5, False)
    assert SAEConfig.from_dict(d) == c
    assert c.replace(in_signed=True).in_signed is True
    assert SAEConfig.from_dict(d) != c.replace(in_signed=True)  # the comparison can fail


def test_old_dict_without_the_new_keys_loads_with_defaults(tmp_path):
    # what a bundle or YAML file written before multi-bit inputs holds
    old = {"mode": "conv", "in_channels": 3, "out_channels": 6, "kernel": 3, "stride": 2,
           "padding": 1, "height": 5, "width": 4, "lanes": 4, "in_lanes": 2, "w_bits": 6,
           "acc_bits": 12, "bias": True}
    c = SAEConfig.from_dict(old)
    assert (c.in_bits, c.in_signed) == (1, False)
    assert c.to_dict() == {**old, "in_bits": 1, "in_signed": False}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"unit": "sae", "config": old}))
    assert SAEConfig.load(path) == c


def test_load_of_a_lif_file(tmp_path):
    path = tmp_path / "lif.yaml"
    LIFConfig().save(path)
    with pytest.raises(ConfigError) as exc:
        SAEConfig.load(path)
    assert str(exc.value) == (
        f"configuration file {str(path)!r} is not an SAE configuration "
        f"(expected 'unit: sae' and a 'config' mapping)"
    )


def test_load_of_an_sae_file_without_config(tmp_path):
    path = tmp_path / "sae.yaml"
    path.write_text("unit: sae\n")
    with pytest.raises(ConfigError, match="is not an SAE configuration"):
        SAEConfig.load(path)


def test_load_of_a_missing_file(tmp_path):
    path = tmp_path / "nothere.yaml"
    message = f"configuration file {str(path)!r} does not exist"
    with pytest.raises(ConfigError, match=exact(message)):
        SAEConfig.load(path)


def test_load_of_a_file_with_an_invalid_value(tmp_path):
    path = tmp_path / "sae.yaml"
    path.write_text("unit: sae\nconfig: {mode: depthwise, in_channels: 4, out_channels: 5}\n")
    with pytest.raises(ConfigError, match=exact(
        "depthwise mode needs out_channels == in_channels, not 5 and 4"
    )):
        SAEConfig.load(path)


# -- geometry against torch ---------------------------------------------------------------------


def torch_out_shape(h, w, k, s, p):
    x = torch.zeros((1, 1, h, w), dtype=torch.float64)
    y = F.conv2d(x, torch.zeros((1, 1, k, k), dtype=torch.float64), stride=s, padding=p)
    return tuple(y.shape[2:])


def test_out_size_matches_torch():
    checked = 0
    for h, w, k, s in itertools.product((1, 2, 3, 5, 8, 13), (1, 4, 7, 14), (1, 2, 3, 5, 7),
                                        (1, 2, 3, 4)):
        for p in range(k):
            if k > h + 2 * p or k > w + 2 * p:
                continue
            c = SAEConfig(in_channels=1, out_channels=1, kernel=k, stride=s, padding=p, height=h,
                          width=w)
            assert (c.out_height, c.out_width) == torch_out_shape(h, w, k, s, p), (h, w, k, s, p)
            checked += 1
    assert checked > 500


def torch_touched(h, w, k, s, p):
    """For each input pixel: how many outputs a single spike there reaches (one channel, all-ones
    weights), counted from torch's convolution."""
    x = torch.zeros((h * w, 1, h, w), dtype=torch.float64)
    x.view(h * w, h * w)[torch.arange(h * w), torch.arange(h * w)] = 1.0
    y = F.conv2d(x, torch.ones((1, 1, k, k), dtype=torch.float64), stride=s, padding=p)
    return (y != 0).sum(dim=(1, 2, 3)).reshape(h, w).numpy().astype(np.int64)


GEOMETRIES = [
    (h, w, k, s, p)
    for (h, w), k, s, p in itertools.product(((5, 8), (7, 10), (9, 4)), (1, 3, 7), (1, 2),
                                             (0, 1, 3))
    if p < k and k <= h + 2 * p and k <= w + 2 * p
]


@pytest.mark.parametrize(("h", "w", "k", "s", "p"), GEOMETRIES,
                         ids=[f"{h}x{w}-k{k}s{s}p{p}" for h, w, k, s, p in GEOMETRIES])
def test_touched_pixels_matches_torch(h, w, k, s, p):
    c = SAEConfig(in_channels=1, out_channels=1, kernel=k, stride=s, padding=p, height=h, width=w)
    got = c.touched_pixels()
    assert got.shape == (h, w)
    np.testing.assert_array_equal(got, torch_touched(h, w, k, s, p))


def test_geometries_cover_the_requested_cases():
    ks = {(k, s, p) for _, _, k, s, p in GEOMETRIES}
    for k, s, p in [(1, 1, 0), (1, 2, 0), (3, 1, 0), (3, 2, 1), (7, 1, 3), (7, 2, 1), (7, 2, 0)]:
        assert (k, s, p) in ks


def brute_ideal(config, spikes, touched):
    """Sum over spikes of ceil(outputs touched / lanes), plus each frame's drain."""
    s = np.asarray(spikes).reshape(-1, config.in_channels, config.height, config.width)
    total = 0
    for _f, _c, i, j in zip(*np.nonzero(s), strict=True):
        t = int(touched[i, j])
        outputs = t if config.mode == "depthwise" else t * config.out_channels
        total += -(-outputs // config.lanes)
    groups = -(-config.out_channels // config.lanes)
    return total + s.shape[0] * config.out_height * config.out_width * groups


IDEAL_CONFIGS = [
    dict(mode="conv", in_channels=3, out_channels=20, kernel=3, stride=1, padding=1, height=5,
         width=8, lanes=8),
    dict(mode="conv", in_channels=2, out_channels=5, kernel=7, stride=2, padding=3, height=9,
         width=4, lanes=16),
    dict(mode="conv", in_channels=4, out_channels=33, kernel=3, stride=2, padding=0, height=7,
         width=10, lanes=4),
    dict(mode="depthwise", in_channels=5, out_channels=5, kernel=7, stride=1, padding=3,
         height=7, width=10, lanes=4, in_lanes=4),
    dict(mode="depthwise", in_channels=3, out_channels=3, kernel=3, stride=2, padding=1,
         height=5, width=8, lanes=2, in_lanes=2),
    dict(mode="linear", in_channels=3, out_channels=20, kernel=1, stride=1, padding=0, height=5,
         width=8, lanes=16),
]


@pytest.mark.parametrize("kw", IDEAL_CONFIGS,
                         ids=[f"{k['mode']}-k{k['kernel']}s{k['stride']}" for k in IDEAL_CONFIGS])
def test_ideal_cycles_brute_force(kw):
    c = SAEConfig(**kw)
    touched = torch_touched(c.height, c.width, c.kernel, c.stride, c.padding)
    rng = np.random.default_rng(11)
    for frames, density in ((1, 0.0), (3, 0.1), (2, 0.5), (1, 1.0)):
        spikes = (rng.random((frames, c.in_channels, c.height, c.width)) < density)
        spikes = spikes.astype(np.uint8)
        assert c.ideal_cycles(spikes) == brute_ideal(c, spikes, touched), (frames, density)
    # extra leading dimensions are frames too; no leading dimension is one frame
    spikes = (rng.random((2, 3, c.in_channels, c.height, c.width)) < 0.2).astype(np.uint8)
    assert c.ideal_cycles(spikes) == brute_ideal(c, spikes, touched)
    assert c.ideal_cycles(spikes[0, 0]) == brute_ideal(c, spikes[0, 0], touched)
    # no spikes: the drain alone
    zero = np.zeros((4, c.in_channels, c.height, c.width), np.uint8)
    assert c.ideal_cycles(zero) == 4 * c.drain_cycles() == 4 * c.out_height * c.out_width * (
        -(-c.out_channels // c.lanes))
    # dense: every position a spike
    for frames in (1, 3):
        ones = np.ones((frames, c.in_channels, c.height, c.width), np.uint8)
        assert c.dense_cycles(frames) == c.ideal_cycles(ones) == brute_ideal(c, ones, touched)
    assert c.dense_cycles() == c.dense_cycles(1)


# -- memory footprint -------------------------------------------------------------------------


def test_memory_footprint_stage3():
    c = SAEConfig(mode="conv", in_channels=256, out_channels=256, kernel=3, stride=1, padding=1,
                  height=14, width=14, w_bits=8, acc_bits=16)
    print(f"stage-3 SAE: weights {c.weight_memory_bits} bits ({c.weight_memory_bits // 8} B), "
          f"accumulators {c.accumulator_memory_bits} bits ({c.accumulator_memory_bits // 8} B), "
          f"bias {c.bias_memory_bits} bits")
    assert c.weight_memory_bits == 256 * 256 * 9 * 8 == 4_718_592
    assert c.accumulator_memory_bits == 14 * 14 * 256 * 16 == 802_816
    assert c.bias_memory_bits == 256 * 16
    assert c.replace(bias=False).bias_memory_bits == 0
    d = c.replace(mode="depthwise")
    assert d.weight_memory_bits == 256 * 9 * 8


# -- lossless accumulator width ---------------------------------------------------------------


def torch_out(config, weight, spikes):
    x = torch.tensor(np.asarray(spikes), dtype=torch.float64)
    w = torch.tensor(np.asarray(weight), dtype=torch.float64)
    groups = config.in_channels if config.mode == "depthwise" else 1
    y = F.conv2d(x, w, stride=config.stride, padding=config.padding, groups=groups)
    return y.numpy().astype(np.int64)


# fan-in not a power of two: one bit fewer than lossless_acc_bits does saturate
LOSSLESS = [
    dict(mode="depthwise", in_channels=3, out_channels=3, kernel=3, padding=0, height=4, width=5,
         w_bits=8),
    dict(mode="conv", in_channels=3, out_channels=2, kernel=3, padding=1, height=4, width=3,
         w_bits=4),
    dict(mode="conv", in_channels=5, out_channels=2, kernel=1, padding=0, height=2, width=3,
         w_bits=6),
    dict(mode="linear", in_channels=5, out_channels=3, kernel=1, padding=0, height=2, width=2,
         w_bits=8),
    dict(mode="depthwise", in_channels=2, out_channels=2, kernel=7, stride=2, padding=3, height=7,
         width=7, w_bits=5),
]
# fan-in a power of two: lossless_acc_bits is one bit wider than needed
# (a fan-in of 2 at w_bits 8 needs 9 bits, the least acc_bits the configuration accepts, so
# "one bit fewer" cannot be configured there)
LOSSLESS_POW2 = [
    dict(mode="linear", in_channels=4, out_channels=2, kernel=1, padding=0, height=1, width=2,
         w_bits=8),
    dict(mode="depthwise", in_channels=2, out_channels=2, kernel=2, padding=0, height=3,
         width=3, w_bits=4),
    dict(mode="linear", in_channels=256, out_channels=2, kernel=1, padding=0, height=1, width=1,
         w_bits=8),
]


def extremes(config):
    lo, hi = -(1 << (config.w_bits - 1)), (1 << (config.w_bits - 1)) - 1
    return (np.full(config.weight_shape, lo, np.int64), np.full(config.weight_shape, hi, np.int64))


@pytest.mark.parametrize("kw", LOSSLESS + LOSSLESS_POW2, ids=lambda kw: f"{kw['mode']}")
def test_lossless_acc_bits_never_saturates(kw):
    base = SAEConfig(**kw, acc_bits=40, bias=False)
    c = base.replace(acc_bits=base.lossless_acc_bits)
    ones = np.ones((1, c.in_channels, c.height, c.width), np.uint8)
    for weight in extremes(c):
        params = SAEParams.checked(c, weight, None)
        np.testing.assert_array_equal(sae_int(c, params, ones), torch_out(c, weight, ones))


def one_bit_fewer_saturates(kw):
    base = SAEConfig(**kw, acc_bits=40, bias=False)
    c = base.replace(acc_bits=base.lossless_acc_bits - 1)
    ones = np.ones((1, c.in_channels, c.height, c.width), np.uint8)
    return any(
        not np.array_equal(sae_int(c, SAEParams.checked(c, w, None), ones), torch_out(c, w, ones))
        for w in extremes(c)
    )


@pytest.mark.parametrize("kw", LOSSLESS, ids=lambda kw: f"{kw['mode']}")
def test_one_bit_fewer_can_saturate(kw):
    assert one_bit_fewer_saturates(kw)


@pytest.mark.parametrize("kw", LOSSLESS_POW2, ids=lambda kw: f"{kw['mode']}-{kw['in_channels']}")
def test_one_bit_fewer_can_saturate_power_of_two_fan_in(kw):
    assert one_bit_fewer_saturates(kw)


def test_lossless_acc_bits_values():
    assert SAEConfig().lossless_acc_bits == (128 * 64 * 9).bit_length() + 1 == 18
    dw = SAEConfig(mode="depthwise", in_channels=8, out_channels=8, kernel=3, w_bits=8)
    assert dw.fan_in == 9 and dw.lossless_acc_bits == 12  # -1152 needs 12 bits, 1143 needs 12


# -- SAEParams ---------------------------------------------------------------------------------


@pytest.fixture
def small():
    return SAEConfig(mode="conv", in_channels=2, out_channels=3, kernel=3, padding=1, height=4,
                     width=4, w_bits=4, acc_bits=10)


def test_params_checked_accepts_and_converts(small):
    w = np.arange(-8, 46, dtype=np.int8).reshape(3, 2, 3, 3) % 16 - 8
    p = SAEParams.checked(small, w, np.array([-512, 0, 511], np.int16))
    assert p.weight.dtype == np.int64 and p.bias.dtype == np.int64
    np.testing.assert_array_equal(p.weight, w)
    np.testing.assert_array_equal(p.bias, [-512, 0, 511])
    q = SAEParams.checked(small.replace(bias=False), np.zeros((3, 2, 3, 3), np.uint8), None)
    assert q.bias is None and q.weight.dtype == np.int64
    # nested lists are arrays too
    SAEParams.checked(small, np.zeros((3, 2, 3, 3), int).tolist(), [1, 2, 3])


PARAMS_INVALID = [
    (np.zeros((3, 2, 3, 2), np.int64), np.zeros(3, np.int64),
     "weights must be integers of shape [3, 2, 3, 3], not int64 [3, 2, 3, 2]"),
    (np.zeros((2, 3, 3, 3), np.int64), np.zeros(3, np.int64),
     "weights must be integers of shape [3, 2, 3, 3], not int64 [2, 3, 3, 3]"),
    (np.zeros((3, 1, 3, 3), np.int64), np.zeros(3, np.int64),
     "weights must be integers of shape [3, 2, 3, 3], not int64 [3, 1, 3, 3]"),
    (np.zeros((3, 2, 3, 3)), np.zeros(3, np.int64),
     "weights must be integers of shape [3, 2, 3, 3], not float64 [3, 2, 3, 3]"),
    (np.zeros((3, 2, 3, 3), np.float32), np.zeros(3, np.int64),
     "weights must be integers of shape [3, 2, 3, 3], not float32 [3, 2, 3, 3]"),
    (np.zeros((3, 2, 3, 3), bool), np.zeros(3, np.int64),
     "weights must be integers of shape [3, 2, 3, 3], not bool [3, 2, 3, 3]"),
    (np.full((3, 2, 3, 3), 8, np.int64), np.zeros(3, np.int64),
     "weights range 8 .. 8 does not fit w_bits=4 (-8 .. 7)"),
    (np.eye(3, dtype=np.int64)[:, :2, None, None].repeat(3, 2).repeat(3, 3) * -9,
     np.zeros(3, np.int64), "weights range -9 .. 0 does not fit w_bits=4 (-8 .. 7)"),
    (np.zeros((3, 2, 3, 3), np.int64), None,
     "the configuration has a bias, but no bias values were given"),
    (np.zeros((3, 2, 3, 3), np.int64), np.zeros(4, np.int64),
     "bias must be integers of shape [3], not int64 [4]"),
    (np.zeros((3, 2, 3, 3), np.int64), np.zeros((3, 1), np.int64),
     "bias must be integers of shape [3], not int64 [3, 1]"),
    (np.zeros((3, 2, 3, 3), np.int64), np.zeros(3),
     "bias must be integers of shape [3], not float64 [3]"),
    (np.zeros((3, 2, 3, 3), np.int64), np.array([0, 512, 0]),
     "bias range 0 .. 512 does not fit acc_bits=10"),
    (np.zeros((3, 2, 3, 3), np.int64), np.array([-513, 0, 3]),
     "bias range -513 .. 3 does not fit acc_bits=10"),
]


@pytest.mark.parametrize(("weight", "bias", "message"), PARAMS_INVALID,
                         ids=[m for _, _, m in PARAMS_INVALID])
def test_params_checked_invalid(small, weight, bias, message):
    with pytest.raises(ConfigError) as exc:
        SAEParams.checked(small, weight, bias)
    assert str(exc.value) == message


def test_params_bias_given_without_bias(small):
    with pytest.raises(ConfigError) as exc:
        SAEParams.checked(small.replace(bias=False), np.zeros((3, 2, 3, 3), np.int64),
                          np.zeros(3, np.int64))
    assert str(exc.value) == "bias values were given, but the configuration has bias: false"


def test_params_depthwise_shape():
    c = SAEConfig(mode="depthwise", in_channels=4, out_channels=4, kernel=3, height=5, width=5)
    SAEParams.checked(c, np.zeros((4, 1, 3, 3), np.int64), np.zeros(4, np.int64))
    with pytest.raises(ConfigError) as exc:
        SAEParams.checked(c, np.zeros((4, 4, 3, 3), np.int64), np.zeros(4, np.int64))
    assert str(exc.value) == (
        "weights must be integers of shape [4, 1, 3, 3], not int64 [4, 4, 3, 3]"
    )


@pytest.mark.parametrize("bias", [True, False])
def test_params_seeded(bias):
    c = SAEConfig(in_channels=16, out_channels=32, w_bits=6, acc_bits=14, bias=bias)
    a, b = SAEParams.seeded(c, 3), SAEParams.seeded(c, 3)
    np.testing.assert_array_equal(a.weight, b.weight)
    assert a.weight.shape == c.weight_shape and a.weight.dtype == np.int64
    assert int(a.weight.min()) == -32 and int(a.weight.max()) == 31  # the whole w_bits range
    other = SAEParams.seeded(c, 4)
    assert not np.array_equal(a.weight, other.weight)
    np.testing.assert_array_equal(SAEParams.seeded(c).weight, SAEParams.seeded(c, 0).weight)
    if bias:
        np.testing.assert_array_equal(a.bias, b.bias)
        assert a.bias.shape == (32,) and a.bias.dtype == np.int64
        assert int(np.abs(a.bias).max()) <= 4 * 31
        assert not np.array_equal(a.bias, other.bias)
    else:
        assert a.bias is None and other.bias is None


def test_params_seeded_bias_within_narrow_acc_bits():
    c = SAEConfig(mode="depthwise", in_channels=64, out_channels=64, w_bits=8, acc_bits=9)
    for seed in range(5):
        p = SAEParams.seeded(c, seed)
        assert -255 <= int(p.bias.min()) and int(p.bias.max()) <= 255
        assert -128 <= int(p.weight.min()) and int(p.weight.max()) <= 127


# -- multi-bit inputs: stream layouts, magnitude planes, lossless width, cost --------------------


def multi_bit(**kw):
    """A multi-bit configuration with acc_bits = lossless_acc_bits."""
    kw.setdefault("acc_bits", 48)
    c = SAEConfig(**kw)
    return c.replace(acc_bits=c.lossless_acc_bits)


def test_multi_bit_stream_layouts():
    spikes = SAEConfig(in_channels=4, out_channels=4, height=3, width=3, in_lanes=4)
    assert [(f.name, f.bits, f.signed, f.count) for f in spikes.input_fields()] == [
        ("spikes", 1, False, 4), ("first", 1, False, None), ("last", 1, False, None)]
    names = [f.name for f in spikes.event_fields()]
    assert names == ["row", "col", "channel", "group", "lane", "spike", "last"]
    unsigned = multi_bit(in_channels=4, out_channels=4, height=3, width=3, in_lanes=4, in_bits=5)
    assert [(f.name, f.bits, f.signed, f.count) for f in unsigned.input_fields()] == [
        ("values", 5, False, 4), ("first", 1, False, None), ("last", 1, False, None)]
    fields = {f.name: f for f in unsigned.event_fields()}
    assert list(fields) == ["row", "col", "channel", "group", "lane", "plane", "spike", "last"]
    assert fields["plane"].bits == 3  # planes 0 .. 4
    signed = unsigned.replace(in_bits=12, in_signed=True, acc_bits=40)
    assert signed.input_fields()[0] == Field("values", 12, signed=True, count=4)
    fields = {f.name: f for f in signed.event_fields()}
    assert list(fields) == ["row", "col", "channel", "group", "lane", "plane", "neg", "spike",
                            "last"]
    assert (fields["plane"].bits, fields["neg"].bits) == (4, 1)  # planes 0 .. 11
    assert signed.replace(in_bits=2).event_fields()[5] == Field("plane", 1)


def test_input_range_and_magnitude():
    c = SAEConfig()
    assert (c.input_range, c.input_magnitude, c.input_latency) == ((0, 1), 1, 0)
    u = multi_bit(in_channels=2, out_channels=2, height=3, width=3, in_bits=5)
    assert (u.input_range, u.input_magnitude, u.input_latency) == ((0, 31), 31, 2)
    s = u.replace(in_bits=12, in_signed=True, acc_bits=40)
    assert (s.input_range, s.input_magnitude) == ((-2048, 2047), 2048)


def test_magnitude_planes_hand_worked():
    c = multi_bit(mode="linear", kernel=1, padding=0, in_channels=2, out_channels=2, height=1,
                  width=3, in_lanes=2, in_bits=4, in_signed=True)
    values = np.array([[[[-5, 0, 7]], [[-8, 1, 6]]]])  # (1 frame, 2 channels, 1 x 3)
    planes = c.magnitude_planes(values)
    assert planes.shape == (1, 4, 2, 1, 3) and planes.dtype == np.uint8
    # |-5| = 0101, |0| = 0000, 7 = 0111; |-8| = 1000, 1 = 0001, 6 = 0110 (plane 0 first)
    assert planes[0, :, 0, 0].T.tolist() == [[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0]]
    assert planes[0, :, 1, 0].T.tolist() == [[0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 1, 0]]
    # the planes rebuild the magnitudes
    weights = (1 << np.arange(4)).reshape(1, 4, 1, 1, 1)
    np.testing.assert_array_equal((planes * weights).sum(axis=1), np.abs(values))
    # leading dimensions are frames; none is one frame
    assert c.magnitude_planes(values[0]).shape == (1, 4, 2, 1, 3)
    assert c.magnitude_planes(np.stack([values, values])).shape == (2, 4, 2, 1, 3)
    # spikes: one plane, the spikes themselves
    spikes = SAEConfig(mode="linear", kernel=1, padding=0, in_channels=2, out_channels=2,
                       height=1, width=3)
    bits = np.array([[[[1, 0, 1]], [[0, 0, 1]]]], np.uint8)
    np.testing.assert_array_equal(spikes.magnitude_planes(bits), bits[:, None])


@pytest.mark.parametrize(("in_bits", "in_signed", "values", "message"), [
    (4, True, [-9, 0], "inputs must be integers in -8 .. 7 (in_bits=4, signed), not -9 .. 0"),
    (4, True, [8, -8], "inputs must be integers in -8 .. 7 (in_bits=4, signed), not -8 .. 8"),
    (5, False, [-1, 3], "inputs must be integers in 0 .. 31 (in_bits=5, unsigned), not -1 .. 3"),
    (5, False, [32, 0], "inputs must be integers in 0 .. 31 (in_bits=5, unsigned), not 0 .. 32"),
    (1, False, [2, 0], "inputs must be integers in 0 .. 1 (spikes), not 0 .. 2"),
])
def test_check_inputs_range(in_bits, in_signed, values, message):
    c = multi_bit(mode="linear", kernel=1, padding=0, in_channels=2, out_channels=2, height=1,
                  width=1, in_lanes=2, in_bits=in_bits, in_signed=in_signed) \
        if in_bits > 1 else SAEConfig(mode="linear", kernel=1, padding=0, in_channels=2,
                                      out_channels=2, height=1, width=1)
    v = np.array(values).reshape(1, 2, 1, 1)
    with pytest.raises(ValueError, match=exact(message)):
        c.check_inputs(v)
    with pytest.raises(ValueError, match=exact(message)):
        c.magnitude_planes(v)
    with pytest.raises(ValueError, match=exact(message)):
        c.cycles(v)
    # the limits themselves are accepted
    lo, hi = c.input_range
    c.check_inputs(np.array([lo, hi]).reshape(1, 2, 1, 1))


def test_check_inputs_type_and_shape():
    c = multi_bit(in_channels=2, out_channels=2, height=3, width=3, in_bits=5)
    with pytest.raises(ValueError, match=exact("inputs must be integers, not float64")):
        c.check_inputs(np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match=exact(
            "inputs must have shape (..., 2, 3, 3), not (1, 2, 3, 4)")):
        c.check_inputs(np.zeros((1, 2, 3, 4), np.int64))
    with pytest.raises(ValueError, match=exact(
            "inputs must have shape (..., 2, 3, 3), not (3, 3)")):
        c.ideal_cycles(np.zeros((3, 3), np.int64))
    assert c.check_inputs(np.ones((2, 3, 3), np.int8)).dtype == np.int64


def test_lossless_acc_bits_multi_bit_values():
    # unsigned 5 bits: x in 0 .. 31, w in -8 .. 7: products -248 .. 217; fan-in 3:
    # -744 needs 11 bits (and 651 needs 11)
    u = SAEConfig(mode="linear", kernel=1, padding=0, in_channels=3, out_channels=2, w_bits=4,
                  in_bits=5, acc_bits=40)
    assert u.lossless_acc_bits == 11
    # signed 5 bits: x in -16 .. 15: products -120 .. 128 (-16 x -8); fan-in 3: 384 needs 10
    assert u.replace(in_signed=True).lossless_acc_bits == 10
    # the first layer: 1 channel, 3 x 3, 5-bit pixels, 8-bit weights: -128 x 31 x 9 = -35712
    first = SAEConfig(in_channels=1, out_channels=16, kernel=3, padding=1, height=8, width=8,
                      in_lanes=1, in_bits=5, acc_bits=40)
    assert first.lossless_acc_bits == 17
    # M = 1 for spikes: today's width
    assert u.replace(in_bits=1).lossless_acc_bits == (8 * 3).bit_length() + 1 == 6


def brute_multi_bit_ideal(config, values, touched):
    """Sum over set bits of |x| of ceil(outputs touched / lanes), plus each frame's drain."""
    total = 0
    for f, _c, i, j in itertools.product(*map(range, values.shape)):
        events = bin(abs(int(values[f, _c, i, j]))).count("1")
        total += events * -(-int(touched[i, j]) * config.out_channels // config.lanes)
    return total + values.shape[0] * config.drain_cycles()


MULTI_BIT_COST = [
    dict(mode="conv", in_channels=1, out_channels=8, kernel=3, padding=1, height=5, width=6,
         lanes=4, in_lanes=1, in_bits=5),
    dict(mode="conv", in_channels=3, out_channels=5, kernel=3, stride=2, padding=1, height=5,
         width=5, lanes=4, in_lanes=2, in_bits=6, in_signed=True),
    dict(mode="linear", in_channels=16, out_channels=8, kernel=1, padding=0, height=2, width=2,
         lanes=4, in_lanes=16, in_bits=12, in_signed=True),
]


@pytest.mark.parametrize("kw", MULTI_BIT_COST, ids=lambda kw: f"{kw['mode']}-{kw['in_bits']}")
def test_multi_bit_ideal_dense_and_encoder_cycles(kw):
    c = multi_bit(**kw)
    touched = torch_touched(c.height, c.width, c.kernel, c.stride, c.padding)
    rng = np.random.default_rng(5)
    lo, hi = c.input_range
    for frames, density in ((1, 0.0), (2, 0.2), (1, 1.0)):
        values = rng.integers(lo, hi + 1, size=(frames, c.in_channels, c.height, c.width))
        values = np.where(rng.random(values.shape) < density, values, 0)
        assert c.ideal_cycles(values) == brute_multi_bit_ideal(c, values, touched)
        # the encoder: one cycle per set magnitude bit, one per beat without any
        beats = 0
        for f, r, col in itertools.product(range(frames), range(c.height), range(c.width)):
            for g in range(c.in_beats_per_pixel):
                chans = values[f, g * c.in_lanes:(g + 1) * c.in_lanes, r, col]
                beats += max(1, sum(bin(abs(int(x))).count("1") for x in chans))
        assert c.encoder_cycles(values) == beats
        assert c.cycles(values) >= c.ideal_cycles(values)
    # dense: every one of the in_bits planes of every input
    ones = np.ones((2, c.in_channels, c.height, c.width), np.int64)
    spikes_cost = c.replace(in_bits=1, in_signed=False).ideal_cycles(ones) - 2 * c.drain_cycles()
    assert c.dense_cycles(2) == c.in_bits * spikes_cost + 2 * c.drain_cycles()
    if not c.in_signed:  # unsigned 2**in_bits - 1 sets every bit
        assert c.dense_cycles(2) == c.ideal_cycles(ones * c.input_range[1])


def test_multi_bit_cycles_hand_worked():
    # one 1 x 1 token, one channel, one output word: value 5 = planes 0 and 2, two events to
    # the same accumulator word, so the second waits for the first's write (4 cycles)
    c = multi_bit(mode="linear", kernel=1, padding=0, in_channels=1, out_channels=4, height=1,
                  width=1, lanes=4, in_lanes=1, in_bits=3)
    # input stage takes the beat at 0 and hands on its first plane word at 1, the encoder takes
    # it at 2; events at 3 and 4; updates issue at 4 and 8; the drain reads at 8 + 1 + 4 = 13,
    # outputs at 13 + 5 = 18: 19 cycles
    assert c.cycles(np.full((1, 1, 1, 1), 5)) == 19
    # spikes: no input stage, one event: issue at 2, drain read at 7, output at 12
    spikes = c.replace(in_bits=1, acc_bits=16)
    assert spikes.cycles(np.ones((1, 1, 1, 1), np.uint8)) == 13
    # 4 = plane 2 alone: one event, issue at 4, drain at 9, output at 14
    assert c.cycles(np.full((1, 1, 1, 1), 4)) == 15
    # 7 = three events, issues at 4, 8, 12
    assert c.cycles(np.full((1, 1, 1, 1), 7)) == 19 + 4
    assert c.encoder_cycles(np.full((1, 1, 1, 1), 7)) == 3
    assert c.ideal_cycles(np.full((1, 1, 1, 1), 7)) == 3 + 1
