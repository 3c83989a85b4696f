"""cocotb tests of a generated membrane-shortcut datapath, run by tb/test_shortcut.py.

Environment: SPIKEGEN_BUNDLE (the shortcut bundle the Verilog was generated from),
SPIKEGEN_SEED.
"""

import os
import time

import cocotb

from sim.bench import StreamBench, env_seed, write_report
from sim.scoreboard import Expected
from sim.shortcut import shortcut_expected_beats, shortcut_input_beats
from sim.streams import random_stalls
from spec.shortcut import load_shortcut_bundle


class ShortcutBench(StreamBench):
    """The bench with the shortcut bundle named by SPIKEGEN_BUNDLE loaded."""

    def __init__(self, dut):
        self.config, self.params, self.traces = load_shortcut_bundle(
            os.environ["SPIKEGEN_BUNDLE"])
        super().__init__(dut, "shortcut", self.config.input_ports(),
                         self.config.stream_fields(),
                         budget=20 * self.config.cycles(self.traces.frames) + 1000)

    def inputs(self):
        return shortcut_input_beats(self.config, self.traces)

    def expected(self):
        return shortcut_expected_beats(self.config, self.traces)


@cocotb.test()
async def test_no_stalls_matches_cycle_model(dut):
    """Every output value checked; cycles equal the cycle model exactly without stalls."""
    started = time.perf_counter()
    tb = ShortcutBench(dut)
    await tb.stream_all(tb.inputs(), tb.expected())
    seconds = time.perf_counter() - started
    measured, model = tb.measured_cycles(), tb.config.cycles(tb.traces.frames)
    ideal = tb.traces.frames * tb.config.frame_words
    dut._log.info("cycles: measured %d, model %d, ideal %d", measured, model, ideal)
    write_report({"frames": tb.traces.frames, "measured_cycles": measured,
                  "model_cycles": model, "ideal_cycles": ideal, "loop_seconds": seconds,
                  "simulated_cycles": tb.cycle})
    assert measured == model, f"measured {measured} cycles, the cycle model says {model}"


@cocotb.test()
async def test_random_stalls_every_stream(dut):
    """Seeded random stalls on the branch, the residual and the output."""
    tb = ShortcutBench(dut)
    seed = env_seed()
    await tb.stream_all(tb.inputs(), tb.expected(), in_stalls=tb._in_stalls(0.3, seed),
                        out_stalls=random_stalls(0.4, seed + 1))


@cocotb.test()
async def test_residual_late(dut):
    """The branch arrives first and waits for the residual, which trickles in."""
    tb = ShortcutBench(dut)
    if not tb.config.residual:
        return
    seed = env_seed()
    await tb.stream_all(tb.inputs(), tb.expected(),
                        in_stalls={"branch": None, "residual": random_stalls(0.8, seed)},
                        out_stalls=random_stalls(0.1, seed + 2))


@cocotb.test()
async def test_reset_mid_frame_then_clean_frames(dut):
    """A reset in the middle of a frame (residual buffer half full), then all frames again:
    nothing of the interrupted stream may leak through."""
    tb = ShortcutBench(dut)
    await tb.reset()
    beats = tb.inputs()
    cut = max(1, len(beats["branch"]) // 2 + 1)
    await tb.reset_midway_then_all(beats, tb.expected(), cut)


@cocotb.test()
async def test_corrupted_expectation_is_caught(dut):
    """One changed expected value must be reported with its frame, pixel and channel."""
    tb = ShortcutBench(dut)
    await tb.reset()
    cfg = tb.config
    expected = tb.expected()
    target = len(expected) - 1
    beat = expected[target]
    lane = (cfg.channels - 1) % cfg.lanes
    x = list(beat.values["x"])
    wrong = x[lane] + 1 if x[lane] < (1 << (cfg.bits - 1)) - 1 else x[lane] - 1
    x[lane] = wrong
    expected[target] = Expected({**beat.values, "x": x}, beat.where, beat.lane_name,
                                beat.lane_base)
    tb.expect(expected)
    tb.source.put(tb.inputs())
    message = await tb.run_expecting_mismatch()
    want = (f"frame {tb.traces.frames - 1}, row {cfg.height - 1}, col {cfg.width - 1}, channel "
            f"{cfg.channels - 1} (lane {lane}): x expected {wrong}")
    assert want in message, f"unexpected report: {message}"
