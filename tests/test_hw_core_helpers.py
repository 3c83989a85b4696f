"""The overlay core's arithmetic helpers (`hw.core`) against plain Python, exhaustively at
small widths: the saturation, the saturating left shift, the lowest set bit and the
constant compare."""

import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from hw.core import _above, _clamp, _lowest, _sat_bounds, _shl_sat


def _mismatches(m, outs, cases):
    """Simulate `m` through `cases`, each (the (signal, value) inputs to set, the expected
    values of `outs`); return the cases whose outputs differ, as (inputs, got, want)."""
    bad = []

    async def bench(ctx):
        for inputs, want in cases:
            for sig, value in inputs:
                ctx.set(sig, value)
            got = tuple(ctx.get(o) for o in outs)
            if got != tuple(want):
                bad.append(([v for _, v in inputs], got, want))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return bad


@pytest.mark.parametrize("value_bits, bound_bits", [(5, 6), (6, 6), (9, 6)])
def test_clamp_equals_min_max(value_bits, bound_bits):
    m = Module()
    n, val = Signal(4), Signal(signed(value_bits))
    hi, lo, eqs = _sat_bounds(n, bound_bits)
    out = Signal(signed(max(value_bits, bound_bits)))
    m.d.comb += [*eqs, out.eq(_clamp(val, lo, hi))]
    half = 1 << (value_bits - 1)
    bad = _mismatches(m, [out], (
        ([(n, nb - 1), (val, x)],
         [min(max(x, -(1 << (nb - 1))), (1 << (nb - 1)) - 1)])
        for nb in range(1, bound_bits + 1) for x in range(-half, half)))
    assert not bad, bad[:5]


def test_shl_sat_equals_saturated_shift():
    m = Module()
    x, f = Signal(signed(6)), Signal(3)
    out = Signal(signed(9))
    m.d.comb += out.eq(_shl_sat(x, f, 9))
    bad = _mismatches(m, [out], (
        ([(x, v), (f, shift)], [min(max(v << shift, -256), 255)])
        for shift in range(8) for v in range(-32, 32)))
    assert not bad, bad[:5]


def test_lowest_and_above():
    m = Module()
    val = Signal(6)
    onehot_eq, idx, found, rest = _lowest(val)
    idx_s, found_s, rest_s, above_s = Signal(3), Signal(), Signal(6), Signal()
    m.d.comb += [onehot_eq, idx_s.eq(idx), found_s.eq(found), rest_s.eq(rest),
                 above_s.eq(_above(val, 37))]
    bad = _mismatches(m, [idx_s, found_s, rest_s, above_s], (
        ([(val, v)], [max((v & -v).bit_length() - 1, 0), int(v != 0), v & (v - 1),
                      int(v > 37)])
        for v in range(64)))
    assert not bad, bad[:5]


def test_a_broken_expectation_fails():
    """Can-fail check of the comparisons above: an off-by-one bound is caught."""
    m = Module()
    n, val = Signal(4), Signal(signed(6))
    hi, lo, eqs = _sat_bounds(n, 6)
    out = Signal(signed(6))
    m.d.comb += [*eqs, out.eq(_clamp(val, lo, hi))]
    bad = _mismatches(m, [out], (([(n, 2), (val, x)], [min(max(x, -8), 8)])   # hi should be 7
                                 for x in range(-32, 32)))
    assert bad


@pytest.mark.parametrize("field_bits, width", [(4, 6), (6, 9), (6, 33)])
def test_sat_bounds_equal_the_ranges(field_bits, width):
    """hi = 2^(b-1) - 1 and lo = -2^(b-1) for every range of b bits, 1 <= b <= width (the
    core registers n = b - 1)."""
    m = Module()
    n = Signal(field_bits)
    hi, lo, eqs = _sat_bounds(n, width)
    m.d.comb += eqs
    cases = [([(n, b - 1)], [(1 << (b - 1)) - 1, -(1 << (b - 1))])
             for b in range(1, width + 1) if b - 1 < 1 << field_bits]
    assert len(cases) == min(width, 1 << field_bits)
    bad = _mismatches(m, [hi, lo], cases)
    assert not bad, bad[:5]
