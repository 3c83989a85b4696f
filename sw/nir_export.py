"""Export of the float Meta-SpikeFormer's layers that NIR can express, as a `nir.NIRGraph`.

    python -m sw.nir_export --checkpoint models/digits.pt --out graph.nir [--dt 1e-4]

NIR (the Neuromorphic Intermediate Representation, the `nir` package) describes a network as
nodes with fixed parameters (convolutions, affine maps, LIF neurons, pooling) joined by edges; a
node with several incoming edges receives their sum. Conventions (snnTorch's, time step `dt`):

- Every `MultiStepLIF` (tau 2, decay_input, hard reset to 0, threshold `v_th`: per timestep
  `H = V + (X - V) / 2`, a spike when `H >= v_th`, then `V = 0`) is `nir.LIF(tau=2 dt, r=1,
  v_leak=0, v_threshold=v_th, v_reset=0)`, one value per neuron (arrays shaped like the layer,
  float64 so that `dt / tau` is exactly 1/2). NIR's Euler step `v += dt / tau (v_leak - v +
  r I)` is then the model's update. NIR's LIF spikes when `v > v_threshold`, the model's when
  `H >= v_th`: the two differ only for a membrane exactly at the threshold.
- Every convolution is one `nir.Conv2d` with its BatchNorm folded in (`sw.fold.fold_conv_bn`,
  running statistics: the model in eval mode), the depthwise ones with `groups` = channels. The
  SepConv's depthwise 7x7 has no bias and no BatchNorm: its node has a zero bias.
- Each residual sum `x + f(x)` is an identity node (`nir.Scale` by ones) with two incoming
  edges: the stream and the branch's last convolution.
- The head (only when the whole network is expressible): `nir.AvgPool2d` over the whole map
  (the model's mean over pixels), `nir.Flatten`, the head's LIF (threshold 1.0) on the means,
  `nir.Affine` (the linear layer with its bias). The graph's output is the class scores of each
  timestep; the model's mean of them over the T timesteps is the reader's to take (NIR has no
  node that averages over time).
- The input is the float image (C, H, W) in [0, 1], fed unchanged at every timestep (the model
  repeats it T times), not the integer pixels of the quantized network (`sw.quant`).

What is not exported: a `TransformerBlock`'s spike-driven self-attention multiplies spike
tensors that both depend on the input (`Q (K^T V)` per head for SDSA-3 and -4, masks on `Q` for
SDSA-1 and -2), and NIR has no node for a product of two activations. The export stops at the
first TransformerBlock: the layers before it are exported, the residual stream entering it
(real values, not spikes) goes to the graph's output, and that block, every later layer and the
head are listed as omitted, with the reason. Node names are the model's module names
(`layers.1.sep.lif1`, `layers.2.conv`, ...), plus `.sep_sum` / `.conv_sum` for a ConvBlock's
residual sums and `head.pool` / `head.flatten`. The graph's metadata holds `dt`, the trained
`timesteps` and the omitted layers with their reasons.
"""

import math
import numbers
import os
import sys
import tempfile
from pathlib import Path

import nir
import numpy as np
import torch

from spec.cli import Parser, check_output_path, fail, run_main
from spec.yamlio import umask

from .checkpoint import load_checkpoint
from .fold import fold_conv_bn
from .lif_float import MultiStepLIF
from .model import ConvBlock, Downsample, MetaSpikeFormer, TransformerBlock

__all__ = ["DT", "export_nir", "write_nir", "read_nir", "lif_node"]

PROG = "sw.nir_export"

#: snnTorch's NIR time step.
DT = 1e-4

_SDSA_PRODUCTS = {
    1: "Q * LIF(sum over tokens of K * V): the elementwise product K * V and the mask on Q",
    2: "Q * LIF(sum over tokens of V): a spike mask computed from V multiplies Q",
    3: "per head Q (K^T V)",
    4: "per head Q (K^T V), then a LIF with a learned threshold",
}


def _np32(t):
    return t.detach().to(torch.float32).cpu().numpy().copy()


def lif_node(neuron, shape, dt):
    """The `nir.LIF` of a `MultiStepLIF` over neurons of `shape` (time step `dt`).

    decay_input: `H = V + (X + bias - (V - v_reset)) / tau` is NIR's Euler step with
    `tau_nir = tau dt`, `r = 1`, `v_leak = v_reset + bias`; without decay_input,
    `H = V - (V - v_reset) / tau + X + bias` has `r = tau`, `v_leak = v_reset + tau bias`.
    ValueError for what NIR's LIF cannot hold: a soft reset, or a threshold or bias per
    channel (the model has neither)."""
    if not isinstance(neuron, MultiStepLIF):
        raise TypeError(f"expected a MultiStepLIF, not {type(neuron).__name__}")
    if neuron.reset != "hard":
        raise ValueError("a soft reset (V = H - v_th) has no NIR LIF: NIR resets to v_reset")
    if neuron.v_th.numel() != 1 or neuron.bias.numel() != 1:
        raise ValueError("only a scalar threshold and bias are exported")
    tau, v_reset = float(neuron.tau), float(neuron.v_reset)
    v_th, bias = float(neuron.v_th.detach()), float(neuron.bias)
    r, v_leak = (1.0, v_reset + bias) if neuron.decay_input else (tau, v_reset + tau * bias)

    def full(value):
        return np.full(tuple(int(s) for s in shape), value, dtype=np.float64)

    return nir.LIF(tau=full(tau * dt), r=full(r), v_leak=full(v_leak), v_threshold=full(v_th),
                   v_reset=full(v_reset))


def _conv_node(conv, bn, hw):
    """`conv` (a `torch.nn.Conv2d`) with `bn` (or None) folded in, reading maps of size `hw`."""
    if isinstance(conv.padding, str):
        raise ValueError(f"padding {conv.padding!r} is not exported (the model pads by numbers)")
    w, b = fold_conv_bn(conv, bn)
    node = nir.Conv2d(input_shape=tuple(hw), weight=_np32(w), stride=tuple(conv.stride),
                      padding=tuple(conv.padding), dilation=tuple(conv.dilation),
                      groups=int(conv.groups), bias=_np32(b))
    _fix_grouped_input(node)
    return node


def _fix_grouped_input(node):
    """nir 1.0.8 gives a `Conv2d` the input type (weight.shape[1], H, W), which ignores
    `groups`: a depthwise convolution of C channels would read (1, H, W). Set it to
    (weight.shape[1] * groups, H, W), what the convolution reads."""
    if int(node.groups) > 1 and node.input_shape is not None:
        node.input_type = {"input": np.array([node.weight.shape[1] * int(node.groups),
                                              *(int(s) for s in node.input_shape)])}


def read_nir(path):
    """`nir.read(path)` for a file of `write_nir`: nir 1.0.8's reader rejects a grouped
    (depthwise) `Conv2d` in a type-checked graph (see `_fix_grouped_input`), so this reads
    without the check, corrects the grouped convolutions' input types, then infers and checks
    the types of the whole graph as `nir.read` would."""
    graph = nir.read(path, type_check=False)
    for node in graph.nodes.values():
        if isinstance(node, nir.Conv2d):
            _fix_grouped_input(node)
    graph.infer_types()
    graph.check_types()
    return graph


class _Graph:
    """Nodes and edges as they are added; `add(name, node, *sources)` returns `name`."""

    def __init__(self):
        self.nodes, self.edges = {}, []

    def add(self, name, node, *sources):
        if name in self.nodes:
            raise ValueError(f"two NIR nodes named {name!r}")
        self.nodes[name] = node
        self.edges.extend((s, name) for s in sources)
        return name


def _out_hw(node):
    return tuple(int(s) for s in node.output_type["output"][1:])


def _sum_node(shape):
    """The identity node where a residual stream and a branch add up."""
    return nir.Scale(scale=np.ones(shape, dtype=np.float32))


def _downsample(g, p, layer, src, c, hw, dt):
    if layer.lif is not None:
        src = g.add(f"{p}.lif", lif_node(layer.lif, (c, *hw), dt), src)
    conv = _conv_node(layer.conv, layer.bn, hw)
    return g.add(f"{p}.conv", conv, src), int(layer.conv.out_channels), _out_hw(conv)


def _conv_block(g, p, layer, src, c, hw, dt):
    sep, shape = layer.sep, (c, *hw)
    mid = sep.pw1.out_channels
    x = g.add(f"{p}.sep.lif1", lif_node(sep.lif1, shape, dt), src)
    x = g.add(f"{p}.sep.pw1", _conv_node(sep.pw1, sep.bn1, hw), x)
    x = g.add(f"{p}.sep.lif2", lif_node(sep.lif2, (mid, *hw), dt), x)
    x = g.add(f"{p}.sep.dw", _conv_node(sep.dw, None, hw), x)
    x = g.add(f"{p}.sep.pw2", _conv_node(sep.pw2, sep.bn2, hw), x)
    src = g.add(f"{p}.sep_sum", _sum_node(shape), src, x)
    x = g.add(f"{p}.lif1", lif_node(layer.lif1, shape, dt), src)
    x = g.add(f"{p}.conv1", _conv_node(layer.conv1, layer.bn1, hw), x)
    x = g.add(f"{p}.lif2", lif_node(layer.lif2, (layer.conv1.out_channels, *hw), dt), x)
    x = g.add(f"{p}.conv2", _conv_node(layer.conv2, layer.bn2, hw), x)
    return g.add(f"{p}.conv_sum", _sum_node(shape), src, x), c, hw


def _head(g, model, src, c, hw, dt):
    """Mean over pixels -> LIF -> linear; returns the scores' node and their count."""
    hw = tuple(int(s) for s in hw)
    x = g.add("head.pool", nir.AvgPool2d(kernel_size=np.array(hw), stride=np.array(hw),
                                         padding=np.array([0, 0])), src)
    # dimensions without the batch (snnTorch's export: torch's start_dim 1 is NIR's 0)
    x = g.add("head.flatten", nir.Flatten(input_type={"input": np.array([c, 1, 1])},
                                          start_dim=0, end_dim=-1), x)
    x = g.add("head_lif", lif_node(model.head_lif, (c,), dt), x)
    lin = model.head
    return g.add("head", nir.Affine(weight=_np32(lin.weight), bias=_np32(lin.bias)), x), \
        lin.out_features


def _transformer_reason(name, layer):
    variant = layer.attn.sdsa.variant
    return (f"{name} (TransformerBlock): spike-driven self-attention (SDSA-{variant}) "
            f"multiplies two spike tensors ({_SDSA_PRODUCTS[variant]}); NIR has no node for a "
            f"product of activations (its Conv2d, Affine and Scale nodes have fixed weights)")


def export_nir(model, *, dt=DT):
    """(graph, omitted): the `nir.NIRGraph` of `model`'s layers up to its first TransformerBlock
    (all of it, head included, when it has none), and `(layer name, reason)` for every layer
    not exported (the head's name is `head`).

    The model is not changed; its BatchNorms are folded with their running statistics (what it
    computes in eval mode)."""
    if not isinstance(model, MetaSpikeFormer):
        raise TypeError(f"expected a MetaSpikeFormer, not {type(model).__name__}")
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not \
            (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number, not {dt!r}")
    dt = float(dt)
    cfg = model.config
    c, hw = cfg.in_channels, (cfg.image_size, cfg.image_size)
    g = _Graph()
    src = g.add("input", nir.Input(input_type={"input": np.array([c, *hw])}))
    omitted, stop = [], None
    for i, layer in enumerate(model.layers):
        name = f"layers.{i}"
        if stop is not None:
            omitted.append((name, f"{name} ({type(layer).__name__}): its input is the output "
                                  f"of {stop}, which NIR cannot express"))
        elif isinstance(layer, Downsample):
            src, c, hw = _downsample(g, name, layer, src, c, hw, dt)
        elif isinstance(layer, ConvBlock):
            src, c, hw = _conv_block(g, name, layer, src, c, hw, dt)
        else:
            stop = name
            omitted.append((name, _transformer_reason(name, layer)
                            if isinstance(layer, TransformerBlock) else
                            f"{name} ({type(layer).__name__}): not a layer of sw.model this "
                            f"exporter knows"))
    if stop is None:
        src, classes = _head(g, model, src, c, hw, dt)
        out_shape = np.array([classes])
    else:
        omitted.append(("head", f"head (mean over pixels -> LIF -> Linear): its input is the "
                                f"output of {stop}, which NIR cannot express"))
        out_shape = np.array([c, *hw])
    g.add("output", nir.Output(output_type={"output": out_shape}), src)
    metadata = {"source": "sw.nir_export", "dt": dt, "timesteps": int(cfg.timesteps),
                "output": "class scores per timestep (the model averages them over the "
                          "timesteps)" if stop is None else
                          f"the residual stream entering {stop} (real values)",
                "omitted": {name: reason for name, reason in omitted}}
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=metadata), omitted


def write_nir(model, path, *, dt=DT):
    """Write `export_nir(model)`'s graph to `path` (HDF5, `nir.write`) through a temporary file
    in the same folder and a rename; returns the omitted layers. The file gets the mode a
    plain `open()` would give it."""
    graph, omitted = export_nir(model, dt=dt)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        os.close(fd)
        nir.write(tmp, graph)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return omitted


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not (math.isfinite(value) and value > 0):
        fail(f"--dt must be a positive number, not {text!r}")
    return value


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint of sw.train")
    p.add_argument("--out", required=True, help="the NIR file to write (HDF5)")
    p.add_argument("--dt", default=str(DT), help=f"the time step of the LIFs (default {DT:g})")
    args = p.parse_args(argv)
    dt = _positive(args.dt)
    if args.out == "-":
        fail("--out must be a file name: a NIR file is HDF5, not text for stdout")
    check_output_path(args.out)
    folder = Path(args.out).parent
    if not os.access(folder, os.W_OK | os.X_OK):
        fail(f"output folder {str(folder)!r} is not writable")
    model, _ = load_checkpoint(args.checkpoint)
    try:
        omitted = write_nir(model, args.out, dt=dt)
    except OSError as exc:
        fail(f"cannot write {args.out!r}: {exc.strerror or exc}")
    graph = read_nir(args.out)
    total = len(model.layers) + 1
    for _, reason in omitted:
        print(f"omitted {reason}")
    print(f"{PROG}: wrote {args.out}: {len(graph.nodes)} nodes, {total - len(omitted)} of "
          f"{total} layers exported (the head counts as one), dt {dt:g}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
