"""fpga.area: gates charged to source lines, on a hand-built netlist whose answer is known, and
on a real unit (every gate counted once, nearly all of them to a line of hw/)."""

from collections import Counter
from pathlib import Path

import pytest

from fpga.area import (
    GATES,
    PROG,
    UNATTRIBUTED,
    attribute,
    by_section,
    main,
    sections,
    synth_gates,
)
from hw.lif import LIFArray
from spec.cli import run_main
from spec.lif import LIFConfig

ROOT = "/repo"
FF = {"CLK": "input", "DI": "input", "Q": "output"}
GATE2 = {"A": "input", "B": "input", "Y": "output"}
CCU = {"A0": "input", "CIN": "input", "S0": "output", "COUT": "output"}


def _cell(kind, ports, src=None, **conns):
    return {"type": kind, "port_directions": ports, "connections": conns,
            "attributes": {"src": src} if src else {}}


def _module():
    """g2 (line 20) and the carry cell (line 30) feed g1 (no line), which feeds the register
    declared at line 10; g3 (no line) feeds only g2; g4 (no line) feeds nothing with a line."""
    cells = {
        "r": _cell("TRELLIS_FF", FF, CLK=[1], DI=[5], Q=[6]),
        "g1": _cell("$_AND_", GATE2, A=[4], B=[7], Y=[5]),
        "g2": _cell("$_MUX_", GATE2, f"{ROOT}/hw/a.py:20", A=[3], B=[6], Y=[4]),
        "g3": _cell("$_OR_", GATE2, A=[6], B=[6], Y=[3]),
        "cc": _cell("CCU2C", CCU, f"{ROOT}/hw/a.py:30|{ROOT}/hw/b.py:3", A0=[6], CIN=["0"],
                    S0=[7], COUT=[8]),
        "g4": _cell("$_XOR_", GATE2, A=[6], B=[8], Y=[9]),
        "n": _cell("$_NOT_", GATE2, A=[6], Y=[10]),
    }
    netnames = {"r_q": {"bits": [6], "attributes": {"src": f"{ROOT}/hw/a.py:10"}},
                "lib": {"bits": [11], "attributes": {
                    "src": "/venv/lib/python3.11/site-packages/amaranth/lib/fifo.py:5"}}}
    return {"cells": cells, "netnames": netnames}


def test_attribution_of_a_known_netlist():
    table = attribute(_module(), ROOT)
    want = {("hw/a.py", 10): Counter(gates=1, ff=1),      # g1, in the register's cone; r
            ("hw/a.py", 20): Counter(gates=2),            # g2 itself, g3 which feeds it
            ("hw/a.py", 30): Counter(carry=1),            # the first of two src entries
            UNATTRIBUTED: Counter(gates=1)}               # g4; the NOT weighs nothing
    assert {k: +v for k, v in table.items()} == want


def test_a_corrupted_expectation_is_caught():
    table = attribute(_module(), ROOT)
    wrong = {("hw/a.py", 10): Counter(gates=2, ff=1), ("hw/a.py", 20): Counter(gates=1),
             ("hw/a.py", 30): Counter(carry=1), UNATTRIBUTED: Counter(gates=1)}
    assert {k: +v for k, v in table.items()} != wrong


def test_sections_and_the_table_by_section(tmp_path):
    src = tmp_path / "hw" / "a.py"
    src.parent.mkdir()
    lines = ["def f():"] + ["    pass"] * 8 + ["    # -- counters --------", "    x = 1"] \
        + ["    y = 2"] * 18 + ["class C:", "    pass"]
    src.write_text("\n".join(lines) + "\n")
    assert sections(src) == [(1, "def f"), (10, "counters"), (30, "class C")]
    table = by_section(attribute(_module(), ROOT), str(tmp_path))
    assert {k: +v for k, v in table.items()} == {
        ("hw/a.py", "counters"): Counter(gates=3, ff=1), ("hw/a.py", "class C"): Counter(carry=1),
        UNATTRIBUTED: Counter(gates=1)}


def test_a_unit_every_gate_counted_once_and_nearly_all_to_a_line():
    lif = LIFArray(LIFConfig(neurons=64, lanes=4))
    module = synth_gates(lif)
    root = str(Path(__file__).resolve().parent.parent)
    table = attribute(module, root)
    total = Counter()
    for counts in table.values():
        total.update(counts)
    cells = Counter(c["type"] for c in module["cells"].values())
    assert total["gates"] == sum(GATES.get(t, 0) * n for t, n in cells.items())
    assert total["carry"] == cells["CCU2C"] and total["ff"] == cells["TRELLIS_FF"]
    assert total["gates"] + total["carry"] > 0
    size = total["gates"] + 2 * total["carry"]
    lost = table.get(UNATTRIBUTED, Counter())
    assert lost["gates"] + 2 * lost["carry"] <= 0.1 * size
    assert any(loc[0] == "hw/lif.py" for loc in table if loc != UNATTRIBUTED)


def test_command_line(capsys):
    assert main(["--design", "lif", "--top", "3", "--neurons", "64", "--lanes", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["gates", "CCU2C"]
    assert len(out) == 5 and out[-1].endswith(" sources)") and "total" in out[-1]


@pytest.mark.parametrize("argv, message", [
    (["--design", "lif", "--top", "0"], "must be a whole number of 1 or more, not '0'"),
    (["--design", "nope"], "unknown design 'nope'"),
    (["--design", "lif", "--by", "file"], "invalid choice: 'file'"),
    (["--design", "lif", "--lanes", "0"], "lanes must be at least 1, not 0"),
    (["--design", "lif", "--neurons", "63", "--channels", "2"], "channels (2) must divide"),
    (["--design", "core", "--set", "lanes=3"], "lanes must be one of"),
])
def test_bad_input_is_one_message_and_exit_2(argv, message, capsys):
    assert run_main(PROG, main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpga.area: error: ") and message in err and err.count("\n") == 1
