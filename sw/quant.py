"""The quantizer: a trained float `MetaSpikeFormer` -> the integer network of `sw.int_model`.

    python -m sw.quant --checkpoint out/digits.pt [--w-bits 8] [--calibration N] [--json FILE]

All float arithmetic happens here, once; the integer network and the hardware only add, shift
and compare. The rules (docs/ARCHITECTURE.md, "Quantizer"):

- Folding (`sw.fold`): every BatchNorm into the convolution before it, every RepConv chain into
  one dense 3x3 convolution with a bias.
- A convolution feeding a LIF: per output channel o, integer weights `W_int = round(W theta_o)`
  with `theta_o` the largest multiple of `2**-param_frac` that keeps `|W_int| <= 2**(w_bits-1)-1`.
  Since a LIF is linear in its input and resets to 0, `LIF_1.0(W x + b)` equals
  `LIF_theta(W_int x + b theta)`: the neuron's threshold becomes `theta_o` (exact) and its bias
  `b theta_o`, rounded to `2**-param_frac`.
- A residual stream (one per stage): integer values in scale `2**-e`, `e` chosen so that the
  finest layer writing into the stream keeps all its weight levels (at most `max_extra_shift`
  finer than the coarsest). Each layer writing into it (the stage's downsampling and every
  branch's last convolution) gets per-channel weight scales `2**(shift_o - e)`: its
  accumulations enter the stream through a left shift by `shift_o`, never a multiply. Biases in
  stream units. A LIF reading the stream has the integer threshold `2**e`.
- A SepConv's depthwise convolution keeps per-channel scales `beta_c` that fold into the columns
  of the following 1x1 convolution, which reads the depthwise sums as multi-bit integers.
- The first convolution reads integer pixels (`round(image / input_scale)`), its scale folded in.
- The head sums the stream over tokens: its LIF's threshold is `tokens * 2**e`; its linear
  layer has one scale for all classes, so the integer scores' argmax is the prediction.
- Widths: a calibration run with every quantity `WIDE_BITS` wide records each one's largest
  magnitude; each width is the least that holds it plus `margin_bits`. The report counts the
  values that came within a factor of 2 of their width's limit, on the calibration images and
  on the test images, and the test values that saturated.
"""

import json
import math
import numbers
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from spec.cli import Parser, check_output_path, fail, run_main
from spec.progress import PhaseBars
from spec.sdsa import SDSAConfig
from spec.yamlio import atomic_write_text

from .checkpoint import load_checkpoint
from .fold import fold_conv_bn, fold_repconv
from .int_model import (
    WIDE_BITS,
    Conv,
    IntConvBlock,
    IntDownsample,
    IntHead,
    IntNetwork,
    IntTransformerBlock,
    MultiBitConv,
    Neuron,
    Producer,
    RunContext,
    lanes_for,
)
from .lif_float import MultiStepLIF
from .model import ConvBlock, Downsample, TransformerBlock
from .shortcut_int import MAX_LEFT, MAX_RIGHT
from .train import DATASETS, load_dataset

__all__ = ["QuantOptions", "quantize", "build", "calibrate", "choose_widths", "evaluate_int",
           "spike_agreement", "DATASET_INPUT"]

PROG = "sw.quant"

#: How each dataset's float images (in [0, 1]) come from integer pixels: (bits, scale).
DATASET_INPUT = {"digits": (5, 1 / 16)}


@dataclass(frozen=True)
class QuantOptions:
    """Quantizer settings: weight width, fractional bits of thresholds and biases, the margin
    added to every calibrated width, and how much finer than its coarsest producer a stream's
    scale may be."""

    w_bits: int = 8
    param_frac: int = 4
    margin_bits: int = 1
    max_extra_shift: int = 6
    input_bits: int = 5
    input_scale: float = 1 / 16

    def __post_init__(self):
        for name, lo, hi in (("w_bits", 2, 16), ("param_frac", 0, 12), ("margin_bits", 0, 8),
                             ("max_extra_shift", 0, 12), ("input_bits", 1, 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
                    not lo <= value <= hi:
                extra = " (2 bits are the fewest that represent a nonzero weight)" \
                    if name == "w_bits" and isinstance(value, numbers.Integral) and \
                    not isinstance(value, bool) and value < lo else ""
                raise ValueError(f"{name} must be an integer from {lo} to {hi}, not "
                                 f"{value!r}{extra}")
        if not self.input_scale > 0:
            raise ValueError(f"input_scale must be positive, not {self.input_scale!r}")

    @property
    def qmax(self):
        return (1 << (self.w_bits - 1)) - 1


def _np(t):
    return t.detach().double().cpu().numpy()


def _rows_max(w):
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1)


def _neuron_weights(w, b, opts, name="a layer"):
    """(W_int, thresholds, biases) for a convolution feeding a LIF of threshold 1.0.

    ValueError when even the smallest threshold, `2**-param_frac`, would leave a weight beyond
    `w_bits` (it would have to be clipped, and the layer would no longer compute the same)."""
    unit = 1 << opts.param_frac
    amax = _rows_max(w)
    if amax.size and amax.max() / unit > opts.qmax + 0.5:
        raise ValueError(
            f"w_bits {opts.w_bits} is too small for {name}: its weights reach "
            f"{amax.max():.4g}, which even the smallest threshold 2**-{opts.param_frac} cannot "
            f"bring within +-{opts.qmax}; raise --w-bits or --param-frac")
    with np.errstate(divide="ignore"):
        theta = np.where(amax > 0, np.floor(opts.qmax / np.where(amax > 0, amax, 1) * unit),
                         unit) / unit
    theta = np.clip(theta, 1 / unit, float(1 << 24))
    view = (-1,) + (1,) * (w.ndim - 1)
    w_int = np.clip(np.rint(w * theta.reshape(view)), -opts.qmax, opts.qmax).astype(np.int64)
    bias = np.rint(b * theta * unit) / unit
    return w_int, tuple(float(x) for x in theta), tuple(float(x) for x in bias)


def _ideal_scales(w, opts):
    """Per output channel, the finest weight scale that fits `w_bits` (0 for an all-zero row)."""
    return _rows_max(w) / opts.qmax




def _stream_weights(w, b, e, opts):
    """(W_int, shift, bias, rounding) for a layer writing into a stream of scale 2**-e.

    Each channel's weights get the finest power-of-two scale `2**(shift - e)` that fits
    `w_bits`. A negative shift means the channel is finer than the stream: its accumulations
    are shifted right, after adding `rounding` = 2**(-shift - 1) to the accumulator (the
    convolution's bias), so the shift rounds to nearest. `bias` is in stream units."""
    ideal = _ideal_scales(w, opts)
    with np.errstate(divide="ignore"):
        shift = np.where(ideal > 0, np.ceil(np.log2(np.where(ideal > 0, ideal, 1)) + e), 0)
    if shift.size and shift.max() > MAX_LEFT:
        raise ValueError(f"a layer's weights reach {_rows_max(w).max():.4g}: its accumulations "
                         f"would need a left shift above {MAX_LEFT} into the stream; the float "
                         f"model's values are too large to quantize")
    shift = np.clip(shift, -MAX_RIGHT, MAX_LEFT).astype(np.int64)
    scale = np.exp2(shift.astype(np.float64) - e)
    view = (-1,) + (1,) * (w.ndim - 1)
    w_int = np.clip(np.rint(w / scale.reshape(view)), -opts.qmax, opts.qmax).astype(np.int64)
    bias = np.rint(b * 2.0 ** e).astype(np.int64)
    rounding = np.where(shift < 0, np.left_shift(1, np.maximum(-shift - 1, 0)), 0)
    return w_int, shift, bias, rounding.astype(np.int64)


def _stream_exponent(weights, opts):
    """`e` for a stream written by layers with float weights `weights`: 2**-e is at most the
    finest per-channel scale, but at most `max_extra_shift` below the coarsest."""
    ideal = np.concatenate([_ideal_scales(w, opts) for w in weights])
    ideal = ideal[ideal > 0]
    if not ideal.size:
        return 0
    e = math.ceil(-math.log2(ideal.min()))
    # never negative: a LIF reading the stream has the integer threshold 2**e
    return max(0, min(e, math.ceil(-math.log2(ideal.max())) + opts.max_extra_shift))


def _out_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _conv(name, w, h, wd, *, kernel, stride=1, padding=None, mode="conv", opts, cls=Conv,
          **extra):
    padding = kernel // 2 if padding is None else padding
    return cls(name=name, mode=mode, in_channels=w.shape[1] if mode != "depthwise" else w.shape[0],
               out_channels=w.shape[0], kernel=kernel, stride=stride, padding=padding,
               height=h, width=wd, weight=w, w_bits=opts.w_bits, **extra)


def _depthwise(dw, opts):
    """(per-channel scales beta, integer weights) of a depthwise convolution's weights."""
    beta = _ideal_scales(dw, opts)
    beta = np.where(beta > 0, beta, 1.0)
    dw_int = np.clip(np.rint(dw / beta[:, None, None, None]), -opts.qmax, opts.qmax)
    return beta, dw_int.astype(np.int64)


def _producer_weights(layer, opts):
    """The folded float (weight, bias) of every layer of `layer` that writes into the residual
    stream, by name suffix (the SepConv's second 1x1 with the depthwise scales folded in)."""
    if isinstance(layer, Downsample):
        w, b = (_np(t) for t in fold_conv_bn(layer.conv, layer.bn))
        return {"conv": (w * opts.input_scale if layer.lif is None else w, b)}
    if isinstance(layer, ConvBlock):
        beta, _ = _depthwise(_np(layer.sep.dw.weight), opts)
        w2, b2 = (_np(t) for t in fold_conv_bn(layer.sep.pw2, layer.sep.bn2))
        return {"sep.pw2": (w2 * beta[None, :, None, None], b2),
                "conv2": tuple(_np(t) for t in fold_conv_bn(layer.conv2, layer.bn2))}
    if isinstance(layer, TransformerBlock):
        return {"attn.proj": tuple(_np(t) for t in fold_repconv(layer.attn.proj[0],
                                                                 layer.attn.proj[1])),
                "mlp.fc2": tuple(_np(t) for t in fold_conv_bn(layer.mlp.fc2, layer.mlp.bn2))}
    raise TypeError(f"cannot quantize a {type(layer).__name__}")


def build(model, opts=QuantOptions()):
    """The integer network for `model` (eval mode), widths not yet calibrated."""
    model.eval()
    cfg = model.config
    layers, h, wd = [], cfg.image_size, cfg.image_size
    stage_of, stream_e, n_stage = {}, {}, -1
    # pass 1: each layer's stage and its stream-writing weights (folded once), then each
    # stream's exponent from all the weights that write into it
    folded, writers = {}, {}
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Downsample):
            n_stage += 1
        try:
            folded[i] = _producer_weights(layer, opts)
        except TypeError as exc:
            raise TypeError(f"layer {i}: {exc}") from None
        stage_of[i] = n_stage
        writers.setdefault(n_stage, []).extend(w for w, _ in folded[i].values())
    for st, ws in writers.items():
        stream_e[st] = _stream_exponent(ws, opts)

    def stream_neuron(name, stage, c, h, wd):
        return Neuron(name=name, channels=c, height=h, width=wd,
                      v_th=(float(2 ** stream_e[stage]),), bias=(0.0,), param_frac=0,
                      source=f"stage{stage}.stream")

    def neuron_after(name, conv, b):
        w_int, theta, bias = _neuron_weights(conv, b, opts, name)
        return w_int, lambda c_name, h, wd: Neuron(
            name=name, channels=w_int.shape[0], height=h, width=wd, v_th=theta, bias=bias,
            param_frac=opts.param_frac, source=f"{c_name}.acc")

    def producer(i, suffix, h, wd, **conv_args):
        """Layer `suffix` of model layer `i`, writing into its stage's stream."""
        stage, (w, b) = stage_of[i], folded[i][suffix]
        w_int, shift, bias, rounding = _stream_weights(w, b, stream_e[stage], opts)
        conv = _conv(f"layers.{i}.{suffix}", w_int, h, wd, opts=opts,
                     bias=rounding if (shift < 0).any() else None, **conv_args)
        return Producer(conv=conv, shift=shift, bias=bias, stream=f"stage{stage}.stream")

    for i, layer in enumerate(model.layers):
        st, p = stage_of[i], f"layers.{i}"
        if isinstance(layer, Downsample):
            c = layer.conv
            k, s, pad = c.kernel_size[0], c.stride[0], c.padding[0]
            if layer.lif is None:
                prod = producer(i, "conv", h, wd, kernel=k, stride=s, padding=pad,
                                cls=MultiBitConv, value_bits=opts.input_bits)
                neuron = None
            else:
                prod = producer(i, "conv", h, wd, kernel=k, stride=s, padding=pad)
                neuron = stream_neuron(f"{p}.lif", stage_of[i - 1], c.in_channels, h, wd)
            layers.append(IntDownsample(p, neuron, prod))
            h, wd = _out_size(h, k, s, pad), _out_size(wd, k, s, pad)
        elif isinstance(layer, ConvBlock):
            dim, sep = layer.conv1.in_channels, layer.sep
            w1, b1 = (_np(t) for t in fold_conv_bn(sep.pw1, sep.bn1))
            w1_int, mk_lif2 = neuron_after(f"{p}.sep.lif2", w1, b1)
            _, dw_int = _depthwise(_np(sep.dw.weight), opts)
            kd = sep.dw.kernel_size[0]
            dw_conv = _conv(f"{p}.sep.dw", dw_int, h, wd, kernel=kd, mode="depthwise",
                            opts=opts)
            wc1, bc1 = (_np(t) for t in fold_conv_bn(layer.conv1, layer.bn1))
            wc1_int, mk_lif = neuron_after(f"{p}.lif2", wc1, bc1)
            layers.append(IntConvBlock(
                name=p,
                sep_lif1=stream_neuron(f"{p}.sep.lif1", st, dim, h, wd),
                sep_pw1=_conv(f"{p}.sep.pw1", w1_int, h, wd, kernel=1, opts=opts),
                sep_lif2=mk_lif2(f"{p}.sep.pw1", h, wd),
                sep_dw=dw_conv,
                sep_pw2=producer(i, "sep.pw2", h, wd, kernel=1, cls=MultiBitConv,
                                 signed=True, source=dw_conv.key),
                lif1=stream_neuron(f"{p}.lif1", st, dim, h, wd),
                conv1=_conv(f"{p}.conv1", wc1_int, h, wd, kernel=3, opts=opts),
                lif2=mk_lif(f"{p}.conv1", h, wd),
                conv2=producer(i, "conv2", h, wd, kernel=3)))
        else:
            attn, mlp = layer.attn, layer.mlp
            dim = mlp.fc1.in_channels
            convs, neurons = {}, {}
            for n in ("q", "k", "v"):
                seq = getattr(attn, f"{n}_conv")
                w, b = (_np(t) for t in fold_repconv(seq[0], seq[1]))
                w_int, mk = neuron_after(f"{p}.attn.{n}_lif", w, b)
                convs[n] = _conv(f"{p}.attn.{n}_conv", w_int, h, wd, kernel=3, opts=opts)
                neurons[n] = mk(convs[n].name, h, wd)
            wf1, bf1 = (_np(t) for t in fold_conv_bn(mlp.fc1, mlp.bn1))
            wf1_int, mk_m = neuron_after(f"{p}.mlp.lif2", wf1, bf1)
            layers.append(IntTransformerBlock(
                name=p, head_lif=stream_neuron(f"{p}.attn.head_lif", st, dim, h, wd),
                q_conv=convs["q"], k_conv=convs["k"], v_conv=convs["v"], q_lif=neurons["q"],
                k_lif=neurons["k"], v_lif=neurons["v"],
                sdsa=_sdsa_config(attn.sdsa, dim, h * wd, cfg.timesteps),
                proj=producer(i, "attn.proj", h, wd, kernel=3),
                mlp_lif1=stream_neuron(f"{p}.mlp.lif1", st, dim, h, wd),
                fc1=_conv(f"{p}.mlp.fc1", wf1_int, h, wd, kernel=1, opts=opts),
                mlp_lif2=mk_m(f"{p}.mlp.fc1", h, wd),
                fc2=producer(i, "mlp.fc2", h, wd, kernel=1)))
    last, e = n_stage, stream_e[n_stage]
    dim = model.head.in_features
    wh, bh = _np(model.head.weight), _np(model.head.bias)
    alpha = float(np.abs(wh).max()) / opts.qmax or 1.0
    wh_int = np.clip(np.rint(wh / alpha), -opts.qmax, opts.qmax).astype(np.int64)
    bias_h = np.rint(bh / alpha).astype(np.int64)
    head = IntHead(
        name="head", source=f"stage{last}.stream",
        neuron=Neuron(name="head_lif", channels=dim, height=1, width=1,
                      v_th=(float(h * wd * 2 ** e),), bias=(0.0,), param_frac=0,
                      source="head.sum"),
        fc=Conv(name="head", mode="linear", in_channels=dim, out_channels=wh.shape[0], kernel=1,
                stride=1, padding=0, height=1, width=1, weight=wh_int[:, :, None, None],
                w_bits=opts.w_bits, bias=bias_h))
    info = {"w_bits": opts.w_bits, "param_frac": opts.param_frac,
            "margin_bits": opts.margin_bits, "stream_exponents": {
                f"stage{s}.stream": int(v) for s, v in stream_e.items()},
            "head_scale": alpha}
    return IntNetwork(layers=layers, head=head, timesteps=cfg.timesteps,
                      input_bits=opts.input_bits, input_scale=opts.input_scale, info=info)


def _sdsa_config(sdsa, channels, tokens, timesteps):
    d = channels // sdsa.heads
    v_th = 0.5
    if sdsa.variant == 4:       # the learned threshold, rounded to the membrane's resolution
        step = 0.125 / (1 << timesteps)
        raw = sdsa.neuron.v_th.detach().double()
        v_th = [max(step, round(float(x) / step) * step) for x in raw.reshape(-1)]
        v_th = v_th[0] if raw.numel() == 1 else tuple(v_th)
    return SDSAConfig(variant=sdsa.variant, heads=sdsa.heads, channels=channels, tokens=tokens,
                      lanes=lanes_for(d if sdsa.variant >= 3 else channels),
                      timesteps=timesteps, v_th=v_th)


def choose_widths(net, stats, opts=QuantOptions()):
    """Each quantity's width: the least signed width holding its largest calibration value,
    plus `margin_bits`; an accumulator at least `w_bits + 1` and as wide as its bias."""
    widths = {}
    for key, s in stats.items():
        widths[key] = max(2, int(s["max"]).bit_length() + 1 + opts.margin_bits)
        if key.endswith(".acc"):
            widths[key] = max(widths[key], opts.w_bits + 1)
    for conv in _spike_convs(net):
        if conv.bias is not None and conv.key in widths:
            widths[conv.key] = max(widths[conv.key],
                                   int(np.abs(conv.bias).max(initial=0)).bit_length() + 1)
    return widths


def _spike_convs(net):
    """Every spike-fed `Conv` of the network (not the multi-bit ones), the head's included."""
    found = []
    for layer in [*net.layers, net.head]:
        for value in vars(layer).values():
            value = value.conv if isinstance(value, Producer) else value
            if isinstance(value, Conv) and not isinstance(value, MultiBitConv):
                found.append(value)
    return found


def evaluate_int(net, pixels, labels, *, record=None, progress=None):
    """(accuracy, scores, context) of the integer network on integer `pixels`."""
    ctx = RunContext(net.widths, record=record)
    scores = net.run(pixels, ctx, progress=progress)
    acc = float((scores.argmax(1) == np.asarray(labels)).mean()) if len(labels) else 0.0
    return acc, scores, ctx


def float_spikes(model, images, batch=128):
    """(every `MultiStepLIF`'s spikes by module name as (samples, timesteps, ...) arrays, the
    model's class scores) for `images`, in one run."""
    found, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, MultiStepLIF):
            hooks.append(m.register_forward_hook(
                lambda mod, args, out, name=name: found.setdefault(name, []).append(
                    out.detach().transpose(0, 1).to(torch.uint8).numpy())))
    model.eval()
    scores = []
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                scores.append(model(images[i:i + batch]))
    finally:
        for h in hooks:
            h.remove()
    return {k: np.concatenate(v) for k, v in found.items()}, torch.cat(scores)


def spike_agreement(model, net, images, int_traces, *, float_run=None):
    """Per LIF layer: (name, firing float, firing int, fraction of equal spikes). `float_run`
    is `float_spikes(model, images)` when already taken."""
    fl, _ = float_run if float_run is not None else float_spikes(model, images)
    rows = []
    for name, f in fl.items():
        key = name[:-len(".neuron")] if name.endswith(".sdsa.neuron") else name
        kind = "mask" if "mask" in int_traces.get(key, {}) else "spikes"
        if key not in int_traces or kind not in int_traces[key]:
            raise KeyError(f"the integer network has no spikes for {name!r}")
        i = int_traces[key][kind].reshape(f.shape)
        rows.append({"layer": name, "firing_float": float(f.mean()),
                     "firing_int": float(i.mean()), "agreement": float((f == i).mean())})
    return rows


def quantize(model, calib_images, opts=QuantOptions(), *, progress=None):
    """Build, calibrate and size the integer network of `model`; returns it with `widths` set.

    The calibration images run twice: with every quantity `WIDE_BITS` wide (to measure), then
    with the chosen widths; the two runs must give the same scores (nothing saturated), and the
    second one's statistics (values within a factor of 2 of their limit) go to
    `info["calibration"]`."""
    net = build(model, opts)
    return calibrate(net, net.to_input(calib_images), opts, progress=progress)


def calibrate(net, pixels, opts=QuantOptions(), *, progress=None):
    """Size integer network `net` (built with every width `WIDE_BITS`) on integer `pixels`:
    `quantize`'s two runs and checks. Returns `net` with `widths` and its calibration figures
    in `info`."""
    wide = RunContext({})
    wide_scores = net.run(pixels, wide, progress=progress and (
        lambda done, total: progress(done, total, "pass 1 of 2, widths 32 bits")))
    for key, s in wide.stats.items():
        if s["max"] >= (1 << (WIDE_BITS - 1)) - 1:
            raise ValueError(f"{key} reached {WIDE_BITS} bits in calibration: the network's "
                             f"values are too large to quantize")
    net.widths = choose_widths(net, wide.stats, opts)
    sized = RunContext(net.widths)
    scores = net.run(pixels, sized, progress=progress and (
        lambda done, total: progress(done, total, "pass 2 of 2, chosen widths")))
    if not np.array_equal(scores, wide_scores):
        raise AssertionError("the sized network differs from the wide one on the calibration "
                             "images: a width is too small")
    net.info["calibration_images"] = int(len(pixels))
    net.info["calibration"] = {k: dict(v) for k, v in sorted(sized.stats.items())}
    return net


def format_report(rep):
    lines = [f"float accuracy {rep['float_accuracy']:.2%}, integer {rep['int_accuracy']:.2%} "
             f"({rep['test_images']} test images, T = {rep['timesteps']}, w_bits "
             f"{rep['w_bits']}); predictions agree on {rep['prediction_agreement']:.2%}",
             "", f"{'LIF layer':34s} {'rate float':>10s} {'rate int':>9s} {'agree':>8s}"]
    for r in rep["layers"]:
        lines.append(f"{r['layer']:34s} {r['firing_float']:10.4f} {r['firing_int']:9.4f} "
                     f"{r['agreement']:8.4%}")
    lines += ["", f"{'quantity':28s} {'bits':>4s} {'max (calib)':>12s} {'near 2x calib':>13s} "
              f"{'near 2x test':>12s} {'saturated test':>14s}"]
    for k, w in rep["widths"].items():
        lines.append(f"{k:28s} {w['bits']:4d} {w['max_calibration']:12d} "
                     f"{w['near_calibration']:13d} {w['near_test']:12d} "
                     f"{w['saturated_test']:14d}")
    return "\n".join(lines)


def report(model, net, xte, yte, *, progress=None):
    """Accuracy float vs integer, per-layer spike agreement, widths with saturation counts."""
    float_run = float_spikes(model, xte)
    fpred = float_run[1].argmax(1)
    float_acc = float((fpred == yte).float().mean())
    pixels = net.to_input(xte)
    int_acc, scores, ctx = evaluate_int(net, pixels, yte.numpy(), record="spikes",
                                        progress=progress)
    widths = {}
    for key in sorted(net.widths):
        c, t = net.info["calibration"].get(key, {}), ctx.stats.get(key, {})
        widths[key] = {"bits": net.widths[key], "max_calibration": c.get("max", 0),
                       "near_calibration": c.get("near", 0), "max_test": t.get("max", 0),
                       "near_test": t.get("near", 0), "saturated_test": t.get("at_limit", 0)}
    return {"float_accuracy": float_acc, "int_accuracy": int_acc, "test_images": len(xte),
            "timesteps": net.timesteps, "w_bits": net.info["w_bits"],
            "prediction_agreement": float((fpred.numpy() == scores.argmax(1)).mean()),
            "layers": spike_agreement(model, net, xte, ctx.merged_traces(),
                                      float_run=float_run),
            "widths": widths, "stream_exponents": net.info["stream_exponents"]}


def check_dataset_fit(config, dataset, source):
    """`fail` unless a model of `config` reads `dataset`'s images and predicts its classes."""
    if dataset not in DATASETS:
        fail(f"checkpoint {source!r} was trained on {dataset!r}, which this tool does not know "
             f"(known: {', '.join(DATASETS)})")
    want = {"digits": (1, 8, 10)}[dataset]
    have = (config.in_channels, config.image_size, config.num_classes)
    if have != want:
        fail(f"checkpoint {source!r} is for a model of {have[0]} x {have[1]} x {have[1]} inputs "
             f"and {have[2]} classes, not the {dataset} dataset's {want[0]} x {want[1]} x "
             f"{want[1]} and {want[2]}")


def prepare(checkpoint, opts, calibration, log, *, bars=False):
    """Load `checkpoint`, its dataset, and quantize: (model, net, data, dataset name). `bars`:
    a progress bar of the calibration passes (on a terminal)."""
    model, ckpt = load_checkpoint(checkpoint)
    dataset = ckpt.get("dataset", "digits")
    check_dataset_fit(model.config, dataset, str(checkpoint))
    data = load_dataset(dataset)
    xtr = data[0][:calibration] if calibration else data[0]
    log(f"quantizing {checkpoint} (T = {model.config.timesteps}, w_bits {opts.w_bits}): "
        f"calibration on {len(xtr)} training images")
    t0 = time.perf_counter()
    try:
        with PhaseBars("calibration", enabled=bars) as progress:
            net = quantize(model, xtr, opts, progress=progress)
    except ValueError as exc:
        fail(str(exc))
    log(f"widths chosen in {time.perf_counter() - t0:.1f} s")
    return model, net, data, dataset


def options_from(args):
    """`QuantOptions` from the parsed flags, or `fail`."""
    bits, scale = DATASET_INPUT["digits"]
    try:
        return QuantOptions(w_bits=args.w_bits, param_frac=args.param_frac,
                            margin_bits=args.margin_bits, input_bits=bits, input_scale=scale)
    except ValueError as exc:
        fail(str(exc).replace("w_bits", "--w-bits").replace("param_frac", "--param-frac")
             .replace("margin_bits", "--margin-bits"))


def add_quant_flags(p):
    p.add_argument("--checkpoint", required=True, help="a checkpoint of sw.train")
    p.add_argument("--w-bits", type=int, default=8, help="weight width (default 8)")
    p.add_argument("--param-frac", type=int, default=4,
                   help="fractional bits of thresholds and biases (default 4)")
    p.add_argument("--margin-bits", type=int, default=1,
                   help="bits added to every calibrated width (default 1)")
    p.add_argument("--calibration", type=int, default=512, metavar="N",
                   help="training images for calibration (default 512; 0: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    add_quant_flags(p)
    p.add_argument("--json", help="also write the report as JSON to this file")
    args = p.parse_args(argv)
    opts = options_from(args)
    if args.calibration < 0:
        fail(f"--calibration must not be negative, not {args.calibration}")
    if args.json:
        check_output_path(args.json)

    def log(text):
        if not args.quiet:
            print(f"[{PROG}] {text}", file=sys.stderr, flush=True)

    model, net, (_, _, xte, yte), dataset = prepare(args.checkpoint, opts, args.calibration, log,
                                                    bars=not args.quiet)
    t0 = time.perf_counter()
    with PhaseBars("test", enabled=not args.quiet) as progress:
        rep = report(model, net, xte, yte, progress=progress)
    rep.update(dataset=dataset, checkpoint=str(args.checkpoint),
               calibration_images=net.info["calibration_images"],
               seconds_test=round(time.perf_counter() - t0, 1))
    print(format_report(rep))
    if args.json:
        atomic_write_text(args.json, json.dumps(rep, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
