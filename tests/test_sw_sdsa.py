"""Tests of the integer SDSA reference `sw.sdsa_int.sdsa_int` (hand-worked cases for every
variant, the T = 1 firing rules, an independent multi-step LIF recurrence), of the float model
`sw.sdsa_float` (bit-equal spikes, the trainable variant-4 threshold) and of SDSA bundle export
(`sw.export.random_qkv`, `sw.export.export_sdsa_bundle`)."""

import math
import re

import numpy as np
import pytest
import torch

from spec.bundle import read_bundle
from spec.sdsa import SDSAConfig, SDSATraces, load_sdsa_bundle
from sw.export import export_sdsa_bundle, random_qkv
from sw.sdsa_float import SDSA, sdsa_float_from_config
from sw.sdsa_int import sdsa_int

MEMBERS = ("bundle.yaml", "config.yaml", "arrays.npz")


def exact(message):
    """A `match` pattern that accepts exactly `message` and nothing else."""
    return "^" + re.escape(message) + "$"


# -- independent references ----------------------------------------------------------------


def attention_reference(q, k, v, heads):
    """A = Q (K^T V) per head with plain matrix products, (samples, T, N, C) -> same shape."""
    q, k, v = (np.asarray(a, dtype=np.int64) for a in (q, k, v))
    d = q.shape[-1] // heads
    out = np.zeros(q.shape, np.int64)
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        for s in range(q.shape[0]):
            for t in range(q.shape[1]):
                kv = k[s, t][:, sl].T @ v[s, t][:, sl]          # d x d counts
                out[s, t][:, sl] = q[s, t][:, sl] @ kv
    return out


def lif_reference(x, v_th):
    """SpikingJelly multi-step LIF, tau 2, decay_input, hard reset to 0, over axis 1 of `x`
    (samples, T, ...) in float64: H = V + (X - V) / 2, S = H >= v_th, V = 0 if S else H."""
    x = np.asarray(x, dtype=np.float64)
    v = np.zeros(x[:, 0].shape)
    out = np.zeros(x.shape, np.uint8)
    for t in range(x.shape[1]):
        h = v + (x[:, t] - v) / 2
        s = h >= v_th
        v = np.where(s, 0.0, h)
        out[:, t] = s
    return out


def sdsa_reference(config, q, k, v):
    """Output spikes of `config` from the references above (the paper's float semantics)."""
    q, k, v = (np.asarray(a, dtype=np.int64) for a in (q, k, v))
    v_th = np.asarray(config.v_th, dtype=np.float64)
    if config.variant >= 3:
        a = attention_reference(q, k, v, config.heads)
        return lif_reference(a / 8.0, v_th)
    x = (k * v) if config.variant == 1 else v
    mask = lif_reference(x.sum(axis=2), v_th)                 # (samples, T, C)
    return (q * mask[:, :, None, :]).astype(np.uint8)


# -- a hand-worked case: channels 8, heads 2 (d = 4), tokens 3 --------------------------------

# head 0 = channels 0-3, head 1 = channels 4-7; rows are tokens
HAND_K = np.array([[1, 1, 0, 0, 1, 1, 1, 1],
                   [1, 0, 1, 0, 1, 1, 1, 1],
                   [1, 1, 1, 1, 1, 1, 1, 1]], np.uint8)
HAND_V = np.array([[1, 1, 1, 0, 1, 0, 1, 0],
                   [0, 1, 1, 1, 1, 1, 0, 0],
                   [1, 1, 0, 0, 1, 0, 0, 0]], np.uint8)
HAND_Q = np.array([[1, 1, 1, 1, 1, 1, 1, 0],
                   [1, 0, 0, 0, 0, 0, 0, 0],
                   [0, 1, 1, 0, 1, 1, 1, 1]], np.uint8)
# head 0: KV rows (K^T V) = [2,3,2,1], [2,2,1,0], [1,2,1,1], [1,1,0,0]
#   token 0 takes all four rows: [6,8,4,2]; token 1 row 0: [2,3,2,1]; token 2 rows 1+2: [3,4,2,1]
# head 1: K is all ones, so every KV row is V's column sums [3,1,1,0]
#   token 0 takes three rows: [9,3,3,0]; token 1 none; token 2 four rows: [12,4,4,0]
HAND_A = np.array([[6, 8, 4, 2, 9, 3, 3, 0],
                   [2, 3, 2, 1, 0, 0, 0, 0],
                   [3, 4, 2, 1, 12, 4, 4, 0]])
# variant 3 at T = 1 fires where A >= 8
HAND_V3 = np.array([[0, 1, 0, 0, 1, 0, 0, 0],
                    [0, 0, 0, 0, 0, 0, 0, 0],
                    [0, 0, 0, 0, 1, 0, 0, 0]])
# variant 4, v_th 0.375: integer threshold 3, H = A / 2 >= 3 where A >= 6
HAND_V4 = np.array([[1, 1, 0, 0, 1, 0, 0, 0],
                    [0, 0, 0, 0, 0, 0, 0, 0],
                    [0, 0, 0, 0, 1, 0, 0, 0]])
# variant 4, per channel: thresholds v / 0.125 = [2,4,4,1,4,3,2,0.5], fire where A >= twice that
HAND_VTH = (0.25, 0.5, 0.5, 0.125, 0.5, 0.375, 0.25, 0.0625)
HAND_V4C = np.array([[1, 1, 0, 1, 1, 0, 0, 0],
                     [0, 0, 0, 0, 0, 0, 0, 0],
                     [0, 0, 0, 0, 1, 0, 1, 0]])
# variant 1: K AND V per token: [1,1,0,0 | V], [0,0,1,0 | V], [1,1,0,0 | V]
HAND_COUNTS1 = np.array([2, 2, 1, 0, 3, 1, 1, 0])
HAND_V1 = np.array([[1, 1, 1, 0, 1, 1, 1, 0],
                    [1, 0, 0, 0, 0, 0, 0, 0],
                    [0, 1, 1, 0, 1, 1, 1, 0]])
# variant 2: V's column sums
HAND_COUNTS2 = np.array([2, 3, 2, 1, 3, 1, 1, 0])
HAND_V2 = np.array([[1, 1, 1, 1, 1, 1, 1, 0],
                    [1, 0, 0, 0, 0, 0, 0, 0],
                    [0, 1, 1, 0, 1, 1, 1, 0]])


def hand_config(variant, **changes):
    return SDSAConfig(variant=variant, channels=8, heads=2, tokens=3, lanes=2, **changes)


def hand(a):
    return np.asarray(a, np.uint8)[None, None]                # (1 sample, 1 step, 3, 8)


def test_hand_references_agree():
    """The hand-worked constants, re-derived by the independent references."""
    np.testing.assert_array_equal(attention_reference(hand(HAND_Q), hand(HAND_K), hand(HAND_V),
                                                      2)[0, 0], HAND_A)
    np.testing.assert_array_equal((HAND_K & HAND_V).sum(axis=0), HAND_COUNTS1)
    np.testing.assert_array_equal(HAND_V.sum(axis=0), HAND_COUNTS2)


@pytest.mark.parametrize(
    ("variant", "changes", "expected"),
    [(3, {}, HAND_V3), (4, {"v_th": 0.5}, HAND_V3), (4, {"v_th": 0.375}, HAND_V4),
     (4, {"v_th": HAND_VTH}, HAND_V4C)],
    ids=["v3", "v4-0.5", "v4-0.375", "v4-per-channel"],
)
def test_hand_worked_attention(variant, changes, expected):
    c = hand_config(variant, **changes)
    spikes, a = sdsa_int(c, hand(HAND_Q), hand(HAND_K), hand(HAND_V))
    assert spikes.dtype == np.uint8 and spikes.shape == (1, 1, 3, 8)
    assert a.dtype == np.int64 and a.shape == (1, 1, 3, 8)
    np.testing.assert_array_equal(a[0, 0], HAND_A)
    np.testing.assert_array_equal(spikes[0, 0], expected)


@pytest.mark.parametrize(("variant", "counts", "expected"),
                         [(1, HAND_COUNTS1, HAND_V1), (2, HAND_COUNTS2, HAND_V2)])
def test_hand_worked_mask(variant, counts, expected):
    c = hand_config(variant)
    spikes, n = sdsa_int(c, hand(HAND_Q), hand(HAND_K), hand(HAND_V))
    assert n.dtype == np.int64 and n.shape == (1, 1, 8)
    np.testing.assert_array_equal(n[0, 0], counts)
    assert spikes.dtype == np.uint8 and spikes.shape == (1, 1, 3, 8)
    np.testing.assert_array_equal(spikes[0, 0], expected)


def test_heads_are_separate():
    """One head, same spikes: KV = K^T V over all 8 channels; A changes."""
    c = SDSAConfig(channels=8, heads=1, tokens=3, lanes=2)
    _, a = sdsa_int(c, hand(HAND_Q), hand(HAND_K), hand(HAND_V))
    # token 1 has Q only on channel 0: A = row 0 of K^T V = sum over tokens with K[:, 0] = 1
    # (all three) of V = V's column sums
    np.testing.assert_array_equal(a[0, 0, 1], HAND_V.sum(axis=0))
    assert not np.array_equal(a[0, 0], HAND_A)


def test_tiny_all_ones_over_two_timesteps():
    # channels 4, heads 2 (d = 2), tokens 3: KV is 3 everywhere, A = 2 * 3 = 6 everywhere
    c = SDSAConfig(channels=4, heads=2, tokens=3, lanes=1, timesteps=2)
    ones = np.ones((1, 2, 3, 4), np.uint8)
    spikes, a = sdsa_int(c, ones, ones, ones)
    assert (a == 6).all()
    # in A units, threshold 4: t=0 H = 3 (silent), t=1 H = 3 + (6 - 3) / 2 = 4.5 (fires)
    assert (spikes[0, 0] == 0).all() and (spikes[0, 1] == 1).all()
    # at T = 1, A = 6 < 8: silent
    one = SDSAConfig(channels=4, heads=2, tokens=3, lanes=1)
    spikes, _ = sdsa_int(one, ones[:, :1], ones[:, :1], ones[:, :1])
    assert not spikes.any()


def test_tiny_variant1_lanes1():
    # channels 4, heads 2, tokens 3; K AND V hits channel 1 once (token 2), nothing else
    c = SDSAConfig(variant=1, channels=4, heads=2, tokens=3, lanes=1)
    q = np.ones((1, 1, 3, 4), np.uint8)
    k = np.zeros_like(q)
    v = np.zeros_like(q)
    k[0, 0, 2, 1] = v[0, 0, 2, 1] = 1
    k[0, 0, 0, 3] = 1                                          # K without V
    v[0, 0, 1, 2] = 1                                          # V without K
    spikes, counts = sdsa_int(c, q, k, v)
    np.testing.assert_array_equal(counts[0, 0], [0, 1, 0, 0])
    np.testing.assert_array_equal(spikes[0, 0], [[0, 1, 0, 0]] * 3)
    # variant 2 ignores K: channel 1 and 2 have a V spike
    spikes, counts = sdsa_int(c.replace(variant=2), q, k, v)
    np.testing.assert_array_equal(counts[0, 0], [0, 1, 1, 0])
    np.testing.assert_array_equal(spikes[0, 0], [[0, 1, 1, 0]] * 3)


# -- the T = 1 rules on random spikes -------------------------------------------------------


def random_inputs(config, samples, density, seed):
    return random_qkv(config, samples, density, seed=seed)


@pytest.mark.parametrize("density", [0.3, 0.5])
def test_variant3_t1_fires_exactly_when_a_at_least_8(density):
    c = SDSAConfig(channels=16, heads=2, tokens=20, lanes=4)      # d = 8
    q, k, v = random_inputs(c, 4, density, seed=11)
    spikes, a = sdsa_int(c, q, k, v)
    ref = attention_reference(q, k, v, 2)
    np.testing.assert_array_equal(a, ref)
    np.testing.assert_array_equal(spikes, (ref >= 8).astype(np.uint8))
    assert spikes.any() and not spikes.all()
    # both sides of the boundary are present
    assert (ref == 7).any() or (ref == 8).any()


def test_variant4_t1_fires_exactly_when_a_at_least_twice_the_integer_threshold():
    # v_th 0.75: integer threshold 6, H = A / 2 >= 6 where A >= 12
    c = SDSAConfig(variant=4, channels=16, heads=2, tokens=20, lanes=4, v_th=0.75)
    q, k, v = random_inputs(c, 4, 0.5, seed=12)
    spikes, a = sdsa_int(c, q, k, v)
    ref = attention_reference(q, k, v, 2)
    np.testing.assert_array_equal(spikes, (ref >= 12).astype(np.uint8))
    assert spikes.any() and not spikes.all()


def test_variant1_t1_masks_q_by_k_and_v():
    c = SDSAConfig(variant=1, channels=16, heads=2, tokens=6, lanes=4)
    q, k, v = random_inputs(c, 5, (0.5, 0.2, 0.2), seed=13)
    spikes, counts = sdsa_int(c, q, k, v)
    np.testing.assert_array_equal(counts, (k & v).sum(axis=2))
    # a channel passes iff some token has K AND V
    mask = (k & v).any(axis=2)                                    # (samples, 1, C)
    np.testing.assert_array_equal(spikes, q & mask[:, :, None, :])
    assert mask.any() and not mask.all()
    assert ((q == 1) & (spikes == 0)).any() and spikes.any()


def test_variant2_t1_uses_v_only():
    c = SDSAConfig(variant=2, channels=16, heads=2, tokens=6, lanes=4)
    q, k, v = random_inputs(c, 5, (0.5, 0.5, 0.1), seed=14)
    spikes, counts = sdsa_int(c, q, k, v)
    np.testing.assert_array_equal(counts, v.sum(axis=2))
    mask = v.any(axis=2)
    np.testing.assert_array_equal(spikes, q & mask[:, :, None, :])
    assert mask.any() and not mask.all()
    # K does not matter at all
    same, _ = sdsa_int(c, q, 1 - k, v)
    np.testing.assert_array_equal(same, spikes)


# -- multi-step: against the independent LIF recurrence -------------------------------------


@pytest.mark.parametrize(
    ("variant", "v_th", "density"),
    [(3, 0.5, 0.3), (3, 0.5, (0.4, 0.3, 0.3)),
     (4, 0.75, 0.35),
     (4, (0.25, 0.5, 0.75, 1.0, 0.375, 0.625, 0.125, 1.5,
          0.0078125, 0.5, 0.5, 2.0, 0.3125, 0.5, 0.25, 0.75), 0.3),
     (1, 0.5, (0.5, 0.05, 0.1)), (2, 0.5, (0.5, 0.5, 0.04))],
    ids=["v3", "v3-mixed", "v4", "v4-per-channel", "v1", "v2"],
)
def test_t4_against_lif_recurrence(variant, v_th, density):
    c = SDSAConfig(variant=variant, channels=16, heads=2, tokens=20, lanes=4, timesteps=4,
                   v_th=v_th)
    q, k, v = random_inputs(c, 3, density, seed=21)
    spikes, neuron_input = sdsa_int(c, q, k, v)
    np.testing.assert_array_equal(spikes, sdsa_reference(c, q, k, v))
    assert spikes.any()
    if variant >= 3:
        np.testing.assert_array_equal(neuron_input, attention_reference(q, k, v, 2))
        assert not spikes.all()
        # some neuron fires at a later timestep without having fired at the first
        assert (spikes[:, 1:] & (1 - spikes[:, :1])).any()
    else:
        assert ((q == 1) & (spikes == 0)).any()


def test_t4_variant3_by_hand():
    # d = 4, tokens 2: K[:, 0] = 1 on both tokens, V rows [1,1,1,0] and [1,0,0,0], so KV row 0
    # is [2,1,1,0] and the other rows are 0; Q only on (token 0, channel 0): A[token 0] =
    # [2,1,1,0] at every step. In A units the threshold is 4 and H never exceeds 2: silent.
    c = SDSAConfig(channels=4, heads=1, tokens=2, lanes=1, timesteps=4)
    q = np.zeros((1, 4, 2, 4), np.uint8)
    k = np.zeros_like(q)
    v = np.zeros_like(q)
    k[:, :, :, 0] = 1
    v[:, :, 0, :3] = 1
    v[:, :, 1, 0] = 1
    q[:, :, 0, 0] = 1
    spikes, a = sdsa_int(c, q, k, v)
    np.testing.assert_array_equal(a[0, :, 0], [[2, 1, 1, 0]] * 4)
    assert not a[0, :, 1].any()
    assert not spikes.any()
    # d = 8, one token, Q all ones: A[channel 0] = nnz(K) * V[0]. Over time A = 8, 0, 6, 6:
    # H = 4 (fires, reset), 0, 3, 3 + (6 - 3) / 2 = 4.5 (fires)
    c1 = SDSAConfig(channels=8, heads=1, tokens=1, lanes=1, timesteps=4)
    q1 = np.ones((1, 4, 1, 8), np.uint8)
    k1 = np.zeros_like(q1)
    v1 = np.zeros_like(q1)
    v1[0, [0, 2, 3], 0, 0] = 1
    k1[0, 0, 0, :] = 1
    k1[0, 2, 0, :6] = 1
    k1[0, 3, 0, :6] = 1
    spikes, a = sdsa_int(c1, q1, k1, v1)
    np.testing.assert_array_equal(a[0, :, 0, 0], [8, 0, 6, 6])
    assert not a[0, :, 0, 1:].any()
    np.testing.assert_array_equal(spikes[0, :, 0, 0], [1, 0, 0, 1])
    assert not spikes[0, :, 0, 1:].any()


# -- input checking -----------------------------------------------------------------------------


SMALL = SDSAConfig(channels=4, heads=2, tokens=3, lanes=1)


@pytest.mark.parametrize(
    ("which", "shape"),
    [(0, (1, 3, 4)), (1, (2, 1, 3, 5)), (2, (2, 1, 4, 4)), (0, (2, 2, 3, 4)),
     (1, (1, 1, 1, 3, 4))],
)
def test_wrong_shape(which, shape):
    arrays = [np.zeros((2, 1, 3, 4), np.uint8) for _ in range(3)]
    arrays[which] = np.zeros(shape, np.uint8)
    name = "qkv"[which]
    with pytest.raises(ValueError, match=exact(
        f"{name} must have shape (samples, 1, 3, 4), not {shape}"
    )):
        sdsa_int(SMALL, *arrays)


@pytest.mark.parametrize("variant", [1, 3])
@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("bad", [2, -1, 255])
def test_not_spikes(variant, which, bad):
    arrays = [np.zeros((2, 1, 3, 4), np.int64) for _ in range(3)]
    arrays[which][1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match=exact(f"{'qkv'[which]} must be spikes (0 or 1)")):
        sdsa_int(SMALL.replace(variant=variant), *arrays)


def test_bool_and_list_inputs_are_spikes():
    ones = np.ones((1, 1, 3, 4), bool)
    spikes, a = sdsa_int(SMALL, ones, ones.tolist(), ones.astype(np.int32))
    assert (a == 6).all() and not spikes.any()


def test_zero_samples():
    z = np.zeros((0, 1, 3, 4), np.uint8)
    spikes, a = sdsa_int(SMALL, z, z, z)
    assert spikes.shape == (0, 1, 3, 4) and a.shape == (0, 1, 3, 4)
    spikes, counts = sdsa_int(SMALL.replace(variant=2), z, z, z)
    assert spikes.shape == (0, 1, 3, 4) and counts.shape == (0, 1, 4)


# -- the float model --------------------------------------------------------------------------


def to_torch(a):
    """(samples, T, N, C) -> (T, B, N, C) float tensor."""
    return torch.tensor(np.asarray(a), dtype=torch.float32).transpose(0, 1)


FLOAT_CASES = {
    "v1": dict(variant=1),
    "v2": dict(variant=2),
    "v3": dict(variant=3),
    "v4": dict(variant=4, v_th=0.625),
    "v4-per-channel": dict(variant=4, v_th=(0.25, 0.5, 0.75, 1.0, 0.375, 0.625, 0.125, 1.5,
                                            0.0625, 0.5, 0.5, 2.0, 0.3125, 0.5, 0.25, 0.75)),
}


@pytest.mark.parametrize("timesteps", [1, 4])
@pytest.mark.parametrize("name", sorted(FLOAT_CASES))
def test_float_equals_int(name, timesteps):
    c = SDSAConfig(channels=16, heads=2, tokens=12, lanes=2, timesteps=timesteps,
                   **FLOAT_CASES[name])
    density = (0.5, 0.1, 0.1) if c.variant <= 2 else 0.35
    q, k, v = random_qkv(c, 3, density, seed=31 + timesteps)
    spikes, _ = sdsa_int(c, q, k, v)
    model = sdsa_float_from_config(c)
    with torch.no_grad():
        out = model(to_torch(q), to_torch(k), to_torch(v))
    assert out.shape == (timesteps, 3, 12, 16)
    out = out.transpose(0, 1).numpy()
    assert set(np.unique(out)) <= {0.0, 1.0}
    np.testing.assert_array_equal(out.astype(np.uint8), spikes)
    assert spikes.any() and not spikes.all()


def test_float_hand_worked():
    for variant, changes, expected in [(1, {}, HAND_V1), (2, {}, HAND_V2), (3, {}, HAND_V3),
                                       (4, {"v_th": HAND_VTH}, HAND_V4C)]:
        model = sdsa_float_from_config(hand_config(variant, **changes))
        out = model(to_torch(hand(HAND_Q)), to_torch(hand(HAND_K)), to_torch(hand(HAND_V)))
        np.testing.assert_array_equal(out[0, 0].detach().numpy(), expected)


def test_float_from_config_parameters():
    m3 = sdsa_float_from_config(SDSAConfig())
    assert (m3.variant, m3.heads, m3.scale) == (3, 8, 0.125)
    assert float(m3.neuron.v_th) == 0.5
    m1 = sdsa_float_from_config(SDSAConfig(variant=1, heads=4))
    assert (m1.variant, m1.heads, m1.scale) == (1, 4, 1.0)
    m4 = sdsa_float_from_config(hand_config(4, v_th=HAND_VTH))
    assert isinstance(m4.neuron.v_th, torch.nn.Parameter)
    assert m4.neuron.v_th.shape == (8,)
    assert m4.neuron.v_th.tolist() == list(HAND_VTH)


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_variants_1_to_3_have_no_trainable_parameters(variant):
    model = sdsa_float_from_config(SDSAConfig(variant=variant))
    assert list(model.parameters()) == []
    assert not isinstance(model.neuron.v_th, torch.nn.Parameter)
    assert SDSA(variant, 8).state_dict()["neuron.v_th"] == 0.5


def test_variant4_threshold_is_the_only_parameter():
    model = sdsa_float_from_config(SDSAConfig(variant=4, v_th=0.75))
    params = list(model.named_parameters())
    assert [n for n, _ in params] == ["neuron.v_th"]
    assert params[0][1].requires_grad and params[0][1].item() == 0.75


def test_variant4_threshold_gradient_by_hand():
    # channels 4, heads 2, tokens 3, all ones: A = 6, Y = 0.75, H = 0.375 at T = 1,
    # H - v_th = -0.125; each of the 12 outputs has d out / d v_th = -4 s (1 - s),
    # s = sigmoid(4 * -0.125)
    c = SDSAConfig(variant=4, channels=4, heads=2, tokens=3, lanes=1)
    model = sdsa_float_from_config(c)
    ones = torch.ones((1, 1, 3, 4))
    out = model(ones, ones, ones)
    assert not out.any()
    out.sum().backward()
    s = 1 / (1 + math.exp(0.5))
    assert model.neuron.v_th.grad is not None
    assert float(model.neuron.v_th.grad) == pytest.approx(12 * -4 * s * (1 - s), rel=1e-5)


def test_variant4_threshold_gradient_multi_step_per_channel():
    c = SDSAConfig(variant=4, channels=16, heads=2, tokens=12, lanes=2, timesteps=4,
                   v_th=FLOAT_CASES["v4-per-channel"]["v_th"])
    model = sdsa_float_from_config(c)
    q, k, v = random_qkv(c, 2, 0.35, seed=41)
    out = model(to_torch(q), to_torch(k), to_torch(v))
    (out * torch.linspace(0.5, 1.5, out.numel()).reshape(out.shape)).sum().backward()
    grad = model.neuron.v_th.grad
    assert grad.shape == (16,)
    assert torch.isfinite(grad).all()
    assert (grad != 0).all()
    assert (grad < 0).all()         # raising a threshold only lowers the surrogate output


@pytest.mark.parametrize("variant", [0, 5, "3", None, -1])
def test_float_bad_variant(variant):
    with pytest.raises(ValueError, match=exact(f"variant must be 1, 2, 3 or 4, not {variant!r}")):
        SDSA(variant, 2)


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_float_heads_must_divide_channels(variant):
    model = SDSA(variant, 3)
    x = torch.zeros((1, 1, 2, 4))
    with pytest.raises(ValueError, match=exact("heads (3) must divide channels (4)")):
        model(x, x, x)


# -- export -------------------------------------------------------------------------------------


def test_random_qkv_shapes_and_determinism():
    c = SDSAConfig(channels=8, heads=2, tokens=5, lanes=2, timesteps=3)
    q, k, v = random_qkv(c, 4, 0.5, seed=2)
    for a in (q, k, v):
        assert a.dtype == np.uint8 and a.shape == (4, 3, 5, 8)
        assert set(np.unique(a)) <= {0, 1}
    again = random_qkv(c, 4, 0.5, seed=2)
    for a, b in zip((q, k, v), again, strict=True):
        np.testing.assert_array_equal(a, b)
    # the three streams are not copies of one another
    assert not np.array_equal(q, k) and not np.array_equal(k, v)
    other = random_qkv(c, 4, 0.5, seed=3)
    assert not np.array_equal(q, other[0])


def test_random_qkv_density_triple():
    c = SDSAConfig(channels=16, heads=2, tokens=20, lanes=4, timesteps=2)
    q, k, v = random_qkv(c, 5, (0.0, 0.5, 1.0), seed=0)
    assert not q.any()
    assert v.all()
    assert 0.4 < k.mean() < 0.6
    q, k, v = random_qkv(c, 5, [0.1, 0.9, 0.5], seed=0)
    assert 0.05 < q.mean() < 0.15 and 0.85 < k.mean() < 0.95 and 0.4 < v.mean() < 0.6
    q, k, v = random_qkv(c, 5, 0.2, seed=0)
    for a in (q, k, v):
        assert 0.15 < a.mean() < 0.25


@pytest.mark.parametrize("variant", [1, 3])
@pytest.mark.parametrize("name", ["b", "b.zip"], ids=["folder", "zip"])
def test_export_reproducible(tmp_path, name, variant):
    c = SDSAConfig(variant=variant, channels=8, heads=2, tokens=5, lanes=2, timesteps=2)
    one, two, three = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    for folder in (one, two, three):
        folder.mkdir()
    export_sdsa_bundle(one / name, c, samples=3, density=0.4, seed=9)
    export_sdsa_bundle(two / name, c, samples=3, density=0.4, seed=9)
    export_sdsa_bundle(three / name, c, samples=3, density=0.4, seed=10)
    if name.endswith(".zip"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
        assert (one / name).read_bytes() != (three / name).read_bytes()
    else:
        for member in MEMBERS:
            assert (one / name / member).read_bytes() == (two / name / member).read_bytes()
        assert (one / name / "arrays.npz").read_bytes() != \
            (three / name / "arrays.npz").read_bytes()


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_export_traces_equal_the_bundle_and_the_reference(tmp_path, variant):
    v_th = 0.375 if variant == 4 else 0.5
    c = SDSAConfig(variant=variant, channels=8, heads=2, tokens=10, lanes=2, timesteps=2,
                   v_th=v_th)
    path = tmp_path / "b"
    traces = export_sdsa_bundle(path, c, samples=3, density=0.4, seed=5)
    assert isinstance(traces, SDSATraces) and traces.samples == 3
    config, loaded = load_sdsa_bundle(path)
    assert config == c
    for field in ("q", "k", "v", "spikes", "neuron_input"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(traces, field))
    # the stimulus is random_qkv's, the response the paper's semantics
    for a, b in zip((traces.q, traces.k, traces.v), random_qkv(c, 3, 0.4, seed=5), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(traces.spikes, sdsa_reference(c, traces.q, traces.k, traces.v))
    if variant >= 3:
        np.testing.assert_array_equal(traces.neuron_input,
                                      attention_reference(traces.q, traces.k, traces.v, 2))
    else:
        x = traces.k & traces.v if variant == 1 else traces.v
        np.testing.assert_array_equal(traces.neuron_input, x.sum(axis=2))
    b = read_bundle(path, unit="sdsa")
    name = "attention" if variant >= 3 else "counts"
    assert sorted(b.arrays) == sorted(["q", "k", "v", "spikes", name])
    assert b.meta == {"generator": "sw.export", "seed": 5, "density": [0.4, 0.4, 0.4]}


def test_export_density_triple(tmp_path):
    c = SDSAConfig(channels=16, heads=2, tokens=20, lanes=4)
    path = tmp_path / "b"
    traces = export_sdsa_bundle(path, c, samples=2, density=(0.0, 0.5, 1.0), seed=1)
    _, loaded = load_sdsa_bundle(path)
    assert not loaded.q.any()
    assert 0.4 < loaded.k.mean() < 0.6
    assert loaded.v.all()
    assert not loaded.spikes.any() and not loaded.neuron_input.any()   # Q is silent
    np.testing.assert_array_equal(loaded.k, traces.k)
    assert read_bundle(path).meta["density"] == [0.0, 0.5, 1.0]


def test_export_given_spikes(tmp_path):
    c = hand_config(3)
    path = tmp_path / "b.zip"
    traces = export_sdsa_bundle(path, c, q=hand(HAND_Q), k=hand(HAND_K), v=hand(HAND_V))
    _, loaded = load_sdsa_bundle(path)
    for got in (traces, loaded):
        assert got.samples == 1
        np.testing.assert_array_equal(got.q[0, 0], HAND_Q)
        np.testing.assert_array_equal(got.k[0, 0], HAND_K)
        np.testing.assert_array_equal(got.v[0, 0], HAND_V)
        np.testing.assert_array_equal(got.spikes[0, 0], HAND_V3)
        np.testing.assert_array_equal(got.neuron_input[0, 0], HAND_A)


def test_export_samples_count(tmp_path):
    c = SDSAConfig(variant=2, channels=8, heads=2, tokens=4, lanes=2)
    traces = export_sdsa_bundle(tmp_path / "b", c, samples=5, density=0.3)
    assert traces.samples == 5
    assert traces.neuron_input.shape == (5, 1, 8)


# -- defects found once, kept fixed ----------------------------------------------------------------


# check_spikes once only checked the range 0..1, so fractional or NaN values were truncated to 0
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("bad", [0.5, float("nan")], ids=["half", "nan"])
def test_fractional_values_are_not_spikes(bad):
    ones = np.ones((1, 1, 3, 4))
    v = ones.copy()
    v[0, 0, 1, 2] = bad
    with pytest.raises(ValueError, match=exact("v must be spikes (0 or 1)")):
        sdsa_int(SMALL.replace(variant=2), ones, ones, v)


@pytest.mark.parametrize("variant", [True, 3.0])
def test_float_rejects_non_integer_variant(variant):
    """`variant not in (1, 2, 3, 4)` once accepted True (== 1) and 3.0."""
    with pytest.raises(ValueError, match=exact(f"variant must be 1, 2, 3 or 4, not {variant!r}")):
        SDSA(variant, 2)


@pytest.mark.parametrize("heads", [0, -1, True])
def test_float_rejects_bad_heads(heads):
    """heads = 0 once reached `c % 0` in forward."""
    with pytest.raises(ValueError, match=exact(f"heads must be a positive integer, not "
                                               f"{heads!r}")):
        SDSA(3, heads)


def test_export_needs_all_of_q_k_v_or_none(tmp_path):
    """Giving q alone once threw it away silently and drew all three at random."""
    q, _, _ = random_qkv(SMALL, 1, 0.5, seed=0)
    with pytest.raises(ValueError, match=exact("give q, k and v together, or none of them (then "
                                               "they are drawn)")):
        export_sdsa_bundle(tmp_path / "b", SMALL, q=q)
    assert not (tmp_path / "b").exists()
