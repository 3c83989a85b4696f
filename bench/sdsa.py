"""SDSA benchmark: cycles vs the ideal event-driven cost (Verilator co-simulation), the density
table from the cycle model, on-chip buffers, generation time, synthesis cells. Prints Markdown;
`--json FILE` also saves the figures.

    python -m bench.sdsa [--quick] [--json FILE]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from fpga.yosys import multiplier_cells, synth_cells
from gen.verilog import to_verilog
from hw.sdsa import sdsa_unit
from sim.cosim import prepare_sdsa
from spec.sdsa import SDSAConfig
from sw.export import random_qkv

from .common import nostall_run

OUT = Path("out/bench-sdsa").resolve()

DEFAULT = SDSAConfig()   # variant 3, 8 heads, 256 channels, 196 tokens, 16 lanes, T = 1
TABLE = {
    "SDSA-3 default (C 256, 8 heads, N 196)": DEFAULT,
    "SDSA-3 C 512, 8 heads (d 64)": DEFAULT.replace(channels=512),
    "SDSA-3 C 256, 1 head (d 256)": DEFAULT.replace(heads=1),
    "SDSA-3 default, T = 4": DEFAULT.replace(timesteps=4),
    "SDSA-1 default": DEFAULT.replace(variant=1),
}


def cosim(config, densities, label):
    bundles, verilog = prepare_sdsa(config, OUT / label, densities=densities, samples=1, seed=9)
    return [{**nostall_run("sdsa", verilog, bundles[d], OUT / f"run-{label}-{d}",
                           OUT / "verilator"), "density": d, "unit": label}
            for d in densities]


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench.sdsa", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="skip co-simulation and synthesis")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    figures = {}

    if not args.quick:
        print("## Verilator co-simulation, default configuration (1 sample, every beat checked)")
        print("| unit | density | Q spikes | K spikes | out spikes | measured | cycle model | "
              "ideal | measured/ideal | sim cycles/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
        figures["cosim"] = []
        for label, config in (("sdsa3", DEFAULT), ("sdsa1", DEFAULT.replace(variant=1))):
            print(f"[bench] building and running {label} (first build takes a minute or two)",
                  file=sys.stderr, flush=True)
            rows = cosim(config, (0.10, 0.25), label)
            figures["cosim"] += rows
            for r in rows:
                print(f"| {label} | {r['density']:.0%} | {r['q_spikes']} | {r['k_spikes']} | "
                      f"{r['out_spikes']} | {r['measured_cycles']} | {r['model_cycles']} | "
                      f"{r['ideal_cycles']} | {r['ratio']:.4f} | {r['sim_cycles_per_s']:,} |",
                      flush=True)

    print("\n## Cycles vs Q/K/V density (cycle model, equal to co-simulation in every test)")
    print("| unit | density | cycles | ideal | cycles/ideal | dense-equivalent | dense/cycles |")
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
    figures["density"] = []
    for name, config in TABLE.items():
        for density in (0.05, 0.10, 0.25, 0.40):
            q, k, v = random_qkv(config, 1, density, seed=1)
            cycles, ideal = config.cycles(q, k, v), config.ideal_cycles(q, k, v)
            dense = config.dense_cycles(1)
            figures["density"].append({"unit": name, "density": density, "cycles": cycles,
                                       "ideal": ideal, "dense": dense})
            print(f"| {name} | {density:.0%} | {cycles} | {ideal} | {cycles / ideal:.3f} | "
                  f"{dense} | {dense / cycles:.1f}x |", flush=True)

    print("\n## On-chip buffers (bits)")
    figures["buffers"] = {}
    for name, config in TABLE.items():
        buffers = config.memory_report()
        figures["buffers"][name] = buffers
        total = sum(buffers.values())
        print(f"- {name}: " + ", ".join(f"{k} {v:,}" for k, v in buffers.items())
              + f"; total {total:,} ({-(-total // 18432)} x 18 Kbit block RAMs at full packing)")

    print("\n## Verilog generation time", flush=True)
    figures["generation"] = []
    for name, config in (("default (C 256, 8 heads)", DEFAULT),
                         ("C 512, 8 heads", DEFAULT.replace(channels=512))):
        t0 = time.perf_counter()
        text = to_verilog(sdsa_unit(config), "sdsa")
        seconds = time.perf_counter() - t0
        figures["generation"].append({"unit": name, "seconds": round(seconds, 2),
                                      "bytes": len(text)})
        print(f"- {name}: {seconds:.2f} s, {len(text) / 2**10:.0f} KiB of Verilog", flush=True)

    if not args.quick:
        print("\n## Yosys synthesis for ECP5 (out of context), no multipliers", flush=True)
        figures["synthesis"] = []
        for name, config in (("SDSA-3 default", DEFAULT), ("SDSA-1 default",
                                                           DEFAULT.replace(variant=1))):
            t0 = time.perf_counter()
            cells = synth_cells(to_verilog(sdsa_unit(config), "sdsa"), "sdsa", "ecp5")
            keep = {k: cells.get(k, 0) for k in ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD",
                                                 "TRELLIS_DPR16X4", "MULT18X18D")}
            keep["multipliers"] = multiplier_cells(cells)
            figures["synthesis"].append({"unit": name, "cells": keep,
                                         "seconds": round(time.perf_counter() - t0, 1)})
            print(f"- {name}: {keep} ({time.perf_counter() - t0:.0f} s)", flush=True)

    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
