"""The float multi-step LIF neuron, SpikingJelly semantics, trainable with a sigmoid surrogate."""

import torch
from torch import nn

__all__ = ["MultiStepLIF", "SigmoidSpike", "lif_float_from_config"]


class SigmoidSpike(torch.autograd.Function):
    """Heaviside step forward; derivative of sigmoid(alpha * x) backward (SpikingJelly's
    `surrogate.Sigmoid`, alpha = 4 in the reference code)."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad_output * ctx.alpha * sg * (1 - sg), None


class MultiStepLIF(nn.Module):
    """Multi-step LIF over a (T, ...) tensor, state reset for every call.

    Per timestep, V starting at `v_reset`, X the input plus `bias`::

        H = V + (X - (V - v_reset)) / tau          decay_input
        H = V - (V - v_reset) / tau + X            not decay_input
        S = H >= v_th
        V = v_reset if S else H                     hard reset
        V = H - v_th if S else H                    soft reset

    The reset is detached from the graph (`detach_reset=True` in the reference code).

    Parameters
    ----------
    tau, v_th, v_reset : float
    bias : float or tensor
        Added to the input (per neuron when a tensor over the last dimension).
    decay_input : bool
    reset : {"hard", "soft"}
    alpha : float
        Sharpness of the sigmoid surrogate.
    record_membrane : bool
        Keep the per-timestep membrane after reset in `self.membranes`.
    learn_threshold : bool
        Make `v_th` a trainable parameter (SDSA-4's attention neuron).
    """

    def __init__(self, *, tau=2.0, v_th=1.0, v_reset=0.0, bias=0.0, decay_input=True,
                 reset="hard", alpha=4.0, record_membrane=False, learn_threshold=False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, not {tau!r}")
        if reset not in ("hard", "soft"):
            raise ValueError(f"reset must be 'hard' or 'soft', not {reset!r}")
        self.tau, self.v_reset, self.decay_input, self.reset = tau, v_reset, decay_input, reset
        self.alpha, self.record_membrane = alpha, record_membrane
        # a tensor, so that per-channel thresholds broadcast over the last dimension
        v_th = torch.as_tensor(v_th, dtype=torch.float32)
        if learn_threshold:
            self.v_th = nn.Parameter(v_th.clone())
        else:
            self.register_buffer("v_th", v_th)
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))
        self.membranes = None

    def forward(self, x):
        v = torch.full_like(x[0], self.v_reset)
        spikes, membranes = [], []
        for t in range(x.shape[0]):
            charge = x[t] + self.bias
            if self.decay_input:
                h = v + (charge - (v - self.v_reset)) / self.tau
            else:
                h = v - (v - self.v_reset) / self.tau + charge
            s = SigmoidSpike.apply(h - self.v_th, self.alpha)
            s_reset = s.detach()
            if self.reset == "hard":
                v = h * (1 - s_reset) + self.v_reset * s_reset
            else:
                v = h - s_reset * self.v_th
            spikes.append(s)
            membranes.append(v)
        self.membranes = torch.stack(membranes) if self.record_membrane else None
        return torch.stack(spikes)


def lif_float_from_config(config, *, record_membrane=False):
    """The float LIF with the same parameters as `config` (a `spec.LIFConfig`), per-channel
    thresholds and biases broadcast over a trailing neuron dimension of `neurons`."""
    tokens = config.neurons // config.channels
    unit = 1 << config.frac_bits
    v_th = torch.tensor([v / unit for v in config.v_th_fixed] * tokens)
    bias = torch.tensor([b / unit for b in config.bias_fixed] * tokens)
    return MultiStepLIF(tau=float(config.tau), v_th=v_th, v_reset=float(config.v_reset), bias=bias,
                        decay_input=config.decay_input, reset=config.reset,
                        record_membrane=record_membrane)
