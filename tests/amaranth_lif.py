"""Drive `hw.lif.LIFArray` in the Amaranth simulator with random stalls; collect its output."""

import numpy as np
from amaranth_streams import run_streams

from hw.lif import LIFArray
from sim.lif import lif_input_beats


def beats_to_arrays(config, beats, samples):
    """Output beats back to (samples, timesteps, neurons) spikes (and membranes if exposed)."""
    lanes = config.lanes
    spikes = np.array([b["spikes"] for b in beats], dtype=np.uint8)
    spikes = spikes.reshape(samples, config.timesteps, -1)[..., : config.neurons]
    membranes = None
    if config.expose_membrane:
        v = np.array([b["v"] for b in beats], dtype=np.int64)
        membranes = v.reshape(samples, config.timesteps, -1)[..., : config.neurons]
    assert spikes.shape[-1] == config.neurons and lanes
    return spikes, membranes


def simulate_lif(config, inputs, *, in_stall=0.0, out_stall=0.0, seed=0, max_cycles=200_000):
    """Returns (output beats, cycles from first input handshake to last output handshake)."""
    beats = lif_input_beats(config, inputs)
    run = run_streams(LIFArray(config), config.input_fields(), beats, config.output_fields(),
                      done=lambda r: len(r.outputs) == len(beats), in_stall=in_stall,
                      out_stall=out_stall, seed=seed, max_cycles=max_cycles)
    return run.outputs, run.cycles
