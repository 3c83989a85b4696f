# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the SDSA units `hw.sdsa` (`LinearSDSA` for variants 3/4,
`ColumnSDSA` for 1/2) against the integer reference `sw.sdsa_int`: every output beat exact
(spikes and markers), the cycle model `SDSAConfig.cycles` exact without stalls, random stalls,
KV-row hazards, stale KV rows across timesteps, the default configuration, construction.
"""

import re

import numpy as np
import pytest
from amaranth.hdl import Const, Fragment
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth_streams import run_ports

from hw.common import struct_layout
from hw.sdsa import ColumnSDSA, LinearSDSA, SDSAUnit, sdsa_unit
from sim.scoreboard import Expected, Scoreboard, ScoreboardMismatch
from sim.sdsa import sdsa_expected_beats, sdsa_inputs
from spec.sdsa import SDSAConfig, SDSATraces
from sw.export import random_qkv
from sw.sdsa_int import sdsa_int

SAMPLES = 2
#: cycles the simulation goes on after the last expected beat, to catch surplus beats
SETTLE = 24


def cfg(variant, heads, channels, tokens, lanes, timesteps, **kw):
    return SDSAConfig(variant=variant, heads=heads, channels=channels, tokens=tokens,
                      lanes=lanes, timesteps=timesteps, **kw)


# id -> configuration. Tiny on purpose: the Amaranth simulator is slow.
CASES = {
    # variants 1/2: lanes need only divide the channels
    "v1-h1-c4-n3-l1-t1": cfg(1, 1, 4, 3, 1, 1),
    "v1-h2-c16-n5-l4-t2": cfg(1, 2, 16, 5, 4, 2),
    "v1-h8-c16-n3-l16-t4": cfg(1, 8, 16, 3, 16, 4),    # one beat per token: count hazards
    "v1-h8-c16-n7-l8-t1": cfg(1, 8, 16, 7, 8, 1),
    "v2-h1-c8-n3-l2-t2": cfg(2, 1, 8, 3, 2, 2),
    "v2-h2-c16-n5-l4-t1": cfg(2, 2, 16, 5, 4, 1),
    "v2-h8-c16-n3-l16-t4": cfg(2, 8, 16, 3, 16, 4),
    "v2-h8-c8-n6-l8-t1": cfg(2, 8, 8, 6, 8, 1),
    # variants 3/4: lanes divide the head dimension d; d / lanes words per head
    "v3-h1-c8-n3-l8-t1": cfg(3, 1, 8, 3, 8, 1),          # d/lanes 1, one word per token
    "v3-h2-c16-n5-l4-t2": cfg(3, 2, 16, 5, 4, 2),        # d/lanes 2
    "v3-h8-c16-n5-l2-t1": cfg(3, 8, 16, 5, 2, 1),        # d/lanes 1, 8 heads
    "v3-h1-c8-n3-l2-t4": cfg(3, 1, 8, 3, 2, 4),          # d/lanes 4, T = 4
    "v3-h2-c4-n5-l1-t2": cfg(3, 2, 4, 5, 1, 2),          # lanes 1
    "v3-h1-c32-n2-l16-t1": cfg(3, 1, 32, 2, 16, 1),      # lanes 16, d/lanes 2
    "v3-h8-c8-n9-l1-t1": cfg(3, 8, 8, 9, 1, 1),          # d = 1
    "v4-h2-c8-n5-l4-t2-vth0.375": cfg(4, 2, 8, 5, 4, 2, v_th=0.375),
    "v4-h1-c16-n3-l4-t1-vth0.375": cfg(4, 1, 16, 3, 4, 1, v_th=0.375),   # d/lanes 4
    "v4-h2-c8-n3-l2-t1-perch": cfg(4, 2, 8, 3, 2, 1,
                                   v_th=tuple(0.125 * (1 + n % 5) for n in range(8))),
    "v4-h8-c16-n5-l2-t2-perch": cfg(4, 8, 16, 5, 2, 2,
                                    v_th=tuple(0.0625 * (1 + 3 * n % 11) for n in range(16))),
    "v4-h2-c8-n4-l4-t2-wide": cfg(4, 2, 8, 4, 4, 2, v_th=0.25, count_bits=6, acc_bits=10),
}
# one value for Q, K and V, or a (q, k, v) triple
DENSITIES = [0.0, 0.1, 0.5, 1.0, (0.5, 1.0, 0.2), (1.0, 0.1, 0.6), (1.0, 0.0, 1.0)]


def density_id(density):
    return "-".join(map(str, density)) if isinstance(density, tuple) else str(density)


def traces_for(config, q, k, v):
    spikes, neuron_input = sdsa_int(config, q, k, v)
    return SDSATraces(q=np.asarray(q, np.uint8), k=np.asarray(k, np.uint8),
                      v=np.asarray(v, np.uint8), spikes=spikes, neuron_input=neuron_input)


def random_traces(config, density, samples=SAMPLES, seed=1):
    return traces_for(config, *random_qkv(config, samples, density, seed=seed))


def simulate(config, traces, **stalls):
    """Stream the traces' Q, K, V through a fresh unit; returns (run, expected beats). The run
    goes on `SETTLE` cycles after the last expected beat."""
    expected = sdsa_expected_beats(config, traces)
    sources = {name: (config.input_fields(), beats)
               for name, beats in sdsa_inputs(config, traces).items()}
    after = [0]

    def done(run):
        if len(run.outputs) < len(expected):
            return False
        after[0] += 1
        return after[0] > SETTLE

    run = run_ports(sdsa_unit(config), sources, config.output_fields(), done=done, **stalls)
    return run, expected


def check_beats(unit, outputs, expected):
    """Every output beat against the expected beats, in order, none missing or surplus; raises
    `ScoreboardMismatch` naming the first divergence."""
    board = Scoreboard(unit, expected)
    for n, beat in enumerate(outputs):
        board.check(beat, n)
    board.check_done()


def check_run(config, traces, run, expected, *, exact_cycles=True):
    check_beats(f"SDSA-{config.variant}", run.outputs, expected)
    assert run.outputs == [e.values for e in expected]
    assert len(run.outputs) == traces.samples * config.timesteps * config.beats_per_step
    if exact_cycles:
        model = config.cycles(traces.q, traces.k, traces.v)
        assert run.cycles == model
        assert run.cycles >= config.ideal_cycles(traces.q, traces.k, traces.v)


# -- every configuration, every density: exact beats, exact cycles -----------------------------


@pytest.mark.parametrize("density", DENSITIES, ids=density_id)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference_without_stalls(name, density):
    config = CASES[name]
    traces = random_traces(config, density)
    fired = int(traces.spikes.sum())
    if density == 0.0 or (isinstance(density, tuple) and density[0] == 0.0):
        assert fired == 0
    if density == 1.0:
        assert fired > 0          # every configuration fires when everything spikes
    if density == (1.0, 0.0, 1.0):
        # no K: nothing for variants 1, 3, 4; variant 2 ignores K and passes all of Q
        assert fired == (traces.spikes.size if config.variant == 2 else 0)
    run, expected = simulate(config, traces)
    check_run(config, traces, run, expected)


def test_cases_cover_the_requested_geometries():
    configs = list(CASES.values())
    for variant in (1, 2, 3, 4):
        mine = [c for c in configs if c.variant == variant]
        assert {c.timesteps for c in mine} >= ({1, 2, 4} if variant != 4 else {1, 2})
        assert any(c.tokens % c.lanes for c in mine)
        if variant <= 3:
            assert {c.heads for c in mine} >= {1, 2, 8}
    assert {c.lanes for c in configs} >= {1, 2, 4, 8, 16}
    linear = [c for c in configs if c.variant >= 3]
    assert {c.words_per_head for c in linear} >= {1, 2, 4}
    assert {c.lanes for c in linear} >= {1, 2, 4, 8, 16}
    v4 = [c.v_th for c in configs if c.variant == 4]
    assert 0.375 in v4 and any(isinstance(x, tuple) for x in v4)


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_cases_fire_partially(variant):
    # the matrix above is not trivially all-or-nothing: for every variant some random case
    # gives a mix of spikes and silence, and some gives none at all
    partial = silent = 0
    for config in (c for c in CASES.values() if c.variant == variant):
        for density in DENSITIES:
            spikes = random_traces(config, density).spikes
            partial += 0 < spikes.sum() < spikes.size
            silent += spikes.sum() == 0
    assert partial >= 3
    assert silent >= 2


@pytest.mark.parametrize("name", ["v1-h2-c16-n5-l4-t2", "v2-h8-c16-n3-l16-t4",
                                  "v3-h2-c16-n5-l4-t2", "v4-h8-c16-n5-l2-t2-perch"])
def test_samples_back_to_back_are_independent(name):
    # a dense, an empty, a half-dense and a dense sample without a reset in between: nothing
    # of one sample (KV rows, sums, counts, membranes) may leak into the next
    config = CASES[name]
    parts = [random_qkv(config, 1, density, seed=5) for density in (1.0, 0.0, 0.5, 1.0)]
    q, k, v = (np.concatenate([p[n] for p in parts]) for n in range(3))
    traces = traces_for(config, q, k, v)
    for n, part in enumerate(parts):
        np.testing.assert_array_equal(traces.spikes[n], sdsa_int(config, *part)[0][0])
    assert traces.spikes[0].sum() > 0 and traces.spikes[1].sum() == 0
    run, expected = simulate(config, traces)
    check_run(config, traces, run, expected)


# -- random stalls on every input and the output ----------------------------------------------

STALL_CASES = ["v1-h2-c16-n5-l4-t2", "v1-h8-c16-n3-l16-t4", "v2-h2-c16-n5-l4-t1",
               "v2-h8-c16-n3-l16-t4", "v3-h2-c16-n5-l4-t2", "v3-h8-c16-n5-l2-t1",
               "v3-h2-c4-n5-l1-t2", "v4-h2-c8-n5-l4-t2-vth0.375", "v4-h8-c16-n5-l2-t2-perch"]
STALLS = [(0, 0.3, 0.6), (1, 0.6, 0.3), (2, 0.5, 0.5)]


@pytest.mark.parametrize(("seed", "in_stall", "out_stall"), STALLS,
                         ids=[f"seed{s}-in{i}-out{o}" for s, i, o in STALLS])
@pytest.mark.parametrize("name", STALL_CASES)
def test_matches_reference_with_random_stalls(name, seed, in_stall, out_stall):
    config = CASES[name]
    traces = random_traces(config, 0.7, seed=10 + seed)
    assert traces.spikes.sum() > 0
    run, expected = simulate(config, traces, in_stall=in_stall, out_stall=out_stall, seed=seed)
    check_run(config, traces, run, expected, exact_cycles=False)
    assert run.cycles > config.cycles(traces.q, traces.k, traces.v)   # the stalls did stall


def test_heavy_output_backpressure():
    # the output taken one beat in ten: the head-end credits and the neuron's FIFO must hold
    config = CASES["v3-h2-c16-n5-l4-t2"]
    traces = random_traces(config, 0.6, seed=4)
    run, expected = simulate(config, traces, out_stall=0.9, seed=5)
    check_run(config, traces, run, expected, exact_cycles=False)


# -- hazards and stale rows ---------------------------------------------------------------------


def one_channel_k(config, channel, samples=SAMPLES, seed=3):
    """K with one channel spiking in every token and nothing else; random Q and V."""
    q, _, v = random_qkv(config, samples, (0.5, 0.0, 0.5), seed=seed)
    k = np.zeros_like(q)
    k[..., channel] = 1
    return q, k, v


HAZARD_CASES = {
    "h1-c8-l8": cfg(3, 1, 8, 8, 8, 1),       # one word per token, d/lanes 1
    "h2-c8-l4": cfg(3, 2, 8, 8, 4, 1),       # two words per token, d/lanes 1
    "h2-c16-l4-t2": cfg(3, 2, 16, 8, 4, 2),  # four words per token, d/lanes 2
}


@pytest.mark.parametrize("name", list(HAZARD_CASES))
def test_kv_row_hazard(name):
    # consecutive K spikes update the same KV row: every update waits for the previous write
    config = HAZARD_CASES[name]
    channel = config.channels - 1
    q, k, v = one_channel_k(config, channel)
    traces = traces_for(config, q, k, v)
    run, expected = simulate(config, traces)
    check_run(config, traces, run, expected)
    # the model charges the waits: the same spikes spread over different channels (distinct
    # rows, so no waits) cost fewer cycles
    spread = np.zeros_like(k)
    for n in range(config.tokens):
        spread[..., n, n % config.channels] = 1
    assert config.cycles(q, k, v) > config.cycles(q, spread, v)
    spread_traces = traces_for(config, q, spread, v)
    run2, expected2 = simulate(config, spread_traces)
    check_run(config, spread_traces, run2, expected2)
    assert run.cycles > run2.cycles


def test_kv_row_hazard_hits_every_token():
    # d / lanes = 1 and one word per token: the row's updates would be one cycle apart
    config = cfg(3, 1, 4, 9, 4, 1)
    q, k, v = one_channel_k(config, 2, samples=1)
    q[:] = 1
    v[:] = 1
    traces = traces_for(config, q, k, v)
    # KV row 2 counts 9 tokens, every A is 9 >= 8: everything fires
    assert traces.neuron_input.min() == 9
    assert traces.spikes.all()
    run, expected = simulate(config, traces)
    check_run(config, traces, run, expected)


@pytest.mark.parametrize("name", ["v3-h2-c16-n5-l4-t2", "v4-h2-c8-n4-l4-t2-wide",
                                  "v3-h2-c4-n5-l1-t2"])
def test_kv_rows_start_from_zero_every_timestep(name):
    # sample 0: K dense at timestep 0, empty at timestep 1; sample 1: the other way round. A
    # KV row left over from the previous timestep or sample must not be read again.
    config = CASES[name]
    assert config.timesteps == 2
    q, k, v = random_qkv(config, 2, (1.0, 0.0, 0.7), seed=8)
    k[0, 0] = 1
    k[1, 1] = 1
    traces = traces_for(config, q, k, v)
    a = traces.neuron_input
    assert a[0, 1].max() == 0 and a[1, 0].max() == 0 and a[0, 0].min() > 0
    assert traces.spikes[0, 0].sum() > 0 and traces.spikes[1, 1].sum() > 0
    run, expected = simulate(config, traces)
    check_run(config, traces, run, expected)


@pytest.mark.parametrize("name", ["v1-h2-c16-n5-l4-t2", "v2-h1-c8-n3-l2-t2"])
def test_counts_start_from_zero_every_timestep(name):
    # column variants: counts of one timestep must not leak into the next (the membrane does
    # carry over; that is the reference's business)
    config = CASES[name]
    q, k, v = random_qkv(config, 2, (1.0, 1.0, 0.0), seed=9)
    v[0, 0] = 1
    v[1, 1, 0] = 1            # one token only
    traces = traces_for(config, q, k, v)
    assert traces.neuron_input[0, 1].max() == 0
    assert traces.neuron_input[1, 1].max() == 1
    run, expected = simulate(config, traces)
    check_run(config, traces, run, expected)


# -- the default configuration ----------------------------------------------------------------


@pytest.mark.slow      # the paper-size unit in Amaranth's simulator (18 s); tb/test_sdsa.py
def test_default_configuration_density_0_1():    # co-simulates SDSA-3 at 8 heads
    config = SDSAConfig()
    assert (config.variant, config.channels, config.tokens, config.lanes) == (3, 256, 196, 16)
    traces = random_traces(config, 0.1, samples=1, seed=0)
    expected = sdsa_expected_beats(config, traces)
    sources = {name: (config.input_fields(), beats)
               for name, beats in sdsa_inputs(config, traces).items()}
    run = run_ports(sdsa_unit(config), sources, config.output_fields(),
                    done=lambda r: len(r.outputs) == len(expected))
    check_beats("SDSA-3", run.outputs, expected)
    assert run.cycles == config.cycles(traces.q, traces.k, traces.v)
    ideal = config.ideal_cycles(traces.q, traces.k, traces.v)
    assert run.cycles / ideal <= 1.15


# -- the comparison itself ----------------------------------------------------------------------


def test_comparison_catches_one_flipped_spike():
    config = CASES["v3-h2-c16-n5-l4-t2"]
    traces = random_traces(config, 0.6, seed=4)
    run, expected = simulate(config, traces)
    check_beats("SDSA-3", run.outputs, expected)
    for flip_to in (0, 1):
        # a spike dropped from, or added to, one beat
        beat = next(n for n, e in enumerate(expected) if 1 - flip_to in e.values["spikes"])
        bad = list(expected)
        values = dict(bad[beat].values)
        spikes = list(values["spikes"])
        lane = spikes.index(1 - flip_to)
        spikes[lane] = flip_to
        values["spikes"] = spikes
        e = bad[beat]
        bad[beat] = Expected(values, where=e.where, lane_name=e.lane_name,
                             lane_base=e.lane_base)
        with pytest.raises(ScoreboardMismatch,
                           match=rf"first divergence at output beat {beat}, .* channel "
                                 rf"{e.lane_base + lane} \(lane {lane}\): spikes expected "
                                 rf"{flip_to}, got {1 - flip_to}$"):
            check_beats("SDSA-3", run.outputs, bad)
    # a missing and a surplus beat are caught too
    with pytest.raises(ScoreboardMismatch, match="never arrived"):
        check_beats("SDSA-3", run.outputs[:-1], expected)
    with pytest.raises(ScoreboardMismatch, match="unexpected output beat"):
        check_beats("SDSA-3", run.outputs, expected[:-1])


# -- construction -------------------------------------------------------------------------------


def exact(message):
    return "^" + re.escape(message) + "$"


def test_wrong_config_type():
    with pytest.raises(TypeError, match=exact("config must be an SDSAConfig, not 3")):
        sdsa_unit(3)
    with pytest.raises(TypeError, match=r"^config must be a variant 3 or 4 SDSAConfig, not "):
        LinearSDSA("sdsa")
    with pytest.raises(TypeError, match=r"^config must be a variant 1 or 2 SDSAConfig, not "):
        ColumnSDSA(None)


@pytest.mark.parametrize("variant", [1, 2])
def test_linear_rejects_column_variants(variant):
    config = cfg(variant, 2, 16, 5, 4, 1)
    with pytest.raises(TypeError,
                       match=exact(f"config must be a variant 3 or 4 SDSAConfig, not {config!r}")):
        LinearSDSA(config)


@pytest.mark.parametrize("variant", [3, 4])
def test_column_rejects_linear_variants(variant):
    config = cfg(variant, 2, 16, 5, 4, 1)
    with pytest.raises(TypeError,
                       match=exact(f"config must be a variant 1 or 2 SDSAConfig, not {config!r}")):
        ColumnSDSA(config)


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_ports(variant):
    config = cfg(variant, 2, 16, 5, 4, 1)
    unit = sdsa_unit(config)
    assert SDSAUnit is sdsa_unit
    assert type(unit) is (LinearSDSA if variant >= 3 else ColumnSDSA)
    assert unit.config is config
    members = unit.signature.members
    names = ["q", "v", "o"] if variant == 2 else ["q", "k", "v", "o"]
    assert sorted(members) == sorted(names)
    assert hasattr(unit, "k") == (variant != 2)
    in_sig = stream.Signature(struct_layout(config.input_fields()))
    out_sig = stream.Signature(struct_layout(config.output_fields()))
    assert unit.signature == wiring.Signature(
        {name: Out(out_sig) if name == "o" else In(in_sig) for name in names})
    assert len(unit.q.payload.as_value()) == config.lanes + 2
    Fragment.get(unit, None)      # it elaborates


# -- the no_rw_check promise ---------------------------------------------------------------------


@pytest.mark.parametrize("config, density", [
    (SDSAConfig(variant=3, heads=2, channels=16, tokens=7, lanes=4, timesteps=2), 0.6),
    (SDSAConfig(variant=3, heads=4, channels=16, tokens=5, lanes=4), 1.0),   # d/lanes = 1
    (SDSAConfig(variant=4, heads=1, channels=16, tokens=6, lanes=2, v_th=0.375), 0.5),
    (SDSAConfig(variant=1, heads=2, channels=8, tokens=6, lanes=4, timesteps=2), 0.7),  # W = 2
    (SDSAConfig(variant=2, heads=1, channels=4, tokens=5, lanes=4), 0.5),                # W = 1
], ids=["v3-t2", "v3-dw1", "v4", "v1-w2", "v2-w1"])
def test_no_read_meets_a_write_of_its_word(config, density):
    """The memories marked `no_rw_check` (Yosys then drops the read-first bypass) are never
    read and written at one address in a cycle whose read data the unit uses, under stalls."""
    checked = watch_memories(sdsa_unit(config), config, density)
    names = {"kvmem", "vmem", "qmem"} if config.variant >= 3 else {"cmem", "qmem"}
    assert set(checked) == names and min(checked.values()) > 0


def test_the_memory_watch_can_fail():
    """A guard that reads where it writes must be reported."""
    class Careless(LinearSDSA):
        def _guard(self, name, used, read, write):
            super()._guard(name, Const(1), write, write)

    config = SDSAConfig(variant=3, heads=2, channels=16, tokens=7, lanes=4)
    with pytest.raises(AssertionError,
                       match=r"^(kv|v|q)mem: read and write of word \d+ in one cycle"):
        watch_memories(Careless(config), config, 0.6)


def watch_memories(dut, config, density):
    """Run 2 samples under stalls checking `dut.rw_checks` every cycle; returns how many used
    reads each memory had."""
    q, k, v = random_qkv(config, 2, density, seed=3)
    spikes, ni = sdsa_int(config, q, k, v)
    traces = SDSATraces(q=q, k=k, v=v, spikes=spikes, neuron_input=ni)
    beats = sdsa_inputs(config, traces)
    expected = sdsa_expected_beats(config, traces)
    checked = {}

    def watch(ctx):
        for name, used, raddr, wen, waddr in dut.rw_checks:
            if ctx.get(used):
                checked[name] = checked.get(name, 0) + 1
                assert not (ctx.get(wen) and ctx.get(raddr) == ctx.get(waddr)), \
                    f"{name}: read and write of word {ctx.get(raddr)} in one cycle"

    srcs = {name: (config.input_fields(), b) for name, b in beats.items()}
    run = run_ports(dut, srcs, config.output_fields(),
                    done=lambda r: len(r.outputs) == len(expected), in_stall=0.3,
                    out_stall=0.3, seed=5, on_cycle=watch)
    assert run.outputs == [e.values for e in expected]
    return checked
