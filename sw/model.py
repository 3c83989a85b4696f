"""The float Meta-SpikeFormer ("Spike-driven Transformer V2"), trainable, with membrane shortcuts.

Tensors are (T, B, C, H, W). Every block's branch starts with a LIF (threshold 1.0, tau 2), so
the residual stream between blocks carries real values (the membrane shortcut). Structure and
constants follow the authors' public code as summarised in ../shared/reference (the design is
theirs; this implementation is ours):

- `Downsample`: [LIF ->] conv (with bias) -> BN; the network's first one has no LIF.
- `ConvBlock(dim)`: `x = x + SepConv(x)`; `x = x + BN(conv3x3(LIF(BN(conv3x3(LIF(x))))))`, the
  3x3 convolutions dim -> ratio * dim -> dim, without bias. SepConv: LIF -> 1x1 (dim -> 2 dim)
  -> BN -> LIF -> depthwise 7x7 -> 1x1 (2 dim -> dim) -> BN.
- `TransformerBlock(dim)`: `x = x + Attention(x)`; `x = x + MLP(x)`. Attention: LIF -> q, k, v
  each `LIF(BN(RepConv(.)))` -> SDSA (variant 3 by default: per head `Q (K^T V) * 0.125`, then
  a threshold-0.5 LIF) -> `BN(RepConv(.))`. MLP: LIF -> 1x1 (with bias) -> BN -> LIF -> 1x1
  (with bias) -> BN.
- `RepConv(cin, cout)`: 1x1 (cin -> cin) -> BN, padded by one pixel with the BN's value of zero
  -> depthwise 3x3 (no padding) -> 1x1 (cin -> cout) -> BN; exactly one dense 3x3 convolution
  with padding 1 plus a per-channel bias once folded.
- Head: mean over pixels -> LIF -> linear -> mean over T.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .lif_float import MultiStepLIF
from .sdsa_float import SDSA

__all__ = ["ModelConfig", "StageSpec", "MetaSpikeFormer", "RepConv", "SepConv", "ConvBlock",
           "TransformerBlock", "Attention", "MLP", "Downsample", "metaspikformer",
           "PAPER_MODELS", "paper_config", "digits_config"]


def lif(v_th=1.0):
    return MultiStepLIF(tau=2.0, v_th=v_th)


def per_frame(module, x):
    """Apply a (N, C, H, W) module to every timestep of a (T, B, C, H, W) tensor."""
    t, b = x.shape[:2]
    y = module(x.flatten(0, 1))
    return y.reshape(t, b, *y.shape[1:])


class PadWithBNZero(nn.Module):
    """BatchNorm, then a border of `pad` pixels holding what the BN makes of a zero input
    (computed from its running statistics), so that zero padding before the BN and padding
    after it agree: what makes RepConv fold into one 3x3 convolution.

    With `detach` (the default, as the authors' `BNAndPadLayer`), the border is built from
    the BN's weight and bias detached: no gradient reaches them through the border. Without
    it, the border's gradient flows into them too: the exact gradient of the forward pass
    (which is the same either way), since the border value is a function of the weight and
    bias (`sw.train --bn-border-grad`)."""

    def __init__(self, channels, pad=1, detach=True):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.pad = pad
        self.detach = detach

    def zero_value(self):
        bn = self.bn
        weight, bias = (bn.weight.detach(), bn.bias.detach()) if self.detach else \
            (bn.weight, bn.bias)
        return bias - bn.running_mean * weight / torch.sqrt(bn.running_var + bn.eps)

    def forward(self, x):
        y = F.pad(self.bn(x), [self.pad] * 4)
        border = torch.ones_like(y[:1, :1])
        inner = border[..., self.pad:-self.pad, self.pad:-self.pad]
        inner.zero_()
        return y + border * self.zero_value().view(1, -1, 1, 1)


class RepConv(nn.Module):
    """1x1 -> BN (padded with its value of zero) -> depthwise 3x3 -> 1x1 -> BN, no bias."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 1, bias=False)
        self.bn1 = PadWithBNZero(cin, 1)
        self.dw = nn.Conv2d(cin, cin, 3, padding=0, groups=cin, bias=False)
        self.conv2 = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn2(self.conv2(self.dw(self.bn1(self.conv1(x)))))


class SepConv(nn.Module):
    """LIF -> 1x1 (dim -> 2 dim) -> BN -> LIF -> depthwise 7x7 -> 1x1 (2 dim -> dim) -> BN."""

    def __init__(self, dim, expansion=2, kernel=7):
        super().__init__()
        mid = expansion * dim
        self.lif1, self.lif2 = lif(), lif()
        self.pw1 = nn.Conv2d(dim, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.dw = nn.Conv2d(mid, mid, kernel, padding=kernel // 2, groups=mid, bias=False)
        self.pw2 = nn.Conv2d(mid, dim, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x):
        x = per_frame(lambda y: self.bn1(self.pw1(y)), self.lif1(x))
        return per_frame(lambda y: self.bn2(self.pw2(self.dw(y))), self.lif2(x))


class ConvBlock(nn.Module):
    """The Conv-based SNN block: SepConv and a 3x3 channel MLP, each with a membrane shortcut."""

    def __init__(self, dim, ratio=4):
        super().__init__()
        self.sep = SepConv(dim)
        self.lif1, self.lif2 = lif(), lif()
        self.conv1 = nn.Conv2d(dim, ratio * dim, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ratio * dim)
        self.conv2 = nn.Conv2d(ratio * dim, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x):
        x = x + self.sep(x)
        y = per_frame(lambda z: self.bn1(self.conv1(z)), self.lif1(x))
        return x + per_frame(lambda z: self.bn2(self.conv2(z)), self.lif2(y))


class Attention(nn.Module):
    """LIF -> q, k, v = LIF(BN(RepConv(x))) -> SDSA -> BN(RepConv(.))."""

    def __init__(self, dim, heads=8, variant=3):
        super().__init__()
        self.head_lif = lif()
        self.q_conv, self.k_conv, self.v_conv, self.proj = (
            nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim)) for _ in range(4))
        self.q_lif, self.k_lif, self.v_lif = lif(), lif(), lif()
        self.sdsa = SDSA(variant, heads)

    def forward(self, x):
        t, b, c, h, w = x.shape
        x = self.head_lif(x)

        def tokens(conv, neuron):       # (T, B, N, C) spikes
            return neuron(per_frame(conv, x)).flatten(3).transpose(-1, -2)

        q, k, v = (tokens(conv, n) for conv, n in ((self.q_conv, self.q_lif),
                                                  (self.k_conv, self.k_lif),
                                                  (self.v_conv, self.v_lif)))
        y = self.sdsa(q, k, v).transpose(-1, -2).reshape(t, b, c, h, w)
        return per_frame(self.proj, y)


class MLP(nn.Module):
    """LIF -> 1x1 (dim -> ratio * dim, bias) -> BN -> LIF -> 1x1 (back, bias) -> BN."""

    def __init__(self, dim, ratio=4):
        super().__init__()
        self.lif1, self.lif2 = lif(), lif()
        self.fc1 = nn.Conv2d(dim, ratio * dim, 1)
        self.bn1 = nn.BatchNorm2d(ratio * dim)
        self.fc2 = nn.Conv2d(ratio * dim, dim, 1)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x):
        x = per_frame(lambda z: self.bn1(self.fc1(z)), self.lif1(x))
        return per_frame(lambda z: self.bn2(self.fc2(z)), self.lif2(x))


class TransformerBlock(nn.Module):
    """The Transformer-based SNN block: `x + Attention(x)`, then `x + MLP(x)`."""

    def __init__(self, dim, heads=8, ratio=4, variant=3):
        super().__init__()
        self.attn = Attention(dim, heads, variant)
        self.mlp = MLP(dim, ratio)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class Downsample(nn.Module):
    """[LIF ->] conv (with bias) -> BN."""

    def __init__(self, cin, cout, kernel, stride, padding, first):
        super().__init__()
        self.lif = None if first else lif()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        if self.lif is not None:
            x = self.lif(x)
        return per_frame(lambda z: self.bn(self.conv(z)), x)


@dataclass(frozen=True)
class StageSpec:
    """A downsampling layer (`kernel`, `stride`, `padding`) to `dim` channels, then `blocks`
    blocks of `kind` "conv" or "transformer"."""

    kind: str
    dim: int
    blocks: int
    kernel: int = 3
    stride: int = 2
    padding: int = 1


@dataclass(frozen=True)
class ModelConfig:
    """A Meta-SpikeFormer: stages, heads, MLP ratio, input and classes, timesteps, SDSA variant."""

    stages: tuple = field(default_factory=tuple)
    heads: int = 8
    mlp_ratio: int = 4
    in_channels: int = 3
    num_classes: int = 1000
    image_size: int = 224
    timesteps: int = 1
    sdsa_variant: int = 3

    def __post_init__(self):
        stages = tuple(s if isinstance(s, StageSpec) else StageSpec(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise ValueError("a model needs at least one stage")
        for n, s in enumerate(stages):
            if s.kind not in ("conv", "transformer"):
                raise ValueError(f"stage {n}: kind must be 'conv' or 'transformer', not "
                                 f"{s.kind!r}")
            if s.kind == "transformer" and s.dim % self.heads:
                raise ValueError(f"stage {n}: heads ({self.heads}) must divide its channels "
                                 f"({s.dim})")


class MetaSpikeFormer(nn.Module):
    """The network: images (B, C, H, W) in, class scores (B, classes) out, averaged over T."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        layers, cin = [], config.in_channels
        for n, s in enumerate(config.stages):
            layers.append(Downsample(cin, s.dim, s.kernel, s.stride, s.padding, first=n == 0))
            for _ in range(s.blocks):
                layers.append(ConvBlock(s.dim, config.mlp_ratio) if s.kind == "conv" else
                              TransformerBlock(s.dim, config.heads, config.mlp_ratio,
                                               config.sdsa_variant))
            cin = s.dim
        self.layers = nn.ModuleList(layers)
        self.head_lif = lif()
        self.head = nn.Linear(cin, config.num_classes)
        # the authors' initialisation of their only Linear layer (`_init_weights`): weights
        # from a normal of std 0.02 truncated at +-2, bias zero
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def features(self, images):
        x = images.unsqueeze(0).repeat(self.config.timesteps, 1, 1, 1, 1)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, images):
        x = self.features(images).flatten(3).mean(3)      # (T, B, C)
        return self.head(self.head_lif(x)).mean(0)


def batchnorm_statistics(model, images, passes=1):
    """Give `model`'s BatchNorm layers the plain mean and variance of `images` (the model run
    `passes` times in training mode, cumulative averages) and return it in eval mode: seeded
    models whose firing resembles a trained one's, for tests and benchmarks."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(images)
    return model.eval()


def paper_config(dims, *, num_classes=1000, timesteps=1, sdsa_variant=3):
    """The ImageNet layout of the paper for channel widths `dims` = [C0, C1, C2, C3]."""
    c0, c1, c2, c3 = dims
    return ModelConfig(stages=(
        StageSpec("conv", c0 // 2, 1, kernel=7, stride=2, padding=3),
        StageSpec("conv", c0, 1),
        StageSpec("conv", c1, 2),
        StageSpec("transformer", c2, 6),
        StageSpec("transformer", c3, 2, stride=1),
    ), num_classes=num_classes, timesteps=timesteps, sdsa_variant=sdsa_variant)


#: The paper's ImageNet models: name -> (dims, parameters in millions as the paper reports).
PAPER_MODELS = {
    "metaspikformer_8_256": ((64, 128, 256, 360), 15.1),
    "metaspikformer_8_384": ((96, 192, 384, 480), 31.3),
    "metaspikformer_8_512": ((128, 256, 512, 640), 55.4),
    "metaspikformer_8_768": ((192, 384, 768, 960), None),
}


def metaspikformer(name="metaspikformer_8_256", **kwargs):
    """One of `PAPER_MODELS`, as an untrained `MetaSpikeFormer`."""
    if name not in PAPER_MODELS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(PAPER_MODELS)})")
    return MetaSpikeFormer(paper_config(PAPER_MODELS[name][0], **kwargs))


def digits_config(*, timesteps=1, dims=(32, 128), heads=4):
    """A small model for scikit-learn's 8 x 8 digits: a Conv-based stage, then a
    Transformer-based stage (SDSA-3, 4 heads of 32 channels), both at 8 x 8 (64 tokens)."""
    return ModelConfig(stages=(
        StageSpec("conv", dims[0], 1, kernel=3, stride=1, padding=1),
        StageSpec("transformer", dims[1], 1, stride=1),
    ), heads=heads, in_channels=1, num_classes=10, image_size=8, timesteps=timesteps)
