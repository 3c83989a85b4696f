"""cocotb tests of a generated LIF array, run inside the simulator by tb/test_lif.py.

Environment: SPIKEGEN_BUNDLE (the LIF bundle the Verilog was generated from), SPIKEGEN_SEED.
"""

import itertools
import os
import time

import cocotb

from sim.bench import StreamBench, env_seed, write_report
from sim.lif import lif_expected_beats, lif_input_beats
from sim.scoreboard import Expected
from sim.streams import random_stalls
from spec.lif import load_lif_bundle


class LIFBench(StreamBench):
    """The bench with the LIF bundle named by SPIKEGEN_BUNDLE loaded."""

    def __init__(self, dut):
        self.config, self.traces = load_lif_bundle(os.environ["SPIKEGEN_BUNDLE"])
        super().__init__(dut, "lif", self.config.input_fields(), self.config.output_fields(),
                         budget=50 * self.config.cycles(self.traces.samples) + 1000)


async def _stream_all(dut, in_stalls, out_stalls):
    tb = LIFBench(dut)
    await tb.stream_all(lif_input_beats(tb.config, tb.traces.inputs),
                        lif_expected_beats(tb.config, tb.traces),
                        in_stalls=in_stalls, out_stalls=out_stalls)
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
                  "sample_out_cycles": tb.first_out_cycles})
    assert measured == model, f"measured {measured} cycles, the cycle model says {model}"


@cocotb.test()
async def test_random_stalls_both_sides(dut):
    """Seeded random stalls on the input and the output; every beat checked."""
    seed = env_seed()
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
    half = max(1, (cfg.beats_per_step * cfg.timesteps) // 2 + 1)
    await tb.reset_midway_then_all(lif_input_beats(cfg, tb.traces.inputs),
                                   lif_expected_beats(cfg, tb.traces), half)


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
    message = await tb.run_expecting_mismatch()
    s, t = tb.traces.samples - 1, cfg.timesteps - 1
    want = (f"sample {s}, timestep {t}, neuron {cfg.neurons - 1} (lane {lane}): spikes expected "
            f"{spikes[lane]}, got {spikes[lane] ^ 1}")
    assert want in message, f"unexpected report: {message}"
