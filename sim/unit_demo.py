"""Units of a paper-size stage-3 Transformer block, each from golden
model to Verilator co-simulation.

    python -m sim.unit_demo [--neurons N --lanes L --channels C --timesteps T --samples S]
                       [--heads H --density P | --no-attention] [--out DIR] [--waves DIR]

Default, the paper's smallest model at stage 3 (14 x 14 tokens x 256 channels):

1. the LIF layer in front of the block: 50,176 neurons with per-channel thresholds and biases,
   16 lanes, T = 4;
2. the block's attention: SDSA-3 (per-head K^T V, then Q KV, attention LIF), 8 heads, on
   Q/K/V spikes of 10 % density, T = 1.

Steps for each: export golden traces (integer model) as a bundle, generate Verilog, build it
with Verilator, co-simulate with every output beat checked (once without stalls against the
cycle model, once with random stalls on every stream), and print a summary. `--waves DIR`
writes an FST waveform of each co-simulation there.
"""

import sys
import time
from pathlib import Path

import numpy as np

from spec.cli import Parser, run_main
from spec.lif import LIFConfig
from spec.sdsa import SDSAConfig

from .cosim import cosim_main, prepare_lif, prepare_sdsa, read_report, run_cocotb
from .icarus import simulator_from_env

PROG = "sim.unit_demo"


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
    p.add_argument("--heads", type=int, default=8, help="attention heads (default 8)")
    p.add_argument("--density", type=float, default=0.1,
                   help="density of the attention's Q/K/V spikes (default 0.1)")
    p.add_argument("--no-attention", action="store_true", help="run the LIF layer only")
    p.add_argument("--out", default="out/demo", help="work folder (default: out/demo)")
    p.add_argument("--waves", metavar="DIR",
                   help="write an FST waveform of each co-simulation into this folder "
                        "(lif-nostall.fst, lif-stalls.fst, sdsa-nostall.fst, sdsa-stalls.fst)")
    args = p.parse_args(argv)
    simulator_from_env()        # a bad SPIKEGEN_SIMULATOR is refused before any work
    if args.waves is not None and not Path(args.waves).is_dir():
        p.error(f"--waves names a folder for the waveforms; {args.waves!r} is not one")
    if args.samples < 1:
        p.error(f"--samples must be at least 1, not {args.samples}")
    if not 0 <= args.density <= 1:
        p.error(f"--density must be between 0 and 1, not {args.density}")
    config = default_config(args.neurons, args.lanes, args.channels, args.timesteps)
    attention = None
    if not args.no_attention:
        attention = SDSAConfig(heads=args.heads, channels=args.channels,
                               tokens=args.neurons // args.channels, lanes=args.lanes)
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
    build(verilog, "lif", build_root, waves=args.waves is not None)
    t_build = time.perf_counter() - t0
    step(f"Verilator build: {t_build:.1f} s (cached by Verilog hash in {build_root})")

    env = {"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": args.seed, "SPIKEGEN_REPORT": report}
    t0 = time.perf_counter()
    run_cocotb(verilog, toplevel="lif", module="tb.cocotb_lif",
               testcase="test_no_stalls_matches_cycle_model", test_dir=out / "nostall", env=env,
               build_root=build_root, log_file=out / "nostall.log",
               waves=_waves(args, "lif-nostall"))
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
               build_root=build_root, log_file=out / "stalls.log",
               waves=_waves(args, "lif-stalls"))
    step("co-simulation with random stalls on both streams: every beat equal")
    if attention is not None:
        run_attention(attention, args, out / "sdsa", step)
    step(f"done; logs in {out}")
    return 0


def _waves(args, name):
    """The FST file of co-simulation `name` with `--waves DIR`, else None."""
    return None if args.waves is None else Path(args.waves).resolve() / f"{name}.fst"


def run_attention(config, args, out, step):
    """Step 2: the SDSA unit of the same block."""
    step(f"SDSA-{config.variant}: {config.heads} heads x d={config.head_dim}, {config.channels} "
         f"channels, {config.tokens} tokens, {config.lanes} lanes, T={config.timesteps}; "
         f"buffers {config.memory_report()}")
    t0 = time.perf_counter()
    bundles, verilog = prepare_sdsa(config, out, densities=(args.density,), samples=1,
                                    seed=args.seed)
    bundle = bundles[args.density]
    step(f"exported Q/K/V spikes of density {args.density:.0%} with the integer model's output "
         f"to {bundle}; generated {verilog} ({verilog.stat().st_size // 1024} KiB) in "
         f"{time.perf_counter() - t0:.1f} s")
    build_root, report = out / "verilator", out / "report.json"
    env = {"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": args.seed, "SPIKEGEN_REPORT": report}
    t0 = time.perf_counter()
    run_cocotb(verilog, toplevel="sdsa", module="tb.cocotb_sdsa",
               testcase="test_no_stalls_matches_cycle_model", test_dir=out / "nostall",
               env=env, build_root=build_root, log_file=out / "nostall.log",
               waves=_waves(args, "sdsa-nostall"))
    figures = read_report(report)
    step(f"co-simulation without stalls (Verilator build included: "
         f"{time.perf_counter() - t0:.1f} s): {figures['q_spikes']} Q and "
         f"{figures['k_spikes']} K spikes in, {figures['out_spikes']} output spikes, every beat "
         f"equal to the integer model")
    measured, ideal = figures["measured_cycles"], figures["ideal_cycles"]
    step(f"cycles: measured {measured}, cycle model {figures['model_cycles']}, ideal {ideal} "
         f"(KV pass: max(beats, nnz(K) x d/lanes), then Q KV pass: max(beats, nnz(Q) x "
         f"d/lanes)): ratio {measured / ideal:.4f}; with every Q/K/V position a spike it "
         f"would take {config.dense_cycles(1)}")
    run_cocotb(verilog, toplevel="sdsa", module="tb.cocotb_sdsa",
               testcase="test_random_stalls_all_streams", test_dir=out / "stalls", env=env,
               build_root=build_root, log_file=out / "stalls.log",
               waves=_waves(args, "sdsa-stalls"))
    step("co-simulation with random stalls on Q, K, V and the output: every beat equal")


if __name__ == "__main__":
    sys.exit(run_main(PROG, cosim_main(PROG, main)))
