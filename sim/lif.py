"""LIF traces to stream beats: the stimulus and the expected output, beat by beat."""

import numpy as np

from .scoreboard import Expected

__all__ = ["lif_input_beats", "lif_expected_beats"]


def _pad(config, array):
    lanes, beats = config.lanes, config.beats_per_step
    padded = np.zeros(array.shape[:2] + (beats * lanes,), dtype=np.int64)
    padded[..., : config.neurons] = array
    return padded.reshape(array.shape[0], config.timesteps, beats, lanes)


def lif_input_beats(config, inputs):
    """Input beats (field dicts) for inputs of shape (samples, timesteps, neurons)."""
    x = _pad(config, np.asarray(inputs))
    steps, beats = config.timesteps, config.beats_per_step
    out = []
    for s in range(x.shape[0]):
        for t in range(steps):
            for b in range(beats):
                out.append({
                    "x": x[s, t, b].tolist(),
                    "first": int(t == 0 and b == 0),
                    "last": int(t == steps - 1 and b == beats - 1),
                })
    return out


def lif_expected_beats(config, traces):
    """Expected output beats for `traces` (a `spec.lif.LIFTraces`); padded lanes are 0."""
    spikes = _pad(config, traces.spikes)
    membranes = _pad(config, traces.membranes)
    steps, beats, lanes = config.timesteps, config.beats_per_step, config.lanes
    out = []
    for s in range(spikes.shape[0]):
        for t in range(steps):
            for b in range(beats):
                values = {"spikes": spikes[s, t, b].tolist()}
                if config.expose_membrane:
                    values["v"] = membranes[s, t, b].tolist()
                values["first"] = int(t == 0 and b == 0)
                values["last"] = int(t == steps - 1 and b == beats - 1)
                out.append(Expected(values, where={"sample": s, "timestep": t},
                                    lane_name="neuron", lane_base=b * lanes))
    return out
