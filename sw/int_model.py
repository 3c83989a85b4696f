"""The integer Meta-SpikeFormer: the network the hardware computes, value for value.

Built by `sw.quant.quantize` from a trained float model. Every piece is one of the unit-level
integer references the hardware is tested against, never a second implementation:

- LIF layers: `sw.lif_int.lif_int` on a `spec.LIFConfig` (per-channel threshold and bias);
- convolutions and linear layers fed by spikes: `sw.sae_int.sae_int` on a `spec.SAEConfig`;
- layers fed by multi-bit integers (the first convolution reads pixels, a SepConv's second 1x1
  convolution reads the depthwise accumulations): the same engine fed bit-serially, one spike
  plane per input bit, each plane's sums shifted by its bit weight (`MultiBitConv`);
- attention: `sw.sdsa_int.sdsa_int` on a `spec.SDSAConfig`;
- membrane shortcuts and stream starts: `sw.shortcut_int.shortcut_int` (shift, saturating add).

The pieces are described in `spec.network` (fields, unit configurations, checks: what the
hardware reads); each class here is the one of `spec.network` of the same name with its `run`,
the reference execution. Arrays are (samples, timesteps, channels, height, width), int64 values
or uint8 spikes. Every width (stream, accumulators, LIF inputs) comes from `widths`, a mapping
filled by the quantizer's calibration; a missing key means `WIDE_BITS` (the calibration run).
"""

from dataclasses import dataclass

import numpy as np

from spec import network as spec_network
from spec.network import WIDE_BITS, check_layers, is_piece, lanes_for  # noqa: F401  (importable from here as before)

from .lif_int import lif_int, saturate
from .sae_int import sae_int
from .sdsa_int import sdsa_int
from .shortcut_int import shortcut_int

__all__ = ["WIDE_BITS", "Neuron", "Conv", "MultiBitConv", "Producer", "IntDownsample",
           "IntConvBlock", "IntTransformerBlock", "IntHead", "IntNetwork", "RunContext",
           "lanes_for", "PIECES"]


class RunContext(spec_network.Widths):
    """What one run of the integer network needs and collects.

    `widths` maps a quantity's key to its width (`spec.network.Widths`); `observe` collects, per
    key, the largest magnitude and how many values came within a factor of 2 of the width's
    limit (`near`) or reached it (`at_limit`: saturated, or exactly at the bound). With
    `record`, every layer's traces are kept: "spikes" keeps spikes only, "full" also inputs and
    membranes.
    """

    def __init__(self, widths=None, *, record=None):
        super().__init__(widths)
        self.record = record
        self.stats = {}
        self.traces = {}

    def observe(self, key, values):
        values = np.asarray(values)
        limit = (1 << (self.width(key) - 1)) - 1
        mag = np.abs(values)
        s = self.stats.setdefault(key, {"max": 0, "near": 0, "at_limit": 0, "count": 0})
        s["max"] = max(s["max"], int(mag.max(initial=0)))
        s["near"] += int((mag > limit // 2).sum())
        s["at_limit"] += int((mag >= limit).sum())
        s["count"] += int(values.size)

    def trace(self, name, **arrays):
        if not self.record:
            return
        keep = arrays if self.record == "full" else {k: v for k, v in arrays.items()
                                                     if k in ("spikes", "mask", "scores")}
        slot = self.traces.setdefault(name, {})
        for key, value in keep.items():
            slot.setdefault(key, []).append(np.asarray(value))

    def merged_traces(self):
        """Traces with the batches joined along the sample axis."""
        return {name: {k: np.concatenate(v) for k, v in arrays.items()}
                for name, arrays in self.traces.items()}


@dataclass(frozen=True)
class Neuron(spec_network.Neuron):
    """`spec.network.Neuron` run by `sw.lif_int.lif_int`."""

    def run(self, x, ctx):
        """Spikes (S, T, C, H, W) for integer inputs of the same shape."""
        s, t = x.shape[:2]
        cfg = self.config(ctx, t)
        flat = np.ascontiguousarray(np.moveaxis(x, 2, -1)).reshape(s, t, -1)
        spikes, membranes = lif_int(cfg, flat)
        shape = (s, t, self.height, self.width, self.channels)
        spikes = np.moveaxis(spikes.reshape(shape), -1, 2)
        ctx.trace(self.name, inputs=x, spikes=spikes,
                  membranes=np.moveaxis(membranes.reshape(shape), -1, 2))
        return spikes


@dataclass(frozen=True)
class Conv(spec_network.Conv):
    """`spec.network.Conv` run by `sw.sae_int.sae_int`."""

    def run(self, spikes, ctx):
        """Accumulations (S, T, C_out, H_out, W_out) for spikes (S, T, C_in, H, W)."""
        s, t = spikes.shape[:2]
        cfg = self.config(ctx)
        acc = sae_int(cfg, self.params(cfg), spikes.reshape(s * t, *spikes.shape[2:]))
        acc = acc.reshape(s, t, *acc.shape[1:])
        ctx.observe(self.key, acc)
        ctx.trace(self.name, inputs=spikes, outputs=acc)
        return acc


@dataclass(frozen=True)
class MultiBitConv(spec_network.MultiBitConv, Conv):
    """`spec.network.MultiBitConv` run a bit plane at a time by `sw.sae_int.sae_int`; a
    `Conv` of this module too."""

    def run(self, values, ctx):
        s, t = values.shape[:2]
        cfg = self.plane_config()
        params = self.params(cfg)
        bits = self.input_bits(ctx)
        v = np.asarray(values, dtype=np.int64).reshape(s * t, *values.shape[2:])
        lo = -(1 << (bits - 1)) if self.signed else 0
        hi = (1 << (bits - 1 if self.signed else bits)) - 1
        if v.size and (v.min() < lo or v.max() > hi):
            raise ValueError(f"{self.name}: inputs {v.min()} .. {v.max()} exceed "
                             f"{bits} {'signed' if self.signed else 'unsigned'} bits")
        total = np.zeros((s * t, cfg.out_channels, cfg.out_height, cfg.out_width), np.int64)
        for b in range(bits):
            plane = ((v >> b) & 1).astype(np.uint8)
            if not plane.any():
                continue
            part = sae_int(cfg, params, plane) << b
            total = total - part if (self.signed and b == bits - 1) else total + part
        if self.bias is not None:
            total = total + np.asarray(self.bias, np.int64)[None, :, None, None]
        acc = total.reshape(s, t, *total.shape[1:])
        ctx.trace(self.name, inputs=values, outputs=acc)
        return acc


@dataclass(frozen=True)
class Producer(spec_network.Producer):
    """`spec.network.Producer`: its convolution, then `sw.shortcut_int.shortcut_int`."""

    def run(self, inputs, ctx, residual=None):
        acc = self.conv.run(inputs, ctx)
        bits = ctx.width(self.stream)
        branch = shortcut_int(acc, self.shift, self.bias, WIDE_BITS + 16)
        ctx.observe(self.stream, branch)
        out = shortcut_int(acc, self.shift, self.bias, bits, residual)
        ctx.observe(self.stream, out)
        return out


@dataclass(frozen=True)
class IntDownsample(spec_network.IntDownsample):
    """`spec.network.IntDownsample`, run piece by piece."""

    def run(self, x, ctx):
        if self.neuron is not None:
            x = self.neuron.run(x, ctx)
        out = self.producer.run(x, ctx)
        ctx.trace(self.name, stream=out)
        return out


@dataclass(frozen=True)
class IntConvBlock(spec_network.IntConvBlock):
    """`spec.network.IntConvBlock`, run piece by piece."""

    def run(self, x, ctx):
        d = self.sep_dw.run(self.sep_lif2.run(self.sep_pw1.run(self.sep_lif1.run(x, ctx), ctx),
                                              ctx), ctx)
        x = self.sep_pw2.run(d, ctx, residual=x)
        y = self.lif2.run(self.conv1.run(self.lif1.run(x, ctx), ctx), ctx)
        x = self.conv2.run(y, ctx, residual=x)
        ctx.trace(self.name, stream=x)
        return x


@dataclass(frozen=True)
class IntTransformerBlock(spec_network.IntTransformerBlock):
    """`spec.network.IntTransformerBlock`, run piece by piece (`sw.sdsa_int.sdsa_int`)."""

    def run(self, x, ctx):
        s, t, c, h, w = x.shape
        spikes = self.head_lif.run(x, ctx)

        def tokens(a):           # (S, T, C, H, W) -> (S, T, N, C)
            return np.moveaxis(a, 2, -1).reshape(s, t, h * w, c)

        q, k, v = (tokens(n.run(conv.run(spikes, ctx), ctx)) for conv, n in (
            (self.q_conv, self.q_lif), (self.k_conv, self.k_lif), (self.v_conv, self.v_lif)))
        y, a = sdsa_int(self.sdsa, q, k, v)
        if self.sdsa.variant >= 3:
            ctx.trace(f"{self.name}.attn.sdsa", q=q, k=k, v=v, spikes=y, attention=a)
        else:       # the talking-heads neuron's mask over channels, from the same counts
            mask, _ = lif_int(self.sdsa.neuron_config(), a)
            ctx.trace(f"{self.name}.attn.sdsa", q=q, k=k, v=v, spikes=y, counts=a, mask=mask)
        y = np.moveaxis(y.reshape(s, t, h, w, c), -1, 2)
        x = self.proj.run(y, ctx, residual=x)
        z = self.mlp_lif2.run(self.fc1.run(self.mlp_lif1.run(x, ctx), ctx), ctx)
        x = self.fc2.run(z, ctx, residual=x)
        ctx.trace(self.name, stream=x)
        return x


@dataclass(frozen=True)
class IntHead(spec_network.IntHead):
    """`spec.network.IntHead`, run piece by piece."""

    def run(self, x, ctx):
        s, t, c = x.shape[:3]
        total = saturate(x.reshape(s, t, c, -1).sum(axis=3), ctx.width(self.key))
        ctx.observe(self.key, total)
        spikes = self.neuron.run(total.reshape(s, t, c, 1, 1), ctx)
        out = self.fc.run(spikes, ctx).reshape(s, t, -1)
        scores = out.sum(axis=1)
        ctx.trace(self.name, scores=scores)
        return scores


@dataclass
class IntNetwork(spec_network.IntNetwork):
    """`spec.network.IntNetwork` with `run`: integer pixels in, class scores out."""

    def run(self, pixels, ctx=None, *, batch=128, progress=None):
        """Integer class scores (samples, classes) for integer pixels (samples, C, H, W)."""
        ctx = ctx if ctx is not None else RunContext(self.widths)
        pixels = np.asarray(pixels, dtype=np.int64)
        out = []
        for start in range(0, len(pixels), batch):
            x = np.repeat(pixels[start:start + batch, None], self.timesteps, axis=1)
            for layer in self.layers:
                x = layer.run(x, ctx)
            out.append(self.head.run(x, ctx))
            if progress is not None:
                progress(min(start + batch, len(pixels)), len(pixels))
        return np.concatenate(out) if out else np.zeros((0, self.head.fc.out_channels),
                                                         np.int64)


#: The runnable pieces by the name a bundle tags them with (`spec.netbundle.decode`).
PIECES = {cls.__name__: cls for cls in (Neuron, Conv, MultiBitConv, Producer, IntDownsample,
                                        IntConvBlock, IntTransformerBlock, IntHead)}
