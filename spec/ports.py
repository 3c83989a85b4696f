"""Stream payload layouts as plain data.

A payload is a list of fields packed first-field-in-the-low-bits, exactly as Amaranth flattens a
`data.StructLayout` of the same fields. `hw` builds its layouts from these descriptions and `sim`
packs and unpacks port values with them, so the two cannot disagree.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One payload field: a scalar of `bits` bits, or (`count` set) an array of `count` of them."""

    name: str
    bits: int
    signed: bool = False
    count: int | None = None

    @property
    def width(self):
        return self.bits * (1 if self.count is None else self.count)


def payload_width(fields):
    return sum(f.width for f in fields)


def _to_unsigned(value, bits, signed, name):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise ValueError(f"value {value} of field {name!r} does not fit {bits} bits")
    return value & ((1 << bits) - 1)


def pack(fields, values):
    """Pack a mapping of field name to value (an int, or a sequence for arrays) into an int."""
    word, offset = 0, 0
    for f in fields:
        value = values[f.name]
        elements = [value] if f.count is None else list(value)
        if len(elements) != (1 if f.count is None else f.count):
            raise ValueError(f"field {f.name!r} needs {f.count} elements, not {len(elements)}")
        for element in elements:
            word |= _to_unsigned(int(element), f.bits, f.signed, f.name) << offset
            offset += f.bits
    return word


def unpack(fields, word):
    """Unpack an int into a dict of field name to value (a list for arrays)."""
    out, offset = {}, 0
    for f in fields:
        elements = []
        for _ in range(1 if f.count is None else f.count):
            raw = (word >> offset) & ((1 << f.bits) - 1)
            if f.signed and raw >> (f.bits - 1):
                raw -= 1 << f.bits
            elements.append(raw)
            offset += f.bits
        out[f.name] = elements[0] if f.count is None else elements
    return out
