"""The integer LIF: the bit-exact contract the hardware implements (see `spec.LIFConfig`)."""

import numpy as np

__all__ = ["lif_int", "saturate"]


def saturate(values, bits):
    """Clamp to the signed `bits`-bit range."""
    return np.clip(values, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def lif_int(config, inputs):
    """Run the integer LIF over `inputs` of shape (samples, timesteps, neurons).

    Parameters
    ----------
    config : spec.LIFConfig
    inputs : array of int
        Input currents, signed integers within `in_bits`.

    Returns
    -------
    spikes : ndarray of uint8, (samples, timesteps, neurons)
    membranes : ndarray of int64, (samples, timesteps, neurons)
        Membrane after reset, in membrane units (LSB = 2**-frac_bits).
    """
    x = np.asarray(inputs, dtype=np.int64)
    if x.ndim != 3 or x.shape[1:] != (config.timesteps, config.neurons):
        raise ValueError(
            f"inputs must have shape (samples, {config.timesteps}, {config.neurons}), "
            f"not {x.shape}"
        )
    lo, hi = -(1 << (config.in_bits - 1)), (1 << (config.in_bits - 1)) - 1
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"inputs exceed in_bits={config.in_bits}: {x.min()} .. {x.max()}")
    vb, s = config.v_bits, config.shift
    tokens = config.neurons // config.channels
    th = np.tile(np.asarray(config.v_th_fixed, dtype=np.int64), tokens)
    bias = np.tile(np.asarray(config.bias_fixed, dtype=np.int64), tokens)
    vr = config.v_reset_fixed
    spikes = np.zeros(x.shape, dtype=np.uint8)
    membranes = np.zeros(x.shape, dtype=np.int64)
    v = np.full((x.shape[0], config.neurons), vr, dtype=np.int64)
    for t in range(config.timesteps):
        charge = saturate((x[:, t] << config.frac_bits) + bias, vb)
        if config.decay_input:
            h = saturate(v + ((charge - (v - vr)) >> s), vb)
        else:
            h = saturate(v - ((v - vr) >> s) + charge, vb)
        fired = h >= th
        if config.reset == "hard":
            v = np.where(fired, vr, h)
        else:
            v = np.where(fired, saturate(h - th, vb), h)
        spikes[:, t] = fired
        membranes[:, t] = v
    return spikes, membranes
