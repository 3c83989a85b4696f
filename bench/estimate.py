"""Resource-estimate benchmark: the analytic estimate (`fpga.estimate`) against Yosys synthesis
of the sweep grid's configurations. Prints a Markdown table and the largest and mean absolute
relative error per resource; `--out FILE` also saves the rows as JSON.

    python -m bench.estimate [--grid default|small] [--jobs N] [--out FILE]
    python -m bench.estimate --calibrate [--jobs N] [--out FILE]

Synthesis only (`synth_ecp5 -noiopad` out of context on ECP5, `synth_ice40` inside
`fpga.build`'s pin harness on iCE40, as `fpga.sweep` builds them), no place-and-route: about
10 to 60 s per configuration. Every configuration is synthesized once (the sweep's two ECP5
speed grades share it).

`--calibrate` synthesizes `CALIBRATION_SET` instead, a set of configurations of its own (none is
a sweep configuration: lanes, widths, sizes, modes, variants, timesteps, reset modes and
per-channel thresholds varied around them; at least three per design and family), fits the
four constants per design and family (`fpga.estimate.calibrate`), and prints them as the
`CALIBRATION` literal of `fpga/estimate.py` with the calibration set's errors under the fitted
constants. The figures the default run prints are then errors on configurations the constants
were not fitted on.

The synthesized figures are Yosys's; `report.json` takes ECP5 flip-flops and block RAMs from
nextpnr's packed design instead, and on the sweep's ECP5 configurations the two agree.
"""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fpga.build import generate, harness_verilog
from fpga.estimate import (
    RESOURCES,
    apply_calibration,
    calibrate,
    estimate,
    relative_errors,
    synthesized,
    terms,
)
from fpga.pnr import TARGETS
from fpga.sweep import GRIDS
from fpga.yosys import synth_cells

PROG = "bench.estimate"

_CONV = ["--mode", "conv"]
_LINEAR = ["--mode", "linear", "--kernel", "1", "--padding", "0"]
_DEPTHWISE = ["--mode", "depthwise"]
#: 256 per-channel thresholds, 1 .. 7 in steps of 0.5, in no lane pattern
_PER_CHANNEL = ",".join(str(1 + (c * 7 % 13) / 2) for c in range(256))

#: (design, family, unit flags): the configurations the constants are fitted on.
CALIBRATION_SET = [
    ("lif", "ecp5", ["--neurons", "512", "--lanes", "8", "--timesteps", "4"]),
    ("lif", "ecp5", ["--neurons", "2048", "--lanes", "32", "--timesteps", "2", "--v-bits", "20"]),
    ("lif", "ecp5", ["--neurons", "256", "--lanes", "16", "--timesteps", "1"]),
    ("lif", "ecp5", ["--neurons", "4096", "--lanes", "8", "--timesteps", "4", "--v-bits", "12",
                     "--in-bits", "6", "--reset", "soft"]),
    ("lif", "ecp5", ["--neurons", "640", "--lanes", "16", "--timesteps", "4", "--channels", "4",
                     "--v-th", "1,2,3,4"]),
    ("lif", "ecp5", ["--neurons", "24", "--lanes", "4", "--timesteps", "4"]),
    ("lif", "ecp5", ["--neurons", "512", "--lanes", "16", "--timesteps", "4",
                     "--expose-membrane", "--no-decay-input"]),
    ("lif", "ecp5", ["--neurons", "2048", "--lanes", "16", "--timesteps", "2", "--channels",
                     "256", "--v-th", _PER_CHANNEL]),
    ("lif", "ice40", ["--neurons", "128", "--lanes", "8", "--timesteps", "2"]),
    ("lif", "ice40", ["--neurons", "512", "--lanes", "4", "--timesteps", "4", "--v-bits", "12"]),
    ("lif", "ice40", ["--neurons", "512", "--lanes", "8", "--timesteps", "4"]),
    ("lif", "ice40", ["--neurons", "64", "--lanes", "4", "--timesteps", "1"]),
    ("lif", "ice40", ["--neurons", "256", "--lanes", "4", "--timesteps", "4", "--reset", "soft",
                      "--v-bits", "14"]),
    ("sae", "ecp5", _CONV + ["--in-ch", "16", "--out-ch", "32", "--height", "8", "--width", "8",
                             "--lanes", "8", "--in-lanes", "8"]),
    ("sae", "ecp5", _CONV + ["--in-ch", "32", "--out-ch", "64", "--height", "16", "--width",
                             "16", "--stride", "2", "--lanes", "16", "--in-lanes", "16"]),
    ("sae", "ecp5", _CONV + ["--in-ch", "8", "--out-ch", "32", "--height", "12", "--width",
                             "12", "--lanes", "8", "--in-lanes", "4", "--acc-bits", "20"]),
    ("sae", "ecp5", _CONV + ["--in-ch", "16", "--out-ch", "64", "--height", "16", "--width",
                             "16", "--lanes", "16", "--in-lanes", "16"]),
    ("sae", "ecp5", _CONV + ["--in-ch", "32", "--out-ch", "64", "--height", "8", "--width", "8",
                             "--lanes", "16", "--in-lanes", "16"]),
    ("sae", "ecp5", _CONV + ["--in-ch", "16", "--out-ch", "64", "--height", "8", "--width", "8",
                             "--stride", "2", "--lanes", "16", "--in-lanes", "16"]),
    ("sae", "ecp5", _LINEAR + ["--in-ch", "64", "--out-ch", "64", "--height", "8", "--width",
                               "8", "--lanes", "16", "--in-lanes", "16"]),
    ("sae", "ecp5", _LINEAR + ["--in-ch", "32", "--out-ch", "128", "--height", "4", "--width",
                               "4", "--lanes", "32", "--in-lanes", "32"]),
    ("sae", "ecp5", _LINEAR + ["--in-ch", "64", "--out-ch", "64", "--height", "8", "--width",
                               "8", "--lanes", "8", "--in-lanes", "16", "--no-bias"]),
    ("sae", "ecp5", _DEPTHWISE + ["--in-ch", "32", "--out-ch", "32", "--height", "8", "--width",
                                  "8", "--lanes", "16", "--in-lanes", "16"]),
    ("sae", "ecp5", _DEPTHWISE + ["--in-ch", "64", "--out-ch", "64", "--height", "14",
                                  "--width", "14", "--kernel", "7", "--padding", "3", "--lanes",
                                  "16", "--in-lanes", "16"]),
    ("sae", "ecp5", _DEPTHWISE + ["--in-ch", "16", "--out-ch", "16", "--height", "8", "--width",
                                  "8", "--lanes", "4", "--in-lanes", "4"]),
    ("sae", "ecp5", _DEPTHWISE + ["--in-ch", "32", "--out-ch", "32", "--height", "8", "--width",
                                  "8", "--lanes", "8", "--in-lanes", "8"]),
    ("sae", "ecp5", _DEPTHWISE + ["--in-ch", "32", "--out-ch", "32", "--height", "8", "--width",
                                  "8", "--kernel", "5", "--padding", "2", "--lanes", "16",
                                  "--in-lanes", "16"]),
    ("sae", "ice40", _CONV + ["--in-ch", "4", "--out-ch", "8", "--height", "8", "--width", "8",
                              "--lanes", "8", "--in-lanes", "4"]),
    ("sae", "ice40", _CONV + ["--in-ch", "8", "--out-ch", "16", "--height", "8", "--width", "8",
                              "--lanes", "8", "--in-lanes", "8"]),
    ("sae", "ice40", _LINEAR + ["--in-ch", "16", "--out-ch", "16", "--height", "4", "--width",
                                "4", "--lanes", "4", "--in-lanes", "8"]),
    ("sae", "ice40", _DEPTHWISE + ["--in-ch", "8", "--out-ch", "8", "--height", "8", "--width",
                                   "8", "--lanes", "4", "--in-lanes", "4"]),
    ("sdsa", "ecp5", ["--channels", "64", "--tokens", "49", "--heads", "4", "--lanes", "8"]),
    ("sdsa", "ecp5", ["--channels", "128", "--tokens", "64", "--heads", "4", "--lanes", "16"]),
    ("sdsa", "ecp5", ["--channels", "256", "--tokens", "64", "--heads", "8", "--lanes", "16",
                      "--timesteps", "2"]),
    ("sdsa", "ecp5", ["--channels", "128", "--tokens", "196", "--heads", "2", "--lanes", "32"]),
    ("sdsa", "ecp5", ["--variant", "1", "--channels", "256", "--tokens", "196", "--lanes", "16"]),
    ("sdsa", "ecp5", ["--variant", "2", "--channels", "64", "--tokens", "16", "--heads", "4",
                      "--lanes", "8"]),
    ("sdsa", "ice40", ["--channels", "32", "--tokens", "16", "--heads", "1", "--lanes", "8"]),
    ("sdsa", "ice40", ["--channels", "64", "--tokens", "16", "--heads", "4", "--lanes", "8"]),
    ("sdsa", "ice40", ["--variant", "1", "--channels", "32", "--tokens", "16", "--lanes", "4"]),
    ("sdsa", "ice40", ["--variant", "2", "--channels", "32", "--tokens", "16", "--lanes", "4"]),
]


def _flags_text(flags):
    """The flags as one line, a long comma-separated list shortened to its count."""
    return " ".join(f"({f.count(',') + 1} values)" if f.count(",") > 3 else f for f in flags)


def _io(family):
    return "ooc" if family == "ecp5" else "harness"


def synthesize(design, flags, family):
    """(synthesized resources, configuration dict, seconds) of one unit, as `fpga.sweep`
    builds it on `family`, from Yosys alone."""
    t0 = time.perf_counter()
    verilog, config = generate(design, flags, design)
    top = design
    if _io(family) == "harness":
        verilog, _ = harness_verilog(verilog, design)
        top = "harness"
    cells = synth_cells(verilog, top, family)
    return synthesized(cells, family), config, round(time.perf_counter() - t0, 1)


def synthesize_all(jobs, todo, log):
    """{(design, flags tuple, family): synthesize(...)} of every distinct (design, flags,
    family) of `todo`."""
    keys = list(dict.fromkeys((d, tuple(f), fam) for d, f, fam in todo))

    def one(n_key):
        n, (design, flags, family) = n_key
        result = synthesize(design, list(flags), family)
        log(f"[{n + 1}/{len(keys)}] {design} {_flags_text(flags) or '(defaults)'} on {family}: "
            f"{result[2]} s")
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip(keys, pool.map(one, enumerate(keys)), strict=True))


def _pct(error):
    return "n/a" if error is None else f"{100 * error:+.1f} %"


def table(rows):
    """Markdown: per row the estimate, the synthesized count and the relative error of each
    resource."""
    head = "| unit | target | " + " | ".join(
        f"{r} est | {r} syn | {r} err" for r in ("LUT4", "FF", "BRAM")) + " |"
    lines = [head, "|---|---|" + "---:|" * 9]
    for row in rows:
        cells = []
        for r in RESOURCES:
            cells += [str(row["estimate"][r]), str(row["synthesized"][r]),
                      _pct(row["error"][r])]
        lines.append(f"| {row['label']} | {row['target']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(rows):
    """{resource: {"max": largest |error|, "mean": mean |error|, "undefined": rows where
    synthesis has none and the estimate some}} over `rows`."""
    out = {}
    for r in RESOURCES:
        errors = [abs(row["error"][r]) for row in rows if row["error"][r] is not None]
        out[r] = {"max": max(errors, default=0.0),
                  "mean": sum(errors) / len(errors) if errors else 0.0,
                  "undefined": len(rows) - len(errors)}
    return out


def summary_text(stats):
    return "\n".join(f"{r}: max |error| {100 * s['max']:.1f} %, mean |error| "
                     f"{100 * s['mean']:.1f} %"
                     + (f" ({s['undefined']} rows with no relative error: an estimate where "
                        f"synthesis has none)" if s["undefined"] else "")
                     for r, s in stats.items()) + "\n"


def evaluate(grid, jobs, log):
    """Rows of estimate against synthesis for the sweep grid `grid` (one per grid entry)."""
    entries = [(design, flags, TARGETS[target].family)
               for _, design, flags, target, _ in GRIDS[grid]]
    results = synthesize_all(jobs, entries, log)
    rows = []
    for label, design, flags, target, speed in GRIDS[grid]:
        family = TARGETS[target].family
        measured, config, seconds = results[design, tuple(flags), family]
        est = estimate(design, config, family, io=_io(family))
        rows.append({"label": label, "design": design, "flags": flags,
                     "target": target + (f" grade {speed}" if speed else ""), "io": _io(family),
                     "estimate": est, "synthesized": measured,
                     "error": relative_errors(est, measured), "synth_s": seconds})
    return rows


def calibration(jobs, log):
    """(fitted constants by (design, family), rows of the calibration set under them)."""
    results = synthesize_all(jobs, [(d, f, fam) for d, fam, f in CALIBRATION_SET], log)
    samples = {}
    for design, family, flags in CALIBRATION_SET:
        measured, config, _ = results[design, tuple(flags), family]
        t = terms(design, config, family, io=_io(family))
        samples.setdefault((design, family), []).append((flags, t, measured))
    constants, rows = {}, []
    for key, group in samples.items():
        constants[key] = calibrate([(t, m) for _, t, m in group])
        for flags, t, measured in group:
            est = apply_calibration(t, constants[key])
            rows.append({"label": f"{key[0]} {_flags_text(flags)}", "design": key[0],
                         "flags": flags, "target": key[1], "io": _io(key[1]),
                         "estimate": est, "synthesized": measured,
                         "error": relative_errors(est, measured)})
    return constants, rows


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="default", choices=sorted(GRIDS),
                   help="the sweep grid to evaluate on (default: default)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the constants on the calibration set instead")
    p.add_argument("--jobs", type=int, default=1, help="parallel Yosys runs (default 1)")
    p.add_argument("--out", help="also write the rows (and summary) here as JSON")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, not {args.jobs}")

    def log(text):
        print(f"[{PROG}] {text}", file=sys.stderr, flush=True)

    result = {}
    if args.calibrate:
        constants, rows = calibration(args.jobs, log)
        print("CALIBRATION = {")
        for (design, family), c in sorted(constants.items()):
            print(f'    ("{design}", "{family}"): {c},')
        print("}\n")
        result["calibration"] = {f"{d},{f}": c for (d, f), c in sorted(constants.items())}
    else:
        rows = evaluate(args.grid, args.jobs, log)
    stats = summary(rows)
    print(table(rows))
    print(summary_text(stats), end="")
    if args.out:
        result.update(rows=rows, summary=stats)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
