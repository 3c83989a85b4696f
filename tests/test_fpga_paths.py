"""fpga.paths: the pre-placement path estimate on hand-built netlists, against delays summed
by hand from `DELAYS`."""

import json

import pytest

from fpga.paths import DELAYS, Netlist, analyse, main, trace


def _cell(kind, ports, **conns):
    return {"type": kind, "port_directions": ports, "connections": conns,
            "attributes": {}, "parameters": {}}


FF = {"CLK": "input", "DI": "input", "CE": "input", "LSR": "input", "Q": "output"}
LUT = {"A": "input", "B": "input", "C": "input", "D": "input", "Z": "output"}
CCU = {p: "input" for p in ("A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1", "CIN")}
CCU.update({"S0": "output", "S1": "output", "COUT": "output"})
MUX = {"ALUT": "input", "BLUT": "input", "C0": "input", "Z": "output"}


def _netlist(cells, netnames=None):
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "ports": {"clk": {"direction": "input", "bits": [1]}},
                                "cells": cells, "netnames": netnames or {}}}}


def _design():
    """q0 -> LUT -> two chained CCU2Cs (carry in, carry through, sum out) -> FF d;
    q0 -> LUT -> LUT -> PFUMX (dedicated LUT wires) -> FF e."""
    cells = {
        "ff0": _cell("TRELLIS_FF", FF, CLK=[1], DI=["0"], Q=[2]),
        "lut0": _cell("LUT4", LUT, A=[2], B=["0"], C=["0"], D=["0"], Z=[3]),
        "cc0": _cell("CCU2C", CCU, A0=[3], CIN=["0"], S0=[10], S1=[11], COUT=[4]),
        "cc1": _cell("CCU2C", CCU, A0=["0"], CIN=[4], S0=[12], S1=[5], COUT=[13]),
        "ffd": _cell("TRELLIS_FF", FF, CLK=[1], DI=[5], Q=[6]),
        "lut1": _cell("LUT4", LUT, A=[2], Z=[7]),
        "lut2": _cell("LUT4", LUT, A=[2], Z=[8]),
        "mux": _cell("PFUMX", MUX, ALUT=[7], BLUT=[8], C0=[2], Z=[9]),
        "ffe": _cell("TRELLIS_FF", FF, CLK=[1], DI=[9], Q=[14]),
    }
    names = {"q0": {"bits": [2], "hide_name": 0}, "d": {"bits": [6], "hide_name": 0},
             "sum": {"bits": [5], "hide_name": 0}}
    return _netlist(cells, names)


def test_delays_are_summed_along_the_longest_path():
    d = DELAYS
    net = Netlist(_design())
    arrival, endpoints = analyse(net)
    # ff0 Q, routed to lut0, routed to cc0's A0, carried through cc1 (dedicated), sum out,
    # routed to ffd
    to_d = d["ff"] + d["route"] + d["lut"] + d["route"] + d["carry_in"] + d["carry_out"] \
        + d["route"]
    # ff0 Q routed to the mux's select (the LUTs' outputs reach it on dedicated wires, but
    # they start one LUT later): max(route + lut, route) + mux, routed to ffe
    to_e = d["ff"] + d["route"] + d["lut"] + d["mux"] + d["route"]
    got = {label: t for t, label, _ in endpoints}
    assert got["d (DI)"] == pytest.approx(to_d)
    assert got[f"{net.name(14)} (DI)"] == pytest.approx(to_e)
    assert endpoints[0][1] == "d (DI)"              # the longest first
    path = trace(net, arrival, 5)
    assert [p[1] for p in path][0] == "q0" and path[-1][1] == "sum"


def test_cli_reports_the_worst_path(tmp_path, capsys):
    f = tmp_path / "netlist.json"
    f.write_text(json.dumps(_design()))
    assert main([str(f), "--paths", "1"]) == 0
    out = capsys.readouterr().out
    d = DELAYS
    worst = d["ff"] + 3 * d["route"] + d["lut"] + d["carry_in"] + d["carry_out"]
    assert f"estimated worst path {worst:.1f} ns" in out
    assert "path to d (DI)" in out


@pytest.mark.parametrize("data, message", [
    ({"modules": {}}, "expected one top module"),
    (_netlist({"x": _cell("MULT18X18D", {"A0": "input", "P0": "output"}, A0=[2], P0=[3])}),
     "has no timing model"),
])
def test_bad_netlists_exit_2(tmp_path, capsys, data, message):
    f = tmp_path / "netlist.json"
    f.write_text(json.dumps(data))
    assert main([str(f)]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_netlist_exits_2(tmp_path, capsys):
    f = tmp_path / "netlist.json"
    f.write_text("{not json")
    assert main([str(f)]) == 2
    assert "fpga.paths" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--top", "--paths"])
def test_negative_counts_exit_2(tmp_path, capsys, flag):
    f = tmp_path / "netlist.json"
    f.write_text(json.dumps(_design()))
    with pytest.raises(SystemExit) as exc:
        main([str(f), flag, "-1"])
    assert exc.value.code == 2
    assert "must be a whole number of 0 or more, not '-1'" in capsys.readouterr().err
