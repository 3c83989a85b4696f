"""Tests of the float LIF (`sw.lif_float`) and the integer LIF (`sw.lif_int`): hand-worked cases,
float vs integer agreement, the surrogate gradient, input checks."""

import math
import re

import numpy as np
import pytest
import torch

from spec.errors import ConfigError
from spec.lif import LIFConfig
from sw.export import random_lif_inputs
from sw.lif_float import MultiStepLIF, SigmoidSpike, lif_float_from_config
from sw.lif_int import lif_int

# -- hand-worked cases --------------------------------------------------------------------------
#
# Update per timestep, V starting at v_reset = 0 (DESIGN.md section 3):
#   decay_input:     H = V + (X - V) / tau
#   not decay_input: H = V - V / tau + X
#   S = H >= v_th;   hard: V = 0 if S else H;   soft: V = H - v_th if S else H
# All cases use tau = 2. Membranes are after reset. With T <= 3 steps of a divide by 2, every
# value is a multiple of 2**-3, so frac_bits = 3 represents them exactly; fixed = value * 8.

CASES = [
    # id, decay_input, reset, v_th, inputs, spikes, membranes
    #
    # t1: H = 0 + (1 - 0)/2 = 0.5 < 1, V = 0.5
    # t2: H = 0.5 + (1 - 0.5)/2 = 0.75 < 1, V = 0.75
    # t3: H = 0.75 + (1 - 0.75)/2 = 0.875 < 1, V = 0.875  -> never fires
    ("decay-hard-111", True, "hard", 1.0, [1, 1, 1], [0, 0, 0], [0.5, 0.75, 0.875]),
    # as above until t3: H = 0.75 + (2 - 0.75)/2 = 1.375 >= 1, fires, V = 0
    ("decay-hard-112", True, "hard", 1.0, [1, 1, 2], [0, 0, 1], [0.5, 0.75, 0.0]),
    # T = 1: H = 2/2 = 1 >= 1 fires (an input of 2 is the least that fires at v_th 1.0)
    ("decay-hard-2", True, "hard", 1.0, [2], [1], [0.0]),
    # T = 1: H = 1/2 = 0.5 < 1
    ("decay-hard-1", True, "hard", 1.0, [1], [0], [0.5]),
    # t1: H = 0 + (-2 - 0)/2 = -1, V = -1
    # t2: H = -1 + (3 - (-1))/2 = 1 >= 1, fires, V = 0
    # t3: H = 0 + (0 - 0)/2 = 0, V = 0
    ("decay-hard-negative", True, "hard", 1.0, [-2, 3, 0], [0, 1, 0], [-1.0, 0.0, 0.0]),
    # talking heads: v_th 0.5, T = 1: H = 1/2 = 0.5 >= 0.5 fires
    ("talking-heads-1", True, "hard", 0.5, [1], [1], [0.0]),
    # talking heads, input 0: H = 0 < 0.5
    ("talking-heads-0", True, "hard", 0.5, [0], [0], [0.0]),
    # decay_input False, v_th 1.5:
    # t1: H = 0 - 0/2 + 1 = 1 < 1.5, V = 1
    # t2: H = 1 - 1/2 + 1 = 1.5 >= 1.5, fires, V = 0
    # t3: H = 0 - 0 + 1 = 1, V = 1
    ("nodecay-hard-111", False, "hard", 1.5, [1, 1, 1], [0, 1, 0], [1.0, 0.0, 1.0]),
    # soft reset, decay_input True, v_th 1.0:
    # t1: H = 0 + 3/2 = 1.5 >= 1, fires, V = 1.5 - 1 = 0.5
    # t2: H = 0.5 + (0 - 0.5)/2 = 0.25 < 1, V = 0.25
    # t3: H = 0.25 + (2 - 0.25)/2 = 1.125 >= 1, fires, V = 0.125
    ("decay-soft-302", True, "soft", 1.0, [3, 0, 2], [1, 0, 1], [0.5, 0.25, 0.125]),
    # soft reset, decay_input False, v_th 1.0:
    # t1: H = 0 + 3 = 3 >= 1, fires, V = 2
    # t2: H = 2 - 2/2 + 0 = 1 >= 1, fires, V = 0 (the surplus of t1 fires again)
    # t3: H = 0, V = 0
    ("nodecay-soft-300", False, "soft", 1.0, [3, 0, 0], [1, 1, 0], [2.0, 0.0, 0.0]),
]
CASE_IDS = [c[0] for c in CASES]


def run_float(x, **kwargs):
    """Float LIF over x of shape (T, ...); returns spikes and membranes as numpy arrays."""
    lif = MultiStepLIF(record_membrane=True, **kwargs)
    spikes = lif(torch.as_tensor(x, dtype=torch.float64))
    return spikes.detach().numpy(), lif.membranes.detach().numpy()


@pytest.mark.parametrize(
    ("name", "decay_input", "reset", "v_th", "inputs", "spikes", "membranes"), CASES, ids=CASE_IDS
)
def test_float_hand_worked(name, decay_input, reset, v_th, inputs, spikes, membranes):
    s, v = run_float(np.array(inputs, dtype=float)[:, None], tau=2.0, v_th=v_th,
                     decay_input=decay_input, reset=reset)
    assert s[:, 0].tolist() == spikes
    assert v[:, 0].tolist() == membranes


@pytest.mark.parametrize(
    ("name", "decay_input", "reset", "v_th", "inputs", "spikes", "membranes"), CASES, ids=CASE_IDS
)
def test_int_hand_worked(name, decay_input, reset, v_th, inputs, spikes, membranes):
    config = LIFConfig(neurons=1, lanes=1, timesteps=len(inputs), frac_bits=3, tau=2,
                       decay_input=decay_input, reset=reset, v_th=v_th)
    assert config.v_th_fixed == (int(v_th * 8),)
    s, v = lif_int(config, np.array(inputs)[None, :, None])
    assert s.dtype == np.uint8 and v.dtype == np.int64
    assert s[0, :, 0].tolist() == spikes
    assert v[0, :, 0].tolist() == [int(m * 8) for m in membranes]  # fixed point, LSB 2**-3


def test_float_state_is_cleared_per_call():
    lif = MultiStepLIF(v_th=1.0)
    x = torch.tensor([[1.0], [1.0]])
    first = lif(x)
    second = lif(x)
    assert torch.equal(first, second)


def test_float_per_neuron_thresholds_broadcast():
    # T = 1, inputs 1 and 1: H = 0.5 each; thresholds 0.5 and 1.0 -> fires, does not fire
    s, _ = run_float([[1.0, 1.0]], v_th=[0.5, 1.0])
    assert s.tolist() == [[1.0, 0.0]]


def test_int_saturates():
    # v_bits 6 with frac_bits 2: membranes in [-32, 31] (-8 .. 7.75)
    # decay_input False, inputs [-8, -8]:
    # t1: X = -8 * 4 = -32, H = -32, V = -32
    # t2: H = -32 - (-32 >> 1) + (-32) = -32 + 16 - 32 = -48 -> saturates to -32 (never wraps)
    config = LIFConfig(neurons=1, lanes=1, timesteps=2, v_bits=6, in_bits=4, frac_bits=2,
                       decay_input=False, v_th=1.0)
    s, v = lif_int(config, np.array([[[-8], [-8]]]))
    assert s[0, :, 0].tolist() == [0, 0]
    assert v[0, :, 0].tolist() == [-32, -32]
    # and up: inputs [7, 7]: t1 H = 28, t2 H = 28 - 14 + 28 = 42 -> 31; soft reset sat(31 - 4)
    config = config.replace(reset="soft")
    s, v = lif_int(config, np.array([[[7], [7]]]))
    assert s[0, :, 0].tolist() == [1, 1]
    # t1 fires too: 28 >= 4, V = 24; t2: H = 24 - 12 + 28 = 40 -> 31 >= 4, V = 27
    assert v[0, :, 0].tolist() == [24, 27]


# -- why the membrane needs fractional bits ---------------------------------------------------


def test_integer_lif_without_fraction_bits_gets_talking_heads_wrong():
    # Float: v_th 0.5, input 1 fires (H = 0.5), input 0 does not (H = 0).
    s, _ = run_float([[0.0, 1.0]], v_th=0.5)
    assert s.tolist() == [[0.0, 1.0]]
    # With frac_bits = 0 a threshold of 0.5 cannot even be stated ...
    with pytest.raises(ConfigError, match=re.escape(
        "v_th 0.5 is not a multiple of 2**-0 (frac_bits=0)"
    )):
        LIFConfig(neurons=2, lanes=2, frac_bits=0, v_th=0.5)
    # ... and no integer threshold helps: 1 >> 1 = 0 = 0 >> 1, so inputs 0 and 1 charge the
    # membrane to the same H = 0 and can never be told apart.
    for v_th in range(-2, 4):
        config = LIFConfig(neurons=2, lanes=2, frac_bits=0, v_th=v_th)
        s, v = lif_int(config, np.array([[[0, 1]]]))
        assert s[0, 0, 0] == s[0, 0, 1], v_th
        assert s[0, 0].tolist() != [0, 1], v_th
    # the nearest thresholds get it wrong one way or the other
    s, _ = lif_int(LIFConfig(neurons=2, lanes=2, frac_bits=0, v_th=1.0), np.array([[[0, 1]]]))
    assert s[0, 0].tolist() == [0, 0]  # input 1 should fire
    s, _ = lif_int(LIFConfig(neurons=2, lanes=2, frac_bits=0, v_th=0.0), np.array([[[0, 1]]]))
    assert s[0, 0].tolist() == [1, 1]  # input 0 should not fire
    # one fractional bit is enough at T = 1
    s, v = lif_int(LIFConfig(neurons=2, lanes=2, frac_bits=1, v_th=0.5), np.array([[[0, 1]]]))
    assert s[0, 0].tolist() == [0, 1]


# -- float vs integer on random inputs ----------------------------------------------------------


def compare(config, samples=32, seed=0):
    """Run both models on the same random inputs; return (float, integer) spikes and membranes,
    each (samples, timesteps, neurons), float membranes in membrane units."""
    x = random_lif_inputs(config, samples, seed=seed)
    lif = lif_float_from_config(config, record_membrane=True)
    fs = lif(torch.as_tensor(x, dtype=torch.float64).transpose(0, 1))
    fm = lif.membranes
    fs = fs.transpose(0, 1).detach().numpy()
    fm = fm.transpose(0, 1).detach().numpy() * (1 << config.frac_bits)
    s, m = lif_int(config, x)
    return fs, fm, s, m


@pytest.mark.parametrize("timesteps", [1, 4])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("decay_input", [True, False], ids=["decay", "nodecay"])
@pytest.mark.parametrize("tau", [2, 4])
def test_float_vs_int_exact(timesteps, reset, decay_input, tau):
    shift = int(math.log2(tau))
    config = LIFConfig(neurons=64, lanes=16, channels=4, v_th=[1.0, 0.5, 1.5, 2.0],
                       frac_bits=timesteps * shift, v_bits=24, timesteps=timesteps, tau=tau,
                       reset=reset, decay_input=decay_input)
    fs, fm, s, m = compare(config)
    assert 0.05 < s.mean() < 0.95  # the stimulus does exercise firing and not firing
    np.testing.assert_array_equal(fs, s)
    np.testing.assert_array_equal(fm, m)  # float membrane * 2**frac_bits, exactly


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_float_vs_int_exact_with_v_reset(reset):
    config = LIFConfig(neurons=32, lanes=16, v_th=1.0, v_reset=-0.5, frac_bits=4, timesteps=4,
                       reset=reset)
    fs, fm, s, m = compare(config, seed=5)
    np.testing.assert_array_equal(fs, s)
    np.testing.assert_array_equal(fm, m)


def test_float_vs_int_too_few_fraction_bits():
    """Measured tolerance: with fewer than T * log2(tau) fractional bits the integer model floors
    away bits the float model keeps; the spikes then disagree on a small fraction of neurons."""
    rates = {}
    for frac_bits in (1, 2):
        for reset in ("hard", "soft"):
            for decay_input in (True, False):
                config = LIFConfig(neurons=256, lanes=16, frac_bits=frac_bits, timesteps=4,
                                   reset=reset, decay_input=decay_input, v_th=1.0)
                fs, _, s, _ = compare(config, samples=32, seed=1)
                rates[frac_bits, reset, decay_input] = float((fs != s).mean())
    for key, rate in rates.items():
        print(f"frac_bits={key[0]} reset={key[1]} decay_input={key[2]}: "
              f"spike disagreement {rate:.4%}")
    assert max(rates.values()) > 0  # the fractional bits do matter
    assert max(rates.values()) < 0.03  # ... but the models stay close
    # more fractional bits never do worse here
    for reset in ("hard", "soft"):
        for decay_input in (True, False):
            assert rates[2, reset, decay_input] <= rates[1, reset, decay_input]


# -- surrogate gradient -------------------------------------------------------------------------


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def surrogate(z, alpha=4.0):
    sig = sigmoid(alpha * z)
    return alpha * sig * (1 - sig)


def test_default_alpha_is_4():
    assert MultiStepLIF().alpha == 4.0


@pytest.mark.parametrize("z", [0.25, -0.3, 0.0])
def test_sigmoid_spike_function(z):
    x = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = SigmoidSpike.apply(x, 4.0)
    assert y.item() == (1.0 if z >= 0 else 0.0)
    y.backward()
    assert x.grad.item() == pytest.approx(surrogate(z), rel=1e-12)


@pytest.mark.parametrize("x0", [1.25, 0.75, 1.0])
def test_surrogate_gradient_no_decay(x0):
    # T = 1, decay_input False: H = x, dH/dx = 1, so dS/dx = alpha * sig * (1 - sig) with
    # sig = sigmoid(alpha * (x - v_th)). At x = v_th, sig = 1/2 and dS/dx = 4/4 = 1.
    x = torch.tensor([[x0]], dtype=torch.float64, requires_grad=True)
    s = MultiStepLIF(v_th=1.0, decay_input=False)(x)
    s.sum().backward()
    grad = x.grad.item()
    assert grad != 0
    assert grad == pytest.approx(surrogate(x0 - 1.0), rel=1e-6)
    if x0 == 1.0:
        assert grad == pytest.approx(1.0, rel=1e-6)


def test_surrogate_gradient_decay_input():
    # decay_input True: H = x / tau, so dS/dx = (1/2) * surrogate(x/2 - v_th); x = 2.5: H = 1.25
    x = torch.tensor([[2.5]], dtype=torch.float64, requires_grad=True)
    MultiStepLIF(v_th=1.0).forward(x).sum().backward()
    assert x.grad.item() == pytest.approx(0.5 * surrogate(0.25), rel=1e-6)


def test_reset_is_detached():
    # decay_input False, v_th 1, x = [1.5, 0]: t1 H = 1.5 fires.
    # hard: V = H * (1 - S) + 0 * S with S detached, so V = 0 carries no gradient to x[0]:
    #       dS2/dx1 = 0 (it would be nonzero if the reset were not detached).
    # soft: V = H - S * v_th, S detached: dV/dx1 = 1; t2 H = V - V/2 + 0 = 0.25,
    #       dS2/dx1 = (1/2) * surrogate(0.25 - 1).
    for reset, expected in (("hard", 0.0), ("soft", 0.5 * surrogate(-0.75))):
        x = torch.tensor([[1.5], [0.0]], dtype=torch.float64, requires_grad=True)
        s = MultiStepLIF(v_th=1.0, decay_input=False, reset=reset)(x)
        assert s[:, 0].tolist() == [1.0, 0.0]
        s[1].sum().backward()
        assert x.grad[0, 0].item() == pytest.approx(expected, rel=1e-6, abs=1e-15), reset


# -- input checks of the integer model ----------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 8), (1, 3, 8), (1, 2, 7), (1, 2, 8, 1)])
def test_lif_int_rejects_wrong_shape(shape):
    config = LIFConfig(neurons=8, lanes=4, timesteps=2)
    with pytest.raises(ValueError, match=re.escape(
        f"inputs must have shape (samples, 2, 8), not {shape}"
    )):
        lif_int(config, np.zeros(shape, dtype=np.int64))


@pytest.mark.parametrize(("bad", "range_text"), [(128, "0 .. 128"), (-129, "-129 .. 0")])
def test_lif_int_rejects_inputs_outside_in_bits(bad, range_text):
    config = LIFConfig(neurons=8, lanes=4, timesteps=2, in_bits=8)
    x = np.zeros((3, 2, 8), dtype=np.int64)
    x[2, 1, 3] = bad
    with pytest.raises(ValueError, match=re.escape(f"inputs exceed in_bits=8: {range_text}")):
        lif_int(config, x)
    # the extremes themselves are fine
    x[2, 1, 3] = 127 if bad > 0 else -128
    lif_int(config, x)


def test_lif_int_accepts_zero_samples():
    config = LIFConfig(neurons=8, lanes=4, timesteps=2)
    s, m = lif_int(config, np.zeros((0, 2, 8), dtype=np.int64))
    assert s.shape == m.shape == (0, 2, 8)


# -- known defect (see the report that came with these tests) -----------------------------------


def test_float_from_config_honours_bias():
    config = LIFConfig(neurons=4, lanes=4, timesteps=1, frac_bits=1, bias=1.0)
    fs, fm, s, m = compare(config, samples=8)
    np.testing.assert_array_equal(fs, s)
    np.testing.assert_array_equal(fm, m)


def test_float_lif_is_trainable_through_the_surrogate():
    """A linear layer feeding the LIF learns a target spike pattern through the surrogate."""
    torch.manual_seed(0)
    steps, batch, n_in, n_out = 4, 64, 12, 6
    x = (torch.rand(batch, n_in) < 0.5).float()
    teacher = torch.randn(n_in, n_out)
    target = (x @ teacher > 0).float()  # a fixed, learnable spike pattern per sample
    layer = torch.nn.Linear(n_in, n_out)
    lif = MultiStepLIF(tau=2.0, v_th=1.0)
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.05)

    def loss_and_accuracy():
        current = layer(x).unsqueeze(0).repeat(steps, 1, 1)  # the image repeated T times
        rate = lif(current).mean(0)
        return torch.nn.functional.mse_loss(rate, target), ((rate > 0.5) == target).float().mean()

    initial, initial_acc = loss_and_accuracy()
    for _ in range(150):
        optimiser.zero_grad()
        loss, _ = loss_and_accuracy()
        loss.backward()
        optimiser.step()
    final, final_acc = loss_and_accuracy()
    assert final.item() < 0.5 * initial.item()
    assert final_acc.item() > 0.9 > initial_acc.item()
