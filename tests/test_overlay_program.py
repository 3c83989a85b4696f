"""Overlay programs: the compiler (`gen.program`), the image format (`spec.program`) and the
reference executor (`sim.overlay`). Every operation's output region, computed from the image
alone, equals the integer model's trace on small networks at T = 1 and T = 4, under default and
deliberately small cores (tiles, weight passes, double buffering, bands); the checker names a
corrupted value; the compiler refuses what a core cannot run, naming the layer and the limit."""

import functools
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from gen.program import CompileError, compile_network, cycle_report, geometry_tables
from gen.program import main as program_main
from sim.overlay import Divergence, check_outputs, check_scores, read_descriptors, run_program
from spec.cli import run_main
from spec.core import CoreConfig
from spec.csr import ERRORS
from spec.netbundle import read_network_bundle
from spec.network import Widths
from spec.program import (
    DESCRIPTOR_WORDS,
    FIELDS,
    ProgramError,
    pack_spikes,
    pack_values,
    unpack_spikes,
    unpack_values,
)
from sw.netbundle import write_network_bundle
from sw.quant import quantize
from sw.seeded import seeded_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quant_helpers import digits, stats_model  # noqa: E402

SAMPLES = 2


@functools.cache
def _bundle(tmp, timesteps):
    net = quantize(stats_model(timesteps=timesteps, dims=(8, 16), heads=2, seed=3),
                   digits()[0][:32])
    path = Path(tmp) / f"net-t{timesteps}.zip"
    pixels = net.to_input(digits()[2][:SAMPLES])
    write_network_bundle(path, net, pixels)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("overlay")


def run_and_check(path, core):
    """Compile, run every sample through the executor, check every region; returns the
    image and the number of values compared per sample."""
    _, net, bundle = read_network_bundle(path)
    image = compile_network(net, core)
    layout = image.layout()
    compared = 0
    for s in range(bundle.arrays["pixels"].shape[0]):
        mem = run_program(image.data, len(image.data) + image.activation_bytes, 0, core,
                          bundle.arrays["pixels"][s])
        compared = check_outputs(mem, layout, core, bundle.arrays, s)
        assert len(bundle.arrays["scores"][s]) == net.head.fc.out_channels
        check_scores(mem, layout, core, net.timesteps, bundle.arrays["scores"][s], s)
    return image, compared


@pytest.mark.parametrize("timesteps", [1, 4])
def test_default_core_matches_every_trace(folder, timesteps):
    image, compared = run_and_check(_bundle(folder, timesteps), CoreConfig())
    opcodes = {op.opcode for op in image.ops}
    assert opcodes == {"conv_lif", "conv_stream", "depthwise", "lif", "sdsa", "head"}
    assert compared > 10_000


SMALL_CORES = {
    "tiles-passes": dict(weight_words=64, tile_groups=1),          # 3x3 by taps, 1 group a tile
    "rows-double": dict(weight_words=96, tile_groups=1),           # by kernel rows, 2 buffers
    "lanes8": dict(lanes=8, in_lanes=8, axi_data_bits=32, max_burst=8),
    "lanes32": dict(lanes=32, in_lanes=16, axi_data_bits=128),
    "bands": dict(acc_words=32),                                   # 4-row bands, attention too
}


@pytest.mark.parametrize("changes", SMALL_CORES.values(), ids=SMALL_CORES.keys())
def test_tiled_cores_match_every_trace(folder, changes):
    image, _ = run_and_check(_bundle(folder, 4), CoreConfig(**changes))
    tilings = [op.tiling for op in image.ops]
    if "weight_words" in changes:
        assert any(t.passes > 1 for t in tilings) and any(t.tiles > 1 for t in tilings)
    if changes.get("weight_words") == 96:
        assert any(t.passes == 3 and t.buffers == 2 for t in tilings)
    if "acc_words" in changes:
        sdsa = next(op for op in image.ops if op.opcode == "sdsa")
        assert sdsa.tiling.bands == 2 and sdsa.tiling.tiles == 2
        assert all(op.tiling.bands == 2 for op in image.ops if op.opcode == "conv_lif")


def test_bands_match_every_trace(tmp_path):
    """A 16 x 16 map on a core of 64 accumulator words: 4-row bands with halos."""
    net = seeded_network("conv", channels=8, height=16, width=16, seed=5)
    path = tmp_path / "conv16.zip"
    write_network_bundle(path, net, np.random.default_rng(0).integers(0, 1 << net.input_bits,
                                                                      (SAMPLES, 1, 16, 16)))
    image, _ = run_and_check(path, CoreConfig(acc_words=64))
    assert max(op.tiling.bands for op in image.ops) == 4


def _executed(folder, opcode):
    """(core, bundle, layout, memory after one image, the first operation of `opcode`)."""
    core = CoreConfig()
    _, net, bundle = read_network_bundle(_bundle(folder, 1))
    image = compile_network(net, core)
    layout = image.layout()
    mem = run_program(image.data, len(image.data) + image.activation_bytes, 0, core,
                      bundle.arrays["pixels"][0])
    return core, bundle, layout, mem, next(o for o in layout["ops"] if o["opcode"] == opcode)


def test_checker_names_a_corrupted_value(folder):
    core, bundle, layout, mem, op = _executed(folder, "conv_lif")
    region = layout["regions"][op["output"]]
    record = region["record_bytes"]
    at = region["addr"] + 5 * record                         # token 5 (row 0, column 5)
    mem.data[at] ^= 0x04                                      # channel 2
    got = bundle.arrays[f"trace/{region['trace'][0]}:spikes"][0, 0, 2, 0, 5]
    with pytest.raises(Divergence) as info:
        check_outputs(mem, layout, core, bundle.arrays, 0)
    assert str(info.value) == (
        f"{op['name']} (spikes of {region['trace'][0]}): first divergence at timestep 0, "
        f"token 5 (row 0, column 5), channel 2: expected {got}, got {1 - got} "
        f"(1 values differ)")


def test_score_checker_names_a_corrupted_score(folder):
    """The class-score check passes on the executor's scores and names the first class whose
    expected score was changed."""
    core, bundle, layout, mem, _ = _executed(folder, "head")
    timesteps = layout["regions"]["head:outputs"]["shape"][0]
    expected = np.array(bundle.arrays["scores"][0])
    got = check_scores(mem, layout, core, timesteps, expected, 0)
    assert np.array_equal(got, expected)
    expected[3] += 1
    with pytest.raises(Divergence) as info:
        check_scores(mem, layout, core, timesteps, expected, 0)
    assert str(info.value) == (f"image 0: class 3 scores {got[3]}, expected {got[3] + 1} "
                               f"(1 classes differ)")


def test_checker_refuses_nonzero_padding(folder):
    core, bundle, layout, mem, op = _executed(folder, "lif")
    region = layout["regions"][op["output"]]
    assert region["shape"][1] == 8                           # 8 channels in a 16-bit record
    mem.data[region["addr"] + 1] |= 0x80                     # channel 15: padding
    with pytest.raises(Divergence, match="padding channels are not zero"):
        check_outputs(mem, layout, core, bundle.arrays, 0)


# -- format ---------------------------------------------------------------------------------------


def test_packing_round_trips():
    core = CoreConfig()
    rng = np.random.default_rng(1)
    spikes = rng.integers(0, 2, (3, 21, 4, 5))
    data = pack_spikes(spikes, core)
    got, pad = unpack_spikes(data, 3, 21, 4, 5, core)
    assert np.array_equal(got, spikes) and not pad.any() and len(data) % 64 == 0
    values = rng.integers(-(1 << 11), 1 << 11, (2, 5, 3, 3))
    got, pad = unpack_values(pack_values(values, 12, core), 2, 5, 3, 3, 12, core)
    assert np.array_equal(got, values) and not pad.any()
    with pytest.raises(ValueError, match=f"^values {values.min()} .. {values.max()} do not "
                                         f"fit 8 signed bits$"):
        pack_values(values, 8, core)


def test_geometry_tables_follow_the_engine():
    from spec.sae import SAEConfig

    sae = SAEConfig(mode="conv", in_channels=4, out_channels=16, kernel=3, stride=2, padding=1,
                    height=7, width=5)
    rows, cols = geometry_tables(sae)
    for table, entries in ((rows, sae.depthwise_axis_table(7, sae.out_height)),
                           (cols, sae.depthwise_axis_table(5, sae.out_width))):
        assert [(int(v) & 15, (int(v) >> 4) & 0xFFFF, int(v) >> 20) for v in table] == [
            tuple(e) for e in entries]


def _image(folder, core=None):
    core = core or CoreConfig()
    _, net, bundle = read_network_bundle(_bundle(folder, 1))
    return compile_network(net, core), bundle, core


def _run(image, bundle, core, data=None):
    return run_program(data if data is not None else image.data,
                       len(image.data) + image.activation_bytes, 0, core,
                       bundle.arrays["pixels"][0])


def _patched(image, layer, **fields):
    """The image with descriptor `layer`'s fields changed and its checksum made right again
    (a program that is well-formed but bad)."""
    desc = image.regions["descriptors"]["addr"] + layer * DESCRIPTOR_WORDS * 4
    data = bytearray(image.data)
    words = list(struct.unpack_from(f"<{DESCRIPTOR_WORDS}I", data, desc))
    for name, value in fields.items():
        words[FIELDS.index(name)] = value
    words[-1] = ~sum(words[:-1]) & 0xFFFFFFFF
    struct.pack_into(f"<{DESCRIPTOR_WORDS}I", data, desc, *words)
    return bytes(data)


def _refused(image, bundle, core, data):
    with pytest.raises(ProgramError) as info:
        _run(image, bundle, core, data)
    return info.value.code, info.value.layer, str(info.value)


def test_damaged_image_is_refused(folder):
    image, bundle, core = _image(folder)
    desc = image.regions["descriptors"]["addr"]
    data = bytearray(image.data)
    data[desc + 4 * FIELDS.index("kernel")] ^= 1
    assert _refused(image, bundle, core, bytes(data)) == (
        ERRORS["descriptor_checksum"], 0, "layer 0: descriptor checksum does not match")
    assert _refused(image, bundle, core, b"\0" * 4 + image.data[4:]) == (
        ERRORS["header_checksum"], 0, "header checksum does not match")


def test_unknown_opcode_is_refused(folder):
    image, bundle, core = _image(folder)
    assert _refused(image, bundle, core, _patched(image, 3, opcode=9)) == (
        ERRORS["opcode"], 3, "layer 3: unknown opcode 9")


def test_shape_above_the_maxima_is_refused(folder):
    image, bundle, core = _image(folder)
    assert _refused(image, bundle, core, _patched(image, 2, kernel=9)) == (
        ERRORS["shape"], 2, "layer 2: kernel 9 exceeds the core's max_kernel (7)")


@pytest.mark.parametrize("layer, fields, code, message", [
    (2, {"tile_groups": 3}, "shape", "layer 2: tile_groups 3 is not a power of two"),
    (2, {"weight_passes": 2}, "shape",
     "layer 2: kernel 1, stride 1 or weight_passes 2 unusable"),
    (0, {"stride": 0}, "shape", "layer 0: kernel 3, stride 0 or weight_passes 1 unusable"),
    (1, {"tiles": 0}, "shape", "layer 1: tiles is 0"),
    (1, {"in_addr": 65540}, "address",
     "layer 1: in_addr 0x10004 is not a multiple of the AXI beat (8 bytes)"),
])
def test_what_the_core_cannot_step_through_is_refused(folder, layer, fields, code, message):
    """The structural rules the RTL needs (spec.program._check_structure), checked alike by
    the executor and the core."""
    image, bundle, core = _image(folder)
    assert _refused(image, bundle, core, _patched(image, layer, **fields)) == (
        ERRORS[code], layer, message)


def test_out_of_range_addresses_are_refused(folder):
    image, bundle, core = _image(folder)
    end = image.activation_addr + image.activation_bytes
    code, layer, text = _refused(image, bundle, core, _patched(image, 0,
                                                               weights_addr=0xFFFF0000))
    assert (code, layer) == (ERRORS["address"], 0)
    assert text.startswith("layer 0: its weights [0xffff0000, ") and text.endswith(
        f") is outside the program's memory [0x0, {end:#x})")
    code, layer, text = _refused(image, bundle, core, _patched(image, 1, out_addr=64))
    assert (code, layer) == (ERRORS["address"], 1)
    assert text.startswith("layer 1: its output [0x40, ") and text.endswith(
        f") is outside the activation area [{image.activation_addr:#x}, {end:#x})")


def test_program_for_another_core_is_refused(folder):
    image, bundle, _ = _image(folder)
    assert _refused(image, bundle, CoreConfig(acc_words=256), image.data) == (
        ERRORS["core"], 0, "the program was compiled for another core configuration")


def test_descriptors_read_back(folder):
    image, bundle, core = _image(folder)
    mem = _run(image, bundle, core)
    header, descs = read_descriptors(mem, 0)
    assert header["layers"] == len(image.ops) == len(descs)
    assert descs == [{**{f: 0 for f in FIELDS}, **d, "checksum": descs[n]["checksum"]}
                     for n, d in enumerate(image.descriptors)]


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    (dict(max_channels=32, max_head_dim=32),
     "layers.3.mlp.fc1: channels 64 exceeds the core's max_channels (32)"),
    (dict(max_map=4, max_tokens=16), "layers.0.conv: map size 8 exceeds the core's max_map "
                                     "(4)"),
    (dict(max_timesteps=1), "layers.1.sep.pw2: multi-bit total width {wide} exceeds the core's "
                            "acc_bits (a core without membrane memory keeps totals there) "
                            "(20)"),
    (dict(acc_words=4), "layers.0.conv: one output row (8 pixels) exceeds the core's acc_words "
                        "(4)"),
    (dict(acc_bits=11), "layers.1.sep.dw: accumulator width {acc} exceeds the core's "
                        "acc_bits (11)"),
    (dict(max_kernel=5, weight_words=25), "layers.1.sep.dw: kernel 7 exceeds the core's "
                                          "max_kernel (5)"),
])
def test_core_too_small(folder, changes, message):
    _, net, _ = read_network_bundle(_bundle(folder, 1))
    widths = Widths(net.widths)
    text = message.format(wide=net.layers[1].sep_pw2.conv.config(widths).acc_bits,
                          acc=net.layers[1].sep_dw.config(widths).acc_bits)
    with pytest.raises(CompileError) as info:
        compile_network(net, CoreConfig(**changes))
    assert str(info.value) == text


# -- command line --------------------------------------------------------------------------------


def run_cli(capsys, *argv):
    status = run_main("gen.program", program_main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_writes_a_reproducible_program(capsys, folder, tmp_path):
    bundle = _bundle(folder, 1)
    status, out, err = run_cli(capsys, "--bundle", bundle, "--out", tmp_path / "a")
    assert status == 0 and err == "" and out.startswith("gen.program: 20 operations, image ")
    assert "cycle model" in out
    run_cli(capsys, "--bundle", bundle, "--out", tmp_path / "b")
    for name in ("image.bin", "layout.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    layout = json.loads((tmp_path / "a" / "layout.json").read_text())
    assert layout["image_bytes"] == (tmp_path / "a" / "image.bin").stat().st_size
    assert layout["cycles"]["samples"] == SAMPLES
    assert str(tmp_path) not in (tmp_path / "a" / "layout.json").read_text()


def test_cli_core_flags(capsys, folder, tmp_path):
    core = tmp_path / "core.yaml"
    CoreConfig(lanes=8).save(core)
    status, _, _ = run_cli(capsys, "--bundle", _bundle(folder, 1), "--core", core, "--set",
                           "acc_words=256", "--out", tmp_path / "p")
    layout = json.loads((tmp_path / "p" / "layout.json").read_text())
    assert status == 0 and layout["core"]["lanes"] == 8 and layout["core"]["acc_words"] == 256


@pytest.mark.parametrize("argv, message", [
    (["--bundle", "{d}/none.zip", "--out", "{d}/p"], "bundle '{d}/none.zip' does not exist"),
    (["--bundle", "{b}", "--out", "{d}/no/p"], "output folder '{d}/no' does not exist"),
    (["--bundle", "{b}", "--out", "{d}/p", "--set", "lanes"],
     "--set takes KEY=VALUE, not 'lanes'"),
    (["--bundle", "{b}", "--out", "{d}/p", "--set", "lanes=x"],
     "--set lanes: 'x' is not an integer"),
    (["--bundle", "{b}", "--out", "{d}/p", "--set", "lanes=12"],
     "lanes must be one of 1, 2, 4, 8, 16, 32, not 12"),
    (["--bundle", "{b}", "--out", "{d}/p", "--set", "lane=8"],
     "unknown core configuration key 'lane' (known: "),
    (["--bundle", "{b}", "--out", "{d}/p", "--base", "0x10"],
     "base address 0x10 must be a multiple of 64 within the core's 32-bit address space"),
    (["--bundle", "{b}", "--out", "{d}/p", "--base", "zero"],
     "--base must be an integer address, not 'zero'"),
    (["--bundle", "{b}", "--out", "{d}/p/"], "--out '{d}/p' is a folder that does not hold a "
                                               "program; refusing to replace it"),
    (["--bundle", "{b}", "--out", "{d}/p", "--set", "max_channels=32", "--set",
      "max_head_dim=32"],
     "layers.3.mlp.fc1: channels 64 exceeds the core's max_channels (32)"),
])
def test_cli_bad_input(capsys, folder, tmp_path, argv, message):
    b = _bundle(folder, 1)
    if argv[-1].endswith("/p/"):
        (tmp_path / "p").mkdir()
        (tmp_path / "p" / "mine.txt").write_text("keep me\n")
        argv[-1] = argv[-1][:-1]
    argv = [a.format(d=tmp_path, b=b) for a in argv]
    status, out, err = run_cli(capsys, *argv)
    assert (status, out) == (2, "")
    assert err.startswith(f"gen.program: error: {message.format(d=tmp_path)}")
    assert err.count("\n") == 1
    if (tmp_path / "p").exists():
        assert [f.name for f in (tmp_path / "p").iterdir()] == ["mine.txt"]
    assert sorted(f.name for f in tmp_path.iterdir()) in ([], ["p"])


def test_image_placed_at_a_base_address(folder):
    """Every address is absolute: the same network compiled for base 0x10000 runs there."""
    core = CoreConfig()
    _, net, bundle = read_network_bundle(_bundle(folder, 1))
    image = compile_network(net, core, base=0x10000)
    mem = run_program(image.data, len(image.data) + image.activation_bytes, 0x10000, core,
                      bundle.arrays["pixels"][1])
    assert check_outputs(mem, image.layout(), core, bundle.arrays, 1) > 10_000
    with pytest.raises(ProgramError) as info:
        run_program(compile_network(net, core).data, 1 << 20, 0x10000, core,
                    bundle.arrays["pixels"][1])
    assert (info.value.code, str(info.value)) == (
        ERRORS["address"], "the program was compiled for address 0x0, not 0x10000")


def test_cycle_bound_counts_what_the_core_moves(folder):
    """A `lif` operation reads each record once (every tile its own groups' slice), so its
    bytes do not grow with its tiles; the memory bound counts the read and write channels
    apart (they work at once), the model's traffic counts them together."""
    _, net, bundle = read_network_bundle(_bundle(folder, 4))
    by_core = {}
    for key, core in (("default", CoreConfig()), ("one group a tile",
                                                  CoreConfig(tile_groups=1))):
        image = compile_network(net, core)
        report = cycle_report(image, bundle, 0)
        by_core[key] = {op.name: (op.tiling.tiles, row) for op, row in
                        zip(image.ops, report["ops"], strict=True) if op.opcode == "lif"}
        for _, row in by_core[key].values():
            assert row["memory"] == max(-(-row["read"] // core.axi_bytes),
                                        -(-row["written"] // core.axi_bytes))
            assert row["bound"] == max(row["ideal"], row["memory"])
            assert row["model"] >= -(-(row["read"] + row["written"]) // core.axi_bytes)
    assert by_core["default"].keys() == by_core["one group a tile"].keys() != set()
    more_tiles = 0
    for name, (tiles, row) in by_core["one group a tile"].items():
        default_tiles, default = by_core["default"][name]
        more_tiles += tiles > default_tiles
        assert (row["read"], row["written"]) == (default["read"], default["written"]), name
    assert more_tiles > 0
