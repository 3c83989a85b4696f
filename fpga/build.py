"""Build a generated unit with the open FPGA flow and write a machine-readable report.

    python -m fpga.build --design {lif,sae,sdsa,block,network,core}
                         --target {ecp5-25k,ecp5-45k,ecp5-85k,ice40-up5k}
                         [--speed 6|7|8] [--freq MHZ] [--io ooc|harness] [--bitstream]
                         [--out DIR] [--seed N] [--quiet] [unit flags | --config FILE | --bundle B]

Unit flags are those of `python -m gen.<design>` (e.g. `--neurons 1024 --lanes 16`; for a block
`--kind conv --channels 32`, for a network `--bundle DIR`, for the overlay core `--config
core.yaml` or `--set KEY=VALUE`). Steps:
generate the Verilog, synthesize with Yosys (`synth_ecp5` / `synth_ice40`), place and route
with nextpnr, optionally pack a bitstream, and write `report.json` into `--out` (default
`build/fpga/<design>-<target>`): resources (LUTs, FFs, block RAM, DSP, carry cells, and every
cell type Yosys and nextpnr counted), the analytic estimate of LUT4s, FFs and block RAMs from
the configuration (`fpga.estimate`) with its relative error against those resources, Fmax per
clock and whether it met `--freq`, the multiplier check, tool versions and run times. Blocks
and networks are composed of units, some of which the estimate does not model (shortcut,
token sum, fork, lane adapters, multi-bit engines): their report has no estimate (`null`) and
lists each unit's configuration instead; so does an accumulate engine on multi-bit inputs.

I/O: a unit's stream ports are far wider than any package's pins. `--io ooc` (the default on
ECP5) places it out of context (`synth_ecp5 -noiopad`, `nextpnr-ecp5 --out-of-context`), which
measures the unit alone. iCE40's nextpnr has no such mode, so there (and with `--io harness`
on ECP5, needed for a bitstream) the unit is wrapped in a harness: its inputs come from a shift
register fed by one pin, its outputs are captured by a loadable shift register read out on one
pin. The harness's own flip-flops and LUTs are in the report (`harness`).
"""

import json
import re
import sys
import time
from pathlib import Path

from gen import block as gen_block
from gen import core as gen_core
from gen import lif as gen_lif
from gen import network as gen_network
from gen import sae as gen_sae
from gen import sdsa as gen_sdsa
from gen.verilog import to_verilog
from hw.block import layer_component, unit_config
from hw.lif import LIFArray
from hw.network import Network
from hw.sae import SpikeAccumulator
from hw.sdsa import sdsa_unit
from spec.cli import Parser, fail, run_main
from spec.errors import ConfigError
from spec.yamlio import atomic_write_text

from .estimate import estimate, modelled, relative_errors
from .pnr import TARGETS, PnrError, find_tool, run_nextpnr, run_pack, tool_version
from .yosys import MULTIPLIER_CELLS, SynthError, find_yosys, run_yosys

__all__ = ["DESIGNS", "config_from_argv", "component_for", "design_component", "generate",
           "build_config", "build_component", "build_verilog", "top_ports", "harness_verilog",
           "synthesize", "resources", "build"]

PROG = "fpga.build"
DESIGNS = ("lif", "sae", "sdsa", "block", "network", "core")
#: Flags of the generators that fpga.build sets itself.
_RESERVED = ("-o", "--out", "--name", "--report")


def config_from_argv(design, unit_argv):
    """The configuration object of `design` from its generator's flags (the command line's
    way in; `component_for` takes the objects): a `LIFConfig`; `(SAEConfig, SAEParams or
    None)`; an `SDSAConfig`; `(layer, widths, timesteps)` of a block; the integer network
    (`spec.network.IntNetwork`); a `CoreConfig`."""
    if design == "lif":
        return gen_lif.config_from_args(gen_lif.build_parser().parse_args(unit_argv))
    if design == "sae":
        return gen_sae.config_and_params(gen_sae.build_parser().parse_args(unit_argv))
    if design == "sdsa":
        return gen_sdsa.config_from_args(gen_sdsa.build_parser().parse_args(unit_argv))
    if design == "block":
        return gen_block.layer_from_args(gen_block.build_parser().parse_args(unit_argv))
    if design == "network":
        args = gen_network.build_parser().parse_args(unit_argv)
        if args.taps:
            fail("--taps adds simulation ports; fpga.build builds the network without them")
        return gen_network.net_from_args(args)
    if design == "core":
        try:
            return gen_core.config_from_args(gen_core.build_parser().parse_args(unit_argv))
        except ConfigError as exc:
            fail(str(exc))
    fail(f"unknown design {design!r} (known: {', '.join(DESIGNS)})")


def component_for(design, config):
    """(Amaranth component, configuration dict for the report) of `design` from its
    configuration object (as `config_from_argv` makes them)."""
    if design == "lif":
        return LIFArray(config), config.to_dict()
    if design == "sae":
        config, params = config if isinstance(config, tuple) else (config, None)
        return SpikeAccumulator(config, params), config.to_dict()
    if design == "sdsa":
        return sdsa_unit(config), config.to_dict()
    if design == "block":
        layer, widths, timesteps = config
        try:
            component = layer_component(layer, widths, timesteps)
        except ValueError as exc:
            fail(str(exc))
        return component, {
            "layer": layer.name, "kind": type(layer).__name__, "timesteps": timesteps,
            "units": _unit_configs(component)}
    if design == "network":
        try:
            component = Network(config)
        except ValueError as exc:
            fail(str(exc))
        return component, {
            "timesteps": config.timesteps,
            "layers": {layer.name: {"kind": type(layer).__name__,
                                    "units": _unit_configs(hw)}
                       for layer, hw in zip(config.layers, component.layers, strict=True)}
            | {"head": {"kind": "Head", "units": _unit_configs(component.head)}}}
    if design == "core":
        return gen_core.core_component(config), config.to_dict()
    fail(f"unknown design {design!r} (known: {', '.join(DESIGNS)})")


def design_component(design, unit_argv):
    """(Amaranth component, configuration dict) of `design` from its generator's flags."""
    return component_for(design, config_from_argv(design, unit_argv))


def generate(design, unit_argv, name):
    """(Verilog text, configuration dict) of `design` from its generator's flags."""
    component, config = design_component(design, unit_argv)
    return to_verilog(component, name), config


def _unit_configs(component):
    """{unit name: {"type", **configuration}} of a block's units."""
    return {name: {"type": type(unit_config(unit)).__name__, **unit_config(unit).to_dict()}
            for name, unit in component.units.items()}


_PORT = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[(\d+):(\d+)\]\s*)?([^;]+);", re.M)


def top_ports(verilog, top):
    """[(direction, name, width)] of module `top` in `verilog`, in declaration order."""
    start = re.search(rf"^module\s+{re.escape(top)}\s*\(", verilog, re.M)
    if start is None:
        raise SynthError(f"no module {top!r} in the Verilog")
    header_end = verilog.find(";", start.end())
    if re.search(r"\b(input|output|inout)\b", verilog[start.end():header_end]):
        raise SynthError(f"module {top!r} declares its ports in the header (ANSI style); "
                         f"the harness reads port declarations in the body")
    end = verilog.find("endmodule", start.end())
    ports = []
    for m in _PORT.finditer(verilog, start.end(), end):
        width = abs(int(m.group(2)) - int(m.group(3))) + 1 if m.group(2) else 1
        for name in m.group(4).split(","):
            ports.append((m.group(1), name.strip(), width))
    return ports


def harness_verilog(verilog, top):
    """A `harness` module around `top`: clk, rst and two pins in (`sin`, `load`), one pin out
    (`sout`). Returns (Verilog, {"ff": harness flip-flops, "in_bits", "out_bits"})."""
    ports = top_ports(verilog, top)
    names = {name for _, name, _ in ports}
    if not {"clk", "rst"} <= names:
        raise SynthError(f"module {top!r} has no clk/rst ports")
    ins = [(n, w) for d, n, w in ports if d == "input" and n not in ("clk", "rst")]
    outs = [(n, w) for d, n, w in ports if d == "output"]
    n_in, n_out = sum(w for _, w in ins), sum(w for _, w in outs)
    lines = ["module harness(clk, rst, sin, load, sout);", "  input clk, rst, sin, load;",
             "  output sout;", f"  reg [{max(n_in, 1) - 1}:0] isr;",
             f"  wire [{max(n_out, 1) - 1}:0] o;", f"  reg [{max(n_out, 1) - 1}:0] osr;",
             "  always @(posedge clk) isr <= {isr, sin};" if n_in > 1 else
             "  always @(posedge clk) isr <= sin;",
             "  always @(posedge clk) osr <= load ? o : (osr >> 1);",
             "  assign sout = osr[0];", f"  {top} u(", "    .clk(clk), .rst(rst),"]
    conns, pos = [], 0
    for n, w in ins:
        conns.append(f"    .{n}(isr[{pos + w - 1}:{pos}])")
        pos += w
    pos = 0
    for n, w in outs:
        conns.append(f"    .{n}(o[{pos + w - 1}:{pos}])")
        pos += w
    lines += [",\n".join(conns), "  );", "endmodule", ""]
    return verilog + "\n" + "\n".join(lines), {"ff": n_in + n_out, "in_bits": n_in,
                                               "out_bits": n_out}


def synthesize(workdir, top, family, *, noiopad):
    """Yosys on `workdir/design.v` -> `workdir/netlist.json`; returns the cell counts."""
    cmd = f"synth_{family} -top {top}" + (" -noiopad" if noiopad else "")
    return run_yosys(workdir, cmd, f"{top} ({family})", netlist=True)


def _sum(cells, prefixes):
    return sum(n for name, n in cells.items() if name.startswith(prefixes))


def resources(family, cells, util):
    """The headline resources from Yosys's cells and nextpnr's utilisation."""
    used = {k: u for k, (u, _) in util.items()}
    if family == "ecp5":
        return {"lut4": cells.get("LUT4", 0), "logic_cells": used.get("TRELLIS_COMB", 0),
                "ff": used.get("TRELLIS_FF", 0), "carry": cells.get("CCU2C", 0),
                "bram": used.get("DP16KD", 0), "lutram": cells.get("TRELLIS_DPR16X4", 0),
                "dsp": used.get("MULT18X18D", 0) + used.get("ALU54B", 0)}
    return {"lut4": cells.get("SB_LUT4", 0), "logic_cells": used.get("ICESTORM_LC", 0),
            "ff": _sum(cells, ("SB_DFF",)), "carry": cells.get("SB_CARRY", 0),
            "bram": used.get("ICESTORM_RAM", 0), "spram": used.get("ICESTORM_SPRAM", 0),
            "dsp": used.get("ICESTORM_DSP", 0)}


def build(design, unit_argv, target_name, *, out, speed=None, freq=None, io=None,
          bitstream=False, seed=1, log=print):
    """Run the whole flow on `design` from its generator's flags; returns the report (also
    written to `out/report.json`)."""
    config = config_from_argv(design, unit_argv)      # bad unit flags fail here
    return build_config(design, config, target_name, out=out, speed=speed, freq=freq, io=io,
                        bitstream=bitstream, seed=seed, log=log)


def build_config(design, config, target_name, *, out, **options):
    """The flow on `design` from its configuration object (`component_for`); `options` as
    `build` takes them. Returns the report."""
    t0 = time.perf_counter()
    component, config_dict = component_for(design, config)
    verilog = to_verilog(component, design)
    return build_verilog(design, verilog, config_dict, target_name, out=out,
                         generate_s=time.perf_counter() - t0, **options)


def build_component(component, design, config, target_name, *, out, **options):
    """The flow on an Amaranth `component` (a configuration object's hardware, e.g.
    `OverlayCore(CoreConfig())`): `design` names it (one of `DESIGNS`: the report's design and
    its analytic estimate) and `config` is its configuration (an object with `to_dict()`, or
    a dict). `options` as `build` takes them. Returns the report."""
    t0 = time.perf_counter()
    verilog = to_verilog(component, design)
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return build_verilog(design, verilog, config, target_name, out=out,
                         generate_s=time.perf_counter() - t0, **options)


def build_verilog(design, verilog, config, target_name, *, out, speed=None, freq=None, io=None,
                  bitstream=False, seed=1, log=print, generate_s=0.0):
    """Synthesize, place and route the Verilog text `verilog` of `design` (its top module)
    with configuration dict `config`; returns the report."""
    target = TARGETS[target_name]
    io = io or ("ooc" if target.family == "ecp5" else "harness")
    out = Path(out)
    times, t0 = {"generate_s": round(generate_s, 2)}, time.perf_counter() - generate_s
    out.mkdir(parents=True, exist_ok=True)
    harness = None
    top = design
    if io == "harness":
        verilog, harness = harness_verilog(verilog, design)
        top = "harness"
    (out / "design.v").write_text(verilog)
    log(f"synthesizing {design} for {target.name} ({io})")
    t = time.perf_counter()
    cells = synthesize(out, top, target.family, noiopad=io == "ooc")
    times["synth_s"] = round(time.perf_counter() - t, 2)
    multipliers = {k: n for k, n in cells.items() if k in MULTIPLIER_CELLS and n}
    log(f"placing and routing ({sum(cells.values())} cells)")
    t = time.perf_counter()
    pnr, _ = run_nextpnr(out, target, speed=speed, freq=freq, out_of_context=io == "ooc",
                         seed=seed)
    times["pnr_s"] = round(time.perf_counter() - t, 2)
    used = resources(target.family, cells, pnr["utilization"])
    guess = estimate(design, config, target.family, io=io) if modelled(design, config) else None
    report = {
        "design": design, "config": config, "target": target.name, "family": target.family,
        "speed_grade": (speed or target.default_speed) if target.speeds else None,
        "io": io, "requested_mhz": freq,
        "resources": used,
        "estimate": None if guess is None else {
            **guess, "error": {k: None if e is None else round(e, 4)
                               for k, e in relative_errors(guess, used).items()}},
        "fmax": pnr["fmax"],
        "met": (bool(pnr["fmax"]) and all(c["met"] for c in pnr["fmax"].values()))
        if freq is not None else None,
        "multiplier_cells": multipliers, "harness": harness,
        "utilization": {k: {"used": u, "available": a} for k, (u, a) in
                        sorted(pnr["utilization"].items()) if u},
        "yosys_cells": dict(sorted(cells.items())),
        "tools": {"yosys": tool_version(find_yosys()),
                  "nextpnr": tool_version(find_tool(f"nextpnr-{target.family}"))},
    }
    if bitstream:
        t = time.perf_counter()
        report["bitstream"] = run_pack(out, target).name
        times["pack_s"] = round(time.perf_counter() - t, 2)
    times["total_s"] = round(time.perf_counter() - t0, 2)
    report["times"] = times
    atomic_write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    return report


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.splitlines()[0],
               epilog="Other flags go to the generator (python -m gen.<design> --help).")
    p.add_argument("--design", required=True, help=f"one of {', '.join(DESIGNS)}")
    p.add_argument("--target", required=True, help=f"one of {', '.join(TARGETS)}")
    p.add_argument("--speed", type=int, help="ECP5 speed grade 6, 7 or 8 (default 6)")
    p.add_argument("--freq", type=float, help="requested clock in MHz (report says if met)")
    p.add_argument("--io", choices=("ooc", "harness"),
                   help="out of context (ECP5 default) or a pin harness (iCE40 default)")
    p.add_argument("--bitstream", action="store_true", help="also pack a bitstream (harness)")
    p.add_argument("--out", help="output folder (default build/fpga/<design>-<target>)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args, unit_argv = p.parse_known_args(argv)
    if args.design not in DESIGNS:
        fail(f"unknown design {args.design!r} (known: {', '.join(DESIGNS)})")
    if args.target not in TARGETS:
        fail(f"unknown target {args.target!r} (known: {', '.join(TARGETS)})")
    target = TARGETS[args.target]
    if args.speed is not None and args.speed not in target.speeds:
        fail(f"{args.target} has no speed grade {args.speed}" + (
            f" (grades: {', '.join(map(str, target.speeds))})" if target.speeds else
            " (it has no speed grades)"))
    if args.freq is not None and not 1 <= args.freq <= 1000:
        fail(f"--freq must be between 1 and 1000 MHz, not {args.freq:g}")
    if args.io == "ooc" and target.family != "ecp5":
        fail(f"{args.target} has no out-of-context flow (nextpnr-{target.family}); use "
             f"--io harness")
    if args.bitstream and (args.io or ("ooc" if target.family == "ecp5" else "harness")) == "ooc":
        fail("a bitstream needs pins: add --io harness")
    for flag in unit_argv:
        if flag.split("=")[0] in _RESERVED:
            fail(f"{flag.split('=')[0]} is not a unit flag here (fpga.build names the outputs)")
    out = Path(args.out or f"build/fpga/{args.design}-{args.target}")
    if out.exists() and not out.is_dir():
        fail(f"--out {str(out)!r} exists and is not a folder")

    def log(text):
        if not args.quiet:
            print(f"[{PROG}] {text}", file=sys.stderr, flush=True)

    try:
        report = build(args.design, unit_argv, args.target, out=out, speed=args.speed,
                       freq=args.freq, io=args.io, bitstream=args.bitstream, seed=args.seed,
                       log=log)
    except (PnrError, SynthError) as exc:      # FitError included: one line either way
        fail(str(exc))
    r = report["resources"]
    fmax = ", ".join(f"{c} {v['achieved_mhz']:.1f} MHz" for c, v in report["fmax"].items())
    grade = f" grade {report['speed_grade']}" if report["speed_grade"] else ""
    print(f"{PROG}: {args.design} on {args.target}{grade} ({report['io']}): "
          f"{r['logic_cells']} logic cells, {r['lut4']} LUT4, {r['ff']} FF, {r['bram']} BRAM, "
          f"{r['dsp']} DSP; Fmax {fmax or 'n/a'}; report {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
