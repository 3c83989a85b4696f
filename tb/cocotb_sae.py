"""cocotb tests of a generated spike-sparse accumulate engine, run by tb/test_sae.py.

Environment: SPIKEGEN_BUNDLE (the SAE bundle the Verilog was generated from), SPIKEGEN_SEED.
The bundle's inputs are spikes, or multi-bit values when its configuration has `in_bits > 1`.
"""

import os
import time

import cocotb

from sim.bench import StreamBench, env_seed, write_report
from sim.sae import sae_expected_beats, sae_input_beats
from sim.scoreboard import Expected
from sim.streams import random_stalls
from spec.sae import load_sae_bundle


class SAEBench(StreamBench):
    """The bench with the SAE bundle named by SPIKEGEN_BUNDLE loaded."""

    def __init__(self, dut):
        self.config, self.params, self.traces = load_sae_bundle(os.environ["SPIKEGEN_BUNDLE"])
        # after a reset the engine zeroes its accumulators before it takes events
        super().__init__(dut, "sae", self.config.input_fields(), self.config.output_fields(),
                         budget=20 * self.config.cycles(self.traces.inputs) + 5000,
                         settle=self.config.acc_words + 2)


async def _stream_all(dut, in_stalls=None, out_stalls=None):
    tb = SAEBench(dut)
    await tb.stream_all(sae_input_beats(tb.config, tb.traces.inputs),
                        sae_expected_beats(tb.config, tb.traces),
                        in_stalls=in_stalls, out_stalls=out_stalls)
    return tb


@cocotb.test()
async def test_no_stalls_matches_cycle_model(dut):
    """Every accumulator checked; cycles equal the cycle model exactly without stalls."""
    started = time.perf_counter()
    tb = await _stream_all(dut)
    seconds = time.perf_counter() - started
    cfg, spikes = tb.config, tb.traces.inputs
    measured, model, ideal = tb.measured_cycles(), cfg.cycles(spikes), cfg.ideal_cycles(spikes)
    dut._log.info("cycles: measured %d, model %d, ideal %d (ratio %.3f)", measured, model, ideal,
                  measured / ideal)
    # events: spikes, or set magnitude bits of multi-bit inputs
    events = int(cfg.magnitude_planes(spikes).sum())
    write_report({"frames": tb.traces.frames, "spikes": events, "events": events,
                  "in_bits": cfg.in_bits,
                  "measured_cycles": measured, "model_cycles": model, "ideal_cycles": ideal,
                  "dense_cycles": cfg.dense_cycles(tb.traces.frames),
                  "loop_seconds": seconds, "simulated_cycles": tb.cycle})
    assert measured == model, f"measured {measured} cycles, the cycle model says {model}"


@cocotb.test()
async def test_random_stalls_both_sides(dut):
    """Seeded random stalls on the spike (or value) input and the accumulator output."""
    seed = env_seed()
    await _stream_all(dut, random_stalls(0.3, seed), random_stalls(0.4, seed + 1))


@cocotb.test()
async def test_reset_mid_frame_then_clean_frames(dut):
    """A reset in the middle of a frame, then all frames again: the engine must clear its
    half-accumulated state itself."""
    tb = SAEBench(dut)
    await tb.reset()
    beats = sae_input_beats(tb.config, tb.traces.inputs)
    await tb.reset_midway_then_all(beats, sae_expected_beats(tb.config, tb.traces),
                                   max(1, len(beats) // 2 + 1))


@cocotb.test()
async def test_corrupted_expectation_is_caught(dut):
    """One changed expected accumulator must be reported with its frame, pixel and channel."""
    tb = SAEBench(dut)
    await tb.reset()
    cfg = tb.config
    expected = sae_expected_beats(cfg, tb.traces)
    target = len(expected) - 1
    beat = expected[target]
    lane = (cfg.out_channels - 1) % cfg.lanes
    acc = list(beat.values["acc"])
    wrong = acc[lane] + 1 if acc[lane] < (1 << (cfg.acc_bits - 1)) - 1 else acc[lane] - 1
    acc[lane] = wrong
    expected[target] = Expected({**beat.values, "acc": acc}, beat.where, beat.lane_name,
                                beat.lane_base)
    tb.expect(expected)
    tb.source.put(sae_input_beats(cfg, tb.traces.inputs))
    message = await tb.run_expecting_mismatch()
    f = tb.traces.frames - 1
    want = (f"frame {f}, row {cfg.out_height - 1}, col {cfg.out_width - 1}, channel "
            f"{cfg.out_channels - 1} (lane {lane}): acc expected {wrong}")
    assert want in message, f"unexpected report: {message}"
