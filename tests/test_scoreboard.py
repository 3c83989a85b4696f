"""Tests of `sim.scoreboard`: in-order comparison and first-divergence messages, and one
end-to-end check against the Amaranth-simulated LIF array."""

import re

import pytest
from amaranth_lif import simulate_lif

from sim.lif import lif_expected_beats
from sim.scoreboard import Expected, Scoreboard, ScoreboardMismatch
from spec.lif import LIFConfig, LIFTraces
from sw.export import lif_traces, random_lif_inputs


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


def beat(spikes, v, first=0, last=0):
    return {"spikes": list(spikes), "v": list(v), "first": first, "last": last}


def expected(spikes, v, *, first=0, last=0, sample=0, timestep=0, base=0):
    return Expected(beat(spikes, v, first, last), where={"sample": sample, "timestep": timestep},
                    lane_name="neuron", lane_base=base)


EXPECTED = [
    expected([0, 1, 0, 0], [3, -16, 5, 0], first=1, base=0),
    expected([1, 0, 1, 1], [0, 7, 0, 0], base=4),
    expected([0, 0, 1, 0], [9, 2, 0, -3], timestep=1, base=0),
    expected([1, 1, 0, 0], [0, 0, 8, 1], last=1, timestep=1, base=4),
]


def test_matching_beats_pass_and_pending_counts_down():
    board = Scoreboard("lif", EXPECTED)
    assert board.pending == 4 and board.matched == 0
    for n, exp in enumerate(EXPECTED):
        board.check(dict(exp.values), cycle=10 + n)
        assert board.pending == 3 - n
        assert board.matched == n + 1
    board.check_done()


def test_array_lane_mismatch_names_place_and_element():
    board = Scoreboard("lif", EXPECTED)
    board.check(beat([0, 1, 0, 0], [3, -16, 5, 0], first=1), cycle=8)
    board.check(beat([1, 0, 1, 1], [0, 7, 0, 0]), cycle=9)
    # beat 2 is sample 0, timestep 1, neurons 0..3; lane 3 differs
    with pytest.raises(ScoreboardMismatch, match=exact(
            "lif: first divergence at output beat 2, cycle 17: sample 0, timestep 1, "
            "neuron 3 (lane 3): v expected -3, got 4")):
        board.check(beat([0, 0, 1, 0], [9, 2, 0, 4]), cycle=17)
    assert board.pending == 2


def test_lane_element_counts_from_lane_base():
    exp = Expected(beat([0, 0, 0], [1, 2, 3]), where={"sample": 2, "timestep": 3},
                   lane_name="neuron", lane_base=21)
    with pytest.raises(ScoreboardMismatch, match=exact(
            "unit7: first divergence at output beat 0, cycle 0: sample 2, timestep 3, "
            "neuron 22 (lane 1): spikes expected 0, got 1")):
        Scoreboard("unit7", [exp]).check(beat([0, 1, 0], [1, 2, 3]), cycle=0)


def test_first_differing_lane_is_reported():
    with pytest.raises(ScoreboardMismatch, match=exact(
            "lif: first divergence at output beat 0, cycle 3: sample 0, timestep 0, "
            "neuron 1 (lane 1): v expected -16, got -15")):
        Scoreboard("lif", EXPECTED).check(beat([0, 1, 0, 0], [3, -15, 6, 1], first=1), cycle=3)


def test_scalar_marker_mismatch_is_a_beat_marker():
    board = Scoreboard("lif", EXPECTED)
    with pytest.raises(ScoreboardMismatch, match=exact(
            "lif: first divergence at output beat 0, cycle 5: sample 0, timestep 0, "
            "beat marker: first expected 1, got 0")):
        board.check(beat([0, 1, 0, 0], [3, -16, 5, 0], first=0), cycle=5)


def test_default_lane_name():
    exp = Expected({"x": [1, 2]}, where={"token": 4})
    with pytest.raises(ScoreboardMismatch, match=exact(
            "u: first divergence at output beat 0, cycle 1: token 4, lane 1 (lane 1): "
            "x expected 2, got 0")):
        Scoreboard("u", [exp]).check({"x": [1, 0]}, cycle=1)


def test_extra_beat_raises():
    board = Scoreboard("lif", EXPECTED[:1])
    board.check(dict(EXPECTED[0].values), cycle=4)
    extra = beat([0, 0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(ScoreboardMismatch, match=exact(
            f"lif: unexpected output beat 1 at cycle 6: {extra} (only 1 expected)")):
        board.check(extra, cycle=6)


def test_check_done_names_next_expected_place():
    board = Scoreboard("lif", EXPECTED)
    board.check(dict(EXPECTED[0].values), cycle=0)
    board.check(dict(EXPECTED[1].values), cycle=1)
    with pytest.raises(ScoreboardMismatch, match=exact(
            "lif: 2 of 4 expected beats never arrived (next: {'sample': 0, 'timestep': 1})")):
        board.check_done()


def test_check_done_with_nothing_arrived():
    with pytest.raises(ScoreboardMismatch, match=exact(
            "lif: 4 of 4 expected beats never arrived (next: {'sample': 0, 'timestep': 0})")):
        Scoreboard("lif", EXPECTED).check_done()


def test_fields_limit_the_comparison():
    wrong_v = beat([0, 1, 0, 0], [99, 99, 99, 99], first=1)
    spikes_only = Scoreboard("lif", EXPECTED, fields=["spikes", "first", "last"])
    spikes_only.check(wrong_v, cycle=0)
    assert spikes_only.matched == 1
    with_v = Scoreboard("lif", EXPECTED, fields=["v"])
    with pytest.raises(ScoreboardMismatch, match=exact(
            "lif: first divergence at output beat 0, cycle 0: sample 0, timestep 0, "
            "neuron 0 (lane 0): v expected 3, got 99")):
        with_v.check(wrong_v, cycle=0)


def test_fields_compared_in_expected_order():
    # spikes come before v in the expected beat, so a beat wrong in both reports spikes
    with pytest.raises(ScoreboardMismatch, match=exact(
            "lif: first divergence at output beat 0, cycle 2: sample 0, timestep 0, "
            "neuron 2 (lane 2): spikes expected 0, got 1")):
        Scoreboard("lif", EXPECTED).check(beat([0, 1, 1, 0], [0, 0, 0, 0], first=1), cycle=2)


# -- end to end: Amaranth-simulated LIF array through the scoreboard ---------------------------

CONFIG = LIFConfig(neurons=10, lanes=4, channels=2, v_th=(1.0, 0.5), bias=(0.0, 0.25),
                   timesteps=2, expose_membrane=True)
SAMPLES = 2


@pytest.fixture(scope="module")
def lif_run():
    inputs = random_lif_inputs(CONFIG, SAMPLES, seed=5)
    beats, _ = simulate_lif(CONFIG, inputs, in_stall=0.3, out_stall=0.4, seed=2)
    return lif_traces(CONFIG, inputs), beats


def test_simulated_lif_passes_scoreboard(lif_run):
    traces, beats = lif_run
    board = Scoreboard("lif", lif_expected_beats(CONFIG, traces))
    assert board.pending == SAMPLES * CONFIG.timesteps * CONFIG.beats_per_step == len(beats)
    for n, got in enumerate(beats):
        board.check(got, cycle=n)
    board.check_done()


@pytest.mark.parametrize("place", [(1, 1, 9), (0, 1, 2), (1, 0, 4)],
                         ids=["last-neuron", "first-beat", "second-beat"])
def test_flipped_membrane_is_named(lif_run, place):
    traces, beats = lif_run
    s, t, n = place
    membranes = traces.membranes.copy()
    got = int(membranes[s, t, n])
    want = got + 1 if got < CONFIG.v_max else got - 1
    membranes[s, t, n] = want
    corrupt = LIFTraces(inputs=traces.inputs, spikes=traces.spikes, membranes=membranes)
    board = Scoreboard("lif", lif_expected_beats(CONFIG, corrupt))
    lanes, per_step = CONFIG.lanes, CONFIG.beats_per_step
    index = (s * CONFIG.timesteps + t) * per_step + n // lanes
    message = (f"lif: first divergence at output beat {index}, cycle {index}: sample {s}, "
               f"timestep {t}, neuron {n} (lane {n % lanes}): v expected {want}, "
               f"got {got}")
    with pytest.raises(ScoreboardMismatch, match=exact(message)):
        for k, got in enumerate(beats):
            board.check(got, cycle=k)
    assert board.matched == index
