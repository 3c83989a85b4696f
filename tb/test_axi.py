"""The AXI4 master (`hw.axi.AxiMaster`) under Verilator + cocotb against cocotbext-axi's AxiRam
with random pauses on all five channels (`pytest tb/test_axi.py`). One Verilator build per
configuration, shared by its tests."""

import json

import pytest

from gen.verilog import to_verilog
from hw.axi import AxiMaster
from sim.cosim import run_cocotb
from spec.axi import AxiConfig

#: The core's default port (64-bit, 16-beat bursts, 4 in flight), and a wide one whose bursts
#: are short and few in flight (256-bit, 8 beats, 2).
CONFIGS = {
    "d64-b16": AxiConfig(),
    "d256-b8": AxiConfig(data_bits=256, max_burst=8, outstanding=2),
}

TESTCASES = {
    "d64-b16": ["test_random_transfers_written_then_read_back",
                "test_corrupted_expectation_is_caught", "test_soft_reset_mid_transfer",
                "test_error_responses_are_sticky"],
    "d256-b8": ["test_random_transfers_written_then_read_back", "test_soft_reset_mid_transfer"],
}


def prepare(name, work):
    """The Verilog path of configuration `name`, written in `work`."""
    path = work / "axi_master.v"
    path.write_text(to_verilog(AxiMaster(CONFIGS[name]), "axi_master"))
    return path


def env(name):
    """The benches' environment for configuration `name`."""
    return {"SPIKEGEN_AXI": json.dumps(CONFIGS[name].to_dict()), "SPIKEGEN_SEED": 5}


@pytest.fixture(scope="module")
def verilog(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = prepare(name, tmp_path_factory.mktemp(f"axi-{name}"))
        return cache[name]

    return get


@pytest.mark.parametrize("name, testcase",
                         [(name, t) for name, tests in TESTCASES.items() for t in tests])
def test_axi_cosim(name, testcase, verilog, build_root):
    path = verilog(name)
    run_cocotb(path, toplevel="axi_master", module="tb.cocotb_axi", testcase=testcase,
               test_dir=path.parent / testcase, build_root=build_root,
               env=env(name))
