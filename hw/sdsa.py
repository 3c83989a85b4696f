"""Spike-driven self-attention units: masks and additions only (see `spec.sdsa`)."""

import enum

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.sdsa import SDSAConfig

from .common import mul_const, struct_layout
from .lif import LIFArray
from .scanner import WordScanner

__all__ = ["SDSAUnit", "LinearSDSA", "ColumnSDSA", "sdsa_unit"]


class Phase(enum.Enum):
    LOAD = 0    # take K/V (and Q) beats of one timestep; build KV or the column counts
    FLUSH = 1   # the last update's write is in flight
    MASK = 2    # variants 1/2: the counts through the neuron into the channel mask
    RUN = 3     # stream Q from its buffer: Y = Q KV (3/4) or Q AND mask (1/2)


def _ports(config):
    layout = struct_layout(config.input_fields())
    ports = {"q": In(stream.Signature(layout))}
    if config.variant != 2:
        ports["k"] = In(stream.Signature(layout))
    ports["v"] = In(stream.Signature(layout))
    ports["o"] = Out(stream.Signature(struct_layout(config.output_fields())))
    return ports


def sdsa_unit(config):
    """The SDSA component for `config`: `LinearSDSA` (variants 3/4) or `ColumnSDSA` (1/2)."""
    if not isinstance(config, SDSAConfig):
        raise TypeError(f"config must be an SDSAConfig, not {config!r}")
    return LinearSDSA(config) if config.variant >= 3 else ColumnSDSA(config)


#: the common name
SDSAUnit = sdsa_unit


class _SDSABase(wiring.Component):
    """What both SDSA units share: the configuration check, the neuron, the ports, Q loading."""

    VARIANTS = ()

    def __init__(self, config):
        if not isinstance(config, SDSAConfig) or config.variant not in self.VARIANTS:
            which = " or ".join(map(str, self.VARIANTS))
            raise TypeError(f"config must be a variant {which} SDSAConfig, not {config!r}")
        self._config = config
        self.neuron = LIFArray(config.neuron_config())
        self.rw_checks = []   # filled by elaborate(): see `_guard`
        super().__init__(_ports(config))

    @property
    def config(self):
        return self._config

    def _guard(self, name, used, read, write):
        """Record, for tests, a `no_rw_check` memory: `used` is high in the cycles whose read
        data the unit uses; in those cycles `write` must not hit the address `read` reads."""
        self.rw_checks.append((name, used, read.addr, write.en, write.addr))

    def _load_q(self, m, q_wr, loading):
        """Q beats into the Q buffer, in order, while `loading`; returns (count, full)."""
        words = self._config.beats_per_step
        q_cnt = Signal(range(words + 1))
        q_full = q_cnt == words
        m.d.comb += [
            self.q.ready.eq(loading & ~q_full),
            q_wr.addr.eq(q_cnt), q_wr.data.eq(self.q.payload.spikes),
            q_wr.en.eq(self.q.valid & self.q.ready),
        ]
        with m.If(self.q.valid & self.q.ready):
            m.d.sync += q_cnt.eq(q_cnt + 1)
        return q_cnt, q_full


def _event_queue(m, name, source, row_of):
    """`SDSAConfig.EVENT_FIFO_DEPTH` events in a `SyncFIFO` after the stream `source`, then one
    pipeline register that also holds the event's first KV word, `row_of(event)`, so that the
    engine starts from registers. Returns (stream of the register, its KV word)."""
    layout = source.payload.shape()
    q = fifo.SyncFIFO(width=layout.size, depth=SDSAConfig.EVENT_FIFO_DEPTH)
    m.submodules[name] = q
    out = stream.Signature(layout).create(path=(name,))
    head = Signal(layout)
    row = Signal(len(row_of(head)), name=f"{name}_row")
    load = q.r_rdy & (~out.valid | out.ready)
    m.d.comb += [
        q.w_data.eq(source.payload.as_value()), q.w_en.eq(source.valid),
        source.ready.eq(q.w_rdy),
        head.as_value().eq(q.r_data), q.r_en.eq(load),
    ]
    with m.If(load):
        m.d.sync += [out.valid.eq(1), out.payload.eq(head), row.eq(row_of(head))]
    with m.Elif(out.ready):
        m.d.sync += out.valid.eq(0)
    return out, row


def _split(word, lanes, bits):
    return [word[i * bits:(i + 1) * bits] for i in range(lanes)]


class LinearSDSA(_SDSABase):
    """SDSA-3/4: per head `KV = K^T V`, then `A = Q KV`, then the attention LIF.

    Streams `q`, `k`, `v` (in) and `o` (out) carry `lanes` spikes per beat, token-major, the
    `words_per_token` beats of a token in channel order (`SDSAConfig.input_fields`). The unit
    counts beats; the input markers are not needed.

    Per timestep:

    1. LOAD. K and V beats are taken side by side; V goes to a buffer of the timestep, K words
       to a FIFO and a `WordScanner` that turns them into one event per spike. For a K spike of
       token n in channel c = h d + i, once token n's V row is complete, the engine adds V[n,
       head h] to KV row c, `lanes` counters per cycle (`d / lanes` cycles; read, RAM output
       register, add, write; an update whose word is in flight waits). A row's first update of
       the timestep starts from 0 (a per-row "touched" bit, cleared while token 0 loads). Q
       beats go to the Q buffer meanwhile.
    2. FLUSH, then RUN. Q words are read back and scanned; for each Q spike (token n, channel
       c) the KV row c is added into the head's `d` sums (a rotating register, one word per
       cycle). At a head's end its sums move to an output register that feeds a FIFO in front
       of the attention neuron (a `LIFArray` over tokens x channels, threshold `v_th / 0.125`),
       `lanes` per cycle; a head without Q spikes gives zeros. Head ends are issued at least
       `d / lanes` cycles apart and only with FIFO room (credits), so nothing is ever dropped.

    The cycle model is `spec.SDSAConfig.cycles`.
    """

    VARIANTS = (3, 4)

    def elaborate(self, platform):
        cfg = self._config
        L, N, W = cfg.lanes, cfg.tokens, cfg.words_per_token
        dw, d, C = cfg.words_per_head, cfg.head_dim, cfg.channels
        words, rows = N * W, C * dw
        kb, ab = cfg.kv_bits, cfg.a_bits
        m = Module()
        m.submodules.neuron = neuron = self.neuron

        # -- memories ----------------------------------------------------------------------------
        # Q and V: a word is read only after its timestep's writes to it (Q: once the buffer is
        # full; V: once the token is complete), so no read meets a write of the same word
        qmem = memory.Memory(shape=unsigned(L), depth=words, init=[], attrs={"no_rw_check": 1})
        vmem = memory.Memory(shape=unsigned(L), depth=words, init=[], attrs={"no_rw_check": 1})
        # KV: word (c * dw + j) holds KV[c, j*lanes .. j*lanes+lanes-1] of c's head. A read
        # never meets a write of the same word: the hazard wait keeps updates 4 cycles apart.
        kvmem = memory.Memory(shape=unsigned(L * kb), depth=rows, init=[],
                              attrs={"no_rw_check": 1})
        # touched[w] bit i: KV row w*lanes+i was written this timestep
        tmem = memory.Memory(shape=unsigned(L), depth=W, init=[])
        m.submodules.qmem, m.submodules.vmem = qmem, vmem
        m.submodules.kvmem, m.submodules.tmem = kvmem, tmem
        q_wr, q_rd = qmem.write_port(), qmem.read_port()
        v_wr, v_rd = vmem.write_port(), vmem.read_port()
        kv_wr, kv_rd = kvmem.write_port(), kvmem.read_port()
        t_wr, t_rd = tmem.write_port(granularity=1), tmem.read_port()

        phase = Signal(Phase)
        step = Signal(range(cfg.timesteps))
        clr = Signal(range(W + 1))                # touched words cleared (W: done); after a
        # reset as at every timestep's start, so a stale bit can never validate a stale row
        clearing = clr != W

        # -- LOAD: K/V side by side, Q on its own ---------------------------------------------
        k_tag = data.StructLayout({"token": range(N), "w": range(W),
                                   "vhead": range(words), "rowbase": range(rows)})
        m.submodules.kfifo = kfifo = fifo.SyncFIFO(width=L + 2 + k_tag.size, depth=W + 1)
        m.submodules.kscan = kscan = WordScanner(L, k_tag.members)
        kv_cnt = Signal(range(words + 1))
        ld_w = Signal(range(W))
        ld_token = Signal(range(N))
        ld_jw = Signal(range(dw))
        ld_head = Signal(range(words))
        ld_rowbase = Signal(range(rows + d))
        tokens_in = Signal(range(N + 1))           # tokens whose V row is complete
        loading = (phase == Phase.LOAD) & (kv_cnt != words)
        take_kv = Signal()
        m.d.comb += [
            self.k.ready.eq(loading & self.v.valid & kfifo.w_rdy),
            self.v.ready.eq(loading & self.k.valid & kfifo.w_rdy),
            take_kv.eq(self.k.valid & self.k.ready),
            v_wr.addr.eq(kv_cnt), v_wr.data.eq(self.v.payload.spikes), v_wr.en.eq(take_kv),
        ]
        k_word = Signal(data.StructLayout({"bits": L, "mark": 1, "final": 1, "tag": k_tag}))
        m.d.comb += [
            k_word.bits.eq(self.k.payload.spikes),
            k_word.final.eq(kv_cnt == words - 1),
            k_word.tag.token.eq(ld_token),
            k_word.tag.w.eq(ld_w),
            k_word.tag.vhead.eq(Mux(ld_jw == 0, kv_cnt, ld_head)),
            k_word.tag.rowbase.eq(ld_rowbase),
            kfifo.w_data.eq(k_word.as_value()),
            kfifo.w_en.eq(take_kv),
            kscan.i.payload.as_value().eq(kfifo.r_data),
            kscan.i.valid.eq(kfifo.r_rdy),
            kfifo.r_en.eq(kscan.i.ready),
        ]
        with m.If(take_kv):
            m.d.sync += kv_cnt.eq(kv_cnt + 1)
            with m.If(ld_jw == 0):
                m.d.sync += ld_head.eq(kv_cnt)
            m.d.sync += ld_jw.eq(Mux(ld_jw == dw - 1, 0, ld_jw + 1))
            with m.If(ld_w == W - 1):
                m.d.sync += [ld_w.eq(0), ld_rowbase.eq(0), ld_token.eq(ld_token + 1),
                             tokens_in.eq(tokens_in + 1)]
            with m.Else():
                m.d.sync += [ld_w.eq(ld_w + 1), ld_rowbase.eq(ld_rowbase + d)]

        q_cnt, q_full = self._load_q(m, q_wr, phase == Phase.LOAD)

        # -- RUN side: Q words read back into a FIFO, then scanned -----------------------------
        q_tag = data.StructLayout({"w": range(W), "rowbase": range(rows), "first": 1, "last": 1})
        qf_depth = 4
        m.submodules.qfifo = qfifo = fifo.SyncFIFO(width=L + 2 + q_tag.size, depth=qf_depth)
        m.submodules.qscan = qscan = WordScanner(L, q_tag.members)
        qf_cnt = Signal(range(words + 1))
        qf_w = Signal(range(W))
        qf_jw = Signal(range(dw))
        qf_rowbase = Signal(range(rows + d))
        qf_out = Signal(range(qf_depth + 1))      # reads issued or queued, not yet scanned
        qf_issue = Signal()
        qf_pop = Signal()
        m.d.comb += [
            qf_issue.eq(q_full & (qf_cnt != words) & (qf_out != qf_depth)),
            qf_pop.eq(qfifo.r_rdy & qfifo.r_en),
            q_rd.addr.eq(qf_cnt),
        ]
        m.d.sync += qf_out.eq(qf_out + qf_issue - qf_pop)
        f1_valid = Signal()
        f1_word = Signal(data.StructLayout({"bits": L, "mark": 1, "final": 1, "tag": q_tag}))
        with m.If(qf_issue):
            m.d.sync += [
                qf_cnt.eq(qf_cnt + 1),
                qf_jw.eq(Mux(qf_jw == dw - 1, 0, qf_jw + 1)),
                qf_w.eq(Mux(qf_w == W - 1, 0, qf_w + 1)),
                qf_rowbase.eq(Mux(qf_w == W - 1, 0, qf_rowbase + d)),
            ]
        m.d.sync += [
            f1_valid.eq(qf_issue),
            f1_word.mark.eq(qf_jw == dw - 1),
            f1_word.final.eq(qf_cnt == words - 1),
            f1_word.tag.w.eq(qf_w),
            f1_word.tag.rowbase.eq(qf_rowbase),
            f1_word.tag.first.eq((step == 0) & (qf_cnt < dw)),
            f1_word.tag.last.eq((step == cfg.timesteps - 1) & (qf_cnt == words - 1)),
        ]
        # the RAM output is registered before it goes anywhere (HARDWARE-NOTES.md)
        f2_valid, f2_word = Signal(), Signal.like(f1_word)
        m.d.sync += [f2_valid.eq(f1_valid),
                     f2_word.eq(Cat(q_rd.data, f1_word.as_value()[L:]))]
        m.d.comb += [
            qfifo.w_data.eq(f2_word.as_value()),
            qfifo.w_en.eq(f2_valid),
            qscan.i.payload.as_value().eq(qfifo.r_data),
            qscan.i.valid.eq(qfifo.r_rdy),
            qfifo.r_en.eq(qscan.i.ready),
        ]

        # -- the engine: events to KV-row operations -------------------------------------------
        busy = Signal()
        j = Signal(range(dw))
        nop = Signal()             # a RUN marker: one operation without a KV read
        op_addr = Signal(range(rows))  # KV word of the next operation (row c: c * dw + j)
        v_addr = Signal(range(words))   # V word of the next operation (LOAD)
        ev_w = Signal(range(W))
        ev_lane = Signal(range(max(2, L)))
        ev_end, ev_final, ev_first, ev_last = Signal(), Signal(), Signal(), Signal()
        fresh = Signal()           # RUN: the event is its head's first (its sums start at 0)
        head_open = Signal()       # RUN: the current head has had a spike
        a_final = Signal()         # LOAD: the timestep's last K event has been taken
        op_last = nop | (j == dw - 1)

        # RUN output credits and head-end spacing
        y_depth = 2 * dw + 8
        y_credit = Signal(range(y_depth + 1), init=y_depth)
        gap = Signal(range(dw))
        y_pop = Signal()
        head_end_op = (phase == Phase.RUN) & ev_end & op_last
        end_ok = (gap == 0) & (y_credit >= dw)

        # in-flight operations: s1 (RAM read), s2 (RAM output registered), s3 (LOAD: sum)
        s_valid = [Signal(name=f"op{k}_valid") for k in range(1, 4)]
        s_addr = [Signal(range(rows), name=f"op{k}_addr") for k in range(1, 4)]
        hazard = Cat(*(v & (a == op_addr) for v, a in zip(s_valid, s_addr, strict=True))).any()
        issue = Signal()
        with m.Switch(phase):
            with m.Case(Phase.LOAD):
                m.d.comb += issue.eq(busy & ~hazard)
            with m.Case(Phase.RUN):
                m.d.comb += issue.eq(busy & (~head_end_op | end_ok))

        # each scanner runs up to EVENT_FIFO_DEPTH events ahead of the engine
        def row_of(event):
            return event.tag.rowbase + mul_const(event.lane, dw)

        kq, k_row = _event_queue(m, "kev", kscan.o, row_of)
        qq, q_row = _event_queue(m, "qev", qscan.o, row_of)
        kev, qev = kq.payload, qq.payload
        free = ~busy | (issue & op_last)
        m.d.comb += [
            kq.ready.eq((phase == Phase.LOAD) & ~clearing & ~a_final & free
                        & (tokens_in > kev.tag.token)),
            qq.ready.eq((phase == Phase.RUN) & free),
        ]
        with m.If(issue):
            m.d.sync += j.eq(Mux(op_last, 0, j + 1))
            with m.If(op_last):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [op_addr.eq(op_addr + 1), v_addr.eq(v_addr + 1)]
        with m.If(kq.valid & kq.ready):
            m.d.sync += [
                busy.eq(kev.spike), j.eq(0), nop.eq(0),
                op_addr.eq(k_row),
                v_addr.eq(kev.tag.vhead),
                ev_w.eq(kev.tag.w), ev_lane.eq(kev.lane),
                ev_end.eq(0), ev_final.eq(kev.final),
            ]
            with m.If(kev.final):
                m.d.sync += a_final.eq(1)
        with m.If(qq.valid & qq.ready):
            m.d.sync += [
                busy.eq(1), j.eq(0), nop.eq(~qev.spike),
                op_addr.eq(q_row),
                ev_w.eq(qev.tag.w), ev_lane.eq(qev.lane),
                ev_end.eq(qev.end), ev_final.eq(qev.final),
                ev_first.eq(qev.tag.first), ev_last.eq(qev.tag.last),
                fresh.eq(~head_open),
                head_open.eq(~qev.end & (head_open | qev.spike)),
            ]

        # -- phase sequencing ---------------------------------------------------------------------
        flush = Signal(range(4))
        load_done = a_final & ~busy & q_full
        with m.Switch(phase):
            with m.Case(Phase.LOAD):
                with m.If(clearing):
                    m.d.sync += clr.eq(clr + 1)
                with m.If(load_done):
                    m.d.sync += [phase.eq(Phase.FLUSH), flush.eq(2)]
            with m.Case(Phase.FLUSH):
                m.d.sync += flush.eq(flush - 1)
                with m.If(flush == 0):
                    m.d.sync += phase.eq(Phase.RUN)
            with m.Case(Phase.RUN):
                with m.If(issue & ev_final & op_last):
                    m.d.sync += [
                        phase.eq(Phase.LOAD), clr.eq(0), a_final.eq(0),
                        kv_cnt.eq(0), ld_w.eq(0), ld_token.eq(0), ld_jw.eq(0),
                        ld_rowbase.eq(0), tokens_in.eq(0), q_cnt.eq(0),
                        qf_cnt.eq(0), qf_w.eq(0), qf_jw.eq(0), qf_rowbase.eq(0),
                        step.eq(Mux(step == cfg.timesteps - 1, 0, step + 1)),
                    ]

        # -- operation pipeline --------------------------------------------------------------
        s1_lane, s1_w = Signal.like(ev_lane), Signal.like(ev_w)
        s1_run, s1_nop, s1_fresh, s1_end = Signal(), Signal(), Signal(), Signal()
        s1_first, s1_last, s1_j0 = Signal(), Signal(), Signal()
        m.d.comb += [kv_rd.addr.eq(op_addr), v_rd.addr.eq(v_addr), t_rd.addr.eq(ev_w)]
        self.rw_checks.clear()
        self._guard("kvmem", issue, kv_rd, kv_wr)
        self._guard("vmem", issue & (phase == Phase.LOAD), v_rd, v_wr)
        self._guard("qmem", qf_issue, q_rd, q_wr)
        m.d.sync += [
            s_valid[0].eq(issue), s_addr[0].eq(op_addr), s1_lane.eq(ev_lane), s1_w.eq(ev_w),
            s1_j0.eq(j == 0),
            s1_run.eq(phase == Phase.RUN), s1_nop.eq(nop), s1_fresh.eq(fresh),
            s1_end.eq(ev_end & op_last), s1_first.eq(ev_first), s1_last.eq(ev_last),
        ]
        # a row's touched bit is read with its event's first operation and kept for the rest
        untouched, ev_untouched = Signal(), Signal()
        m.d.comb += untouched.eq(Mux(s1_j0, ~t_rd.data.bit_select(s1_lane, 1), ev_untouched))
        with m.If(s_valid[0]):
            m.d.sync += ev_untouched.eq(untouched)
        s2_kv, s2_v = Signal(L * kb), Signal(L)
        s2_untouched = Signal()
        s2_run, s2_nop, s2_fresh, s2_end = Signal(), Signal(), Signal(), Signal()
        s2_first, s2_last = Signal(), Signal()
        m.d.sync += [
            s_valid[1].eq(s_valid[0]), s_addr[1].eq(s_addr[0]),
            s2_kv.eq(kv_rd.data), s2_v.eq(v_rd.data),
            s2_untouched.eq(untouched),
            s2_run.eq(s1_run), s2_nop.eq(s1_nop), s2_fresh.eq(s1_fresh), s2_end.eq(s1_end),
            s2_first.eq(s1_first), s2_last.eq(s1_last),
        ]
        kv_lanes = [Mux(s2_untouched, 0, x) for x in _split(s2_kv, L, kb)]

        # LOAD: KV row word plus the V bits, written back from s3
        s3_sum = Signal(L * kb)
        m.d.sync += [
            s_valid[2].eq(s_valid[1] & ~s2_run), s_addr[2].eq(s_addr[1]),
            s3_sum.eq(Cat(*((x + s2_v[i])[:kb] for i, x in enumerate(kv_lanes)))),
        ]
        # touched: cleared while token 0 loads; a row is marked one cycle after its event's
        # first update issues (that read saw the old bit; the next event of the row reads it
        # no earlier than 4 cycles after, by the hazard wait)
        with m.If(clearing):
            m.d.comb += [t_wr.addr.eq(clr), t_wr.data.eq(0), t_wr.en.eq((1 << L) - 1)]
        with m.Elif(s_valid[0] & ~s1_run & s1_j0):
            m.d.comb += [t_wr.addr.eq(s1_w), t_wr.data.eq((1 << L) - 1),
                         t_wr.en.eq(Const(1, L) << s1_lane)]
        m.d.comb += [kv_wr.addr.eq(s_addr[2]), kv_wr.data.eq(s3_sum), kv_wr.en.eq(s_valid[2])]

        # RUN: the head's sums rotate through R; a head end moves them to E
        r = [Signal(L * ab, name=f"r{k}") for k in range(dw)]
        e = [Signal(L * ab, name=f"e{k}") for k in range(dw)]
        e_cnt = Signal(range(dw + 1))
        e_first, e_last = Signal(), Signal()
        e_idx = Signal(range(dw))
        base = [Mux(s2_fresh, 0, x) for x in _split(r[0], L, ab)]
        new = Signal(L * ab)
        m.d.comb += new.eq(Cat(*((b + x)[:ab] for b, x in zip(base, kv_lanes, strict=True))))
        rotated = r[1:] + [new]
        op_valid = s_valid[1] & s2_run
        with m.If(op_valid & ~s2_nop):
            m.d.sync += [dst.eq(src) for dst, src in zip(r, rotated, strict=True)]

        m.submodules.yfifo = yfifo = fifo.SyncFIFOBuffered(width=L * ab + 2, depth=y_depth)
        m.d.comb += [
            yfifo.w_data.eq(Cat(e[0], e_first & (e_idx == 0), e_last & (e_cnt == 1))),
            yfifo.w_en.eq(e_cnt != 0),
        ]
        with m.If(e_cnt != 0):
            m.d.sync += [dst.eq(src) for dst, src in zip(e, e[1:] + [e[0]], strict=True)]
            m.d.sync += [e_cnt.eq(e_cnt - 1), e_idx.eq(e_idx + 1)]
        with m.If(op_valid & s2_end):
            with m.If(~s2_nop):
                m.d.sync += [dst.eq(src) for dst, src in zip(e, rotated, strict=True)]
            with m.Elif(s2_fresh):
                m.d.sync += [x.eq(0) for x in e]
            with m.Else():
                m.d.sync += [dst.eq(src) for dst, src in zip(e, r, strict=True)]
            m.d.sync += [e_cnt.eq(dw), e_idx.eq(0), e_first.eq(s2_first), e_last.eq(s2_last)]

        with m.If(issue & head_end_op):
            m.d.sync += gap.eq(dw - 1)
        with m.Elif(gap != 0):
            m.d.sync += gap.eq(gap - 1)
        m.d.sync += y_credit.eq(y_credit - Mux(issue & head_end_op, dw, 0) + y_pop)

        # the attention neuron
        xb = self.neuron.config.in_bits
        m.d.comb += [
            neuron.i.valid.eq(yfifo.r_rdy),
            neuron.i.payload.x.as_value().eq(Cat(*(Cat(x, Const(0, xb - ab))
                                                   for x in _split(yfifo.r_data, L, ab)))),
            neuron.i.payload.first.eq(yfifo.r_data[L * ab]),
            neuron.i.payload.last.eq(yfifo.r_data[L * ab + 1]),
            yfifo.r_en.eq(neuron.i.ready),
            y_pop.eq(yfifo.r_rdy & neuron.i.ready),
        ]
        wiring.connect(m, neuron.o, wiring.flipped(self.o))
        return m


class ColumnSDSA(_SDSABase):
    """SDSA-1/2: `out = Q AND SN(sum over tokens of (K AND V))` (1) or of `V` (2).

    Streams as `LinearSDSA` (variant 2 has no `k`). Per timestep:

    1. LOAD. Each K/V beat (V alone for variant 2) adds its `lanes` bits (K AND V) to the
       counters of its channels: read, RAM output register, add, write, one beat per cycle;
       token 0 starts the counts from 0. A beat whose counter word is in flight waits (only
       when a token has fewer than 4 beats). Q beats go to the Q buffer meanwhile.
    2. FLUSH, MASK. The `channels` counts go through the talking-heads neuron (a `LIFArray`
       over the channels, threshold 0.5, membranes carried across timesteps); its spikes are
       the channel mask.
    3. RUN. Q is read back and ANDed with the mask, one beat per cycle, into the output FIFO
       (credit-counted).

    The cycle model is `spec.SDSAConfig.cycles`.
    """

    VARIANTS = (1, 2)

    def elaborate(self, platform):
        cfg = self._config
        L, N, W = cfg.lanes, cfg.tokens, cfg.words_per_token
        words, kb = N * W, cfg.kv_bits
        m = Module()
        m.submodules.neuron = neuron = self.neuron

        # Q is read only in RUN, written only in LOAD
        qmem = memory.Memory(shape=unsigned(L), depth=words, init=[], attrs={"no_rw_check": 1})
        # counts: a beat waits while its word is in flight, so no read meets a write
        cmem = memory.Memory(shape=unsigned(L * kb), depth=W, init=[],
                             attrs={"no_rw_check": 1})
        mmem = memory.Memory(shape=unsigned(L), depth=W, init=[])
        m.submodules.qmem, m.submodules.cmem, m.submodules.mmem = qmem, cmem, mmem
        q_wr, q_rd = qmem.write_port(), qmem.read_port()
        c_wr, c_rd = cmem.write_port(), cmem.read_port()
        m_wr, m_rd = mmem.write_port(), mmem.read_port()

        phase = Signal(Phase)
        step = Signal(range(cfg.timesteps))

        # -- LOAD --------------------------------------------------------------------------------
        kv_cnt = Signal(range(words + 1))
        ld_w = Signal(range(W))
        ld_t0 = Signal(init=1)   # token 0: counts start from 0
        s_valid = [Signal(name=f"c{k}_valid") for k in range(1, 4)]
        s_addr = [Signal(range(W), name=f"c{k}_addr") for k in range(1, 4)]
        hazard = Cat(*(v & (a == ld_w) for v, a in zip(s_valid, s_addr, strict=True))).any()
        can = (phase == Phase.LOAD) & (kv_cnt != words) & ~hazard
        take = Signal()
        if cfg.variant == 1:
            m.d.comb += [
                self.k.ready.eq(can & self.v.valid),
                self.v.ready.eq(can & self.k.valid),
                take.eq(self.k.valid & self.k.ready),
            ]
            bits = self.k.payload.spikes.as_value() & self.v.payload.spikes.as_value()
        else:
            m.d.comb += [self.v.ready.eq(can), take.eq(self.v.valid & self.v.ready)]
            bits = self.v.payload.spikes.as_value()
        with m.If(take):
            m.d.sync += [kv_cnt.eq(kv_cnt + 1), ld_w.eq(Mux(ld_w == W - 1, 0, ld_w + 1))]
            with m.If(ld_w == W - 1):
                m.d.sync += ld_t0.eq(0)

        q_cnt, q_full = self._load_q(m, q_wr, phase == Phase.LOAD)

        # count update: read, register, add, write
        s1_bits, s1_t0 = Signal(L), Signal()
        s2_cnt, s2_bits, s2_t0 = Signal(L * kb), Signal(L), Signal()
        s3_sum = Signal(L * kb)
        m.d.sync += [
            s_valid[0].eq(take), s_addr[0].eq(ld_w), s1_bits.eq(bits), s1_t0.eq(ld_t0),
            s_valid[1].eq(s_valid[0]), s_addr[1].eq(s_addr[0]), s2_cnt.eq(c_rd.data),
            s2_bits.eq(s1_bits), s2_t0.eq(s1_t0),
            s_valid[2].eq(s_valid[1]), s_addr[2].eq(s_addr[1]),
            s3_sum.eq(Cat(*((Mux(s2_t0, 0, x) + s2_bits[i])[:kb]
                            for i, x in enumerate(_split(s2_cnt, L, kb))))),
        ]
        m.d.comb += [c_wr.addr.eq(s_addr[2]), c_wr.data.eq(s3_sum), c_wr.en.eq(s_valid[2])]

        # -- MASK: counts through the neuron ----------------------------------------------------
        mk_cnt = Signal(range(W + 1))       # count words read
        mk_out = Signal(range(W + 1))       # mask words written
        mf_depth = 4
        m.submodules.mfifo = mfifo = fifo.SyncFIFO(width=L * kb + 1, depth=mf_depth)
        mf_out = Signal(range(mf_depth + 1))
        mk_issue = Signal()
        m.d.comb += mk_issue.eq((phase == Phase.MASK) & (mk_cnt != W) & (mf_out != mf_depth))
        with m.If(phase == Phase.MASK):
            m.d.comb += c_rd.addr.eq(mk_cnt)
        with m.Else():
            m.d.comb += c_rd.addr.eq(ld_w)
        mf_pop = mfifo.r_rdy & neuron.i.ready
        m.d.sync += mf_out.eq(mf_out + mk_issue - mf_pop)
        k1_valid, k1_first = Signal(), Signal()
        k2_valid, k2_first = Signal(), Signal()
        k2_cnt = Signal(L * kb)
        m.d.sync += [
            k1_valid.eq(mk_issue), k1_first.eq((step == 0) & (mk_cnt == 0)),
            k2_valid.eq(k1_valid), k2_first.eq(k1_first), k2_cnt.eq(c_rd.data),
        ]
        with m.If(mk_issue):
            m.d.sync += mk_cnt.eq(mk_cnt + 1)
        xb = self.neuron.config.in_bits
        m.d.comb += [
            mfifo.w_data.eq(Cat(k2_cnt, k2_first)), mfifo.w_en.eq(k2_valid),
            neuron.i.valid.eq(mfifo.r_rdy),
            neuron.i.payload.x.as_value().eq(Cat(*(Cat(x, Const(0, xb - kb))
                                                   for x in _split(mfifo.r_data, L, kb)))),
            neuron.i.payload.first.eq(mfifo.r_data[L * kb]),
            mfifo.r_en.eq(neuron.i.ready),
            neuron.o.ready.eq(1),
            m_wr.addr.eq(mk_out), m_wr.data.eq(neuron.o.payload.spikes),
            m_wr.en.eq(neuron.o.valid),
        ]
        with m.If(neuron.o.valid):
            m.d.sync += mk_out.eq(mk_out + 1)

        # -- RUN: Q AND mask into the output FIFO -----------------------------------------------
        o_depth = 6
        m.submodules.ofifo = ofifo = fifo.SyncFIFOBuffered(width=L + 2, depth=o_depth)
        o_out = Signal(range(o_depth + 1))
        rd_cnt = Signal(range(words + 1))
        rd_w = Signal(range(W))
        run_issue = Signal()
        o_pop = ofifo.r_rdy & self.o.ready
        m.d.comb += [
            run_issue.eq((phase == Phase.RUN) & (o_out != o_depth)),
            q_rd.addr.eq(rd_cnt), m_rd.addr.eq(rd_w),
        ]
        m.d.sync += o_out.eq(o_out + run_issue - o_pop)
        self.rw_checks.clear()
        self._guard("qmem", run_issue, q_rd, q_wr)
        self._guard("cmem", take | mk_issue, c_rd, c_wr)
        r1_valid, r1_first, r1_last = Signal(), Signal(), Signal()
        r2_valid, r2_word = Signal(), Signal(L + 2)
        m.d.sync += [
            r1_valid.eq(run_issue),
            r1_first.eq((step == 0) & (rd_cnt == 0)),
            r1_last.eq((step == cfg.timesteps - 1) & (rd_cnt == words - 1)),
            r2_valid.eq(r1_valid),
            r2_word.eq(Cat(q_rd.data & m_rd.data, r1_first, r1_last)),
        ]
        m.d.comb += [
            ofifo.w_data.eq(r2_word), ofifo.w_en.eq(r2_valid),
            self.o.valid.eq(ofifo.r_rdy),
            self.o.payload.as_value().eq(ofifo.r_data),
            ofifo.r_en.eq(self.o.ready),
        ]

        # -- phase sequencing ---------------------------------------------------------------------
        flush = Signal(range(4))
        with m.Switch(phase):
            with m.Case(Phase.LOAD):
                with m.If((kv_cnt == words) & q_full):
                    m.d.sync += [phase.eq(Phase.FLUSH), flush.eq(2)]
            with m.Case(Phase.FLUSH):
                m.d.sync += flush.eq(flush - 1)
                with m.If(flush == 0):
                    m.d.sync += [phase.eq(Phase.MASK), mk_cnt.eq(0), mk_out.eq(0)]
            with m.Case(Phase.MASK):
                with m.If(neuron.o.valid & (mk_out == W - 1)):
                    m.d.sync += [phase.eq(Phase.RUN), rd_cnt.eq(0), rd_w.eq(0)]
            with m.Case(Phase.RUN):
                with m.If(run_issue):
                    m.d.sync += [rd_cnt.eq(rd_cnt + 1), rd_w.eq(Mux(rd_w == W - 1, 0, rd_w + 1))]
                    with m.If(rd_cnt == words - 1):
                        m.d.sync += [
                            phase.eq(Phase.LOAD), kv_cnt.eq(0), ld_w.eq(0), ld_t0.eq(1),
                            q_cnt.eq(0),
                            step.eq(Mux(step == cfg.timesteps - 1, 0, step + 1)),
                        ]
        return m
