"""cocotb tests of a generated SNN block against the integer network, run by tb/test_block.py.

Environment: SPIKEGEN_BUNDLE (the block bundle the Verilog was generated from), SPIKEGEN_SAMPLES
(how many of its samples to stream; default all), SPIKEGEN_SEED.
"""

import os
import time

import cocotb
import numpy as np

from hw.block import block_units
from sim.bench import StreamBench, env_seed, write_report
from sim.scoreboard import Expected
from sim.shortcut import shortcut_beats
from sim.streams import random_stalls
from sw.netbundle import read_network_bundle


class BlockBench(StreamBench):
    """The bench with the block bundle named by SPIKEGEN_BUNDLE loaded."""

    def __init__(self, dut):
        _, layers, bundle = read_network_bundle(os.environ["SPIKEGEN_BUNDLE"])
        self.timesteps = int(bundle.config["timesteps"])
        units = block_units(layers[0], bundle.config["widths"], self.timesteps)
        self.stream = units["proj_shortcut"][0]
        samples = int(os.environ.get("SPIKEGEN_SAMPLES", "0")) or None
        self.x = np.asarray(bundle.array("input"))[:samples]
        self.y = np.asarray(bundle.array("output"))[:samples]
        frames = self.x.shape[0] * self.timesteps
        super().__init__(dut, "block", self.stream.stream_fields(), self.stream.stream_fields(),
                         budget=2_000_000 * frames)

    def frames(self, values):
        return values.reshape(-1, *values.shape[2:])

    def inputs(self):
        return shortcut_beats(self.stream, self.frames(self.x), "x")

    def expected(self):
        cfg = self.stream
        out = []
        for n, beat in enumerate(shortcut_beats(cfg, self.frames(self.y), "x")):
            f, rest = divmod(n, cfg.frame_words)
            pixel, g = divmod(rest, cfg.groups)
            out.append(Expected(beat, where={"sample": f // self.timesteps,
                                             "timestep": f % self.timesteps,
                                             "row": pixel // cfg.width,
                                             "col": pixel % cfg.width},
                                lane_name="channel", lane_base=g * cfg.lanes))
        return out


@cocotb.test()
async def test_block_matches_integer_model(dut):
    """Every output stream value of every sample and timestep checked, no stalls."""
    started = time.perf_counter()
    tb = BlockBench(dut)
    await tb.stream_all(tb.inputs(), tb.expected())
    seconds = time.perf_counter() - started
    cycles = tb.measured_cycles()
    dut._log.info("block: %d samples x %d timesteps, %d cycles, %.1f s (%.0f cycles/s)",
                  tb.x.shape[0], tb.timesteps, cycles, seconds, tb.cycle / seconds)
    write_report({"samples": int(tb.x.shape[0]), "timesteps": tb.timesteps,
                  "measured_cycles": cycles, "loop_seconds": seconds,
                  "simulated_cycles": tb.cycle})


@cocotb.test()
async def test_block_random_stalls(dut):
    """Seeded random stalls on the block's input and output."""
    tb = BlockBench(dut)
    seed = env_seed()
    await tb.stream_all(tb.inputs(), tb.expected(), in_stalls=random_stalls(0.3, seed),
                        out_stalls=random_stalls(0.4, seed + 1))


@cocotb.test()
async def test_corrupted_expectation_is_caught(dut):
    """One changed expected value must be reported with its sample, timestep, pixel, channel."""
    tb = BlockBench(dut)
    await tb.reset()
    cfg = tb.stream
    expected = tb.expected()
    beat = expected[0]
    x = list(beat.values["x"])
    wrong = x[0] + 1 if x[0] < (1 << (cfg.bits - 1)) - 1 else x[0] - 1
    x[0] = wrong
    expected[0] = Expected({**beat.values, "x": x}, beat.where, beat.lane_name, beat.lane_base)
    tb.expect(expected)
    tb.source.put(tb.inputs())
    message = await tb.run_expecting_mismatch()
    want = f"sample 0, timestep 0, row 0, col 0, channel 0 (lane 0): x expected {wrong}"
    assert want in message, f"unexpected report: {message}"
