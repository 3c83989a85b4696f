"""The float Meta-SpikeFormer: structure, parameter counts against the paper, forward passes."""

import pytest
import torch

from sw.model import (
    PAPER_MODELS,
    Attention,
    ConvBlock,
    MetaSpikeFormer,
    ModelConfig,
    PadWithBNZero,
    RepConv,
    StageSpec,
    digits_config,
    metaspikformer,
    paper_config,
)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# Parameter counts by hand from the structure (weights + conv/linear biases + BN weight and
# bias), independent of the modules: the same figures the paper reports to 0.1 %.
def _conv(cin, cout, k, bias=False, groups=1):
    return cout * (cin // groups) * k * k + (cout if bias else 0)


def _repconv(c):
    return _conv(c, c, 1) + 2 * c + _conv(c, c, 3, groups=c) + _conv(c, c, 1) + 2 * c


def _convblock(d):
    sep = _conv(d, 2 * d, 1) + 4 * d + _conv(2 * d, 2 * d, 7, groups=2 * d) + \
        _conv(2 * d, d, 1) + 2 * d
    return sep + _conv(d, 4 * d, 3) + 8 * d + _conv(4 * d, d, 3) + 2 * d


def _block(d):
    attention = 4 * (_repconv(d) + 2 * d)
    mlp = _conv(d, 4 * d, 1, bias=True) + 8 * d + _conv(4 * d, d, 1, bias=True) + 2 * d
    return attention + mlp


def _by_hand(dims, classes=1000):
    c0, c1, c2, c3 = dims

    def down(cin, cout, k):
        return _conv(cin, cout, k, bias=True) + 2 * cout

    return (down(3, c0 // 2, 7) + _convblock(c0 // 2) + down(c0 // 2, c0, 3) + _convblock(c0)
            + down(c0, c1, 3) + 2 * _convblock(c1) + down(c1, c2, 3) + 6 * _block(c2)
            + down(c2, c3, 3) + 2 * _block(c3) + c3 * classes + classes)


@pytest.mark.parametrize("name", [n for n, (_, p) in PAPER_MODELS.items() if p])
def test_parameter_counts_match_the_paper(name):
    dims, paper_millions = PAPER_MODELS[name]
    count = n_params(metaspikformer(name))
    assert count == _by_hand(dims)
    assert abs(count / 1e6 - paper_millions) / paper_millions < 0.005, count


def test_parameter_count_check_can_fail():
    """The by-hand count tells a changed structure apart (one more Transformer block)."""
    dims, _ = PAPER_MODELS["metaspikformer_8_256"]
    config = paper_config(dims)
    stages = list(config.stages)
    stages[3] = StageSpec("transformer", dims[2], 7)
    assert n_params(MetaSpikeFormer(ModelConfig(stages=tuple(stages)))) != _by_hand(dims)


def test_smallest_paper_model_runs_one_image_on_the_cpu():
    torch.manual_seed(0)
    model = metaspikformer("metaspikformer_8_256").eval()
    with torch.no_grad():
        scores = model(torch.randn(1, 3, 224, 224))
    assert scores.shape == (1, 1000)
    assert torch.isfinite(scores).all()


def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"^unknown model 'vit' \(known: metaspikformer_8_256"):
        metaspikformer("vit")


def test_layout_of_the_paper():
    dims, _ = PAPER_MODELS["metaspikformer_8_256"]
    config = paper_config(dims)
    assert [(s.kind, s.dim, s.blocks, s.kernel, s.stride) for s in config.stages] == [
        ("conv", 32, 1, 7, 2), ("conv", 64, 1, 3, 2), ("conv", 128, 2, 3, 2),
        ("transformer", 256, 6, 3, 2), ("transformer", 360, 2, 3, 1)]
    model = MetaSpikeFormer(config)
    assert model.layers[0].lif is None and model.layers[2].lif is not None
    # 224 -> 112 -> 56 -> 28 -> 14 -> 14
    with torch.no_grad():
        feats = model.eval().features(torch.zeros(1, 3, 224, 224))
    assert feats.shape == (1, 1, 360, 14, 14)


@pytest.mark.parametrize("timesteps", [1, 4])
def test_digits_model_trains_through_the_surrogate(timesteps):
    torch.manual_seed(1)
    model = MetaSpikeFormer(digits_config(timesteps=timesteps))
    images = torch.rand(8, 1, 8, 8)
    scores = model(images)
    assert scores.shape == (8, 10)
    torch.nn.functional.cross_entropy(scores, torch.arange(8) % 10).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_attention_gives_spikes_to_its_projection():
    """The SDSA output is binary before the projection: every branch stays spike-driven."""
    torch.manual_seed(2)
    attn = Attention(16, heads=2).eval()
    seen = {}
    attn.proj.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        attn(torch.randn(2, 1, 16, 3, 3) * 4)
    assert set(torch.unique(seen["x"]).tolist()) <= {0.0, 1.0}


def test_convblock_keeps_shape_and_adds_to_the_stream():
    block = ConvBlock(8).eval()
    x = torch.randn(2, 1, 8, 5, 5)
    with torch.no_grad():
        assert block(x).shape == x.shape


def test_pad_with_bn_zero_equals_zero_padding_before_the_bn():
    """The padding RepConv relies on: BN then a border of BN(0) equals BN of a zero-padded
    input, in eval mode."""
    torch.manual_seed(3)
    pad = PadWithBNZero(4).eval()
    with torch.no_grad():
        pad.bn.running_mean.uniform_(-1, 1)
        pad.bn.running_var.uniform_(0.5, 2)
        pad.bn.weight.uniform_(0.5, 2)
        pad.bn.bias.uniform_(-1, 1)
        x = torch.randn(2, 4, 5, 5)
        assert torch.allclose(pad(x), pad.bn(torch.nn.functional.pad(x, [1] * 4)), atol=1e-6)


@pytest.mark.parametrize("detach", [True, False])
def test_pad_border_gradient_reaches_the_bn_only_when_not_detached(detach):
    """The authors' border (detached BN weight and bias, the default) passes no gradient to
    them; without detaching, the gradient of a loss on the border alone is the exact one,
    d/dw (b - mu w / s) = -mu / s and d/db = 1 per border pixel."""
    torch.manual_seed(4)
    pad = PadWithBNZero(3, detach=detach).eval()
    with torch.no_grad():
        pad.bn.running_mean.uniform_(0.5, 1)
        pad.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 3, 4, 4)
    y = pad(x)
    border = torch.ones_like(y)
    border[..., 1:-1, 1:-1] = 0
    (y * border).sum().backward()
    n = int(border[0, 0].sum())                              # border pixels per channel
    bn = pad.bn
    if detach:                       # (a zero gradient through the interior's zeros)
        assert not bn.weight.grad.any() and not bn.bias.grad.any()
    else:
        s = torch.sqrt(bn.running_var + bn.eps)
        assert torch.allclose(bn.weight.grad, -n * bn.running_mean / s)
        assert torch.allclose(bn.bias.grad, torch.full((3,), float(n)))


def test_forward_is_the_same_with_or_without_the_border_gradient():
    torch.manual_seed(5)
    a = PadWithBNZero(3).eval()
    b = PadWithBNZero(3, detach=False).eval()
    with torch.no_grad():
        a.bn.running_mean.uniform_(-1, 1)
        a.bn.weight.uniform_(0.5, 2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(a(x), b(x))


def test_head_starts_as_the_authors_does():
    """Truncated normal of std 0.02 (at +-2, absolute), zero bias: `_init_weights` of their
    Linear layers."""
    torch.manual_seed(0)
    head = metaspikformer().head
    w = head.weight.detach()
    assert head.bias.abs().max() == 0
    assert w.abs().max() <= 2 and abs(float(w.std()) - 0.02) < 0.0005
    assert abs(float(w.mean())) < 0.0005


def test_repconv_keeps_the_map_size():
    with torch.no_grad():
        assert RepConv(4, 6).eval()(torch.randn(1, 4, 7, 5)).shape == (1, 6, 7, 5)


@pytest.mark.parametrize("changes, message", [
    (dict(stages=()), "a model needs at least one stage"),
    (dict(stages=(StageSpec("mlp", 8, 1),)), "stage 0: kind must be 'conv' or 'transformer', "
                                            "not 'mlp'"),
    (dict(stages=(StageSpec("transformer", 12, 1),), heads=8),
     "stage 0: heads (8) must divide its channels (12)"),
])
def test_bad_model_config(changes, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig(**changes)
