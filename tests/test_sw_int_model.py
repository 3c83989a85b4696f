"""Tests of the integer network's pieces (`sw.int_model`, `sw.shortcut_int`, `sw.sae_int`'s
mixed fast/event-order paths) and of a whole quantized network.

Every reference here is written independently of the code under test (plain loops, int64 numpy,
float64 torch), and every checker has a test that feeds it a corrupted expectation and sees it
fail, so that a checker that cannot fail would be noticed."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from quant_helpers import digits, stats_model

import sw.sae_int as sae_module
from spec.sae import SAEConfig, SAEParams
from sw.int_model import (
    WIDE_BITS,
    IntNetwork,
    MultiBitConv,
    Neuron,
    RunContext,
)
from sw.lif_float import MultiStepLIF
from sw.lif_int import lif_int
from sw.quant import quantize
from sw.sae_int import sae_int
from sw.shortcut_int import shortcut_int


def clip(values, bits):
    return np.clip(values, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def corrupt(array, index=None):
    """A copy of `array` with one value changed (0/1 arrays: flipped)."""
    out = np.array(array, copy=True, order="C")
    flat = out.reshape(-1)
    assert np.shares_memory(flat, out)
    i = flat.size // 2 if index is None else index
    flat[i] = 1 - flat[i] if out.dtype == np.uint8 else flat[i] + 1
    return out


# -- shortcut_int ------------------------------------------------------------------------------


def shortcut_reference(acc, shift, bias, bits, residual=None):
    """Loops over every value: channel = axis -3. A negative shift divides by `2**-shift`
    rounding down (Python's floor division), as an arithmetic right shift does."""
    acc = np.asarray(acc, np.int64)
    out = np.zeros_like(acc)
    for idx in np.ndindex(acc.shape):
        c, s = idx[-3], int(shift[idx[-3]])
        moved = int(acc[idx]) * (1 << s) if s >= 0 else int(acc[idx]) // (1 << -s)
        v = clip(moved + int(bias[c]), bits)
        if residual is not None:
            v = clip(int(residual[idx]) + v, bits)
        out[idx] = v
    return out


def assert_shortcut(got, want):
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64


# acc, residual: (channels=2, 1, 2); bits 8 (-128 .. 127); shift [1, 3]; bias [5, -2]
SC_ACC = np.array([[[3, -4]], [[10, 20]]])
SC_SHIFT = np.array([1, 3])
SC_BIAS = np.array([5, -2])
SC_RES = np.array([[[100, -126]], [[60, -100]]])
# branch: ch0 6+5=11, -8+5=-3; ch1 80-2=78, 160-2=158 -> 127 (saturates before the residual)
SC_BRANCH = np.array([[[11, -3]], [[78, 127]]])
# out: 100+11=111, -126-3=-129 -> -128, 60+78=138 -> 127, -100+127=27 (not 158-100=58)
SC_OUT = np.array([[[111, -128]], [[127, 27]]])


def test_shortcut_hand_worked():
    assert_shortcut(shortcut_int(SC_ACC, SC_SHIFT, SC_BIAS, 8), SC_BRANCH)
    assert_shortcut(shortcut_int(SC_ACC, SC_SHIFT, SC_BIAS, 8, SC_RES), SC_OUT)
    assert_shortcut(shortcut_reference(SC_ACC, SC_SHIFT, SC_BIAS, 8, SC_RES), SC_OUT)


def test_shortcut_residual_none_starts_a_stream():
    got = shortcut_int(SC_ACC, SC_SHIFT, SC_BIAS, 8, None)
    assert_shortcut(got, SC_BRANCH)
    # a zero residual is the same, an explicit None is not "add zero to something else"
    assert_shortcut(shortcut_int(SC_ACC, SC_SHIFT, SC_BIAS, 8, np.zeros_like(SC_ACC)), SC_BRANCH)


@pytest.mark.parametrize("bits", [4, 8, 13])
def test_shortcut_saturates_at_both_ends(bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    acc = np.array([[[hi]], [[lo]], [[hi]], [[lo]], [[1]]])     # 5 channels, 1 x 1
    shift = np.array([2, 2, 0, 0, 0])
    bias = np.array([0, 0, 1, -1, 0])
    want_branch = np.array([[[hi]], [[lo]], [[hi]], [[lo]], [[1]]])
    assert_shortcut(shortcut_int(acc, shift, bias, bits), want_branch)
    res = np.array([[[hi]], [[lo]], [[-hi]], [[-lo - 1]], [[hi]]])
    # hi+hi -> hi, lo+lo -> lo, -hi+hi = 0, (-lo-1)+lo = -1, hi+1 -> hi
    want = np.array([[[hi]], [[lo]], [[0]], [[-1]], [[hi]]])
    assert_shortcut(shortcut_int(acc, shift, bias, bits, res), want)
    assert_shortcut(shortcut_reference(acc, shift, bias, bits, res), want)


@pytest.mark.parametrize("shifts, scale", [([0, 3, 6], 1), ([-2, 3, -6], 64)])
def test_shortcut_per_channel_on_axis_minus_3(shifts, scale):
    # (samples, timesteps, channels=3, height=2, width=3): width == channels, so a shift
    # broadcast over the wrong axis would not raise but give other numbers
    rng = np.random.default_rng(1)
    acc = rng.integers(-50, 50, size=(2, 2, 3, 2, 3)) * scale
    res = rng.integers(-3000, 3000, size=acc.shape)
    shift = np.array(shifts)
    bias = np.array([7, -11, 100])
    got = shortcut_int(acc, shift, bias, 13, res)
    assert_shortcut(got, shortcut_reference(acc, shift, bias, 13, res))
    for c in range(3):
        moved = acc[:, :, c] * 2 ** shift[c] if shift[c] >= 0 else \
            np.floor_divide(acc[:, :, c], 2 ** -shift[c])
        branch = clip(moved + bias[c], 13)
        np.testing.assert_array_equal(got[:, :, c], clip(res[:, :, c] + branch, 13))
    assert (got == 4095).any() and (got == -4096).any()    # both ends reached


# right shifts (negative shifts) mixed with a left one, per channel: (channels=4, 1, 2); bits 8
SR_ACC = np.array([[[7, -7]], [[100, -100]], [[200, -1000]], [[3, -4]]])
SR_SHIFT = np.array([-1, -3, -2, 2])
SR_BIAS = np.array([0, 2, 100, 5])
SR_RES = np.array([[[10, -10]], [[120, -120]], [[-100, 100]], [[0, 0]]])
# branch: ch0 7 >> 1 = 3, -7 >> 1 = -4 (floor, not -3); ch1 100 >> 3 = 12 + 2 = 14,
# -100 >> 3 = -13 (floor of -12.5) + 2 = -11; ch2 200 >> 2 = 50 + 100 = 150 -> 127,
# -1000 >> 2 = -250 + 100 = -150 -> -128 (saturated after the shift and the bias);
# ch3 (left) 3 << 2 = 12 + 5 = 17, -4 << 2 = -16 + 5 = -11
SR_BRANCH = np.array([[[3, -4]], [[14, -11]], [[127, -128]], [[17, -11]]])
# out: 13, -14; 120+14 = 134 -> 127, -120-11 = -131 -> -128; -100+127 = 27, 100-128 = -28;
# 17, -11
SR_OUT = np.array([[[13, -14]], [[127, -128]], [[27, -28]], [[17, -11]]])


def test_shortcut_right_shifts_hand_worked():
    assert_shortcut(shortcut_int(SR_ACC, SR_SHIFT, SR_BIAS, 8), SR_BRANCH)
    assert_shortcut(shortcut_int(SR_ACC, SR_SHIFT, SR_BIAS, 8, SR_RES), SR_OUT)
    assert_shortcut(shortcut_reference(SR_ACC, SR_SHIFT, SR_BIAS, 8), SR_BRANCH)
    assert_shortcut(shortcut_reference(SR_ACC, SR_SHIFT, SR_BIAS, 8, SR_RES), SR_OUT)


def test_shortcut_right_shift_rounds_down():
    """acc >> k is floor(acc / 2**k) for either sign; with 2**(k-1) added first (the rounding
    bias a producer's convolution adds) it is acc / 2**k rounded to nearest, halves up."""
    acc = np.arange(-20, 21).reshape(1, 1, -1)
    for k in (1, 2, 3):
        got = shortcut_int(acc, np.array([-k]), np.array([0]), 16)
        np.testing.assert_array_equal(got.ravel(), [a // 2 ** k for a in range(-20, 21)])
        rounded = shortcut_int(acc + (1 << (k - 1)), np.array([-k]), np.array([0]), 16)
        np.testing.assert_array_equal(
            rounded.ravel(), [math.floor(a / 2 ** k + 0.5) for a in range(-20, 21)])


def test_shortcut_shift_range_ends():
    """-24 and 15 are the ends of the range: both accepted."""
    acc = np.array([[[1 << 24, (1 << 24) - 1, -1, -(1 << 24) - 1]], [[1, -1, 2, 0]]])
    got = shortcut_int(acc, np.array([-24, 15]), np.array([0, 0]), 20)
    # ch0: 1, 0, floor(-2**-24) = -1, floor(-1 - 2**-24) = -2; ch1: +-2**15, 2**16, 0
    assert_shortcut(got, np.array([[[1, 0, -1, -2]], [[32768, -32768, 65536, 0]]]))
    assert_shortcut(shortcut_reference(acc, np.array([-24, 15]), np.array([0, 0]), 20), got)


@pytest.mark.parametrize("shift", [[1, -25], [16, 0], [-25, 16], [100, 0], [0, -1000]])
def test_shortcut_shift_out_of_range_rejected(shift):
    with pytest.raises(ValueError, match=r"^shifts must be within -24 \.\. 15$"):
        shortcut_int(SC_ACC, np.array(shift), SC_BIAS, 8)
    with pytest.raises(ValueError, match=r"^shifts must be within -24 \.\. 15$"):
        shortcut_int(SC_ACC, np.array(shift), SC_BIAS, 8, SC_RES)


def test_shortcut_checker_fails_on_corrupted_expectation():
    with pytest.raises(AssertionError):
        assert_shortcut(shortcut_int(SC_ACC, SC_SHIFT, SC_BIAS, 8, SC_RES), corrupt(SC_OUT))
    # the unsaturated-branch answer (158 - 100 = 58) is not accepted either
    wrong = SC_OUT.copy()
    wrong[1, 0, 1] = 58
    with pytest.raises(AssertionError):
        assert_shortcut(shortcut_int(SC_ACC, SC_SHIFT, SC_BIAS, 8, SC_RES), wrong)
    # a right shift rounding toward zero (-7 >> 1 = -3, -100 >> 3 = -12) is not accepted
    toward_zero = SR_BRANCH.copy()
    toward_zero[0, 0, 1], toward_zero[1, 0, 1] = -3, -12 + 2
    with pytest.raises(AssertionError):
        assert_shortcut(shortcut_int(SR_ACC, SR_SHIFT, SR_BIAS, 8), toward_zero)
    with pytest.raises(AssertionError):
        assert_shortcut(shortcut_int(SR_ACC, SR_SHIFT, SR_BIAS, 8), corrupt(SR_BRANCH))
    # nor a branch saturated before its bias is added (ch2: sat(-250) + 100 = -28)
    early = SR_BRANCH.copy()
    early[2, 0] = [127, -28]
    with pytest.raises(AssertionError):
        assert_shortcut(shortcut_int(SR_ACC, SR_SHIFT, SR_BIAS, 8), early)


# -- sae_int: the event-order reference, for batches mixing saturating and quiet frames ----------


def naive_sae(config, weight, bias, spikes):
    """Per output: events in order kh, kw, c_in, saturating after every add; then the bias,
    saturating. Plain loops, nothing shared with sw.sae_int."""
    s = np.asarray(spikes)
    w = np.asarray(weight, np.int64)
    k, st, p, bits = config.kernel, config.stride, config.padding, config.acc_bits
    ho, wo = config.out_height, config.out_width
    out = np.zeros((s.shape[0], config.out_channels, ho, wo), np.int64)
    for f in range(s.shape[0]):
        for oh in range(ho):
            for ow in range(wo):
                acc = np.zeros(config.out_channels, np.int64)
                for kh in range(k):
                    ih = oh * st - p + kh
                    if not 0 <= ih < config.height:
                        continue
                    for kw in range(k):
                        iw = ow * st - p + kw
                        if not 0 <= iw < config.width:
                            continue
                        for c in range(config.in_channels):
                            if not s[f, c, ih, iw]:
                                continue
                            if config.mode == "depthwise":
                                acc[c] = clip(acc[c] + w[c, 0, kh, kw], bits)
                            else:
                                acc = clip(acc + w[:, c, kh, kw], bits)
                if bias is not None:
                    acc = clip(acc + np.asarray(bias, np.int64), bits)
                out[f, :, oh, ow] = acc
    return out


def clip_at_end(config, weight, bias, spikes):
    """The exact convolution (float64 torch), clipped once: what saturation order changes."""
    x = torch.tensor(np.asarray(spikes), dtype=torch.float64)
    w = torch.tensor(np.asarray(weight), dtype=torch.float64)
    groups = config.in_channels if config.mode == "depthwise" else 1
    y = F.conv2d(x, w, stride=config.stride, padding=config.padding, groups=groups).numpy()
    y = np.rint(y).astype(np.int64)
    if bias is not None:
        y = y + np.asarray(bias)[None, :, None, None]
    return clip(y, config.acc_bits)


def assert_event_order(got, config, params, spikes):
    want = naive_sae(config, params.weight, params.bias, spikes)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def ordered_weights(config, rng):
    """Weights whose sign depends on the kernel row (conv/depthwise) or on the input channel
    (linear), so a running sum first climbs, then falls: saturating on the way changes the
    result, and a clip at the end would not see it."""
    shape = config.weight_shape
    hi = (1 << (config.w_bits - 1)) - 1
    big = rng.integers(hi // 2, hi + 1, size=shape)
    small = rng.integers(-(hi // 8), hi // 8 + 1, size=shape)
    w = small.copy()
    if config.kernel > 1:
        w[:, :, 0] = big[:, :, 0]
        w[:, :, -1] = -big[:, :, -1] - 1
    else:
        half = shape[1] // 2
        w[:, :half] = big[:, :half]
        w[:, half:] = -big[:, half:] - 1
    w[1::2] = -w[1::2] - 1     # odd outputs: falling first, then climbing
    return np.clip(w, -hi - 1, hi)


def mixed_frames(config, rng):
    """Frames that saturate (dense) interleaved with frames that cannot (empty, one spike,
    two spikes far apart)."""
    shape = (config.in_channels, config.height, config.width)
    frames = []
    for n in range(8):
        kind = n % 4
        f = np.zeros(shape, np.uint8)
        if kind == 0:
            f = (rng.random(shape) < 0.9).astype(np.uint8)
        elif kind == 1:
            f[rng.integers(shape[0]), rng.integers(shape[1]), rng.integers(shape[2])] = 1
        elif kind == 2:
            f = np.ones(shape, np.uint8)
        elif kind == 3:
            f[0, 0, 0] = 1
            f[-1, -1, -1] = 1
        frames.append(f)
    return np.stack(frames)


SAE_MIXED = {
    "conv-k3s1p1": dict(mode="conv", in_channels=4, out_channels=3, kernel=3, stride=1,
                        padding=1, height=5, width=4),
    "conv-k3s2p0": dict(mode="conv", in_channels=3, out_channels=4, kernel=3, stride=2,
                        padding=0, height=7, width=5),
    "linear": dict(mode="linear", in_channels=12, out_channels=5, kernel=1, stride=1,
                   padding=0, height=3, width=2),
    "depthwise-k3s1p1": dict(mode="depthwise", in_channels=4, out_channels=4, kernel=3,
                             stride=1, padding=1, height=5, width=5, lanes=4, in_lanes=4),
    "depthwise-k5s2p2": dict(mode="depthwise", in_channels=2, out_channels=2, kernel=5,
                             stride=2, padding=2, height=7, width=6, lanes=2, in_lanes=2),
}


def spy_sequential(monkeypatch):
    """Record how many frames take sae_int's event-order path."""
    seen = []
    original = sae_module._sequential

    def spy(config, w, padded, out_shape):
        seen.append(out_shape[0])
        return original(config, w, padded, out_shape)

    monkeypatch.setattr(sae_module, "_sequential", spy)
    return seen


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("name", sorted(SAE_MIXED))
def test_sae_mixed_batch_matches_event_order(monkeypatch, name, bias):
    rng = np.random.default_rng(len(name) + bias)
    c = SAEConfig(**SAE_MIXED[name], w_bits=8, acc_bits=9, bias=bias)
    weight = ordered_weights(c, rng)
    b = rng.integers(-200, 200, size=c.out_channels) if bias else None
    params = SAEParams.checked(c, weight, b)
    spikes = mixed_frames(c, rng)
    seen = spy_sequential(monkeypatch)
    got = sae_int(c, params, spikes)
    assert_event_order(got, c, params, spikes)
    # the batch really mixes: some frames, not all, took the event-order path ...
    assert len(seen) == 1 and 0 < seen[0] < len(spikes)
    # ... and saturation order matters for some frames (a clip at the end is wrong there)
    end = clip_at_end(c, weight, params.bias, spikes)
    differs = (end != got).reshape(len(spikes), -1).any(axis=1)
    assert differs.any() and not differs.all()
    assert not differs[1::4].any() and not differs[3::4].any()   # the quiet frames


def test_sae_frames_alone_equal_frames_in_a_batch():
    c = SAEConfig(**SAE_MIXED["conv-k3s1p1"], w_bits=8, acc_bits=9, bias=True)
    rng = np.random.default_rng(5)
    params = SAEParams.checked(c, ordered_weights(c, rng), rng.integers(-50, 50, size=3))
    spikes = mixed_frames(c, rng)
    whole = sae_int(c, params, spikes)
    for f in range(len(spikes)):
        np.testing.assert_array_equal(sae_int(c, params, spikes[f:f + 1])[0], whole[f])


def test_sae_event_order_checker_fails_on_corrupted_expectation():
    c = SAEConfig(**SAE_MIXED["linear"], w_bits=8, acc_bits=9, bias=False)
    rng = np.random.default_rng(3)
    params = SAEParams.checked(c, ordered_weights(c, rng), None)
    spikes = mixed_frames(c, rng)
    got = sae_int(c, params, spikes)
    assert_event_order(got, c, params, spikes)
    with pytest.raises(AssertionError):
        assert_event_order(corrupt(got), c, params, spikes)
    # the clip-at-the-end answer is not the event-order one on this batch
    with pytest.raises(AssertionError):
        assert_event_order(clip_at_end(c, params.weight, None, spikes), c, params, spikes)


# -- sae_int: sums beyond float32's exact integers ---------------------------------------------


def exact_sums(config, weight, spikes):
    """int64 convolution, no floating point."""
    s = np.asarray(spikes, np.int64)
    w = np.asarray(weight, np.int64)
    k, st, p = config.kernel, config.stride, config.padding
    ho, wo = config.out_height, config.out_width
    padded = np.pad(s, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((s.shape[0], config.out_channels, ho, wo), np.int64)
    for kh in range(k):
        for kw in range(k):
            win = padded[:, :, kh:kh + st * (ho - 1) + 1:st, kw:kw + st * (wo - 1) + 1:st]
            out += np.einsum("fchw,oc->fohw", win, w[:, :, kh, kw])
    return out


def float32_sums(config, weight, spikes):
    """The same sums accumulated in float32, one input channel at a time (not exact for these
    weights: running sums pass 2**24)."""
    s = np.asarray(spikes, np.float32)
    w = np.asarray(weight, np.float32)
    k, st, p = config.kernel, config.stride, config.padding
    ho, wo = config.out_height, config.out_width
    padded = np.pad(s, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((s.shape[0], config.out_channels, ho, wo), np.float32)
    for kh in range(k):
        for kw in range(k):
            win = padded[:, :, kh:kh + st * (ho - 1) + 1:st, kw:kw + st * (wo - 1) + 1:st]
            for c in range(config.in_channels):
                out += w[None, :, c, kh, kw, None, None] * win[:, c:c + 1]
    return out.astype(np.int64)


def assert_exact(got, want):
    np.testing.assert_array_equal(got, want)


BIG = {
    "linear-2048": dict(mode="linear", in_channels=2048, out_channels=4, kernel=1, stride=1,
                        padding=0, height=1, width=5),
    "conv-256-k3": dict(mode="conv", in_channels=256, out_channels=3, kernel=3, stride=1,
                        padding=1, height=3, width=3),
}
SAT_640 = dict(mode="linear", in_channels=640, out_channels=4, kernel=1, stride=1, padding=0,
               height=1, width=5)


def big_weights(config, rng):
    hi = (1 << (config.w_bits - 1)) - 1
    shape = config.weight_shape
    w = rng.integers(hi - 3000, hi + 1, size=shape)         # large
    w[1] = -w[1]                                              # all negative
    w[2] = np.where(rng.random(shape[1:]) < 0.8, w[2], -w[2])  # mostly positive
    return w


@pytest.mark.parametrize("name", sorted(BIG))
def test_sae_weights_beyond_float32_exact(name):
    c0 = SAEConfig(**BIG[name], w_bits=16, acc_bits=48, bias=True)
    c = c0.replace(acc_bits=c0.lossless_acc_bits)
    rng = np.random.default_rng(11)
    weight = big_weights(c, rng)
    assert np.abs(weight).reshape(c.out_channels, -1).sum(axis=1).min() >= 1 << 24
    bias = rng.integers(-1000, 1000, size=c.out_channels)
    params = SAEParams.checked(c, weight, bias)
    spikes = np.concatenate([np.ones((1, c.in_channels, c.height, c.width), np.uint8),
                             (rng.random((3, c.in_channels, c.height, c.width)) < 0.9)
                             .astype(np.uint8)])
    want = exact_sums(c, weight, spikes) + bias[None, :, None, None]
    assert np.abs(want).max() >= 1 << 24
    # float32 would round these sums: the test would see a float32 implementation
    assert (float32_sums(c, weight, spikes) + bias[None, :, None, None] != want).any()
    assert_exact(sae_int(c, params, spikes), want)


def test_sae_weights_beyond_float32_with_saturation():
    """Large weights and a narrow accumulator: the risky frames' event-order path and the
    float64 fast path agree with the event-by-event reference."""
    c = SAEConfig(**SAT_640, w_bits=16, acc_bits=24, bias=True)
    rng = np.random.default_rng(12)
    weight = big_weights(c, rng)
    weight[3, :320] = np.abs(weight[3, :320])
    weight[3, 320:] = -np.abs(weight[3, 320:])
    bias = rng.integers(-1000, 1000, size=c.out_channels)
    params = SAEParams.checked(c, weight, bias)
    spikes = np.zeros((3, c.in_channels, c.height, c.width), np.uint8)
    spikes[0] = 1
    spikes[1, :300, 0, 0] = 1         # 300 large weights on token 0 only
    spikes[2, ::40, 0, :] = 1         # 16 spikes per token: far from saturating
    got = sae_int(c, params, spikes)
    assert_event_order(got, c, params, spikes)
    np.testing.assert_array_equal(got[2], clip(exact_sums(c, weight, spikes[2:]) +
                                               bias[None, :, None, None], 24)[0])


def test_sae_exact_checker_fails_on_corrupted_expectation():
    c0 = SAEConfig(**BIG["linear-2048"], w_bits=16, acc_bits=48, bias=False)
    c = c0.replace(acc_bits=c0.lossless_acc_bits)
    rng = np.random.default_rng(11)
    weight = big_weights(c, rng)
    spikes = np.ones((1, c.in_channels, c.height, c.width), np.uint8)
    got = sae_int(c, SAEParams.checked(c, weight, None), spikes)
    with pytest.raises(AssertionError):
        assert_exact(got, corrupt(exact_sums(c, weight, spikes)))
    with pytest.raises(AssertionError):
        assert_exact(got, float32_sums(c, weight, spikes))


# -- MultiBitConv --------------------------------------------------------------------------------


def multibit(**kw):
    base = dict(name="mb", mode="conv", in_channels=3, out_channels=4, kernel=3, stride=1,
                padding=1, height=5, width=4, w_bits=8, value_bits=5, signed=False, source="")
    base.update(kw)
    if "weight" not in base:
        rng = np.random.default_rng(base["in_channels"] * 7 + base["kernel"])
        k = base["kernel"]
        base["weight"] = rng.integers(-128, 128, size=(base["out_channels"],
                                                        base["in_channels"], k, k))
    return MultiBitConv(**base)


def int_conv(conv, values):
    """Reference: float64 torch convolution of the integer values (exact at these sizes)."""
    v = np.asarray(values, np.int64)
    s, t = v.shape[:2]
    x = torch.tensor(v.reshape(s * t, *v.shape[2:]), dtype=torch.float64)
    w = torch.tensor(conv.weight, dtype=torch.float64)
    y = F.conv2d(x, w, stride=conv.stride, padding=conv.padding).numpy()
    assert np.abs(y).max() < 2 ** 50
    y = np.rint(y).astype(np.int64)
    return y.reshape(s, t, *y.shape[1:])


def assert_int_conv(got, conv, values):
    want = int_conv(conv, values)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def values_in(rng, shape, lo, hi):
    v = rng.integers(lo, hi + 1, size=shape)
    flat = v.reshape(-1)
    assert np.shares_memory(flat, v)
    flat[:4] = [lo, hi, 0, lo]           # both ends of the range are always present
    return v


@pytest.mark.parametrize("geometry", [
    dict(),
    dict(kernel=3, stride=2, padding=0, height=7, width=6),
    dict(kernel=1, padding=0, in_channels=6, out_channels=5),
], ids=["k3s1p1", "k3s2p0", "linear"])
def test_multibit_unsigned(geometry):
    conv = multibit(**geometry, value_bits=5)
    rng = np.random.default_rng(0)
    values = values_in(rng, (2, 3, conv.in_channels, conv.height, conv.width), 0, 31)
    ctx = RunContext({}, record="full")
    got = conv.run(values, ctx)
    assert_int_conv(got, conv, values)
    np.testing.assert_array_equal(ctx.merged_traces()["mb"]["outputs"], got)


@pytest.mark.parametrize("geometry", [
    dict(),
    dict(kernel=3, stride=2, padding=0, height=7, width=6),
    dict(kernel=1, padding=0, in_channels=6, out_channels=5),
], ids=["k3s1p1", "k3s2p0", "linear"])
@pytest.mark.parametrize("bits", [1, 6, 12])
def test_multibit_signed_twos_complement(geometry, bits):
    conv = multibit(**geometry, value_bits=bits, signed=True)
    rng = np.random.default_rng(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = values_in(rng, (2, 2, conv.in_channels, conv.height, conv.width), lo, hi)
    assert values.min() == lo            # the most negative value, all planes' sign bit
    got = conv.run(values, RunContext({}))
    assert_int_conv(got, conv, values)


def test_multibit_most_negative_everywhere():
    conv = multibit(value_bits=8, signed=True)
    values = np.full((1, 1, conv.in_channels, conv.height, conv.width), -128)
    got = conv.run(values, RunContext({}))
    assert_int_conv(got, conv, values)
    # every input -128: each output is -128 times its window's weight sum
    centre = -128 * conv.weight.sum()
    assert got[0, 0, :, 2, 2].sum() == centre


def test_multibit_width_from_source():
    conv = multibit(value_bits=5, signed=True, source="d.acc")
    ctx = RunContext({"d.acc": 9})
    assert conv.input_bits(ctx) == 9
    rng = np.random.default_rng(4)
    values = values_in(rng, (2, 1, 3, 5, 4), -256, 255)
    assert_int_conv(conv.run(values, ctx), conv, values)
    with pytest.raises(ValueError, match="exceed 9 signed bits"):
        conv.run(np.full((1, 1, 3, 5, 4), 256), ctx)
    # no width for the source: the calibration width
    assert conv.input_bits(RunContext({})) == WIDE_BITS


@pytest.mark.parametrize("signed, bad", [
    (False, -1), (False, 32), (False, 1000), (True, -17), (True, 16), (True, -1000),
])
def test_multibit_out_of_range(signed, bad):
    conv = multibit(value_bits=5, signed=signed)
    values = np.zeros((1, 2, 3, 5, 4), np.int64)
    values[0, 1, 2, 3, 1] = bad
    kind = "signed" if signed else "unsigned"
    with pytest.raises(ValueError, match=f"mb: inputs .* exceed 5 {kind} bits"):
        conv.run(values, RunContext({}))


def test_multibit_checker_fails_on_corrupted_expectation():
    conv = multibit()
    values = values_in(np.random.default_rng(2), (1, 1, 3, 5, 4), 0, 31)
    got = conv.run(values, RunContext({}))
    with pytest.raises(AssertionError):
        assert_int_conv(corrupt(got), conv, values)
    # a sign plane added instead of subtracted is caught
    signed = multibit(value_bits=4, signed=True)
    neg = values_in(np.random.default_rng(3), (1, 1, 3, 5, 4), -8, 7)
    unsigned_view = dataclasses.replace(signed, signed=False)
    with pytest.raises(AssertionError):
        assert_int_conv(unsigned_view.run(neg & 15, RunContext({})), signed, neg)


def test_multibit_with_bias_adds_it_once():
    conv = multibit(value_bits=3, bias=np.array([5, -7, 0, 100]))
    values = np.full((1, 1, 3, 5, 4), 3)
    got = conv.run(values, RunContext({}))
    want = int_conv(conv, values) + conv.bias[None, None, :, None, None]
    np.testing.assert_array_equal(got, want)


# -- Neuron.run --------------------------------------------------------------------------------


def token_major(x):
    """(S, T, C, H, W) -> (S, T, N) with neuron (h * W + w) * C + c; loops."""
    s, t, c, h, w = x.shape
    out = np.zeros((s, t, h * w * c), x.dtype)
    for i in range(h):
        for j in range(w):
            for ch in range(c):
                out[:, :, (i * w + j) * c + ch] = x[:, :, ch, i, j]
    return out


def float_lif(neuron, x):
    """sw.lif_float.MultiStepLIF in float64 on the same integers: (spikes, membranes), each
    (S, T, N) token-major."""
    flat = token_major(x)
    tokens = neuron.height * neuron.width

    def per(v):
        return list(v) * neuron.channels if len(v) == 1 else list(v)

    v_th = torch.tensor(per(neuron.v_th) * tokens, dtype=torch.float64)
    bias = torch.tensor(per(neuron.bias) * tokens, dtype=torch.float64)
    lif = MultiStepLIF(tau=2.0, v_th=v_th, bias=bias, record_membrane=True).double()
    with torch.no_grad():
        spikes = lif(torch.tensor(flat, dtype=torch.float64).transpose(0, 1))
    return (spikes.transpose(0, 1).numpy().astype(np.uint8),
            lif.membranes.transpose(0, 1).numpy())


def assert_neuron(neuron, x, in_bits, spikes, membranes):
    """`spikes`, `membranes` (S, T, C, H, W) are lif_int's on the token-major flattening, and
    the float64 LIF's (the membrane in units of 2**-(param_frac + T))."""
    t = x.shape[1]
    cfg = neuron._config(in_bits, t)
    want_s, want_m = lif_int(cfg, token_major(x))
    np.testing.assert_array_equal(token_major(spikes), want_s)
    np.testing.assert_array_equal(token_major(membranes), want_m)
    fs, fm = float_lif(neuron, x)
    np.testing.assert_array_equal(token_major(spikes), fs)
    frac = neuron.param_frac + t
    np.testing.assert_array_equal(token_major(membranes).astype(np.float64) / 2.0 ** frac, fm)


PER_CHANNEL = Neuron(name="n", channels=3, height=2, width=3, v_th=(1.5, 0.25, 3.0625),
                     bias=(0.0, -0.5, 0.1875), param_frac=4, source="src")
UNIFORM = Neuron(name="u", channels=4, height=3, width=2, v_th=(8.0,), bias=(0.0,),
                 param_frac=0, source="src")


def neuron_inputs(neuron, samples, t, in_bits, seed):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    shape = (samples, t, neuron.channels, neuron.height, neuron.width)
    x = rng.integers(-3, 6, size=shape)
    extreme = rng.random(shape) < 0.1
    x = np.where(extreme, rng.integers(lo, hi + 1, size=shape), x)
    x[0, 0, 0, 0, :2] = [lo, hi]
    return x


@pytest.mark.parametrize("t", [1, 4])
@pytest.mark.parametrize("neuron", [PER_CHANNEL, UNIFORM], ids=["per-channel", "uniform"])
def test_neuron_equals_lif_int_and_float_lif(neuron, t):
    in_bits = 7
    ctx = RunContext({"src": in_bits}, record="full")
    x = neuron_inputs(neuron, 6, t, in_bits, seed=t)
    spikes = neuron.run(x, ctx)
    assert spikes.shape == x.shape and spikes.dtype == np.uint8
    tr = ctx.merged_traces()[neuron.name]
    np.testing.assert_array_equal(tr["inputs"], x)
    np.testing.assert_array_equal(tr["spikes"], spikes)
    assert 0 < spikes.mean() < 1
    assert_neuron(neuron, x, in_bits, spikes, tr["membranes"])
    cfg = neuron.config(ctx, t)
    assert cfg.frac_bits == neuron.param_frac + t and cfg.in_bits == in_bits
    assert cfg.channels == (1 if neuron is UNIFORM else neuron.channels)


def test_neuron_checker_fails_on_corrupted_expectation():
    ctx = RunContext({"src": 7}, record="full")
    x = neuron_inputs(PER_CHANNEL, 4, 4, 7, seed=9)
    spikes = PER_CHANNEL.run(x, ctx)
    membranes = ctx.merged_traces()["n"]["membranes"]
    with pytest.raises(AssertionError):
        assert_neuron(PER_CHANNEL, x, 7, corrupt(spikes), membranes)
    with pytest.raises(AssertionError):
        assert_neuron(PER_CHANNEL, x, 7, spikes, corrupt(membranes))
    # channels in the wrong order (channel-major flattening) are caught too
    swapped = dataclasses.replace(PER_CHANNEL, v_th=PER_CHANNEL.v_th[::-1])
    with pytest.raises(AssertionError):
        assert_neuron(swapped, x, 7, spikes, membranes)


# -- RunContext.observe --------------------------------------------------------------------------


def test_observe_counts():
    ctx = RunContext({"a": 8})                      # limit 127, near: |v| > 63
    ctx.observe("a", np.array([0, 63, 64, -64, 126, 127, -128, -127, 5]))
    assert ctx.stats["a"] == {"max": 128, "near": 6, "at_limit": 3, "count": 9}
    ctx.observe("a", np.array([[1, -2], [100, 3]]))
    assert ctx.stats["a"] == {"max": 128, "near": 7, "at_limit": 3, "count": 13}
    ctx.observe("a", np.zeros((0,), np.int64))
    assert ctx.stats["a"] == {"max": 128, "near": 7, "at_limit": 3, "count": 13}


def test_observe_default_width_and_small_widths():
    ctx = RunContext({"b": 2})                      # limit 1, near: |v| > 0
    ctx.observe("b", np.array([0, 1, -1, -2, 0]))
    assert ctx.stats["b"] == {"max": 2, "near": 3, "at_limit": 3, "count": 5}
    big = (1 << (WIDE_BITS - 1)) - 1
    ctx.observe("wide", np.array([big, big // 2, big // 2 + 1, -(big + 1), 7]))
    assert ctx.width("wide") == WIDE_BITS
    assert ctx.stats["wide"] == {"max": big + 1, "near": 3, "at_limit": 2, "count": 5}


def test_observe_checker_fails_on_corrupted_expectation():
    ctx = RunContext({"a": 8})
    ctx.observe("a", np.array([63, 64, 127]))
    want = {"max": 127, "near": 2, "at_limit": 1, "count": 3}
    assert ctx.stats["a"] == want
    for key in want:
        with pytest.raises(AssertionError):
            assert ctx.stats["a"] == {**want, key: want[key] + 1}


# -- a whole quantized network ---------------------------------------------------------------


@pytest.fixture(scope="module")
def net():
    model = stats_model(timesteps=2, images=64)
    return quantize(model, digits()[0][:64])


@pytest.fixture(scope="module")
def pixels(net):
    return net.to_input(digits()[2][:20])


def assert_same_run(a, b):
    """Two (scores, context) runs: identical scores, traces and statistics."""
    (sa, ca), (sb, cb) = a, b
    np.testing.assert_array_equal(sa, sb)
    ta, tb = ca.merged_traces(), cb.merged_traces()
    assert sorted(ta) == sorted(tb)
    for name in ta:
        assert sorted(ta[name]) == sorted(tb[name]), name
        for kind in ta[name]:
            x, y = ta[name][kind], tb[name][kind]
            assert x.dtype == y.dtype, (name, kind)
            np.testing.assert_array_equal(x, y, err_msg=f"{name}:{kind}")
    assert ca.stats == cb.stats


def run(net, pixels, batch):
    ctx = RunContext(net.widths, record="full")
    return net.run(pixels, ctx, batch=batch), ctx


def test_network_batches_give_the_same_run(net, pixels):
    small, whole = run(net, pixels, 7), run(net, pixels, 128)
    assert len(small[1].traces["head"]["scores"]) == 3        # 7 + 7 + 6: three batches
    assert small[0].shape == (20, 10) and small[0].dtype == np.int64
    assert_same_run(small, whole)
    # the network fires: spikes in every block
    traces = whole[1].merged_traces()
    for name in ("layers.1.lif1", "layers.2.lif", "layers.3.attn.q_lif", "layers.3.mlp.lif2"):
        assert traces[name]["spikes"].any(), name
    # and nothing saturated at the calibrated widths on these images
    assert all(s["at_limit"] == 0 for s in whole[1].stats.values())


def test_network_default_context_and_progress(net, pixels):
    calls = []
    scores = net.run(pixels, batch=8, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(8, 20), (16, 20), (20, 20)]
    np.testing.assert_array_equal(scores, run(net, pixels, 128)[0])
    empty = net.run(pixels[:0])
    assert empty.shape == (0, 10)


def test_same_run_checker_fails_on_corrupted_expectation(net, pixels):
    a, b = run(net, pixels[:7], 7), run(net, pixels[:7], 3)
    assert_same_run(a, b)
    slot = b[1].traces["layers.3.attn.sdsa"]["attention"]
    slot[0] = corrupt(slot[0])
    with pytest.raises(AssertionError):
        assert_same_run(a, b)
    with pytest.raises(AssertionError):
        assert_same_run(a, (corrupt(a[0]), a[1]))


def all_neurons(obj):
    """Every Neuron inside `obj`, depth first, in field order (independent of IntNetwork)."""
    if isinstance(obj, Neuron):
        return [obj]
    if isinstance(obj, IntNetwork):
        return [n for layer in [*obj.layers, obj.head] for n in all_neurons(layer)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [n for f in dataclasses.fields(obj) for n in all_neurons(getattr(obj, f.name))]
    return []


NEURON_NAMES = [
    "layers.1.sep.lif1", "layers.1.sep.lif2", "layers.1.lif1", "layers.1.lif2", "layers.2.lif",
    "layers.3.attn.head_lif", "layers.3.attn.q_lif", "layers.3.attn.k_lif",
    "layers.3.attn.v_lif", "layers.3.mlp.lif1", "layers.3.mlp.lif2", "head_lif",
]


def assert_neurons(found, want):
    assert [n.name for n in found] == [n.name for n in want]
    assert all(a is b for a, b in zip(found, want, strict=True))


def test_network_neurons_lists_every_neuron(net, pixels):
    found = net.neurons()
    assert_neurons(found, all_neurons(net))
    assert [n.name for n in found] == NEURON_NAMES
    # every LIF that runs is listed (the traces with membranes are exactly the neurons)
    _, ctx = run(net, pixels[:2], 128)
    ran = [name for name, kinds in ctx.merged_traces().items() if "membranes" in kinds]
    assert sorted(ran) == sorted(NEURON_NAMES)


def test_neurons_checker_fails_on_corrupted_expectation(net):
    found = net.neurons()
    with pytest.raises(AssertionError):
        assert_neurons(found, all_neurons(net)[:-1])
    with pytest.raises(AssertionError):
        assert_neurons(found, all_neurons(net)[::-1])
