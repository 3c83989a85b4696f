"""Float SDSA variants 1-4, trainable, as the paper and the authors' code define them.

Tensors are (T, B, N, C): timesteps, batch, tokens, channels; channel c belongs to head c // d.
"""

import torch
from torch import nn

from spec.sdsa import SDSA_V_TH

from .lif_float import MultiStepLIF

__all__ = ["SDSA", "sdsa_float_from_config"]


class SDSA(nn.Module):
    """Spike-driven self-attention on Q, K, V spikes (no softmax, no multiplications of two
    real-valued operands).

    - variant 1: `Q * LIF_0.5(sum over tokens of K * V)` (V1's talking-heads neuron)
    - variant 2: `Q * LIF_0.5(sum over tokens of V)`
    - variant 3: per head `LIF_0.5((Q (K^T V)) * 0.125)` (the V2 code's attention)
    - variant 4: variant 3 with a trainable threshold (initialised to `v_th`)

    Parameters
    ----------
    variant : int
    heads : int
    v_th : float or tensor
        The neuron's threshold (per channel when a tensor of `C` values).
    scale : float
        The factor on `Q KV` (0.125 in the V2 code, whatever the head dimension).
    """

    def __init__(self, variant=3, heads=8, *, v_th=SDSA_V_TH, scale=0.125):
        super().__init__()
        if isinstance(variant, bool) or not isinstance(variant, int) or \
                variant not in (1, 2, 3, 4):
            raise ValueError(f"variant must be 1, 2, 3 or 4, not {variant!r}")
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise ValueError(f"heads must be a positive integer, not {heads!r}")
        self.variant, self.heads, self.scale = variant, heads, scale
        self.neuron = MultiStepLIF(tau=2.0, v_th=v_th, learn_threshold=variant == 4)

    def forward(self, q, k, v):
        t, b, n, c = q.shape
        if c % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide channels ({c})")
        if self.variant <= 2:
            x = k * v if self.variant == 1 else v
            mask = self.neuron(x.sum(dim=2))                  # (T, B, C)
            return q * mask[:, :, None, :]
        d = c // self.heads

        def heads(a):
            return a.reshape(t, b, n, self.heads, d).transpose(2, 3)   # (T, B, H, N, d)

        kv = heads(k).transpose(-2, -1) @ heads(v)                     # (T, B, H, d, d)
        y = (heads(q) @ kv) * self.scale                               # (T, B, H, N, d)
        return self.neuron(y.transpose(2, 3).reshape(t, b, n, c))


def sdsa_float_from_config(config):
    """The float SDSA with the parameters of `config` (a `spec.SDSAConfig`)."""
    v_th = torch.tensor(config.v_th) if isinstance(config.v_th, tuple) else config.v_th
    scale = 0.125 if config.variant >= 3 else 1.0
    return SDSA(config.variant, config.heads, v_th=v_th, scale=scale)
