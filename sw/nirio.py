"""NIR graphs of spiking CNNs imported into the integer network: the command line
`python -m sw.nirio GRAPH.nir --out BUNDLE` and the functions behind it.

A graph written by snnTorch, Norse, Sinabs or Lava (the `nir` package's format) is read without
running anything it contains (`read_graph`: HDF5 arrays only, each node validated), turned into
a float `Chain` (`from_graph`), quantized and calibrated into an `sw.int_model.IntNetwork`
(`quantize_chain`) and written as a network bundle, which `gen.network`, `sim.cosim` and the
Python API (`flow.Flow(out, nir=...)`) take like any other.

What imports: a chain from the `Input` to the `Output` (one edge in and one out per node) of
stages, each some of `SumPool2d` / `AvgPool2d` / `Scale` / `Flatten` on the spikes, one weight
layer (`Conv2d` with groups 1, `Linear` or `Affine`), some of `SumPool2d` / `AvgPool2d` /
`Scale` on its output, then one neuron (`LIF`, `CubaLIF`, `IF`, `Threshold`); the last stage
may end without a neuron (a readout whose outputs, summed over timesteps, are the scores).
Pooling and scaling fold into the weight layer exactly (a sum pool after a convolution is a
convolution with a larger kernel and stride; one before it, with kernel = stride, is one with a
repeated kernel). Each stage becomes one layer of the integer network (`IntDownsample`: the
previous stage's neuron on its stream, then its convolution into a stream); the last neuron and
the readout become its `IntHead` (the head sums its stream over positions, so that stream must
be a vector: a 1 x 1 map).

Neurons follow NIR's equations with Euler steps of `dt` (snnTorch's 1e-4 s by default):
`v <- v + dt/tau (v_leak - v + r I)`, spike when `v > v_threshold`, then `v = v_reset`. Ours is
`H = V + (X - V) / tau'` with `tau' = tau/dt` a power of two, spike when `H >= v_th`, reset to
0; so `X = v_leak + r I` (`r` folds into the weights, `v_leak` into the bias). At T = 1 only the
first step counts and any tau maps (`tau' = 1`, gains `dt/tau`); an `IF` (no leak) and a
`CubaLIF` whose synapse keeps a state (`tau_syn != dt`) map only there. A `Threshold` is a neuron
with `tau' = 1`. Refused, with the node's name: a tau that is not a power of two times dt
(T > 1), `v_reset != 0`, parameters that differ within a channel, grouped or dilated
convolutions, pooling with padding, a node type with no counterpart, fan-in or fan-out. The
one difference kept: NIR fires on `v > threshold`, the integer network on `>=` (a value exactly
at a threshold is rare in float and counted in the report's spike agreement).
"""

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import nir
import numpy as np
import torch
import torch.nn.functional as F

from spec.cli import Parser, check_output_path, fail, run_main
from spec.errors import ConfigError
from spec.progress import PhaseBars

from .int_model import (
    Conv,
    IntDownsample,
    IntHead,
    IntNetwork,
    MultiBitConv,
    Neuron,
    Producer,
    RunContext,
)
from .netbundle import write_network_bundle
from .quant import DATASET_INPUT, QuantOptions, _stream_exponent, _stream_weights, calibrate
from .train import DATASETS, load_dataset

__all__ = ["NirError", "FloatNeuron", "Stage", "Chain", "read_graph", "from_graph",
           "load_chain", "quantize_chain", "import_graph", "report_chain", "DEFAULT_DT"]

PROG = "sw.nirio"

#: snnTorch's step (s), the one its exporter divides tau by
DEFAULT_DT = 1e-4

#: the node types that import (anything else is refused by name)
SUPPORTED = ("Input", "Output", "Conv2d", "Linear", "Affine", "Scale", "SumPool2d", "AvgPool2d",
             "Flatten", "LIF", "CubaLIF", "IF", "Threshold")
NEURONS = ("LIF", "CubaLIF", "IF", "Threshold")


class NirError(ValueError):
    """A graph that does not map onto the integer network; the message names the node."""


@dataclass
class FloatNeuron:
    """A stage's neuron in our form: `H = V + (X - V) / tau`, spike when `H > v_th` (NIR) or
    `H >= v_th` (integer), reset to 0; `v_th` per channel."""

    node: str
    kind: str
    tau: int
    v_th: np.ndarray


@dataclass
class Stage:
    """One weight layer (pooling and scaling folded in), then its neuron (None: the readout).
    `weight` (out, in, k, k) and `bias` (out,) give `X` of the neuron directly (its `r` and
    `v_leak` folded in)."""

    nodes: tuple
    weight: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    kernel: int
    stride: int
    padding: int
    in_shape: tuple
    neuron: FloatNeuron | None

    @property
    def out_shape(self):
        c, h, w = self.in_shape
        size = lambda n: (n + 2 * self.padding - self.kernel) // self.stride + 1  # noqa: E731
        return (self.weight.shape[0], size(h), size(w))

    @property
    def name(self):
        return "+".join(self.nodes)


@dataclass
class Chain:
    """A NIR graph as stages (`from_graph`), run in float by NIR's equations (`run`)."""

    input_shape: tuple
    flat_input: bool
    stages: list
    timesteps: int
    dt: float
    source: str = ""

    @property
    def classes(self):
        return self.stages[-1].weight.shape[0]

    def images(self, images):
        """Dataset images (N, C, H, W) in the graph's input shape (flattened when it takes a
        vector): what the float run and the integer network read."""
        x = np.asarray(images, dtype=np.float64)
        return x.reshape(len(x), *self.input_shape)

    def run(self, images, *, batch=256):
        """(scores (N, classes), spikes per stage with a neuron, each (N, T, C, H, W) uint8) for
        float `images` in [0, 1], the image repeated at every timestep."""
        x_all = torch.as_tensor(self.images(images))
        scores, spikes = [], [[] for s in self.stages if s.neuron is not None]
        weights = [(torch.as_tensor(s.weight), torch.as_tensor(s.bias)) for s in self.stages]
        for start in range(0, len(x_all), batch):
            x = x_all[start:start + batch]
            v = [None] * len(self.stages)
            total = 0
            seen = [[] for _ in spikes]
            for _ in range(self.timesteps):
                a, n = x, 0
                for i, (stage, (w, b)) in enumerate(zip(self.stages, weights, strict=True)):
                    xin = F.conv2d(a, w, b, stride=stage.stride, padding=stage.padding)
                    if stage.neuron is None:
                        total = total + xin.reshape(len(x), -1)
                        continue
                    v[i] = xin / stage.neuron.tau if v[i] is None else \
                        v[i] + (xin - v[i]) / stage.neuron.tau
                    th = torch.as_tensor(stage.neuron.v_th).reshape(1, -1, 1, 1)
                    s = v[i] > th
                    v[i] = torch.where(s, torch.zeros_like(v[i]), v[i])
                    a = s.double()
                    seen[n].append(s.to(torch.uint8).numpy())
                    n += 1
                if self.stages[-1].neuron is not None:
                    total = total + a.reshape(len(x), -1)
            scores.append(total.numpy())
            for n, steps in enumerate(seen):
                spikes[n].append(np.stack(steps, axis=1))
        return np.concatenate(scores), [np.concatenate(s) for s in spikes]


# -- reading -------------------------------------------------------------------------------------


def read_graph(path):
    """The `nir.NIRGraph` in file `path`, or `NirError`. The file is HDF5 read by `nir.read`
    (datasets become numpy arrays; nothing is unpickled or executed); `from_graph` validates
    every node it uses."""
    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise NirError(f"{path}: not a NIR file (NIR graphs are HDF5 files)")
    try:
        graph = nir.read(path, type_check=False)
    except Exception as exc:      # a malformed file: one message, whatever nir raised
        raise NirError(f"{path}: cannot read it as a NIR graph ({type(exc).__name__}: "
                       f"{exc})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NirError(f"{path}: holds a {type(graph).__name__}, not a NIR graph")
    return graph


def _array(name, node, attr, *, ndim=None):
    value = getattr(node, attr, None)
    if value is None:
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} is missing")
    try:
        a = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                       dtype=np.float64)
    except (TypeError, ValueError):
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} is not numeric") \
            from None
    if not np.all(np.isfinite(a)):
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} is not finite")
    if ndim is not None and a.ndim != ndim:
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} has shape "
                       f"{list(a.shape)}, expected {ndim} dimensions")
    return a


def _pair(name, node, attr, default=None):
    """One integer from a scalar or an (equal) pair."""
    value = getattr(node, attr, None)
    if value is None or (isinstance(value, str)):
        if default is not None and value is None:
            return default
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} {value!r} is not "
                       f"supported (give numbers)")
    a = np.asarray(value).reshape(-1)
    if a.size == 0:
        if default is not None:
            return default
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} is empty")
    if a.size > 2 or not np.all(a == a[0]) or a[0] != int(a[0]) or a[0] < 0:
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} {a.tolist()} must be "
                       f"one whole number (square kernels and maps, equal strides and "
                       f"padding)")
    return int(a[0])


def _order(graph):
    """The node names from the Input to the Output, or `NirError` for anything not a chain."""
    nodes, edges = graph.nodes, graph.edges
    if not isinstance(nodes, dict) or not nodes:
        raise NirError("the graph has no nodes")
    for name, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise NirError(f"node {name!r} is a subgraph (a recurrent layer?): only "
                           f"feed-forward chains import")
        kind = type(node).__name__
        if kind not in SUPPORTED:
            raise NirError(f"node {name!r} is a {kind}: not supported (supported: "
                           f"{', '.join(SUPPORTED)})")
    succ, pred = {n: [] for n in nodes}, {n: [] for n in nodes}
    for edge in edges:
        if len(edge) != 2 or any(e not in nodes for e in edge):
            raise NirError(f"edge {tuple(edge)!r} names a node the graph does not have")
        succ[edge[0]].append(edge[1])
        pred[edge[1]].append(edge[0])
    inputs = [n for n, v in nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(f"the graph needs one Input and one Output node, not {len(inputs)} and "
                       f"{len(outputs)}")
    chain, cur = [inputs[0]], inputs[0]
    while cur != outputs[0]:
        if len(succ[cur]) != 1:
            raise NirError(f"node {cur!r} feeds {len(succ[cur])} nodes "
                           f"({', '.join(map(repr, succ[cur])) or 'none'}): only chains "
                           f"import (no fan-out, no residual sums)")
        cur = succ[cur][0]
        if len(pred[cur]) != 1:
            raise NirError(f"node {cur!r} receives {len(pred[cur])} edges (a sum): only "
                           f"chains import")
        if cur in chain:
            raise NirError(f"node {cur!r} closes a loop: only feed-forward chains import")
        chain.append(cur)
    rest = [n for n in nodes if n not in chain]
    if rest:
        raise NirError(f"node {rest[0]!r} is not on the path from {inputs[0]!r} to "
                       f"{outputs[0]!r}")
    return chain


def _per_channel(name, node, attr, channels, shape):
    """A neuron parameter as one value per channel (scalars broadcast), or `NirError` when it
    differs within a channel."""
    a = _array(name, node, attr)
    if a.size == 1:
        return np.full(channels, float(a.reshape(-1)[0]))
    if a.size == channels:
        return a.reshape(channels)
    if a.size != int(np.prod(shape)):
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} has {a.size} values "
                       f"for {channels} channels of {tuple(shape)}")
    per = a.reshape(channels, -1)
    if not np.all(per == per[:, :1]):
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} differs within a "
                       f"channel; our neurons take one value per channel")
    return per[:, 0].copy()


def _uniform(name, node, attr, values):
    if not np.all(values == values[0]):
        raise NirError(f"node {name!r} ({type(node).__name__}): {attr} differs between "
                       f"neurons; a layer of ours has one")
    return float(values[0])


def _neuron(name, node, shape, timesteps, dt):
    """(FloatNeuron, gain, offset) of a neuron node: `X = gain * I + offset` per channel."""
    kind = type(node).__name__
    c = shape[0]
    pc = lambda attr: _per_channel(name, node, attr, c, shape)  # noqa: E731
    if kind == "Threshold":
        return FloatNeuron(name, kind, 1, pc("threshold")), np.ones(c), np.zeros(c)
    v_th = pc("v_threshold")
    v_reset = pc("v_reset") if getattr(node, "v_reset", None) is not None else np.zeros(c)
    if np.any(v_reset != 0):
        raise NirError(f"node {name!r} ({kind}): v_reset {float(v_reset[v_reset != 0][0]):g}; "
                       f"our LIF starts at 0 and resets to 0 (v_reset must be 0)")
    r = pc("r")
    if kind == "IF":
        if timesteps != 1:
            raise NirError(f"node {name!r} (IF): an integrate-and-fire neuron never leaks; "
                           f"ours always do (tau a power of two), so an IF maps only at "
                           f"T = 1 (give --timesteps 1)")
        return FloatNeuron(name, kind, 1, v_th), r, np.zeros(c)
    tau_attr = "tau_mem" if kind == "CubaLIF" else "tau"
    tau = _uniform(name, node, tau_attr, pc(tau_attr))
    v_leak = pc("v_leak")
    gain = r.copy()
    if kind == "CubaLIF":
        tau_syn = _uniform(name, node, "tau_syn", pc("tau_syn"))
        w_in = pc("w_in")
        if timesteps == 1:
            gain = gain * w_in * min(1.0, dt / tau_syn)
        elif not math.isclose(tau_syn, dt, rel_tol=1e-6):
            raise NirError(f"node {name!r} (CubaLIF): tau_syn {tau_syn:g} s is "
                           f"{tau_syn / dt:g} steps of dt {dt:g} s; our neurons have one "
                           f"state, so the synapse must forget each step (tau_syn = dt), "
                           f"or T = 1")
        else:
            gain = gain * w_in
    steps = tau / dt
    if timesteps == 1:
        k = min(1.0, 1.0 / steps)
        return FloatNeuron(name, kind, 1, v_th), gain * k, v_leak * k
    s = round(math.log2(steps)) if steps >= 1 else -1
    if s < 0 or not math.isclose(steps, 2.0 ** s, rel_tol=1e-6):
        raise NirError(f"node {name!r} ({kind}): {tau_attr}/dt = {tau:g}/{dt:g} = {steps:g} "
                       f"steps is not a power of two; our LIF leaks by a shift (tau 1, 2, "
                       f"4, ... steps). Give --dt if the graph was written with another step")
    if s > 16:
        raise NirError(f"node {name!r} ({kind}): tau of {steps:g} steps exceeds 2**16")
    return FloatNeuron(name, kind, 1 << s, v_th), gain, v_leak


class _Pending:
    """The weight layer being collected, with what is folded into it."""

    def __init__(self):
        self.nodes = []
        self.pool = 1                 # a pool before the weight layer (kernel = stride)
        self.pool_div = 1.0
        self.scale = None             # per input channel, before the weight layer
        self.in_shape = None          # the map the stage reads (before that pool)
        self.weight = None


def _pool_args(name, node):
    k = _pair(name, node, "kernel_size")
    s = _pair(name, node, "stride", default=k)
    p = _pair(name, node, "padding", default=0)
    if p:
        raise NirError(f"node {name!r} ({type(node).__name__}): padding {p}; only pooling "
                       f"without padding folds into a convolution exactly")
    if k < 1 or s < 1:
        raise NirError(f"node {name!r} ({type(node).__name__}): kernel {k} and stride {s} "
                       f"must be at least 1")
    return k, s, (k * k if type(node).__name__ == "AvgPool2d" else 1)


def from_graph(graph, *, timesteps, dt=DEFAULT_DT, source=""):
    """The `Chain` of NIR graph `graph` at `timesteps` steps of `dt` seconds, or `NirError`."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not 1 <= timesteps <= 16:
        raise NirError(f"timesteps must be 1 to 16, not {timesteps!r}")
    if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
        raise NirError(f"dt must be a positive number of seconds, not {dt!r}")
    order = _order(graph)
    nodes = graph.nodes
    first = nodes[order[0]]
    itype = getattr(first, "input_type", None) or {}
    raw = next(iter(itype.values()), None) if isinstance(itype, dict) else None
    if raw is None:
        raise NirError(f"node {order[0]!r} (Input): its shape is missing")
    dims = [int(d) for d in np.asarray(raw).reshape(-1)]
    if len(dims) == 1:
        shape, flat = (dims[0], 1, 1), True
    elif len(dims) == 3:
        shape, flat = tuple(dims), False
    else:
        raise NirError(f"node {order[0]!r} (Input): shape {dims}; a chain takes (C, H, W) "
                       f"maps or vectors")
    if min(dims) < 1:
        raise NirError(f"node {order[0]!r} (Input): shape {dims} has an empty dimension")
    input_shape, stages, pend = shape, [], _Pending()
    flattened = flat
    for name in order[1:-1]:
        node = nodes[name]
        kind = type(node).__name__
        c, h, w = shape
        if kind in ("Conv2d", "Linear", "Affine"):
            if pend.weight is not None:
                raise NirError(f"node {name!r} ({kind}) follows the weight layer "
                               f"{pend.nodes[-1]!r} with no neuron between them")
            if pend.in_shape is None:
                pend.in_shape = shape
            if kind == "Conv2d":
                if flattened:
                    raise NirError(f"node {name!r} (Conv2d) reads a flattened vector")
                wt = _array(name, node, "weight", ndim=4)
                groups = int(np.asarray(getattr(node, "groups", 1)).reshape(-1)[0])
                if groups != 1:
                    raise NirError(f"node {name!r} (Conv2d): groups {groups}; only ordinary "
                                   f"convolutions (groups 1) import")
                if _pair(name, node, "dilation", default=1) != 1:
                    raise NirError(f"node {name!r} (Conv2d): dilation is not supported")
                if wt.shape[2] != wt.shape[3]:
                    raise NirError(f"node {name!r} (Conv2d): kernel {wt.shape[2]}x"
                                   f"{wt.shape[3]} is not square")
                if wt.shape[1] != c:
                    raise NirError(f"node {name!r} (Conv2d): weights for {wt.shape[1]} input "
                                   f"channels, the input has {c}")
                k = wt.shape[2]
                pad = getattr(node, "padding", 0)
                pad = (k // 2 if k % 2 else -1) if isinstance(pad, str) and pad == "same" \
                    else 0 if isinstance(pad, str) and pad == "valid" \
                    else _pair(name, node, "padding", default=0)
                if pad < 0:
                    raise NirError(f"node {name!r} (Conv2d): 'same' padding of an even "
                                   f"kernel is not symmetric")
                stride = _pair(name, node, "stride", default=1)
                bias = _array(name, node, "bias") if getattr(node, "bias", None) is not None \
                    else np.zeros(wt.shape[0])
            else:
                if not flattened and (h, w) != (1, 1):
                    raise NirError(f"node {name!r} ({kind}) reads a {c}x{h}x{w} map; it needs "
                                   f"a Flatten before it")
                wt = _array(name, node, "weight", ndim=2)
                if wt.shape[1] != c * h * w:
                    raise NirError(f"node {name!r} ({kind}): weights for {wt.shape[1]} "
                                   f"inputs, the input has {c * h * w}")
                if h != w:
                    raise NirError(f"node {name!r} ({kind}) reads a {h}x{w} map; only square "
                                   f"maps import")
                wt = wt.reshape(wt.shape[0], c, h, w)
                k, stride, pad = h, 1, 0
                bias = _array(name, node, "bias") if kind == "Affine" else np.zeros(wt.shape[0])
            bias = np.broadcast_to(bias.reshape(-1), (wt.shape[0],)).astype(np.float64) \
                if bias.size in (1, wt.shape[0]) else None
            if bias is None:
                raise NirError(f"node {name!r} ({kind}): bias must have one value per output")
            if pend.scale is not None:
                wt = wt * pend.scale[None, :, None, None]
            q = pend.pool
            if q > 1:
                wt = np.repeat(np.repeat(wt, q, axis=2), q, axis=3) / pend.pool_div
                k, stride, pad = k * q, stride * q, pad * q
            pend.weight, pend.bias = wt, bias.copy()
            pend.kernel, pend.stride, pend.padding = k, stride, pad
            pend.nodes.append(name)
            ic, ih, iw = pend.in_shape
            oh = (ih + 2 * pad - k) // stride + 1
            ow = (iw + 2 * pad - k) // stride + 1
            if oh < 1 or ow < 1:
                raise NirError(f"node {name!r} ({kind}): kernel {k} does not fit the "
                               f"{ih}x{iw} map")
            shape, flattened = (wt.shape[0], oh, ow), kind != "Conv2d"
        elif kind in ("SumPool2d", "AvgPool2d"):
            if flattened:
                raise NirError(f"node {name!r} ({kind}) reads a flattened vector")
            k, s, div = _pool_args(name, node)
            if pend.weight is None:            # on spikes: must tile the map
                if k != s or h % k or w % k:
                    raise NirError(f"node {name!r} ({kind}): before a weight layer only "
                                   f"pools with kernel = stride that tile the map fold "
                                   f"exactly (kernel {k}, stride {s}, map {h}x{w})")
                if pend.in_shape is None:
                    pend.in_shape = shape
                pend.pool *= k
                pend.pool_div *= div
                shape = (c, h // k, w // k)
            else:                              # on the weight layer's output
                w1, k1, s1 = pend.weight, pend.kernel, pend.stride
                k2 = k1 + (k - 1) * s1
                out = np.zeros(w1.shape[:2] + (k2, k2))
                for j in range(k):
                    for i in range(k):
                        out[:, :, j * s1:j * s1 + k1, i * s1:i * s1 + k1] += w1
                pend.weight, pend.bias = out / div, pend.bias * (k * k) / div
                pend.kernel, pend.stride = k2, s1 * s
                ih, iw = pend.in_shape[1:]
                oh = (ih + 2 * pend.padding - k2) // pend.stride + 1
                ow = (iw + 2 * pend.padding - k2) // pend.stride + 1
                if (oh, ow) != ((h - k) // s + 1, (w - k) // s + 1) or oh < 1 or ow < 1:
                    raise NirError(f"node {name!r} ({kind}): the pool does not fit the "
                                   f"{h}x{w} map it reads")
                shape = (c, oh, ow)
            pend.nodes.append(name)
        elif kind == "Scale":
            sc = _per_channel(name, node, "scale", c, shape)
            if pend.weight is None:
                pend.scale = sc if pend.scale is None else pend.scale * sc
                if pend.in_shape is None:
                    pend.in_shape = shape
            else:
                pend.weight = pend.weight * sc[:, None, None, None]
                pend.bias = pend.bias * sc
            pend.nodes.append(name)
        elif kind == "Flatten":
            start = int(np.asarray(getattr(node, "start_dim", 0)).reshape(-1)[0])
            end = int(np.asarray(getattr(node, "end_dim", -1)).reshape(-1)[0])
            if start not in (0, 1) or end not in (-1, 2) or (start == 1 and c != 1):
                raise NirError(f"node {name!r} (Flatten): start_dim {start}, end_dim {end}; "
                               f"only a flatten of the whole (C, H, W) map imports")
            flattened = True
            pend.nodes.append(name)
        else:                                  # a neuron
            if pend.weight is None:
                raise NirError(f"node {name!r} ({kind}) has no weight layer before it "
                               f"(every neuron imports with the Conv2d, Linear or Affine "
                               f"that feeds it)")
            neuron, gain, offset = _neuron(name, node, shape, timesteps, dt)
            stages.append(Stage(tuple(pend.nodes + [name]), pend.weight * gain[:, None, None,
                                                                                None],
                                pend.bias * gain + offset, pend.kernel, pend.stride,
                                pend.padding, pend.in_shape, neuron))
            pend = _Pending()
    if pend.weight is not None:
        stages.append(Stage(tuple(pend.nodes), pend.weight, pend.bias, pend.kernel, pend.stride,
                            pend.padding, pend.in_shape, None))
    elif pend.nodes:
        raise NirError(f"node {pend.nodes[-1]!r} is not followed by a weight layer")
    if not stages or stages[0].neuron is None and len(stages) == 1:
        raise NirError("the graph has no neuron: nothing spiking to import")
    for st in stages[:-1]:
        if st.neuron is None:
            raise NirError(f"node {st.nodes[-1]!r}: only the last weight layer may go without "
                           f"a neuron")
    last = stages[-1] if stages[-1].neuron is not None else stages[-2]
    if last.out_shape[1:] != (1, 1):
        raise NirError(f"node {last.nodes[-1]!r}: the network ends on a {last.out_shape[1]}x"
                       f"{last.out_shape[2]} map; the head reads a vector (end with Flatten + "
                       f"Linear/Affine + a neuron, or a neuron on a 1x1 map + Linear/Affine)")
    return Chain(input_shape, flat, stages, timesteps, float(dt), source)


# -- quantizing ----------------------------------------------------------------------------------


def _th_units(name, v_th, scale, opts):
    """Thresholds in stream units (`scale` = 2**e per float unit), multiples of
    2**-param_frac, at least that."""
    unit = 1 << opts.param_frac
    th = np.rint(np.asarray(v_th) * scale * unit) / unit
    if np.any(np.asarray(v_th) <= 0):
        raise NirError(f"node {name!r}: thresholds must be positive")
    return tuple(float(max(t, 1 / unit)) for t in th)


def quantize_chain(chain, calib_images, opts=None, *, progress=None):
    """The calibrated integer network of `chain` (`sw.int_model.IntNetwork`), quantized with
    `opts` (`sw.quant.QuantOptions`, default: the digits data set's input)."""
    opts = opts if opts is not None else QuantOptions()
    layers, streams, exps = [], [], []
    spiking = [s for s in chain.stages if s.neuron is not None]
    readout = chain.stages[-1] if chain.stages[-1].neuron is None else None
    for i, st in enumerate(spiking):
        c, h, w = st.in_shape
        wt = st.weight * (opts.input_scale if i == 0 else 1.0)
        e = _stream_exponent([wt], opts)
        try:
            w_int, shift, bias, rounding = _stream_weights(wt, st.bias, e, opts)
        except ValueError as exc:
            raise NirError(f"stage {st.name!r}: {exc}") from None
        name = f"layers.{i}"
        conv_args = dict(name=f"{name}.conv", mode="conv", in_channels=c,
                         out_channels=wt.shape[0], kernel=st.kernel, stride=st.stride,
                         padding=st.padding, height=h, width=w, weight=w_int,
                         w_bits=opts.w_bits, bias=rounding if (shift < 0).any() else None)
        conv = MultiBitConv(**conv_args, value_bits=opts.input_bits) if i == 0 \
            else Conv(**conv_args)
        prod = Producer(conv=conv, shift=shift, bias=bias, stream=f"stage{i}.stream")
        neuron = None
        if i > 0:
            prev = spiking[i - 1]
            pc, ph, pw = prev.out_shape
            neuron = Neuron(name=f"{name}.lif", channels=pc, height=ph, width=pw,
                            v_th=_th_units(prev.neuron.node, prev.neuron.v_th, 2.0 ** exps[-1],
                                           opts),
                            bias=(0.0,), param_frac=opts.param_frac,
                            source=streams[-1], tau=prev.neuron.tau)
        layers.append(IntDownsample(name, neuron, prod))
        streams.append(prod.stream)
        exps.append(e)
    last = spiking[-1]
    classes = chain.classes
    if readout is None:
        fc_w = np.eye(classes, dtype=np.int64)[:, :, None, None]
        fc_b, alpha = None, 1.0
    else:
        alpha = float(np.abs(readout.weight).max()) / opts.qmax or 1.0
        fc_w = np.clip(np.rint(readout.weight / alpha), -opts.qmax, opts.qmax).astype(np.int64)
        fc_b = np.rint(readout.bias / alpha).astype(np.int64)
    lc = last.out_shape[0]
    head = IntHead(
        name="head", source=streams[-1],
        neuron=Neuron(name="head_lif", channels=lc, height=1, width=1,
                      v_th=_th_units(last.neuron.node, last.neuron.v_th, 2.0 ** exps[-1], opts),
                      bias=(0.0,), param_frac=opts.param_frac, source="head.sum",
                      tau=last.neuron.tau),
        fc=Conv(name="head", mode="linear", in_channels=lc, out_channels=classes, kernel=1,
                stride=1, padding=0, height=1, width=1, weight=fc_w.reshape(classes, lc, 1, 1),
                w_bits=opts.w_bits, bias=fc_b))
    info = {"w_bits": opts.w_bits, "param_frac": opts.param_frac,
            "margin_bits": opts.margin_bits,
            "stream_exponents": {s: int(e) for s, e in zip(streams, exps, strict=True)},
            "head_scale": alpha,
            "nir": {"source": chain.source, "dt": chain.dt,
                    "layers": {f"layers.{i}": list(s.nodes) for i, s in enumerate(spiking)}
                    | {"head": list(readout.nodes) if readout else []}}}
    net = IntNetwork(layers=layers, head=head, timesteps=chain.timesteps,
                     input_bits=opts.input_bits, input_scale=opts.input_scale, info=info)
    try:
        net.check()
        pixels = net.to_input(chain.images(calib_images))
        return calibrate(net, pixels, opts, progress=progress)
    except (ConfigError, ValueError, TypeError) as exc:
        if isinstance(exc, NirError):
            raise
        raise NirError(f"the imported network does not fit the hardware's units: {exc}") \
            from None


def check_fit(chain, dataset):
    """`NirError` unless the data set's images are the graph's input."""
    xte = load_dataset(dataset)[2]
    size = int(np.prod(xte.shape[1:]))
    c, h, w = chain.input_shape
    if (chain.flat_input and size != c) or (not chain.flat_input and
                                            tuple(xte.shape[1:]) != (c, h, w)):
        takes = f"vectors of {c}" if chain.flat_input else f"{(c, h, w)}"
        raise NirError(f"the graph takes {takes} inputs; the {dataset} data set has "
                       f"{tuple(xte.shape[1:])} images")


def report_chain(chain, net, images, labels, *, progress=None):
    """Float (NIR equations) and integer accuracy, prediction agreement and per-layer spike
    agreement on `images` (float, (N, C, H, W))."""
    labels = np.asarray(labels)
    f_scores, f_spikes = chain.run(images)
    ctx = RunContext(net.widths, record="spikes")
    i_scores = net.run(net.to_input(chain.images(images)), ctx, progress=progress)
    traces = ctx.merged_traces()
    names = [layer.neuron.name for layer in net.layers[1:]] + [net.head.neuron.name]
    rows = []
    for name, fs, st in zip(names, f_spikes, [s for s in chain.stages if s.neuron], strict=True):
        isp = traces[name]["spikes"].reshape(fs.shape)
        rows.append({"layer": name, "nodes": list(st.nodes), "firing_float": float(fs.mean()),
                     "firing_int": float(isp.mean()),
                     "agreement": float((fs == isp).mean())})
    fp, ip = f_scores.argmax(1), i_scores.argmax(1)
    return {"float_accuracy": float((fp == labels).mean()),
            "int_accuracy": float((ip == labels).mean()),
            "prediction_agreement": float((fp == ip).mean()), "test_images": int(len(labels)),
            "timesteps": chain.timesteps, "w_bits": net.info["w_bits"], "layers": rows}


def load_chain(graph, *, timesteps=4, dt=DEFAULT_DT, dataset="digits"):
    """The `Chain` of a NIR graph (a `nir.NIRGraph` or the path of a .nir file), checked to
    take `dataset`'s images; `NirError` otherwise."""
    if not isinstance(graph, (str, Path)) and not hasattr(graph, "nodes"):
        raise NirError(f"expected a NIR graph or the path of one, not a "
                       f"{type(graph).__name__}")
    source = ""
    if isinstance(graph, (str, Path)):
        source = Path(graph).name
        graph = read_graph(graph)
    if dataset not in DATASETS:
        raise NirError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    chain = from_graph(graph, timesteps=timesteps, dt=dt, source=source)
    check_fit(chain, dataset)
    return chain


def import_graph(graph, *, timesteps=4, dt=DEFAULT_DT, dataset="digits", calibration=512,
                 opts=None, progress=None):
    """(chain, calibrated integer network) of a NIR graph (a `nir.NIRGraph` or a file path),
    sized on `calibration` training images of `dataset`."""
    chain = load_chain(graph, timesteps=timesteps, dt=dt, dataset=dataset)
    if opts is None:
        bits, scale = DATASET_INPUT[dataset]
        opts = QuantOptions(input_bits=bits, input_scale=scale)
    xtr = load_dataset(dataset)[0]
    xtr = xtr[:calibration] if calibration else xtr
    return chain, quantize_chain(chain, xtr, opts, progress=progress)


def format_report(rep):
    lines = [f"float accuracy {rep['float_accuracy']:.2%} (NIR's equations), integer "
             f"{rep['int_accuracy']:.2%} ({rep['test_images']} test images, T = "
             f"{rep['timesteps']}, w_bits {rep['w_bits']}); predictions agree on "
             f"{rep['prediction_agreement']:.2%}", "",
             f"{'layer':14s} {'NIR nodes':28s} {'rate float':>10s} {'rate int':>9s} "
             f"{'agree':>8s}"]
    for r in rep["layers"]:
        lines.append(f"{r['layer']:14s} {','.join(r['nodes'])[:28]:28s} "
                     f"{r['firing_float']:10.4f} {r['firing_int']:9.4f} {r['agreement']:8.4%}")
    return "\n".join(lines)


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("graph", help="a NIR file (HDF5) of a spiking CNN")
    p.add_argument("--out", required=True, help="the network bundle to write (a folder)")
    p.add_argument("--timesteps", type=int, default=4, help="timesteps per image (default 4)")
    p.add_argument("--dt", type=float, default=DEFAULT_DT,
                   help=f"the step the graph's taus are in (default {DEFAULT_DT:g} s, "
                        f"snnTorch's)")
    p.add_argument("--dataset", default="digits", choices=sorted(DATASETS))
    p.add_argument("--w-bits", type=int, default=8, help="weight width (default 8)")
    p.add_argument("--param-frac", type=int, default=4,
                   help="fractional bits of thresholds (default 4)")
    p.add_argument("--calibration", type=int, default=512, metavar="N",
                   help="training images for calibration (default 512; 0: all)")
    p.add_argument("--images", type=int, default=8, metavar="N",
                   help="test images whose traces the bundle keeps (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    args = p.parse_args(argv)
    check_output_path(args.out)
    if args.calibration < 0:
        fail(f"--calibration must not be negative, not {args.calibration}")
    if args.images < 1:
        fail(f"--images must be at least 1, not {args.images}")
    if not 1 <= args.timesteps <= 16:
        fail(f"--timesteps must be 1 to 16, not {args.timesteps}")
    if not (args.dt > 0 and math.isfinite(args.dt)):
        fail(f"--dt must be a positive number of seconds, not {args.dt:g}")
    bits, scale = DATASET_INPUT[args.dataset]
    try:
        opts = QuantOptions(w_bits=args.w_bits, param_frac=args.param_frac, input_bits=bits,
                            input_scale=scale)
    except ValueError as exc:
        fail(str(exc).replace("w_bits", "--w-bits").replace("param_frac", "--param-frac"))
    t0 = time.perf_counter()
    try:
        with PhaseBars("calibration", enabled=not args.quiet) as progress:
            chain, net = import_graph(args.graph, timesteps=args.timesteps, dt=args.dt,
                                      dataset=args.dataset, calibration=args.calibration,
                                      opts=opts, progress=progress)
    except NirError as exc:
        fail(f"{args.graph}: {exc}" if not str(exc).startswith(str(args.graph)) else str(exc))
    _, _, xte, yte = load_dataset(args.dataset)
    with PhaseBars("test", enabled=not args.quiet) as progress:
        rep = report_chain(chain, net, xte, yte, progress=progress)
    print(format_report(rep))
    pixels = net.to_input(chain.images(xte[:args.images]))
    write_network_bundle(args.out, net, pixels, yte[:args.images].numpy(),
                         meta={"generator": PROG, "nir": chain.source})
    if not args.quiet:
        print(f"[{PROG}] wrote {args.out} ({len(net.layers)} layers and the head) in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
