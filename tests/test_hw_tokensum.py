"""The token sum (`hw.tokensum.TokenSum`) in the Amaranth simulator against a numpy sum."""

import numpy as np
import pytest
from amaranth_streams import run_streams

from hw.tokensum import TokenSum
from spec.errors import ConfigError
from spec.tokensum import TokenSumConfig


def reference(config, frames):
    """(frames, channels) sums of frames (frames, tokens, channels), saturated once."""
    lo, hi = -(1 << (config.bits - 1)), (1 << (config.bits - 1)) - 1
    return np.clip(frames.sum(axis=1), lo, hi)


def beats_of(config, frames):
    pad = config.groups * config.lanes - config.channels
    out = []
    for frame in frames:
        padded = np.pad(frame, ((0, 0), (0, pad)))
        for n, token in enumerate(padded):
            for g in range(config.groups):
                out.append({"x": token[g * config.lanes:(g + 1) * config.lanes].tolist(),
                            "first": int(n == 0 and g == 0), "last": 0})
    return out


def run(config, frames, *, in_stall=0.0, out_stall=0.0, seed=0):
    dut = TokenSum(config)
    beats = beats_of(config, frames)
    want = len(frames) * config.groups
    result = run_streams(dut, config.input_fields(), beats, config.output_fields(),
                         done=lambda r: len(r.outputs) == want, in_stall=in_stall,
                         out_stall=out_stall, seed=seed)
    got = np.array([b["sum"] for b in result.outputs]).reshape(len(frames), -1)
    return got[:, :config.channels], result


def frames_for(config, count, seed, extreme=False):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (config.in_bits - 1)), (1 << (config.in_bits - 1)) - 1
    if extreme:
        return rng.choice([lo, hi], size=(count, config.tokens, config.channels))
    return rng.integers(lo, hi + 1, size=(count, config.tokens, config.channels))


CONFIGS = [
    TokenSumConfig(channels=16, tokens=5, lanes=16, in_bits=6, bits=9),     # one group
    TokenSumConfig(channels=24, tokens=4, lanes=8, in_bits=5, bits=12),     # three groups
    TokenSumConfig(channels=20, tokens=3, lanes=8, in_bits=7, bits=6),      # padding, saturates
    TokenSumConfig(channels=8, tokens=1, lanes=4, in_bits=4, bits=8),       # one token
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"c{c.channels}-t{c.tokens}")
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.5)])
def test_sums_match_reference(config, stalls):
    frames = frames_for(config, 3, seed=config.channels)
    got, result = run(config, frames, in_stall=stalls[0], out_stall=stalls[1], seed=7)
    np.testing.assert_array_equal(got, reference(config, frames))
    firsts = [b["first"] for b in result.outputs]
    lasts = [b["last"] for b in result.outputs]
    assert firsts == [int(g == 0) for _ in frames for g in range(config.groups)]
    assert lasts == [int(g == config.groups - 1) for _ in frames for g in range(config.groups)]
    if stalls == (0.0, 0.0):
        assert result.cycles == config.cycles(len(frames))


@pytest.mark.parametrize("config", CONFIGS[:3], ids=lambda c: f"c{c.channels}-t{c.tokens}")
def test_extremes_saturate_like_reference(config):
    frames = frames_for(config, 2, seed=3, extreme=True)
    got, _ = run(config, frames, out_stall=0.2, seed=1)
    np.testing.assert_array_equal(got, reference(config, frames))


def test_corrupted_expectation_is_caught():
    config = CONFIGS[1]
    frames = frames_for(config, 2, seed=5)
    got, _ = run(config, frames)
    want = reference(config, frames)
    want[1, 7] += 1
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(got, want)


def test_first_restarts_the_count():
    """A frame cut short, then a frame marked `first`: the sums are the second frame's."""
    config = CONFIGS[1]
    frames = frames_for(config, 1, seed=9)
    partial = beats_of(config, frames)[:5]
    dut = TokenSum(config)
    beats = partial + beats_of(config, frames)
    result = run_streams(dut, config.input_fields(), beats, config.output_fields(),
                         done=lambda r: len(r.outputs) == config.groups)
    got = np.array([b["sum"] for b in result.outputs]).reshape(1, -1)[:, :config.channels]
    np.testing.assert_array_equal(got, reference(config, frames))


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 0}, "channels must be"),
    ({"tokens": 0}, "tokens must be"),
    ({"in_bits": 1}, "in_bits must be"),
    ({"bits": 1}, "bits must be"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TokenSumConfig(**kwargs)


def test_wide_bits_never_overflow():
    assert TokenSumConfig(tokens=64, in_bits=18).wide_bits == 24
    assert TokenSumConfig(tokens=65, in_bits=18).wide_bits == 25
    assert TokenSumConfig(tokens=1, in_bits=18).wide_bits == 18


