"""Drive one input stream and take one output stream of a component in the Amaranth simulator.

One testbench does both sides each cycle (set `valid`/payload and `ready`, then read the settled
handshake, then tick), so a `ready` that depends combinationally on the other side is sampled
correctly. Seeded random stalls on both sides.
"""

import random
from dataclasses import dataclass, field

from amaranth.sim import Simulator

from spec.ports import pack, unpack


@dataclass
class StreamRun:
    outputs: list = field(default_factory=list)      # decoded output beats, in order
    out_cycles: list = field(default_factory=list)   # cycle of each output handshake
    in_cycles: list = field(default_factory=list)    # cycle of each input handshake

    @property
    def cycles(self):
        """Cycles from the first input handshake to the last output handshake, inclusive."""
        return self.out_cycles[-1] - self.in_cycles[0] + 1


def run_streams(dut, in_fields, beats, out_fields, *, done, in_stall=0.0, out_stall=0.0, seed=0,
                max_cycles=200_000, start=0):
    """Feed `beats` (field dicts) into `dut.i`, collect `dut.o` until `done(run)` is true.
    Nothing is offered before cycle `start`."""
    words = [pack(in_fields, b) for b in beats]
    run = StreamRun()
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)

    async def bench(ctx):
        pending = 0  # index of the next input beat
        offered = False
        for cycle in range(max_cycles):
            if done(run) and pending == len(words):
                return
            if (not offered and pending < len(words) and cycle >= start
                    and rng_in.random() >= in_stall):
                offered = True
                ctx.set(dut.i.payload.as_value(), words[pending])
            ctx.set(dut.i.valid, offered)
            ready = rng_out.random() >= out_stall
            ctx.set(dut.o.ready, ready)
            in_fire = offered and ctx.get(dut.i.ready)
            out_fire = ready and ctx.get(dut.o.valid)
            payload = ctx.get(dut.o.payload.as_value())
            await ctx.tick()
            if in_fire:
                run.in_cycles.append(cycle)
                pending += 1
                offered = False
            if out_fire:
                run.outputs.append(unpack(out_fields, payload))
                run.out_cycles.append(cycle)
        raise AssertionError(f"no completion after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return run
