"""A whole integer network in hardware: its layers and head chained by their streams."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec.network import IntConvBlock, IntDownsample, Widths

from .block import Head, layer_component
from .fork import connect_payload

__all__ = ["Network"]


class Network(wiring.Component):
    """Pixels in, class accumulations out: every layer of an `IntNetwork`, then its head.

    Ports:

    - `i`: the first layer's input beats, integer pixels (`SAEConfig.input_fields` of its
      multi-bit engine), each image repeated for `timesteps` frames;
    - `o`: per timestep, one frame of class accumulations (the head's linear engine); the
      scores are their sum over a sample's timesteps;
    - with `taps`, `t<n>` (`t<n>.data`, `t<n>.fire`) for each layer n: the layer's output
      beat and a strobe in the cycle it is handed on, to check every layer's stream without
      touching the handshakes.

    Parameters
    ----------
    net : spec.network.IntNetwork
    taps : bool
    """

    def __init__(self, net, *, taps=False):
        self.layers = [layer_component(layer, net.widths, net.timesteps) for layer in net.layers]
        tokens = _tokens(net)
        self.head = Head(net.head, net.widths, net.timesteps, tokens)
        for n, (a, b) in enumerate(zip(self.layers, [*self.layers[1:], self.head], strict=True)):
            if a.o.payload.shape().size != b.i.payload.shape().size:
                raise ValueError(f"layer {n} ({net.layers[n].name}) emits beats of "
                                 f"{a.o.payload.shape().size} bits, the next layer takes "
                                 f"{b.i.payload.shape().size}")
        self._taps = taps
        members = {"i": In(stream.Signature(self.layers[0].i.payload.shape())),
                   "o": Out(stream.Signature(self.head.o.payload.shape()))}
        if taps:
            for n, layer in enumerate(self.layers):
                members[f"t{n}"] = Out(wiring.Signature({
                    "data": Out(layer.o.payload.shape()), "fire": Out(1)}))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for n, layer in enumerate(self.layers):
            m.submodules[f"layer{n}"] = layer
        m.submodules.head = self.head
        wiring.connect(m, wiring.flipped(self.i), self.layers[0].i)
        chain = [*self.layers, self.head]
        for n, (a, b) in enumerate(zip(chain, chain[1:], strict=False)):
            connect_payload(m, a.o, b.i)
            if self._taps:
                tap = getattr(self, f"t{n}")
                fire = Signal(name=f"fire{n}")
                m.d.comb += [fire.eq(a.o.valid & b.i.ready), tap.fire.eq(fire),
                             tap.data.eq(a.o.payload)]
        wiring.connect(m, self.head.o, wiring.flipped(self.o))
        return m


def _tokens(net):
    """Tokens of the last layer's map."""
    last = net.layers[-1]
    if isinstance(last, IntDownsample):
        cfg = last.producer.conv
        conv = cfg.config(Widths(net.widths))
        return conv.out_height * conv.out_width
    if isinstance(last, IntConvBlock):
        return last.lif1.height * last.lif1.width
    return last.head_lif.height * last.head_lif.width
