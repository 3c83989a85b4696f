"""Where a design's logic goes: its gates before LUT mapping, counted by the source line that
made them.

    python -m fpga.area --design core [--by line|section] [--top 30] [generator flags]

The design is elaborated with source locations, Yosys runs `synth_ecp5` up to LUT mapping
(gates, carry cells, LUT RAMs and flip-flops; the ECP5 flow of `fpga.build`), and each cell is
charged to the source line its `src` attribute names. A gate without one (a multiplexer that
Yosys made from a register's assignments) is charged to the line that declares the register
it feeds, else to the first cell with a line that it feeds (Yosys gives some of a register's
assignment multiplexers the line of one of its assignments). `--by section` adds lines up by
the `# -- title --` comments, functions and classes of their file.

Gates are counted before ABC packs them into LUT4s, so they rank where the logic is; they are
not LUT4s. A CCU2C is two bits of a carry chain (two LUT slots once placed).
"""

import ast
import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from amaranth.back import rtlil

from spec.cli import Parser, fail, run_main, whole_number

from .build import DESIGNS, design_component
from .yosys import SynthError, run_yosys

__all__ = ["GATES", "UNATTRIBUTED", "attribute", "by_section", "report", "sections", "synth_gates",
           "main"]

#: Yosys's fine-grained gate cells and their weight (two-input gate equivalents; a NOT is free,
#: ABC folds it into a LUT).
GATES = {"$_AND_": 1, "$_OR_": 1, "$_XOR_": 1, "$_XNOR_": 1, "$_NAND_": 1, "$_NOR_": 1,
         "$_ANDNOT_": 1, "$_ORNOT_": 1, "$_MUX_": 1, "$_NOT_": 0, "$_AOI3_": 2, "$_OAI3_": 2,
         "$_AOI4_": 3, "$_OAI4_": 3}
#: The other cells counted, each in its own column.
KINDS = {"CCU2C": "carry", "TRELLIS_DPR16X4": "lutram", "TRELLIS_FF": "ff", "DP16KD": "bram"}
COLUMNS = ("gates", "carry", "lutram", "ff", "bram")
UNATTRIBUTED = "(no source line)"
PROG = "fpga.area"
_SRC = re.compile(r"([^|:]+\.py):(\d+)")


def _location(attributes, root):
    """The first `file.py:line` of a `src` attribute, the file relative to `root` (or to its
    package folder when outside it), or None."""
    m = _SRC.search(attributes.get("src", ""))
    if not m:
        return None
    path = m.group(1)
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif root and path.startswith(root):
        path = path[len(root):].lstrip("/")
    else:                                            # the standard library: no machine path
        path = "/".join(Path(path).parts[-2:])
    return (path, int(m.group(2)))


def attribute(module, root=""):
    """{(file, line) or UNATTRIBUTED: Counter of COLUMNS} for one flattened Yosys JSON
    module (after `synth_ecp5 -run :map_luts`)."""
    cells = module["cells"]
    wire_loc = {}
    for info in module["netnames"].values():
        loc = _location(info.get("attributes", {}), root)
        if loc:
            for b in info["bits"]:
                if isinstance(b, int):
                    wire_loc.setdefault(b, loc)
    driver = {}
    users = defaultdict(list)
    for name, cell in cells.items():
        for port, direction in cell["port_directions"].items():
            for b in cell["connections"].get(port, ()):
                if isinstance(b, int):
                    if direction == "output":
                        driver[b] = name
                    else:
                        users[b].append(name)

    def bits(cell, direction):
        return [b for p, d in cell["port_directions"].items() if d == direction
                for b in cell["connections"].get(p, ()) if isinstance(b, int)]

    own = {name: _location(cell["attributes"], root) for name, cell in cells.items()}
    is_gate = {name: cell["type"] in GATES for name, cell in cells.items()}
    owner = {}
    # a gate without a line: the register (or memory) whose input cone it is in
    for name, cell in cells.items():
        if cell["type"] in GATES or cell["type"] == "CCU2C":
            continue
        outs = bits(cell, "output")
        loc = next((wire_loc[b] for b in outs if b in wire_loc), None) or own[name]
        if loc is None:
            continue
        stack = bits(cell, "input")
        while stack:
            d = driver.get(stack.pop())
            if d is None or d in owner or own[d] or not is_gate[d]:
                continue
            owner[d] = loc
            stack.extend(bits(cells[d], "input"))
    # else the first cell with a line that it feeds
    for name in cells:
        if not is_gate[name] or own[name] or name in owner:
            continue
        seen, stack = {name}, [name]
        while stack and name not in owner:
            for b in bits(cells[stack.pop()], "output"):
                for u in users[b]:
                    if u in seen:
                        continue
                    seen.add(u)
                    if own[u]:
                        owner[name] = own[u]
                        break
                    if is_gate[u]:
                        stack.append(u)
    table = defaultdict(Counter)
    for name, cell in cells.items():
        kind = cell["type"]
        if kind in GATES:
            column, weight = "gates", GATES[kind]
        elif kind in KINDS:
            column, weight = KINDS[kind], 1
        else:
            continue
        if kind in GATES or kind == "CCU2C":
            loc = own[name] or owner.get(name)
        else:                                        # storage: the signal it drives
            loc = next((wire_loc[b] for b in bits(cell, "output") if b in wire_loc),
                       None) or own[name]
        table[loc or UNATTRIBUTED][column] += weight
    return dict(table)


def sections(path):
    """[(first line, title)] of a Python file: its `# -- title --` comments, functions and
    classes, in line order."""
    text = Path(path).read_text()
    marks = [(i, m.group(1).strip()) for i, line in enumerate(text.splitlines(), 1)
             if (m := re.match(r"\s*# -- (.+?) -*\s*$", line))]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            marks.append((node.lineno, f"{'class' if isinstance(node, ast.ClassDef) else 'def'} "
                                       f"{node.name}"))
    return sorted(marks)


def by_section(table, root):
    """Add `attribute`'s lines up by `sections` of their files."""
    marks = {}
    out = defaultdict(Counter)
    for loc, counts in table.items():
        if loc == UNATTRIBUTED:
            out[loc].update(counts)
            continue
        path, line = loc
        if path not in marks:
            full = Path(root, path)
            marks[path] = sections(full) if full.is_file() else []
        title = "(top)"
        for first, name in marks[path]:
            if first <= line:
                title = name
        out[(path, title)].update(counts)
    return dict(out)


def synth_gates(component, top="top"):
    """The flattened Yosys JSON module of `component` after `synth_ecp5 -run :map_luts`."""
    with tempfile.TemporaryDirectory(prefix="spikegen-area-") as tmp:
        Path(tmp, "design.il").write_text(rtlil.convert(component, name=top, emit_src=True))
        # only the design is written: the cell library's models hold processes
        run_yosys(tmp, f"hierarchy -top {top}; synth_ecp5 -top {top} -noiopad -run :map_luts; "
                       f"select {top}; write_json -selected netlist.json; select -clear",
                  f"{top} (gates by source line)", source="design.il")
        data = json.loads(Path(tmp, "netlist.json").read_text())
    return data["modules"][top]


def _label(loc):
    if loc == UNATTRIBUTED:
        return loc
    path, where = loc
    return f"{path}:{where}" if isinstance(where, int) else f"{path}: {where}"


def report(table, top, lines_of=None):
    """The table as text: the `top` rows by gates + 2 x carry, and the totals."""
    total = Counter()
    for counts in table.values():
        total.update(counts)
    size = {loc: c["gates"] + 2 * c["carry"] for loc, c in table.items()}
    all_size = max(1, total["gates"] + 2 * total["carry"])
    rows = sorted(table, key=lambda loc: (-size[loc], _label(loc)))[:top]
    out = [f"{'gates':>7} {'CCU2C':>6} {'LUTRAM':>6} {'FF':>6} {'BRAM':>4} {'share':>6}  source"]
    for loc in rows:
        c = table[loc]
        text = _label(loc)
        if lines_of and loc != UNATTRIBUTED and isinstance(loc[1], int):
            src = lines_of(loc)
            text += f"  {src}" if src else ""
        out.append(f"{c['gates']:7d} {c['carry']:6d} {c['lutram']:6d} {c['ff']:6d} "
                   f"{c['bram']:4d} {100 * size[loc] / all_size:5.1f}%  {text}")
    out.append(f"{total['gates']:7d} {total['carry']:6d} {total['lutram']:6d} {total['ff']:6d} "
               f"{total['bram']:4d} 100.0%  total ({len(table)} sources)")
    return "\n".join(out)


def main(argv=None):
    ap = Parser(prog=PROG, description=__doc__.split("\n\n")[0].replace("\n", " "),
                epilog="Other flags go to the generator (python -m gen.<design> --help), as in "
                       "fpga.build.")
    ap.add_argument("--design", required=True, help=f"one of {', '.join(DESIGNS)}")
    ap.add_argument("--by", choices=("line", "section"), default="line",
                    help="rows by source line (default) or by section of a file")
    ap.add_argument("--top", type=whole_number(1), default=30, help="rows to list (30)")
    args, unit_argv = ap.parse_known_args(argv)
    if args.design not in DESIGNS:
        fail(f"unknown design {args.design!r} (known: {', '.join(DESIGNS)})")
    root = str(Path(__file__).resolve().parent.parent)
    component, _ = design_component(args.design, unit_argv)
    try:
        table = attribute(synth_gates(component), root)
    except SynthError as e:
        fail(str(e))
    cache = {}

    def lines_of(loc):
        path, line = loc
        if path not in cache:
            full = Path(root, path)
            cache[path] = full.read_text().splitlines() if full.is_file() else []
        text = cache[path]
        return text[line - 1].strip()[:70] if 0 < line <= len(text) else ""

    if args.by == "section":
        table = by_section(table, root)
    print(report(table, args.top, lines_of))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
