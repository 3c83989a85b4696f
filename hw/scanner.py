"""Word scanner: words of spikes in, one event per spike out, group ends kept as markers."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WordScanner", "lowest_set"]


def lowest_set(m, mask, lanes):
    """(one-hot lowest set bit of `mask`, its index), as combinational signals."""
    lowest = Signal(lanes)
    m.d.comb += lowest.eq(mask & ~(mask - 1))
    index = Signal(range(max(2, lanes)))
    m.d.comb += index.eq(Cat(*(
        Cat(*(lowest[j] for j in range(lanes) if (j >> b) & 1)).any()
        for b in range(max(1, (lanes - 1).bit_length())))))
    return lowest, index


class WordScanner(wiring.Component):
    """Turns words of `lanes` spikes into one event per spike, lowest lane first.

    An input word carries `bits`, a user `tag` (copied to its events), `mark` (the word ends a
    group whose end the consumer must see) and `final` (the word ends a pass). The word's last
    event carries its `mark` and `final` as `end` and `final`; a word without spikes that has
    either flag emits one event with `spike = 0` carrying them; any other word without spikes
    is consumed in one cycle and emits nothing.

    Throughput: one event per cycle; a word costs max(1, its spikes) cycles. Latency: one cycle.

    Parameters
    ----------
    lanes : int
    tag : dict of str to shape
        Fields of the tag.
    """

    def __init__(self, lanes, tag):
        self._lanes = lanes
        tag_layout = data.StructLayout(tag)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "bits": lanes, "mark": 1, "final": 1, "tag": tag_layout}))),
            "o": Out(stream.Signature(data.StructLayout({
                "lane": range(max(2, lanes)), "spike": 1, "end": 1, "final": 1,
                "tag": tag_layout}))),
        })

    def elaborate(self, platform):
        lanes = self._lanes
        m = Module()
        have = Signal()
        mask = Signal(lanes)
        token = Signal()
        mark, final = Signal(), Signal()
        tag = Signal.like(self.i.payload.tag)

        lowest, index = lowest_set(m, mask, lanes)
        remaining = Signal(lanes)
        m.d.comb += remaining.eq(mask & ~lowest)
        last = token | (remaining == 0)
        m.d.comb += [
            self.o.valid.eq(have),
            self.o.payload.lane.eq(Mux(token, 0, index)),
            self.o.payload.spike.eq(~token),
            self.o.payload.end.eq(mark & last),
            self.o.payload.final.eq(final & last),
            self.o.payload.tag.eq(tag),
        ]
        done = self.o.valid & self.o.ready & last
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += mask.eq(remaining)
            with m.If(last):
                m.d.sync += have.eq(0)
        m.d.comb += self.i.ready.eq(~have | done)
        word = self.i.payload
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                have.eq((word.bits != 0) | word.mark | word.final),
                mask.eq(word.bits),
                token.eq(word.bits == 0),
                mark.eq(word.mark),
                final.eq(word.final),
                tag.eq(word.tag),
            ]
        return m
