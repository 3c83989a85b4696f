"""The main job's command line (`sim.demo`): bad input is one line, exit 2, nothing written;
`sim.network.ideal_costs` against costs computed by hand."""

import pytest

from sim.demo import main as demo_main
from spec.cli import run_main


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "--images must be 1 to 360 (the test set), not 0"),
    (["--images", "361"], "--images must be 1 to 360 (the test set), not 361"),
    (["--train", "--checkpoint", "x.pt"], "give --checkpoint or --train, not both"),
    (["--checkpoint", "/no/such.pt"], "checkpoint '/no/such.pt' does not exist (train one with "
                                      "--train)"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--pause", "-0.5"], "--pause must be at least 0 and below 1, not -0.5"),
    (["--spatial", "--pause", "0.1"], "--pause is for the overlay core's memory, not --spatial"),
    (["--waves", "demo.vcd"], "--waves writes an FST file; name it *.fst, not 'demo.vcd'"),
    (["--waves-window", "1:9"], "--waves-window needs --waves FILE.fst"),
    (["--waves", "/no/such/dir/w.fst"], "output folder '/no/such/dir' does not exist"),
])
def test_demo_bad_input(capsys, tmp_path, argv, message):
    status = run_main("sim.demo", demo_main, argv + ["--out", str(tmp_path / "demo")])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err == f"sim.demo: error: {message}\n"
    assert not (tmp_path / "demo").exists()


def test_ideal_costs_of_a_small_network(tmp_path):
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quant_helpers import digits, stats_model

    from hw.network import Network
    from sim.network import ideal_costs
    from sw.netbundle import read_network_bundle, write_network_bundle
    from sw.quant import quantize

    net = quantize(stats_model(dims=(8, 16), heads=2, seed=2), digits()[0][:32])
    write_network_bundle(tmp_path / "b", net, net.to_input(digits()[2][:3]))
    _, net, bundle = read_network_bundle(tmp_path / "b")
    hw = Network(net)
    costs = ideal_costs(hw, net, bundle, 2)
    # every unit of every layer and of the head has a cost
    assert len(costs) == sum(len(p.units) for p in [*hw.layers, hw.head])
    # the first engine: one event per set bit of the 2 images' pixels, each touching
    # ceil(touched pixels x 8 channels / 8 lanes) words, plus 2 drains of 64 words
    pixels = np.asarray(bundle.array("pixels"))[:2, 0]
    cfg = hw.layers[0].units["sae"][0]
    bits = sum(int(((pixels >> b) & 1).sum(axis=0).ravel() @ cfg.touched_pixels().ravel())
               for b in range(cfg.in_bits))
    assert cfg.lanes == cfg.out_channels == 8
    assert costs["layers.0.sae"] == bits + 2 * 64
    # a LIF array: one beat per cycle
    lif = hw.layers[1].units["sep_lif1"]
    assert costs["layers.1.sep_lif1"] == 2 * 64 * 8 // lif.lanes
    # the token sum: 64 tokens x 1 group per image
    assert costs["head.tokensum"] == 2 * 64
