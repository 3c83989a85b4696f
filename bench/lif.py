"""LIF-array benchmark: cycles vs. the ideal, Verilog generation time, co-simulation speed,
resources after Yosys synthesis. Prints a Markdown table; `--json FILE` also saves the figures.

    python -m bench.lif [--quick] [--json FILE]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from fpga.yosys import multiplier_cells, synth_cells
from gen.verilog import to_verilog
from hw.lif import LIFArray
from sim.cosim import prepare_lif
from spec.lif import LIFConfig

from .common import nostall_run

OUT = Path("out/bench-lif").resolve()


def cosim_row(config, samples, label):
    work = OUT / label
    t0 = time.perf_counter()
    bundle, verilog = prepare_lif(config, work, samples=samples, seed=3)
    t_prep = time.perf_counter() - t0
    r = nostall_run("lif", verilog, bundle, work, OUT / "verilator")
    starts = r["sample_out_cycles"]
    # throughput: cycles between the first output beats of successive samples (no fill latency)
    per_sample = (starts[-1] - starts[0]) / (len(starts) - 1)
    ideal_per_sample = r["ideal_cycles"] / samples
    return {
        "config": label, "neurons": config.neurons, "lanes": config.lanes,
        "timesteps": config.timesteps, "samples": samples,
        "measured_cycles": r["measured_cycles"], "model_cycles": r["model_cycles"],
        "ideal_cycles": r["ideal_cycles"],
        "ratio": r["ratio"],
        "cycles_per_sample": per_sample, "ideal_per_sample": ideal_per_sample,
        "throughput_ratio": round(per_sample / ideal_per_sample, 4),
        "sim_cycles_per_s": r["sim_cycles_per_s"],
        "export_and_generate_s": round(t_prep, 2), "build_and_run_s": r["wall_s"],
    }


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench.lif", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller grid")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    figures = {"generation": [], "cosim": [], "synthesis": []}

    print("## Verilog generation time", flush=True)
    for neurons in ([4096] if args.quick else [256, 4096, 50176]):
        config = LIFConfig(neurons=neurons, lanes=16, channels=256 if neurons >= 256 else 1,
                           v_th=[1.0 + (c % 4) / 4 for c in range(256)], timesteps=4)
        t0 = time.perf_counter()
        text = to_verilog(LIFArray(config), "lif")
        seconds = time.perf_counter() - t0
        figures["generation"].append({"neurons": neurons, "lanes": 16, "seconds": round(seconds, 2),
                                      "bytes": len(text)})
        print(f"- neurons {neurons}, lanes 16, 256 channels: {seconds:.2f} s, "
              f"{len(text) // 1024} KiB", flush=True)

    print("\n## Co-simulation without stalls (every beat checked)", flush=True)
    print("| neurons | lanes | T | samples | measured (incl. fill) | model | ideal | "
          "measured/ideal | cycles/sample (steady) | ideal/sample | throughput ratio | "
          "sim cycles/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    grid = [(256, 1), (256, 4), (1024, 4), (4096, 1), (4096, 4), (8, 4), (100, 4)]
    if args.quick:
        grid = [(256, 4), (4096, 4)]
    for neurons, steps in grid:
        lanes = 4 if neurons == 8 else 16
        config = LIFConfig(neurons=neurons, lanes=lanes, timesteps=steps)
        samples = 8 if neurons <= 1024 else 3
        row = cosim_row(config, samples, f"n{neurons}-l{lanes}-t{steps}")
        figures["cosim"].append(row)
        print(f"| {neurons} | {lanes} | {steps} | {samples} | {row['measured_cycles']} | "
              f"{row['model_cycles']} | {row['ideal_cycles']} | {row['ratio']:.4f} | "
              f"{row['cycles_per_sample']:.1f} | {row['ideal_per_sample']:.0f} | "
              f"{row['throughput_ratio']:.4f} | {row['sim_cycles_per_s']:,} |", flush=True)

    print("\n## Yosys synthesis for ECP5 (out of context, before place-and-route)", flush=True)
    print("| neurons | lanes | LUT4 | CCU2C | TRELLIS_FF | DP16KD | TRELLIS_DPR16X4 | "
          "multiplier cells | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|", flush=True)
    for neurons, lanes in ([(4096, 16)] if args.quick else [(1024, 16), (4096, 16)]):
        config = LIFConfig(neurons=neurons, lanes=lanes, channels=256,
                           v_th=[1.0 + (c % 4) / 4 for c in range(256)], timesteps=4)
        t0 = time.perf_counter()
        cells = synth_cells(to_verilog(LIFArray(config), "lif"), "lif", "ecp5")
        seconds = time.perf_counter() - t0
        row = {"neurons": neurons, "lanes": lanes, "seconds": round(seconds, 1),
               "multipliers": multiplier_cells(cells)}
        for name in ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD", "TRELLIS_DPR16X4"):
            row[name] = cells.get(name, 0)
        figures["synthesis"].append(row)
        print(f"| {neurons} | {lanes} | {row['LUT4']} | {row['CCU2C']} | {row['TRELLIS_FF']} | "
              f"{row['DP16KD']} | {row['TRELLIS_DPR16X4']} | {row['multipliers'] or 'none'} | "
              f"{seconds:.1f} |", flush=True)

    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
