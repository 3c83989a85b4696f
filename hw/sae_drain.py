"""What the accumulate engines share: the mode sequence, the drain with bias, the output FIFO."""

import enum

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import Out

from spec.sae import SAE_FLUSH_CYCLES, SAE_OUT_FIFO_DEPTH

from .common import saturate, struct_layout

__all__ = ["Drain", "Mode", "pack_words"]


def pack_words(values, bits):
    """Pack signed integers into one word, element 0 in the low bits."""
    word = 0
    for j, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (j * bits)
    return word


class Mode(enum.Enum):
    CLEAR = 0   # after reset: zero every accumulator
    ACC = 1     # take events, issue accumulator updates
    FLUSH = 2   # the frame's last update is in flight
    DRAIN = 3   # stream out every accumulator word (plus bias) and zero it


class Drain(wiring.Component):
    """Mode sequencing and the drain of an accumulate engine.

    The engine raises `start` for one cycle in `Mode.ACC` once a frame's last update has issued.
    After `SAE_FLUSH_CYCLES` cycles the drain reads accumulator word 0 .. `acc_words - 1`
    (`read_addr`; the engine returns the word on `read_data` one cycle later, lanes in channel
    order), adds the bias, saturates, and queues output beats in a FIFO under a credit counter.
    Each word read is zeroed the next cycle (`clear_en`, `clear_addr`), as is every word while
    `Mode.CLEAR` runs after reset. `read_row_mod` / `read_col_mod` give (oh mod R, ow mod C) of
    the word on `read_data`, for engines that store a pixel's channels rotated across banks.
    """

    def __init__(self, config, params, *, rows=1, cols=1):
        self._config, self._params = config, params
        self._rows, self._cols = rows, cols
        lanes, ab = config.lanes, config.acc_bits
        self.mode = Signal(Mode)
        self.start = Signal()
        self.read_addr = Signal(range(config.acc_words))
        self.read_data = Signal(lanes * ab)
        self.clear_en = Signal()
        self.clear_addr = Signal(range(config.acc_words))
        self.read_row_mod = Signal(range(rows))
        self.read_col_mod = Signal(range(cols))
        self.d1_valid = Signal()
        super().__init__({"o": Out(stream.Signature(struct_layout(config.output_fields())))})

    def elaborate(self, platform):
        cfg, prm = self._config, self._params
        lanes, groups, ab, n_acc = cfg.lanes, cfg.out_groups, cfg.acc_bits, cfg.acc_words
        m = Module()
        mode = self.mode

        depth = SAE_OUT_FIFO_DEPTH
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(width=lanes * ab + 2,
                                                                 depth=depth)
        outstanding = Signal(range(depth + 1))
        pop = Signal()
        issue = Signal()
        m.d.comb += issue.eq((mode == Mode.DRAIN) & (outstanding < depth))
        m.d.sync += outstanding.eq(outstanding + issue - pop)

        # drain position: word address, group, output pixel (for the bank rotation)
        d_g = Signal(range(max(2, groups)))
        d_col = Signal(range(cfg.out_width))
        d_row = Signal(range(cfg.out_height))

        d1_addr = Signal.like(self.read_addr)
        d1_first, d1_last = Signal(), Signal()
        d1_row, d1_col = Signal.like(d_row), Signal.like(d_col)
        d2_valid, d2_first, d2_last = Signal(), Signal(), Signal()
        d2_acc = Signal(lanes * ab)
        d3_valid = Signal()
        d3_word = Signal(lanes * ab + 2)
        m.d.sync += [
            self.d1_valid.eq(issue), d1_addr.eq(self.read_addr),
            d1_first.eq(self.read_addr == 0), d1_last.eq(self.read_addr == n_acc - 1),
            d1_row.eq(d_row), d1_col.eq(d_col),
            d2_valid.eq(self.d1_valid), d2_first.eq(d1_first), d2_last.eq(d1_last),
            d2_acc.eq(self.read_data),
            d3_valid.eq(d2_valid),
        ]
        m.d.comb += [self.read_row_mod.eq(d1_row), self.read_col_mod.eq(d1_col)]
        outs = []
        if cfg.bias:
            bmem = memory.Memory(shape=unsigned(lanes * ab), depth=groups, init=[
                pack_words([prm.bias[g * lanes + j] if g * lanes + j < cfg.out_channels else 0
                            for j in range(lanes)], ab) for g in range(groups)])
            m.submodules.bmem = bmem
            b_rd = bmem.read_port()
            m.d.comb += b_rd.addr.eq(d_g)
            d2_bias = Signal(lanes * ab)
            m.d.sync += d2_bias.eq(b_rd.data)
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

        clear_cnt = Signal.like(self.read_addr)
        with m.If(mode == Mode.CLEAR):
            m.d.comb += [self.clear_en.eq(1), self.clear_addr.eq(clear_cnt)]
        with m.Elif(self.d1_valid):
            m.d.comb += [self.clear_en.eq(1), self.clear_addr.eq(d1_addr)]

        flush = Signal(range(SAE_FLUSH_CYCLES + 1))
        with m.Switch(mode):
            with m.Case(Mode.CLEAR):
                m.d.sync += clear_cnt.eq(clear_cnt + 1)
                with m.If(clear_cnt == n_acc - 1):
                    m.d.sync += mode.eq(Mode.ACC)
            with m.Case(Mode.ACC):
                with m.If(self.start):
                    m.d.sync += [mode.eq(Mode.FLUSH), flush.eq(SAE_FLUSH_CYCLES - 1)]
            with m.Case(Mode.FLUSH):
                m.d.sync += flush.eq(flush - 1)
                with m.If(flush == 0):
                    m.d.sync += [mode.eq(Mode.DRAIN), self.read_addr.eq(0), d_g.eq(0),
                                 d_col.eq(0), d_row.eq(0)]
            with m.Case(Mode.DRAIN):
                with m.If(issue):
                    m.d.sync += self.read_addr.eq(self.read_addr + 1)
                    with m.If(d_g != groups - 1):
                        m.d.sync += d_g.eq(d_g + 1)
                    with m.Else():
                        m.d.sync += d_g.eq(0)
                        with m.If(d_col != cfg.out_width - 1):
                            m.d.sync += d_col.eq(d_col + 1)
                        with m.Else():
                            m.d.sync += [d_col.eq(0), d_row.eq(d_row + 1)]
                    with m.If(self.read_addr == n_acc - 1):
                        m.d.sync += mode.eq(Mode.ACC)
        return m
