"""cocotb tests of a generated LIF array, run inside the simulator by tb/test_lif.py.

Environment: SPIKEGEN_BUNDLE (the LIF bundle the Verilog was generated from), SPIKEGEN_SEED.
"""

import itertools
import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from sim.lif import lif_expected_beats, lif_input_beats
from sim.scoreboard import Expected, Scoreboard, ScoreboardMismatch
from sim.streams import StreamSink, StreamSource, never, random_stalls, run_cycles
from spec.lif import load_lif_bundle


def write_report(data):
    """Hand figures back to the runner through the JSON file SPIKEGEN_REPORT names, if any."""
    path = os.environ.get("SPIKEGEN_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(data, f)


class LIFBench:
    """Owns the clock, reset, the stream driver and monitor, and the scoreboard."""

    def __init__(self, dut):
        self.dut = dut
        self.config, self.traces = load_lif_bundle(os.environ["SPIKEGEN_BUNDLE"])
        self.seed = int(os.environ.get("SPIKEGEN_SEED", "1"))
        self.source = StreamSource(dut, "i", self.config.input_fields())
        self.sink = StreamSink(dut, "o", self.config.output_fields(), on_beat=self._on_beat)
        self.scoreboard = None
        self.cycle = 0
        self.sample_out_cycles = []  # cycle of the first output beat of each sample
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    def _on_beat(self, beat, cycle):
        if beat["first"]:
            self.sample_out_cycles.append(cycle)
        if self.scoreboard is not None:
            self.scoreboard.check(beat, cycle)

    async def reset(self, cycles=3):
        await FallingEdge(self.dut.clk)
        self.source.flush()
        self.sink.hold()
        self.dut.rst.value = 1
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.cycle += cycles + 1

    def expect(self, expected):
        self.scoreboard = Scoreboard("lif", expected)

    async def run(self, *, in_stalls=None, out_stalls=None, until=None, max_cycles=None):
        self.source.stalls = in_stalls or never()
        self.sink.stalls = out_stalls or never()
        if until is None:
            def until():
                return self.scoreboard.pending == 0
        budget = max_cycles or 50 * self.config.cycles(self.traces.samples) + 1000
        self.cycle = await run_cycles(self.dut, [self.source, self.sink], until=until,
                                      max_cycles=budget, start=self.cycle)

    def measured_cycles(self):
        return self.sink.last_cycle - self.source.first_cycle + 1


async def _stream_all(dut, in_stalls, out_stalls):
    tb = LIFBench(dut)
    await tb.reset()
    tb.expect(lif_expected_beats(tb.config, tb.traces))
    tb.source.put(lif_input_beats(tb.config, tb.traces.inputs))
    await tb.run(in_stalls=in_stalls, out_stalls=out_stalls)
    tb.scoreboard.check_done()
    assert tb.source.idle, "input beats left over"
    return tb


@cocotb.test()
async def test_no_stalls_matches_cycle_model(dut):
    """Every beat checked; cycles equal the cycle model exactly when nothing stalls."""
    started = time.perf_counter()
    tb = await _stream_all(dut, None, None)
    seconds = time.perf_counter() - started
    measured = tb.measured_cycles()
    model = tb.config.cycles(tb.traces.samples)
    ideal = tb.config.ideal_cycles(tb.traces.samples)
    dut._log.info("cycles: measured %d, model %d, ideal %d (ratio %.3f)",
                  measured, model, ideal, measured / ideal)
    write_report({"samples": tb.traces.samples, "beats": tb.sink.received,
                  "measured_cycles": measured, "model_cycles": model, "ideal_cycles": ideal,
                  "loop_seconds": seconds, "simulated_cycles": tb.cycle,
                  "sample_out_cycles": tb.sample_out_cycles})
    assert measured == model, f"measured {measured} cycles, the cycle model says {model}"


@cocotb.test()
async def test_random_stalls_both_sides(dut):
    """Seeded random stalls on the input and the output; every beat checked."""
    seed = int(os.environ.get("SPIKEGEN_SEED", "1"))
    tb = await _stream_all(dut, random_stalls(0.3, seed), random_stalls(0.4, seed + 1))
    model = tb.config.cycles(tb.traces.samples)
    assert tb.measured_cycles() >= model - tb.config.latency, "faster than the cycle model"


@cocotb.test()
async def test_bursty_output_backpressure(dut):
    """Long output stalls fill the output FIFO; the credit counter must hold the input."""
    pattern = itertools.cycle([True] * 13 + [False] * 2)
    await _stream_all(dut, itertools.cycle([False, False, True]), pattern)


@cocotb.test()
async def test_reset_mid_sample_then_clean_sample(dut):
    """A reset in the middle of a sample, then the whole stimulus again: outputs exact."""
    tb = LIFBench(dut)
    await tb.reset()
    cfg = tb.config
    beats = lif_input_beats(cfg, tb.traces.inputs)
    half = max(1, (cfg.beats_per_step * cfg.timesteps) // 2 + 1)
    tb.scoreboard = None  # outputs before the reset are not checked
    tb.source.put(beats[:half])
    await tb.run(in_stalls=random_stalls(0.2, tb.seed), out_stalls=random_stalls(0.5, tb.seed),
                 until=lambda: tb.source.idle)
    await tb.reset()
    tb.expect(lif_expected_beats(cfg, tb.traces))
    tb.source.put(beats)
    await tb.run(in_stalls=random_stalls(0.2, tb.seed + 2),
                 out_stalls=random_stalls(0.2, tb.seed + 3))
    tb.scoreboard.check_done()


@cocotb.test()
async def test_corrupted_expectation_is_caught(dut):
    """One flipped expected spike must be reported with its sample, timestep and neuron."""
    tb = LIFBench(dut)
    await tb.reset()
    cfg = tb.config
    expected = lif_expected_beats(cfg, tb.traces)
    # corrupt the last real neuron of the last timestep of the last sample
    target = len(expected) - 1
    lane = cfg.tail_lanes - 1
    beat = expected[target]
    spikes = list(beat.values["spikes"])
    spikes[lane] ^= 1
    expected[target] = Expected({**beat.values, "spikes": spikes}, beat.where, beat.lane_name,
                                beat.lane_base)
    tb.expect(expected)
    tb.source.put(lif_input_beats(cfg, tb.traces.inputs))
    try:
        await tb.run()
    except ScoreboardMismatch as exc:
        message = str(exc)
    else:
        raise AssertionError("the scoreboard accepted a corrupted expectation")
    s, t = tb.traces.samples - 1, cfg.timesteps - 1
    want = (f"sample {s}, timestep {t}, neuron {cfg.neurons - 1} (lane {lane}): spikes expected "
            f"{spikes[lane]}, got {spikes[lane] ^ 1}")
    assert want in message, f"unexpected report: {message}"
    dut._log.info("caught as expected: %s", message)
