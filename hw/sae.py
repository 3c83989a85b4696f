"""Spike-sparse accumulate engine: work in proportion to input spikes, additions only."""

import enum

from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.sae import SAE_FLUSH_CYCLES, SAE_OUT_FIFO_DEPTH, SAEConfig, SAEParams

from .common import mul_const, saturate, struct_layout
from .encoder import SpikeEncoder

__all__ = ["SAEEngine", "SpikeAccumulator", "weight_words", "bias_words"]


def _pack(values, bits):
    word = 0
    for j, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (j * bits)
    return word


def weight_words(config, params):
    """Initial contents of the weight memory (see the addressing notes in `spec.sae`)."""
    k, groups, lanes = config.kernel, config.out_groups, config.lanes
    w = params.weight
    words = []

    def lanes_of(channels):
        return [channels(j) for j in range(lanes)]

    if config.mode == "depthwise":
        for g in range(groups):
            for kh in range(k):
                for kw in range(k):
                    words.append(_pack(lanes_of(
                        lambda j, g=g, kh=kh, kw=kw: w[g * lanes + j, 0, kh, kw]
                        if g * lanes + j < config.out_channels else 0), config.w_bits))
        return words
    for ci in range(config.in_channels):
        for kh in range(k):
            for kw in range(k):
                for g in range(groups):
                    words.append(_pack(lanes_of(
                        lambda j, ci=ci, kh=kh, kw=kw, g=g: w[g * lanes + j, ci, kh, kw]
                        if g * lanes + j < config.out_channels else 0), config.w_bits))
    return words


def bias_words(config, params):
    lanes = config.lanes
    return [_pack([params.bias[g * lanes + j] if g * lanes + j < config.out_channels else 0
                   for j in range(lanes)], config.acc_bits) for g in range(config.out_groups)]


class _Mode(enum.Enum):
    CLEAR = 0   # after reset: zero every accumulator
    ACC = 1     # take events, issue accumulator updates
    FLUSH = 2   # the frame's last update is in flight
    DRAIN = 3   # stream out every accumulator (plus bias) and zero it


class SAEEngine(wiring.Component):
    """Accumulates weight rows for address events; drains the accumulators at each frame end.

    Input: events (`SAEConfig.event_fields`, from `SpikeEncoder`). For each spike the engine
    walks the output pixels its kernel touches (per-row and per-column tables made at
    generation time, so no division or multiplication in hardware) and, for each, reads
    `lanes` weights and the matching accumulator word, adds with saturation and writes back:
    one accumulator word per cycle. Depthwise: one word per touched pixel, only the event's lane
    updated. After the event marked `last`, every accumulator word is streamed out in address
    order (output pixels in raster order, `out_groups` beats each) with the bias added, and
    cleared for the next frame.

    The update pipeline (read, RAM output register, add, write) is 4 cycles deep; an update
    whose accumulator word is still in flight waits (`spec.sae` models the cost). The drain
    feeds an output FIFO under a credit counter, so output stalls never stop a pipeline stage.
    After a reset the engine first zeroes all `acc_words` accumulators.

    Parameters
    ----------
    config : spec.SAEConfig
    params : spec.SAEParams
    """

    def __init__(self, config, params):
        if not isinstance(config, SAEConfig):
            raise TypeError(f"config must be an SAEConfig, not {config!r}")
        if not isinstance(params, SAEParams):
            raise TypeError(f"params must be SAEParams, not {params!r}")
        self._config, self._params = config, SAEParams.checked(config, params.weight,
                                                                params.bias)
        super().__init__({
            "i": In(stream.Signature(struct_layout(config.event_fields()))),
            "o": Out(stream.Signature(struct_layout(config.output_fields()))),
        })

    def elaborate(self, platform):
        cfg, prm = self._config, self._params
        lanes, groups, ab, wb = cfg.lanes, cfg.out_groups, cfg.acc_bits, cfg.w_bits
        n_acc, ops_pp = cfg.acc_words, cfg.ops_per_pixel
        depthwise = cfg.mode == "depthwise"
        m = Module()

        wmem = memory.Memory(shape=unsigned(lanes * wb), depth=cfg.weight_words,
                             init=weight_words(cfg, prm))
        m.submodules.wmem = wmem
        w_rd = wmem.read_port()
        # same-address read and write in one cycle never happen: updates wait for their word
        # (hazard check), and the drain writes a word the cycle after reading it
        amem = memory.Memory(shape=unsigned(lanes * ab), depth=n_acc, init=[],
                             attrs={"no_rw_check": 1})
        m.submodules.amem = amem
        a_rd = amem.read_port()
        a_wr = amem.write_port()

        mode = Signal(_Mode)
        acc_addr_bits = range(n_acc)

        # -- per-axis tables: touched count, first accumulator offset, first weight offset ----
        def table(entries, index):
            counts = Array(Const(e[0], range(cfg.kernel + 1)) for e in entries)
            accs = Array(Const(e[1], acc_addr_bits) for e in entries)
            ws = Array(Const(e[2], range(cfg.weight_words + 1)) for e in entries)
            return counts[index], accs[index], ws[index]

        ev = self.i.payload
        n_rows_in, acc_row_in, w_row_in = table(cfg.row_table(), ev.row)
        n_cols_in, acc_col_in, w_col_in = table(cfg.col_table(), ev.col)
        if depthwise:
            w_base_in = mul_const(ev.group, cfg.kernel * cfg.kernel)
        else:
            w_base_in = mul_const(ev.channel, cfg.kernel * cfg.kernel * groups)

        # -- the update generator ---------------------------------------------------------------
        busy = Signal()
        frame_end = Signal()       # the frame's last event has been taken
        rows_left = Signal(range(cfg.kernel + 1))
        cols_left = Signal(range(cfg.kernel + 1))
        n_cols = Signal(range(cfg.kernel + 1))
        g = Signal(range(max(2, ops_pp)))
        acc_row = Signal(acc_addr_bits)
        acc_col = Signal(acc_addr_bits)
        acc_col0 = Signal(acc_addr_bits)
        acc_extra = Signal(range(max(2, groups)))
        w_base = Signal(range(cfg.weight_words + 1))
        w_row = Signal(range(cfg.weight_words + 1))
        w_col = Signal(range(cfg.weight_words + 1))
        w_col0 = Signal(range(cfg.weight_words + 1))
        lane_mask = Signal(lanes)

        op_acc = Signal(acc_addr_bits)
        op_w = Signal(range(cfg.weight_words))
        m.d.comb += [
            op_acc.eq(acc_row + acc_col + g + acc_extra),
            op_w.eq(w_base + w_row + w_col + g),
        ]

        # in-flight updates: s1 (RAM read), s2 (RAM output registered), s3 (sum, being written)
        s_valid = [Signal(name=f"u{k}_valid") for k in range(1, 4)]
        s_addr = [Signal(acc_addr_bits, name=f"u{k}_addr") for k in range(1, 4)]
        d1_valid = Signal()  # the drain's clear write (below) is in flight too
        d1_addr = Signal(acc_addr_bits)
        hazard = Cat(d1_valid & (d1_addr == op_acc),
                     *(v & (a == op_acc) for v, a in zip(s_valid, s_addr, strict=True))).any()
        issue = Signal()
        m.d.comb += issue.eq((mode == _Mode.ACC) & busy & ~hazard)
        final_op = (g == ops_pp - 1) & (cols_left == 1) & (rows_left == 1)

        take = Signal()
        m.d.comb += [
            self.i.ready.eq((mode == _Mode.ACC) & ~frame_end & (~busy | (issue & final_op))),
            take.eq(self.i.valid & self.i.ready),
        ]

        with m.If(issue):
            with m.If(g != ops_pp - 1):
                m.d.sync += g.eq(g + 1)
            with m.Else():
                m.d.sync += g.eq(0)
                with m.If(cols_left != 1):
                    m.d.sync += [
                        cols_left.eq(cols_left - 1),
                        acc_col.eq(acc_col - groups),
                        w_col.eq(w_col + cfg.stride * cfg.w_kw_step),
                    ]
                with m.Else():
                    m.d.sync += [cols_left.eq(n_cols), acc_col.eq(acc_col0), w_col.eq(w_col0)]
                    with m.If(rows_left != 1):
                        m.d.sync += [
                            rows_left.eq(rows_left - 1),
                            acc_row.eq(acc_row - cfg.out_width * groups),
                            w_row.eq(w_row + cfg.stride * cfg.w_kh_step),
                        ]
                    with m.Else():
                        m.d.sync += busy.eq(0)
        with m.If(take):
            works = ev.spike & (n_rows_in != 0) & (n_cols_in != 0)
            m.d.sync += [
                busy.eq(works),
                frame_end.eq(ev.last),
                rows_left.eq(n_rows_in), cols_left.eq(n_cols_in), n_cols.eq(n_cols_in),
                g.eq(0),
                acc_row.eq(acc_row_in), acc_col.eq(acc_col_in), acc_col0.eq(acc_col_in),
                w_base.eq(w_base_in), w_row.eq(w_row_in), w_col.eq(w_col_in),
                w_col0.eq(w_col_in),
                acc_extra.eq(ev.group if depthwise else 0),
                lane_mask.eq((Const(1, lanes) << ev.lane) if depthwise else (1 << lanes) - 1),
            ]

        # -- update pipeline: read, register, add, write ---------------------------------------
        s1_mask, s2_mask = Signal(lanes), Signal(lanes)
        s2_acc, s2_w = Signal(lanes * ab), Signal(lanes * wb)
        s3_sum = Signal(lanes * ab)
        m.d.sync += [
            s_valid[0].eq(issue), s_addr[0].eq(op_acc), s1_mask.eq(lane_mask),
            s_valid[1].eq(s_valid[0]), s_addr[1].eq(s_addr[0]), s2_mask.eq(s1_mask),
            s2_acc.eq(a_rd.data), s2_w.eq(w_rd.data),
            s_valid[2].eq(s_valid[1]), s_addr[2].eq(s_addr[1]),
        ]
        for j in range(lanes):
            acc_j = s2_acc[j * ab:(j + 1) * ab].as_signed()
            w_j = Mux(s2_mask[j], s2_w[j * wb:(j + 1) * wb].as_signed(), 0)
            m.d.sync += s3_sum[j * ab:(j + 1) * ab].eq(saturate(acc_j + w_j, ab))
        m.d.comb += w_rd.addr.eq(op_w)

        # -- drain: read, clear, add bias, output FIFO under credits --------------------------
        fifo_depth = SAE_OUT_FIFO_DEPTH
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(
            width=lanes * ab + 2, depth=fifo_depth)
        outstanding = Signal(range(fifo_depth + 1))
        pop = Signal()
        d_addr = Signal(acc_addr_bits)
        d_g = Signal(range(max(2, groups)))
        d_issue = Signal()
        m.d.comb += d_issue.eq((mode == _Mode.DRAIN) & (outstanding < fifo_depth))
        m.d.sync += outstanding.eq(outstanding + d_issue - pop)

        d1_first, d1_last = Signal(), Signal()
        d2_valid, d2_first, d2_last = Signal(), Signal(), Signal()
        d2_acc = Signal(lanes * ab)
        d3_valid = Signal()
        d3_word = Signal(lanes * ab + 2)
        m.d.sync += [
            d1_valid.eq(d_issue), d1_addr.eq(d_addr),
            d1_first.eq(d_addr == 0), d1_last.eq(d_addr == n_acc - 1),
            d2_valid.eq(d1_valid), d2_first.eq(d1_first), d2_last.eq(d1_last),
            d2_acc.eq(a_rd.data),
            d3_valid.eq(d2_valid),
        ]
        if cfg.bias:
            bmem = memory.Memory(shape=unsigned(lanes * ab), depth=groups,
                                 init=bias_words(cfg, prm))
            m.submodules.bmem = bmem
            b_rd = bmem.read_port()
            m.d.comb += b_rd.addr.eq(d_g)
            d2_bias = Signal(lanes * ab)
            m.d.sync += d2_bias.eq(b_rd.data)
        outs = []
        for j in range(lanes):
            acc_j = d2_acc[j * ab:(j + 1) * ab].as_signed()
            if cfg.bias:
                acc_j = saturate(acc_j + d2_bias[j * ab:(j + 1) * ab].as_signed(), ab)
            outs.append(acc_j)
        m.d.sync += d3_word.eq(Cat(*outs, d2_first, d2_last))
        m.d.comb += [
            out_fifo.w_data.eq(d3_word),
            out_fifo.w_en.eq(d3_valid),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.as_value().eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
            pop.eq(out_fifo.r_rdy & self.o.ready),
        ]

        # -- the accumulator RAM's ports, by mode ---------------------------------------------
        clear_addr = Signal(acc_addr_bits)
        m.d.comb += a_rd.addr.eq(Mux(mode == _Mode.DRAIN, d_addr, op_acc))
        with m.If(mode == _Mode.CLEAR):
            m.d.comb += [a_wr.addr.eq(clear_addr), a_wr.data.eq(0), a_wr.en.eq(1)]
        with m.Elif(d1_valid):
            m.d.comb += [a_wr.addr.eq(d1_addr), a_wr.data.eq(0), a_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [a_wr.addr.eq(s_addr[2]), a_wr.data.eq(s3_sum), a_wr.en.eq(s_valid[2])]

        # -- mode sequencing --------------------------------------------------------------------
        flush = Signal(range(SAE_FLUSH_CYCLES + 1))
        with m.Switch(mode):
            with m.Case(_Mode.CLEAR):
                m.d.sync += clear_addr.eq(clear_addr + 1)
                with m.If(clear_addr == n_acc - 1):
                    m.d.sync += mode.eq(_Mode.ACC)
            with m.Case(_Mode.ACC):
                with m.If(frame_end & ~busy):
                    m.d.sync += [mode.eq(_Mode.FLUSH), flush.eq(SAE_FLUSH_CYCLES - 1)]
            with m.Case(_Mode.FLUSH):
                m.d.sync += flush.eq(flush - 1)
                with m.If(flush == 0):
                    m.d.sync += [mode.eq(_Mode.DRAIN), d_addr.eq(0), d_g.eq(0)]
            with m.Case(_Mode.DRAIN):
                with m.If(d_issue):
                    m.d.sync += [d_addr.eq(d_addr + 1), d_g.eq(Mux(d_g == groups - 1, 0, d_g + 1))]
                    with m.If(d_addr == n_acc - 1):
                        m.d.sync += [mode.eq(_Mode.ACC), frame_end.eq(0)]
        return m


class SpikeAccumulator(wiring.Component):
    """Spike encoder and accumulate engine together: dense spike beats in, accumulators out.

    Input beats follow `SAEConfig.input_fields`, output beats `SAEConfig.output_fields`.
    """

    def __init__(self, config, params):
        self._config = config
        self.encoder = SpikeEncoder(config)
        self.engine = SAEEngine(config, params)
        super().__init__({
            "i": In(stream.Signature(struct_layout(config.input_fields()))),
            "o": Out(stream.Signature(struct_layout(config.output_fields()))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.encoder = self.encoder
        m.submodules.engine = self.engine
        wiring.connect(m, wiring.flipped(self.i), self.encoder.i)
        wiring.connect(m, self.encoder.o, self.engine.i)
        wiring.connect(m, self.engine.o, wiring.flipped(self.o))
        return m

