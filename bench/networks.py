"""The networks the benchmarks (and some testbenches) measure: the shipped digits model."""

from dataclasses import replace
from pathlib import Path

from sw.checkpoint import load_checkpoint
from sw.model import MetaSpikeFormer
from sw.quant import quantize
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
