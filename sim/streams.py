"""cocotb stream driver and monitor with seeded random stalls, and a one-loop clocking scheme.

Every cycle, after the falling clock edge, each part drives its outputs (`valid`/`payload` of a
source, `ready` of a sink); then, in the read-only phase before the rising edge, each part
samples the settled handshake. A beat is transferred in a cycle where `valid` and `ready` are
both high at that point. One coroutine clocks all parts, which keeps Python overhead low.
"""

import random
from collections import deque

from cocotb.triggers import FallingEdge, ReadOnly

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
        self.received = 0
        self.last_cycle = None
        self._ready = 0
        self.ready.value = 0

    def drive(self):
        self._ready = int(not next(self.stalls))
        self.ready.value = self._ready

    def hold(self):
        self._ready = 0
        self.ready.value = 0

    def sample(self, cycle):
        if self._ready and self.valid.value:
            beat = unpack(self.fields, self.payload.value.to_unsigned())
            self.received += 1
            self.last_cycle = cycle
            self.on_beat(beat, cycle)


async def run_cycles(dut, parts, *, until, max_cycles, start=0):
    """Clock `parts` until `until()` is true; returns the next cycle number.

    Raises `TimeoutError` after `max_cycles` cycles (a hung design must not hang the test).
    """
    cycle = start
    while not until():
        if cycle - start >= max_cycles:
            raise TimeoutError(f"no completion after {max_cycles} cycles")
        await FallingEdge(dut.clk)
        for part in parts:
            part.drive()
        await ReadOnly()
        for part in parts:
            part.sample(cycle)
        cycle += 1
    return cycle
