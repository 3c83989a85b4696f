"""Checkpoints of the float model: written by `sw.train`, read by every command that takes
`--checkpoint` (`sw.quant`, `sw.export`, `sw.metrics`, `sim.demo`).

A checkpoint is PyTorch's zip format holding one dictionary: `format`, `version`, `config` (the
`ModelConfig` as plain data), `state_dict` (the float weights) and a few optional training
results (`dataset`, `accuracy`, `history`, ...).

Reading never runs code from the file: the zip archive is checked first (every member's CRC),
then `torch.load(..., weights_only=True)` unpickles it with PyTorch's restricted unpickler, which
builds tensors and plain data only and refuses every other object. Then the structure is
validated before anything is built from it: the format and version, every configuration field
(type and range; unknown keys refused), and every tensor's name, shape and dtype against the
model that configuration describes (built on PyTorch's `meta` device, so a configuration cannot
make it allocate memory). Every problem is one `UsageError` line naming the file.
"""

import io
import math
import pickle
import zipfile
from dataclasses import asdict, fields
from pathlib import Path

import torch

from spec.cli import fail
from spec.yamlio import atomic_write_bytes

from .model import MetaSpikeFormer, ModelConfig, StageSpec

__all__ = ["FORMAT", "VERSION", "save_checkpoint", "load_checkpoint", "validate_checkpoint"]

FORMAT = "spikegen-checkpoint"
VERSION = 1

#: (type, smallest, largest) of every configuration field. The ranges hold the paper's models
#: (up to 960 channels, 224 x 224 images, 1,000 classes) with room to spare.
_MODEL_FIELDS = {
    "heads": (int, 1, 64),
    "mlp_ratio": (int, 1, 16),
    "in_channels": (int, 1, 64),
    "num_classes": (int, 1, 100_000),
    "image_size": (int, 1, 1024),
    "timesteps": (int, 1, 16),
    "sdsa_variant": (int, 1, 4),
}
_STAGE_FIELDS = {
    "dim": (int, 1, 4096),
    "blocks": (int, 0, 64),
    "kernel": (int, 1, 15),
    "stride": (int, 1, 8),
    "padding": (int, 0, 7),
}
_MAX_STAGES = 8
_STAGE_KINDS = ("conv", "transformer")

#: Optional training results at the top level and their types.
_RESULTS = {
    "dataset": str,
    "accuracy": float,
    "history": list,
    "epochs": int,
    "accuracy_t4_before_finetune": float,
    "history_t4": list,
}
_REQUIRED = ("format", "version", "config", "state_dict")


def save_checkpoint(path, model, extra):
    """Write the model's configuration, weights and `extra` (training results, see
    `_RESULTS`) to `path`, atomically."""
    unknown = sorted(set(extra) - set(_RESULTS))
    if unknown:
        raise ValueError(f"unknown checkpoint fields: {', '.join(unknown)}")
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "config": asdict(model.config),
                "state_dict": model.state_dict(), **extra}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def _read_archive(path, src):
    """Check the file as a zip archive (PyTorch's format) before PyTorch reads it."""
    if not path.exists():
        fail(f"checkpoint {src} does not exist")
    if path.is_dir():
        fail(f"checkpoint {src} is a folder, not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        fail(f"checkpoint {src} cannot be read: {exc.strerror}")
    if not head:
        fail(f"checkpoint {src} is empty")
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            fail(f"checkpoint {src} is truncated or corrupt: its zip directory is missing")
        fail(f"checkpoint {src} is not a PyTorch checkpoint (a zip archive); refused unread")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        fail(f"checkpoint {src} is corrupt: {exc}")
    if bad is not None:
        fail(f"checkpoint {src} is corrupt: member {bad!r} fails its checksum")


def _load(path, src):
    _read_archive(path, src)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        fail(f"checkpoint {src} holds Python objects other than tensors and plain data; "
             f"refused without loading them (loading could run code)")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"checkpoint {src} cannot be read: {first}")


def _show(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_int(src, where, value, lo, hi):
    if type(value) is not int or not lo <= value <= hi:
        fail(f"checkpoint {src}: {where} must be an integer from {lo} to {hi}, not "
             f"{_show(value)}")


def _check_keys(src, where, data, allowed, required):
    if not isinstance(data, dict):
        fail(f"checkpoint {src}: {where} must be a mapping, not {type(data).__name__}")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        fail(f"checkpoint {src}: {where} has an unknown field {_show(unknown[0])}")
    missing = [k for k in required if k not in data]
    if missing:
        fail(f"checkpoint {src}: {where} lacks {missing[0]!r}")


def _config(src, data):
    """The validated `ModelConfig` of a checkpoint's `config` mapping."""
    names = [f.name for f in fields(ModelConfig)]
    _check_keys(src, "config", data, names, names)
    stages = data["stages"]
    if not isinstance(stages, list | tuple) or not 1 <= len(stages) <= _MAX_STAGES:
        fail(f"checkpoint {src}: config.stages must be a list of 1 to {_MAX_STAGES} stages, "
             f"not {_show(stages)}")
    stage_names = [f.name for f in fields(StageSpec)]
    for n, stage in enumerate(stages):
        where = f"config.stages[{n}]"
        _check_keys(src, where, stage, stage_names, stage_names)
        if stage["kind"] not in _STAGE_KINDS:
            fail(f"checkpoint {src}: {where}.kind must be 'conv' or 'transformer', not "
                 f"{_show(stage['kind'])}")
        for name, (_, lo, hi) in _STAGE_FIELDS.items():
            _check_int(src, f"{where}.{name}", stage[name], lo, hi)
        if stage["padding"] >= stage["kernel"]:
            fail(f"checkpoint {src}: {where}.padding ({stage['padding']}) must be below its "
                 f"kernel ({stage['kernel']})")
    for name, (_, lo, hi) in _MODEL_FIELDS.items():
        _check_int(src, f"config.{name}", data[name], lo, hi)
    size = data["image_size"]
    for n, stage in enumerate(stages):
        size = (size + 2 * stage["padding"] - stage["kernel"]) // stage["stride"] + 1
        if size < 1:
            fail(f"checkpoint {src}: config.stages[{n}] leaves no pixels of a "
                 f"{data['image_size']} x {data['image_size']} image")
    try:
        return ModelConfig(**{**data, "stages": tuple(StageSpec(**s) for s in stages)})
    except ValueError as exc:
        fail(f"checkpoint {src}: {exc}")


def _check_results(src, data):
    for name, kind in _RESULTS.items():
        if name not in data:
            continue
        value = data[name]
        ok = type(value) is kind
        if kind is float:
            ok = type(value) is float and math.isfinite(value)
        if kind is list:
            ok = all(type(v) is float and math.isfinite(v) for v in value)
        if not ok:
            fail(f"checkpoint {src}: {name} must be {_RESULT_WORDS[kind]}, not {_show(value)}")


_RESULT_WORDS = {str: "a string", float: "a finite number", int: "an integer",
                 list: "a list of finite numbers"}


def _check_state(src, state, config):
    """Every tensor's name, shape and dtype against the model `config` describes."""
    if not isinstance(state, dict):
        fail(f"checkpoint {src}: state_dict must be a mapping, not {type(state).__name__}")
    with torch.device("meta"):
        wanted = MetaSpikeFormer(config).state_dict()
    for name, value in state.items():
        if name not in wanted:
            fail(f"checkpoint {src}: state_dict has a tensor its configuration does not: "
                 f"{_show(name)}")
        want = wanted[name]
        if not isinstance(value, torch.Tensor):
            fail(f"checkpoint {src}: state_dict[{name!r}] must be a tensor, not "
                 f"{type(value).__name__}")
        if tuple(value.shape) != tuple(want.shape):
            fail(f"checkpoint {src}: state_dict[{name!r}] has shape {tuple(value.shape)}; "
                 f"its configuration needs {tuple(want.shape)}")
        if value.dtype != want.dtype:
            fail(f"checkpoint {src}: state_dict[{name!r}] is {value.dtype}; its configuration "
                 f"needs {want.dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            fail(f"checkpoint {src}: state_dict[{name!r}] holds a NaN or infinite value")
    missing = [name for name in wanted if name not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        fail(f"checkpoint {src}: state_dict lacks {missing[0]!r}{more}")


def validate_checkpoint(data, src):
    """The `ModelConfig` of a loaded checkpoint dictionary, after checking all of it; `src`
    names the file in messages."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        fail(f"checkpoint {src} is not a spikegen checkpoint")
    _check_keys(src, "the checkpoint", data, (*_REQUIRED, *_RESULTS), _REQUIRED)
    if data["version"] != VERSION:
        fail(f"checkpoint {src} has version {_show(data['version'])}; this tool reads "
             f"version {VERSION}")
    config = _config(src, data["config"])
    _check_results(src, data)
    _check_state(src, data["state_dict"], config)
    return config


def load_checkpoint(path):
    """(model, checkpoint dict) from `save_checkpoint`'s file, after validating all of it;
    `fail`s with one line on anything else."""
    path = Path(path)
    src = repr(str(path))
    data = _load(path, src)
    config = validate_checkpoint(data, src)
    model = MetaSpikeFormer(config)
    model.load_state_dict(data["state_dict"])
    return model, data
