"""Depthwise accumulate engine: one event updates up to `lanes` output pixels per cycle."""

from amaranth import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.sae import SAEConfig, SAEParams

from .common import mul_const, saturate, struct_layout
from .sae_drain import Drain, Mode, pack_words

__all__ = ["DepthwiseEngine"]


class DepthwiseEngine(wiring.Component):
    """The depthwise k x k engine behind `SpikeAccumulator` (same streams as `SAEEngine`).

    The accumulators are split into `lanes = R x C` banks (`SAEConfig.depthwise_banks`), one
    accumulator wide. Output pixel (oh, ow), channel `c` with lane (a, b) = divmod(c mod lanes,
    C) lives in bank ((oh + a) mod R, (ow + b) mod C), at address (oh * W_out + ow) * groups +
    c // lanes. Then any R x C window of output pixels of one channel hits R x C distinct banks,
    and the `lanes` channels of one pixel do too. An event walks the output pixels its kernel
    touches in R x C windows, one window per cycle: each bank works out which pixel of the
    window is its own, its address (two small constant tables) and its kernel tap, and adds
    that tap's weight (the event's channel's k x k weights are read once per event) to its
    accumulator. The drain reads one address in every bank and un-rotates the lanes by
    (oh mod R, ow mod C) into the usual output beat.

    Two updates of different channels never meet in one bank word; a window waits while
    updates of the same channel from an earlier event are in flight (see `SAEConfig.cycles`).
    """

    def __init__(self, config, params):
        if not isinstance(config, SAEConfig) or config.mode != "depthwise":
            raise TypeError(f"config must be a depthwise SAEConfig, not {config!r}")
        if not isinstance(params, SAEParams):
            raise TypeError(f"params must be SAEParams, not {params!r}")
        self._config = config
        self._params = SAEParams.checked(config, params.weight, params.bias)
        super().__init__({
            "i": In(stream.Signature(struct_layout(config.event_fields()))),
            "o": Out(stream.Signature(struct_layout(config.output_fields()))),
        })

    def elaborate(self, platform):
        cfg, prm = self._config, self._params
        lanes, groups, ab, wb, k = cfg.lanes, cfg.out_groups, cfg.acc_bits, cfg.w_bits, cfg.kernel
        n_acc, stride = cfg.acc_words, cfg.stride
        rows_b, cols_b = cfg.depthwise_banks
        row_step, col_step = cfg.out_width * groups, groups
        m = Module()
        addr_shape = range(n_acc)

        # weights: one word per channel with its k x k taps, tap (kh, kw) at kh * k + kw
        taps = k * k
        channels = groups * lanes
        wmem = memory.Memory(
            shape=unsigned(taps * wb), depth=channels, attrs={"ram_style": "block"},
            init=[pack_words([prm.weight[c, 0, kh, kw] if c < cfg.out_channels else 0
                              for kh in range(k) for kw in range(k)], wb)
                  for c in range(channels)])
        m.submodules.wmem = wmem
        w_rd = wmem.read_port()

        banks = []
        for b in range(lanes):
            mem = memory.Memory(shape=unsigned(ab), depth=n_acc, init=[],
                                attrs={"no_rw_check": 1})
            m.submodules[f"bank{b}"] = mem
            banks.append((mem.read_port(), mem.write_port()))

        drain = Drain(cfg, prm, rows=rows_b, cols=cols_b)
        m.submodules.drain = drain
        mode = drain.mode

        # -- event intake ---------------------------------------------------------------------
        ev = self.i.payload

        def table(size, out_size, index):
            entries = cfg.depthwise_axis_table(size, out_size)
            n = Array(Const(e[0], range(k + 1)) for e in entries)[index]
            first_out = Array(Const(e[1], range(max(size, out_size) + 1)) for e in entries)[index]
            first_tap = Array(Const(e[2], range(k + 1)) for e in entries)[index]
            return n, first_out, first_tap

        n_rows_in, oh_in, kh_in = table(cfg.height, cfg.out_height, ev.row)
        n_cols_in, ow_in, kw_in = table(cfg.width, cfg.out_width, ev.col)
        lane_a = ev.lane >> (cols_b.bit_length() - 1)
        lane_b = ev.lane & (cols_b - 1)

        busy = Signal()
        frame_end = Signal()
        # counts events mod 4: the three updates in flight belong to at most three earlier
        # events, so a different tag means a different event (hazard check)
        tag = Signal(2)
        chan = Signal(range(channels))
        rem_r = Signal(range(k + 1))         # touched rows not yet covered by windows
        rem_c = Signal(range(k + 1))
        rem_c0 = Signal(range(k + 1))
        base_row = Signal(addr_shape)        # (oh of window row 0) * row_step
        base_col = Signal(addr_shape)
        base_col0 = Signal(addr_shape)
        group = Signal(range(max(2, groups)))
        kh_u = Signal(range(k + stride * rows_b + 1))   # kernel row of window row 0
        kw_v = Signal(range(k + stride * cols_b + 1))
        kw_v0 = Signal.like(kw_v)
        rot_r = Signal(range(rows_b))  # (oh_first + a) mod R
        rot_c = Signal(range(cols_b))

        # in-flight updates: s1 (bank read), s2 (bank output registered), s3 (being written)
        s_valid = [Signal(name=f"u{n}_valid") for n in range(1, 4)]
        s_chan = [Signal(range(channels), name=f"u{n}_chan") for n in range(1, 4)]
        s_tag = [Signal(2, name=f"u{n}_tag") for n in range(1, 4)]
        hazard = Cat(*(v & (c == chan) & (t != tag)
                       for v, c, t in zip(s_valid, s_chan, s_tag, strict=True))).any()
        issue = Signal()
        m.d.comb += issue.eq((mode == Mode.ACC) & busy & ~hazard)
        final = (rem_c <= cols_b) & (rem_r <= rows_b)

        take = Signal()
        m.d.comb += [
            self.i.ready.eq((mode == Mode.ACC) & ~frame_end & (~busy | (issue & final))),
            take.eq(self.i.valid & self.i.ready),
            w_rd.addr.eq(ev.channel),
        ]
        with m.If(issue):
            with m.If(rem_c > cols_b):
                m.d.sync += [rem_c.eq(rem_c - cols_b), base_col.eq(base_col - cols_b * col_step),
                             kw_v.eq(kw_v + stride * cols_b)]
            with m.Else():
                m.d.sync += [rem_c.eq(rem_c0), base_col.eq(base_col0), kw_v.eq(kw_v0)]
                with m.If(rem_r > rows_b):
                    m.d.sync += [rem_r.eq(rem_r - rows_b),
                                 base_row.eq(base_row - rows_b * row_step),
                                 kh_u.eq(kh_u + stride * rows_b)]
                with m.Else():
                    m.d.sync += busy.eq(0)
        with m.If(take):
            m.d.sync += [
                busy.eq(ev.spike & (n_rows_in != 0) & (n_cols_in != 0)),
                frame_end.eq(ev.last),
                tag.eq(tag + 1),
                chan.eq(ev.channel),
                rem_r.eq(n_rows_in), rem_c.eq(n_cols_in), rem_c0.eq(n_cols_in),
                base_row.eq(mul_const(oh_in, row_step)),
                base_col.eq(mul_const(ow_in, col_step)),
                base_col0.eq(mul_const(ow_in, col_step)),
                group.eq(ev.group),
                kh_u.eq(kh_in), kw_v.eq(kw_in), kw_v0.eq(kw_in),
                rot_r.eq(oh_in + lane_a), rot_c.eq(ow_in + lane_b),
            ]
        with m.If(frame_end & ~busy & (mode == Mode.ACC)):
            m.d.comb += drain.start.eq(1)
            m.d.sync += frame_end.eq(0)

        # -- per bank: which pixel of the window, its address and tap --------------------------
        base = Signal(addr_shape)
        m.d.comb += base.eq(base_row + base_col + group)
        # offsets past the map (only on maps smaller than the banks) belong to no live pixel;
        # the address arithmetic is modulo 2**width, so they are kept modulo that too
        width = Shape.cast(addr_shape).width
        row_offsets = Array(Const(i * row_step % (1 << width), width) for i in range(rows_b))
        col_offsets = Array(Const(j * col_step % (1 << width), width) for j in range(cols_b))
        s1_live = Signal(lanes)
        live, addrs = [], []
        for b in range(lanes):
            r, s = divmod(b, cols_b)
            i = Signal(range(rows_b), name=f"win_i{b}")
            j = Signal(range(cols_b), name=f"win_j{b}")
            m.d.comb += [i.eq(rot_r - r), j.eq(rot_c - s)]   # mod R, mod C by truncation
            addr = Signal(addr_shape, name=f"win_addr{b}")
            m.d.comb += addr.eq(base - row_offsets[i] - col_offsets[j])
            live.append((i < rem_r) & (j < rem_c))
            addrs.append(addr)

        # -- update pipeline --------------------------------------------------------------------
        s1_addr = [Signal(addr_shape, name=f"u1_addr{b}") for b in range(lanes)]
        s2_live, s3_live = Signal(lanes), Signal(lanes)
        s2_addr = [Signal(addr_shape, name=f"u2_addr{b}") for b in range(lanes)]
        s3_addr = [Signal(addr_shape, name=f"u3_addr{b}") for b in range(lanes)]
        s2_acc = [Signal(ab, name=f"u2_acc{b}") for b in range(lanes)]
        s3_sum = [Signal(ab, name=f"u3_sum{b}") for b in range(lanes)]
        ev_w = Signal(taps * wb)   # the current event's taps (read at take, ready 2 cycles on)
        s2_weight = [Signal(signed(wb), name=f"u2_weight{b}") for b in range(lanes)]
        took = Signal()
        m.d.sync += took.eq(take)
        with m.If(took):
            m.d.sync += ev_w.eq(w_rd.data)
        m.d.sync += [
            s_valid[0].eq(issue), s_chan[0].eq(chan), s_tag[0].eq(tag),
            s1_live.eq(Cat(*live)),
            s_valid[1].eq(s_valid[0]), s_chan[1].eq(s_chan[0]), s_tag[1].eq(s_tag[0]),
            s2_live.eq(s1_live),
            s_valid[2].eq(s_valid[1]), s_chan[2].eq(s_chan[1]), s_tag[2].eq(s_tag[1]),
            s3_live.eq(s2_live),
        ]
        for b, (rd, wr) in enumerate(banks):
            m.d.sync += [
                s1_addr[b].eq(addrs[b]),
                s2_addr[b].eq(s1_addr[b]), s2_acc[b].eq(rd.data),
                s3_addr[b].eq(s2_addr[b]),
                s3_sum[b].eq(saturate(s2_acc[b].as_signed()
                                      + Mux(s2_live[b], s2_weight[b], 0), ab)),
            ]
            m.d.comb += rd.addr.eq(Mux(mode == Mode.DRAIN, drain.read_addr, addrs[b]))
            with m.If(drain.clear_en):
                m.d.comb += [wr.addr.eq(drain.clear_addr), wr.data.eq(0), wr.en.eq(1)]
            with m.Else():
                m.d.comb += [wr.addr.eq(s3_addr[b]), wr.data.eq(s3_sum[b]),
                             wr.en.eq(s_valid[2] & s3_live[b])]

        # -- stage 1: the window's R x C kernel taps from the event's weights, then to banks -----
        # taps (kh_u + stride * i, kw_v + stride * j) for window pixel (i, j): pick R kernel
        # rows, then C taps of each, then rotate the block to the banks as the addresses are
        s1_kh, s1_kw = Signal.like(kh_u), Signal.like(kw_v)
        s1_rot_r, s1_rot_c = Signal.like(rot_r), Signal.like(rot_c)
        m.d.sync += [s1_kh.eq(kh_u), s1_kw.eq(kw_v), s1_rot_r.eq(rot_r), s1_rot_c.eq(rot_c)]
        block = {}
        for i in range(rows_b):
            row = Signal(k * wb, name=f"w_row{i}")
            with m.Switch(s1_kh + i * stride):
                for kh in range(k):
                    with m.Case(kh):
                        m.d.comb += row.eq(ev_w[kh * k * wb:(kh + 1) * k * wb])
            for j in range(cols_b):
                tap = Signal(signed(wb), name=f"w_tap{i}_{j}")
                with m.Switch(s1_kw + j * stride):
                    for kw in range(k):
                        with m.Case(kw):
                            m.d.comb += tap.eq(row[kw * wb:(kw + 1) * wb].as_signed())
                block[i, j] = tap
        for b in range(lanes):
            r, c = divmod(b, cols_b)
            i = Signal(range(rows_b), name=f"w_i{b}")
            j = Signal(range(cols_b), name=f"w_j{b}")
            m.d.comb += [i.eq(s1_rot_r - r), j.eq(s1_rot_c - c)]
            with m.Switch(Cat(j, i)):
                for (bi, bj), tap in block.items():
                    with m.Case(bj | (bi << (cols_b.bit_length() - 1))):
                        m.d.sync += s2_weight[b].eq(tap)

        # -- drain: un-rotate the banks of the pixel being read into channel lanes ------------
        bank_data = Array(rd.data for rd, _ in banks)
        lanes_out = []
        for lane in range(lanes):
            a, b = divmod(lane, cols_b)
            r = Signal(range(rows_b), name=f"drain_r{lane}")
            s = Signal(range(cols_b), name=f"drain_s{lane}")
            m.d.comb += [r.eq(drain.read_row_mod + a), s.eq(drain.read_col_mod + b)]
            lanes_out.append(bank_data[Cat(s, r)])
        m.d.comb += drain.read_data.eq(Cat(*lanes_out))
        wiring.connect(m, drain.o, wiring.flipped(self.o))
        return m
