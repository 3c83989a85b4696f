"""Tests of `spec.shortcut`: `ShortcutConfig` (validation of every field, YAML, geometry, buffer
size, stream layouts, the cycle model against an independent cycle-by-cycle derivation),
`ShortcutParams` (checking, seeding) and `load_shortcut_bundle` (round trips through
`sw.export.export_shortcut_bundle`, every inconsistent bundle refused with one clear message).
"""

import itertools
import math
import re

import numpy as np
import pytest
import yaml

from spec.bundle import read_bundle, write_bundle
from spec.errors import BundleError, ConfigError
from spec.lif import LIFConfig
from spec.ports import Field, payload_width
from spec.sae import SAEConfig
from spec.shortcut import (
    SHORTCUT_MAX_LEFT,
    SHORTCUT_MAX_RIGHT,
    SHORTCUT_MIN_BUFFER,
    SHORTCUT_OUT_FIFO_DEPTH,
    ShortcutConfig,
    ShortcutParams,
    ShortcutTraces,
    load_shortcut_bundle,
)
from sw import shortcut_int as shortcut_int_module
from sw.export import export_sae_bundle, export_shortcut_bundle
from sw.shortcut_int import shortcut_int

KNOWN_KEYS = "acc_bits, bits, channels, height, lanes, residual, width"
#: field -> (least, largest) accepted value
INT_BOUNDS = {
    "channels": (1, 1 << 14),
    "height": (1, 1 << 12),
    "width": (1, 1 << 12),
    "lanes": (1, 256),
    "acc_bits": (2, 48),
    "bits": (2, 48),
}


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


def small(**changes):
    """5 channels over 2 lanes (3 groups, the last half padding) on a 2 x 3 map."""
    return ShortcutConfig(**{"channels": 5, "height": 2, "width": 3, "lanes": 2, "acc_bits": 10,
                             "bits": 6, **changes})


# -- construction and validation ---------------------------------------------------------------


def test_defaults():
    c = ShortcutConfig()
    assert (c.channels, c.height, c.width, c.lanes, c.acc_bits, c.bits, c.residual) == (
        64, 14, 14, 16, 16, 16, True)
    assert c.UNIT == "shortcut"
    assert (SHORTCUT_MAX_LEFT, SHORTCUT_MAX_RIGHT) == (15, 24)
    # the spec and the integer reference agree on the shift range
    assert (shortcut_int_module.MAX_LEFT, shortcut_int_module.MAX_RIGHT) == (15, 24)
    assert SHORTCUT_OUT_FIFO_DEPTH == 8
    hash(c)


def test_is_frozen():
    c = ShortcutConfig()
    with pytest.raises(AttributeError):
        c.lanes = 4


INVALID = [
    ({"residual": 1}, "residual must be true or false, not 1"),
    ({"residual": 0}, "residual must be true or false, not 0"),
    ({"residual": "yes"}, "residual must be true or false, not 'yes'"),
    ({"residual": "false"}, "residual must be true or false, not 'false'"),
    ({"residual": None}, "residual must be true or false, not None"),
    ({"residual": np.bool_(True)}, "residual must be true or false, not np.True_"),
]
for _name, (_lo, _hi) in INT_BOUNDS.items():
    INVALID += [
        ({_name: _lo - 1}, f"{_name} must be at least {_lo}, not {_lo - 1}"),
        ({_name: -7}, f"{_name} must be at least {_lo}, not -7"),
        ({_name: _hi + 1}, f"{_name} must be at most {_hi}, not {_hi + 1}"),
        ({_name: True}, f"{_name} must be an integer, not True"),
        ({_name: False}, f"{_name} must be an integer, not False"),
        ({_name: 4.0}, f"{_name} must be an integer, not 4.0"),
        ({_name: "4"}, f"{_name} must be an integer, not '4'"),
        ({_name: None}, f"{_name} must be an integer, not None"),
        ({_name: [4]}, f"{_name} must be an integer, not [4]"),
    ]


@pytest.mark.parametrize(("changes", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_configuration(changes, message):
    with pytest.raises(ConfigError) as exc:
        ShortcutConfig(**changes)
    assert str(exc.value) == message


def test_every_field_is_validated():
    fields = {k for changes, _ in INVALID for k in changes}
    assert fields == set(ShortcutConfig().to_dict())


@pytest.mark.parametrize("field", list(INT_BOUNDS))
def test_bounds_are_accepted(field):
    lo, hi = INT_BOUNDS[field]
    for value in (lo, hi):
        assert getattr(small(**{field: value}), field) == value


@pytest.mark.parametrize("residual", [True, False])
def test_residual_bool_accepted(residual):
    assert small(residual=residual).residual is residual


def test_first_invalid_field_is_reported():
    # one message, naming the first bad field in declaration order
    with pytest.raises(ConfigError, match=exact("channels must be at least 1, not 0")):
        ShortcutConfig(channels=0, lanes=0, residual=3)


def test_from_dict_unknown_key():
    with pytest.raises(ConfigError) as exc:
        ShortcutConfig.from_dict({"lanes": 4, "lane": 4})
    assert str(exc.value) == f"unknown shortcut configuration key 'lane' (known: {KNOWN_KEYS})"


@pytest.mark.parametrize(("data", "kind"), [([("lanes", 4)], "list"), (None, "NoneType"),
                                            ("shortcut", "str")])
def test_from_dict_not_a_mapping(data, kind):
    with pytest.raises(ConfigError) as exc:
        ShortcutConfig.from_dict(data)
    assert str(exc.value) == f"a shortcut configuration must be a mapping, not {kind}"


def test_from_dict_validates_and_replace():
    with pytest.raises(ConfigError, match=exact("bits must be at most 48, not 49")):
        ShortcutConfig.from_dict({"bits": 49})
    c = small()
    d = c.replace(residual=False, lanes=8)
    assert (d.residual, d.lanes, d.channels) == (False, 8, 5)
    with pytest.raises(ConfigError, match=exact("residual must be true or false, not 'no'")):
        c.replace(residual="no")
    assert ShortcutConfig.from_dict(c.to_dict()) == c
    assert c.to_dict() == {"channels": 5, "height": 2, "width": 3, "lanes": 2, "acc_bits": 10,
                           "bits": 6, "residual": True}


# -- YAML ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [ShortcutConfig(), small(residual=False),
                                    ShortcutConfig(channels=1 << 14, height=4096, width=1,
                                                   lanes=256, acc_bits=48, bits=2)],
                         ids=["defaults", "no-residual", "extremes"])
def test_yaml_round_trip(tmp_path, config):
    path = tmp_path / "shortcut.yaml"
    config.save(path)
    loaded = ShortcutConfig.load(path)
    assert loaded == config
    assert loaded.residual is config.residual
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shortcut.yaml"]
    assert yaml.safe_load(path.read_text()) == {"unit": "shortcut", "config": config.to_dict()}


def test_load_of_a_lif_file(tmp_path):
    path = tmp_path / "lif.yaml"
    LIFConfig().save(path)
    with pytest.raises(ConfigError) as exc:
        ShortcutConfig.load(path)
    assert str(exc.value) == (
        f"configuration file {str(path)!r} is not a shortcut configuration "
        f"(expected 'unit: shortcut' and a 'config' mapping)"
    )


def test_load_of_a_missing_file(tmp_path):
    path = tmp_path / "nothere.yaml"
    with pytest.raises(ConfigError, match=exact(f"configuration file {str(path)!r} does not "
                                                f"exist")):
        ShortcutConfig.load(path)


@pytest.mark.parametrize(("text", "message"), [
    ("unit: shortcut\nconfig: {residual: 'true'}\n", "residual must be true or false, not 'true'"),
    ("unit: shortcut\nconfig: {residual: 1}\n", "residual must be true or false, not 1"),
    ("unit: shortcut\nconfig: {lanes: 2.5}\n", "lanes must be an integer, not 2.5"),
    ("unit: shortcut\nconfig: {bits: 1}\n", "bits must be at least 2, not 1"),
])
def test_load_of_a_file_with_an_invalid_value(tmp_path, text, message):
    path = tmp_path / "shortcut.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=exact(message)):
        ShortcutConfig.load(path)


def test_load_residual_false_from_yaml(tmp_path):
    path = tmp_path / "shortcut.yaml"
    path.write_text("unit: shortcut\nconfig: {channels: 3, residual: false}\n")
    c = ShortcutConfig.load(path)
    assert c.residual is False and c.buffer_words == 0 and "residual" not in c.input_ports()


# -- geometry and buffer -----------------------------------------------------------------------


GEOMETRY = [
    # channels, height, width, lanes, bits, residual -> groups, frame_words
    (64, 14, 14, 16, 16, True, 4, 784),
    (5, 2, 3, 2, 6, True, 3, 18),
    (5, 2, 3, 2, 6, False, 3, 18),
    (16, 8, 8, 16, 16, True, 1, 64),
    (17, 8, 8, 16, 16, True, 2, 128),
    (1, 1, 1, 256, 2, True, 1, 1),
    (300, 3, 5, 7, 9, True, 43, 645),
    (1 << 14, 4096, 4096, 1, 48, True, 1 << 14, (1 << 14) * (1 << 24)),
]


@pytest.mark.parametrize(("channels", "height", "width", "lanes", "bits", "residual", "groups",
                          "words"), GEOMETRY)
def test_groups_words_and_buffer(channels, height, width, lanes, bits, residual, groups, words):
    c = ShortcutConfig(channels=channels, height=height, width=width, lanes=lanes, bits=bits,
                       residual=residual)
    assert c.groups == groups == math.ceil(channels / lanes)
    assert c.frame_words == words
    assert c.buffer_words == (max(words, SHORTCUT_MIN_BUFFER) if residual else 0)
    assert c.buffer_bits == (c.buffer_words * lanes * bits if residual else 0)
    assert isinstance(c.buffer_bits, int)


def test_tiny_frames_get_the_least_buffer():
    # a frame of 1 or 2 beats: a buffered FIFO that shallow would take a beat every other cycle
    for width, words in ((1, 1), (2, 2), (3, 3), (4, 4)):
        c = ShortcutConfig(channels=2, height=1, width=width, lanes=2, acc_bits=8, bits=4)
        assert c.frame_words == words
        assert c.buffer_words == max(words, 3) == max(words, SHORTCUT_MIN_BUFFER)


def test_frame_words_counts_the_beats():
    # count every (pixel, group) beat of a frame by enumeration
    for channels, lanes, h, w in itertools.product((1, 3, 4, 9), (1, 2, 4, 5), (1, 3), (2, 5)):
        c = ShortcutConfig(channels=channels, height=h, width=w, lanes=lanes)
        beats = [(y, x, g) for y in range(h) for x in range(w)
                 for g in range(channels) if g * lanes < channels]
        assert c.frame_words == len(beats), (channels, lanes, h, w)
        # every channel is in exactly one lane of one group; the rest is padding
        slots = [(g, j) for g in range(c.groups) for j in range(lanes)]
        assert sum(g * lanes + j < channels for g, j in slots) == channels
        assert len(slots) - channels < lanes


def test_buffer_sizes_of_the_defaults():
    c = ShortcutConfig()
    assert c.buffer_words == 14 * 14 * 4 == 784
    assert c.buffer_bits == 784 * 16 * 16 == 200_704
    assert c.replace(residual=False).buffer_bits == 0


# -- stream layouts ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [small(), small(residual=False, lanes=7, acc_bits=32,
                                                   bits=24), ShortcutConfig()])
def test_layouts(config):
    branch = config.branch_fields()
    assert branch == (Field("acc", config.acc_bits, signed=True, count=config.lanes),
                      Field("first", 1), Field("last", 1))
    stream = config.stream_fields()
    assert stream == (Field("x", config.bits, signed=True, count=config.lanes),
                      Field("first", 1), Field("last", 1))
    assert payload_width(branch) == config.lanes * config.acc_bits + 2
    assert payload_width(stream) == config.lanes * config.bits + 2
    ports = config.input_ports()
    if config.residual:
        assert list(ports) == ["branch", "residual"]
        assert ports["residual"] == stream
    else:
        assert list(ports) == ["branch"]
    assert ports["branch"] == branch


def test_output_layout_feeds_a_lif_array():
    # the output beat is a LIF array's input beat when its in_bits is `bits`
    c = small(lanes=4, bits=8)
    lif = LIFConfig(neurons=c.channels * 4, channels=c.channels, lanes=4, in_bits=8)
    assert tuple(lif.input_fields()) == c.stream_fields()


# -- cycle model -------------------------------------------------------------------------------


def derived_cycles(config, frames):
    """Cycle by cycle, from the pipeline description: residual beat n handshakes at cycle n
    (never stalled, the buffer is one frame deep), and can be paired two cycles later (the
    buffer's read latency); branch beat n handshakes at the first cycle after branch beat
    n - 1 at which its residual can be paired (at once without a residual); each output
    leaves five cycles after its branch beat (pair, shift, bias, residual, output FIFO).
    The count runs from the first input handshake to the last output handshake, inclusive."""
    words = frames * config.frame_words
    first_input = 0
    branch = -1
    last_output = None
    for n in range(words):
        ready = n + 2 if config.residual else 0
        branch = max(branch + 1, ready)
        last_output = branch + 5
    return last_output - first_input + 1


CYCLE_CONFIGS = [small(), small(residual=False), ShortcutConfig(),
                 ShortcutConfig(residual=False), small(channels=2, height=1, width=3, lanes=2),
                 small(channels=33, lanes=8, height=4, width=1)]


@pytest.mark.parametrize("config", CYCLE_CONFIGS, ids=lambda c: f"{c.channels}x{c.height}x"
                         f"{c.width}-l{c.lanes}-{'res' if c.residual else 'nores'}")
def test_cycle_model_against_derivation(config):
    for frames in (1, 2, 3, 7):
        assert config.cycles(frames) == derived_cycles(config, frames), frames
        ideal = frames * config.frame_words
        assert config.cycles(frames) >= ideal
        # one beat per cycle: each extra frame costs exactly its words
        assert config.cycles(frames + 1) - config.cycles(frames) == config.frame_words


def test_cycle_model_by_hand():
    # 18 words a frame; with a residual: 2 cycles of buffer latency, 5 of pipeline
    assert small().cycles(1) == 2 + 18 - 1 + 5 + 1 == 25
    assert small().cycles(2) == 2 + 36 - 1 + 5 + 1 == 43
    assert small(residual=False).cycles(1) == 18 - 1 + 5 + 1 == 23
    assert ShortcutConfig().cycles(1) == 2 + 784 + 5 == 791
    assert ShortcutConfig().cycles(4) == 2 + 4 * 784 + 5
    assert (ShortcutConfig.LATENCY, ShortcutConfig.RESIDUAL_LATENCY) == (5, 2)


# -- ShortcutParams -----------------------------------------------------------------------------


def test_params_checked_accepts_and_converts():
    c = small()
    p = ShortcutParams.checked(c, np.array([-24, 15, 0, -1, 3], np.int8),
                               np.array([-32, 31, 0, 5, -5], np.int16))
    assert p.shift.dtype == np.int64 and p.bias.dtype == np.int64
    np.testing.assert_array_equal(p.shift, [-24, 15, 0, -1, 3])
    np.testing.assert_array_equal(p.bias, [-32, 31, 0, 5, -5])
    # lists and unsigned integers are arrays too
    q = ShortcutParams.checked(c, [0, 1, 2, 3, 4], np.array([0, 1, 2, 3, 31], np.uint8))
    assert q.shift.dtype == np.int64 and q.bias.dtype == np.int64
    np.testing.assert_array_equal(q.bias, [0, 1, 2, 3, 31])


@pytest.mark.parametrize("edge", [-SHORTCUT_MAX_RIGHT, SHORTCUT_MAX_LEFT, -24, 15])
def test_params_shift_edges_accepted(edge):
    c = small()
    p = ShortcutParams.checked(c, np.full(5, edge), np.zeros(5, np.int64))
    assert int(p.shift.min()) == int(p.shift.max()) == edge


@pytest.mark.parametrize("bits", [2, 3, 6, 24, 48])
def test_params_bias_edges_accepted(bits):
    c = small(bits=bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    p = ShortcutParams.checked(c, np.zeros(5, np.int64), np.array([lo, hi, 0, lo, hi]))
    assert (int(p.bias.min()), int(p.bias.max())) == (lo, hi)


PARAMS_INVALID = [
    ("shift-25", np.array([0, -25, 0, 0, 0]), np.zeros(5, np.int64),
     "shifts -25 .. 0 are outside -24 .. 15"),
    ("shift16", np.array([16, 0, 0, 0, 0]), np.zeros(5, np.int64),
     "shifts 0 .. 16 are outside -24 .. 15"),
    ("shift-both", np.array([16, -25, 0, 0, 0]), np.zeros(5, np.int64),
     "shifts -25 .. 16 are outside -24 .. 15"),
    ("shift-len", np.zeros(4, np.int64), np.zeros(5, np.int64),
     "shift must be integers of shape [5], not int64 [4]"),
    ("shift-2d", np.zeros((5, 1), np.int64), np.zeros(5, np.int64),
     "shift must be integers of shape [5], not int64 [5, 1]"),
    ("shift-scalar", np.int64(0), np.zeros(5, np.int64),
     "shift must be integers of shape [5], not int64 []"),
    ("shift-float", np.zeros(5), np.zeros(5, np.int64),
     "shift must be integers of shape [5], not float64 [5]"),
    ("shift-bool", np.zeros(5, bool), np.zeros(5, np.int64),
     "shift must be integers of shape [5], not bool [5]"),
    ("bias-len", np.zeros(5, np.int64), np.zeros(6, np.int64),
     "bias must be integers of shape [5], not int64 [6]"),
    ("bias-float", np.zeros(5, np.int64), np.zeros(5, np.float32),
     "bias must be integers of shape [5], not float32 [5]"),
    ("bias-empty-list", np.zeros(5, np.int64), [],
     "bias must be integers of shape [5], not float64 [0]"),
    ("bias-above", np.zeros(5, np.int64), np.array([0, 32, 0, 0, 0]),
     "bias range 0 .. 32 does not fit bits=6"),
    ("bias-below", np.zeros(5, np.int64), np.array([0, -33, 0, 0, 0]),
     "bias range -33 .. 0 does not fit bits=6"),
]


@pytest.mark.parametrize(("shift", "bias", "message"), [c[1:] for c in PARAMS_INVALID],
                         ids=[c[0] for c in PARAMS_INVALID])
def test_params_checked_invalid(shift, bias, message):
    with pytest.raises(ConfigError) as exc:
        ShortcutParams.checked(small(), shift, bias)
    assert str(exc.value) == message


@pytest.mark.parametrize("which", ["shift", "bias"])
def test_params_checked_refuses_huge_unsigned_values(which):
    c = small()
    shift = np.zeros(5, np.uint64)
    bias = np.zeros(5, np.uint64)
    # 2**64 - 1 would read as -1 (a valid bias and a valid shift) after the int64 conversion
    (shift if which == "shift" else bias)[0] = np.uint64(2**64 - 1)
    with pytest.raises(ConfigError):
        ShortcutParams.checked(c, shift, bias)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 16, 48])
def test_params_seeded_valid_and_deterministic(bits):
    c = ShortcutConfig(channels=40, height=1, width=1, lanes=8, bits=bits)
    a, b = ShortcutParams.seeded(c, 3), ShortcutParams.seeded(c, 3)
    np.testing.assert_array_equal(a.shift, b.shift)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert a.shift.shape == a.bias.shape == (40,)
    assert a.shift.dtype == a.bias.dtype == np.int64
    assert -3 <= int(a.shift.min()) and int(a.shift.max()) <= 3
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    assert lo <= int(a.bias.min()) and int(a.bias.max()) <= hi
    # "small" biases: well inside the range, so the saturating add is not the common case
    assert int(np.abs(a.bias).max()) <= max(0, (1 << max(0, bits - 3)) - 1)
    # valid by the same check a user's values go through
    ShortcutParams.checked(c, a.shift, a.bias)
    other = ShortcutParams.seeded(c, 4)
    assert not np.array_equal(a.shift, other.shift)
    np.testing.assert_array_equal(ShortcutParams.seeded(c).shift, ShortcutParams.seeded(c, 0)
                                  .shift)
    np.testing.assert_array_equal(ShortcutParams.seeded(c).bias, ShortcutParams.seeded(c, 0)
                                  .bias)


def test_params_seeded_uses_both_shift_directions():
    c = ShortcutConfig(channels=64)
    p = ShortcutParams.seeded(c, 0)
    assert set(p.shift.tolist()) == {-3, -2, -1, 0, 1, 2, 3}
    assert (p.bias != 0).any()


def test_params_seeded_depends_only_on_config_and_seed():
    c = small(bits=16)
    assert ShortcutParams.seeded(c, 9).bias.tolist() == ShortcutParams.seeded(
        c.replace(height=7, residual=False), 9).bias.tolist()


# -- bundles -----------------------------------------------------------------------------------


def check_traces(config, params, traces, frames):
    shape = (frames, config.channels, config.height, config.width)
    assert isinstance(traces, ShortcutTraces) and traces.frames == frames
    for name in ("acc", "outputs") + (("residual",) if config.residual else ()):
        a = getattr(traces, name)
        assert a.shape == shape and a.dtype == np.int64, name
    if not config.residual:
        assert traces.residual is None
    np.testing.assert_array_equal(
        traces.outputs, shortcut_int(traces.acc, params.shift, params.bias, config.bits,
                                     traces.residual))


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("name", ["b", "b.zip"], ids=["folder", "zip"])
def test_bundle_round_trip(tmp_path, name, residual):
    config = small(residual=residual)
    path = tmp_path / name
    params, traces = export_shortcut_bundle(path, config, frames=3, spread=3.0, seed=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    check_traces(config, params, traces, 3)
    loaded_config, loaded_params, loaded = load_shortcut_bundle(path)
    assert loaded_config == config and loaded_config.residual is residual
    np.testing.assert_array_equal(loaded_params.shift, ShortcutParams.seeded(config, 4).shift)
    np.testing.assert_array_equal(loaded_params.shift, params.shift)
    np.testing.assert_array_equal(loaded_params.bias, params.bias)
    check_traces(config, loaded_params, loaded, 3)
    for field in ("acc", "residual", "outputs"):
        if getattr(traces, field) is None:
            assert getattr(loaded, field) is None
        else:
            np.testing.assert_array_equal(getattr(loaded, field), getattr(traces, field))
    # a spread of 3 clips to the ranges: the extremes of every width are in the bundle
    half_acc, half = 1 << (config.acc_bits - 1), 1 << (config.bits - 1)
    assert loaded.acc.min() == -half_acc and loaded.acc.max() == half_acc - 1
    assert loaded.outputs.min() == -half and loaded.outputs.max() == half - 1
    if residual:
        assert loaded.residual.min() == -half and loaded.residual.max() == half - 1
        assert sorted(read_bundle(path).arrays) == ["acc", "bias", "outputs", "residual",
                                                    "shift"]
    else:
        assert sorted(read_bundle(path).arrays) == ["acc", "bias", "outputs", "shift"]


def test_bundle_with_explicit_values(tmp_path):
    config = small(channels=3, height=1, width=2, lanes=2, acc_bits=8, bits=5)
    params = ShortcutParams.checked(config, [-24, 15, -1], [-16, 15, 3])
    acc = np.array([[[[-128, 127]], [[1, -1]], [[7, -7]]]])
    residual = np.array([[[[0, 15]], [[-16, 0]], [[2, -2]]]])
    p, traces = export_shortcut_bundle(tmp_path / "b", config, params=params, acc=acc,
                                       residual=residual)
    assert p is params
    _, loaded_params, loaded = load_shortcut_bundle(tmp_path / "b")
    np.testing.assert_array_equal(loaded_params.shift, [-24, 15, -1])
    np.testing.assert_array_equal(loaded.acc, acc)
    np.testing.assert_array_equal(loaded.residual, residual)
    # by hand: ch0: -128 >> 24 = -1 (arithmetic), 127 >> 24 = 0; bias -16: sat(-17) = -16,
    #               -16; + residual 0, 15: -16, -1
    #          ch1: 1 << 15 = 32768, -1 << 15 = -32768; bias 15: sat = 15, -16 (the bias is
    #               added before the first saturation); + residual -16, 0: -1, -16
    #          ch2: 7 >> 1 = 3, -7 >> 1 = -4 (floor); bias 3: 6, -1; + residual 2, -2: 8, -3
    want = [[[[-16, -1]], [[-1, -16]], [[8, -3]]]]
    np.testing.assert_array_equal(loaded.outputs, want)
    np.testing.assert_array_equal(traces.outputs, want)


def test_bundle_export_is_reproducible(tmp_path):
    config = small()
    export_shortcut_bundle(tmp_path / "a.zip", config, seed=2)
    export_shortcut_bundle(tmp_path / "b.zip", config, seed=2)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def shortcut_arrays(config, frames=2, **changes):
    """Arrays of a valid all-zero shortcut bundle of `config`, with `changes` (None drops)."""
    shape = (frames, config.channels, config.height, config.width)
    arrays = {"shift": np.zeros(config.channels, np.int64),
              "bias": np.zeros(config.channels, np.int64),
              "acc": np.zeros(shape, np.int64), "outputs": np.zeros(shape, np.int64)}
    if config.residual:
        arrays["residual"] = np.zeros(shape, np.int64)
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def write_shortcut(path, config, *, config_dict=None, **changes):
    write_bundle(path, unit="shortcut", config=config.to_dict() if config_dict is None
                 else config_dict, arrays=shortcut_arrays(config, **changes))
    return path


@pytest.mark.parametrize("residual", [True, False])
def test_bundle_of_zeros_loads(tmp_path, residual):
    config = small(residual=residual)
    c, p, t = load_shortcut_bundle(write_shortcut(tmp_path / "b", config))
    assert c == config and t.frames == 2
    assert not p.shift.any() and not t.outputs.any()


def test_bundle_values_at_their_limits_load(tmp_path):
    config = small()
    shape = (2, 5, 2, 3)
    _, p, t = load_shortcut_bundle(write_shortcut(
        tmp_path / "b", config, shift=np.array([-24, 15, 0, 0, 0], np.int8),
        bias=np.array([-32, 31, 0, 0, 0], np.int8),
        acc=np.where(np.arange(30).reshape(5, 2, 3) % 2, 511, -512)[None].repeat(2, 0),
        residual=np.full(shape, -32, np.int16), outputs=np.full(shape, 31, np.int32)))
    assert (int(p.shift.min()), int(p.shift.max())) == (-24, 15)
    assert (int(t.acc.min()), int(t.acc.max())) == (-512, 511)
    assert t.acc.dtype == t.residual.dtype == t.outputs.dtype == np.int64


S = (2, 5, 2, 3)
NEEDS = "but the configuration needs integers of shape [frames, 5, 2, 3]"
CORRUPT = [
    # id, residual, changes, phrase (the end of the message)
    ("acc-channels", True, {"acc": np.zeros((2, 6, 2, 3), np.int64)},
     f": array 'acc' has shape [2, 6, 2, 3], {NEEDS}"),
    ("acc-3d", True, {"acc": np.zeros((2, 5, 6), np.int64)},
     f": array 'acc' has shape [2, 5, 6], {NEEDS}"),
    ("acc-5d", False, {"acc": np.zeros((1, 2, 5, 2, 3), np.int64)},
     f": array 'acc' has shape [1, 2, 5, 2, 3], {NEEDS}"),
    ("acc-float", True, {"acc": np.zeros(S, np.float64)},
     f": array 'acc' has shape [2, 5, 2, 3], {NEEDS}"),
    ("acc-bool", True, {"acc": np.zeros(S, bool)},
     f": array 'acc' has shape [2, 5, 2, 3], {NEEDS}"),
    ("outputs-height", True, {"outputs": np.zeros((2, 5, 3, 3), np.int64)},
     f": array 'outputs' has shape [2, 5, 3, 3], {NEEDS}"),
    ("outputs-transposed", False, {"outputs": np.zeros((2, 2, 3, 5), np.int64)},
     f": array 'outputs' has shape [2, 2, 3, 5], {NEEDS}"),
    ("residual-width", True, {"residual": np.zeros((2, 5, 2, 4), np.int64)},
     f": array 'residual' has shape [2, 5, 2, 4], {NEEDS}"),
    ("residual-float", True, {"residual": np.zeros(S, np.float32)},
     f": array 'residual' has shape [2, 5, 2, 3], {NEEDS}"),
    ("residual-without-residual", False, {"residual": np.zeros(S, np.int64)},
     " has a residual array, but its configuration has residual: false"),
    ("no-residual-array", True, {"residual": None}, " has no array 'residual'"),
    ("no-acc", False, {"acc": None}, " has no array 'acc'"),
    ("no-outputs", True, {"outputs": None}, " has no array 'outputs'"),
    ("no-shift", True, {"shift": None}, " has no array 'shift'"),
    ("no-bias", False, {"bias": None}, " has no array 'bias'"),
    ("shift-below", True, {"shift": np.array([0, 0, -25, 0, 0])},
     " does not fit its shortcut configuration: shifts -25 .. 0 are outside -24 .. 15"),
    ("shift-above", False, {"shift": np.array([0, 16, 0, 0, 0])},
     " does not fit its shortcut configuration: shifts 0 .. 16 are outside -24 .. 15"),
    ("shift-shape", True, {"shift": np.zeros(4, np.int64)},
     " does not fit its shortcut configuration: shift must be integers of shape [5], not "
     "int64 [4]"),
    ("shift-float", True, {"shift": np.zeros(5, np.float64)},
     " does not fit its shortcut configuration: shift must be integers of shape [5], not "
     "float64 [5]"),
    ("bias-wide", True, {"bias": np.array([0, 0, 0, 0, 32])},
     " does not fit its shortcut configuration: bias range 0 .. 32 does not fit bits=6"),
    ("bias-shape", False, {"bias": np.zeros((5, 1), np.int64)},
     " does not fit its shortcut configuration: bias must be integers of shape [5], not "
     "int64 [5, 1]"),
    ("acc-too-wide", True, {"acc": np.full(S, 512, np.int64)}, ": acc does not fit 10 bits"),
    ("acc-too-negative", False, {"acc": np.full(S, -513, np.int64)},
     ": acc does not fit 10 bits"),
    ("residual-too-wide", True, {"residual": np.full(S, 32, np.int64)},
     ": residual does not fit 6 bits"),
    ("residual-too-negative", True, {"residual": np.full(S, -33, np.int64)},
     ": residual does not fit 6 bits"),
    ("outputs-too-wide", False, {"outputs": np.full(S, 32, np.uint8)},
     ": outputs does not fit 6 bits"),
    ("outputs-uint64-huge", True, {"outputs": np.full(S, 2**64 - 1, np.uint64)},
     ": outputs does not fit 6 bits"),
    ("frames-outputs", True, {"outputs": np.zeros((3, 5, 2, 3), np.int64)},
     ": arrays disagree on frames"),
    ("frames-residual", True, {"residual": np.zeros((1, 5, 2, 3), np.int64)},
     ": arrays disagree on frames"),
    ("frames-outputs-no-residual", False, {"outputs": np.zeros((1, 5, 2, 3), np.int64)},
     ": arrays disagree on frames"),
]


@pytest.mark.parametrize(("residual", "changes", "phrase"), [c[1:] for c in CORRUPT],
                         ids=[c[0] for c in CORRUPT])
def test_corrupt_bundle(tmp_path, residual, changes, phrase):
    path = write_shortcut(tmp_path / "b", small(residual=residual), **changes)
    with pytest.raises(BundleError) as exc:
        load_shortcut_bundle(path)
    message = str(exc.value)
    assert message == f"bundle {str(path)!r}{phrase}"
    assert "\n" not in message


def test_corrupt_bundle_error_is_not_a_config_error(tmp_path):
    # the loader turns configuration problems into BundleError (the CLI reports both the same
    # way, but callers catching BundleError must see these too)
    path = write_shortcut(tmp_path / "b", small(), shift=np.array([0, 0, -25, 0, 0]))
    with pytest.raises(BundleError) as exc:
        load_shortcut_bundle(path)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


@pytest.mark.parametrize(("config_dict", "phrase"), [
    ({**small().to_dict(), "lanes": 0}, "lanes must be at least 1, not 0"),
    ({**small().to_dict(), "residual": "yes"}, "residual must be true or false, not 'yes'"),
    ({**small().to_dict(), "shift": 3},
     f"unknown shortcut configuration key 'shift' (known: {KNOWN_KEYS})"),
])
def test_bundle_with_invalid_configuration(tmp_path, config_dict, phrase):
    path = write_shortcut(tmp_path / "b", small(), config_dict=config_dict)
    with pytest.raises(BundleError, match=exact(
            f"bundle {str(path)!r} does not fit its shortcut configuration: {phrase}")):
        load_shortcut_bundle(path)


def test_bundle_of_another_unit(tmp_path):
    path = tmp_path / "sae"
    config = SAEConfig(mode="linear", in_channels=2, out_channels=2, kernel=1, padding=0,
                       height=1, width=1, lanes=2, in_lanes=2)
    export_sae_bundle(path, config, frames=1)
    with pytest.raises(BundleError, match=exact(
            f"bundle {str(path)!r} holds a 'sae' unit, not a 'shortcut' unit")):
        load_shortcut_bundle(path)


def test_bundle_checksum_corruption(tmp_path):
    path = tmp_path / "b"
    export_shortcut_bundle(path, small(), frames=1)
    npz = path / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0x01
    npz.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=exact(
            f"bundle {str(path)!r} is corrupt: checksum of arrays.npz does not match the "
            f"manifest")):
        load_shortcut_bundle(path)


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_shortcut_bundle(tmp_path / "nothere.zip")


def test_bundle_with_huge_unsigned_bias_is_refused(tmp_path):
    path = write_shortcut(tmp_path / "b", small(),
                          bias=np.array([2**64 - 1, 0, 0, 0, 0], np.uint64))
    with pytest.raises(BundleError):
        load_shortcut_bundle(path)
