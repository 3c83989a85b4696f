"""Tests of the bundle format (spec/bundle.py) and of `spec.lif.load_lif_bundle`, on bundles
made by `sw.export.export_lif_bundle`."""

import hashlib
import io
import os
import stat
import zipfile

import numpy as np
import pytest
import yaml

from spec import bundle as spec_bundle
from spec.bundle import FORMAT_NAME, FORMAT_VERSION, read_bundle, write_bundle
from spec.errors import BundleError
from spec.lif import LIFConfig, load_lif_bundle
from sw.export import export_lif_bundle
from sw.lif_int import lif_int

MEMBERS = ("bundle.yaml", "config.yaml", "arrays.npz")


@pytest.fixture
def config():
    return LIFConfig(neurons=24, lanes=8, channels=3, v_th=[1.0, 0.5, 1.5], bias=[0, 0.25, -0.5],
                     timesteps=2, frac_bits=4)


@pytest.fixture
def bundle(tmp_path, config):
    path = tmp_path / "b"
    export_lif_bundle(path, config, samples=3, seed=7)
    return path


def names(path):
    return sorted(p.name for p in path.iterdir())


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["b", "b.zip"], ids=["folder", "zip"])
def test_round_trip(tmp_path, config, name):
    path = tmp_path / name
    traces = export_lif_bundle(path, config, samples=3, seed=7)
    loaded_config, loaded = load_lif_bundle(path)
    assert loaded_config == config
    assert loaded.samples == 3
    for field in ("inputs", "spikes", "membranes"):
        a = getattr(loaded, field)
        assert a.dtype == np.int64
        assert a.shape == (3, config.timesteps, config.neurons)
        np.testing.assert_array_equal(a, getattr(traces, field))
    # the expected response is the integer model's
    spikes, membranes = lif_int(config, loaded.inputs)
    np.testing.assert_array_equal(loaded.spikes, spikes)
    np.testing.assert_array_equal(loaded.membranes, membranes)
    # nothing but the bundle next to it
    assert names(tmp_path) == [name]


def test_folder_layout_and_manifest(bundle):
    assert names(bundle) == sorted(MEMBERS)
    manifest = yaml.safe_load((bundle / "bundle.yaml").read_text())
    assert manifest["format"] == FORMAT_NAME
    assert manifest["version"] == FORMAT_VERSION == 1
    assert manifest["unit"] == "lif"
    for member in ("config.yaml", "arrays.npz"):
        digest = hashlib.sha256((bundle / member).read_bytes()).hexdigest()
        assert manifest["files"][member] == digest
    assert manifest["arrays"]["inputs"] == {"dtype": "<i4", "shape": [3, 2, 24]}
    assert manifest["meta"] == {"generator": "sw.export", "seed": 7}


def test_zip_layout(tmp_path, config):
    path = tmp_path / "b.zip"
    export_lif_bundle(path, config)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(MEMBERS)


def test_read_bundle_contents(bundle, config):
    b = read_bundle(bundle, unit="lif")
    assert b.unit == "lif"
    assert b.config == config.to_dict()
    assert sorted(b.arrays) == ["inputs", "membranes", "spikes"]
    assert b.meta == {"generator": "sw.export", "seed": 7}
    assert b.source == str(bundle)
    with pytest.raises(BundleError, match="has no array 'weights'"):
        b.array("weights")


@pytest.mark.parametrize("name", ["b", "b.zip"], ids=["folder", "zip"])
def test_reproducible(tmp_path, config, name):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    export_lif_bundle(one / name, config, samples=2, seed=3)
    export_lif_bundle(two / name, config, samples=2, seed=3)
    if name.endswith(".zip"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    else:
        for member in MEMBERS:
            assert (one / name / member).read_bytes() == (two / name / member).read_bytes()


def test_overwrite_existing_bundle(tmp_path, config):
    path = tmp_path / "b"
    export_lif_bundle(path, config, seed=1)
    traces = export_lif_bundle(path, config, seed=2)
    _, loaded = load_lif_bundle(path)
    np.testing.assert_array_equal(loaded.inputs, traces.inputs)
    assert names(tmp_path) == ["b"]  # the replaced bundle is gone, no temporaries left


def test_overwrite_false_refuses(bundle, config):
    before = {m: (bundle / m).read_bytes() for m in MEMBERS}
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(bundle, unit="lif", config=config.to_dict(), arrays={}, overwrite=False)
    assert {m: (bundle / m).read_bytes() for m in MEMBERS} == before


def test_write_over_a_non_bundle_folder_is_refused(tmp_path, config):
    victim = tmp_path / "results"
    victim.mkdir()
    (victim / "notes.txt").write_text("precious\n")
    (victim / "sub").mkdir()
    (victim / "sub" / "data.bin").write_bytes(b"\x00\x01")
    with pytest.raises(BundleError, match="it exists and is not a bundle"):
        export_lif_bundle(victim, config)
    assert names(victim) == ["notes.txt", "sub"]
    assert (victim / "notes.txt").read_text() == "precious\n"
    assert (victim / "sub" / "data.bin").read_bytes() == b"\x00\x01"
    # the failed write leaves no temporary sibling behind
    assert names(tmp_path) == ["results"]


def test_write_rejects_non_numeric_arrays(tmp_path):
    with pytest.raises(BundleError, match="must be a numeric NumPy array"):
        write_bundle(tmp_path / "b", unit="lif", config={}, arrays={"a": np.array(["x"])})
    with pytest.raises(BundleError, match="must be a numeric NumPy array"):
        write_bundle(tmp_path / "b", unit="lif", config={}, arrays={"a": [1, 2, 3]})
    assert names(tmp_path) == []


# -- corruption ---------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        read_bundle(tmp_path / "nothere")
    with pytest.raises(BundleError, match="does not exist"):
        load_lif_bundle(tmp_path / "nothere.zip")


@pytest.mark.parametrize("member", MEMBERS)
def test_missing_member(bundle, member):
    (bundle / member).unlink()
    with pytest.raises(BundleError, match=f"is missing {member}"):
        read_bundle(bundle)


def test_missing_member_in_zip(tmp_path, bundle):
    path = tmp_path / "partial.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for member in ("bundle.yaml", "arrays.npz"):
            zf.write(bundle / member, member)
    with pytest.raises(BundleError, match="is missing config.yaml"):
        read_bundle(path)


def test_flipped_byte_in_arrays(bundle):
    data = bytearray((bundle / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum of arrays.npz does not match the manifest"):
        load_lif_bundle(bundle)


def test_edited_config(bundle):
    path = bundle / "config.yaml"
    text = path.read_text()
    assert "timesteps: 2" in text
    path.write_text(text.replace("timesteps: 2", "timesteps: 3"))
    with pytest.raises(BundleError, match="checksum of config.yaml does not match the manifest"):
        load_lif_bundle(bundle)


def rewrite_manifest(bundle, **changes):
    manifest = yaml.safe_load((bundle / "bundle.yaml").read_text())
    manifest.update(changes)
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(manifest))


def test_format_version_2(bundle):
    rewrite_manifest(bundle, version=2)
    with pytest.raises(BundleError, match="has format version 2; this tool reads version 1"):
        read_bundle(bundle)


def test_wrong_format_name(bundle):
    rewrite_manifest(bundle, format="something-else")
    with pytest.raises(BundleError, match=f"is not a {FORMAT_NAME}"):
        read_bundle(bundle)


def test_manifest_without_files(bundle):
    rewrite_manifest(bundle, files=None)
    with pytest.raises(BundleError, match="corrupt manifest: no 'files' mapping"):
        read_bundle(bundle)


@pytest.mark.parametrize(
    "text",
    [b"format: [spikeformer-bundle\nversion: 1\n", b"- just\n- a list\n", b"\xff\xfe\x00"],
    ids=["invalid-yaml", "not-a-mapping", "not-utf8"],
)
def test_manifest_not_yaml(bundle, text):
    (bundle / "bundle.yaml").write_bytes(text)
    with pytest.raises(BundleError, match="has a corrupt manifest"):
        read_bundle(bundle)


def test_manifest_disagrees_with_arrays(bundle):
    manifest = yaml.safe_load((bundle / "bundle.yaml").read_text())
    manifest["arrays"]["inputs"]["shape"] = [9, 9, 9]
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(BundleError, match="array 'inputs' has dtype <i4 shape"):
        read_bundle(bundle)
    del manifest["arrays"]["inputs"]
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(BundleError, match="does not hold the arrays the manifest lists"):
        read_bundle(bundle)


def test_not_a_zip(tmp_path):
    path = tmp_path / "b.zip"
    path.write_text("this is not a zip archive\n")
    with pytest.raises(BundleError, match="is neither a bundle folder nor a readable .zip archive"):
        load_lif_bundle(path)


def test_corrupt_zip_member(tmp_path, config):
    path = tmp_path / "b.zip"
    export_lif_bundle(path, config)
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside the first stored member: the zip CRC check catches it
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError):
        read_bundle(path)


def test_unit_not_lif(tmp_path):
    path = tmp_path / "conv"
    write_bundle(path, unit="conv", config={"channels": 4},
                 arrays={"weights": np.zeros((4, 4), np.int8)})
    assert read_bundle(path).unit == "conv"
    with pytest.raises(BundleError, match="holds a 'conv' unit, not a 'lif' unit"):
        read_bundle(path, unit="lif")
    with pytest.raises(BundleError, match="holds a 'conv' unit, not a 'lif' unit"):
        load_lif_bundle(path)


def lif_arrays(config, samples=2, *, inputs=None, spikes=None, membranes=None):
    shape = (samples, config.timesteps, config.neurons)
    return {
        "inputs": np.zeros(shape, np.int32) if inputs is None else inputs,
        "spikes": np.zeros(shape, np.uint8) if spikes is None else spikes,
        "membranes": np.zeros(shape, np.int64) if membranes is None else membranes,
    }


def test_trace_shape_disagrees_with_config(tmp_path, config):
    path = tmp_path / "b"
    wrong = np.zeros((2, config.timesteps, config.neurons + 1), np.int32)
    write_bundle(path, unit="lif", config=config.to_dict(), arrays=lif_arrays(config, inputs=wrong))
    with pytest.raises(BundleError, match=r"array 'inputs' has shape \[2, 2, 25\], but the "
                                          r"configuration needs integers of shape"):
        load_lif_bundle(path)


def test_trace_with_float_dtype(tmp_path, config):
    path = tmp_path / "b"
    floats = np.zeros((2, config.timesteps, config.neurons), np.float32)
    write_bundle(path, unit="lif", config=config.to_dict(),
                 arrays=lif_arrays(config, membranes=floats))
    with pytest.raises(BundleError, match="array 'membranes' has shape"):
        load_lif_bundle(path)


def test_trace_sample_counts_disagree(tmp_path, config):
    path = tmp_path / "b"
    arrays = lif_arrays(config)
    arrays["spikes"] = np.zeros((3, config.timesteps, config.neurons), np.uint8)
    write_bundle(path, unit="lif", config=config.to_dict(), arrays=arrays)
    with pytest.raises(BundleError, match="trace arrays disagree on the sample count"):
        load_lif_bundle(path)


def test_missing_trace_array(tmp_path, config):
    path = tmp_path / "b"
    arrays = lif_arrays(config)
    del arrays["membranes"]
    write_bundle(path, unit="lif", config=config.to_dict(), arrays=arrays)
    with pytest.raises(BundleError, match="has no array 'membranes'"):
        load_lif_bundle(path)


@pytest.mark.parametrize("bad", [128, -129])
def test_inputs_outside_in_bits(tmp_path, config, bad):
    path = tmp_path / "b"
    inputs = np.zeros((2, config.timesteps, config.neurons), np.int32)
    inputs[1, 1, 5] = bad
    write_bundle(path, unit="lif", config=config.to_dict(),
                 arrays=lif_arrays(config, inputs=inputs))
    with pytest.raises(BundleError, match="does not fit in_bits=8"):
        load_lif_bundle(path)


def test_invalid_lif_configuration(tmp_path, config):
    path = tmp_path / "b"
    write_bundle(path, unit="lif", config={**config.to_dict(), "tau": 3},
                 arrays=lif_arrays(config))
    with pytest.raises(BundleError, match="has an invalid LIF configuration: tau must be a power"):
        load_lif_bundle(path)


# -- known defects (see the report that came with these tests) ------------------------------


def test_manifest_arrays_entry_not_a_mapping(bundle):
    manifest = yaml.safe_load((bundle / "bundle.yaml").read_text())
    manifest["arrays"]["inputs"] = 5
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(BundleError):
        read_bundle(bundle)


def test_huge_unsigned_inputs_rejected(tmp_path, config):
    path = tmp_path / "b"
    inputs = np.full((2, config.timesteps, config.neurons), 2**64 - 1, np.uint64)  # wraps to -1
    write_bundle(path, unit="lif", config=config.to_dict(),
                 arrays=lif_arrays(config, inputs=inputs))
    with pytest.raises(BundleError, match="does not fit in_bits=8"):
        load_lif_bundle(path)


# -- a bundle from an untrusted source ----------------------------------------------------------


def replace_arrays(bundle, members):
    """Put an arrays.npz of raw `members` {name: bytes} into the bundle, with the manifest's
    checksum updated (as an attacker would), so only the reader's own checks stand."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    (bundle / "arrays.npz").write_bytes(buf.getvalue())
    manifest = yaml.safe_load((bundle / "bundle.yaml").read_text())
    manifest["files"]["arrays.npz"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(manifest))


def npy(shape, dtype, data):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": shape})
    return buf.getvalue() + data


def test_reader_checks_are_needed(bundle):
    """Can-fail check of the cases below: a well-formed replacement is read."""
    replace_arrays(bundle, {"inputs.npy": npy((2,), "<i8", bytes(16))})
    manifest = yaml.safe_load((bundle / "bundle.yaml").read_text())
    manifest["arrays"] = {"inputs": {"dtype": "<i8", "shape": [2]}}
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(manifest))
    assert read_bundle(bundle).arrays["inputs"].tolist() == [0, 0]


@pytest.mark.parametrize("members, message", [
    ({"inputs.npy": npy((1 << 40,), "<i8", bytes(16))},
     "array 'inputs' declares shape (1099511627776,) of <i8 (8,796,093,022,208 bytes) but "
     "holds 16"),
    ({"inputs.npy": npy((3,), "<i8", bytes(16))},
     "array 'inputs' declares shape (3,) of <i8 (24 bytes) but holds 16"),
    ({"../evil.npy": npy((2,), "<i8", bytes(16))},
     "arrays.npz holds '../evil.npy', which is not an array"),
    ({"inputs.txt": b"hello"}, "arrays.npz holds 'inputs.txt', which is not an array"),
    ({"inputs.npy": npy((2,), "|O", bytes(16))}, "array 'inputs' has dtype object, not a number"),
], ids=["huge-shape", "short-data", "dotdot", "not-npy", "object"])
def test_untrusted_arrays(bundle, members, message):
    replace_arrays(bundle, members)
    with pytest.raises(BundleError) as info:
        read_bundle(bundle)
    assert str(info.value) == f"bundle {str(bundle)!r}: {message}"


def test_member_size_limit(bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(spec_bundle, "MAX_MEMBER_BYTES", 100)
    with pytest.raises(BundleError) as info:
        read_bundle(bundle)
    size = (bundle / "bundle.yaml").stat().st_size
    assert str(info.value) == (f"bundle {str(bundle)!r}: bundle.yaml holds {size:,} bytes, more "
                               f"than the 100 a bundle member may")
    path = tmp_path / "b.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bundle.yaml", "x" * 50)
        zf.writestr("config.yaml", "x" * 50)
        zf.writestr("arrays.npz", bytes(10_000))      # a small zip bomb: 10 kB from ~30 bytes
    assert path.stat().st_size < 1000
    with pytest.raises(BundleError, match=r"arrays\.npz holds 10,000 bytes, more than the 100"):
        read_bundle(path)


@pytest.mark.parametrize("member", MEMBERS)
def test_symlinked_member_refused(bundle, tmp_path, member):
    outside = tmp_path / f"outside-{member}"
    (bundle / member).rename(outside)
    (bundle / member).symlink_to(outside)
    with pytest.raises(BundleError) as info:
        read_bundle(bundle)
    assert str(info.value) == (f"bundle {str(bundle)!r}: {member} is a symbolic link; a bundle "
                               f"folder holds its own files")


@pytest.mark.parametrize("name", ["b", "b.zip"], ids=["folder", "zip"])
def test_written_modes_follow_the_umask(tmp_path, config, name):
    old = os.umask(0o022)
    try:
        export_lif_bundle(tmp_path / name, config, samples=1, seed=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == (0o755 if name == "b" else 0o644)
