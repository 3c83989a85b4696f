"""Reset fault campaign on the overlay core's RTL (the compiled harness): the digits network,
a reset asserted at `--points` random cycles of an image's run (a hard reset of the core and
the bus, or `CONTROL.soft_reset` and a wait for the core to be idle and the bus quiet); after
each, the same image run again must be bit-exact in every layer's output and the class scores,
and nothing may hang. Prints, per kind, the points, how many recovered, how many reruns were
bit-exact, and the recovery cycles. Random pauses on all five AXI channels.

    python -m bench.reset_campaign [--points 100] [--kinds hard soft] [--pause 0.2]
                                   [--seed 1] [--image 0] [--json FILE]
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.networks import digits_network
from gen.program import compile_network
from sim.cosim import REPO_ROOT
from sim.harness import build_core, core_memory, run_core
from sim.overlay import Divergence, Memory, check_outputs, check_scores
from spec.cli import Parser, check_output_path, fail, run_main
from spec.core import CoreConfig
from sw.netbundle import trace_arrays

#: runs per harness process (one process starts from reset; its runs follow each other)
CHUNK = 10


def campaign(kind, points, *, binary, image, memory, arrays, size, core, pause, seed, bar):
    """Rows per point: (cycle, recovered, bit-exact, recovery cycles, what went wrong)."""
    rows = []
    for first in range(0, len(points), CHUNK):
        chunk = points[first:first + CHUNK]
        runs = run_core(binary, [memory] * len(chunk), layers=len(image.ops), pause=pause,
                        seed=seed + first, budget=20_000_000,
                        interrupts=[(p, kind) for p in chunk])
        for n, point in enumerate(chunk):
            if n >= len(runs):
                rows.append((point, False, False, None, "not run: an earlier run failed"))
                continue
            run = runs[n]
            intr = run.report.get("interrupt", {})
            recovered = bool(intr.get("recovered")) and run.ok
            exact, why = False, "" if recovered else f"ended {run.report.get('ended')}"
            if recovered:
                mem = Memory(0, size)
                mem.write(0, run.memory)
                try:
                    check_outputs(mem, image.layout(), core, arrays, 0)
                    check_scores(mem, image.layout(), core, 1, arrays["scores"][0], 0)
                    exact = True
                except Divergence as exc:
                    why = str(exc)
            rows.append((point, recovered, exact, intr.get("recovery_cycles"), why))
        bar.update(len(chunk))
    return rows


def main(argv=None):
    p = Parser(prog="bench.reset_campaign", description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=100, help="reset points per kind (100)")
    p.add_argument("--kinds", nargs="+", default=["hard", "soft"], choices=["hard", "soft"])
    p.add_argument("--pause", type=float, default=0.2, help="AXI pause chance (0.2)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--image", type=int, default=0, help="test image (0)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    if args.points < 1:
        fail(f"--points must be at least 1, not {args.points}")
    if not 0 <= args.pause < 1:
        fail(f"--pause must be at least 0 and below 1, not {args.pause}")
    if not 0 <= args.image < 360:
        fail(f"--image must be 0 to 359 (the test set), not {args.image}")
    check_output_path(args.json)
    core = CoreConfig()
    net, pixels = digits_network(1, args.image + 1)
    image = compile_network(net, core)
    size = len(image.data) + image.activation_bytes
    memory = core_memory(image.data, size, core, pixels[args.image])
    arrays = trace_arrays(net, pixels[args.image:args.image + 1])
    binary = build_core(core, REPO_ROOT / "build" / "harness")
    [plain] = run_core(binary, [memory], layers=len(image.ops))
    cycles = plain.report["cycles"]
    rng = np.random.default_rng(args.seed)
    figures = {"image_cycles": cycles, "pause": args.pause, "kinds": {}}
    print(f"digits network, image {args.image}: {cycles:,} cycles a run; {args.points} reset "
          f"points per kind, uniform over the run; AXI pauses {args.pause}")
    for kind in args.kinds:
        points = sorted(int(x) for x in rng.integers(1, cycles, size=args.points))
        t0 = time.perf_counter()
        with tqdm(total=len(points), desc=f"{kind} resets", unit="point", file=sys.stderr,
                  disable=None) as bar:
            rows = campaign(kind, points, binary=binary, image=image, memory=memory,
                            arrays=arrays, size=size, core=core, pause=args.pause,
                            seed=args.seed, bar=bar)
        seconds = time.perf_counter() - t0
        recovered = sum(r[1] for r in rows)
        exact = sum(r[2] for r in rows)
        rec = [r[3] for r in rows if r[3] is not None]
        failures = [(r[0], r[4]) for r in rows if not (r[1] and r[2])]
        figures["kinds"][kind] = {"points": len(rows), "recovered": recovered,
                                  "bit_exact": exact, "recovery_cycles": {
                                      "min": min(rec), "median": float(np.median(rec)),
                                      "max": max(rec)} if rec else None,
                                  "failures": failures[:10], "seconds": round(seconds, 1)}
        print(f"{kind:5s}: {len(rows)} points, {recovered} recovered, {exact} reruns bit-exact"
              f"; recovery {min(rec) if rec else '-'} .. {max(rec) if rec else '-'} cycles "
              f"(median {np.median(rec) if rec else '-'}); {seconds:.0f} s")
        for point, why in failures[:5]:
            print(f"   reset at cycle {point:,}: {why}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    bad = sum(f["points"] - f["bit_exact"] for f in figures["kinds"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_main("bench.reset_campaign", main))
