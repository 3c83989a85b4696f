# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of `hw.sae.SpikeAccumulator` against the integer reference
`sw.sae_int`: every output value exact, output markers, the cycle model exact without stalls,
saturation, back-to-back frames; the constant multiplier `hw.common.mul_const`.
"""

import gc
import re
import warnings

import numpy as np
import pytest
from amaranth import Module
from amaranth.back import rtlil
from amaranth.hdl import UnusedElaboratable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from amaranth_streams import run_streams

from hw.common import mul_const
from hw.depthwise import DepthwiseEngine
from hw.sae import SAEEngine, SpikeAccumulator
from sim.sae import random_sae_inputs, sae_expected_beats, sae_input_beats, sae_output_arrays
from spec.errors import ConfigError
from spec.sae import SAE_OUT_FIFO_DEPTH, SAEConfig, SAEParams, SAETraces
from sw.export import random_spikes
from sw.lif_int import saturate
from sw.sae_int import sae_int

FRAMES = 2
DENSITIES = [0.0, 0.05, 0.25, 1.0]
NO_STALLS = {"in_stall": 0.0, "out_stall": 0.0}
RANDOM_STALLS = {"in_stall": 0.3, "out_stall": 0.4}
WEIGHT_SEED = 3


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


def conv(**kw):
    return SAEConfig(mode="conv", **kw)


def depthwise(channels, **kw):
    return SAEConfig(mode="depthwise", in_channels=channels, out_channels=channels, **kw)


def linear(**kw):
    return SAEConfig(mode="linear", kernel=1, stride=1, padding=0, **kw)


# id -> configuration. Small on purpose: the Amaranth simulator is slow.
CASES = {
    # 9 inputs over 4 input lanes, 5 outputs over 4 lanes: ragged on both sides; saturates
    "linear-ragged-sat": linear(in_channels=9, out_channels=5, height=3, width=2, lanes=4,
                                in_lanes=4, w_bits=4, acc_bits=5),
    # non-square map, in_channels 3 over 2 input lanes, out_channels 6 over 4 lanes; saturates
    "conv-k3-s1-p1-sat": conv(in_channels=3, out_channels=6, kernel=3, stride=1, padding=1,
                              height=4, width=3, lanes=4, in_lanes=2, w_bits=4, acc_bits=5),
    "conv-k3-s2-p0": conv(in_channels=5, out_channels=4, kernel=3, stride=2, padding=0,
                          height=5, width=6, lanes=4, in_lanes=4),
    "conv-k3-s2-p1-nobias": conv(in_channels=2, out_channels=9, kernel=3, stride=2, padding=1,
                                 height=5, width=4, lanes=4, in_lanes=2, bias=False),
    # stride 2 over kernel 1: every other row and column touches nothing (including the last
    # column, so a frame can end on an event that does no work)
    "conv-k1-s2-p0": conv(in_channels=6, out_channels=10, kernel=1, stride=2, padding=0,
                          height=3, width=4, lanes=8, in_lanes=4),
    "conv-k5-s1-p1-sat": conv(in_channels=2, out_channels=3, kernel=5, stride=1, padding=1,
                              height=5, width=6, lanes=2, in_lanes=2, w_bits=3, acc_bits=5),
    "conv-k5-s2-p0": conv(in_channels=3, out_channels=2, kernel=5, stride=2, padding=0,
                          height=7, width=5, lanes=2, in_lanes=4),
    # 6 channels over 4 lanes: the second group is half padding; saturates
    "dw-k3-s1-p1-sat": depthwise(6, kernel=3, stride=1, padding=1, height=4, width=5, lanes=4,
                                 in_lanes=4, w_bits=4, acc_bits=5),
    "dw-k3-s2-p0": depthwise(5, kernel=3, stride=2, padding=0, height=5, width=5, lanes=4,
                             in_lanes=4),
    "dw-k5-s1-p1": depthwise(3, kernel=5, stride=1, padding=1, height=4, width=5, lanes=2,
                             in_lanes=2),
    "dw-k5-s2-p2-sat": depthwise(4, kernel=5, stride=2, padding=2, height=6, width=5, lanes=4,
                                 in_lanes=4, w_bits=4, acc_bits=5),
    "dw-k3-lanes1": depthwise(3, kernel=3, stride=1, padding=1, height=3, width=4, lanes=1,
                              in_lanes=1, w_bits=3, acc_bits=8),
    # edge sizes: a single accumulator word; a 1x1 map with one input channel (one weight word)
    "conv-one-word": conv(in_channels=2, out_channels=3, kernel=3, padding=0, height=3, width=3,
                          lanes=4, in_lanes=2),
    "linear-1x1-map": linear(in_channels=1, out_channels=3, height=1, width=1, lanes=4,
                             in_lanes=1),
}
SATURATING = {name for name in CASES if name.endswith("-sat")}
# saturation while accumulating (not only at the end) changes the result
MID_SATURATING = SATURATING - {"linear-ragged-sat"}


def spikes_for(config, density, frames=FRAMES, seed=1):
    return random_spikes((frames, config.in_channels, config.height, config.width), density,
                         seed=seed)


def params_for(config):
    return SAEParams.seeded(config, WEIGHT_SEED)


def simulate(config, params, spikes, *, start=None, seed=0, **stalls):
    """Stream `spikes` through a `SpikeAccumulator`; returns the `StreamRun`."""
    frames = spikes.shape[0]
    if start is None:
        start = config.acc_words + 2  # after reset the engine zeroes its accumulators first
    return run_streams(SpikeAccumulator(config, params), config.input_fields(),
                       sae_input_beats(config, spikes), config.output_fields(),
                       done=lambda r: len(r.outputs) >= frames * config.acc_words,
                       start=start, seed=seed, **stalls)


def wide_reference(config, params, spikes):
    """The same weights and bias with an accumulator too wide to ever saturate."""
    wide = config.replace(acc_bits=config.lossless_acc_bits + 2)
    return sae_int(wide, SAEParams.checked(wide, params.weight, params.bias), spikes)


def check_markers(config, beats, frames):
    assert len(beats) == frames * config.acc_words
    for n, beat in enumerate(beats):
        k = n % config.acc_words
        assert (beat["first"], beat["last"]) == (int(k == 0), int(k == config.acc_words - 1)), n


def check_outputs(config, params, spikes, beats):
    """Every output value (and the padding lanes, and the markers) against `sae_int`."""
    frames = spikes.shape[0]
    check_markers(config, beats, frames)
    want = sae_int(config, params, spikes)
    got = sae_output_arrays(config, beats, frames)
    np.testing.assert_array_equal(got, want)
    expected = sae_expected_beats(config, SAETraces(inputs=spikes, outputs=want))
    assert beats == [e.values for e in expected]
    return got


# -- every configuration, every density: exact values, exact cycles -----------------------------


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_integer_model_without_stalls(name, density):
    config = CASES[name]
    params = params_for(config)
    spikes = spikes_for(config, density)
    run = simulate(config, params, spikes, **NO_STALLS)
    got = check_outputs(config, params, spikes, run.outputs)
    assert run.cycles == config.cycles(spikes)
    assert run.cycles >= config.ideal_cycles(spikes)
    if name in SATURATING and density == 1.0:
        # the engine really clamped: a wide accumulator gives other values
        assert (got != wide_reference(config, params, spikes)).any()


@pytest.mark.parametrize("name", list(CASES))
def test_matches_integer_model_with_random_stalls(name):
    config = CASES[name]
    params = params_for(config)
    spikes = spikes_for(config, 0.25, seed=2)
    run = simulate(config, params, spikes, seed=7, **RANDOM_STALLS)
    check_outputs(config, params, spikes, run.outputs)
    assert run.cycles >= config.cycles(spikes)


@pytest.mark.parametrize("name", ["conv-k3-s1-p1-sat", "dw-k3-s1-p1-sat"])
def test_heavy_output_backpressure(name):
    # more accumulator words than the output FIFO holds: the drain's credit counter must stop
    # it before the FIFO overflows
    config = CASES[name]
    assert config.acc_words > SAE_OUT_FIFO_DEPTH
    params = params_for(config)
    spikes = spikes_for(config, 0.25, seed=4)
    run = simulate(config, params, spikes, seed=3, in_stall=0.0, out_stall=0.85)
    check_outputs(config, params, spikes, run.outputs)


@pytest.mark.parametrize("name", sorted(SATURATING))
def test_saturation_cases_saturate(name):
    # keeps the saturating cases meaningful
    config = CASES[name]
    params = params_for(config)
    spikes = spikes_for(config, 1.0)
    want = sae_int(config, params, spikes)
    wide = wide_reference(config, params, spikes)
    assert config.acc_bits < config.lossless_acc_bits
    assert (want != wide).any()
    assert want.min() == -(1 << (config.acc_bits - 1)) or want.max() == (1 << (config.acc_bits
                                                                                  - 1)) - 1
    if name in MID_SATURATING:
        # clamping only the final sum is not the same: the per-add order matters
        assert (want != saturate(wide, config.acc_bits)).any()


def test_cases_cover_the_requested_geometries():
    configs = list(CASES.values())
    assert {c.mode for c in configs} == {"linear", "conv", "depthwise"}
    convs = [c for c in configs if c.mode == "conv"]
    assert {c.stride for c in convs} >= {1, 2}
    assert {c.padding for c in convs} >= {0, 1}
    assert {c.kernel for c in convs} >= {1, 3, 5}
    dws = [c for c in configs if c.mode == "depthwise"]
    assert {c.kernel for c in dws} >= {3, 5}
    assert {c.stride for c in dws} >= {1, 2}
    assert any(c.height != c.width for c in configs)
    assert any(c.in_channels % c.in_lanes for c in configs)
    assert any(c.out_channels % c.lanes for c in configs)
    assert any(c.bias is False for c in configs)


# -- frames back to back, start before the clear has finished --------------------------------


@pytest.mark.parametrize("name", ["conv-k3-s1-p1-sat", "dw-k5-s2-p2-sat", "linear-ragged-sat"])
def test_three_frames_are_independent(name):
    # no reset between frames: a dense frame, an empty one, a sparse one; the drain of each
    # frame must leave every accumulator at zero for the next
    config = CASES[name]
    params = params_for(config)
    spikes = np.concatenate([spikes_for(config, 1.0, frames=1, seed=5),
                             spikes_for(config, 0.0, frames=1, seed=5),
                             spikes_for(config, 0.25, frames=1, seed=6)])
    run = simulate(config, params, spikes, **NO_STALLS)
    got = check_outputs(config, params, spikes, run.outputs)
    for f in range(3):
        np.testing.assert_array_equal(got[f], sae_int(config, params, spikes[f:f + 1])[0])
    # the empty frame is the bias alone
    bias = params.bias if config.bias else np.zeros(config.out_channels, np.int64)
    np.testing.assert_array_equal(got[1], np.broadcast_to(bias[:, None, None], got[1].shape))
    assert run.cycles == config.cycles(spikes)


def test_input_offered_during_the_clear():
    # input valid from the first cycle after reset: the engine holds it off until its
    # accumulators are zero
    config = CASES["dw-k3-s1-p1-sat"]
    params = params_for(config)
    spikes = spikes_for(config, 0.25)
    run = simulate(config, params, spikes, start=0, **NO_STALLS)
    check_outputs(config, params, spikes, run.outputs)


# -- construction ----------------------------------------------------------------------------

SMALL = CASES["conv-one-word"]


def test_engine_rejects_wrong_config_type():
    with pytest.raises(TypeError,
                       match=exact("config must be a linear or conv SAEConfig, not 'conv'")):
        SAEEngine("conv", params_for(SMALL))
    dw = SAEConfig(mode="depthwise", in_channels=4, out_channels=4, kernel=3, padding=1,
                   height=3, width=3, lanes=4, in_lanes=4)
    with pytest.raises(TypeError, match=r"^config must be a linear or conv SAEConfig, not "):
        SAEEngine(dw, params_for(dw))
    with pytest.raises(TypeError, match=r"^config must be a depthwise SAEConfig, not "):
        DepthwiseEngine(SMALL, params_for(SMALL))


def test_engine_rejects_wrong_params_type():
    weight = params_for(SMALL).weight
    with pytest.raises(TypeError, match=exact(f"params must be SAEParams, not {weight!r}")):
        SAEEngine(SMALL, weight)
    with pytest.raises(TypeError, match=exact("params must be SAEParams, not None")):
        SAEEngine(SMALL, None)


def test_engine_rechecks_params_against_config():
    other = SMALL.replace(in_channels=3)
    with pytest.raises(ConfigError, match=exact(
            "weights must be integers of shape [3, 2, 3, 3], not int64 [3, 3, 3, 3]")):
        SAEEngine(SMALL, params_for(other))


def test_accumulator_rejects_wrong_config_type():
    params = params_for(SMALL)
    with warnings.catch_warnings():
        # the encoder object whose constructor raised is never elaborated: collect it here,
        # where its warning is expected, not in a later test
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match=exact("config must be an SAEConfig, not 3")):
            SpikeAccumulator(3, params)
        gc.collect()


@pytest.mark.parametrize("name", ["conv-k3-s2-p1-nobias", "dw-k5-s1-p1", "linear-ragged-sat"])
def test_rtlil_has_no_multiplier(name):
    config = CASES[name]
    text = rtlil.convert(SpikeAccumulator(config, params_for(config)), name="sae",
                         emit_src=False)
    assert "cell $add" in text  # the grep below looks at real cells
    assert "cell $mul" not in text


# -- mul_const ---------------------------------------------------------------------------------

X_BITS = 6


class _Scaled(wiring.Component):
    """`y = x * constant`, by `mul_const` or (for the counter-check) by `*`."""

    def __init__(self, constant, *, use_star=False):
        self.constant, self.use_star = constant, use_star
        super().__init__({"x": In(X_BITS), "y": Out(X_BITS + max(1, constant.bit_length()))})

    def elaborate(self, platform):
        m = Module()
        product = self.x * self.constant if self.use_star else mul_const(self.x, self.constant)
        m.d.comb += self.y.eq(product)
        return m


CONSTANTS = [0, 1, 2, 4, 64, 3, 9, 25, 144, 255, 1000]


@pytest.mark.parametrize("constant", CONSTANTS)
def test_mul_const_equals_product(constant):
    dut = _Scaled(constant)
    results = {}

    async def bench(ctx):
        for x in range(1 << X_BITS):
            ctx.set(dut.x, x)
            results[x] = ctx.get(dut.y)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert results == {x: x * constant for x in range(1 << X_BITS)}


@pytest.mark.parametrize("constant", [0, 1, 2, 64, 3, 144, 255])
def test_mul_const_rtlil_has_no_mul_cell(constant):
    text = rtlil.convert(_Scaled(constant), name="scaled", emit_src=False)
    assert "cell $mul" not in text
    if bin(constant).count("1") > 1:
        assert "cell $add" in text  # the shifted copies are summed


def test_multiplier_check_can_fail():
    text = rtlil.convert(_Scaled(144, use_star=True), name="scaled", emit_src=False)
    assert "cell $mul" in text


def test_mul_const_rejects_negative_constant():
    with pytest.raises(ValueError, match=exact("constant must be non-negative, not -3")):
        mul_const(_Scaled(1).x, -3)


# -- multi-bit inputs: one event per set magnitude bit, +-(w << plane) ------------------------


def multi_bit(**kw):
    """A multi-bit configuration with acc_bits = lossless_acc_bits."""
    c = SAEConfig(**kw, acc_bits=48)
    return c.replace(acc_bits=c.lossless_acc_bits)


MULTI_BIT_CASES = {
    # a first layer: 5-bit unsigned pixels, one channel, 3 x 3, padding 1
    "mb-u5-conv-k3-p1": multi_bit(mode="conv", in_channels=1, out_channels=6, kernel=3,
                                  padding=1, height=4, width=4, lanes=4, in_lanes=1, in_bits=5),
    # a SepConv's second 1x1 on signed accumulations; 2 output words per token, so the planes
    # of one token's events wait for each other's writes (the hazard)
    "mb-s12-linear-16-8": multi_bit(mode="linear", kernel=1, padding=0, in_channels=16,
                                    out_channels=8, height=2, width=2, lanes=4, in_lanes=16,
                                    in_bits=12, in_signed=True),
    # signed conv, stride 2, 3 channels over 2 input lanes (a padding lane), no bias
    "mb-s6-conv-k3-s2": multi_bit(mode="conv", in_channels=3, out_channels=5, kernel=3,
                                  stride=2, padding=1, height=5, width=5, lanes=4, in_lanes=2,
                                  in_bits=6, in_signed=True, w_bits=5, bias=False),
    # lanes need not be a power of two: 5 channels over 3 input lanes (a padding lane)
    "mb-s4-linear-l3": multi_bit(mode="linear", kernel=1, padding=0, in_channels=5,
                                 out_channels=6, height=2, width=3, lanes=2, in_lanes=3,
                                 in_bits=4, in_signed=True),
}


def values_for(config, density, frames=FRAMES, seed=1):
    return random_sae_inputs(config, (frames, config.in_channels, config.height, config.width),
                             density, seed=seed)


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("name", list(MULTI_BIT_CASES))
def test_multi_bit_matches_integer_model_without_stalls(name, density):
    config = MULTI_BIT_CASES[name]
    params = params_for(config)
    values = values_for(config, density)
    run = simulate(config, params, values, **NO_STALLS)
    check_outputs(config, params, values, run.outputs)
    assert run.cycles == config.cycles(values)
    assert run.cycles >= config.ideal_cycles(values)
    if density == 0.0:
        assert run.cycles == config.cycles(np.zeros_like(values))


@pytest.mark.parametrize("name", list(MULTI_BIT_CASES))
def test_multi_bit_with_random_stalls(name):
    config = MULTI_BIT_CASES[name]
    params = params_for(config)
    values = values_for(config, 0.5, seed=2)
    run = simulate(config, params, values, seed=7, **RANDOM_STALLS)
    check_outputs(config, params, values, run.outputs)
    assert run.cycles >= config.cycles(values)


@pytest.mark.parametrize("name", list(MULTI_BIT_CASES))
def test_multi_bit_extremes(name):
    # frame 0: every input the most negative value (signed: one event at the top plane, neg);
    # frame 1: every input the largest; frame 2: both mixed with zeros. Weights at their
    # extremes too, so the shifted terms and the sums reach their widest.
    config = MULTI_BIT_CASES[name]
    lo, hi = config.input_range
    shape = (1, config.in_channels, config.height, config.width)
    rng = np.random.default_rng(9)
    mixed = rng.choice([lo, hi, 0], size=shape)
    values = np.concatenate([np.full(shape, lo), np.full(shape, hi), mixed])
    w_lo = -(1 << (config.w_bits - 1))
    weight = np.where(rng.random(config.weight_shape) < 0.5, w_lo, -w_lo - 1)
    bias = params_for(config).bias
    params = SAEParams.checked(config, weight, bias)
    run = simulate(config, params, values, **NO_STALLS)
    got = check_outputs(config, params, values, run.outputs)
    assert run.cycles == config.cycles(values)
    if config.in_signed:
        # the most negative input flips the sign of the sum of its weights
        assert (got[0] != got[1]).any()


def test_multi_bit_case_reaches_the_accumulator_limits():
    # with all weights at the most negative value and all inputs at the extreme, an output
    # that sees the whole fan-in needs every bit of lossless_acc_bits: the datapath carries it
    config = MULTI_BIT_CASES["mb-s12-linear-16-8"].replace(bias=False)
    w_lo = -(1 << (config.w_bits - 1))
    params = SAEParams.checked(config, np.full(config.weight_shape, w_lo), None)
    lo = config.input_range[0]
    values = np.full((1, config.in_channels, config.height, config.width), lo)
    run = simulate(config, params, values, **NO_STALLS)
    got = check_outputs(config, params, values, run.outputs)
    assert int(got.max()) == w_lo * lo * config.fan_in
    assert int(got.max()).bit_length() == config.acc_bits - 1


def test_multi_bit_cases_cover_the_requested_geometries():
    configs = list(MULTI_BIT_CASES.values())
    assert {c.mode for c in configs} == {"linear", "conv"}
    assert {c.in_signed for c in configs} == {True, False}
    assert any(c.stride == 2 for c in configs)
    assert any(c.in_channels == 1 and c.kernel == 3 and c.padding == 1 and c.in_bits == 5
               and not c.in_signed for c in configs)
    assert any(c.in_bits == 12 and c.in_signed and c.in_lanes == 16 and c.mode == "linear"
               for c in configs)
    assert any(c.in_channels % c.in_lanes for c in configs)


def test_random_sae_inputs():
    config = MULTI_BIT_CASES["mb-s12-linear-16-8"]
    values = random_sae_inputs(config, (40, 16, 2, 2), 0.25, seed=3)
    assert values.dtype == np.int64
    assert values.min() >= -2048 and values.max() <= 2047
    assert 0.2 < (values != 0).mean() < 0.3
    assert (values < 0).any() and (values > 0).any()
    dense = random_sae_inputs(config, (40, 16, 2, 2), 1.0, seed=3)
    assert (dense != 0).all()
    np.testing.assert_array_equal(random_sae_inputs(config, (2, 16, 2, 2), 0.25, seed=3),
                                  random_sae_inputs(config, (2, 16, 2, 2), 0.25, seed=3))
    # spikes: the same Bernoulli stream as sw.export.random_spikes
    spikes_config = CASES["conv-one-word"]
    np.testing.assert_array_equal(random_sae_inputs(spikes_config, (2, 2, 3, 3), 0.3, seed=4),
                                  random_spikes((2, 2, 3, 3), 0.3, seed=4))


@pytest.mark.parametrize("name", list(MULTI_BIT_CASES))
def test_multi_bit_rtlil_has_no_multiplier(name):
    config = MULTI_BIT_CASES[name]
    text = rtlil.convert(SpikeAccumulator(config, params_for(config)), name="sae",
                         emit_src=False)
    assert "cell $add" in text
    assert "cell $mul" not in text
    # the engine's plane shift is multiplexers: no shift cell by a variable amount (shifts by a
    # constant, wiring, appear in the spike engine too; the encoder's pick of the lane's sign
    # bit is a bit select, a $shiftx)
    engine = rtlil.convert(SAEEngine(config, params_for(config)), name="engine",
                           emit_src=False)
    assert variable_shifts(engine) == []


def variable_shifts(text):
    """Shift amounts of the RTLIL shift cells whose amount is not a constant."""
    amounts = re.findall(r"cell \$(?:shl|sshl|shr|sshr|shift|shiftx) .*?connect \\B ([^\n]+)",
                         text, re.S)
    # a constant, or no bits at all (`{ }`: a shift by 0, as in `mul_const` by an odd factor)
    return [a.strip() for a in amounts if not re.fullmatch(r"\d+'[01]+|\{\s*\}", a.strip())]


class _VariableShift(wiring.Component):
    def __init__(self):
        super().__init__({"x": In(8), "amount": In(3), "y": Out(15)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.x << self.amount)
        return m


def test_variable_shift_check_can_fail():
    text = rtlil.convert(_VariableShift(), name="t", emit_src=False)
    assert variable_shifts(text) == ["\\amount [2:0]"]
