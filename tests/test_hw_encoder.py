# amaranth: UnusedElaboratable=no
"""The spike encoder in the Amaranth simulator: events, frame ends, throughput, stalls."""

import numpy as np
import pytest
from amaranth_streams import run_streams

from hw.encoder import BitPlaneStage, SpikeEncoder
from sim.sae import random_sae_inputs, sae_expected_events, sae_input_beats
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


# -- multi-bit inputs: one event per set magnitude bit, plane-major -----------------------------


def multi_bit(**kw):
    c = SAEConfig(**kw, acc_bits=48)
    return c.replace(acc_bits=c.lossless_acc_bits)


MULTI_BIT = {
    "u5-c1-l1": multi_bit(in_channels=1, out_channels=4, height=3, width=4, in_lanes=1,
                          in_bits=5),
    "s12-c16-l16-linear": multi_bit(mode="linear", kernel=1, padding=0, in_channels=16,
                                    out_channels=8, height=2, width=2, in_lanes=16, in_bits=12,
                                    in_signed=True),
    # 5 channels over 4 lanes: the second beat of each pixel has 3 padding lanes
    "s6-c5-l4": multi_bit(in_channels=5, out_channels=4, height=2, width=3, in_lanes=4,
                          in_bits=6, in_signed=True),
    "u2-c3-l2": multi_bit(in_channels=3, out_channels=2, height=3, width=2, in_lanes=2,
                          in_bits=2),
    # lanes need not be a power of two: 7 channels over 3 lanes, 3 beats a pixel, 2 padding
    "s4-c7-l3": multi_bit(in_channels=7, out_channels=4, height=2, width=2, in_lanes=3,
                          in_bits=4, in_signed=True),
}


def encode_values(config, values, beats=None, **stalls):
    beats = sae_input_beats(config, values) if beats is None else beats
    frames = values.shape[0]
    return run_streams(SpikeEncoder(config), config.input_fields(), beats,
                       config.event_fields(),
                       done=lambda r: sum(e["last"] for e in r.outputs) == frames, **stalls)


@pytest.mark.parametrize("density", [0.0, 0.05, 0.25, 1.0])
@pytest.mark.parametrize("name", list(MULTI_BIT))
def test_multi_bit_events_without_stalls(name, density):
    config = MULTI_BIT[name]
    values = random_sae_inputs(config, (2, config.in_channels, config.height, config.width),
                               density, seed=5)
    run = encode_values(config, values)
    assert run.outputs == sae_expected_events(config, values)
    # one cycle per set magnitude bit, one per beat without any, the encoder's cycle of latency
    # and the input stage's
    assert config.input_latency == 2
    assert run.out_cycles[-1] - run.in_cycles[0] == \
        config.encoder_cycles(values) + config.input_latency
    assert len([e for e in run.outputs if e["spike"]]) == int(config.magnitude_planes(values).sum())


@pytest.mark.parametrize("name", list(MULTI_BIT))
def test_multi_bit_events_with_random_stalls(name):
    config = MULTI_BIT[name]
    values = random_sae_inputs(config, (3, config.in_channels, config.height, config.width),
                               0.3, seed=6)
    run = encode_values(config, values, in_stall=0.3, out_stall=0.4, seed=2)
    assert run.outputs == sae_expected_events(config, values)


def test_multi_bit_extremes_and_order():
    config = MULTI_BIT["s6-c5-l4"]
    values = np.zeros((1, 5, 2, 3), np.int64)
    values[0, :, 0, 0] = [-32, 31, -1, 0, 5]   # most negative: plane 5 alone
    values[0, 4, 1, 2] = -3                    # the frame's last pixel, second beat
    run = encode_values(config, values)
    got = [(e["row"], e["col"], e["channel"], e["plane"], e["neg"], e["last"])
           for e in run.outputs]
    # plane-major within a beat: plane 0 (channels 1, 2), plane 1..4 (channel 1), plane 5
    # (channel 0); channel 4 (5 = planes 0 and 2) is the next beat
    assert got == [(0, 0, 1, 0, 0, 0), (0, 0, 2, 0, 1, 0), (0, 0, 1, 1, 0, 0),
                   (0, 0, 1, 2, 0, 0), (0, 0, 1, 3, 0, 0), (0, 0, 1, 4, 0, 0),
                   (0, 0, 0, 5, 1, 0), (0, 0, 4, 0, 0, 0), (0, 0, 4, 2, 0, 0),
                   (1, 2, 4, 0, 1, 0), (1, 2, 4, 1, 1, 1)]
    assert run.outputs == sae_expected_events(config, values)


def test_multi_bit_padding_lanes_are_ignored():
    # values in the padding lanes of a pixel's last beat (channels 5..7) make no events
    config = MULTI_BIT["s6-c5-l4"]
    values = random_sae_inputs(config, (2, 5, 2, 3), 0.5, seed=8)
    beats = sae_input_beats(config, values)
    for n, beat in enumerate(beats):
        if n % 2:  # the second beat of a pixel: lane 0 is channel 4, lanes 1..3 padding
            beat["values"][1:] = [-32, 31, -7]
    run = encode_values(config, values, beats=beats)
    assert run.outputs == sae_expected_events(config, values)
    # and no cycles: the input stage masks them before choosing the plane words
    assert run.out_cycles[-1] - run.in_cycles[0] == \
        config.encoder_cycles(values) + config.input_latency


def test_multi_bit_frame_end_token():
    config = MULTI_BIT["u5-c1-l1"]
    values = np.zeros((2, 1, 3, 4), np.int64)
    values[0, 0, 1, 1] = 6
    values[1, 0, 2, 3] = 16    # the last pixel: one event at plane 4 ends the frame
    run = encode_values(config, values)
    got = [(e["row"], e["col"], e["plane"], e["spike"], e["last"]) for e in run.outputs]
    assert got == [(1, 1, 1, 1, 0), (1, 1, 2, 1, 0), (2, 3, 0, 0, 1), (2, 3, 4, 1, 1)]
    assert run.outputs == sae_expected_events(config, values)


def test_bit_plane_stage_rejects_spike_config():
    with pytest.raises(TypeError, match=r"^config must be an SAEConfig with in_bits > 1, not "):
        BitPlaneStage(CONFIGS["c5-l16"])
