"""cocotb tests of one generated layer (a Conv-based or Transformer-based block) alone, against
the integer network, run by tb/test_block.py.

The layer's input beats are the previous layer's output stream and its expected output is its
own, both from the traces of a network bundle (the streams the network test checks at its taps),
so random stalls reach the block's own ports here.

Environment: SPIKEGEN_BUNDLE (the network bundle), SPIKEGEN_LAYER (the layer's index, at least
1), SPIKEGEN_SEED, SPIKEGEN_REPORT.
"""

import os

import cocotb

from hw.network import Network
from sim.bench import StreamBench, env_seed, write_report
from sim.network import NetworkStreams
from sim.scoreboard import Expected
from sim.streams import random_stalls
from sw.netbundle import read_network_bundle


class BlockBench(StreamBench):
    """The bench with layer SPIKEGEN_LAYER of the network bundle SPIKEGEN_BUNDLE loaded."""

    def __init__(self, dut):
        _, net, bundle = read_network_bundle(os.environ["SPIKEGEN_BUNDLE"])
        self.n = int(os.environ["SPIKEGEN_LAYER"])
        if not 1 <= self.n < len(net.layers):
            raise ValueError(f"SPIKEGEN_LAYER must be 1 to {len(net.layers) - 1}, not {self.n}")
        self.streams = NetworkStreams(Network(net), net, bundle)
        self.name = self.streams.layer_names[self.n]
        frames = self.streams.samples * net.timesteps
        super().__init__(dut, self.name, self.streams.stream_configs[self.n - 1].stream_fields(),
                         self.streams.stream_configs[self.n].stream_fields(),
                         budget=3_000_000 * frames)

    def input_beats(self):
        return [e.values for e in self.streams.tap_expected(self.n - 1)]

    def expected(self):
        return self.streams.tap_expected(self.n)


@cocotb.test()
async def test_block_matches_integer_model(dut):
    """Every value of the block's output stream; no stalls."""
    tb = BlockBench(dut)
    await tb.stream_all(tb.input_beats(), tb.expected())
    cycles = tb.measured_cycles()
    s = tb.streams
    dut._log.info("%s: %d images x %d timesteps, %d cycles", tb.name, s.samples, s.timesteps,
                  cycles)
    write_report({"layer": tb.name, "samples": s.samples, "timesteps": s.timesteps,
                  "beats": len(tb.expected()), "measured_cycles": cycles})


@cocotb.test()
async def test_block_random_stalls(dut):
    """Seeded random stalls on the block's input and output."""
    tb = BlockBench(dut)
    seed = env_seed()
    await tb.stream_all(tb.input_beats(), tb.expected(), in_stalls=random_stalls(0.3, seed),
                        out_stalls=random_stalls(0.5, seed + 1))


@cocotb.test()
async def test_block_corrupted_expectation_is_caught(dut):
    """One changed value in the expected output is reported with its sample, timestep, pixel
    and channel."""
    tb = BlockBench(dut)
    expected = tb.expected()
    k = len(expected) // 2 + 1
    beat = expected[k]
    x = list(beat.values["x"])
    x[0] = x[0] + 1 if x[0] < 0 else x[0] - 1
    expected[k] = Expected({**beat.values, "x": x}, beat.where, beat.lane_name, beat.lane_base)
    await tb.reset()
    tb.expect(expected)
    tb.source.put(tb.input_beats())
    message = await tb.run_expecting_mismatch()
    where = ", ".join(f"{key} {v}" for key, v in beat.where.items())
    assert f"first divergence at output beat {k}" in message and where in message, message
    assert f"channel {beat.lane_base} (lane 0): x expected {x[0]}" in message, message
