"""Firing rates, operation counts and the energy estimate."""

import pytest
import torch

from spec.cli import run_main
from sw.metrics import E_AC_PJ, E_MAC_PJ, format_table, main, measure
from sw.model import MetaSpikeFormer, digits_config
from sw.train import save_checkpoint


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    model = MetaSpikeFormer(digits_config(timesteps=2))
    images = torch.rand(6, 1, 8, 8) * 40     # large enough that the early layers fire
    captured = {}
    sdsa = model.layers[3].attn.sdsa
    def keep(module, args, out):
        captured["qk"] = args     # returns None: the output stays

    handle = sdsa.register_forward_hook(keep)
    rows, summary = measure(model, images)
    handle.remove()
    return model, images, rows, summary, captured["qk"]


def test_dense_operations_by_hand(measured):
    _, _, rows, _, _ = measured
    by = {r["layer"]: r for r in rows}
    assert by["layers.0.conv"]["dense_ops"] == 9 * 1 * 32 * 64        # 3x3, 1 -> 32, 8 x 8
    assert by["layers.1.sep.dw"]["dense_ops"] == 49 * 64 * 64         # depthwise 7x7, 64 ch
    assert by["layers.3.attn.q_conv.0"]["dense_ops"] == 9 * 128 * 128 * 64   # RepConv folded
    assert by["head"]["dense_ops"] == 128 * 10
    assert "layers.3.attn.q_conv.0.conv1" not in by      # inside the RepConv: not counted


def test_effective_operations_follow_the_input_rate(measured):
    _, _, rows, summary, _ = measured
    steps = summary["timesteps"]
    for r in rows:
        if r["kind"] == "AC":
            assert r["ops"] == pytest.approx(r["dense_ops"] * steps * r["input_rate"])
        elif r["kind"] == "MAC":
            assert r["ops"] == r["dense_ops"] * steps
    kinds = {r["layer"]: r["kind"] for r in rows}
    assert kinds["layers.0.conv"] == kinds["layers.1.sep.pw2"] == "MAC"
    assert kinds["layers.1.sep.pw1"] == kinds["layers.3.mlp.fc1"] == "AC"
    assert any(r["kind"] == "AC" and r["ops"] > 0 for r in rows), "nothing fired"


def test_attention_lines_count_d_per_spike(measured):
    _, images, rows, _, (q, k, _) = measured
    d = 128 // 4
    by = {r["layer"]: r for r in rows}
    assert by["layers.3.attn.sdsa (KV = K^T V)"]["ops"] == pytest.approx(
        float(k.sum()) * d / len(images))
    assert by["layers.3.attn.sdsa (Y = Q KV)"]["ops"] == pytest.approx(
        float(q.sum()) * d / len(images))


def test_energy_is_the_papers_estimate(measured):
    _, _, rows, summary, _ = measured
    ac = sum(r["ops"] for r in rows if r["kind"].startswith("AC"))
    mac = sum(r["ops"] for r in rows if r["kind"] == "MAC")
    assert summary["energy_uj"] == pytest.approx((ac * 0.9 + mac * 4.6) * 1e-6)
    assert (E_AC_PJ, E_MAC_PJ) == (0.9, 4.6)
    table = format_table(rows, summary)
    assert table.splitlines()[0] == ("| layer | kind | input / firing rate | dense ops | "
                                     "effective ops |")
    assert f"energy {summary['energy_uj']:.3f} uJ" in table


def test_firing_rates_are_fractions(measured):
    _, _, rows, _, _ = measured
    rates = [r["firing_rate"] for r in rows if r["kind"] == "LIF"]
    # ConvBlock 4, downsample 1, attention 5 (head, q, k, v, SDSA), MLP 2, head 1
    assert len(rates) == 13 and all(0 <= r <= 1 for r in rates) and max(rates) > 0


def test_command_line(capsys, tmp_path):
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "c.pt", MetaSpikeFormer(digits_config()), {"dataset": "digits"})
    status = run_main("sw.metrics", main, ["--checkpoint", str(tmp_path / "c.pt"), "--images",
                                           "20", "--json", str(tmp_path / "m.json")])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert out.startswith("| layer | kind |") and "per image (T = 1)" in out
    assert (tmp_path / "m.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "{d}/none.pt"], "checkpoint '{d}/none.pt' does not exist"),
    (["--checkpoint", "{d}/none.pt", "--images", "0"], "--images must be at least 1, not 0"),
    (["--images", "3"], "the following arguments are required: --checkpoint"),
])
def test_bad_input(capsys, tmp_path, argv, message):
    status = run_main("sw.metrics", main, [a.format(d=tmp_path) for a in argv])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err == f"sw.metrics: error: {message.format(d=tmp_path)}\n"
