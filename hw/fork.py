"""Stream glue for composing units: an eager fork, and a connection that re-marks beats."""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Fork", "connect_payload"]


class Fork(wiring.Component):
    """Copies each beat of `i` to `outputs` streams `o0`, `o1`, ...

    An eager fork: each output takes the beat when it is ready, independently of the others;
    the input beat is consumed once every output has taken it (`taken` remembers which have).
    So one consumer that waits for a later beat of another does not deadlock the fork, and the
    outputs never see a beat twice. No buffering: zero latency, one beat per cycle when every
    consumer is ready.

    Parameters
    ----------
    layout : payload shape of the streams
    outputs : int
    """

    def __init__(self, layout, outputs):
        if outputs < 1:
            raise ValueError(f"a fork needs at least one output, not {outputs}")
        self._outputs = outputs
        ports = {"i": In(stream.Signature(layout))}
        for n in range(outputs):
            ports[f"o{n}"] = Out(stream.Signature(layout))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o{n}") for n in range(self._outputs)]
        taken = Signal(self._outputs)
        done = []
        for n, o in enumerate(outs):
            m.d.comb += [o.valid.eq(self.i.valid & ~taken[n]), o.payload.eq(self.i.payload)]
            done.append(taken[n] | o.ready)
        all_done = Signal()
        m.d.comb += [all_done.eq(Cat(*done).all()), self.i.ready.eq(all_done)]
        with m.If(self.i.valid & all_done):
            m.d.sync += taken.eq(0)
        with m.Elif(self.i.valid):
            for n, o in enumerate(outs):
                with m.If(o.ready):
                    m.d.sync += taken[n].eq(1)
        return m


def connect_payload(m, src, dst, *, clear_first=False):
    """Connect stream `src` to stream `dst` whose payloads have the same width but different
    field names (an engine's `acc` into a LIF's `x`). With `clear_first`, `dst` sees `first`
    as 0: for a LIF fed by a unit that marks every frame (timestep) with `first`, where the LIF
    must keep counting timesteps of a sample itself."""
    src_bits, dst_bits = src.payload.as_value(), dst.payload.as_value()
    if len(src_bits) != len(dst_bits):
        raise ValueError(f"payload widths differ: {len(src_bits)} and {len(dst_bits)} bits")
    m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready), dst_bits.eq(src_bits)]
    if clear_first:
        m.d.comb += dst.payload.first.eq(0)
