"""The bundle format, version 1: what the golden model writes and generators/testbenches read.

A bundle is a folder (or a `.zip` archive of the same files at its top level) holding:

- `bundle.yaml`: the manifest: format name, format version, unit kind, the SHA-256 of every other
  file, and the name, dtype and shape of every array;
- `config.yaml`: the unit configuration (`unit: <kind>` and a `config` mapping);
- `arrays.npz`: the arrays (weights, parameters, stimuli, reference traces), NumPy format,
  no pickles.

Writing is atomic (a temporary sibling, then a rename) and reproducible (same content, same
bytes). Reading checks the format, the version, every checksum and every array against the
manifest; anything off raises `BundleError` with one clear message. See docs/bundle-format.md.

Reading trusts nothing in the files: members are read by name (an archive is never extracted,
so member paths cannot escape), symbolic links in a bundle folder are refused, no member may
exceed `MAX_MEMBER_BYTES`, and every array's header is checked against the bytes it holds
before NumPy allocates it (a declared shape cannot make the reader allocate more than the file
holds). Arrays are numbers only (`allow_pickle=False`).
"""

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BundleError, ConfigError
from .yamlio import atomic_write_bytes, atomic_write_folder, dump_yaml, parse_yaml_mapping

__all__ = ["Bundle", "read_bundle", "write_bundle", "FORMAT_NAME", "FORMAT_VERSION",
           "MAX_MEMBER_BYTES"]

FORMAT_NAME = "spikeformer-bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.yaml"
CONFIG = "config.yaml"
ARRAYS = "arrays.npz"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ALLOWED_KINDS = "biuf"
#: The largest member (manifest, configuration, arrays archive, or one array in it) a reader
#: takes: 4 GiB, ten times the int64 weights of the paper's largest model.
MAX_MEMBER_BYTES = 1 << 32


@dataclass(frozen=True)
class Bundle:
    """A bundle read into memory."""

    unit: str
    config: dict
    arrays: dict = field(repr=False)
    meta: dict = field(default_factory=dict)
    source: str = ""

    def array(self, name):
        try:
            return self.arrays[name]
        except KeyError:
            raise BundleError(f"bundle {self.source!r} has no array {name!r}") from None


def _npz_bytes(arrays):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                      allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_bundle(path, *, unit, config, arrays, meta=None, overwrite=True):
    """Write a bundle to `path` (a folder, or an archive if `path` ends in `.zip`).

    Nothing is left half-written: the files go to a temporary sibling that is renamed into place.
    """
    path = Path(path)
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in _ALLOWED_KINDS:
            raise BundleError(f"bundle array {name!r} must be a numeric NumPy array")
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    config_text = dump_yaml({"unit": unit, "config": config}).encode()
    npz = _npz_bytes(arrays)
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "unit": unit,
        "files": {CONFIG: _sha256(config_text), ARRAYS: _sha256(npz)},
        "arrays": {
            name: {"dtype": arrays[name].dtype.str, "shape": list(arrays[name].shape)}
            for name in sorted(arrays)
        },
        "meta": dict(meta or {}),
    }
    contents = {MANIFEST: dump_yaml(manifest).encode(), CONFIG: config_text, ARRAYS: npz}
    if path.exists() and not overwrite:
        raise BundleError(f"bundle {str(path)!r} already exists")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        if path.is_dir() or (path.exists() and not _is_zip_bundle(path)):
            raise BundleError(f"refusing to replace {str(path)!r}: it exists and is not a bundle")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in (MANIFEST, CONFIG, ARRAYS):
                zf.writestr(zipfile.ZipInfo(name, date_time=_ZIP_DATE), contents[name])
        atomic_write_bytes(path, buf.getvalue())
        return path
    if path.exists() and not (path / MANIFEST).is_file():
        raise BundleError(f"refusing to replace {str(path)!r}: it exists and is not a bundle")
    atomic_write_folder(path, contents)
    return path


def _is_zip_bundle(path):
    try:
        with zipfile.ZipFile(path) as zf:
            return MANIFEST in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _read_members(path):
    if path.is_dir():
        out = {}
        for name in (MANIFEST, CONFIG, ARRAYS):
            member = path / name
            if member.is_symlink():
                raise BundleError(f"bundle {str(path)!r}: {name} is a symbolic link; a bundle "
                                  f"folder holds its own files")
            if not member.is_file():
                raise BundleError(f"bundle {str(path)!r} is missing {name}")
            _check_size(path, name, member.stat().st_size)
            out[name] = member.read_bytes()
        return out
    if not path.exists():
        raise BundleError(f"bundle {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for name in (MANIFEST, CONFIG, ARRAYS):
                if name not in names:
                    raise BundleError(f"bundle {str(path)!r} is missing {name}")
                _check_size(path, name, zf.getinfo(name).file_size)
            return {name: zf.read(name) for name in (MANIFEST, CONFIG, ARRAYS)}
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(
            f"bundle {str(path)!r} is neither a bundle folder nor a readable .zip archive ({exc})"
        ) from None


def _check_size(path, name, size):
    if size > MAX_MEMBER_BYTES:
        raise BundleError(f"bundle {str(path)!r}: {name} holds {size:,} bytes, more than the "
                          f"{MAX_MEMBER_BYTES:,} a bundle member may")


def _check_npz(data, src):
    """Check every array of an `arrays.npz` before NumPy reads it: a plain `<name>.npy`
    member, no larger than `MAX_MEMBER_BYTES`, whose header declares a numeric dtype and a
    shape that fits exactly the bytes it holds."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                name = info.filename
                parts = name.split("/")
                if (not name.endswith(".npy") or not all(parts) or ".." in parts
                        or "\\" in name):
                    raise BundleError(f"bundle {src!r}: arrays.npz holds {name!r}, which is not "
                                      f"an array")
                _check_size(src, f"array {name[:-4]!r}", info.file_size)
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                    header = f.tell()
                if dtype.kind not in _ALLOWED_KINDS:
                    raise BundleError(f"bundle {src!r}: array {name[:-4]!r} has dtype {dtype}, "
                                      f"not a number")
                count = 1
                for n in shape:
                    count *= n
                if header + count * dtype.itemsize != info.file_size:
                    raise BundleError(
                        f"bundle {src!r}: array {name[:-4]!r} declares shape {shape} of "
                        f"{dtype.str} ({count * dtype.itemsize:,} bytes) but holds "
                        f"{info.file_size - header:,}")
    except BundleError:
        raise
    except Exception as exc:  # zipfile and numpy raise many kinds for a bad archive
        raise BundleError(f"bundle {src!r} has unreadable arrays: {exc}") from None


def read_bundle(path, *, unit=None):
    """Read and verify a bundle; `unit`, if given, is the unit kind it must hold."""
    path = Path(path)
    src = str(path)
    members = _read_members(path)
    try:
        manifest = parse_yaml_mapping(members[MANIFEST].decode(), source=f"{src}/{MANIFEST}",
                                      what="bundle manifest")
    except (ConfigError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {src!r} has a corrupt manifest: {exc}") from None
    if manifest.get("format") != FORMAT_NAME:
        raise BundleError(
            f"bundle {src!r} is not a {FORMAT_NAME} (format {manifest.get('format')!r})"
        )
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {src!r} has format version {version!r}; this tool reads version "
            f"{FORMAT_VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"bundle {src!r} has a corrupt manifest: no 'files' mapping")
    for name in (CONFIG, ARRAYS):
        if files.get(name) != _sha256(members[name]):
            raise BundleError(
                f"bundle {src!r} is corrupt: checksum of {name} does not match the manifest"
            )
    try:
        config_doc = parse_yaml_mapping(members[CONFIG].decode(), source=f"{src}/{CONFIG}")
    except (ConfigError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {src!r} has a corrupt configuration: {exc}") from None
    kind = manifest.get("unit")
    if config_doc.get("unit") != kind or not isinstance(config_doc.get("config"), dict):
        raise BundleError(f"bundle {src!r}: config.yaml does not hold a '{kind}' configuration")
    if unit is not None and kind != unit:
        raise BundleError(f"bundle {src!r} holds a {kind!r} unit, not a {unit!r} unit")
    _check_npz(members[ARRAYS], src)
    try:
        with np.load(io.BytesIO(members[ARRAYS]), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # numpy raises many kinds for a bad archive
        raise BundleError(f"bundle {src!r} has unreadable arrays: {exc}") from None
    declared = manifest.get("arrays")
    if not isinstance(declared, dict) or not all(isinstance(v, dict) for v in declared.values()):
        raise BundleError(f"bundle {src!r} has a corrupt manifest: 'arrays' must map names to "
                          f"dtype and shape")
    if set(declared) != set(arrays):
        raise BundleError(f"bundle {src!r}: arrays.npz does not hold the arrays the manifest lists")
    for name, spec in declared.items():
        if arrays[name].dtype.str != spec.get("dtype") or list(arrays[name].shape) != spec.get(
            "shape"
        ):
            raise BundleError(
                f"bundle {src!r}: array {name!r} has dtype {arrays[name].dtype.str} shape "
                f"{list(arrays[name].shape)}, the manifest says {spec.get('dtype')} "
                f"{spec.get('shape')}"
            )
    return Bundle(unit=kind, config=config_doc["config"], arrays=arrays,
                  meta=manifest.get("meta") or {}, source=src)
