"""Whole SNN layers assembled from the units: the downsampling layer, the Conv-based and the
Transformer-based block, and the classification head.

A layer is built from the integer network's description of it (`spec.network`, as
`spec.netbundle.read_network_bundle` rebuilds it from a bundle; `sw.int_model`'s runnable
pieces are the same classes) and the network's widths, so the hardware and the integer golden
model are configured from the same numbers.

Streams between units carry `lanes` channels of one pixel (token) per beat, pixels in raster
order, one frame per timestep, samples of `timesteps` frames. Each unit counts beats and
timesteps itself from reset, so a LIF array fed by a unit that marks every frame `first` gets
`first` cleared (`hw.fork.connect_payload`): it must not restart its timestep count.
"""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec.lif import LIFConfig
from spec.network import IntConvBlock, IntDownsample, IntTransformerBlock, Widths
from spec.sae import SAEConfig
from spec.shortcut import ShortcutConfig, ShortcutParams
from spec.tokensum import TokenSumConfig

from .common import struct_layout
from .fork import Fork, connect_payload
from .lif import LIFArray
from .regroup import Narrow, Widen
from .sae import SpikeAccumulator
from .sdsa import sdsa_unit
from .shortcut import Shortcut
from .tokensum import TokenSum

__all__ = ["DownsampleLayer", "ConvBlock", "TransformerBlock", "Head", "layer_component",
           "block_units", "conv_block_units", "downsample_units", "head_units", "unit_config"]


def unit_config(unit):
    """The configuration of a unit list's entry (a config, or (config, params))."""
    return unit[0] if isinstance(unit, tuple) else unit


def _in_fields(unit):
    cfg = unit_config(unit)
    if isinstance(cfg, ShortcutConfig):
        return cfg.branch_fields()
    return cfg.input_fields()


def _out_fields(unit):
    cfg = unit_config(unit)
    if isinstance(cfg, ShortcutConfig):
        return cfg.stream_fields()
    return cfg.output_fields()


def _width(fields):
    return sum(f.width for f in fields)


def _check_links(units, links):
    """Each (source, destination) link must carry payloads of one width: the same lanes per
    beat and the same value width. Raises ValueError naming the first link that does not."""
    for src, dst in links:
        out_f, in_f = _out_fields(units[src]), _in_fields(units[dst])
        if _width(out_f) != _width(in_f):
            def show(fields):
                f = fields[0]
                return f"{f.count or 1} x {f.bits} bits"
            raise ValueError(f"{src} -> {dst}: {src} emits beats of {show(out_f)}, {dst} takes "
                             f"{show(in_f)}")


def _producer_units(producer, ctx, height, width, residual):
    """(SAE config, params, shortcut config, params) of a layer that writes a residual stream."""
    cfg = producer.conv.config(ctx)
    sc = ShortcutConfig(channels=producer.conv.out_channels, height=cfg.out_height,
                        width=cfg.out_width, lanes=cfg.lanes, acc_bits=cfg.acc_bits,
                        bits=ctx.width(producer.stream), residual=residual)
    return (cfg, producer.conv.params(cfg), sc,
            ShortcutParams.checked(sc, producer.shift, producer.bias))


def _conv_unit(conv, ctx):
    cfg = conv.config(ctx)
    return (cfg, conv.params(cfg))


def downsample_units(layer, widths, timesteps):
    """The units of an `IntDownsample`: an optional LIF (it reads a stream; the network's first
    layer reads pixels and has none), the convolution's engine and a shortcut that starts the
    new stream."""
    ctx = Widths(widths)
    units = {}
    if layer.neuron is not None:
        units["lif"] = layer.neuron.config(ctx, timesteps)
    cfg, params, sc, sc_params = _producer_units(layer.producer, ctx, None, None, False)
    units["sae"] = (cfg, params)
    units["shortcut"] = (sc, sc_params)
    links = ([("lif", "sae")] if layer.neuron is not None else []) + [("sae", "shortcut")]
    _check_links(units, links)
    return units


def conv_block_units(block, widths, timesteps):
    """The units of an `IntConvBlock`: {name: config or (config, params)}."""
    ctx = Widths(widths)
    units = {"sep_lif1": block.sep_lif1.config(ctx, timesteps),
             "sep_pw1_sae": _conv_unit(block.sep_pw1, ctx),
             "sep_lif2": block.sep_lif2.config(ctx, timesteps),
             "sep_dw_sae": _conv_unit(block.sep_dw, ctx)}
    cfg, params, sc, sc_params = _producer_units(block.sep_pw2, ctx, None, None, True)
    units["sep_pw2_sae"], units["sep_shortcut"] = (cfg, params), (sc, sc_params)
    units["lif1"] = block.lif1.config(ctx, timesteps)
    units["conv1_sae"] = _conv_unit(block.conv1, ctx)
    units["lif2"] = block.lif2.config(ctx, timesteps)
    cfg, params, sc, sc_params = _producer_units(block.conv2, ctx, None, None, True)
    units["conv2_sae"], units["conv2_shortcut"] = (cfg, params), (sc, sc_params)
    _check_links(units, [
        ("sep_lif1", "sep_pw1_sae"), ("sep_pw1_sae", "sep_lif2"), ("sep_lif2", "sep_dw_sae"),
        ("sep_dw_sae", "sep_pw2_sae"), ("sep_pw2_sae", "sep_shortcut"),
        ("sep_shortcut", "lif1"), ("lif1", "conv1_sae"), ("conv1_sae", "lif2"),
        ("lif2", "conv2_sae"), ("conv2_sae", "conv2_shortcut")])
    return units


def _check_attention_lanes(units):
    """The SDSA sits between lanes of the block's width: q/k/v spikes in, proj's input out
    (the MLP's hidden layer may be wider: fc1 and fc2 convert). Raises ValueError otherwise."""
    lanes = {"head_lif": units["head_lif"].lanes, "proj_sae.in": units["proj_sae"][0].in_lanes}
    lanes.update({f"{n}_lif": units[f"{n}_lif"].lanes for n in "qkv"})
    if len(set(lanes.values())) != 1:
        raise ValueError("the attention half's units disagree on lanes per beat: "
                         + ", ".join(f"{n} {v}" for n, v in lanes.items()))


def block_units(block, widths, timesteps):
    """The unit configurations of an `IntTransformerBlock`: {name: config or (config, params)}.
    Raises ValueError when their stream layouts do not line up."""
    ctx = Widths(widths)
    units = {"head_lif": block.head_lif.config(ctx, timesteps)}
    for name in ("q", "k", "v"):
        units[f"{name}_sae"] = _conv_unit(getattr(block, f"{name}_conv"), ctx)
        units[f"{name}_lif"] = getattr(block, f"{name}_lif").config(ctx, timesteps)
    units["sdsa"] = block.sdsa
    for name, producer in (("proj", block.proj), ("fc2", block.fc2)):
        cfg, params, sc, sc_params = _producer_units(producer, ctx, None, None, True)
        units[f"{name}_sae"] = (cfg, params)
        units[f"{name}_shortcut"] = (sc, sc_params)
    units["mlp_lif1"] = block.mlp_lif1.config(ctx, timesteps)
    units["fc1_sae"] = _conv_unit(block.fc1, ctx)
    units["mlp_lif2"] = block.mlp_lif2.config(ctx, timesteps)
    _check_links(units, [
        ("head_lif", "q_sae"), ("head_lif", "k_sae"), ("head_lif", "v_sae"),
        ("q_sae", "q_lif"), ("k_sae", "k_lif"), ("v_sae", "v_lif"),
        ("proj_sae", "proj_shortcut"), ("proj_shortcut", "mlp_lif1"),
        ("mlp_lif1", "fc1_sae"), ("fc1_sae", "mlp_lif2"), ("mlp_lif2", "fc2_sae"),
        ("fc2_sae", "fc2_shortcut"), ("fc2_shortcut", "head_lif")])
    _check_attention_lanes(units)
    block_lanes = units["head_lif"].lanes
    if block_lanes % block.sdsa.lanes:
        raise ValueError(f"the SDSA's lanes ({block.sdsa.lanes}) must divide the block's "
                         f"({block_lanes})")
    if block.sdsa.timesteps != timesteps:
        raise ValueError(f"the SDSA has {block.sdsa.timesteps} timesteps, the block {timesteps}")
    return units


def head_units(head, widths, timesteps, tokens):
    """The units of an `IntHead` over `tokens` tokens: the token sum, its LIF and the linear
    layer (one output frame of class accumulations per timestep)."""
    ctx = Widths(widths)
    lif = head.neuron.config(ctx, timesteps)
    units = {"tokensum": TokenSumConfig(channels=head.neuron.channels, tokens=tokens,
                                        lanes=lif.lanes, in_bits=ctx.width(head.source),
                                        bits=ctx.width(head.key)),
             "lif": lif, "fc_sae": _conv_unit(head.fc, ctx)}
    _check_links(units, [("tokensum", "lif"), ("lif", "fc_sae")])
    return units


def _make(unit):
    config = unit_config(unit)
    if isinstance(config, LIFConfig):
        return LIFArray(config)
    if isinstance(config, SAEConfig):
        return SpikeAccumulator(*unit)
    if isinstance(config, ShortcutConfig):
        return Shortcut(*unit)
    if isinstance(config, TokenSumConfig):
        return TokenSum(config)
    return sdsa_unit(config)


class _Layer(wiring.Component):
    """A layer of units between an input stream `i` and an output stream `o`."""

    def __init__(self, units, in_fields, out_fields):
        self.units = units
        super().__init__({"i": In(stream.Signature(struct_layout(in_fields))),
                          "o": Out(stream.Signature(struct_layout(out_fields)))})

    def _parts(self, m):
        parts = {name: _make(unit) for name, unit in self.units.items()}
        for name, part in parts.items():
            m.submodules[name] = part
        return parts

    def _into(self, m, src, name, part):
        """Stream `src` into unit `name` (`part`). A LIF's input sees `first` cleared: the units
        before it mark every frame (timestep) `first`, and a LIF counts a sample's timesteps
        itself."""
        clear = isinstance(unit_config(self.units[name]), LIFConfig)
        connect_payload(m, src, part.i, clear_first=clear)

    def _chain(self, m, p, src, names):
        """`src` -> the units `names` in order; returns the last one's output."""
        for name in names:
            self._into(m, src, name, p[name])
            src = p[name].o
        return src

    def _residual(self, m, p, x, fork, names, shortcut):
        """`x` -> the units `names` -> `shortcut`'s branch, `x` -> its residual (through the
        eager fork `fork`); returns the shortcut's output, branch + x."""
        layout = struct_layout(_out_fields(self.units[shortcut]))
        m.submodules[fork] = split = Fork(layout, 2)
        connect_payload(m, x, split.i)
        connect_payload(m, split.o1, p[shortcut].residual)
        connect_payload(m, self._chain(m, p, split.o0, names), p[shortcut].branch)
        return p[shortcut].o


class DownsampleLayer(_Layer):
    """The downsampling layer: [LIF ->] k x k convolution -> shortcut starting a new stream.

    Without a LIF (the network's first layer) the input is the engine's own: multi-bit pixels
    (`SAEConfig.in_bits`), one event per set bit. Ports: `i` (the previous stream, or pixels)
    and `o` (the new stream).

    Parameters
    ----------
    layer : spec.network.IntDownsample
    widths : dict
    timesteps : int
    """

    def __init__(self, layer, widths, timesteps):
        units = downsample_units(layer, widths, timesteps)
        first = units["lif"] if "lif" in units else units["sae"]
        super().__init__(units, _in_fields(first), units["shortcut"][0].stream_fields())

    def elaborate(self, platform):
        m = Module()
        p = self._parts(m)
        names = ["lif", "sae"] if "lif" in p else ["sae"]
        out = self._chain(m, p, wiring.flipped(self.i), names)
        connect_payload(m, out, p["shortcut"].branch)
        connect_payload(m, p["shortcut"].o, wiring.flipped(self.o))
        return m


class ConvBlock(_Layer):
    """The Conv-based SNN block::

        x  -> LIF -> 1x1 -> LIF -> depthwise k x k -> 1x1 (multi-bit input) -> (+ x)   = x1
        x1 -> LIF -> 3x3 -> LIF -> 3x3 -> (+ x1)                                       = out

    The SepConv's second 1x1 convolution reads the depthwise accumulations themselves: its
    engine takes them as signed multi-bit values, one event per set magnitude bit. Ports: `i`
    and `o`, residual-stream beats.

    Parameters
    ----------
    block : spec.network.IntConvBlock
    widths : dict
    timesteps : int
    """

    def __init__(self, block, widths, timesteps):
        units = conv_block_units(block, widths, timesteps)
        stream_fields = units["sep_shortcut"][0].stream_fields()
        super().__init__(units, stream_fields, stream_fields)

    def elaborate(self, platform):
        m = Module()
        p = self._parts(m)
        x1 = self._residual(m, p, wiring.flipped(self.i), "fork_x",
                            ["sep_lif1", "sep_pw1_sae", "sep_lif2", "sep_dw_sae", "sep_pw2_sae"],
                            "sep_shortcut")
        out = self._residual(m, p, x1, "fork_x1", ["lif1", "conv1_sae", "lif2", "conv2_sae"],
                             "conv2_shortcut")
        connect_payload(m, out, wiring.flipped(self.o))
        return m


class TransformerBlock(_Layer):
    """The Transformer-based SNN block::

        x -> LIF -> q/k/v (3x3 accumulate engines) -> LIFs -> SDSA -> proj -> (+ x)    = x1
        x1 -> LIF -> fc1 -> LIF -> fc2 -> (+ x1)                                       = out

    Ports: `i` and `o`, residual-stream beats (`ShortcutConfig.stream_fields`). The residuals
    wait in the shortcuts' one-frame buffers while the branches compute.

    Parameters
    ----------
    block : spec.network.IntTransformerBlock
    widths : dict
        The network's widths (`IntNetwork.widths`).
    timesteps : int
    """

    def __init__(self, block, widths, timesteps):
        units = block_units(block, widths, timesteps)
        self.stream_config = units["proj_shortcut"][0]
        fields = self.stream_config.stream_fields()
        super().__init__(units, fields, fields)

    def elaborate(self, platform):
        u = self.units
        m = Module()
        p = self._parts(m)
        # attention half: x -> LIF -> q/k/v -> LIFs -> SDSA -> proj -> + x; the branch forks
        # three ways, so it is wired here rather than by `_residual`
        stream_layout = struct_layout(self.stream_config.stream_fields())
        m.submodules.fork_x = fork_x = Fork(stream_layout, 2)
        spike_layout = struct_layout(u["head_lif"].output_fields())
        m.submodules.fork_s = fork_s = Fork(spike_layout, 3)
        wiring.connect(m, wiring.flipped(self.i), fork_x.i)
        connect_payload(m, fork_x.o1, p["proj_shortcut"].residual)
        connect_payload(m, self._chain(m, p, fork_x.o0, ["head_lif"]), fork_s.i)
        sdsa = p["sdsa"]
        wide, narrow = u["head_lif"].lanes, u["sdsa"].lanes
        for n, name in enumerate("qkv"):
            spikes = self._chain(m, p, getattr(fork_s, f"o{n}"), [f"{name}_sae", f"{name}_lif"])
            if not hasattr(sdsa, name):     # SDSA-2 reads no K: its spikes are dropped
                m.d.comb += spikes.ready.eq(1)
            elif wide == narrow:
                connect_payload(m, spikes, getattr(sdsa, name))
            else:       # the SDSA takes at most a head's channels per beat
                split = m.submodules[f"{name}_narrow"] = Narrow("spikes", 1, wide, narrow)
                connect_payload(m, spikes, split.i)
                wiring.connect(m, split.o, getattr(sdsa, name))
        if wide == narrow:
            attention = sdsa.o
        else:
            m.submodules.o_widen = join = Widen("spikes", 1, wide, narrow)
            wiring.connect(m, sdsa.o, join.i)
            attention = join.o
        connect_payload(m, self._chain(m, p, attention, ["proj_sae"]), p["proj_shortcut"].branch)

        # MLP half: x1 -> LIF -> fc1 -> LIF -> fc2 -> + x1
        out = self._residual(m, p, p["proj_shortcut"].o, "fork_x1",
                             ["mlp_lif1", "fc1_sae", "mlp_lif2", "fc2_sae"], "fc2_shortcut")
        connect_payload(m, out, wiring.flipped(self.o))
        return m


class Head(_Layer):
    """The classification head: token sum -> LIF -> linear layer with bias.

    Input: the last stage's stream; output: per timestep, one frame of class accumulations
    (`out_groups` beats of the linear engine). The class scores are their sum over the
    sample's timesteps; the sum and the argmax are the host's (see docs/ARCHITECTURE.md).

    Parameters
    ----------
    head : spec.network.IntHead
    widths : dict
    timesteps : int
    tokens : int
        Tokens of the last stage's map.
    """

    def __init__(self, head, widths, timesteps, tokens):
        units = head_units(head, widths, timesteps, tokens)
        super().__init__(units, units["tokensum"].input_fields(),
                         units["fc_sae"][0].output_fields())

    def elaborate(self, platform):
        m = Module()
        p = self._parts(m)
        out = self._chain(m, p, wiring.flipped(self.i), ["tokensum", "lif", "fc_sae"])
        wiring.connect(m, out, wiring.flipped(self.o))
        return m


def layer_component(layer, widths, timesteps):
    """The hardware of one integer-network layer (downsampling layer or block)."""
    kinds = {IntDownsample: DownsampleLayer, IntConvBlock: ConvBlock,
             IntTransformerBlock: TransformerBlock}
    for kind, component in kinds.items():
        if isinstance(layer, kind):
            return component(layer, widths, timesteps)
    raise TypeError(f"no hardware for a {type(layer).__name__}")
