"""Integer reference of the spike-sparse accumulate engine (see `spec.sae` for the contract)."""

import numpy as np

from .lif_int import saturate

__all__ = ["sae_int"]


def sae_int(config, params, spikes):
    """Outputs (frames, C_out, H_out, W_out) for spikes (frames, C_in, H, W) of 0/1.

    Each accumulator adds its weights in the engine's event order, (kh, kw, c_in), saturating
    to `acc_bits` after every add; then `sat(acc + bias)`. When `acc_bits` can never saturate
    during accumulation the sum is taken in one step (the same result, faster).
    """
    s = np.asarray(spikes)
    want = (config.in_channels, config.height, config.width)
    if s.ndim != 4 or s.shape[1:] != want:
        raise ValueError(f"spikes must have shape (frames, {', '.join(map(str, want))}), "
                         f"not {s.shape}")
    if s.size and (s.min() < 0 or s.max() > 1):
        raise ValueError("spikes must be 0 or 1")
    k, st, p = config.kernel, config.stride, config.padding
    ho, wo = config.out_height, config.out_width
    frames = s.shape[0]
    padded = np.zeros((frames, config.in_channels, config.height + 2 * p, config.width + 2 * p),
                      dtype=np.int64)
    padded[:, :, p:p + config.height, p:p + config.width] = s
    w = params.weight
    acc = np.zeros((frames, config.out_channels, ho, wo), dtype=np.int64)
    exact = config.acc_bits >= config.lossless_acc_bits
    for kh in range(k):
        for kw in range(k):
            window = padded[:, :, kh:kh + st * (ho - 1) + 1:st, kw:kw + st * (wo - 1) + 1:st]
            if config.mode == "depthwise":
                acc = acc + w[None, :, 0, kh, kw, None, None] * window
                if not exact:
                    acc = saturate(acc, config.acc_bits)
            elif exact:
                acc = acc + np.einsum("oc,fchw->fohw", w[:, :, kh, kw], window)
            else:
                for c in range(config.in_channels):
                    acc = saturate(acc + w[None, :, c, kh, kw, None, None]
                                   * window[:, c:c + 1], config.acc_bits)
    if config.bias:
        acc = acc + params.bias[None, :, None, None]
    return saturate(acc, config.acc_bits)
