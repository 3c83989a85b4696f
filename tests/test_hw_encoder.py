# amaranth: UnusedElaboratable=no
"""The spike encoder in the Amaranth simulator: events, frame ends, throughput, stalls."""

import pytest
from amaranth_streams import run_streams

from hw.encoder import SpikeEncoder
from sim.sae import sae_expected_events, sae_input_beats
from spec.sae import SAEConfig
from sw.export import random_spikes

CONFIGS = {
    "c5-l16": SAEConfig(in_channels=5, out_channels=8, height=3, width=4, in_lanes=16),
    "c20-l8": SAEConfig(in_channels=20, out_channels=8, height=2, width=3, in_lanes=8),
    "c16-l16": SAEConfig(in_channels=16, out_channels=8, height=3, width=3, in_lanes=16),
    "c3-l1": SAEConfig(in_channels=3, out_channels=3, height=2, width=2, in_lanes=1, lanes=1,
                       mode="depthwise", kernel=1, padding=0),
    "c64-l64-linear": SAEConfig(mode="linear", kernel=1, padding=0, in_channels=64,
                                out_channels=8, height=4, width=1, in_lanes=64),
}


def encode(config, spikes, **stalls):
    beats = sae_input_beats(config, spikes)
    expected = sae_expected_events(config, spikes)
    frames = spikes.shape[0]
    run = run_streams(SpikeEncoder(config), config.input_fields(), beats,
                      config.event_fields(),
                      done=lambda r: sum(e["last"] for e in r.outputs) == frames, **stalls)
    return run, expected


@pytest.mark.parametrize("density", [0.0, 0.05, 0.25, 1.0])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_events_without_stalls(name, density):
    config = CONFIGS[name]
    spikes = random_spikes((3, config.in_channels, config.height, config.width), density, seed=5)
    run, expected = encode(config, spikes)
    assert run.outputs == expected
    # one cycle per event, one per beat without spikes, plus one cycle of latency
    assert run.out_cycles[-1] - run.in_cycles[0] == config.encoder_cycles(spikes)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_events_with_random_stalls(name):
    config = CONFIGS[name]
    spikes = random_spikes((3, config.in_channels, config.height, config.width), 0.3, seed=6)
    run, expected = encode(config, spikes, in_stall=0.3, out_stall=0.4, seed=2)
    assert run.outputs == expected


def test_zero_beats_cost_no_events():
    config = CONFIGS["c20-l8"]
    spikes = random_spikes((1, 20, 2, 3), 0.0, seed=0)
    spikes[0, 9, 1, 2] = 1  # one spike in the middle beat of the last pixel
    run, expected = encode(config, spikes)
    assert [(e["row"], e["col"], e["channel"], e["spike"], e["last"]) for e in run.outputs] == \
        [(1, 2, 9, 1, 0), (1, 2, 0, 0, 1)]
    assert run.outputs == expected


def test_wrong_config_type():
    with pytest.raises(TypeError, match=r"^config must be an SAEConfig, not 3$"):
        SpikeEncoder(3)
