"""`python -m gen.core`: the overlay core's Verilog from a configuration; reproducible bytes,
no machine paths, a report, one message and exit 2 for what it cannot build, no multiplier
before technology mapping."""

import json

import pytest

from fpga.yosys import multiplier_cells, synth_cells
from gen.core import main
from gen.program import core_from_args
from hw.core import check_config
from spec.cli import run_main
from spec.core import CoreConfig
from spec.program import core_fingerprint


@pytest.fixture(scope="module")
def default_core(tmp_path_factory):
    path = tmp_path_factory.mktemp("core") / "core.v"
    report = path.with_suffix(".json")
    assert run_main("gen.core", main, ["-o", str(path), "--report", str(report)]) == 0
    return path.read_text(), json.loads(report.read_text())


def test_default_core_is_reproducible_and_reported(default_core, tmp_path):
    text, report = default_core
    again = tmp_path / "again.v"
    assert run_main("gen.core", main, ["-o", str(again)]) == 0
    assert again.read_text() == text
    assert "module overlay_core" in text and "/work/" not in text and "/home/" not in text
    assert report["core_id"] == f"{core_fingerprint(CoreConfig()):#010x}"
    assert report["operations"] == ["conv_lif", "conv_stream", "depthwise", "lif", "sdsa",
                                    "head"]
    assert {m["name"] for m in report["memories"]} >= {"weights", "accumulators"}


def test_core_has_no_multiplier(default_core):
    cells = synth_cells(default_core[0], "overlay_core", "coarse")
    assert multiplier_cells(cells) == {}
    assert cells.get("$add", 0) > 0


@pytest.mark.parametrize("argv, adapted", [
    (["--set", "axi_data_bits=128"],
     {"lanes": (16, "the default 8 is below the 16 bytes of a 128-bit AXI beat")}),
    (["--set", "axi_data_bits=32"],
     {"max_head_dim": (32, "the default 64 is above the 32 bits of an AXI beat")}),
])
def test_defaults_that_cannot_work_adapt(argv, adapted, capsys):
    """A field the flags leave out takes the value the others need, said on stderr (one line
    each), and the core builds (its RTL checks pass); the same field set explicitly is
    refused (test_bad_configurations...)."""
    config = core_from_args(None, argv[1::2], prog="gen.core")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gen.core: {key} {value} ({reason}; --set {key}=N sets it)"
                   for key, (value, reason) in adapted.items()]
    assert {key: getattr(config, key) for key in adapted} == \
        {k: v for k, (v, _) in adapted.items()}
    check_config(config)


def test_an_adapted_core_is_generated(tmp_path, capsys):
    """The whole command with an adapted default: Verilog and a report of the adapted core."""
    report = tmp_path / "core.json"
    assert run_main("gen.core", main, ["--set", "axi_data_bits=32", "-o",
                                       str(tmp_path / "core.v"), "--report", str(report)]) == 0
    assert capsys.readouterr().err.startswith("gen.core: max_head_dim 32 (")
    assert json.loads(report.read_text())["config"]["max_head_dim"] == 32
    assert "module overlay_core" in (tmp_path / "core.v").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--set", "lanes=3"], "gen.core: error: lanes must be one of 1, 2, 4, 8, 16, 32, not 3"),
    (["--set", "lanes=4", "--set", "axi_data_bits=32", "--set", "max_head_dim=32"],
     "gen.core: error: the core packs a group's spikes in whole bytes: lanes must be at least "
     "8, not 4"),
    (["--set", "axi_data_bits=128", "--set", "lanes=8"],
     "gen.core: error: lanes (8) must be at least the bytes of an AXI beat (16, axi_data_bits "
     "128): a word of lanes values of 1 byte or more fills whole beats"),
    (["--set", "max_stride=3"],
     "gen.core: error: the core's geometry steps by shifts: max_stride must be 1 or 2, not 3"),
    (["--set", "lanes"], "gen.core: error: --set takes KEY=VALUE, not 'lanes'"),
    (["--config", "missing.yaml"], None),
])
def test_bad_configurations_exit_2_and_write_nothing(argv, message, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "core.v"
    assert run_main("gen.core", main, argv + ["-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    if message is not None:
        assert err[0] == message
    else:
        assert err[0].startswith("gen.core: error:") and "missing.yaml" in err[0]
    assert not out.exists()
