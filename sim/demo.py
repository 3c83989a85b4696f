"""The main job on a built-in default: a LIF array from golden model to Verilator co-simulation.

    python -m sim.demo [--neurons N --lanes L --channels C --timesteps T --samples S] [--out DIR]

Default: the LIF layer in front of a stage-3 block of the paper's smallest model (14 x 14 tokens
x 256 channels = 50,176 neurons, per-channel thresholds and biases), 16 lanes, T = 4. Steps:
export golden traces (integer model) as a bundle, generate Verilog, build it with Verilator,
co-simulate with every output beat checked (once without stalls against the cycle model, once
with random stalls on both streams), and print a summary.
"""

import sys
import time
from pathlib import Path

import numpy as np

from gen.cli import Parser, run_main
from spec.lif import LIFConfig

from .cosim import CosimFailure, prepare_lif, read_report, run_cocotb

PROG = "sim.demo"


def default_config(neurons, lanes, channels, timesteps):
    """Per-channel thresholds (0.5 .. 2.0) and biases (-0.5 .. 0.5) from a fixed seed."""
    rng = np.random.default_rng(2024)
    v_th = (rng.integers(2, 9, size=channels) / 4).tolist()
    bias = (rng.integers(-4, 5, size=channels) / 8).tolist()
    return LIFConfig(neurons=neurons, lanes=lanes, channels=channels, timesteps=timesteps,
                     v_th=v_th, bias=bias, expose_membrane=True)


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--neurons", type=int, default=196 * 256)
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--timesteps", type=int, default=4)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="out/demo", help="work folder (default: out/demo)")
    args = p.parse_args(argv)
    if args.samples < 1:
        p.error(f"--samples must be at least 1, not {args.samples}")
    config = default_config(args.neurons, args.lanes, args.channels, args.timesteps)
    out = Path(args.out).resolve()
    n = config.neurons

    def step(text):
        print(f"[{PROG}] {text}", flush=True)

    step(f"LIF array: {n} neurons ({n // config.channels} tokens x {config.channels} channels), "
         f"{config.lanes} lanes, T={config.timesteps}, v_bits={config.v_bits}, "
         f"frac_bits={config.frac_bits}, {config.reset} reset")
    t0 = time.perf_counter()
    bundle, verilog = prepare_lif(config, out, samples=args.samples, seed=args.seed)
    t_gen = time.perf_counter() - t0
    step(f"exported {args.samples} samples of golden traces to {bundle} and generated "
         f"{verilog} ({verilog.stat().st_size // 1024} KiB) in {t_gen:.1f} s")

    build_root = out / "verilator"
    report = out / "report.json"
    t0 = time.perf_counter()
    from .verilator import build
    build(verilog, "lif", build_root)
    t_build = time.perf_counter() - t0
    step(f"Verilator build: {t_build:.1f} s (cached by Verilog hash in {build_root})")

    env = {"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": args.seed, "SPIKEGEN_REPORT": report}
    t0 = time.perf_counter()
    run_cocotb(verilog, toplevel="lif", module="tb.cocotb_lif",
               testcase="test_no_stalls_matches_cycle_model", test_dir=out / "nostall", env=env,
               build_root=build_root, log_file=out / "nostall.log")
    t_sim = time.perf_counter() - t0
    figures = read_report(report)
    beats = figures["beats"]
    step(f"co-simulation without stalls: {beats} beats, {beats * config.lanes} neuron updates, "
         f"every spike and membrane equal to the integer model")
    measured, ideal = figures["measured_cycles"], figures["ideal_cycles"]
    step(f"cycles: measured {measured}, cycle model {figures['model_cycles']}, ideal "
         f"ceil(neurons/lanes)*T*samples {ideal}: ratio {measured / ideal:.4f} "
         f"(the {config.latency}-cycle pipeline fill included)")
    starts = figures["sample_out_cycles"]
    if len(starts) > 1:
        per_sample = (starts[-1] - starts[0]) / (len(starts) - 1)
        step(f"throughput: {per_sample:.0f} cycles per sample, ideal "
             f"{ideal // args.samples}: ratio {per_sample / (ideal / args.samples):.4f}")
    step(f"simulation speed: {figures['simulated_cycles'] / figures['loop_seconds']:,.0f} "
         f"simulated cycles per wall second in the cocotb test ({t_sim:.1f} s for the whole "
         f"simulator run)")
    run_cocotb(verilog, toplevel="lif", module="tb.cocotb_lif",
               testcase="test_random_stalls_both_sides", test_dir=out / "stalls", env=env,
               build_root=build_root, log_file=out / "stalls.log")
    step("co-simulation with random stalls on both streams: every beat equal")
    step(f"done; logs in {out}")
    return 0


def _main(argv=None):
    try:
        return main(argv)
    except CosimFailure as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run_main(PROG, _main))
