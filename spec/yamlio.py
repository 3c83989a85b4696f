"""YAML reading and atomic file writing shared by configurations and bundles."""

import io
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from .errors import ConfigError


def read_yaml_mapping(path, *, what="configuration"):
    """Read a YAML file that must hold a mapping; raise `ConfigError` otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None
    return parse_yaml_mapping(text, source=str(path), what=what)


def _one_line(exc):
    """A YAML error as one line: what went wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def parse_yaml_mapping(text, *, source, what="configuration"):
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} file {source!r} is not valid YAML: {_one_line(exc)}") \
            from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} file {source!r} must hold a mapping, not {type(data).__name__}"
        )
    return data


def dump_yaml(data):
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def umask():
    """This process's umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes):
    """Write `data` to `path` through a temporary file and a rename: never half-written. The
    file gets the mode a plain `open()` would give it (0666 less the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode())


def atomic_write_folder(path, files):
    """Write `files` ({name: bytes}) as the folder `path`: into a temporary sibling, then
    renamed into place, replacing an existing folder whole; never half-written. The folder
    gets the mode `mkdir` would give it (not mkdtemp's 0700). Callers decide beforehand
    whether an existing `path` may be replaced."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_png(path, figure):
    """A matplotlib `figure` as a PNG at `path`, written as `atomic_write_bytes` writes, with
    no software version or date in the file (the same figure gives the same bytes)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
