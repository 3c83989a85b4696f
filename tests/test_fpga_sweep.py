"""`fpga.sweep` on a 2-worker Dask LocalCluster with a stand-in for the build: rows in grid
order, each written as its job finishes, a failed job kept as a row without losing the others,
a rerun reusing what is done (and running a crashed job again); the Pareto picture; the units'
cycle figures; bad flags."""

import json

import pytest

from fpga import sweep as fs
from spec.cli import run_main

GRID = [(f"unit {k}", "lif", ["--neurons", str(64 << k), "--lanes", "4"], "ice40-up5k", None)
        for k in range(4)]


class StandIn:
    """A build job: row k has 100 * (k + 1) logic cells; `fail` maps an index to "fit" (a
    build that does not fit: a row with its error) or "crash" (the job raises). Each run
    leaves a file in its folder (the job is pickled to the workers: no shared state)."""

    def __init__(self, fail=None, tag="a"):
        self.fail, self.tag = dict(fail or {}), tag

    def ran(self, root):
        return sorted(int(p.parent.name[:2]) for p in root.glob(f"*/ran-{self.tag}"))

    def __call__(self, inputs, folder):
        k = int(inputs["label"].split()[1])
        if folder is not None:
            (folder / f"ran-{self.tag}").touch()
        if self.fail.get(k) == "crash":
            raise RuntimeError("worker lost")
        row = dict(inputs, seconds=0.1)
        if self.fail.get(k) == "fit":
            return dict(row, error="does not fit the iCE40 UP5K", kind="FitError")
        return dict(row, resources={"lut4": 90 * (k + 1), "logic_cells": 100 * (k + 1),
                                    "ff": 10, "carry": 1, "bram": 0, "dsp": 0},
                    fmax_mhz=50.0 + k, io="harness", multiplier_cells={}, harness=None,
                    estimate={"lut4": 1, "ff": 1, "bram": 0,
                              "error": {"lut4": None, "ff": None, "bram": None}},
                    cycles=1000 // (k + 1))


@pytest.fixture(scope="module")
def client():
    with fs.local_client(2, processes=False) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        yield c


def test_rows_in_grid_order_each_written_a_failure_kept(client, tmp_path):
    job = StandIn({1: "fit", 2: "crash"})
    lines = []
    rows = fs.sweep(GRID, tmp_path, client=client, job=job, log=lines.append)
    assert [r["label"] for r in rows] == [g[0] for g in GRID]
    assert job.ran(tmp_path) == [0, 1, 2, 3]
    assert rows[1]["kind"] == "FitError" and rows[2]["kind"] == "crash"
    assert "worker lost" in rows[2]["error"]
    assert rows[0]["resources"]["logic_cells"] == 100 and rows[3]["fmax_mhz"] == 53.0
    for n, row in enumerate(rows):
        folder = next(tmp_path.glob(f"{n:02d}-*"))
        assert json.loads((folder / fs.ROW_FILE).read_text()) == row
    assert len(lines) == 4 and any("error: does not fit" in line for line in lines)
    table = fs.markdown(rows)
    assert table.count("\n") == 2 + len(GRID)

    # a rerun reuses the finished rows (the one that did not fit too) and runs the crash again
    again = StandIn(tag="b")
    lines = []
    rows2 = fs.sweep(GRID, tmp_path, client=client, job=again, log=lines.append)
    assert again.ran(tmp_path) == [2]
    assert rows2[:2] == rows[:2] and rows2[3] == rows[3] and "error" not in rows2[2]
    assert sum("done before, reused" in line for line in lines) == 3
    # other inputs (another requested clock) are not "done"
    third = StandIn(tag="c")
    fs.sweep(GRID[:1], tmp_path, client=client, job=third, freq=120.0, log=lambda s: None)
    assert third.ran(tmp_path) == [0]


def test_serial_without_a_client(tmp_path):
    job = StandIn()
    rows = fs.sweep(GRID[:2], tmp_path, job=job, log=lambda s: None)
    assert job.ran(tmp_path) == [0, 1] and [r["label"] for r in rows] == ["unit 0", "unit 1"]


def test_pareto_front_and_picture(tmp_path):
    assert fs.pareto_front([(1, 9), (2, 5), (3, 6), (4, 1), (2, 5)]) == [0, 1, 3, 4]
    rows = [StandIn()({"label": f"unit {k}", "design": d, "target": "ecp5-25k",
                       "speed_grade": 6, "flags": [], "freq": 150.0}, None)
            for k, d in enumerate(["lif", "lif", "sdsa", "sae"])]
    rows.append(dict(rows[0], error="x"))
    path = fs.pareto_plot(rows, tmp_path / "pareto.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert fs.pareto_plot([dict(rows[0], error="x")], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_workloads_group_rows_by_what_they_compute():
    """A workload is a design and its flags but the lanes: the default grid holds each of its
    three paper-size workloads at several lanes, so that the picture has fronts to draw."""
    row = {"design": "sae", "flags": ["--mode", "conv", "--lanes", "4", "--in-lanes", "4"]}
    assert fs.workload(row) == ("sae", ("--mode", "conv"))
    assert fs._lanes(row["flags"], 16) == ["--mode", "conv", "--lanes", "16", "--in-lanes", "16"]
    groups = {}
    for label, design, flags, target, speed in fs.GRIDS["default"]:
        if target.startswith("ecp5") and speed == 6:
            groups.setdefault(fs.workload({"design": design, "flags": flags}), []).append(label)
    assert sorted(len(v) for v in groups.values()) == [2, 3, 3]


def test_unit_cycles_from_the_generators_flags():
    assert fs.unit_cycles("lif", ["--neurons", "256", "--lanes", "4", "--timesteps", "4"]) == \
        fs.gen_lif.config_from_args(fs.gen_lif.build_parser().parse_args(
            ["--neurons", "256", "--lanes", "4", "--timesteps", "4"])).cycles(1)
    assert fs.unit_cycles("sdsa", []) > 0 and fs.unit_cycles("sae", fs._SAE_SMALL) > 0
    assert fs.unit_cycles("network", []) is None


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "argument --workers: must be a whole number of 1 or more, not '0'"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "give --workers (a LocalCluster) or --scheduler, not both"),
    (["--grid", "huge"], "unknown grid 'huge' (known: small, default)"),
])
def test_bad_flags_exit_2(argv, message, capsys, tmp_path):
    assert run_main(fs.PROG, fs.main, argv + ["--out", str(tmp_path / "s")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"{fs.PROG}: error: {message}")
    assert not (tmp_path / "s").exists()
