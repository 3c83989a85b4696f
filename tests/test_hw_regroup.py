"""Stream width adapters (`hw.regroup`) in the Amaranth simulator."""

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth_streams import run_streams

from hw.regroup import Narrow, Widen, marked_fields


def beats(count, lanes, bits, seed, frame=6):
    rng = random.Random(seed)
    return [{"v": [rng.randrange(1 << bits) for _ in range(lanes)], "first": int(n % frame == 0),
             "last": int(n % frame == frame - 1)} for n in range(count)]


def split(beat, parts):
    lanes = len(beat["v"]) // parts
    return [{"v": beat["v"][p * lanes:(p + 1) * lanes], "first": beat["first"] * (p == 0),
             "last": beat["last"] * (p == parts - 1)} for p in range(parts)]


@pytest.mark.parametrize("wide, narrow", [(16, 8), (16, 4), (8, 8), (6, 2)])
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.4, 0.3)])
def test_narrow_splits_in_lane_order(wide, narrow, stalls):
    dut = Narrow("v", 3, wide, narrow)
    data = beats(12, wide, 3, seed=wide + narrow)
    want = [part for beat in data for part in split(beat, wide // narrow)]
    run = run_streams(dut, marked_fields("v", 3, wide), data, marked_fields("v", 3, narrow),
                      done=lambda r: len(r.outputs) == len(want), in_stall=stalls[0],
                      out_stall=stalls[1], seed=3)
    assert run.outputs == want
    if stalls == (0.0, 0.0):
        # one narrow beat per cycle from the start; each wide beat taken with its last part
        assert run.out_cycles == list(range(len(want)))
        parts = wide // narrow
        assert run.in_cycles == list(range(parts - 1, len(want), parts))


@pytest.mark.parametrize("wide, narrow", [(16, 8), (16, 4), (8, 8), (6, 2)])
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.4, 0.3)])
def test_widen_joins_in_lane_order(wide, narrow, stalls):
    dut = Widen("v", 3, wide, narrow)
    want = beats(10, wide, 3, seed=wide * narrow)
    data = [part for beat in want for part in split(beat, wide // narrow)]
    run = run_streams(dut, marked_fields("v", 3, narrow), data, marked_fields("v", 3, wide),
                      done=lambda r: len(r.outputs) == len(want), in_stall=stalls[0],
                      out_stall=stalls[1], seed=5)
    assert run.outputs == want


class _RoundTrip(wiring.Component):
    def __init__(self):
        self.narrow, self.widen = Narrow("v", 4, 16, 4, signed=True), Widen("v", 4, 16, 4,
                                                                             signed=True)
        super().__init__({"i": wiring.In(self.narrow.i.signature.flip()),
                          "o": wiring.Out(self.widen.o.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.narrow, m.submodules.widen = self.narrow, self.widen
        wiring.connect(m, wiring.flipped(self.i), self.narrow.i)
        wiring.connect(m, self.narrow.o, self.widen.i)
        wiring.connect(m, self.widen.o, wiring.flipped(self.o))
        return m


def test_round_trip_under_stalls():
    rng = random.Random(1)
    data = [{"v": [rng.randrange(-8, 8) for _ in range(16)], "first": n == 0, "last": n == 9}
            for n in range(10)]
    fields = marked_fields("v", 4, 16, signed=True)
    run = run_streams(_RoundTrip(), fields, data, fields,
                      done=lambda r: len(r.outputs) == len(data), in_stall=0.3, out_stall=0.5)
    assert run.outputs == [{**b, "first": int(b["first"]), "last": int(b["last"])} for b in data]


def test_corrupted_expectation_is_caught():
    dut = Narrow("v", 3, 8, 4)
    data = beats(4, 8, 3, seed=9)
    want = [part for beat in data for part in split(beat, 2)]
    want[3] = {**want[3], "v": [(x + 1) % 8 for x in want[3]["v"]]}
    run = run_streams(dut, marked_fields("v", 3, 8), data, marked_fields("v", 3, 4),
                      done=lambda r: len(r.outputs) == len(want))
    assert run.outputs != want


@pytest.mark.parametrize("cls", [Narrow, Widen])
def test_lanes_must_divide(cls):
    with pytest.raises(ValueError, match=r"narrow lanes \(3\) must divide wide lanes \(8\)"):
        cls("v", 1, 8, 3)
