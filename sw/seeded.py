"""Seeded integer networks: a complete, realistic design when no trained model is given.

`seeded_network` builds a one-stage Meta-SpikeFormer with seeded weights, gives its BatchNorm
layers statistics from seeded random images, and quantizes it (`sw.quant.quantize`) with those
images, so thresholds, biases, shifts and widths are what the quantizer would choose, not
arbitrary. `gen.block` uses it for a block from flags alone.
"""

from dataclasses import replace

import numpy as np

__all__ = ["seeded_network", "KINDS"]

#: layer kinds a seeded network can provide: its block, or its first (pixel-reading) layer
KINDS = ("transformer", "conv", "downsample")


def seeded_network(kind, *, channels, heads=1, height=8, width=8, timesteps=1, seed=0,
                   variant=3, images=64):
    """An `IntNetwork` of one stage of `kind` ("downsample": a Conv-based stage, whose first
    layer is then the point) at `channels` channels on `height` x `width` one-channel images.

    Raises ValueError for shapes the model cannot have (heads that do not divide channels)."""
    # torch and the float model are imported here, not at the top: gen.block reads KINDS
    # (its --kind choices) without them
    import torch

    from .model import MetaSpikeFormer, ModelConfig, StageSpec, batchnorm_statistics
    from .quant import quantize

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    stage = StageSpec("conv" if kind == "downsample" else kind, channels, 1, kernel=3,
                      stride=1, padding=1)
    config = ModelConfig(stages=(stage,), heads=heads, in_channels=1, num_classes=10,
                         image_size=max(height, width), timesteps=timesteps)
    config = replace(config, sdsa_variant=variant)
    torch.manual_seed(seed)
    model = MetaSpikeFormer(config)
    rng = np.random.default_rng(seed)
    calib = torch.tensor(rng.random((images, 1, height, width)), dtype=torch.float32)
    return quantize(batchnorm_statistics(model, calib, passes=2), calib)
