"""The overlay core's program and memory image, format version 1 (docs/overlay-format.md).

An image is one little-endian byte string that the host places in the core's external memory at
`base`. It starts with a header, then one fixed-size descriptor per layer operation, then the
read-only data (weights, per-channel parameters, geometry tables, the input image) and finally
the activation area that the core writes (every layer's output, each in its own region, so a
testbench can compare them all after an image). All addresses in the image are absolute byte
addresses (`base` included), every region starts on a multiple of `ALIGN` bytes.

This module is the single description of the format: the compiler (`gen.program`) writes it,
the reference executor (`sim.overlay`) and, later, the core's sequencer read it. A JSON layout
beside the image names every region (`layout.json`, written by the compiler).

Data layouts (the pixel order is raster order, timesteps outermost):

- spikes: per timestep, per pixel, the channels as bits LSB first, padded with zero bits to a
  multiple of `spike_unit(core)` channels (`spike_record_bytes`);
- values (pixels, residual streams, depthwise sums): per timestep, per pixel, the channels as
  signed (or unsigned) integers of 1, 2 or 4 bytes (`value_bytes`), padded to a multiple of
  the core's `lanes` channels;
- weights of a linear/conv layer: per tile, per (kh, kw, c_in, group of the tile), one word of
  `lanes` weights (channel `g * lanes + l` in lane `l`), each weight sign-extended to
  `weight_bytes`; depthwise: per tile, per (kh, kw, group), one word of `lanes` weights (so a
  weight pass, a run of taps, is one contiguous part of its tile);
- per-channel parameters: per output group, for each parameter kind of the operation
  (`PARAMS`), `lanes` little-endian int32 values; the attention's thresholds per head, in
  whole groups of its channels (zero past the head dimension).
"""

import hashlib
import struct

import numpy as np

from .csr import ERRORS
from .errors import ConfigError

__all__ = ["MAGIC", "VERSION", "ALIGN", "HEADER_WORDS", "DESCRIPTOR_WORDS", "OPCODES",
           "OPCODE_NAMES", "FIELDS", "HEADER_FIELDS", "PARAMS", "IN_SPIKES", "IN_UNSIGNED",
           "IN_SIGNED", "MODES", "align", "core_fingerprint", "pack_header", "unpack_header",
           "pack_descriptor", "unpack_descriptor", "checksum", "spike_unit",
           "spike_record_bytes", "value_bytes", "value_record_bytes", "pack_spikes",
           "unpack_spikes", "pack_values", "unpack_values", "ImageError", "ProgramError",
           "SHAPE_LIMITS", "check_header", "check_descriptor"]

MAGIC = 0x564F4653            # "SFOV" little-endian: spikeformer overlay
VERSION = 1
#: Every region starts on a multiple of this many bytes (the widest AXI beat is 32 bytes).
ALIGN = 64
HEADER_WORDS = 16
DESCRIPTOR_WORDS = 64

#: Operations: each is one fused chain of the integer network.
OPCODES = {
    "conv_lif": 1,      # spikes or values -> linear/conv engine -> LIF -> spikes
    "conv_stream": 2,   # spikes or values -> linear/conv engine -> shortcut (+ residual) -> values
    "depthwise": 3,     # spikes -> depthwise engine -> sums (signed values)
    "lif": 4,           # values (a residual stream) -> LIF -> spikes
    "sdsa": 5,          # q, k, v spikes -> K^T V per head, Q KV -> attention LIF -> spikes
    "head": 6,          # values -> token sum -> LIF -> linear (bias) -> class scores per timestep
}
OPCODE_NAMES = {code: name for name, code in OPCODES.items()}

#: Input kinds of an operation.
IN_SPIKES, IN_UNSIGNED, IN_SIGNED = 0, 1, 2
#: Engine modes (field `mode`).
MODES = {"linear": 0, "conv": 1, "depthwise": 2}

#: Per-channel parameter kinds of each operation, in their order within a group's record.
PARAMS = {
    "conv_lif": ("acc_bias", "v_th", "lif_bias"),
    "conv_stream": ("acc_bias", "shift", "stream_bias"),
    "depthwise": ("acc_bias",),
    "lif": ("v_th", "lif_bias"),
    "sdsa": ("v_th",),
    "head": ("v_th", "lif_bias", "acc_bias"),
}

#: Header words (u32), in order.
HEADER_FIELDS = (
    "magic", "version", "core", "layers", "base", "descriptors", "image_bytes",
    "activation_addr", "activation_bytes", "input_addr", "output_addr", "timesteps",
    "classes", "reserved0", "reserved1", "checksum",
)

#: Descriptor words (u32), in order; the last is the checksum of the others.
FIELDS = (
    "opcode", "layer", "timesteps", "mode",
    "in_channels", "out_channels", "in_height", "in_width",
    "out_height", "out_width", "kernel", "stride",
    "padding", "in_kind", "in_bits", "in_bytes",
    "acc_bits", "out_bits", "lif_in_bits", "v_bits",
    "frac_bits", "has_bias", "tile_groups", "tiles",
    "band_rows", "bands", "weight_passes", "heads",
    "head_dim", "sdsa_variant", "count_bits", "reserved",
    "in_addr", "in_t_stride", "in_pixel_bytes", "out_addr",
    "out_t_stride", "out_pixel_bytes", "out_bytes", "res_addr",
    "res_t_stride", "res_pixel_bytes", "k_addr", "v_addr",
    "weights_addr", "weights_tile_bytes", "params_addr", "params_tile_bytes",
    "row_table_addr", "col_table_addr", "table_entries", "tokens",
    "sum_bits", "weight_buffers", "spare1", "spare2",
    "spare3", "spare4", "spare5", "spare6",
    "spare7", "spare8", "spare9", "checksum",
)
assert len(FIELDS) == DESCRIPTOR_WORDS and len(set(FIELDS)) == DESCRIPTOR_WORDS
assert len(HEADER_FIELDS) == HEADER_WORDS
_MASK = 0xFFFFFFFF


class ImageError(ConfigError):
    """A program image (or its layout) that cannot be used; one message naming the problem."""


def align(n):
    """`n` rounded up to a multiple of `ALIGN`."""
    return -(-n // ALIGN) * ALIGN


def core_fingerprint(core):
    """32 bits identifying a core configuration: a program runs only on the core it was
    compiled for (the header's `core` word)."""
    text = repr(sorted(core.to_dict().items())).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def checksum(words):
    """The checksum word of a header or descriptor: the 32-bit sum of the other words, then
    inverted (so an all-zero record fails it)."""
    return ~sum(words) & _MASK


def _pack(names, values, what):
    unknown = sorted(set(values) - set(names) - {"checksum"})
    if unknown:
        raise ValueError(f"unknown {what} field {unknown[0]!r}")
    words = []
    for name in names[:-1]:
        value = int(values.get(name, 0))
        if not 0 <= value <= _MASK:
            raise ValueError(f"{what} field {name} = {value} does not fit 32 bits")
        words.append(value)
    words.append(checksum(words))
    return struct.pack(f"<{len(words)}I", *words)


def _unpack(names, data, what):
    if len(data) != 4 * len(names):
        raise ImageError(f"a {what} needs {4 * len(names)} bytes, not {len(data)}")
    words = struct.unpack(f"<{len(names)}I", data)
    if checksum(words[:-1]) != words[-1]:
        raise ImageError(f"{what} checksum does not match")
    return dict(zip(names, words, strict=True))


def pack_header(values):
    return _pack(HEADER_FIELDS, {"magic": MAGIC, "version": VERSION, **values}, "header")


def unpack_header(data):
    return _unpack(HEADER_FIELDS, data, "header")


def pack_descriptor(values):
    return _pack(FIELDS, values, "descriptor")


def unpack_descriptor(data):
    return _unpack(FIELDS, data, "descriptor")


# -- data layouts ------------------------------------------------------------------------------


def spike_unit(core):
    """Channels of a spike record are padded to a multiple of this: whole bytes, whole words
    of the engine's `lanes` and the encoder's `in_lanes`, and whole AXI beats (so every record
    starts on a beat and the core never splits a beat between two pixels)."""
    return max(8, core.lanes, core.in_lanes, core.axi_data_bits)


def spike_record_bytes(channels, core):
    unit = spike_unit(core)
    return -(-channels // unit) * unit // 8


def value_bytes(bits):
    """Bytes of a value container for `bits`-bit integers: 1, 2 or 4."""
    if not 1 <= bits <= 32:
        raise ValueError(f"values of {bits} bits have no container (1 to 32 bits)")
    return 1 if bits <= 8 else 2 if bits <= 16 else 4


def value_record_bytes(channels, bits, core):
    return -(-channels // core.lanes) * core.lanes * value_bytes(bits)


def pack_spikes(spikes, core):
    """(T, C, H, W) spikes -> bytes: per timestep a plane of `align`-ed size."""
    spikes = np.asarray(spikes)
    t, c, h, w = spikes.shape
    record = spike_record_bytes(c, core)
    bits = np.zeros((t, h, w, record * 8), np.uint8)
    bits[..., :c] = np.moveaxis(spikes, 1, -1)
    planes = np.packbits(bits, axis=-1, bitorder="little").reshape(t, -1)
    plane = align(planes.shape[1])
    out = np.zeros((t, plane), np.uint8)
    out[:, :planes.shape[1]] = planes
    return out.tobytes()


def unpack_spikes(data, timesteps, channels, height, width, core, t_stride=None):
    """The inverse of `pack_spikes`: (T, C, H, W) uint8 spikes and the padding bits
    (T, H, W, padding channels), which a correct writer leaves zero."""
    record = spike_record_bytes(channels, core)
    plane = height * width * record
    stride = align(plane) if t_stride is None else t_stride
    buf = np.frombuffer(data, np.uint8)
    rows = np.stack([buf[t * stride:t * stride + plane] for t in range(timesteps)])
    bits = np.unpackbits(rows.reshape(timesteps, height, width, record), axis=-1,
                         bitorder="little")
    return np.moveaxis(bits[..., :channels], -1, 1).copy(), bits[..., channels:]


def pack_values(values, bits, core, *, signed=True):
    """(T, C, H, W) integers -> bytes in containers of `value_bytes(bits)`, channels padded
    to `lanes`; raises ValueError if a value does not fit `bits`."""
    values = np.asarray(values, np.int64)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"values {values.min()} .. {values.max()} do not fit {bits} "
                         f"{'signed' if signed else 'unsigned'} bits")
    t, c, h, w = values.shape
    size = value_bytes(bits)
    padded = -(-c // core.lanes) * core.lanes
    grid = np.zeros((t, h, w, padded), np.int64)
    grid[..., :c] = np.moveaxis(values, 1, -1)
    kind = {1: "<i1", 2: "<i2", 4: "<i4"}[size] if signed else {1: "<u1", 2: "<u2",
                                                                  4: "<u4"}[size]
    planes = grid.astype(kind).reshape(t, -1).view(np.uint8)
    plane = align(planes.shape[1])
    out = np.zeros((t, plane), np.uint8)
    out[:, :planes.shape[1]] = planes
    return out.tobytes()


def unpack_values(data, timesteps, channels, height, width, bits, core, *, signed=True,
                  t_stride=None):
    """The inverse of `pack_values`: (T, C, H, W) int64 values and the padding channels'
    values (T, H, W, padding), which a correct writer leaves zero."""
    size = value_bytes(bits)
    padded = -(-channels // core.lanes) * core.lanes
    plane = height * width * padded * size
    stride = align(plane) if t_stride is None else t_stride
    kind = {1: "<i1", 2: "<i2", 4: "<i4"}[size] if signed else {1: "<u1", 2: "<u2",
                                                                  4: "<u4"}[size]
    buf = np.frombuffer(data, np.uint8)
    rows = np.stack([buf[t * stride:t * stride + plane] for t in range(timesteps)])
    grid = rows.view(kind).astype(np.int64).reshape(timesteps, height, width, padded)
    return np.moveaxis(grid[..., :channels], -1, 1).copy(), grid[..., channels:]


# -- what the core checks before it runs an operation -------------------------------------------


class ProgramError(ImageError):
    """A program the core refuses: `code` is the `spec.csr.ERRORS` code the core reports in its
    ERROR register, `layer` the failing descriptor (0 for the header)."""

    def __init__(self, code, layer, message):
        super().__init__(message)
        self.code, self.layer = code, layer


#: (descriptor field, CoreConfig maximum) pairs the core compares before it runs a layer.
SHAPE_LIMITS = (
    ("timesteps", "max_timesteps"), ("in_channels", "max_channels"),
    ("out_channels", "max_channels"), ("in_height", "max_map"), ("in_width", "max_map"),
    ("out_height", "max_map"), ("out_width", "max_map"), ("kernel", "max_kernel"),
    ("stride", "max_stride"), ("heads", "max_heads"), ("head_dim", "max_head_dim"),
    ("tokens", "max_tokens"), ("v_bits", "v_bits"),
)


def _span(addr, t_stride, planes, plane_bytes):
    """[first, end) of a region of `planes` planes (`t_stride` apart, 0: one plane)."""
    planes = 1 if t_stride == 0 else planes
    return addr, addr + t_stride * (planes - 1) + plane_bytes


def check_header(header, core, at):
    """Raise `ProgramError` for a header the core would refuse: magic or version, another core's
    fingerprint, a program compiled for another address than `at` (where the header was
    read: every address in a program is absolute), descriptors outside the image."""
    if header["magic"] != MAGIC or header["version"] != VERSION:
        raise ProgramError(ERRORS["magic"], 0, f"not an overlay program of version {VERSION} "
                           f"(magic {header['magic']:#x}, version {header['version']})")
    if header["core"] != core_fingerprint(core):
        raise ProgramError(ERRORS["core"], 0, "the program was compiled for another core "
                           "configuration")
    if header["base"] != at:
        raise ProgramError(ERRORS["address"], 0, f"the program was compiled for address "
                           f"{header['base']:#x}, not {at:#x}")
    lo = header["descriptors"]
    hi = lo + header["layers"] * DESCRIPTOR_WORDS * 4
    if not (at <= lo and hi <= at + header["image_bytes"]):
        raise ProgramError(ERRORS["address"], 0, f"the descriptors [{lo:#x}, {hi:#x}) are "
                           f"outside the image")


#: Descriptor fields that are addresses, strides or record sizes: multiples of the AXI beat.
ALIGNED_FIELDS = ("in_addr", "in_t_stride", "in_pixel_bytes", "out_addr", "out_t_stride",
                  "out_pixel_bytes", "res_addr", "res_t_stride", "res_pixel_bytes",
                  "weights_addr", "weights_tile_bytes", "params_addr", "params_tile_bytes",
                  "row_table_addr", "col_table_addr", "k_addr", "v_addr")


def _check_structure(d, core, n):
    """What the core's loops and address arithmetic need besides the maxima: non-zero loop
    counts, a kernel, stride and weight passes the engine can step through, a power-of-two
    tile of output groups (its weight stride is a shift), beat-aligned addresses."""
    op = d["opcode"]
    engine = op in (OPCODES["conv_lif"], OPCODES["conv_stream"], OPCODES["depthwise"])
    multibit = d["in_kind"] != IN_SPIKES

    def shape(why):
        raise ProgramError(ERRORS["shape"], n, f"layer {n}: {why}")

    for name in ("timesteps", "tile_groups", "tiles", "band_rows", "bands", "out_pixel_bytes"):
        if d[name] == 0:
            shape(f"{name} is 0")
    if d["frac_bits"] > 31 or not 1 <= d["out_bits"] <= 32:
        shape(f"frac_bits {d['frac_bits']} or out_bits {d['out_bits']} out of range")
    if engine or op == OPCODES["head"]:
        k, passes, groups = d["kernel"], d["weight_passes"], d["tile_groups"]
        if k == 0 or not 1 <= d["stride"] <= 2 or passes not in (1, k, k * k):
            shape(f"kernel {k}, stride {d['stride']} or weight_passes {passes} unusable")
        if groups & (groups - 1):
            shape(f"tile_groups {groups} is not a power of two")
        if d["in_pixel_bytes"] == 0 or (multibit and d["in_bytes"] not in (1, 2, 4)):
            shape("no input record size or value container")
    if (engine and d["acc_bits"] == 0) or (d["v_bits"] == 0 and op in (
            OPCODES["conv_lif"], OPCODES["lif"], OPCODES["sdsa"], OPCODES["head"])) or (
            op == OPCODES["head"] and d["sum_bits"] == 0):
        shape("a zero width")
    if engine and multibit and (op == OPCODES["depthwise"] or (op == OPCODES["conv_lif"]
                                                               and d["timesteps"] > 1)):
        shape("multi-bit inputs to a depthwise engine, or to a LIF over several timesteps")
    if op == OPCODES["head"]:
        if d["kernel"] != 1 or -(-d["in_channels"] // core.lanes) > core.acc_words // 2:
            shape("the head's linear layer is not 1 x 1, or its token sums do not fit")
    if op == OPCODES["sdsa"] and 0 in (d["heads"], d["head_dim"], d["tokens"]):
        shape("no heads, head dimension or tokens")
    beat = core.axi_bytes
    for name in ALIGNED_FIELDS:
        if d[name] % beat:
            raise ProgramError(ERRORS["address"], n, f"layer {n}: {name} {d[name]:#x} is not a "
                               f"multiple of the AXI beat ({beat} bytes)")


def check_descriptor(d, header, core):
    """Raise `ProgramError` for a descriptor the core would refuse before running it: an unknown
    opcode, a size above the core's maxima, or a region outside the memory the header declares
    (reads within the image and the activation area, writes within the activation area)."""
    n = d["layer"]
    if d["opcode"] not in OPCODE_NAMES:
        raise ProgramError(ERRORS["opcode"], n, f"layer {n}: unknown opcode {d['opcode']}")
    for fname, limit in SHAPE_LIMITS:
        if d[fname] > getattr(core, limit):
            raise ProgramError(ERRORS["shape"], n, f"layer {n}: {fname} {d[fname]} exceeds "
                               f"the core's {limit} ({getattr(core, limit)})")
    wide = d["in_kind"] != IN_SPIKES and d["mode"] != MODES["depthwise"] and d["opcode"] in (
        OPCODES["conv_lif"], OPCODES["conv_stream"])
    limit = "v_bits" if wide and core.max_timesteps > 1 else "acc_bits"
    if d["acc_bits"] > getattr(core, limit):
        raise ProgramError(ERRORS["shape"], n, f"layer {n}: acc_bits {d['acc_bits']} exceeds "
                           f"the core's {limit} ({getattr(core, limit)})")
    _check_structure(d, core, n)
    groups = d["tile_groups"]
    if d["opcode"] == OPCODES["sdsa"]:              # tiles of heads: their channel groups
        groups *= -(-d["head_dim"] // core.lanes)
    if groups > core.tile_groups:
        raise ProgramError(ERRORS["shape"], n, f"layer {n}: a tile of {groups} channel groups "
                           f"exceeds the core's tile_groups ({core.tile_groups})")
    base, image_end = header["base"], header["base"] + header["image_bytes"]
    act, act_end = header["activation_addr"], header["activation_addr"] + header[
        "activation_bytes"]
    t = d["timesteps"]
    reads = [("input", _span(d["in_addr"], d["in_t_stride"], t,
                             d["in_height"] * d["in_width"] * d["in_pixel_bytes"]))]
    if d["res_addr"]:
        reads.append(("residual", _span(d["res_addr"], d["res_t_stride"], t,
                                        d["out_height"] * d["out_width"]
                                        * d["res_pixel_bytes"])))
    for name in ("k_addr", "v_addr"):
        if d[name]:
            reads.append((name[0], _span(d[name], d["in_t_stride"], t,
                                         d["in_height"] * d["in_width"]
                                         * d["in_pixel_bytes"])))
    if d["weights_addr"]:
        reads.append(("weights", (d["weights_addr"],
                                  d["weights_addr"] + d["tiles"] * d["weights_tile_bytes"])))
    if d["params_addr"]:
        tiles = 1 if d["opcode"] == OPCODES["head"] else d["tiles"]   # the head reads it whole
        reads.append(("parameters", (d["params_addr"],
                                     d["params_addr"] + tiles * d["params_tile_bytes"])))
    for name, (lo, hi) in reads:
        if not (base <= lo and hi <= act_end):
            raise ProgramError(ERRORS["address"], n, f"layer {n}: its {name} [{lo:#x}, "
                               f"{hi:#x}) is outside the program's memory [{base:#x}, "
                               f"{act_end:#x})")
    lo, hi = _span(d["out_addr"], d["out_t_stride"], t,
                   d["out_height"] * d["out_width"] * d["out_pixel_bytes"])
    if not (act <= lo and hi <= act_end and lo >= image_end):
        raise ProgramError(ERRORS["address"], n, f"layer {n}: its output [{lo:#x}, {hi:#x}) "
                           f"is outside the activation area [{act:#x}, {act_end:#x})")
