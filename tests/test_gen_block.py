"""Command lines `gen.block` and `gen.network`: outputs, reproducibility, and bad input."""

import sys
from pathlib import Path

import pytest
from cli_helpers import CLI, assert_reproducible_text

from gen.block import PROG as BLOCK_PROG
from gen.block import main as block_main
from gen.network import PROG as NET_PROG
from gen.network import main as net_main

sys.path.insert(0, str(Path(__file__).resolve().parent))

block = CLI(BLOCK_PROG, block_main)
network = CLI(NET_PROG, net_main)
SMALL = ("--channels", 8, "--height", 4, "--width", 4)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A network bundle and a block bundle of a small quantized digits model."""
    from quant_helpers import digits, stats_model

    from sw.netbundle import write_network_bundle
    from sw.quant import quantize

    model = stats_model(dims=(8, 16), heads=2, seed=1)
    net = quantize(model, digits()[0][:32])
    root = tmp_path_factory.mktemp("gen-block")
    pixels = net.to_input(digits()[2][:1])
    write_network_bundle(root / "net", net, pixels)
    write_network_bundle(root / "blk", net, pixels, block="layers.3")
    return root


@pytest.mark.parametrize("kind", [pytest.param("conv", marks=pytest.mark.slow), "downsample"])
def test_seeded_layer_is_reproducible(kind, capsys):
    first = block.run(capsys, "--kind", kind, *SMALL, "--quiet")
    second = block.run(capsys, "--kind", kind, *SMALL, "--quiet")
    assert first[0] == 0 and first == second
    assert "module block(" in first[1]
    assert_reproducible_text(first[1])


def test_summary_on_stderr(capsys, tmp_path):
    out = tmp_path / "b.v"
    status, stdout, err = block.run(capsys, "--kind", "conv", *SMALL, "-o", out)
    assert (status, stdout) == (0, "")
    assert err.startswith(f"[{BLOCK_PROG}] layers.1 (IntConvBlock), T = 1: 11 units")
    assert "sep_pw2_sae" in err and "in_bits" in err
    assert out.read_text().startswith("/*")


def test_block_bundle_equals_network_layer(bundles, capsys):
    from_block = block.generate(capsys, "--bundle", bundles / "blk", "--quiet")
    from_net = block.generate(capsys, "--bundle", bundles / "net", "--layer", "layers.3",
                              "--quiet")
    assert from_block == from_net
    assert_reproducible_text(from_block, bundles)


@pytest.mark.slow      # tb/test_network.py co-simulates networks with taps
def test_network_with_taps(bundles, capsys):
    plain = network.generate(capsys, "--bundle", bundles / "net", "--quiet")
    tapped = network.generate(capsys, "--bundle", bundles / "net", "--taps", "--quiet")
    assert "t0__fire" not in plain
    for n in range(4):
        assert f"output t{n}__fire;" in tapped and f"t{n}__data" in tapped
    assert_reproducible_text(tapped, bundles)


@pytest.mark.parametrize("argv, message", [
    (("--kind", "mlp"), "argument --kind: invalid choice: 'mlp' (choose from 'transformer', "
                        "'conv', 'downsample')"),
    (("--channels", 0), "--channels must be 1 to 1024, not 0"),
    (("--channels", 12, "--heads", 5), "--heads (5) must divide --channels (12)"),
    (("--kind", "conv", "--heads", 2), "--heads is for --kind transformer, not conv"),
    (("--timesteps", 17), "--timesteps must be 1 to 16, not 17"),
    (("--variant", 5), "--variant must be 1, 2, 3 or 4, not 5"),
    (("--seed", -1), "--seed must be at least 0, not -1"),
    (("--layer", "layers.1"), "--layer needs --bundle (a network bundle)"),
    (("--bundle", "nowhere", "--channels", 8), "--channels cannot be combined with --bundle"),
    (("--bundle", "/no/such/bundle"), "bundle '/no/such/bundle' does not exist"),
    (("--name", "module"), "--name must be a Verilog identifier, not 'module'"),
])
def test_block_bad_input(argv, message, capsys):
    block.assert_one_line_error(*block.run(capsys, *argv), message)


def test_block_bundle_errors(bundles, capsys):
    block.assert_one_line_error(
        *block.run(capsys, "--bundle", bundles / "net"),
        "a network bundle needs --layer (one of layers.0, layers.1, layers.2, layers.3)")
    block.assert_one_line_error(
        *block.run(capsys, "--bundle", bundles / "net", "--layer", "layers.9"),
        "no layer 'layers.9' in the network bundle (layers: layers.0, layers.1, layers.2, "
        "layers.3)")
    block.assert_one_line_error(*block.run(capsys, "--bundle", bundles / "blk", "--layer",
                                           "layers.1"),
                                "the block bundle holds layers.3, not layers.1")


def test_network_bad_input(bundles, capsys, tmp_path):
    network.assert_one_line_error(
        *network.run(capsys), "--bundle is required: a network bundle from python -m "
        "sw.export --checkpoint F --out DIR")
    network.assert_one_line_error(
        *network.run(capsys, "--bundle", bundles / "blk"),
        f"{str(bundles / 'blk')!r} is a block bundle; generate it with python -m gen.block")
    network.assert_one_line_error(*network.run(capsys, "--bundle", tmp_path / "none"),
                                  f"bundle {str(tmp_path / 'none')!r} does not exist")
    out = tmp_path / "missing" / "net.v"
    network.assert_one_line_error(
        *network.run(capsys, "--bundle", bundles / "net", "-o", out),
        f"output folder {str(out.parent)!r} does not exist")
    assert not out.parent.exists()
