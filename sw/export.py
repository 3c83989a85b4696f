"""Export of golden stimuli and reference traces as bundles (spec/bundle.py)."""

import numpy as np

from spec.bundle import write_bundle
from spec.lif import LIFTraces

from .lif_int import lif_int

__all__ = ["random_lif_inputs", "lif_traces", "export_lif_bundle", "random_spikes",
           "export_sae_bundle", "random_qkv", "export_sdsa_bundle"]


def random_lif_inputs(config, samples, *, seed=0):
    """Seeded input currents that make a LIF array fire at a moderate rate.

    Most currents are small integers around the thresholds; a few are drawn from the whole
    `in_bits` range so that saturation is exercised too.
    """
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (config.in_bits - 1)), (1 << (config.in_bits - 1)) - 1
    scale = max(1, int(np.ceil(max(abs(v) for v in config.v_th_fixed) / (1 << config.frac_bits))))
    shape = (samples, config.timesteps, config.neurons)
    x = rng.integers(-scale, 3 * scale + 1, size=shape)
    extreme = rng.random(shape) < 0.05
    x = np.where(extreme, rng.integers(lo, hi + 1, size=shape), x)
    return np.clip(x, lo, hi).astype(np.int64)


def lif_traces(config, inputs):
    """Stimulus plus the integer model's expected spikes and membranes."""
    spikes, membranes = lif_int(config, inputs)
    return LIFTraces(inputs=np.asarray(inputs, dtype=np.int64), spikes=spikes, membranes=membranes)


def export_lif_bundle(path, config, *, inputs=None, samples=4, seed=0):
    """Write a LIF bundle: configuration, inputs, expected spikes and membranes.

    Without `inputs`, `samples` seeded random samples (`random_lif_inputs`) are used.
    Returns the traces written.
    """
    if inputs is None:
        inputs = random_lif_inputs(config, samples, seed=seed)
    traces = lif_traces(config, inputs)
    write_bundle(
        path,
        unit="lif",
        config=config.to_dict(),
        arrays={
            "inputs": traces.inputs.astype(np.int32),
            "spikes": traces.spikes.astype(np.uint8),
            "membranes": traces.membranes.astype(np.int64),
        },
        meta={"generator": "sw.export", "seed": int(seed)},
    )
    return traces


def random_spikes(shape, density, *, seed=0):
    """Seeded Bernoulli spikes (0/1, uint8) of the given density."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < density).astype(np.uint8)


def export_sae_bundle(path, config, *, params=None, inputs=None, frames=4, density=0.1, seed=0):
    """Write an SAE bundle: configuration, weights, bias, input spikes and expected outputs.

    Without `params`, seeded weights (`spec.sae.SAEParams.seeded`); without `inputs`, `frames`
    frames of Bernoulli spikes of `density`. Returns (params, traces).
    """
    from spec.sae import SAEParams, SAETraces

    from .sae_int import sae_int

    if params is None:
        params = SAEParams.seeded(config, seed)
    if inputs is None:
        shape = (frames, config.in_channels, config.height, config.width)
        inputs = random_spikes(shape, density, seed=seed)
    outputs = sae_int(config, params, inputs)
    arrays = {"weight": params.weight.astype(np.int32), "inputs": np.asarray(inputs, np.uint8),
              "outputs": outputs.astype(np.int64)}
    if config.bias:
        arrays["bias"] = params.bias.astype(np.int64)
    write_bundle(path, unit="sae", config=config.to_dict(), arrays=arrays,
                 meta={"generator": "sw.export", "seed": int(seed), "density": float(density)})
    return params, SAETraces(inputs=arrays["inputs"], outputs=outputs)


def random_qkv(config, samples, density, *, seed=0):
    """Seeded Bernoulli Q, K, V spikes (samples, timesteps, tokens, channels). `density` is one
    value or a (q, k, v) triple."""
    dens = density if isinstance(density, (tuple, list)) else (density,) * 3
    shape = (samples, config.timesteps, config.tokens, config.channels)
    return tuple(random_spikes(shape, p, seed=seed + n) for n, p in enumerate(dens))


def export_sdsa_bundle(path, config, *, q=None, k=None, v=None, samples=2, density=0.1, seed=0):
    """Write an SDSA bundle: configuration, Q/K/V spikes, the expected output spikes and the
    neuron's integer input (`attention` A for variants 3/4, `counts` for 1/2).

    Without Q/K/V, `samples` samples of seeded Bernoulli spikes of `density` (one value or a
    (q, k, v) triple). Returns the traces written (`spec.sdsa.SDSATraces`).
    """
    from spec.sdsa import SDSATraces

    from .sdsa_int import sdsa_int

    given = [a is not None for a in (q, k, v)]
    if any(given) and not all(given):
        raise ValueError("give q, k and v together, or none of them (then they are drawn)")
    if not any(given):
        q, k, v = random_qkv(config, samples, density, seed=seed)
    spikes, neuron_input = sdsa_int(config, q, k, v)
    name = "attention" if config.variant >= 3 else "counts"
    arrays = {"q": np.asarray(q, np.uint8), "k": np.asarray(k, np.uint8),
              "v": np.asarray(v, np.uint8), "spikes": spikes,
              name: neuron_input.astype(np.int32)}
    dens = density if isinstance(density, (tuple, list)) else (density,) * 3
    write_bundle(path, unit="sdsa", config=config.to_dict(), arrays=arrays,
                 meta={"generator": "sw.export", "seed": int(seed),
                       "density": [float(x) for x in dens]})
    return SDSATraces(q=arrays["q"], k=arrays["k"], v=arrays["v"], spikes=spikes,
                      neuron_input=neuron_input)
