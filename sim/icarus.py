"""Icarus Verilog as a second simulator for the cocotb benches: find it, build once per text.

`SIMULATORS` names what `sim.cosim.run_cocotb` can run on; the environment variable
`SPIKEGEN_SIMULATOR` picks one for a whole pytest run (`make test-icarus` runs the unit benches
under both of Icarus's language modes).
"""

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from cocotb_tools.runner import Icarus

from spec.cli import UsageError

__all__ = ["IcarusNotFound", "SIMULATORS", "DEFAULT_SIMULATOR", "simulator_from_env",
           "find_icarus", "build", "GENERATIONS"]

#: Icarus's language modes that the benches run under: `-g2005` and `-g2012` (cocotb's default).
GENERATIONS = ("2005", "2012")
SIMULATORS = ("verilator",) + tuple(f"icarus-{g}" for g in GENERATIONS)
DEFAULT_SIMULATOR = "verilator"
#: The oldest Icarus the benches are known to run on (Debian 12's package).
MIN_VERSION = (11, 0)


class IcarusNotFound(RuntimeError):
    pass


def simulator_from_env():
    """The simulator SPIKEGEN_SIMULATOR names (default Verilator); a bad name is a usage error
    that lists the choices (one line and exit 2 from a command line)."""
    name = os.environ.get("SPIKEGEN_SIMULATOR", "").strip() or DEFAULT_SIMULATOR
    if name not in SIMULATORS:
        raise UsageError(f"SPIKEGEN_SIMULATOR={name!r} is not a simulator here; choose one of "
                         f"{', '.join(SIMULATORS)}")
    return name


def find_icarus():
    """Return (iverilog path, version text); raise IcarusNotFound with what to install."""
    exe = shutil.which("iverilog")
    if exe is None or shutil.which("vvp") is None:
        raise IcarusNotFound("no Icarus Verilog (iverilog and vvp) on PATH: apt-get install "
                             "iverilog (Debian/Ubuntu), version 11 or newer")
    try:
        text = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise IcarusNotFound(f"{exe} -V failed: {exc}") from None
    match = re.search(r"Icarus Verilog version (\d+)\.(\d+)", text)
    if match is None or (int(match[1]), int(match[2])) < MIN_VERSION:
        found = match[0] if match else "an unknown version"
        raise IcarusNotFound(f"{exe} is {found}; the benches need Icarus Verilog 11 or newer")
    return exe, match[0]


def build(verilog_path, toplevel, build_root, generation, *, waves=False):
    """Compile `verilog_path` with `iverilog -g<generation>` once: the folder is named by a hash
    of the text, the mode and the Icarus version, and a complete build is reused (file lock
    against concurrent builds). `waves` adds cocotb's FST dump module. Returns the folder."""
    if generation not in GENERATIONS:
        raise ValueError(f"Icarus language mode {generation!r}: choose one of "
                         f"{', '.join(GENERATIONS)}")
    exe, version = find_icarus()
    text = Path(verilog_path).read_bytes()
    key = text + f"{toplevel} {generation} {waves} {version} {exe}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    build_dir = (Path(build_root) /
                 f"icarus{generation}-{toplevel}-{'waves-' if waves else ''}{digest}")
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / "built.ok"
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and (build_dir / "sim.vvp").exists():
            return build_dir
        source = build_dir / f"{toplevel}.v"
        source.write_bytes(text)
        # the later -g flag wins over the runner's own -g2012
        Icarus().build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                       build_args=[f"-g{generation}"], timescale=("1ns", "1ps"), waves=waves,
                       always=True, log_file=build_dir / "build.log")
        stamp.write_text("ok\n")
    return build_dir
