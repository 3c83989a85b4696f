"""Folding for the quantizer: BatchNorm into the convolution before it, and a whole RepConv
chain into one dense 3x3 convolution with a bias. Exact in real arithmetic (eval mode: the BNs
use their running statistics); float rounding is the only difference, which tests measure.
"""

import torch
from torch import nn

from .model import RepConv

__all__ = ["bn_affine", "fold_conv_bn", "fold_repconv"]


def bn_affine(bn):
    """(scale, shift) with BN(z) = scale * z + shift per channel, from running statistics."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_conv_bn(conv, bn=None):
    """(weight, bias) of the convolution `conv` followed by `bn` (if any) as one convolution
    with the same stride, padding and groups."""
    with torch.no_grad():
        w = conv.weight.clone()
        b = conv.bias.clone() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
        if bn is not None:
            scale, shift = bn_affine(bn)
            w = w * scale.view(-1, *([1] * (w.dim() - 1)))
            b = b * scale + shift
    return w, b


def fold_repconv(rep, bn=None):
    """(weight, bias) of one dense 3x3 convolution with padding 1 equal to `rep` (a `RepConv`)
    followed by `bn` (if any: the attention wraps each RepConv in one more BN).

    With BN1(z) = a1 z + b1 and the padding holding BN1(0) = b1, the input of the depthwise
    convolution is `a1 * W1 x_padded + b1` everywhere, so::

        W[o, i, kh, kw] = sum_c W2[o, c] * Wd[c, kh, kw] * a1[c] * W1[c, i]
        bias[o]         = sum_c W2[o, c] * b1[c] * sum(Wd[c])

    then BN2 (and `bn`) fold in as for any convolution.
    """
    if not isinstance(rep, RepConv):
        raise TypeError(f"expected a RepConv, not {type(rep).__name__}")
    with torch.no_grad():
        w1 = rep.conv1.weight[:, :, 0, 0]                   # (C, C)
        a1, b1 = bn_affine(rep.bn1.bn)
        wd = rep.dw.weight[:, 0]                            # (C, 3, 3)
        w2 = rep.conv2.weight[:, :, 0, 0]                   # (Cout, C)
        w = torch.einsum("oc,ckl,c,ci->oikl", w2, wd, a1, w1)
        b = w2 @ (b1 * wd.sum(dim=(1, 2)))
        conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1, bias=True).to(w.dtype)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        w, b = fold_conv_bn(conv, rep.bn2)
        if bn is not None:
            scale, shift = bn_affine(bn)
            w, b = w * scale.view(-1, 1, 1, 1), b * scale + shift
    return w, b
