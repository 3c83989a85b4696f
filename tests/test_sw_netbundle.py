"""Tests of network and block bundles (`sw.netbundle`), of the unit names of a network and unit
bundles cut out of it (`sw.export.units_of`, `export_unit_bundle`), and of the command line
`python -m sw.export`.

The network is a small quantized digits model (tests/quant_helpers.py), quantized once per
file. Every check that compares a rerun with stored traces has a test that corrupts the stored
side and sees the comparison fail."""

import copy
import json
import re
import zipfile
from dataclasses import asdict

import numpy as np
import pytest
from cli_helpers import CLI
from quant_helpers import digits, stats_model

from hw.block import block_units, conv_block_units, downsample_units, unit_config
from spec import netbundle as spec_netbundle
from spec import network as spec_network
from spec.bundle import read_bundle, write_bundle
from spec.errors import BundleError
from spec.lif import LIFConfig, load_lif_bundle
from spec.sae import load_sae_bundle
from spec.sdsa import SDSAConfig, load_sdsa_bundle
from sw.export import PROG, export_lif_bundle, export_unit_bundle, main, units_of
from sw.int_model import Conv, IntTransformerBlock, MultiBitConv, Neuron, RunContext
from sw.netbundle import encode, read_network_bundle, write_network_bundle
from sw.quant import quantize
from sw.train import save_checkpoint

MEMBERS = ("bundle.yaml", "config.yaml", "arrays.npz")
IMAGES = 4

_CLI = CLI(PROG, main)
run_cli = _CLI.run
assert_one_line_error = _CLI.assert_one_line_error


# -- fixtures: one model, one quantization, one network bundle per file ------------------------


@pytest.fixture(scope="module")
def model():
    return stats_model(timesteps=2, images=64)


@pytest.fixture(scope="module")
def net(model):
    return quantize(model, digits()[0][:64])


@pytest.fixture(scope="module")
def pixels(net):
    return net.to_input(digits()[2][:IMAGES])


@pytest.fixture(scope="module")
def labels():
    return digits()[3][:IMAGES].numpy()


@pytest.fixture(scope="module")
def full(net, pixels):
    """(scores, traces) of the original network, every trace kept."""
    ctx = RunContext(net.widths, record="full")
    scores = net.run(pixels, ctx)
    return scores, ctx.merged_traces()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("netbundle")


@pytest.fixture(scope="module")
def network_bundle(folder, net, pixels, labels, model):
    path = folder / "net"
    write_network_bundle(path, net, pixels, labels, model_config=asdict(model.config),
                         meta={"checkpoint": "c.pt"})
    return path


@pytest.fixture(scope="module")
def small_bundle(folder, net, pixels, labels):
    """A network bundle of one image, for the corruption tests (rewritten many times)."""
    path = folder / "small"
    write_network_bundle(path, net, pixels[:1], labels[:1])
    return path


@pytest.fixture(scope="module")
def checkpoint(folder, model):
    path = folder / "c.pt"
    save_checkpoint(path, model, {"dataset": "digits", "accuracy": 0.0})
    return path


def model_dict(model):
    """The model's configuration as YAML gives it back (tuples become lists)."""
    return json.loads(json.dumps(asdict(model.config)))


def listing(path):
    return sorted(p.name for p in path.iterdir())


# -- checkers ----------------------------------------------------------------------------------


def trace_arrays(traces):
    """`trace/<name>:<kind>` -> array, for a run's merged traces."""
    return {f"trace/{name}:{kind}": value for name, kinds in traces.items()
            for kind, value in kinds.items()}


def assert_traces_equal(stored, rerun):
    """Every stored `trace/...` array is reproduced exactly (values, shape, dtype), and the
    rerun has no trace the bundle lacks."""
    stored = {k: v for k, v in stored.items() if k.startswith("trace/")}
    assert stored, "no traces in the bundle"
    assert sorted(stored) == sorted(rerun)
    for key, want in stored.items():
        got = np.asarray(rerun[key])
        assert got.dtype == want.dtype, key
        np.testing.assert_array_equal(got, want, err_msg=key)


def assert_network_reproduces(path):
    """Read a network bundle, rerun the rebuilt network on its pixels with full traces: the
    stored scores and every stored trace come back exactly. Returns (network, bundle)."""
    unit, rebuilt, bundle = read_network_bundle(path)
    assert unit == "network"
    ctx = RunContext(rebuilt.widths, record="full")
    scores = rebuilt.run(bundle.array("pixels"), ctx)
    np.testing.assert_array_equal(scores, bundle.array("scores"))
    assert_traces_equal(bundle.arrays, trace_arrays(ctx.merged_traces()))
    return rebuilt, bundle


def assert_block_reproduces(path):
    """Read a block bundle, run its layer on `input` with the bundle's widths: `output` and every
    stored trace come back exactly. Returns (layer, bundle)."""
    unit, layers, bundle = read_network_bundle(path)
    assert unit == "block"
    assert len(layers) == 1
    ctx = RunContext(bundle.config["widths"], record="full")
    out = layers[0].run(bundle.array("input"), ctx)
    np.testing.assert_array_equal(out, bundle.array("output"))
    assert_traces_equal(bundle.arrays, trace_arrays(ctx.merged_traces()))
    return layers[0], bundle


def rewrite(src, dst, *, config=None, arrays=None):
    """Copy the bundle `src` to `dst` with `config(cfg)` / `arrays(arrs)` applied, written with
    `write_bundle` so that every checksum is valid."""
    b = read_bundle(src)
    cfg, arrs = copy.deepcopy(b.config), dict(b.arrays)
    if config is not None:
        config(cfg)
    if arrays is not None:
        arrays(arrs)
    write_bundle(dst, unit=b.unit, config=cfg, arrays=arrs, meta=b.meta)
    return dst


# -- network bundles ---------------------------------------------------------------------------


def test_network_bundle_reproduces_scores_and_traces(network_bundle, net, pixels, labels, full):
    rebuilt, bundle = assert_network_reproduces(network_bundle)
    assert bundle.unit == "network"
    np.testing.assert_array_equal(bundle.array("pixels"), pixels)
    np.testing.assert_array_equal(bundle.array("labels"), labels)
    np.testing.assert_array_equal(bundle.array("scores"), full[0])
    # the stored traces are the original network's, every layer of it
    assert_traces_equal(bundle.arrays, trace_arrays(full[1]))
    names = {k[len("trace/"):].split(":")[0] for k in bundle.arrays if k.startswith("trace/")}
    assert {layer.name for layer in net.layers} | {"head", "head_lif"} <= names
    # the rebuilt network is the original one
    assert rebuilt.widths == net.widths
    assert (rebuilt.timesteps, rebuilt.input_bits, rebuilt.input_scale) == \
        (net.timesteps, net.input_bits, net.input_scale)
    assert rebuilt.info == {k: v for k, v in net.info.items() if k != "calibration"}
    a_new, a_old = {}, {}
    assert [encode(x, a_new) for x in rebuilt.layers] == [encode(x, a_old) for x in net.layers]
    assert encode(rebuilt.head, a_new) == encode(net.head, a_old)
    assert sorted(a_new) == sorted(a_old)
    for key in a_old:
        np.testing.assert_array_equal(a_new[key], a_old[key])
    assert [n.name for n in rebuilt.neurons()] == [n.name for n in net.neurons()]


def test_spec_reader_builds_the_description_the_hardware_reads(network_bundle, net):
    """`spec.netbundle` reads the same bundle into `spec.network`'s classes (no `run`), under
    the same names; they encode to the same description and give the hardware the same units."""
    unit, desc, _ = spec_netbundle.read_network_bundle(network_bundle)
    _, runnable, _ = read_network_bundle(network_bundle)
    assert unit == "network" and type(desc) is spec_network.IntNetwork
    for described, run in zip([*desc.layers, desc.head], [*runnable.layers, runnable.head],
                              strict=True):
        assert type(described).__module__ == "spec.network"
        assert type(run).__module__ == "sw.int_model"
        assert type(described).__name__ == type(run).__name__
        assert isinstance(run, type(described)) and not hasattr(described, "run")
    assert all(type(n) is spec_network.Neuron for n in desc.neurons())
    a_spec, a_sw = {}, {}
    assert [encode(x, a_spec) for x in [*desc.layers, desc.head]] == \
        [encode(x, a_sw) for x in [*net.layers, net.head]]
    assert sorted(a_spec) == sorted(a_sw)
    listers = {"IntDownsample": downsample_units, "IntConvBlock": conv_block_units,
               "IntTransformerBlock": block_units}
    for described, run in zip(desc.layers, runnable.layers, strict=True):
        lister = listers[type(run).__name__]
        units = [lister(x, net.widths, net.timesteps) for x in (described, run)]
        assert list(units[0]) == list(units[1])
        assert [unit_config(u) for u in units[0].values()] == \
            [unit_config(u) for u in units[1].values()]


def test_network_bundle_contents(network_bundle, model):
    b = read_bundle(network_bundle)
    assert b.meta == {"generator": "sw.export", "checkpoint": "c.pt"}
    assert b.config["model"] == model_dict(model)
    assert b.config["timesteps"] == 2
    for name in ("layers.0.conv:weight", "layers.0.conv:shift", "layers.0.conv:stream_bias",
                 "layers.3.attn.proj:shift", "head:weight", "head:bias"):
        assert b.arrays[name].dtype == np.int64, name
    assert b.arrays["trace/layers.3.attn.q_lif:spikes"].dtype == np.uint8
    assert b.arrays["trace/layers.3.attn.q_lif:membranes"].dtype == np.int64
    assert b.arrays["trace/head:scores"].shape == (IMAGES, 10)


@pytest.mark.parametrize("name", ["b", "b.zip"], ids=["folder", "zip"])
def test_network_bundle_reproducible(tmp_path, net, pixels, labels, name):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    write_network_bundle(one / name, net, pixels, labels)
    write_network_bundle(two / name, net, pixels, labels)
    if name.endswith(".zip"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
        assert_network_reproduces(one / name)
    else:
        for member in MEMBERS:
            assert (one / name / member).read_bytes() == (two / name / member).read_bytes()


@pytest.mark.parametrize("block, kind", [("layers.3", "IntTransformerBlock"),
                                         ("layers.1", "IntConvBlock"),
                                         ("layers.2", "IntDownsample")])
def test_block_bundle(tmp_path, net, pixels, labels, full, block, kind):
    path = tmp_path / "blk"
    write_network_bundle(path, net, pixels, labels, block=block)
    layer, b = assert_block_reproduces(path)
    assert type(layer).__name__ == kind and layer.name == block
    assert b.unit == "block"
    n = [x.name for x in net.layers].index(block)
    traces = full[1]
    np.testing.assert_array_equal(b.array("input"), traces[net.layers[n - 1].name]["stream"])
    np.testing.assert_array_equal(b.array("output"), traces[block]["stream"])
    # only this block's traces, none of the network's inputs or scores
    for key in b.arrays:
        if key.startswith("trace/"):
            name = key[len("trace/"):].split(":")[0]
            assert name == block or name.startswith(block + "."), key
    assert not {"pixels", "labels", "scores"} & set(b.arrays)
    assert "head" not in b.config and "input_bits" not in b.config
    assert b.config["widths"] == net.widths
    if kind == "IntTransformerBlock":
        assert f"trace/{block}.attn.sdsa:attention" in b.arrays


@pytest.mark.parametrize("block, message", [
    ("layers.0", "'layers.0' reads the pixels; export the network instead"),
    ("layers.7", "no layer 'layers.7' (layers: layers.0, layers.1, layers.2, layers.3)"),
    ("layers.3.attn.sdsa", "no layer 'layers.3.attn.sdsa'"),
])
def test_block_bundle_rejected(tmp_path, net, pixels, block, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        write_network_bundle(tmp_path / "blk", net, pixels, block=block)
    assert listing(tmp_path) == []


# -- corruption ----------------------------------------------------------------------------------

CORRUPTIONS = {
    "weight-array-renamed": (
        lambda c: c["layers"][1]["sep_pw1"]["weight"].update(array="layers.1.sep.pw1:weights"),
        r"layer 1.sep_pw1: array 'layers.1.sep.pw1:weights' is missing"),
    "shift-array-renamed": (
        lambda c: c["layers"][3]["proj"]["shift"].update(array="nope"),
        r"layer 3.proj: array 'nope' is missing"),
    "key-removed": (
        lambda c: c["layers"][3]["q_lif"].pop("v_th"),
        r"layer 3.q_lif: a Neuron needs the keys \['bias', 'channels', 'height', 'name', "
        r"'param_frac', 'source', 'v_th', 'width'\] \(optional: \['tau'\]\), not \['bias', "
        r"'channels', 'height', 'name', 'param_frac', 'source', 'tau', 'width'\]"),
    "key-added": (
        lambda c: c["layers"][1]["sep_dw"].update(groups=16),
        r"layer 1.sep_dw: a Conv needs the keys"),
    "unknown-type": (
        lambda c: c["layers"][2].update(type="IntPooling"),
        r"layer 2: unknown piece type 'IntPooling'"),
    "unknown-type-in-head": (
        lambda c: c["head"]["neuron"].update(type="Neurone"),
        r"head.neuron: unknown piece type 'Neurone'"),
    "piece-without-type": (
        lambda c: c["layers"][3]["fc1"].pop("type"),
        r"layer 3.fc1: expected a mapping with a 'type'"),
    "layer-not-a-mapping": (
        lambda c: c["layers"].__setitem__(0, "IntDownsample"),
        r"layer 0: expected a mapping with a 'type'"),
    "invalid-sdsa": (
        lambda c: c["layers"][3]["sdsa"].update(heads=3),
        r"layer 3.sdsa: heads \(3\) must divide channels \(16\)"),
    "no-layers": (lambda c: c.pop("layers"), r"config.yaml has no 'layers'"),
    "no-widths": (lambda c: c.pop("widths"), r"config.yaml has no 'widths'"),
    "no-timesteps": (lambda c: c.pop("timesteps"), r"config.yaml has no 'timesteps'"),
    "empty-layers": (lambda c: c.update(layers=[]), r"'layers' must be a non-empty list"),
    "layers-not-a-list": (lambda c: c.update(layers={"a": 1}),
                          r"'layers' must be a non-empty list"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_config(tmp_path, small_bundle, name):
    edit, message = CORRUPTIONS[name]
    path = rewrite(small_bundle, tmp_path / "bad", config=edit)
    read_bundle(path)                       # the checksums are valid: only the content is off
    with pytest.raises(BundleError, match=f"^bundle '{re.escape(str(path))}'.*{message}"):
        read_network_bundle(path)


def test_corrupt_array_missing(tmp_path, small_bundle):
    path = rewrite(small_bundle, tmp_path / "bad",
                   arrays=lambda a: a.pop("layers.3.mlp.fc2:stream_bias"))
    with pytest.raises(BundleError, match="array 'layers.3.mlp.fc2:stream_bias' is missing"):
        read_network_bundle(path)


def test_block_bundle_corrupt_config(tmp_path, net, pixels):
    path = tmp_path / "blk"
    write_network_bundle(path, net, pixels[:1], block="layers.3")
    bad = rewrite(path, tmp_path / "bad", config=lambda c: c["layers"][0]["sdsa"].update(
        type="SDSA"))
    with pytest.raises(BundleError, match="layer 0.sdsa: unknown piece type 'SDSA'"):
        read_network_bundle(bad)


@pytest.mark.parametrize("name", ["weight-array-renamed", "unknown-type", "key-removed"])
def test_corrupt_config_message_names_the_place_once(tmp_path, small_bundle, name):
    edit, _ = CORRUPTIONS[name]
    path = rewrite(small_bundle, tmp_path / "bad", config=edit)
    with pytest.raises(BundleError) as info:
        read_network_bundle(path)
    assert str(info.value).count(f"bundle '{path}'") == 1, str(info.value)


def test_bundles_from_before_tau_read_with_tau_2(tmp_path, small_bundle):
    """`Neuron.tau` came after bundle format v1: a bundle without it reads with the paper's
    leak; a key that was always there (a convolution's bias) is still required."""
    def drop_tau(c):
        for layer in c["layers"]:
            for piece in layer.values():
                if isinstance(piece, dict) and piece.get("type") == "Neuron":
                    piece.pop("tau")
    path = rewrite(small_bundle, tmp_path / "old", config=drop_tau)
    _, net, _ = read_network_bundle(path)
    assert {n.tau for n in net.neurons()} == {2}
    bad = rewrite(small_bundle, tmp_path / "bad",
                  config=lambda c: c["layers"][3]["q_conv"].pop("bias"))
    with pytest.raises(BundleError, match="a Conv needs the keys"):
        read_network_bundle(bad)


@pytest.mark.parametrize("key", ["input_bits", "input_scale"])
def test_network_bundle_without_input_settings(tmp_path, small_bundle, key):
    path = rewrite(small_bundle, tmp_path / "bad", config=lambda c: c.pop(key))
    with pytest.raises(BundleError, match=f"no '{key}'"):
        read_network_bundle(path)


def test_network_bundle_without_head(tmp_path, small_bundle):
    path = rewrite(small_bundle, tmp_path / "bad", config=lambda c: c.pop("head"))
    with pytest.raises(BundleError, match="head"):
        read_network_bundle(path)


def test_network_bundle_weight_of_wrong_shape(tmp_path, small_bundle):
    path = rewrite(small_bundle, tmp_path / "bad", config=lambda c: c["layers"][1]["sep_pw1"][
        "weight"].update(array="layers.1.conv1:weight"))
    with pytest.raises(BundleError, match="weight"):
        read_network_bundle(path)


def test_other_unit_rejected(tmp_path):
    path = tmp_path / "lif"
    export_lif_bundle(path, LIFConfig(neurons=8, lanes=4))
    with pytest.raises(BundleError, match=f"^bundle '{re.escape(str(path))}' holds a 'lif' unit, "
                                          f"not a network or block$"):
        read_network_bundle(path)


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        read_network_bundle(tmp_path / "nothing.zip")


@pytest.mark.parametrize("key, block", [
    ("trace/layers.3.attn.sdsa:attention", None),
    ("trace/layers.1.sep.lif2:membranes", None),
    ("trace/layers.3.mlp.lif2:spikes", None),
    ("trace/head:scores", None),
    ("trace/layers.3:stream", "layers.3"),
    ("trace/layers.3.attn.q_conv:outputs", "layers.3"),
])
def test_corrupt_trace_is_detected(tmp_path, net, pixels, labels, small_bundle, key, block):
    if block is None:
        src, check = small_bundle, assert_network_reproduces
    else:
        src, check = tmp_path / "blk", assert_block_reproduces
        write_network_bundle(src, net, pixels, labels, block=block)
    check(src)

    def change_one(arrays):
        a = arrays[key].copy()
        flat = a.reshape(-1)
        assert np.shares_memory(flat, a)
        i = int(np.flatnonzero(flat)[0]) if flat.any() else 0
        flat[i] = 1 - flat[i] if a.dtype == np.uint8 else flat[i] + 1
        arrays[key] = a

    bad = rewrite(src, tmp_path / "bad", arrays=change_one)
    with pytest.raises(AssertionError, match=re.escape(key)):
        check(bad)


def test_corrupt_scores_and_block_output_are_detected(tmp_path, net, pixels, small_bundle):
    bad = rewrite(small_bundle, tmp_path / "bad",
                  arrays=lambda a: a.update(scores=a["scores"] + np.eye(*a["scores"].shape,
                                                                        dtype=np.int64)))
    with pytest.raises(AssertionError):
        assert_network_reproduces(bad)
    src = tmp_path / "blk"
    write_network_bundle(src, net, pixels, block="layers.1")
    bad = rewrite(src, tmp_path / "bad2", arrays=lambda a: a.update(output=-a["output"]))
    with pytest.raises(AssertionError):
        assert_block_reproduces(bad)


# -- units_of ------------------------------------------------------------------------------------

UNITS = [
    ("layers.0.conv", "multibit"),
    ("layers.1", "block"),
    ("layers.1.sep.lif1", "lif"), ("layers.1.sep.pw1", "sae"), ("layers.1.sep.lif2", "lif"),
    ("layers.1.sep.dw", "sae"), ("layers.1.sep.pw2", "multibit"), ("layers.1.lif1", "lif"),
    ("layers.1.conv1", "sae"), ("layers.1.lif2", "lif"), ("layers.1.conv2", "sae"),
    ("layers.2", "block"),
    ("layers.2.lif", "lif"), ("layers.2.conv", "sae"),
    ("layers.3", "block"),
    ("layers.3.attn.head_lif", "lif"), ("layers.3.attn.q_conv", "sae"),
    ("layers.3.attn.k_conv", "sae"), ("layers.3.attn.v_conv", "sae"),
    ("layers.3.attn.q_lif", "lif"), ("layers.3.attn.k_lif", "lif"), ("layers.3.attn.v_lif", "lif"),
    ("layers.3.attn.sdsa", "sdsa"), ("layers.3.attn.proj", "sae"), ("layers.3.mlp.lif1", "lif"),
    ("layers.3.mlp.fc1", "sae"), ("layers.3.mlp.lif2", "lif"), ("layers.3.mlp.fc2", "sae"),
    ("head_lif", "lif"), ("head", "sae"),
]


def test_units_of(net, full):
    units = units_of(net)
    assert [(name, kind) for name, (kind, _) in units.items()] == UNITS
    piece_type = {"lif": Neuron, "multibit": MultiBitConv, "sdsa": SDSAConfig}
    for name, (kind, piece) in units.items():
        if kind == "block":
            assert piece is net.layers[int(name.split(".")[1])]
        elif kind == "sae":
            assert isinstance(piece, Conv) and not isinstance(piece, MultiBitConv)
            assert piece.name == name
        else:
            assert isinstance(piece, piece_type[kind])
        if kind in ("lif", "multibit"):
            assert piece.name == name
        if kind != "block":
            assert name in full[1], name      # every unit leaves traces under its name
    # every transformer block has its attention unit, which is the block's own configuration
    for layer in net.layers:
        if isinstance(layer, IntTransformerBlock):
            assert units[f"{layer.name}.attn.sdsa"] == ("sdsa", layer.sdsa)
    # the first layer reads the pixels: it is no block
    assert "layers.0" not in units
    assert [n for n, (k, _) in units.items() if k == "lif"] == [n.name for n in net.neurons()]


# -- export_unit_bundle --------------------------------------------------------------------------


def token_major(a):
    """(S, T, C, H, W) -> (S, T, H * W * C), neuron (h * W + w) * C + c."""
    s, t = a.shape[:2]
    return np.ascontiguousarray(np.moveaxis(a, 2, -1)).reshape(s, t, -1)


@pytest.mark.parametrize("name", ["layers.3.attn.q_lif", "layers.1.sep.lif1", "head_lif"])
def test_export_lif_unit(tmp_path, net, pixels, full, name):
    path = tmp_path / "u"
    assert export_unit_bundle(path, net, name, pixels) == "lif"
    config, traces = load_lif_bundle(path)
    piece = units_of(net)[name][1]
    assert config == piece.config(RunContext(net.widths), net.timesteps)
    assert config.neurons == piece.channels * piece.height * piece.width
    tr = full[1][name]
    np.testing.assert_array_equal(traces.inputs, token_major(tr["inputs"]))
    np.testing.assert_array_equal(traces.spikes, token_major(tr["spikes"]))
    np.testing.assert_array_equal(traces.membranes, token_major(tr["membranes"]))
    assert traces.samples == IMAGES


@pytest.mark.parametrize("name", ["layers.3.attn.q_conv", "layers.1.sep.dw", "layers.3.mlp.fc1",
                                  "layers.2.conv", "head"])
def test_export_sae_unit(tmp_path, net, pixels, full, name):
    path = tmp_path / "u"
    assert export_unit_bundle(path, net, name, pixels) == "sae"
    config, params, traces = load_sae_bundle(path)
    piece = units_of(net)[name][1]
    assert config == piece.config(RunContext(net.widths))
    np.testing.assert_array_equal(params.weight, piece.weight)
    assert (params.bias is None) == (piece.bias is None)
    if piece.bias is not None:
        np.testing.assert_array_equal(params.bias, piece.bias)
    tr = full[1][name]
    frames = IMAGES * net.timesteps
    np.testing.assert_array_equal(traces.inputs, tr["inputs"].reshape(frames, *config_in(config)))
    np.testing.assert_array_equal(traces.outputs, tr["outputs"].reshape(traces.outputs.shape))
    assert traces.outputs.shape[0] == frames


def config_in(config):
    return config.in_channels, config.height, config.width


def test_export_sdsa_unit(tmp_path, net, pixels, full):
    path = tmp_path / "u.zip"
    assert export_unit_bundle(path, net, "layers.3.attn.sdsa", pixels) == "sdsa"
    config, traces = load_sdsa_bundle(path)
    assert config == net.layers[3].sdsa
    tr = full[1]["layers.3.attn.sdsa"]
    for kind in ("q", "k", "v", "spikes"):
        np.testing.assert_array_equal(getattr(traces, kind), tr[kind])
    np.testing.assert_array_equal(traces.neuron_input, tr["attention"])
    assert traces.q.any() and traces.neuron_input.any()


@pytest.mark.parametrize("name, message", [
    ("layers.3", "'layers.3' is a block: it has no unit bundle (export the network or its "
                 "block)"),
    ("layers.1", "'layers.1' is a block"),
    ("layers.0.conv", "'layers.0.conv' is a convolution fed by multi-bit integers: it has no "
                      "unit bundle"),
    ("layers.1.sep.pw2", "'layers.1.sep.pw2' is a convolution fed by multi-bit integers"),
    ("layers.0", "no unit 'layers.0' (try --list)"),
    ("layers.3.attn", "no unit 'layers.3.attn'"),
])
def test_export_unit_rejected(tmp_path, net, pixels, name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        export_unit_bundle(tmp_path / "u", net, name, pixels)
    assert listing(tmp_path) == []


# -- the command line ----------------------------------------------------------------------------


def cli(capsys, checkpoint, *args, calibration=32):
    return run_cli(capsys, "--checkpoint", checkpoint, "--calibration", str(calibration),
                   "--quiet", *args)


def assert_wrote(out, kind, path, images):
    assert re.fullmatch(rf"sw\.export: wrote {kind} bundle {re.escape(str(path))} "
                        rf"\({images} images, \d+\.\d s\)\n", out), out


def test_cli_list(capsys, checkpoint):
    status, out, err = cli(capsys, checkpoint, "--list", calibration=4)
    assert (status, err) == (0, "")
    rows = [line.split() for line in out.splitlines()]
    assert [tuple(r) for r in rows] == UNITS


def test_cli_network(capsys, tmp_path, checkpoint, model):
    path = tmp_path / "net"
    status, out, err = cli(capsys, checkpoint, "--out", path, "--images", "2")
    assert (status, err) == (0, "")
    assert_wrote(out, "network", path, 2)
    assert listing(tmp_path) == ["net"]
    rebuilt, b = assert_network_reproduces(path)
    assert b.array("pixels").shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(b.array("pixels"), rebuilt.to_input(digits()[2][:2]))
    np.testing.assert_array_equal(b.array("labels"), digits()[3][:2].numpy())
    assert b.meta == {"generator": "sw.export", "checkpoint": str(checkpoint),
                      "dataset": "digits"}
    assert b.config["model"] == model_dict(model)
    assert b.config["quantizer"]["calibration_images"] == 32
    assert "calibration" not in b.config["quantizer"]


def test_cli_sdsa_unit(capsys, tmp_path, checkpoint):
    path = tmp_path / "sdsa"
    status, out, err = cli(capsys, checkpoint, "--out", path, "--images", "2",
                           "--unit", "layers.3.attn.sdsa", calibration=8)
    assert (status, err) == (0, "")
    assert_wrote(out, "sdsa", path, 2)
    config, traces = load_sdsa_bundle(path)
    assert config.tokens == 64 and config.channels == 16 and config.timesteps == 2
    assert traces.samples == 2


def test_cli_zip(capsys, tmp_path, checkpoint):
    path = tmp_path / "x.zip"
    status, out, err = cli(capsys, checkpoint, "--out", path, "--images", "3", calibration=8)
    assert (status, err) == (0, "")
    assert_wrote(out, "network", path, 3)
    assert path.is_file() and zipfile.is_zipfile(path)
    assert listing(tmp_path) == ["x.zip"]
    _, b = assert_network_reproduces(path)
    assert b.array("pixels").shape[0] == 3


@pytest.mark.parametrize("args, message", [
    (["--unit", "layers.9"], r"no unit 'layers\.9' in this network \(units: layers\.0\.conv, "
                             r"layers\.1, .*, head_lif, head\)"),
    (["--unit", "layers.0.conv"], re.escape(
        "'layers.0.conv' is a convolution fed by multi-bit integers: it has no unit bundle "
        "(export the network or its block)")),
], ids=["unknown-unit", "multibit-unit"])
def test_cli_bad_unit(capsys, tmp_path, checkpoint, args, message):
    path = tmp_path / "out"
    status, out, err = cli(capsys, checkpoint, "--out", path, *args, calibration=4)
    assert status == 2 and out == ""
    assert re.fullmatch(rf"sw\.export: error: {message}\n", err), err
    assert listing(tmp_path) == []


@pytest.mark.parametrize("case", ["no-out", "images-0", "images-5000", "folder-missing",
                                  "zip-folder-missing", "zip-is-a-folder",
                                  "checkpoint-missing", "calibration-negative"])
def test_cli_bad_input(capsys, tmp_path, checkpoint, case):
    out_path = tmp_path / "out"
    ckpt = checkpoint
    args = ["--out", out_path]
    if case == "no-out":
        args, message = [], "--out is required (or --list)"
    elif case == "images-0":
        args += ["--images", "0"]
        message = "--images must be between 1 and 4096, not 0"
    elif case == "images-5000":
        args += ["--images", "5000"]
        message = "--images must be between 1 and 4096, not 5000"
    elif case == "folder-missing":
        out_path = tmp_path / "no" / "b"
        args = ["--out", out_path]
        message = f"output folder {str(tmp_path / 'no')!r} does not exist"
    elif case == "zip-folder-missing":
        out_path = tmp_path / "no" / "b.zip"
        args = ["--out", out_path]
        message = f"output folder {str(tmp_path / 'no')!r} does not exist"
    elif case == "zip-is-a-folder":
        out_path = tmp_path / "b.zip"
        out_path.mkdir()
        args = ["--out", out_path]
        message = f"output {str(out_path)!r} is a folder, not a file name"
    elif case == "checkpoint-missing":
        ckpt = tmp_path / "none.pt"
        message = f"checkpoint {str(ckpt)!r} does not exist"
    else:
        args += ["--calibration", "-1"]
        message = "--calibration must not be negative, not -1"
    before = listing(tmp_path)
    status, out, err = run_cli(capsys, "--checkpoint", ckpt, "--quiet", *args)
    assert_one_line_error(status, out, err, message)
    assert listing(tmp_path) == before
    assert not (tmp_path / "no").exists()
    if case != "zip-is-a-folder":
        assert not out_path.exists()
    else:
        assert listing(out_path) == []
