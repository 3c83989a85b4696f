"""Tests of the integer SAE reference `sw.sae_int.sae_int` (against torch's convolution, against
an event-by-event model of the saturation order, hand-worked cases) and of SAE bundles
(`sw.export.export_sae_bundle`, `spec.sae.load_sae_bundle`)."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spec.bundle import write_bundle
from spec.errors import BundleError
from spec.lif import LIFConfig
from spec.sae import SAEConfig, SAEParams, SAETraces, load_sae_bundle
from sw.export import export_lif_bundle, export_sae_bundle, random_spikes
from sw.sae_int import sae_int


def clip(values, bits):
    return np.clip(values, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def torch_reference(config, params, spikes):
    """conv2d (float64, exact for these sizes) plus bias, clipped to acc_bits: the engine's result
    whenever no partial sum can saturate. `linear` goes through F.linear over the tokens."""
    x = torch.tensor(np.asarray(spikes), dtype=torch.float64)
    w = torch.tensor(params.weight, dtype=torch.float64)
    b = None if params.bias is None else torch.tensor(params.bias, dtype=torch.float64)
    if config.mode == "linear":
        f, c, h, wd = x.shape
        tokens = x.reshape(f, c, h * wd).transpose(1, 2)  # (frames, tokens, C_in)
        y = F.linear(tokens, w[:, :, 0, 0], b).transpose(1, 2).reshape(f, -1, h, wd)
    else:
        groups = config.in_channels if config.mode == "depthwise" else 1
        y = F.conv2d(x, w, b, stride=config.stride, padding=config.padding, groups=groups)
    return clip(y.numpy().astype(np.int64), config.acc_bits)


def event_reference(config, params, spikes):
    """The contract, literally: per frame, events in raster order of input pixels and ascending
    channel within a pixel; each event adds its weight to every accumulator it reaches,
    saturating after every add; then sat(acc + bias)."""
    s = np.asarray(spikes)
    k, st, p = config.kernel, config.stride, config.padding
    ho, wo = config.out_height, config.out_width
    out = np.zeros((s.shape[0], config.out_channels, ho, wo), np.int64)
    w = params.weight
    for f in range(s.shape[0]):
        acc = np.zeros((config.out_channels, ho, wo), np.int64)
        for ih in range(config.height):
            for iw in range(config.width):
                for c in range(config.in_channels):
                    if not s[f, c, ih, iw]:
                        continue
                    for kh in range(k):
                        oh, rh = divmod(ih + p - kh, st)
                        if rh or not 0 <= oh < ho:
                            continue
                        for kw in range(k):
                            ow, rw = divmod(iw + p - kw, st)
                            if rw or not 0 <= ow < wo:
                                continue
                            if config.mode == "depthwise":
                                acc[c, oh, ow] = clip(acc[c, oh, ow] + w[c, 0, kh, kw],
                                                      config.acc_bits)
                            else:
                                acc[:, oh, ow] = clip(acc[:, oh, ow] + w[:, c, kh, kw],
                                                      config.acc_bits)
        if config.bias:
            acc = acc + params.bias[:, None, None]
        out[f] = clip(acc, config.acc_bits)
    return out


def lossless(**kw):
    """The configuration with acc_bits = lossless_acc_bits (the fast path)."""
    c = SAEConfig(**kw, acc_bits=40)
    return c.replace(acc_bits=c.lossless_acc_bits)


# -- against torch, no saturation while accumulating -----------------------------------------

GEOMETRIES = {
    "linear-5x3": dict(mode="linear", in_channels=5, out_channels=7, kernel=1, padding=0,
                       height=5, width=3),
    "conv-k1s1p0": dict(mode="conv", in_channels=4, out_channels=6, kernel=1, stride=1, padding=0,
                        height=5, width=7),
    "conv-k1s2p0": dict(mode="conv", in_channels=3, out_channels=5, kernel=1, stride=2, padding=0,
                        height=7, width=4),
    "conv-k3s1p1": dict(mode="conv", in_channels=4, out_channels=6, kernel=3, stride=1, padding=1,
                        height=7, width=5),
    "conv-k3s1p0": dict(mode="conv", in_channels=3, out_channels=4, kernel=3, stride=1, padding=0,
                        height=5, width=9),
    "conv-k3s2p1": dict(mode="conv", in_channels=4, out_channels=6, kernel=3, stride=2, padding=1,
                        height=9, width=6),
    "conv-k3s2p0": dict(mode="conv", in_channels=3, out_channels=5, kernel=3, stride=2, padding=0,
                        height=8, width=11),
    "conv-k7s1p3": dict(mode="conv", in_channels=2, out_channels=3, kernel=7, stride=1, padding=3,
                        height=9, width=7),
    "conv-k7s2p1": dict(mode="conv", in_channels=2, out_channels=3, kernel=7, stride=2, padding=1,
                        height=11, width=6),
    "dw-k3s1p1": dict(mode="depthwise", in_channels=5, out_channels=5, kernel=3, stride=1,
                      padding=1, height=7, width=5),
    "dw-k3s2p0": dict(mode="depthwise", in_channels=4, out_channels=4, kernel=3, stride=2,
                      padding=0, height=9, width=8),
    "dw-k7s1p3": dict(mode="depthwise", in_channels=3, out_channels=3, kernel=7, stride=1,
                      padding=3, height=9, width=6),
    "dw-k7s2p1": dict(mode="depthwise", in_channels=3, out_channels=3, kernel=7, stride=2,
                      padding=1, height=11, width=7),
}
DENSITIES = (0.0, 0.05, 0.25, 1.0)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_matches_torch(name, density, bias):
    w_bits = 4 if "k7" in name else 8
    c = lossless(**GEOMETRIES[name], w_bits=w_bits, bias=bias)
    params = SAEParams.seeded(c, seed=len(name))
    spikes = random_spikes((3, c.in_channels, c.height, c.width), density, seed=int(density * 100))
    got = sae_int(c, params, spikes)
    assert got.shape == (3, c.out_channels, c.out_height, c.out_width)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, torch_reference(c, params, spikes))
    if density == 0.0:
        want = np.zeros_like(got) if not bias else np.broadcast_to(
            params.bias[None, :, None, None], got.shape)
        np.testing.assert_array_equal(got, want)


def test_wider_accumulator_than_lossless_matches_torch():
    c = SAEConfig(**GEOMETRIES["conv-k3s2p1"], w_bits=8, acc_bits=30)
    params = SAEParams.seeded(c, 2)
    spikes = random_spikes((2, c.in_channels, c.height, c.width), 0.5, seed=2)
    np.testing.assert_array_equal(sae_int(c, params, spikes), torch_reference(c, params, spikes))


def test_final_bias_add_saturates():
    # lossless accumulation, then sat(acc + bias): the bias pushes past both ends
    c = lossless(mode="linear", in_channels=3, out_channels=2, kernel=1, padding=0, height=1,
                 width=2, w_bits=4)
    assert c.acc_bits == 6  # -32 .. 31; the sum of 3 weights is within -24 .. 21
    weight = np.array([7, 7, 7, -8, -8, -8]).reshape(2, 3, 1, 1)
    params = SAEParams.checked(c, weight, np.array([30, -30]))
    spikes = np.array([[[[1, 0]], [[1, 0]], [[1, 1]]]], np.uint8)  # token 0: 3 spikes, token 1: 1
    # channel 0: 21 + 30 = 51 -> 31, 7 + 30 = 37 -> 31; channel 1: -24 - 30 -> -32, -8 - 30 -> -32
    want = np.array([[[[31, 31]], [[-32, -32]]]])
    np.testing.assert_array_equal(sae_int(c, params, spikes), want)
    np.testing.assert_array_equal(torch_reference(c, params, spikes), want)


# -- the saturation order -----------------------------------------------------------------------


def test_order_hand_worked_conv():
    # conv 2x2 kernel, 2 input channels, one output on a 2x2 map; w_bits 3 (-4 .. 3),
    # acc_bits 4 (-8 .. 7). Weights w[0, c, kh, kw] in the engine's order (kh, kw, c):
    #   (0,0,0)=3 (0,0,1)=3 (0,1,0)=3 (0,1,1)=-4 (1,0,0)=-4 (1,0,1)=-4 (1,1,0)=3 (1,1,1)=3
    # all spikes 1, running sum with saturation after every add:
    #   3, 6, sat(9)=7, 3, -1, -5, -2, 1                           -> 1
    # order-free sum: 3+3+3-4-4-4+3+3 = 3; order (c, kh, kw) would give
    #   3, 6, 2, 5, sat(8)=7, 3, -1, 2                             -> 2
    c = SAEConfig(mode="conv", in_channels=2, out_channels=1, kernel=2, stride=1, padding=0,
                  height=2, width=2, w_bits=3, acc_bits=4, bias=False)
    assert c.acc_bits < c.lossless_acc_bits
    weight = np.zeros((1, 2, 2, 2), np.int64)
    order = [(0, 0, 0, 3), (0, 0, 1, 3), (0, 1, 0, 3), (0, 1, 1, -4),
             (1, 0, 0, -4), (1, 0, 1, -4), (1, 1, 0, 3), (1, 1, 1, 3)]
    for kh, kw, ch, value in order:
        weight[0, ch, kh, kw] = value
    params = SAEParams.checked(c, weight, None)
    ones = np.ones((1, 2, 2, 2), np.uint8)
    assert sae_int(c, params, ones).tolist() == [[[[1]]]]
    assert event_reference(c, params, ones).tolist() == [[[[1]]]]
    assert int(weight.sum()) == 3  # what an order-free accumulation would give
    # with bias: the bias is added after accumulation, sat(1 + 6) = 7, sat(1 + 7) = 7 (not 8)
    cb = c.replace(bias=True)
    assert sae_int(cb, SAEParams.checked(cb, weight, np.array([6])), ones).tolist() == [[[[7]]]]
    assert sae_int(cb, SAEParams.checked(cb, weight, np.array([7])), ones).tolist() == [[[[7]]]]
    # bias -8 first would give -8, -5, -2, 1, -3, -7, sat(-11)=-8, -5, -2; the contract: 1-8 = -7
    assert sae_int(cb, SAEParams.checked(cb, weight, np.array([-8])), ones).tolist() == [[[[-7]]]]
    # without the spike at (kh, kw, c) = (0, 1, 0): 3, 6, -4 -> 2, -2, -6, -3, 0
    some = ones.copy()
    some[0, 0, 0, 1] = 0
    assert sae_int(c, params, some).tolist() == [[[[0]]]]


def test_order_hand_worked_depthwise():
    # depthwise 3x3 on a 3x3 map (one output per channel); w_bits 3, acc_bits 4 (-8 .. 7).
    # channel 0 weights (raster kh, kw):  3  3  3 / -4 -4 -4 / 3 3 0
    #   raster:      3, 6, sat(9)=7, 3, -1, -5, -2, 1, 1               -> 1
    #   order-free:  9 - 12 + 6 = 3;  column-major (kw, kh) order:   -> 3
    # channel 1 weights: -4 -4 -4 / 3 3 3 / 0 0 0
    #   raster:      -4, -8, sat(-12)=-8, -5, -2, 1, 1, 1, 1            -> 1
    #   order-free:  -12 + 9 = -3
    c = SAEConfig(mode="depthwise", in_channels=2, out_channels=2, kernel=3, stride=1, padding=0,
                  height=3, width=3, w_bits=3, acc_bits=4, bias=False)
    weight = np.array([[[[3, 3, 3], [-4, -4, -4], [3, 3, 0]]],
                       [[[-4, -4, -4], [3, 3, 3], [0, 0, 0]]]])
    params = SAEParams.checked(c, weight, None)
    ones = np.ones((1, 2, 3, 3), np.uint8)
    assert sae_int(c, params, ones).tolist() == [[[[1]], [[1]]]]
    assert event_reference(c, params, ones).tolist() == [[[[1]], [[1]]]]
    assert weight.sum(axis=(1, 2, 3)).tolist() == [3, -3]
    # channels are independent: spikes of channel 1 only leave channel 0 at 0
    only1 = ones.copy()
    only1[0, 0] = 0
    assert sae_int(c, params, only1).tolist() == [[[[0]], [[1]]]]


def test_order_hand_worked_padding_and_stride():
    # conv 3x3, stride 2, padding 1, 1 -> 1 channel, 3x3 map: output (0, 0) sees input rows/cols
    # 0..1 through kernel taps 1..2; the raster order of its events is
    #   (ih, iw) = (0,0) w[1,1]=3, (0,1) w[1,2]=3, (1,0) w[2,1]=3, (1,1) w[2,2]=-4
    #   3, 6, sat(9)=7, 3  -> 3  (order-free 5); acc_bits 4
    c = SAEConfig(mode="conv", in_channels=1, out_channels=1, kernel=3, stride=2, padding=1,
                  height=3, width=3, w_bits=3, acc_bits=4, bias=False)
    weight = np.array([[[[0, 0, 0], [0, 3, 3], [0, 3, -4]]]])
    params = SAEParams.checked(c, weight, None)
    spikes = np.zeros((1, 1, 3, 3), np.uint8)
    spikes[0, 0, :2, :2] = 1
    got = sae_int(c, params, spikes)
    assert got[0, 0, 0, 0] == 3
    np.testing.assert_array_equal(got, event_reference(c, params, spikes))


SATURATING = [
    dict(mode="conv", in_channels=3, out_channels=4, kernel=3, stride=1, padding=1, height=4,
         width=5, w_bits=4, acc_bits=5),
    dict(mode="conv", in_channels=2, out_channels=3, kernel=3, stride=2, padding=1, height=5,
         width=4, w_bits=3, acc_bits=4),
    dict(mode="conv", in_channels=2, out_channels=2, kernel=7, stride=2, padding=3, height=7,
         width=5, w_bits=4, acc_bits=6),
    dict(mode="depthwise", in_channels=3, out_channels=3, kernel=3, stride=1, padding=1, height=5,
         width=4, w_bits=3, acc_bits=4),
    dict(mode="depthwise", in_channels=2, out_channels=2, kernel=7, stride=1, padding=3,
         height=6, width=7, w_bits=3, acc_bits=4),
    dict(mode="linear", in_channels=9, out_channels=5, kernel=1, stride=1, padding=0, height=2,
         width=3, w_bits=4, acc_bits=5),
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kw", SATURATING, ids=[f"{k['mode']}-k{k['kernel']}s{k['stride']}"
                                                 for k in SATURATING])
def test_saturating_matches_event_order(kw, bias):
    c = SAEConfig(**kw, bias=bias)
    assert c.acc_bits < c.lossless_acc_bits
    params = SAEParams.seeded(c, 3)
    spikes = random_spikes((2, c.in_channels, c.height, c.width), 0.7, seed=9)
    got = sae_int(c, params, spikes)
    np.testing.assert_array_equal(got, event_reference(c, params, spikes))
    # a partial sum saturated somewhere and the result depends on it, so the order was exercised
    assert not np.array_equal(got, torch_reference(c, params, spikes))
    # weights skewed to one sign saturate almost everywhere
    skewed = SAEParams.checked(c, np.abs(params.weight) - 1, params.bias)
    np.testing.assert_array_equal(sae_int(c, skewed, spikes),
                                  event_reference(c, skewed, spikes))


@pytest.mark.parametrize("name", ["conv-k3s2p1", "dw-k3s1p1", "linear-5x3", "conv-k7s1p3"])
def test_sequential_path_without_saturation_matches_torch(name):
    # acc_bits one below lossless takes the add-by-add path; weights in -1 .. 1 never get near
    # the limit, so it must agree with torch and with the fast path
    base = lossless(**GEOMETRIES[name], w_bits=8, bias=True)
    slow = base.replace(acc_bits=base.lossless_acc_bits - 1)
    rng = np.random.default_rng(4)
    weight = rng.integers(-1, 2, size=base.weight_shape)
    bias = rng.integers(-50, 51, size=base.out_channels)
    spikes = random_spikes((3, base.in_channels, base.height, base.width), 0.4, seed=4)
    fast_out = sae_int(base, SAEParams.checked(base, weight, bias), spikes)
    slow_params = SAEParams.checked(slow, weight, bias)
    slow_out = sae_int(slow, slow_params, spikes)
    np.testing.assert_array_equal(slow_out, fast_out)
    np.testing.assert_array_equal(slow_out, torch_reference(slow, slow_params, spikes))


# -- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def small():
    return SAEConfig(mode="conv", in_channels=2, out_channels=3, kernel=3, padding=1, height=4,
                     width=4, w_bits=4, acc_bits=10)


@pytest.mark.parametrize(
    ("shape", "shown"),
    [((2, 2, 4, 5), "(2, 2, 4, 5)"), ((2, 4, 4), "(2, 4, 4)"), ((1, 3, 4, 4), "(1, 3, 4, 4)"),
     ((1, 1, 2, 4, 4), "(1, 1, 2, 4, 4)")],
)
def test_bad_spike_shape(small, shape, shown):
    params = SAEParams.seeded(small)
    with pytest.raises(ValueError) as exc:
        sae_int(small, params, np.zeros(shape, np.uint8))
    assert str(exc.value) == f"spikes must have shape (frames, 2, 4, 4), not {shown}"


@pytest.mark.parametrize("bad", [2, -1])
def test_spikes_not_binary(small, bad):
    params = SAEParams.seeded(small)
    spikes = np.zeros((2, 2, 4, 4), np.int64)
    spikes[1, 1, 3, 2] = bad
    with pytest.raises(ValueError) as exc:
        sae_int(small, params, spikes)
    assert str(exc.value) == "spikes must be 0 or 1"


def test_zero_frames(small):
    out = sae_int(small, SAEParams.seeded(small), np.zeros((0, 2, 4, 4), np.uint8))
    assert out.shape == (0, 3, 4, 4)


# -- bundles --------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", ["b", "b.zip"], ids=["folder", "zip"])
def test_bundle_round_trip(tmp_path, small, name, bias):
    config = small.replace(bias=bias)
    path = tmp_path / name
    params, traces = export_sae_bundle(path, config, frames=3, density=0.3, seed=5)
    assert isinstance(traces, SAETraces) and traces.frames == 3
    loaded_config, loaded_params, loaded = load_sae_bundle(path)
    assert loaded_config == config
    np.testing.assert_array_equal(loaded_params.weight, params.weight)
    assert loaded_params.weight.dtype == np.int64
    if bias:
        np.testing.assert_array_equal(loaded_params.bias, params.bias)
    else:
        assert loaded_params.bias is None
    assert loaded.inputs.dtype == np.uint8 and loaded.outputs.dtype == np.int64
    assert loaded.inputs.shape == (3, 2, 4, 4) and loaded.outputs.shape == (3, 3, 4, 4)
    np.testing.assert_array_equal(loaded.inputs, traces.inputs)
    np.testing.assert_array_equal(loaded.outputs, traces.outputs)
    np.testing.assert_array_equal(loaded.outputs, sae_int(loaded_config, loaded_params,
                                                          loaded.inputs))
    np.testing.assert_array_equal(params.weight, SAEParams.seeded(config, 5).weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_bundle_round_trip_given_params_and_inputs(tmp_path):
    c = SAEConfig(mode="depthwise", in_channels=3, out_channels=3, kernel=3, stride=2, padding=1,
                  height=5, width=6, w_bits=3, acc_bits=4)
    params = SAEParams.checked(c, np.full(c.weight_shape, 3), np.array([-8, 0, 7]))
    inputs = np.ones((2, 3, 5, 6), np.uint8)
    _, traces = export_sae_bundle(tmp_path / "b", c, params=params, inputs=inputs)
    _, loaded_params, loaded = load_sae_bundle(tmp_path / "b")
    np.testing.assert_array_equal(loaded.inputs, inputs)
    np.testing.assert_array_equal(loaded.outputs, event_reference(c, params, inputs))
    np.testing.assert_array_equal(loaded_params.bias, [-8, 0, 7])


def sae_arrays(config, frames=2, **changes):
    arrays = {
        "weight": np.zeros(config.weight_shape, np.int32),
        "inputs": np.zeros((frames, config.in_channels, config.height, config.width), np.uint8),
        "outputs": np.zeros((frames, config.out_channels, config.out_height, config.out_width),
                            np.int64),
    }
    if config.bias:
        arrays["bias"] = np.zeros(config.out_channels, np.int64)
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def write_sae(path, config, **changes):
    write_bundle(path, unit="sae", config=config.to_dict(), arrays=sae_arrays(config, **changes))
    return path


def test_bundle_of_zeros_loads(tmp_path, small):
    config, params, traces = load_sae_bundle(write_sae(tmp_path / "b", small))
    assert config == small and traces.frames == 2


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"weight": np.full((3, 2, 3, 3), 8, np.int32)},
         "does not fit its SAE configuration: weights range 8 .. 8 does not fit w_bits=4"),
        ({"weight": np.full((3, 2, 3, 3), -9, np.int32)},
         "does not fit its SAE configuration: weights range -9 .. -9 does not fit w_bits=4"),
        ({"weight": np.zeros((3, 2, 1, 1), np.int32)},
         "does not fit its SAE configuration: weights must be integers of shape [3, 2, 3, 3], "
         "not int32 [3, 2, 1, 1]"),
        ({"weight": np.zeros((3, 2, 3, 3), np.float32)},
         "does not fit its SAE configuration: weights must be integers of shape"),
        ({"bias": None}, "has no array 'bias'"),
        ({"weight": None}, "has no array 'weight'"),
        ({"bias": np.array([0, 512, 0])},
         "does not fit its SAE configuration: bias range 0 .. 512 does not fit acc_bits=10"),
        ({"inputs": np.eye(4, dtype=np.uint8)[None, None].repeat(2, 0).repeat(2, 1) * 2},
         "inputs must be spikes (0 or 1)"),
        ({"inputs": -np.ones((2, 2, 4, 4), np.int8)}, "inputs must be spikes (0 or 1)"),
        ({"inputs": np.zeros((2, 2, 4, 4), np.float32)},
         "array 'inputs' has shape [2, 2, 4, 4], but the configuration needs integers of shape "
         "[frames, 2, 4, 4]"),
        ({"outputs": np.zeros((2, 3, 4, 5), np.int64)},
         "array 'outputs' has shape [2, 3, 4, 5], but the configuration needs integers of shape "
         "[frames, 3, 4, 4]"),
        ({"outputs": np.zeros((3, 4, 4), np.int64)},
         "array 'outputs' has shape [3, 4, 4], but the configuration needs integers of shape"),
        ({"outputs": np.zeros((3, 3, 4, 4), np.int64)}, "inputs and outputs disagree on frames"),
        ({"outputs": np.full((2, 3, 4, 4), 512, np.int64)}, "outputs do not fit acc_bits=10"),
        ({"outputs": np.full((2, 3, 4, 4), -513, np.int64)}, "outputs do not fit acc_bits=10"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(
        f"{k}={'none' if a is None else 'x'.join(map(str, a.shape))}" for k, a in v.items()),
)
def test_corrupt_bundle(tmp_path, small, changes, phrase):
    path = write_sae(tmp_path / "b", small, **changes)
    with pytest.raises(BundleError) as exc:
        load_sae_bundle(path)
    assert phrase in str(exc.value)
    assert str(exc.value).startswith(f"bundle {str(path)!r}")


def test_bundle_with_invalid_configuration(tmp_path, small):
    path = tmp_path / "b"
    write_bundle(path, unit="sae", config={**small.to_dict(), "padding": 3},
                 arrays=sae_arrays(small))
    with pytest.raises(BundleError) as exc:
        load_sae_bundle(path)
    assert str(exc.value) == (f"bundle {str(path)!r} does not fit its SAE configuration: "
                              f"padding (3) must be smaller than kernel (3)")


def test_lif_bundle_read_as_sae(tmp_path):
    path = tmp_path / "lif"
    export_lif_bundle(path, LIFConfig(neurons=16, lanes=4))
    with pytest.raises(BundleError) as exc:
        load_sae_bundle(path)
    assert str(exc.value) == f"bundle {str(path)!r} holds a 'lif' unit, not a 'sae' unit"


# -- multi-bit inputs ---------------------------------------------------------------------------


def plane_event_reference(config, params, values, acc_bits=None):
    """The multi-bit contract, event by event: per frame, input pixels in raster order, channels
    ascending, magnitude bit planes ascending; each set bit b of |x| adds +(w << b) (x > 0) or
    -(w << b) (x < 0) to every accumulator the pixel reaches, saturating to `acc_bits` (default:
    the configuration's) after every add; then sat(acc + bias, config.acc_bits)."""
    bits = config.acc_bits if acc_bits is None else acc_bits
    v = np.asarray(values, np.int64)
    k, st, p = config.kernel, config.stride, config.padding
    ho, wo = config.out_height, config.out_width
    w = params.weight
    out = np.zeros((v.shape[0], config.out_channels, ho, wo), np.int64)
    for f in range(v.shape[0]):
        acc = np.zeros((config.out_channels, ho, wo), np.int64)
        for ih in range(config.height):
            for iw in range(config.width):
                for c in range(config.in_channels):
                    x = int(v[f, c, ih, iw])
                    for b in range(config.in_bits):
                        if not (abs(x) >> b) & 1:
                            continue
                        for kh in range(k):
                            oh, rh = divmod(ih + p - kh, st)
                            if rh or not 0 <= oh < ho:
                                continue
                            for kw in range(k):
                                ow, rw = divmod(iw + p - kw, st)
                                if rw or not 0 <= ow < wo:
                                    continue
                                term = w[:, c, kh, kw] << b
                                acc[:, oh, ow] = clip(acc[:, oh, ow] + (term if x > 0 else -term),
                                                      bits)
        if config.bias:
            acc = acc + params.bias[:, None, None]
        out[f] = clip(acc, config.acc_bits)
    return out


def multi_bit(**kw):
    c = SAEConfig(**kw, acc_bits=48)
    return c.replace(acc_bits=c.lossless_acc_bits)


MULTI_BIT = {
    # a first layer: 5-bit unsigned pixels, one channel, 3 x 3, padding 1
    "conv-u5-first": dict(mode="conv", in_channels=1, out_channels=6, kernel=3, stride=1,
                          padding=1, height=6, width=5, in_lanes=1, in_bits=5),
    "conv-s6-k3s2p1": dict(mode="conv", in_channels=3, out_channels=4, kernel=3, stride=2,
                           padding=1, height=7, width=6, in_lanes=2, in_bits=6, in_signed=True),
    "conv-s8-k3s2p0": dict(mode="conv", in_channels=2, out_channels=3, kernel=3, stride=2,
                           padding=0, height=7, width=8, in_lanes=4, in_bits=8, in_signed=True),
    "conv-u3-k5s1p2": dict(mode="conv", in_channels=2, out_channels=3, kernel=5, stride=1,
                           padding=2, height=5, width=6, in_lanes=2, in_bits=3),
    # a SepConv's second 1x1: signed depthwise accumulations
    "linear-s12": dict(mode="linear", in_channels=16, out_channels=8, kernel=1, stride=1,
                       padding=0, height=2, width=3, in_lanes=16, in_bits=12, in_signed=True),
}


def random_values(config, frames, density, seed):
    rng = np.random.default_rng(seed)
    lo, hi = config.input_range
    v = rng.integers(lo, hi + 1, size=(frames, config.in_channels, config.height, config.width))
    return np.where(rng.random(v.shape) < density, v, 0)


def torch_values_reference(config, params, values):
    """conv2d / linear of the integer values in float64 (exact here), bias, clipped."""
    return torch_reference(config, params, np.asarray(values, np.float64))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("name", list(MULTI_BIT))
def test_multi_bit_matches_plane_events(name, density, bias):
    c = multi_bit(**MULTI_BIT[name], w_bits=6, bias=bias)
    params = SAEParams.seeded(c, seed=3)
    values = random_values(c, 2, density, seed=len(name))
    got = sae_int(c, params, values)
    assert got.shape == (2, c.out_channels, c.out_height, c.out_width) and got.dtype == np.int64
    np.testing.assert_array_equal(got, plane_event_reference(c, params, values))
    np.testing.assert_array_equal(got, torch_values_reference(c, params, values))
    if density == 0.0:
        want = np.zeros_like(got) if not bias else np.broadcast_to(
            params.bias[None, :, None, None], got.shape)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", list(MULTI_BIT))
def test_multi_bit_extreme_values_and_weights(name):
    # the most negative input (one event, plane in_bits - 1), the largest, and the extreme
    # weights: lossless_acc_bits holds every partial sum, the event loop never clamps
    c = multi_bit(**MULTI_BIT[name], w_bits=5, bias=False)
    lo, hi = c.input_range
    shape = (1, c.in_channels, c.height, c.width)
    w_lo, w_hi = -(1 << (c.w_bits - 1)), (1 << (c.w_bits - 1)) - 1
    for x in (lo, hi):
        for w in (w_lo, w_hi):
            params = SAEParams.checked(c, np.full(c.weight_shape, w), None)
            values = np.full(shape, x)
            got = sae_int(c, params, values)
            wide = plane_event_reference(c, params, values, acc_bits=60)
            np.testing.assert_array_equal(got, wide)
            np.testing.assert_array_equal(plane_event_reference(c, params, values), wide)
    # one bit fewer than lossless_acc_bits would clamp: the extreme sum does not fit it
    extreme = max(abs(a * b) for a in (lo, hi) for b in (w_lo, w_hi)) * c.fan_in
    worst = [(a, b) for a in (lo, hi) for b in (w_lo, w_hi) if abs(a * b) * c.fan_in == extreme]
    x, w = worst[0]
    params = SAEParams.checked(c, np.full(c.weight_shape, w), None)
    values = np.full(shape, x)
    exact = plane_event_reference(c, params, values, acc_bits=60)
    assert abs(exact).max() == extreme  # some output sees the whole fan-in
    narrow = plane_event_reference(c, params, values, acc_bits=c.lossless_acc_bits - 1)
    assert not np.array_equal(narrow, exact)


def test_multi_bit_hand_worked():
    # linear, 2 inputs -> 1 output, 4-bit signed, weights (3, -2), bias 1:
    #   x = (-5, 6): events |-5| = 0101: -(3<<0), -(3<<2); 6 = 0110: +(-2<<1), +(-2<<2)
    #   -3 - 12 - 4 - 8 = -27 = 3 x -5 + -2 x 6; plus bias 1 -> -26
    #   x = (-8, -8): -(3<<3) + (2<<3) = -24 + 16 = -8, + 1 -> -7
    c = multi_bit(mode="linear", kernel=1, padding=0, in_channels=2, out_channels=1, height=1,
                  width=2, in_lanes=2, in_bits=4, in_signed=True, w_bits=3)
    params = SAEParams.checked(c, np.array([3, -2]).reshape(1, 2, 1, 1), np.array([1]))
    values = np.array([[[[-5, -8]], [[6, -8]]]])
    assert sae_int(c, params, values).tolist() == [[[[-26, -7]]]]
    assert plane_event_reference(c, params, values).tolist() == [[[[-26, -7]]]]


def test_multi_bit_bias_add_saturates():
    c = multi_bit(mode="linear", kernel=1, padding=0, in_channels=1, out_channels=2, height=1,
                  width=1, in_lanes=1, in_bits=4, w_bits=3)
    hi = (1 << (c.acc_bits - 1)) - 1
    params = SAEParams.checked(c, np.array([3, -4]).reshape(2, 1, 1, 1), np.array([hi, -hi]))
    got = sae_int(c, params, np.full((1, 1, 1, 1), 15))
    assert got.ravel().tolist() == [hi, -hi - 1]  # 45 + hi and -60 - hi, clamped


def test_multi_bit_wide_sums_take_float64():
    # 20-bit inputs near the top, 8-bit weights: the sums pass 2**24, where float32 rounds
    c = multi_bit(mode="linear", kernel=1, padding=0, in_channels=8, out_channels=3, height=2,
                  width=2, in_lanes=8, in_bits=20, w_bits=8, bias=False)
    rng = np.random.default_rng(1)
    params = SAEParams.checked(c, rng.integers(-128, 128, size=c.weight_shape), None)
    values = rng.integers((1 << 20) - 99, 1 << 20, size=(2, 8, 2, 2))
    got = sae_int(c, params, values)
    want = np.einsum("oi,fihw->fohw", params.weight[:, :, 0, 0], values)  # int64, exact
    np.testing.assert_array_equal(got, want)
    assert np.abs(want).max() > 1 << 24
    # the choice matters: the same product in float32 is not exact here
    f32 = np.einsum("oi,fihw->fohw", params.weight[:, :, 0, 0].astype(np.float32),
                    values.astype(np.float32))
    assert not np.array_equal(f32.astype(np.int64), want)


@pytest.fixture
def multi_small():
    return multi_bit(mode="conv", in_channels=2, out_channels=3, kernel=3, padding=1, height=4,
                     width=4, in_lanes=2, in_bits=4, in_signed=True, w_bits=4)


@pytest.mark.parametrize(("bad", "message"), [
    (8, "inputs must be integers in -8 .. 7 (in_bits=4, signed), not -8 .. 8"),
    (-9, "inputs must be integers in -8 .. 7 (in_bits=4, signed), not -9 .. 7"),
])
def test_multi_bit_out_of_range(multi_small, bad, message):
    values = np.zeros((2, 2, 4, 4), np.int64)
    values[0, 0, 0, 0], values[0, 1, 0, 0] = -8, 7
    values[1, 1, 3, 2] = bad
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        sae_int(multi_small, SAEParams.seeded(multi_small), values)


def test_multi_bit_unsigned_rejects_negative():
    c = multi_bit(mode="conv", in_channels=1, out_channels=2, kernel=3, padding=1, height=3,
                  width=3, in_lanes=1, in_bits=5)
    values = np.zeros((1, 1, 3, 3), np.int64)
    values[0, 0, 1, 1] = -1
    with pytest.raises(ValueError, match=re.escape(
            "inputs must be integers in 0 .. 31 (in_bits=5, unsigned), not -1 .. 0")):
        sae_int(c, SAEParams.seeded(c), values)


def test_multi_bit_rejects_non_integers_and_bad_shape(multi_small):
    params = SAEParams.seeded(multi_small)
    with pytest.raises(ValueError, match=r"^inputs must be integers, not float64$"):
        sae_int(multi_small, params, np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"^inputs must be integers, not float32$"):
        sae_int(multi_small, params, np.full((1, 2, 4, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match=re.escape(
            "inputs must have shape (frames, 2, 4, 4), not (2, 4, 4)")):
        sae_int(multi_small, params, np.zeros((2, 4, 4), np.int64))


def test_spikes_unchanged_by_multi_bit_fields(small):
    # in_bits = 1 keeps the spike contract: values above 1 are refused with today's message
    params = SAEParams.seeded(small)
    spikes = np.zeros((1, 2, 4, 4), np.int64)
    spikes[0, 0, 0, 0] = 3
    with pytest.raises(ValueError, match=r"^spikes must be 0 or 1$"):
        sae_int(small, params, spikes)


# -- multi-bit bundles --------------------------------------------------------------------------


def test_multi_bit_bundle_loads(tmp_path, multi_small):
    params = SAEParams.seeded(multi_small, 4)
    values = random_values(multi_small, 2, 0.6, seed=4)
    values[0, 0, 0, 0] = -8
    outputs = sae_int(multi_small, params, values)
    path = write_sae(tmp_path / "b", multi_small, weight=params.weight.astype(np.int32),
                     bias=params.bias, inputs=values.astype(np.int16), outputs=outputs)
    config, loaded_params, traces = load_sae_bundle(path)
    assert config == multi_small and (config.in_bits, config.in_signed) == (4, True)
    assert traces.inputs.dtype == np.int64
    np.testing.assert_array_equal(traces.inputs, values)
    np.testing.assert_array_equal(traces.outputs, outputs)
    np.testing.assert_array_equal(loaded_params.weight, params.weight)


@pytest.mark.parametrize(("inputs", "phrase"), [
    (np.full((2, 2, 4, 4), 8, np.int16),
     "inputs must be integers in -8 .. 7 (in_bits=4, signed), not 8 .. 8"),
    (np.full((2, 2, 4, 4), -9, np.int16),
     "inputs must be integers in -8 .. 7 (in_bits=4, signed), not -9 .. -9"),
    (np.zeros((2, 2, 4, 4), np.float32),
     "array 'inputs' has shape [2, 2, 4, 4], but the configuration needs integers"),
])
def test_multi_bit_bundle_bad_inputs(tmp_path, multi_small, inputs, phrase):
    path = write_sae(tmp_path / "b", multi_small, inputs=inputs)
    with pytest.raises(BundleError) as exc:
        load_sae_bundle(path)
    assert phrase in str(exc.value)
    assert str(exc.value).startswith(f"bundle {str(path)!r}")


def test_spike_bundle_still_refuses_values(tmp_path, small):
    path = write_sae(tmp_path / "b", small, inputs=np.full((2, 2, 4, 4), 3, np.int16))
    with pytest.raises(BundleError, match=re.escape("inputs must be spikes (0 or 1)")):
        load_sae_bundle(path)


def test_export_sae_bundle_keeps_multi_bit_values(tmp_path):
    """Signed and wide multi-bit inputs survive the bundle round trip (no uint8 wrap)."""
    from spec.sae import SAEConfig, load_sae_bundle
    from sw.export import export_sae_bundle

    config = SAEConfig(mode="linear", in_channels=8, out_channels=8, kernel=1, padding=0,
                       height=2, width=3, lanes=8, in_lanes=8, in_bits=12, in_signed=True,
                       acc_bits=24)
    _, traces = export_sae_bundle(tmp_path / "b", config, frames=3, density=0.7, seed=2)
    assert traces.inputs.min() < -128 and traces.inputs.max() > 255
    loaded_config, _, loaded = load_sae_bundle(tmp_path / "b")
    assert loaded_config == config
    np.testing.assert_array_equal(loaded.inputs, traces.inputs)
    np.testing.assert_array_equal(loaded.outputs, traces.outputs)
