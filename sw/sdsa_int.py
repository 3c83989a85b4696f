"""Integer reference of the SDSA unit (the contract is in `spec.sdsa`)."""

import numpy as np

from .lif_int import lif_int

__all__ = ["sdsa_int", "check_spikes"]


def check_spikes(config, name, array):
    """`array` as uint8 spikes of shape (samples, timesteps, tokens, channels), or ValueError."""
    a = np.asarray(array)
    want = (config.timesteps, config.tokens, config.channels)
    if a.ndim != 4 or a.shape[1:] != want:
        raise ValueError(f"{name} must have shape (samples, {', '.join(map(str, want))}), "
                         f"not {a.shape}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be spikes (0 or 1)")
    return a.astype(np.uint8)


def sdsa_int(config, q, k, v):
    """Output spikes and the neuron's integer input for Q, K, V of shape (samples, timesteps,
    tokens, channels).

    Returns
    -------
    spikes : ndarray of uint8, (samples, timesteps, tokens, channels)
    neuron_input : ndarray of int64
        Variants 3/4: `A = Q KV` per head, (samples, timesteps, tokens, channels). Variants
        1/2: the per-channel counts over tokens, (samples, timesteps, channels).
    """
    q = check_spikes(config, "q", q).astype(np.int64)
    k = check_spikes(config, "k", k).astype(np.int64)
    v = check_spikes(config, "v", v).astype(np.int64)
    s, t, n, c = q.shape
    neuron = config.neuron_config()
    if config.variant >= 3:
        h, d = config.heads, config.head_dim
        qh, kh, vh = (a.reshape(s, t, n, h, d) for a in (q, k, v))
        kv = np.einsum("stnhi,stnhj->sthij", kh, vh)          # counts in [0, tokens]
        a = np.einsum("stnhi,sthij->stnhj", qh, kv).reshape(s, t, n, c)
        spikes, _ = lif_int(neuron, a.reshape(s, t, n * c))
        return spikes.reshape(s, t, n, c), a
    x = (k & v) if config.variant == 1 else v
    counts = x.sum(axis=2)                                     # (samples, timesteps, channels)
    mask, _ = lif_int(neuron, counts)
    return (q & mask[:, :, None, :]).astype(np.uint8), counts
