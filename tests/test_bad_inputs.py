"""docs/bad-inputs.md is a test: every row runs its command line in-process on the files its
placeholders name, and must end with exit status 2, exactly one line on stderr (the row's
message after `<command>: error: `), nothing on stdout and nothing written. The checker can
fail: a row with a changed message, status or an extra line is caught."""

import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from spec.cli import run_main

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "bad-inputs.md"
ROW = re.compile(r"^\| `((?:[A-Z_]+=\S+ )*python -m [^`]+)` \| `(.+)` \| (\d+) \|$")


def rows():
    found = [ROW.match(line) for line in DOC.read_text().splitlines()]
    return [(m.group(1), m.group(2), int(m.group(3))) for m in found if m]


class _Evil:
    """Pickled into a checkpoint: loading it would call `print` (harmless, but code)."""

    def __reduce__(self):
        return (print, ("a checkpoint ran code",))


def _lif_graph(extra=None, tau=3e-4):
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type={"input": np.array([64])}),
             "fc1": nir.Affine(weight=rng.normal(size=(10, 64)), bias=np.zeros(10)),
             "lif1": nir.LIF(tau=np.full(10, tau), r=np.full(10, tau / 1e-4),
                             v_leak=np.zeros(10), v_threshold=np.ones(10),
                             v_reset=np.zeros(10))}
    if extra is not None:
        nodes["extra"] = extra
    nodes["output"] = nir.Output(output_type={"output": np.array([10])})
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:], strict=False)),
                        type_check=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-inputs")
    (base / "garbage.txt").write_text("hello\n")
    (base / "dir").mkdir()
    (base / "core_unknown.yaml").write_text("lanes: 8\nfrobs: 3\n")
    (base / "core_bad.yaml").write_text("lanes: [1, 2\n")
    (base / "bundle_bad").mkdir()
    (base / "bundle_bad" / "config.yaml").write_text("unit: lif\n")
    torch.save({"model": _Evil()}, base / "evil.pt")
    nir.write(base / "tau.nir", _lif_graph())
    nir.write(base / "li.nir", _lif_graph(nir.LI(tau=np.ones(10), r=np.ones(10),
                                                 v_leak=np.zeros(10)), tau=2e-4))
    return {"garbage": base / "garbage.txt", "missing": base / "missing" / "x",
            "dir": base / "dir", "evil": base / "evil.pt", "bundle_bad": base / "bundle_bad",
            "core_unknown": base / "core_unknown.yaml", "core_bad": base / "core_bad.yaml",
            "nir_tau": base / "tau.nir", "nir_li": base / "li.nir"}


def run_row(command, message, status, paths, tmp):
    """Run one row; AssertionError unless it ends as the row says."""
    values = {k: str(v) for k, v in {**paths, "tmp": tmp}.items()}
    argv = shlex.split(command.format(**values))
    env = dict(word.split("=", 1) for word in argv[:argv.index("python")])
    argv = argv[len(env):]
    assert argv[:2] == ["python", "-m"], command
    prog = argv[2]
    main = importlib.import_module(prog).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        got = run_main(prog, main, argv[3:])
    expected = f"{prog}: error: {message.format(**values)}"
    lines = err.getvalue().splitlines()
    assert got == status, (command, got, err.getvalue())
    assert out.getvalue() == "", (command, out.getvalue())
    assert len(lines) == 1, (command, lines)
    if expected.endswith(" ..."):
        assert lines[0].startswith(expected[:-4]), (command, lines[0], expected)
    else:
        assert lines[0] == expected, (command, lines[0], expected)
    assert not any(tmp.iterdir()), (command, sorted(tmp.iterdir()))


def test_the_catalogue_has_forty_rows_across_the_command_lines():
    found = rows()
    assert len(found) >= 40
    progs = {c.split("python -m ")[1].split()[0] for c, _, _ in found}
    assert {"gen.lif", "gen.sae", "gen.sdsa", "gen.core", "gen.network", "gen.program",
            "sw.train", "sw.quant", "sw.export", "sw.nirio", "sw.nir_export", "sim.run",
            "sim.demo", "fpga.build", "fpga.sweep", "fpga.paths", "fpga.area"} <= progs


@pytest.mark.parametrize("command, message, status", rows(), ids=lambda v: str(v)[:60])
def test_row(command, message, status, files, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)                   # rows name models/digits.pt as the README does
    run_row(command, message, status, files, tmp_path)


@pytest.mark.parametrize("change", ["message", "status", "prefix"])
def test_the_checker_can_fail(change, files, tmp_path):
    command, message, status = "python -m gen.lif --neurons 0", \
        "neurons must be at least 1, not 0", 2
    run_row(command, message, status, files, tmp_path)
    if change == "message":
        message = message.replace("1", "2")
    elif change == "status":
        status = 1
    else:
        message = "neurons must be at most ..."
    with pytest.raises(AssertionError):
        run_row(command, message, status, files, tmp_path)
