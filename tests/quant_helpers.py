"""Small Meta-SpikeFormers whose neurons fire, for quantizer, integer-model and export tests.

Training takes minutes; instead, a seeded model's BatchNorms take their statistics from a few
digits images (train-mode forward passes with a cumulative average), so every layer's input is
normalised and its LIF fires at a realistic rate. Predictions are arbitrary; what the tests
check (integer arithmetic, folding, traces, bundles) does not need a trained model.
"""

import functools

import torch

from sw.model import MetaSpikeFormer, batchnorm_statistics, digits_config
from sw.train import load_dataset


@functools.cache
def digits():
    return load_dataset("digits")


def stats_model(*, timesteps=1, dims=(8, 16), heads=2, seed=0, images=256, variant=3,
                stages=None):
    """A seeded digits model in eval mode with BatchNorm statistics from `images` images;
    `stages` (`StageSpec`s) replace the digits model's."""
    from dataclasses import replace

    torch.manual_seed(seed)
    config = replace(digits_config(timesteps=timesteps, dims=dims, heads=heads),
                     sdsa_variant=variant)
    if stages is not None:
        config = replace(config, stages=stages)
    return batchnorm_statistics(MetaSpikeFormer(config), digits()[0][:images], passes=2)
