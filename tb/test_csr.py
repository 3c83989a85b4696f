"""Co-simulation of the generated register block (`hw.csr`) under Verilator with cocotbext-axi's
`AxiLiteMaster` (`pytest tb/test_csr.py`); the tests themselves are in tb/cocotb_csr.py."""

import pytest

from gen.verilog import to_verilog
from hw.csr import ControlStatusRegisters
from sim.cosim import run_cocotb

#: One design (one Verilator build) for every test: a 64-bit core, so PROGRAM_HI is held.
CORE_ID, ADDR_BITS = 0x5EED_C5A1, 64

TESTCASES = [
    "test_identity_and_reset_values",
    "test_program_start_done_irq",
    "test_error_latch",
    "test_soft_reset_pulse",
    "test_counters_read_consistently",
    "test_byte_writes_and_unknown_offsets",
    "test_random_accesses_with_pauses",
    "test_corrupted_expectations_are_caught",
]


#: the benches' environment
ENV = {"SPIKEGEN_SEED": 5, "SPIKEGEN_CORE_ID": CORE_ID, "SPIKEGEN_ADDR_BITS": ADDR_BITS}


def prepare(work):
    """The register block's Verilog path, written in `work`."""
    path = work / "csr.v"
    path.write_text(to_verilog(ControlStatusRegisters(core_id=CORE_ID, addr_bits=ADDR_BITS),
                               "csr"))
    return path


@pytest.fixture(scope="module")
def verilog(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("csr"))


@pytest.mark.parametrize("testcase", TESTCASES)
def test_csr_cosim(testcase, verilog, build_root):
    work = verilog.parent
    run_cocotb(verilog, toplevel="csr", module="tb.cocotb_csr", testcase=testcase,
               test_dir=work / testcase, build_root=build_root, log_file=work / f"{testcase}.log",
               env=ENV)
