"""cocotb tests of the AXI4 master (`hw.axi.AxiMaster`) against cocotbext-axi's `AxiRam`, run
inside the simulator by tb/test_axi.py.

The RAM has seeded random pauses on all five channels (`set_pause_generator`); the master's
command and data streams are driven, and its read stream taken, with random stalls
(`sim.streams`). Every test checks byte for byte and compares the AR and AW bursts seen on the
bus with `spec.axi.bursts`.

Environment: SPIKEGEN_AXI (the `AxiConfig` as JSON), SPIKEGEN_SEED.

cocotbext-axi 0.1.28 under cocotb 2.1: it finds the ports with `AxiBus.from_prefix(dut,
"m_axi_")` (it joins prefix and signal with "_", Amaranth flattens `m_axi.araddr` to
`m_axi__araddr`) and runs unchanged; its slave logs every burst at INFO, which is turned down.
"""

import json
import logging
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotbext.axi import AxiBus, AxiRam
from cocotbext.axi.axi_channels import (
    AxiARBus,
    AxiARMonitor,
    AxiAWBus,
    AxiAWMonitor,
    AxiWBus,
    AxiWMonitor,
)
from cocotbext.axi.sparse_memory import SparseMemory

from sim.axi import (
    beats_bytes,
    expected_read,
    first_difference,
    pause_all_channels,
    planned_bursts,
    random_transfers,
    write_beats,
)
from sim.bench import env_seed
from sim.streams import StreamSink, StreamSource, random_stalls, run_cycles
from spec.axi import AxiConfig

PREFIX = "m_axi_"
#: The RAM: 64 KiB at address BASE (bursts near the top of a 32-bit space would also work,
#: but a sparse memory keeps it small wherever it sits).
BASE = 0x8000_0000
MEMORY = 64 * 1024
CHANNELS = ("aw", "w", "b", "ar", "r")


class _FaultyMemory(SparseMemory):
    """A sparse memory whose accesses touching [lo, hi) fail: the RAM answers SLVERR."""

    def __init__(self, size, lo, hi):
        super().__init__(size)
        self.lo, self.hi = lo, hi

    def _check(self, key):
        if isinstance(key, slice) and key.start < self.hi and self.lo < key.stop:
            raise IndexError(f"bytes {key.start:#x}..{key.stop:#x} answer SLVERR")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        self._check(key)
        super().__setitem__(key, value)


class AxiBench:
    """Clock, reset, the RAM with pauses on every channel, AR/AW monitors, the master's stream
    drivers and the read-data collector."""

    def __init__(self, dut, *, pause=0.3, stall=0.3, faulty=None):
        self.dut = dut
        self.cfg = AxiConfig.from_dict(json.loads(os.environ["SPIKEGEN_AXI"]))
        self.seed = env_seed()
        self.rng = random.Random(self.seed)
        logging.getLogger(f"cocotb.{dut._name}.{PREFIX}").setLevel(logging.WARNING)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        mem = None if faulty is None else _FaultyMemory(MEMORY, *faulty)
        self.ram = AxiRam(AxiBus.from_prefix(dut, PREFIX), dut.clk, dut.rst, size=MEMORY,
                          mem=mem)
        pause_all_channels(self.ram, pause, self.seed)
        self.ar = AxiARMonitor(AxiARBus.from_prefix(dut, PREFIX), dut.clk, dut.rst)
        self.aw = AxiAWMonitor(AxiAWBus.from_prefix(dut, PREFIX), dut.clk, dut.rst)
        self.w = AxiWMonitor(AxiWBus.from_prefix(dut, PREFIX), dut.clk, dut.rst)
        self.ar_bursts, self.aw_bursts = [], []
        self.w_beats = self.w_empty_beats = 0       # W beats seen, and those with WSTRB 0
        cfg = self.cfg
        self.read_cmd = StreamSource(dut, "read_cmd", cfg.command_fields(),
                                     stalls=random_stalls(stall, self.seed + 1))
        self.write_cmd = StreamSource(dut, "write_cmd", cfg.command_fields(),
                                      stalls=random_stalls(stall, self.seed + 2))
        self.write_data = StreamSource(dut, "write_data", cfg.write_fields(),
                                       stalls=random_stalls(stall, self.seed + 3))
        self.read_data = StreamSink(dut, "read_data", cfg.read_fields(), on_beat=self._on_beat,
                                    stalls=random_stalls(stall, self.seed + 4))
        self.beats = []
        self.cycle = 0
        dut.soft_reset.value = 0

    def _on_beat(self, beat, cycle):
        self.beats.append(beat)

    @property
    def parts(self):
        return [self.read_cmd, self.write_cmd, self.write_data, self.read_data]

    async def reset(self):
        self.dut.rst.value = 1
        for _ in range(3):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await FallingEdge(self.dut.clk)

    def fill(self, data, base=0):
        """Write `data` into the RAM directly (not over the bus), from RAM offset `base`."""
        self.ram.write(base, data)

    def collect_bursts(self):
        """Move the addresses seen on AR and AW into `ar_bursts`, `aw_bursts`: (address +
        BASE, beats)."""
        for monitor, out, addr, length in ((self.ar, self.ar_bursts, "araddr", "arlen"),
                                           (self.aw, self.aw_bursts, "awaddr", "awlen")):
            while not monitor.empty():
                t = monitor.recv_nowait()
                out.append((int(getattr(t, addr)), int(getattr(t, length)) + 1))
        while not self.w.empty():
            self.w_beats += 1
            self.w_empty_beats += int(self.w.recv_nowait().wstrb) == 0

    def idle(self):
        return (int(self.dut.read_idle.value) and int(self.dut.write_idle.value)
                and self.read_cmd.idle and self.write_cmd.idle and self.write_data.idle)

    async def run(self, until, budget):
        self.cycle = await run_cycles(self.dut, self.parts, until=until, max_cycles=budget,
                                      start=self.cycle)
        self.collect_bursts()

    async def transfer(self, reads, writes, beats, *, budget):
        """Issue `reads` and `writes` (with their data `beats`) at once; run until every read
        beat is in and both directions are idle. Returns the read beats."""
        first = len(self.beats)
        total = sum(c["length"] for c in reads) // self.cfg.beat_bytes
        self.read_cmd.put(reads)
        self.write_cmd.put(writes)
        self.write_data.put(beats)
        await self.run(lambda: len(self.beats) == first + total and self.idle(), budget)
        return self.beats[first:]


def _transfers(tb, count, max_beats, rng):
    return random_transfers(tb.cfg, rng, count, max_beats, memory_bytes=MEMORY, base=BASE)


def check_bursts(tb, want_ar, want_aw):
    """None, or the first AR or AW burst seen that differs from the expected (address, beats)
    lists."""
    return (first_difference(want_ar, tb.ar_bursts, what="AR burst")
            or first_difference(want_aw, tb.aw_bursts, what="AW burst"))


async def _write_then_read_back(tb, *, count=10):
    """Concurrently: random writes to one half of the RAM, random reads of the other half
    (filled directly beforehand); then the written commands read back. Returns the figures the
    checks need."""
    cfg, rng = tb.cfg, tb.rng
    background = bytearray(rng.randbytes(MEMORY))
    tb.fill(bytes(background))
    await tb.reset()
    max_beats = max(40, 3 * cfg.max_burst)
    half = MEMORY // 2
    writes = random_transfers(cfg, rng, count, max_beats, memory_bytes=half, base=BASE)
    reads = random_transfers(cfg, rng, count, max_beats, memory_bytes=half,
                             base=BASE + half, disjoint=False)
    expected = bytearray(background)
    beats = write_beats(cfg, rng, writes, expected, base=BASE)
    budget = 40 * (len(beats) + 2 * sum(c["length"] for c in reads) // cfg.beat_bytes) + 5000
    got_reads = await tb.transfer(reads, writes, beats, budget=budget)
    back = await tb.transfer(writes, [], [], budget=budget)
    return {"background": background, "expected": bytes(expected), "reads": reads,
            "writes": writes, "beats": beats, "got_reads": got_reads, "back": back}


@cocotb.test()
async def test_random_transfers_written_then_read_back(dut):
    """Random writes (4 KiB crossings, partial strobes) while random reads run; the written
    ranges read back; every byte compared, the RAM itself compared, every AR and AW burst
    compared with `spec.axi.bursts`, `last` on each command's last beat, the counters."""
    tb = AxiBench(dut)
    r = await _write_then_read_back(tb)
    cfg = tb.cfg
    want, last = expected_read(cfg, r["background"], r["reads"], base=BASE)
    assert (msg := first_difference(want, beats_bytes(cfg, r["got_reads"]))) is None, msg
    assert [bool(b["last"]) for b in r["got_reads"]] == last
    want, last = expected_read(cfg, r["expected"], r["writes"], base=BASE)
    assert (msg := first_difference(want, beats_bytes(cfg, r["back"]))) is None, msg
    assert [bool(b["last"]) for b in r["back"]] == last
    assert (msg := first_difference(r["expected"], tb.ram.read(0, MEMORY))) is None, msg
    assert (msg := check_bursts(tb, planned_bursts(cfg, r["reads"] + r["writes"]),
                                planned_bursts(cfg, r["writes"]))) is None, msg
    crossings = sum(1 for c in r["writes"] if c["length"]
                    and c["addr"] >> 12 != (c["addr"] + c["length"] - 1) >> 12)
    assert crossings >= 2, "the stimulus must cross 4 KiB boundaries"
    read_bytes = sum(c["length"] for c in r["reads"] + r["writes"])
    write_bytes = sum(c["length"] for c in r["writes"])
    assert int(dut.read_bytes.value) == read_bytes
    assert int(dut.write_bytes.value) == write_bytes
    assert int(dut.write_responses.value) == len(tb.aw_bursts)
    assert int(dut.read_error.value) == 0 and int(dut.write_error.value) == 0
    dut._log.info("%d AR and %d AW bursts, %d cycles", len(tb.ar_bursts), len(tb.aw_bursts),
                  tb.cycle)


@cocotb.test()
async def test_corrupted_expectation_is_caught(dut):
    """The same run, smaller; then every checker is given one corrupted expectation and must
    name it: a read-back byte, a RAM byte, an AR burst, an AW burst."""
    tb = AxiBench(dut)
    r = await _write_then_read_back(tb, count=4)
    cfg = tb.cfg
    want, _ = expected_read(cfg, r["expected"], r["writes"], base=BASE)
    got = beats_bytes(cfg, r["back"])
    assert first_difference(want, got) is None
    n = len(want) // 2
    bad = bytearray(want)
    bad[n] ^= 0x01
    assert first_difference(bad, got) == f"byte {n:#x}: expected {bad[n]:#04x}, got {want[n]:#04x}"

    memory = tb.ram.read(0, MEMORY)
    at = r["writes"][0]["addr"] - BASE
    bad = bytearray(r["expected"])
    bad[at] ^= 0x80
    assert first_difference(bad, memory) == \
        f"byte {at:#x}: expected {bad[at]:#04x}, got {memory[at]:#04x}"

    want_ar = planned_bursts(cfg, r["reads"] + r["writes"])
    want_aw = planned_bursts(cfg, r["writes"])
    assert check_bursts(tb, want_ar, want_aw) is None
    n = len(want_ar) - 1
    wrong = want_ar[:n] + [(want_ar[n][0], want_ar[n][1] + 1)]
    assert check_bursts(tb, wrong, want_aw) == \
        f"AR burst {n:#x}: expected {wrong[n]!r}, got {want_ar[n]!r}"
    wrong = [(want_aw[0][0] + 4096, want_aw[0][1])] + want_aw[1:]
    assert check_bursts(tb, want_ar, wrong) == \
        f"AW burst 0x0: expected {wrong[0]!r}, got {want_aw[0]!r}"
    assert check_bursts(tb, want_ar, want_aw + [want_aw[-1]]) == \
        f"{len(want_aw) + 1} AW bursts expected, got {len(want_aw)}"


@cocotb.test()
async def test_soft_reset_mid_transfer(dut):
    """A soft reset while both directions have bursts in flight: the streams' producers drop
    their beats, the master finishes every burst on the bus (missing W beats with WSTRB 0),
    both sides reach idle within a bound; no byte holds anything but its old value or the one
    written; then a clean round of writes and reads is exact."""
    tb = AxiBench(dut)
    cfg, rng = tb.cfg, tb.rng
    background = bytearray(rng.randbytes(MEMORY))
    tb.fill(bytes(background))
    await tb.reset()
    half = MEMORY // 2
    writes = random_transfers(cfg, rng, 6, 4 * cfg.max_burst, memory_bytes=half, base=BASE)
    reads = random_transfers(cfg, rng, 6, 4 * cfg.max_burst, memory_bytes=half,
                             base=BASE + half, disjoint=False)
    written = bytearray(background)
    beats = write_beats(cfg, rng, writes, written, partial=0.0, base=BASE)
    tb.read_cmd.put(reads)
    tb.write_cmd.put(writes)
    tb.write_data.put(beats)

    def midway():
        tb.collect_bursts()
        return len(tb.ar_bursts) >= 3 and len(tb.aw_bursts) >= 3

    await tb.run(midway, 20_000)
    assert not tb.idle(), "the transfers ended before the reset"
    await FallingEdge(dut.clk)
    for source in (tb.read_cmd, tb.write_cmd, tb.write_data):
        source.flush()
    dut.soft_reset.value = 1
    await FallingEdge(dut.clk)
    dut.soft_reset.value = 0
    tb.cycle += 2
    delivered = len(tb.beats)
    in_flight = len(tb.aw_bursts), len(tb.ar_bursts)
    await tb.run(tb.idle, 5_000)
    assert len(tb.beats) == delivered, "read beats delivered after the soft reset"
    dut._log.info("soft reset after %d AW and %d AR bursts; %d more AW, %d more AR bursts "
                  "finished after it, %d W beats with WSTRB 0", *in_flight,
                  len(tb.aw_bursts) - in_flight[0], len(tb.ar_bursts) - in_flight[1],
                  tb.w_empty_beats)
    # the stimulus has full strobes: an empty W beat is the filler of an interrupted burst
    assert tb.w_empty_beats > 0, "the soft reset did not fall inside a W burst"
    assert int(dut.read_error.value) == 0 and int(dut.write_bytes.value) == 0
    memory = tb.ram.read(0, MEMORY)
    stray = [a for a in range(MEMORY) if memory[a] not in (background[a], written[a])]
    assert not stray, f"byte {stray[0]:#x} holds neither its old nor its written value"

    # a clean round: the same checks as a fresh start
    tb.ar_bursts.clear()
    tb.aw_bursts.clear()
    new_writes = random_transfers(cfg, rng, 5, 2 * cfg.max_burst + 3, memory_bytes=half,
                                  base=BASE + half)
    expected = bytearray(memory)
    new_beats = write_beats(cfg, rng, new_writes, expected, base=BASE)
    await tb.transfer([], new_writes, new_beats, budget=20_000)
    back = await tb.transfer(new_writes, [], [], budget=20_000)
    want, last = expected_read(cfg, expected, new_writes, base=BASE)
    assert (msg := first_difference(want, beats_bytes(cfg, back))) is None, msg
    assert [bool(b["last"]) for b in back] == last
    want = planned_bursts(cfg, new_writes)
    assert (msg := check_bursts(tb, want, want)) is None, msg
    assert int(dut.write_responses.value) == len(tb.aw_bursts)


@cocotb.test()
async def test_error_responses_are_sticky(dut):
    """The RAM answers SLVERR for one 64-byte range: a read and a write touching it set
    `read_error` and `write_error`, which stay set through clean transfers, every beat still
    arrives and nothing hangs; a soft reset clears both."""
    lo = 0x3000
    tb = AxiBench(dut, faulty=(lo, lo + 64))
    cfg = tb.cfg
    await tb.reset()
    cmd = {"addr": BASE + lo - 256, "length": 512}
    clean = {"addr": BASE + 0x6000, "length": 256}
    beats = write_beats(cfg, tb.rng, [cmd, clean], bytearray(MEMORY), partial=0.0, base=BASE)
    got = await tb.transfer([cmd, clean], [cmd, clean], beats, budget=20_000)
    assert len(got) == (512 + 256) // cfg.beat_bytes
    assert int(dut.read_error.value) == 1 and int(dut.write_error.value) == 1
    await tb.transfer([clean], [clean], beats[-256 // cfg.beat_bytes:], budget=20_000)
    assert int(dut.read_error.value) == 1 and int(dut.write_error.value) == 1
    await FallingEdge(dut.clk)
    dut.soft_reset.value = 1
    await FallingEdge(dut.clk)
    dut.soft_reset.value = 0
    tb.cycle += 2
    await tb.run(tb.idle, 1_000)
    assert int(dut.read_error.value) == 0 and int(dut.write_error.value) == 0
    await tb.transfer([clean], [], [], budget=20_000)
    assert int(dut.read_error.value) == 0
