"""Build a grid of unit configurations and tabulate resources and Fmax (Markdown + JSON), the
builds running as jobs on a Dask cluster.

    python -m fpga.sweep [--grid small|default] [--out build/fpga/sweep] [--workers N]
                         [--scheduler ADDRESS] [--plot] [--quiet]

Each row is one `fpga.build` run (out of context on ECP5, pin harness on iCE40). `small` is a
quick grid (one configuration per unit, iCE40 UP5K and ECP5 grade 6); `default` adds the
larger configurations and speed grade 8. The builds are submitted to a `distributed` Client: a
LocalCluster of `--workers` processes (default: one per CPU) or the scheduler at `--scheduler`.
Each row is written to its folder (`row.json`) as its build finishes; a build that fails is a
row with its error and does not stop the others; a rerun into the same `--out` reuses every
row already there for the same inputs (a crashed build is run again). Writes `sweep.json`,
`sweep.md` and (with `--plot`, matplotlib) `pareto.png` into `--out`: logic cells against
microseconds per sample (the unit's dense cycle model, the most a sample can take, at its
Fmax), Fmax as colour, the Pareto front of each workload (one unit and shape at several lanes,
targets or grades) drawn. The last three table columns are the analytic estimate
(`fpga.estimate`) and its relative error.
"""

import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from gen import lif as gen_lif
from gen import sae as gen_sae
from gen import sdsa as gen_sdsa
from spec.cli import Parser, fail, run_main, whole_number
from spec.yamlio import atomic_write_png, atomic_write_text

from .build import build
from .pnr import FitError, PnrError
from .yosys import SynthError

__all__ = ["GRIDS", "sweep", "markdown", "pareto_plot", "pareto_front", "unit_cycles", "workload",
           "local_client", "dask_client"]

PROG = "fpga.sweep"
ROW_FILE = "row.json"

_LIF_SMALL = ["--neurons", "256", "--lanes", "4", "--timesteps", "4"]
_LIF_PAPER = ["--neurons", "1024", "--lanes", "16", "--v-bits", "16", "--timesteps", "4"]
_SAE_SMALL = ["--mode", "conv", "--in-ch", "8", "--out-ch", "16", "--height", "8", "--width",
              "8", "--lanes", "4", "--in-lanes", "4"]
_SAE_MID = ["--mode", "conv", "--in-ch", "16", "--out-ch", "64", "--height", "8", "--width", "8",
            "--lanes", "16", "--in-lanes", "16"]
_SDSA_SMALL = ["--channels", "32", "--tokens", "16", "--heads", "2", "--lanes", "4"]


def _lanes(flags, lanes):
    """`flags` with --lanes (and --in-lanes, where given) set to `lanes`."""
    out = list(flags)
    for flag in ("--lanes", "--in-lanes"):
        if flag in out:
            out[out.index(flag) + 1] = str(lanes)
    return out


_SDSA_PAPER = []          # the default: SDSA-3, 8 heads, 256 channels, 196 tokens, 16 lanes

#: grid name -> [(label, design, unit flags, target, speed)]
GRIDS = {
    "small": [
        ("lif 256/4 T4", "lif", _LIF_SMALL, "ice40-up5k", None),
        ("sae conv3x3 8->16 8x8 l4", "sae", _SAE_SMALL, "ice40-up5k", None),
        ("sdsa-3 32ch 16tok l4", "sdsa", _SDSA_SMALL, "ice40-up5k", None),
        ("lif 1024/16 T4", "lif", _LIF_PAPER, "ecp5-25k", 6),
    ],
}
GRIDS["default"] = GRIDS["small"] + [
    ("lif 1024/16 T4", "lif", _LIF_PAPER, "ecp5-25k", 8),
    ("sae conv3x3 16->64 8x8 l16", "sae", _SAE_MID, "ecp5-25k", 6),
    ("sae conv3x3 16->64 8x8 l16", "sae", _SAE_MID, "ecp5-25k", 8),
    ("sdsa-3 256ch 196tok l16", "sdsa", _SDSA_PAPER, "ecp5-25k", 6),
    ("sdsa-3 256ch 196tok l16", "sdsa", _SDSA_PAPER, "ecp5-25k", 8),
    # the same workloads with fewer lanes: size against time, the Pareto front's other points
    ("lif 1024/4 T4", "lif", _lanes(_LIF_PAPER, 4), "ecp5-25k", 6),
    ("lif 1024/8 T4", "lif", _lanes(_LIF_PAPER, 8), "ecp5-25k", 6),
    ("sae conv3x3 16->64 8x8 l4", "sae", _lanes(_SAE_MID, 4), "ecp5-25k", 6),
    ("sae conv3x3 16->64 8x8 l8", "sae", _lanes(_SAE_MID, 8), "ecp5-25k", 6),
    ("sdsa-3 256ch 196tok l8", "sdsa", ["--lanes", "8"], "ecp5-25k", 6),
]


def unit_cycles(design, flags):
    """Cycles per sample of a unit from its generator flags: its dense cycle model (every input
    a spike), the most a sample can take; None for a design without one."""
    if design == "lif":
        return gen_lif.config_from_args(gen_lif.build_parser().parse_args(flags)).cycles(1)
    if design == "sae":
        config, _ = gen_sae.config_and_params(gen_sae.build_parser().parse_args(flags))
        return config.dense_cycles(1)
    if design == "sdsa":
        return gen_sdsa.config_from_args(gen_sdsa.build_parser().parse_args(flags)).dense_cycles(1)
    return None


def _inputs(label, design, flags, target, speed, freq):
    return {"label": label, "design": design, "flags": list(flags), "target": target,
            "speed_grade": speed, "freq": freq}


def build_row(inputs, folder):
    """One sweep job: `fpga.build` of `inputs` into `folder`; returns the row. Never raises: a
    build that cannot fit, place or synthesize is a row with its `error` ("kind": the stage);
    anything else is a row with `error` and kind "crash" (run again by the next sweep)."""
    row = dict(inputs)
    freq = inputs["freq"] if inputs["target"].startswith("ecp5") else 50.0
    t = time.perf_counter()
    try:
        rep = build(inputs["design"], inputs["flags"], inputs["target"], out=folder,
                    speed=inputs["speed_grade"], freq=freq, log=lambda s: None)
        row.update(resources=rep["resources"], fmax_mhz=max(
            (v["achieved_mhz"] for v in rep["fmax"].values()), default=None),
            io=rep["io"], multiplier_cells=rep["multiplier_cells"], harness=rep["harness"],
            estimate=rep["estimate"], cycles=unit_cycles(inputs["design"], inputs["flags"]))
    except (FitError, PnrError, SynthError) as exc:
        row.update(error=str(exc), kind=type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 -- one job's failure must not lose the others
        row.update(error=f"{type(exc).__name__}: {exc}", kind="crash")
    row["seconds"] = round(time.perf_counter() - t, 1)
    return row


def _done(folder, inputs):
    """The row in `folder` from an earlier sweep of the same `inputs` (not a crash), or None."""
    try:
        row = json.loads((folder / ROW_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("kind") == "crash" or \
            {k: row.get(k) for k in inputs} != inputs:
        return None
    return row


def local_client(workers=None, *, processes=True):
    """A `distributed` Client on its own LocalCluster (closed with the client) of `workers`
    (default: one per CPU) worker processes, one thread each, no dashboard."""
    import logging

    from distributed import Client
    return Client(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                  processes=processes, dashboard_address=None, silence_logs=logging.ERROR)


def dask_client(scheduler=None, workers=None):
    """The Client of the scheduler at address `scheduler`, or of a new LocalCluster of
    `workers` (`local_client`); a scheduler that does not answer in 10 s is a usage error."""
    if scheduler is None:
        return local_client(workers)
    from distributed import Client
    try:
        return Client(scheduler, timeout="10s")
    except OSError as exc:
        fail(f"--scheduler {scheduler!r}: {exc}")


def sweep(grid, out, *, freq=150.0, log=print, client=None, job=build_row, bar=False):
    """Run every build of `grid` as a job on `client` (a `distributed` Client; None: run them
    here, one after another); returns the rows in grid order. Each row is written to its
    folder as it finishes; rows already there for the same inputs are reused (`log` says
    which). `job(inputs, folder)` makes a row (a stand-in in tests)."""
    out = Path(out)
    rows, todo = [None] * len(grid), []
    for n, (label, design, flags, target, speed) in enumerate(grid):
        folder = out / f"{n:02d}-{design}-{target}{f'-{speed}' if speed else ''}"
        inputs = _inputs(label, design, flags, target, speed, freq)
        earlier = _done(folder, inputs)
        if earlier is not None:
            rows[n] = earlier
            log(f"[{n + 1}/{len(grid)}] {label} on {target}"
                f"{f' grade {speed}' if speed else ''}: done before, reused")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            todo.append((n, folder, inputs))
    progress = tqdm(total=len(todo), unit="build", desc=PROG, file=sys.stderr,
                    disable=None if bar else True)

    def finished(n, folder, row):
        rows[n] = row
        atomic_write_text(folder / ROW_FILE, json.dumps(row, indent=1) + "\n")
        what = f"error: {row['error']}" if "error" in row else \
            f"{row['resources']['logic_cells']} logic cells, {row['fmax_mhz']:.1f} MHz"
        say = log if progress.disable else (lambda text: progress.write(text, file=sys.stderr))
        grade = f" grade {row['speed_grade']}" if row["speed_grade"] else ""
        say(f"[{n + 1}/{len(grid)}] {row['label']} on {row['target']}{grade}: {what} "
            f"({row['seconds']} s)")
        progress.update()

    with progress:
        if client is None:
            for n, folder, inputs in todo:
                finished(n, folder, job(inputs, folder))
        else:
            from distributed import as_completed
            futures = {client.submit(job, inputs, folder, pure=False): (n, folder, inputs)
                       for n, folder, inputs in todo}
            for future in as_completed(futures):
                n, folder, inputs = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # noqa: BLE001 -- a lost worker, not a build error
                    row = {**inputs, "error": f"{type(exc).__name__}: {exc}", "kind": "crash",
                           "seconds": None}
                finished(n, folder, row)
    return rows


def pareto_front(points):
    """Indices of the points (x, y) that no other point beats in both (smaller is better)."""
    return [i for i, (x, y) in enumerate(points)
            if not any((x2 <= x and y2 <= y) and (x2, y2) != (x, y) for x2, y2 in points)]


def workload(row):
    """What a row computes, whatever its lanes and target: its design and its flags without
    --lanes and --in-lanes."""
    flags, out, skip = row["flags"], [], False
    for f in flags:
        if skip:
            skip = False
        elif f in ("--lanes", "--in-lanes"):
            skip = True
        else:
            out.append(f)
    return row["design"], tuple(out)


def pareto_plot(rows, path):
    """Logic cells against microseconds per sample (a unit's dense cycle model at its Fmax),
    Fmax as colour; the Pareto front of each workload (the same unit and shape at other lanes,
    targets or grades) as a line. Rows with an error or no cycles are left out. Returns the
    path, or None when no row can be drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good = [r for r in rows if "error" not in r and r.get("cycles") and r.get("fmax_mhz")]
    if not good:
        return None
    fig, ax = plt.subplots(figsize=(9, 6))
    markers = {"lif": "o", "sae": "s", "sdsa": "^"}
    fmax = [r["fmax_mhz"] for r in good]
    norm = matplotlib.colors.Normalize(min(fmax), max(fmax))
    groups = {}
    for r in good:
        groups.setdefault(workload(r), []).append(r)
    for key, mine in sorted(groups.items()):
        pts = [(r["resources"]["logic_cells"], r["cycles"] / r["fmax_mhz"]) for r in mine]
        ax.scatter(*zip(*pts, strict=True), c=[r["fmax_mhz"] for r in mine], cmap="viridis",
                   norm=norm, s=60, marker=markers.get(key[0], "D"), edgecolors="k")
        front = sorted(pts[i] for i in pareto_front(pts))
        if len(front) > 1:
            ax.plot(*zip(*front, strict=True), color="0.4", lw=1, zorder=0)
        for r, (x, y) in zip(mine, pts, strict=True):
            grade = f" g{r['speed_grade']}" if r["speed_grade"] else ""
            ax.annotate(f"{r['label']} {r['target']}{grade}", (x, y), fontsize=6,
                        xytext=(5, -3 if r["speed_grade"] == 8 else 4),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("logic cells (log scale)")
    ax.set_ylabel("microseconds per sample at Fmax, dense (log scale)")
    ax.set_title("sweep: size against time per sample (a line: one workload's Pareto front)")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax,
                 label="Fmax (MHz)")
    for design, marker in markers.items():
        ax.scatter([], [], marker=marker, c="w", edgecolors="k", label=design)
    ax.legend(fontsize=8)
    ax.grid(which="both", alpha=0.25)
    fig.tight_layout()
    try:
        atomic_write_png(path, fig)
    finally:
        plt.close(fig)
    return Path(path)


def _estimated(estimate, resource):
    """An estimate with its relative error, e.g. `1147 (+1.0 %)`."""
    error = estimate["error"][resource]
    return f"{estimate[resource]} ({'n/a' if error is None else f'{100 * error:+.1f} %'})"


def markdown(rows):
    head = ("| unit | target | io | LUT4 | logic cells | FF | carry | BRAM | DSP | Fmax MHz | "
            "build s | est. LUT4 | est. FF | est. BRAM |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        target = r["target"] + (f" grade {r['speed_grade']}" if r["speed_grade"] else "")
        if "error" in r:
            lines.append(f"| {r['label']} | {target} | - | {r['error']} ||||||| {r['seconds']} "
                         f"||||")
            continue
        x = r["resources"]
        lines.append(f"| {r['label']} | {target} | {r['io']} | {x['lut4']} | {x['logic_cells']} "
                     f"| {x['ff']} | {x['carry']} | {x['bram']} | {x['dsp']} | "
                     f"{r['fmax_mhz']:.1f} | {r['seconds']} | "
                     + " | ".join(_estimated(r["estimate"], k) for k in ("lut4", "ff", "bram"))
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="small", help="small (default) or default")
    p.add_argument("--out", default="build/fpga/sweep", help="output folder")
    p.add_argument("--freq", type=float, default=150.0, help="ECP5 requested MHz (default 150)")
    p.add_argument("--workers", type=whole_number(1), default=None,
                   help="LocalCluster worker processes (default: one per CPU)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler (tcp://host:8786) instead of a LocalCluster")
    p.add_argument("--plot", action="store_true", help="also draw pareto.png (matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    args = p.parse_args(argv)
    if args.grid not in GRIDS:
        fail(f"unknown grid {args.grid!r} (known: {', '.join(GRIDS)})")
    if args.scheduler is not None and args.workers is not None:
        fail("give --workers (a LocalCluster) or --scheduler, not both")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        fail(f"--out {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda s: None) if args.quiet else \
        (lambda s: print(f"[{PROG}] {s}", file=sys.stderr, flush=True))
    client = dask_client(args.scheduler, args.workers)
    t0 = time.perf_counter()
    with client:
        log(f"{len(GRIDS[args.grid])} builds on {len(client.scheduler_info()['workers'])} "
            f"Dask workers ({args.scheduler or 'LocalCluster'})")
        rows = sweep(GRIDS[args.grid], out, freq=args.freq, log=log, client=client,
                     bar=not args.quiet)
    atomic_write_text(out / "sweep.json", json.dumps(rows, indent=1) + "\n")
    text = markdown(rows)
    atomic_write_text(out / "sweep.md", text)
    print(text, end="")
    if args.plot:
        path = pareto_plot(rows, out / "pareto.png")
        print(f"picture: {path}" if path else "no row to draw (every build failed)")
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
