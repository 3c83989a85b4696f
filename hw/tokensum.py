"""Token sum: per-channel sums of a residual-stream frame over its tokens (the head's input)."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.tokensum import TOKENSUM_OUT_FIFO_DEPTH, TokenSumConfig

from .common import saturate, struct_layout

__all__ = ["TokenSum"]


class TokenSum(wiring.Component):
    """Sums each channel of a frame over its tokens; one output token per frame.

    The running sums (`groups` words of `lanes` sums, `wide_bits` each, so they never overflow)
    live in a memory: a beat's word is read when the beat is taken and written back with the
    beat added a cycle later; the previous beat's sum is forwarded when it wrote the same word
    (one output group). A frame's first token starts from zero, so nothing is cleared. The last
    token's sums, saturated to `bits`, go to a small output FIFO whose free space is the input's
    credit. One beat per cycle; see `TokenSumConfig.cycles`.

    The unit counts tokens and groups from reset; an input beat with `first` set restarts the
    count.

    Parameters
    ----------
    config : spec.TokenSumConfig
    """

    def __init__(self, config):
        if not isinstance(config, TokenSumConfig):
            raise TypeError(f"config must be a TokenSumConfig, not {config!r}")
        self._config = config
        super().__init__({
            "i": In(stream.Signature(struct_layout(config.input_fields()))),
            "o": Out(stream.Signature(struct_layout(config.output_fields()))),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        lanes, groups, wide = cfg.lanes, cfg.groups, cfg.wide_bits
        m = Module()
        sums = memory.Memory(shape=unsigned(lanes * wide), depth=groups, init=[])
        m.submodules.sums = sums
        rd, wr = sums.read_port(), sums.write_port()
        out_layout = struct_layout(cfg.output_fields())
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFO(width=out_layout.size,
                                                         depth=TOKENSUM_OUT_FIFO_DEPTH)

        token = Signal(range(cfg.tokens))
        group = Signal(range(groups))
        first_in = self.i.payload.first
        eff_token, eff_group = Mux(first_in, 0, token), Mux(first_in, 0, group)

        # stage A: the beat taken last cycle, its word's old sum on the read port
        a_valid, a_group = Signal(), Signal(range(groups))
        a_zero, a_emit = Signal(), Signal()        # first token: start at 0; last: emit
        a_first, a_last = Signal(), Signal()
        a_x = Signal.like(self.i.payload.x)
        prev_wrote, prev_group = Signal(), Signal(range(groups))
        prev_sum = Signal(lanes * wide)

        take = Signal()
        m.d.comb += [
            self.i.ready.eq(out_fifo.level + a_valid < TOKENSUM_OUT_FIFO_DEPTH),
            take.eq(self.i.valid & self.i.ready),
            rd.addr.eq(eff_group),
        ]
        last_group = eff_group == groups - 1
        with m.If(take):
            m.d.sync += [
                group.eq(Mux(last_group, 0, eff_group + 1)),
                token.eq(Mux(last_group, Mux(eff_token == cfg.tokens - 1, 0, eff_token + 1),
                             eff_token)),
                a_group.eq(eff_group), a_x.eq(self.i.payload.x),
                a_zero.eq(eff_token == 0), a_emit.eq(eff_token == cfg.tokens - 1),
                a_first.eq(eff_group == 0), a_last.eq(last_group),
            ]
        m.d.sync += a_valid.eq(take)

        old = Mux(prev_wrote & (prev_group == a_group), prev_sum, rd.data)
        new = Signal(lanes * wide)
        out = Signal(out_layout)
        for j in range(lanes):
            word = old[j * wide:(j + 1) * wide].as_signed()
            total = Mux(a_zero, 0, word) + a_x[j]
            m.d.comb += [new[j * wide:(j + 1) * wide].eq(total),
                         out.sum[j].eq(saturate(new[j * wide:(j + 1) * wide].as_signed(),
                                                cfg.bits))]
        m.d.comb += [
            out.first.eq(a_first), out.last.eq(a_last),
            wr.addr.eq(a_group), wr.data.eq(new), wr.en.eq(a_valid),
            out_fifo.w_data.eq(out.as_value()), out_fifo.w_en.eq(a_valid & a_emit),
        ]
        m.d.sync += [prev_wrote.eq(a_valid), prev_group.eq(a_group), prev_sum.eq(new)]
        m.d.comb += [
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
        ]
        return m
