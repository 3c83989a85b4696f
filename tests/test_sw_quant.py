"""The quantizer (`sw.quant`): option checks, the weight-scaling rules, calibration and widths,
float vs integer agreement, the first layer's pixels, and the command line `python -m sw.quant`.

Every property is checked by a `check_*` function that raises AssertionError; next to each one
a test feeds it a corrupted expectation and sees it fail, so no check passes vacuously. The
models are `quant_helpers.stats_model`s (seeded, BatchNorm statistics from digits images, neurons
that fire), built once per module; calibration and test sets are 32-64 images.
"""

import copy
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import CLI
from quant_helpers import digits, stats_model

import sw.quant as quant
from sw.int_model import WIDE_BITS, Conv, MultiBitConv, Producer, RunContext
from sw.lif_float import MultiStepLIF
from sw.model import MetaSpikeFormer, paper_config
from sw.quant import (
    QuantOptions,
    _neuron_weights,
    _stream_exponent,
    _stream_weights,
    build,
    choose_widths,
    evaluate_int,
    quantize,
    report,
    spike_agreement,
)
from sw.train import save_checkpoint

REPO = Path(__file__).resolve().parent.parent
PROG = "sw.quant"
CALIB = 64          # calibration images
TEST = 64           # test images for the float / integer comparisons
EPS = 1e-9          # float64 round-off in the checkers' own arithmetic


# -- shared models and networks -------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One BLAS / OpenMP / torch thread while this module runs: on shared cores the worker
    threads spin and make these small models and matrix products several times slower.
    (threadpoolctl comes with scikit-learn, a dependency.)"""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def model1():
    return stats_model(timesteps=1)


@pytest.fixture(scope="module")
def model2():
    return stats_model(timesteps=2)


@pytest.fixture(scope="module")
def net8_t1(model1, data):
    return quantize(model1, data[0][:CALIB])


@pytest.fixture(scope="module")
def net8_t2(model2, data):
    return quantize(model2, data[0][:CALIB])


OPTS16 = QuantOptions(w_bits=16, param_frac=10)


@pytest.fixture(scope="module")
def net16_t1(model1, data):
    return quantize(model1, data[0][:CALIB], OPTS16)


@pytest.fixture(scope="module")
def rep16_t1(model1, net16_t1, data):
    return report(model1, net16_t1, data[2][:TEST], data[3][:TEST])


@pytest.fixture(scope="module")
def rep8_t1(model1, net8_t1, data):
    return report(model1, net8_t1, data[2][:TEST], data[3][:TEST])


@pytest.fixture(scope="module")
def rep8_t2(model2, net8_t2, data):
    return report(model2, net8_t2, data[2][:TEST], data[3][:TEST])


# -- 1. QuantOptions ------------------------------------------------------------------------------


def test_default_options():
    opts = QuantOptions()
    assert (opts.w_bits, opts.param_frac, opts.margin_bits, opts.max_extra_shift) == (8, 4, 1, 6)
    assert opts.qmax == 127
    assert QuantOptions(w_bits=2).qmax == 1 and QuantOptions(w_bits=16).qmax == 32767


def test_w_bits_1_says_two_bits_are_the_fewest():
    with pytest.raises(ValueError) as info:
        QuantOptions(w_bits=1)
    assert str(info.value) == ("w_bits must be an integer from 2 to 16, not 1 (2 bits are the "
                               "fewest that represent a nonzero weight)")


def test_the_fewest_bits_note_is_only_for_too_few_bits():
    assert "2 bits are the fewest" in str(pytest.raises(ValueError, QuantOptions, w_bits=0).value)
    assert "2 bits are the fewest" in str(pytest.raises(ValueError, QuantOptions,
                                                        w_bits=np.int64(1)).value)
    for value in (17, 8.0, 1.0, True, False, "1", None):
        with pytest.raises(ValueError) as info:
            QuantOptions(w_bits=value)
        assert str(info.value) == f"w_bits must be an integer from 2 to 16, not {value!r}"


def test_numpy_integers_are_accepted():
    opts = QuantOptions(w_bits=np.int64(8), param_frac=np.int32(4), margin_bits=np.uint8(1),
                        max_extra_shift=np.int16(6), input_bits=np.int64(5))
    assert opts.qmax == 127 and opts == QuantOptions()
    assert QuantOptions(w_bits=np.uint16(16)).qmax == 32767
    # numpy floats and booleans are no more integers than Python's
    for name, value in (("w_bits", np.float64(8.0)), ("param_frac", np.bool_(True)),
                        ("input_bits", np.int64(17))):
        with pytest.raises(ValueError, match=rf"^{name} must be an integer from "):
            QuantOptions(**{name: value})


@pytest.mark.parametrize("name, value", [
    ("w_bits", 17), ("w_bits", 0), ("w_bits", True), ("w_bits", 8.0), ("w_bits", "8"),
    ("w_bits", None), ("param_frac", -1), ("param_frac", 13), ("param_frac", False),
    ("param_frac", 4.5), ("margin_bits", -1), ("margin_bits", 9), ("margin_bits", True),
    ("max_extra_shift", 13), ("max_extra_shift", -1), ("input_bits", 0), ("input_bits", 17),
    ("input_bits", 5.0),
])
def test_bad_option_values_name_the_option(name, value):
    with pytest.raises(ValueError) as info:
        QuantOptions(**{name: value})
    assert str(info.value).startswith(f"{name} must be an integer from ")
    assert f", not {value!r}" in str(info.value)


@pytest.mark.parametrize("scale", [0, -1 / 16, float("nan")])
def test_input_scale_must_be_positive(scale):
    with pytest.raises(ValueError, match=r"^input_scale must be positive, not "):
        QuantOptions(input_scale=scale)


@pytest.mark.parametrize("name, lo, hi", [
    ("w_bits", 2, 16), ("param_frac", 0, 12), ("margin_bits", 0, 8), ("max_extra_shift", 0, 12),
    ("input_bits", 1, 16),
])
def test_option_ranges_are_inclusive(name, lo, hi):
    assert getattr(QuantOptions(**{name: lo}), name) == lo
    assert getattr(QuantOptions(**{name: hi}), name) == hi


# -- 2. weights of a convolution feeding a LIF ----------------------------------------------------


def check_neuron_weights(w, b, opts, w_int, theta, bias, xs):
    """The rule of `_neuron_weights` on float weights `w` (out, ...) and biases `b`.

    For spikes x (0 or 1 per input) the integer neuron input is `W_int x + bias` and the float
    one, in the same units, `theta (W x + b)`. With `W_int = round(theta W)` and
    `bias = round(theta b)` to 2**-param_frac, each spike adds at most 1/2 of rounding and the
    bias at most 2**-(param_frac + 1), so per sample

        |W_int x + bias - theta (W x + b)| <= sum(x) / 2 + 2**-(param_frac + 1)
    """
    unit = 1 << opts.param_frac
    w2 = np.asarray(w, np.float64).reshape(len(w), -1)
    wi = np.asarray(w_int).reshape(len(w), -1)
    theta, bias, b = (np.asarray(a, np.float64) for a in (theta, bias, b))
    amax = np.abs(w2).max(axis=1)
    assert wi.shape == w2.shape and theta.shape == bias.shape == (len(w),), "shapes"
    assert np.issubdtype(wi.dtype, np.integer), "integer weights"
    assert np.abs(wi).max() <= opts.qmax, "|W_int| <= qmax"
    assert np.all(theta > 0) and np.array_equal(theta * unit, np.round(theta * unit)), \
        "theta is a positive multiple of 2**-param_frac"
    nz = amax > 0
    assert np.all(theta[~nz] == 1.0), "an all-zero row has theta 1"
    # (at the smallest theta, 2**-param_frac, the largest weight may round down to qmax from
    # up to qmax + 1/2; beyond that _neuron_weights refuses)
    smallest = theta[nz] == 1 / unit
    assert np.all(amax[nz] * theta[nz] <= opts.qmax + np.where(smallest, 0.5, 0) + EPS), \
        "theta keeps W theta within qmax"
    assert np.all(amax[nz] * (theta[nz] + 1 / unit) > opts.qmax), \
        "theta is the largest multiple of 2**-param_frac that fits"
    assert np.array_equal(bias * unit, np.round(bias * unit)), \
        "bias is a multiple of 2**-param_frac"
    assert np.all(np.abs(bias - b * theta) <= 0.5 / unit + EPS), "bias = round(b theta)"
    # hence theta amax > qmax - amax / unit: the row's largest integer weight is close to qmax
    assert np.all(np.abs(wi[nz]).max(axis=1) >= opts.qmax - amax[nz] / unit - 0.5), \
        "the row max reaches qmax"
    xs = np.asarray(xs, np.float64)
    got = xs @ wi.T.astype(np.float64) + bias
    want = theta * (xs @ w2.T + b)
    bound = xs.sum(axis=1, keepdims=True) / 2 + 0.5 / unit + EPS * (1 + np.abs(want))
    assert np.all(np.abs(got - want) <= bound), "W_int x + bias = theta (W x + b) up to rounding"


HAND_W = np.array([[0.5, -0.25, 0.1, 0.0],
                   [0.0, 0.0, 0.0, 0.0],
                   [-3.0, 1.0, 2.0, 0.7],
                   [1 / 512, -1 / 256, 0.0, 1 / 1024]])
HAND_B = np.array([0.3, -0.7, 1.234, 0.01])


def spike_inputs(fan_in, count=200, seed=0):
    rng = np.random.default_rng(seed)
    xs = (rng.random((count, fan_in)) < rng.random((count, 1))).astype(np.float64)
    xs[0], xs[1] = 0, 1                  # no spike, every input spiking
    return xs


def test_neuron_weights_by_hand():
    opts = QuantOptions(w_bits=8, param_frac=4)
    w_int, theta, bias = _neuron_weights(HAND_W, HAND_B, opts)
    # 127 / 0.5 = 254; zero row -> 1; 127 / 3 = 42.33 -> 677 / 16; 127 * 256 = 32512
    assert theta == (254.0, 1.0, 677 / 16, 32512.0)
    # -63.5 and 63.5 round to even; 0.7 * 42.3125 = 29.62 -> 30
    assert w_int.tolist() == [[127, -64, 25, 0], [0, 0, 0, 0], [-127, 42, 85, 30],
                              [64, -127, 0, 32]]
    # 0.3 * 254 = 76.2 -> 76.1875; -0.7 -> -0.6875; 1.234 * 42.3125 = 52.21 -> 52.1875;
    # 0.01 * 32512 = 325.12 -> 325.125
    assert bias == (76.1875, -0.6875, 52.1875, 325.125)
    check_neuron_weights(HAND_W, HAND_B, opts, w_int, theta, bias, spike_inputs(4))


@pytest.mark.parametrize("w_bits, param_frac", [(2, 4), (4, 2), (8, 4), (8, 0), (12, 8),
                                                (16, 10)])
def test_neuron_weights_random_conv(w_bits, param_frac):
    opts = QuantOptions(w_bits=w_bits, param_frac=param_frac)
    rng = np.random.default_rng(w_bits * 100 + param_frac)
    scales = 10.0 ** rng.uniform(-2, -0.1, size=(6, 1, 1, 1))    # row maxima ~0.01 to 3
    w = rng.normal(size=(6, 3, 3, 3)) * scales
    w[2] = 0.0
    b = rng.normal(size=6)
    w_int, theta, bias = _neuron_weights(w, b, opts)
    assert w_int.shape == w.shape
    check_neuron_weights(w, b, opts, w_int, theta, bias, spike_inputs(27, seed=w_bits))


def test_neuron_weights_check_fails_on_corrupted_results():
    opts = QuantOptions(w_bits=8, param_frac=4)
    xs = spike_inputs(4)
    w_int, theta, bias = _neuron_weights(HAND_W, HAND_B, opts)
    good = dict(w_int=w_int, theta=theta, bias=bias)
    cases = [
        (dict(w_int=np.where(w_int == 127, 128, w_int)), "qmax"),
        (dict(w_int=-w_int), "up to rounding"),
        (dict(w_int=w_int * 0), "row max"),
        (dict(theta=(254.03, 1.0, 677 / 16, 32512.0)), "multiple of"),
        (dict(theta=(254.0, 2.0, 677 / 16, 32512.0)), "all-zero row"),
        (dict(theta=(254.0625, 1.0, 677 / 16, 32512.0)), "within qmax"),
        (dict(theta=(253.0, 1.0, 677 / 16, 32512.0)), "largest multiple"),
        (dict(bias=(76.25, -0.6875, 52.1875, 325.125)), r"round\(b theta\)"),
        (dict(bias=(76.2, -0.6875, 52.1875, 325.125)), "bias is a multiple"),
    ]
    for change, message in cases:
        args = {**good, **change}
        with pytest.raises(AssertionError, match=message):
            check_neuron_weights(HAND_W, HAND_B, opts, args["w_int"], args["theta"],
                                 args["bias"], xs)


def test_neuron_weights_exactness_bound_is_tight_enough_to_fail():
    """Off by one integer weight, the spike-sum identity breaks for an input that uses it."""
    opts = QuantOptions(w_bits=8, param_frac=4)
    w_int, theta, bias = _neuron_weights(HAND_W, HAND_B, opts)
    bad = w_int.copy()
    bad[2, 3] += 1                       # 30 -> 31 for 29.62: off by 1.38 on that input
    with pytest.raises(AssertionError, match="up to rounding"):
        check_neuron_weights(HAND_W, HAND_B, opts, bad, theta, bias, np.eye(4))


def test_neuron_weights_never_clip_silently():
    opts = QuantOptions(w_bits=2, param_frac=0)
    w, b = np.array([[3.0, -1.0]]), np.array([0.3])
    try:
        w_int, theta, bias = _neuron_weights(w, b, opts)
    except ValueError:
        return                            # refusing is fine
    assert np.all(np.abs(w_int - w * np.array(theta)[:, None]) <= 0.5)


def test_neuron_weights_refuse_weights_beyond_w_bits():
    """theta = 2**-param_frac is the smallest: a weight beyond (qmax + 1/2) 2**param_frac is
    refused, naming the layer; one just within it is kept."""
    w, b = np.array([[3.0, -1.0], [0.5, 0.25]]), np.array([0.3, 0.0])
    with pytest.raises(ValueError, match=(
            r"^w_bits 2 is too small for layers\.9\.lif: its weights reach 3, which even the "
            r"smallest threshold 2\*\*-0 cannot bring within \+-1; raise --w-bits or "
            r"--param-frac$")):
        _neuron_weights(w, b, QuantOptions(w_bits=2, param_frac=0), name="layers.9.lif")
    with pytest.raises(ValueError, match=(
            r"^w_bits 3 is too small for a layer: its weights reach 7\.5, which even the "
            r"smallest threshold 2\*\*-1 cannot bring within \+-3; ")):
        _neuron_weights(w * 2.5, b, QuantOptions(w_bits=3, param_frac=1))    # 7.5 / 2 > 3.5
    # 3 / 2 = 1.5 = qmax + 1/2 is kept: theta 1/2, and 1.5 becomes 1, half a step off
    opts = QuantOptions(w_bits=2, param_frac=1)
    w_int, theta, bias = _neuron_weights(w, b, opts)
    assert theta == (0.5, 2.0) and w_int.tolist() == [[1, 0], [1, 0]] and bias == (0.0, 0.0)
    check_neuron_weights(w, b, opts, w_int, theta, bias, spike_inputs(2))


# -- 3. weights of a layer writing into a residual stream ----------------------------------------


def check_stream_weights(w, b, e, opts, w_int, shift, bias, rounding):
    """`W_int * 2**(shift - e)` approximates `w` within half a step per weight, every nonzero
    row's step is the finest power of two that fits `w_bits` (unless its shift is at an end of
    -24 .. 15), a negative shift comes with the rounding bias `2**(-shift - 1)` (else 0), and
    biases are in stream units."""
    w2 = np.asarray(w, np.float64).reshape(len(w), -1)
    wi = np.asarray(w_int).reshape(len(w), -1)
    shift, rounding = np.asarray(shift), np.asarray(rounding)
    assert wi.shape == w2.shape and shift.shape == rounding.shape == (len(w),), "shapes"
    assert np.issubdtype(shift.dtype, np.integer) and np.all(shift >= -24) and \
        np.all(shift <= 15), "shifts within -24 .. 15"
    assert np.abs(wi).max() <= opts.qmax, "|W_int| <= qmax"
    step = np.exp2(shift.astype(np.float64) - e)[:, None]
    assert np.all(np.abs(wi * step - w2) <= step / 2 * (1 + EPS)), "within half a step"
    amax = np.abs(w2).max(axis=1)
    finer = (amax > 0) & (shift > -24) & (shift < 15)
    assert np.all(amax[finer] / (step[finer, 0] / 2) > opts.qmax), \
        "the step is the finest that fits"
    assert np.issubdtype(rounding.dtype, np.integer) and np.array_equal(
        rounding, [1 << (-int(s) - 1) if s < 0 else 0 for s in shift]), \
        "rounding 2**(-shift - 1) for a negative shift, else 0"
    assert np.array_equal(np.asarray(bias), np.rint(np.asarray(b) * 2.0 ** e)), \
        "bias in stream units"


HAND_S = np.array([[127 * 2.0 ** -5, -2.0, 0.01],
                   [127 * 2.0 ** -10, 1e-4, -0.05],
                   [0.0, 0.0, 0.0]])
HAND_SB = np.array([0.3, -1 / 3, 0.0])


def test_stream_weights_by_hand():
    opts = QuantOptions(w_bits=8)
    w_int, shift, bias, rounding = _stream_weights(HAND_S, HAND_SB, 8, opts)
    # row 0: scale 2**-5 fits exactly -> shift 3; row 1: scale 2**-10, finer than the stream
    # -> shift -2 (a right shift by 2, rounding bias 2); row 2 (zeros) -> 0
    assert shift.tolist() == [3, -2, 0]
    # row 1: 0.05 * 1024 = 51.2 -> -51; 1e-4 * 1024 = 0.1 -> 0
    assert w_int.tolist() == [[127, -64, 0], [127, 0, -51], [0, 0, 0]]
    assert bias.tolist() == [77, -85, 0]
    assert rounding.tolist() == [0, 2, 0]
    check_stream_weights(HAND_S, HAND_SB, 8, opts, w_int, shift, bias, rounding)


def test_stream_weights_at_the_ends_of_the_shift_range():
    """A row that would need a shift below -24 gets -24 (coarser than the finest step, but its
    weights still within half a step); a row exactly at qmax * 2**(15 - e) gets 15."""
    opts = QuantOptions(w_bits=8)
    w = np.array([[127 * 2.0 ** -40, 0.0], [127 * 2.0 ** 7, -1.0]])
    w_int, shift, bias, rounding = _stream_weights(w, np.zeros(2), 8, opts)
    assert shift.tolist() == [-24, 15]
    assert w_int.tolist() == [[0, 0], [127, 0]]
    assert rounding.tolist() == [1 << 23, 0]
    check_stream_weights(w, np.zeros(2), 8, opts, w_int, shift, bias, rounding)


def test_stream_weights_never_clip_silently():
    opts = QuantOptions(w_bits=8)
    w = np.array([[127 * 2.0 ** 16, 1.0]])
    with pytest.raises(ValueError, match="left shift above 15"):
        _stream_weights(w, np.zeros(1), 0, opts)


@pytest.mark.parametrize("w_bits, seed", [(2, 3), (4, 6), (8, 10), (8, 14), (16, 20)])
def test_stream_weights_random(w_bits, seed):
    """Row scales over 3 decades (10 bits): with max_extra_shift 6 the finest rows are finer
    than the stream (negative shifts), the coarsest ones coarser (positive)."""
    opts = QuantOptions(w_bits=w_bits)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(8, 4, 3, 3)) * 10.0 ** np.linspace(-3, 0, 8).reshape(8, 1, 1, 1)
    w[5] = 0
    b = rng.normal(size=8)
    e = _stream_exponent([w], opts)          # as a stream written by this layer alone
    check_stream_exponent([w], opts, e)
    w_int, shift, bias, rounding = _stream_weights(w, b, e, opts)
    assert w_int.shape == w.shape
    assert shift[0] < 0 and shift[-1] > 0 and shift[5] == 0
    check_stream_weights(w, b, e, opts, w_int, shift, bias, rounding)
    for other in (e - 2, e + 3):             # any stream scale: the same rules
        w_int, shift, bias, rounding = _stream_weights(w, b, other, opts)
        check_stream_weights(w, b, other, opts, w_int, shift, bias, rounding)


def test_stream_weights_check_fails_on_corrupted_results():
    opts = QuantOptions(w_bits=8)
    w_int, shift, bias, rounding = _stream_weights(HAND_S, HAND_SB, 8, opts)
    cases = [
        (dict(shift=np.array([3, -25, 0]), rounding=np.array([0, 1 << 24, 0])),
         "within -24 .. 15"),
        (dict(shift=np.array([16, -2, 0])), "within -24 .. 15"),
        (dict(shift=shift - 1), "half a step"),
        (dict(shift=shift + 1), "half a step"),
        (dict(w_int=w_int + np.array([[0], [0], [1]])), "half a step"),
        (dict(w_int=np.where(w_int == 127, 128, w_int)), "qmax"),
        (dict(bias=bias + 1), "stream units"),
        (dict(rounding=np.array([0, 4, 0])), "rounding"),      # 2**-shift: twice too large
        (dict(rounding=np.array([0, 0, 0])), "rounding"),      # a floor, not to nearest
        (dict(rounding=np.array([1, 2, 1])), "rounding"),      # a bias without a right shift
        (dict(rounding=np.array([0.0, 2.0, 0.0])), "rounding"),
    ]
    for change, message in cases:
        args = {"w_int": w_int, "shift": shift, "bias": bias, "rounding": rounding, **change}
        with pytest.raises(AssertionError, match=message):
            check_stream_weights(HAND_S, HAND_SB, 8, opts, args["w_int"], args["shift"],
                                 args["bias"], args["rounding"])
    # a step twice too coarse still approximates within half a step (of itself) but is not
    # the finest: the weights fit at the next finer shift. The old rule's floor at shift 0
    # (row 1 at scale 2**-8 instead of 2**-10) is no longer accepted either.
    for coarse in ([4, -2, 0], [3, -1, 0], [3, 0, 0]):
        coarse = np.array(coarse)
        coarse_int = np.rint(HAND_S / np.exp2(coarse - 8)[:, None]).astype(np.int64)
        coarse_rounding = np.where(coarse < 0, 2 ** np.maximum(-coarse - 1, 0), 0)
        check_args = (coarse_int, coarse, bias, coarse_rounding)
        with pytest.raises(AssertionError, match="finest"):
            check_stream_weights(HAND_S, HAND_SB, 8, opts, *check_args)


def check_stream_exponent(weights, opts, e):
    """2**-e is the coarsest power of two at most every producer row's ideal scale (the finest
    row keeps all its levels), unless that is more than `max_extra_shift` below the coarsest
    row's; never negative (a LIF reading the stream has the integer threshold 2**e), so 0 when
    the rules would give less; no nonzero row: 0."""
    ideal = np.concatenate([np.abs(np.asarray(w).reshape(len(w), -1)).max(axis=1) / opts.qmax
                            for w in weights])
    ideal = ideal[ideal > 0]
    assert isinstance(e, int), "an integer exponent"
    assert e >= 0, "never negative"
    if not ideal.size:
        assert e == 0, "all-zero producers give 0"
        return
    cap = math.ceil(-math.log2(ideal.max())) + opts.max_extra_shift
    assert e <= max(cap, 0), "at most max_extra_shift below the coarsest"
    assert 2.0 ** -e <= ideal.min() or e >= cap, "fine enough for the finest row"
    assert 2.0 ** -(e - 1) > ideal.min() or e == 0, "no finer than needed"


def hand_producers():
    a = np.array([[127 * 2.0 ** -5, 0.0], [0.0, -127 * 2.0 ** -7]])      # ideal 2**-5, 2**-7
    b = np.zeros((2, 1, 3, 3))
    b[0, 0, 1, 1] = 127 * 2.0 ** -9                                      # ideal 2**-9
    return [a, b]                                                        # b[1]: zero row


@pytest.mark.parametrize("extra, want", [(6, 9), (4, 9), (3, 8), (0, 5)])
def test_stream_exponent_by_hand(extra, want):
    opts = QuantOptions(max_extra_shift=extra)
    e = _stream_exponent(hand_producers(), opts)
    assert e == want
    check_stream_exponent(hand_producers(), opts, e)


def test_stream_exponent_rounds_up_to_a_power_of_two():
    w = [np.array([[0.127], [1.27]])]                   # ideal 0.001 -> 2**-10, 0.01 -> 2**-7
    assert _stream_exponent(w, QuantOptions()) == 10
    check_stream_exponent(w, QuantOptions(), 10)
    assert _stream_exponent(w, QuantOptions(max_extra_shift=2)) == 9


def test_stream_exponent_of_all_zero_producers_is_0():
    w = [np.zeros((2, 3)), np.zeros((1, 4, 3, 3))]
    assert _stream_exponent(w, QuantOptions()) == 0
    check_stream_exponent(w, QuantOptions(), 0)
    with pytest.raises(AssertionError, match="all-zero"):
        check_stream_exponent(w, QuantOptions(), 1)


def test_stream_exponent_is_never_negative():
    """Rows coarser than 1 (ideal 3 -> e -1) or a cap below 0 (ideal 4, max_extra_shift 0 ->
    -2) give 0."""
    w = [np.array([[3.0 * 127]])]
    assert _stream_exponent(w, QuantOptions()) == 0
    check_stream_exponent(w, QuantOptions(), 0)
    w = [np.array([[4.0 * 127], [0.25 * 127]])]
    opts = QuantOptions(max_extra_shift=0)
    assert _stream_exponent(w, opts) == 0
    check_stream_exponent(w, opts, 0)
    with pytest.raises(AssertionError, match="never negative"):
        check_stream_exponent(w, opts, -2)
    # with room below the coarsest row the finest one sets e as before
    assert _stream_exponent(w, QuantOptions(max_extra_shift=4)) == 2
    check_stream_exponent(w, QuantOptions(max_extra_shift=4), 2)


def test_stream_exponent_check_fails_on_corrupted_results():
    w = hand_producers()
    with pytest.raises(AssertionError, match="never negative"):
        check_stream_exponent([np.array([[3.0 * 127]])], QuantOptions(), -1)
    with pytest.raises(AssertionError, match="no finer than needed"):
        check_stream_exponent(w, QuantOptions(), 10)
    with pytest.raises(AssertionError, match="fine enough"):
        check_stream_exponent(w, QuantOptions(), 8)
    with pytest.raises(AssertionError, match="below the coarsest"):
        check_stream_exponent(w, QuantOptions(max_extra_shift=3), 9)
    with pytest.raises(AssertionError, match="an integer"):
        check_stream_exponent(w, QuantOptions(), 9.0)


def test_stream_thresholds_are_integers_even_for_large_weights(model1, data):
    model = copy.deepcopy(model1)
    with torch.no_grad():                 # stage 1's producers: weights 30 times larger
        for bn in (model.layers[2].bn, model.layers[3].attn.proj[1], model.layers[3].mlp.bn2):
            bn.weight.mul_(30)
            bn.bias.mul_(30)
    opts = QuantOptions(w_bits=2)
    net = build(model, opts)
    for n in net.neurons():
        if n.source.endswith(".stream"):
            assert n.v_th[0] >= 1 and float(n.v_th[0]).is_integer(), (n.name, n.v_th)
    quantize(model, data[0][:8], opts)


# -- the built network: every layer follows the rules ---------------------------------------------


def producers_and_convs(net):
    """(producers, spike-fed convs, multi-bit convs) of the network, in order."""
    prods, convs, multi = [], [], []
    for layer in net.layers:
        for value in vars(layer).values():
            conv = value.conv if isinstance(value, Producer) else value
            if isinstance(value, Producer):
                prods.append(value)
            if isinstance(conv, MultiBitConv):
                multi.append(conv)
            elif isinstance(conv, Conv):
                convs.append(conv)
    return prods, convs + [net.head.fc], multi


def check_producer_rounding(net):
    """A producer's convolution has a bias exactly when one of its shifts is negative: the
    rounding `2**(-shift - 1)` on those channels, 0 on the others."""
    prods, _, _ = producers_and_convs(net)
    for p in prods:
        shift = np.asarray(p.shift)
        assert np.issubdtype(shift.dtype, np.integer), f"{p.conv.name}: integer shifts"
        assert shift.min() >= -24 and shift.max() <= 15, f"{p.conv.name}: shifts -24 .. 15"
        if (shift >= 0).all():
            assert p.conv.bias is None, f"{p.conv.name}: no bias without a right shift"
        else:
            want = [1 << (-int(k) - 1) if k < 0 else 0 for k in shift]
            assert p.conv.bias is not None and np.array_equal(p.conv.bias, want), \
                f"{p.conv.name}: the rounding bias"


def right_shifted(net):
    prods, _, _ = producers_and_convs(net)
    return [p.conv.name for p in prods if (np.asarray(p.shift) < 0).any()]


@pytest.fixture(scope="module")
def model_fine(model1):
    """model1 with its MLP's second 1x1 convolution 2**10 times smaller: finer than the stream's
    other producers by more than max_extra_shift, so its shifts are negative (right shifts,
    with a rounding bias in the spike-fed convolution)."""
    model = copy.deepcopy(model1)
    with torch.no_grad():
        model.layers[3].mlp.bn2.weight.mul_(2.0 ** -10)
        model.layers[3].mlp.bn2.bias.mul_(2.0 ** -10)
    return model


@pytest.fixture(scope="module")
def net8_fine(model_fine, data):
    return quantize(model_fine, data[0][:CALIB])


@pytest.mark.parametrize("which, opts, shifted_right", [
    ("model1", QuantOptions(), []),
    ("model1", OPTS16, ["layers.1.sep.pw2"]),
    ("model1", QuantOptions(w_bits=4, param_frac=2), []),
    ("model_fine", QuantOptions(), ["layers.3.mlp.fc2"]),
], ids=["w8", "w16", "w4", "w8-fine-fc2"])
def test_built_network_follows_the_rules(request, which, opts, shifted_right):
    net = build(request.getfixturevalue(which), opts)
    unit = 1 << opts.param_frac
    exps = net.info["stream_exponents"]
    assert set(exps) == {"stage0.stream", "stage1.stream"}
    assert all(isinstance(v, int) and v >= 0 for v in exps.values())
    prods, convs, multi = producers_and_convs(net)
    assert [p.conv.name for p in prods] == [
        "layers.0.conv", "layers.1.sep.pw2", "layers.1.conv2", "layers.2.conv",
        "layers.3.attn.proj", "layers.3.mlp.fc2"]
    assert [c.name for c in multi] == ["layers.0.conv", "layers.1.sep.pw2"]
    for conv in convs + multi:
        assert np.abs(conv.weight).max() <= opts.qmax, conv.name
        assert conv.w_bits == opts.w_bits
    check_producer_rounding(net)
    assert right_shifted(net) == shifted_right
    for n in net.neurons():
        if n.source.endswith(".stream"):            # the stream's 1.0 is 2**e
            assert n.v_th == (2.0 ** exps[n.source],)
            assert n.param_frac == 0
        elif n.name == "head_lif":                  # tokens x the stream's 1.0
            assert n.v_th == (64 * 2.0 ** exps["stage1.stream"],)
        else:
            assert n.param_frac == opts.param_frac and n.source.endswith(".acc")
            assert all(v > 0 and (v * unit).is_integer() for v in n.v_th), n.name
            assert all((v * unit).is_integer() for v in n.bias), n.name
    assert net.timesteps == 1 and net.input_bits == 5 and net.input_scale == 1 / 16


def test_producer_rounding_check_fails_on_corrupted_networks(model1, model_fine):
    net = build(model_fine, QuantOptions())
    fc2 = net.layers[3].fc2

    def with_fc2(**change):
        layer = dataclasses.replace(net.layers[3], fc2=dataclasses.replace(fc2, **change))
        return dataclasses.replace(net, layers=[*net.layers[:3], layer])

    conv = fc2.conv
    for bad, message in [
        (dict(conv=dataclasses.replace(conv, bias=None)), "the rounding bias"),
        (dict(conv=dataclasses.replace(conv, bias=conv.bias * 2)), "the rounding bias"),
        (dict(conv=dataclasses.replace(conv, bias=conv.bias - 1)), "the rounding bias"),
        (dict(shift=np.full_like(fc2.shift, -25)), "shifts -24 .. 15"),
        (dict(shift=-fc2.shift), "no bias without a right shift"),
    ]:
        with pytest.raises(AssertionError, match=message):
            check_producer_rounding(with_fc2(**bad))
    # a right shift on the 16-bit SepConv 1x1 without its rounding bias
    net16 = build(model1, OPTS16)
    pw2 = net16.layers[1].sep_pw2
    layer = dataclasses.replace(net16.layers[1], sep_pw2=dataclasses.replace(
        pw2, conv=dataclasses.replace(pw2.conv, bias=None)))
    with pytest.raises(AssertionError, match="the rounding bias"):
        check_producer_rounding(dataclasses.replace(net16, layers=[
            net16.layers[0], layer, *net16.layers[2:]]))


def check_branch_rounds_to_nearest(prod, spikes):
    """A 1x1 producer's branch (before any residual) on `spikes` is `acc * 2**shift + bias`
    rounded to nearest, halves up, where `acc` is the sum of its integer weights over the
    spikes (a float64 product here, exact at these sizes)."""
    conv, shift = prod.conv, np.asarray(prod.shift, np.float64)
    got = prod.run(spikes, RunContext({}))
    w = conv.weight.reshape(conv.out_channels, conv.in_channels).astype(np.float64)
    acc = np.einsum("oc,stchw->stohw", w, spikes.astype(np.float64))
    exact = acc * np.exp2(shift)[:, None, None] + np.asarray(prod.bias)[:, None, None]
    err = got - exact
    assert np.all((err > -0.5) & (err <= 0.5)), "rounded to nearest"
    assert np.array_equal(got, np.floor(exact + 0.5)), "halves up"
    return got, exact


def fc2_spikes(prod, seed=5):
    rng = np.random.default_rng(seed)
    shape = (6, 1, prod.conv.in_channels, prod.conv.height, prod.conv.width)
    return (rng.random(shape) < 0.4).astype(np.uint8)


def test_right_shifting_producer_rounds_to_nearest(net8_fine):
    """The fine model's MLP 1x1: its convolution's rounding bias makes the right shift round
    to nearest; a floor would be off by up to 1, on average by about 1/2."""
    fc2 = net8_fine.layers[3].fc2
    assert (np.asarray(fc2.shift) < 0).all()
    got, exact = check_branch_rounds_to_nearest(fc2, fc2_spikes(fc2))
    assert (got != np.floor(exact)).mean() > 0.2 and abs((got - exact).mean()) < 0.15


def test_rounding_check_fails_without_the_rounding_bias(net8_fine):
    fc2 = net8_fine.layers[3].fc2
    floor = dataclasses.replace(fc2, conv=dataclasses.replace(fc2.conv, bias=None))
    with pytest.raises(AssertionError, match="rounded to nearest"):
        check_branch_rounds_to_nearest(floor, fc2_spikes(fc2))
    # half the rounding bias: rounds to nearest only where the remainder is far from 1/2
    half = dataclasses.replace(fc2, conv=dataclasses.replace(fc2.conv, bias=fc2.conv.bias // 2))
    with pytest.raises(AssertionError, match="rounded to nearest"):
        check_branch_rounds_to_nearest(half, fc2_spikes(fc2))


def test_stream_producers_keep_their_weight_levels_at_16_bits(model1):
    """Every producer uses at least half of its 16-bit range: the stream scale is fine enough
    for it, or its shift is negative (the SepConv's 1x1, finer than the stream)."""
    net = build(model1, OPTS16)
    prods, _, _ = producers_and_convs(net)
    for p in prods:
        assert 2 * np.abs(p.conv.weight).max() >= OPTS16.qmax, p.conv.name


def test_sepconv_pw2_keeps_its_weight_levels_at_16_bits(model1):
    net = build(model1, OPTS16)
    pw2 = net.layers[1].sep_pw2.conv
    assert 2 * np.abs(pw2.weight).max() >= OPTS16.qmax


# -- 4. calibration and widths --------------------------------------------------------------------


def required_width_keys(net):
    """Every quantity whose width the integer network reads: stream, accumulator of a
    spike-fed convolution, head sum, and every LIF's and multi-bit convolution's input."""
    prods, convs, multi = producers_and_convs(net)
    keys = {p.stream for p in prods} | {c.key for c in convs} | {net.head.key}
    keys |= {n.source for n in net.neurons()} | {c.source for c in multi if c.source}
    return keys


def check_widths(net, opts):
    widths = net.widths
    assert set(widths) == required_width_keys(net), "a width for every stream / acc key"
    assert all(isinstance(w, int) and 2 <= w <= WIDE_BITS for w in widths.values()), \
        "widths are integers from 2 to WIDE_BITS"
    for key, w in widths.items():
        if key.endswith(".acc"):
            assert w >= opts.w_bits + 1, f"{key}: an accumulator holds a weight"
    for key, bits in bias_bits(net).items():
        assert widths[key] >= bits, f"{key}: the acc holds its bias"


def bias_bits(net):
    """The signed width of each spike-fed convolution's bias (the head's, and a right-shifting
    producer's rounding), by its acc key."""
    _, convs, _ = producers_and_convs(net)
    return {c.key: int(np.abs(c.bias).max()).bit_length() + 1 for c in convs
            if c.bias is not None}


def check_calibration(net, opts):
    """Each width is the least holding its calibration maximum, plus `margin_bits` (raised to
    `w_bits + 1` for accumulators); nothing saturated in calibration; with a margin no value
    came within a factor 2 of its limit, without one at least one did."""
    calib = net.info["calibration"]
    assert set(calib) == set(net.widths), "statistics for every width"
    assert net.info["calibration_images"] == CALIB
    near_any = False
    for key, s in calib.items():
        w = net.widths[key]
        limit = (1 << (w - 1)) - 1
        least = int(s["max"]).bit_length() + 1
        floor = max(opts.w_bits + 1, bias_bits(net).get(key, 0)) if key.endswith(".acc") \
            else 2
        assert w == max(least + opts.margin_bits, floor), \
            f"{key}: width {w} for max {s['max']}"
        assert s["max"] <= limit and s["count"] > 0, f"{key}: fits"
        if opts.margin_bits >= 1:
            assert s["near"] == 0 and s["at_limit"] == 0, f"{key}: no value near the limit"
        elif w == least:
            assert s["near"] >= 1, f"{key}: the largest value is within a factor 2"
        near_any |= s["near"] > 0
    assert near_any == (opts.margin_bits == 0), "near values only without a margin"


def check_sized_equals_wide(net, pixels):
    wide = net.run(pixels, RunContext({}))
    sized = net.run(pixels, RunContext(net.widths))
    assert np.array_equal(wide, sized), "the sized network's scores are the wide one's"


@pytest.mark.parametrize("which", ["net8_t1", "net8_t2", "net8_fine"])
def test_widths_and_calibration(request, which, data):
    net = request.getfixturevalue(which)
    assert net.timesteps == (2 if which == "net8_t2" else 1)
    check_widths(net, QuantOptions())
    check_calibration(net, QuantOptions())
    check_sized_equals_wide(net, net.to_input(data[0][:CALIB]))


def test_widths_at_16_bits(net16_t1, data):
    check_widths(net16_t1, OPTS16)
    check_calibration(net16_t1, OPTS16)
    check_sized_equals_wide(net16_t1, net16_t1.to_input(data[0][:CALIB]))


def test_without_margin_the_largest_values_come_within_a_factor_2(model1, data):
    opts = QuantOptions(margin_bits=0)
    net = quantize(model1, data[0][:CALIB], opts)
    check_widths(net, opts)
    check_calibration(net, opts)
    stats = net.info["calibration"]
    assert sum(s["near"] for s in stats.values()) > 0
    assert stats["stage0.stream"]["near"] > 0 and stats["head.sum"]["near"] > 0


def test_widths_check_fails_on_corrupted_widths(net8_t1):
    opts = QuantOptions()
    cases = [
        ({k: v for k, v in net8_t1.widths.items() if k != "stage1.stream"}, "every stream"),
        ({**net8_t1.widths, "layers.9.acc": 12}, "every stream"),
        ({**net8_t1.widths, "layers.3.mlp.fc1.acc": opts.w_bits}, "holds a weight"),
        ({**net8_t1.widths, "head.sum": 40}, "from 2 to WIDE_BITS"),
    ]
    for widths, message in cases:
        with pytest.raises(AssertionError, match=message):
            check_widths(dataclasses.replace(net8_t1, widths=widths), opts)


def test_widths_checks_see_a_rounding_bias(net8_fine):
    """The right-shifting fc2's acc must hold its rounding bias (2**(-shift - 1)): one bit
    less is refused; with calibration values far below the bias, the bias sets the width."""
    key = "layers.3.mlp.fc2.acc"
    need = bias_bits(net8_fine)[key]
    assert need == int(np.abs(net8_fine.layers[3].fc2.conv.bias).max()).bit_length() + 1
    assert need > QuantOptions().w_bits + 1
    with pytest.raises(AssertionError, match=f"{key}: the acc holds its bias"):
        check_widths(dataclasses.replace(net8_fine, widths={**net8_fine.widths,
                                                            key: need - 1}), QuantOptions())
    calib = {k: dict(v) for k, v in net8_fine.info["calibration"].items()}
    calib[key]["max"] = 1
    small = dataclasses.replace(net8_fine, info={**net8_fine.info, "calibration": calib})
    check_calibration(dataclasses.replace(small, widths={**small.widths, key: need}),
                      QuantOptions())
    for ignoring_bias in (QuantOptions().w_bits + 1, need + 1):
        with pytest.raises(AssertionError, match=f"{key}: width"):
            check_calibration(dataclasses.replace(small, widths={**small.widths,
                                                                 key: ignoring_bias}),
                              QuantOptions())


def test_calibration_check_fails_on_corrupted_statistics(net8_t1):
    opts = QuantOptions()
    info = net8_t1.info

    def with_calib(key, **change):
        calib = {k: dict(v) for k, v in info["calibration"].items()}
        calib[key].update(change)
        return dataclasses.replace(net8_t1, info={**info, "calibration": calib})

    with pytest.raises(AssertionError, match="no value near"):
        check_calibration(with_calib("stage0.stream", near=1), opts)
    big = 1 << (net8_t1.widths["stage1.stream"] - 1)
    with pytest.raises(AssertionError, match="width"):
        check_calibration(with_calib("stage1.stream", max=big), opts)
    with pytest.raises(AssertionError, match="width"):
        check_calibration(dataclasses.replace(
            net8_t1, widths={**net8_t1.widths, "stage0.stream": 30}), opts)
    # the margin-0 rule needs the largest value within a factor 2 of its limit
    with pytest.raises(AssertionError):
        check_calibration(net8_t1, QuantOptions(margin_bits=0))


def test_sized_check_fails_when_widths_are_too_small(net8_t1, data):
    small = {k: v - 2 for k, v in net8_t1.widths.items()}
    with pytest.raises(AssertionError, match="wide one"):
        check_sized_equals_wide(dataclasses.replace(net8_t1, widths=small),
                                net8_t1.to_input(data[0][:CALIB]))


def test_quantize_refuses_widths_that_are_too_small(model1, data, monkeypatch):
    real = choose_widths

    def two_bits_short(*args):
        return {k: v - 2 for k, v in real(*args).items()}

    monkeypatch.setattr(quant, "choose_widths", two_bits_short)
    with pytest.raises(AssertionError, match=r"^the sized network differs from the wide one "
                                             r"on the calibration images: a width is too small$"):
        quantize(model1, data[0][:CALIB])


def test_choose_widths_by_hand(net8_t1):
    stats = {"stage0.stream": {"max": 1000}, "layers.1.conv1.acc": {"max": 5},
             "layers.1.conv2.acc": {"max": 3000}, "head.sum": {"max": 0},
             "head.acc": {"max": 1}}
    widths = choose_widths(net8_t1, stats, QuantOptions(w_bits=8, margin_bits=2))
    head_bias = int(np.abs(net8_t1.head.fc.bias).max()).bit_length() + 1
    assert widths == {"stage0.stream": 13, "layers.1.conv1.acc": 9, "layers.1.conv2.acc": 15,
                      "head.sum": 3, "head.acc": max(9, head_bias)}


def test_choose_widths_holds_a_rounding_bias(net8_fine):
    """A right-shifting producer's accumulator holds its rounding bias even when calibration
    saw small values; one without a bias does not get wider."""
    bias = net8_fine.layers[3].fc2.conv.bias
    need = int(np.abs(bias).max()).bit_length() + 1
    assert need > 9                       # wider than w_bits + 1 alone would make it
    stats = {"layers.3.mlp.fc2.acc": {"max": 1}, "layers.3.attn.proj.acc": {"max": 1},
             "layers.1.conv1.acc": {"max": 1}}
    widths = choose_widths(net8_fine, stats, QuantOptions(margin_bits=0))
    assert widths == {"layers.3.mlp.fc2.acc": need, "layers.3.attn.proj.acc": 9,
                      "layers.1.conv1.acc": 9}


def test_values_too_large_for_the_wide_run_are_refused(model1, data):
    model = copy.deepcopy(model1)
    with torch.no_grad():
        model.layers[0].bn.bias.add_(1e6)           # 1e6 * 2**e stream units
    with pytest.raises(ValueError, match=rf"^stage0\.stream reached {WIDE_BITS} bits in "
                                         r"calibration"):
        quantize(model, data[0][:8])


# -- 5. float vs integer --------------------------------------------------------------------------


def float_lif_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, MultiStepLIF)]


def check_agreement(model, rep, *, layers, predictions=0.0):
    rows = rep["layers"]
    assert [r["layer"] for r in rows] == float_lif_names(model), "a row for every LIF"
    for r in rows:
        assert 0 <= r["firing_float"] <= 1 and 0 <= r["firing_int"] <= 1, "rates"
        assert r["agreement"] > layers, f"{r['layer']}: agreement {r['agreement']}"
    assert rep["prediction_agreement"] >= predictions, "predictions agree"


def test_16_bit_network_matches_the_float_one(model1, rep16_t1):
    check_agreement(model1, rep16_t1, layers=0.99, predictions=0.95)
    assert rep16_t1["w_bits"] == 16 and rep16_t1["test_images"] == TEST
    assert abs(rep16_t1["float_accuracy"] - rep16_t1["int_accuracy"]) <= 0.05
    # the neurons fire, so the agreement is not all silence
    assert max(r["firing_float"] for r in rep16_t1["layers"]) > 0.05


def test_8_bit_networks_agree_per_layer(model1, model2, rep8_t1, rep8_t2):
    check_agreement(model1, rep8_t1, layers=0.9)
    check_agreement(model2, rep8_t2, layers=0.9)
    assert rep8_t2["timesteps"] == 2


def test_agreement_check_fails_on_corrupted_reports(model1, rep16_t1):
    rows = [dict(r) for r in rep16_t1["layers"]]
    rows[4]["agreement"] = 0.985
    with pytest.raises(AssertionError, match="agreement 0.985"):
        check_agreement(model1, {**rep16_t1, "layers": rows}, layers=0.99)
    with pytest.raises(AssertionError, match="a row for every LIF"):
        check_agreement(model1, {**rep16_t1, "layers": rep16_t1["layers"][1:]}, layers=0.99)
    with pytest.raises(AssertionError, match="predictions agree"):
        check_agreement(model1, {**rep16_t1, "prediction_agreement": 0.9}, layers=0.99,
                        predictions=0.95)


@pytest.fixture(scope="module")
def int_traces(net8_t1, data):
    pixels = net8_t1.to_input(data[2][:32])
    _, _, ctx = evaluate_int(net8_t1, pixels, data[3][:32].numpy(), record="spikes")
    return ctx.merged_traces()


def test_spike_agreement_rows(model1, net8_t1, int_traces, data):
    rows = spike_agreement(model1, net8_t1, data[2][:32], int_traces)
    assert [r["layer"] for r in rows] == float_lif_names(model1)
    assert "layers.3.attn.sdsa.neuron" in [r["layer"] for r in rows]
    assert all(0.9 < r["agreement"] <= 1 for r in rows)


def test_spike_agreement_needs_every_layer(model1, net8_t1, int_traces, data):
    missing = {k: v for k, v in int_traces.items() if k != "layers.1.lif1"}
    with pytest.raises(KeyError, match="layers.1.lif1"):
        spike_agreement(model1, net8_t1, data[2][:32], missing)
    no_spikes = {**int_traces, "layers.3.attn.sdsa": {}}
    with pytest.raises(KeyError, match="layers.3.attn.sdsa.neuron"):
        spike_agreement(model1, net8_t1, data[2][:32], no_spikes)


def test_spike_agreement_sees_flipped_spikes(model1, net8_t1, int_traces, data):
    images = data[2][:32]
    before = {r["layer"]: r["agreement"] for r in spike_agreement(model1, net8_t1, images,
                                                                  int_traces)}
    spikes = int_traces["layers.2.lif"]["spikes"]
    flipped = {**int_traces, "layers.2.lif": {"spikes": 1 - spikes}}
    after = {r["layer"]: r["agreement"] for r in spike_agreement(model1, net8_t1, images,
                                                                 flipped)}
    assert after["layers.2.lif"] == pytest.approx(1 - before["layers.2.lif"])
    assert after["layers.2.lif"] < 0.2
    assert {k: v for k, v in after.items() if k != "layers.2.lif"} == \
        {k: v for k, v in before.items() if k != "layers.2.lif"}
    # half of one sample's head_lif spikes flipped: lower agreement
    head = int_traces["head_lif"]["spikes"].copy()
    head[0, 0, :head.shape[2] // 2] ^= 1
    after = spike_agreement(model1, net8_t1, images,
                            {**int_traces, "head_lif": {"spikes": head}})
    assert after[-1]["layer"] == "head_lif" and after[-1]["agreement"] < before["head_lif"]


@pytest.mark.parametrize("variant", [1, 2])
def test_report_for_sdsa_variants_1_and_2(variant, data):
    """Variants 1 and 2 trace the talking-heads neuron's mask (and the counts it fires on);
    the report compares the float neuron's spikes with that mask.

    16-bit weights: the mask fires on any count >= 1 over 64 tokens (at T = 1), so at 8 bits
    the ~2 % of V spikes that differ flip many masks (variant 2: ~0.8-0.86 agreement on these
    images, while the mask equals the float one exactly on the float model's own Q, K, V)."""
    model = stats_model(timesteps=1, variant=variant, images=64)
    net = quantize(model, data[0][:16], OPTS16)
    rep = report(model, net, data[2][:16], data[3][:16])
    rows = {r["layer"]: r for r in rep["layers"]}
    assert list(rows) == float_lif_names(model)
    assert rows["layers.3.attn.sdsa.neuron"]["agreement"] > 0.99
    assert 0.05 < rows["layers.3.attn.sdsa.neuron"]["firing_float"] < 0.95
    # the trace: per channel, the count over tokens of K AND V (variant 1) or V (variant 2),
    # the mask (count >= 1 at T = 1, in the units of spec.sdsa), and Q AND mask
    _, _, ctx = evaluate_int(net, net.to_input(data[2][:4]), data[3][:4].numpy(),
                             record="full")
    tr = ctx.merged_traces()["layers.3.attn.sdsa"]
    assert {"q", "k", "v", "counts", "mask", "spikes"} <= set(tr)
    x = tr["k"] & tr["v"] if variant == 1 else tr["v"]
    channels = model.layers[3].mlp.fc1.in_channels
    assert tr["counts"].shape == tr["mask"].shape == (4, 1, channels)
    np.testing.assert_array_equal(tr["counts"], x.sum(axis=2))
    np.testing.assert_array_equal(tr["mask"], (tr["counts"] >= 1).astype(np.uint8))
    np.testing.assert_array_equal(tr["spikes"], tr["q"] & tr["mask"][:, :, None, :])


# -- 6. the first layer's pixels ------------------------------------------------------------------


def test_to_input_recovers_the_digits_integers(net8_t1, data):
    from sklearn.datasets import load_digits

    raw, _ = load_digits(return_X_y=True)
    images = (raw / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)   # as sw.train loads them
    pixels = net8_t1.to_input(images)
    assert pixels.dtype == np.int64
    assert np.array_equal(pixels, raw.reshape(-1, 1, 8, 8).astype(np.int64))
    for split in (data[0], data[2]):
        p = net8_t1.to_input(split)
        assert p.min() == 0 and p.max() == 16
        assert torch.equal(torch.tensor(p / 16.0, dtype=torch.float32), split)


def test_to_input_clips_to_input_bits(net8_t1):
    x = np.array([-0.5, 0.0, 1 / 32 - 1e-6, 1.0, 1.9375, 3.0]).reshape(1, 1, 1, 6)
    assert net8_t1.to_input(x).ravel().tolist() == [0, 0, 0, 16, 31, 31]


# -- 7. the command line --------------------------------------------------------------------------


cli = CLI(PROG, quant.main)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, model1):
    d = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(d / "c.pt", model1, {"dataset": "digits", "accuracy": 0.0})
    save_checkpoint(d / "mnist.pt", model1, {"dataset": "mnist", "accuracy": 0.0})
    torch.manual_seed(0)
    other = MetaSpikeFormer(paper_config((8, 16, 32, 48), num_classes=1000))
    save_checkpoint(d / "other.pt", other, {"dataset": "digits", "accuracy": 0.0})
    (d / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"weights": 1}, d / "dict.pt")
    return d


def test_command_line(capsys, tmp_path, checkpoints):
    out_json = tmp_path / "out.json"
    status, out, err = cli.run(capsys, "--checkpoint", checkpoints / "c.pt", "--calibration",
                               "32", "--quiet", "--json", out_json)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("float accuracy ") and ", integer " in lines[0]
    assert "(360 test images, T = 1, w_bits 8); predictions agree on " in lines[0]
    assert lines[2].split() == ["LIF", "layer", "rate", "float", "rate", "int", "agree"]
    assert any(line.startswith("layers.3.attn.sdsa.neuron ") for line in lines)
    assert any(line.startswith("stage0.stream ") for line in lines)
    rep = json.loads(out_json.read_text())
    assert {"float_accuracy", "int_accuracy", "layers", "widths"} <= set(rep)
    assert rep["dataset"] == "digits" and rep["calibration_images"] == 32
    assert rep["test_images"] == 360 and rep["w_bits"] == 8
    assert 0 <= rep["float_accuracy"] <= 1 and 0 <= rep["int_accuracy"] <= 1
    assert len(rep["layers"]) == 13 and all(r["agreement"] > 0.9 for r in rep["layers"])
    assert f"{rep['float_accuracy']:.2%}" in lines[0] and f"{rep['int_accuracy']:.2%}" in lines[0]
    for key, w in rep["widths"].items():
        assert set(w) == {"bits", "max_calibration", "near_calibration", "max_test",
                          "near_test", "saturated_test"}
        assert any(line.split()[:2] == [key, str(w["bits"])] for line in lines), key
    assert "stage1.stream" in rep["widths"] and "head.acc" in rep["widths"]


def test_command_line_progress_goes_to_stderr(capsys, tmp_path, checkpoints):
    status, out, err = cli.run(capsys, "--checkpoint", checkpoints / "c.pt", "--calibration",
                               "8", "--w-bits", "6")
    assert status == 0 and out.startswith("float accuracy ")
    assert "w_bits 6)" in out.splitlines()[0]
    # (the calibration's and the test's progress bars show on a terminal only)
    assert err.startswith(f"[{PROG}] quantizing {checkpoints / 'c.pt'} (T = 1, w_bits 6): "
                          f"calibration on 8 training images\n"
                          f"[{PROG}] widths chosen in ")
    assert len(err.splitlines()) == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "{d}/none.pt"], "checkpoint '{d}/none.pt' does not exist"),
    (["--checkpoint", "{d}/junk.pt"], "checkpoint '{d}/junk.pt' is not a PyTorch checkpoint "
                                      "(a zip archive); refused unread"),
    (["--checkpoint", "{d}/dict.pt"], "checkpoint '{d}/dict.pt' is not a spikegen checkpoint"),
    (["--checkpoint", "{d}/other.pt"], "checkpoint '{d}/other.pt' is for a model of 3 x 224 "
                                       "x 224 inputs and 1000 classes, not the digits "
                                       "dataset's 1 x 8 x 8 and 10"),
    (["--checkpoint", "{d}/mnist.pt"], "checkpoint '{d}/mnist.pt' was trained on 'mnist', "
                                       "which this tool does not know (known: digits)"),
    (["--checkpoint", "{d}/c.pt", "--w-bits", "1"],
     "--w-bits must be an integer from 2 to 16, not 1 (2 bits are the fewest that represent "
     "a nonzero weight)"),
    (["--checkpoint", "{d}/c.pt", "--param-frac", "13"],
     "--param-frac must be an integer from 0 to 12, not 13"),
    (["--checkpoint", "{d}/c.pt", "--margin-bits", "-1"],
     "--margin-bits must be an integer from 0 to 8, not -1"),
    (["--checkpoint", "{d}/c.pt", "--calibration", "-1"],
     "--calibration must not be negative, not -1"),
    (["--checkpoint", "{d}/c.pt", "--json", "{t}/no/out.json"],
     "output folder '{t}/no' does not exist"),
    (["--checkpoint", "{d}/c.pt", "--json", "{t}"], "output '{t}' is a folder, not a file name"),
    (["--calibration", "8"], "the following arguments are required: --checkpoint"),
    (["--checkpoint", "{d}/c.pt", "--w-bits", "eight"],
     "argument --w-bits: invalid int value: 'eight'"),
])
def test_bad_input(capsys, tmp_path, checkpoints, argv, message):
    """One error line, exit status 2, and nothing written (no JSON file)."""
    before = sorted(checkpoints.iterdir())
    argv = [a.format(d=checkpoints, t=tmp_path) for a in argv]
    if "--json" not in argv:
        argv += ["--json", str(tmp_path / "out.json")]
    status, out, err = cli.run(capsys, *argv, "--quiet")
    assert (status, out) == (2, "")
    full = message.format(d=checkpoints, t=tmp_path)
    if full.endswith(": "):                        # the reader's own reason follows
        assert err.startswith(f"{PROG}: error: {full}") and err.count("\n") == 1
    else:
        assert err == f"{PROG}: error: {full}\n"
    assert list(tmp_path.iterdir()) == []
    assert sorted(checkpoints.iterdir()) == before


def test_command_line_refuses_a_w_bits_too_small_for_a_layer(capsys, tmp_path, checkpoints):
    """The stats model's SepConv 1x1 reaches a folded weight of about 6: 2 bits (+-1) cannot
    hold it even at the smallest threshold 2**-0, so quantizing stops with one error line."""
    status, out, err = cli.run(capsys, "--checkpoint", checkpoints / "c.pt", "--w-bits", "2",
                               "--param-frac", "0", "--calibration", "8", "--quiet", "--json",
                               tmp_path / "out.json")
    assert (status, out) == (2, "")
    assert re.fullmatch(
        rf"{PROG}: error: w_bits 2 is too small for layers\.1\.sep\.lif2: its weights reach "
        r"[0-9.]+, which even the smallest threshold 2\*\*-0 cannot bring within \+-1; raise "
        r"--w-bits or --param-frac\n", err), err
    assert list(tmp_path.iterdir()) == []
    # with more fractional bits the same width is enough
    status, out, err = cli.run(capsys, "--checkpoint", checkpoints / "c.pt", "--w-bits", "2",
                               "--param-frac", "4", "--calibration", "8", "--quiet")
    assert status == 0 and err == "" and "w_bits 2)" in out.splitlines()[0]


def test_subprocess_bad_input(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sw.quant", "--checkpoint",
                             str(tmp_path / "c.pt"), "--w-bits", "17", "--json",
                             str(tmp_path / "o.json")],
                            cwd=REPO, capture_output=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode().startswith(
        "sw.quant: error: --w-bits must be an integer from 2 to 16, not 17")
    assert result.stderr.count(b"\n") == 1
    assert list(tmp_path.iterdir()) == []
