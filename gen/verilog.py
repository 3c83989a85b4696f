"""Reproducible Verilog from an Amaranth component, simulating alike in every language mode."""

from amaranth._toolchain.yosys import find_yosys
from amaranth.back import rtlil

__all__ = ["to_verilog", "YOSYS_SCRIPT"]

#: Attributes that Amaranth adds and the Verilog does not need (machine paths among them).
_STRIP = "-remove generator -remove top -remove src -remove amaranth.hierarchy " \
         "-remove amaranth.decoding -remove unused_bits"

#: The passes between Amaranth's RTLIL and `write_verilog`. Amaranth's own converter runs
#: `proc -nomux`, which keeps every combinational process as an `always @*` block that Yosys
#: makes run at time 0 through an initialised dummy reg: an event under Verilog-2005 semantics
#: only, so under Icarus `-g2012` a block whose inputs never change after reset stays X (the
#: SDSA-3/4 units hung with no output beat). Here `proc` turns the processes into multiplexers,
#: written as continuous assignments, which every simulator evaluates at time 0 in every mode
#: (Yosys's own wires, `$procmux$...`, are written as `_N_`). `opt_clean -purge` then keeps one
#: name per net and drops what nothing reads: the zero-width `wire [-1:0]` placeholders, and
#: the aliases and dead logic without which Yosys 0.70's ECP5 synthesis of a shortcut unit's
#: text failed an assertion (`ABC_OPS_REINTEGRATE`); plain `opt_clean` left wires undriven.
#: A Yosys equivalence check (`equiv_make`, `equiv_induct`) proved an SDSA-3 unit's text
#: equal to Amaranth's.
YOSYS_SCRIPT = ("proc -norom", "memory_collect", "opt_clean -purge", f"attrmap {_STRIP}",
                f"attrmap -modattr {_STRIP}", "write_verilog")


def to_verilog(component, name):
    """Convert `component` to Verilog text with module name `name`.

    `emit_src=False` keeps source locations (machine paths) out, so the same configuration gives
    the same bytes on any machine. The text has no `always @*` block (see `YOSYS_SCRIPT`).
    """
    text = rtlil.convert(component, name=name, emit_src=False)
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = [f"read_rtlil <<rtlil\n{text}\nrtlil", *YOSYS_SCRIPT]
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)
