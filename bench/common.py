"""What the benchmarks share: one unstalled co-simulation run and its figures."""

import time

from sim.cosim import read_report, run_cocotb

__all__ = ["nostall_run"]


def nostall_run(unit, verilog, bundle, work, build_root):
    """Run `tb/cocotb_<unit>.py`'s no-stall test of `verilog` on `bundle` (logs and the report
    in the folder `work`); return its report plus `wall_s`, `ratio` (measured / ideal) and
    `sim_cycles_per_s`."""
    report = work / "report.json"
    t0 = time.perf_counter()
    run_cocotb(verilog, toplevel=unit, module=f"tb.cocotb_{unit}",
               testcase="test_no_stalls_matches_cycle_model", test_dir=work / "run",
               env={"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_REPORT": report},
               build_root=build_root, log_file=work / "sim.log")
    r = read_report(report)
    r.update(wall_s=round(time.perf_counter() - t0, 1),
             ratio=round(r["measured_cycles"] / r["ideal_cycles"], 4),
             sim_cycles_per_s=round(r["simulated_cycles"] / r["loop_seconds"]))
    return r
