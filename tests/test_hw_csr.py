# amaranth: UnusedElaboratable=no
"""The overlay core's register block (`hw.csr.ControlStatusRegisters`) in the Amaranth simulator,
its AXI4-Lite port driven by hand: every register's access kind, write-1-to-clear, start and
soft-reset pulses, irq, strobes, the three orders of write address and data, unknown offsets,
the 64-bit counter latch, the error latch, and the AXI handshake rules."""

from pathlib import Path

import pytest
from amaranth import Module, Signal
from amaranth.hdl import Fragment
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.csr import (
    AXIL_PORT,
    COUNTERS,
    AXI4LiteSignature,
    ControlStatusRegisters,
    CoreControlSignature,
)
from spec.core import CoreConfig
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
from spec.program import VERSION, core_fingerprint

CORE_ID = 0xC0DE5EED
TIMEOUT = 50          # cycles any one handshake may take
OKAY = 0


class Host:
    """An AXI4-Lite master driven by hand, one transaction at a time.

    Each channel's `valid` rises `*_delay` cycles after the transaction begins, without waiting
    for `ready`, and stays up with its payload until taken; `bready`/`rready` rise `b_delay`/
    `r_delay` cycles after it begins. `cycle` counts clock edges since the bench began;
    `b_seen`/`r_seen` hold the cycle in which the last response's valid was first seen.
    Besides checking the response, each transaction checks the slave's side of the rules: no
    response before its requests are taken, a response held (with its data) until taken.
    """

    def __init__(self, dut):
        self.dut = dut
        self.bus = getattr(dut, AXIL_PORT)
        self.cycle = 0
        self.b_seen = self.r_seen = None

    async def tick(self, ctx, cycles=1):
        for _ in range(cycles):
            await ctx.tick()
            self.cycle += 1

    async def write(self, ctx, offset, data, *, strb=0xF, aw_delay=0, w_delay=0, b_delay=0,
                    prot=0b101):
        bus = self.bus
        aw_taken = w_taken = False
        self.b_seen = None
        for k in range(TIMEOUT):
            aw_valid = not aw_taken and k >= aw_delay
            w_valid = not w_taken and k >= w_delay
            ctx.set(bus.awvalid, aw_valid)
            ctx.set(bus.wvalid, w_valid)
            if aw_valid:
                ctx.set(bus.awaddr, offset)
                ctx.set(bus.awprot, prot)
            if w_valid:
                ctx.set(bus.wdata, data)
                ctx.set(bus.wstrb, strb)
            ctx.set(bus.bready, k >= b_delay)
            b_valid = ctx.get(bus.bvalid)
            assert not b_valid or (aw_taken and w_taken), \
                f"bvalid at cycle {self.cycle} before both write address and data were taken"
            if b_valid and self.b_seen is None:
                self.b_seen = self.cycle
            fired = (aw_valid and ctx.get(bus.awready), w_valid and ctx.get(bus.wready),
                     b_valid and k >= b_delay)
            resp = ctx.get(bus.bresp)
            await self.tick(ctx)
            aw_taken |= bool(fired[0])
            w_taken |= bool(fired[1])
            if fired[2]:
                ctx.set(bus.bready, 0)
                return resp
        raise AssertionError(f"write to 0x{offset:02x} not answered in {TIMEOUT} cycles")

    async def read(self, ctx, offset, *, ar_delay=0, r_delay=0, prot=0b011):
        bus = self.bus
        ar_taken = False
        self.r_seen = None
        held = None
        for k in range(TIMEOUT):
            ar_valid = not ar_taken and k >= ar_delay
            ctx.set(bus.arvalid, ar_valid)
            if ar_valid:
                ctx.set(bus.araddr, offset)
                ctx.set(bus.arprot, prot)
            ctx.set(bus.rready, k >= r_delay)
            r_valid = ctx.get(bus.rvalid)
            assert not r_valid or ar_taken, \
                f"rvalid at cycle {self.cycle} before the read address was taken"
            if r_valid:
                if self.r_seen is None:
                    self.r_seen = self.cycle
                data = (ctx.get(bus.rdata), ctx.get(bus.rresp))
                assert held is None or data == held, \
                    f"read data changed from {held} to {data} while rvalid was held"
                held = data
                assert not ctx.get(bus.arready), "arready while a read response waits"
            ar_fire = ar_valid and ctx.get(bus.arready)
            await self.tick(ctx)
            ar_taken |= bool(ar_fire)
            if r_valid and k >= r_delay:
                ctx.set(bus.rready, 0)
                assert held[1] == OKAY, f"read of 0x{offset:02x}: RRESP {held[1]}, not OKAY"
                return held[0]
        raise AssertionError(f"read of 0x{offset:02x} not answered in {TIMEOUT} cycles")

    async def expect(self, ctx, name_or_offset, want, **kw):
        """Read a register (by name or offset) and compare it with `want`."""
        offset = OFFSETS.get(name_or_offset, name_or_offset)
        got = await self.read(ctx, offset, **kw)
        assert got == want, f"{name_or_offset}: read 0x{got:08x}, expected 0x{want:08x}"

    async def put(self, ctx, name, data, **kw):
        resp = await self.write(ctx, OFFSETS[name], data, **kw)
        assert resp == OKAY, f"write to {name}: BRESP {resp}, not OKAY"

    async def event(self, ctx, port, **values):
        """Pulse the core-side input `port` for one cycle with the given side values."""
        for name, value in values.items():
            ctx.set(getattr(self.dut.core, name), value)
        ctx.set(getattr(self.dut.core, port), 1)
        await self.tick(ctx)
        ctx.set(getattr(self.dut.core, port), 0)


def simulate(dut, bench, *, monitor=None, extra=()):
    """Run `bench(ctx, host)`; `monitor`, if given, is a list that receives (cycle, name) for
    every cycle in which `core.start` or `core.soft_reset` is high."""
    host = Host(dut)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        await bench(ctx, host)
        await host.tick(ctx, 3)       # the monitor sees what the last transaction caused

    sim.add_testbench(testbench)
    if monitor is not None:
        async def watch(ctx):
            cycle = 0
            async for _, _, start, soft in ctx.tick().sample(dut.core.start,
                                                             dut.core.soft_reset):
                if start:
                    monitor.append((cycle, "start"))
                if soft:
                    monitor.append((cycle, "soft_reset"))
                cycle += 1
        sim.add_process(watch)
    for process in extra:
        sim.add_testbench(process, background=True)
    sim.run()
    return host


def check_pulses(monitor, want):
    assert monitor == want, f"pulses {monitor}, expected {want}"


def make(**kw):
    return ControlStatusRegisters(**{"core_id": CORE_ID, **kw})


# -- construction ----------------------------------------------------------------------------

def test_init():
    dut = make(addr_bits=40, layer_bits=12)
    assert (dut.core_id, dut.version, dut.addr_bits, dut.layer_bits) == (CORE_ID, VERSION, 40, 12)
    assert dut.signature.members[AXIL_PORT].signature == AXI4LiteSignature(addr_bits=8)
    assert dut.signature.members["core"].signature == CoreControlSignature(addr_bits=40,
                                                                          layer_bits=12)
    assert len(dut.core.program) == 40 and len(dut.core.layer) == 12
    assert len(getattr(dut, AXIL_PORT).wdata) == 32 and len(getattr(dut, AXIL_PORT).wstrb) == 4


def test_for_core():
    config = CoreConfig(axi_addr_bits=48)
    dut = ControlStatusRegisters.for_core(config)
    assert dut.core_id == core_fingerprint(config)
    assert (dut.version, dut.addr_bits) == (VERSION, 48)
    assert len(dut.core.program) == 48
    Fragment.get(dut, None)          # elaborates (and marks it used)


@pytest.mark.parametrize(("kw", "message"), [
    ({"core_id": -1}, "core_id must be an integer from 0 to 4294967295, not -1"),
    ({"core_id": 1 << 32}, "core_id must be an integer from 0 to 4294967295, not 4294967296"),
    ({"core_id": 1, "version": "1"}, "version must be an integer from 0 to 4294967295, not '1'"),
    ({"core_id": 1, "addr_bits": 15}, "addr_bits must be an integer from 16 to 64, not 15"),
    ({"core_id": 1, "addr_bits": 65}, "addr_bits must be an integer from 16 to 64, not 65"),
    ({"core_id": 1, "layer_bits": 0}, "layer_bits must be an integer from 1 to 16, not 0"),
    ({"core_id": 1, "layer_bits": True}, "layer_bits must be an integer from 1 to 16, not True"),
])
def test_init_wrong_parameters(kw, message):
    with pytest.raises(ValueError) as info:
        ControlStatusRegisters(**kw)
    assert str(info.value) == message


def test_axil_signature_wrong_widths():
    with pytest.raises(TypeError) as info:
        AXI4LiteSignature(addr_bits=0)
    assert str(info.value) == "AXI4-Lite address width must be an integer from 1 to 64, not 0"
    with pytest.raises(TypeError) as info:
        AXI4LiteSignature(addr_bits=8, data_bits=16)
    assert str(info.value) == "AXI4-Lite data width must be 32 or 64, not 16"


# -- registers -------------------------------------------------------------------------------

def test_reset_values_and_read_only_registers():
    """Every register after reset; read-only ones show the core's inputs and ignore writes."""
    dut = make()
    core = dut.core
    counters = {port: 0x0123_4567_89AB_CDEF + (n << 60) for n, (port, _) in enumerate(COUNTERS)}

    async def bench(ctx, host):
        ctx.set(core.layer, 0x1234)
        ctx.set(core.layer_cycles, 0xDEADBEEF)
        for port, value in counters.items():
            ctx.set(getattr(core, port), value)
        want = {"CONTROL": 0, "STATUS": 0, "ERROR": 0, "PROGRAM": 0, "PROGRAM_HI": 0,
                "LAYER": 0x1234, "CORE_ID": CORE_ID, "VERSION": VERSION, "LAYER_SELECT": 0,
                "LAYER_CYCLES": 0xDEADBEEF}
        for port, reg in COUNTERS:
            want[f"{reg}_LO"] = counters[port] & 0xFFFF_FFFF
            want[f"{reg}_HI"] = counters[port] >> 32
        assert set(want) == set(OFFSETS)
        for reg in REGISTERS:       # in map order: each LO is read before its HI
            await host.expect(ctx, reg.name, want[reg.name])
        for reg in REGISTERS:
            if reg.access == "ro":
                await host.put(ctx, reg.name, 0xFFFF_FFFF)
        for reg in REGISTERS:
            await host.expect(ctx, reg.name, want[reg.name])
        assert (ctx.get(core.start), ctx.get(core.soft_reset), ctx.get(core.irq_enable)) \
            == (0, 0, 0)

    simulate(dut, bench)
    assert {r.access for r in REGISTERS} <= {"rw", "ro", "w1c", "wo"}


@pytest.mark.parametrize("addr_bits", [16, 32, 64])
def test_program_address_holds_the_cores_bits(addr_bits):
    dut = make(addr_bits=addr_bits)
    address = 0xFEDC_BA98_7654_3210 & ((1 << addr_bits) - 1)

    async def bench(ctx, host):
        await host.put(ctx, "PROGRAM", 0x7654_3210)
        await host.put(ctx, "PROGRAM_HI", 0xFEDC_BA98)
        assert ctx.get(dut.core.program) == address
        await host.expect(ctx, "PROGRAM", address & 0xFFFF_FFFF)
        await host.expect(ctx, "PROGRAM_HI", address >> 32)

    simulate(dut, bench)


def test_layer_select_and_irq_enable_are_read_write():
    dut = make(layer_bits=10)

    async def bench(ctx, host):
        await host.put(ctx, "LAYER_SELECT", 0xFFFF_F2A5)
        assert ctx.get(dut.core.layer_select) == 0x2A5
        await host.expect(ctx, "LAYER_SELECT", 0x2A5)          # bits 10-31 are not held
        await host.put(ctx, "CONTROL", 0xFFFF_FFFF & ~(CONTROL_START | CONTROL_SOFT_RESET))
        assert ctx.get(dut.core.irq_enable) == 1
        await host.expect(ctx, "CONTROL", CONTROL_IRQ_ENABLE)  # start/soft_reset read 0
        await host.put(ctx, "CONTROL", 0)
        assert ctx.get(dut.core.irq_enable) == 0
        await host.expect(ctx, "CONTROL", 0)

    simulate(dut, bench)


def test_write_strobes():
    """WSTRB picks the bytes of rw registers; CONTROL and STATUS bits live in byte 0."""
    dut = make(addr_bits=64)

    async def bench(ctx, host):
        await host.put(ctx, "PROGRAM", 0x1122_3344)
        for strb, want in [(0b0001, 0x1122_33AA), (0b0010, 0x1122_BBAA), (0b1100, 0xDDCC_BBAA),
                           (0b0000, 0xDDCC_BBAA), (0b1001, 0x99CC_BB88)]:
            data = 0xDDCC_BBAA if strb != 0b1001 else 0x9900_0088
            await host.put(ctx, "PROGRAM", data, strb=strb)
            await host.expect(ctx, "PROGRAM", want)
        await host.put(ctx, "PROGRAM_HI", 0xAABB_CCDD, strb=0b0110)
        await host.expect(ctx, "PROGRAM_HI", 0x00BB_CC00)
        await host.put(ctx, "LAYER_SELECT", 0x0000_5A00, strb=0b0010)
        await host.expect(ctx, "LAYER_SELECT", 0x5A00)
        # byte 0 not strobed: no start, no soft reset, irq_enable unchanged
        await host.put(ctx, "CONTROL", 0xFF, strb=0b1110)
        await host.expect(ctx, "CONTROL", 0)
        await host.event(ctx, "done")
        await host.put(ctx, "STATUS", 0xFF, strb=0b1110)
        await host.expect(ctx, "STATUS", STATUS_DONE)
        await host.put(ctx, "STATUS", STATUS_DONE, strb=0b0001)
        await host.expect(ctx, "STATUS", 0)

    monitor = []
    simulate(dut, bench, monitor=monitor)
    check_pulses(monitor, [])


def test_start_and_soft_reset_pulse_one_cycle():
    """Writing 1 pulses the output for exactly one cycle, once per write; a start is refused
    while the core is busy and when soft_reset is written with it."""
    dut = make()
    marks = {}

    async def bench(ctx, host):
        await host.put(ctx, "CONTROL", CONTROL_START)
        marks["start"] = host.cycle
        await host.tick(ctx, 3)
        await host.put(ctx, "CONTROL", CONTROL_SOFT_RESET | CONTROL_IRQ_ENABLE)
        marks["soft"] = host.cycle
        assert ctx.get(dut.core.irq_enable) == 1
        await host.tick(ctx, 3)
        await host.put(ctx, "CONTROL", CONTROL_START | CONTROL_SOFT_RESET)
        marks["both"] = host.cycle
        ctx.set(dut.core.busy, 1)
        await host.expect(ctx, "STATUS", STATUS_BUSY)
        await host.put(ctx, "CONTROL", CONTROL_START)           # refused: busy
        await host.tick(ctx, 3)
        ctx.set(dut.core.busy, 0)
        await host.put(ctx, "CONTROL", CONTROL_START)
        marks["again"] = host.cycle
        await host.put(ctx, "CONTROL", CONTROL_START)           # a second write, a second pulse
        marks["twice"] = host.cycle
        await host.tick(ctx, 3)
        await host.expect(ctx, "CONTROL", 0)

    monitor = []
    simulate(dut, bench, monitor=monitor)
    # each pulse is in the cycle in which B is taken (the write happened at the edge before)
    check_pulses(monitor, [(marks["start"] - 1, "start"), (marks["soft"] - 1, "soft_reset"),
                           (marks["both"] - 1, "soft_reset"), (marks["again"] - 1, "start"),
                           (marks["twice"] - 1, "start")])


def test_done_is_write_1_to_clear_and_cleared_by_start():
    dut = make()

    async def bench(ctx, host):
        await host.event(ctx, "done")
        await host.expect(ctx, "STATUS", STATUS_DONE)
        await host.put(ctx, "STATUS", 0)                         # writing 0 keeps it
        await host.put(ctx, "STATUS", STATUS_ERROR | STATUS_BUSY)  # other bits: no effect
        await host.expect(ctx, "STATUS", STATUS_DONE)
        await host.put(ctx, "STATUS", STATUS_DONE)
        await host.expect(ctx, "STATUS", 0)
        await host.event(ctx, "done")
        await host.event(ctx, "error", error_code=ERRORS["opcode"], error_layer=3)
        await host.expect(ctx, "STATUS", STATUS_DONE | STATUS_ERROR)
        await host.put(ctx, "CONTROL", CONTROL_START)
        await host.expect(ctx, "STATUS", 0)
        await host.expect(ctx, "ERROR", 0)

    simulate(dut, bench)


@pytest.mark.parametrize("offset", range(-3, 4))
@pytest.mark.parametrize(("event", "clearing"), [
    ("done", ("STATUS", STATUS_DONE)), ("done", ("CONTROL", CONTROL_START)),
    ("error", ("STATUS", STATUS_ERROR)), ("error", ("CONTROL", CONTROL_START)),
])
def test_event_wins_over_a_clear_in_the_same_cycle(event, clearing, offset):
    """The event pulses `offset` cycles from the cycle the clearing write takes effect (the
    cycle before `bvalid` rises): before it, the write clears it; from then on it stays set."""
    dut = make()
    bit = STATUS_DONE if event == "done" else STATUS_ERROR
    # measured once: a write issued at cycle 4 with AW and W together takes effect at cycle 5
    effect = 5
    pulse = effect + offset

    async def pulser(ctx):
        for _ in range(pulse):
            await ctx.tick()
        ctx.set(getattr(dut.core, event), 1)
        ctx.set(dut.core.error_code, ERRORS["shape"])
        await ctx.tick()
        ctx.set(getattr(dut.core, event), 0)

    async def bench(ctx, host):
        await host.tick(ctx, 4)
        await host.put(ctx, clearing[0], clearing[1])
        assert host.b_seen - 1 == effect, f"the write took effect at {host.b_seen - 1}"
        await host.tick(ctx, 4)
        want = bit if offset >= 0 else 0
        await host.expect(ctx, "STATUS", want)
        if event == "error":   # w1c leaves ERROR as it was; a start clears it
            kept = offset >= 0 or clearing[0] == "STATUS"
            await host.expect(ctx, "ERROR", ERRORS["shape"] if kept else 0)

    simulate(dut, bench, extra=[pulser])


def test_error_latch():
    """The first error's code and layer are kept until cleared; w1c clears the flag but not
    ERROR; the next error loads it again; start clears both."""
    dut = make()

    async def bench(ctx, host):
        await host.event(ctx, "error", error_code=ERRORS["descriptor_checksum"],
                         error_layer=0x0102)
        ctx.set(dut.core.error_code, 0x55)       # the inputs change after the event
        ctx.set(dut.core.error_layer, 0x7777)
        error_word = ERRORS["descriptor_checksum"] | 0x0102 << 16
        await host.expect(ctx, "ERROR", error_word)
        await host.expect(ctx, "STATUS", STATUS_ERROR)
        await host.event(ctx, "error", error_code=ERRORS["bus"], error_layer=9)
        await host.expect(ctx, "ERROR", error_word)           # the first error is kept
        await host.put(ctx, "ERROR", 0)                       # read-only
        await host.put(ctx, "STATUS", STATUS_ERROR)
        await host.expect(ctx, "STATUS", 0)
        await host.expect(ctx, "ERROR", error_word)           # still readable
        await host.event(ctx, "error", error_code=0xFF, error_layer=0xFFFF)
        await host.expect(ctx, "ERROR", 0xFFFF_00FF)
        await host.put(ctx, "CONTROL", CONTROL_START)
        await host.expect(ctx, "ERROR", 0)
        await host.expect(ctx, "STATUS", 0)

    simulate(dut, bench)


def test_irq():
    dut = make()

    async def bench(ctx, host):
        await host.event(ctx, "done")
        assert ctx.get(dut.irq) == 0                           # not enabled
        await host.put(ctx, "CONTROL", CONTROL_IRQ_ENABLE)
        assert ctx.get(dut.irq) == 1
        await host.put(ctx, "STATUS", STATUS_DONE)
        assert ctx.get(dut.irq) == 0
        await host.event(ctx, "error", error_code=1)
        assert ctx.get(dut.irq) == 1
        await host.put(ctx, "CONTROL", 0)
        assert ctx.get(dut.irq) == 0
        await host.put(ctx, "CONTROL", CONTROL_IRQ_ENABLE)
        assert ctx.get(dut.irq) == 1
        await host.put(ctx, "CONTROL", CONTROL_IRQ_ENABLE | CONTROL_START)   # start clears
        assert ctx.get(dut.irq) == 0
        await host.event(ctx, "done")
        assert ctx.get(dut.irq) == 1

    simulate(dut, bench)


@pytest.mark.parametrize(("aw_delay", "w_delay", "b_delay"), [
    (0, 0, 0), (0, 3, 0), (3, 0, 0), (2, 2, 5), (0, 1, 7), (5, 0, 1),
], ids=["together", "aw-first", "w-first", "late-together-b-stalled", "aw-first-b-stalled",
        "w-first-late"])
def test_write_orders(aw_delay, w_delay, b_delay):
    """Address and data in either order or together; the response is raised without waiting
    for `bready` and held until taken."""
    dut = make()

    async def bench(ctx, host):
        bus = host.bus
        assert (ctx.get(bus.awready), ctx.get(bus.wready), ctx.get(bus.arready)) == (1, 1, 1)
        begin = host.cycle
        resp = await host.write(ctx, OFFSETS["PROGRAM"], 0xCAFE_F00D, aw_delay=aw_delay,
                                w_delay=w_delay, b_delay=b_delay)
        assert resp == OKAY
        assert host.b_seen - begin <= max(aw_delay, w_delay) + 2, "response late"
        await host.expect(ctx, "PROGRAM", 0xCAFE_F00D, ar_delay=w_delay, r_delay=b_delay)
        if b_delay:
            assert host.r_seen - begin < host.cycle - begin, "rvalid waited for rready"

    simulate(dut, bench)


def test_second_write_waits_for_the_first_response():
    """A second address and data offered at once are taken into the holding registers but not
    written until the first response is taken: nothing is lost or merged."""
    dut = make()

    async def bench(ctx, host):
        bus = host.bus
        pairs = [(OFFSETS["PROGRAM"], 0x1111_1111), (OFFSETS["LAYER_SELECT"], 0x2222)]
        aw_next = w_next = 0
        ctx.set(bus.wstrb, 0xF)
        for _ in range(8):                          # offer both pairs; B stays unanswered
            ctx.set(bus.awvalid, aw_next < 2)
            ctx.set(bus.wvalid, w_next < 2)
            ctx.set(bus.awaddr, pairs[min(aw_next, 1)][0])
            ctx.set(bus.wdata, pairs[min(w_next, 1)][1])
            aw_fire = aw_next < 2 and ctx.get(bus.awready)
            w_fire = w_next < 2 and ctx.get(bus.wready)
            await host.tick(ctx)
            aw_next += aw_fire
            w_next += w_fire
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        assert (aw_next, w_next) == (2, 2), "the second pair was not taken"
        assert ctx.get(bus.bvalid) == 1
        assert (ctx.get(bus.awready), ctx.get(bus.wready)) == (0, 0), "a third pair would fit"
        assert ctx.get(dut.core.program) == 0x1111_1111
        assert ctx.get(dut.core.layer_select) == 0, "written before the first B was taken"
        ctx.set(bus.bready, 1)
        await host.tick(ctx)                        # first B taken
        assert ctx.get(bus.bvalid) == 0
        await host.tick(ctx)                        # the second write is done
        assert ctx.get(bus.bvalid) == 1
        assert ctx.get(dut.core.layer_select) == 0x2222
        await host.tick(ctx)
        ctx.set(bus.bready, 0)
        assert ctx.get(bus.bvalid) == 0
        await host.expect(ctx, "PROGRAM", 0x1111_1111)

    simulate(dut, bench)


def test_unknown_offsets_read_zero_and_ignore_writes():
    dut = make(addr_bits=64)
    known = {r.offset for r in REGISTERS}
    unknown = [o for o in range(0, 256, 4) if o not in known]

    async def bench(ctx, host):
        for name in ("PROGRAM", "PROGRAM_HI", "LAYER_SELECT"):
            await host.put(ctx, name, 0x0000_0A5A)
        before = {r.name: await host.read(ctx, r.offset) for r in REGISTERS}
        for offset in unknown:
            assert await host.write(ctx, offset, 0xFFFF_FFFF) == OKAY
        for offset in unknown:
            await host.expect(ctx, offset, 0)
        after = {r.name: await host.read(ctx, r.offset) for r in REGISTERS}
        assert after == before
        # bits 0-1 of the address are ignored: 0x0E is PROGRAM's word
        await host.expect(ctx, OFFSETS["PROGRAM"] + 2, 0x0000_0A5A)

    monitor = []
    simulate(dut, bench, monitor=monitor)
    check_pulses(monitor, [])
    assert len(unknown) == 64 - len(REGISTERS)


@pytest.mark.parametrize(("port", "reg"), COUNTERS)
def test_counter_low_word_read_latches_high_word(port, reg):
    dut = make()
    lo, hi = f"{reg}_LO", f"{reg}_HI"
    value = getattr(dut.core, port)

    async def bench(ctx, host):
        ctx.set(value, 0x1_FFFF_FFFF)
        await host.expect(ctx, lo, 0xFFFF_FFFF)
        ctx.set(value, 0x2_0000_0000)                 # the counter moves on between the reads
        await host.expect(ctx, hi, 0x1)               # the high word of the value read
        await host.expect(ctx, hi, 0x1)               # HI alone: still the latched word
        await host.expect(ctx, lo, 0x0)
        await host.expect(ctx, hi, 0x2)
        # another counter's LO read in between does not disturb this latch
        other = next(p for p, _ in COUNTERS if p != port)
        other_reg = next(r for p, r in COUNTERS if p == other)
        ctx.set(value, 0xABCD_0000_0001)
        ctx.set(getattr(dut.core, other), 0x7777_0000_0000)
        await host.expect(ctx, lo, 0x1)
        await host.expect(ctx, f"{other_reg}_LO", 0x0)
        ctx.set(value, 0)
        await host.expect(ctx, hi, 0xABCD)
        await host.expect(ctx, f"{other_reg}_HI", 0x7777)

    simulate(dut, bench)


def test_layer_and_layer_cycles_follow_the_core():
    dut = make()

    async def bench(ctx, host):
        await host.put(ctx, "LAYER_SELECT", 7)
        assert ctx.get(dut.core.layer_select) == 7
        for layer, cycles in [(0, 100), (5, 0xFFFF_FFFF), (0xFFFF, 1)]:
            ctx.set(dut.core.layer, layer)
            ctx.set(dut.core.layer_cycles, cycles)
            await host.expect(ctx, "LAYER", layer)
            await host.expect(ctx, "LAYER_CYCLES", cycles)

    simulate(dut, bench)


def test_back_to_back_transactions():
    """Reads and writes interleaved with no idle cycles, the values all kept apart."""
    dut = make(addr_bits=64)

    async def bench(ctx, host):
        for n in range(6):
            await host.put(ctx, "PROGRAM", 0x100 * n + 1)
            await host.put(ctx, "PROGRAM_HI", 0x100 * n + 2)
            await host.expect(ctx, "PROGRAM", 0x100 * n + 1)
            await host.expect(ctx, "PROGRAM_HI", 0x100 * n + 2)
        assert ctx.get(dut.core.program) == (0x502 << 32) | 0x501

    simulate(dut, bench)


# -- the checkers catch corrupted expectations and broken slaves ----------------------------

class Mutant(wiring.Component):
    """The register block with one output altered, to show that a checker catches it."""

    def __init__(self, mutation):
        self.inner = make()
        self.mutation = mutation
        super().__init__(self.inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        wiring.connect(m, wiring.flipped(getattr(self, AXIL_PORT)), getattr(inner, AXIL_PORT))
        wiring.connect(m, wiring.flipped(self.core), inner.core)
        m.d.comb += self.irq.eq(inner.irq)
        outer, bus = getattr(self, AXIL_PORT), getattr(inner, AXIL_PORT)
        toggle, start_q = Signal(), Signal()
        m.d.sync += [toggle.eq(~toggle), start_q.eq(inner.core.start)]
        if self.mutation == "b-early":        # B while only the address is taken
            m.d.comb += outer.bvalid.eq(bus.bvalid | (outer.awvalid & bus.awready))
        elif self.mutation == "r-early":      # R in the cycle the address is offered
            m.d.comb += outer.rvalid.eq(bus.rvalid | outer.arvalid)
        elif self.mutation == "r-changes":    # read data not held while rvalid waits
            m.d.comb += outer.rdata.eq(bus.rdata ^ toggle)
        elif self.mutation == "slverr":
            m.d.comb += [outer.bresp.eq(0b10), outer.rresp.eq(0b10)]
        elif self.mutation == "long-start":   # a two-cycle start pulse
            m.d.comb += self.core.start.eq(inner.core.start | start_q)
        else:
            raise ValueError(self.mutation)
        return m


def test_corrupted_read_expectation_is_caught():
    async def bench(ctx, host):
        await host.expect(ctx, "CORE_ID", CORE_ID ^ 1)

    with pytest.raises(AssertionError, match=r"CORE_ID: read 0xc0de5eed, expected 0xc0de5eec"):
        simulate(make(), bench)


def test_corrupted_pulse_expectation_is_caught():
    async def bench(ctx, host):
        await host.put(ctx, "CONTROL", CONTROL_START)
        marks.append(host.cycle)

    marks, monitor = [], []
    simulate(make(), bench, monitor=monitor)
    check_pulses(monitor, [(marks[0] - 1, "start")])
    with pytest.raises(AssertionError, match="pulses"):
        check_pulses(monitor, [(marks[0], "start")])
    marks, monitor = [], []
    simulate(Mutant("long-start"), bench, monitor=monitor)
    with pytest.raises(AssertionError, match="pulses"):
        check_pulses(monitor, [(marks[0] - 1, "start")])


@pytest.mark.parametrize(("mutation", "message"), [
    ("b-early", "bvalid at cycle 0 before both write address and data were taken"),
    ("r-early", r"rvalid at cycle \d+ before the read address was taken"),
    ("r-changes", "read data changed from"),
    ("slverr", "BRESP 2, not OKAY"),
])
def test_handshake_checks_catch_a_broken_slave(mutation, message):
    """The Host's checks of the slave's side of AXI fire on a slave that breaks a rule."""
    async def bench(ctx, host):
        await host.put(ctx, "PROGRAM", 5, w_delay=3)
        await host.expect(ctx, "PROGRAM", 5, r_delay=3)

    simulate(make(), bench)
    with pytest.raises(AssertionError, match=message):
        simulate(Mutant(mutation), bench)


def test_read_response_check_catches_slverr():
    async def bench(ctx, host):
        await host.read(ctx, 0)

    with pytest.raises(AssertionError, match="read of 0x00: RRESP 2, not OKAY"):
        simulate(Mutant("slverr"), bench)


def test_register_table_in_the_format_document_matches_spec():
    """docs/overlay-format.md's register table names every register of spec.csr with its
    offset and access kind, and nothing else."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "overlay-format.md").read_text()
    section = text.split("## Control and status registers", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("0x"):
            offsets = [int(o, 16) for o in cells[0].split(",")]
            names = [n.strip().strip("`") for n in cells[1].split(",")]
            rows += [(n, o, cells[2]) for n, o in zip(names, offsets, strict=True)]
    assert rows == [(r.name, r.offset, r.access) for r in REGISTERS]
