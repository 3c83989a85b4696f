"""Folding BatchNorm and RepConv chains: exact in real arithmetic, measured in float."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sw.fold import bn_affine, fold_conv_bn, fold_repconv
from sw.model import RepConv


def randomize_bn(bn, gen):
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen, dtype=bn.weight.dtype))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen,
                                        dtype=bn.weight.dtype) * 2 + 0.2)
        bn.weight.copy_(torch.randn(bn.num_features, generator=gen, dtype=bn.weight.dtype))
        bn.bias.copy_(torch.randn(bn.num_features, generator=gen, dtype=bn.weight.dtype))


def randomized(module, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    module = module.to(dtype).eval()
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d,)):
            randomize_bn(m, gen)
        elif isinstance(m, nn.Conv2d):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, dtype=dtype) * 0.5)
    return module


def relative_error(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_bn_affine_is_the_eval_bn():
    bn = randomized(nn.BatchNorm2d(5), 0)
    x = torch.randn(2, 5, 3, 3)
    scale, shift = bn_affine(bn)
    with torch.no_grad():
        assert torch.allclose(bn(x), x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1),
                              atol=1e-6)


@pytest.mark.parametrize("bias, stride, groups", [(False, 1, 1), (True, 2, 1), (False, 1, 4)])
def test_conv_bn_folds(bias, stride, groups):
    conv = nn.Conv2d(8, 12, 3, stride=stride, padding=1, bias=bias, groups=groups)
    bn = nn.BatchNorm2d(12)
    seq = randomized(nn.Sequential(conv, bn), 1)
    x = torch.randn(2, 8, 9, 7)
    w, b = fold_conv_bn(conv, bn)
    with torch.no_grad():
        folded = F.conv2d(x, w, b, stride=stride, padding=1, groups=groups)
        assert relative_error(folded, seq(x)) < 1e-5


@pytest.mark.parametrize("cin, cout, extra_bn", [(6, 6, True), (4, 9, False), (16, 16, True)])
def test_repconv_folds_into_one_3x3(cin, cout, extra_bn):
    """RepConv (+ the attention's extra BN) equals one 3x3 conv with padding 1 and a bias:
    to 1e-5 relative in float32, 1e-12 in float64."""
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        rep = randomized(RepConv(cin, cout), 2, dtype)
        bn = randomized(nn.BatchNorm2d(cout), 3, dtype) if extra_bn else None
        x = torch.randn(3, cin, 7, 6, dtype=dtype)
        w, b = fold_repconv(rep, bn)
        assert w.shape == (cout, cin, 3, 3) and b.shape == (cout,)
        with torch.no_grad():
            reference = rep(x) if bn is None else bn(rep(x))
            assert relative_error(F.conv2d(x, w, b, padding=1), reference) < tolerance


def test_the_fold_check_can_fail():
    """Dropping the padding's BN value (zero padding instead) is visible at the border."""
    rep = randomized(RepConv(4, 4), 4)
    x = torch.randn(1, 4, 5, 5)
    w, b = fold_repconv(rep)
    with torch.no_grad():
        wrong = rep.bn2(rep.conv2(rep.dw(F.pad(rep.bn1.bn(rep.conv1(x)), [1] * 4))))
        assert relative_error(F.conv2d(x, w, b, padding=1), wrong) > 1e-3


def test_fold_repconv_type_check():
    with pytest.raises(TypeError, match=r"^expected a RepConv, not Conv2d$"):
        fold_repconv(nn.Conv2d(2, 2, 1))
