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

Arrays are (samples, timesteps, channels, height, width), int64 values or uint8 spikes. Every
width (stream, accumulators, LIF inputs) comes from `widths`, a mapping filled by the
quantizer's calibration; a missing key means `WIDE_BITS` (the calibration run).
"""

import functools
import types
from dataclasses import dataclass, field, fields

import numpy as np

from spec.lif import LIFConfig
from spec.sae import SAEConfig, SAEParams
from spec.sdsa import SDSAConfig

from .lif_int import lif_int, saturate
from .sae_int import sae_int
from .sdsa_int import sdsa_int
from .shortcut_int import MAX_LEFT, MAX_RIGHT, shortcut_int

__all__ = ["WIDE_BITS", "Neuron", "Conv", "MultiBitConv", "Producer", "IntDownsample",
           "IntConvBlock", "IntTransformerBlock", "IntHead", "IntNetwork", "RunContext",
           "lanes_for"]

#: Width of every quantity in the calibration run (wide enough that nothing saturates).
WIDE_BITS = 32


def lanes_for(channels, most=16):
    """The largest power of two up to `most` that divides `channels` (1 at least)."""
    lanes = 1
    while lanes * 2 <= most and channels % (lanes * 2) == 0:
        lanes *= 2
    return lanes


def _bits_signed(value):
    """Signed bits that hold +-`value` (an integer >= 0)."""
    return int(value).bit_length() + 1


class RunContext:
    """What one run of the integer network needs and collects.

    `widths` maps a quantity's key to its width; `observe` collects, per key, the largest
    magnitude and how many values came within a factor of 2 of the width's limit (`near`) or
    reached it (`at_limit`: saturated, or exactly at the bound). With `record`, every layer's
    traces are kept: "spikes" keeps spikes only, "full" also inputs and membranes.
    """

    def __init__(self, widths=None, *, record=None):
        self.widths = dict(widths or {})
        self.record = record
        self.stats = {}
        self.traces = {}

    def width(self, key):
        return self.widths.get(key, WIDE_BITS)

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
class Neuron:
    """A LIF layer over a (channels, height, width) map, in the integer units of its input.

    `v_th` and `bias` are per channel, multiples of `2**-param_frac`; `source` is the widths key
    of its input (its `in_bits`). The membrane has `param_frac + timesteps` fractional bits, so
    the leak (a shift by one per timestep) is exact."""

    name: str
    channels: int
    height: int
    width: int
    v_th: tuple
    bias: tuple
    param_frac: int
    source: str

    def config(self, ctx, timesteps):
        return _neuron_config(self, ctx.width(self.source), timesteps)

    def _config(self, in_bits, timesteps):
        frac = self.param_frac + timesteps
        largest = max(max(abs(v) for v in self.v_th), max(abs(b) for b in self.bias))
        v_bits = max(in_bits + frac + 2, _bits_signed(int(largest * (1 << frac))) + 1)
        uniform = len(set(self.v_th)) == 1 and len(set(self.bias)) == 1
        return LIFConfig(
            neurons=self.channels * self.height * self.width, lanes=lanes_for(self.channels),
            channels=1 if uniform else self.channels, v_bits=v_bits, in_bits=in_bits,
            frac_bits=frac, tau=2, decay_input=True, reset="hard", v_reset=0.0,
            v_th=self.v_th[0] if uniform else tuple(self.v_th),
            bias=self.bias[0] if uniform else tuple(self.bias), timesteps=timesteps)

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


@functools.lru_cache(maxsize=256)
def _neuron_config(neuron, in_bits, timesteps):
    return neuron._config(in_bits, timesteps)


@dataclass(frozen=True)
class Conv:
    """A convolution (or 1x1 / linear layer, or depthwise) fed by spikes, integer weights."""

    name: str
    mode: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    height: int
    width: int
    weight: np.ndarray = field(repr=False)
    w_bits: int = 8
    bias: np.ndarray | None = field(default=None, repr=False)

    @property
    def key(self):
        return f"{self.name}.acc"

    def config(self, ctx, *, acc_bits=None):
        mode = "linear" if self.mode == "conv" and self.kernel == 1 and self.stride == 1 \
            and self.padding == 0 else self.mode
        lanes = lanes_for(self.out_channels)
        return SAEConfig(
            mode=mode, in_channels=self.in_channels, out_channels=self.out_channels,
            kernel=self.kernel, stride=self.stride, padding=self.padding, height=self.height,
            width=self.width, lanes=lanes, in_lanes=lanes if mode == "depthwise" else
            lanes_for(self.in_channels), w_bits=self.w_bits,
            acc_bits=acc_bits if acc_bits is not None else max(ctx.width(self.key),
                                                                  self.w_bits + 1),
            bias=self.bias is not None)

    def params(self, cfg):
        return SAEParams.checked(cfg, self.weight, self.bias)

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
class MultiBitConv(Conv):
    """A convolution fed by `value_bits`-bit integers (two's complement when `signed`), computed
    by the spike engine one bit plane at a time: plane b's sums are shifted left by b (and
    subtracted for the sign plane). Each plane's accumulator is wide enough never to saturate;
    the total is exact, as the hardware's shift-and-add over planes is."""

    value_bits: int = 8
    signed: bool = False
    source: str = ""

    def plane_config(self):
        """The engine of one bit plane: accumulators that never saturate, no bias (a bias is
        added once, to the total)."""
        wide = Conv.config(self, None, acc_bits=self.w_bits + 1)
        return SAEConfig(**{**wide.to_dict(), "acc_bits": wide.lossless_acc_bits, "bias": False})

    def params(self, cfg):
        return SAEParams.checked(cfg, self.weight, self.bias if cfg.bias else None)

    def config(self, ctx, *, acc_bits=None):
        """The hardware engine: inputs of `input_bits(ctx)` bits (at least 2 when signed), one
        event per set bit of each input's magnitude, accumulators wide enough for the exact
        total plus the bias (`acc_bits` is ignored), so the engine never saturates and equals
        `run`."""
        bits = self.input_bits(ctx)
        bits = max(bits, 2) if self.signed else bits
        base = Conv.config(self, ctx, acc_bits=self.w_bits + 1).to_dict()
        base.update(in_bits=bits, in_signed=self.signed, bias=self.bias is not None)
        # the largest |total|: every weight at its extreme times the largest input magnitude
        probe = SAEConfig(**{**base, "acc_bits": 48})
        bound = (1 << (self.w_bits - 1)) * probe.fan_in * probe.input_magnitude
        if self.bias is not None:
            bound += int(np.abs(np.asarray(self.bias, np.int64)).max(initial=0))
        return SAEConfig(**{**base, "acc_bits": max(bound.bit_length() + 1,
                                                    probe.lossless_acc_bits)})

    def input_bits(self, ctx):
        """Bits per input value: the width of `source` when given, else `value_bits`."""
        return ctx.width(self.source) if self.source else self.value_bits

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
class Producer:
    """A layer whose output lands in a residual stream: its accumulations shifted left by
    `shift` (per channel) plus `bias` (stream units)."""

    conv: Conv
    shift: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    stream: str = ""

    def run(self, inputs, ctx, residual=None):
        acc = self.conv.run(inputs, ctx)
        bits = ctx.width(self.stream)
        branch = shortcut_int(acc, self.shift, self.bias, WIDE_BITS + 16)
        ctx.observe(self.stream, branch)
        out = shortcut_int(acc, self.shift, self.bias, bits, residual)
        ctx.observe(self.stream, out)
        return out


@dataclass(frozen=True)
class IntDownsample:
    name: str
    neuron: Neuron | None
    producer: Producer

    def run(self, x, ctx):
        if self.neuron is not None:
            x = self.neuron.run(x, ctx)
        out = self.producer.run(x, ctx)
        ctx.trace(self.name, stream=out)
        return out


@dataclass(frozen=True)
class IntConvBlock:
    """`x + SepConv(x)`, then `x + conv(LIF(conv(LIF(x))))`, in stream units."""

    name: str
    sep_lif1: Neuron
    sep_pw1: Conv
    sep_lif2: Neuron
    sep_dw: Conv
    sep_pw2: Producer
    lif1: Neuron
    conv1: Conv
    lif2: Neuron
    conv2: Producer

    def run(self, x, ctx):
        d = self.sep_dw.run(self.sep_lif2.run(self.sep_pw1.run(self.sep_lif1.run(x, ctx), ctx),
                                              ctx), ctx)
        x = self.sep_pw2.run(d, ctx, residual=x)
        y = self.lif2.run(self.conv1.run(self.lif1.run(x, ctx), ctx), ctx)
        x = self.conv2.run(y, ctx, residual=x)
        ctx.trace(self.name, stream=x)
        return x


@dataclass(frozen=True)
class IntTransformerBlock:
    """`x + proj(SDSA(q, k, v))`, then `x + fc2(LIF(fc1(LIF(x))))`, in stream units."""

    name: str
    head_lif: Neuron
    q_conv: Conv
    k_conv: Conv
    v_conv: Conv
    q_lif: Neuron
    k_lif: Neuron
    v_lif: Neuron
    sdsa: SDSAConfig
    proj: Producer
    mlp_lif1: Neuron
    fc1: Conv
    mlp_lif2: Neuron
    fc2: Producer

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
class IntHead:
    """Sum of the stream over tokens -> LIF (threshold `tokens` x the stream's 1.0) -> linear
    with bias -> class scores summed over timesteps (the argmax of the float model's mean)."""

    name: str
    source: str
    neuron: Neuron
    fc: Conv

    @property
    def key(self):
        return f"{self.name}.sum"

    def run(self, x, ctx):
        s, t, c = x.shape[:3]
        total = saturate(x.reshape(s, t, c, -1).sum(axis=3), ctx.width(self.key))
        ctx.observe(self.key, total)
        spikes = self.neuron.run(total.reshape(s, t, c, 1, 1), ctx)
        out = self.fc.run(spikes, ctx).reshape(s, t, -1)
        scores = out.sum(axis=1)
        ctx.trace(self.name, scores=scores)
        return scores


def _check_piece(obj, ctx, timesteps, where):
    """Type-check the fields of one piece and build its unit configuration (which validates
    shapes, ranges and widths); raises ValueError / TypeError / ConfigError naming `where`."""
    if isinstance(obj, SDSAConfig):
        return
    for f in fields(obj):
        value = getattr(obj, f.name)
        allowed = f.type.__args__ if isinstance(f.type, types.UnionType) else (f.type,)
        pieces = tuple(a for a in allowed if a in (Neuron, Conv, Producer, SDSAConfig))
        if pieces and not (isinstance(value, pieces) or (value is None and type(None) in allowed)):
            raise TypeError(f"{where}.{f.name} must be a {pieces[0].__name__}, not a "
                            f"{type(value).__name__}")
        if is_piece(value):
            _check_piece(value, ctx, timesteps, f"{where}.{f.name}")
    if isinstance(obj, Neuron):
        obj.config(ctx, timesteps)
    elif isinstance(obj, MultiBitConv):
        obj.params(obj.plane_config())
        if obj.source in ctx.widths or not obj.source:
            obj.params(obj.config(ctx))
    elif isinstance(obj, Conv):
        obj.params(obj.config(ctx))
    elif isinstance(obj, Producer):
        for name in ("shift", "bias"):
            if np.shape(getattr(obj, name)) != (obj.conv.out_channels,):
                raise ValueError(f"{where}.{name} must have one value per output channel "
                                 f"({obj.conv.out_channels}), not shape "
                                 f"{list(np.shape(getattr(obj, name)))}")
        if np.min(obj.shift, initial=0) < -MAX_RIGHT or np.max(obj.shift, initial=0) > MAX_LEFT:
            raise ValueError(f"{where}.shift must be within -{MAX_RIGHT} .. {MAX_LEFT}")


def is_piece(value):
    return isinstance(value, (Neuron, Conv, Producer, SDSAConfig))


def check_layers(layers, widths, timesteps):
    """Validate decoded layers: field types, and every unit configuration they imply."""
    ctx = RunContext(widths)
    for n, layer in enumerate(layers):
        if not isinstance(layer, (IntDownsample, IntConvBlock, IntTransformerBlock)):
            raise TypeError(f"layer {n} must be a downsampling layer or a block, not a "
                            f"{type(layer).__name__}")
        _check_piece(layer, ctx, timesteps, f"layer {n} ({layer.name})")


@dataclass
class IntNetwork:
    """The integer network: layers, widths, and how pixels become integers."""

    layers: list
    head: IntHead
    timesteps: int
    input_bits: int
    input_scale: float
    widths: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def to_input(self, images):
        """Float images (B, C, H, W) in [0, 1] -> integer pixels (B, C, H, W)."""
        x = np.rint(np.asarray(images, dtype=np.float64) / self.input_scale).astype(np.int64)
        return np.clip(x, 0, (1 << self.input_bits) - 1)

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

    def check(self):
        """Validate every layer and the head (types, unit configurations, array shapes)."""
        check_layers(self.layers, self.widths, self.timesteps)
        if not isinstance(self.head, IntHead):
            raise TypeError(f"the head must be an IntHead, not a {type(self.head).__name__}")
        _check_piece(self.head, RunContext(self.widths), self.timesteps, "head")

    def neurons(self):
        """Every `Neuron`, in network order."""
        found = []
        for layer in [*self.layers, self.head]:
            for value in vars(layer).values():
                if isinstance(value, Neuron):
                    found.append(value)
        return found
