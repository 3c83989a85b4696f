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

(Writing the processes as multiplexers instead, `proc` before `write_verilog`, also removes
the time-0 dependence, but the overlay core's compiled harness then ran at 0.82 M instead of
1.0 M cycles/s, and Yosys 0.70's ECP5 synthesis of one shortcut unit's text failed an
assertion.)
"""

import re

from amaranth.back import verilog

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
