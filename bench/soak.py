"""Soak benchmark: designs under random stalls on every stream until at least `--beats` output
beats (default 10^6), every beat compared with the integer model; prints beats, mismatches
(0, or 1 with the first divergence named: the checkers stop there), stall rates, cycles and
cycles per second. Runs in the compiled harnesses (`sim.harness`):

- `lif`: a LIF array (256 neurons, 16 lanes, T = 4, per-channel thresholds, membranes out)
  in the stream harness, random inputs, pauses on its input and its output;
- `core`: the digits network on the overlay core, images back to back, pauses on all five AXI
  channels, every layer's output region and the class scores checked (an output beat is an
  AXI write beat).

    python -m bench.soak [--designs lif core] [--beats 1000000] [--pause 0.3] [--seed 1]
                         [--json FILE]
"""

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.networks import digits_network
from gen.verilog import to_verilog
from hw.lif import LIFArray
from sim.cosim import REPO_ROOT
from sim.harness import build_stream, run_stream
from sim.lif import lif_expected_beats, lif_input_beats
from sim.run import overlay_images
from sim.scoreboard import Scoreboard, ScoreboardMismatch
from spec.cli import Parser, check_output_path, fail, run_main
from spec.core import CoreConfig
from spec.lif import LIFConfig, LIFTraces
from spec.ports import pack, payload_width, unpack
from sw.lif_int import lif_int
from sw.netbundle import trace_arrays

BUILD = REPO_ROOT / "build" / "harness"


def soak_lif(goal, pause, seed):
    cfg = LIFConfig(neurons=256, lanes=16, channels=16, timesteps=4, v_bits=16, in_bits=8,
                    frac_bits=4, v_th=tuple(0.5 + 0.25 * (c % 8) for c in range(16)),
                    expose_membrane=True)
    per_sample = cfg.beats_per_step * cfg.timesteps
    samples = math.ceil(goal / per_sample)
    rng = np.random.default_rng(seed)
    inputs = rng.integers(-8, 24, size=(samples, cfg.timesteps, cfg.neurons))
    spikes, membranes = lif_int(cfg, inputs)
    traces = LIFTraces(inputs=inputs, spikes=spikes, membranes=membranes)
    in_fields, out_fields = cfg.input_fields(), cfg.output_fields()
    beats = [pack(in_fields, b) for b in lif_input_beats(cfg, inputs)]
    expected = lif_expected_beats(cfg, traces)
    binary, _ = build_stream(to_verilog(LIFArray(cfg), "lif"), "lif", BUILD)
    t0 = time.perf_counter()
    report, out, _ = run_stream(binary, beats, payload_width(in_fields),
                                payload_width(out_fields), expect=len(expected),
                                in_pause=pause, out_pause=pause, seed=seed)
    seconds = time.perf_counter() - t0
    board = Scoreboard("lif", expected)
    mismatch = ""
    try:
        for cycle, word in out:
            board.check(unpack(out_fields, word), cycle)
        board.check_done()
    except ScoreboardMismatch as exc:       # the first divergence, named
        mismatch = str(exc)
    cycles = report["cycles"]
    return {"design": "lif", "output_beats": len(out), "expected_beats": len(expected),
            "mismatches": int(bool(mismatch)), "first_mismatch": mismatch,
            "stall_rate": {"input": pause, "output": pause},
            "cycles": int(cycles), "seconds": round(seconds, 1),
            "cycles_per_second": round(cycles / seconds) if seconds else None}


def soak_core(goal, pause, seed):
    core = CoreConfig()
    beat_bytes = core.axi_data_bits // 8
    net, pixels = digits_network(1, 360)       # quantized once; the images it needs later
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        # one image, to learn the beats an image writes (the same for every image)
        probe = overlay_images(net, pixels[:1],
                               SimpleNamespace(arrays=trace_arrays(net, pixels[:1])),
                               Path(work), core=core, build_root=BUILD)
        per_image = probe["images"][0]["written"] // beat_bytes
        images = min(360, math.ceil(goal / per_image))
        pixels = pixels[:images]
        arrays = trace_arrays(net, pixels)
        t0 = time.perf_counter()
        run = overlay_images(net, pixels, SimpleNamespace(arrays=arrays), Path(work),
                             core=core, build_root=BUILD, pause=pause, seed=seed)
    seconds = time.perf_counter() - t0
    written = sum(r["written"] for r in run["images"]) // beat_bytes
    return {"design": "core (digits network)", "images": images, "output_beats": int(written),
            "mismatches": 0, "values_compared": int(sum(r["compared"] for r in run["images"])),
            "stall_rate": {"every AXI channel": pause},
            "cycles": int(run["simulated_cycles"]), "seconds": round(seconds, 1),
            "cycles_per_second": round(run["simulated_cycles"] / run["simulation_seconds"])}


def main(argv=None):
    p = Parser(prog="bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--designs", nargs="+", default=["lif", "core"], choices=["lif", "core"])
    p.add_argument("--beats", type=int, default=1_000_000)
    p.add_argument("--pause", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.beats < 1:
        fail(f"--beats must be at least 1, not {args.beats}")
    if not 0 <= args.pause < 1:
        fail(f"--pause must be at least 0 and below 1, not {args.pause}")
    check_output_path(args.json)
    rows = []
    for design in args.designs:
        row = (soak_lif if design == "lif" else soak_core)(args.beats, args.pause, args.seed)
        rows.append(row)
        print(f"{row['design']}: {row['output_beats']:,} output beats, {row['mismatches']} "
              f"mismatches, stalls {row['stall_rate']}, {row['cycles']:,} cycles in "
              f"{row['seconds']} s ({row['cycles_per_second']:,} cycles/s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if any(r["mismatches"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(run_main("bench.soak", main))
