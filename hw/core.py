"""The overlay core: one set of engines runs any compiled network from external memory.

A host writes the program's address and `start` over AXI4-Lite (`hw.csr`); the core reads the
program header and, layer after layer, each descriptor over its AXI4 master (`hw.axi`), checks
them as `spec.program.check_header` / `check_descriptor` say, and runs the operation: weights,
per-channel parameters, geometry tables and activations come from memory, every layer's output
goes back to memory. The format is `spec.program` (docs/overlay-format.md); the reference of
what the core computes, byte for byte, is `sim.overlay.run_program`.

Datapath (one of each, reused by every layer):

- an **event source**: an input beat (a record's bits, or its values' magnitudes' bits) gives
  one event per set bit, lowest channel first, one per cycle (two-entry queues before it, for
  the input beats, and after it, for the events);
- a **target generator**: per event, the output pixels it touches (the layer's row and column
  geometry tables, loaded per layer: taps, first output row or column, first kernel index;
  further taps one output back and `stride` kernel rows on) and the tile's output groups, one
  update a cycle;
- an **update pipeline** (four stages after the target generator): read the accumulator word
  and the weight word into registers, add (`w << bit`, negated for a negative value) and
  saturate to the layer's `acc_bits` (multi-bit inputs: exact, in the wide store) into a
  result register, write it back; the results of the two updates ahead of a word's read are
  forwarded to it, so back-to-back updates of one word need no stall;
- a **drain**: per output pixel and group, the accumulator (+ bias) through the LIF (its
  membrane in the membrane memory across timesteps) or the shortcut (+ the residual stream),
  or as it is (depthwise sums), in a lane unit of seven stages; the results are packed into
  the output record's bytes and written; the accumulator is cleared as it is read.

Addresses are counters and running sums (no multiplier, no divider): per-layer tables hold
`row * out_width` (accumulator rows), `group * band pixels`, and per kernel tap its weight
offset `tap * C_in * tile_groups`, all filled by repeated addition when a layer starts.

Loop order per engine layer: tile (a power-of-two number of output groups) -> band of output
rows -> timestep -> weight pass (the part of the tile's weights for a run of taps) -> the band's
input rows, streamed once; then the band's drain. Every accumulator adds its events in the
order (kh, kw, c_in), the integer model's.

Operations: `conv_lif`, `conv_stream`, `depthwise`, `lif` (the engine and the drain), `sdsa`
(per tile of heads, band of token rows and timestep: `K^T V` counts in the accumulator memory
from every token's K and V records, then per token `Q KV`, the attention LIF, the spikes merged
into the output record) and `head` (token sums in the wide store, the LIF, its spikes as events
through the engine to the linear layer). Reads are routed by a queue of the commands in flight
(sequencer, input stream into a FIFO, weight loads into the filler); a loader fills two weight
buffer halves ahead of the engine (see docs/ARCHITECTURE.md, "The overlay core").

Checks: the header and every descriptor as `spec.program` says; the address rule on every
transfer before it is issued (reads inside `[base, activation end)`, writes inside the
activation area and past the image); an AXI error response. Any of them stops the core with
the error code and layer, after the transfers in flight have finished.
"""

from amaranth import Array, Cat, Const, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.axi import AxiConfig
from spec.core import MAX_LAYER_CYCLES, CoreConfig
from spec.csr import ERRORS
from spec.program import (
    DESCRIPTOR_WORDS,
    FIELDS,
    HEADER_FIELDS,
    HEADER_WORDS,
    IN_SIGNED,
    IN_SPIKES,
    MAGIC,
    OPCODES,
    SHAPE_LIMITS,
    VERSION,
    core_fingerprint,
)

from .axi import AXI4Signature, AxiMaster, RegisterSlice
from .common import mul_const, struct_layout
from .csr import AXIL_PORT, AXI4LiteSignature, ControlStatusRegisters

__all__ = ["OverlayCore", "check_config", "IMPLEMENTED_OPS", "MAX_LAYERS"]

#: Operations this version of the core runs; any other opcode is refused (`ERRORS["opcode"]`).
IMPLEMENTED_OPS = ("conv_lif", "conv_stream", "depthwise", "lif", "sdsa", "head")
#: Layers whose cycle counts are kept for `LAYER_CYCLES` (later layers still run).
MAX_LAYERS = MAX_LAYER_CYCLES
#: Lanes the drain's LIF and shortcut compute per cycle (a group takes lanes / DRAIN_LANES).
DRAIN_LANES = 2
#: Beats of the engine's input FIFO: a band's input arrives there while the next weights load.
IN_FIFO = 256


def _log2(n):
    return (n - 1).bit_length()


def _lowest(value):
    """(statement, index, found, rest) of the lowest set bit of `value`: isolate it
    (`v & -v`), then OR the one-hot bits into a binary index; `rest` is `value` without
    that bit (the one-hot masked out: no shifter)."""
    width = len(value)
    onehot = Signal(width)
    onehot_eq = onehot.eq(value & (~value + 1))
    bits = []
    for k in range(max(1, _log2(width))):
        bits.append(Cat(*[onehot[i] for i in range(width) if (i >> k) & 1]).any())
    return onehot_eq, Cat(*bits), value.any(), value & ~onehot


def _sat_bounds(n, width):
    """(hi, lo, statements) of the signed range of `n + 1` bits (`n` < `width`) as
    `width`-bit signed values: `hi = 2^n - 1` from a one-hot decode of `n` (`width` equality
    tests, nothing wider than `width`: Amaranth's `1 << n` is `width + 2^len(n) - 1` bits wide,
    which Verilator recomputed at every use) and `lo = ~hi = -2^n`. (A right shift of the
    constant `2^(width-1) - 1` instead simulates as fast but hides the bounds' thermometer
    shape from synthesis: +793 LUT4 in the core's clamps.)"""
    hi = Signal(signed(width))
    lo = Signal(signed(width))
    onehot = Cat(*(n == i for i in range(width)))
    return hi, lo, [hi.eq(onehot - 1), lo.eq(~hi)]


def _clamp(value, lo, hi):
    """`value` saturated to [lo, hi]. (Two comparators: an OR-tree test of the range's mask
    bits, without carry chains, came out 900 logic cells larger in synth_ecp5.)"""
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


def _above(value, limit):
    """`value > limit` for an unsigned `value` and a constant `limit`: the bits above the
    limit's width OR-ed (LUTs), a compare of the bits below (no carry chain of len(value))."""
    bl = max(1, limit.bit_length())
    if len(value) <= bl:
        return value > limit
    return value[bl:].any() | (value[:bl] > limit)


def _shl_sat(x, f, width):
    """`x << f` (f unsigned) saturated to the signed `width`-bit range: equal to `x << f`
    where that fits, else the range's end on `x`'s side. A later saturation to a range of at
    most `width - 3` bits, after adding a term of at most `width - 3` bits, is then the same as
    on the exact product, at `width` bits instead of len(x) + 2^len(f). Overflow is a bit of
    `x` at or above `width - 1 - f` that differs from the sign (constant compares on `f`)."""
    xw = len(x)
    sign = x[xw - 1]
    ovf = Cat(*[(f >= width - 1 - j) & (x[j] ^ sign) for j in range(xw - 1)
                if width - 1 - j <= (1 << len(f)) - 1]).any()
    top = Const((1 << (width - 1)) - 1, signed(width))
    return Mux(ovf, Mux(sign, ~top, top), (x << f)[:width].as_signed())


def _queue2(m, name, fields, new):
    """A queue of two entries in registers, a signal per field and entry (narrow enough for
    the simulators' native words): `fields` {name: shape}, `new` {name: value} the entry a
    push writes. Returns (head {name: signal}, count, push, pop): the caller drives `push`
    only while the count is below 2 and `pop` (the head is taken) only while it is not 0."""
    push = Signal(name=f"{name}_push")
    pop = Signal(name=f"{name}_pop")
    ent = [{f: Signal(shape, name=f"{name}{i}_{f}") for f, shape in fields.items()}
           for i in range(2)]
    n = Signal(2, name=f"{name}_n")

    def put(i, src):
        return [ent[i][f].eq(src[f]) for f in fields]
    with m.If(push & ~pop):
        m.d.sync += n.eq(n + 1)
        with m.If(n == 0):
            m.d.sync += put(0, new)
        with m.Else():
            m.d.sync += put(1, new)
    with m.Elif(pop & ~push):
        m.d.sync += [n.eq(n - 1)] + put(0, ent[1])
    with m.Elif(pop & push):                          # (one queued: the new one is next)
        with m.If(n == 1):
            m.d.sync += put(0, new)
        with m.Else():
            m.d.sync += put(0, ent[1]) + put(1, new)
    return ent[0], n, push, pop


def check_config(config):
    """Raise TypeError or ValueError for a configuration this RTL cannot build (before any
    hardware object exists)."""
    if not isinstance(config, CoreConfig):
        raise TypeError(f"config must be a CoreConfig, not {config!r}")
    if config.lanes < 8:
        raise ValueError(f"the core packs a group's spikes in whole bytes: lanes must be at "
                         f"least 8, not {config.lanes}")
    if config.max_head_dim > config.axi_data_bits:
        raise ValueError(f"the core takes a head's bits from two AXI beats: max_head_dim "
                         f"must be at most axi_data_bits ({config.axi_data_bits}), not "
                         f"{config.max_head_dim}")
    if config.max_stride > 2:
        raise ValueError(f"the core's geometry steps by shifts: max_stride must be 1 or 2, "
                         f"not {config.max_stride}")


class OverlayCore(wiring.Component):
    """The overlay core (module docstring).

    Parameters
    ----------
    config : spec.core.CoreConfig

    Attributes
    ----------
    s_axil : In(AXI4LiteSignature) -- control and status registers (`spec.csr`)
    m_axi : Out(AXI4Signature) -- memory
    irq : Out(1)
    """

    def __init__(self, config):
        check_config(config)
        self._config = config
        self._axi = AxiConfig.from_core(config)
        self._csr = ControlStatusRegisters.for_core(config)
        super().__init__({
            AXIL_PORT: In(AXI4LiteSignature(addr_bits=8)),
            "m_axi": Out(AXI4Signature.of(self._axi)),
            "irq": Out(1),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.csr = csr = self._csr
        m.submodules.axi = axi = AxiMaster(self._axi)
        wiring.connect(m, wiring.flipped(getattr(self, AXIL_PORT)), getattr(csr, AXIL_PORT))
        wiring.connect(m, axi.m_axi, wiring.flipped(self.m_axi))
        m.d.comb += self.irq.eq(csr.irq)
        ctl = csr.core

        # -- run control: start, abort (soft reset or fault), done ----------------------------
        abort = Signal()
        seq = _Sequencer(cfg, self._axi)
        m.submodules.seq = ResetInserter(abort)(seq)
        wiring.connect(m, seq.rd_cmd, axi.read_cmd)
        # the read data reach the sequencer through a register slice: the routing's choice of
        # `ready` (by the queue head's kind) ends there, not in the AXI reader's buffer and
        # credit; it is cleared with the sequencer
        rd_slice = RegisterSlice(struct_layout(self._axi.read_fields()))
        m.submodules.rd_slice = ResetInserter(abort)(rd_slice)
        wiring.connect(m, axi.read_data, rd_slice.i)
        wiring.connect(m, rd_slice.o, seq.rd_data)
        wiring.connect(m, seq.wr_cmd, axi.write_cmd)
        wiring.connect(m, seq.wr_data, axi.write_data)
        m.d.comb += seq.write_idle.eq(axi.write_idle)

        busy = Signal()
        code = Signal(8)
        err_layer = Signal(16)
        flushing = Signal()            # AXI soft reset until every burst in flight is done
        report_error = Signal()
        cycles = Signal(64)
        events = Signal(64)
        read_base = Signal(32)
        write_base = Signal(32)
        layer_cycles = Signal(32)
        lc_mem = memory.Memory(shape=unsigned(32), depth=MAX_LAYERS, init=[])
        m.submodules.layer_cycles = lc_mem
        lc_wr = lc_mem.write_port()
        # a synchronous read (block RAM): LAYER_CYCLES follows LAYER_SELECT one cycle later,
        # before a host that waits for the select's write response can read it
        lc_rd = lc_mem.read_port()
        m.d.comb += [lc_rd.addr.eq(ctl.layer_select), ctl.layer_cycles.eq(lc_rd.data)]

        # A fault is registered before it resets the sequencer: the reset reaches every
        # register of the sequencer, and combinationally it ended the longest path (a
        # command's address check -> fault -> reset, 45 ns at grade 6). The sequencer runs one
        # more cycle; the command that faulted is not offered in it.
        fault = Signal()
        fault_code = Signal(8)
        fault_layer = Signal(16)
        with m.If(fault):
            m.d.sync += fault.eq(0)
        with m.Elif(axi.read_error | axi.write_error):
            m.d.sync += [fault.eq(busy), fault_code.eq(ERRORS["bus"]), fault_layer.eq(seq.layer)]
        with m.Elif(seq.fault):
            m.d.sync += [fault.eq(busy), fault_code.eq(seq.fault_code),
                         fault_layer.eq(seq.layer)]

        m.d.comb += [
            seq.program.eq(ctl.program),
            abort.eq(ctl.soft_reset | fault | flushing | ~busy),
            axi.soft_reset.eq(ctl.soft_reset | fault),
            ctl.busy.eq(busy | flushing),
            ctl.layer.eq(seq.layer),
            ctl.cycles.eq(cycles), ctl.events.eq(events),
            ctl.bytes_read.eq(axi.read_bytes - read_base),
            ctl.bytes_written.eq(axi.write_bytes - write_base),
            ctl.error_code.eq(code), ctl.error_layer.eq(err_layer),
            seq.start.eq(0),
        ]
        m.d.sync += [ctl.done.eq(0), ctl.error.eq(0)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(seq.event):
                m.d.sync += events.eq(events + 1)
            m.d.sync += layer_cycles.eq(layer_cycles + 1)
        with m.If(seq.layer_done):
            m.d.comb += [lc_wr.addr.eq(seq.layer), lc_wr.data.eq(layer_cycles + 1),
                         lc_wr.en.eq(seq.layer < MAX_LAYERS)]
            m.d.sync += layer_cycles.eq(0)

        with m.If(ctl.start & ~busy & ~flushing):
            m.d.sync += [busy.eq(1), cycles.eq(0), events.eq(0), layer_cycles.eq(0),
                         read_base.eq(axi.read_bytes), write_base.eq(axi.write_bytes)]
            m.d.comb += [abort.eq(0), seq.start.eq(1)]
        with m.Elif(ctl.soft_reset):
            m.d.sync += [busy.eq(0), flushing.eq(1), report_error.eq(0)]
        with m.Elif(fault):
            m.d.sync += [busy.eq(0), flushing.eq(1), report_error.eq(1), code.eq(fault_code),
                         err_layer.eq(fault_layer)]
        with m.Elif(busy & seq.done & axi.write_idle & ~seq.fault & ~axi.read_error
                    & ~axi.write_error):
            m.d.sync += [busy.eq(0), ctl.done.eq(1)]
        with m.Elif(flushing & axi.read_idle & axi.write_idle):
            m.d.sync += [flushing.eq(0), report_error.eq(0), ctl.error.eq(report_error)]
        return m


class _Sequencer(wiring.Component):
    """Fetches and checks the program, and runs its operations (the module docstring)."""

    def __init__(self, config, axi):
        self._config = config
        self._axi = axi
        command = stream.Signature(struct_layout(axi.command_fields()))
        super().__init__({
            "start": In(1),
            "program": In(config.axi_addr_bits),
            "rd_cmd": Out(command),
            "rd_data": In(stream.Signature(struct_layout(axi.read_fields()))),
            "wr_cmd": Out(command),
            "wr_data": Out(stream.Signature(struct_layout(axi.write_fields()))),
            "done": Out(1),
            "fault": Out(1),
            "fault_code": Out(8),
            "layer": Out(16),
            "layer_done": Out(1),
            "event": Out(1),
            "write_idle": In(1),
        })

    def elaborate(self, platform):  # noqa: C901 -- one sequencer, one FSM
        m = Module()
        cfg, axi = self._config, self._axi
        L, LGL = cfg.lanes, _log2(cfg.lanes)
        AB, LGAB, AW = axi.beat_bytes, _log2(axi.beat_bytes), axi.data_bits
        WB = cfg.weight_bytes                      # bytes a weight travels in
        WWORD = L * WB                             # bytes of a weight word
        V = cfg.v_bits
        A = cfg.acc_bits
        has_v = cfg.max_timesteps > 1
        WIDE = max(A, V) if has_v else A           # lane width of the update pipeline
        KB = max(1, _log2(cfg.max_kernel))         # bits of a kernel index
        MAPB = max(1, cfg.max_map.bit_length())
        ACCB = max(1, _log2(cfg.acc_words))
        WGB = max(1, _log2(cfg.weight_words))
        CHB = max(1, cfg.max_channels.bit_length())
        GB = max(1, cfg.tile_groups.bit_length())

        rd, wr = self.rd_data, self.wr_data
        m.d.comb += [wr.valid.eq(0),
                     rd.ready.eq(0), self.layer_done.eq(0), self.event.eq(0)]

        # -- header and descriptor registers: shift registers of words --------------------------
        hdr = Signal(HEADER_WORDS * 32)
        dsc = Signal(DESCRIPTOR_WORDS * 32)
        H = {name: hdr[32 * i:32 * i + 32] for i, name in enumerate(HEADER_FIELDS)}
        D = {name: dsc[32 * i:32 * i + 32] for i, name in enumerate(FIELDS)}
        words = [rd.payload.data[32 * i:32 * i + 32] for i in range(AB // 4)]
        beat_sum = Signal(32)
        m.d.comb += beat_sum.eq(sum(words))
        csum = Signal(32)
        count = Signal(16)                          # beats received of a record

        layer = Signal(16)
        layers = Signal(32)
        daddr = Signal(32)
        m.d.comb += self.layer.eq(layer)

        fault_code = Signal(8)
        m.d.comb += self.fault_code.eq(fault_code)

        def fault(code):
            return [self.fault.eq(1), fault_code.eq(ERRORS[code])]

        # fault raised combinationally for one cycle (the top aborts on it)
        m.d.comb += self.fault.eq(0)

        # -- the memory map a program may touch (from the header) -----------------------------
        base = Signal(33)
        image_end = Signal(33)
        act = Signal(33)
        act_end = Signal(33)

        def aligned(value):
            return value[:LGAB] == 0 if LGAB else Const(1)

        # A command slot per port: an issuer raises `*_req` with the address and length on
        # `rq_*` / `wq_*`; the slot takes it when empty (`*_taken`: one command in three cycles
        # at most), sums its end address in the next cycle and offers it to the AXI master in
        # the one after. The slot checks its command (the address rule, and the alignment
        # where `*_chk_al`): a bad one is never offered and stops the core instead (the
        # header and descriptor reads, `rd_nochk`, are checked by their states). So no path
        # runs from an issuer's choice through the check into the AXI master, or from the AXI
        # master's `ready` back into the issuers.
        def command_slot(port, prefix, req, addr, length, extra):
            """The slot of `port`: takes the command (and the `extra` (register, value) pairs)
            when empty, sums its end address from the registered command a cycle later, and
            holds it until the port takes it. Returns (taken, valid, end valid, end)."""
            taken, valid, endv = (Signal(name=f"{prefix}_{n}") for n in ("taken", "valid", "endv"))
            end = Signal(33, name=f"{prefix}_end")
            cmd = port.payload
            m.d.comb += taken.eq(req & ~valid)
            with m.If(taken):
                m.d.sync += [valid.eq(1), endv.eq(0), cmd.addr.eq(addr), cmd.length.eq(length),
                             *[reg.eq(value) for reg, value in extra]]
            with m.Elif(port.valid & port.ready):
                m.d.sync += [valid.eq(0), endv.eq(0)]
            with m.Elif(valid):
                m.d.sync += [end.eq(cmd.addr + cmd.length), endv.eq(1)]
            return taken, valid, endv, end

        rd_req, rd_nochk, rd_chk_al = (Signal() for _ in range(3))
        wr_req, wr_chk_al = (Signal() for _ in range(2))
        rq_addr, rq_len, wq_addr, wq_len = (Signal(32) for _ in range(4))
        rq_kind = Signal(2)                          # the read's kind (the read queue's)
        rs_nochk, rs_chk_al, rs_bad, ws_chk_al, ws_bad = (Signal() for _ in range(5))
        rs_kind = Signal(2)
        rd_taken, rs_valid, rs_endv, rs_end = command_slot(
            self.rd_cmd, "rs", rd_req, rq_addr, rq_len,
            [(rs_nochk, rd_nochk), (rs_chk_al, rd_chk_al), (rs_kind, rq_kind)])
        wr_taken, ws_valid, ws_endv, ws_end = command_slot(
            self.wr_cmd, "ws", wr_req, wq_addr, wq_len, [(ws_chk_al, wr_chk_al)])
        rcmd, wcmd = self.rd_cmd.payload, self.wr_cmd.payload
        m.d.comb += [
            rs_bad.eq(rs_endv & ~rs_nochk & (~((rcmd.addr >= base) & (rs_end <= act_end)
                                                & (rs_end >= rcmd.addr))
                                              | rs_chk_al & ~aligned(rcmd.addr))),
            ws_bad.eq(ws_endv & (~((wcmd.addr >= act) & (wcmd.addr >= image_end)
                                   & (ws_end <= act_end))
                                 | ws_chk_al & ~aligned(wcmd.addr))),
        ]

        # -- per-layer derived values -----------------------------------------------------------
        op = D["opcode"]
        is_conv_lif = op == OPCODES["conv_lif"]
        is_stream = op == OPCODES["conv_stream"]
        is_dw = op == OPCODES["depthwise"]
        is_lif = op == OPCODES["lif"]
        is_sdsa = op == OPCODES["sdsa"]
        is_head = op == OPCODES["head"]
        is_engine = is_conv_lif | is_stream | is_dw
        k = D["kernel"][:KB + 1]
        s2 = D["stride"] == 2
        pad = D["padding"][:KB + 1]
        tsteps = D["timesteps"][:5]
        c_in = D["in_channels"][:CHB]
        multibit = D["in_kind"] != IN_SPIKES
        wide = Signal()                              # accumulate into the wide store
        m.d.comb += wide.eq(is_engine & multibit)
        lg_tg = Signal(range(GB + 1))                # log2 of tile_groups (a power of two)
        for b in range(GB):
            with m.If(D["tile_groups"][b]):
                m.d.comb += lg_tg.eq(b)
        groups_total = Signal(CHB)
        m.d.comb += groups_total.eq((D["out_channels"][:CHB] + L - 1) >> LGL)
        kk = Signal(8)                               # k * k, a constant table
        with m.Switch(k):
            for kv in range(cfg.max_kernel + 1):
                with m.Case(kv):
                    m.d.comb += kk.eq(kv * kv)
        passes = D["weight_passes"]
        pass_rows = passes == k                      # (k > 1) parts by kernel row
        pass_taps = (passes == kk) & (kk > 1)        # parts of one tap
        pass_all = passes == 1
        tpp = Signal(8)                              # taps per part
        m.d.comb += tpp.eq(Mux(pass_all, kk, Mux(pass_taps, 1, k)))

        def bytes_log(field):                        # 1, 2, 4 -> 0, 1, 2
            return Mux(field == 4, 2, Mux(field == 2, 1, 0))
        lg_in_vb = Signal(2)
        lg_out_vb = Signal(2)
        m.d.comb += [lg_in_vb.eq(bytes_log(D["in_bytes"])),
                     lg_out_vb.eq(bytes_log(D["out_bytes"]))]
        in_signed = D["in_kind"] == IN_SIGNED

        # runtime saturation bounds
        # a layer that saturates at acc_bits has acc_bits <= A (spec.program.check_descriptor)
        NB = max(A, cfg.w_bits + 1) + 1
        # each bound's exponent (its field's bits - 1) registered: the descriptor is loaded
        # long before a bound is used, and the subtraction stays off the saturations' paths
        bounds = {}
        for f, width in (("acc", NB), ("v", V + 1), ("o", 33), ("sum", V + 2)):
            n = Signal(6, name=f"sat_n_{f}")
            m.d.sync += n.eq(D["out_bits" if f == "o" else f"{f}_bits"][:6] - 1)
            hi, lo, eqs = _sat_bounds(n, width)
            m.d.comb += eqs
            bounds[f] = hi, lo
        (acc_hi, acc_lo), (v_hi, v_lo), (o_hi, o_lo), (sum_hi, sum_lo) = bounds.values()
        # the drain's shifted values saturate at SW bits first (_shl_sat): the ranges below
        # are at most 32 bits and the terms added 32 bits
        SW = max(V, 32) + 3

        # -- memories ---------------------------------------------------------------------------
        def mem(name, width, depth, attrs=None):
            mm = memory.Memory(shape=unsigned(width), depth=depth, init=[], attrs=attrs)
            m.submodules[name] = mm
            return mm

        wmem = mem("weights", L * cfg.w_bits, cfg.weight_words)
        w_wr = wmem.write_port()
        w_rd = wmem.read_port()
        amem = mem("accumulators", L * A, cfg.acc_words)
        a_wr = amem.write_port()
        a_rd = amem.read_port(transparent_for=(a_wr,))
        if has_v:
            vmem = mem("membranes", L * V, cfg.acc_words)
            v_wr = vmem.write_port()
            v_rd = vmem.read_port(transparent_for=(v_wr,))
        pmems = [mem(f"params{i}", L * 32, cfg.tile_groups) for i in range(3)]
        p_wr = [p.write_port() for p in pmems]
        p_rd = [p.read_port(domain="comb") for p in pmems]
        # The geometry tables (block RAM) are read only while none of their entries is
        # written: a read port is disabled in its table's write cycles. So Yosys is told
        # (`no_rw_check`) to leave out its read-during-write logic, which was on a long path.
        rt_mem = mem("row_table", 24, cfg.max_map, {"no_rw_check": 1})
        ct_mem = mem("col_table", 24, cfg.max_map, {"no_rw_check": 1})
        rt_wr, ct_wr = rt_mem.write_port(), ct_mem.write_port()
        rt_rd, ct_rd = rt_mem.read_port(), ct_mem.read_port()
        m.d.comb += [rt_rd.en.eq(~rt_wr.en), ct_rd.en.eq(~ct_wr.en)]
        ro_mem = mem("row_offsets", ACCB + 1, cfg.max_map)
        ro_wr, ro_rd = ro_mem.write_port(), ro_mem.read_port(domain="comb")
        tap_idx_bits = 2 * KB
        tb_mem = mem("tap_bases", WGB + 1 + 8, 1 << tap_idx_bits)   # weight offset, part
        tb_wr, tb_rd = tb_mem.write_port(), tb_mem.read_port(domain="comb")
        gbase = Array(Signal(ACCB + 1, name=f"gbase{g}") for g in range(cfg.tile_groups))

        for port in (w_wr, rt_wr, ct_wr, ro_wr, tb_wr, *p_wr):
            m.d.comb += port.en.eq(0)
        # The accumulator and membrane memories' write ports: every state names an address and
        # a source, and one multiplexer per port picks the data (not one per state).
        SRC_UPD, SRC_ZERO, SRC_NEW = range(3)
        a_we, a_waddr, a_src = Signal(), Signal(ACCB + 1), Signal(2)
        v_we, v_waddr, v_src = Signal(), Signal(ACCB + 1), Signal(2)

        def acc_write(addr, src):
            m.d.comb += [a_we.eq(1), a_waddr.eq(addr), a_src.eq(src)]

        def v_write(addr, src):
            m.d.comb += [v_we.eq(1), v_waddr.eq(addr), v_src.eq(src)]

        # -- loop registers ---------------------------------------------------------------------
        tile = Signal(CHB)
        g0 = Signal(CHB)                             # first group of the tile
        gt = Signal(GB + 1)                          # groups in this tile
        band = Signal(MAPB + 1)
        r0 = Signal(MAPB + 1)
        r1 = Signal(MAPB + 1)
        band_rows = D["band_rows"][:MAPB + 1]
        ow = D["out_width"][:MAPB + 1]
        ts = Signal(5)                               # timestep
        part = Signal(8)
        cnt = Signal(max(cfg.acc_words, 2 * cfg.max_map, cfg.max_tokens, cfg.tile_groups,
                         cfg.max_channels).bit_length() + 1)   # a loop counter
        acc32 = Signal(33)                           # a running sum
        acc_add = Signal(33)                         # its addend this cycle: one adder

        def acc_plus(value):
            m.d.comb += acc_add.eq(value)
            return (acc32 + acc_add)[:33]

        band_pixels = Signal(ACCB + 2)
        rowbytes = Signal(32)
        in_off = Signal(32)                          # of the band's first input row
        in_len = Signal(32)
        t_in = Signal(32)                            # timestep offsets
        t_out = Signal(32)
        t_res = Signal(32)
        p_addr = Signal(33)
        out_off = Signal(32)                         # of the band's first output pixel
        res_off = Signal(32)
        next_out_off = Signal(32)
        next_res_off = Signal(32)

        def lanes_below(first, limit):
            """The L lanes' bits `first + i < limit`: one subtraction, then compares of its
            low bits with constants."""
            left = Signal(signed(max(len(first), len(limit)) + 2))
            m.d.comb += left.eq(limit - first)
            big = ~left[-1] & left[LGL + 1:].any()
            return Cat(*[big | ~left[-1] & (left[:LGL + 1] > i) for i in range(L)])

        def sub_clip(a, b):                          # max(a - b, 0), on unsigned values
            return Mux(a > b, a - b, 0)

        # -- beat assembler: words of L x 8, 16 or 32 bits from beats ---------------------------
        asm = Signal(L * 32)
        asm_n = Signal(8)                            # beats collected
        asm_shift = Signal()                         # take the beat into the assembler
        with m.If(asm_shift):
            m.d.sync += asm.eq(Cat(asm[AW:], rd.payload.data))

        def asm_word(lg_bytes):
            """The assembled word of L values of 2^lg_bytes bytes, as L signed 32-bit lanes
            (sign-extended when `sext`)."""
            return {lb: asm[L * 32 - L * 8 * (1 << lb):] for lb in range(3)}[lg_bytes]

        def lanes_of(word, lb, sext=True):
            bits = 8 << lb
            return [word[bits * i:bits * (i + 1)].as_signed() if sext
                    else word[bits * i:bits * (i + 1)] for i in range(L)]

        # -- read routing: every read command's beats go to whoever issued it ------------------
        # A queue holds, per read command in flight, its kind and beats: the sequencer's own
        # reads (KIND_FSM), the engine's input stream (KIND_S, into the input FIFO) and weight
        # loads (KIND_W, into the weight filler). Beats arrive in command order, so the head of
        # the queue says where the next beat goes.
        KIND_FSM, KIND_S, KIND_W = 0, 1, 2
        QD = 4
        q_kind = Array(Signal(2, name=f"q_kind{i}") for i in range(QD))
        q_beats = Array(Signal(24, name=f"q_beats{i}") for i in range(QD))
        q_head = Signal(range(QD))
        q_tail = Signal(range(QD))
        q_count = Signal(range(QD + 1))
        q_full = Signal()
        m.d.comb += q_full.eq(q_count == QD)
        fsm_cmd = Signal()                            # the sequencer drives rd_cmd this cycle
        frd_ready = Signal()
        frd_valid = Signal()
        head_kind = q_kind[q_head]
        head_beats = q_beats[q_head]
        any_q = q_count != 0
        m.d.comb += frd_valid.eq(rd.valid & any_q & (head_kind == KIND_FSM))
        m.submodules.in_fifo = in_fifo = fifo.SyncFIFOBuffered(width=AW, depth=IN_FIFO)
        m.d.comb += [in_fifo.w_data.eq(rd.payload.data),
                     in_fifo.w_en.eq(rd.valid & any_q & (head_kind == KIND_S))]
        with m.If(any_q):
            with m.Switch(head_kind):
                with m.Case(KIND_FSM):
                    m.d.comb += rd.ready.eq(frd_ready)
                with m.Case(KIND_S):
                    m.d.comb += rd.ready.eq(in_fifo.w_rdy)
                with m.Case(KIND_W):
                    m.d.comb += rd.ready.eq(1)
        beat_taken = Signal()
        m.d.comb += beat_taken.eq(rd.valid & rd.ready)
        push = Signal()
        push_beats = Signal(24)
        m.d.comb += [push.eq(self.rd_cmd.valid & self.rd_cmd.ready
                             & (self.rd_cmd.payload.length >> LGAB != 0)),
                     push_beats.eq(self.rd_cmd.payload.length >> LGAB)]
        pop = Signal()
        head_taken = Signal(24)                       # beats of the head's command taken
        m.d.comb += pop.eq(beat_taken & (head_taken + 1 == head_beats))
        with m.If(push):
            m.d.sync += [q_kind[q_tail].eq(rs_kind), q_beats[q_tail].eq(push_beats),
                         q_tail.eq(Mux(q_tail == QD - 1, 0, q_tail + 1))]
        # (a count beside the queue: an entry is written only when its command is pushed)
        with m.If(beat_taken):
            with m.If(pop):
                m.d.sync += [q_head.eq(Mux(q_head == QD - 1, 0, q_head + 1)), head_taken.eq(0)]
            with m.Else():
                m.d.sync += head_taken.eq(head_taken + 1)
        m.d.sync += q_count.eq(q_count + push - pop)

        # -- weight buffer slots, the loader and the filler --------------------------------------
        # A layer's weight loads (one per tile, or one per tile, band, timestep and part when
        # its weights come in parts) go into slot 0 and 1 in turn when the program says two
        # buffers fit (`weight_buffers` 2), else all into slot 0; the engine takes them in the
        # same order. The next load runs while the engine works on the current one.
        HALF = cfg.weight_words // 2
        dbl = D["weight_buffers"] == 2
        slot_state = Array(Signal(2, name=f"slot{i}") for i in range(2))   # 0 free 1 fill 2 full
        cp_slot = Signal()                           # the slot the engine uses
        cp_base = Signal(WGB + 1)
        m.d.comb += cp_base.eq(Mux(cp_slot, HALF, 0))
        slot_full = Signal()
        m.d.comb += slot_full.eq(slot_state[cp_slot] == 2)
        release = Signal()                           # the engine is done with its slot
        drain_on = Signal()                          # the drain's issuers are at work
        with m.If(release):
            m.d.sync += [slot_state[cp_slot].eq(0), cp_slot.eq(cp_slot ^ dbl)]
        fl_busy = Signal()
        fl_slot = Signal()
        fl_gt = Signal(GB + 1)
        fl_g, fl_c, fl_t = Signal(GB + 1), Signal(CHB + 1), Signal(8)
        fl_cbase, fl_tbase = Signal(WGB + 2), Signal(WGB + 2)
        fl_asm = Signal(WWORD * 8)
        fl_n = Signal(8)
        w_beat = Signal()
        m.d.comb += w_beat.eq(beat_taken & any_q & (head_kind == KIND_W))
        fl_word = Cat(fl_asm[AW:], rd.payload.data) if WWORD * 8 > AW else rd.payload.data
        with m.If(w_beat):
            m.d.sync += [fl_asm.eq(fl_word), fl_n.eq(fl_n + 1)]
            with m.If(fl_n + 1 == WWORD // AB):
                m.d.sync += fl_n.eq(0)
                m.d.comb += [w_wr.addr.eq(Mux(fl_slot, HALF, 0) + fl_tbase + fl_cbase + fl_g),
                             w_wr.data.eq(Cat(*[fl_word[8 * WB * i:8 * WB * i + cfg.w_bits]
                                                for i in range(L)])),
                             w_wr.en.eq(1)]
                with m.If(fl_g + 1 < fl_gt):
                    m.d.sync += fl_g.eq(fl_g + 1)
                with m.Else():
                    m.d.sync += fl_g.eq(0)
                    with m.If(~is_dw & (fl_c + 1 < c_in)):
                        m.d.sync += [fl_c.eq(fl_c + 1), fl_cbase.eq(fl_cbase + (1 << lg_tg))]
                    with m.Else():
                        m.d.sync += [fl_c.eq(0), fl_cbase.eq(0), fl_t.eq(fl_t + 1),
                                     fl_tbase.eq(fl_tbase + (Mux(is_dw, 1, c_in) << lg_tg))]
            with m.If(pop):
                m.d.sync += [fl_busy.eq(0), slot_state[fl_slot].eq(2)]

        ld_start = Signal()
        ld_tile = Signal(CHB)
        ld_g0 = Signal(CHB)
        ld_gt = Signal(GB + 1)
        ld_wtile = Signal(33)
        ld_waddr = Signal(33)
        ld_acc = Signal(32)
        ld_cg = Signal(32)
        ld_cnt = Signal(16)
        ld_pbytes = Signal(32)
        ld_band = Signal(MAPB + 1)
        ld_r0 = Signal(MAPB + 1)
        ld_t = Signal(5)
        ld_part = Signal(8)
        ld_slot = Signal()
        ld_issue = Signal()
        # a load is issued while the engine streams (its beats then follow the input's) or
        # while the engine waits for it, never just before an input stream, which would then
        # wait behind the whole load
        ld_allow = Signal()
        with m.FSM(name="loader"):
            with m.State("IDLE"):
                with m.If(ld_start):
                    m.d.sync += [ld_tile.eq(0), ld_g0.eq(0), ld_wtile.eq(D["weights_addr"]),
                                 ld_slot.eq(0)]
                    m.next = "TILE"
            with m.State("TILE"):
                with m.If((ld_tile == D["tiles"]) | (ld_g0 >= groups_total)):
                    m.next = "IDLE"
                with m.Else():
                    left = groups_total - ld_g0
                    m.d.sync += [ld_gt.eq(Mux(left < D["tile_groups"], left, D["tile_groups"])),
                                 ld_cnt.eq(0), ld_acc.eq(0)]
                    m.next = "CG"
            with m.State("CG"):                       # C_in x groups (depthwise: groups)
                with m.If(ld_cnt == ld_gt):
                    m.d.sync += [ld_cg.eq(ld_acc), ld_cnt.eq(0), ld_acc.eq(0)]
                    m.next = "PW"
                with m.Else():
                    m.d.sync += [ld_acc.eq(ld_acc + Mux(is_dw, 1, c_in)), ld_cnt.eq(ld_cnt + 1)]
            with m.State("PW"):                       # x taps per part: words of a part
                with m.If(ld_cnt == tpp):
                    m.d.sync += [ld_pbytes.eq(ld_acc << _log2(WWORD)), ld_band.eq(0),
                                 ld_r0.eq(0), ld_t.eq(0), ld_part.eq(0),
                                 ld_waddr.eq(ld_wtile)]
                    m.next = "ISSUE"
                with m.Else():
                    m.d.sync += [ld_acc.eq(ld_acc + ld_cg), ld_cnt.eq(ld_cnt + 1)]
            with m.State("ISSUE"):
                m.d.comb += ld_issue.eq((slot_state[ld_slot] == 0) & ~fl_busy & ~fsm_cmd
                                        & ~q_full & ld_allow & ~drain_on)
                with m.If(ld_issue & rd_taken):
                    m.d.sync += [slot_state[ld_slot].eq(1), fl_busy.eq(1), fl_slot.eq(ld_slot),
                                 fl_gt.eq(ld_gt), fl_g.eq(0), fl_c.eq(0), fl_t.eq(0),
                                 fl_cbase.eq(0), fl_tbase.eq(0), fl_n.eq(0),
                                 ld_slot.eq(ld_slot ^ dbl)]
                    next_tile = [ld_tile.eq(ld_tile + 1), ld_g0.eq(ld_g0 + D["tile_groups"]),
                                 ld_wtile.eq(ld_wtile + D["weights_tile_bytes"])]
                    with m.If(pass_all):
                        m.d.sync += next_tile
                        m.next = "TILE"
                    with m.Elif(ld_part + 1 != passes):
                        m.d.sync += [ld_part.eq(ld_part + 1), ld_waddr.eq(ld_waddr + ld_pbytes)]
                    with m.Else():
                        m.d.sync += [ld_part.eq(0), ld_waddr.eq(ld_wtile)]
                        with m.If(ld_t + 1 != tsteps):
                            m.d.sync += ld_t.eq(ld_t + 1)
                        with m.Else():
                            m.d.sync += [ld_t.eq(0), ld_band.eq(ld_band + 1),
                                         ld_r0.eq(ld_r0 + band_rows)]
                            with m.If((ld_band + 1 == D["bands"])
                                      | (ld_r0 + band_rows >= D["out_height"])):
                                m.d.sync += next_tile
                                m.next = "TILE"
        with m.If(ld_issue):
            m.d.comb += [rd_req.eq(1), rd_chk_al.eq(1), rq_addr.eq(ld_waddr),
                         rq_len.eq(ld_pbytes), rq_kind.eq(KIND_W)]

        # -- event source -----------------------------------------------------------------------
        src_active = Signal()                         # consuming the band's input beats
        beats_left = Signal(32)
        pix_row = Signal(MAPB + 1)
        pix_col = Signal(MAPB + 1)
        beat_j = Signal(16)                           # beat index within the pixel record
        bpp = Signal(16)                              # beats per input pixel
        m.d.comb += bpp.eq(D["in_pixel_bytes"][:16 + LGAB] >> LGAB)

        have = Signal()                               # a beat is held
        hold = Signal(AW)                             # spikes, or the values' beat
        h_row = Signal(MAPB + 1)                      # the held beat's pixel
        h_col = Signal(MAPB + 1)
        h_unit = Signal()                             # ... or a unit table entry (the head)
        h_rt = Signal(24)                             # the tables' entries of that pixel
        h_ct = Signal(24)
        h_cbase = Signal(CHB + 1)
        nz = Signal(AB)                               # values: slots not yet expanded
        mag = Signal(33)
        mag_neg = Signal()
        mag_c = Signal(CHB + 1)
        mag_on = Signal()

        # event handshake to the target generator
        ev_valid = Signal()
        ev_ready = Signal()
        ev_c = Signal(CHB + 1)
        ev_b = Signal(6)
        ev_neg = Signal()

        vmode = Signal()                              # events from values' magnitudes
        m.d.comb += vmode.eq(multibit & is_engine)
        oh_eq, spike_idx, spike_any, hold_rest = _lowest(hold)
        m.d.comb += oh_eq
        # A depthwise event is a group of lanes with spikes (a lane mask: every lane of the
        # group adds its own channel's weight at the same pixel), the group of the beat's
        # lowest spike; other engines take one spike an event.
        ev_mask = Signal(L)
        sp_grp = spike_idx >> LGL
        grp_word = hold.word_select(sp_grp[:_log2(AW // L)], L) if AW > L else hold[:L]
        slot_vals = []
        for lb in range(3):
            per = AB >> lb
            vals = []
            for s in range(per):
                raw = hold[(8 << lb) * s:(8 << lb) * (s + 1)]
                vals.append(Mux(in_signed, raw.as_signed(), raw.as_unsigned()))
            slot_vals.append(vals)
        nz_oh_eq, nz_idx, nz_any, nz_rest = _lowest(nz)
        m.d.comb += nz_oh_eq
        slot_val = Signal(signed(34))
        with m.Switch(lg_in_vb):
            for lb in range(3):
                with m.Case(lb):
                    with m.Switch(nz_idx):
                        for s, v in enumerate(slot_vals[lb]):
                            with m.Case(s):
                                m.d.comb += slot_val.eq(v)
        mag_eq, mag_idx, mag_any, mag_rest = _lowest(mag)
        m.d.comb += mag_eq

        # an event is offered from the held beat
        with m.If(have & ~vmode):
            m.d.comb += [ev_valid.eq(spike_any), ev_c.eq(h_cbase + spike_idx), ev_b.eq(0),
                         ev_neg.eq(0), ev_mask.eq(grp_word)]
        with m.If(have & vmode & mag_on):
            m.d.comb += [ev_valid.eq(1), ev_c.eq(mag_c), ev_b.eq(mag_idx), ev_neg.eq(mag_neg)]
        # values: the next non-zero slot's magnitude, sign and channel into the event registers
        load_slot = [mag.eq(Mux(slot_val < 0, -slot_val, slot_val)), mag_neg.eq(slot_val < 0),
                     mag_c.eq(h_cbase + nz_idx), mag_on.eq(1), nz.eq(nz_rest)]
        ev_take = Signal()
        m.d.comb += ev_take.eq(ev_valid & ev_ready)
        with m.If(ev_take):
            m.d.comb += self.event.eq(1)
            with m.If(vmode):
                m.d.sync += mag.eq(mag_rest)
                with m.If(mag_rest == 0):
                    m.d.sync += mag_on.eq(0)
                    # the next non-zero slot's magnitude follows without a gap
                    with m.If(nz_any):
                        m.d.sync += load_slot
            with m.Elif(is_dw):
                if AW > L:
                    m.d.sync += hold.word_select(sp_grp[:_log2(AW // L)], L).eq(0)
                else:
                    m.d.sync += hold.eq(0)
            with m.Else():
                m.d.sync += hold.eq(hold_rest)
        # values: load the next non-zero slot's magnitude
        with m.If(have & vmode & ~mag_on & nz_any):
            m.d.sync += load_slot
        beat_spent = Signal()
        # (values: the beat is spent in the cycle its last event goes)
        m.d.comb += beat_spent.eq(Mux(vmode, (~mag_on | ev_take & (mag_rest == 0)) & ~nz_any,
                                      ~spike_any))
        with m.If(have & beat_spent):
            m.d.sync += have.eq(0)
        # The beat queue: two input beats (with their pixel and first channel) between the
        # input FIFO and the held beat. The FIFO is read while fewer than two are queued (a
        # registered count: no path from the held beat's events into the FIFO); the held
        # beat takes the queue's head when it is spent.
        fin = in_fifo.r_data
        bqh, bq_n, fetch, take_beat = _queue2(   # fetch: a FIFO beat in; take_beat: the head out
            m, "bq", {"data": AW, "row": MAPB + 1, "col": MAPB + 1, "cbase": CHB + 1},
            {"data": fin, "row": pix_row, "col": pix_col,
             "cbase": Mux(vmode, (beat_j << LGAB) >> lg_in_vb, beat_j << _log2(AW))})
        m.d.comb += [in_fifo.r_en.eq(src_active & (beats_left != 0) & (bq_n != 2)),
                     fetch.eq(in_fifo.r_en & in_fifo.r_rdy),
                     take_beat.eq((~have | beat_spent) & (bq_n != 0))]
        # the tables are read as a beat is taken and then hold the beat's pixel's entries
        m.d.comb += [rt_rd.addr.eq(Mux(take_beat, bqh["row"], h_row)),
                     ct_rd.addr.eq(Mux(take_beat, bqh["col"], h_col)),
                     h_rt.eq(Mux(h_unit, 1, rt_rd.data)), h_ct.eq(Mux(h_unit, 1, ct_rd.data))]
        with m.If(take_beat):
            nzs = Signal(AB)
            with m.Switch(lg_in_vb):
                for lb in range(3):
                    with m.Case(lb):
                        m.d.comb += nzs.eq(Cat(*[
                            bqh["data"][(8 << lb) * s:(8 << lb) * (s + 1)].any()
                            for s in range(AB >> lb)]))
            m.d.sync += [have.eq(1), hold.eq(bqh["data"]), nz.eq(nzs), mag_on.eq(0),
                         h_row.eq(bqh["row"]), h_col.eq(bqh["col"]), h_unit.eq(0),
                         h_cbase.eq(bqh["cbase"])]
        with m.If(fetch):
            m.d.sync += beats_left.eq(beats_left - 1)
            with m.If(beat_j + 1 == bpp):
                m.d.sync += beat_j.eq(0)
                with m.If(pix_col + 1 == D["in_width"][:MAPB + 1]):
                    m.d.sync += [pix_col.eq(0), pix_row.eq(pix_row + 1)]
                with m.Else():
                    m.d.sync += pix_col.eq(pix_col + 1)
            with m.Else():
                m.d.sync += beat_j.eq(beat_j + 1)

        # -- target generator -------------------------------------------------------------------
        tg_busy = Signal()
        tg_c = Signal(CHB + 1)
        tg_b = Signal(6)
        tg_neg = Signal()
        tg_i, tg_j = Signal(4), Signal(4)
        tg_ntr, tg_ntc = Signal(4), Signal(4)
        tg_orow, tg_ocol = Signal(signed(MAPB + 3)), Signal(signed(MAPB + 3))
        tg_krow, tg_kcol = Signal(KB + 2), Signal(KB + 2)
        tg_ocol0, tg_kcol0 = Signal(signed(MAPB + 3)), Signal(KB + 2)
        tg_g = Signal(GB + 1)
        tg_dwg = Signal(CHB + 1)                      # depthwise: the event's group in the tile
        tg_mask = Signal(L)                           # depthwise: the event's lanes
        part_cur = Signal(8)

        in_band = (tg_orow >= r0) & (tg_orow < r1)
        m.d.comb += tb_rd.addr.eq(Cat(tg_kcol[:KB], tg_krow[:KB]))
        tb_off = tb_rd.data[:WGB + 1]
        tb_part = tb_rd.data[WGB + 1:]
        m.d.comb += ro_rd.addr.eq((tg_orow - r0)[:MAPB])
        tap_ok = in_band & (tb_part == part_cur)
        last_g = Mux(is_dw, 1, tg_g + 1 == gt)
        last_j = tg_j + 1 == tg_ntc
        last_i = tg_i + 1 == tg_ntr
        finishing = Signal()
        emit = Signal()
        m.d.comb += [emit.eq(tg_busy & tap_ok),
                     finishing.eq(tg_busy & (~in_band | ~tap_ok | last_g) & last_j & last_i
                                  | tg_busy & ~in_band & last_i)]
        with m.If(tg_busy):
            with m.If(~in_band):                      # the whole row of taps is outside the band
                with m.If(last_i):
                    m.d.sync += tg_busy.eq(0)
                with m.Else():
                    m.d.sync += [tg_i.eq(tg_i + 1), tg_orow.eq(tg_orow - 1),
                                 tg_krow.eq(tg_krow + Mux(s2, 2, 1)), tg_j.eq(0),
                                 tg_ocol.eq(tg_ocol0), tg_kcol.eq(tg_kcol0), tg_g.eq(0)]
            with m.Elif(tap_ok & ~last_g):
                m.d.sync += tg_g.eq(tg_g + 1)
            with m.Else():
                m.d.sync += tg_g.eq(0)
                with m.If(~last_j):
                    m.d.sync += [tg_j.eq(tg_j + 1), tg_ocol.eq(tg_ocol - 1),
                                 tg_kcol.eq(tg_kcol + Mux(s2, 2, 1))]
                with m.Elif(~last_i):
                    m.d.sync += [tg_i.eq(tg_i + 1), tg_orow.eq(tg_orow - 1),
                                 tg_krow.eq(tg_krow + Mux(s2, 2, 1)), tg_j.eq(0),
                                 tg_ocol.eq(tg_ocol0), tg_kcol.eq(tg_kcol0)]
                with m.Else():
                    m.d.sync += tg_busy.eq(0)
        # The event queue: two entries between the event source and the target generator,
        # each an event with its pixel's table entries. The source offers an event while
        # fewer than two are queued (a registered count: no path from the generator's state
        # into the source's beat handling and the input FIFO); the generator takes the head
        # when it is idle or finishing. One event a cycle passes through it.
        evh, evq_n, evq_push, evq_pop = _queue2(          # evh: the queue's head
            m, "evq", {"c": CHB + 1, "b": 6, "neg": 1, "mask": L, "rt": 24, "ct": 24},
            {"c": ev_c, "b": ev_b, "neg": ev_neg, "mask": ev_mask, "rt": h_rt, "ct": h_ct})
        m.d.comb += [ev_ready.eq(evq_n != 2), evq_push.eq(ev_take),
                     evq_pop.eq((evq_n != 0) & (~tg_busy | finishing))]
        # weights in parts by kernel row: an event's taps in this pass are one row of them, the
        # row whose kernel row is the pass (row i has kernel row krow0 + i * stride); the
        # generator starts at it and stops after it (an event without it is skipped)
        by_rows = Signal()
        m.d.comb += by_rows.eq(pass_rows & ~pass_all)
        p_diff = Signal(signed(6))
        m.d.comb += p_diff.eq(part_cur[:4] - evh["rt"][20:24])
        p_row = Signal(4)
        m.d.comb += p_row.eq(Mux(s2, p_diff[1:5], p_diff[:4]))
        p_hit = (p_diff >= 0) & ~(s2 & p_diff[0]) & (p_row < evh["rt"][:4])
        with m.If(evq_pop):
            ntr, ntc = evh["rt"][:4], evh["ct"][:4]
            grp = evh["c"] >> LGL
            dwg = (grp - g0)[:CHB + 1]
            skip = (ntr == 0) | (ntc == 0) | is_dw & ((grp < g0) | (grp >= g0 + gt)) \
                | by_rows & ~p_hit
            m.d.sync += [tg_busy.eq(~skip), tg_c.eq(evh["c"]), tg_b.eq(evh["b"]),
                         tg_neg.eq(evh["neg"]),
                         tg_j.eq(0), tg_ntc.eq(ntc),
                         tg_ocol.eq(evh["ct"][4:20]), tg_ocol0.eq(evh["ct"][4:20]),
                         tg_kcol.eq(evh["ct"][20:24]), tg_kcol0.eq(evh["ct"][20:24]),
                         tg_g.eq(0), tg_dwg.eq(dwg), tg_mask.eq(evh["mask"])]
            with m.If(by_rows):
                m.d.sync += [tg_i.eq(0), tg_ntr.eq(1),
                             tg_orow.eq(evh["rt"][4:20].as_signed() - p_row),
                             tg_krow.eq(part_cur[:4])]
            with m.Else():
                m.d.sync += [tg_i.eq(0), tg_ntr.eq(ntr), tg_orow.eq(evh["rt"][4:20]),
                             tg_krow.eq(evh["rt"][20:24])]

        # -- update pipeline --------------------------------------------------------------------
        # sA: the emitted update's pixel in the band, group and weight word, registered; s0:
        # its accumulator word (the group's base added) read, and the weight word's read data
        # into a register; s1: the accumulator word's read data into registers, and the
        # weight's part (negated, masked, shifted by the bit) into registers; s2: the sum and
        # its saturation (one adder and one saturation from registers), into a register; s3:
        # that register written. A word is read at s0 before the updates in s1 and s2 have
        # written it: s2 takes the newest value of its word from the result registers of
        # the two updates ahead of it (`fwd_y`, `fwd_z`: address matches registered in s1),
        # and the read port is transparent for the s3 write in its cycle. So back-to-back
        # updates of one word need no stall, and no path runs from a block RAM's output
        # through logic into another block RAM.
        s0_valid = Signal()
        s0_acc = Signal(ACCB + 1)
        w_next = Signal(WGB + 1)                     # the weight word of the update in sA
        s0_b = Signal(6)
        s0_neg = Signal()
        s0_mask = Signal(L)
        s0_dw = Signal()
        s0_cnt = Signal()                            # attention: add 0/1 counts `s0_bits`
        s0_bits = Signal(L)
        s0_sum = Signal()                            # the head: add a token's values
        s1_valid, s1_acc = Signal(), Signal(ACCB + 1)
        s1_b, s1_neg, s1_mask, s1_dw = Signal(6), Signal(), Signal(L), Signal()
        s1_cnt, s1_bits, s1_sum = Signal(), Signal(L), Signal()
        s2_valid, s2_acc = Signal(), Signal(ACCB + 1)
        s2_cnt, s2_bits, s2_sum = Signal(), Signal(L), Signal()
        s1_v, s2_v, s3_v = Signal(), Signal(), Signal()   # the update's store: the wide one
        s3_valid, s3_acc = Signal(), Signal(ACCB + 1)
        fwd_y, fwd_z = Signal(), Signal()
        kv_emit = Signal()                           # the attention's K^T V updates
        kv_addr = Signal(ACCB + 1)
        kv_bits = Signal(L)
        sum_emit = Signal()                          # the head's token sum of a group
        sum_addr = Signal(ACCB + 1)
        upd_busy = Signal()
        m.d.comb += upd_busy.eq(s0_valid | s1_valid | s2_valid | s3_valid)
        g_used = Mux(is_dw, tg_dwg, tg_g)
        sa_valid = Signal()
        sa_pix = Signal(ACCB + 1)
        sa_g = Signal(GB)
        sa_b = Signal(6)
        sa_neg = Signal()
        sa_mask = Signal(L)
        sa_dw = Signal()
        m.d.sync += [sa_valid.eq(emit), s0_valid.eq(sa_valid | kv_emit | sum_emit)]
        with m.If(emit):
            m.d.sync += [sa_pix.eq(ro_rd.data + tg_ocol[:ACCB + 1]), sa_g.eq(g_used[:GB]),
                         w_next.eq(cp_base + tb_off + Mux(is_dw, 0, tg_c << lg_tg) + g_used),
                         sa_b.eq(tg_b), sa_neg.eq(tg_neg), sa_mask.eq(tg_mask),
                         sa_dw.eq(is_dw)]
        with m.If(sa_valid):
            m.d.sync += [
                s0_acc.eq(gbase[sa_g] + sa_pix),
                s0_b.eq(sa_b), s0_neg.eq(sa_neg), s0_mask.eq(sa_mask), s0_dw.eq(sa_dw),
                s0_cnt.eq(0), s0_sum.eq(0),
            ]
        with m.If(kv_emit):
            m.d.sync += [s0_acc.eq(kv_addr), s0_bits.eq(kv_bits), s0_cnt.eq(1), s0_b.eq(0),
                         s0_neg.eq(0), s0_dw.eq(0), s0_sum.eq(0)]
        with m.If(sum_emit):
            m.d.sync += [s0_acc.eq(sum_addr), s0_cnt.eq(0), s0_sum.eq(1), s0_b.eq(0),
                         s0_neg.eq(0), s0_dw.eq(0)]
        m.d.sync += [s1_valid.eq(s0_valid), s1_acc.eq(s0_acc), s1_b.eq(s0_b),
                     s1_neg.eq(s0_neg), s1_mask.eq(s0_mask), s1_dw.eq(s0_dw),
                     s1_cnt.eq(s0_cnt), s1_bits.eq(s0_bits), s1_sum.eq(s0_sum),
                     s2_valid.eq(s1_valid), s2_acc.eq(s1_acc), s2_cnt.eq(s1_cnt),
                     s2_bits.eq(s1_bits), s2_sum.eq(s1_sum),
                     fwd_y.eq(s2_valid & (s2_acc == s1_acc)),
                     fwd_z.eq(s3_valid & (s3_acc == s1_acc)),
                     s3_valid.eq(s2_valid), s3_acc.eq(s2_acc),
                     s1_v.eq(Const(has_v) & (wide | s0_sum)), s2_v.eq(s1_v), s3_v.eq(s2_v)]

        # acc memory ports: the pipeline while streaming, the drain otherwise
        drain_addr = Signal(ACCB + 1)
        draining = Signal()
        y_read = Signal()                             # the attention's Q KV reads
        y_addr = Signal(ACCB + 1)
        d_read = Signal()                             # the drain's next group is read
        d_addr = Signal(ACCB + 1)                     # at this address (D_WAIT)
        m.d.comb += [a_rd.addr.eq(Mux(y_read, y_addr, Mux(d_read, d_addr,
                                                         Mux(draining, drain_addr, s0_acc)))),
                     w_rd.addr.eq(w_next)]
        if has_v:
            m.d.comb += v_rd.addr.eq(Mux(d_read, d_addr, Mux(draining, drain_addr, s0_acc)))
        acc_lanes = [a_rd.data[A * i:A * (i + 1)].as_signed() for i in range(L)]
        if has_v:
            wide_lanes = [v_rd.data[V * i:V * (i + 1)].as_signed() for i in range(L)]
        else:
            wide_lanes = acc_lanes
        # Two adders a lane: the wide store's (multi-bit events: +-w << bit, wrapping at WIDE
        # bits, never saturated; the head's token sums, `s2_sum`: a token's values, from the
        # assembler, which the head holds until the sum is written) and the accumulators'
        # (spike events: +-w, saturated at the layer's acc_bits; attention counts: + 0/1,
        # not saturated). A spike event's bit is 0.
        tok_lanes = {lb: lanes_of(asm_word(lb), lb) for lb in range(3)}
        w_q = Signal(L * cfg.w_bits)                  # s0: the weight word's read data
        m.d.sync += w_q.eq(w_rd.data)
        # s3: the results, written (a signal a lane: narrow enough for the simulators'
        # native words); r4: the results of the update before
        upd = [Signal(signed(WIDE), name=f"upd_r3_{i}") for i in range(L)]
        r4 = [Signal(signed(WIDE), name=f"upd_r4_{i}") for i in range(L)]
        with m.If(s3_valid):                          # (stages compute only when they
            m.d.sync += [r4[i].eq(upd[i]) for i in range(L)]   # hold an update)
        for i in range(L):
            # s1: the weight's part; the read data into registers
            wq = w_q[cfg.w_bits * i:cfg.w_bits * (i + 1)].as_signed()
            mine = ~s1_dw | s1_mask[i]
            wn1 = Signal(signed(cfg.w_bits + 1), name=f"upd_wn1_{i}")
            m.d.comb += wn1.eq(Mux(mine, Mux(s1_neg, -wq, wq), 0))
            wn = Signal(signed(cfg.w_bits + 1), name=f"upd_wn{i}")
            w = Signal(signed(WIDE), name=f"upd_w{i}")
            # the word's read data, from the store the update writes
            d_word = Signal(signed(WIDE), name=f"upd_d{i}")
            with m.If(s1_valid):
                m.d.sync += [wn.eq(wn1), w.eq(wn1 << s1_b),
                             d_word.eq(Mux(s1_v, wide_lanes[i], acc_lanes[i]) if has_v
                                       else acc_lanes[i])]
            # s2: the newest value of the word, the sums, into r3 (a result forwarded from
            # the updates ahead is the word its store holds: its low A or V bits)
            y, z = upd[i], r4[i]
            op = Signal(signed(WIDE), name=f"upd_op{i}")
            m.d.comb += op.eq(Mux(fwd_y, y, Mux(fwd_z, z, d_word)))
            a_op = op[:A].as_signed()
            v_op = op[:V].as_signed() if has_v else a_op
            total = Signal(signed(WIDE), name=f"upd_wide{i}")
            tok_val = Mux(lg_in_vb == 2, tok_lanes[2][i],
                          Mux(lg_in_vb == 1, tok_lanes[1][i], tok_lanes[0][i]))
            m.d.comb += total.eq(v_op + Mux(s2_sum, tok_val, w))
            narrow = Signal(signed(NB), name=f"upd_acc{i}")
            m.d.comb += narrow.eq(a_op + Mux(s2_cnt, s2_bits[i], wn))
            with m.If(s2_valid):
                m.d.sync += upd[i].eq(Mux(wide | s2_sum, total,
                                          Mux(s2_cnt, narrow, _clamp(narrow, acc_lo, acc_hi))))
        with m.If(s3_valid):
            with m.If(s3_v):
                if has_v:
                    v_write(s3_acc, SRC_UPD)
            with m.Else():
                acc_write(s3_acc, SRC_UPD)
        stream_idle = Signal()
        m.d.comb += stream_idle.eq((beats_left == 0) & (bq_n == 0) & ~have & (evq_n == 0) & ~tg_busy
                                   & ~sa_valid & ~upd_busy)

        # -- drain datapath ---------------------------------------------------------------------
        d_g = Signal(GB + 1)
        d_pix = Signal(ACCB + 2)                      # pixel within the band
        d_npix = Signal(ACCB + 2)
        # the lane unit's inputs, and what it does to them first (X_*): the drain's
        # accumulators plus bias, saturated at acc_bits (or not: the wide store), the head's
        # token sums saturated at sum_bits, or nothing
        x_lanes = [Signal(signed(34), name=f"x{i}") for i in range(L)]
        X_AS_IS, X_BIAS_SAT, X_BIAS, X_SUM_SAT = range(4)
        x_mode = Signal(2)
        res_lanes = [Signal(signed(34), name=f"res{i}") for i in range(L)]
        out_word = Signal(L * 32)
        spike_word = Signal(L)
        bias = lanes_of(p_rd[0].data, 2)
        prm1 = lanes_of(p_rd[1].data, 2)
        prm2 = lanes_of(p_rd[2].data, 2)
        lu_g = Signal.like(d_g)                       # the group stage 1 reads the parameters of
        for pr in p_rd:
            m.d.comb += pr.addr.eq(lu_g)
        frac = D["frac_bits"][:5]
        first_t = ts == 0
        last_t = ts + 1 == tsteps
        # the lane unit: LIF and shortcut of DL lanes a cycle (L / DL cycles a group), into
        # registers: spike_word, out_word (values) and the new membranes. Seven stages, each
        # at most one adder or one saturation (two compares) deep: 1 the input plus its bias;
        # 2 its saturation at acc_bits or sum_bits; 3 the saturating left shift (and the
        # shortcut's right shift beside it); 4 the LIF's or the stream's bias added; 5 the
        # charge's saturation at v_bits (the shortcut's branch at out_bits); 6 the membrane
        # update (the residual's sum); 7 the threshold (the shortcut's second saturation). A
        # client sets `lu_start` with the group's inputs in x_lanes and res_lanes, its
        # parameters' group in d_g and its old membranes in the membrane memory's read data;
        # the unit latches the membranes and the group, and stage 1 picks every input of a
        # sub-group (so a client may load the next group's inputs in the cycle of the last
        # sub-group's stage 1). The attention and the head wait for `lu_busy` to fall and
        # finish the group themselves; the drain goes on with its next group, and the retire
        # logic (below) finishes each group after the last stage (`tl`: the group's tags,
        # carried beside the stages). While a finished group cannot retire (its output beats
        # wait for the emitter), `lu_hold` holds every stage.
        DL = min(L, DRAIN_LANES)
        NSUB = L // DL
        # LU_STAGES stages, each a sub-group of DL lanes; stage k's valid bit and sub-group
        # (stage 1's are lu_run and lu_sub, the unit's input picks)
        LU_STAGES = 7
        lu_run = Signal()                             # stage 1 takes sub-group lu_sub
        lu_sub = Signal(range(max(2, NSUB)))
        lu_vs = [lu_run] + [Signal(name=f"lu_v{st}") for st in range(2, LU_STAGES + 1)]
        lu_subs = [lu_sub] + [Signal(range(max(2, NSUB)), name=f"lu_sub{st}")
                              for st in range(2, LU_STAGES + 1)]
        lu_busy = Signal()
        m.d.comb += lu_busy.eq(Cat(*lu_vs).any())
        lu_hold = Signal()
        lu_start = Signal()

        def lsync(stmts):
            with m.If(~lu_hold):
                m.d.sync += stmts
        lsync([lu_vs[st + 1].eq(lu_vs[st]) for st in range(LU_STAGES - 1)]
              + [lu_subs[st + 1].eq(lu_subs[st]) for st in range(LU_STAGES - 1)])
        lu_vl, lu_subl = lu_vs[-1], lu_subs[-1]       # the last stage's
        # the membranes of the group, latched at its start (0 at the first timestep)
        vold_lanes = [Signal(signed(V), name=f"vold_in{i}") for i in range(L)]
        vnew_reg = Signal(L * V)
        v_new = [vnew_reg[V * i:V * (i + 1)].as_signed() for i in range(L)]
        for kl in range(DL):
            def pick(lanes, sub, kl=kl):
                # a signal, not an array proxy: operators on a proxy are built per element
                sel = Signal.like(lanes[kl], name=f"pick{kl}")
                m.d.comb += sel.eq(Array(lanes[j * DL + kl] for j in range(NSUB))[sub])
                return sel

            def regs(name, shape, value, st, kl=kl):
                """`value`, computed in stage `st`, into a register of the lane (the next
                stage's input), taken when that stage holds a sub-group and is not held (so
                an idle stage computes nothing in a simulator)."""
                r = Signal(shape, name=f"{name}{kl}")
                with m.If(lu_vs[st - 1] & ~lu_hold):
                    m.d.sync += r.eq(value)
                return r

            def carry(r, stages, st):
                """`r`, an input of stage `st`, carried through `stages` more registers; the
                last one."""
                base = r.name
                for n in range(stages):
                    r = regs(f"{base}_d{n + 1}_", r.shape(), r, st + n)
                return r
            # stage 1: the input plus the bias (one adder); the later stages' parameters picked
            b0 = pick(bias, lu_sub)
            x_in = pick(x_lanes, lu_sub)
            p1a = pick(prm1, lu_sub)
            p2a = pick(prm2, lu_sub)
            xb = regs("lu_xb", signed(35), x_in + Mux((x_mode == X_BIAS_SAT)
                                                       | (x_mode == X_BIAS), b0, 0), 1)
            sat1 = regs("lu_sat", 1, (x_mode == X_BIAS_SAT) | (x_mode == X_SUM_SAT), 1)
            sum1 = regs("lu_sum", 1, x_mode == X_SUM_SAT, 1)
            # stage 3's shifts: the left one by frac_bits (the LIF) or the stream shift, the
            # right one by the negative stream shift; stage 4's biases (the LIF's or the
            # stream's, and the stream's); stage 7's threshold
            lsh = carry(regs("lu_lsh", 5, Mux(is_stream, p1a[:5], frac), 1), 1, 2)
            rsh = carry(regs("lu_rsh", 5, (-p1a)[:5], 1), 1, 2)
            rgt = carry(regs("lu_rgt", 1, p1a < 0, 1), 1, 2)
            lbias = carry(regs("lu_lb", signed(32), Mux(is_sdsa, 0, Mux(is_lif, p1a, p2a)), 1),
                          2, 2)
            sbias = carry(regs("lu_p2", signed(32), p2a, 1), 2, 2)
            th1 = regs("lu_th", signed(32), Mux(is_lif | is_sdsa, b0, p1a), 1)
            res1 = regs("lu_res", signed(34), pick(res_lanes, lu_sub), 1)
            if has_v:
                vold1 = regs("lu_vold", signed(V), pick(vold_lanes, lu_sub), 1)
            else:
                vold1 = Const(0, signed(V))
            # stage 2: the saturation at acc_bits or sum_bits (or none)
            x_lo = Mux(sum1, sum_lo, acc_lo)
            x_hi = Mux(sum1, sum_hi, acc_hi)
            x2 = regs("lu_x", signed(34), Mux(sat1, _clamp(xb, x_lo, x_hi), xb[:34].as_signed()),
                      2)
            # stage 3: one saturating left shift; the shortcut's right shift beside it
            shifted = Signal(signed(SW), name=f"xshift{kl}")
            m.d.comb += shifted.eq(_shl_sat(x2, lsh, SW))
            sh3 = regs("lu_sh", signed(SW), shifted, 3)
            mv3 = regs("lu_mv", signed(SW), Mux(rgt, x2 >> rsh, shifted), 3)
            x3 = regs("lu_x3_", signed(34), x2, 3)
            # stage 4: the biases added (the LIF's and the stream's)
            sh4 = regs("lu_sh4_", signed(SW + 1), sh3 + lbias, 4)
            mv4 = regs("lu_mv4_", signed(SW + 1), mv3 + sbias, 4)
            # stage 5: charge = sat(x << frac + bias) at v_bits, branch = sat((acc << shift) +
            # bias) at out_bits
            charge = regs("lu_charge", signed(V + 1), _clamp(sh4, v_lo, v_hi), 5)
            branch = regs("lu_branch", signed(33), _clamp(mv4, o_lo, o_hi), 5)
            # stage 6: h = sat(v + ((charge - v) >> 1)) lies between v and charge, both in
            # range, so its saturation is the identity and left out; the residual's sum
            vold5 = carry(vold1, 4, 2) if has_v else vold1
            res5 = carry(res1, 4, 2)
            h = regs("lu_h", signed(V + 1), (vold5 + charge) >> 1, 6)   # v + ((charge - v) >> 1)
            bsum = regs("lu_bsum", signed(34), branch + res5, 6)
            th6 = carry(th1, 5, 2)
            x6 = carry(x3, 3, 4)
            # stage 7: the threshold; the shortcut's second saturation
            fired = h >= th6
            val = Mux(is_stream, _clamp(bsum, o_lo, o_hi), x6)
            with m.If(lu_vl & ~lu_hold):
                for j in range(NSUB):
                    i = j * DL + kl
                    with m.If(lu_subl == j):
                        m.d.sync += [spike_word[i].eq(fired),
                                     vnew_reg[V * i:V * (i + 1)].eq(Mux(fired, 0, h)),
                                     out_word[32 * i:32 * (i + 1)].eq(val)]
        with m.If(lu_run & ~lu_hold):
            m.d.sync += lu_sub.eq(lu_sub + 1)
            with m.If(lu_sub == NSUB - 1):
                m.d.sync += [lu_run.eq(0), lu_sub.eq(0)]
        # a group's tags, stage by stage (tags[0] from its start, tags[k] after stage k): the
        # membrane address, the lanes below out_channels, last group of its pixel, retired by
        # the retire logic (the drain's groups)
        TAG = data.StructLayout({"addr": ACCB + 1, "real": L, "last": 1, "drn": 1})
        tags = [Signal(TAG, name=f"tag{st}") for st in range(1, LU_STAGES + 1)]
        t1, tl = tags[0], tags[-1]
        for st in range(LU_STAGES - 1):               # (not `k`: that is the kernel size)
            with m.If(lu_vs[st] & (lu_subs[st] == NSUB - 1) & ~lu_hold):
                m.d.sync += tags[st + 1].eq(tags[st])
        # a client's start (never while the unit holds: only the drain's groups retire, and
        # a client starts only when the stage-1 registers it loads are free)
        with m.If(lu_start):
            m.d.sync += [lu_run.eq(1), lu_g.eq(d_g), t1.drn.eq(0)]
            if has_v:
                m.d.sync += [vold_lanes[i].eq(Mux(first_t, 0, wide_lanes[i])) for i in range(L)]
        # the unit's stage 1 takes a new group in the next cycle: it is idle, or in its last
        # sub-group and not held
        lu_free = Signal()
        m.d.comb += lu_free.eq(~lu_hold & (~lu_run | (lu_sub == NSUB - 1)))

        # packed output chunk of a group: spikes (L bits) or L values of 1, 2, 4 bytes
        o_nbeats = Signal(8)                          # beats of a value chunk
        m.d.comb += o_nbeats.eq(Mux(lg_out_vb == 2, (L * 4) // AB,
                                    Mux(lg_out_vb == 1, (L * 2) // AB, L // AB)))
        # the output emitter: sends a finished group's beats while the drain goes on
        em_busy = Signal()
        em_spk = Signal()
        # the beats being sent: a retired group's values, or a beat of spikes (sbuf goes on
        # filling), copied so that the lane unit goes on with the next groups; a second slot
        # (em_nx_*) takes the next chunk while this one goes out
        EMW = max(L * 32, AW)
        em_word = Signal(EMW)
        em_sstrb = Signal(AB)
        em_nx = Signal()
        em_nx_word = Signal(EMW)
        em_nx_strb = Signal(AB)
        em_nx_spk = Signal()
        em_nx_nb = Signal(8)
        em_n = Signal(8)
        em_nb = Signal(8)
        out_packed = Signal(L * 32)                   # out_word's values at the layer's bytes
        packs = {lb: Cat(*[out_word[32 * i:32 * i + (8 << lb)] for i in range(L)])
                 for lb in range(3)}
        m.d.comb += out_packed.eq(Mux(lg_out_vb == 2, packs[2],
                                      Mux(lg_out_vb == 1, packs[1], packs[0])))
        NBT = EMW // AW                               # beats of a chunk of 4-byte values
        chunk_beat = em_word.word_select(em_n[:max(1, _log2(NBT))], AW) if NBT > 1 \
            else em_word[:AW]
        with m.If(em_busy):
            m.d.comb += [wr.valid.eq(1), wr.payload.data.eq(chunk_beat),
                         wr.payload.strb.eq(Mux(em_spk, em_sstrb, (1 << AB) - 1))]
            with m.If(wr.ready):
                m.d.sync += em_n.eq(em_n + 1)
                with m.If(em_n + 1 == em_nb):
                    m.d.sync += em_busy.eq(0)
        # the next chunk follows the last beat of this one without a gap
        with m.If(em_nx & (~em_busy | (wr.ready & (em_n + 1 == em_nb)))):
            m.d.sync += [em_word.eq(em_nx_word), em_sstrb.eq(em_nx_strb), em_spk.eq(em_nx_spk),
                         em_nb.eq(em_nx_nb), em_n.eq(0), em_busy.eq(1), em_nx.eq(0)]
        sbuf = Signal(AW)
        sstrb = Signal(AB)
        s_byte = Signal(16)                           # byte of the group's spikes in the record
        SPB = max(1, L // 8)                          # bytes of a group's spikes
        s_first = g0 << _log2(SPB) if SPB > 1 else g0    # the tile's first byte of a record
        out_spikes = is_conv_lif | is_lif

        # the retire logic: a drain group out of stage 3 writes its membranes, and its spikes
        # into the record's beat (sent when full or at the pixel's last group) or its values
        # to the emitter's next slot; it waits for that slot to be free, holding the lane unit
        ret_pend = Signal()
        ret_fire = Signal()
        m.d.comb += [lu_hold.eq(ret_pend & em_nx), ret_fire.eq(ret_pend & ~em_nx)]
        with m.If(ret_fire):
            m.d.sync += ret_pend.eq(0)
            if has_v:
                with m.If(out_spikes & ~last_t):
                    v_write(tl.addr, SRC_NEW)
            with m.If(out_spikes):
                byte = s_byte[:LGAB] if LGAB else Const(0)
                nbuf = Signal(AW)
                # padding channels (past out_channels) never fire (t3.real)
                m.d.comb += nbuf.eq(sbuf | ((spike_word & tl.real) << (byte << 3)))
                nstrb = Signal(AB)
                m.d.comb += nstrb.eq(sstrb | (Const((1 << SPB) - 1, AB) << byte))
                m.d.sync += [sbuf.eq(nbuf), sstrb.eq(nstrb),
                             s_byte.eq(Mux(tl.last, s_first, s_byte + SPB))]
                with m.If((byte + SPB == AB) | tl.last):
                    m.d.sync += [em_nx_word[:AW].eq(nbuf), em_nx_strb.eq(nstrb), sbuf.eq(0),
                                 sstrb.eq(0), em_nx.eq(1), em_nx_spk.eq(1), em_nx_nb.eq(1)]
            with m.Else():
                m.d.sync += [em_nx_word.eq(out_packed), em_nx.eq(1), em_nx_spk.eq(0),
                             em_nx_nb.eq(o_nbeats)]
        with m.If(lu_vl & (lu_subl == NSUB - 1) & tl.drn & ~lu_hold):
            m.d.sync += ret_pend.eq(1)

        # stream (residual, or the lif op's input) of a pixel's tile slice
        s_need = Signal()
        m.d.comb += s_need.eq(is_lif | is_stream & (D["res_addr"] != 0))
        s_lgvb = Mux(is_lif | is_head, lg_in_vb, lg_out_vb)
        s_nbeats = Mux(s_lgvb == 2, (L * 4) // AB, Mux(s_lgvb == 1, (L * 2) // AB, L // AB))
        s_pb = Mux(is_lif, D["in_pixel_bytes"], D["res_pixel_bytes"])
        s_base = Mux(is_lif, D["in_addr"], D["res_addr"])
        s_tstride = Mux(is_lif, D["in_t_stride"], D["res_t_stride"])

        # -- attention: record slices, head windows, K^T V and Q KV -------------------------------
        NB = -(-cfg.tile_groups * L // AW) + 1       # beats of a tile's slice of a record
        MAXD = cfg.max_head_dim
        GPH = -(-MAXD // L)
        LGAW = _log2(AW)
        # the K and V slices in LUT RAM, beat j in bank j % 2 (two beats read at once); Q's
        # slice is read after the last K^T V update: it takes K's place
        KVB = max(1, _log2(-(-(NB + 1) // 2)))       # address bits of a slice in a bank

        def beat_pair(e, data0, data1):
            """Beats e and e + 1 of a slice in two banks (beat j at word j // 2 of bank
            j % 2): the banks' word addresses and (lo, hi) from their read data."""
            addr0, addr1 = ((e + 1) >> 1)[:KVB], (e >> 1)[:KVB]
            return addr0, addr1, Mux(e[0], data1, data0), Mux(e[0], data0, data1)

        kv_banks = [mem(f"kv_bank{b}", AW, 2 << KVB) for b in range(2)]
        kv_wr = [bank.write_port() for bank in kv_banks]
        kv_rd = [bank.read_port(domain="comb") for bank in kv_banks]
        # the output record's slice: two LUT-RAM banks the same way, a flag per beat that
        # says it was written since the token started (else it reads 0); beats ob_e and
        # ob_e + 1 are read (ob_lo, ob_hi) and written (ob_new_lo, ob_new_hi) at once
        ob_banks = [mem(f"o_bank{b}", AW, 1 << KVB) for b in range(2)]
        ob_wr = [bank.write_port() for bank in ob_banks]
        ob_rd = [bank.read_port(domain="comb") for bank in ob_banks]
        ob_ok = Signal(NB + 3)
        ob_e = Signal(range(NB + 2))
        ob_lo, ob_hi = Signal(AW), Signal(AW)
        ob_new_lo, ob_new_hi = Signal(AW), Signal(AW)
        ob_we_lo, ob_we_hi = Signal(), Signal()
        ob_e1 = (ob_e + 1)[:len(ob_e) + 1]
        ob_a0, ob_a1, ob_d_lo, ob_d_hi = beat_pair(ob_e, ob_rd[0].data, ob_rd[1].data)
        m.d.comb += [
            ob_rd[0].addr.eq(ob_a0), ob_rd[1].addr.eq(ob_a1),
            ob_lo.eq(Mux(ob_ok.bit_select(ob_e, 1), ob_d_lo, 0)),
            ob_hi.eq(Mux(ob_ok.bit_select(ob_e1, 1), ob_d_hi, 0)),
            ob_wr[0].addr.eq(ob_a0), ob_wr[1].addr.eq(ob_a1),
            ob_wr[0].data.eq(Mux(ob_e[0], ob_new_hi, ob_new_lo)),
            ob_wr[1].data.eq(Mux(ob_e[0], ob_new_lo, ob_new_hi)),
            ob_wr[0].en.eq(Mux(ob_e[0], ob_we_hi, ob_we_lo)),
            ob_wr[1].en.eq(Mux(ob_e[0], ob_we_lo, ob_we_hi)),
        ]
        with m.If(ob_we_lo):
            m.d.sync += ob_ok.bit_select(ob_e, 1).eq(1)
        with m.If(ob_we_hi):
            m.d.sync += ob_ok.bit_select(ob_e1, 1).eq(1)
        dim = D["head_dim"][:8]
        gph = Signal(4)
        m.d.comb += gph.eq((dim + L - 1) >> LGL)
        dmask = Signal(MAXD)
        m.d.comb += dmask.eq((Const(1, MAXD + 1) << dim) - 1)
        win_sel = Signal()                            # K (or Q), V
        for b in range(2):
            m.d.comb += kv_wr[b].en.eq(0)
        win_rel = Signal(16)
        window = Signal(MAXD)
        # one extractor for the slices: beats bi and bi + 1 of the chosen one, shifted
        bi = win_rel >> LGAW
        kv_a0, kv_a1, kv_lo, kv_hi = beat_pair(bi, kv_rd[0].data, kv_rd[1].data)
        m.d.comb += [kv_rd[0].addr.eq(Cat(kv_a0, win_sel)), kv_rd[1].addr.eq(Cat(kv_a1, win_sel)),
                     window.eq((Cat(kv_lo, kv_hi) >> win_rel[:LGAW]) & dmask)]
        h0 = Signal(16)
        hs = Signal(16)
        base0 = Signal(24)
        fb = Signal(16)
        nb = Signal(16)
        hsdim = Signal(24)
        dgw = Signal(ACCB + 2)
        tile_bits = Signal(24)
        hl = Signal(16)
        rel = Signal(16)
        # the window is always at rel: K's or Q's bits (win_sel 0), V's in SD_KVH2; no state
        # or compare on the path into the slices' addresses
        m.d.comb += win_rel.eq(rel)
        jw = Signal(GB + 4)
        grp = Signal(4)
        kscan = Signal(MAXD)
        vreg = Signal(MAXD)
        qscan = Signal(MAXD)
        ntok = Signal(24)
        tok_n = Signal(24)
        kv_off = Signal(32)
        y_off = Signal(32)
        yo_off = Signal(32)
        yband_off = Signal(32)
        oband_off = Signal(32)
        next_y = Signal(32)
        next_yo = Signal(32)
        mrow = Signal(ACCB + 2)
        ATTB = cfg.attention_bits
        # a head's attention sums, a word of L lanes per group: LUT RAM (two read ports), and a
        # flag per word that says it was written since the token started (else it reads 0)
        att_mem = mem("attention", L * ATTB, max(2, GPH))
        att_wr = att_mem.write_port()
        att_rd_y = att_mem.read_port(domain="comb")          # the Q KV sums
        att_rd_l = att_mem.read_port(domain="comb")          # into the LIF
        att_ok = Signal(max(2, GPH))
        y_v = Signal()
        y_grp = Signal(4)
        k_eq, k_idx, k_any, k_rest = _lowest(kscan)
        q_eq, q_idx, q_any, q_rest = _lowest(qscan)
        m.d.comb += [k_eq, q_eq]

        def times_gph(value):
            out = Signal(ACCB + 2)
            with m.Switch(gph):
                for c in range(1, GPH + 1):
                    with m.Case(c):
                        m.d.comb += out.eq(mul_const(value, c))
            return out
        # the bit being used (its row of K^T V words, registered) and the bits left: the next
        # bit is taken off the scan as the last group of the current one goes
        kc_valid, qc_valid = Signal(), Signal()
        kc_row, qc_row = Signal(ACCB + 2), Signal(ACCB + 2)
        k_next = [kc_valid.eq(k_any), kc_row.eq(times_gph(k_idx)), kscan.eq(k_rest)]
        q_next = [qc_valid.eq(q_any), qc_row.eq(times_gph(q_idx)), qscan.eq(q_rest)]
        att_old = Mux(att_ok.bit_select(y_grp, 1), att_rd_y.data, 0)
        m.d.comb += [att_rd_y.addr.eq(y_grp), att_wr.addr.eq(y_grp),
                     att_wr.data.eq(Cat(*[(att_old[ATTB * i:ATTB * (i + 1)]
                                           + a_rd.data[A * i:A * (i + 1)])[:ATTB]
                                          for i in range(L)]))]
        with m.If(y_v):                              # one adder per lane, shared by groups
            m.d.comb += att_wr.en.eq(1)
            m.d.sync += att_ok.bit_select(y_grp, 1).eq(1)
        m.d.sync += [y_v.eq(0)]
        SUMBASE = cfg.acc_words // 2                 # the head's token sums
        hd_cg = Signal(CHB)
        m.d.comb += hd_cg.eq((D["in_channels"][:CHB] + L - 1) >> LGL)
        hd_g = Signal(CHB)

        # drain issuers: the stream reads and the output writes of the band's pixels, issued
        # ahead of the drain so that their latency is hidden
        dri_n = Signal(ACCB + 2)
        dri_addr = Signal(32)
        dwi_n = Signal(ACCB + 2)
        dwi_addr = Signal(32)
        dri_go = Signal()
        m.d.comb += dri_go.eq(drain_on & s_need & (dri_n != d_npix) & ~fsm_cmd & ~q_full)
        dri_a = s_base + t_res + dri_addr + (g0 << (LGL + s_lgvb))
        dri_len = gt << (LGL + s_lgvb)
        with m.If(dri_go):
            m.d.comb += [rd_req.eq(1), rq_addr.eq(dri_a), rq_len.eq(dri_len),
                         rq_kind.eq(KIND_FSM)]
            with m.If(rd_taken):
                m.d.sync += [dri_n.eq(dri_n + 1), dri_addr.eq(dri_addr + s_pb)]
        sp_first = (g0 << _log2(SPB)) >> LGAB
        sp_last = (((g0 + gt) << _log2(SPB)) - 1) >> LGAB
        dwi_oaddr = D["out_addr"] + t_out + dwi_addr
        dwi_a = Mux(out_spikes, dwi_oaddr + (sp_first << LGAB),
                    dwi_oaddr + (g0 << (LGL + lg_out_vb)))
        dwi_len = Mux(out_spikes, (sp_last - sp_first + 1) << LGAB, gt << (LGL + lg_out_vb))
        with m.If(drain_on & (dwi_n != d_npix) & (dwi_n < d_pix + 4)):
            m.d.comb += [wr_req.eq(1), wq_addr.eq(dwi_a), wq_len.eq(dwi_len)]
            with m.If(wr_taken):
                m.d.sync += [dwi_n.eq(dwi_n + 1),
                             dwi_addr.eq(dwi_addr + D["out_pixel_bytes"])]

        def collect(beats):
            """In a state: take the sequencer's beats into the assembler until `beats` are in;
            returns the condition that they are."""
            done = asm_n == beats
            with m.If(~done):
                m.d.comb += frd_ready.eq(1)
                with m.If(frd_valid):
                    m.d.comb += asm_shift.eq(1)
                    m.d.sync += asm_n.eq(asm_n + 1)
            return done

        def wide_write(addr, src):
            """Write a word of the wide store (the membrane memory; the accumulators when the
            core keeps no membranes) from `src`: SRC_ZERO, or SRC_UPD (the token sums)."""
            (v_write if has_v else acc_write)(addr, src)

        # -- the sequencer FSM ------------------------------------------------------------------
        core_id = core_fingerprint(cfg)
        hdr_beats = HEADER_WORDS * 4 // AB
        dsc_beats = DESCRIPTOR_WORDS * 4 // AB
        KINDS = Signal(2)
        m.d.comb += KINDS.eq(Mux(is_conv_lif | is_stream, 3, Mux(is_lif, 2, 1)))
        kind = Signal(2)
        pw_beats = (L * 4) // AB                      # beats of a parameter word
        tb_run = Signal(WGB + 2)
        tb_kr, tb_kc = Signal(KB + 1), Signal(KB + 1)
        tb_tip = Signal(8)
        tb_partn = Signal(8)
        out_pix = Signal(33)
        res_pix = Signal(33)

        def read_cmd(addr, length, nxt, check=True):
            m.d.comb += [rq_addr.eq(addr), rq_len.eq(length), fsm_cmd.eq(1), rd_req.eq(1),
                         rd_nochk.eq(not check), rd_chk_al.eq(check)]
            with m.If(rd_taken):
                m.next = nxt

        def write_cmd(addr, length, nxt):
            m.d.comb += [wq_addr.eq(addr), wq_len.eq(length), wr_req.eq(1), wr_chk_al.eq(1)]
            with m.If(wr_taken):
                m.next = nxt

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [layer.eq(0), count.eq(0), csum.eq(0)]
                    m.next = "HDR_CMD"

            with m.State("HDR_CMD"):
                with m.If(~aligned(self.program)):
                    m.d.comb += fault("address")
                with m.Else():
                    read_cmd(self.program, HEADER_WORDS * 4, "HDR_RX", check=False)

            def record_rx(state, reg, beats, nxt):
                """Shift a header or descriptor in, beat by beat, summing its words."""
                with m.State(state):
                    m.d.comb += frd_ready.eq(1)
                    with m.If(frd_valid):
                        m.d.sync += [reg.eq(Cat(reg[AW:], rd.payload.data)),
                                     count.eq(count + 1), csum.eq(csum + beat_sum)]
                        with m.If(count + 1 == beats):
                            m.next = nxt

            record_rx("HDR_RX", hdr, hdr_beats, "HDR_CHECK")
            record_rx("DSC_RX", dsc, dsc_beats, "DSC_CHECK")

            def verdict(name, checks):
                """In a state of two cycles: register each (condition, error) of `checks` in
                the first, fault on the first that holds in the second (none: the returned
                `ok` is high). No path runs from the record's fields through the checks into
                the sequencer's next state."""
                settled, ok = Signal(name=f"{name}_settled"), Signal(name=f"{name}_ok")
                flags = []
                for cond, code in checks:
                    flag = Signal(name=f"{name}_{code}")
                    m.d.sync += flag.eq(cond)
                    flags.append((flag, code))
                with m.If(~settled):
                    m.d.sync += settled.eq(1)
                for flag, code in flags:
                    with m.Elif(flag):
                        m.d.comb += fault(code)
                with m.Else():
                    m.d.comb += ok.eq(1)
                    m.d.sync += settled.eq(0)
                return ok

            with m.State("HDR_CHECK"):              # two cycles: the checks, their verdict
                # csum holds the sum of all 16 words; the checksum word w15 = ~sum(w0..w14)
                d_lo = H["descriptors"]
                d_hi = d_lo + (H["layers"] << 8)
                hdr_ok = verdict("hdr", [
                    ((H["magic"] != MAGIC) | (H["version"] != VERSION), "magic"),
                    (csum != 0xFFFFFFFF, "header_checksum"),
                    (H["core"] != core_id, "core"),
                    ((H["base"] != self.program)
                     | (d_lo < H["base"]) | (d_hi > H["base"] + H["image_bytes"])
                     | (H["layers"] >= 1 << 16) | ~aligned(d_lo), "address"),
                ])
                with m.If(hdr_ok):
                    m.d.sync += [base.eq(H["base"]), image_end.eq(H["base"] + H["image_bytes"]),
                                 act.eq(H["activation_addr"]),
                                 act_end.eq(H["activation_addr"] + H["activation_bytes"]),
                                 layers.eq(H["layers"]), daddr.eq(d_lo), layer.eq(0),
                                 cnt.eq(0)]
                    m.next = "CLR_START"

            # the accumulators and membranes start at zero (a soft reset may have left them
            # mid-layer); every operation leaves the accumulators zero again, and an engine
            # with multi-bit inputs clears the membranes (its wide store) before it starts
            def clear(state, amem_too, vmem_too, nxt):
                with m.State(state):
                    if amem_too:
                        acc_write(cnt, SRC_ZERO)
                    if vmem_too and has_v:
                        v_write(cnt, SRC_ZERO)
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt + 1 >= cfg.acc_words):
                        m.d.sync += [cnt.eq(0), acc32.eq(0)]
                        m.next = nxt
            clear("CLR_START", True, True, "NEXT")
            clear("CLR_WIDE", False, True, "ROWTAB_CMD")
            clear("SD_END", True, False, "LAYER_END")

            with m.State("NEXT"):
                with m.If(layer == layers):
                    m.next = "FINISH"
                with m.Else():
                    m.d.sync += [count.eq(0), csum.eq(0)]
                    m.next = "DSC_CMD"

            with m.State("DSC_CMD"):
                read_cmd(daddr, DESCRIPTOR_WORDS * 4, "DSC_RX", check=False)

            with m.State("DSC_CHECK"):              # two cycles: the checks, their verdict
                shape_bad = Const(0)
                for fname, limit in SHAPE_LIMITS:
                    shape_bad = shape_bad | _above(D[fname], getattr(cfg, limit))
                wide_limit = V if has_v else A
                acc_bad = Mux(wide, D["acc_bits"] > wide_limit, D["acc_bits"] > A)
                tg = D["tile_groups"]
                pow2 = (tg & (tg - 1)) == 0
                engine_bad = is_engine & (
                    (k == 0) | (D["stride"] == 0) | (D["stride"] > 2)
                    | ~(pass_all | pass_rows | pass_taps) | ~pow2
                    | (D["in_pixel_bytes"] == 0)
                    | (D["in_height"] > cfg.max_map) | (D["in_width"] > cfg.max_map)
                    | is_conv_lif & multibit & (tsteps > 1)
                    | (D["in_bytes"] != 1) & (D["in_bytes"] != 2) & (D["in_bytes"] != 4)
                    & multibit | is_dw & multibit)
                common_bad = ((tg == 0) | (tg > cfg.tile_groups) | (D["tiles"] == 0)
                              | (D["band_rows"] == 0) | (D["bands"] == 0)
                              | (tsteps == 0) | (D["frac_bits"] > 31)
                              | (D["acc_bits"] == 0) & is_engine
                              | (D["out_bits"] == 0) | (D["out_bits"] > 32)
                              | (D["v_bits"] == 0) & (is_conv_lif | is_lif)
                              | (D["out_pixel_bytes"] == 0))
                sdsa_bad = is_sdsa & ((dim == 0) | (D["heads"] == 0) | (D["tokens"] == 0)
                                      | (D["v_bits"] == 0)
                                      | (D["in_height"] > cfg.max_map)
                                      | (D["in_width"] > cfg.max_map))
                sdsa_groups = Signal(GB + 8)
                with m.Switch(gph):
                    for c in range(1, GPH + 1):
                        with m.Case(c):
                            m.d.comb += sdsa_groups.eq(mul_const(D["tile_groups"][:GB + 1], c))
                sdsa_bad = sdsa_bad | is_sdsa & ((sdsa_groups > cfg.tile_groups)
                                                 | (gph > GPH))
                head_bad = is_head & ((k != 1) | ~pow2 | (hd_cg > SUMBASE)
                                      | (D["stride"] == 0) | (D["stride"] > 2) | (passes != 1)
                                      | (D["in_pixel_bytes"] == 0) | (D["sum_bits"] == 0)
                                      | (D["in_bytes"] != 1) & (D["in_bytes"] != 2)
                                      & (D["in_bytes"] != 4) | (D["v_bits"] == 0))
                align_bad = ~aligned(D["in_addr"]) | ~aligned(D["in_t_stride"]) \
                    | ~aligned(D["in_pixel_bytes"]) | ~aligned(D["out_addr"]) \
                    | ~aligned(D["out_t_stride"]) | ~aligned(D["out_pixel_bytes"]) \
                    | ~aligned(D["res_addr"]) | ~aligned(D["res_t_stride"]) \
                    | ~aligned(D["res_pixel_bytes"]) | ~aligned(D["weights_addr"]) \
                    | ~aligned(D["weights_tile_bytes"]) | ~aligned(D["params_addr"]) \
                    | ~aligned(D["params_tile_bytes"]) | ~aligned(D["row_table_addr"]) \
                    | ~aligned(D["col_table_addr"]) | ~aligned(D["k_addr"]) \
                    | ~aligned(D["v_addr"])
                dsc_ok = verdict("dsc", [
                    (csum != 0xFFFFFFFF, "descriptor_checksum"),
                    (~(is_engine | is_lif | is_sdsa | is_head), "opcode"),
                    (shape_bad | acc_bad | engine_bad | common_bad | sdsa_bad | head_bad,
                     "shape"),
                    (align_bad, "address"),
                ])
                with m.If(dsc_ok):
                    m.d.sync += [tile.eq(0), g0.eq(0),
                                 p_addr.eq(D["params_addr"]), cnt.eq(0), acc32.eq(0),
                                 h0.eq(0), base0.eq(0)]
                    m.d.comb += ld_start.eq(is_engine | is_head)
                    m.d.sync += [cp_slot.eq(0), slot_state[0].eq(0), slot_state[1].eq(0)]
                    with m.If(wide & has_v):
                        m.next = "CLR_WIDE"
                    with m.Elif(is_engine):
                        m.next = "ROWTAB_CMD"
                    with m.Elif(is_sdsa):
                        m.next = "SD_DGW"
                    with m.Elif(is_head):
                        m.next = "HD_SETUP"
                    with m.Else():
                        m.next = "ROWOFF"

            # geometry tables: a beat holds AB / 4 entries, written one a cycle ---------------
            def table_states(name, addr, entries, wport, nxt, done):
                with m.State(f"{name}_CMD"):
                    m.d.sync += cnt.eq(0)
                    read_cmd(addr, ((entries[:MAPB + 1] << 2) + AB - 1) & ~(AB - 1),
                             f"{name}_RX")
                with m.State(f"{name}_RX"):
                    m.d.comb += frd_ready.eq(1)
                    with m.If(frd_valid):
                        m.d.sync += [hold.eq(rd.payload.data), count.eq(0)]
                        m.next = f"{name}_WR"
                with m.State(f"{name}_WR"):
                    m.d.comb += [wport.addr.eq(cnt), wport.data.eq(hold[:24]),
                                 wport.en.eq(cnt < entries)]
                    m.d.sync += [cnt.eq(cnt + 1), hold.eq(hold >> 32), count.eq(count + 1)]
                    with m.If(count + 1 == AB // 4):
                        with m.If(cnt + 1 >= ((entries + AB // 4 - 1) & ~(AB // 4 - 1))):
                            m.d.sync += done
                            m.next = nxt
                        with m.Else():
                            m.next = f"{name}_RX"
            table_states("ROWTAB", D["row_table_addr"], D["in_height"], rt_wr, "COLTAB_CMD", [])
            table_states("COLTAB", D["col_table_addr"], D["in_width"], ct_wr, "TAPBASE",
                         [cnt.eq(0), tb_run.eq(0), tb_kr.eq(0), tb_kc.eq(0), tb_tip.eq(0),
                          tb_partn.eq(0)])

            # per kernel tap: its part and its weight offset within the part ------------------
            with m.State("TAPBASE"):
                stride_words = Mux(is_dw, 1, c_in) << lg_tg
                m.d.comb += [tb_wr.addr.eq(Cat(tb_kc[:KB], tb_kr[:KB])),
                             tb_wr.data.eq(Cat(tb_run[:WGB + 1], tb_partn)), tb_wr.en.eq(1)]
                last_kc = tb_kc + 1 == k
                with m.If(tb_tip + 1 == tpp):
                    m.d.sync += [tb_tip.eq(0), tb_run.eq(0), tb_partn.eq(tb_partn + 1)]
                with m.Else():
                    m.d.sync += [tb_tip.eq(tb_tip + 1), tb_run.eq(tb_run + stride_words)]
                with m.If(last_kc):
                    m.d.sync += [tb_kc.eq(0), tb_kr.eq(tb_kr + 1)]
                    with m.If(tb_kr + 1 == k):
                        m.d.sync += cnt.eq(0)
                        m.next = "ROWBYTES"
                with m.Else():
                    m.d.sync += tb_kc.eq(tb_kc + 1)
            with m.State("ROWBYTES"):               # rowbytes = in_width * in_pixel_bytes
                with m.If(cnt == D["in_width"]):
                    m.d.sync += [rowbytes.eq(acc32), cnt.eq(0), acc32.eq(0)]
                    m.next = "ROWOFF"
                with m.Else():
                    m.d.sync += [acc32.eq(acc_plus(D["in_pixel_bytes"])), cnt.eq(cnt + 1)]

            # row offsets in the accumulator tile: j * out_width --------------------------------
            with m.State("ROWOFF"):
                m.d.comb += [ro_wr.addr.eq(cnt), ro_wr.data.eq(acc32), ro_wr.en.eq(1)]
                with m.If(cnt + 1 >= band_rows):
                    m.d.sync += [band_pixels.eq(acc_plus(ow)), cnt.eq(0)]
                    with m.If(is_sdsa):
                        m.next = "SD_TILE"
                    with m.Else():
                        m.next = "TILE"
                with m.Else():
                    m.d.sync += [acc32.eq(acc_plus(ow)), cnt.eq(cnt + 1)]

            # tiles ----------------------------------------------------------------------------
            with m.State("TILE"):
                with m.If((tile == D["tiles"]) | (g0 >= groups_total)):
                    m.next = "LAYER_END"
                with m.Else():
                    left = groups_total - g0
                    m.d.sync += [gt.eq(Mux(left < D["tile_groups"], left, D["tile_groups"])),
                                 count.eq(0), cnt.eq(0), kind.eq(0), asm_n.eq(0)]
                    m.next = "PAR_CMD"
            with m.State("PAR_CMD"):
                nbytes = Signal(32)
                with m.Switch(KINDS):
                    for kn in (1, 2, 3):
                        with m.Case(kn):
                            m.d.comb += nbytes.eq(sum(gt << (LGL + 2 + b)
                                                      for b in range(2) if (kn >> b) & 1))
                with m.If(is_head):
                    read_cmd(D["params_addr"] + (hd_cg << (LGL + 3)) + (g0 << (LGL + 2)),
                             gt << (LGL + 2), "PAR_RX")
                with m.Else():
                    read_cmd(p_addr, nbytes, "PAR_RX")
            with m.State("PAR_RX"):
                m.d.comb += frd_ready.eq(1)
                with m.If(frd_valid):
                    m.d.comb += asm_shift.eq(1)
                    m.d.sync += asm_n.eq(asm_n + 1)
                    with m.If(asm_n + 1 == pw_beats):
                        m.d.sync += asm_n.eq(0)
                        m.next = "PAR_WR"
            with m.State("PAR_WR"):
                for i in range(3):
                    m.d.comb += [p_wr[i].addr.eq(cnt), p_wr[i].data.eq(asm),
                                 p_wr[i].en.eq(kind == i)]
                with m.If(kind + 1 == KINDS):
                    m.d.sync += [kind.eq(0), cnt.eq(cnt + 1)]
                    with m.If(cnt + 1 == gt):
                        m.d.sync += [cnt.eq(0), acc32.eq(0)]
                        with m.If(is_sdsa):
                            m.next = "SD_KVB"
                        with m.Else():
                            m.next = "GBASE"
                    with m.Else():
                        m.next = "PAR_RX"
                with m.Else():
                    m.d.sync += kind.eq(kind + 1)
                    m.next = "PAR_RX"
            with m.State("GBASE"):
                m.d.sync += [gbase[cnt[:GB]].eq(acc32), acc32.eq(acc_plus(band_pixels)),
                             cnt.eq(cnt + 1)]
                with m.If(cnt + 1 >= gt):
                    m.d.sync += [cnt.eq(0), acc32.eq(0), band.eq(0), r0.eq(0), out_off.eq(0),
                                 res_off.eq(0)]
                    m.next = "BAND"

            # bands ----------------------------------------------------------------------------
            with m.State("BAND"):
                with m.If((band == D["bands"]) | (r0 >= D["out_height"])):
                    m.d.sync += [tile.eq(tile + 1), g0.eq(g0 + D["tile_groups"]),
                                 p_addr.eq(p_addr + D["params_tile_bytes"])]
                    with m.If(pass_all & (is_engine | is_head)):    # the tile's weights done
                        m.d.comb += release.eq(1)
                    m.next = "TILE"
                with m.Else():
                    end = r0 + band_rows
                    m.d.sync += [r1.eq(Mux(end > D["out_height"], D["out_height"], end)),
                                 cnt.eq(0), in_off.eq(0), in_len.eq(0), ts.eq(0),
                                 t_in.eq(0), t_out.eq(0), t_res.eq(0)]
                    with m.If(is_engine):
                        m.next = "BAND_IN"
                    with m.Else():
                        m.next = "T_START"
            bi_lo = Signal(signed(MAPB + 4))
            bi_hi = Signal(signed(MAPB + 4))
            bi_set = Signal()

            with m.State("BAND_IN"):
                # input rows [lo, hi) of the band, clipped to the map: their offset and length.
                # lo and hi are registered in the state's first cycle, then the rows counted.
                row = cnt[:MAPB + 2].as_signed()
                with m.If(~bi_set):
                    m.d.sync += [bi_set.eq(1), bi_lo.eq(Mux(s2, r0 << 1, r0) - pad),
                                 bi_hi.eq(Mux(s2, (r1 - 1) << 1, r1 - 1) - pad + k)]
                with m.Elif((row >= bi_hi) | (cnt >= D["in_height"])):
                    m.d.sync += [pix_row.eq(Mux(bi_lo < 0, 0, bi_lo)), bi_set.eq(0)]
                    m.next = "T_START"
                with m.Elif(row < bi_lo):
                    m.d.sync += [in_off.eq(in_off + rowbytes), cnt.eq(cnt + 1)]
                with m.Else():
                    m.d.sync += [in_len.eq(in_len + rowbytes), cnt.eq(cnt + 1)]

            # timesteps ------------------------------------------------------------------------
            with m.State("T_START"):
                with m.If(ts == tsteps):
                    m.d.sync += [band.eq(band + 1), r0.eq(r0 + band_rows),
                                 out_off.eq(next_out_off), res_off.eq(next_res_off)]
                    m.next = "BAND"
                with m.Else():
                    m.d.sync += part.eq(0)
                    with m.If(is_engine):
                        m.next = "PART"
                    with m.Elif(is_head):
                        m.d.sync += cnt.eq(0)
                        with m.If(slot_full):
                            m.next = "HD_CLR"
                        with m.Else():
                            m.d.comb += ld_allow.eq(1)
                            m.d.sync += part.eq(0)
                            m.next = "T_START"
                    with m.Else():
                        m.next = "DRAIN"
                        m.d.sync += [d_pix.eq(0), out_pix.eq(0), res_pix.eq(0)]
            with m.State("PART"):
                with m.If(part == passes):
                    m.d.sync += [d_pix.eq(0)]
                    m.next = "DRAIN"
                with m.Elif(slot_full):                 # the part's weights are in
                    m.next = "S_CMD"
                with m.Else():
                    m.d.comb += ld_allow.eq(1)
            with m.State("S_CMD"):
                m.d.sync += [beats_left.eq(in_len >> LGAB), beat_j.eq(0), pix_col.eq(0),
                             part_cur.eq(part)]
                with m.If(in_len == 0):
                    m.d.sync += part.eq(part + 1)
                    with m.If(~pass_all):
                        m.d.comb += release.eq(1)
                    m.next = "PART"
                with m.Else():
                    m.d.comb += rq_kind.eq(KIND_S)
                    read_cmd(D["in_addr"] + t_in + in_off, in_len, "STREAM")
            with m.State("STREAM"):
                m.d.comb += [src_active.eq(1), ld_allow.eq(1)]
                with m.If(stream_idle):
                    m.d.sync += part.eq(part + 1)
                    with m.If(~pass_all):              # a part's weights are used once
                        m.d.comb += release.eq(1)
                    m.next = "REWIND"
            with m.State("REWIND"):
                # back to the band's first input row for the next part
                lo2 = Mux(s2, r0 << 1, r0) - pad
                m.d.sync += pix_row.eq(Mux(lo2.as_signed() < 0, 0, lo2))
                m.next = "PART"

            # drain: per pixel of the band, per group of the tile ------------------------------
            with m.State("DRAIN"):
                m.d.sync += [dri_n.eq(0), dwi_n.eq(0), asm_n.eq(0)]
                m.d.sync += [d_npix.eq((r1 - r0) << 0), cnt.eq(0), acc32.eq(0)]
                m.d.sync += [sbuf.eq(0), sstrb.eq(0), s_byte.eq(s_first)]
                m.next = "D_NPIX"
            with m.State("D_NPIX"):                 # pixels of this band: (r1 - r0) * ow
                with m.If(cnt == r1 - r0):
                    m.d.sync += [d_npix.eq(acc32), d_pix.eq(0), out_pix.eq(out_off),
                                 res_pix.eq(res_off), cnt.eq(0), dri_addr.eq(res_off),
                                 dwi_addr.eq(out_off), drain_on.eq(1)]
                    m.next = "D_PIX"
                with m.Else():
                    m.d.sync += [acc32.eq(acc_plus(ow)), cnt.eq(cnt + 1)]
            with m.State("D_PIX"):
                with m.If(d_pix == d_npix):
                    # every group retired and its beats sent
                    with m.If(~em_busy & ~em_nx & ~lu_busy & ~ret_pend):
                        m.d.sync += drain_on.eq(0)
                        m.d.sync += [ts.eq(ts + 1), t_in.eq(t_in + D["in_t_stride"]),
                                     t_out.eq(t_out + D["out_t_stride"]),
                                     t_res.eq(t_res + s_tstride),
                                     next_out_off.eq(out_pix), next_res_off.eq(res_pix)]
                        m.next = "T_START"
                with m.Else():
                    m.d.sync += d_g.eq(0)
                    m.next = "D_WAIT"
            with m.State("D_WAIT"):
                # the group's stream word (when needed), then the accumulator read
                go = Signal()
                with m.If(s_need):
                    m.d.comb += go.eq(collect(s_nbeats))
                with m.Else():
                    m.d.comb += go.eq(1)
                # the read is issued in every cycle of this state: the data is there in the next
                m.d.comb += [d_read.eq(1), d_addr.eq(gbase[d_g[:GB]] + d_pix)]
                with m.If(go):
                    m.d.sync += drain_addr.eq(d_addr)
                    m.next = "D_CALC"
            with m.State("D_CALC"):
                # the group's accumulators (read at drain_addr) and stream word into the lane
                # unit when its stage 1 is free; the unit's retire logic finishes the group
                m.d.comb += draining.eq(1)
                with m.If(lu_free):
                    m.d.comb += lu_start.eq(1)
                    m.d.sync += asm_n.eq(0)                  # the stream word is taken
                    sw = {lb: lanes_of(asm_word(lb), lb) for lb in range(3)}
                    for i in range(L):
                        sval = Mux(s_lgvb == 2, sw[2][i], Mux(s_lgvb == 1, sw[1][i], sw[0][i]))
                        accv = Mux(wide, wide_lanes[i], acc_lanes[i])
                        m.d.sync += [
                            x_lanes[i].eq(Mux(is_lif, sval, accv)),
                            res_lanes[i].eq(Mux(D["res_addr"] != 0, sval, 0)),
                        ]
                    m.d.sync += x_mode.eq(Mux(is_lif | (D["has_bias"] == 0), X_AS_IS,
                                              Mux(wide, X_BIAS, X_BIAS_SAT)))
                    m.d.sync += [t1.addr.eq(drain_addr), t1.last.eq(d_g + 1 == gt),
                                 t1.drn.eq(1),
                                 t1.real.eq(lanes_below((g0 + d_g) << LGL, D["out_channels"]))]
                    # clear the accumulator as it is read
                    with m.If(~is_lif):
                        with m.If(wide & has_v):
                            if has_v:
                                v_write(drain_addr, SRC_ZERO)
                        with m.Else():
                            acc_write(drain_addr, SRC_ZERO)
                    # the next group, or the next pixel
                    with m.If(d_g + 1 == gt):
                        m.d.sync += [d_g.eq(0), d_pix.eq(d_pix + 1),
                                     out_pix.eq(out_pix + D["out_pixel_bytes"]),
                                     res_pix.eq(res_pix + s_pb)]
                        with m.If(d_pix + 1 == d_npix):
                            m.next = "D_PIX"
                        with m.Else():
                            m.next = "D_WAIT"
                    with m.Else():
                        m.d.sync += d_g.eq(d_g + 1)
                        m.next = "D_WAIT"

            # -- attention (sdsa): tiles of heads, bands of token rows, timesteps --------------
            with m.State("SD_DGW"):                 # dim * gph: K^T V words of one head
                with m.If(cnt == gph):
                    m.d.sync += [dgw.eq(acc32), cnt.eq(0), acc32.eq(0)]
                    m.next = "SD_TBITS"
                with m.Else():
                    m.d.sync += [acc32.eq(acc_plus(dim)), cnt.eq(cnt + 1)]
            with m.State("SD_TBITS"):               # tile_groups * dim: channels of a tile
                with m.If(cnt == D["tile_groups"]):
                    m.d.sync += [tile_bits.eq(acc32), cnt.eq(0), acc32.eq(0)]
                    m.next = "ROWOFF"
                with m.Else():
                    m.d.sync += [acc32.eq(acc_plus(dim)), cnt.eq(cnt + 1)]
            with m.State("SD_TILE"):
                with m.If((tile == D["tiles"]) | (h0 >= D["heads"])):
                    m.d.sync += cnt.eq(0)
                    m.next = "SD_END"
                # earlier tiles' records written (none left in the write slot either)
                with m.Elif((tile == 0) | self.write_idle & ~ws_valid):
                    left = D["heads"] - h0
                    m.d.sync += [hs.eq(Mux(left < D["tile_groups"], left, D["tile_groups"])),
                                 cnt.eq(0), acc32.eq(0), hsdim.eq(0)]
                    m.next = "SD_HS"
            with m.State("SD_HS"):                  # hs * gph words, hs * dim channels
                with m.If(cnt == hs):
                    m.d.sync += [gt.eq(acc32), cnt.eq(0), kind.eq(0), asm_n.eq(0),
                                 fb.eq(base0 >> LGAW),
                                 nb.eq(((base0 + hsdim - 1) >> LGAW) - (base0 >> LGAW) + 1)]
                    m.next = "PAR_CMD"
                with m.Else():
                    m.d.sync += [acc32.eq(acc_plus(gph)), hsdim.eq(hsdim + dim), cnt.eq(cnt + 1)]
            with m.State("SD_KVB"):                 # K^T V base of each head of the tile
                m.d.sync += [gbase[cnt[:GB]].eq(acc32), acc32.eq(acc_plus(dgw)), cnt.eq(cnt + 1)]
                with m.If(cnt + 1 >= hs):
                    m.d.sync += [band.eq(0), r0.eq(0), yband_off.eq(0), oband_off.eq(0)]
                    m.next = "SD_BAND"
            with m.State("SD_BAND"):
                with m.If((band == D["bands"]) | (r0 >= D["in_height"])):
                    m.d.sync += [tile.eq(tile + 1), h0.eq(h0 + D["tile_groups"]),
                                 base0.eq(base0 + tile_bits),
                                 p_addr.eq(p_addr + D["params_tile_bytes"])]
                    m.next = "SD_TILE"
                with m.Else():
                    end = r0 + band_rows
                    m.d.sync += [r1.eq(Mux(end > D["in_height"], D["in_height"], end)),
                                 ts.eq(0), t_in.eq(0), t_out.eq(0), cnt.eq(0), acc32.eq(0)]
                    m.next = "SD_NTOK"
            with m.State("SD_NTOK"):                # tokens of the band: (r1 - r0) * width
                with m.If(cnt == r1 - r0):
                    m.d.sync += [ntok.eq(acc32), cnt.eq(0)]
                    m.next = "SD_T"
                with m.Else():
                    m.d.sync += [acc32.eq(acc_plus(D["in_width"])), cnt.eq(cnt + 1)]
            with m.State("SD_T"):
                with m.If(ts == tsteps):
                    m.d.sync += [band.eq(band + 1), r0.eq(r0 + band_rows),
                                 yband_off.eq(next_y), oband_off.eq(next_yo)]
                    m.next = "SD_BAND"
                with m.Else():
                    m.d.sync += cnt.eq(0)
                    m.next = "SD_CLR"
            with m.State("SD_CLR"):                 # K^T V counts to zero
                acc_write(cnt, SRC_ZERO)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt + 1 == cfg.acc_words):
                    m.d.sync += [tok_n.eq(0), kv_off.eq(0)]
                    m.next = "SD_KVT"
            with m.State("SD_KVT"):                 # K^T V from every token of the map
                with m.If(tok_n == D["tokens"]):
                    m.d.sync += [tok_n.eq(0), y_off.eq(yband_off), yo_off.eq(oband_off),
                                 mrow.eq(0)]
                    m.next = "SD_YT"
                with m.Else():
                    m.d.sync += count.eq(0)
                    m.next = "SD_K_CMD"
            for name, addr, nxt in (("K", D["k_addr"], "SD_V_CMD"), ("V", D["v_addr"], "SD_KVH"),
                                    ("Q", D["in_addr"], "SD_Q_DONE")):
                off = kv_off if name != "Q" else y_off
                with m.State(f"SD_{name}_CMD"):
                    m.d.sync += count.eq(0)
                    read_cmd(addr + t_in + off + (fb << LGAB), nb << LGAB, f"SD_{name}_RX")
                with m.State(f"SD_{name}_RX"):
                    m.d.comb += frd_ready.eq(1)
                    with m.If(frd_valid):
                        for b in range(2):
                            m.d.comb += [kv_wr[b].addr.eq(Cat((count >> 1)[:KVB], name == "V")),
                                         kv_wr[b].data.eq(rd.payload.data),
                                         kv_wr[b].en.eq(count[0] == b)]
                        m.d.sync += count.eq(count + 1)
                        with m.If(count + 1 == nb):
                            m.d.sync += [hl.eq(0), rel.eq(base0[:LGAW])]
                            m.next = nxt
            with m.State("SD_KVH"):
                with m.If(hl == hs):
                    m.d.sync += [tok_n.eq(tok_n + 1), kv_off.eq(kv_off + D["in_pixel_bytes"])]
                    m.next = "SD_KVT"
                with m.Else():
                    m.d.sync += kscan.eq(window)
                    m.next = "SD_KVH2"
            with m.State("SD_KVH2"):
                m.d.comb += win_sel.eq(1)
                m.d.sync += [vreg.eq(window), grp.eq(0)] + k_next
                m.next = "SD_KV_EV"
            with m.State("SD_KV_EV"):               # per K bit i: KV[i] += V, group by group
                with m.If(~kc_valid):
                    m.d.sync += [hl.eq(hl + 1), rel.eq(rel + dim)]
                    m.next = "SD_KVH"
                with m.Else():
                    vgroups = Array(vreg[L * gi:L * (gi + 1)] for gi in range(GPH))
                    m.d.comb += [kv_emit.eq(1), kv_addr.eq(gbase[hl[:GB]] + kc_row + grp),
                                 kv_bits.eq(vgroups[grp]), self.event.eq(grp == 0)]
                    with m.If(grp + 1 == gph):
                        m.d.sync += [grp.eq(0)] + k_next
                    with m.Else():
                        m.d.sync += grp.eq(grp + 1)
            with m.State("SD_YT"):                  # the band's tokens: Q KV, LIF, spikes
                with m.If(upd_busy):
                    pass                             # the last K^T V updates land first
                with m.Elif(tok_n == ntok):
                    m.d.sync += [ts.eq(ts + 1), t_in.eq(t_in + D["in_t_stride"]),
                                 t_out.eq(t_out + D["out_t_stride"]), next_y.eq(y_off),
                                 next_yo.eq(yo_off)]
                    m.next = "SD_T"
                with m.Else():
                    m.next = "SD_Q_CMD"
            with m.State("SD_Q_DONE"):              # the output record's slice: earlier tiles'
                m.d.sync += count.eq(0)              # bits merged, this tile's cleared
                m.d.sync += ob_ok.eq(0)
                with m.If(tile == 0):
                    m.next = "SD_YH"
                with m.Else():
                    m.next = "SD_O_RCMD"
            with m.State("SD_O_RCMD"):
                read_cmd(D["out_addr"] + t_out + yo_off + (fb << LGAB), nb << LGAB, "SD_O_RX")
            with m.State("SD_O_RX"):
                m.d.comb += frd_ready.eq(1)
                with m.If(frd_valid):                # beat 0's bits below the slice
                    m.d.comb += [ob_e.eq(0), ob_we_lo.eq(count == 0),
                                 ob_new_lo.eq(rd.payload.data
                                              & ((Const(1, AW + 1) << base0[:LGAW]) - 1))]
                    m.d.sync += count.eq(count + 1)
                    with m.If(count + 1 == nb):
                        m.next = "SD_YH"
            with m.State("SD_YH"):
                with m.If(hl == hs):
                    m.d.sync += count.eq(0)
                    m.next = "SD_O_WCMD"
                with m.Else():
                    m.d.sync += [qscan.eq(window), grp.eq(0)]
                    m.d.sync += att_ok.eq(0)
                    m.next = "SD_YQ"
            with m.State("SD_YQ"):                  # the first Q bit off the scan
                m.d.sync += q_next
                m.next = "SD_Y_EV"
            with m.State("SD_Y_EV"):                # per Q bit i: att += KV[i], group by group
                with m.If(qc_valid):
                    m.d.comb += [y_read.eq(1), y_addr.eq(gbase[hl[:GB]] + qc_row + grp)]
                    m.d.sync += [y_v.eq(1), y_grp.eq(grp)]
                    with m.If(grp + 1 == gph):
                        m.d.sync += [grp.eq(0)] + q_next
                    with m.Else():
                        m.d.sync += grp.eq(grp + 1)
                with m.Elif(~y_v):
                    m.d.sync += grp.eq(0)
                    m.next = "SD_L_A"
            with m.State("SD_L_A"):                 # the group's neurons through the LIF
                m.d.comb += att_rd_l.addr.eq(grp)
                sel = Mux(att_ok.bit_select(grp, 1), att_rd_l.data, 0)
                m.d.sync += [drain_addr.eq(mrow + jw), d_g.eq(jw)]
                m.d.sync += [x_lanes[i].eq(sel[ATTB * i:ATTB * (i + 1)]) for i in range(L)]
                m.d.sync += x_mode.eq(X_AS_IS)
                m.next = "SD_L_R"
            with m.State("SD_L_R"):
                m.d.comb += draining.eq(1)
                m.next = "SD_L_S"
            with m.State("SD_L_S"):
                m.d.comb += [draining.eq(1), lu_start.eq(1)]
                m.next = "SD_L_C"
            with m.State("SD_L_C"):
                m.d.comb += draining.eq(1)
                with m.If(~lu_busy):
                    if has_v:
                        with m.If(~last_t):
                            v_write(drain_addr, SRC_NEW)
                    lane_ok = lanes_below(grp << LGL, dim)
                    pos = rel + (grp << LGL)
                    placed = Signal(2 * AW)
                    m.d.comb += placed.eq((spike_word & lane_ok) << pos[:LGAW])
                    # (the next beat only when bits spill into it: past the slice's last
                    # beat its bank address would wrap)
                    m.d.comb += [ob_e.eq(pos >> LGAW), ob_we_lo.eq(1),
                                 ob_we_hi.eq(placed[AW:].any()),
                                 ob_new_lo.eq(ob_lo | placed[:AW]),
                                 ob_new_hi.eq(ob_hi | placed[AW:])]
                    m.d.sync += jw.eq(jw + 1)
                    with m.If(grp + 1 == gph):
                        m.d.sync += [grp.eq(0), hl.eq(hl + 1), rel.eq(rel + dim)]
                        m.next = "SD_YH"
                    with m.Else():
                        m.d.sync += grp.eq(grp + 1)
                        m.next = "SD_L_A"
            with m.State("SD_O_WCMD"):
                write_cmd(D["out_addr"] + t_out + yo_off + (fb << LGAB), nb << LGAB, "SD_O_W")
            with m.State("SD_O_W"):
                m.d.comb += [ob_e.eq(count), wr.valid.eq(1), wr.payload.data.eq(ob_lo),
                             wr.payload.strb.eq((1 << AB) - 1)]
                with m.If(wr.ready):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count + 1 == nb):
                        m.d.sync += [tok_n.eq(tok_n + 1), y_off.eq(y_off + D["in_pixel_bytes"]),
                                     yo_off.eq(yo_off + D["out_pixel_bytes"]),
                                     mrow.eq(mrow + gt), jw.eq(0)]
                        m.next = "SD_YT"

            # -- head: token sums -> LIF -> linear, per timestep --------------------------------
            with m.State("HD_SETUP"):
                m.d.sync += [cnt.eq(0), acc32.eq(0), part_cur.eq(0)]
                m.next = "ROWOFF"
            with m.State("HD_CLR"):                 # the token sums to zero
                wide_write(SUMBASE + cnt, SRC_ZERO)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt + 1 >= hd_cg):
                    m.d.sync += [tok_n.eq(0), kv_off.eq(0)]
                    m.next = "HD_TOK"
            with m.State("HD_TOK"):
                with m.If(tok_n == D["tokens"]):
                    m.d.sync += hd_g.eq(0)
                    m.next = "HD_G"
                with m.Else():
                    m.d.sync += [hd_g.eq(0), asm_n.eq(0)]
                    read_cmd(D["in_addr"] + t_in + kv_off, D["in_pixel_bytes"], "HD_SUM_RX")
            with m.State("HD_SUM_RX"):
                with m.If(collect(s_nbeats)):
                    m.d.comb += [sum_emit.eq(1), sum_addr.eq(SUMBASE + hd_g)]
                    m.next = "HD_SUM_WR"
            with m.State("HD_SUM_WR"):              # the sum through the update pipeline (it
                with m.If(~upd_busy):                # reads the assembler, held until then)
                    m.d.sync += [hd_g.eq(hd_g + 1), asm_n.eq(0)]
                    with m.If(hd_g + 1 == hd_cg):
                        m.d.sync += [tok_n.eq(tok_n + 1), kv_off.eq(kv_off + D["in_pixel_bytes"])]
                        m.next = "HD_TOK"
                    with m.Else():
                        m.next = "HD_SUM_RX"
            with m.State("HD_G"):                   # per channel group: sum -> LIF -> events
                with m.If(hd_g == hd_cg):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.sync += [count.eq(0), asm_n.eq(0), kind.eq(0)]
                    read_cmd(D["params_addr"] + (hd_g << (LGL + 3)), L * 8, "HD_LP_RX")
            with m.State("HD_LP_RX"):               # its v_th and lif_bias words
                with m.If(collect(pw_beats)):
                    for i in (1, 2):
                        m.d.comb += [p_wr[i].addr.eq(0), p_wr[i].data.eq(asm),
                                     p_wr[i].en.eq(kind == i - 1)]
                    m.d.sync += [asm_n.eq(0), kind.eq(kind + 1)]
                    with m.If(kind == 1):
                        m.d.sync += [drain_addr.eq(SUMBASE + hd_g), d_g.eq(0)]
                        m.next = "HD_S_RD"
            with m.State("HD_S_RD"):
                m.d.comb += draining.eq(1)
                m.next = "HD_S_GET"
            with m.State("HD_S_GET"):
                m.d.comb += draining.eq(1)
                m.d.sync += [x_lanes[i].eq(wide_lanes[i]) for i in range(L)]
                m.d.sync += x_mode.eq(X_SUM_SAT)
                m.d.sync += drain_addr.eq(hd_g)
                m.next = "HD_M_RD"
            with m.State("HD_M_RD"):
                m.d.comb += draining.eq(1)
                m.next = "HD_M_S"
            with m.State("HD_M_S"):
                m.d.comb += [draining.eq(1), lu_start.eq(1)]
                m.next = "HD_M_GET"
            with m.State("HD_M_GET"):               # the membrane; spikes become events
                m.d.comb += draining.eq(1)
                with m.If(~lu_busy):
                    if has_v:
                        with m.If(~last_t):
                            v_write(drain_addr, SRC_NEW)
                    real = lanes_below(hd_g << LGL, D["in_channels"])
                    m.d.sync += [hold.eq(spike_word & real), have.eq(1), h_cbase.eq(hd_g << LGL),
                                 h_unit.eq(1), nz.eq(0), mag_on.eq(0)]
                    m.next = "HD_EV"
            with m.State("HD_EV"):
                with m.If(stream_idle):
                    m.d.sync += hd_g.eq(hd_g + 1)
                    m.next = "HD_G"

            with m.State("LAYER_END"):
                m.d.comb += self.layer_done.eq(1)
                m.d.sync += [layer.eq(layer + 1), daddr.eq(daddr + DESCRIPTOR_WORDS * 4)]
                m.next = "NEXT"

            with m.State("FINISH"):                 # (with no command left in a slot)
                m.d.comb += self.done.eq(~rs_valid & ~ws_valid)

        # the write ports' data
        sources = {SRC_UPD: upd, SRC_NEW: v_new}

        def port_data(port, src, width, choices):
            with m.Switch(src):
                for code in choices:
                    with m.Case(code):
                        m.d.comb += port.data.eq(Cat(*[x[:width] for x in sources[code]]))
                with m.Default():
                    m.d.comb += port.data.eq(0)
        m.d.comb += [a_wr.en.eq(a_we), a_wr.addr.eq(a_waddr)]
        port_data(a_wr, a_src, A, (SRC_UPD,))
        if has_v:
            m.d.comb += [v_wr.en.eq(v_we), v_wr.addr.eq(v_waddr)]
            port_data(v_wr, v_src, V, (SRC_UPD, SRC_NEW))

        # the command ports (the checks above)
        m.d.comb += [self.rd_cmd.valid.eq(rs_valid & rs_endv & ~rs_bad & ~q_full),
                     self.wr_cmd.valid.eq(ws_valid & ws_endv & ~ws_bad)]
        with m.If(rs_bad | ws_bad):
            m.d.comb += fault("address")
        return m
