"""Overlay core benchmark: per operation and in total, the cycle model against the bound
`max(event-driven ideal at the core's lanes + drain, bytes moved / bytes per AXI beat)`, bytes
per image, the default core's block RAM, and the paper's 15.1 M model compiled for the default
core. Every program is also run through the reference executor (`sim.overlay`) and checked
against the integer model's traces, so the figures are for programs that compute the right
thing. Prints Markdown; `--json FILE` also saves the figures.

    python -m bench.overlay [--images N] [--paper] [--rtl N] [--json FILE]

`--rtl N` also runs N of the images of both digits networks on the core's RTL (Verilator +
cocotb, `AxiRam` without pauses; every output region checked) and prints, per operation, the
measured cycles against the model and the bound of the same images.
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fpga.estimate import CAPACITY, estimate_core
from gen.program import compile_network, cycle_report, write_program
from gen.verilog import to_verilog
from hw.core import OverlayCore
from sim.cosim import REPO_ROOT as COSIM_ROOT
from sim.cosim import run_cocotb
from sim.overlay import check_outputs, run_program
from spec.bundle import read_bundle
from spec.core import CoreConfig
from sw.checkpoint import load_checkpoint
from sw.model import MetaSpikeFormer, metaspikformer
from sw.netbundle import write_network_bundle
from sw.quant import quantize
from sw.train import load_dataset

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "models" / "digits.pt"


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


def paper_network(timesteps, images, seed=0):
    """The paper's metaspikformer_8_256 (15.1 M parameters) with seeded weights, its BatchNorm
    statistics from seeded random 224 x 224 images, quantized on those images."""
    torch.manual_seed(seed)
    model = metaspikformer("metaspikformer_8_256", timesteps=timesteps)
    rng = np.random.default_rng(seed)
    calib = torch.tensor(rng.random((images, 3, 224, 224)), dtype=torch.float32)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(calib)
    net = quantize(model.eval(), calib)
    return net, net.to_input(calib)


def log(text):
    print(f"[bench.overlay] {text}", file=sys.stderr, flush=True)


def measure(label, net, pixels, core, work, *, execute=True):
    """Compile, optionally execute and check every image, and model the cycles."""
    log(f"{label}: tracing {len(pixels)} images")
    path = work / f"{label}.zip"
    t0 = time.perf_counter()
    write_network_bundle(path, net, pixels)
    bundle = read_bundle(path)
    traced = time.perf_counter() - t0
    t0 = time.perf_counter()
    image = compile_network(net, core)
    compiled = time.perf_counter() - t0
    checked = None
    log(f"{label}: compiled in {compiled:.1f} s; executing and checking")
    if execute:
        t0 = time.perf_counter()
        layout = image.layout()
        for s in range(len(pixels)):
            mem = run_program(image.data, len(image.data) + image.activation_bytes, 0, core,
                              pixels[s])
            check_outputs(mem, layout, core, bundle.arrays, s)
        checked = round(time.perf_counter() - t0, 1)
    report = cycle_report(image, bundle)
    spikes = {k: float(np.mean(v)) for k, v in bundle.arrays.items()
              if k.endswith(":spikes")}
    return {"label": label, "timesteps": net.timesteps, "images": len(pixels),
            "image_bytes": len(image.data), "activation_bytes": image.activation_bytes,
            "ops": len(image.ops), "tiles": sum(op.tiling.tiles for op in image.ops),
            "tilings": [{"name": op.name, **vars(op.tiling)} for op in image.ops],
            "cycles": report, "firing_rate": round(float(np.mean(list(spikes.values()))), 4),
            "seconds": {"trace": round(traced, 1), "compile": round(compiled, 1),
                        "execute_and_check": checked}}


def measure_rtl(label, net, pixels, core, work, images):
    """Run `images` images on the core's RTL; per operation measured cycles (mean), and the
    model and bound of the same images."""
    path = work / f"{label}.zip"
    bundle = read_bundle(path)
    image = compile_network(net, core)
    prog = work / f"{label}-prog"
    write_program(prog, image, None)
    verilog = work / "overlay_core.v"
    if not verilog.exists():
        verilog.write_text(to_verilog(OverlayCore(core), "overlay_core"))
    case = {"core": core.to_dict(), "program": str(prog), "bundle": str(path),
            "layers": len(image.ops), "samples": list(range(images)),
            "memory": len(image.data) + image.activation_bytes, "budget": 50_000_000,
            "classes": net.head.fc.out_channels, "timesteps": net.timesteps, "seed": 1,
            "pause": 0.0, "report": str(work / f"{label}-rtl.json")}
    (work / f"{label}-case.json").write_text(json.dumps(case))
    log(f"{label}: {images} images on the RTL")
    t0 = time.perf_counter()
    run_cocotb(verilog, toplevel="overlay_core", module="tb.cocotb_core",
               testcase="test_images", test_dir=work / f"{label}-cosim",
               env={"SPIKEGEN_CASE": work / f"{label}-case.json"},
               build_root=COSIM_ROOT / "build" / "verilator")
    seconds = time.perf_counter() - t0
    results = json.loads((work / f"{label}-rtl.json").read_text())
    reports = [cycle_report(image, bundle, s) for s in range(images)]
    ops = []
    for n, op in enumerate(image.ops):
        ops.append({"name": op.name, "opcode": op.opcode,
                    "measured": round(np.mean([r["layer_cycles"][n] for r in results])),
                    "model": round(np.mean([r["ops"][n]["model"] for r in reports])),
                    "bound": round(np.mean([r["ops"][n]["bound"] for r in reports]))})
    return {"label": label, "images": images, "ops": ops, "seconds": round(seconds, 1),
            "cycles": [r["cycles"] for r in results],
            "bytes": round(np.mean([r["READ_LO"] + r["WRITTEN_LO"] for r in results]))}


def print_rtl(run):
    print(f"\n### {run['label']} on the RTL ({run['images']} images, mean; co-simulated in "
          f"{run['seconds']} s)\n")
    print("| operation | kind | measured | model | bound | measured/model | measured/bound |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for op in run["ops"]:
        print(f"| {op['name']} | {op['opcode']} | {op['measured']:,} | {op['model']:,} | "
              f"{op['bound']:,} | {op['measured'] / op['model']:.2f} | "
              f"{op['measured'] / op['bound']:.2f} |")
    total = {k: sum(op[k] for op in run["ops"]) for k in ("measured", "model", "bound")}
    whole = np.mean(run["cycles"])
    print(f"| **total** | | **{total['measured']:,}** | {total['model']:,} | "
          f"{total['bound']:,} | {total['measured'] / total['model']:.2f} | "
          f"**{total['measured'] / total['bound']:.2f}** |")
    print(f"\nWhole run per image (with the header, clears and final writes): "
          f"{whole:,.0f} cycles; {run['bytes']:,} bytes moved over AXI.")


def print_table(result):
    rows = result["cycles"]["ops"]
    print(f"\n### {result['label']} (T = {result['timesteps']}, mean of {result['images']} "
          f"images)\n")
    print("| operation | kind | tiling | ideal | memory | bound | model | model/bound | "
          "bytes |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for row, tiling in zip(rows, result["tilings"], strict=True):
        t = (f"{tiling['groups']}x{tiling['tiles']} g, {tiling['bands']} band, "
             f"{tiling['passes']} pass, {tiling['buffers']} buf")
        print(f"| {row['name']} | {row['opcode']} | {t} | {row['ideal']:,} | {row['memory']:,} "
              f"| {row['bound']:,} | {row['model']:,} | {row['model'] / row['bound']:.2f} | "
              f"{row['read'] + row['written']:,} |")
    tot = result["cycles"]["total"]
    print(f"| **total** | | {result['tiles']} tiles | {tot['ideal']:,} | {tot['memory']:,} | "
          f"{tot['bound']:,} | **{tot['model']:,}** | **{tot['model'] / tot['bound']:.2f}** | "
          f"{tot['read'] + tot['written']:,} |")


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench.overlay", description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8, help="digits test images (default 8)")
    p.add_argument("--paper", action="store_true",
                   help="also the paper's 15.1 M model on 224 x 224 images (minutes)")
    p.add_argument("--rtl", type=int, default=0, metavar="N",
                   help="also run N images of each digits network on the core's RTL")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    core = CoreConfig()
    figures = {"core": core.to_dict()}
    est = estimate_core(core)
    figures["estimate"] = est
    cap = CAPACITY["ecp5-25k"]["bram"]
    print("## The default core's memories (LFE5U-25F)\n")
    print("| memory | bits x words | mapped to | DP16KD | LUT-RAM cells |")
    print("|---|---|---|---:|---:|")
    for m in est["memories"]:
        print(f"| {m['name']} | {m['width']} x {m['depth']} | {m['kind']} | {m['bram']} | "
              f"{m['lutram']} |")
    print(f"| **total** | | | **{est['bram']}** of {cap} ({est['bram'] / cap:.0%}) | "
          f"{est['lutram']} |")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs, rtl = [], []
        for t in (1, 4):
            log(f"digits T = {t}: quantizing")
            net, pixels = digits_network(t, args.images)
            runs.append(measure(f"digits-t{t}", net, pixels, core, work))
            if args.rtl:
                rtl.append(measure_rtl(f"digits-t{t}", net, pixels, core, work,
                                       min(args.rtl, args.images)))
        if args.paper:
            for t in (1, 4):
                log(f"metaspikformer_8_256 T = {t}: seeding and quantizing (minutes)")
                net, pixels = paper_network(t, 1)
                runs.append(measure(f"metaspikformer_8_256-t{t}", net, pixels, core, work))
    figures["runs"] = runs
    figures["rtl"] = rtl
    print("\n## Cycle model per operation (every output region checked against the integer "
          "model by the reference executor)")
    for run in runs:
        print_table(run)
    print("\n## Per image\n")
    print("| network | T | image | activations | bytes moved | bound | model | model/bound | "
          "firing | trace / compile / execute s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for run in runs:
        tot = run["cycles"]["total"]
        s = run["seconds"]
        print(f"| {run['label']} | {run['timesteps']} | {run['image_bytes']:,} | "
              f"{run['activation_bytes']:,} | {tot['read'] + tot['written']:,} | "
              f"{tot['bound']:,} | {tot['model']:,} | {tot['model'] / tot['bound']:.2f} | "
              f"{run['firing_rate']:.1%} | {s['trace']} / {s['compile']} / "
              f"{s['execute_and_check']} |")
    if rtl:
        print("\n## Measured on the RTL")
        for run in rtl:
            print_rtl(run)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
