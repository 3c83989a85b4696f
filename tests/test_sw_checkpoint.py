"""Checkpoints are loaded without running anything from the file and validated before use:
a malicious pickle is refused by every command that takes one, and every malformed checkpoint
gets one pinned message, exit status 2 and nothing written."""

import os
import pickle
import zipfile

import pytest
import torch

from sim.demo import main as demo_main
from spec.cli import run_main
from sw.checkpoint import load_checkpoint, save_checkpoint
from sw.export import main as export_main
from sw.metrics import main as metrics_main
from sw.model import MetaSpikeFormer, digits_config
from sw.quant import main as quant_main


def small_model(seed=1, **kwargs):
    torch.manual_seed(seed)
    return MetaSpikeFormer(digits_config(dims=(8, 16), heads=2, **kwargs))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    save_checkpoint(path, small_model(), {"dataset": "digits", "accuracy": 0.5,
                                          "history": [0.25, 0.5], "epochs": 2})
    return path


def contents(path):
    return torch.load(path, weights_only=True)


class Evil:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip(tmp_path):
    model = small_model(timesteps=2)
    save_checkpoint(tmp_path / "c.pt", model, {"accuracy": 0.5})
    loaded, data = load_checkpoint(tmp_path / "c.pt")
    assert data["accuracy"] == 0.5 and loaded.config == model.config
    x = torch.rand(3, 1, 8, 8)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_the_shipped_checkpoint_is_valid():
    model, data = load_checkpoint("models/digits.pt")
    assert data["dataset"] == "digits" and model.config.stages[1].dim == 128


def test_save_refuses_unknown_fields(tmp_path):
    with pytest.raises(ValueError, match="unknown checkpoint fields: optimizer"):
        save_checkpoint(tmp_path / "c.pt", small_model(), {"optimizer": {}})
    assert list(tmp_path.iterdir()) == []


COMMANDS = {
    "sw.quant": (quant_main, []),
    "sw.export": (export_main, ["--out", "{d}/net"]),
    "sw.metrics": (metrics_main, []),
    "sim.demo": (demo_main, ["--out", "{d}/demo"]),
}


def run(capsys, prog, path, folder):
    main, extra = COMMANDS[prog]
    status = run_main(prog, main, ["--checkpoint", str(path)]
                      + [a.format(d=folder) for a in extra])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_a_malicious_checkpoint_runs_nothing(capsys, tmp_path, prog):
    marker = tmp_path / "PWNED"
    work = tmp_path / "work"
    work.mkdir()
    path = work / "evil.pt"
    torch.save({"format": "spikegen-checkpoint", "x": Evil(marker)}, path)
    # the file is what the issue describes: unrestricted unpickling runs the command
    assert not marker.exists()
    status, out, err = run(capsys, prog, path, work)
    assert (status, out) == (2, "")
    assert err == (f"{prog}: error: checkpoint {str(path)!r} holds Python objects other than "
                   f"tensors and plain data; refused without loading them (loading could run "
                   f"code)\n")
    assert not marker.exists()
    assert sorted(p.name for p in work.iterdir()) == ["evil.pt"]


def test_the_malicious_file_does_run_code_when_unpickled_freely(tmp_path):
    """Can-fail check of the test above: the same file, loaded the unsafe way, does create the
    marker; so its absence above means the loader refused it."""
    marker = tmp_path / "PWNED"
    torch.save({"x": Evil(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def _edit(good, tmp_path, change):
    data = contents(good)
    change(data)
    path = tmp_path / "c.pt"
    torch.save(data, path)
    return path


def _set(key, value):
    def change(data):
        data[key] = value
    return change


def _drop(key):
    return lambda data: data.pop(key)


def _config(key, value):
    def change(data):
        data["config"][key] = value
    return change


def _stage(n, key, value):
    def change(data):
        data["config"]["stages"][n][key] = value
    return change


def _state(change_state):
    return lambda data: change_state(data["state_dict"])


def _extra_tensor(state):
    state["layers.0.extra"] = torch.zeros(3)


def _wrong_shape(state):
    state["head.weight"] = torch.zeros(10, 8)


def _wrong_dtype(state):
    state["head.weight"] = state["head.weight"].double()


def _nan(state):
    state["head.bias"][3] = float("nan")


def _missing(state):
    del state["head.bias"]


def _not_tensor(state):
    state["head.bias"] = [0.0] * 10


# (case, change, message after "checkpoint 'P'")
CASES = [
    ("format", _drop("format"), " is not a spikegen checkpoint"),
    ("foreign-format", _set("format", "other"), " is not a spikegen checkpoint"),
    ("version", _drop("version"), ": the checkpoint lacks 'version'"),
    ("config", _drop("config"), ": the checkpoint lacks 'config'"),
    ("state_dict", _drop("state_dict"), ": the checkpoint lacks 'state_dict'"),
    ("new-version", _set("version", 2), " has version 2; this tool reads version 1"),
    ("unknown-key", _set("optimizer", {}), ": the checkpoint has an unknown field 'optimizer'"),
    ("config-type", _set("config", [1, 2]), ": config must be a mapping, not list"),
    ("config-unknown", _config("dropout", 0.1), ": config has an unknown field 'dropout'"),
    ("config-missing", lambda d: d["config"].pop("heads"), ": config lacks 'heads'"),
    ("heads-str", _config("heads", "2"),
     ": config.heads must be an integer from 1 to 64, not '2'"),
    ("heads-bool", _config("heads", True),
     ": config.heads must be an integer from 1 to 64, not True"),
    ("heads-float", _config("heads", 2.0),
     ": config.heads must be an integer from 1 to 64, not 2.0"),
    ("heads-divide", _config("heads", 3),
     ": stage 1: heads (3) must divide its channels (16)"),
    ("timesteps-0", _config("timesteps", 0),
     ": config.timesteps must be an integer from 1 to 16, not 0"),
    ("huge-classes", _config("num_classes", 10**12),
     ": config.num_classes must be an integer from 1 to 100000, not 1000000000000"),
    ("stages-empty", _config("stages", []),
     ": config.stages must be a list of 1 to 8 stages, not []"),
    ("stages-type", _config("stages", "conv"),
     ": config.stages must be a list of 1 to 8 stages, not 'conv'"),
    ("stage-kind", _stage(0, "kind", "mlp"),
     ": config.stages[0].kind must be 'conv' or 'transformer', not 'mlp'"),
    ("stage-huge-dim", _stage(1, "dim", 1 << 40),
     ": config.stages[1].dim must be an integer from 1 to 4096, not 1099511627776"),
    ("stage-unknown", _stage(0, "groups", 2), ": config.stages[0] has an unknown field 'groups'"),
    ("stage-padding", _stage(0, "padding", 3),
     ": config.stages[0].padding (3) must be below its kernel (3)"),
    ("stage-no-pixels", _stage(0, "kernel", 15),
     ": config.stages[0] leaves no pixels of a 8 x 8 image"),
    ("accuracy-type", _set("accuracy", "high"), ": accuracy must be a finite number, not 'high'"),
    ("history-type", _set("history", [0.5, None]),
     ": history must be a list of finite numbers, not [0.5, None]"),
    ("state-type", _set("state_dict", 3), ": state_dict must be a mapping, not int"),
    ("extra-tensor", _state(_extra_tensor),
     ": state_dict has a tensor its configuration does not: 'layers.0.extra'"),
    ("wrong-shape", _state(_wrong_shape),
     ": state_dict['head.weight'] has shape (10, 8); its configuration needs (10, 16)"),
    ("wrong-dtype", _state(_wrong_dtype),
     ": state_dict['head.weight'] is torch.float64; its configuration needs torch.float32"),
    ("nan", _state(_nan), ": state_dict['head.bias'] holds a NaN or infinite value"),
    ("missing-tensor", _state(_missing), ": state_dict lacks 'head.bias'"),
    ("not-tensor", _state(_not_tensor), ": state_dict['head.bias'] must be a tensor, not list"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_checkpoints(capsys, tmp_path, good, change, message):
    path = _edit(good, tmp_path, change)
    status, out, err = run(capsys, "sw.quant", path, tmp_path)
    assert (status, out) == (2, "")
    assert err == f"sw.quant: error: checkpoint {str(path)!r}{message}\n"


def test_the_edits_alone_load(tmp_path, good):
    """Can-fail check of the cases above: the same round trip with no change is accepted."""
    path = _edit(good, tmp_path, lambda data: None)
    model, data = load_checkpoint(path)
    assert data["history"] == [0.25, 0.5] and model.config.stages[1].dim == 16


def _truncated(path, good):
    data = good.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _bad_crc(path, good):
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _empty(path, good):
    path.write_bytes(b"")


def _folder(path, good):
    path.mkdir()


def _foreign_pickle(path, good):
    path.write_bytes(pickle.dumps({"format": "spikegen-checkpoint", "config": {}}))


def _text(path, good):
    path.write_text("not a checkpoint\n")


FILES = [
    ("missing", lambda path, good: None, " does not exist"),
    ("empty", _empty, " is empty"),
    ("folder", _folder, " is a folder, not a file"),
    ("truncated", _truncated, " is truncated or corrupt: its zip directory is missing"),
    ("bad-crc", _bad_crc, " is corrupt: member '{member}' fails its checksum"),
    ("foreign-pickle", _foreign_pickle,
     " is not a PyTorch checkpoint (a zip archive); refused unread"),
    ("text", _text, " is not a PyTorch checkpoint (a zip archive); refused unread"),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in FILES], ids=[c[0] for c in FILES])
@pytest.mark.parametrize("prog", ["sw.quant", "sw.metrics"])
def test_bad_files(capsys, tmp_path, good, prog, make, message):
    path = tmp_path / "c.pt"
    make(path, good)
    with zipfile.ZipFile(good) as zf:
        member = max(zf.infolist(), key=lambda i: i.file_size).filename
    status, out, err = run(capsys, prog, path, tmp_path)
    assert (status, out) == (2, "")
    assert err == f"{prog}: error: checkpoint {str(path)!r}{message.format(member=member)}\n"


def test_bad_crc_case_changes_a_byte(tmp_path, good):
    """Can-fail check of the checksum case: the edited file differs from the good one."""
    _bad_crc(tmp_path / "c.pt", good)
    assert (tmp_path / "c.pt").read_bytes() != good.read_bytes()
    assert len((tmp_path / "c.pt").read_bytes()) == len(good.read_bytes())
