"""Reference executor of overlay programs, and the checker of their outputs.

`run_program` executes a compiled image (`gen.program`) the way the overlay core is specified
to: it reads the header and every descriptor from memory, and for each operation reads its
inputs, weights and parameters from the addresses the descriptor gives, computes tile by tile,
band by band and weight pass by weight pass in the order the core does (each accumulator adds
its weights in the order (kh, kw, c_in), saturating after every add), and writes the output
region. It knows nothing of the network the image came from: only the format
(`spec.program`). `check_outputs` then compares every operation's output region with the
integer model's traces and names the first divergence (layer, timestep, token, channel).

It is the transaction-level model of the core: what the RTL must produce, byte for byte.
"""

import numpy as np

from spec.csr import ERRORS
from spec.lif import LIFConfig
from spec.program import (
    DESCRIPTOR_WORDS,
    HEADER_WORDS,
    IN_SIGNED,
    IN_SPIKES,
    MAGIC,
    MODES,
    OPCODE_NAMES,
    PARAMS,
    VERSION,
    ImageError,
    ProgramError,
    check_descriptor,
    check_header,
    pack_spikes,
    pack_values,
    unpack_descriptor,
    unpack_header,
    unpack_spikes,
    unpack_values,
)
from sw.lif_int import lif_int, saturate
from sw.shortcut_int import shortcut_int

__all__ = ["Memory", "run_program", "check_outputs", "check_scores", "class_scores",
           "Divergence", "read_descriptors"]

_MODE_NAMES = {v: k for k, v in MODES.items()}


class Memory:
    """A flat byte-addressed memory from `base`."""

    def __init__(self, base, size):
        self.base = base
        self.data = bytearray(size)

    def read(self, addr, n):
        at = addr - self.base
        if at < 0 or at + n > len(self.data):
            raise ImageError(f"read of {n} bytes at {addr:#x} is outside memory "
                             f"[{self.base:#x}, {self.base + len(self.data):#x})")
        return bytes(self.data[at:at + n])

    def write(self, addr, data):
        at = addr - self.base
        if at < 0 or at + len(data) > len(self.data):
            raise ImageError(f"write of {len(data)} bytes at {addr:#x} is outside memory")
        self.data[at:at + len(data)] = data


def read_descriptors(mem, base, core=None):
    """(header, [descriptor fields]) read from memory and checked as the core checks them
    (magic, version, checksums, opcodes, and with `core` its fingerprint, the program's address,
    the shapes against its maxima and every address against the declared memory); raises
    `ProgramError` with the error code and layer the core would report."""
    data = mem.read(base, HEADER_WORDS * 4)
    try:
        header = unpack_header(data)
    except ImageError as exc:
        raise ProgramError(ERRORS["header_checksum"], 0, str(exc)) from None
    if core is not None:
        check_header(header, core, base)
    elif header["magic"] != MAGIC or header["version"] != VERSION:
        raise ProgramError(ERRORS["magic"], 0, f"not an overlay program of version {VERSION}")
    descs = []
    for n in range(header["layers"]):
        data = mem.read(header["descriptors"] + n * DESCRIPTOR_WORDS * 4, DESCRIPTOR_WORDS * 4)
        try:
            d = unpack_descriptor(data)
        except ImageError as exc:
            raise ProgramError(ERRORS["descriptor_checksum"], n, f"layer {n}: {exc}") from None
        if d["opcode"] not in OPCODE_NAMES:
            raise ProgramError(ERRORS["opcode"], n, f"layer {n}: unknown opcode {d['opcode']}")
        if core is not None:
            check_descriptor(d, header, core)
        descs.append(d)
    return header, descs


# -- tensors in memory ---------------------------------------------------------------------------


def _read_tensor(mem, core, timesteps, addr, t_stride, record_bytes, shape, kind, bits):
    """(T, C, H, W) int64 activations at `addr`: planes `t_stride` apart (0: one plane read at
    every timestep) of `record_bytes` per pixel, of `kind` (spikes or values of `bits`)."""
    channels, height, width = shape
    planes = 1 if t_stride == 0 else timesteps
    data = mem.read(addr, t_stride * (planes - 1) + record_bytes * height * width)
    if kind == IN_SPIKES:
        x, _ = unpack_spikes(data, planes, channels, height, width, core, t_stride=t_stride)
    else:
        x, _ = unpack_values(data, planes, channels, height, width, bits, core,
                             signed=kind == IN_SIGNED, t_stride=t_stride)
    x = x.astype(np.int64)
    return np.repeat(x, timesteps, axis=0) if planes == 1 and timesteps > 1 else x


def _read_input(mem, d, core, addr=None, kind=None):
    """The operation's input (or, with `addr`, its K or V) as (T, C, H, W)."""
    return _read_tensor(mem, core, d["timesteps"], d["in_addr"] if addr is None else addr,
                        d["in_t_stride"], d["in_pixel_bytes"],
                        (d["in_channels"], d["in_height"], d["in_width"]),
                        d["in_kind"] if kind is None else kind, d["in_bits"])


def _write_output(mem, d, core, out, spikes):
    if spikes:
        data = pack_spikes(out, core)
    else:
        bits = 32 if d["out_bytes"] == 4 else 16 if d["out_bytes"] == 2 else 8
        data = pack_values(out, bits, core, signed=True)
    plane = len(data) // out.shape[0]
    if plane != d["out_t_stride"]:
        raise ImageError(f"layer {d['layer']}: output planes of {plane} bytes, the "
                         f"descriptor says {d['out_t_stride']}")
    mem.write(d["out_addr"], data)


def _params(mem, d, core, groups, kinds):
    lanes = core.lanes
    data = mem.read(d["params_addr"], groups * len(kinds) * lanes * 4)
    rows = np.frombuffer(data, "<i4").astype(np.int64).reshape(groups, len(kinds), lanes)
    return {k: rows[:, i].reshape(-1) for i, k in enumerate(kinds)}


# -- engines -------------------------------------------------------------------------------------


def _weights(mem, d, core, tile, groups):
    """The weights of `tile` (`groups` output groups): (groups * lanes, C_in, k, k), undoing
    the packing (passes included)."""
    lanes, k = core.lanes, d["kernel"]
    kind = "<i1" if core.weight_bytes == 1 else "<i2"
    size = np.dtype(kind).itemsize
    addr = d["weights_addr"] + tile * d["weights_tile_bytes"]
    if d["mode"] == MODES["depthwise"]:
        data = mem.read(addr, k * k * groups * lanes * size)
        w = np.frombuffer(data, kind).astype(np.int64).reshape(k, k, groups, lanes)
        return w.transpose(2, 3, 0, 1).reshape(groups * lanes, 1, k, k)
    c = d["in_channels"]
    data = mem.read(addr, k * k * c * groups * lanes * size)
    w = np.frombuffer(data, kind).astype(np.int64).reshape(k, k, c, groups, lanes)
    return w.transpose(3, 4, 2, 0, 1).reshape(groups * lanes, c, k, k)


def _pass_taps(d):
    k, passes = d["kernel"], d["weight_passes"]
    taps = [(kh, kw) for kh in range(k) for kw in range(k)]
    if passes == 1:
        return [taps]
    if passes == k:
        return [[(kh, kw) for kw in range(k)] for kh in range(k)]
    return [[tap] for tap in taps]


def _band_input(x, d, r0, r1):
    """The input rows band [r0, r1) of the output needs, zero-padded as the map's border:
    (T, C, rows, W + 2p) and the row offset of output row r0 in it."""
    s, p, k = d["stride"], d["padding"], d["kernel"]
    lo, hi = r0 * s - p, (r1 - 1) * s - p + k
    t, c, h, w = x.shape
    out = np.zeros((t, c, hi - lo, w + 2 * p), np.int64)
    src_lo, src_hi = max(lo, 0), min(hi, h)
    if src_hi > src_lo:
        out[:, :, src_lo - lo:src_hi - lo, p:p + w] = x[:, :, src_lo:src_hi]
    return out


def _accumulate(d, x, w, r0, r1, bits, *, saturating):
    """Accumulators (T, channels, r1 - r0, out_width) of output rows [r0, r1): every weight
    pass, then per pass its taps (kh, kw) and input channels in order, saturating after each
    add to `bits` when `saturating` (else exact)."""
    s, ow = d["stride"], d["out_width"]
    xb = _band_input(x, d, r0, r1)
    rows = r1 - r0
    depthwise = d["mode"] == MODES["depthwise"]
    acc = np.zeros((x.shape[0], w.shape[0], rows, ow), np.int64)
    for taps in _pass_taps(d):
        for kh, kw in taps:
            window = xb[:, :, kh:kh + (rows - 1) * s + 1:s, kw:kw + (ow - 1) * s + 1:s]
            if depthwise:
                acc = acc + w[None, :, 0, kh, kw, None, None] * window[:, :w.shape[0]]
                if saturating:
                    acc = saturate(acc, bits)
                continue
            for c in range(w.shape[1]):
                acc = acc + w[None, :, c, kh, kw, None, None] * window[:, c:c + 1]
                if saturating:
                    acc = saturate(acc, bits)
    return acc


def _engine_op(mem, d, core):
    """conv_lif, conv_stream and depthwise: the output (T, C_out, H_out, W_out)."""
    name = OPCODE_NAMES[d["opcode"]]
    x = _read_input(mem, d, core)
    lanes, t = core.lanes, d["timesteps"]
    c_out, oh, ow = d["out_channels"], d["out_height"], d["out_width"]
    groups_total = -(-c_out // lanes)
    kinds = PARAMS[name]
    params = _params(mem, d, core, groups_total, kinds)
    out = np.zeros((t, groups_total * lanes, oh, ow), np.int64)
    multibit = d["in_kind"] != IN_SPIKES
    if d["mode"] == MODES["depthwise"]:
        full_channels = groups_total * lanes
        xin = np.zeros((t, full_channels) + x.shape[2:], np.int64)
        xin[:, :x.shape[1]] = x
        x = xin
    for tile in range(d["tiles"]):
        g0 = tile * d["tile_groups"]
        groups = min(d["tile_groups"], groups_total - g0)
        w = _weights(mem, d, core, tile, groups)
        ch = slice(g0 * lanes, (g0 + groups) * lanes)
        xt = x[:, ch] if d["mode"] == MODES["depthwise"] else x
        for band in range(d["bands"]):
            r0 = band * d["band_rows"]
            r1 = min(oh, r0 + d["band_rows"])
            acc = _accumulate(d, xt, w, r0, r1, d["acc_bits"], saturating=not multibit)
            bias = params["acc_bias"][ch][None, :, None, None]
            if d["has_bias"]:
                acc = acc + bias if multibit else saturate(acc + bias, d["acc_bits"])
            out[:, ch, r0:r1] = acc
    out = out[:, :c_out]
    if name == "conv_lif":
        return _lif(d, out, params), True
    if name == "conv_stream":
        residual = None
        if d["res_addr"]:
            residual = _read_tensor(mem, core, t, d["res_addr"], d["res_t_stride"],
                                    d["res_pixel_bytes"], (c_out, oh, ow), IN_SIGNED,
                                    d["out_bits"])
        shift, sbias = params["shift"][:c_out], params["stream_bias"][:c_out]
        return shortcut_int(out, shift, sbias, d["out_bits"], residual, channel_axis=1), False
    return out, False


def _lif_config(d, channels, neurons, v_th, bias):
    frac = d["frac_bits"]
    scale = float(1 << frac)
    return LIFConfig(neurons=neurons, lanes=1, channels=channels, v_bits=d["v_bits"],
                     in_bits=d["lif_in_bits"], frac_bits=frac, tau=2, decay_input=True,
                     reset="hard", v_reset=0.0, v_th=tuple(float(v) / scale for v in v_th),
                     bias=tuple(float(b) / scale for b in bias), timesteps=d["timesteps"])


def _lif(d, x, params):
    """LIF over (T, C, H, W) integer inputs with per-channel fixed-point parameters."""
    t, c, h, w = x.shape
    cfg = _lif_config(d, c, c * h * w, params["v_th"][:c], params.get("lif_bias",
                                                                      np.zeros(c))[:c])
    flat = np.moveaxis(x, 1, -1).reshape(1, t, -1)
    spikes, _ = lif_int(cfg, flat)
    return np.moveaxis(spikes.reshape(t, h, w, c), -1, 1)


def _lif_op(mem, d, core):
    x = _read_input(mem, d, core)
    groups = -(-d["out_channels"] // core.lanes)
    params = _params(mem, d, core, groups, PARAMS["lif"])
    return _lif(d, x, params), True


def _sdsa_op(mem, d, core):
    t, c, heads, dim = d["timesteps"], d["out_channels"], d["heads"], d["head_dim"]
    h, w = d["in_height"], d["in_width"]
    q, k, v = (_read_input(mem, d, core, addr=a, kind=IN_SPIKES)
               for a in (d["in_addr"], d["k_addr"], d["v_addr"]))
    gph = -(-dim // core.lanes)
    params = _params(mem, d, core, heads * gph, PARAMS["sdsa"])   # per head, whole groups
    v_th = params["v_th"].reshape(heads, gph * core.lanes)[:, :dim].reshape(-1)
    tokens = h * w
    out = np.zeros((t, c, h, w), np.int64)
    for tile in range(d["tiles"]):
        h0 = tile * d["tile_groups"]
        hs = min(d["tile_groups"], heads - h0)
        ch = slice(h0 * dim, (h0 + hs) * dim)
        qh, kh, vh = (np.moveaxis(a[:, ch], 1, -1).reshape(t, tokens, hs, dim)
                      for a in (q, k, v))
        for band in range(d["bands"]):
            r0 = band * d["band_rows"]
            r1 = min(h, r0 + d["band_rows"])
            kv = np.einsum("tnhi,tnhj->thij", kh, vh)         # from every token, each band
            band_q = qh[:, r0 * w:r1 * w]
            att = np.einsum("tnhi,thij->tnhj", band_q, kv).reshape(t, -1)
            n = (r1 - r0) * w
            cfg = _lif_config(d, hs * dim, n * hs * dim, v_th[ch],
                              np.zeros(hs * dim))
            spikes, _ = lif_int(cfg, att.reshape(1, t, -1))
            out[:, ch, r0:r1] = np.moveaxis(spikes.reshape(t, r1 - r0, w, hs * dim), -1, 1)
    return out, True


def _head_op(mem, d, core):
    x = _read_input(mem, d, core)                      # (T, C, H, W) stream
    t, c = x.shape[:2]
    lanes = core.lanes
    sums = saturate(x.reshape(t, c, -1).sum(axis=2), d["sum_bits"])
    cg = -(-c // lanes)
    classes = d["out_channels"]
    kg = -(-classes // lanes)
    data = mem.read(d["params_addr"], (cg * 2 + kg) * lanes * 4)
    arr = np.frombuffer(data, "<i4").astype(np.int64)
    lif = arr[:cg * 2 * lanes].reshape(cg, 2, lanes)
    v_th, lif_bias = lif[:, 0].reshape(-1)[:c], lif[:, 1].reshape(-1)[:c]
    fc_bias = arr[cg * 2 * lanes:].reshape(-1)
    cfg = _lif_config(d, c, c, v_th, lif_bias)
    spikes, _ = lif_int(cfg, sums.reshape(1, t, c))
    s = spikes.reshape(t, c, 1, 1).astype(np.int64)
    out = np.zeros((t, kg * lanes, 1, 1), np.int64)
    for tile in range(d["tiles"]):
        g0 = tile * d["tile_groups"]
        groups = min(d["tile_groups"], kg - g0)
        w = _weights(mem, d, core, tile, groups)
        ch = slice(g0 * lanes, (g0 + groups) * lanes)
        acc = _accumulate(d, s, w, 0, 1, d["acc_bits"], saturating=True)
        if d["has_bias"]:
            acc = saturate(acc + fc_bias[ch][None, :, None, None], d["acc_bits"])
        out[:, ch] = acc
    return out[:, :classes], False


_HANDLERS = {"conv_lif": _engine_op, "conv_stream": _engine_op, "depthwise": _engine_op,
             "lif": _lif_op, "sdsa": _sdsa_op, "head": _head_op}


def run_program(image, memory_bytes, base, core, pixels):
    """Execute the program in `image` (the compiled bytes) for one image of integer `pixels`
    (C, H, W): a `Memory` of `memory_bytes` bytes from `base` holding the image, the input
    and, after the run, every operation's output region."""
    mem = Memory(base, memory_bytes)
    mem.write(base, image)
    header, descs = read_descriptors(mem, base, core)
    first = descs[0]
    mem.write(header["input_addr"],
              pack_values(np.asarray(pixels)[None], first["in_bits"], core, signed=False))
    for d in descs:
        out, spikes = _HANDLERS[OPCODE_NAMES[d["opcode"]]](mem, d, core)
        _write_output(mem, d, core, out, spikes)
    return mem


# -- checking ------------------------------------------------------------------------------------


class Divergence(AssertionError):
    """An output region differs from the integer model's trace."""


def region_array(mem, region, core):
    """(values (planes, C, H, W), padding channels' values) of a layout region in `mem`."""
    planes, c, h, w = region["shape"]
    data = mem.read(region["addr"], region["bytes"])
    if region["kind"] == "spikes":
        return unpack_spikes(data, planes, c, h, w, core)
    return unpack_values(data, planes, c, h, w, region["bits"], core,
                         signed=region["signed"])


def trace_planes(traces, region, sample):
    """The integer model's values of a layout region for `sample`, from `traces` (the bundle's
    arrays), as the region holds them: (planes, C, H, W)."""
    name, kind = region["trace"]
    want = np.asarray(traces[f"trace/{name}:{kind}"][sample])
    if want.ndim == 3:                                   # token-major (T, N, C)
        planes, c, h, w = region["shape"]
        want = np.moveaxis(want, -1, 1).reshape(planes, c, h, w)
    return want


def check_outputs(mem, layout, core, traces, sample):
    """Compare every operation's output region with `traces` (the bundle's arrays: name ->
    array) for `sample`; raise `Divergence` naming the first differing layer, timestep, token
    and channel. Returns the number of values compared."""
    compared = 0
    for op in layout["ops"]:
        region = layout["regions"][op["output"]]
        name, kind = region["trace"]
        want = trace_planes(traces, region, sample)
        got, padding = region_array(mem, region, core)
        if got.shape != want.shape:
            raise Divergence(f"{op['name']}: output shape {got.shape}, trace {want.shape}")
        if np.any(padding):
            raise Divergence(f"{op['name']}: padding channels are not zero")
        diff = np.argwhere(got != want)
        if len(diff):
            t, c, r, col = (int(v) for v in diff[0])
            raise Divergence(
                f"{op['name']} ({kind} of {name}): first divergence at timestep {t}, token "
                f"{r * want.shape[3] + col} (row {r}, column {col}), channel {c}: expected "
                f"{int(want[t, c, r, col])}, got {int(got[t, c, r, col])} "
                f"({len(diff)} values differ)")
        compared += want.size
    return compared


def class_scores(mem, layout, core, timesteps, classes):
    """The head's class scores in `mem`: its output region (one value per class and timestep)
    summed over timesteps."""
    region = layout["regions"]["head:outputs"]
    values, _ = unpack_values(mem.read(region["addr"], region["bytes"]), timesteps, classes,
                              1, 1, 32, core)
    return values.sum(axis=0)[:, 0, 0]


def check_scores(mem, layout, core, timesteps, expected, sample):
    """Compare the class scores in `mem` with `expected` (the integer model's, one per class)
    for `sample`; raise `Divergence` naming the first differing class. Returns the scores."""
    expected = np.asarray(expected)
    got = class_scores(mem, layout, core, timesteps, len(expected))
    diff = np.flatnonzero(got != expected)
    if len(diff):
        k = int(diff[0])
        raise Divergence(f"image {sample}: class {k} scores {int(got[k])}, expected "
                         f"{int(expected[k])} ({len(diff)} classes differ)")
    return got
