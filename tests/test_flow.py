"""The Python API (`flow.Flow`): the README's example runs as written (in a temporary folder),
and bad requests end in one `FlowError` naming what is wrong."""

import os
import re
from pathlib import Path

import pytest
import torch

from flow import Flow, FlowError, check_predictions
from sim.harness import build_core
from spec.core import CoreConfig
from sw.model import MetaSpikeFormer, digits_config, metaspikformer

REPO = Path(__file__).resolve().parent.parent


def build_root():
    """Where tb/conftest.py's `build_root` keeps Verilator builds (SPIKEGEN_BUILD_ROOT)."""
    return Path(os.environ.get("SPIKEGEN_BUILD_ROOT", REPO / "build" / "verilator"))


def readme_example():
    """The first Python block of the README's "Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert 'Flow("out/api"' in code and "flow.cosimulate(" in code
    monkeypatch.chdir(REPO)                      # models/digits.pt, as the README runs it
    # the README's calls as written, the co-simulation on the harness tb/test_harness.py
    # builds for the same default core (with tracing; cached by content): one build less
    binary = build_core(CoreConfig(), build_root() / "harness", waves=True, opt="-O1")
    cosimulate = Flow.cosimulate
    monkeypatch.setattr(Flow, "cosimulate",
                        lambda self, *a, **k: cosimulate(self, *a, harness=binary, **k))
    out = tmp_path / "api"
    scope = {}
    exec(compile(code.replace('"out/api"', repr(str(out))), "README.md", "exec"), scope)
    report = scope["report"]
    assert {"quantize", "generate", "cosimulate"} <= set(report)
    assert report["quantize"]["int_accuracy"] > 0.9
    assert (out / "core.v").is_file() and (out / "program" / "image.bin").is_file()
    assert (out / "report.json").is_file() and (out / "cosimulate.json").is_file()
    assert "co-simulated 2 images on the overlay RTL" in capsys.readouterr().out


def test_bad_requests(tmp_path):
    with pytest.raises(FlowError, match="give one of a checkpoint, a model or a NIR graph"):
        Flow(tmp_path)
    with pytest.raises(FlowError, match="is for a model of 3 x 224 x 224 inputs"):
        Flow(tmp_path, model=metaspikformer())
    torch.manual_seed(0)
    flow = Flow(tmp_path, model=MetaSpikeFormer(digits_config()))
    with pytest.raises(FlowError, match="style must be one of overlay, spatial, not 'fpga'"):
        flow.generate("fpga")
    with pytest.raises(FlowError, match=r"images must be \(N, 1, 8, 8\), not \(2, 8, 8\)"):
        flow.predict(torch.zeros(2, 8, 8))
    with pytest.raises(FlowError, match="images must be 1 to 360 test images, not 0"):
        flow.predict(0)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_changed_prediction_is_caught():
    """The co-simulation's last check (the RTL's classes against the integer model's) fails on
    one changed class."""
    check_predictions([7, 6], [7, 6])
    with pytest.raises(FlowError, match=r"RTL predictions \[7, 6\] differ from the integer "
                                        r"model's \[7, 5\]"):
        check_predictions([7, 6], [7, 5])
