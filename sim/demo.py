"""The main job on a built-in default: a trained Meta-SpikeFormer from checkpoint to RTL
co-simulated image by image, on the overlay core (default) or as a spatial network.

    python -m sim.demo [--checkpoint F | --train] [--images N] [--out DIR] [--pause P]
                       [--waves FILE.fst [--waves-window FIRST:LAST]]
    python -m sim.demo --spatial [--taps] [--waves FILE.fst] ...

Default: the shipped checkpoint `models/digits.pt` (scikit-learn's 8 x 8 digits; a Conv-based
stage of 32 channels and a Transformer-based stage of 128 channels with SDSA-3, T = 1;
`--train` trains a new one first, about 4 minutes). Steps:

1. quantize (BatchNorm and RepConv folded, 8-bit weights, widths from 512 calibration images)
   and measure float and integer accuracy on the 360 test images;
2. export the integer network with `--images` test images and their traces as a bundle;
3. overlay (default): compile the network into a program for the default core
   (`gen.program`) and generate the core (`hw.core.OverlayCore`); `--spatial`: generate the
   whole network as one Verilog design (`hw.network.Network`);
4. build it with Verilator and simulate the images one after another. Overlay: in the
   compiled harness (`sim.harness`: a C++ AXI4 memory holding the program and each image, with
   pauses of chance `--pause` on its five channels, and an AXI4-Lite host), images back to
   back; every layer's output region must equal the integer model's traces and the class
   scores its scores. Spatial: in the compiled stream harness, the images' pixels streamed in
   back to back; every class accumulation of every image and timestep must equal the integer
   model's (with `--taps`, every layer's output stream too). `--waves` writes an FST waveform
   (of the harness cycles in `--waves-window`, or all); a value that differs from the model is
   reported with its layer, place and cycle (exit status 1);
5. print accuracy of float, integer and RTL side by side, cycles per image against the bound
   (overlay: `max(event-driven ideal + drain, bytes / AXI beat)` per layer, bytes moved per
   image and images per second at the core's measured Fmax, `fpga.measured`; spatial: the
   units' ideal event-driven costs), and the simulation speed; overlay: draw the run in
   `<out>/plots` (`sim.plots`: cycles per operation against the bound, firing rates, test image
   0's spikes with the model's and the RTL's side by side).
"""

import sys
import time
from pathlib import Path

import numpy as np

from fpga.measured import CORE_FMAX_MHZ
from spec.cli import Parser, fail, run_main

from .cosim import REPO_ROOT, CosimFailure, cosim_main
from .run import check_waves, window_arg

PROG = "sim.demo"
DEFAULT_CHECKPOINT = REPO_ROOT / "models" / "digits.pt"


def step(text):
    print(f"[{PROG}] {text}", flush=True)


def _print_accuracy(labels, float_pred, int_pred, rtl_pred):
    n = len(labels)
    rows = [("float (PyTorch)", float_pred), ("integer model", int_pred),
            ("RTL (Verilator)", rtl_pred)]
    print(f"\naccuracy on the {n} co-simulated test images (labels {labels.tolist()}):")
    for name, pred in rows:
        print(f"  {name:16s} {int((pred == labels).sum()):3d}/{n} = "
              f"{np.mean(pred == labels):7.2%}   predictions {pred.tolist()}")


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help=f"a checkpoint of sw.train (default: the shipped "
                   f"{DEFAULT_CHECKPOINT.relative_to(REPO_ROOT)})")
    p.add_argument("--train", action="store_true", help="train a new digits model first")
    p.add_argument("--images", type=int, default=4,
                   help="test images to co-simulate (default 4)")
    p.add_argument("--spatial", action="store_true",
                   help="run the spatial network (one engine per layer) instead of the overlay "
                        "core")
    p.add_argument("--taps", action="store_true",
                   help="spatial: also check every layer's output stream (slower)")
    p.add_argument("--out", default="out/demo", help="work folder (default: out/demo)")
    p.add_argument("--pause", type=float, default=0.0,
                   help="overlay: chance that each AXI channel pauses in a cycle (default 0)")
    p.add_argument("--waves", help="write an FST waveform of the simulation here")
    p.add_argument("--waves-window", type=window_arg, metavar="FIRST:LAST",
                   help="only these harness cycles (with --waves)")
    args = p.parse_args(argv)
    if not 0 <= args.pause < 1:
        fail(f"--pause must be at least 0 and below 1, not {args.pause}")
    if args.spatial and args.pause:
        fail("--pause is for the overlay core's memory, not --spatial")
    check_waves(args)
    if not 1 <= args.images <= 360:
        fail(f"--images must be 1 to 360 (the test set), not {args.images}")
    if args.train and args.checkpoint:
        fail("give --checkpoint or --train, not both")
    if args.taps and not args.spatial:
        fail("--taps checks the spatial network's streams; the overlay core's every layer is "
             "checked anyway (add --spatial)")
    out = Path(args.out).resolve()
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not args.train and not checkpoint.exists():
        fail(f"checkpoint {str(checkpoint)!r} does not exist (train one with --train)")
    started = time.perf_counter()
    if args.train:
        from sw.train import main as train_main

        out.mkdir(parents=True, exist_ok=True)
        checkpoint = out / "digits.pt"
        step(f"training a digits model into {checkpoint}")
        if train_main(["--dataset", "digits", "--out", str(checkpoint)]):
            fail("training failed")

    # 1. quantize; float and integer accuracy on the whole test set
    import torch

    from sw.quant import QuantOptions, prepare

    t0 = time.perf_counter()
    model, net, (_, _, xte, yte), _ = prepare(checkpoint, QuantOptions(), 512,
                                              lambda text: None)
    out.mkdir(parents=True, exist_ok=True)     # only once the checkpoint has been validated
    with torch.no_grad():
        float_pred = model(xte).argmax(1).numpy()
    int_pred = net.run(net.to_input(xte)).argmax(1)
    labels = np.asarray(yte)
    step(f"{checkpoint.name}: T = {net.timesteps}, {len(net.layers)} layers + head; quantized "
         f"(8-bit weights, 512 calibration images) in {time.perf_counter() - t0:.1f} s")
    step(f"test set ({len(labels)} images): float {np.mean(float_pred == labels):.2%}, "
         f"integer {np.mean(int_pred == labels):.2%}, predictions agree on "
         f"{np.mean(float_pred == int_pred):.2%}")

    if not args.spatial:
        return _overlay(args, out, net, xte, labels, float_pred, int_pred, started)

    # 2-3. bundle and Verilog
    from gen.verilog import to_verilog
    from hw.network import Network
    from spec.yamlio import atomic_write_text
    from sw.netbundle import read_network_bundle, write_network_bundle

    n = args.images
    t0 = time.perf_counter()
    bundle_dir = out / "bundle"
    write_network_bundle(bundle_dir, net, net.to_input(xte[:n]), labels[:n])
    _, net, bundle = read_network_bundle(bundle_dir)
    hw = Network(net, taps=args.taps)
    verilog = out / "network.v"
    atomic_write_text(verilog, to_verilog(hw, "network"))
    units = sum(len(layer.units) for layer in [*hw.layers, hw.head])
    step(f"exported {n} test images with every layer's traces to {bundle_dir}; generated "
         f"{verilog} ({verilog.stat().st_size / 1e6:.1f} MB, {units} units) in "
         f"{time.perf_counter() - t0:.1f} s")

    # 4. build and simulate in the compiled harness
    from .harness import build_stream
    from .network import run_in_harness

    t0 = time.perf_counter()
    binary, taps = build_stream(verilog.read_text(), "network", REPO_ROOT / "build" / "harness",
                                waves=bool(args.waves), log=step)
    step(f"harness build: {time.perf_counter() - t0:.1f} s (cached by Verilog hash in "
         f"build/harness)")
    t0 = time.perf_counter()
    try:
        figures = run_in_harness(hw, net, bundle, binary, taps,
                                 waves=args.waves and Path(args.waves).resolve(),
                                 waves_window=args.waves_window)
    except AssertionError as exc:           # a ScoreboardMismatch, or the scores
        raise CosimFailure(str(exc)) from exc
    checked = "every layer's output stream and " if args.taps else ""
    step(f"simulated {n} images back to back in {time.perf_counter() - t0:.1f} s: "
         f"{checked}every class accumulation equal to the integer model")

    # 5. the figures
    rtl_pred = np.asarray(figures["rtl_predictions"])
    _print_accuracy(labels[:n], float_pred[:n], int_pred[:n], rtl_pred)
    from .network import ideal_costs

    costs = ideal_costs(hw, net, bundle, n)
    ideal = sum(costs.values())
    cycles = figures["measured_cycles"]
    print(f"\ncycles: {cycles:,} for {n} images, {cycles / n:,.0f} per image; the units' ideal "
          f"event-driven costs sum to {ideal / n:,.0f} per image (measured / sum "
          f"{cycles / ideal:.2f}; units work in parallel)")
    top = max(costs, key=costs.get)
    print(f"  the busiest unit, {top}, alone needs {costs[top] / n:,.0f} per image (measured / "
          f"that {cycles / costs[top]:.2f})")
    per_layer = {}
    for key, value in costs.items():
        layer = key.rsplit(".", 1)[0]
        per_layer[layer] = per_layer.get(layer, 0) + value
    for layer, value in per_layer.items():
        top = max((k for k in costs if k.rsplit(".", 1)[0] == layer), key=costs.get)
        print(f"  {layer:10s} ideal {value / n:10,.0f} per image (largest: "
              f"{top.rsplit('.', 1)[1]} {costs[top] / n:,.0f})")
    speed = figures["simulated_cycles"] / figures["seconds"]
    print(f"\nsimulation: {figures['simulated_cycles']:,} cycles in "
          f"{figures['seconds']:.1f} s = {speed:,.0f} cycles per second (compiled harness; "
          f"{figures['seconds'] / n:.2f} s per image)")
    step(f"done in {time.perf_counter() - started:.0f} s; files in {out}")
    return 0


def _overlay(args, out, net, xte, labels, float_pred, int_pred, started):
    from spec.bundle import read_bundle
    from sw.netbundle import write_network_bundle

    from .run import RtlMismatch, overlay_images, write_plots

    n = args.images
    t0 = time.perf_counter()
    bundle_dir = out / "bundle"
    pixels = net.to_input(xte[:n])
    write_network_bundle(bundle_dir, net, pixels, labels[:n])
    bundle = read_bundle(bundle_dir)
    step(f"exported {n} test images with every layer's traces to {bundle_dir} in "
         f"{time.perf_counter() - t0:.1f} s; compiling the program and building the core's "
         f"compiled harness (Verilator, cached in build/harness)")
    t0 = time.perf_counter()
    try:
        figures = overlay_images(net, pixels, bundle, out, pause=args.pause,
                                 waves=args.waves and Path(args.waves).resolve(),
                                 waves_window=args.waves_window, log=step, keep_spikes=True)
    except RtlMismatch as exc:
        raise CosimFailure(str(exc)) from exc
    results = figures["images"]
    report = figures["cycle_report"]
    seconds = figures["simulation_seconds"]
    step(f"program: {figures['ops']} operations, {figures['program_bytes']:,} bytes of "
         f"program, weights and tables, {figures['activation_bytes']:,} bytes of activations "
         f"({out / 'program'}); harness built in {figures['binary_build_seconds']:.0f} s "
         f"({'cached' if figures['build_seconds'] < 5 else 'now'})")
    step(f"ran {n} images back to back on the overlay core in {seconds:.1f} s: every layer's "
         f"output region and the class scores equal to the integer model")

    rtl_pred = np.array([r["prediction"] for r in results])
    _print_accuracy(labels[:n], float_pred[:n], int_pred[:n], rtl_pred)
    cycles = np.array([r["cycles"] for r in results])
    bound = sum(op["bound"] for op in report["ops"])
    model = sum(op["model"] for op in report["ops"])
    moved = sum(op["read"] + op["written"] for op in report["ops"])
    measured_bytes = np.mean([r["read"] + r["written"] for r in results])
    print(f"\ncycles per image: {cycles.mean():,.0f} measured (images: "
          f"{', '.join(f'{c:,}' for c in cycles)}); bound {bound:,.0f} (measured / bound "
          f"{cycles.mean() / bound:.2f}); cycle model {model:,.0f}")
    print(f"bytes per image: {measured_bytes:,.0f} moved over AXI (read + written; the bound "
          f"counts {moved:,.0f})")
    per_op = np.mean([r["layer_cycles"] for r in results], axis=0)
    for op, measured in zip(report["ops"], per_op, strict=True):
        print(f"  {op['name']:24s} {op['opcode']:12s} measured {measured:9,.0f}  bound "
              f"{op['bound']:9,}  ({measured / max(1, op['bound']):.2f})")
    print("images per second: the default core does not fit the LFE5U-25F yet "
          "(docs/ARCHITECTURE.md, \"Known limits\")")
    for (device, grade), mhz in sorted(CORE_FMAX_MHZ.items()):
        print(f"  at {mhz:.1f} MHz (Fmax on the {device}, speed grade {grade}): "
              f"{mhz * 1e6 / cycles.mean():,.0f} images per second, "
              f"{measured_bytes * mhz * 1e6 / cycles.mean() / 1e6:,.0f} MB/s of memory traffic")
    speed = figures["simulated_cycles"] / seconds
    print(f"\nsimulation: {figures['simulated_cycles']:,} cycles in {seconds:.1f} s = "
          f"{speed:,.0f} cycles per second (compiled harness; {seconds / n:.2f} s per image)")
    if args.waves:
        print(f"waveform: {args.waves}")
    (out / "plots").mkdir(exist_ok=True)
    pictures = write_plots(out / "plots", figures, bundle.arrays, n)
    print(f"pictures: {', '.join(str(p.relative_to(out)) for p in pictures)} (in {out})")
    step(f"done in {time.perf_counter() - started:.0f} s; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, cosim_main(PROG, main)))
