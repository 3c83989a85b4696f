"""Compile an integer network for the overlay core: a program and memory image.

    python -m gen.program --bundle NET [--core core.yaml | core flags] --out DIR [--base ADDR]
                          [--images N]

Writes `DIR/image.bin` (the memory image, format `spec.program`, docs/overlay-format.md) and
`DIR/layout.json` (every region: address, size, what it holds; every operation: its
descriptor, tiles and the cycle model's figures for the bundle's traced images).

Steps:

1. **Lowering** (`lower`): the network's layers become operations, each one fused chain the
   integer model already has (`spec.program.OPCODES`): a LIF on a residual stream, an engine
   followed by its LIF, an engine followed by its shortcut, a depthwise engine, the attention,
   the head. Every operation writes its own output region; each region is what one of the
   integer model's traces holds (`Tensor.trace`), so a testbench can compare them all.
2. **Tiling** (`plan`): an engine's output is split into tiles of `groups` output groups (of
   `lanes` channels) and bands of output rows so that a tile's accumulators (and LIF
   membranes) fit the core's `acc_words`, its parameters `tile_groups` and its weights
   `weight_words`. When one group's weights do not fit, they are split by kernel rows, then by
   taps (`passes`): every accumulator still sees its events in the order (kh, kw, c_in), the
   integer model's, so no saturating add changes. What cannot fit is refused, naming the
   layer and the limit (`CompileError`).
3. **Layout** (`compile_network`): header, descriptors, weights, parameters, geometry tables,
   the input image region, then the activation area (one region per operation's output).
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spec.cli import Parser, fail, run_main
from spec.core import CoreConfig
from spec.errors import ConfigError
from spec.netbundle import read_network_bundle
from spec.network import (
    IntConvBlock,
    IntDownsample,
    IntTransformerBlock,
    Widths,
)
from spec.program import (
    ALIGN,
    DESCRIPTOR_WORDS,
    HEADER_WORDS,
    IN_SIGNED,
    IN_SPIKES,
    IN_UNSIGNED,
    MODES,
    OPCODES,
    PARAMS,
    align,
    core_fingerprint,
    pack_descriptor,
    pack_header,
    spike_record_bytes,
    value_bytes,
    value_record_bytes,
)
from spec.sae import SAEConfig
from spec.yamlio import atomic_write_folder

__all__ = ["CompileError", "core_from_args",
           "Tensor", "Op", "Tiling", "lower", "plan", "compile_network",
           "Image", "main"]

PROG = "gen.program"


class CompileError(ConfigError):
    """The core cannot run a layer; the message names the layer and the limit."""


@dataclass(frozen=True)
class Tensor:
    """A region of activations: `kind` "spikes" or "values" (`bits`, `signed`), (timesteps,
    channels, height, width); `planes` is 1 for the input image (its one plane is read at every
    timestep). `trace` is (trace name, array kind) of the integer model's trace it equals."""

    name: str
    kind: str
    channels: int
    height: int
    width: int
    planes: int
    bits: int = 1
    signed: bool = False
    trace: tuple = ()

    def record_bytes(self, core):
        if self.kind == "spikes":
            return spike_record_bytes(self.channels, core)
        return value_record_bytes(self.channels, self.bits, core)

    def plane_bytes(self, core):
        return align(self.height * self.width * self.record_bytes(core))

    def size(self, core):
        return self.planes * self.plane_bytes(core)


@dataclass(frozen=True)
class Tiling:
    """How an operation is split: `groups` output groups per tile (`tiles` tiles), `band_rows`
    output rows per band (`bands` bands), weights in `passes` parts (1, k or k x k), and
    `buffers` 2 when two tiles' (or passes') weights fit the buffer at once, so that the next
    one loads while the engine works on the current one."""

    groups: int = 1
    tiles: int = 1
    band_rows: int = 1
    bands: int = 1
    passes: int = 1
    buffers: int = 1


@dataclass
class Op:
    """One operation of the program (see the module docstring)."""

    name: str
    opcode: str
    inp: Tensor
    out: Tensor
    timesteps: int
    res: Tensor | None = None
    k: Tensor | None = None
    v: Tensor | None = None
    sae: SAEConfig | None = None          # the engine, with the core's lanes
    lif: object = None                    # LIFConfig of the op's neuron
    sdsa: object = None                   # SDSAConfig (core lanes)
    weight: np.ndarray | None = field(default=None, repr=False)
    params: dict = field(default_factory=dict, repr=False)
    out_bits: int = 0
    sum_bits: int = 0
    tiling: Tiling = field(default_factory=Tiling)


def _engine(conv, widths, core):
    """The description's engine (`Conv` or `MultiBitConv`) with the core's lanes; a
    multi-bit engine's plane accumulators are lossless, its total exact (`MultiBitConv`)."""
    cfg = conv.config(widths)
    return SAEConfig(**{**cfg.to_dict(), "lanes": core.lanes,
                        "in_lanes": core.lanes if cfg.mode == "depthwise" else core.in_lanes})


class _Lowering:
    def __init__(self, net, core):
        self.net, self.core = net, core
        self.widths = Widths(net.widths)
        self.t = net.timesteps
        self.ops = []

    def tensor(self, name, kind, channels, height, width, *, bits=1, signed=False, trace=(),
               planes=None):
        return Tensor(name, kind, channels, height, width, self.t if planes is None else planes,
                      bits, signed, trace)

    def lif_op(self, neuron, x):
        lif = neuron.config(self.widths, self.t)
        out = self.tensor(f"{neuron.name}:spikes", "spikes", neuron.channels, neuron.height,
                          neuron.width, trace=(neuron.name, "spikes"))
        v_th, bias = _per_channel(lif, neuron.channels)
        self.ops.append(Op(neuron.name, "lif", x, out, self.t, lif=lif,
                           params={"v_th": v_th, "lif_bias": bias}))
        return out

    def conv_lif(self, conv, neuron, x):
        sae = _engine(conv, self.widths, self.core)
        lif = neuron.config(self.widths, self.t)
        out = self.tensor(f"{neuron.name}:spikes", "spikes", neuron.channels, neuron.height,
                          neuron.width, trace=(neuron.name, "spikes"))
        v_th, bias = _per_channel(lif, neuron.channels)
        params = {"v_th": v_th, "lif_bias": bias, "acc_bias": _bias(conv)}
        self.ops.append(Op(conv.name, "conv_lif", x, out, self.t, sae=sae, lif=lif,
                           weight=np.asarray(conv.weight, np.int64), params=params))
        return out

    def depthwise(self, conv, x):
        sae = _engine(conv, self.widths, self.core)
        out = self.tensor(f"{conv.name}:outputs", "values", conv.out_channels, sae.out_height,
                          sae.out_width, bits=sae.acc_bits, signed=True,
                          trace=(conv.name, "outputs"))
        self.ops.append(Op(conv.name, "depthwise", x, out, self.t, sae=sae,
                           weight=np.asarray(conv.weight, np.int64),
                           params={"acc_bias": _bias(conv)}))
        return out

    def producer(self, producer, x, residual, trace):
        conv = producer.conv
        sae = _engine(conv, self.widths, self.core)
        bits = self.widths.width(producer.stream)
        out = self.tensor(f"{conv.name}:stream", "values", conv.out_channels, sae.out_height,
                          sae.out_width, bits=bits, signed=True, trace=trace)
        params = {"acc_bias": _bias(conv), "shift": np.asarray(producer.shift, np.int64),
                  "stream_bias": np.asarray(producer.bias, np.int64)}
        self.ops.append(Op(conv.name, "conv_stream", x, out, self.t, res=residual, sae=sae,
                           weight=np.asarray(conv.weight, np.int64), params=params,
                           out_bits=bits))
        return out

    def run(self):
        net = self.net
        first = net.layers[0].producer.conv
        x = self.tensor("input", "values", first.in_channels, first.height, first.width,
                        bits=net.input_bits, signed=False, planes=1,
                        trace=(first.name, "inputs"))
        stream = None
        for n, layer in enumerate(net.layers):
            if isinstance(layer, IntDownsample):
                src = x if layer.neuron is None else self.lif_op(layer.neuron, stream)
                stream = self.producer(layer.producer, src, None, (layer.name, "stream"))
            elif isinstance(layer, IntConvBlock):
                b = layer
                s = self.lif_op(b.sep_lif1, stream)
                s = self.conv_lif(b.sep_pw1, b.sep_lif2, s)
                d = self.depthwise(b.sep_dw, s)
                mid = self.producer(b.sep_pw2, d, stream, (b.lif1.name, "inputs"))
                s = self.lif_op(b.lif1, mid)
                s = self.conv_lif(b.conv1, b.lif2, s)
                stream = self.producer(b.conv2, s, mid, (b.name, "stream"))
            elif isinstance(layer, IntTransformerBlock):
                b = layer
                s = self.lif_op(b.head_lif, stream)
                q = self.conv_lif(b.q_conv, b.q_lif, s)
                k = self.conv_lif(b.k_conv, b.k_lif, s)
                v = self.conv_lif(b.v_conv, b.v_lif, s)
                y = self.sdsa(b, q, k, v)
                mid = self.producer(b.proj, y, stream, (b.mlp_lif1.name, "inputs"))
                s = self.lif_op(b.mlp_lif1, mid)
                s = self.conv_lif(b.fc1, b.mlp_lif2, s)
                stream = self.producer(b.fc2, s, mid, (b.name, "stream"))
            else:
                raise CompileError(f"layer {n}: the overlay core has no operation for a "
                                   f"{type(layer).__name__}")
        self.head(net.head, stream)
        return self.ops

    def sdsa(self, block, q, k, v):
        cfg = block.sdsa
        name = f"{block.name}.attn.sdsa"
        if cfg.variant < 3:
            raise CompileError(f"{name}: the overlay core runs SDSA variants 3 and 4, not "
                               f"{cfg.variant}")
        lif = cfg.neuron_config()
        out = self.tensor(f"{name}:spikes", "spikes", q.channels, q.height, q.width,
                          trace=(name, "spikes"))
        v_th = np.asarray(lif.v_th_fixed, np.int64)
        if v_th.size == 1:
            v_th = np.full(cfg.channels, int(v_th[0]), np.int64)
        self.ops.append(Op(name, "sdsa", q, out, self.t, k=k, v=v, sdsa=cfg, lif=lif,
                           params={"v_th": v_th}))
        return out

    def head(self, head, stream):
        lif = head.neuron.config(self.widths, self.t)
        sae = _engine(head.fc, self.widths, self.core)
        out = self.tensor("head:outputs", "values", head.fc.out_channels, 1, 1,
                          bits=32, signed=True, trace=(head.fc.name, "outputs"))
        v_th, bias = _per_channel(lif, head.neuron.channels)
        self.ops.append(Op(head.name, "head", stream, out, self.t, sae=sae, lif=lif,
                           weight=np.asarray(head.fc.weight, np.int64),
                           params={"v_th": v_th, "lif_bias": bias, "acc_bias": _bias(head.fc)},
                           sum_bits=self.widths.width(head.key)))


def _per_channel(lif, channels):
    v_th = np.asarray(lif.v_th_fixed, np.int64)
    bias = np.asarray(lif.bias_fixed, np.int64)
    if v_th.size == 1:
        v_th = np.full(channels, int(v_th[0]), np.int64)
    if bias.size == 1:
        bias = np.full(channels, int(bias[0]), np.int64)
    return v_th, bias


def _bias(conv):
    if conv.bias is None:
        return np.zeros(conv.out_channels, np.int64)
    return np.asarray(conv.bias, np.int64)


def lower(net, core):
    """The operations of integer network `net` (a `spec.network.IntNetwork`) for `core`."""
    return _Lowering(net, core).run()


# -- limits and tiling ---------------------------------------------------------------------------


def _limit(op, what, value, limit, name):
    if value > limit:
        raise CompileError(f"{op.name}: {what} {value} exceeds the core's {name} ({limit})")


def _wide_bits(core):
    """Width of the core's wide store: a multi-bit engine accumulates its exact totals (one
    event per set bit, adding `w << bit`) and the head its token sums in the membrane memory,
    which a core has only with max_timesteps > 1 (else in the accumulators)."""
    return core.v_bits if core.max_timesteps > 1 else core.acc_bits


def _check_common(op, core):
    _limit(op, "timesteps", op.timesteps, core.max_timesteps, "max_timesteps")
    for t in (op.inp, op.out):
        _limit(op, "channels", t.channels, core.max_channels, "max_channels")
        _limit(op, "map size", max(t.height, t.width), core.max_map, "max_map")
    if op.lif is not None:
        _limit(op, "LIF membrane width", op.lif.v_bits, core.v_bits, "v_bits")
        if op.lif.tau != 2:
            raise CompileError(f"{op.name}: the overlay core's LIF leaks with tau 2, this "
                               f"neuron with tau {op.lif.tau}; generate it spatially "
                               f"(gen.network)")
    if op.opcode == "conv_stream":
        _limit(op, "stream width", op.out_bits, core.stream_bits, "stream_bits")
    if op.res is not None:
        _limit(op, "residual stream width", op.res.bits, core.stream_bits, "stream_bits")


def _check_engine(op, core):
    sae = op.sae
    _limit(op, "kernel", sae.kernel, core.max_kernel, "max_kernel")
    _limit(op, "stride", sae.stride, core.max_stride, "max_stride")
    _limit(op, "weight width", sae.w_bits, core.w_bits, "w_bits")
    if sae.in_bits > 1:
        _limit(op, "multi-bit total width", sae.acc_bits, _wide_bits(core),
               "v_bits (totals are kept in the membrane memory)" if core.max_timesteps > 1
               else "acc_bits (a core without membrane memory keeps totals there)")
    else:
        _limit(op, "accumulator width", sae.acc_bits, core.acc_bits, "acc_bits")


def _engine_tiling(op, core, words_group, kernel, out_h, out_w, channels):
    """Tiling of an engine (or LIF) whose output is `channels` x `out_h` x `out_w` and whose
    output group needs `words_group` weight words (0: no weights)."""
    groups = -(-channels // core.lanes)
    if out_w > core.acc_words:
        raise CompileError(f"{op.name}: one output row ({out_w} pixels) exceeds the core's "
                           f"acc_words ({core.acc_words})")
    pixels = out_h * out_w
    acc_fit = max(1, core.acc_words // pixels) if pixels <= core.acc_words else 1
    rows = out_h if pixels <= core.acc_words else core.acc_words // out_w
    passes, buffers, fit = 1, 1, groups
    if words_group:
        for passes in (1, kernel, kernel * kernel):
            if words_group // passes <= core.weight_words:
                break
        else:
            raise CompileError(
                f"{op.name}: one output group's weights for one kernel tap "
                f"({words_group // (kernel * kernel)} words) exceed the core's weight_words "
                f"({core.weight_words})")
        per_group = words_group // passes
        fit = core.weight_words // per_group
        one_tile = min(groups, core.tile_groups, fit, acc_fit) >= groups
        if not (one_tile and passes == 1) and core.weight_words // (2 * per_group) >= 1:
            buffers, fit = 2, core.weight_words // (2 * per_group)
    g = max(1, min(groups, core.tile_groups, fit, acc_fit))
    if words_group:
        # a power of two: the core's weight buffer keeps a tile's groups at a stride of
        # `tile_groups` words, found by a shift rather than a multiplication
        g = 1 << (g.bit_length() - 1)
    return Tiling(groups=g, tiles=-(-groups // g), band_rows=rows, bands=-(-out_h // rows),
                  passes=passes, buffers=buffers)


def _sdsa_tiling(op, core):
    """Heads per tile: their `K^T V` counts (`d x ceil(d / lanes)` words a head) in the
    accumulator memory and their parameters in `tile_groups`; with T > 1 their neurons'
    membranes (`tokens x ceil(d / lanes)` words a head) in the membrane memory, in bands of
    token rows when one head's do not fit (each band builds `K^T V` from all tokens again)."""
    cfg = op.sdsa
    d = cfg.head_dim
    gph = -(-d // core.lanes)
    _limit(op, "heads", cfg.heads, core.max_heads, "max_heads")
    _limit(op, "head dimension", d, core.max_head_dim, "max_head_dim")
    _limit(op, "tokens", cfg.tokens, core.max_tokens, "max_tokens")
    per_head = d * gph
    _limit(op, "K^T V words of one head", per_head, core.acc_words, "acc_words")
    heads = min(cfg.heads, core.acc_words // per_head, core.tile_groups // gph)
    if heads < 1:
        raise CompileError(f"{op.name}: the parameters of one head ({gph} groups) exceed the "
                           f"core's tile_groups ({core.tile_groups})")
    h, w = op.inp.height, op.inp.width
    rows = h
    if op.timesteps > 1:
        if cfg.tokens * gph * heads > core.acc_words:
            heads = max(1, min(heads, core.acc_words // (cfg.tokens * gph)))
        if cfg.tokens * gph * heads > core.acc_words:
            rows = core.acc_words // (w * gph)
            if rows < 1:
                raise CompileError(f"{op.name}: the membranes of one token row of one head "
                                   f"({w * gph} words) exceed the core's acc_words "
                                   f"({core.acc_words})")
    return Tiling(groups=heads, tiles=-(-cfg.heads // heads), band_rows=rows,
                  bands=-(-h // rows), passes=1)


def plan(op, core):
    """Check `op` against `core` and choose its tiling; raises `CompileError`."""
    _check_common(op, core)
    if op.opcode == "sdsa":
        return _sdsa_tiling(op, core)
    if op.opcode == "lif":
        return _engine_tiling(op, core, 0, 1, op.out.height, op.out.width, op.out.channels)
    _check_engine(op, core)
    sae = op.sae
    if op.opcode == "head":
        _limit(op, "tokens", op.inp.height * op.inp.width, core.max_tokens, "max_tokens")
        _limit(op, "token sum width", op.sum_bits, _wide_bits(core),
               "v_bits (sums are kept in the membrane memory)" if core.max_timesteps > 1
               else "acc_bits")
    k = sae.kernel
    words = k * k if sae.mode == "depthwise" else sae.in_channels * k * k
    return _engine_tiling(op, core, words, k, sae.out_height, sae.out_width, sae.out_channels)


# -- packing -------------------------------------------------------------------------------------


def _int32(values, what, op):
    values = np.asarray(values, np.int64)
    if values.size and (values.min() < -(1 << 31) or values.max() >= 1 << 31):
        raise CompileError(f"{op.name}: {what} {values.min()} .. {values.max()} do not fit the "
                           f"image's 32-bit parameters")
    return values


def _pad_channels(values, channels):
    out = np.zeros(channels, np.int64)
    out[:len(values)] = values
    return out


def pack_weights(op, core):
    """The weights of an engine operation, tile by tile (`Tiling`), each tile's passes in order;
    returns (bytes, bytes per full tile)."""
    sae, tiling, lanes = op.sae, op.tiling, core.lanes
    groups = -(-sae.out_channels // lanes)
    k = sae.kernel
    kind = "<i1" if core.weight_bytes == 1 else "<i2"
    w = np.asarray(op.weight, np.int64)
    if sae.mode == "depthwise":
        # (C, 1, k, k) -> per tile: (kh, kw, group, lane)
        padded = np.zeros((groups * lanes, k, k), np.int64)
        padded[:sae.out_channels] = w[:, 0]
        words = padded.reshape(groups, lanes, k, k)                         # g, lane, kh, kw
        chunks = [words[t * tiling.groups:(t + 1) * tiling.groups].transpose(2, 3, 0, 1)
                  .astype(kind).tobytes() for t in range(tiling.tiles)]
    else:
        padded = np.zeros((groups * lanes, sae.in_channels, k, k), np.int64)
        padded[:sae.out_channels] = w
        words = padded.reshape(groups, lanes, sae.in_channels, k, k)       # g, lane, c, kh, kw
        # per tile (kh, kw, c, g, lane): a pass (a kernel row, or one tap) is a run of taps,
        # so every pass is one contiguous part of its tile
        chunks = [words[t * tiling.groups:(t + 1) * tiling.groups].transpose(3, 4, 2, 0, 1)
                  .astype(kind).tobytes() for t in range(tiling.tiles)]
    full = len(chunks[0])
    return b"".join(chunks), full


def pack_params(op, core):
    """Per-channel parameters: per output group, for each kind of `PARAMS[opcode]`, `lanes`
    int32 values (the head: its LIF's groups, then its linear layer's bias groups); returns
    (bytes, bytes per full tile)."""
    lanes = core.lanes
    if op.opcode == "head":
        c = op.inp.channels
        lif = np.stack([_pad_channels(_int32(op.params[k], k, op), -(-c // lanes) * lanes)
                        for k in ("v_th", "lif_bias")]).reshape(2, -1, lanes)
        classes = op.out.channels
        bias = _pad_channels(_int32(op.params["acc_bias"], "acc_bias", op),
                             -(-classes // lanes) * lanes).reshape(-1, lanes)
        data = lif.transpose(1, 0, 2).astype("<i4").tobytes() + bias.astype("<i4").tobytes()
        return data, len(data)
    if op.opcode == "sdsa":
        # per head, its channels in whole groups (zero past the head dimension), so a tile of
        # heads is one contiguous read and a head's neurons line up with the lanes
        dim, heads = op.sdsa.head_dim, op.sdsa.heads
        gph = -(-dim // lanes)
        v_th = _int32(op.params["v_th"], "v_th", op).reshape(heads, dim)
        rows = np.zeros((heads, gph * lanes), np.int64)
        rows[:, :dim] = v_th
        return rows.astype("<i4").tobytes(), op.tiling.groups * gph * lanes * 4
    kinds = PARAMS[op.opcode]
    channels = op.out.channels
    groups = -(-channels // lanes)
    rows = np.stack([_pad_channels(_int32(op.params[k], k, op), groups * lanes)
                     for k in kinds]).reshape(len(kinds), groups, lanes)
    data = rows.transpose(1, 0, 2).astype("<i4").tobytes()
    return data, op.tiling.groups * len(kinds) * lanes * 4


def geometry_tables(sae):
    """(row table, column table) of an engine: per input row (column) one u32: taps touched
    (bits 0-3), the first output index (bits 4-19), its kernel index (bits 20-23)."""
    def table(entries):
        return np.array([n | (o << 4) | (k << 20) for n, o, k in entries], np.uint32)

    rows = sae.depthwise_axis_table(sae.height, sae.out_height)
    cols = sae.depthwise_axis_table(sae.width, sae.out_width)
    return table(rows), table(cols)


# -- the image -----------------------------------------------------------------------------------


@dataclass
class Image:
    """A compiled program: `data` (the read-only image from `base`), the operations, the
    regions (name -> {"addr", "bytes", ...}) and the activation area `[activation_addr,
    activation_addr + activation_bytes)` that the core writes."""

    core: CoreConfig
    base: int
    data: bytes
    ops: list
    regions: dict
    descriptors: list
    activation_addr: int
    activation_bytes: int

    def layout(self):
        """The JSON-able layout written beside the image."""
        return {
            "format": "spikeformer-overlay", "version": 1, "base": self.base,
            "core": self.core.to_dict(), "fingerprint": core_fingerprint(self.core),
            "image_bytes": len(self.data), "activation_addr": self.activation_addr,
            "activation_bytes": self.activation_bytes,
            "regions": self.regions,
            "ops": [{"name": op.name, "opcode": op.opcode, "descriptor": d,
                     "input": op.inp.name, "output": op.out.name,
                     "residual": op.res.name if op.res else None,
                     "tiling": vars(op.tiling)} for op, d in zip(self.ops, self.descriptors,
                                                                  strict=True)],
        }


def _tensor_region(t, core, addr):
    return {"addr": addr, "bytes": t.size(core), "kind": t.kind, "bits": t.bits,
            "signed": t.signed, "shape": [t.planes, t.channels, t.height, t.width],
            "plane_bytes": t.plane_bytes(core), "record_bytes": t.record_bytes(core),
            "trace": list(t.trace)}


def _in_kind(t):
    if t.kind == "spikes":
        return IN_SPIKES
    return IN_SIGNED if t.signed else IN_UNSIGNED


def _descriptor(op, n, core, regions, extras):
    """The descriptor fields of `op` (the `spec.program.FIELDS` by name)."""
    inp, out = op.inp, op.out
    d = {"opcode": OPCODES[op.opcode], "layer": n, "timesteps": op.timesteps,
         "in_channels": inp.channels, "out_channels": out.channels,
         "in_height": inp.height, "in_width": inp.width,
         "out_height": out.height, "out_width": out.width,
         "in_kind": _in_kind(inp), "in_bits": inp.bits,
         "in_bytes": value_bytes(inp.bits) if inp.kind == "values" else 0,
         "in_addr": regions[inp.name]["addr"],
         "in_t_stride": 0 if inp.planes == 1 and op.timesteps > 1 else inp.plane_bytes(core),
         "in_pixel_bytes": inp.record_bytes(core),
         "out_addr": regions[out.name]["addr"], "out_t_stride": out.plane_bytes(core),
         "out_pixel_bytes": out.record_bytes(core),
         "out_bytes": value_bytes(out.bits) if out.kind == "values" else 0,
         "out_bits": op.out_bits or out.bits,
         "tile_groups": op.tiling.groups, "tiles": op.tiling.tiles,
         "band_rows": op.tiling.band_rows, "bands": op.tiling.bands,
         "weight_passes": op.tiling.passes, "weight_buffers": op.tiling.buffers,
         "sum_bits": op.sum_bits}
    if op.sae is not None:
        sae = op.sae
        d.update(mode=MODES[sae.mode], kernel=sae.kernel, stride=sae.stride,
                 padding=sae.padding, acc_bits=sae.acc_bits, has_bias=int(sae.bias))
    if op.lif is not None:
        d.update(lif_in_bits=op.lif.in_bits, v_bits=op.lif.v_bits, frac_bits=op.lif.frac_bits)
    if op.res is not None:
        d.update(res_addr=regions[op.res.name]["addr"], res_t_stride=op.res.plane_bytes(core),
                 res_pixel_bytes=op.res.record_bytes(core))
    if op.sdsa is not None:
        d.update(heads=op.sdsa.heads, head_dim=op.sdsa.head_dim, sdsa_variant=op.sdsa.variant,
                 count_bits=op.sdsa.min_count_bits if op.sdsa.count_bits is None
                 else op.sdsa.count_bits, tokens=op.sdsa.tokens,
                 k_addr=regions[op.k.name]["addr"], v_addr=regions[op.v.name]["addr"])
    if op.opcode == "head":
        d["tokens"] = inp.height * inp.width
    d.update(extras)
    return d


def compile_network(net, core, *, base=0):
    """Compile integer network `net` for `core`: an `Image`; raises `CompileError` naming the
    layer and the limit when the core cannot run it."""
    if base % ALIGN or not 0 <= base < 1 << core.axi_addr_bits:
        raise CompileError(f"base address {base:#x} must be a multiple of {ALIGN} within the "
                           f"core's {core.axi_addr_bits}-bit address space")
    ops = lower(net, core)
    for op in ops:
        op.tiling = plan(op, core)
    header_at = base
    desc_at = base + align(HEADER_WORDS * 4)
    cursor = desc_at + align(len(ops) * DESCRIPTOR_WORDS * 4)
    chunks, regions, extras = [], {}, []

    def put(name, data, **info):
        nonlocal cursor
        regions[name] = {"addr": cursor, "bytes": len(data), **info}
        chunks.append((cursor, data))
        cursor += align(len(data))
        return regions[name]["addr"]

    for op in ops:
        extra = {}
        if op.weight is not None:
            data, tile = pack_weights(op, core)
            extra["weights_addr"] = put(f"{op.name}:weights", data, kind="weights")
            extra["weights_tile_bytes"] = tile
        if op.params:
            data, tile = pack_params(op, core)
            extra["params_addr"] = put(f"{op.name}:params", data, kind="params")
            extra["params_tile_bytes"] = tile
        if op.sae is not None:
            rows, cols = geometry_tables(op.sae)
            extra["row_table_addr"] = put(f"{op.name}:row_table", rows.tobytes(), kind="table")
            extra["col_table_addr"] = put(f"{op.name}:col_table", cols.tobytes(), kind="table")
            extra["table_entries"] = op.sae.height | (op.sae.width << 16)
        extras.append(extra)
    first = ops[0].inp
    regions[first.name] = _tensor_region(first, core, cursor)
    cursor += first.size(core)
    image_end = cursor
    activation_addr = cursor
    for op in ops:
        regions[op.out.name] = _tensor_region(op.out, core, cursor)
        cursor += op.out.size(core)
    if cursor > 1 << core.axi_addr_bits:
        raise CompileError(f"the program needs {cursor - base:,} bytes from {base:#x}, beyond "
                           f"the core's {core.axi_addr_bits}-bit address space")
    descriptors = [_descriptor(op, n, core, regions, extra)
                   for n, (op, extra) in enumerate(zip(ops, extras, strict=True))]
    image = bytearray(image_end - base)
    head = ops[-1]
    image[0:HEADER_WORDS * 4] = pack_header({
        "core": core_fingerprint(core), "layers": len(ops), "base": base,
        "descriptors": desc_at, "image_bytes": image_end - base,
        "activation_addr": activation_addr, "activation_bytes": cursor - activation_addr,
        "input_addr": regions[first.name]["addr"], "output_addr": regions[head.out.name]["addr"],
        "timesteps": net.timesteps, "classes": head.out.channels})
    for n, d in enumerate(descriptors):
        at = desc_at - base + n * DESCRIPTOR_WORDS * 4
        image[at:at + DESCRIPTOR_WORDS * 4] = pack_descriptor(d)
    for addr, data in chunks:
        image[addr - base:addr - base + len(data)] = data
    regions["header"] = {"addr": header_at, "bytes": HEADER_WORDS * 4, "kind": "header"}
    regions["descriptors"] = {"addr": desc_at, "bytes": len(ops) * DESCRIPTOR_WORDS * 4,
                              "kind": "descriptors"}
    return Image(core, base, bytes(image), ops, regions, descriptors, activation_addr,
                 cursor - activation_addr)


# -- cycle model ---------------------------------------------------------------------------------

#: Cycles to fetch and decode one descriptor (a burst of DESCRIPTOR_WORDS words plus the memory
#: latency the model assumes) and to start an operation's streams.
OP_OVERHEAD = 32
#: Memory read latency the model assumes for a stream that cannot be prefetched (a tile's
#: weights before its first event).
READ_LATENCY = 16


def _input_rows_read(op):
    """Input rows an engine operation streams per tile, timestep and pass: every band's rows
    with its halo, clipped at the map's border."""
    sae, tl = op.sae, op.tiling
    total = 0
    for band in range(tl.bands):
        r0 = band * tl.band_rows
        r1 = min(sae.out_height, r0 + tl.band_rows)
        lo = r0 * sae.stride - sae.padding
        hi = (r1 - 1) * sae.stride - sae.padding + sae.kernel
        total += max(0, min(hi, sae.height) - max(lo, 0))
    return total


def _bytes_moved(op, core):
    """(bytes read, bytes written) of one image (all timesteps) under `op.tiling`."""
    t, tl = op.timesteps, op.tiling
    inp, out = op.inp, op.out
    plane = inp.height * inp.width * inp.record_bytes(core)
    if op.opcode == "sdsa":
        # q once, k and v once per band of token rows (each tile reads its heads' slice)
        read = t * plane * (1 + 2 * tl.bands)
        written = t * out.height * out.width * out.record_bytes(core)
        return read + len(pack_params(op, core)[0]), written
    rows = _input_rows_read(op) if op.sae is not None and op.opcode != "head" else inp.height
    if op.opcode == "lif":
        # each tile reads its own groups' slice of every record: the records once in all
        return t * plane + len(pack_params(op, core)[0]), t * out.height * out.width * \
            out.record_bytes(core)
    if op.sae is not None and op.sae.mode == "depthwise":
        # each tile reads its own groups' slice of every record, a whole beat at least
        groups_total = -(-op.sae.out_channels // core.lanes)
        per_pixel = sum(max(core.axi_bytes, min(tl.groups, groups_total - n * tl.groups)
                            * core.lanes // 8) for n in range(tl.tiles))
        read = t * rows * inp.width * per_pixel
    else:
        read = t * plane * rows / inp.height * tl.tiles * tl.passes
    if op.weight is not None:
        weights = len(pack_weights(op, core)[0])
        read += weights if tl.passes == 1 else weights * tl.bands * t
    if op.params:
        read += len(pack_params(op, core)[0])
    if op.res is not None:
        read += t * op.res.height * op.res.width * op.res.record_bytes(core)
    written = t * out.height * out.width * out.record_bytes(core)
    return int(read), int(written)


def op_cycles(op, core, x, k=None, v=None):
    """The cycle model of `op` for one image: `x` is its input (timesteps, C, H, W) (the
    input image: (1, C, H, W)), `k`, `v` the attention's other inputs.

    Returns {"ideal": the event-driven ideal at the core's lanes plus the drain, "read",
    "written": bytes, "memory": the larger of bytes read and bytes written / AXI bytes per
    beat (the read and write channels work at once), "bound": max(ideal, memory),
    "model": the predicted cycles}. The model streams every frame's input through the
    engine while the next beats arrive (compute and memory overlap frame by frame), loads a
    tile's weights and parameters before its first frame (not overlapped), and adds
    `OP_OVERHEAD` per operation.
    """
    x = np.asarray(x)
    if x.shape[0] == 1 and op.timesteps > 1:
        x = np.repeat(x, op.timesteps, axis=0)
    read, written = _bytes_moved(op, core)
    # the bound: AXI4 reads and writes are independent channels, each one beat a cycle at most
    memory = max(-(-read // core.axi_bytes), -(-written // core.axi_bytes))
    # the model: an engine operation writes a tile's outputs in its drain, while the tile
    # reads nothing, so its reads and writes take turns
    traffic = -(-(read + written) // core.axi_bytes)
    lanes = core.lanes
    if op.opcode == "lif":
        words = op.out.height * op.out.width * -(-op.out.channels // lanes)
        ideal = op.timesteps * words
        model = OP_OVERHEAD + max(ideal, traffic)
    elif op.opcode == "sdsa":
        # SDSAConfig.ideal_cycles at the core's lanes, each head padded to whole groups:
        # per timestep, building K^T V costs nnz(K) x groups per head and Y = Q KV
        # nnz(Q) x groups per head, neither shorter than streaming the timestep's beats
        cfg = op.sdsa
        gph = -(-cfg.head_dim // lanes)
        beats = cfg.tokens * cfg.heads * gph
        nk = np.asarray(k).reshape(op.timesteps, -1).sum(axis=1) * gph
        nq = np.asarray(x).reshape(op.timesteps, -1).sum(axis=1) * gph
        kv_phase = int(np.maximum(nk, beats).sum())
        ideal = kv_phase + int(np.maximum(nq, beats).sum())
        # each further band of token rows builds K^T V again
        rebuild = (op.tiling.bands - 1) * kv_phase
        model = OP_OVERHEAD + op.tiling.tiles * READ_LATENCY + max(ideal + rebuild, traffic)
    elif op.opcode == "head":
        sae = op.sae
        c_groups = -(-op.inp.channels // lanes)
        tokens = op.inp.height * op.inp.width
        spikes = np.ones((op.timesteps, sae.in_channels, 1, 1), np.uint8)  # bound: all fire
        ideal = op.timesteps * (tokens * c_groups + c_groups) + sae.ideal_cycles(spikes)
        model = OP_OVERHEAD + READ_LATENCY + max(ideal, traffic)
    else:
        ideal, compute, weight_load = _engine_cycles(op, core, x)
        model = OP_OVERHEAD + weight_load + max(compute, traffic - weight_load)
    return {"ideal": int(ideal), "read": read, "written": written, "memory": int(memory),
            "bound": int(max(ideal, memory)), "model": int(model)}


def _engine_cycles(op, core, x):
    """(ideal, compute, exposed weight load) cycles of an engine operation on input `x`
    (T, C, H, W).

    compute: per tile, band, timestep and weight pass, the encoder scans the band's input
    beats, one per cycle; a beat with events costs its events' update cycles instead (an event,
    one per spike or per set bit of a multi-bit value, updates the tile's `groups` words per
    output pixel it touches; a depthwise event, a group's lane mask at a pixel, one word per
    output pixel it touches; when a weight pass is one tap, the other taps cost a cycle each),
    spread evenly over the passes; each frame-pass ends with the update pipeline's flush, each
    frame with the drain of the band's accumulators (one word per cycle plus its latency).
    Bands re-scan their halo rows (one cycle per beat).

    Weights: a tile's (or pass's) weights must be in the buffer before its first event; with
    two buffers the next one loads while the engine works, so only the part of a load that
    takes longer than the work it hides behind is exposed.
    """
    sae, tl, lanes = op.sae, op.tiling, core.lanes
    ideal = sae.ideal_cycles(x)
    planes = sae.magnitude_planes(x)                  # (T, bits, C, H, W)
    frames = planes.shape[0]
    beats = -(-sae.in_channels // sae.in_lanes)
    pad = beats * sae.in_lanes - sae.in_channels
    p = np.pad(planes, ((0, 0), (0, 0), (0, pad), (0, 0), (0, 0)))
    per_lane = p.reshape(frames, p.shape[1], beats, sae.in_lanes, sae.height, sae.width)
    if sae.mode == "depthwise":                       # groups with a spike (a beat is a group)
        events = (per_lane != 0).any(axis=3).sum(axis=1)
    else:
        events = per_lane.sum(axis=(1, 3))           # (T, beats, H, W)
    rows = np.array([e[0] for e in sae.depthwise_axis_table(sae.height, sae.out_height)])
    cols = np.array([e[0] for e in sae.depthwise_axis_table(sae.width, sae.out_width)])
    touched = np.outer(rows, cols)
    # the taps of other weight parts: with parts by kernel row an event's pass goes straight
    # to its row; with parts of one tap, every other tap takes a cycle
    if tl.passes > 1 and tl.passes != sae.kernel:
        idle = touched * (tl.passes - 1)
    else:
        idle = np.zeros_like(touched)
    extra_rows = _input_rows_read(op) - sae.height          # halo rows scanned again
    groups_total = -(-sae.out_channels // lanes)
    weight_tile = -(-pack_weights(op, core)[1] // core.axi_bytes) if op.weight is not None \
        else 0
    loads_per_tile = 1 if tl.passes == 1 else tl.bands * frames * tl.passes
    load = weight_tile // loads_per_tile
    compute, exposed = 0, 0
    for tile in range(tl.tiles):
        g = min(tl.groups, groups_total - tile * tl.groups)
        if sae.mode == "depthwise":
            # a tile scans only its own groups' beats; an event updates one pixel a cycle
            tile_events = events[:, tile * tl.groups:tile * tl.groups + g]
            updates = tile_events * touched[None, None]
            scanned = g
        else:
            updates = events * (touched * g + idle)[None, None] / tl.passes
            scanned = beats
        work = int(np.ceil(np.maximum(updates, 1)).sum()) * tl.passes
        work += extra_rows * sae.width * scanned * frames * tl.passes
        work += frames * tl.bands * tl.passes * (SAEConfig.UPDATE_DISTANCE + 1)
        work += frames * (sae.out_height * sae.out_width * g
                          + tl.bands * SAEConfig.DRAIN_LATENCY)
        compute += work
        per_load = work / loads_per_tile
        if tl.buffers == 2:
            first = READ_LATENCY + load if tile == 0 else 0
            exposed += first + loads_per_tile * max(0, load - per_load)
        else:
            exposed += loads_per_tile * (READ_LATENCY + load)
    return ideal, compute, int(exposed)


# -- command line --------------------------------------------------------------------------------


def _trace_input(bundle, tensor, sample):
    """One sample's traced activations of `tensor` as (timesteps, C, H, W), or None."""
    if not tensor.trace:
        return None
    name, kind = tensor.trace
    key = f"trace/{name}:{kind}"
    if key not in bundle.arrays:
        return None
    a = np.asarray(bundle.arrays[key][sample])
    if a.ndim == 3:                                 # (T, N, C) token-major (the attention)
        a = np.moveaxis(a, -1, 1).reshape(a.shape[0], a.shape[2], tensor.height, tensor.width)
    return a


def cycle_report(image, bundle, sample=None):
    """Per operation, the cycle model's figures averaged over the bundle's traced images, or
    of image `sample` alone (None when the bundle holds no traces)."""
    names = [k for k in bundle.arrays if k.startswith("trace/")]
    if not names:
        return None
    chosen = range(bundle.arrays[names[0]].shape[0]) if sample is None else [sample]
    samples = len(chosen)
    rows = []
    for op in image.ops:
        figures = []
        for s in chosen:
            x = _trace_input(bundle, op.inp, s)
            k = _trace_input(bundle, op.k, s) if op.k is not None else None
            v = _trace_input(bundle, op.v, s) if op.v is not None else None
            if x is None:
                return None
            figures.append(op_cycles(op, image.core, x, k, v))
        rows.append({"name": op.name, "opcode": op.opcode,
                     **{key: round(sum(f[key] for f in figures) / samples)
                        for key in figures[0]}})
    return {"samples": samples, "ops": rows,
            "total": {key: sum(r[key] for r in rows) for key in rows[0]
                      if key not in ("name", "opcode")}}


def _core_from_args(args):
    return core_from_args(args.core, args.set)


def adapted_defaults(changes):
    """The defaults that must follow `changes` (fields set over the default core) for the
    core to build, as (field, value, reason): `lanes` at least the bytes of an AXI beat, and
    `max_head_dim` at most its bits (the core takes a head's bits from two beats). A field
    that `changes` names is never adapted."""
    axi_bits = changes.get("axi_data_bits", CoreConfig.axi_data_bits)
    if not isinstance(axi_bits, int) or axi_bits < 32 or axi_bits & (axi_bits - 1):
        return []                                # the configuration's checks say why
    out = []
    if "lanes" not in changes and CoreConfig.lanes < axi_bits // 8:
        out.append(("lanes", axi_bits // 8, f"the default {CoreConfig.lanes} is below the "
                    f"{axi_bits // 8} bytes of a {axi_bits}-bit AXI beat"))
    if "max_head_dim" not in changes and CoreConfig.max_head_dim > axi_bits:
        out.append(("max_head_dim", axi_bits, f"the default {CoreConfig.max_head_dim} is above "
                    f"the {axi_bits} bits of an AXI beat"))
    return out


def core_from_args(path, sets, prog=PROG):
    """The `CoreConfig` of a YAML file `path` (None: the defaults) with `sets` (["KEY=VALUE",
    ...]) over it; bad input fails with one message. Over the defaults, a field the sets
    leave out that cannot work with them adapts (`adapted_defaults`), said on stderr."""
    core = CoreConfig.load(path) if path else CoreConfig()
    changes = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set takes KEY=VALUE, not {item!r}")
        try:
            changes[key] = int(value, 0)
        except ValueError:
            fail(f"--set {key}: {value!r} is not an integer")
    if not path:
        for key, value, reason in adapted_defaults(changes):
            print(f"{prog}: {key} {value} ({reason}; --set {key}=N sets it)", file=sys.stderr)
            changes[key] = value
    return core.replace(**changes) if changes else core


def write_program(out, image, report):
    """Write `image.bin` and `layout.json` (with the cycle report) as the folder `out`,
    atomically (an earlier program folder is replaced whole)."""
    layout = image.layout()
    layout["cycles"] = report
    atomic_write_folder(Path(out), {
        "image.bin": image.data,
        "layout.json": (json.dumps(layout, indent=1, sort_keys=True) + "\n").encode()})


def _check_out(out):
    if out.exists() and not out.is_dir():
        fail(f"--out {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "layout.json").is_file():
        fail(f"--out {str(out)!r} is a folder that does not hold a program; refusing to "
             f"replace it")
    if not out.parent.is_dir():
        fail(f"output folder {str(out.parent)!r} does not exist")


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="a network bundle (python -m sw.export)")
    p.add_argument("--core", help="a core configuration file (unit: core); default: the "
                   "default core")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change one core parameter (repeatable), e.g. --set lanes=8")
    p.add_argument("--out", required=True, help="folder for image.bin and layout.json (made "
                   "if missing; its parent must exist)")
    p.add_argument("--base", default="0", help="address the image is placed at (default 0)")
    args = p.parse_args(argv)
    out = Path(args.out)
    _check_out(out)
    try:
        base = int(args.base, 0)
    except ValueError:
        fail(f"--base must be an integer address, not {args.base!r}")
    core = _core_from_args(args)
    kind, net, bundle = read_network_bundle(args.bundle)
    if kind != "network":
        fail(f"bundle {args.bundle!r} holds a block, not a network")
    image = compile_network(net, core, base=base)
    report = cycle_report(image, bundle)
    write_program(out, image, report)
    total = report["total"] if report else None
    line = (f"{PROG}: {len(image.ops)} operations, image {len(image.data):,} bytes, "
            f"activations {image.activation_bytes:,} bytes")
    if total:
        line += (f"; cycle model {total['model']:,} per image (bound {total['bound']:,}, "
                 f"{total['read'] + total['written']:,} bytes moved)")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
