"""Co-simulation flow: export golden traces, generate Verilog, build it, run cocotb tests."""

import json
import sys
from pathlib import Path

from gen.verilog import to_verilog
from hw.lif import LIFArray
from sw.export import export_lif_bundle

from . import icarus
from .verilator import build

__all__ = ["prepare_lif", "prepare_sae", "prepare_sdsa", "prepare_shortcut", "run_cocotb",
           "read_report", "CosimFailure", "REPO_ROOT", "cosim_main"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def prepare_lif(config, workdir, *, samples=3, seed=0, name="lif"):
    """Export a LIF bundle and its Verilog into `workdir`; return (bundle, verilog) paths."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bundle = workdir / "bundle"
    export_lif_bundle(bundle, config, samples=samples, seed=seed)
    verilog = workdir / f"{name}.v"
    verilog.write_text(to_verilog(LIFArray(config), name))
    return bundle, verilog


def run_cocotb(verilog, *, toplevel, module, testcase=None, test_dir, env, build_root,
               log_file=None, waves=None, simulator=None):
    """Build `verilog` (cached) and run the cocotb tests of `module` on it. `waves` names an
    FST file to dump every signal into (a build with tracing, kept beside the plain one).
    `simulator` is one of `sim.icarus.SIMULATORS`; by default SPIKEGEN_SIMULATOR names it
    (Verilator when unset).

    Under pytest a failing cocotb test fails the calling test; otherwise a failure exits.
    Returns the build folder.
    """
    from cocotb_tools.runner import get_runner

    simulator = simulator or icarus.simulator_from_env()
    if simulator == "verilator":
        build_dir = build(verilog, toplevel, build_root, waves=waves is not None)
        runner = get_runner("verilator")
        args = {"waves": waves is not None,
                "test_args": [] if waves is None else ["--trace-file",
                                                       str(Path(waves).resolve())]}
    else:
        generation = simulator.split("-", 1)[1]
        build_dir = icarus.build(verilog, toplevel, build_root, generation,
                                 waves=waves is not None)
        runner = get_runner("icarus")
        args = {"waves": waves is not None,
                "plusargs": [] if waves is None else [f"+dumpfile_path={Path(waves).resolve()}"]}
    test_dir = Path(test_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    results = runner.test(
        test_module=module,
        hdl_toplevel=toplevel,
        hdl_toplevel_lang="verilog",
        testcase=testcase,
        build_dir=build_dir,
        test_dir=test_dir,
        extra_env={"SPIKEGEN_SIMULATOR": simulator, **{k: str(v) for k, v in env.items()}},
        log_file=log_file,
        **args,
    )
    from cocotb_tools.check_results import get_results

    tests, failed = get_results(results)
    if tests == 0 or failed:
        where = f"; see {log_file}" if log_file else ""
        raise CosimFailure(f"{failed} of {tests} cocotb tests of {module} failed on "
                           f"{simulator}{where}")
    return build_dir


class CosimFailure(RuntimeError):
    """A co-simulation test failed (the simulator log says which beat diverged)."""


def read_report(path):
    with open(path) as f:
        return json.load(f)


def prepare_sae(config, workdir, *, densities, frames=2, seed=0, name="sae"):
    """Export one SAE bundle per input density (same weights) and the Verilog into `workdir`.

    Spikes (`in_bits == 1`) are Bernoulli spikes of the density; multi-bit inputs have that
    fraction of nonzero values, uniform over the nonzero values of the configuration's range
    (`sw.export.random_sae_inputs`). Returns ({density: bundle path}, verilog path).
    """
    from hw.sae import SpikeAccumulator
    from spec.sae import SAEParams
    from sw.export import export_sae_bundle

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    params = SAEParams.seeded(config, seed)
    bundles = {}
    for n, density in enumerate(densities):
        bundles[density] = workdir / f"bundle-d{density}"
        export_sae_bundle(bundles[density], config, params=params, frames=frames,
                          density=density, seed=seed + 1 + n)
    verilog = workdir / f"{name}.v"
    verilog.write_text(to_verilog(SpikeAccumulator(config, params), name))
    return bundles, verilog


def prepare_sdsa(config, workdir, *, densities, samples=2, seed=0, name="sdsa"):
    """Export one SDSA bundle per Q/K/V density and the Verilog into `workdir`.

    Returns ({density: bundle path}, verilog path).
    """
    from hw.sdsa import sdsa_unit
    from sw.export import export_sdsa_bundle

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bundles = {}
    for n, density in enumerate(densities):
        bundles[density] = workdir / f"bundle-d{density}"
        export_sdsa_bundle(bundles[density], config, samples=samples, density=density,
                           seed=seed + 10 * n)
    verilog = workdir / f"{name}.v"
    verilog.write_text(to_verilog(sdsa_unit(config), name))
    return bundles, verilog


def prepare_shortcut(config, workdir, *, spreads, frames=2, seed=0, name="shortcut"):
    """Export one shortcut bundle per value spread (same shifts and biases) and the Verilog into
    `workdir`. Returns ({spread: bundle path}, verilog path)."""
    from hw.shortcut import Shortcut
    from spec.shortcut import ShortcutParams
    from sw.export import export_shortcut_bundle

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    params = ShortcutParams.seeded(config, seed)
    bundles = {}
    for n, spread in enumerate(spreads):
        bundles[spread] = workdir / f"bundle-s{spread}"
        export_shortcut_bundle(bundles[spread], config, params=params, frames=frames,
                               spread=spread, seed=seed + 1 + n)
    verilog = workdir / f"{name}.v"
    verilog.write_text(to_verilog(Shortcut(config, params), name))
    return bundles, verilog


def cosim_main(prog, main):
    """`main` for `spec.cli.run_main` with a failed co-simulation as one line and exit 1."""
    def wrapped(argv=None):
        try:
            return main(argv)
        except CosimFailure as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 1
    return wrapped
