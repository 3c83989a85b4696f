"""Spike-sparse accumulate engine: work in proportion to input spikes, additions only."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.sae import SAEConfig, SAEParams

from .common import mul_const, saturate, struct_layout
from .depthwise import DepthwiseEngine
from .encoder import SpikeEncoder
from .sae_drain import Drain, Mode, pack_words

__all__ = ["SAEEngine", "SpikeAccumulator", "weight_words", "shift_left"]


def shift_left(value, amount, most):
    """`value << amount` for `amount` in 0 .. `most`: one level of multiplexers per bit of
    `amount` (each a constant shift, i.e. wiring), `len(value) + most` bits wide, signed if
    `value` is."""
    result = value
    for b in range(len(amount)):
        result = Mux(amount[b], result.shift_left(1 << b), result)
    result = result[:len(value) + most]
    return result.as_signed() if value.shape().signed else result


def weight_words(config, params):
    """Initial contents of the linear/conv weight memory: word (c_in, kh, kw, g) holds the
    weights of output channels g*lanes .. g*lanes+lanes-1 (see `spec.sae`)."""
    k, groups, lanes, w = config.kernel, config.out_groups, config.lanes, params.weight
    return [pack_words([w[g * lanes + j, ci, kh, kw] if g * lanes + j < config.out_channels
                        else 0 for j in range(lanes)], config.w_bits)
            for ci in range(config.in_channels) for kh in range(k) for kw in range(k)
            for g in range(groups)]


class SAEEngine(wiring.Component):
    """Accumulates weight rows for address events; drains the accumulators at each frame end.
    Linear and k x k convolution (depthwise: `DepthwiseEngine`).

    Input: events (`SAEConfig.event_fields`, from `SpikeEncoder`). For each spike the engine
    walks the output pixels its kernel touches (per-row and per-column tables made at
    generation time, so no division or multiplication in hardware) and, for each, reads
    `lanes` weights and the matching accumulator word, adds with saturation and writes back:
    one accumulator word per cycle. After the event marked `last`, every accumulator word is
    streamed out in address order (output pixels in raster order, `out_groups` beats each) with
    the bias added, and cleared for the next frame (`Drain`).

    The update pipeline (read, RAM output register, add, write) is 4 cycles deep; an update
    whose accumulator word is still in flight waits (`spec.sae` models the cost). After a reset
    the engine first zeroes all `acc_words` accumulators.

    With `in_bits > 1` an event is one set bit of an input's magnitude: its `plane` b (and, for
    signed inputs, `neg`) travel with its updates, and the add stage adds `w << b` (subtracts
    it when `neg`: the inverted term plus a carry-in), the shift a multiplexer tree over b,
    with saturation to `acc_bits` (which the configuration makes wide enough never to
    saturate).

    Parameters
    ----------
    config : spec.SAEConfig
    params : spec.SAEParams
    """

    def __init__(self, config, params):
        if not isinstance(config, SAEConfig) or config.mode == "depthwise":
            raise TypeError(f"config must be a linear or conv SAEConfig, not {config!r}")
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
        n_acc, ops_pp = cfg.acc_words, cfg.out_groups
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

        m.submodules.drain = drain = Drain(cfg, prm)
        mode = drain.mode
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
        w_base_in = mul_const(ev.channel, cfg.kernel * cfg.kernel * groups)

        # -- the update generator ---------------------------------------------------------------
        # The current update's addresses are registers (`op_acc`, `op_w`), stepped on each issue
        # by constants. Whether the current update must wait (`hazard`: its accumulator word is
        # still in the update pipeline) is a register too, computed a cycle ahead for whichever
        # update comes next, so `issue` and the event handshake follow from registers in one
        # or two LUT levels.
        busy = Signal()
        frame_end = Signal()       # the frame's last event has been taken
        rows_left = Signal(range(cfg.kernel + 1))
        cols_left = Signal(range(cfg.kernel + 1))
        n_cols = Signal(range(cfg.kernel + 1))
        g = Signal(range(max(2, ops_pp)))
        last_g = Signal()          # g == ops_pp - 1
        last_col = Signal()        # cols_left == 1
        last_row = Signal()        # rows_left == 1
        op_acc = Signal(acc_addr_bits)              # accumulator word of the current update
        op_w = Signal(range(cfg.weight_words + 1))  # its weight word
        row_acc = Signal(acc_addr_bits)             # first update of the current output row
        row_w = Signal(range(cfg.weight_words + 1))
        multi, signed_in = cfg.in_bits > 1, cfg.in_signed
        if multi:
            op_plane = Signal(range(cfg.in_bits))   # the event's bit plane, for all its updates
        if signed_in:
            op_neg = Signal()                       # the event's sign

        # in-flight updates: s1 (RAM read), s2 (RAM output registered), s3 (sum, being written)
        s_valid = [Signal(name=f"u{k}_valid") for k in range(1, 4)]
        s_addr = [Signal(acc_addr_bits, name=f"u{k}_addr") for k in range(1, 4)]
        if multi:
            # plane and sign beside the address, down to the add stage (s2)
            s_plane = [Signal(range(cfg.in_bits), name=f"u{k}_plane") for k in range(1, 3)]
        if signed_in:
            s_neg = [Signal(name=f"u{k}_neg") for k in range(1, 3)]
        hazard = Signal()
        issue = Signal()
        m.d.comb += issue.eq((mode == Mode.ACC) & busy & ~hazard)
        final_op = last_g & last_col & last_row

        take = Signal()
        m.d.comb += [
            self.i.ready.eq((mode == Mode.ACC) & ~frame_end & (~busy | (issue & final_op))),
            take.eq(self.i.valid & self.i.ready),
        ]

        # address steps: next group of the pixel; next (left) output pixel of the row, its
        # first group; first pixel of the next (upper) output row
        col_acc_step = 2 * groups - 1
        col_w_step = cfg.stride * cfg.w_kw_step - (groups - 1)
        row_acc_step = cfg.out_width * groups
        row_w_step = cfg.stride * cfg.w_kh_step
        next_acc = Signal(acc_addr_bits)     # the update after this one (while busy)
        with m.If(~last_g):
            m.d.comb += next_acc.eq(op_acc + 1)
        with m.Elif(~last_col):
            m.d.comb += next_acc.eq(op_acc - col_acc_step)
        with m.Else():
            m.d.comb += next_acc.eq(row_acc - row_acc_step)
        first_acc = Signal(acc_addr_bits)    # the first update of the event being offered
        m.d.comb += first_acc.eq(acc_row_in + acc_col_in)
        with m.If(issue):
            with m.If(~last_g):
                m.d.sync += [g.eq(g + 1), last_g.eq(g == max(ops_pp - 2, 0)),
                             op_acc.eq(next_acc), op_w.eq(op_w + 1)]
            with m.Else():
                m.d.sync += [g.eq(0), last_g.eq(ops_pp == 1)]
                with m.If(~last_col):
                    m.d.sync += [
                        cols_left.eq(cols_left - 1), last_col.eq(cols_left == 2),
                        op_acc.eq(next_acc), op_w.eq(op_w + col_w_step),
                    ]
                with m.Else():
                    m.d.sync += [cols_left.eq(n_cols), last_col.eq(n_cols == 1)]
                    with m.If(~last_row):
                        m.d.sync += [
                            rows_left.eq(rows_left - 1), last_row.eq(rows_left == 2),
                            row_acc.eq(next_acc), op_acc.eq(next_acc),
                            row_w.eq(row_w + row_w_step), op_w.eq(row_w + row_w_step),
                        ]
                    with m.Else():
                        m.d.sync += busy.eq(0)
        # the hazard of the next cycle's update, against the updates then in flight (s1 = this
        # cycle's issue, s2 and s3 = what is now s1 and s2). The update after an issue is a new
        # word of the same event, never the one just issued. The drain's clear writes need no
        # check: the drain ends with the engine idle, so no update issues in the cycle after it.
        def in_flight(addr, include_issue):
            terms = [v & (a == addr) for v, a in zip(s_valid[:2], s_addr[:2], strict=True)]
            if include_issue:
                terms.append(issue & (op_acc == addr))
            return Cat(*terms).any()

        with m.If(take):
            m.d.sync += hazard.eq(in_flight(first_acc, True))
        with m.Elif(issue):
            m.d.sync += hazard.eq(in_flight(next_acc, False))
        with m.Else():
            m.d.sync += hazard.eq(in_flight(op_acc, False))

        with m.If(take):
            first_w = w_base_in + (w_row_in + w_col_in)   # the two table reads add in parallel
            m.d.sync += [
                busy.eq(ev.spike & (n_rows_in != 0) & (n_cols_in != 0)),
                frame_end.eq(ev.last),
                rows_left.eq(n_rows_in), cols_left.eq(n_cols_in), n_cols.eq(n_cols_in),
                last_row.eq(n_rows_in == 1), last_col.eq(n_cols_in == 1),
                g.eq(0), last_g.eq(ops_pp == 1),
                op_acc.eq(first_acc), row_acc.eq(first_acc),
                op_w.eq(first_w), row_w.eq(first_w),
            ]
            if multi:
                m.d.sync += op_plane.eq(ev.plane)
                if signed_in:
                    m.d.sync += op_neg.eq(ev.neg)
        with m.If(frame_end & ~busy & (mode == Mode.ACC)):
            m.d.comb += drain.start.eq(1)
            m.d.sync += frame_end.eq(0)

        # -- update pipeline: read, register, add, write ---------------------------------------
        s2_acc, s2_w = Signal(lanes * ab), Signal(lanes * wb)
        s3_sum = Signal(lanes * ab)
        m.d.sync += [
            s_valid[0].eq(issue), s_addr[0].eq(op_acc),
            s_valid[1].eq(s_valid[0]), s_addr[1].eq(s_addr[0]),
            s2_acc.eq(a_rd.data), s2_w.eq(w_rd.data),
            s_valid[2].eq(s_valid[1]), s_addr[2].eq(s_addr[1]),
        ]
        if multi:
            m.d.sync += [s_plane[0].eq(op_plane), s_plane[1].eq(s_plane[0])]
            if signed_in:
                m.d.sync += [s_neg[0].eq(op_neg), s_neg[1].eq(s_neg[0])]
        for j in range(lanes):
            acc_j = s2_acc[j * ab:(j + 1) * ab].as_signed()
            w_j = s2_w[j * wb:(j + 1) * wb].as_signed()
            if not multi:
                m.d.sync += s3_sum[j * ab:(j + 1) * ab].eq(saturate(acc_j + w_j, ab))
                continue
            term = shift_left(w_j, s_plane[1], cfg.in_bits - 1)
            if signed_in:
                # acc - term = acc + ~term + 1: one adder whose carry-in is the sign (a mux
                # between a sum and a difference took a third more LUTs)
                flip = s_neg[1].replicate(len(term))
                total = acc_j + (term.as_unsigned() ^ flip).as_signed() + s_neg[1]
            else:
                total = acc_j + term
            m.d.sync += s3_sum[j * ab:(j + 1) * ab].eq(saturate(total, ab))
        m.d.comb += w_rd.addr.eq(op_w)

        # -- the accumulator RAM's ports, shared with the drain ---------------------------------
        with m.If(mode == Mode.DRAIN):
            m.d.comb += a_rd.addr.eq(drain.read_addr)
        with m.Else():
            m.d.comb += a_rd.addr.eq(op_acc)
        m.d.comb += drain.read_data.eq(a_rd.data)
        with m.If(drain.clear_en):
            m.d.comb += [a_wr.addr.eq(drain.clear_addr), a_wr.data.eq(0), a_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [a_wr.addr.eq(s_addr[2]), a_wr.data.eq(s3_sum), a_wr.en.eq(s_valid[2])]
        wiring.connect(m, drain.o, wiring.flipped(self.o))
        return m


class SpikeAccumulator(wiring.Component):
    """Spike encoder and accumulate engine together: dense spike beats in, accumulators out.

    Input beats follow `SAEConfig.input_fields`, output beats `SAEConfig.output_fields`.
    """

    def __init__(self, config, params):
        self._config = config
        self.encoder = SpikeEncoder(config)
        engine = DepthwiseEngine if config.mode == "depthwise" else SAEEngine
        self.engine = engine(config, params)
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

