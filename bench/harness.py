"""Compiled-harness benchmark: simulation speed of the overlay core in the harness against
cocotb on the same image, the harness's build times, and the paper's 15.1 M Meta-SpikeFormer
on a 224 x 224 image through the core's RTL, every layer checked bit for bit against the
integer model. Prints Markdown; `--json FILE` also saves the figures.

    python -m bench.harness [--cocotb] [--spatial N] [--paper] [--timesteps T [T ...]]
                            [--size S] [--no-pgo] [--json FILE]

Without `--paper`: the digits network (T = 1, first test image) on the overlay core in the
plain and the profile-guided harness builds, and with `--cocotb` in cocotb + `AxiRam` too.
`--spatial N` adds the digits network built spatially (one engine per layer, no taps), N test
images in the stream harness (and in cocotb with `--cocotb`). `--paper` adds
the metaspikformer_8_256 (seeded weights, BatchNorm statistics of seeded random images; about
5 to 10 minutes per image at T = 1 on this machine) at `--size` (default 224) for each of
`--timesteps` (default 1).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tqdm import tqdm

from bench.networks import digits_network, paper_network
from fpga.measured import CORE_FMAX_MHZ
from gen.program import CompileError, compile_network, cycle_report, write_program
from gen.verilog import to_verilog
from hw.core import OverlayCore
from hw.network import Network
from sim.cosim import REPO_ROOT, run_cocotb
from sim.harness import build_core, build_seconds, build_stream, core_memory, run_core
from sim.network import NetworkStreams, run_in_harness
from sim.overlay import Memory, check_outputs, check_scores
from sim.verilator import build
from spec.core import CoreConfig
from spec.ports import pack, payload_width
from sw.netbundle import read_network_bundle, trace_arrays, write_network_bundle
from sw.quant import QuantOptions

BUILD_ROOT = REPO_ROOT / "build" / "harness"
#: Fmax of the default core (MHz) on the LFE5U-45F at speed grade 6 (fpga.measured).
FMAX_MHZ = CORE_FMAX_MHZ[("LFE5U-45F", 6)]


def log(text):
    print(f"[bench.harness] {text}", file=sys.stderr, flush=True)


def run_checked(net, pixels, work, core, *, binary=None, pgo=False, pause=0.0, quiet=False,
                label="", seed=1):
    """Trace, compile, build (or take `binary`), run every image in the harness and check
    every layer's output region and the scores. Returns the figures."""
    t0 = time.perf_counter()
    bundle = SimpleNamespace(arrays=trace_arrays(net, pixels))
    traced = time.perf_counter() - t0
    t0 = time.perf_counter()
    image = compile_network(net, core)
    compiled = time.perf_counter() - t0
    report = cycle_report(image, bundle)
    write_program(work / "prog", image, report)
    size = len(image.data) + image.activation_bytes
    memories = [core_memory(image.data, size, core, p) for p in pixels]
    log(f"{label}: traced in {traced:.1f} s, compiled in {compiled:.1f} s ({len(image.ops)} "
        f"operations, {len(image.data):,} bytes of program and weights); model "
        f"{report['total']['model']:,} cycles")
    if binary is None:
        binary = build_core(core, BUILD_ROOT, train=memories[0] if pgo else None, log=log)
    bar = tqdm(total=report["total"]["model"] * len(memories), unit="cycle", unit_scale=True,
               desc=label, disable=quiet or None)
    state = {"base": 0, "last": 0}

    def progress(run, cycles, done):
        bar.update(state["base"] + cycles - state["last"])
        state["last"] = state["base"] + cycles
        if done:
            state["base"] = state["last"]

    t0 = time.perf_counter()
    # a budget well above the cycle model (the paper model's 224 x 224 image runs at 1.5 x it)
    budget = 4 * report["total"]["model"] + 10_000_000
    runs = run_core(binary, memories, layers=len(image.ops), pause=pause, seed=seed,
                    progress=progress, progress_every=1_000_000, budget=budget)
    seconds = time.perf_counter() - t0
    # the harness's own clock: its loop, without starting it and moving the memories
    looped = sum(r.report["seconds"] for r in runs)
    bar.close()
    compared = 0
    for s, run in enumerate(runs):
        assert run.ok, f"{label} image {s}: {run.report}"
        mem = Memory(0, size)
        mem.write(0, run.memory)
        compared += check_outputs(mem, image.layout(), core, bundle.arrays, s)
        check_scores(mem, image.layout(), core, net.timesteps, bundle.arrays["scores"][s], s)
    cycles = [r.report["cycles"] for r in runs]
    waited = sum(r.report["waited"] for r in runs)
    ops = [{"name": op.name, "opcode": op.opcode,
            "measured": int(np.mean([r.report["layer_cycles"][n] for r in runs])),
            "model": row["model"], "bound": row["bound"], "ideal": row["ideal"],
            "read": row["read"], "written": row["written"]}
           for n, (op, row) in enumerate(zip(image.ops, report["ops"], strict=True))]
    return {"label": label, "timesteps": net.timesteps, "images": len(runs),
            "ops": len(image.ops), "tiles": sum(op.tiling.tiles for op in image.ops),
            "program_bytes": len(image.data), "activation_bytes": image.activation_bytes,
            "cycles": cycles, "model": report["total"]["model"],
            "bound": report["total"]["bound"], "bytes": int(np.mean(
                [r.report["read"] + r.report["written"] for r in runs])),
            "values_compared": compared, "per_op": ops,
            "seconds": {"trace": round(traced, 1), "compile": round(compiled, 1),
                        "simulate": round(seconds, 3),
                        "harness": round(looped, 3)},
            "cycles_per_second": round(waited / looped),
            "build_seconds": build_seconds(binary)}


def cocotb_speed(net, pixels, work, core):
    """The same digits image in cocotb + AxiRam (no pauses): (cycles, seconds)."""
    image = compile_network(net, core)
    write_network_bundle(work / "c.zip", net, pixels)
    write_program(work / "c-prog", image, None)
    verilog = work / "overlay_core.v"
    verilog.write_text(to_verilog(OverlayCore(core), "overlay_core"))
    case = {"core": core.to_dict(), "program": str(work / "c-prog"), "bundle": str(work /
            "c.zip"), "layers": len(image.ops), "samples": [0],
            "memory": len(image.data) + image.activation_bytes, "budget": 50_000_000,
            "classes": net.head.fc.out_channels, "timesteps": net.timesteps, "seed": 1,
            "pause": 0.0, "report": str(work / "c-rtl.json")}
    (work / "c-case.json").write_text(json.dumps(case))
    build(verilog, "overlay_core", REPO_ROOT / "build" / "verilator")
    t0 = time.perf_counter()
    run_cocotb(verilog, toplevel="overlay_core", module="tb.cocotb_core",
               testcase="test_images", test_dir=work / "c-cosim",
               env={"SPIKEGEN_CASE": work / "c-case.json"},
               build_root=REPO_ROOT / "build" / "verilator", log_file=work / "c-cosim.log")
    seconds = time.perf_counter() - t0
    cycles = json.loads((work / "c-rtl.json").read_text())[0]["cycles"]
    return cycles, seconds


def spatial_speed(images, work, cocotb):
    """The digits network built spatially: `images` test images in the stream harness (and in
    cocotb); rows for `print_speed`."""
    net, pixels = digits_network(1, images)
    write_network_bundle(work / "spatial", net, pixels)
    _, net, bundle = read_network_bundle(work / "spatial")
    hw = Network(net)
    t0 = time.perf_counter()
    verilog = to_verilog(hw, "network")
    log(f"spatial digits network generated in {time.perf_counter() - t0:.0f} s; building its "
        f"harness (minutes)")
    streams = NetworkStreams(hw, net, bundle)
    in_fields, out_fields = streams.in_config.input_fields(), streams.out_config.output_fields()
    train = ([pack(in_fields, b) for b in streams.input_beats()], payload_width(in_fields),
             payload_width(out_fields), len(streams.output_expected()))
    rows = []
    for variant, options in (("plain build", {}), ("profile-guided build", {"train": train}),
                             ("--threads 2", {"threads": 2})):
        t0 = time.perf_counter()
        binary, taps = build_stream(verilog, "network", BUILD_ROOT, log=log, **options)
        built = time.perf_counter() - t0
        figures = run_in_harness(hw, net, bundle, binary, taps)
        rows.append({"label": f"spatial network, stream harness, {variant} ({images} images)",
                     "cycles": figures["simulated_cycles"], "seconds": figures["seconds"],
                     "build_seconds": build_seconds(binary),
                     "measured_cycles": figures["measured_cycles"], "build_now": round(built, 1)})
    if cocotb:
        (work / "network.v").write_text(verilog)
        report = work / "spatial-cocotb.json"
        build(work / "network.v", "network", REPO_ROOT / "build" / "verilator")
        run_cocotb(work / "network.v", toplevel="network", module="tb.cocotb_network",
                   testcase="test_network_matches_integer_model", test_dir=work / "sp-cosim",
                   env={"SPIKEGEN_BUNDLE": work / "spatial", "SPIKEGEN_TAPS": 0,
                        "SPIKEGEN_REPORT": report},
                   build_root=REPO_ROOT / "build" / "verilator", log_file=work / "sp-cosim.log")
        got = json.loads(report.read_text())
        assert got["measured_cycles"] == rows[0]["measured_cycles"], (got, rows[0])
        rows.append({"label": f"spatial network, cocotb ({images} images)",
                     "cycles": got["simulated_cycles"], "seconds": got["loop_seconds"],
                     "build_seconds": None, "measured_cycles": got["measured_cycles"]})
    return rows


def print_speed(rows):
    print("\n## Simulation speed (digits network, T = 1; the overlay core: first test image, "
          "no memory pauses)\n")
    print("| simulator | cycles | seconds | cycles per second | build s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        build = "" if r.get("build_seconds") is None else f"{r['build_seconds']:.0f}"
        print(f"| {r['label']} | {r['cycles']:,} | {r['seconds']:.2f} | "
              f"{r['cycles'] / r['seconds']:,.0f} | {build} |")


#: the seeded paper model's calibrations, tried in turn until one compiles for the core: the
#: default (fits at 224 x 224), then the reduced-size test's (fits at 32 x 32)
PAPER_CALIBRATIONS = (
    ("the default calibration", {}),
    ("4 calibration images and no margin bit", {"images": 4,
                                                "options": QuantOptions(margin_bits=0)}),
)


def paper_model(timesteps, size, core):
    """The seeded paper model at `size` x `size` with the first of `PAPER_CALIBRATIONS` whose
    program compiles for `core`: (net, pixels, the calibration's name). Raises CompileError
    naming the size and what each calibration's compile said when none does."""
    failed = []
    for name, kwargs in PAPER_CALIBRATIONS:
        net, pixels = paper_network(timesteps, size, **kwargs)
        try:
            compile_network(net, core)
        except CompileError as e:
            failed.append(f"with {name}, {e}")
            continue
        return net, pixels, name
    raise CompileError(f"the seeded metaspikformer_8_256 at {size} x {size}, T = {timesteps}, "
                       f"does not compile for the core: " + "; ".join(failed)
                       + " (224 and 32 compile)")


def print_paper(run):
    t = run["timesteps"]
    cycles = run["cycles"][0]
    print(f"\n## {run['label']} through the core's RTL (compiled harness)\n")
    print(f"- {run['ops']} operations, {run['tiles']} tiles; {run['program_bytes']:,} bytes of "
          f"program and weights, {run['activation_bytes']:,} bytes of activations")
    print(f"- {run['values_compared']:,} values compared: every operation's output region and "
          f"the class scores equal the integer model's")
    print(f"- cycles: **{cycles:,}** measured, model {run['model']:,}, bound {run['bound']:,} "
          f"(measured / bound {cycles / run['bound']:.2f}); {run['bytes']:,} bytes over AXI")
    s = run["seconds"]
    print(f"- wall time: trace {s['trace']} s, compile {s['compile']} s, simulate "
          f"**{s['simulate']:.1f} s** (in the harness's loop {s['harness']:.1f} s: "
          f"{run['cycles_per_second']:,} cycles per second), harness "
          f"build {run['build_seconds']:.0f} s")
    print(f"- at {FMAX_MHZ} MHz (the core's measured Fmax, LFE5U-45F grade 6): "
          f"{FMAX_MHZ * 1e6 / cycles:.3f} images per second at T = {t}, "
          f"{run['bytes'] * FMAX_MHZ * 1e6 / cycles / 1e6:,.0f} MB/s of memory traffic")
    print("\n| operation | kind | measured | model | bound | measured / bound |")
    print("|---|---|---:|---:|---:|---:|")
    for op in run["per_op"]:
        print(f"| {op['name']} | {op['opcode']} | {op['measured']:,} | {op['model']:,} | "
              f"{op['bound']:,} | {op['measured'] / max(1, op['bound']):.2f} |")


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench.harness", description=__doc__.splitlines()[0])
    p.add_argument("--cocotb", action="store_true",
                   help="also time the digits image in cocotb (about a minute)")
    p.add_argument("--spatial", type=int, default=0, metavar="N",
                   help="also the spatial digits network on N test images (minutes to build)")
    p.add_argument("--paper", action="store_true",
                   help="run the paper's 15.1 M model through the RTL (minutes per image)")
    p.add_argument("--timesteps", type=int, nargs="+", default=[1], choices=(1, 2, 4),
                   help="paper model timesteps (default 1)")
    p.add_argument("--size", type=int, default=224, help="paper model input size (default 224)")
    p.add_argument("--no-pgo", dest="pgo", action="store_false",
                   help="paper runs on the plain build instead of the profile-guided one")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    if not 16 <= args.size <= 448 or args.size % 16:
        p.error(f"--size must be a multiple of 16 from 16 to 448, not {args.size}")
    core = CoreConfig()
    figures = {"core": core.to_dict()}
    papers = {}
    if args.paper:                    # first, so that a size that cannot compile fails at once
        for t in args.timesteps:
            log(f"metaspikformer_8_256, {args.size} x {args.size}, T = {t}: seeding and "
                f"quantizing")
            try:
                papers[t] = paper_model(t, args.size, core)
            except CompileError as e:
                print(f"bench.harness: error: {e}", file=sys.stderr)
                return 2
            if papers[t][2] != PAPER_CALIBRATIONS[0][0]:
                log(f"the default calibration does not compile at {args.size} x {args.size}; "
                    f"using {papers[t][2]}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        net, pixels = digits_network(1, 1)
        speed = []
        for pgo in (False, True):
            (work / f"d{pgo}").mkdir()
            label = f"harness ({'profile-guided' if pgo else 'plain'} build)"
            run = run_checked(net, pixels, work / f"d{pgo}", core, pgo=pgo, quiet=True,
                              label=label)
            speed.append({"label": label, "cycles": run["cycles"][0],
                          "seconds": run["seconds"]["harness"],
                          "build_seconds": run["build_seconds"]})
        if args.cocotb:
            log("the same image in cocotb")
            cycles, seconds = cocotb_speed(net, pixels, work, core)
            speed.append({"label": "cocotb + AxiRam", "cycles": cycles, "seconds": seconds,
                          "build_seconds": None})
        if args.spatial:
            speed += spatial_speed(args.spatial, work, args.cocotb)
        figures["speed"] = speed
        print_speed(speed)
        figures["paper"] = []
        if args.paper:
            for t in args.timesteps:
                label = f"metaspikformer_8_256, {args.size} x {args.size}, T = {t}"
                net, pixels, _ = papers.pop(t)
                (work / f"p{t}").mkdir()
                run = run_checked(net, pixels, work / f"p{t}", core, pgo=args.pgo,
                                  quiet=args.quiet, label=label)
                figures["paper"].append(run)
                print_paper(run)
                sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
