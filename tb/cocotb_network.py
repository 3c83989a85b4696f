"""cocotb tests of a generated whole network against the integer network, run by
tb/test_network.py.

Environment: SPIKEGEN_BUNDLE (the network bundle the Verilog was generated from),
SPIKEGEN_TAPS (1, the default: the design has taps and every layer's stream is checked; 0: only
the class accumulations), SPIKEGEN_SAMPLES (how many of its images to stream; default all),
SPIKEGEN_SEED, SPIKEGEN_REPORT.
"""

import os
import time

import cocotb
import numpy as np

from hw.network import Network
from sim.bench import StreamBench, env_seed, write_report
from sim.network import NetworkStreams, TapMonitor
from sim.scoreboard import Expected
from sim.streams import random_stalls
from sw.netbundle import read_network_bundle


class NetworkBench(StreamBench):
    """The bench with the network bundle named by SPIKEGEN_BUNDLE loaded; every layer's output
    stream is checked at its tap, the class accumulations at the output."""

    def __init__(self, dut):
        _, net, bundle = read_network_bundle(os.environ["SPIKEGEN_BUNDLE"])
        self.hw = Network(net, taps=True)
        samples = int(os.environ.get("SPIKEGEN_SAMPLES", "0")) or None
        self.streams = NetworkStreams(self.hw, net, bundle, samples)
        frames = self.streams.samples * net.timesteps
        super().__init__(dut, "network output", self.streams.in_config.input_fields(),
                         self.streams.out_config.output_fields(), budget=3_000_000 * frames)
        self.outputs = []
        self.taps = os.environ.get("SPIKEGEN_TAPS", "1") != "0"

    def add_taps(self, corrupt=None):
        """Tap checkers for every layer (with taps); `corrupt(n, expected)` may alter layer n's
        beats."""
        if not self.taps:
            return
        for n, name in enumerate(self.streams.layer_names):
            expected = self.streams.tap_expected(n)
            if corrupt is not None:
                corrupt(n, expected)
            fields = self.streams.stream_configs[n].stream_fields()
            self.monitors.append(TapMonitor(self.dut, n, name, fields, expected))

    def _on_beat(self, beat, cycle):
        self.outputs.append(beat)
        super()._on_beat(beat, cycle)

    def check_taps_done(self):
        for monitor in self.monitors:
            monitor.scoreboard.check_done()


async def _run(dut, *, in_stalls=None, out_stalls=None):
    tb = NetworkBench(dut)
    tb.add_taps()
    await tb.stream_all(tb.streams.input_beats(), tb.streams.output_expected(),
                        in_stalls=in_stalls, out_stalls=out_stalls)
    tb.check_taps_done()
    scores = tb.streams.scores_of(tb.outputs)
    np.testing.assert_array_equal(scores, tb.streams.scores)
    return tb, scores


@cocotb.test()
async def test_network_matches_integer_model(dut):
    """Every layer's stream and every class accumulation checked; no stalls."""
    started = time.perf_counter()
    tb, scores = await _run(dut)
    seconds = time.perf_counter() - started
    cycles = tb.measured_cycles()
    s = tb.streams
    dut._log.info("network: %d images x %d timesteps, %d cycles (%.0f per image), %.1f s "
                  "(%.0f cycles/s)", s.samples, s.timesteps, cycles, cycles / s.samples,
                  seconds, tb.cycle / seconds)
    write_report({"samples": s.samples, "timesteps": s.timesteps, "measured_cycles": cycles,
                  "loop_seconds": seconds, "simulated_cycles": tb.cycle,
                  "rtl_predictions": scores.argmax(axis=1).tolist(),
                  "int_predictions": s.scores.argmax(axis=1).tolist(),
                  "labels": None if s.labels is None else s.labels.tolist()})


@cocotb.test()
async def test_network_random_stalls(dut):
    """Seeded random stalls on the pixel input and the class output."""
    seed = env_seed()
    await _run(dut, in_stalls=random_stalls(0.3, seed), out_stalls=random_stalls(0.5, seed + 1))


@cocotb.test()
async def test_corrupted_expectation_is_caught(dut):
    """One changed value in layer 1's expected stream is reported with the layer's name and
    the value's sample, timestep, pixel and channel."""
    tb = NetworkBench(dut)
    changed = {}

    def corrupt(n, expected):
        if n != 1:
            return
        k = len(expected) // 2 + 1
        beat = expected[k]
        x = list(beat.values["x"])
        x[0] = x[0] + 1 if x[0] < 0 else x[0] - 1
        expected[k] = Expected({**beat.values, "x": x}, beat.where, beat.lane_name,
                               beat.lane_base)
        changed.update(where=beat.where, lane=beat.lane_base, value=x[0])

    tb.add_taps(corrupt)
    await tb.reset()
    tb.expect(tb.streams.output_expected())
    tb.source.put(tb.streams.input_beats())
    message = await tb.run_expecting_mismatch()
    where = ", ".join(f"{k} {v}" for k, v in changed["where"].items())
    want = (f"{tb.streams.layer_names[1]}: first divergence at output beat "
            f"{len(tb.streams.tap_expected(1)) // 2 + 1}")
    assert want in message and where in message, f"unexpected report: {message}"
    assert f"channel {changed['lane']} (lane 0): x expected {changed['value']}" in message, \
        message
