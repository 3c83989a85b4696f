"""Helpers shared by the hardware units."""

from amaranth import Const, Mux, signed, unsigned
from amaranth.lib import data

__all__ = ["mul_const", "saturate", "struct_layout"]


def struct_layout(fields):
    """A `data.StructLayout` from `spec.ports.Field` descriptions, first field in the low bits."""
    members = {}
    for f in fields:
        shape = signed(f.bits) if f.signed else unsigned(f.bits)
        members[f.name] = shape if f.count is None else data.ArrayLayout(shape, f.count)
    return data.StructLayout(members)


def saturate(value, bits):
    """Clamp a signed value to the signed `bits`-bit range, without a comparator chain.

    The value fits when all bits from `bits - 1` up agree; otherwise the sign picks the bound.
    """
    width = len(value)
    if width <= bits:
        return value
    top = value[bits - 1:]
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    lo, hi = Const(-(1 << (bits - 1)), signed(bits)), Const((1 << (bits - 1)) - 1, signed(bits))
    return Mux(fits, value[:bits].as_signed(), Mux(value[-1], lo, hi))


def mul_const(value, constant):
    """`value * constant` as a sum of shifted copies of `value`: adders, no multiplier cell."""
    if constant < 0:
        raise ValueError(f"constant must be non-negative, not {constant}")
    terms = [value << b for b in range(constant.bit_length()) if (constant >> b) & 1]
    if not terms:
        return Const(0, 1)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
