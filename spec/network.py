"""The integer Meta-SpikeFormer described: its layers, their pieces and the widths of its
quantities, everything the hardware is configured from. Imports neither Amaranth nor torch.

A network is a list of layers (`IntDownsample`, `IntConvBlock`, `IntTransformerBlock`) and an
`IntHead`; a layer is made of pieces: `Neuron` (a LIF layer), `Conv` (an accumulate engine fed
by spikes), `MultiBitConv` (one fed by multi-bit integers, a bit plane at a time), `Producer`
(a convolution whose output lands in a residual stream) and `spec.sdsa.SDSAConfig`. Each piece
gives the unit configuration it implies (`config`, `params`) from the widths of its quantities,
a `Widths` (a missing key means `WIDE_BITS`, the quantizer's calibration run).

Running the network, bit-exact, is `sw.int_model`'s: it subclasses each piece with a `run`
under the same class name (network bundles tag pieces with that name, see `spec.netbundle`).
Type checks here are against these classes, so both families pass.
"""

import functools
import types
from dataclasses import dataclass, field, fields

import numpy as np

from .lif import LIFConfig
from .sae import SAEConfig, SAEParams
from .sdsa import SDSAConfig
from .shortcut import SHORTCUT_MAX_LEFT, SHORTCUT_MAX_RIGHT

__all__ = ["WIDE_BITS", "Widths", "Neuron", "Conv", "MultiBitConv", "Producer", "IntDownsample",
           "IntConvBlock", "IntTransformerBlock", "IntHead", "IntNetwork", "lanes_for",
           "is_piece", "check_layers"]

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


class Widths:
    """The widths of a network's quantities: `widths` maps a quantity's key to its width in
    bits; `width(key)` is `WIDE_BITS` for a key it does not hold."""

    def __init__(self, widths=None):
        self.widths = dict(widths or {})

    def width(self, key):
        return self.widths.get(key, WIDE_BITS)


@dataclass(frozen=True)
class Neuron:
    """A LIF layer over a (channels, height, width) map, in the integer units of its input.

    `v_th` and `bias` are per channel, multiples of `2**-param_frac`; `source` is the widths key
    of its input (its `in_bits`). `tau` is the leak, a power of two (2, the paper's, or another
    for networks imported from NIR; 1 keeps no membrane from one timestep to the next). The
    membrane has `param_frac + timesteps * log2(tau)` fractional bits, so the leak (a shift by
    log2(tau) per timestep) is exact."""

    name: str
    channels: int
    height: int
    width: int
    v_th: tuple
    bias: tuple
    param_frac: int
    source: str
    tau: int = 2

    def config(self, ctx, timesteps):
        return _neuron_config(self, ctx.width(self.source), timesteps)

    def _config(self, in_bits, timesteps):
        if isinstance(self.tau, bool) or not isinstance(self.tau, int) or self.tau < 1 \
                or self.tau & (self.tau - 1):
            raise ValueError(f"{self.name}: tau must be a power of two (1, 2, 4, ...), not "
                             f"{self.tau!r}")
        frac = self.param_frac + timesteps * (self.tau.bit_length() - 1)
        largest = max(max(abs(v) for v in self.v_th), max(abs(b) for b in self.bias))
        v_bits = max(in_bits + frac + 2, _bits_signed(int(largest * (1 << frac))) + 1)
        uniform = len(set(self.v_th)) == 1 and len(set(self.bias)) == 1
        return LIFConfig(
            neurons=self.channels * self.height * self.width, lanes=lanes_for(self.channels),
            channels=1 if uniform else self.channels, v_bits=v_bits, in_bits=in_bits,
            frac_bits=frac, tau=self.tau, decay_input=True, reset="hard", v_reset=0.0,
            v_th=self.v_th[0] if uniform else tuple(self.v_th),
            bias=self.bias[0] if uniform else tuple(self.bias), timesteps=timesteps)


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


@dataclass(frozen=True)
class Producer:
    """A layer whose output lands in a residual stream: its accumulations shifted left by
    `shift` (per channel) plus `bias` (stream units)."""

    conv: Conv
    shift: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    stream: str = ""


@dataclass(frozen=True)
class IntDownsample:
    name: str
    neuron: Neuron | None
    producer: Producer


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
        if np.min(obj.shift, initial=0) < -SHORTCUT_MAX_RIGHT \
                or np.max(obj.shift, initial=0) > SHORTCUT_MAX_LEFT:
            raise ValueError(f"{where}.shift must be within -{SHORTCUT_MAX_RIGHT} .. "
                             f"{SHORTCUT_MAX_LEFT}")


def is_piece(value):
    return isinstance(value, (Neuron, Conv, Producer, SDSAConfig))


def check_layers(layers, widths, timesteps):
    """Validate decoded layers: field types, and every unit configuration they imply."""
    ctx = Widths(widths)
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

    def check(self):
        """Validate every layer and the head (types, unit configurations, array shapes)."""
        check_layers(self.layers, self.widths, self.timesteps)
        if not isinstance(self.head, IntHead):
            raise TypeError(f"the head must be an IntHead, not a {type(self.head).__name__}")
        _check_piece(self.head, Widths(self.widths), self.timesteps, "head")

    def neurons(self):
        """Every `Neuron`, in network order."""
        found = []
        for layer in [*self.layers, self.head]:
            for value in vars(layer).values():
                if isinstance(value, Neuron):
                    found.append(value)
        return found
