"""Build a grid of unit configurations and tabulate resources and Fmax (Markdown + JSON).

    python -m fpga.sweep [--grid small|default] [--out build/fpga/sweep] [--quiet]

Each row is one `fpga.build` run (out of context on ECP5, pin harness on iCE40). `small` is a
quick grid (one configuration per unit, iCE40 UP5K and ECP5 grade 6); `default` adds the
larger configurations and speed grade 8. Writes `sweep.json` and `sweep.md` into `--out`; the
last three columns are the analytic estimate (`fpga.estimate`) and its relative error.
"""

import json
import sys
import time
from pathlib import Path

from spec.cli import Parser, fail, run_main
from spec.yamlio import atomic_write_text

from .build import build
from .pnr import FitError, PnrError
from .yosys import SynthError

__all__ = ["GRIDS", "sweep", "markdown"]

PROG = "fpga.sweep"

_LIF_SMALL = ["--neurons", "256", "--lanes", "4", "--timesteps", "4"]
_LIF_PAPER = ["--neurons", "1024", "--lanes", "16", "--v-bits", "16", "--timesteps", "4"]
_SAE_SMALL = ["--mode", "conv", "--in-ch", "8", "--out-ch", "16", "--height", "8", "--width",
              "8", "--lanes", "4", "--in-lanes", "4"]
_SAE_MID = ["--mode", "conv", "--in-ch", "16", "--out-ch", "64", "--height", "8", "--width", "8",
            "--lanes", "16", "--in-lanes", "16"]
_SDSA_SMALL = ["--channels", "32", "--tokens", "16", "--heads", "2", "--lanes", "4"]
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
]


def sweep(grid, out, *, freq=150.0, log=print):
    """Run every build of `grid`; returns the rows (a failed fit is a row with its error)."""
    rows = []
    for n, (label, design, flags, target, speed) in enumerate(grid):
        log(f"[{n + 1}/{len(grid)}] {label} on {target}{f' grade {speed}' if speed else ''}")
        folder = Path(out) / f"{n:02d}-{design}-{target}{f'-{speed}' if speed else ''}"
        row = {"label": label, "design": design, "flags": flags, "target": target,
               "speed_grade": speed}
        t = time.perf_counter()
        try:
            rep = build(design, flags, target, out=folder, speed=speed,
                        freq=freq if target.startswith("ecp5") else 50.0, log=lambda s: None)
            row.update(resources=rep["resources"], fmax_mhz=max(
                (v["achieved_mhz"] for v in rep["fmax"].values()), default=None),
                io=rep["io"], multiplier_cells=rep["multiplier_cells"], harness=rep["harness"],
                estimate=rep["estimate"])
        except (FitError, PnrError, SynthError) as exc:
            row["error"] = str(exc)
        row["seconds"] = round(time.perf_counter() - t, 1)
        rows.append(row)
    return rows


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
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.grid not in GRIDS:
        fail(f"unknown grid {args.grid!r} (known: {', '.join(GRIDS)})")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        fail(f"--out {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    rows = sweep(GRIDS[args.grid], out, freq=args.freq,
                 log=(lambda s: None) if args.quiet else
                 (lambda s: print(f"[{PROG}] {s}", file=sys.stderr, flush=True)))
    atomic_write_text(out / "sweep.json", json.dumps(rows, indent=1) + "\n")
    text = markdown(rows)
    atomic_write_text(out / "sweep.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
