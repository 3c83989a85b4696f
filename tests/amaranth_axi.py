"""An AXI4 slave model and stream drivers for the Amaranth simulator (tests of `hw.axi`).

Every part is clocked by one testbench, cycle by cycle: all parts drive their inputs to the
design (`drive`), then all read the settled handshakes (`sample`), then the clock ticks, then
each part acts on what it saw (`update`). So a `ready` that depends combinationally on the
other side's `valid` is sampled correctly.

The slave answers with seeded random delays on every channel, can answer SLVERR for chosen
bytes, and checks the master's side of the protocol as it goes: AxSIZE full width, INCR, no
burst across 4 KiB, at most `max_burst` beats, address and W payloads held while waiting,
WLAST on a burst's last beat only.
"""

import random
from collections import deque

from amaranth.sim import Simulator

from spec.axi import AXI_BURST_INCR, AXI_RESP_OKAY, AXI_RESP_SLVERR
from spec.ports import pack, unpack

__all__ = ["Source", "Sink", "AxiSlaveModel", "run_parts"]


class Source:
    """Offers `beats` (field dicts) on a stream input; `stall` is the chance of an idle cycle
    before each beat. Valid/ready rules: valid never waits for ready, the payload is held."""

    def __init__(self, port, fields, beats=(), *, stall=0.0, seed=0):
        self.port, self.fields = port, fields
        self.words = deque(pack(fields, b) for b in beats)
        self.stall, self.rng = stall, random.Random(seed)
        self.offered = self.fire = False
        self.sent = 0

    def put(self, beats):
        self.words.extend(pack(self.fields, b) for b in beats)

    def drop(self):
        """Forget every beat not yet taken (the producer was reset)."""
        self.words.clear()
        self.offered = False

    @property
    def empty(self):
        return not self.words

    def drive(self, ctx):
        if not self.offered and self.words and self.rng.random() >= self.stall:
            self.offered = True
            ctx.set(self.port.payload.as_value(), self.words[0])
        ctx.set(self.port.valid, self.offered)

    def sample(self, ctx):
        self.fire = self.offered and bool(ctx.get(self.port.ready))

    def update(self):
        if self.fire:
            self.words.popleft()
            self.offered = False
            self.sent += 1


class Sink:
    """Takes beats from a stream output into `beats` (field dicts); `stall` is the chance of
    `ready` low in a cycle (1.0: never ready)."""

    def __init__(self, port, fields, *, stall=0.0, seed=0):
        self.port, self.fields = port, fields
        self.stall, self.rng = stall, random.Random(seed)
        self.beats = []
        self.ready = False
        self.got = None

    def drive(self, ctx):
        self.ready = self.rng.random() >= self.stall
        ctx.set(self.port.ready, self.ready)

    def sample(self, ctx):
        self.got = None
        if self.ready and ctx.get(self.port.valid):
            self.got = unpack(self.fields, ctx.get(self.port.payload.as_value()))

    def update(self):
        if self.got is not None:
            self.beats.append(self.got)


class AxiSlaveModel:
    """A memory behind the AXI4 port `axi` (a reader's, a writer's or both halves).

    Parameters
    ----------
    axi : the design's AXI4 port (its members by AXI name)
    config : spec.axi.AxiConfig
    memory : bytearray
        The memory, from address 0; reads and writes act on it.
    ready, gap : float
        Chance per cycle that AxREADY / WREADY is high, and that a ready R or B beat is held
        back a cycle.
    b_delay : int
        Most cycles between a burst's last W beat and its B response (random up to this).
    errors : set of int
        Byte addresses that answer SLVERR (a read beat or a write burst touching one).
    """

    def __init__(self, axi, config, memory, *, ready=0.7, gap=0.3, b_delay=6, errors=(),
                 seed=0):
        self.axi, self.cfg, self.memory = axi, config, memory
        self.read = hasattr(axi, "arvalid")
        self.write = hasattr(axi, "awvalid")
        self.p_ready, self.p_gap, self.b_delay = ready, gap, b_delay
        self.errors = set(errors)
        self.rng = random.Random(seed)
        # the bursts seen, as (address, beats), in order: what the test compares
        self.ar_bursts, self.aw_bursts = [], []
        # read side
        self.r_beats = deque()          # (data, resp, last) of accepted AR bursts
        self.r_offer = None
        self.reads_in_flight = self.max_reads_in_flight = 0
        self.r_stall_cycles = 0         # cycles with RVALID high and RREADY low
        # write side
        self.aw_queue = deque()         # [address, beats, beats done, error] of accepted AWs
        self.w_early = deque()          # W beats taken before their AW
        self.b_pending = deque()        # [cycles to wait, resp]
        self.b_offer = None
        self.writes_in_flight = self.max_writes_in_flight = 0
        self.strobed_off = 0            # W beats with WSTRB 0 (a flushed burst's filler)
        self._held = {}                 # payloads offered but not taken: must not change

    # -- one cycle ------------------------------------------------------------------------

    def drive(self, ctx):
        a = self.axi
        if self.read:
            self.arready = self.rng.random() < self.p_ready
            ctx.set(a.arready, self.arready)
            if self.r_offer is None and self.r_beats and self.rng.random() >= self.p_gap:
                self.r_offer = self.r_beats.popleft()
            if self.r_offer is not None:
                data, resp, last = self.r_offer
                ctx.set(a.rdata, data)
                ctx.set(a.rresp, resp)
                ctx.set(a.rlast, last)
                ctx.set(a.rid, 0)
            ctx.set(a.rvalid, self.r_offer is not None)
        if self.write:
            self.awready = self.rng.random() < self.p_ready
            self.wready = self.rng.random() < self.p_ready
            ctx.set(a.awready, self.awready)
            ctx.set(a.wready, self.wready)
            if (self.b_offer is None and self.b_pending and self.b_pending[0][0] <= 0
                    and self.rng.random() >= self.p_gap):
                self.b_offer = self.b_pending.popleft()[1]
            if self.b_offer is not None:
                ctx.set(a.bresp, self.b_offer)
                ctx.set(a.bid, 0)
            ctx.set(a.bvalid, self.b_offer is not None)

    def sample(self, ctx):
        a = self.axi
        self.events = {}
        if self.read:
            if ctx.get(a.arvalid):
                payload = tuple(ctx.get(s) for s in (a.araddr, a.arlen, a.arsize, a.arburst))
                self._check_held("AR", payload)
                if self.arready:
                    self.events["ar"] = payload
            else:
                self._check_dropped("AR")
            if self.r_offer is not None:
                if ctx.get(a.rready):
                    self.events["r"] = True
                else:
                    self.r_stall_cycles += 1
        if self.write:
            if ctx.get(a.awvalid):
                payload = tuple(ctx.get(s) for s in (a.awaddr, a.awlen, a.awsize, a.awburst))
                self._check_held("AW", payload)
                if self.awready:
                    self.events["aw"] = payload
            else:
                self._check_dropped("AW")
            if ctx.get(a.wvalid):
                payload = tuple(ctx.get(s) for s in (a.wdata, a.wstrb, a.wlast))
                self._check_held("W", payload)
                if self.wready:
                    self.events["w"] = payload
            else:
                self._check_dropped("W")
            if self.b_offer is not None and ctx.get(a.bready):
                self.events["b"] = True

    def update(self):
        ev = self.events
        if "ar" in ev:
            self._held.pop("AR", None)
            address, beats = self._check_burst("AR", *ev["ar"])
            self.ar_bursts.append((address, beats))
            nbytes = self.cfg.beat_bytes
            for n in range(beats):
                at = address + n * nbytes
                word = bytes(self.memory[at:at + nbytes])
                bad = any(at + i in self.errors for i in range(nbytes))
                self.r_beats.append((int.from_bytes(word, "little"),
                                     AXI_RESP_SLVERR if bad else AXI_RESP_OKAY,
                                     n == beats - 1))
            self.reads_in_flight += 1
            self.max_reads_in_flight = max(self.max_reads_in_flight, self.reads_in_flight)
        if "r" in ev:
            if self.r_offer[2]:
                self.reads_in_flight -= 1
            self.r_offer = None
        if "aw" in ev:
            self._held.pop("AW", None)
            address, beats = self._check_burst("AW", *ev["aw"])
            self.aw_bursts.append((address, beats))
            self.aw_queue.append([address, beats, 0, False])
            self.writes_in_flight += 1
            self.max_writes_in_flight = max(self.max_writes_in_flight, self.writes_in_flight)
        if "w" in ev:
            self._held.pop("W", None)
            self.w_early.append(ev["w"])
        self._apply_writes()
        if "b" in ev:
            self.b_offer = None
            self.writes_in_flight -= 1
        for entry in self.b_pending:
            entry[0] -= 1

    # -- helpers --------------------------------------------------------------------------

    def _check_held(self, channel, payload):
        held = self._held.get(channel)
        assert held is None or held == payload, \
            f"{channel} payload changed while waiting for READY: {held} -> {payload}"
        self._held[channel] = payload

    def _check_dropped(self, channel):
        assert channel not in self._held, f"{channel}VALID dropped before READY"

    def _check_burst(self, channel, address, length, size, burst):
        cfg = self.cfg
        beats = length + 1
        assert size == cfg.size, f"{channel} burst of size {size}, not {cfg.size}"
        assert burst == AXI_BURST_INCR, f"{channel} burst type {burst}, not INCR"
        assert beats <= cfg.max_burst, f"{channel} burst of {beats} beats"
        assert address % cfg.beat_bytes == 0, f"{channel} address {address:#x} unaligned"
        end = address + beats * cfg.beat_bytes
        assert (address >> 12) == ((end - 1) >> 12), \
            f"{channel} burst {address:#x} + {beats} beats crosses 4 KiB"
        assert end <= len(self.memory), f"{channel} burst {address:#x} outside the memory"
        return address, beats

    def _apply_writes(self):
        nbytes = self.cfg.beat_bytes
        while self.aw_queue and self.w_early:
            entry = self.aw_queue[0]
            address, beats, done, _ = entry
            data, strb, last = self.w_early.popleft()
            assert last == (done == beats - 1), \
                f"WLAST {last} on beat {done} of a {beats}-beat burst at {address:#x}"
            at = address + done * nbytes
            word = data.to_bytes(nbytes, "little")
            if strb == 0:
                self.strobed_off += 1
            for i in range(nbytes):
                if strb >> i & 1:
                    self.memory[at + i] = word[i]
                    entry[3] |= at + i in self.errors
            entry[2] += 1
            if entry[2] == beats:
                self.aw_queue.popleft()
                resp = AXI_RESP_SLVERR if entry[3] else AXI_RESP_OKAY
                self.b_pending.append([self.rng.randint(0, self.b_delay), resp])

    @property
    def quiet(self):
        """Nothing in flight on either side."""
        return (not self.r_beats and self.r_offer is None and self.reads_in_flight == 0
                and not self.aw_queue and not self.w_early and not self.b_pending
                and self.b_offer is None)


def run_parts(dut, parts, *, until, max_cycles, on_cycle=None):
    """Clock `parts` until `until(ctx)` is true (checked before each cycle); returns the
    cycles used. `on_cycle(ctx, cycle)` runs after the parts drive, before they sample (to
    drive other inputs, e.g. a soft reset). Fails after `max_cycles`: nothing may hang."""
    result = {}

    async def bench(ctx):
        for cycle in range(max_cycles):
            if until(ctx):
                result["cycles"] = cycle
                return
            for part in parts:
                part.drive(ctx)
            if on_cycle is not None:
                on_cycle(ctx, cycle)
            for part in parts:
                part.sample(ctx)
            await ctx.tick()
            for part in parts:
                part.update()
        raise AssertionError(f"no completion after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result["cycles"]

