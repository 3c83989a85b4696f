"""cocotb stream driver and monitor with seeded random stalls, and a one-loop clocking scheme.

Every cycle, after the falling clock edge, each part drives its outputs (`valid`/`payload` of a
source, `ready` of a sink); then, in the read-only phase before the rising edge, each part
samples the settled handshake. A beat is transferred in a cycle where `valid` and `ready` are
both high at that point. One coroutine clocks all parts, which keeps Python overhead low.
"""

import random
from collections import deque

from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from spec.ports import pack, unpack

__all__ = ["StreamSource", "StreamSink", "random_stalls", "never", "run_cycles"]


def never():
    """A stall pattern without stalls."""
    while True:
        yield False


def random_stalls(probability, seed):
    """A seeded stall pattern: True (stall this cycle) with the given probability."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


def _port(dut, name):
    try:
        return getattr(dut, name)
    except AttributeError:
        raise AttributeError(f"the design has no port {name!r}") from None


class StreamSource:
    """Drives beats into a stream input `<prefix>__valid/ready/payload`.

    Valid/ready rules: `valid` is raised without waiting for `ready`, and the payload is held
    until taken. The stall pattern only inserts idle cycles between beats.
    """

    def __init__(self, dut, prefix, fields, *, stalls=None):
        self.valid = _port(dut, f"{prefix}__valid")
        self.ready = _port(dut, f"{prefix}__ready")
        self.payload = _port(dut, f"{prefix}__payload")
        self.fields = fields
        self.stalls = stalls if stalls is not None else never()
        self.queue = deque()
        self.current = None
        self.sent = 0
        self.first_cycle = None
        self.last_cycle = None
        self.valid.value = 0

    def put(self, beats):
        self.queue.extend(pack(self.fields, b) for b in beats)

    def flush(self):
        """Drop everything not yet transferred (used around a reset)."""
        self.queue.clear()
        self.current = None
        self.valid.value = 0

    @property
    def idle(self):
        return self.current is None and not self.queue

    def drive(self):
        if self.current is None and self.queue and not next(self.stalls):
            self.current = self.queue.popleft()
            self.payload.value = self.current
        self.valid.value = int(self.current is not None)

    def wait_signals(self):
        """Signals whose rise is the next event for this source, or None when it must be
        clocked cycle by cycle: idle, nothing to wait for; a beat on offer, its `ready`."""
        if self.current is None:    # idle once `valid` is low on the wire too
            return [] if not self.queue and not int(self.valid.value) else None
        return [self.ready] if int(self.valid.value) else None

    def sample(self, cycle):
        if self.current is not None and self.ready.value:
            self.current = None
            self.sent += 1
            if self.first_cycle is None:
                self.first_cycle = cycle
            self.last_cycle = cycle


class StreamSink:
    """Takes beats from a stream output `<prefix>__valid/ready/payload` and hands each decoded
    beat and its cycle to `on_beat`."""

    def __init__(self, dut, prefix, fields, *, on_beat, stalls=None):
        self.valid = _port(dut, f"{prefix}__valid")
        self.ready = _port(dut, f"{prefix}__ready")
        self.payload = _port(dut, f"{prefix}__payload")
        self.fields = fields
        self.stalls = stalls if stalls is not None else never()
        self.on_beat = on_beat
        self.always_ready = False   # set when `stalls` never stalls: idle cycles may be skipped
        self.received = 0
        self.last_cycle = None
        self._ready = 0
        self.ready.value = 0

    def drive(self):
        self._ready = int(not next(self.stalls))
        self.ready.value = self._ready

    def wait_signals(self):
        """Always ready: the next event is a rise of `valid`; else clock cycle by cycle."""
        return [self.valid] if self.always_ready and self._ready else None

    def hold(self):
        self._ready = 0
        self.ready.value = 0

    def sample(self, cycle):
        if self._ready and self.valid.value:
            beat = unpack(self.fields, self.payload.value.to_unsigned())
            self.received += 1
            self.last_cycle = cycle
            self.on_beat(beat, cycle)


async def run_cycles(dut, parts, *, until, max_cycles, start=0, period_ns=10):
    """Clock `parts` until `until()` is true; returns the next cycle number.

    Cycles in which no part can act are skipped in one wait: when every part has
    `wait_signals()` (not None) and all those signals are low, the simulator runs on until one
    of them rises, and the skipped cycles are counted from the simulation time. Between such
    events the design runs at the simulator's own speed, without Python each cycle. A part
    without `wait_signals` is clocked every cycle.

    Raises `TimeoutError` after `max_cycles` cycles (a hung design must not hang the test).
    """
    cycle = start
    while not until():
        if cycle - start >= max_cycles:
            raise TimeoutError(f"no completion after {max_cycles} cycles")
        signals = _wait_signals(parts)
        if signals is not None and signals and not any(int(x.value) for x in signals):
            # in the read-only phase after a falling edge: the next falling edge is `cycle`
            began = get_sim_time("ns")
            budget = (max_cycles - (cycle - start)) * period_ns
            await First(*(RisingEdge(x) for x in signals), Timer(budget, "ns"))
            cycle += int((get_sim_time("ns") - began) // period_ns)
            continue
        await FallingEdge(dut.clk)
        for part in parts:
            part.drive()
        await ReadOnly()
        for part in parts:
            part.sample(cycle)
        cycle += 1
    return cycle


def _wait_signals(parts):
    found = []
    for part in parts:
        wait = getattr(part, "wait_signals", None)
        signals = wait() if wait is not None else None
        if signals is None:
            return None
        found.extend(signals)
    return found
