"""Reproducible Verilog from an Amaranth component."""

from amaranth.back import verilog

__all__ = ["to_verilog"]


def to_verilog(component, name):
    """Convert `component` to Verilog text with module name `name`.

    `emit_src=False` keeps source locations (machine paths) out, so the same configuration gives
    the same bytes on any machine.
    """
    return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
