# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of `hw.shortcut.Shortcut` against the integer reference
`sw.shortcut_int`: every output value (padding lanes included) and the first/last markers, on
configurations with one and several groups, padding lanes, with and without a residual, extreme
shifts (-24, +15) and widths (acc_bits 2 .. 48, bits 2 .. 48), values at the extremes (both
saturations), seeded random stalls on all three streams, the residual long before the branch
(a whole frame buffered) and the branch before the residual, output back-pressure (the credit
limit), the latency and the cycle model without stalls.

The expected beats are built here (not with `sim.shortcut`), so the beat order is checked too.
"""

import gc
import random
import re
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hw.shortcut import Shortcut
from sim.shortcut import shortcut_beats, shortcut_output_arrays
from spec.errors import ConfigError
from spec.ports import pack, payload_width, unpack
from spec.shortcut import SHORTCUT_OUT_FIFO_DEPTH, ShortcutConfig, ShortcutParams
from sw.shortcut_int import shortcut_int

FRAMES = 2
#: per-channel shifts, cycled: both extremes, zero, and small ones both ways
SHIFT_CYCLE = (15, -24, 0, -1, 3, -7, 1, -3, 2)


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


def bounds(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


# id -> (configuration, shifts or None for SHIFT_CYCLE). Small on purpose: the simulator is slow.
CASES = {
    # 5 channels over 2 lanes: 3 groups, the last half padding; each lane picks among 3 shifts
    "g3-pad-res": (ShortcutConfig(channels=5, height=2, width=3, lanes=2, acc_bits=10, bits=6),
                   None),
    # one group: every lane has one shift (wiring); the widest accumulations, a wide stream
    "g1-res-acc32-bits24": (ShortcutConfig(channels=4, height=2, width=2, lanes=4, acc_bits=32,
                                           bits=24), None),
    # one group with a padding lane, no residual, the narrowest stream
    "g1-pad-nores-bits2": (ShortcutConfig(channels=3, height=2, width=3, lanes=4, acc_bits=5,
                                          bits=2, residual=False), None),
    # 7 channels over 3 lanes: 3 groups, 2 padding lanes in the last; no residual
    "g3-pad-nores-acc32": (ShortcutConfig(channels=7, height=2, width=2, lanes=3, acc_bits=32,
                                          bits=12, residual=False), None),
    # the narrowest everything: 2-bit accumulations shifted by up to 15, a 2-bit stream
    "g2-res-acc2-bits2": (ShortcutConfig(channels=4, height=1, width=3, lanes=2, acc_bits=2,
                                         bits=2), None),
    # right shifts only: the shifted value is no wider than the accumulation
    "g2-res-right-only": (ShortcutConfig(channels=4, height=2, width=2, lanes=2, acc_bits=16,
                                         bits=8), (-24, -1, -5, -9)),
    # one lane: 4 groups, the lane multiplexes 4 shifts; a 3-bit stream
    "g4-res-lanes1-bits3": (ShortcutConfig(channels=4, height=1, width=3, lanes=1, acc_bits=12,
                                           bits=3), None),
    # the widest widths the configuration allows
    "g2-res-acc48-bits48": (ShortcutConfig(channels=3, height=1, width=2, lanes=2, acc_bits=48,
                                           bits=48), None),
    # left shifts only into a stream wider than any shifted accumulation (8 + 15 bits): only
    # the bias add takes the branch out of range
    "g2-res-left-bits24": (ShortcutConfig(channels=3, height=2, width=2, lanes=2, acc_bits=8,
                                          bits=24), (15, 15, 7)),
    # a one-beat frame: the residual buffer is one word deep
    "g1-res-one-word": (ShortcutConfig(channels=2, height=1, width=1, lanes=2, acc_bits=8,
                                       bits=4), (15, -24)),
}
RESIDUAL_CASES = [name for name, (c, _) in CASES.items() if c.residual]
#: the buffer needs three words to pair one beat per cycle (see the xfail below)
STEADY_CASES = [name for name, (c, _) in CASES.items() if not c.residual or c.frame_words >= 3]


def params_for(name, seed=0):
    """Shifts from the case (or SHIFT_CYCLE); seeded biases over the whole `bits` range with
    both extremes present."""
    config, shifts = CASES[name]
    shifts = shifts or tuple(SHIFT_CYCLE[c % len(SHIFT_CYCLE)] for c in range(config.channels))
    lo, hi = bounds(config.bits)
    rng = np.random.default_rng(100 + seed)
    bias = rng.integers(lo, hi, size=config.channels, endpoint=True)
    bias[0] = lo
    bias[-1] = hi
    if config.channels > 2:
        bias[1] = 0
    return ShortcutParams.checked(config, np.array(shifts), bias)


def extreme_values(shape, bits, rng):
    """Uniform over the range, with many minima, maxima, zeros and small values."""
    lo, hi = bounds(bits)
    v = rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64)
    pick = rng.random(shape)
    v[pick < 0.15] = lo
    v[(pick >= 0.15) & (pick < 0.3)] = hi
    v[(pick >= 0.3) & (pick < 0.4)] = 0
    small = (pick >= 0.4) & (pick < 0.6)
    v[small] = np.clip(rng.integers(-3, 4, size=shape), lo, hi)[small]
    return v


def frames_for(config):
    """FRAMES, more for a frame of one or two beats (enough values to saturate)."""
    return FRAMES if config.frame_words >= 3 else 8


def data_for(name, frames=None, seed=0):
    """(acc, residual or None), each (frames, channels, height, width)."""
    config, _ = CASES[name]
    frames = frames_for(config) if frames is None else frames
    rng = np.random.default_rng(7 + seed)
    shape = (frames, config.channels, config.height, config.width)
    acc = extreme_values(shape, config.acc_bits, rng)
    residual = extreme_values(shape, config.bits, rng) if config.residual else None
    return acc, residual


def to_beats(config, values, field):
    """Beats of (frames, channels, H, W) values, written out: per frame, pixels in raster
    order, `groups` beats each, lane j of group g is channel g * lanes + j (0 past the last
    channel), first/last marking the frame's first and last beat."""
    beats = []
    for frame in np.asarray(values):
        n = 0
        for y in range(config.height):
            for x in range(config.width):
                for g in range(config.groups):
                    lanes = [int(frame[g * config.lanes + j, y, x])
                             if g * config.lanes + j < config.channels else 0
                             for j in range(config.lanes)]
                    beats.append({field: lanes, "first": int(n == 0),
                                  "last": int(n == config.frame_words - 1)})
                    n += 1
    return beats


def sources_for(config, acc, residual, *, branch_stall=0.0, residual_stall=0.0, branch_start=0,
                residual_start=0):
    src = {"branch": (config.branch_fields(), to_beats(config, acc, "acc"), branch_stall,
                      branch_start)}
    if config.residual:
        src["residual"] = (config.stream_fields(), to_beats(config, residual, "x"),
                           residual_stall, residual_start)
    return src


class Run:
    def __init__(self, ports):
        self.outputs = []                       # decoded output beats
        self.out_cycles = []                    # cycle of each output handshake
        self.in_cycles = {p: [] for p in ports}  # cycles of each input's handshakes

    @property
    def cycles(self):
        """From the first input handshake to the last output handshake, inclusive."""
        first = min(c[0] for c in self.in_cycles.values() if c)
        return self.out_cycles[-1] - first + 1


def simulate(dut, config, sources, *, out_stall=0.0, out_start=0, seed=0, max_cycles=20_000):
    """Drive each input port of `sources` ({port: (fields, beats, stall, start)}) with its own
    seeded stalls (nothing before `start`), take `o` with seeded stalls (never ready before
    `out_start`), until every input beat went in and as many beats came out. One testbench
    drives both sides each cycle, then reads the settled handshakes, then ticks."""
    ports = {}
    for n, (port, (fields, beats, stall, start)) in enumerate(sources.items()):
        ports[port] = (getattr(dut, port), [pack(fields, b) for b in beats], stall, start,
                       random.Random(seed * 10 + n + 1))
    want = len(sources["branch"][1])
    rng_out = random.Random(seed * 10)
    out_fields = config.stream_fields()
    run = Run(ports)

    async def bench(ctx):
        pending = dict.fromkeys(ports, 0)
        offered = dict.fromkeys(ports, False)
        for cycle in range(max_cycles):
            if len(run.outputs) >= want and all(pending[p] == len(v[1]) for p, v in
                                                ports.items()):
                # a few more cycles: nothing more may come out
                for _ in range(12):
                    ctx.set(dut.o.ready, 1)
                    for port, *_ in ports.values():
                        ctx.set(port.valid, 0)
                    assert not ctx.get(dut.o.valid), "an output beat too many"
                    await ctx.tick()
                return
            for p, (port, words, stall, start, rng) in ports.items():
                if (not offered[p] and pending[p] < len(words) and cycle >= start
                        and rng.random() >= stall):
                    offered[p] = True
                    ctx.set(port.payload.as_value(), words[pending[p]])
                ctx.set(port.valid, offered[p])
            ready = cycle >= out_start and rng_out.random() >= out_stall
            ctx.set(dut.o.ready, ready)
            fires = {p: offered[p] and bool(ctx.get(v[0].ready)) for p, v in ports.items()}
            out_fire = ready and ctx.get(dut.o.valid)
            payload = ctx.get(dut.o.payload.as_value())
            await ctx.tick()
            for p, fire in fires.items():
                if fire:
                    run.in_cycles[p].append(cycle)
                    pending[p] += 1
                    offered[p] = False
            if out_fire:
                run.outputs.append(unpack(out_fields, payload))
                run.out_cycles.append(cycle)
        raise AssertionError(f"no completion after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return run


def check_outputs(config, params, acc, residual, beats):
    """Every output beat (values, padding lanes, first/last) against `shortcut_int`."""
    want = shortcut_int(acc, params.shift, params.bias, config.bits, residual)
    expected = to_beats(config, want, "x")
    assert len(beats) == len(expected), f"{len(beats)} output beats, expected {len(expected)}"
    for n, (got, exp) in enumerate(zip(beats, expected, strict=True)):
        f, rest = divmod(n, config.frame_words)
        pixel, g = divmod(rest, config.groups)
        assert got == exp, (f"beat {n} (frame {f}, pixel {pixel}, group {g}): got {got}, "
                            f"expected {exp}")
    return want


def run_case(name, *, frames=None, data_seed=0, seed=0, out_stall=0.0, out_start=0,
             **source_kw):
    config, _ = CASES[name]
    params = params_for(name)
    acc, residual = data_for(name, frames, data_seed)
    run = simulate(Shortcut(config, params), config,
                   sources_for(config, acc, residual, **source_kw), out_stall=out_stall,
                   out_start=out_start, seed=seed)
    check_outputs(config, params, acc, residual, run.outputs)
    return config, run


# -- the cases mean what they say ----------------------------------------------------------------


def test_cases_cover_the_requested_configurations():
    configs = [c for c, _ in CASES.values()]
    assert {c.groups for c in configs} >= {1, 2, 3, 4}
    assert any(c.groups == 1 and c.channels % c.lanes for c in configs)
    assert any(c.groups > 1 and c.channels % c.lanes for c in configs)
    assert {c.residual for c in configs} == {True, False}
    assert {2, 3, 24, 48} <= {c.bits for c in configs}
    assert {2, 32, 48} <= {c.acc_bits for c in configs}
    shifts = {s for name in CASES for s in params_for(name).shift.tolist()}
    assert {-24, 15} <= shifts
    # some lane selects among several shifts, some lane has a single one
    assert any(len(set(params_for(n).shift.tolist())) > 1 and CASES[n][0].groups > 1
               for n in CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_case_data_saturate_both_ways(name):
    """The data exercise both saturations (when there is a residual), both signs, and values
    that pass through unsaturated."""
    config, _ = CASES[name]
    params = params_for(name)
    acc, residual = data_for(name)
    lo, hi = bounds(config.bits)
    shift = params.shift.reshape(1, -1, 1, 1)
    moved = np.where(shift >= 0, acc << np.maximum(shift, 0), acc >> np.maximum(-shift, 0))
    raw = moved + params.bias.reshape(1, -1, 1, 1)
    branch = np.clip(raw, lo, hi)
    assert (raw > hi).any() and (raw < lo).any(), "the branch never saturates"
    assert ((raw >= lo) & (raw <= hi)).any()
    if config.residual:
        total = residual + branch
        assert (total > hi).any() and (total < lo).any(), "the residual add never saturates"
        assert ((total >= lo) & (total <= hi) & (total != 0)).any()


def test_reference_against_scalar_formula():
    """`shortcut_int` (the reference of every test below) against a scalar Python formula."""
    rng = np.random.default_rng(5)
    for bits, acc_bits in ((2, 2), (3, 12), (6, 10), (24, 32), (48, 48)):
        channels = 6
        shift = rng.integers(-24, 16, size=channels)
        shift[:2] = (-24, 15)
        bias = extreme_values((channels,), bits, rng)
        acc = extreme_values((2, channels, 2, 2), acc_bits, rng)
        residual = extreme_values((2, channels, 2, 2), bits, rng)
        lo, hi = bounds(bits)
        got = shortcut_int(acc, shift, bias, bits, residual)
        got_nores = shortcut_int(acc, shift, bias, bits)
        for idx in np.ndindex(acc.shape):
            c = idx[1]
            a, s = int(acc[idx]), int(shift[c])
            moved = a * 2**s if s >= 0 else a // 2**-s  # floor division: arithmetic shift
            b = min(hi, max(lo, moved + int(bias[c])))
            assert got_nores[idx] == b
            assert got[idx] == min(hi, max(lo, int(residual[idx]) + b)), (idx, bits)


# -- every case: exact values and markers ----------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference_without_stalls(name):
    config, run = run_case(name)
    if name in STEADY_CASES:
        # one beat per cycle: the cycle model is exact
        assert run.cycles == config.cycles(FRAMES)
        first = run.in_cycles["branch"][0]
        assert run.in_cycles["branch"] == list(range(first, first + FRAMES * config.frame_words))


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference_with_random_stalls(name, seed):
    config, run = run_case(name, data_seed=seed, seed=seed, branch_stall=0.3,
                           residual_stall=0.5, out_stall=0.4)
    assert run.cycles >= config.cycles(frames_for(config))


@pytest.mark.parametrize("name", ["g3-pad-res", "g3-pad-nores-acc32", "g4-res-lanes1-bits3"])
def test_heavy_output_backpressure(name):
    run_case(name, frames=3, data_seed=3, seed=4, branch_stall=0.1, residual_stall=0.1,
             out_stall=0.85)


@pytest.mark.parametrize("name", ["g3-pad-res", "g3-pad-nores-acc32"])
def test_output_held_off_stops_the_inputs_at_the_credit_limit(name):
    # the output is not ready for a long time: the unit takes exactly as many branch beats as
    # its output FIFO holds, and loses none of them
    hold = 60
    config, run = run_case(name, out_start=hold)
    assert FRAMES * config.frame_words > SHORTCUT_OUT_FIFO_DEPTH
    taken = [c for c in run.in_cycles["branch"] if c < hold]
    assert len(taken) == SHORTCUT_OUT_FIFO_DEPTH
    assert run.out_cycles[0] == hold


# -- the order of the two inputs ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["g3-pad-res", "g1-res-acc32-bits24", "g4-res-lanes1-bits3"])
def test_residual_long_before_branch_buffers_a_whole_frame(name):
    config, _ = CASES[name]
    start = FRAMES * config.frame_words + 20
    config, run = run_case(name, branch_start=start)
    residual = run.in_cycles["residual"]
    # the whole first frame goes in at once, one beat a cycle, and then no more: one frame
    assert residual[:config.frame_words] == list(range(config.frame_words))
    assert sum(c < start for c in residual) == config.frame_words == config.buffer_words
    # then the branch streams at one beat per cycle while the next frame's residual follows
    branch = run.in_cycles["branch"]
    assert branch == list(range(start, start + FRAMES * config.frame_words))
    assert run.out_cycles[0] == start + ShortcutConfig.LATENCY


@pytest.mark.parametrize("name", ["g3-pad-res", "g2-res-acc2-bits2", "g2-res-acc48-bits48"])
def test_branch_before_residual_waits(name):
    start = 30
    _, run = run_case(name, residual_start=start)
    assert run.in_cycles["residual"][0] == start
    assert run.in_cycles["branch"][0] == start + ShortcutConfig.RESIDUAL_LATENCY
    for n, cycle in enumerate(run.in_cycles["branch"]):
        # every branch beat waits for its own residual beat
        assert cycle >= run.in_cycles["residual"][n] + 1


@pytest.mark.parametrize("name", ["g3-pad-res", "g1-res-acc32-bits24"])
def test_branch_first_with_residual_trickling_in(name):
    _, run = run_case(name, data_seed=4, seed=5, residual_start=10, residual_stall=0.8,
                      out_stall=0.1)
    for n, cycle in enumerate(run.in_cycles["branch"]):
        assert cycle >= run.in_cycles["residual"][n] + 1


# -- latency and cycle model -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["g3-pad-nores-acc32", "g3-pad-res"])
def test_latency_of_one_beat(name):
    config, _ = CASES[name]
    params = params_for(name)
    acc, residual = data_for(name, frames=1)
    src = sources_for(config, acc, residual)
    # one beat only (the first of the frame)
    src = {p: (fields, beats[:1], stall, start) for p, (fields, beats, stall, start)
           in src.items()}
    run = simulate(Shortcut(config, params), config, src)
    branch = run.in_cycles["branch"][0]
    assert run.out_cycles == [branch + ShortcutConfig.LATENCY]
    if config.residual:
        assert branch == run.in_cycles["residual"][0] + ShortcutConfig.RESIDUAL_LATENCY
    want = to_beats(config, shortcut_int(acc, params.shift, params.bias, config.bits, residual),
                    "x")[0]
    assert run.outputs == [want]
    assert (run.outputs[0]["first"], run.outputs[0]["last"]) == (1, 0)


@pytest.mark.parametrize("frames", [1, 3])
def test_cycle_model_exact_for_several_frames(frames):
    config, run = run_case("g3-pad-res", frames=frames)
    assert run.cycles == config.cycles(frames) == 2 + frames * 18 - 1 + 5 + 1


@pytest.mark.parametrize("width", [1, 2])
def test_cycle_model_with_a_tiny_frame(width):
    config = ShortcutConfig(channels=2, height=1, width=width, lanes=2, acc_bits=8, bits=4)
    params = ShortcutParams.seeded(config, 0)
    frames = 4
    rng = np.random.default_rng(0)
    shape = (frames, 2, 1, width)
    acc, residual = extreme_values(shape, 8, rng), extreme_values(shape, 4, rng)
    run = simulate(Shortcut(config, params), config, sources_for(config, acc, residual))
    check_outputs(config, params, acc, residual, run.outputs)
    assert run.cycles == config.cycles(frames)


# -- the comparison can fail -----------------------------------------------------------------


def test_corrupted_expectation_fails_the_comparison():
    name = "g3-pad-res"
    config, run = run_case(name)
    params = params_for(name)
    acc, residual = data_for(name)
    check_outputs(config, params, acc, residual, run.outputs)

    def corrupt(change):
        beats = [dict(b, x=list(b["x"])) for b in run.outputs]
        change(beats)
        with pytest.raises(AssertionError):
            check_outputs(config, params, acc, residual, beats)

    lo, hi = bounds(config.bits)

    def bump_value(beats):
        x = beats[-1]["x"]
        lane = (config.channels - 1) % config.lanes
        x[lane] = x[lane] + 1 if x[lane] < hi else x[lane] - 1

    def bump_padding(beats):
        beats[config.groups - 1]["x"][-1] = 1  # a padding lane must be 0

    def swap(beats):
        beats[0], beats[1] = beats[1], beats[0]

    corrupt(bump_value)
    corrupt(bump_padding)
    corrupt(lambda beats: beats[0].update(first=0))
    corrupt(lambda beats: beats[config.frame_words - 1].update(last=0))
    corrupt(lambda beats: beats[1].update(first=1))
    corrupt(swap)
    corrupt(lambda beats: beats.pop())
    # a different bias (or residual) in the reference is caught too
    other = ShortcutParams.checked(config, params.shift, np.roll(params.bias, 1))
    with pytest.raises(AssertionError):
        check_outputs(config, other, acc, residual, run.outputs)
    with pytest.raises(AssertionError):
        check_outputs(config, params, acc, np.zeros_like(residual), run.outputs)


def test_beat_order_agrees_with_sim_helpers():
    # the co-simulation's helpers (sim.shortcut) order beats as the test does
    for name in ("g3-pad-res", "g3-pad-nores-acc32", "g4-res-lanes1-bits3"):
        config, _ = CASES[name]
        acc, residual = data_for(name, frames=2)
        assert shortcut_beats(config, acc, "acc") == to_beats(config, acc, "acc")
        np.testing.assert_array_equal(
            shortcut_output_arrays(config, to_beats(config, acc, "x"), 2), acc)


# -- construction and ports --------------------------------------------------------------------


@pytest.mark.parametrize("residual", [True, False])
def test_ports(residual):
    config = ShortcutConfig(channels=5, height=2, width=3, lanes=2, acc_bits=10, bits=6,
                            residual=residual)
    dut = Shortcut(config, ShortcutParams.seeded(config, 0))
    assert dut.config is config
    members = set(dut.signature.members)
    assert members == ({"branch", "residual", "o"} if residual else {"branch", "o"})
    assert hasattr(dut, "residual") is residual
    assert len(dut.branch.payload.as_value()) == payload_width(config.branch_fields()) == 22
    assert len(dut.o.payload.as_value()) == payload_width(config.stream_fields()) == 14
    if residual:
        assert len(dut.residual.payload.as_value()) == 14


def test_rejects_wrong_types():
    config = CASES["g3-pad-res"][0]
    params = params_for("g3-pad-res")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match=exact("config must be a ShortcutConfig, not 3")):
            Shortcut(3, params)
        with pytest.raises(TypeError, match=r"^params must be ShortcutParams, not "):
            Shortcut(config, params.shift)
        with pytest.raises(TypeError, match=exact("params must be ShortcutParams, not None")):
            Shortcut(config, None)
        gc.collect()


def test_rechecks_params_against_config():
    config = CASES["g3-pad-res"][0]
    with pytest.raises(ConfigError, match=exact(
            "shift must be integers of shape [5], not int64 [4]")):
        Shortcut(config, ShortcutParams(shift=np.zeros(4, np.int64),
                                        bias=np.zeros(5, np.int64)))
    with pytest.raises(ConfigError, match=exact("shifts 0 .. 16 are outside -24 .. 15")):
        Shortcut(config, ShortcutParams(shift=np.array([0, 16, 0, 0, 0]),
                                        bias=np.zeros(5, np.int64)))
    with pytest.raises(ConfigError, match=exact("bias range 0 .. 32 does not fit bits=6")):
        Shortcut(config, ShortcutParams(shift=np.zeros(5, np.int64),
                                        bias=np.array([0, 32, 0, 0, 0])))


@pytest.mark.parametrize("name", ["g3-pad-res", "g1-res-acc32-bits24", "g3-pad-nores-acc32"])
def test_rtlil_has_no_multiplier(name):
    config, _ = CASES[name]
    text = rtlil.convert(Shortcut(config, params_for(name)), name="shortcut", emit_src=False)
    assert "cell $add" in text  # the grep below looks at real cells
    assert "cell $mul" not in text and "cell $macc" not in text
