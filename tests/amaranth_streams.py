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
    return run_ports(dut, {"i": (in_fields, beats)}, out_fields, done=done, in_stall=in_stall,
                     out_stall=out_stall, seed=seed, max_cycles=max_cycles, start=start)


def run_ports(dut, sources, out_fields, *, done, in_stall=0.0, out_stall=0.0, seed=0,
              max_cycles=200_000, start=0, sink="o", on_cycle=None):
    """Feed each input port of `sources` ({port name: (fields, beats)}) and collect `sink`
    until `done(run)` is true. Each input has its own seeded stall pattern; `run.in_cycles`
    records the handshakes of all inputs. `on_cycle(ctx)`, if given, runs every cycle once the
    inputs are driven, before the clock edge (to check internal signals)."""
    ports = [(getattr(dut, name), [pack(fields, b) for b in beats])
             for name, (fields, beats) in sources.items()]
    out = getattr(dut, sink)
    run = StreamRun()
    rngs = [random.Random(seed + (n + 1 if n else 0)) for n in range(len(ports))]
    rng_out = random.Random(seed + 1)

    async def bench(ctx):
        pending = [0] * len(ports)
        offered = [False] * len(ports)
        for cycle in range(max_cycles):
            if done(run) and all(p == len(w) for p, (_, w) in zip(pending, ports, strict=True)):
                return
            fires = []
            for n, (port, words) in enumerate(ports):
                if (not offered[n] and pending[n] < len(words) and cycle >= start
                        and rngs[n].random() >= in_stall):
                    offered[n] = True
                    ctx.set(port.payload.as_value(), words[pending[n]])
                ctx.set(port.valid, offered[n])
            ready = rng_out.random() >= out_stall
            ctx.set(out.ready, ready)
            for n, (port, _) in enumerate(ports):
                fires.append(offered[n] and ctx.get(port.ready))
            out_fire = ready and ctx.get(out.valid)
            payload = ctx.get(out.payload.as_value())
            if on_cycle is not None:
                on_cycle(ctx)
            await ctx.tick()
            for n, fire in enumerate(fires):
                if fire:
                    run.in_cycles.append(cycle)
                    pending[n] += 1
                    offered[n] = False
            if out_fire:
                run.outputs.append(unpack(out_fields, payload))
                run.out_cycles.append(cycle)
        raise AssertionError(f"no completion after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return run
