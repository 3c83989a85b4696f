"""Drive `hw.lif.LIFArray` in the Amaranth simulator with random stalls; collect its output."""

import random

import numpy as np
from amaranth.sim import Simulator

from hw.lif import LIFArray
from sim.lif import lif_input_beats
from spec.ports import pack, unpack


def beats_to_arrays(config, beats, samples):
    """Output beats back to (samples, timesteps, neurons) spikes (and membranes if exposed)."""
    lanes = config.lanes
    spikes = np.array([b["spikes"] for b in beats], dtype=np.uint8)
    spikes = spikes.reshape(samples, config.timesteps, -1)[..., : config.neurons]
    membranes = None
    if config.expose_membrane:
        v = np.array([b["v"] for b in beats], dtype=np.int64)
        membranes = v.reshape(samples, config.timesteps, -1)[..., : config.neurons]
    assert spikes.shape[-1] == config.neurons and lanes
    return spikes, membranes


def simulate_lif(config, inputs, *, in_stall=0.0, out_stall=0.0, seed=0, max_cycles=200_000):
    """Returns (output beats, cycles from first input handshake to last output handshake)."""
    dut = LIFArray(config)
    in_fields, out_fields = config.input_fields(), config.output_fields()
    beats_in = lif_input_beats(config, inputs)
    n_out = len(beats_in)
    got, cycles = [], {}
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)

    async def producer(ctx):
        cycle = 0
        for beat in beats_in:
            while rng_in.random() < in_stall:
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.as_value(), pack(in_fields, beat))
            while True:
                # testbenches see settled values: `ready` now is what the next edge samples
                ready = ctx.get(dut.i.ready)
                await ctx.tick()
                cycle += 1
                if ready:
                    break
            cycles.setdefault("first_in", cycle - 1)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        cycle = 0
        while len(got) < n_out:
            ready = rng_out.random() >= out_stall
            ctx.set(dut.o.ready, ready)
            valid = ctx.get(dut.o.valid)
            payload = ctx.get(dut.o.payload.as_value())
            await ctx.tick()
            if ready and valid:
                got.append(unpack(out_fields, payload))
                cycles["last_out"] = cycle
            cycle += 1
            assert cycle < max_cycles, "simulation ran away"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got, cycles["last_out"] - cycles["first_in"] + 1
