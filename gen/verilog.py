"""Reproducible Verilog from an Amaranth component, simulating alike in every language mode.

Amaranth's backend (Yosys's `write_verilog` after `proc -nomux`) writes every combinational
process as an `always @*` block that begins with `if (\\$auto$verilog_backend...$1 ) begin end`,
a read of a dummy reg declared `reg \\$auto$verilog_backend...$1 = 0;`. Under Verilog-2005
semantics that initialiser is an assignment at time 0, an event that runs every such block
once; under SystemVerilog semantics (Icarus `-g2012`, cocotb's default) it is an initial value
without an event, so a block whose inputs do not change after reset stays X: the SDSA-3/4
units hung with no output beat. `to_verilog` writes that assignment as an `initial` statement
in the same place, which is an event in every language mode, so the text simulates as it does
under Verilog-2005 everywhere. It also gives every `case` block without one a `default: ;` (the
blocks assign their defaults before the case, so nothing changes; Verilator's CASEINCOMPLETE)
and drops zero-width `wire [-1:0]` declarations that nothing names (an Amaranth
`Signal(range(1))`: two bits wide in Verilog, never driven; Verilator's ASCRANGE).

Amaranth's RTLIL emitter builds a memory's initial contents as a signal of one constant net per
bit (the digits network's weights: 9 million of them); `_emit_memory` writes the same constant
string directly, so the bytes are unchanged (`tests/test_verilog_text.py` compares them with
Amaranth's own emitter's) and the digits network's RTLIL takes 14.2 s instead of 29.8 s.

(Writing the processes as multiplexers instead, `proc` before `write_verilog`, also removes
the time-0 dependence, but the overlay core's compiled harness then ran at 0.82 M instead of
1.0 M cycles/s, and Yosys 0.70's ECP5 synthesis of one shortcut unit's text failed an
assertion.)
"""

import re

from amaranth.back import rtlil, verilog
from amaranth.hdl import _nir

__all__ = ["to_verilog"]

_DUMMY = re.compile(r"^( *)reg (\\\$auto\$verilog_backend\S*) += *0;$", re.M)
_CASE = re.compile(r"^ *case[zx]? \(")
_DEFAULT = re.compile(r"^ *default *:")
_ZERO_WIDTH = re.compile(r"^ *(?:wire|reg) (?:signed )?\[-1:0\] ([^ ;]+ ?);\n", re.M)


def to_verilog(component, name):
    """Convert `component` to Verilog text with module name `name`.

    `emit_src=False` keeps source locations (machine paths) out, so the same configuration gives
    the same bytes on any machine. See the module's text for what is changed after Amaranth.
    """
    text = verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
    text = _DUMMY.sub(r"\1reg \2 ;\n\1initial \2  = 1'h0;", text)
    return _drop_zero_width(_default_cases(text))


def _emit_memory(self, cell_idx, cell):
    """Amaranth's `ModuleEmitter.emit_memory` (amaranth 0.5) with the initial contents written
    as one constant: the bits of the rows from the last to the first, each most significant bit
    first, as Amaranth's `sigspec` writes a run of constant nets."""
    rows = list(cell.init)
    if cell.width == 0 or not rows:
        return _amaranth_emit_memory(self, cell_idx, cell)
    mask = (1 << cell.width) - 1
    data = f"{cell.width * len(rows)}'" + "".join(
        format(row & mask, f"0{cell.width}b") for row in reversed(rows))
    self.builder.cell("$meminit_v2", ports={
        "ADDR": self.sigspec(),
        "DATA": data,
        "EN": self.sigspec(_nir.Value.ones(cell.width)),
    }, parameters={
        "MEMID": self.memories[cell_idx].memid,
        "ABITS": 0,
        "WIDTH": cell.width,
        "WORDS": cell.depth,
        "PRIORITY": 0,
    }, src_loc=cell.src_loc)


_amaranth_emit_memory = rtlil.ModuleEmitter.emit_memory
rtlil.ModuleEmitter.emit_memory = _emit_memory


def _default_cases(text):
    """`text` with `default: ;` before the `endcase` of every case block that has no default
    (a `default:` belongs to the innermost open case)."""
    out, open_cases = [], []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if _CASE.match(line):
            open_cases.append(False)
        elif open_cases and _DEFAULT.match(line):
            open_cases[-1] = True
        elif stripped == "endcase" and open_cases:
            if not open_cases.pop():
                indent = line[:len(line) - len(line.lstrip())]
                out.append(f"{indent}  default: ;\n")
        out.append(line)
    return "".join(out)


def _drop_zero_width(text):
    """`text` without the declarations of zero-width wires that nothing else names."""
    def keep(match):
        uses = re.findall(r"(?<![\w$.\\])" + re.escape(match[1].strip()) + r"(?![\w$])", text)
        return match[0] if len(uses) > 1 else ""
    return _ZERO_WIDTH.sub(keep, text)
