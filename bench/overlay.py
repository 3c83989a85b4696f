"""Overlay core benchmark: per operation and in total, the cycle model against the bound
`max(event-driven ideal at the core's lanes + drain, bytes / bytes per AXI beat)` (the larger
of the bytes read and written: AXI's read and write channels work at once), bytes per image,
the default core's block RAM, and the paper's 15.1 M model compiled for the default core.
Every program is also run through the reference executor (`sim.overlay`) and checked
against the integer model's traces, so the figures are for programs that compute the right
thing. Prints Markdown; `--json FILE` also saves the figures.

    python -m bench.overlay [--images N] [--paper] [--rtl N] [--json FILE]

`--rtl N` also runs N of the images of both digits networks on the core's RTL (the compiled
harness, `sim.harness`, without memory pauses; every output region checked) and prints, per
operation, the measured cycles against the model and the bound of the same images.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import run_checked
from bench.networks import digits_network, paper_network
from fpga.estimate import CAPACITY, estimate_core
from gen.program import compile_network, cycle_report
from sim.overlay import check_outputs, run_program
from spec.bundle import read_bundle
from spec.core import CoreConfig
from sw.netbundle import write_network_bundle


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
    """Run `images` images on the core's RTL in the compiled harness (every output region and
    the scores checked); per operation measured cycles (mean), and the model and bound of the
    same images."""
    (work / label).mkdir(exist_ok=True)
    run = run_checked(net, pixels[:images], work / label, core, label=label, quiet=True)
    return {"label": label, "images": images, "ops": run["per_op"],
            "seconds": run["seconds"]["simulate"], "cycles": run["cycles"],
            "bytes": run["bytes"]}


def print_rtl(run):
    print(f"\n### {run['label']} on the RTL ({run['images']} images, mean; simulated in "
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
                net, pixels = paper_network(t)
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
