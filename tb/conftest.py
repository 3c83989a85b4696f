import os
from pathlib import Path

import pytest

from sim.verilator import VerilatorNotFound, find_verilator


@pytest.fixture(scope="session")
def build_root():
    """Verilator builds are cached here across runs, one folder per Verilog text."""
    try:
        find_verilator()
    except VerilatorNotFound as exc:
        pytest.skip(str(exc))
    root = Path(os.environ.get("SPIKEGEN_BUILD_ROOT",
                               Path(__file__).resolve().parent.parent / "build" / "verilator"))
    root.mkdir(parents=True, exist_ok=True)
    return root
