"""Estimate the longest register-to-register paths of a synthesized ECP5 netlist, before
placement.

Place and route of the overlay core takes about 25 minutes; synthesis takes 4. This reads the
Yosys JSON netlist that `fpga.build` writes (`netlist.json`, after `synth_ecp5`) and runs a
static timing analysis with a fixed delay per cell arc and per routed net, calibrated on
nextpnr-ecp5's reports of the core at speed grade 6 (`DELAYS`). Its figures are estimates:
they rank paths and say how many carry chains and logic levels a path crosses; the Fmax that
counts is nextpnr's.

    python -m fpga.paths build/core/netlist.json [--top 20] [--paths 3]

prints the worst endpoints (registers, memory ports, outputs), grouped by the name of the
signal they drive, and the worst paths net by net.
"""

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from spec.cli import whole_number

#: Delays in ns at grade 6, from nextpnr-ecp5 0.11 critical-path reports of the overlay core:
#: "route" is the mean of a general routed net, "ff" a flip-flop's clock-to-out, "bram" a
#: DP16KD's (REGMODE NOREG), "lut" a LUT4, "mux" a PFUMX or L6MUX21, "carry_in" a CCU2C's
#: entry (a LUT input to its carry out), "carry" a CCU2C's carry in to carry out (two bits),
#: "carry_out" a carry in to a sum output, "lutram" a TRELLIS_DPR16X4 read.
DELAYS = {"route": 1.1, "ff": 0.52, "bram": 5.8, "lut": 0.24, "mux": 0.25,
          "carry_in": 0.45, "carry": 0.07, "carry_out": 0.40, "lutram": 0.6}


@dataclass
class Arc:
    """One timing arc of a cell: input port group -> output port, delay in ns."""
    inputs: tuple
    output: str
    delay: str


def _ports(prefix, n):
    return tuple(f"{prefix}{i}" for i in range(n))


#: Combinational arcs of the cells synth_ecp5 emits; every other cell (TRELLIS_FF, DP16KD) is
#: sequential: its outputs start paths and its inputs end them.
ARCS = {
    "LUT4": [Arc(("A", "B", "C", "D"), "Z", "lut")],
    "PFUMX": [Arc(("ALUT", "BLUT", "C0"), "Z", "mux")],
    "L6MUX21": [Arc(("D0", "D1", "SD"), "Z", "mux")],
    "CCU2C": [Arc(("A0", "B0", "C0", "D0"), "S0", "carry_in"),
              Arc(("A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1"), "S1", "carry_in"),
              Arc(("A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1"), "COUT", "carry_in"),
              Arc(("CIN",), "S0", "carry_out"), Arc(("CIN",), "S1", "carry_out"),
              Arc(("CIN",), "COUT", "carry")],
    "TRELLIS_DPR16X4": [Arc(_ports("RAD", 4), f"DO{i}", "lutram") for i in range(4)],
}
#: Outputs of sequential cells and the delay that starts a path there.
STARTS = {"TRELLIS_FF": "ff", "DP16KD": "bram"}
#: Nets between these (driver cell, driver port) -> (sink port) pairs are dedicated wires,
#: not routed: a carry chain, a LUT into its slice's wide multiplexer.
DEDICATED = {("CCU2C", "COUT"): {("CCU2C", "CIN")},
             ("LUT4", "Z"): {("PFUMX", "ALUT"), ("PFUMX", "BLUT")},
             ("PFUMX", "Z"): {("L6MUX21", "D0"), ("L6MUX21", "D1")}}


#: Names Yosys's `autoname` gives nets after technology mapping.
AUTONAMED = re.compile(r"_(LUT4|CCU2C|PFUMX|L6MUX21|TRELLIS_\w+|DP16KD)_")


def _bits(conn):
    return [b for b in conn if isinstance(b, int)]


class Netlist:
    """The top module of a Yosys JSON netlist, as drivers and sinks per net bit."""

    def __init__(self, data):
        modules = data.get("modules", {})
        tops = [name for name, mod in modules.items()
                if str(mod.get("attributes", {}).get("top", "0")).strip("0") != ""]
        if len(tops) != 1:
            raise ValueError(f"expected one top module in the netlist, found {len(tops)}")
        self.top = tops[0]
        mod = modules[self.top]
        self.cells = mod.get("cells", {})
        self.names = {}
        for name, info in mod.get("netnames", {}).items():
            hidden = name.startswith("$") or bool(info.get("hide_name")) or \
                AUTONAMED.search(name) is not None
            for i, bit in enumerate(info["bits"]):
                if not isinstance(bit, int):
                    continue
                label = f"{name}[{i}]" if len(info["bits"]) > 1 else name
                old = self.names.get(bit)
                if old is None or (old[0] and not hidden) or \
                        (old[0] == bool(hidden) and len(label) < len(old[1])):
                    self.names[bit] = (bool(hidden), label)
        self.ports = mod.get("ports", {})

    def name(self, bit):
        return self.names.get(bit, (True, f"net{bit}"))[1]


def analyse(netlist, delays=DELAYS):
    """Arrival times: returns (arrival {bit: (ns, previous bit or None, arc, cell)},
    endpoints [(ns, endpoint label, bit)])."""
    d = delays
    drivers = {}                                     # bit -> (cell name, type, port)
    for cname, cell in netlist.cells.items():
        for port, direction in cell.get("port_directions", {}).items():
            if direction == "output":
                for bit in _bits(cell["connections"].get(port, [])):
                    drivers[bit] = (cname, cell["type"], port)
    arrival = {}
    for pname, port in netlist.ports.items():
        if port["direction"] == "input":
            for bit in _bits(port["bits"]):
                arrival[bit] = (0.0, None, f"input {pname}", None)
    for cname, cell in netlist.cells.items():
        start = STARTS.get(cell["type"])
        if start is None:
            continue
        for port, direction in cell["port_directions"].items():
            if direction == "output":
                for bit in _bits(cell["connections"].get(port, [])):
                    arrival[bit] = (d[start], None, f"{cell['type']} {port}", cname)

    def net_delay(bit, sink_type, sink_port):
        drv = drivers.get(bit)
        if drv is not None and (sink_type, sink_port) in DEDICATED.get(drv[1:], ()):
            return 0.0
        return d["route"]

    # combinational cells in dependency order (iterative depth-first search)
    comb = {c: cell for c, cell in netlist.cells.items() if cell["type"] in ARCS}
    for cname, cell in netlist.cells.items():
        if cell["type"] not in ARCS and cell["type"] not in STARTS and \
                not cell["type"].startswith("$scopeinfo"):
            raise ValueError(f"cell {cname} of type {cell['type']} has no timing model")
    state = {}

    def visit(root):
        stack = [(root, False)]
        while stack:
            cname, done = stack.pop()
            if done:
                _evaluate(cname)
                state[cname] = 2
                continue
            if state.get(cname):
                continue
            state[cname] = 1
            stack.append((cname, True))
            cell = comb[cname]
            for port, direction in cell["port_directions"].items():
                if direction != "input":
                    continue
                for bit in _bits(cell["connections"].get(port, [])):
                    drv = drivers.get(bit)
                    if drv and drv[0] in comb and not state.get(drv[0]):
                        stack.append((drv[0], False))

    def _evaluate(cname):
        cell = comb[cname]
        conns = cell["connections"]
        for arc in ARCS[cell["type"]]:
            best = None
            for port in arc.inputs:
                for bit in _bits(conns.get(port, [])):
                    if bit not in arrival:
                        continue
                    t = arrival[bit][0] + net_delay(bit, cell["type"], port) + d[arc.delay]
                    if best is None or t > best[0]:
                        best = (t, bit, f"{cell['type']} {port}->{arc.output}", cname)
            if best is None:
                continue
            for bit in _bits(conns.get(arc.output, [])):
                if bit not in arrival or arrival[bit][0] < best[0]:
                    arrival[bit] = best

    for cname in comb:
        visit(cname)

    endpoints = []
    for cname, cell in netlist.cells.items():
        if cell["type"] in ARCS or cell["type"] not in STARTS:
            continue
        for port, direction in cell["port_directions"].items():
            if direction != "input" or port.startswith("CLK") or port == "WCK":
                continue
            for bit in _bits(cell["connections"].get(port, [])):
                if bit in arrival:
                    label = _endpoint_label(netlist, cname, cell, port)
                    endpoints.append((arrival[bit][0] + d["route"], label, bit))
    # LUT RAM writes end paths too
    for cell in comb.values():
        if cell["type"] != "TRELLIS_DPR16X4":
            continue
        for port in ("DI0", "DI1", "DI2", "DI3", "WAD0", "WAD1", "WAD2", "WAD3", "WRE"):
            for bit in _bits(cell["connections"].get(port, [])):
                if bit in arrival:
                    endpoints.append((arrival[bit][0] + d["route"],
                                      f"lutram {port[:-1] if port != 'WRE' else 'WRE'} "
                                      f"<- {_group(netlist.name(bit))}", bit))
    for pname, port in netlist.ports.items():
        if port["direction"] == "output":
            for bit in _bits(port["bits"]):
                if bit in arrival:
                    endpoints.append((arrival[bit][0], f"output {pname}", bit))
    endpoints.sort(key=lambda e: -e[0])
    return arrival, endpoints


def _group(label):
    """A signal's name without its bit index."""
    return re.sub(r"\[\d+\]$", "", label)


def _endpoint_label(netlist, cname, cell, port):
    if cell["type"] == "TRELLIS_FF":
        q = _bits(cell["connections"].get("Q", []))
        target = _group(netlist.name(q[0])) if q else cname
        return f"{target} ({port})"
    return f"{cell['type']} {_group(cname)} ({re.sub(r'[0-9]+$', '', port)})"


def trace(netlist, arrival, bit):
    """The path that ends at `bit`, from its start: [(ns, net name, arc, source)], source
    the cell's first source location outside the cell library (file:line), or ""."""
    path = []
    seen = set()
    while bit is not None and bit not in seen:
        seen.add(bit)
        t, prev, via, cname = arrival[bit]
        src = ""
        if cname is not None:
            for loc in netlist.cells[cname].get("attributes", {}).get("src", "").split("|"):
                found = re.match(r"([^/|][^:]*):(\d+)", loc)
                if found:
                    src = f"{found[1]}:{found[2]}"
                    break
        path.append((t, netlist.name(bit), via, src))
        bit = prev
    return path[::-1]


def _source_line(lines, src):
    """The text of a `file:line` location in the design's Verilog, shortened."""
    try:
        text = lines[int(src.rsplit(":", 1)[1]) - 1].strip()
    except (IndexError, ValueError):
        return ""
    return text if len(text) <= 90 else text[:87] + "..."


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fpga.paths", description=__doc__.split("\n\n")[0])
    ap.add_argument("netlist", type=Path, help="Yosys JSON netlist after synth_ecp5")
    ap.add_argument("--top", type=whole_number(0), default=20, help="endpoint groups to list (20)")
    ap.add_argument("--paths", type=whole_number(0), default=3,
                    help="worst paths to print in full (3)")
    ap.add_argument("--verilog", type=Path, default=None,
                    help="the synthesized Verilog, to quote path lines from (default: "
                         "design.v beside the netlist)")
    args = ap.parse_args(argv)
    if not args.netlist.is_file():
        print(f"fpga.paths: error: netlist {str(args.netlist)!r} does not exist", file=sys.stderr)
        return 2
    try:
        data = json.loads(args.netlist.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"fpga.paths: error: netlist {str(args.netlist)!r} is not a Yosys JSON netlist "
              f"({' '.join(str(e).split())})", file=sys.stderr)
        return 2
    try:
        netlist = Netlist(data)
        arrival, endpoints = analyse(netlist)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"fpga.paths: error: netlist {str(args.netlist)!r} is not a synth_ecp5 netlist "
              f"this reads ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    if not endpoints:
        print("no register-to-register paths")
        return 0
    verilog = args.verilog or args.netlist.parent / "design.v"
    lines = verilog.read_text().splitlines() if verilog.is_file() else []
    worst = endpoints[0][0]
    print(f"estimated worst path {worst:.1f} ns ({1000 / worst:.1f} MHz at grade 6, "
          f"before placement)")
    # per endpoint label: its worst (first, the list is sorted) path and its bits
    worst_of, bits = {}, {}
    for t, label, bit in endpoints:
        worst_of.setdefault(label, (t, bit))
        bits[label] = bits.get(label, 0) + 1
    print(f"\n{'ns':>6}  {'bits':>5}  endpoint")
    for label, (t, _bit) in list(worst_of.items())[:args.top]:
        print(f"{t:6.1f}  {bits[label]:5d}  {label}")
    for label, (t, bit) in list(worst_of.items())[:args.paths]:
        print(f"\npath to {label}: {t:.1f} ns")
        for at, name, via, src in trace(netlist, arrival, bit):
            if via.startswith("CCU2C CIN->COUT"):
                continue                             # a carry chain's inner bits
            quote = _source_line(lines, src) if src and lines else ""
            print(f"  {at:6.2f}  {via:<20} {name[:60]:<60} {quote}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
