"""The generated Verilog text (`gen.verilog.to_verilog`): the dummy reg that runs every
`always @*` block at time 0 is set by an `initial` statement (an event in every language mode:
tb/test_icarus.py), every case block has a default, no zero-width `wire [-1:0]` placeholder is
left, and `verilator --lint-only -Wall` finds no warning outside the classes
`sim.verilator.BENIGN_LINT` lists with their reasons; the lint check fails on Amaranth's own
backend text, which has CASEINCOMPLETE and ASCRANGE warnings."""

import re

import pytest
from amaranth.back import rtlil
from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import Elaboratable, Module, Signal, signed
from amaranth.lib.memory import Memory

import gen.verilog as gen_verilog
from gen.verilog import _default_cases, _drop_zero_width, to_verilog
from hw.axi import AxiMaster
from hw.core import OverlayCore
from hw.csr import ControlStatusRegisters
from hw.lif import LIFArray
from hw.sae import SpikeAccumulator
from hw.sdsa import sdsa_unit
from hw.shortcut import Shortcut
from sim.verilator import VerilatorNotFound, check_lint, find_verilator
from spec.axi import AxiConfig
from spec.core import CoreConfig
from spec.lif import LIFConfig
from spec.sae import SAEConfig, SAEParams
from spec.sdsa import SDSAConfig
from spec.shortcut import ShortcutConfig, ShortcutParams

SAE = SAEConfig(in_channels=5, out_channels=16, kernel=3, stride=2, padding=0, height=8,
                width=7, lanes=8, in_lanes=4)
DEPTHWISE = SAEConfig(mode="depthwise", in_channels=12, out_channels=12, kernel=3, stride=2,
                      padding=1, height=5, width=5, lanes=8, in_lanes=8, acc_bits=10)
SHORTCUT = ShortcutConfig(channels=20, height=3, width=4, lanes=8, acc_bits=12, bits=10)
SDSA3 = SDSAConfig(variant=3, heads=8, channels=64, tokens=10, lanes=4)

DESIGNS = {
    "lif": lambda: LIFArray(LIFConfig(neurons=30, lanes=4, channels=3, timesteps=4,
                                      v_th=[1.0, 2.0, 0.5], expose_membrane=True)),
    "sae": lambda: SpikeAccumulator(SAE, SAEParams.seeded(SAE, 5)),
    "depthwise": lambda: SpikeAccumulator(DEPTHWISE, SAEParams.seeded(DEPTHWISE, 5)),
    "sdsa1": lambda: sdsa_unit(SDSAConfig(variant=1, heads=2, channels=24, tokens=5, lanes=8,
                                          timesteps=4)),
    "sdsa3": lambda: sdsa_unit(SDSA3),
    "shortcut": lambda: Shortcut(SHORTCUT, ShortcutParams.seeded(SHORTCUT, 5)),
    "csr": lambda: ControlStatusRegisters(core_id=1, addr_bits=32),
    "axi_master": lambda: AxiMaster(AxiConfig()),
    "core": lambda: OverlayCore(CoreConfig()),
}


@pytest.fixture(scope="module")
def verilator():
    try:
        find_verilator()
    except VerilatorNotFound as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("name", list(DESIGNS))
def test_generated_verilog_is_clean(name, tmp_path, verilator):
    text = to_verilog(DESIGNS[name](), name)
    assert "[-1:0]" not in text
    assert not re.search(r"reg \\\$auto\$verilog_backend\S* += *0;", text)
    if "always @*" in text:
        assert re.search(r"^ *initial \\\$auto\$verilog_backend\S* += 1'h0;$", text, re.M)
    path = tmp_path / f"{name}.v"
    path.write_text(text)
    counts = check_lint(path, name)
    assert "PROCASSINIT" in counts       # the linter ran and reported what it always finds


def test_lint_check_fails_on_amaranth_backend_text(tmp_path, verilator):
    path = tmp_path / "sdsa.v"
    path.write_text(amaranth_verilog.convert(sdsa_unit(SDSA3), name="sdsa", emit_src=False,
                                             strip_internal_attrs=True))
    with pytest.raises(AssertionError, match=r"CASEINCOMPLETE"):
        check_lint(path, "sdsa")
    sae = tmp_path / "sae.v"
    sae.write_text(amaranth_verilog.convert(SpikeAccumulator(SAE, SAEParams.seeded(SAE, 5)),
                                            name="sae", emit_src=False,
                                            strip_internal_attrs=True))
    with pytest.raises(AssertionError, match=r"ASCRANGE"):
        check_lint(sae, "sae")


def test_case_blocks_get_a_default_and_keep_theirs():
    text = ("    casez (a)\n      1'h0:\n        casez (b)\n          1'h1:\n            x = 1;\n"
            "          default:\n            x = 2;\n        endcase\n    endcase\n"
            "    case (c)\n      2'h1: y = 0;\n    endcase\n")
    out = _default_cases(text)
    assert out.count("default") == 3          # the inner one kept, two added
    assert "  default: ;\n    endcase\n    case (c)" in out
    assert out.endswith("      2'h1: y = 0;\n      default: ;\n    endcase\n")


def test_zero_width_declarations_dropped_only_when_unused():
    text = ("  wire [-1:0] gone;\n  wire [-1:0] kept;\n  wire \\p.gone2 ;\n"
            "  wire [-1:0] gone2;\n  reg signed [-1:0] \\esc$1 ;\n  assign x = kept;\n")
    out = _drop_zero_width(text)
    assert "gone;" not in out and "gone2;" not in out and "esc$1" not in out
    assert "wire [-1:0] kept;" in out and "\\p.gone2 " in out and "assign x = kept;" in out


class _SignedRom(Elaboratable):
    """A memory of signed 5-bit rows with negative initial values, and one of one row."""

    def __init__(self):
        self.addr, self.data, self.other = Signal(3), Signal(signed(5)), Signal(3)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Memory(shape=signed(5), depth=7, init=[-16, -1, 0, 15, 3, -7])
        m.submodules.one = one = Memory(shape=3, depth=1, init=[5])
        port, port1 = rom.read_port(domain="comb"), one.read_port(domain="comb")
        m.d.comb += [port.addr.eq(self.addr), self.data.eq(port.data), self.other.eq(port1.data)]
        return m


@pytest.mark.parametrize("name", ["sae", "depthwise", "lif", "signed_rom"])
def test_fast_memory_contents_are_amaranths_bytes(name, monkeypatch):
    """gen.verilog's `_emit_memory` writes the RTLIL Amaranth's own emitter writes."""
    def convert():
        design = _SignedRom() if name == "signed_rom" else DESIGNS[name]()
        ports = None
        if name == "signed_rom":
            ports = [design.addr, design.data, design.other]
        return rtlil.convert(design, name="t", emit_src=False, ports=ports)
    fast = convert()
    monkeypatch.setattr(rtlil.ModuleEmitter, "emit_memory", gen_verilog._amaranth_emit_memory)
    assert fast == convert()
    assert "$meminit_v2" in fast


def test_same_design_same_bytes():
    assert to_verilog(DESIGNS["sdsa1"](), "u") == to_verilog(DESIGNS["sdsa1"](), "u")
