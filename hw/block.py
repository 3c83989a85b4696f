"""Whole SNN blocks assembled from the units: the Transformer-based block (so far).

A block is built from the integer network's description of it (`sw.int_model`, as
`sw.netbundle.read_network_bundle` rebuilds it from a bundle) and the network's widths, so the
hardware and the integer golden model are configured from the same numbers.

Streams between units carry `lanes` channels of one pixel (token) per beat, pixels in raster
order, one frame per timestep, samples of `timesteps` frames. Each unit counts beats and
timesteps itself from reset, so a LIF array fed by a unit that marks every frame `first` gets
`first` cleared (`hw.fork.connect_payload`): it must not restart its timestep count.
"""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec.lif import LIFConfig
from spec.sae import SAEConfig
from spec.shortcut import ShortcutConfig, ShortcutParams

from .common import struct_layout
from .fork import Fork, connect_payload
from .lif import LIFArray
from .sae import SpikeAccumulator
from .sdsa import sdsa_unit
from .shortcut import Shortcut

__all__ = ["TransformerBlock", "block_units"]


def _producer_units(producer, ctx, height, width):
    """(SAE config, params, shortcut config, params) of a layer that writes a residual stream."""
    cfg = producer.conv.config(ctx)
    sc = ShortcutConfig(channels=producer.conv.out_channels, height=height, width=width,
                        lanes=cfg.lanes, acc_bits=cfg.acc_bits,
                        bits=ctx.width(producer.stream), residual=True)
    return (cfg, producer.conv.params(cfg), sc,
            ShortcutParams.checked(sc, producer.shift, producer.bias))


def block_units(block, widths, timesteps):
    """The unit configurations of an `IntTransformerBlock`: {name: config or (config, params)}.
    Raises ValueError when their stream layouts do not line up."""
    from sw.int_model import RunContext

    ctx = RunContext(widths)
    h, w = block.head_lif.height, block.head_lif.width
    units = {"head_lif": block.head_lif.config(ctx, timesteps)}
    for name in ("q", "k", "v"):
        conv = getattr(block, f"{name}_conv")
        cfg = conv.config(ctx)
        units[f"{name}_sae"] = (cfg, conv.params(cfg))
        units[f"{name}_lif"] = getattr(block, f"{name}_lif").config(ctx, timesteps)
    units["sdsa"] = block.sdsa
    for name, producer in (("proj", block.proj), ("fc2", block.fc2)):
        cfg, params, sc, sc_params = _producer_units(producer, ctx, h, w)
        units[f"{name}_sae"] = (cfg, params)
        units[f"{name}_shortcut"] = (sc, sc_params)
    units["mlp_lif1"] = block.mlp_lif1.config(ctx, timesteps)
    cfg = block.fc1.config(ctx)
    units["fc1_sae"] = (cfg, block.fc1.params(cfg))
    units["mlp_lif2"] = block.mlp_lif2.config(ctx, timesteps)
    lanes = {n: (u[0] if isinstance(u, tuple) else u).lanes for n, u in units.items()}
    lanes.update({f"{n}.in": u[0].in_lanes for n, u in units.items() if n.endswith("_sae")})
    if len(set(lanes.values())) != 1:
        raise ValueError("the block's units disagree on lanes per beat: "
                         + ", ".join(f"{n} {v}" for n, v in lanes.items()))
    if block.sdsa.timesteps != timesteps:
        raise ValueError(f"the SDSA has {block.sdsa.timesteps} timesteps, the block {timesteps}")
    return units


class TransformerBlock(wiring.Component):
    """The Transformer-based SNN block::

        x -> LIF -> q/k/v (3x3 accumulate engines) -> LIFs -> SDSA -> proj -> (+ x)    = x1
        x1 -> LIF -> fc1 -> LIF -> fc2 -> (+ x1)                                       = out

    Ports: `i` and `o`, residual-stream beats (`ShortcutConfig.stream_fields`). The residuals
    wait in the shortcuts' one-frame buffers while the branches compute.

    Parameters
    ----------
    block : sw.int_model.IntTransformerBlock
    widths : dict
        The network's widths (`IntNetwork.widths`).
    timesteps : int
    """

    def __init__(self, block, widths, timesteps):
        self.units = block_units(block, widths, timesteps)
        self._timesteps = timesteps
        self.stream_config = self.units["proj_shortcut"][0]
        layout = struct_layout(self.stream_config.stream_fields())
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        u = self.units
        m = Module()
        parts = {}
        for name, unit in u.items():
            config = unit[0] if isinstance(unit, tuple) else unit
            if isinstance(config, LIFConfig):
                parts[name] = LIFArray(config)
            elif isinstance(config, SAEConfig):
                parts[name] = SpikeAccumulator(*unit)
            elif isinstance(config, ShortcutConfig):
                parts[name] = Shortcut(*unit)
            else:
                parts[name] = sdsa_unit(config)
        for name, part in parts.items():
            m.submodules[name] = part
        p = parts
        stream_layout = struct_layout(self.stream_config.stream_fields())
        m.submodules.fork_x = fork_x = Fork(stream_layout, 2)
        m.submodules.fork_x1 = fork_x1 = Fork(stream_layout, 2)
        spike_layout = struct_layout(u["head_lif"].output_fields())
        m.submodules.fork_s = fork_s = Fork(spike_layout, 3)

        # attention half: x -> LIF -> q/k/v -> LIFs -> SDSA -> proj -> + x
        wiring.connect(m, wiring.flipped(self.i), fork_x.i)
        connect_payload(m, fork_x.o0, p["head_lif"].i, clear_first=True)
        connect_payload(m, fork_x.o1, p["proj_shortcut"].residual)
        connect_payload(m, p["head_lif"].o, fork_s.i)
        sdsa = p["sdsa"]
        for n, name in enumerate("qkv"):
            connect_payload(m, getattr(fork_s, f"o{n}"), p[f"{name}_sae"].i)
            connect_payload(m, p[f"{name}_sae"].o, p[f"{name}_lif"].i, clear_first=True)
            if hasattr(sdsa, name):
                connect_payload(m, p[f"{name}_lif"].o, getattr(sdsa, name))
            else:               # SDSA-2 reads no K: its spikes are taken and dropped
                m.d.comb += p[f"{name}_lif"].o.ready.eq(1)
        connect_payload(m, sdsa.o, p["proj_sae"].i)
        connect_payload(m, p["proj_sae"].o, p["proj_shortcut"].branch)

        # MLP half: x1 -> LIF -> fc1 -> LIF -> fc2 -> + x1
        connect_payload(m, p["proj_shortcut"].o, fork_x1.i)
        connect_payload(m, fork_x1.o0, p["mlp_lif1"].i, clear_first=True)
        connect_payload(m, fork_x1.o1, p["fc2_shortcut"].residual)
        connect_payload(m, p["mlp_lif1"].o, p["fc1_sae"].i)
        connect_payload(m, p["fc1_sae"].o, p["mlp_lif2"].i, clear_first=True)
        connect_payload(m, p["mlp_lif2"].o, p["fc2_sae"].i)
        connect_payload(m, p["fc2_sae"].o, p["fc2_shortcut"].branch)
        connect_payload(m, p["fc2_shortcut"].o, wiring.flipped(self.o))
        return m
