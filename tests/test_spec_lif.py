"""Tests of `spec.lif.LIFConfig`: validation, YAML round trip, derived values, cycle model,
and of `spec.ports.pack`/`unpack`."""

import math
import re

import pytest

from spec.errors import ConfigError
from spec.lif import LIF_HAZARD_DISTANCE, LIF_LATENCY, LIFConfig
from spec.ports import Field, pack, payload_width, unpack

KNOWN_KEYS = (
    "bias, channels, decay_input, expose_membrane, frac_bits, in_bits, lanes, neurons, reset, "
    "tau, timesteps, v_bits, v_reset, v_th"
)


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


# -- construction and validation ---------------------------------------------------------------


def test_defaults_construct():
    c = LIFConfig()
    assert (c.neurons, c.lanes, c.channels) == (256, 16, 1)
    assert (c.v_bits, c.in_bits, c.frac_bits, c.tau) == (16, 8, 4, 2)
    assert c.decay_input is True and c.reset == "hard"
    assert (c.v_reset, c.v_th, c.bias, c.timesteps) == (0.0, 1.0, 0.0, 1)
    assert c.expose_membrane is False
    assert c.shift == 1
    assert (c.v_min, c.v_max) == (-32768, 32767)


INVALID = [
    # integers: minimum, maximum, type
    ({"neurons": 0}, "neurons must be at least 1, not 0"),
    ({"neurons": (1 << 24) + 1}, f"neurons must be at most {1 << 24}, not {(1 << 24) + 1}"),
    ({"lanes": 0}, "lanes must be at least 1, not 0"),
    ({"lanes": 257}, "lanes must be at most 256, not 257"),
    ({"neurons": True}, "neurons must be an integer, not True"),
    ({"lanes": False}, "lanes must be an integer, not False"),
    ({"timesteps": True}, "timesteps must be an integer, not True"),
    ({"lanes": 16.0}, "lanes must be an integer, not 16.0"),
    ({"channels": "4"}, "channels must be an integer, not '4'"),
    ({"channels": 0}, "channels must be at least 1, not 0"),
    ({"neurons": 8, "channels": 9}, "channels must be at most 8, not 9"),
    ({"neurons": 10, "channels": 4},
     "channels (4) must divide neurons (10): neurons are tokens x channels"),
    ({"v_bits": 1}, "v_bits must be at least 2, not 1"),
    ({"v_bits": 49}, "v_bits must be at most 48, not 49"),
    ({"in_bits": 0}, "in_bits must be at least 1, not 0"),
    ({"frac_bits": -1}, "frac_bits must be at least 0, not -1"),
    ({"frac_bits": 48}, "frac_bits must be at most 47, not 48"),
    ({"tau": 0}, "tau must be at least 1, not 0"),
    ({"tau": 1 << 17}, f"tau must be at most {1 << 16}, not {1 << 17}"),
    ({"tau": 3}, "tau must be a power of two, not 3"),
    ({"tau": 6}, "tau must be a power of two, not 6"),
    ({"timesteps": 0}, "timesteps must be at least 1, not 0"),
    ({"timesteps": 65}, "timesteps must be at most 64, not 65"),
    ({"v_bits": 11},
     "v_bits (11) is too small: inputs of in_bits=8 with frac_bits=4 need at least 12"),
    # booleans and the reset mode
    ({"decay_input": 1}, "decay_input must be true or false, not 1"),
    ({"expose_membrane": "yes"}, "expose_membrane must be true or false, not 'yes'"),
    ({"reset": "medium"}, "reset must be 'hard' or 'soft', not 'medium'"),
    # fixed-point values (_check_number and _to_fixed)
    ({"v_th": 0.1}, "v_th 0.1 is not a multiple of 2**-4 (frac_bits=4)"),
    ({"v_th": 0.5, "frac_bits": 0}, "v_th 0.5 is not a multiple of 2**-0 (frac_bits=0)"),
    ({"bias": 1 / 32}, "bias 0.03125 is not a multiple of 2**-4 (frac_bits=4)"),
    ({"v_reset": 0.25, "frac_bits": 1}, "v_reset 0.25 is not a multiple of 2**-1 (frac_bits=1)"),
    ({"v_th": 2048.0},
     "v_th 2048.0 does not fit v_bits=16 with frac_bits=4 (range -2048.0 .. 2047.9375)"),
    ({"v_th": -2048.0625},
     "v_th -2048.0625 does not fit v_bits=16 with frac_bits=4 (range -2048.0 .. 2047.9375)"),
    ({"v_reset": 4096},
     "v_reset 4096 does not fit v_bits=16 with frac_bits=4 (range -2048.0 .. 2047.9375)"),
    ({"v_th": "1.0"}, "v_th must be a number, not '1.0'"),
    ({"v_th": True}, "v_th must be a number, not True"),
    ({"bias": None}, "bias must be a number, not None"),
    ({"v_th": math.inf}, "v_th must be finite, not inf"),
    ({"v_reset": math.nan}, "v_reset must be finite, not nan"),
    # per-channel lists
    ({"neurons": 16, "channels": 4, "v_th": [1.0, 1.0]}, "v_th has 2 values, but channels is 4"),
    ({"neurons": 16, "channels": 4, "bias": (0.0,) * 5}, "bias has 5 values, but channels is 4"),
    ({"neurons": 16, "channels": 4, "v_th": [1.0, 0.5, 5000, 1.0]},
     "v_th[2] 5000.0 does not fit v_bits=16 with frac_bits=4 (range -2048.0 .. 2047.9375)"),
    ({"neurons": 16, "channels": 4, "bias": [0.0, 0.0, 0.0, 0.01]},
     "bias[3] 0.01 is not a multiple of 2**-4 (frac_bits=4)"),
    ({"neurons": 16, "channels": 4, "v_th": [1.0, False, 1.0, 1.0]},
     "v_th[1] must be a number, not False"),
]


@pytest.mark.parametrize(("changes", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_configuration(changes, message):
    with pytest.raises(ConfigError, match=exact(message)):
        LIFConfig(**changes)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_from_dict_unknown_key():
    with pytest.raises(ConfigError) as exc:
        LIFConfig.from_dict({"neurons": 16, "neuron": 3})
    assert str(exc.value) == f"unknown LIF configuration key 'neuron' (known: {KNOWN_KEYS})"


def test_from_dict_not_a_mapping():
    with pytest.raises(ConfigError, match=exact("a LIF configuration must be a mapping, not list")):
        LIFConfig.from_dict([("neurons", 16)])


def test_from_dict_validates():
    with pytest.raises(ConfigError, match=exact("lanes must be at least 1, not 0")):
        LIFConfig.from_dict({"lanes": 0})


def test_replace_validates_and_keeps_the_rest():
    c = LIFConfig(neurons=64, lanes=8)
    d = c.replace(timesteps=4)
    assert d.timesteps == 4 and d.neurons == 64 and d.lanes == 8
    with pytest.raises(ConfigError, match=exact("tau must be a power of two, not 5")):
        c.replace(tau=5)


def test_per_channel_list_becomes_tuple_and_is_hashable():
    c = LIFConfig(neurons=12, channels=3, v_th=[1, 0.5, 2.0], bias=[0, 0.25, -0.5])
    assert c.v_th == (1.0, 0.5, 2.0)
    assert c.bias == (0.0, 0.25, -0.5)
    hash(c)


# -- YAML ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        LIFConfig(),
        LIFConfig(neurons=360, lanes=16, channels=3, v_bits=24, in_bits=10, frac_bits=6, tau=4,
                  decay_input=False, reset="soft", v_reset=-0.5, v_th=[1.0, 0.5, 2.25],
                  bias=[0.0, -0.125, 0.5], timesteps=4, expose_membrane=True),
    ],
    ids=["defaults", "everything-set"],
)
def test_yaml_round_trip(tmp_path, config):
    path = tmp_path / "lif.yaml"
    config.save(path)
    loaded = LIFConfig.load(path)
    assert loaded == config
    assert loaded.to_dict() == config.to_dict()
    # no temporary file left behind by the atomic write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lif.yaml"]


def test_load_of_a_non_lif_file(tmp_path):
    path = tmp_path / "conv.yaml"
    path.write_text("unit: conv\nconfig: {channels: 4}\n")
    with pytest.raises(ConfigError) as exc:
        LIFConfig.load(path)
    assert str(exc.value) == (
        f"configuration file {str(path)!r} is not a LIF configuration "
        f"(expected 'unit: lif' and a 'config' mapping)"
    )


def test_load_of_a_lif_file_without_config(tmp_path):
    path = tmp_path / "lif.yaml"
    path.write_text("unit: lif\n")
    with pytest.raises(ConfigError, match="is not a LIF configuration"):
        LIFConfig.load(path)


def test_load_of_a_missing_file(tmp_path):
    path = tmp_path / "nothere.yaml"
    message = f"configuration file {str(path)!r} does not exist"
    with pytest.raises(ConfigError, match=exact(message)):
        LIFConfig.load(path)


def test_load_of_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("unit: lif\nconfig: {neurons: [1, 2\n")
    with pytest.raises(ConfigError, match="^" + re.escape(
        f"configuration file {str(path)!r} is not valid YAML: "
    )):
        LIFConfig.load(path)


def test_load_of_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- unit\n- lif\n")
    with pytest.raises(ConfigError, match=exact(
        f"configuration file {str(path)!r} must hold a mapping, not list"
    )):
        LIFConfig.load(path)


def test_load_of_a_file_with_an_invalid_value(tmp_path):
    path = tmp_path / "lif.yaml"
    path.write_text("unit: lif\nconfig: {neurons: 16, reset: medium}\n")
    with pytest.raises(ConfigError, match=exact("reset must be 'hard' or 'soft', not 'medium'")):
        LIFConfig.load(path)


# -- derived values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("neurons", "lanes", "beats", "tail"),
    [
        (256, 16, 16, 16),  # 256 = 16 * 16: every beat full
        (360, 16, 23, 8),  # 22 full beats = 352 neurons, 8 left for the 23rd
        (5, 16, 1, 5),  # fewer neurons than lanes: one partial beat
        (17, 16, 2, 1),
        (1, 1, 1, 1),
    ],
)
def test_beats_and_tail(neurons, lanes, beats, tail):
    c = LIFConfig(neurons=neurons, lanes=lanes)
    assert c.beats_per_step == beats
    assert c.tail_lanes == tail
    assert (c.beats_per_step - 1) * lanes + c.tail_lanes == neurons


def distinct_lane_patterns(neurons, lanes, channels):
    """Brute force: how many different per-lane channel patterns the beats of one timestep
    carry (lane l of beat b holds neuron b*lanes + l, of channel (b*lanes + l) % channels)."""
    beats = math.ceil(neurons / lanes)
    return len({
        tuple((b * lanes + lane) % channels for lane in range(lanes)) for b in range(beats)
    })


@pytest.mark.parametrize(
    ("neurons", "lanes", "channels", "period"),
    [
        (3 * 64, 16, 3, 3),  # gcd(3, 16) = 1: the pattern repeats after 3 beats
        (256 * 4, 16, 256, 16),  # 256 / gcd(256, 16) = 16
        (360 * 4, 16, 360, 45),  # 360 / gcd(360, 16) = 45; 90 beats, so not capped
        (360, 16, 360, 23),  # 45 capped by beats_per_step = ceil(360 / 16) = 23
        (256, 16, 1, 1),  # one channel: one pattern
        (64, 16, 8, 1),  # channels divide lanes: every beat sees the same pattern
        (48, 16, 48, 3),  # one token: every beat different
    ],
)
def test_param_period(neurons, lanes, channels, period):
    c = LIFConfig(neurons=neurons, lanes=lanes, channels=channels)
    assert c.param_period == period
    assert c.param_period == distinct_lane_patterns(neurons, lanes, channels)


def test_fixed_point_scaling():
    c = LIFConfig(neurons=12, channels=3, frac_bits=2, v_th=[0.5, -0.25, 1.5],
                  bias=[0.0, 0.75, -2.0], v_reset=-0.5)
    # value * 2**2
    assert c.v_th_fixed == (2, -1, 6)
    assert c.bias_fixed == (0, 3, -8)
    assert c.v_reset_fixed == -2
    assert not c.uniform_parameters
    d = LIFConfig(neurons=12, channels=3, frac_bits=4, v_th=1.0, bias=0.125)
    # scalars broadcast to every channel: 1.0 * 16 = 16, 0.125 * 16 = 2
    assert d.v_th_fixed == (16, 16, 16)
    assert d.bias_fixed == (2, 2, 2)
    assert d.uniform_parameters
    # the extreme representable values
    e = LIFConfig(v_bits=16, frac_bits=4, v_th=2047.9375, bias=-2048.0)
    assert e.v_th_fixed == (32767,)
    assert e.bias_fixed == (-32768,)


def test_memory_footprint():
    c = LIFConfig(neurons=360, lanes=16, channels=360, v_th=[1.0] * 359 + [0.5], timesteps=4)
    # 23 beats of 16 lanes of 16-bit membranes; 23 parameter words of 16 lanes x (v_th, bias)
    assert c.membrane_memory_bits == 23 * 16 * 16
    # at T = 1 no membrane outlives its timestep: no membrane memory
    assert c.replace(timesteps=1).membrane_memory_bits == 0
    assert c.parameter_memory_bits == 23 * 16 * 2 * 16
    assert LIFConfig().parameter_memory_bits == 0


# -- cycle model --------------------------------------------------------------------------------

# Documented in spec/lif.py: 7 cycles from accepting a beat to its membrane landing in memory;
# 8 cycles from input to output (6 pipeline stages, then a 2-cycle output FIFO).
HAZARD = 7
LATENCY = 6 + 2


def test_documented_constants():
    assert LIF_HAZARD_DISTANCE == HAZARD
    assert LIF_LATENCY == LATENCY
    assert LIFConfig().latency == LATENCY


def expected_cycles(neurons, lanes, timesteps, samples):
    """The documented model: the first timestep of a sample takes ceil(neurons/lanes) beats; each
    later one at least the hazard distance (it re-reads membranes written a timestep earlier);
    samples stream back to back; the last output leaves `latency` cycles after the last input."""
    beats = math.ceil(neurons / lanes)
    per_sample = beats + (timesteps - 1) * max(beats, HAZARD)
    return samples * per_sample + LATENCY


@pytest.mark.parametrize("neurons", [1, 16, 32, 100, 112, 113, 256, 360])
@pytest.mark.parametrize("timesteps", [1, 2, 4])
@pytest.mark.parametrize("samples", [1, 3])
def test_cycles_formula(neurons, timesteps, samples):
    c = LIFConfig(neurons=neurons, lanes=16, timesteps=timesteps)
    assert c.cycles(samples) == expected_cycles(neurons, 16, timesteps, samples)
    assert c.ideal_cycles(samples) == samples * math.ceil(neurons / 16) * timesteps
    assert c.cycles(samples) >= c.ideal_cycles(samples)


def test_cycles_hand_worked():
    # 256 neurons / 16 lanes = 16 beats >= 7: no hazard stall; T=4, 3 samples:
    # 3 * (16 * 4) + 8 = 200; ideal 3 * 16 * 4 = 192
    c = LIFConfig(neurons=256, lanes=16, timesteps=4)
    assert c.cycles(3) == 200
    assert c.ideal_cycles(3) == 192
    # 32 neurons / 16 lanes = 2 beats < 7: timesteps 2..4 wait for the write-back;
    # 2 * (2 + 3 * 7) + 8 = 54; ideal 2 * 2 * 4 = 16
    c = LIFConfig(neurons=32, lanes=16, timesteps=4)
    assert c.cycles(2) == 54
    assert c.ideal_cycles(2) == 16
    assert c.step_cycles(first=True) == 2
    assert c.step_cycles() == 7
    # T = 1 never stalls: 5 samples of 2 beats + 8 = 18
    c = LIFConfig(neurons=32, lanes=16, timesteps=1)
    assert c.cycles(5) == 18
    assert c.cycles() == 2 + 8


# -- stream payloads (spec.ports) ---------------------------------------------------------------


def test_input_and_output_fields():
    c = LIFConfig(lanes=4, in_bits=6, v_bits=12, frac_bits=3)
    fin = c.input_fields()
    assert [f.name for f in fin] == ["x", "first", "last"]
    assert payload_width(fin) == 4 * 6 + 1 + 1
    assert [f.name for f in c.output_fields()] == ["spikes", "first", "last"]
    assert payload_width(c.output_fields()) == 4 + 2
    e = c.replace(expose_membrane=True)
    assert [f.name for f in e.output_fields()] == ["spikes", "v", "first", "last"]
    assert payload_width(e.output_fields()) == 4 + 4 * 12 + 2


def test_pack_unpack_round_trip_signed():
    fields = LIFConfig(lanes=4, in_bits=8).input_fields()
    values = {"x": [-128, -1, 0, 127], "first": 1, "last": 0}
    word = pack(fields, values)
    # first field in the low bits: 0x80, 0xff, 0x00, 0x7f, then first=1 at bit 32, last=0 at 33
    assert word == 0x80 | 0xFF << 8 | 0x00 << 16 | 0x7F << 24 | 1 << 32
    assert unpack(fields, word) == values


def test_pack_unpack_round_trip_output_with_membrane():
    fields = LIFConfig(lanes=3, expose_membrane=True).output_fields()
    values = {"spikes": [1, 0, 1], "v": [-32768, 32767, -5], "first": 0, "last": 1}
    assert unpack(fields, pack(fields, values)) == values


def test_pack_unpack_scalar_signed_field():
    fields = (Field("a", 3), Field("b", 5, signed=True), Field("c", 1))
    for b in range(-16, 16):
        values = {"a": 5, "b": b, "c": 1}
        assert unpack(fields, pack(fields, values)) == values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"x": [0, 128, 0, 0], "first": 0, "last": 0},
         "value 128 of field 'x' does not fit 8 bits"),
        ({"x": [-129, 0, 0, 0], "first": 0, "last": 0},
         "value -129 of field 'x' does not fit 8 bits"),
        ({"x": [0, 0, 0, 0], "first": 2, "last": 0},
         "value 2 of field 'first' does not fit 1 bits"),
        ({"x": [0, 0, 0, 0], "first": 0, "last": -1},
         "value -1 of field 'last' does not fit 1 bits"),
        ({"x": [0, 0, 0], "first": 0, "last": 0}, "field 'x' needs 4 elements, not 3"),
    ],
)
def test_pack_rejects(values, message):
    fields = LIFConfig(lanes=4, in_bits=8).input_fields()
    with pytest.raises(ValueError, match=exact(message)):
        pack(fields, values)
