"""Stream width adapters: split each beat into narrower beats, or join narrow beats into one.

Between units whose lanes per beat differ (the attention unit works at most a head's channels
per beat, the engines around it at up to 16), a frame's values keep their order: lanes
`p * narrow .. p * narrow + narrow - 1` of a wide beat are the p-th narrow beat.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec.ports import Field

from .common import struct_layout

__all__ = ["Narrow", "Widen", "marked_fields"]


def marked_fields(name, bits, lanes, signed=False):
    """`lanes` values of `bits` bits called `name`, then `first` and `last`."""
    return (Field(name, bits, signed=signed, count=lanes), Field("first", 1), Field("last", 1))


def _check(wide, narrow):
    if narrow < 1 or wide % narrow:
        raise ValueError(f"narrow lanes ({narrow}) must divide wide lanes ({wide})")


class _Regroup(wiring.Component):
    """Ports `i` of `lanes_in` and `o` of `lanes_out` values, `parts = wide / narrow`, and the
    counter of the part being handed over."""

    def __init__(self, name, bits, lanes_in, lanes_out, wide, narrow, signed):
        _check(wide, narrow)
        self._name, self._parts = name, wide // narrow
        super().__init__({
            "i": In(stream.Signature(struct_layout(marked_fields(name, bits, lanes_in, signed)))),
            "o": Out(stream.Signature(struct_layout(marked_fields(name, bits, lanes_out,
                                                                  signed)))),
        })

    def _counter(self):
        """(part, last_part): which part is being handed over."""
        part = Signal(range(max(2, self._parts)))
        return part, part == self._parts - 1


class Narrow(_Regroup):
    """Splits each beat of `wide` lanes into `wide / narrow` beats of `narrow` lanes, in lane
    order; `first` goes with the first part, `last` with the last. No buffering: the input beat
    is taken with its last part.

    Parameters
    ----------
    name, bits, signed : the value field
    wide, narrow : int
        Lanes per input beat and per output beat (`narrow` divides `wide`).
    """

    def __init__(self, name, bits, wide, narrow, *, signed=False):
        super().__init__(name, bits, wide, narrow, wide, narrow, signed)

    def elaborate(self, platform):
        m = Module()
        parts = self._parts
        part, last_part = self._counter()
        values = self.i.payload[self._name].as_value()
        width = len(values) // parts
        with m.Switch(part):
            for p in range(parts):
                with m.Case(p):
                    m.d.comb += self.o.payload[self._name].as_value().eq(
                        values[p * width:(p + 1) * width])
        m.d.comb += [
            self.o.valid.eq(self.i.valid),
            self.o.payload.first.eq(self.i.payload.first & (part == 0)),
            self.o.payload.last.eq(self.i.payload.last & last_part),
            self.i.ready.eq(self.o.ready & last_part),
        ]
        with m.If(self.o.valid & self.o.ready):
            with m.If(last_part):
                m.d.sync += part.eq(0)
            with m.Else():
                m.d.sync += part.eq(part + 1)
        return m


class Widen(_Regroup):
    """Joins `wide / narrow` beats of `narrow` lanes into one beat of `wide` lanes; `first`
    comes from the first part, `last` from the last. The joined beat is offered with the last
    part (no added latency); earlier parts are held in a register.

    Parameters
    ----------
    name, bits, signed : the value field
    wide, narrow : int
    """

    def __init__(self, name, bits, wide, narrow, *, signed=False):
        super().__init__(name, bits, narrow, wide, wide, narrow, signed)

    def elaborate(self, platform):
        m = Module()
        parts = self._parts
        part, last_part = self._counter()
        value = self.i.payload[self._name].as_value()
        saved = [Signal(len(value), name=f"part{p}") for p in range(parts - 1)]
        first = Signal()
        m.d.comb += [
            self.o.payload[self._name].as_value().eq(Cat(*saved, value)),
            self.o.payload.first.eq(first if parts > 1 else self.i.payload.first),
            self.o.payload.last.eq(self.i.payload.last),
            self.o.valid.eq(self.i.valid & last_part),
            self.i.ready.eq(~last_part | self.o.ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            with m.If(last_part):
                m.d.sync += part.eq(0)
            with m.Else():
                m.d.sync += part.eq(part + 1)
                with m.Switch(part):
                    for p in range(parts - 1):
                        with m.Case(p):
                            m.d.sync += saved[p].eq(value)
                with m.If(part == 0):
                    m.d.sync += first.eq(self.i.payload.first)
        return m
