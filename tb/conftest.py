import os
from pathlib import Path

import pytest

from sim.icarus import IcarusNotFound, find_icarus, simulator_from_env
from sim.verilator import VerilatorNotFound, find_verilator


@pytest.fixture(scope="session")
def build_root():
    """Simulator builds are cached here across runs, one folder per Verilog text. The
    simulator is the one SPIKEGEN_SIMULATOR names (Verilator by default); a test is skipped,
    with the reason, when that simulator is not installed."""
    try:
        if simulator_from_env() == "verilator":
            find_verilator()
        else:
            find_icarus()
    except (VerilatorNotFound, IcarusNotFound) as exc:
        pytest.skip(str(exc))
    root = Path(os.environ.get("SPIKEGEN_BUILD_ROOT",
                               Path(__file__).resolve().parent.parent / "build" / "verilator"))
    root.mkdir(parents=True, exist_ok=True)
    return root
