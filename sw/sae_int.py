"""Integer reference of the spike-sparse accumulate engine (see `spec.sae` for the contract)."""

import numpy as np

from .lif_int import saturate

__all__ = ["sae_int"]


def _windows(config, padded):
    """(kh, kw, window) for every kernel position: the input pixels each output pixel sees."""
    k, st = config.kernel, config.stride
    ho, wo = config.out_height, config.out_width
    for kh in range(k):
        for kw in range(k):
            yield kh, kw, padded[:, :, kh:kh + st * (ho - 1) + 1:st, kw:kw + st * (wo - 1) + 1:st]


def _total(config, w, padded, out_shape, magnitude=1):
    """The exact (unsaturated) sums of `w` over the inputs, in int64.

    The products are taken as floating-point matrix products (BLAS): when every output's
    absolute weights times the largest input `magnitude` sum below 2**24 (float32's exact
    integers), in float32, else in float64. Float64 is exact below 2**53: spikes (weights of at
    most 16 bits, a fan-in of at most 2**22) stay far below it, and multi-bit inputs have
    `acc_bits` (at most 48) >= `lossless_acc_bits`, which bounds that sum. Every partial sum is
    then an exactly represented integer, whatever the summation order."""
    if config.mode == "depthwise":
        acc = np.zeros(out_shape, dtype=np.int64)
        for kh, kw, window in _windows(config, padded):
            acc += w[None, :, 0, kh, kw, None, None] * window
        return acc
    frames, _, ho, wo = out_shape
    bound = int(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0)) * magnitude
    dtype = np.float32 if bound < (1 << 24) else np.float64
    padded = padded.astype(dtype, copy=False)
    wf = w.astype(dtype)
    acc = np.zeros((config.out_channels, frames * ho * wo), dtype=dtype)
    for kh, kw, window in _windows(config, padded):
        cols = np.moveaxis(window, 1, 0).reshape(config.in_channels, -1)
        acc += wf[:, :, kh, kw] @ cols
    return np.moveaxis(np.rint(acc).astype(np.int64).reshape(config.out_channels, frames, ho, wo),
                       0, 1)


def _sequential(config, w, padded, out_shape):
    """The sums in the engine's event order (kh, kw, c_in), saturating after every add."""
    acc = np.zeros(out_shape, dtype=np.int64)
    for kh, kw, window in _windows(config, padded):
        if config.mode == "depthwise":
            acc = saturate(acc + w[None, :, 0, kh, kw, None, None] * window, config.acc_bits)
        else:
            for c in range(config.in_channels):
                acc = saturate(acc + w[None, :, c, kh, kw, None, None] * window[:, c:c + 1],
                               config.acc_bits)
    return acc


def sae_int(config, params, spikes):
    """Outputs (frames, C_out, H_out, W_out) for spikes (frames, C_in, H, W) of 0/1.

    Each accumulator adds its weights in the engine's event order, (kh, kw, c_in), saturating
    to `acc_bits` after every add; then `sat(acc + bias)`. Where no running sum can leave the
    `acc_bits` range (its positive and its negative terms each fit), the sum is taken in one
    step, which gives the same result faster; only frames that could saturate take the
    event-by-event path.

    With `config.in_bits > 1`, `spikes` are integers in `config.input_range` and the result is
    `sat(sum(w * x) + bias)`: the engine adds +-(w << b) per set magnitude bit b, and its
    accumulator (`acc_bits >= lossless_acc_bits`) never saturates, so the sum is exact.
    """
    if config.in_bits > 1:
        return _multi_bit(config, params, spikes)
    s = np.asarray(spikes)
    want = (config.in_channels, config.height, config.width)
    if s.ndim != 4 or s.shape[1:] != want:
        raise ValueError(f"spikes must have shape (frames, {', '.join(map(str, want))}), "
                         f"not {s.shape}")
    if s.size and (s.min() < 0 or s.max() > 1):
        raise ValueError("spikes must be 0 or 1")
    p = config.padding
    frames = s.shape[0]
    padded = np.zeros((frames, config.in_channels, config.height + 2 * p, config.width + 2 * p),
                      dtype=np.int64 if config.mode == "depthwise" else np.float32)
    padded[:, :, p:p + config.height, p:p + config.width] = s
    w = np.asarray(params.weight, dtype=np.int64)
    out_shape = (frames, config.out_channels, config.out_height, config.out_width)
    acc = _total(config, w, padded, out_shape)
    lo, hi = -(1 << (config.acc_bits - 1)), (1 << (config.acc_bits - 1)) - 1
    axes = tuple(range(1, w.ndim))
    if np.maximum(w, 0).sum(axis=axes).max(initial=0) > hi or \
            np.minimum(w, 0).sum(axis=axes).min(initial=0) < lo:
        # some sum could saturate: bound every running sum by its positive and negative parts
        pos = _total(config, np.maximum(w, 0), padded, out_shape)
        neg = acc - pos
        risky = ((pos > hi) | (neg < lo)).reshape(frames, -1).any(axis=1)
        if risky.any():
            acc[risky] = _sequential(config, w, padded[risky].astype(np.int64), (int(risky.sum()),)
                                     + out_shape[1:])
    if config.bias:
        acc = acc + params.bias[None, :, None, None]
    return saturate(acc, config.acc_bits)


def _multi_bit(config, params, values):
    """`sae_int` for multi-bit inputs: the exact convolution, then `sat(acc + bias)`."""
    v = np.asarray(values)
    want = (config.in_channels, config.height, config.width)
    if v.ndim != 4 or v.shape[1:] != want:
        raise ValueError(f"inputs must have shape (frames, {', '.join(map(str, want))}), "
                         f"not {v.shape}")
    v = config.check_inputs(v)
    p = config.padding
    frames = v.shape[0]
    # in_bits <= 24: float32 holds every input exactly (`_total` widens to float64 if needed)
    padded = np.zeros((frames, config.in_channels, config.height + 2 * p, config.width + 2 * p),
                      dtype=np.float32)
    padded[:, :, p:p + config.height, p:p + config.width] = v
    w = np.asarray(params.weight, dtype=np.int64)
    out_shape = (frames, config.out_channels, config.out_height, config.out_width)
    acc = _total(config, w, padded, out_shape, config.input_magnitude)
    if config.bias:
        acc = acc + params.bias[None, :, None, None]
    return saturate(acc, config.acc_bits)
