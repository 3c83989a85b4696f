"""Compiled simulation harness: a C++ main linked with the Verilated design, no VPI and no
cocotb in the loop, built with Verilator's own flow (`--cc --exe --build`).

For the overlay core (`core_main.cpp`) the harness holds the memory image in a C++ AXI4 memory
(`axi_slave.h`: seeded random pauses on all five channels, bursts checked for INCR, beat size,
alignment and 4 KiB crossings) and drives the AXI4-Lite registers as a host would. Python
prepares the memory images (`core_memory`), runs the binary (`run_core`) and compares the
memory it returns with the integer model (`sim.overlay.check_outputs`, which names the first
divergence).

    binary = build_core(CoreConfig(), "build/harness")
    runs = run_core(binary, [core_memory(image, size, core, pixels)], layers=len(image.ops))

Builds are kept in `build_root`, named by a hash of everything that goes into them (the
Verilog, the harness sources, the flags, the Verilator), so a second call returns at once.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen.verilog import to_verilog
from hw.core import OverlayCore
from sim.verilator import LZ4_DIR, WARNING_FLAGS, find_verilator, lz4_archive, verilator_env
from spec.csr import CONTROL_IRQ_ENABLE, CONTROL_START, OFFSETS, STATUS_DONE, STATUS_ERROR
from spec.program import FIELDS, pack_values

__all__ = ["HarnessError", "CoreRun", "build_core", "run_core", "core_memory", "SOURCES"]

HERE = Path(__file__).resolve().parent
#: The harness's own sources (part of every build's hash).
SOURCES = ("core_main.cpp", "axi_slave.h", "lz4/lz4.h", "lz4/lz4_literals.cpp")
#: Verilator's flags for harness builds: its own optimisation at its highest, X values as
#: zeros (the designs reset every register they read).
VERILATOR_FLAGS = WARNING_FLAGS + ("-O3", "--x-assign", "fast", "--x-initial", "fast")
#: The C++ compiler's optimisation (verilated.mk's OPT_FAST / OPT_SLOW / OPT_GLOBAL).
CXX_OPT = "-O2"
#: Cycles of the training run of a profile-guided build.
TRAIN_CYCLES = 400_000


class HarnessError(RuntimeError):
    """The harness could not be built or run (not a mismatch: that is `sim.overlay.Divergence`)."""


@dataclass
class CoreRun:
    """One program run: `report` is the harness's JSON object for it (ended, waited, status,
    error, cycles, events, read, written, decerr, layer_cycles, seconds), `memory` the whole
    memory afterwards."""
    report: dict
    memory: bytes

    @property
    def ok(self):
        status = self.report.get("status", 0)
        return (self.report["ended"] == "irq" and bool(status & STATUS_DONE)
                and not status & STATUS_ERROR)


def _config_header(core):
    if core.axi_data_bits % 32 or core.axi_data_bits > 1024:
        raise HarnessError(f"the harness takes AXI data widths that are multiples of 32 bits, "
                           f"not {core.axi_data_bits}")
    lines = ["// written by sim.harness from spec.csr and the core configuration",
             "#pragma once", f"#define BEAT_BYTES {core.axi_data_bits // 8}",
             f"#define CONTROL_START {CONTROL_START}",
             f"#define CONTROL_IRQ_ENABLE {CONTROL_IRQ_ENABLE}",
             f"#define STATUS_DONE {STATUS_DONE}", f"#define STATUS_ERROR {STATUS_ERROR}"]
    lines += [f"#define CSR_{name} {offset:#x}" for name, offset in OFFSETS.items()]
    return "\n".join(lines) + "\n"


_PORT = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*;")


def ports(verilog, top):
    """[(direction, bits, name)] of module `top`'s ports in `verilog` (Yosys's style: one
    `input [N:0] name;` declaration per line)."""
    text = verilog.decode() if isinstance(verilog, bytes) else verilog
    match = re.search(rf"^module {re.escape(top)}\(", text, re.M)
    if match is None:
        raise HarnessError(f"no module {top} in the Verilog")
    found = []
    for line in text[match.end():].splitlines():
        if line.startswith("endmodule"):
            break
        m = _PORT.match(line)
        if m:
            found.append((m[1], int(m[2]) + 1 if m[2] else 1, m[3]))
    return found


def input_wrapper(verilog, top, name="harness_top"):
    """Verilog of a module `name` around `top` whose inputs (all but `clk`) pass through a
    register: in a Verilated model, no logic of `top` then depends combinationally on a model
    input, so each cycle costs one evaluation of it at the clock edge (a harness whose bus
    models are Moore machines sets each cycle's inputs before the edge that opens it). Port
    names lose the double underscores of Amaranth's interfaces (`m_axi__rdata` ->
    `m_axi_rdata`)."""
    found = ports(verilog, top)
    if ("input", 1, "clk") not in found:
        raise HarnessError(f"module {top} has no one-bit clk input")
    decls, regs, conns, body = [], [], [], []
    for direction, bits, port in found:
        outer = port.replace("__", "_")
        width = f"[{bits - 1}:0] " if bits > 1 else ""
        decls.append(f"  {direction} {width}{outer};")
        if direction == "input" and port != "clk":
            regs.append(f"  reg {width}{outer}_q = {bits}'d0;")
            body.append(f"    {outer}_q <= {outer};")
            conns.append(f"    .{port}({outer}_q)")
        else:
            conns.append(f"    .{port}({outer})")
    names = ", ".join(p.replace("__", "_") for _, _, p in found)
    return "\n".join([
        "// written by sim.harness: the design's inputs through registers (see input_wrapper)",
        f"module {name}({names});", *decls, *regs, "  always @(posedge clk) begin", *body,
        "  end", f"  {top} dut (", ",\n".join(conns), "  );", "endmodule", ""])


def _verilator_key():
    root, bindir, _ = find_verilator()
    return str(root or bindir)


def _compile(build_dir, flags, opt, cflags="", ldflags=""):
    """Verilate and compile the harness in `build_dir` (harness_top.v, core.v and the config
    header already there); raise HarnessError with the log's tail on failure."""
    _, bindir, _ = find_verilator()
    if "--trace-fst" in flags:
        cflags = f"{cflags} -I{LZ4_DIR}".strip()
        ldflags = f"{ldflags} -L{lz4_archive(build_dir / 'lib')}".strip()
    make_opt = f"OPT_FAST={opt} OPT_SLOW={opt} OPT_GLOBAL={opt}"
    shutil.rmtree(build_dir / "obj", ignore_errors=True)
    cmd = [str(bindir / "verilator"), "--cc", "--exe", "--build", "-j",
           str(min(os.cpu_count() or 1, 4)), *flags, "--top-module", "harness_top",
           "--prefix", "Vcore", "-Mdir", "obj", "-o", "../core_harness",
           "-CFLAGS", f"-I{HERE} -I{build_dir} {cflags}".strip(), "-MAKEFLAGS", make_opt,
           "harness_top.v", "core.v", str(HERE / "core_main.cpp")]
    if ldflags:
        cmd[-3:-3] = ["-LDFLAGS", ldflags]
    result = subprocess.run(cmd, cwd=build_dir, capture_output=True, text=True)
    with open(build_dir / "build.log", "a") as f:
        f.write(" ".join(cmd) + "\n" + result.stdout + result.stderr)
    if result.returncode or not (build_dir / "core_harness").exists():
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise HarnessError(f"building the core's harness failed (log: "
                           f"{build_dir / 'build.log'}):\n{tail}")


def build_core(core, build_root, *, waves=False, train=None, opt=CXX_OPT, log=None):
    """Build the harness for the overlay core of configuration `core` (once per distinct input;
    safe against concurrent builds). Returns the binary's path.

    `waves` adds FST tracing (`run_core(..., waves=FILE)`). `train`, a memory image
    (`core_memory`), makes a profile-guided build: a first build is profiled on the first
    `TRAIN_CYCLES` cycles of that image and compiled again with the profile (measured: 1.25 x
    the simulation speed for twice the build time). `opt` is the C++ compiler's optimisation
    (`-O1` builds in 0.7 x the time of `-O2` and simulates at 0.9 x its speed). `log(text)`
    hears what takes time."""
    verilator_env()
    t0 = time.perf_counter()
    verilog = to_verilog(OverlayCore(core), "overlay_core").encode()
    header = _config_header(core).encode()
    flags = VERILATOR_FLAGS + (("--trace-fst",) if waves else ())
    h = hashlib.sha256(verilog + header + " ".join(flags).encode() + opt.encode()
                       + _verilator_key().encode() + (b"pgo" if train else b""))
    for name in SOURCES:
        h.update((HERE / name).read_bytes())
    kind = ("waves-" if waves else "") + ("pgo-" if train else "")
    build_dir = Path(build_root).resolve() / f"core-{kind}{h.hexdigest()[:16]}"
    binary = build_dir / "core_harness"
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (build_dir / "built.ok").exists() and binary.exists():
            return binary
        if log:
            log(f"building the core's harness in {build_dir} "
                f"({'two compiles, about a minute' if train else 'about half a minute'})")
        binary.unlink(missing_ok=True)
        (build_dir / "build.log").write_text("")
        (build_dir / "core.v").write_bytes(verilog)
        (build_dir / "harness_top.v").write_text(input_wrapper(verilog, "overlay_core"))
        (build_dir / "harness_config.h").write_bytes(header)
        if train is None:
            _compile(build_dir, flags, opt)
        else:
            profile = build_dir / "profile"
            shutil.rmtree(profile, ignore_errors=True)
            generate = f"-fprofile-generate={profile}"
            _compile(build_dir, flags, opt, generate, generate)
            run_core(binary, [train], layers=0, budget=TRAIN_CYCLES)
            binary.unlink()
            use = f"-fprofile-use={profile} -fprofile-partial-training -Wno-missing-profile"
            _compile(build_dir, flags, opt, use, use)
        (build_dir / "built.ok").write_text(f"{time.perf_counter() - t0:.1f} s\n")
    return binary


def build_seconds(binary):
    """How long the build of `binary` took (written when it was built)."""
    return float((Path(binary).parent / "built.ok").read_text().split()[0])


def core_memory(image, size, core, pixels):
    """A memory of `size` bytes holding the compiled program `image` (bytes, at address 0) and
    one image's integer `pixels` (C, H, W) at the program's input address."""
    if size < len(image):
        raise HarnessError(f"a memory of {size} bytes cannot hold the {len(image)}-byte program")
    mem = bytearray(size)
    mem[:len(image)] = image
    header = np.frombuffer(bytes(image[:64]), "<u4")
    first = np.frombuffer(bytes(image[header[5]:header[5] + 256]), "<u4")
    in_bits = int(first[FIELDS.index("in_bits")])
    packed = pack_values(np.asarray(pixels)[None], in_bits, core, signed=False)
    mem[int(header[9]):int(header[9]) + len(packed)] = packed
    return bytes(mem)


_PROGRESS = re.compile(r"core_harness: progress (\d+) (\d+)$")
_RUN_END = re.compile(r"core_harness: run (\d+): .* after (\d+) cycles")


def run_core(binary, memories, *, layers, seed=1, pause=0.0, budget=500_000_000, waves=None,
             waves_window=None, progress=None, progress_every=1_000_000, timeout=None):
    """Run `binary` (from `build_core`) on each memory image in `memories` in turn, without a
    reset between them; returns one `CoreRun` per memory that ran (a run that fails ends the
    list). `waves` names an FST file (the binary must be built with waves), `waves_window` a
    (first, last) cycle pair to limit it to. `progress(run, cycles, finished)`, if given, is
    called every `progress_every` cycles of a run and when a run ends."""
    with tempfile.TemporaryDirectory(prefix="harness-") as tmp:
        tmp = Path(tmp)
        cmd = [str(binary), "--layers", str(layers), "--seed", str(seed), "--pause", str(pause),
               "--budget", str(budget), "--report", str(tmp / "report.json")]
        if progress is None:
            cmd.append("--quiet")
        else:
            cmd += ["--progress", str(progress_every)]
        for n, mem in enumerate(memories):
            (tmp / f"in{n}.bin").write_bytes(mem)
            cmd += ["--run", str(tmp / f"in{n}.bin"), str(tmp / f"out{n}.bin")]
        if waves is not None:
            cmd += ["--waves", str(waves)]
            if waves_window is not None:
                cmd += ["--waves-from", str(int(waves_window[0])),
                        "--waves-to", str(int(waves_window[1]))]
        other = []
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) as proc:
            try:
                for line in proc.stderr:
                    step = _PROGRESS.match(line)
                    end = _RUN_END.match(line)
                    if step and progress is not None:
                        progress(int(step[1]), int(step[2]), False)
                    elif end and progress is not None:
                        progress(int(end[1]), int(end[2]), True)
                    else:
                        other.append(line.rstrip())
                proc.wait(timeout=timeout)
            except BaseException:
                proc.kill()
                raise
        if proc.returncode not in (0, 1) or not (tmp / "report.json").exists():
            raise HarnessError(f"{Path(binary).name} exited with {proc.returncode}: "
                               + "\n".join(other))
        reports = json.loads((tmp / "report.json").read_text())
        return [CoreRun(r, (tmp / f"out{n}.bin").read_bytes()) for n, r in enumerate(reports)]


def clean(build_root):
    """Remove every harness build under `build_root`."""
    for d in Path(build_root).glob("core-*"):
        shutil.rmtree(d, ignore_errors=True)
