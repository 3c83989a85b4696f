"""Analytic estimate of a unit's LUT4s, flip-flops and block RAMs from its configuration alone.

    from fpga.estimate import estimate
    estimate("sae", SAEConfig(...), family="ecp5")   # {"lut4": ..., "ff": ..., "bram": ..., ...}

No Verilog is generated and no tool runs: each unit is described by an inventory of what its
hardware (`hw/`) builds for the configuration, and the inventory is priced in FPGA cells.

**Inventory** (`_lif`, `_sae`, `_depthwise`, `_linear_sdsa`, `_column_sdsa`). Three tallies per
unit, walked from the unit's code stage by stage:

- `ff`: register bits: every pipeline register (lanes x its width: inputs, RAM output
  registers, sums, thresholds), the counters and flags of the control, and the FIFO pointers.
  Registers that Yosys provably merges or removes are left out where the structure says so
  (two registers of the same value, e.g. the engine's and the drain's copy of an accumulator
  word; a register of a constant, e.g. the low bits of `x << frac_bits` with a zero bias).
- `lut`: LUT4s of everything but carry chains: saturations (`_sat`: one LUT per result bit and
  the overflow test), multiplexers (`_mux`: a binary tree, `_pmux`: a `Switch` of one-hot
  cases), equality compares (`_eq`), gating of a word to zero (one LUT a bit) and small
  tables (`_rom`).
- `add`: bits of adders, subtractors and counters. On ECP5 they are CCU2C carry cells, not
  LUT4s; on iCE40 each bit is one SB_LUT4 next to its SB_CARRY, so there they count as LUTs.

**Memories** (`Memory`, `map_memory`): every memory of the unit with its width, depth and
kind (RAM or ROM, registered or combinational read, per-bit write enables, a `ram_style`).
`map_memory` reproduces the choice of Yosys's `memory_libmap`: the cheapest of soft logic
(cost 1 per bit of RAM, 1/16 per bit of ROM), LUT RAM (ECP5 TRELLIS_DPR16X4, 16 x 4, cost 4;
not for ROMs, not on iCE40) and block RAM (ECP5 DP16KD 16384x1 .. 1024x18 and PDPW16KD 512x36,
iCE40 SB_RAM40_4K 2048x2 .. 256x16; cost 128 and 64 per block), where a block geometry of
`u` bits by `D` words costs `ceil(ceil(depth / D) * padded_width / u)` blocks (the width padded
to the 9-bit byte of DP16KD for RAMs; address ranges may share a block through its byte
enables) plus 1/2 per bit of the read multiplexer and write decoder between address ranges,
plus 2 per emulated read port and 12 for read-before-write emulation when the read-during-
write behaviour is specified (FIFOs; the units' own RAMs say `no_rw_check`). The chosen
mapping gives the block RAMs exactly (`bram`), the LUT RAM cells (`lutram`, ECP5), and the
memory's own flip-flops (a register for a registered read from LUT RAM or logic; every bit of
a RAM in logic; the written word and address of read-before-write emulation in block RAM; of a
small table's registered output only its distinct columns, `_distinct`) and LUTs (read
multiplexers; ROM contents in logic, `_rom`).

**Calibration.** The tallies count what the code asks for; synthesis shares and simplifies
some of it (LUT packing, ABC). Per unit and family four constants, a scale and an offset for
LUTs and for flip-flops, map the tallies to cells::

    lut4 = lut_scale * (lut + add [iCE40 only]) + lut_offset + harness LUTs
    ff   = ff_scale * ff + ff_offset + memory flip-flops + harness flip-flops
    bram = block RAMs of the memory mapping (no constant)

`CALIBRATION` holds them, fitted (least relative squared error) on Yosys 0.70 synthesis of a
calibration set of configurations that excludes the sweep grid's (`bench/estimate.py` measures
the error on the sweep grid; see the module docstring there for the calibration set).

**What the figures are.** `lut4` is Yosys's LUT4 (ECP5) or SB_LUT4 (iCE40) count, as
`report.json`'s `lut4`; `ff` the flip-flops (TRELLIS_FF, SB_DFF*); `bram` the DP16KD or
SB_RAM40_4K blocks. `report.json` takes ECP5 flip-flops and both families' block RAMs from
nextpnr's packed design rather than from Yosys; on the sweep grid's ECP5 builds the counts are
the same.
`io="harness"` adds `fpga.build`'s pin harness: one flip-flop per port bit and one LUT per
output bit, from the configuration's stream layouts.
"""

import math
from dataclasses import dataclass, field

from spec.core import CoreConfig
from spec.lif import LIF_HAZARD_DISTANCE, LIF_LATENCY, LIFConfig
from spec.ports import payload_width
from spec.sae import SAE_OUT_FIFO_DEPTH, SAEConfig
from spec.sdsa import SDSAConfig

__all__ = ["modelled", "DESIGNS", "FAMILIES", "RESOURCES", "TOLERANCE", "CALIBRATION", "Memory",
           "Placement", "map_memory", "bram_blocks", "terms", "apply_calibration", "estimate",
           "calibrate", "synthesized", "relative_errors", "out_of_tolerance", "estimate_core",
           "CAPACITY"]

DESIGNS = ("lif", "sae", "sdsa")
FAMILIES = ("ecp5", "ice40")
#: The estimated resources that are compared with synthesis.
RESOURCES = ("lut4", "ff", "bram")
#: The aim: every resource within this relative error of synthesis.
TOLERANCE = 0.25

_CONFIG_TYPES = {"lif": LIFConfig, "sae": SAEConfig, "sdsa": SDSAConfig}

#: (design, family) -> (lut_scale, lut_offset, ff_scale, ff_offset) (module docstring), as
#: `python -m bench.estimate --calibrate` fits them (Yosys 0.70).
CALIBRATION = {
    ("lif", "ecp5"): (0.808, 18.4, 0.961, -22.4),
    ("lif", "ice40"): (1.103, -124.0, 0.999, -23.5),
    ("sae", "ecp5"): (0.953, -6.4, 0.978, -1.8),
    ("sae", "ice40"): (0.698, 211.5, 1.013, -20.1),
    ("sdsa", "ecp5"): (0.943, 52.0, 0.939, 4.4),
    ("sdsa", "ice40"): (0.827, -26.1, 0.882, 6.3),
}


# -- widths and cell prices ----------------------------------------------------------------------


def _bits(n):
    """Width of an Amaranth `Signal(range(n))`: an index below `n`."""
    return max(0, (n - 1).bit_length())


def _ubits(n):
    """Width of a `Signal(range(n + 1))`: a count 0 .. n."""
    return _bits(n + 1)


def _mux(n, family):
    """LUT4s per bit of an `n`-way binary multiplexer tree (n - 1 two-way muxes; on ECP5 a
    slice's PFUMX/L6MUX21 do the upper levels, so two inputs per LUT4)."""
    if n <= 1:
        return 0
    return math.ceil(n / 2) if family == "ecp5" else n - 1


def _pmux(n):
    """LUT4s per bit of an `n`-case `Switch` (one-hot case selects): a tree of LUT4s over the
    2n select and data inputs."""
    return math.ceil((2 * n - 1) / 3) if n > 1 else 0


def _eq(bits):
    """LUT4s of an equality compare of two `bits`-bit values (two bit pairs per LUT4, then an
    AND tree)."""
    pairs = math.ceil(bits / 2)
    return pairs + (math.ceil((pairs - 1) / 3) if pairs > 1 else 0)


def _sat(bits):
    """LUT4s of `hw.common.saturate` to `bits`: a multiplexer per result bit (the value, or the
    bound the sign picks) and the overflow test."""
    return bits + 2


def _rom(width, depth):
    """LUT4s of a constant table of `depth` entries read into `width` bits: one LUT4 per 16
    entries and bit, and a multiplexer level above that."""
    if depth <= 1:
        return 0
    per_bit = math.ceil(depth / 16)
    return width * (per_bit + (per_bit - 1 if per_bit > 1 else 0))


def _distinct(width, depth):
    """Distinct columns of a `depth`-entry table `width` bits wide, other than all-0 and all-1:
    the register bits of its registered output that Yosys does not merge or remove."""
    return min(width, (1 << depth) - 2) if depth < 32 else width


@dataclass
class _Tally:
    """Register bits, LUT4s (no carry chains) and adder bits of a structure."""

    ff: float = 0
    lut: float = 0
    add: float = 0
    memories: list = field(default_factory=list)

    def __iadd__(self, other):
        self.ff += other.ff
        self.lut += other.lut
        self.add += other.add
        self.memories += other.memories
        return self


# -- memories ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """One memory of a unit, as Yosys sees it after `memory_dff`.

    `rom`: no write port (initialised contents). `comb_read`: a combinational read port
    (`SyncFIFO`), which block RAM cannot have (otherwise the read is registered: `memory_dff`
    has merged the register, or the read enable of `SyncFIFOBuffered`, into the port; in LUT
    RAM or logic it becomes flip-flops again). `rw_checked`: no `no_rw_check` attribute, so a
    read in the cycle of a write to its address must return the old word (FIFOs). `bit_enables`:
    one write enable per bit. `block`: `ram_style "block"`; `distributed`: `ram_style
    "distributed"` (LUT RAM or logic only). `columns`: for a ROM whose
    contents the configuration gives, its distinct columns that are not constant (what remains
    of it in logic); None: the bound `_distinct`.
    """

    name: str
    width: int
    depth: int
    rom: bool = False
    comb_read: bool = False
    rw_checked: bool = False
    bit_enables: bool = False
    block: bool = False
    columns: int | None = None
    distributed: bool = False


#: Block RAM geometries (bits per word, words) and the cost of one block, per family.
_BLOCK_SHAPES = {
    "ecp5": ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)),
    "ice40": ((2, 2048), (4, 1024), (8, 512), (16, 256)),
}
_BLOCK_COST = {"ecp5": 128, "ice40": 64}
_LUTRAM_COST = 4          # TRELLIS_DPR16X4: 16 words x 4 bits
_EMU_READ_PORT = 2        # a read port of its own (memory_libmap's tie-break point)
_EMU_READ_FIRST = 12      # read-before-write and transparency emulation


def _geometry_cost(mem, unit, words, cost, byte):
    """(address ranges, blocks, cost) of `mem` in blocks of `unit` bits x `words`, with
    write-enable bytes of `byte` bits (each enable group padded to it)."""
    ranges = -(-mem.depth // words)
    if mem.rom:
        padded = mem.width
    elif mem.bit_enables:
        padded = mem.width * byte
    else:
        padded = -(-mem.width // byte) * byte
    blocks = -(-ranges * padded // unit)
    price = cost * blocks + 0.5 * (ranges - 1) * mem.width
    if ranges > 1 and not mem.rom:
        price += 0.5 * ranges * (mem.width if mem.bit_enables else 1)
    return ranges, blocks, price


def _block_options(mem, family):
    """[(cost, blocks, address ranges)] of every block RAM geometry `mem` can use."""
    if mem.comb_read:
        return []
    extra = _EMU_READ_PORT + (_EMU_READ_FIRST if mem.rw_checked and not mem.rom else 0)
    options = []
    for unit, words in _BLOCK_SHAPES[family]:
        if family == "ecp5":
            # DP16KD: bytes of 9 bits from 9-bit words up; PDPW16KD (36) writes 36 bits
            byte = 1 if mem.rom else min(unit, 9)
        else:
            # SB_RAM40_4K: 16-bit words with a mask per bit, narrower words without one
            byte = 1 if (mem.rom or unit == 16) else unit
        ranges, blocks, price = _geometry_cost(mem, unit, words, _BLOCK_COST[family], byte)
        options.append((price + extra, blocks, ranges))
    return options


def bram_blocks(width, depth, family="ecp5", *, rom=False):
    """Block RAMs of a `width` x `depth` memory mapped to block RAM (the cheapest geometry);
    e.g. 256 bits x 64 words on ECP5: 8 (PDPW16KD 512x36, 261 bits in bytes of 9)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
    return min(_block_options(Memory("m", width, depth, rom=rom), family))[1]


@dataclass(frozen=True)
class Placement:
    """Where a memory went and what it costs: `kind` is "bram", "lutram" or "logic"."""

    memory: Memory
    kind: str
    bram: int = 0
    lutram: int = 0
    ff: int = 0
    lut: float = 0


def map_memory(mem, family):
    """The `Placement` of `mem` that Yosys's `memory_libmap` picks (see the module docstring):
    the first cheapest candidate, and soft logic unless a candidate costs strictly less."""
    if mem.depth <= 1 and mem.rom:
        return Placement(mem, "logic")              # a constant
    candidates = []
    if family == "ecp5" and not mem.rom and not mem.block:
        ranges = -(-mem.depth // 16)
        units = ranges * (mem.width if mem.bit_enables else -(-mem.width // 4))
        price = _LUTRAM_COST * units + 0.5 * (ranges - 1) * mem.width + _EMU_READ_PORT
        if ranges > 1:
            price += 0.5 * ranges * (mem.width if mem.bit_enables else 1)
        candidates.append((price, "lutram", units, ranges))
    if not mem.distributed:
        candidates += [(price, "bram", blocks, ranges)
                       for price, blocks, ranges in _block_options(mem, family)]
    best = None if mem.block else int(mem.width * mem.depth / (16 if mem.rom else 1))
    choice = None
    for candidate in candidates:
        if best is None or candidate[0] < best:
            best, choice = candidate[0], candidate
    registered = 0 if mem.comb_read else mem.width
    if choice is None:
        if mem.rom:
            columns = _distinct(mem.width, mem.depth) if mem.columns is None else mem.columns
            return Placement(mem, "logic", ff=0 if mem.comb_read else columns,
                             lut=_rom(columns, mem.depth))
        return Placement(mem, "logic", ff=mem.width * mem.depth + registered,
                         lut=mem.width * _mux(mem.depth, family) + mem.depth)
    _, kind, count, ranges = choice
    decode = ranges if ranges > 1 else 0
    if kind == "lutram":
        return Placement(mem, "lutram", lutram=count, ff=registered,
                         lut=mem.width * _mux(ranges, family) + decode)
    if mem.rw_checked and not mem.rom:
        # read-before-write emulation: the written word and address, and a bypass multiplexer
        return Placement(mem, "bram", bram=count,
                         ff=2 * mem.width + _bits(mem.depth) + 1 + _bits(ranges),
                         lut=mem.width * (_mux(ranges, family) + 1) + decode)
    return Placement(mem, "bram", bram=count, ff=_bits(ranges),
                     lut=mem.width * _mux(ranges, family) + decode)


# -- unit inventories ----------------------------------------------------------------------------


def _fifo(name, width, depth, *, buffered):
    """An Amaranth `SyncFIFOBuffered` (`buffered`: `depth - 1` words behind a registered read
    with enable) or `SyncFIFO` (`depth` words, combinational read): the storage, the write and
    read pointers and the level (and the output-valid flag), and their control (the buffered
    FIFO's about twice the plain one's: the read-ahead into the output register)."""
    words = depth - 1 if buffered else depth
    t = _Tally(ff=2 * _bits(words) + _ubits(words) + buffered,
               lut=(6 * _bits(words) + 12) if buffered else (3 * _bits(words) + 9),
               add=2 * _bits(words) + _ubits(words))
    t.memories.append(Memory(name, width, words, comb_read=not buffered, rw_checked=True))
    return t


def _parameter_columns(cfg):
    """(distinct non-constant columns of the LIF parameter table, those of its thresholds): a
    column is one bit of one lane's threshold or bias over the table's words (`hw.lif`)."""
    lanes, period = cfg.lanes, cfg.param_period
    tables = (cfg.v_th_fixed, cfg.bias_fixed)
    columns = [set(), set()]
    for which, values in enumerate(tables):
        for j in range(lanes):
            for b in range(cfg.v_bits):
                column = tuple((values[(p * lanes + j) % cfg.channels] >> b) & 1
                               for p in range(period))
                if len(set(column)) > 1:
                    columns[which].add(column)
    return len(columns[0] | columns[1]), len(columns[0])


def _lif(cfg, prefix="", *, markers=True):
    """`hw.lif.LIFArray`: per lane the input, charge, leak, saturation and fire-and-reset
    stages (registers of `v_bits` bits: the RAM output, charge, membrane, two leak terms, H and
    the new membrane; two of `in_bits` for the input), thresholds in three registers when they
    come from the parameter memory; the beat, timestep and parameter counters, six valid flags
    and write-back addresses, the markers, the credit counter and the output FIFO (without the
    `first`/`last` bits when nothing reads them: not `markers`)."""
    lanes, vb, xb, frac, shift = cfg.lanes, cfg.v_bits, cfg.in_bits, cfg.frac_bits, cfg.shift
    beats, stateful, decay = cfg.beats_per_step, cfg.timesteps > 1, cfg.decay_input
    params_mem = not cfg.uniform_parameters and cfg.param_period > 1
    vr0 = cfg.v_reset_fixed == 0
    bias0 = not any(cfg.bias_fixed)
    zero_low = frac if all(b % (1 << frac) == 0 for b in cfg.bias_fixed) else 0
    t = _Tally()

    # per lane: registers, LUTs, adder bits
    charge = vb - zero_low
    ff = 2 * xb + charge + 1                        # input twice, charge, spike
    if stateful:
        ff += 2 * vb + (0 if vr0 else vb + 1)       # RAM output, membrane (and v - v_reset)
        ff += vb if decay else vb + 1               # leak term a
        ff += vb + 2 - shift if decay else charge   # leak term b
        ff += 2 * vb                                # H, new membrane
    else:
        ff += (vb + 1 - shift - max(0, zero_low - shift)) if decay else charge
        ff += 0 if decay and vr0 else vb            # H (equal to term b when V is constant 0)
        ff += vb if cfg.expose_membrane else 0
    # saturations: of the charge unless the bias is 0 (then x << frac_bits fits), of H when it
    # sums a membrane; fire and reset: the soft reset's multiplexer (the hard one is a
    # synchronous reset of the register)
    lut = 1 + (0 if bias0 else _sat(vb)) + (_sat(vb) if stateful or not vr0 else 0)
    if cfg.reset == "soft":
        lut += vb
    # adders: charge (unless the bias is 0), v - v_reset, the leak term and H (when there is a
    # membrane to leak), the threshold compare
    membrane = stateful or not vr0
    add = (0 if bias0 else vb + 1) + (vb + 1 if stateful and not vr0 else 0) \
        + (2 * (vb + 2) if membrane else 0) + vb + 1
    t.ff, t.lut, t.add = lanes * ff, lanes * lut, lanes * add

    # control
    period = cfg.param_period if params_mem else 1
    t.ff += _bits(beats) * (1 + 6 * stateful) + _bits(cfg.timesteps) + _bits(period)
    t.ff += _ubits(LIF_LATENCY + 2) + 6 + 19
    t.lut += 3 * _bits(beats) + 2 * _bits(cfg.timesteps) + 2 * _bits(period) + 10
    t.add += _bits(beats) + _bits(cfg.timesteps) + _bits(period) + 2 * _ubits(LIF_LATENCY + 2)
    if stateful and beats < LIF_HAZARD_DISTANCE:
        t.lut += 6 * _eq(_bits(beats)) + 3
    if stateful:
        t.memories.append(Memory(prefix + "vmem", lanes * vb, beats))
    if params_mem:
        # the parameter word registered again, and the thresholds through stages 3 to 5: of
        # each only the distinct columns of the table that are not constant
        both, thresholds = _parameter_columns(cfg)
        t.ff += both + 3 * thresholds
        t.memories.append(Memory(prefix + "pmem", 2 * lanes * vb, period, rom=True,
                                 columns=both))
    out_width = payload_width(cfg.output_fields()) - (0 if markers else 2)
    t += _fifo(prefix + "out_fifo", out_width, LIF_LATENCY + 2, buffered=True)
    return t


def _encoder(cfg):
    """`hw.encoder.SpikeEncoder`: pixel, beat and channel-base counters, the remaining spikes of
    the beat, the event registers; two lowest-set-bit finders and the channel adder."""
    li, bp = cfg.in_lanes, cfg.in_beats_per_pixel
    h, w, lb = _bits(cfg.height), _bits(cfg.width), max(1, _bits(li))
    base = _bits(bp * li)
    channel = max(1, _bits(cfg.in_channels)) if bp > 1 else 0   # else the lane itself
    t = _Tally()
    t.ff = 2 * (h + w) + _bits(bp) + max(1, _bits(bp)) + 2 * base + li + lb + channel + 6
    t.lut = 5 * li + 2 * (h + w + _bits(bp)) + 3 * lb + 2 * channel + 8
    t.add = 2 * li + h + w + _bits(bp) + base + 2 * channel
    return t


def _drain(cfg, *, rotated):
    """`hw.sae_drain.Drain`: the drain's address, group, column and row counters, its three
    pipeline stages (flags, the accumulator word when `rotated`, else shared with the engine's
    copy; the bias word; the output word), the clear counter, the bias add and saturation per
    lane, the credit counter and the output FIFO."""
    lanes, ab, groups = cfg.lanes, cfg.acc_bits, cfg.out_groups
    a = _bits(cfg.acc_words)
    t = _Tally()
    t.ff = 3 * a + _bits(max(2, groups)) + _bits(cfg.out_width) + _bits(cfg.out_height) + 16
    t.ff += (lanes * ab if rotated else 0) + lanes * ab + 2          # d2 accumulators, d3 word
    t.lut = 2 * a + 2 * (_bits(cfg.out_width) + _bits(cfg.out_height)) + 12
    t.add = 2 * a + _bits(max(2, groups)) + _bits(cfg.out_width) + _bits(cfg.out_height) + 8
    if cfg.bias:
        t.ff += _distinct(lanes * ab, groups)
        t.lut += lanes * _sat(ab)
        t.add += lanes * (ab + 1)
        t.memories.append(Memory("engine.drain.bmem", lanes * ab, groups, rom=True))
    t += _fifo("engine.drain.out_fifo", lanes * ab + 2, SAE_OUT_FIFO_DEPTH, buffered=True)
    return t


def _sae(cfg, family):
    """`hw.sae.SAEEngine` (linear, conv) behind the encoder: per lane the weight and accumulator
    registers and the saturating sum (`lanes x (2 acc_bits + w_bits)` bits), the write data
    gated to zero while clearing; the update generator's registers (touched-row and column
    counters, accumulator and weight addresses of the update and of its row, three in-flight
    addresses), its per-axis tables, the address steps and multiplexers, the hazard compares
    of three candidate addresses against the updates in flight; the drain."""
    lanes, ab, wb, groups = cfg.lanes, cfg.acc_bits, cfg.w_bits, cfg.out_groups
    a, wa, kb = _bits(cfg.acc_words), _ubits(cfg.weight_words), _ubits(cfg.kernel)
    g = _bits(max(2, groups))
    t = _encoder(cfg)
    t.ff += lanes * (2 * ab + wb) + 5 * a + 2 * wa + 3 * kb + g + 8
    t.lut += lanes * (_sat(ab) + ab)
    t.add += lanes * (ab + 1)
    entry = kb + a + wa
    for size in (cfg.height, cfg.width):
        t.memories.append(Memory("engine.table", entry, size, rom=True, comb_read=True))
    step = cfg.kernel * cfg.kernel * groups
    t.add += (bin(step).count("1") - 1) * (_bits(cfg.in_channels) + _bits(step + 1))
    t.add += 3 * a + a + 5 * wa + g + 2 * kb
    t.lut += a * (_mux(3, family) + 4) + wa * (_mux(4, family) + 1) + 7 * _eq(a) + 2 * g
    t.lut += 6 * kb + 12
    t.memories.append(Memory("engine.wmem", lanes * wb, cfg.weight_words, rom=True))
    t.memories.append(Memory("engine.amem", lanes * ab, cfg.acc_words))
    t += _drain(cfg, rotated=False)
    return t


def _depthwise(cfg, family):
    """`hw.depthwise.DepthwiseEngine` behind the encoder: `lanes` accumulator banks of one
    accumulator each; per bank the window position, its address (two offsets subtracted from
    the window base), three pipeline addresses, the read and write address multiplexers, the
    weight tap picked from the window's R x C taps (a `Switch` of `lanes` cases), the gated,
    saturating sum; the window's R kernel rows (k+1-way) and R x C taps (k+1-way); the event's
    k x k weights; the drain's un-rotation (a lanes-way multiplexer per lane and bit)."""
    lanes, ab, wb, groups, k = cfg.lanes, cfg.acc_bits, cfg.w_bits, cfg.out_groups, cfg.kernel
    rows_b, cols_b = cfg.depthwise_banks
    a, chan = _bits(cfg.acc_words), _bits(groups * lanes)
    taps, kb = k * k, _ubits(k)
    t = _encoder(cfg)
    # per bank: addresses (offsets; read and write multiplexers), write data gating, sum
    t.ff += lanes * (3 * a + 2 * ab + wb + 3)
    t.lut += lanes * (4 * a + ab + _sat(ab) + wb + 3)
    t.lut += lanes * wb * _pmux(lanes) + lanes * ab * _mux(lanes, family)
    t.add += lanes * (2 * a + ab + 1 + _bits(rows_b) + _bits(cols_b))
    # window taps
    t.lut += rows_b * k * wb * _pmux(k + 1) + rows_b * cols_b * wb * _pmux(k + 1)
    t.add += rows_b * _ubits(k + cfg.stride * rows_b) + cols_b * _ubits(k + cfg.stride * cols_b)
    # event registers and control
    t.ff += taps * wb + 3 * a + 3 * kb + 4 * chan + _bits(max(2, groups)) + 12
    t.ff += 3 * _ubits(k + cfg.stride * cols_b) + 2 * (_bits(rows_b) + _bits(cols_b))
    t.lut += 3 * _eq(chan) + 4 * a + 6 * kb + 16
    t.add += 6 * a + 3 * kb
    entry = kb + _ubits(max(cfg.height, cfg.width, cfg.out_height, cfg.out_width)) + kb
    for size in (cfg.height, cfg.width):
        t.memories.append(Memory("engine.table", entry, size, rom=True, comb_read=True))
    t.memories.append(Memory("engine.wmem", taps * wb, groups * lanes, rom=True, block=True))
    for b in range(lanes):
        t.memories.append(Memory(f"engine.bank{b}", ab, cfg.acc_words))
    t += _drain(cfg, rotated=True)
    return t


#: LUT4s of the linear SDSA's sequencing that do not scale with the configuration (phases,
#: the stream handshakes, the RUN output credits and head-end spacing, the flush).
_SDSA_CONTROL_LUT = 150


def _linear_sdsa(cfg, family):
    """`hw.sdsa.LinearSDSA` (variants 3/4): the Q, V, KV and touched-bit memories; the K word
    FIFO and scanner, the Q fetch (counters, two stages, FIFO, scanner), two event queues with
    their KV-row registers; the engine (operation address, V address, event fields, three
    in-flight addresses, KV and V words, the LOAD sum `lanes x kv_bits`); the RUN sums R and
    the head-end register E (`2 x words_per_head x lanes x a_bits`, E loaded from three sources
    or cleared) and their adders; the output FIFO and the attention neuron (`_lif`)."""
    lanes, n, w, dw, d = cfg.lanes, cfg.tokens, cfg.words_per_token, cfg.words_per_head, \
        cfg.head_dim
    words, rows, kb, ab = n * w, cfg.channels * dw, cfg.kv_bits, cfg.a_bits
    lb = max(1, _bits(lanes))
    k_tag = _bits(n) + _bits(w) + _bits(words) + _bits(rows)
    q_tag = _bits(w) + _bits(rows) + 2
    t = _Tally()
    # LOAD counters, the K scanner, the Q fetch and its scanner
    t.ff += 2 + _bits(cfg.timesteps) + _ubits(w) + 2 * _ubits(words) + _bits(w) + _bits(n) \
        + _bits(dw) + _bits(words) + _bits(rows + d) + _ubits(n)
    t.ff += (lanes + 4 + k_tag) + (lanes + 4 + q_tag)
    t.ff += _ubits(words) + _bits(w) + _bits(dw) + _bits(rows + d) + 3 + 2 * (q_tag + 2) \
        + lanes + 1
    t.lut += 2 * (3 * lanes + 3 * lb) + 4 * _bits(words) + 3 * _bits(w) + 2 * _bits(rows + d)
    t.add += 2 * lanes + 3 * _ubits(words) + 2 * (_bits(w) + _bits(rows + d)) + _bits(n)
    # event queues: the head register and its KV row
    for name, tag in (("kev", k_tag), ("qev", q_tag)):
        t.ff += 1 + lb + 3 + tag + _bits(rows) + 1
        t.add += _bits(rows)
        t += _fifo(name, lb + 3 + tag, SDSAConfig.EVENT_FIFO_DEPTH, buffered=False)
    t += _fifo("kfifo", lanes + 2 + k_tag, w + 1, buffered=False)
    t += _fifo("qfifo", lanes + 2 + q_tag, 4, buffered=False)
    # engine
    t.ff += 12 + _bits(dw) + _bits(rows) + _bits(words) + _bits(w) + lb + 3 * _bits(rows)
    t.ff += _ubits(2 * dw + 8) + _bits(dw) + lb + _bits(w) + 16 + 2
    t.lut += 3 * _eq(_bits(rows)) + 2 * _bits(rows) + _bits(words) + lb + _bits(w) + 24
    # the event fields loaded from either queue, the touched-bit write (address, lane decode)
    t.lut += 2 * (_bits(rows) + _bits(words) + _bits(w) + lb + 8) + _bits(w) + lanes
    # phase sequencing, handshakes, credits and head-end spacing: a fixed amount
    t.lut += _SDSA_CONTROL_LUT
    t.add += _bits(rows) + _bits(words) + _bits(dw) + 2 * _ubits(2 * dw + 8)
    # LOAD datapath: KV word, V bits, the sum
    t.ff += lanes * (2 * kb + 1)
    t.lut += lanes * (kb + 1) + _mux(lanes, family)      # sums; the touched bit of the lane
    t.add += lanes * kb
    # RUN datapath: R, E and the sums
    t.ff += 2 * dw * lanes * ab + 2 * _ubits(dw) + 2
    t.lut += lanes * (ab + kb) + dw * lanes * ab * _mux(3, family)
    t.add += lanes * ab
    t.memories += [Memory("qmem", lanes, words), Memory("vmem", lanes, words),
                   Memory("kvmem", lanes * kb, rows),
                   Memory("tmem", lanes, w, rw_checked=True, bit_enables=True)]
    t += _fifo("yfifo", lanes * ab + 2, 2 * dw + 8, buffered=True)
    t += _lif(cfg.neuron_config(), prefix="neuron.")
    return t


def _column_sdsa(cfg):
    """`hw.sdsa.ColumnSDSA` (variants 1/2): the Q, count and mask memories; LOAD counters, the
    count update (beat bits, the count word shared with the MASK read, the sum `lanes x
    kv_bits`), three in-flight addresses and their hazard compares; the MASK read, its FIFO and
    the talking-heads neuron (`_lif`); the RUN read (Q AND mask) and the output FIFO."""
    lanes, n, w, kb = cfg.lanes, cfg.tokens, cfg.words_per_token, cfg.kv_bits
    words = n * w
    t = _Tally()
    t.ff = 2 + _bits(cfg.timesteps) + 3 * _ubits(words) + 2 * _bits(w) + 4 * _bits(w) + 8
    t.ff += lanes * (2 * kb + 2) + 2 * _ubits(w) + _ubits(4) + _ubits(6) + lanes + 2 + 8
    t.lut = lanes * (kb + 1) + 3 * _eq(_bits(w)) + 2 * _bits(w) + 3 * _bits(words) + 16
    t.add = lanes * kb + 3 * _ubits(words) + 3 * _bits(w) + 2 * _ubits(w) + 8
    t.memories += [Memory("qmem", lanes, words), Memory("cmem", lanes * kb, w),
                   Memory("mmem", lanes, w, rw_checked=True)]
    t += _fifo("mfifo", lanes * kb + 1, 4, buffered=False)
    t += _fifo("ofifo", lanes + 2, 6, buffered=True)
    t += _lif(cfg.neuron_config(), prefix="neuron.", markers=False)
    return t


def _inventory(design, config, family):
    if design == "lif":
        return _lif(config)
    if design == "sae":
        return (_depthwise if config.mode == "depthwise" else _sae)(config, family)
    return _linear_sdsa(config, family) if config.variant >= 3 else _column_sdsa(config)


def _harness_bits(design, config):
    """(input, output) bits of the unit's ports besides clk and rst, as `fpga.build`'s pin
    harness sees them: payloads, valid and ready of every stream."""
    payload_in = payload_width(config.input_fields())
    payload_out = payload_width(config.output_fields())
    if design == "sdsa":
        streams = 2 if config.variant == 2 else 3
        return streams * (payload_in + 1) + 1, payload_out + 1 + streams
    return payload_in + 2, payload_out + 2


# -- the estimate --------------------------------------------------------------------------------


def _check(design, config, family, io):
    """`config` as its configuration class, after one clear error for any bad argument."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r} (known: {', '.join(DESIGNS)})")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
    if io not in ("ooc", "harness"):
        raise ValueError(f"io must be 'ooc' or 'harness', not {io!r}")
    kind = _CONFIG_TYPES[design]
    if isinstance(config, dict):
        config = kind.from_dict(config)
    if not isinstance(config, kind):
        raise TypeError(f"the {design} estimate needs a {kind.__name__} (or its dict), not "
                        f"{type(config).__name__}")
    if not modelled(design, config):
        raise ValueError("the estimate does not model multi-bit engine inputs (in_bits > 1: "
                         "the plane-word input stage and the shifted, signed adds)")
    return config


def modelled(design, config):
    """Whether the estimate covers `design` with `config` (a configuration or its dict): every
    LIF array and attention unit, accumulate engines on spikes only (`in_bits = 1`)."""
    if design != "sae":
        return design in DESIGNS
    bits = config.get("in_bits", 1) if isinstance(config, dict) else config.in_bits
    return bits == 1


def terms(design, config, family="ecp5", *, io="ooc"):
    """The uncalibrated terms of the estimate (arguments as `estimate`): `lut` (the tallied
    LUT4s, memory multiplexers and tables, and on iCE40 the adder bits), `ff` (tallied register
    bits), `memory_ff` (the memories' own flip-flops), `harness_lut` and `harness_ff`, `bram`,
    `lutram`, and `memories` (each memory's name, width, depth and mapping)."""
    config = _check(design, config, family, io)
    tally = _inventory(design, config, family)
    placements = [map_memory(m, family) for m in tally.memories]
    bits_in, bits_out = _harness_bits(design, config) if io == "harness" else (0, 0)
    return {
        "lut": tally.lut + sum(p.lut for p in placements) + (tally.add if family == "ice40"
                                                              else 0),
        "ff": tally.ff, "memory_ff": sum(p.ff for p in placements),
        "harness_lut": bits_out, "harness_ff": bits_in + bits_out,
        "bram": sum(p.bram for p in placements), "lutram": sum(p.lutram for p in placements),
        "memories": [{"name": p.memory.name, "width": p.memory.width, "depth": p.memory.depth,
                      "kind": p.kind, "bram": p.bram, "lutram": p.lutram} for p in placements],
    }


def apply_calibration(t, constants):
    """The estimate ({"lut4", "ff", "bram", "lutram"}) from `terms` `t` and `constants`
    (lut_scale, lut_offset, ff_scale, ff_offset)."""
    lut_scale, lut_offset, ff_scale, ff_offset = constants
    return {
        "lut4": max(0, round(lut_scale * t["lut"] + lut_offset)) + t["harness_lut"],
        "ff": max(0, round(ff_scale * t["ff"] + ff_offset)) + t["memory_ff"] + t["harness_ff"],
        "bram": t["bram"], "lutram": t["lutram"],
    }


def estimate(design, config, family="ecp5", *, io="ooc"):
    """Estimated resources of `design` ("lif", "sae" or "sdsa") with `config` (its
    `LIFConfig`, `SAEConfig` or `SDSAConfig`, or that configuration's dict) on `family`
    ("ecp5" or "ice40"); `io="harness"` includes `fpga.build`'s pin harness.

    Returns {"lut4", "ff", "bram", "lutram" (ECP5 TRELLIS_DPR16X4 cells)}; see the module
    docstring for the model. Raises ValueError for an unknown design, family or io, TypeError
    for a configuration of the wrong kind.
    """
    return apply_calibration(terms(design, config, family, io=io), CALIBRATION[design, family])


#: LUT4s and block RAMs (DP16KD, SB_RAM40_4K) of the devices `fpga.build` targets (the
#: vendors' data sheets; nextpnr reports the same totals).
CAPACITY = {"ecp5-25k": {"lut4": 24288, "bram": 56}, "ecp5-45k": {"lut4": 43848, "bram": 108},
            "ecp5-85k": {"lut4": 83640, "bram": 208}, "ice40-up5k": {"lut4": 5280, "bram": 30}}


def estimate_core(config, family="ecp5"):
    """Block RAMs and LUT-RAM cells of the overlay core's memories (`CoreConfig.memories`),
    mapped as Yosys maps them: {"bram", "lutram", "memories": [...]}.

    Only the memories are modelled: the core's logic has no inventory yet, so there is no
    LUT4 or flip-flop figure (None) rather than a guess.
    """
    if isinstance(config, dict):
        config = CoreConfig.from_dict(config)
    if not isinstance(config, CoreConfig):
        raise TypeError(f"the core estimate needs a CoreConfig (or its dict), not "
                        f"{type(config).__name__}")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
    placements = [(m, map_memory(Memory(m.name, m.width, m.depth,
                                        distributed=m.style == "lutram"), family))
                  for m in config.memories()]
    return {
        "lut4": None, "ff": None,
        "bram": sum(p.bram for _, p in placements),
        "lutram": sum(p.lutram for _, p in placements),
        "memories": [{"name": m.name, "width": m.width, "depth": m.depth, "kind": p.kind,
                      "bram": p.bram, "lutram": p.lutram, "purpose": m.purpose}
                     for m, p in placements],
    }


def calibrate(samples):
    """(lut_scale, lut_offset, ff_scale, ff_offset) fitted to `samples`, a list of (`terms`
    result, synthesized resources) of one design and family: least squares of the relative
    error (each sample weighted by 1 / its synthesized count). Needs at least three samples."""
    import numpy as np

    if len(samples) < 3:
        raise ValueError(f"calibration needs at least 3 samples per design and family, not "
                         f"{len(samples)}")
    constants = []
    for term, resource, fixed in (("lut", "lut4", ("harness_lut",)),
                                  ("ff", "ff", ("memory_ff", "harness_ff"))):
        x = np.array([t[term] for t, _ in samples], dtype=float)
        y = np.array([m[resource] - sum(t[f] for f in fixed) for t, m in samples], dtype=float)
        w = 1.0 / np.array([max(1, m[resource]) for _, m in samples], dtype=float)
        a = np.stack([x, np.ones_like(x)], axis=1) * w[:, None]
        scale, offset = np.linalg.lstsq(a, y * w, rcond=None)[0]
        constants += [round(float(scale), 3), round(float(offset), 1)]
    return tuple(constants)


def synthesized(cells, family):
    """{"lut4", "ff", "bram", "lutram"} of Yosys's cell counts `cells` (`fpga.yosys`) after
    `synth_<family>`: what the estimate predicts."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
    if family == "ecp5":
        return {"lut4": cells.get("LUT4", 0), "ff": cells.get("TRELLIS_FF", 0),
                "bram": cells.get("DP16KD", 0), "lutram": cells.get("TRELLIS_DPR16X4", 0)}
    return {"lut4": cells.get("SB_LUT4", 0),
            "ff": sum(n for name, n in cells.items() if name.startswith("SB_DFF")),
            "bram": cells.get("SB_RAM40_4K", 0), "lutram": 0}


def relative_errors(estimated, measured, resources=RESOURCES):
    """{resource: (estimate - measured) / measured} for each of `resources` both dicts have;
    a measured 0 gives 0.0 if the estimate is 0 too, else None (no relative error exists)."""
    out = {}
    for r in resources:
        if r in estimated and r in measured:
            e, m = estimated[r], measured[r]
            out[r] = (e - m) / m if m else (0.0 if e == 0 else None)
    return out


def out_of_tolerance(estimated, measured, tolerance=TOLERANCE, resources=RESOURCES):
    """[(resource, relative error)] of the resources whose estimate is off by more than
    `tolerance`, or not 0 where synthesis has none (error None); empty: all within."""
    return [(r, e) for r, e in relative_errors(estimated, measured, resources).items()
            if e is None or abs(e) > tolerance]
