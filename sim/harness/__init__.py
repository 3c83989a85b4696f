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

For a stream design (the spatial network, a block, a unit: ports `i` and `o`, and taps
`t<n>`), `stream_main.cpp` feeds the input beats from a file with seeded random gaps, takes the
output with seeded random backpressure and records every output and tap beat with its cycle
(`build_stream`, `run_stream`); Python checks them with the cocotb benches' scoreboards.

Every design sits behind `input_wrapper` (its inputs through registers: one evaluation of its
logic per cycle). Builds are kept in `build_root`, named by a hash of everything that goes into
them (the Verilog, the harness sources, the flags, the Verilator), so a second call returns at
once.
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
from spec.csr import (
    CONTROL_IRQ_ENABLE,
    CONTROL_SOFT_RESET,
    CONTROL_START,
    OFFSETS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
)
from spec.program import FIELDS, pack_values

__all__ = ["HarnessError", "CoreRun", "build_core", "run_core", "core_memory", "build_stream",
           "run_stream", "stream_inputs", "ports", "input_wrapper", "SOURCES"]

HERE = Path(__file__).resolve().parent
#: The harness's own sources (part of every build's hash).
SOURCES = ("axi_slave.h", "files.h", "lz4/lz4.h", "lz4/lz4_literals.cpp")
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
             f"#define CONTROL_SOFT_RESET {CONTROL_SOFT_RESET}",
             f"#define STATUS_DONE {STATUS_DONE}", f"#define STATUS_ERROR {STATUS_ERROR}",
             f"#define STATUS_BUSY {STATUS_BUSY}"]
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
    found, in_function = [], False
    for line in text[match.end():].splitlines():
        if line.startswith("endmodule"):
            break
        word = line.strip().split(" ", 1)[0]
        if word in ("function", "endfunction"):   # a $pmux function's own inputs
            in_function = word == "function"
            continue
        m = None if in_function else _PORT.match(line)
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


#: Verilator's runtime library as a harness links it: the same objects for every design built
#: with the same flags, so the first build in a build root compiles them and later builds copy
#: them in (as sim.verilator does for cocotb's builds).
RUNTIME_OBJECTS = ("verilated", "verilated_threads", "verilated_fst_c")


def _runtime_dir(build_root, flags, opt):
    key = " ".join(flags) + opt + _verilator_key()
    return Path(build_root) / f"_runtime-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _run_logged(cmd, cwd, build_dir):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    with open(build_dir / "build.log", "a") as f:
        f.write(" ".join(map(str, cmd)) + "\n" + result.stdout + result.stderr)
    if result.returncode:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise HarnessError(f"building the harness in {build_dir} failed (log: build.log):\n"
                           f"{tail}")


def _compile(build_dir, main, binary, flags, opt, cflags="", ldflags="", runtime=None):
    """Verilate and compile a harness in `build_dir` (design.v, harness_top.v and
    harness_config.h already there) with the C++ main `main`; raise HarnessError with the log's
    tail on failure. `runtime`, a folder, shares Verilator's runtime objects between builds."""
    _, bindir, _ = find_verilator()
    if "--trace-fst" in flags:
        cflags = f"{cflags} -I{LZ4_DIR}".strip()
        ldflags = f"{ldflags} -L{lz4_archive(build_dir / 'lib')}".strip()
    obj = build_dir / "obj"
    shutil.rmtree(obj, ignore_errors=True)
    cmd = [str(bindir / "verilator"), "--cc", "--exe", *flags, "--top-module", "harness_top",
           "--prefix", "Vtop", "-Mdir", "obj", "-o", f"../{binary.name}",
           "-CFLAGS", f"-I{build_dir / 'src'} -I{build_dir} {cflags}".strip(),
           "harness_top.v", "design.v", str(build_dir / "src" / main)]
    if ldflags:
        cmd[-3:-3] = ["-LDFLAGS", ldflags]
    _run_logged(cmd, build_dir, build_dir)
    shared = runtime is not None and (runtime / "complete").exists()
    if shared:       # after the makefile is written: the objects must be newer than it
        for f in runtime.iterdir():
            if f.suffix in (".o", ".d"):
                shutil.copy(f, obj / f.name)
    _run_logged(["make", "-C", "obj", "-f", "Vtop.mk", "-j", str(min(os.cpu_count() or 1, 4)),
                 f"OPT_FAST={opt}", f"OPT_SLOW={opt}", f"OPT_GLOBAL={opt}"],
                build_dir, build_dir)
    if not binary.exists():
        raise HarnessError(f"building the harness in {build_dir} left no {binary.name}")
    if runtime is not None and not shared:
        runtime.mkdir(parents=True, exist_ok=True)
        with open(runtime / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (runtime / "complete").exists():
                for name in RUNTIME_OBJECTS:
                    for ext in (".o", ".d"):
                        if (obj / f"{name}{ext}").exists():
                            shutil.copy2(obj / f"{name}{ext}", runtime / f"{name}{ext}")
                (runtime / "complete").write_text("ok\n")


def _build(kind, verilog, top, header, main, build_root, *, waves, opt, train=None, log=None,
           threads=1):
    """Build (once per distinct input; safe against concurrent builds) the harness `main`
    around module `top` of `verilog`; `train(binary)` runs a profiling run between the two
    compiles of a profile-guided build. Returns the binary's path."""
    verilator_env()
    t0 = time.perf_counter()
    flags = VERILATOR_FLAGS + (("--trace-fst",) if waves else ()) + (
        ("--threads", str(threads)) if threads > 1 else ())
    h = hashlib.sha256(verilog + top.encode() + header + " ".join(flags).encode()
                       + opt.encode() + _verilator_key().encode()
                       + (b"pgo" if train else b""))
    # the sources as hashed are the sources compiled (copied into the build before it starts)
    sources = {name: (HERE / name).read_bytes() for name in (*SOURCES, main)}
    for text in sources.values():
        h.update(text)
    variant = ("waves-" if waves else "") + ("pgo-" if train else "")
    build_dir = Path(build_root).resolve() / f"{kind}-{variant}{h.hexdigest()[:16]}"
    binary = build_dir / f"{kind}_harness"
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (build_dir / "built.ok").exists() and binary.exists():
            return binary
        if log:
            log(f"building the {kind} harness in {build_dir} ("
                f"{'two compiles and a profiling run' if train else 'one compile'}: the "
                f"overlay core about 20 s each, the spatial digits network about 3 minutes)")
        binary.unlink(missing_ok=True)
        (build_dir / "build.log").write_text("")
        (build_dir / "design.v").write_bytes(verilog)
        (build_dir / "harness_top.v").write_text(input_wrapper(verilog, top))
        (build_dir / "harness_config.h").write_bytes(header)
        for name, text in sources.items():
            (build_dir / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            (build_dir / "src" / name).write_bytes(text)
        if train is None:
            _compile(build_dir, main, binary, flags, opt,
                     runtime=_runtime_dir(build_root, flags, opt))
        else:
            profile = build_dir / "profile"
            shutil.rmtree(profile, ignore_errors=True)
            generate = f"-fprofile-generate={profile}"
            _compile(build_dir, main, binary, flags, opt, generate, generate)
            train(binary)
            binary.unlink()
            use = f"-fprofile-use={profile} -fprofile-partial-training -Wno-missing-profile"
            _compile(build_dir, main, binary, flags, opt, use, use)
        (build_dir / "built.ok").write_text(f"{time.perf_counter() - t0:.1f} s\n")
    return binary


def build_core(core, build_root, *, waves=False, train=None, opt=CXX_OPT, log=None):
    """Build the harness for the overlay core of configuration `core` (once per distinct input;
    safe against concurrent builds). Returns the binary's path.

    `waves` adds FST tracing (`run_core(..., waves=FILE)`). `train`, a memory image
    (`core_memory`), makes a profile-guided build: a first build is profiled on the first
    `TRAIN_CYCLES` cycles of that image and compiled again with the profile (measured: 1.25 x
    the simulation speed for twice the build time). `opt` is the C++ compiler's optimisation
    (`-O1` builds in 0.7 x the time of `-O2` and simulates at 0.9 x its speed). `log(text)`
    hears what takes time."""
    verilog = to_verilog(OverlayCore(core), "overlay_core").encode()
    profile = None if train is None else (
        lambda binary: run_core(binary, [train], layers=0, budget=TRAIN_CYCLES))
    return _build("core", verilog, "overlay_core", _config_header(core).encode(),
                  "core_main.cpp", build_root, waves=waves, opt=opt, train=profile, log=log)


def stream_inputs(verilog, top):
    """{name: payload bits} of the input streams of module `top` (ports NAME__valid and
    NAME__payload in, NAME__ready out; the output stream `o` aside)."""
    found = {name: (direction, bits) for direction, bits, name in ports(verilog, top)}
    inputs = {}
    for name, (direction, bits) in found.items():
        base = name[:-len("__payload")] if name.endswith("__payload") else None
        if base and base != "o" and direction == "input" \
                and found.get(f"{base}__valid", ("",))[0] == "input" \
                and found.get(f"{base}__ready", ("",))[0] == "output":
            inputs[base] = bits
    return dict(sorted(inputs.items()))


def _stream_header(verilog, top):
    """harness_config.h of a stream design: its input streams with their payload bytes, the
    payload bytes of `o`, and its taps."""
    found = {name: bits for _, bits, name in ports(verilog, top)}
    for name in ("o__valid", "o__ready", "o__payload"):
        if name not in found:
            raise HarnessError(f"module {top} is not a stream design: it has no {name} port")
    inputs = stream_inputs(verilog, top)
    if not inputs:
        raise HarnessError(f"module {top} is not a stream design: it has no input stream "
                           f"(ports NAME__valid, NAME__ready, NAME__payload)")
    taps = sorted(int(m[1]) for name in found if (m := re.fullmatch(r"t(\d+)__data", name)))
    lines = ["// written by sim.harness from the design's ports", "#pragma once",
             "#define FOR_INPUTS(X) " + " ".join(f"X({n}, {-(-bits // 8)})"
                                                 for n, bits in inputs.items()),
             f"#define OUT_BYTES {-(-found['o__payload'] // 8)}",
             "#define FOR_TAPS(X) " + " ".join(f"X({n}, {-(-found[f't{n}__data'] // 8)})"
                                               for n in taps)]
    return "\n".join(lines) + "\n", {n: found[f"t{n}__data"] for n in taps}


def build_stream(verilog, top, build_root, *, waves=False, opt=CXX_OPT, train=None, threads=1,
                 log=None):
    """Build the harness of a stream design (one or more input streams NAME, the output stream
    `o`, and taps `t<n>` of `data` and `fire`): module `top` of the Verilog text `verilog`.
    `train`, (beats, in_bits, out_bits, expect) as `run_stream` takes them, makes a
    profile-guided build profiled on that run; `threads` > 1 lets Verilator split the design
    into that many threads. Returns (binary, {tap number: data bits})."""
    text = verilog.encode() if isinstance(verilog, str) else verilog
    header, taps = _stream_header(text, top)
    profile = None if train is None else (
        lambda binary: run_stream(binary, train[0], train[1], train[2], expect=train[3]))
    binary = _build("stream", text, top, header.encode(), "stream_main.cpp", build_root,
                    waves=waves, opt=opt, train=profile, threads=threads, log=log)
    return binary, taps


def run_stream(binary, beats, in_bits, out_bits, *, expect, taps=None, in_pause=0.0,
               out_pause=0.0, seed=1, budget=1_000_000_000, waves=None, waves_window=None,
               timeout=None):
    """Stream `beats` (payload integers of `in_bits`) into the design of `binary` until
    `expect` output beats have come; for a design of several input streams, `beats` and
    `in_bits` are {stream name: ...}, each stream paused on its own. Returns (report,
    [(cycle, payload)] of the output, {tap: [(cycle, data)]} for the taps given as {number:
    bits})."""
    if not isinstance(beats, dict):
        beats, in_bits = {None: beats}, {None: in_bits}
    out_bytes = -(-out_bits // 8)
    with tempfile.TemporaryDirectory(prefix="harness-") as tmp:
        tmp = Path(tmp)
        cmd = [str(binary)]
        for name, stream in beats.items():
            nbytes = -(-in_bits[name] // 8)
            path = tmp / f"in-{name or 'i'}.bin"
            path.write_bytes(b"".join(int(b).to_bytes(nbytes, "little") for b in stream))
            cmd += ["--in", str(path) if name is None else f"{name}={path}"]
        cmd += ["--out", str(tmp / "out.bin"),
                "--expect", str(expect), "--in-pause", str(in_pause), "--out-pause",
                str(out_pause), "--seed", str(seed), "--budget", str(budget), "--report",
                str(tmp / "report.json"), "--quiet"]
        if taps:
            cmd += ["--taps", str(tmp)]
        if waves is not None:
            cmd += ["--waves", str(waves)]
            if waves_window is not None:
                cmd += ["--waves-from", str(int(waves_window[0])),
                        "--waves-to", str(int(waves_window[1]))]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode not in (0, 1) or not (tmp / "report.json").exists():
            raise HarnessError(f"{Path(binary).name} exited with {result.returncode}: "
                               f"{result.stderr.strip()}")
        report = json.loads((tmp / "report.json").read_text())

        def records(path, nbytes):
            data = path.read_bytes()
            size = 8 + nbytes
            return [(int.from_bytes(data[k:k + 8], "little"),
                     int.from_bytes(data[k + 8:k + size], "little"))
                    for k in range(0, len(data), size)]

        out = records(tmp / "out.bin", out_bytes)
        tapped = {n: records(tmp / f"t{n}.bin", -(-bits // 8)) for n, bits in (taps or {}).items()}
        return report, out, tapped


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
             waves_window=None, progress=None, progress_every=1_000_000, timeout=None,
             interrupts=None):
    """Run `binary` (from `build_core`) on each memory image in `memories` in turn, without a
    reset between them; returns one `CoreRun` per memory that ran (a run that fails ends the
    list). `waves` names an FST file (the binary must be built with waves), `waves_window` a
    (first, last) cycle pair to limit it to. `progress(run, cycles, finished)`, if given, is
    called every `progress_every` cycles of a run and when a run ends. `interrupts`: one
    (cycle, "hard" | "soft") or None per memory: that run is interrupted so many cycles after
    its start, the core reset, and run again from its memory image (its report's
    "interrupt" says how it went; "ended": "hang" when the core did not come back)."""
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
            if interrupts is not None and interrupts[n] is not None:
                cycle, kind = interrupts[n]
                cmd += ["--interrupt", str(int(cycle)), kind]
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
        return [CoreRun(r, (tmp / f"out{n}.bin").read_bytes()
                        if (tmp / f"out{n}.bin").exists() else b"")
                for n, r in enumerate(reports)]


def clean(build_root):
    """Remove every harness build under `build_root`."""
    for pattern in ("core-*", "stream-*"):
        for d in Path(build_root).glob(pattern):
            shutil.rmtree(d, ignore_errors=True)
