"""Spike-sparse accumulate engine benchmark: cycles vs the ideal event-driven cost (Verilator
co-simulation), the density table from the cycle model, memory footprint, generation time,
synthesis cells. Prints Markdown; `--json FILE` also saves the figures.

    python -m bench.sae [--quick] [--json FILE]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from fpga.yosys import multiplier_cells, synth_cells
from gen.verilog import to_verilog
from hw.sae import SpikeAccumulator
from sim.cosim import prepare_sae
from spec.sae import SAEConfig, SAEParams
from sw.export import random_spikes

from .common import nostall_run

OUT = Path("out/bench-sae").resolve()

CONV = SAEConfig(mode="conv", in_channels=64, out_channels=128, kernel=3, stride=1, padding=1,
                 height=14, width=14, lanes=16, in_lanes=16, acc_bits=18)
STAGE3 = SAEConfig(mode="conv", in_channels=256, out_channels=256, kernel=3, stride=1,
                   padding=1, height=14, width=14, lanes=16, in_lanes=16, acc_bits=20)
TABLE = {
    "conv 3x3 s1 64->128": CONV,
    "conv 3x3 s2 64->128 (downsampling)": CONV.replace(stride=2),
    "linear 128->128 (1x1)": SAEConfig(mode="linear", in_channels=128, out_channels=128,
                                       kernel=1, padding=0, height=14, width=14, lanes=16,
                                       in_lanes=16, acc_bits=18),
    "depthwise 7x7 128, 14x14": SAEConfig(mode="depthwise", in_channels=128,
                                          out_channels=128, kernel=7, padding=3, height=14,
                                          width=14, lanes=16, in_lanes=16, acc_bits=18),
    "depthwise 7x7 128, 28x28": SAEConfig(mode="depthwise", in_channels=128,
                                          out_channels=128, kernel=7, padding=3, height=28,
                                          width=28, lanes=16, in_lanes=16, acc_bits=18),
    "depthwise 3x3 128, 14x14": SAEConfig(mode="depthwise", in_channels=128,
                                          out_channels=128, kernel=3, padding=1, height=14,
                                          width=14, lanes=16, in_lanes=16, acc_bits=18),
}


def cosim(config, densities, label):
    bundles, verilog = prepare_sae(config, OUT / label, densities=densities, frames=1, seed=9)
    return [{**nostall_run("sae", verilog, bundles[d], OUT / f"run-{label}-{d}",
                           OUT / "verilator"), "density": d, "layer": label}
            for d in densities]


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench.sae", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="skip co-simulation and synthesis")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    figures = {}

    if not args.quick:
        print("## Verilator co-simulation (1 frame, every accumulator checked)")
        print("| layer | density | spikes | measured | cycle model | ideal | measured/ideal | "
              "dense-equivalent | sim cycles/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
        figures["cosim"] = []
        for label, config in (("conv 3x3 64->128 14x14", CONV),
                              ("depthwise 7x7 128 14x14", TABLE["depthwise 7x7 128, 14x14"])):
            rows = cosim(config, (0.10, 0.25), label.split()[0])
            figures["cosim"] += rows
            for r in rows:
                print(f"| {label} | {r['density']:.0%} | {r['spikes']} | {r['measured_cycles']} "
                      f"| {r['model_cycles']} | {r['ideal_cycles']} | {r['ratio']:.4f} | "
                      f"{r['dense_cycles']} | {r['sim_cycles_per_s']:,} |", flush=True)

    print("\n## Cycles vs input density (cycle model, equal to co-simulation in every test)")
    print("| layer | density | cycles | ideal | cycles/ideal | dense-equivalent | dense/cycles |")
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
    figures["density"] = []
    for name, config in TABLE.items():
        for density in (0.05, 0.10, 0.20, 0.40):
            spikes = random_spikes((1, config.in_channels, config.height, config.width),
                                   density, seed=1)
            cycles, ideal = config.cycles(spikes), config.ideal_cycles(spikes)
            dense = config.dense_cycles(1)
            figures["density"].append({"layer": name, "density": density, "cycles": cycles,
                                       "ideal": ideal, "dense": dense})
            print(f"| {name} | {density:.0%} | {cycles} | {ideal} | {cycles / ideal:.3f} | "
                  f"{dense} | {dense / cycles:.1f}x |", flush=True)

    print("\n## Memory footprint, stage-3 sizes (14x14, 256->256, 3x3, w_bits 8, acc_bits 20)")
    fp = {"weights_bits": STAGE3.weight_memory_bits,
          "accumulator_bits": STAGE3.accumulator_memory_bits,
          "bias_bits": STAGE3.bias_memory_bits}
    figures["footprint_stage3"] = fp
    for key, bits in fp.items():
        print(f"- {key}: {bits:,} bits ({bits / 8 / 1024:.1f} KiB, {-(-bits // 18432)} x 18 Kbit "
              f"block RAMs)")

    print("\n## Verilog generation time", flush=True)
    figures["generation"] = []
    for name, config in (("conv 3x3 64->128", CONV), ("stage-3 conv 3x3 256->256", STAGE3)):
        t0 = time.perf_counter()
        params = SAEParams.seeded(config, 0)
        text = to_verilog(SpikeAccumulator(config, params), "sae")
        seconds = time.perf_counter() - t0
        figures["generation"].append({"layer": name, "seconds": round(seconds, 1),
                                      "bytes": len(text)})
        print(f"- {name}: {seconds:.1f} s, {len(text) / 2**20:.1f} MiB of Verilog", flush=True)

    if not args.quick:
        print("\n## Yosys synthesis for ECP5 (out of context), no multipliers", flush=True)
        small = CONV.replace(in_channels=16, out_channels=64, height=8, width=8)
        t0 = time.perf_counter()
        cells = synth_cells(to_verilog(SpikeAccumulator(small, SAEParams.seeded(small, 0)),
                                       "sae"), "sae", "ecp5")
        keep = {k: cells.get(k, 0) for k in ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD",
                                             "TRELLIS_DPR16X4")}
        keep["multipliers"] = multiplier_cells(cells)
        figures["synthesis"] = {"config": small.to_dict(), "cells": keep,
                                "seconds": round(time.perf_counter() - t0, 1)}
        print(f"- conv 3x3 16->64, 8x8, lanes 16: {keep}")

    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
