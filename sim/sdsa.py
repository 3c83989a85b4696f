"""SDSA traces to stream beats: Q, K, V input beats and the expected output beats."""

import numpy as np

from .scoreboard import Expected

__all__ = ["sdsa_input_beats", "sdsa_expected_beats", "sdsa_inputs"]


def _beats(config, spikes):
    """(sample, timestep, token, word, lane bits, first, last) in stream order."""
    a = np.asarray(spikes)
    lanes, words, steps = config.lanes, config.words_per_token, config.timesteps
    for s in range(a.shape[0]):
        for t in range(steps):
            for n in range(config.tokens):
                for w in range(words):
                    yield (s, t, n, w, a[s, t, n, w * lanes:(w + 1) * lanes],
                           int(t == 0 and n == 0 and w == 0),
                           int(t == steps - 1 and n == config.tokens - 1 and w == words - 1))


def sdsa_input_beats(config, spikes):
    """Input beats (field dicts) of one stream for spikes (samples, timesteps, tokens,
    channels)."""
    return [{"spikes": bits.tolist(), "first": first, "last": last}
            for *_, bits, first, last in _beats(config, spikes)]


def sdsa_inputs(config, traces):
    """{port: beats} for the unit's input ports (variant 2 has no `k`)."""
    ports = {"q": traces.q, "k": traces.k, "v": traces.v}
    if config.variant == 2:
        del ports["k"]
    return {name: sdsa_input_beats(config, a) for name, a in ports.items()}


def sdsa_expected_beats(config, traces):
    """Expected output beats for `traces` (a `spec.sdsa.SDSATraces`)."""
    return [Expected({"spikes": bits.tolist(), "first": first, "last": last},
                     where={"sample": s, "timestep": t, "token": n}, lane_name="channel",
                     lane_base=w * config.lanes)
            for s, t, n, w, bits, first, last in _beats(config, traces.spikes)]
