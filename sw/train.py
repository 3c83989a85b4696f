"""Train a small Meta-SpikeFormer on real data, on the CPU.

    python -m sw.train --dataset digits [--epochs N] [--timesteps T] [--finetune-t4 N]
                       [--seed S] [--out FILE] [--bn-border-grad]

`digits` is scikit-learn's 8 x 8 handwritten digits (1,797 images; a fixed, stratified split
of 1,437 for training and 360 for testing, `random_state=0`). The model is `digits_config()`: a
Conv-based stage, then a Transformer-based stage with SDSA-3, membrane shortcuts throughout.
Trains at T = 1 (optionally fine-tunes at T = 4), prints one progress line per epoch, and saves
a checkpoint (model configuration, weights, accuracy) atomically. As the authors' code, the
head starts from a truncated normal of std 0.02 (bias 0) and RepConv's padding border is built
from detached BatchNorm parameters; `--bn-border-grad` trains with the border's exact gradient
instead (the forward pass is the same).
"""

import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from spec.cli import Parser, check_output_path, fail, run_main

from .checkpoint import load_checkpoint, save_checkpoint
from .model import MetaSpikeFormer, ModelConfig, PadWithBNZero, digits_config

__all__ = ["DATASETS", "border_grad", "load_dataset", "train", "evaluate", "save_checkpoint",
           "load_checkpoint"]

PROG = "sw.train"
DATASETS = ("digits",)
DEFAULT_OUT = "out/digits.pt"


def load_dataset(name):
    """(train images, train labels, test images, test labels) as tensors; images (N, 1, 8, 8)
    in [0, 1]."""
    if name not in DATASETS:
        fail(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=360, random_state=0, stratify=y)
    return tuple(torch.tensor(a) for a in (xtr, ytr, xte, yte))


def evaluate(model, images, labels, batch=256):
    """Top-1 accuracy."""
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            right += int((model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
    return right / len(images)


def _shift(images, rng):
    """Random translation by up to one pixel (the same for the whole batch)."""
    dx, dy = (int(v) for v in rng.integers(-1, 2, size=2))
    return torch.roll(images, (dx, dy), (2, 3))


def border_grad(model, on):
    """Whether `model`'s RepConv padding borders pass their gradient to the BatchNorm weight
    and bias (`PadWithBNZero.detach` off); returns the model."""
    for module in model.modules():
        if isinstance(module, PadWithBNZero):
            module.detach = not on
    return model


def train(model, data, *, epochs, lr=3e-3, batch=64, seed=0, log=None, label="",
          bar=False):
    """Train `model` on `data` (as `load_dataset` returns) with AdamW and a one-cycle schedule;
    returns the test accuracy after each epoch. `log` takes a line per epoch; `bar` shows a
    tqdm progress bar of the batches on stderr (when it is a terminal), the epoch lines
    printed above it."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    per_epoch = (len(xtr) + batch - 1) // batch
    steps = epochs * per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    history, t0 = [], time.perf_counter()
    progress = tqdm(total=steps, unit="batch", desc=f"{label}training".strip(), leave=False,
                    disable=None if bar else True, file=sys.stderr)
    say = log if log is None or progress.disable else \
        (lambda text: progress.write(text, file=sys.stderr))
    with progress:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(xtr))
            total = 0.0
            for i in range(0, len(xtr), batch):
                idx = order[i:i + batch]
                loss = torch.nn.functional.cross_entropy(model(_shift(xtr[idx], rng)),
                                                         ytr[idx], label_smoothing=0.1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                progress.update()
            history.append(evaluate(model, xte, yte))
            progress.set_postfix(loss=f"{total / len(xtr):.3f}", test=f"{history[-1]:.1%}")
            if say is not None:
                done = (epoch + 1) * 20 // epochs
                say(f"{label}epoch {epoch + 1:3d}/{epochs} [{'#' * done}{'.' * (20 - done)}] "
                    f"loss {total / len(xtr):.3f}  test {history[-1]:.1%}  "
                    f"{time.perf_counter() - t0:.0f} s")
    return history


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="dataset name (known: digits)")
    p.add_argument("--epochs", type=int, default=30, help="epochs at T = 1 (default 30)")
    p.add_argument("--timesteps", type=int, default=1, help="T for training (default 1)")
    p.add_argument("--finetune-t4", type=int, default=0, metavar="EPOCHS",
                   help="then fine-tune at T = 4 for this many epochs (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"checkpoint (default {DEFAULT_OUT}; its "
                   f"folder is made if missing)")
    p.add_argument("--bn-border-grad", action="store_true",
                   help="let RepConv's padding border pass its gradient to the BatchNorm's "
                        "weight and bias (the exact gradient; the default detaches them, as "
                        "the authors' code does)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    args = p.parse_args(argv)
    if args.epochs < 1:
        fail(f"--epochs must be at least 1, not {args.epochs}")
    if not 1 <= args.timesteps <= 16:
        fail(f"--timesteps must be between 1 and 16, not {args.timesteps}")
    if args.finetune_t4 < 0:
        fail(f"--finetune-t4 must not be negative, not {args.finetune_t4}")
    if args.dataset not in DATASETS:
        fail(f"unknown dataset {args.dataset!r} (known: {', '.join(DATASETS)})")
    default_out = args.out == DEFAULT_OUT
    if not default_out:
        check_output_path(args.out)
    data = load_dataset(args.dataset)

    def log(text):
        if not args.quiet:
            print(f"[{PROG}] {text}", file=sys.stderr, flush=True)

    torch.manual_seed(args.seed)
    model = MetaSpikeFormer(digits_config(timesteps=args.timesteps))
    border_grad(model, args.bn_border_grad)
    n = sum(p.numel() for p in model.parameters())
    log(f"{args.dataset}: {len(data[0])} training and {len(data[2])} test images; model "
        f"{n:,} parameters, T = {args.timesteps}")
    history = train(model, data, epochs=args.epochs, seed=args.seed, log=log,
                    label=f"T={args.timesteps} ", bar=not args.quiet)
    result = {"dataset": args.dataset, "accuracy": history[-1], "history": history,
              "epochs": args.epochs}
    if args.finetune_t4:
        config = ModelConfig(**{**asdict(model.config), "timesteps": 4})
        tuned = MetaSpikeFormer(config)
        tuned.load_state_dict(model.state_dict())
        border_grad(tuned, args.bn_border_grad)
        result["accuracy_t4_before_finetune"] = evaluate(tuned, data[2], data[3])
        history4 = train(tuned, data, epochs=args.finetune_t4, lr=1e-3, seed=args.seed + 1,
                         log=log, label="T=4 ", bar=not args.quiet)
        model = tuned
        result.update(accuracy=history4[-1], history_t4=history4)
    if default_out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, model, result)
    print(f"{PROG}: test accuracy {result['accuracy']:.2%} (T = {model.config.timesteps}); "
          f"checkpoint {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
