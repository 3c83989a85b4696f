"""The networks the benchmarks (and some testbenches) measure: the shipped digits model and the
paper's models with seeded weights."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sw.checkpoint import load_checkpoint
from sw.model import PAPER_MODELS, MetaSpikeFormer, batchnorm_statistics, paper_config
from sw.quant import QuantOptions, quantize
from sw.train import load_dataset

CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "digits.pt"


def digits_network(timesteps, images):
    """The shipped digits model (trained at T = 1; at T = 4 the same weights, as the demo's
    model would be before fine-tuning), quantized on 512 training images; test pixels."""
    model, _ = load_checkpoint(CHECKPOINT)
    if timesteps != model.config.timesteps:
        tuned = MetaSpikeFormer(replace(model.config, timesteps=timesteps))
        tuned.load_state_dict(model.state_dict())
        model = tuned
    xtr, _, xte, _ = load_dataset("digits")
    net = quantize(model.eval(), xtr[:512])
    return net, net.to_input(xte[:images])


def paper_network(timesteps, size=224, seed=0, name="metaspikformer_8_256", images=None,
                  options=None):
    """The paper's model `name` with seeded weights for `size` x `size` images, its BatchNorm
    statistics from `images` seeded random images (default: one at 224 x 224, more for smaller
    images, up to 64, so that the last stages' small maps give the statistics as many
    positions), quantized on them with `options` (`sw.quant.QuantOptions`); returns (net, the
    first image's pixels)."""
    torch.manual_seed(seed)
    config = replace(paper_config(PAPER_MODELS[name][0], timesteps=timesteps), image_size=size)
    model = MetaSpikeFormer(config)
    images = images or min(64, -(-224 * 224 // (size * size)))
    calib = torch.tensor(np.random.default_rng(seed).random((images, 3, size, size)),
                         dtype=torch.float32)
    net = quantize(batchnorm_statistics(model, calib), calib, options or QuantOptions())
    return net, net.to_input(calib[:1])
