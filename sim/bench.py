"""A cocotb test bench for one unit with one input and one output stream.

It owns the clock, reset, the stream driver and monitor, and the scoreboard; unit test modules
(tb/cocotb_*.py) give it the payload layouts and the expected beats.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from .scoreboard import Scoreboard, ScoreboardMismatch
from .streams import StreamSink, StreamSource, never, random_stalls, run_cycles

__all__ = ["StreamBench", "write_report", "env_seed"]


def write_report(data):
    """Hand figures back to the runner through the JSON file SPIKEGEN_REPORT names, if any."""
    path = os.environ.get("SPIKEGEN_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(data, f)


def env_seed():
    return int(os.environ.get("SPIKEGEN_SEED", "1"))


class StreamBench:
    """Clock, reset, input stream drivers, the `o` stream monitor and an in-order scoreboard.

    `in_fields` is the payload layout of the one input `i`, or {port: layout} for several
    inputs; beats, stall patterns and the `source` attribute follow the same form (a dict for
    several inputs, `sources` always).
    """

    def __init__(self, dut, unit, in_fields, out_fields, *, budget, settle=0):
        self.dut = dut
        self.settle = settle  # cycles a unit needs after reset before it takes input
        self.unit = unit
        self.budget = budget
        self.seed = env_seed()
        self.single = not isinstance(in_fields, dict)
        ports = {"i": in_fields} if self.single else in_fields
        self.sources = {name: StreamSource(dut, name, fields) for name, fields in ports.items()}
        self.source = self.sources["i"] if self.single else _Sources(self.sources)
        self.sink = StreamSink(dut, "o", out_fields, on_beat=self._on_beat)
        self.scoreboard = None
        self.monitors = []          # further parts clocked with the streams (e.g. tap checkers)
        self.cycle = 0
        self.first_out_cycles = []  # cycle of every output beat marked `first`
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    def _on_beat(self, beat, cycle):
        if beat["first"]:
            self.first_out_cycles.append(cycle)
        if self.scoreboard is not None:
            self.scoreboard.check(beat, cycle)

    async def reset(self, cycles=3):
        await FallingEdge(self.dut.clk)
        for source in self.sources.values():
            source.flush()
        self.sink.hold()
        self.dut.rst.value = 1
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.cycle += cycles + 1
        await self.idle(self.settle)

    async def idle(self, cycles):
        """Let `cycles` cycles pass with nothing offered and nothing taken."""
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
        self.cycle += cycles

    def expect(self, expected):
        self.scoreboard = Scoreboard(self.unit, expected)

    def _in_stalls(self, probability, seed):
        """Seeded stall patterns for the inputs: one pattern, or one per input port."""
        if self.single:
            return random_stalls(probability, seed)
        return {name: random_stalls(probability, seed + 7 * n)
                for n, name in enumerate(self.sources)}

    async def run(self, *, in_stalls=None, out_stalls=None, until=None):
        for name, source in self.sources.items():
            pattern = in_stalls.get(name) if isinstance(in_stalls, dict) else in_stalls
            source.stalls = pattern or never()
        self.sink.stalls = out_stalls or never()
        self.sink.always_ready = out_stalls is None
        if until is None:
            def until():
                return self.scoreboard.pending == 0
        self.cycle = await run_cycles(self.dut, [*self.sources.values(), self.sink,
                                                 *self.monitors],
                                      until=until, max_cycles=self.budget, start=self.cycle)

    async def stream_all(self, beats, expected, *, in_stalls=None, out_stalls=None):
        """Reset, send `beats`, check every output against `expected`, and see all of both
        streams through."""
        await self.reset()
        self.expect(expected)
        self.source.put(beats)
        await self.run(in_stalls=in_stalls, out_stalls=out_stalls)
        self.scoreboard.check_done()
        assert self.source.idle, "input beats left over"

    async def reset_midway_then_all(self, beats, expected, cut):
        """Send `beats[:cut]` unchecked, reset in the middle, then send all `beats` and check
        every output against `expected`: nothing of the interrupted stream may leak through."""
        self.scoreboard = None
        if self.single:
            self.source.put(beats[:cut])
        else:
            self.source.put({name: b[:cut] for name, b in beats.items()})
        await self.run(in_stalls=self._in_stalls(0.2, self.seed),
                       out_stalls=random_stalls(0.5, self.seed), until=lambda: self.source.idle)
        await self.reset()
        self.expect(expected)
        self.source.put(beats)
        await self.run(in_stalls=self._in_stalls(0.2, self.seed + 2),
                       out_stalls=random_stalls(0.2, self.seed + 3))
        self.scoreboard.check_done()

    async def run_expecting_mismatch(self):
        """Run until the scoreboard objects; return its message (fail if it never does)."""
        try:
            await self.run()
        except ScoreboardMismatch as exc:
            self.dut._log.info("caught as expected: %s", exc)
            return str(exc)
        raise AssertionError("the scoreboard accepted a corrupted expectation")

    def measured_cycles(self):
        """Cycles from the first input handshake (of any input) to the last output one."""
        first = min(s.first_cycle for s in self.sources.values() if s.first_cycle is not None)
        return self.sink.last_cycle - first + 1


class _Sources:
    """Several stream sources used as one: `put` takes {port: beats}."""

    def __init__(self, sources):
        self._sources = sources

    def put(self, beats):
        unknown = set(beats) - set(self._sources)
        if unknown:
            raise KeyError(f"no input port {sorted(unknown)[0]!r}")
        for name, b in beats.items():
            self._sources[name].put(b)

    @property
    def idle(self):
        return all(s.idle for s in self._sources.values())
