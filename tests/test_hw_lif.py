# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of `hw.lif.LIFArray` against the integer reference `sw.lif_int`.

Every spike and (with `expose_membrane`) every membrane must match exactly, with and without
random stalls on both streams; without stalls the measured cycles must equal the cycle model.
"""

import re

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.back import rtlil
from amaranth.hdl import Fragment
from amaranth.lib import data
from amaranth.sim import Simulator
from amaranth_lif import beats_to_arrays, simulate_lif

from hw.lif import LIFArray
from sim.lif import lif_input_beats
from spec.lif import LIF_HAZARD_DISTANCE, LIF_LATENCY, LIFConfig
from spec.ports import pack, payload_width
from sw.export import random_lif_inputs
from sw.lif_int import lif_int

SAMPLES = 2
NO_STALLS = {"in_stall": 0.0, "out_stall": 0.0}
RANDOM_STALLS = {"in_stall": 0.3, "out_stall": 0.4}


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


def lif(**kw):
    kw.setdefault("expose_membrane", True)
    return LIFConfig(**kw)


def extreme_inputs(config, samples, *, seed):
    """Inputs drawn only from the two ends of the `in_bits` range: drives every sum to saturate."""
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (config.in_bits - 1)), (1 << (config.in_bits - 1)) - 1
    return rng.choice([lo, hi], size=(samples, config.timesteps, config.neurons)).astype(np.int64)


# id -> (config, input kind). Small on purpose: the Amaranth simulator is slow.
CASES = {
    "T1-hard": (lif(neurons=8, lanes=4, timesteps=1), "random"),
    # 2 beats per step < hazard distance 7: every step after the first waits for write-back
    "T4-hard-raw-stall": (lif(neurons=8, lanes=4, timesteps=4), "random"),
    "T4-soft": (lif(neurons=8, lanes=4, timesteps=4, reset="soft", v_th=1.5), "random"),
    "T4-no-decay-input-tau4": (
        lif(neurons=12, lanes=4, timesteps=4, decay_input=False, tau=4), "random"),
    "T4-tau1": (lif(neurons=8, lanes=4, timesteps=4, tau=1, v_th=2.0), "random"),
    "lanes1-T2": (lif(neurons=5, lanes=1, timesteps=2, reset="soft"), "random"),
    # 40 neurons over 16 lanes: 3 beats, the last one half padding
    "lanes16-ragged-T4": (lif(neurons=40, lanes=16, timesteps=4), "random"),
    "lanes16-ragged-T1": (lif(neurons=20, lanes=16, timesteps=1, reset="soft"), "random"),
    # 8 beats per step >= hazard distance: no stall, ragged tail of 2 lanes
    "lanes4-ragged-8-beats-T2": (lif(neurons=30, lanes=4, timesteps=2), "random"),
    # channels do not divide lanes: lane j of beat b is channel (4b + j) % 3
    "channels3-lanes4": (
        lif(neurons=12, lanes=4, channels=3, v_th=(1.0, 0.5, 2.0), bias=(0.0, 0.25, -0.5),
            timesteps=4), "random"),
    # 6 beats, parameter pattern repeats every 3 beats within a step
    "channels3-lanes4-period-wraps": (
        lif(neurons=24, lanes=4, channels=3, v_th=(0.5, 1.5, 1.0), bias=(-0.25, 0.0, 0.5),
            timesteps=2, reset="soft", decay_input=False), "random"),
    # 10 neurons, 5 channels, 4 lanes: ragged tail and a period cut short by beats_per_step
    "channels5-lanes4-ragged": (
        lif(neurons=10, lanes=4, channels=5, v_th=(1.0, 0.5, 2.0, 0.25, 1.5),
            bias=(0.0, 0.5, -0.5, 0.0, 0.25), timesteps=2), "random"),
    "channels2-lanes4": (
        lif(neurons=8, lanes=4, channels=2, v_th=(1.0, 0.75), timesteps=2), "random"),
    "v-reset-hard": (lif(neurons=8, lanes=4, timesteps=4, v_reset=-0.5, v_th=0.75), "random"),
    "v-reset-soft-no-decay": (
        lif(neurons=6, lanes=4, timesteps=4, v_reset=0.25, reset="soft", decay_input=False),
        "random"),
    # v_bits = in_bits + frac_bits: charge, leak and soft reset all saturate
    "saturate-hard": (
        lif(neurons=8, lanes=4, in_bits=4, frac_bits=2, v_bits=6, timesteps=4, bias=-1.0,
            v_th=7.75, decay_input=False), "extremes"),
    "saturate-soft-no-decay": (
        lif(neurons=8, lanes=4, in_bits=4, frac_bits=2, v_bits=6, timesteps=4, reset="soft",
            decay_input=False, v_th=-8.0, bias=-1.0), "extremes"),
    "saturate-per-channel-soft": (
        lif(neurons=6, lanes=4, channels=3, in_bits=3, frac_bits=1, v_bits=4, timesteps=4,
            reset="soft", v_th=(3.5, -4.0, 0.5), bias=(-4.0, 3.5, 0.0), v_reset=-1.0),
        "extremes"),
    "spikes-only": (lif(neurons=10, lanes=4, timesteps=2, expose_membrane=False), "random"),
}
SATURATING = {"saturate-hard", "saturate-soft-no-decay", "saturate-per-channel-soft"}


def case_inputs(name, config, seed=1):
    kind = CASES[name][1]
    if kind == "extremes":
        return extreme_inputs(config, SAMPLES, seed=seed)
    return random_lif_inputs(config, SAMPLES, seed=seed)


def check_beats(config, beats, inputs):
    """Every output beat against the integer model: spikes, membranes, markers, padding."""
    samples = inputs.shape[0]
    per_sample = config.timesteps * config.beats_per_step
    assert len(beats) == samples * per_sample
    for n, beat in enumerate(beats):
        k = n % per_sample
        assert (beat["first"], beat["last"]) == (int(k == 0), int(k == per_sample - 1)), n
        if k % config.beats_per_step == config.beats_per_step - 1:
            # lanes past the last neuron carry nothing
            assert beat["spikes"][config.tail_lanes:] == [0] * (config.lanes - config.tail_lanes)
            if config.expose_membrane:
                assert beat["v"][config.tail_lanes:] == [0] * (config.lanes - config.tail_lanes)
    spikes, membranes = beats_to_arrays(config, beats, samples)
    want_spikes, want_membranes = lif_int(config, inputs)
    np.testing.assert_array_equal(spikes, want_spikes)
    if config.expose_membrane:
        np.testing.assert_array_equal(membranes, want_membranes)
    else:
        assert membranes is None
        assert set(beats[0]) == {"spikes", "first", "last"}


@pytest.mark.parametrize("stalls", [NO_STALLS, RANDOM_STALLS], ids=["no-stalls", "stalls"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_integer_model(name, stalls):
    config = CASES[name][0]
    inputs = case_inputs(name, config)
    beats, cycles = simulate_lif(config, inputs, seed=7, **stalls)
    check_beats(config, beats, inputs)
    if stalls is NO_STALLS:
        assert cycles == config.cycles(SAMPLES)
    else:
        assert cycles >= config.cycles(SAMPLES) - config.latency


@pytest.mark.parametrize("name", sorted(SATURATING))
def test_saturation_cases_saturate(name):
    # keeps the saturation cases meaningful: clamping changes the reference's membranes, and
    # some membrane sits at a bound of v_bits
    config = CASES[name][0]
    inputs = case_inputs(name, config)
    _, membranes = lif_int(config, inputs)
    _, unclamped = lif_int(config.replace(v_bits=40), inputs)
    assert (membranes != unclamped).any()
    assert membranes.min() == config.v_min or membranes.max() == config.v_max


def test_hazard_case_really_stalls():
    config = CASES["T4-hard-raw-stall"][0]
    assert config.beats_per_step < LIF_HAZARD_DISTANCE
    assert config.cycles(SAMPLES) > config.ideal_cycles(SAMPLES) + config.latency


# -- one beat per timestep: the hazard stall right after the first handshake -------------------

SINGLE_BEAT = lif(neurons=12, lanes=16, timesteps=4, v_th=1.5)


@pytest.mark.parametrize("stalls", [NO_STALLS, RANDOM_STALLS], ids=["no-stalls", "stalls"])
def test_single_beat_per_step_exact(stalls):
    inputs = random_lif_inputs(SINGLE_BEAT, SAMPLES, seed=3)
    beats, _ = simulate_lif(SINGLE_BEAT, inputs, seed=5, **stalls)
    check_beats(SINGLE_BEAT, beats, inputs)


def test_single_beat_per_step_cycles_simulate_lif():
    inputs = random_lif_inputs(SINGLE_BEAT, SAMPLES, seed=3)
    _, cycles = simulate_lif(SINGLE_BEAT, inputs)
    assert cycles == SINGLE_BEAT.cycles(SAMPLES)


def handshake_cycles(config, inputs):
    """Cycles of every input and output handshake, both streams unstalled.

    Independent of `simulate_lif`: `valid` and `ready` are sampled before each clock edge.
    """
    dut = LIFArray(config)
    beats_in = lif_input_beats(config, inputs)
    in_fields = config.input_fields()
    taken, given = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(given) < len(beats_in):
            sending = len(taken) < len(beats_in)
            ctx.set(dut.i.valid, sending)
            if sending:
                ctx.set(dut.i.payload.as_value(), pack(in_fields, beats_in[len(taken)]))
            took = sending and ctx.get(dut.i.ready)
            gave = ctx.get(dut.o.valid)
            await ctx.tick()
            if took:
                taken.append(cycle)
            if gave:
                given.append(cycle)
            cycle += 1
            assert cycle < 10_000, "simulation ran away"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return taken, given


def modelled_accepts(config, samples):
    """Input handshake cycles the hazard rule allows: a beat re-reading a membrane waits
    LIF_HAZARD_DISTANCE cycles after the previous timestep's beat at the same address."""
    out, when, cycle = [], {}, -1
    for s in range(samples):
        for t in range(config.timesteps):
            for b in range(config.beats_per_step):
                cycle += 1
                if t:
                    cycle = max(cycle, when[s, t - 1, b] + LIF_HAZARD_DISTANCE)
                when[s, t, b] = cycle
                out.append(cycle)
    return out


@pytest.mark.parametrize("config", [
    SINGLE_BEAT,
    CASES["T4-hard-raw-stall"][0],
    CASES["lanes4-ragged-8-beats-T2"][0],
    CASES["T1-hard"][0],
], ids=["1-beat-T4", "2-beats-T4", "8-beats-T2", "2-beats-T1"])
def test_handshake_timing_matches_cycle_model(config):
    inputs = random_lif_inputs(config, SAMPLES, seed=4)
    taken, given = handshake_cycles(config, inputs)
    assert taken == modelled_accepts(config, SAMPLES)
    assert given == [c + LIF_LATENCY for c in taken]
    assert given[-1] - taken[0] + 1 == config.cycles(SAMPLES)


# -- construction, interface, structure --------------------------------------------------------


def test_rejects_non_config():
    with pytest.raises(TypeError, match=exact("config must be a LIFConfig, not 'not a config'")):
        LIFArray("not a config")


@pytest.mark.parametrize("expose", [False, True])
def test_payload_widths_follow_spec(expose):
    config = LIFConfig(neurons=10, lanes=4, in_bits=5, v_bits=12, frac_bits=3,
                       expose_membrane=expose)
    dut = LIFArray(config)
    assert dut.config is config
    members = dut.signature.members
    i_layout = data.Layout.cast(members["i"].signature.members["payload"].shape)
    o_layout = data.Layout.cast(members["o"].signature.members["payload"].shape)
    assert i_layout.size == payload_width(config.input_fields()) == 4 * 5 + 2
    assert o_layout.size == payload_width(config.output_fields())
    assert o_layout.size == 4 + (4 * 12 if expose else 0) + 2
    assert len(dut.i.payload.as_value()) == i_layout.size
    assert len(dut.o.payload.as_value()) == o_layout.size


def submodule_names(config):
    fragment = Fragment.get(LIFArray(config), None)  # elaborates every level
    return {name for _, name, *_ in fragment.subfragments}


def test_uniform_parameters_build_no_parameter_memory():
    # per-channel values given, but all equal: constants, not a memory
    config = LIFConfig(neurons=12, lanes=4, channels=3, v_th=(1.5, 1.5, 1.5),
                       bias=(0.25, 0.25, 0.25), timesteps=2)
    assert config.uniform_parameters
    assert config.parameter_memory_bits == 0
    assert "pmem" not in submodule_names(config)


def test_per_channel_parameters_build_parameter_memory():
    # the converse, so the check above can fail
    config = CASES["channels3-lanes4"][0]
    assert not config.uniform_parameters
    assert config.parameter_memory_bits == config.param_period * config.lanes * 2 * config.v_bits
    assert "pmem" in submodule_names(config)


class _Multiplier(Elaboratable):
    def __init__(self):
        self.a, self.b, self.y = Signal(8), Signal(8), Signal(16)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a * self.b)
        return m


@pytest.mark.parametrize("name", ["channels3-lanes4-period-wraps", "saturate-soft-no-decay",
                                  "T4-no-decay-input-tau4", "v-reset-hard"])
def test_rtlil_has_no_multiplier(name):
    text = rtlil.convert(LIFArray(CASES[name][0]), name="lif", emit_src=False)
    assert "cell $add" in text  # the grep below looks at real cells
    assert "cell $mul" not in text


def test_multiplier_check_can_fail():
    dut = _Multiplier()
    text = rtlil.convert(dut, name="mul", ports=[dut.a, dut.b, dut.y], emit_src=False)
    assert "cell $mul" in text
