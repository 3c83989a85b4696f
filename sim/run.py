"""Batch runs on the overlay core's RTL in the compiled harness (`sim.harness`): many test
images of the digits network back to back, every layer's output region and the class scores of
every image checked against the integer model, accuracy of float / integer / RTL, cycles per
image against the bound, and the simulation speed.

    python -m sim.run [--images N] [--checkpoint F] [--pause P] [--seed S] [--pgo]
                      [--waves FILE.fst [--waves-window FIRST:LAST]] [--json FILE]
                      [--out DIR] [--plot DIR] [--workers N | --scheduler ADDRESS] [--quiet]

More than `CHUNK` (16) images run in chunks, one harness process per chunk, on a Dask
LocalCluster of `--workers` processes (default one per CPU, at most one per chunk) or on the
cluster of `--scheduler`; the chunks' results are checked here as they come back.

The harness's memory pauses each of the five AXI channels with chance `--pause` (seeded by
`--seed`); the core's results do not depend on them, its cycles do. `--pgo` compiles the
harness twice, the second time with a profile of the first (a minute more of build, about
1.25 x the simulation speed). `--waves` writes an FST waveform (all cycles, or the window of
harness cycles given; a layer that differs from the model is reported with its window).
`--plot DIR` draws the run (`sim.plots`): cycles per operation against the model and the bound,
firing rates, and test image 0's spikes, the integer model's beside the RTL's.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fpga.sweep import dask_client
from gen.program import compile_network, cycle_report, write_program
from spec.bundle import read_bundle
from spec.cli import Parser, check_output_path, fail, run_main
from spec.core import CoreConfig
from spec.yamlio import atomic_write_text
from sw.netbundle import write_network_bundle
from sw.quant import QuantOptions, prepare

from . import plots
from .cosim import REPO_ROOT, CosimFailure, cosim_main
from .harness import HarnessError, build_core, build_seconds, core_memory, run_core
from .overlay import (
    Divergence,
    Memory,
    check_outputs,
    check_scores,
    region_array,
    trace_planes,
)

PROG = "sim.run"
DEFAULT_CHECKPOINT = REPO_ROOT / "models" / "digits.pt"
#: Images per harness process (each process starts from reset; the images in one run back to
#: back): bounds the memory images held at once.
CHUNK = 16


class RtlMismatch(RuntimeError):
    """An image's output regions or scores differ from the integer model's."""


def _window(run, layer, report_ops):
    """Harness cycles (first, last) around operation `layer` of `run`."""
    before = sum(run.report["layer_cycles"][:layer])
    first = run.report["start"] + before
    return max(0, first - 100), first + run.report["layer_cycles"][layer] + 100


def overlay_images(net, pixels, bundle, out, *, core=None, build_root=None, pause=0.0, seed=1,
                   pgo=False, waves=None, waves_window=None, progress=None, log=None,
                   binary=None, keep_spikes=False, client=None):
    """Run every image of `pixels` (integer, N x C x H x W) on the overlay core in the compiled
    harness and check each against `bundle` (its arrays hold the integer model's traces and
    scores of the same images). Writes the program to `out`/program. Returns a dict: per image
    (cycles, layer cycles, bytes, events, prediction, values compared), the cycle report, the
    build and simulation seconds. Raises `RtlMismatch` naming the first divergence and the
    cycles to look at. `binary` is a harness already built for `core` (else it is built, or
    found, in `build_root`). With `keep_spikes`, the result's "rtl_spikes" holds the first
    image's spike outputs as the RTL wrote them (operation name -> (T, C, H, W) array), and
    "layout" the program's layout. With `client` (a `distributed` Client whose workers see
    this machine's files: a LocalCluster, or a cluster on a shared file system), the images
    run in chunks of up to `CHUNK`, one harness process per chunk, spread over its workers;
    `progress` then hears of each image when its chunk ends. Waveforms need one process: with
    `waves`, the client is not used."""
    core = core or CoreConfig()
    build_root = Path(build_root or REPO_ROOT / "build" / "harness")
    image = compile_network(net, core)
    report = cycle_report(image, bundle)
    write_program(Path(out) / "program", image, report)
    layout = image.layout()
    size = len(image.data) + image.activation_bytes
    memories = [core_memory(image.data, size, core, p) for p in pixels]
    t0 = time.perf_counter()
    if binary is None:
        binary = build_core(core, build_root, waves=waves is not None,
                            train=memories[0] if pgo else None, log=log)
    built = time.perf_counter() - t0
    results, simulated, seconds, kept = [], 0, 0.0, {}
    workers = 1 if client is None or waves is not None else \
        max(1, len(client.scheduler_info().get("workers", {})))
    size_chunk = min(CHUNK, -(-len(memories) // workers))
    starts = range(0, len(memories), size_chunk)
    if workers > 1:                  # every chunk at once, on the client's workers
        t0 = time.perf_counter()
        runs_of = _distributed_runs(client, binary, memories, starts, size_chunk,
                                    layers=len(image.ops), pause=pause, seed=seed,
                                    progress=progress)
        seconds += time.perf_counter() - t0
    for first in starts:
        chunk = memories[first:first + size_chunk]
        if workers > 1:
            runs = runs_of[first]
        else:
            t0 = time.perf_counter()
            runs = run_core(binary, chunk, layers=len(image.ops), pause=pause,
                            seed=seed + first, waves=waves, waves_window=waves_window,
                            progress=None if progress is None else
                            (lambda n, cycles, done, base=first: progress(base + n, cycles,
                                                                          done)))
            seconds += time.perf_counter() - t0
        for n, run in enumerate(runs):
            sample = first + n
            if not run.ok:
                raise RtlMismatch(f"image {sample}: the core did not finish cleanly: "
                                  f"{run.report}")
            simulated += run.report["waited"]
            mem = Memory(0, size)
            mem.write(0, run.memory)
            try:
                compared = check_outputs(mem, layout, core, bundle.arrays, sample)
                scores = check_scores(mem, layout, core, net.timesteps,
                                      bundle.arrays["scores"][sample], sample)
            except Divergence as exc:
                name = str(exc).split(" ", 1)[0]
                layer = next((k for k, op in enumerate(layout["ops"]) if op["name"] == name),
                             len(layout["ops"]) - 1)
                a, b = _window(run, layer, layout["ops"])
                where = (f"; {layout['ops'][layer]['name']} ran in harness cycles {a:,} to "
                         f"{b:,} of this process (images {first} to {first + len(chunk) - 1}): "
                         f"--waves FILE.fst --waves-window {a}:{b} shows them")
                raise RtlMismatch(f"image {sample}: {exc}{where}") from exc
            if keep_spikes and sample == 0:
                for op in layout["ops"]:
                    region = layout["regions"][op["output"]]
                    if region["kind"] == "spikes":
                        kept[op["name"]] = region_array(mem, region, core)[0]
            r = run.report
            results.append({"sample": sample, "cycles": r["cycles"],
                            "layer_cycles": r["layer_cycles"], "read": r["read"],
                            "written": r["written"], "events": r["events"],
                            "prediction": int(np.argmax(scores)), "compared": compared})
        if len(runs) < len(chunk):
            raise RtlMismatch(f"image {first + len(runs)}: the harness stopped early")
    extra = {"rtl_spikes": kept, "layout": layout} if keep_spikes else {}
    return {**extra, "images": results, "cycle_report": report, "ops": len(image.ops),
            "program_bytes": len(image.data), "activation_bytes": image.activation_bytes,
            "build_seconds": round(built, 1), "binary_build_seconds": build_seconds(binary),
            "simulated_cycles": simulated, "simulation_seconds": round(seconds, 3)}


def _distributed_runs(client, binary, memories, starts, size, *, layers, pause, seed,
                      progress):
    """{first image: its chunk's runs}: one `run_core` per chunk on `client`, each chunk's
    pauses seeded with `seed` + its first image's index, as the serial run seeds them."""
    from distributed import as_completed

    futures = {client.submit(run_core, binary, client.scatter(memories[first:first + size]),
                             layers=layers, pause=pause, seed=seed + first, pure=False): first
               for first in starts}
    runs_of = {}
    for future in as_completed(futures):
        first = futures[future]
        runs_of[first] = future.result()
        if progress is not None:
            for n, run in enumerate(runs_of[first]):
                progress(first + n, run.report.get("cycles", 0), True)
    return runs_of


def write_plots(folder, figures, arrays, images):
    """The run's pictures in `folder` (`sim.plots`): cycles per operation against the model
    and the bound, firing rates of the spike outputs over the `images` traced in `arrays`,
    and the first image's spikes, the integer model's beside the RTL's. Returns the paths."""
    ops = figures["cycle_report"]["ops"]
    measured = np.mean([r["layer_cycles"] for r in figures["images"]], axis=0)
    layout = figures["layout"]
    spiking = [(op["name"], layout["regions"][op["output"]]) for op in layout["ops"]
               if layout["regions"][op["output"]]["kind"] == "spikes"]
    rates = [float(np.mean([trace_planes(arrays, region, k) != 0 for k in range(images)]))
             for _, region in spiking]
    names = [name for name, _ in spiking]
    title = f"{images} image{'s' if images > 1 else ''}"
    return [
        plots.cycles_per_layer([op["name"] for op in ops], measured,
                               [op["model"] for op in ops], [op["bound"] for op in ops],
                               folder / "cycles_per_layer.png",
                               title=f"cycles per operation on the overlay core ({title})"),
        plots.firing_rates(names, rates, folder / "firing_rates.png",
                           title=f"firing rate per operation ({title}, integer model = RTL)"),
        plots.rasters(names, [trace_planes(arrays, region, 0) for _, region in spiking],
                      [figures["rtl_spikes"][name] for name in names],
                      folder / "spikes_image0.png", title="spikes of test image 0"),
    ]


def _print_accuracy(labels, rows):
    n = len(labels)
    print(f"\naccuracy on {n} test images:")
    for name, pred in rows:
        print(f"  {name:16s} {int((pred == labels).sum()):4d}/{n} = {np.mean(pred == labels):7.2%}")


def window_arg(text):
    """argparse type of `--waves-window FIRST:LAST` (whole numbers of cycles)."""
    try:
        a, b = (int(v.replace("_", "")) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes FIRST:LAST (two whole numbers of cycles), not "
                                         f"{text!r}") from None
    if not 0 <= a <= b:
        raise argparse.ArgumentTypeError(f"FIRST must be 0 or more and at most LAST, not "
                                         f"{text!r}")
    return a, b


def check_waves(args):
    """`fail` on a `--waves` that is not an FST file name or a window without `--waves`."""
    if args.waves_window and not args.waves:
        fail("--waves-window needs --waves FILE.fst")
    if args.waves and not args.waves.endswith(".fst"):
        fail(f"--waves writes an FST file; name it *.fst, not {args.waves!r}")
    if args.waves:
        check_output_path(args.waves)


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100,
                   help="test images to run, 1 to 360 (default 100)")
    p.add_argument("--checkpoint", help="a checkpoint of sw.train (default: the shipped "
                   "models/digits.pt)")
    p.add_argument("--pause", type=float, default=0.0,
                   help="chance that each AXI channel pauses in a cycle, 0 <= P < 1 (default 0)")
    p.add_argument("--seed", type=int, default=1, help="the pauses' seed (default 1)")
    p.add_argument("--pgo", action="store_true",
                   help="profile-guided harness build (slower build, faster simulation)")
    p.add_argument("--waves", help="write an FST waveform here")
    p.add_argument("--waves-window", type=window_arg, metavar="FIRST:LAST",
                   help="only these harness cycles (with --waves)")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--plot", metavar="DIR", help="write pictures here (PNG): cycles per "
                   "operation against the bound, firing rates, image 0's spikes (model | RTL)")
    p.add_argument("--out", default="out/run", help="work folder (default: out/run)")
    p.add_argument("--workers", type=int, metavar="N",
                   help=f"harness processes at once, on a Dask LocalCluster (default: one per "
                        f"CPU, at most one per {CHUNK} images; 1 runs here without a cluster)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a Dask scheduler to run on instead (its workers must see this "
                        "folder and the harness binary: a shared file system)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        fail(f"--workers must be at least 1, not {args.workers}")
    if args.scheduler and args.workers is not None:
        fail("--workers sizes a LocalCluster; with --scheduler the cluster has its own")
    if args.waves and (args.scheduler or (args.workers or 1) > 1):
        fail("--waves writes one waveform from one harness process: leave out --workers and "
             "--scheduler")
    if not 1 <= args.images <= 360:
        fail(f"--images must be 1 to 360 (the test set), not {args.images}")
    if not 0 <= args.pause < 1:
        fail(f"--pause must be at least 0 and below 1, not {args.pause}")
    check_waves(args)
    check_output_path(args.json)
    if args.plot is not None:
        plot_dir = Path(args.plot)
        if plot_dir.exists() and not plot_dir.is_dir():
            fail(f"--plot {args.plot!r} exists and is not a folder")
        if not plot_dir.resolve().parent.is_dir():
            fail(f"--plot {args.plot!r}: folder {str(plot_dir.resolve().parent)!r} does not "
                 f"exist")
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.exists():
        fail(f"checkpoint {str(checkpoint)!r} does not exist")
    def log(text):
        print(f"[{PROG}] {text}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    model, net, (_, _, xte, yte), _ = prepare(checkpoint, QuantOptions(), 512, lambda t: None)
    n = args.images
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(yte)[:n]
    with torch.no_grad():
        float_pred = model(xte[:n]).argmax(1).numpy()
    pixels = net.to_input(xte[:n])
    t0 = time.perf_counter()
    write_network_bundle(out / "bundle", net, pixels, labels)
    bundle = read_bundle(out / "bundle")
    int_pred = np.argmax(bundle.arrays["scores"], axis=1)
    log(f"{checkpoint.name} quantized; {n} images traced through the integer model in "
        f"{time.perf_counter() - t0:.1f} s")
    bar = tqdm(total=n, unit="image", disable=args.quiet or None, desc=PROG)
    cycles_done = [0]

    def progress(sample, cycles, done):
        if done:
            cycles_done[0] += cycles
            bar.update(1)
            bar.set_postfix_str(f"{cycles_done[0]:,} cycles")

    workers = 1 if args.waves else args.workers or min(os.cpu_count() or 1, -(-n // CHUNK))
    client = dask_client(args.scheduler, workers) if args.scheduler or workers > 1 else None
    on = ""
    try:
        if client is not None:
            on = f" on {len(client.scheduler_info()['workers'])} workers"
            log(f"running{on} (Dask, {args.scheduler or 'LocalCluster'})")
        figures = overlay_images(net, pixels, bundle, out, pause=args.pause, seed=args.seed,
                                 pgo=args.pgo, waves=args.waves and Path(args.waves).resolve(),
                                 waves_window=args.waves_window, progress=progress, log=log,
                                 keep_spikes=args.plot is not None, client=client)
    except (RtlMismatch, HarnessError) as exc:
        bar.close()
        raise CosimFailure(str(exc)) from exc
    finally:
        if client is not None:
            client.close()
    bar.close()
    images = figures["images"]
    rtl_pred = np.array([r["prediction"] for r in images])
    _print_accuracy(labels, [("float (PyTorch)", float_pred), ("integer model", int_pred),
                             ("RTL (harness)", rtl_pred)])
    cycles = np.array([r["cycles"] for r in images])
    ops = figures["cycle_report"]["ops"]
    bound = sum(op["bound"] for op in ops)
    moved = np.mean([r["read"] + r["written"] for r in images])
    print(f"\ncycles per image: mean {cycles.mean():,.0f} (min {cycles.min():,}, max "
          f"{cycles.max():,}); bound of these images {bound:,.0f} (mean measured / bound "
          f"{cycles.mean() / bound:.2f}); {moved:,.0f} bytes moved per image")
    speed = figures["simulated_cycles"] / figures["simulation_seconds"]
    print(f"simulation: {figures['simulated_cycles']:,} cycles in "
          f"{figures['simulation_seconds']:.1f} s{on} = {speed:,.0f} cycles per second (pause "
          f"{args.pause}); harness build {figures['binary_build_seconds']:.0f} s "
          f"({'cached' if figures['build_seconds'] < 5 else 'this run'})")
    print(f"every layer's output region and the class scores of all {n} images equal the "
          f"integer model's")
    if args.waves:
        print(f"waveform: {args.waves}")
    if args.plot is not None:
        plot_dir.mkdir(exist_ok=True)
        for path in write_plots(plot_dir, figures, bundle.arrays, n):
            print(f"picture: {path}")
    if args.json:
        atomic_write_text(args.json, json.dumps({
            "images": n, "pause": args.pause, "seed": args.seed,
            "accuracy": {"float": float(np.mean(float_pred == labels)),
                         "integer": float(np.mean(int_pred == labels)),
                         "rtl": float(np.mean(rtl_pred == labels))},
            "cycles_per_image": float(cycles.mean()), "bound_per_image": float(bound),
            "cycles_per_second": speed, **{k: v for k, v in figures.items()
                                           if k not in ("cycle_report", "layout",
                                                        "rtl_spikes")}}, indent=1) + "\n")
    log(f"done in {time.perf_counter() - started:.0f} s; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, cosim_main(PROG, main)))
