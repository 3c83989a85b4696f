"""The AXI4 master (`hw.axi`) in the Amaranth simulator against a slave model with random delays
on every channel (tests/amaranth_axi.py): the bursts issued equal `spec.axi.bursts`, data in
order with `last` on each command's end, the buffer credit that keeps RREADY high, the bound
on bursts in flight, sticky errors on SLVERR, reads and writes independent, a soft reset in
the middle of a transfer, and nothing hangs (every run has a cycle budget). Each checker is
shown to catch a corrupted expectation."""

import random

import pytest
from amaranth.sim import Simulator
from amaranth_axi import AxiSlaveModel, Sink, Source, run_parts
from amaranth_streams import run_streams

from gen.verilog import to_verilog
from hw.axi import AXI4Signature, AxiMaster, AxiReader, AxiWriter, BurstPlanner, RegisterSlice
from hw.common import struct_layout
from sim.axi import (
    beats_bytes,
    expected_read,
    first_difference,
    planned_bursts,
    random_transfers,
    write_beats,
)
from spec.axi import AxiConfig

MEMORY = 64 * 1024

CONFIGS = {
    "d64-b16": AxiConfig(),                                              # the core's default
    "d32-b256": AxiConfig(data_bits=32, max_burst=256, outstanding=2),   # 1,024 beats a page
    "d256-b8": AxiConfig(data_bits=256, max_burst=8, outstanding=3),     # 128 beats a page
    "d128-b1": AxiConfig(data_bits=128, max_burst=1, outstanding=1),     # one beat at a time
}
#: max_burst above a page's beats (256 x 32 bytes): the 4 KiB boundary alone limits bursts
PLANNER_CONFIGS = {**CONFIGS, "d256-b256": AxiConfig(data_bits=256, max_burst=256)}


def random_commands(cfg, rng, count, max_beats, *, disjoint=True):
    return random_transfers(cfg, rng, count, max_beats, memory_bytes=MEMORY, disjoint=disjoint)


class Status:
    """Reads a component's status outputs each cycle; remembers `error` ever falling."""

    def __init__(self, **signals):
        self.signals = signals
        self.values = {}
        self.error_fell = False

    def read(self, ctx):
        before = self.values.get("error")
        self.values = {name: ctx.get(s) for name, s in self.signals.items()}
        if before and not self.values.get("error", 0):
            self.error_fell = True
        return self.values


# -- construction ---------------------------------------------------------------------------

def test_init_wrong_config():
    for cls in (BurstPlanner, AxiReader, AxiWriter, AxiMaster):
        with pytest.raises(TypeError) as info:
            cls({"data_bits": 64})
        assert str(info.value) == "config must be an AxiConfig, not {'data_bits': 64}"


def test_signature_checks():
    with pytest.raises(ValueError) as info:
        AXI4Signature(data_bits=12, addr_bits=32, id_bits=4)
    assert str(info.value) == "data_bits must be a multiple of 8, not 12"
    with pytest.raises(TypeError) as info:
        AXI4Signature(data_bits=64, addr_bits=0, id_bits=4)
    assert str(info.value) == "addr_bits must be a positive integer, not 0"
    with pytest.raises(ValueError) as info:
        AXI4Signature(data_bits=64, addr_bits=32, id_bits=4, read=False, write=False)
    assert str(info.value) == "an AXI4 port needs a read half, a write half or both"
    full = AXI4Signature.of(AxiConfig())
    assert full == AXI4Signature(data_bits=64, addr_bits=32, id_bits=4)
    assert full != AXI4Signature.of(AxiConfig(), read=False)
    reader = AXI4Signature.of(AxiConfig(), write=False)
    assert set(reader.members) < set(full.members)
    assert not any(name.startswith(("aw", "w", "b")) for name in reader.members)
    assert repr(reader) == ("AXI4Signature(data_bits=64, addr_bits=32, id_bits=4, read=True, "
                            "write=False)")


def test_port_names_are_what_cocotbext_axi_looks_for():
    """The Verilog ports of `AxiMaster` are the names `AxiBus.from_prefix(dut, "m_axi_")`
    builds (prefix + "_" + signal) for every signal cocotbext-axi requires, and the optional
    ones the port has, with the widths it asserts."""
    from cocotbext.axi import axi_channels as ch

    text = to_verilog(AxiMaster(AxiConfig()), "axi_master")
    header = text[text.index("module axi_master("):]
    ports = set(header[header.index("(") + 1:header.index(");")].replace("\n", "").split(", "))
    buses = (ch.AxiAWBus, ch.AxiWBus, ch.AxiBBus, ch.AxiARBus, ch.AxiRBus)
    for bus in buses:
        for signal in bus._signals:
            assert "m_axi_" + "_" + signal in ports, signal
    optional = {f"m_axi__{s}" for bus in buses for s in bus._optional_signals} & ports
    assert optional == {f"m_axi__{s}" for s in ("awcache", "awprot", "arcache", "arprot",
                                                 "wstrb", "bresp", "rresp")}
    assert "output [7:0] m_axi__arlen;" in text and "output [2:0] m_axi__awsize;" in text
    # the same holds for the reader's and writer's own ports
    reader = to_verilog(AxiReader(AxiConfig()), "axi_reader")
    assert "input [63:0] m_axi__rdata;" in reader and "m_axi__awaddr" not in reader


# -- the burst planner ----------------------------------------------------------------------

@pytest.mark.parametrize("name", PLANNER_CONFIGS)
def test_planner_matches_bursts_back_to_back(name):
    """With nothing stalling, one burst per cycle: a command is taken in the cycle its
    predecessor's last burst is planned (an empty command costs one cycle)."""
    cfg = PLANNER_CONFIGS[name]
    rng = random.Random(5)
    commands = random_commands(cfg, rng, 30, max_beats=3 * cfg.max_burst + 5, disjoint=False)
    dut = BurstPlanner(cfg)
    source = Source(dut.cmd, cfg.command_fields(), commands)
    sink = Sink(dut.burst, cfg.burst_fields())
    want = planned_bursts(cfg, commands)
    cycles = run_parts(dut, [source, sink], max_cycles=10 * len(want) + 100,
                       until=lambda ctx: len(sink.beats) == len(want) and source.empty)
    got = [(b["addr"], b["beats"]) for b in sink.beats]
    assert first_difference(want, got, what="burst") is None
    finals = [b["final"] for b in sink.beats]
    assert sum(finals) == sum(1 for c in commands if c["length"])
    empty = sum(1 for c in commands if not c["length"])
    assert cycles <= len(want) + empty + 2


def edge_commands(cfg):
    """Transfers starting 0, 1, top - 1, top and top + 1 beats before a 4 KiB boundary, each
    ending just before, on or just after it, or `top` or `2 top` beats long (`top`: the
    longest burst, max_burst or a page); some are empty."""
    bb = cfg.beat_bytes
    top = min(cfg.max_burst, 4096 // bb)
    out = []
    for before in sorted({0, 1, top - 1, top, top + 1}):
        addr = 0x3000 - before * bb
        for beats in sorted({1, before, before + 1, max(before - 1, 1), top, top + 1, 2 * top}):
            out.append({"addr": addr, "length": beats * bb})
    return out


@pytest.mark.parametrize("name", PLANNER_CONFIGS)
def test_planner_edge_cases(name):
    cfg = PLANNER_CONFIGS[name]
    commands = edge_commands(cfg)
    dut = BurstPlanner(cfg)
    source = Source(dut.cmd, cfg.command_fields(), commands)
    sink = Sink(dut.burst, cfg.burst_fields(), stall=0.2, seed=3)
    want = planned_bursts(cfg, commands)
    run_parts(dut, [source, sink], max_cycles=10 * len(want) + 100,
              until=lambda ctx: len(sink.beats) == len(want) and source.empty)
    got = [(b["addr"], b["beats"]) for b in sink.beats]
    assert first_difference(want, got, what="burst") is None
    ends = [n for n, b in enumerate(sink.beats) if b["final"]]
    assert len(ends) == sum(1 for c in commands if c["length"]) and ends[-1] == len(want) - 1


@pytest.mark.parametrize("name", ["d64-b16", "d256-b8"])
def test_planner_with_stalls(name):
    cfg = CONFIGS[name]
    rng = random.Random(6)
    commands = random_commands(cfg, rng, 20, max_beats=2 * cfg.max_burst + 3, disjoint=False)
    dut = BurstPlanner(cfg)
    source = Source(dut.cmd, cfg.command_fields(), commands, stall=0.5, seed=1)
    sink = Sink(dut.burst, cfg.burst_fields(), stall=0.5, seed=2)
    want = planned_bursts(cfg, commands)
    run_parts(dut, [source, sink], max_cycles=20 * len(want) + 200,
              until=lambda ctx: len(sink.beats) == len(want) and source.empty)
    assert [(b["addr"], b["beats"]) for b in sink.beats] == want


# -- the reader -----------------------------------------------------------------------------

def run_reader(cfg, commands, *, seed, out_stall=0.3, slave=None, errors=(), memory=None):
    rng = random.Random(seed)
    memory = bytearray(rng.randbytes(MEMORY)) if memory is None else memory
    dut = AxiReader(cfg)
    model = AxiSlaveModel(dut.m_axi, cfg, memory, errors=errors, seed=seed + 1,
                          **(slave or {}))
    source = Source(dut.cmd, cfg.command_fields(), commands, stall=0.3, seed=seed + 2)
    sink = Sink(dut.data, cfg.read_fields(), stall=out_stall, seed=seed + 3)
    status = Status(idle=dut.idle, error=dut.error, bytes=dut.bytes)
    total = sum(c["length"] for c in commands) // cfg.beat_bytes

    def until(ctx):
        status.read(ctx)
        return len(sink.beats) == total and source.empty and status.values["idle"]

    cycles = run_parts(dut, [source, sink, model], until=until, max_cycles=30 * total + 2000)
    return memory, model, sink, status, cycles


@pytest.mark.parametrize("name", CONFIGS)
def test_reader_bursts_data_and_last(name):
    cfg = CONFIGS[name]
    rng = random.Random(11)
    commands = random_commands(cfg, rng, 12, max_beats=min(600, max(40, 4 * cfg.max_burst + 9)))
    memory, model, sink, status, _ = run_reader(cfg, commands, seed=12)
    data, last = expected_read(cfg, memory, commands)
    assert first_difference(planned_bursts(cfg, commands), model.ar_bursts, what="AR burst") is None
    assert first_difference(data, beats_bytes(cfg, sink.beats)) is None
    assert [bool(b["last"]) for b in sink.beats] == last
    assert status.values["bytes"] == len(data) and status.values["error"] == 0
    assert model.r_stall_cycles == 0, "RREADY went low while the buffer had room reserved"
    assert model.max_reads_in_flight <= cfg.outstanding
    assert model.quiet


def test_reader_keeps_bursts_in_flight_and_rready_high_while_output_blocked():
    """The output never takes a beat: the reader issues only the bursts its buffer can hold
    (R is never stalled), up to `outstanding` at once; then nothing more until beats leave."""
    cfg = AxiConfig(max_burst=8, outstanding=4)
    commands = [{"addr": 0x100, "length": 40 * 8 * 8}]       # 40 bursts of 8 beats
    rng = random.Random(3)
    memory = bytearray(rng.randbytes(MEMORY))
    dut = AxiReader(cfg)
    model = AxiSlaveModel(dut.m_axi, cfg, memory, ready=1.0, gap=0.0, seed=4)
    source = Source(dut.cmd, cfg.command_fields(), commands)
    sink = Sink(dut.data, cfg.read_fields(), stall=1.0)
    seen = {"cycle": 0}       # blocked for 400 cycles, then released

    def until(ctx):
        seen["cycle"] += 1
        if seen["cycle"] == 400:
            seen["bursts_while_blocked"] = len(model.ar_bursts)
            seen["beats_while_blocked"] = len(sink.beats)
            sink.stall = 0.0
        return len(sink.beats) == 320 and ctx.get(dut.idle)

    run_parts(dut, [source, sink, model], until=until, max_cycles=3000)
    assert seen["beats_while_blocked"] == 0
    assert seen["bursts_while_blocked"] == cfg.read_buffer_beats // 8    # 4 bursts: the buffer
    assert model.max_reads_in_flight == cfg.outstanding
    assert model.r_stall_cycles == 0
    data, _ = expected_read(cfg, memory, commands)
    assert beats_bytes(cfg, sink.beats) == data


def test_reader_error_is_sticky_and_nothing_hangs():
    cfg = CONFIGS["d64-b16"]
    commands = [{"addr": 0x0F00, "length": 0x200}, {"addr": 0x3000, "length": 0x400},
                {"addr": 0x5008, "length": 0x80}]
    errors = {0x1010}                     # one byte of one beat of the first command
    memory, model, sink, status, _ = run_reader(cfg, commands, seed=21, errors=errors)
    data, _ = expected_read(cfg, memory, commands)
    assert beats_bytes(cfg, sink.beats) == data, "every beat still delivered"
    assert status.values["error"] == 1 and not status.error_fell
    assert model.quiet


def test_reader_error_stays_until_soft_reset():
    """SLVERR on the first command's beat: `error` rises, stays through two clean commands,
    falls at the soft reset; later clean commands leave it low."""
    cfg = CONFIGS["d64-b16"]
    rng = random.Random(22)
    memory = bytearray(rng.randbytes(MEMORY))
    dut = AxiReader(cfg)
    model = AxiSlaveModel(dut.m_axi, cfg, memory, errors={0x2040}, seed=23)
    source = Source(dut.cmd, cfg.command_fields(), [
        {"addr": 0x2000, "length": 0x100}, {"addr": 0x8000, "length": 0x100},
        {"addr": 0x9000, "length": 0x100}], stall=0.2, seed=24)
    sink = Sink(dut.data, cfg.read_fields(), stall=0.2, seed=25)
    trace, phase = [], {"n": 0, "at": None}

    def until(ctx):
        error, idle = ctx.get(dut.error), ctx.get(dut.idle)
        trace.append((phase["n"], error))
        if phase["n"] == 0 and len(sink.beats) == 96 and idle:
            phase["n"] = 1
        elif phase["n"] == 2 and idle:
            source.put([{"addr": 0xA000, "length": 0x100}])
            phase["n"] = 3
        return phase["n"] == 3 and len(sink.beats) == 128 and idle

    def on_cycle(ctx, cycle):
        ctx.set(dut.soft_reset, phase["n"] == 1)
        if phase["n"] == 1:
            phase["n"] = 2

    run_parts(dut, [source, sink, model], until=until, on_cycle=on_cycle, max_cycles=5000)
    errors = [e for p, e in trace if p == 0]
    first = errors.index(1)
    assert all(errors[first:]), "error fell before the soft reset"
    assert not any(e for p, e in trace if p == 3), "error after the soft reset"


@pytest.mark.parametrize("name", ["d64-b16", "d32-b256"])
def test_reader_soft_reset_mid_transfer(name):
    """A soft reset with bursts in flight and beats waiting: commands and beats dropped, every
    burst in flight still taken to its end (the slave ends quiet), `idle` within a bound, then
    new commands read exactly, nothing of the old ones leaking."""
    cfg = CONFIGS[name]
    rng = random.Random(31)
    memory = bytearray(rng.randbytes(MEMORY))
    old = random_commands(cfg, rng, 6, max_beats=3 * cfg.max_burst)
    new = random_commands(cfg, random.Random(32), 5, max_beats=2 * cfg.max_burst + 3)
    dut = AxiReader(cfg)
    model = AxiSlaveModel(dut.m_axi, cfg, memory, ready=0.5, gap=0.5, seed=33)
    source = Source(dut.cmd, cfg.command_fields(), old, stall=0.1, seed=34)
    sink = Sink(dut.data, cfg.read_fields(), stall=0.6, seed=35)
    state = {"phase": 0}
    total_new = sum(c["length"] for c in new) // cfg.beat_bytes

    def on_cycle(ctx, cycle):
        reset = state["phase"] == 0 and model.reads_in_flight >= 2 and len(sink.beats) > 3
        ctx.set(dut.soft_reset, reset)
        if reset:
            source.drop()
            state.update(phase=1, at_reset=len(sink.beats))

    def until(ctx):
        if state["phase"] == 1:
            assert ctx.get(dut.bytes) == 0 and ctx.get(dut.error) == 0
            if ctx.get(dut.idle):
                assert model.quiet, "idle with a burst still in flight"
                assert len(sink.beats) == state["at_reset"], "beats delivered after the reset"
                state.update(phase=2, mark=len(sink.beats), drained=model.ar_bursts[:])
                source.put(new)
        return (state["phase"] == 2 and len(sink.beats) == state["mark"] + total_new
                and source.empty and ctx.get(dut.idle))

    run_parts(dut, [source, sink, model], until=until, on_cycle=on_cycle, max_cycles=20_000)
    data, last = expected_read(cfg, memory, new)
    after = sink.beats[state["mark"]:]
    assert first_difference(data, beats_bytes(cfg, after)) is None
    assert [bool(b["last"]) for b in after] == last
    assert model.ar_bursts[len(state["drained"]):] == planned_bursts(cfg, new)
    assert model.quiet


# -- the writer -----------------------------------------------------------------------------

def run_writer(cfg, commands, beats, memory, *, seed, errors=(), data_stall=0.3):
    dut = AxiWriter(cfg)
    model = AxiSlaveModel(dut.m_axi, cfg, memory, errors=errors, seed=seed + 1)
    cmd = Source(dut.cmd, cfg.command_fields(), commands, stall=0.3, seed=seed + 2)
    data = Source(dut.data, cfg.write_fields(), beats, stall=data_stall, seed=seed + 3)
    status = Status(idle=dut.idle, error=dut.error, bytes=dut.bytes, responses=dut.responses)

    def until(ctx):
        status.read(ctx)
        return cmd.empty and data.empty and status.values["idle"]

    cycles = run_parts(dut, [cmd, data, model], until=until,
                       max_cycles=30 * len(beats) + 2000)
    return model, status, cycles


@pytest.mark.parametrize("name", CONFIGS)
def test_writer_bursts_and_memory(name):
    cfg = CONFIGS[name]
    rng = random.Random(41)
    commands = random_commands(cfg, rng, 12, max_beats=min(600, max(40, 4 * cfg.max_burst + 9)))
    memory = bytearray(rng.randbytes(MEMORY))
    expected = bytearray(memory)
    beats = write_beats(cfg, rng, commands, expected)
    model, status, _ = run_writer(cfg, commands, beats, memory, seed=42)
    want = planned_bursts(cfg, commands)
    assert first_difference(want, model.aw_bursts, what="AW burst") is None
    assert first_difference(expected, memory) is None
    assert status.values["responses"] == len(want)
    assert status.values["bytes"] == sum(c["length"] for c in commands)
    assert status.values["error"] == 0
    assert model.max_writes_in_flight <= cfg.outstanding and model.quiet
    assert model.strobed_off == sum(1 for b in beats if b["strb"] == 0)


def test_writer_error_is_sticky_and_nothing_hangs():
    cfg = CONFIGS["d256-b8"]
    rng = random.Random(51)
    commands = [{"addr": 0x0F00, "length": 0x400}, {"addr": 0x6000, "length": 0x300}]
    memory = bytearray(rng.randbytes(MEMORY))
    expected = bytearray(memory)
    beats = write_beats(cfg, rng, commands, expected, partial=0.0)
    model, status, _ = run_writer(cfg, commands, beats, memory, seed=52, errors={0x1000})
    assert memory == expected, "every beat still written"
    assert status.values["error"] == 1 and not status.error_fell
    assert status.values["responses"] == len(planned_bursts(cfg, commands)) and model.quiet


@pytest.mark.parametrize("name", ["d64-b16", "d256-b8"])
def test_writer_soft_reset_mid_burst(name):
    """A soft reset while a burst's W beats are half sent: its missing beats go out with WSTRB
    0 (the slave sees whole bursts, writes nothing more), every B response is taken, `idle`
    within a bound; every byte is then either untouched or what the old commands wrote; new
    commands then write exactly."""
    cfg = CONFIGS[name]
    rng = random.Random(61)
    memory = bytearray(rng.randbytes(MEMORY))
    background = bytes(memory)
    old = random_commands(cfg, rng, 6, max_beats=3 * cfg.max_burst)
    written = bytearray(memory)
    old_beats = write_beats(cfg, rng, old, written, partial=0.0)
    dut = AxiWriter(cfg)
    model = AxiSlaveModel(dut.m_axi, cfg, memory, ready=0.6, seed=62)
    cmd = Source(dut.cmd, cfg.command_fields(), old, seed=63)
    data = Source(dut.data, cfg.write_fields(), old_beats, stall=0.6, seed=64)
    state = {"phase": 0}

    def on_cycle(ctx, cycle):
        head = model.aw_queue[0] if model.aw_queue else None
        reset = state["phase"] == 0 and head is not None and 0 < head[2] < head[1] - 1
        ctx.set(dut.soft_reset, reset)
        if reset:
            cmd.drop()
            data.drop()
            state["phase"] = 1

    def until(ctx):
        if state["phase"] == 1 and ctx.get(dut.idle):
            assert model.quiet, "idle with a burst still in flight"
            assert ctx.get(dut.responses) == 0 and ctx.get(dut.error) == 0
            state.update(phase=2, after=bytes(memory), bursts=len(model.aw_bursts))
            cmd.put(state["new"])
            data.put(state["new_beats"])
        return state["phase"] == 2 and cmd.empty and data.empty and ctx.get(dut.idle)

    new = random_commands(cfg, random.Random(65), 5, max_beats=2 * cfg.max_burst + 3)
    expected = bytearray(background)
    state.update(new=new, new_beats=write_beats(cfg, rng, new, expected))
    run_parts(dut, [cmd, data, model], until=until, on_cycle=on_cycle, max_cycles=20_000)
    assert model.strobed_off > 0, "the reset did not fall inside a burst"
    after = state["after"]
    assert all(after[a] in (background[a], written[a]) for a in range(MEMORY))
    assert model.aw_bursts[state["bursts"]:] == planned_bursts(cfg, new)
    for c in new:
        span = slice(c["addr"], c["addr"] + c["length"])
        assert first_difference(expected[span], memory[span], base=c["addr"]) is None


# -- both directions ------------------------------------------------------------------------

def test_master_reads_and_writes_independently():
    """Reads blocked at the output do not hold up writes: every write completes while no read
    beat has left; then the reads complete, exact. One AXI port carries both."""
    cfg = CONFIGS["d64-b16"]
    rng = random.Random(71)
    memory = bytearray(rng.randbytes(MEMORY))
    reads = [{"addr": 0x0000, "length": 0x1800}, {"addr": 0x1FC0, "length": 0x100}]
    writes = [{"addr": 0x8F80, "length": 0x300}, {"addr": 0xA000, "length": 0x800}]
    want_read, _ = expected_read(cfg, memory, reads)
    expected = bytearray(memory)
    beats = write_beats(cfg, rng, writes, expected)
    dut = AxiMaster(cfg)
    model = AxiSlaveModel(dut.m_axi, cfg, memory, seed=72)
    rcmd = Source(dut.read_cmd, cfg.command_fields(), reads, seed=73)
    wcmd = Source(dut.write_cmd, cfg.command_fields(), writes, seed=74)
    wdata = Source(dut.write_data, cfg.write_fields(), beats, stall=0.2, seed=75)
    sink = Sink(dut.read_data, cfg.read_fields(), stall=1.0, seed=76)
    seen = {}

    def until(ctx):
        if "writes_done" not in seen and wdata.empty and ctx.get(dut.write_idle):
            seen["writes_done"] = len(sink.beats)
            sink.stall = 0.2
        total = len(want_read) // cfg.beat_bytes
        return len(sink.beats) == total and ctx.get(dut.read_idle) and ctx.get(dut.write_idle)

    run_parts(dut, [rcmd, wcmd, wdata, sink, model], until=until, max_cycles=10_000)
    assert seen["writes_done"] == 0
    assert beats_bytes(cfg, sink.beats) == want_read
    assert memory == expected
    assert model.ar_bursts == planned_bursts(cfg, reads)
    assert model.aw_bursts == planned_bursts(cfg, writes)
    assert model.r_stall_cycles == 0


# -- the checkers catch corrupted expectations ----------------------------------------------

def test_checkers_catch_a_corrupted_expectation():
    cfg = CONFIGS["d64-b16"]
    rng = random.Random(81)
    commands = random_commands(cfg, rng, 6, max_beats=40)
    memory, model, sink, _, _ = run_reader(cfg, commands, seed=82)
    data, last = expected_read(cfg, memory, commands)
    got = beats_bytes(cfg, sink.beats)
    assert first_difference(data, got) is None
    bad = bytearray(data)
    bad[77] ^= 0x10
    assert first_difference(bad, got) == (f"byte 0x4d: expected {bad[77]:#04x}, "
                                          f"got {data[77]:#04x}")
    want = planned_bursts(cfg, commands)
    wrong = want[:2] + [(want[2][0], want[2][1] + 1)] + want[3:]
    assert first_difference(wrong, model.ar_bursts, what="AR burst") == \
        f"AR burst 0x2: expected {wrong[2]!r}, got {want[2]!r}"
    assert first_difference(want[:-1], model.ar_bursts, what="AR burst") == \
        f"{len(want) - 1} AR bursts expected, got {len(want)}"
    flipped = last[:]
    flipped[3] = not flipped[3]
    assert [bool(b["last"]) for b in sink.beats] != flipped


# -- the register slice (the core's read data pass one) --------------------------------------

def slice_beats(count, seed):
    rng = random.Random(seed)
    return [{"data": rng.getrandbits(64), "last": rng.getrandbits(1)} for _ in range(count)]


def run_slice(beats, in_stall, out_stall, seed=11):
    fields = CONFIGS["d64-b16"].read_fields()
    dut = RegisterSlice(struct_layout(fields))
    return run_streams(dut, fields, beats, fields, done=lambda r: len(r.outputs) == len(beats),
                       in_stall=in_stall, out_stall=out_stall, seed=seed)


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.4, 0.6)])
def test_register_slice_keeps_every_beat_in_order(stalls):
    beats = slice_beats(300, seed=12)
    run = run_slice(beats, *stalls)
    assert run.outputs == beats
    if stalls == (0.0, 0.0):
        # full throughput: a beat a cycle, one cycle behind the input
        assert run.out_cycles == [c + 1 for c in run.in_cycles]


def test_register_slice_check_catches_a_corrupted_expectation():
    beats = slice_beats(40, seed=13)
    run = run_slice(beats, 0.3, 0.3)
    bad = [dict(b) for b in beats]
    bad[17]["data"] ^= 1 << 40
    assert run.outputs == beats and run.outputs != bad
    assert run.outputs != beats[:-1] and run.outputs != beats[1:] + beats[:1]


def test_register_slice_ready_does_not_follow_the_consumer_combinationally():
    """Within a cycle, `i.ready` is the same whatever `o.ready` and `i.valid` are: it comes
    from a register. (The core relies on it: the routing's `ready` ends at the slice.)"""
    fields = CONFIGS["d64-b16"].read_fields()
    dut = RegisterSlice(struct_layout(fields))
    seen = []

    async def bench(ctx):
        rng = random.Random(14)
        for _ in range(200):
            readies = set()
            for o_ready, i_valid in ((0, 0), (0, 1), (1, 0), (1, 1)):
                ctx.set(dut.o.ready, o_ready)
                ctx.set(dut.i.valid, i_valid)
                readies.add(ctx.get(dut.i.ready))
            seen.append(len(readies))
            ctx.set(dut.o.ready, rng.random() < 0.3)
            ctx.set(dut.i.valid, rng.random() < 0.8)
            ctx.set(dut.i.payload.as_value(), rng.getrandbits(65))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1] * 200
