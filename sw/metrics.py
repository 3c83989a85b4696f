"""Firing rates, synaptic operations and the paper's energy estimate for a `MetaSpikeFormer`.

    python -m sw.metrics --checkpoint out/digits.pt [--images N] [--json FILE]

Per layer with weights: the input's firing rate (the fraction of nonzero inputs), its dense
operations per image and timestep (conv: k*k*C_in/groups*C_out*H_out*W_out, linear: in*out)
and the effective operations, counted as NeuroBench does for a layer fed by spikes: one
accumulate per nonzero input and connected output, summed over timesteps. A layer fed by real
values (the first convolution, the downsampling layers after a residual stream without a LIF)
does multiply-accumulates. A RepConv counts as the one 3x3 convolution it folds into; the
SepConv's second 1x1 convolution reads the depthwise convolution's real values and counts as
multiply-accumulates, as in the float network. The attention's matrix products are on their
own lines: building `K^T V` costs `d` accumulates per K spike and `Q KV` `d` per Q spike (what
the hardware does).
Energy as in the paper: 0.9 pJ per accumulate, 4.6 pJ per multiply-accumulate (45 nm).
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn

from spec.cli import Parser, check_output_path, fail, run_main
from spec.yamlio import atomic_write_text

from .checkpoint import load_checkpoint
from .lif_float import MultiStepLIF
from .model import Attention, RepConv, SepConv
from .train import load_dataset

__all__ = ["E_AC_PJ", "E_MAC_PJ", "measure", "format_table"]

PROG = "sw.metrics"
E_AC_PJ = 0.9
E_MAC_PJ = 4.6


def _dense_ops(module, out_shape):
    if isinstance(module, RepConv):         # counted folded: one dense 3x3 convolution
        return 9 * module.conv1.in_channels * module.conv2.out_channels * \
            out_shape[-1] * out_shape[-2]
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        return k * module.in_channels // module.groups * module.out_channels * \
            out_shape[-1] * out_shape[-2]
    return module.in_features * module.out_features


def measure(model, images):
    """Run `images` (B, C, H, W) through `model` (eval mode); returns (rows, summary). Counts
    are per image (summed over timesteps)."""
    rows, hooks, names = [], [], {m: n for n, m in model.named_modules()}
    batch = images.shape[0]
    steps = model.config.timesteps

    def on_layer(module, args, out):
        x = args[0]
        nonzero = float((x != 0).float().mean())
        binary = module not in real_input
        if binary and not bool(((x == 0) | (x == 1)).all()):
            raise AssertionError(f"{names[module]} should read spikes")
        dense = _dense_ops(module, out.shape)
        frames = steps if isinstance(module, nn.Linear) else x.shape[0] // batch
        rows.append({"layer": names[module], "kind": "AC" if binary else "MAC",
                     "input_rate": nonzero, "dense_ops": dense,
                     "ops": dense * frames * (nonzero if binary else 1.0)})

    def on_neuron(module, args, out):
        rows.append({"layer": names[module], "kind": "LIF", "firing_rate": float(out.mean())})

    def on_sdsa(module, args, out):
        q, k, _ = args
        d = q.shape[-1] // module.heads
        for what, spikes in (("KV = K^T V", k), ("Y = Q KV", q)):
            if module.variant >= 3:
                ops = float(spikes.sum()) * d / batch
            else:
                ops = float(spikes.sum()) / batch     # one count per spike (column sum)
            rows.append({"layer": f"{names[module]} ({what})", "kind": "AC-attention",
                         "input_rate": float(spikes.mean()), "dense_ops": None, "ops": ops})

    inside_repconv = {c for r in model.modules() if isinstance(r, RepConv)
                      for c in r.modules() if c is not r}
    # the layers that read real values: the image, and the depthwise convolution's output
    real_input = {model.layers[0].conv} | {m.pw2 for m in model.modules()
                                           if isinstance(m, SepConv)}
    for m in model.modules():
        if m in inside_repconv:
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear, RepConv)):
            hooks.append(m.register_forward_hook(on_layer))
        elif isinstance(m, MultiStepLIF):
            hooks.append(m.register_forward_hook(on_neuron))
        elif isinstance(m, Attention):
            hooks.append(m.sdsa.register_forward_hook(on_sdsa))
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in hooks:
            h.remove()
    ac = sum(r["ops"] for r in rows if r["kind"] in ("AC", "AC-attention"))
    mac = sum(r["ops"] for r in rows if r["kind"] == "MAC")
    attention = sum(r["ops"] for r in rows if r["kind"] == "AC-attention")
    summary = {"images": batch, "timesteps": steps, "accumulates": ac, "attention_accumulates":
               attention, "multiply_accumulates": mac,
               "energy_uj": (ac * E_AC_PJ + mac * E_MAC_PJ) * 1e-6}
    return rows, summary


def format_table(rows, summary):
    lines = ["| layer | kind | input / firing rate | dense ops | effective ops |",
             "|---|---|---:|---:|---:|"]
    for r in rows:
        if r["kind"] == "LIF":
            lines.append(f"| {r['layer']} | LIF | {r['firing_rate']:.3f} | | |")
        else:
            dense = "" if r["dense_ops"] is None else f"{r['dense_ops']:,}"
            lines.append(f"| {r['layer']} | {r['kind']} | {r['input_rate']:.3f} | {dense} | "
                         f"{r['ops']:,.0f} |")
    lines.append(f"\nper image (T = {summary['timesteps']}): {summary['accumulates']:,.0f} "
                 f"accumulates (attention {summary['attention_accumulates']:,.0f}), "
                 f"{summary['multiply_accumulates']:,.0f} multiply-accumulates; energy "
                 f"{summary['energy_uj']:.3f} uJ ({E_AC_PJ} pJ / AC, {E_MAC_PJ} pJ / MAC)")
    return "\n".join(lines)


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint from sw.train")
    p.add_argument("--images", type=int, default=360, help="test images to use (default all)")
    p.add_argument("--json", help="also write the rows and the summary here")
    args = p.parse_args(argv)
    if args.images < 1:
        fail(f"--images must be at least 1, not {args.images}")
    check_output_path(args.json)
    model, data = load_checkpoint(args.checkpoint)
    _, _, xte, _ = load_dataset(data.get("dataset", "digits"))
    rows, summary = measure(model, xte[:args.images])
    print(format_table(rows, summary))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps({"rows": rows, "summary": summary},
                                                      indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
