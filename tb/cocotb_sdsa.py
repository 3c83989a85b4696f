"""cocotb tests of a generated SDSA unit, run by tb/test_sdsa.py.

Environment: SPIKEGEN_BUNDLE (the SDSA bundle the Verilog was generated from), SPIKEGEN_SEED.
"""

import os
import time

import cocotb
import numpy as np

from sim.bench import StreamBench, write_report
from sim.scoreboard import Expected
from sim.sdsa import sdsa_expected_beats, sdsa_inputs
from sim.streams import random_stalls
from spec.sdsa import load_sdsa_bundle


class SDSABench(StreamBench):
    """The bench with the SDSA bundle named by SPIKEGEN_BUNDLE loaded; inputs q, (k,) v."""

    def __init__(self, dut):
        self.config, self.traces = load_sdsa_bundle(os.environ["SPIKEGEN_BUNDLE"])
        tr = self.traces
        self.model = self.config.cycles(tr.q, tr.k, tr.v)
        ports = {name: self.config.input_fields() for name in sdsa_inputs(self.config, tr)}
        super().__init__(dut, "sdsa", ports, self.config.output_fields(),
                         budget=20 * self.model + 5000)

    def inputs(self):
        return sdsa_inputs(self.config, self.traces)

    def expected(self):
        return sdsa_expected_beats(self.config, self.traces)


@cocotb.test()
async def test_no_stalls_matches_cycle_model(dut):
    """Every output beat checked; cycles equal the cycle model exactly without stalls."""
    started = time.perf_counter()
    tb = SDSABench(dut)
    await tb.stream_all(tb.inputs(), tb.expected())
    seconds = time.perf_counter() - started
    cfg, tr = tb.config, tb.traces
    measured, ideal = tb.measured_cycles(), cfg.ideal_cycles(tr.q, tr.k, tr.v)
    dut._log.info("cycles: measured %d, model %d, ideal %d (ratio %.3f)", measured, tb.model,
                  ideal, measured / ideal)
    write_report({"samples": tr.samples, "q_spikes": int(tr.q.sum()),
                  "k_spikes": int(tr.k.sum()), "out_spikes": int(tr.spikes.sum()),
                  "measured_cycles": measured, "model_cycles": tb.model, "ideal_cycles": ideal,
                  "loop_seconds": seconds, "simulated_cycles": tb.cycle})
    if cfg.variant == 3 and cfg.timesteps == 1:
        # the traces the hardware matched fire exactly where Q KV >= 8
        assert np.array_equal(tr.spikes, (tr.neuron_input >= 8).astype(np.uint8))
    assert measured == tb.model, f"measured {measured} cycles, the cycle model says {tb.model}"


@cocotb.test()
async def test_random_stalls_all_streams(dut):
    """Seeded random stalls on every input and on the output."""
    tb = SDSABench(dut)
    await tb.stream_all(tb.inputs(), tb.expected(), in_stalls=tb._in_stalls(0.3, tb.seed),
                        out_stalls=random_stalls(0.4, tb.seed + 1))


@cocotb.test()
async def test_reset_mid_sample_then_clean_samples(dut):
    """A reset in the middle of a sample, then all samples again: no state may leak."""
    tb = SDSABench(dut)
    await tb.reset()
    beats = tb.inputs()
    cut = max(1, len(beats["q"]) // 2 + 1)
    await tb.reset_midway_then_all(beats, tb.expected(), cut)


@cocotb.test()
async def test_corrupted_expectation_is_caught(dut):
    """One flipped expected spike must be reported with its sample, timestep, token, channel."""
    tb = SDSABench(dut)
    await tb.reset()
    cfg = tb.config
    expected = tb.expected()
    target = len(expected) - 1
    beat = expected[target]
    lane = cfg.lanes - 1
    spikes = list(beat.values["spikes"])
    spikes[lane] ^= 1
    expected[target] = Expected({**beat.values, "spikes": spikes}, beat.where, beat.lane_name,
                                beat.lane_base)
    tb.expect(expected)
    tb.source.put(tb.inputs())
    message = await tb.run_expecting_mismatch()
    want = (f"sample {tb.traces.samples - 1}, timestep {cfg.timesteps - 1}, token "
            f"{cfg.tokens - 1}, channel {cfg.channels - 1} (lane {lane}): spikes expected "
            f"{spikes[lane]}")
    assert want in message, f"unexpected report: {message}"
