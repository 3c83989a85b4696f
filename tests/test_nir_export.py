"""The NIR export (sw/nir_export.py): the graph of the shipped digits checkpoint, read back from
its file, computes what the float model computes.

The check runs the graph with a small evaluator of NIR's semantics written here (not nir's,
which has none, nor snnTorch's importer): per timestep, every node in topological order, a node
with several incoming edges receiving their sum; a LIF's Euler step `v += dt / tau (v_leak - v
+ r I)`, a spike when `v >= v_threshold` (NIR's definition says `v > v_threshold`; the
evaluator mirrors `MultiStepLIF`'s `H >= v_th` on purpose, so that the two differ only by float
rounding, and counts the membranes exactly at a threshold), then `v = v_reset`. It compares
every exported LIF's spikes with the float model's `MultiStepLIF` of the same name (forward
hooks, as `sw.quant.float_spikes` takes them) and the graph's output with the model's values
there.

Rounding: the graph's convolutions have their BatchNorms folded in, the model applies them
after the convolution, so the currents differ by float rounding. Two runs make that precise:
- forced: each LIF computes its own spike but passes the model's spike on (and resets as the
  model's neuron did), so every LIF sees the model's upstream spikes; a disagreement there is
  that LIF's own, and passes only with a membrane within `EPS` of the threshold;
- free: the graph runs on its own spikes. Until the first disagreement both runs compute the
  same, so with no forced disagreement the free run must agree exactly.
"""

import copy
import dataclasses
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import CLI

nir = pytest.importorskip("nir")

from sw.checkpoint import load_checkpoint  # noqa: E402
from sw.lif_float import MultiStepLIF  # noqa: E402
from sw.model import (  # noqa: E402
    ConvBlock,
    Downsample,
    MetaSpikeFormer,
    ModelConfig,
    StageSpec,
    TransformerBlock,
    batchnorm_statistics,
)
from sw.nir_export import DT, export_nir, lif_node, main, read_nir, write_nir  # noqa: E402
from sw.train import load_dataset  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "digits.pt"
IMAGES = 48         # digits test images in the comparisons
EPS = 1e-4          # how close to its threshold a membrane must be for rounding to flip a spike
cli = CLI("sw.nir_export", main)


# -- the evaluator of NIR semantics ----------------------------------------------------------


def _order(graph):
    """The node names in a topological order of the edges (ValueError on a cycle)."""
    preds = defaultdict(list)
    for a, b in graph.edges:
        preds[b].append(a)
    indegree = {n: len(preds[n]) for n in graph.nodes}
    ready = [n for n, d in indegree.items() if d == 0]
    order = []
    while ready:
        n = ready.pop()
        order.append(n)
        for a, b in graph.edges:
            if a == n:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    if len(order) != len(graph.nodes):
        raise ValueError("the graph has a cycle")
    return order, preds


def _t32(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def _ints(v):
    return tuple(int(x) for x in np.broadcast_to(np.asarray(v), (2,)))


def _apply(node, x):
    """A stateless node's output for the (batch, ...) input `x`."""
    if isinstance(node, nir.Conv2d):
        return F.conv2d(x, _t32(node.weight), _t32(node.bias), stride=_ints(node.stride),
                         padding=_ints(node.padding), dilation=_ints(node.dilation),
                         groups=int(node.groups))
    if isinstance(node, nir.Scale):
        return x * _t32(node.scale)
    if isinstance(node, nir.AvgPool2d):
        return F.avg_pool2d(x, _ints(node.kernel_size), _ints(node.stride), _ints(node.padding))
    if isinstance(node, nir.SumPool2d):
        k = _ints(node.kernel_size)
        return F.avg_pool2d(x, k, _ints(node.stride), _ints(node.padding)) * (k[0] * k[1])
    if isinstance(node, nir.Flatten):      # dimensions without the batch
        end = int(node.end_dim)
        return x.flatten(int(node.start_dim) + 1, end + 1 if end >= 0 else end)
    if isinstance(node, nir.Affine):
        return x @ _t32(node.weight).T + _t32(node.bias)
    if isinstance(node, nir.Linear):
        return x @ _t32(node.weight).T
    if isinstance(node, nir.Output):
        return x
    raise NotImplementedError(f"no evaluator for {type(node).__name__}")


def simulate(graph, images, timesteps, *, forced=None, per_step=False):
    """Run `graph` for `timesteps` steps of its metadata's dt, `images` (B, C, H, W) at its
    input every step (`per_step`: `images[t]` at step t). Returns {node: (T, B, ...)
    outputs}, {LIF: (T, B, ...) own spikes}, {LIF: (T, B, ...) membranes before the reset},
    the count of membranes exactly at a threshold. `forced` ({LIF: (T, B, ...) spikes}):
    those LIFs pass these spikes on and reset by them, instead of by their own."""
    dt = float(graph.metadata["dt"])
    order, preds = _order(graph)
    lifs = {n: node for n, node in graph.nodes.items() if isinstance(node, nir.LIF)}
    # dt / tau in float64 (exactly 1/2 for tau = 2 dt), then the float32 arithmetic of the model
    params = {n: {"k": _t32(dt / np.asarray(node.tau, dtype=np.float64)), "r": _t32(node.r),
                  "v_leak": _t32(node.v_leak), "v_th": _t32(node.v_threshold),
                  "v_reset": _t32(node.v_reset)} for n, node in lifs.items()}
    v = {n: None for n in lifs}
    outs, spikes, membranes = defaultdict(list), defaultdict(list), defaultdict(list)
    ties = 0
    for t in range(timesteps):
        vals = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                y = images[t] if per_step else images
            else:
                x = vals[preds[name][0]]
                for p in preds[name][1:]:
                    x = x + vals[p]
                if name in lifs:
                    p = params[name]
                    old = p["v_reset"].expand_as(x) if v[name] is None else v[name]
                    h = old + p["k"] * (p["v_leak"] - old + p["r"] * x)
                    s = (h >= p["v_th"]).to(torch.float32)      # MultiStepLIF: H >= v_th
                    ties += int((h == p["v_th"]).sum())
                    spikes[name].append(s)
                    membranes[name].append(h)
                    y = s if forced is None else forced[name][t]
                    v[name] = torch.where(y > 0, p["v_reset"], h)
                else:
                    y = _apply(node, x)
            vals[name] = y
            outs[name].append(y)
    stack = lambda d: {k: torch.stack(a) for k, a in d.items()}  # noqa: E731
    return stack(outs), stack(spikes), stack(membranes), ties


# -- the float model's side ------------------------------------------------------------------


def float_run(model, images, stop=None):
    """({LIF module name: (T, B, ...) spikes}, the (T, B, C, H, W) input of the layer named
    `stop` or None, the (T, B, classes) head outputs per timestep)."""
    found, hooks, seen = {}, [], {}
    for name, m in model.named_modules():
        if isinstance(m, MultiStepLIF):
            hooks.append(m.register_forward_hook(
                lambda mod, args, out, name=name: found.__setitem__(name, out.detach())))
        if name == stop:
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args: seen.__setitem__("stream", args[0].detach())))
    hooks.append(model.head.register_forward_hook(
        lambda mod, args, out: seen.__setitem__("scores", out.detach())))
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in hooks:
            h.remove()
    return found, seen.get("stream"), seen["scores"]


def with_timesteps(model, timesteps):
    """A copy of `model` run for `timesteps` timesteps (the same weights)."""
    other = MetaSpikeFormer(dataclasses.replace(model.config, timesteps=timesteps))
    other.load_state_dict(model.state_dict())
    return other.eval()


def check_against_model(graph, model, images):
    """AssertionError unless `graph` computes what `model` computes on `images` (see the
    module docstring); else the measurements: per exported LIF (`rows`) the free run's spike
    agreement, the forced run's disagreements and the largest distance of their membranes from
    the threshold, the firing rate; their totals; the membranes exactly at a threshold (free
    run); the largest difference of the graph's output from the model's (forced and free)."""
    T = model.config.timesteps
    stop = next((f"layers.{i}" for i, layer in enumerate(model.layers)
                 if not isinstance(layer, (Downsample, ConvBlock))), None)
    ref, stream, scores = float_run(model, images, stop)
    lifs = [n for n, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    exported = [f"layers.{i}." for i in range(len(model.layers))
                if stop is None or i < int(stop.split(".")[1])] + \
        (["head_lif"] if stop is None else [])
    want_lifs = {n for n in ref if any(n.startswith(p) or n == p for p in exported)}
    assert set(lifs) == want_lifs, (f"LIF nodes {sorted(set(lifs) - want_lifs)} have no "
                                    f"MultiStepLIF of that name; MultiStepLIFs "
                                    f"{sorted(want_lifs - set(lifs))} have no LIF node")
    forced = {n: ref[n] for n in lifs}
    free_outs, free_spikes, _, ties = simulate(graph, images, T)
    outs, own, membranes, _ = simulate(graph, images, T, forced=forced)
    rows, problems = {}, []
    for n in lifs:
        v_th = _t32(graph.nodes[n].v_threshold)
        diff = own[n] != ref[n]
        margin = (membranes[n] - v_th).abs()[diff]
        far = int((margin > EPS).sum())
        rows[n] = {"agreement": float((free_spikes[n] == ref[n]).float().mean()),
                   "forced_disagreements": int(diff.sum()),
                   "max_margin": float(margin.max()) if margin.numel() else 0.0,
                   "firing": float(ref[n].mean()), "neuron_steps": int(diff.numel())}
        if far:
            problems.append(f"{n}: {far} spikes differ with the membrane further than {EPS} "
                            f"from the threshold (up to {float(margin.max()):.4g})")
    forced_total = sum(r["forced_disagreements"] for r in rows.values())
    free_bad = [n for n, r in rows.items() if r["agreement"] < 1.0]
    if forced_total == 0 and free_bad:
        problems.append(f"free run disagrees with no forced disagreement: {free_bad}")
    want = stream if stop is not None else scores
    errors = []
    for run in (outs, free_outs):           # forced, then free
        out = run["output"]
        errors.append(float((out - want).abs().max()) if out.shape == want.shape
                      else float("inf"))
    # on the model's spikes, the graph's output is the model's up to float rounding
    if not errors[0] <= 1e-4 * max(1.0, float(want.abs().max())):
        problems.append(f"the graph's output differs from the model's by up to {errors[0]:.4g} "
                        f"(shapes {tuple(outs['output'].shape)} and {tuple(want.shape)})")
    summary = "; ".join(f"{n}: agree {r['agreement']:.6f}, forced diff "
                        f"{r['forced_disagreements']}, firing {r['firing']:.3f}"
                        for n, r in rows.items())
    assert not problems, " | ".join(problems) + f" || {summary}"
    return {"rows": rows, "forced": forced_total, "ties": ties, "output_error": errors[0],
            "output_error_free": errors[1],
            "agreement": sum(r["agreement"] * r["neuron_steps"] for r in rows.values()) /
            sum(r["neuron_steps"] for r in rows.values()),
            "neuron_steps": sum(r["neuron_steps"] for r in rows.values())}


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    m, _ = load_checkpoint(CHECKPOINT)
    return m.eval()


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits")[2][:IMAGES]


@pytest.fixture(scope="module")
def written(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("nir") / "digits.nir"
    omitted = write_nir(model, path)
    return path, omitted


@pytest.fixture(scope="module")
def graph(written):
    return read_nir(written[0])


# -- the digits export -----------------------------------------------------------------------


def test_digits_graph_nodes_and_edges(graph):
    kinds = Counter(type(n).__name__ for n in graph.nodes.values())
    assert kinds == {"Input": 1, "Conv2d": 7, "LIF": 5, "Scale": 2, "Output": 1}
    assert len(graph.nodes) == 16
    assert sorted(n for n, node in graph.nodes.items() if isinstance(node, nir.LIF)) == [
        "layers.1.lif1", "layers.1.lif2", "layers.1.sep.lif1", "layers.1.sep.lif2",
        "layers.2.lif"]
    into = Counter(b for _, b in graph.edges)
    assert {n for n, k in into.items() if k > 1} == {"layers.1.sep_sum", "layers.1.conv_sum"}
    assert set(e for e in graph.edges if e[1] == "layers.1.conv_sum") == {
        ("layers.1.sep_sum", "layers.1.conv_sum"), ("layers.1.conv2", "layers.1.conv_sum")}
    dw = graph.nodes["layers.1.sep.dw"]
    assert int(dw.groups) == 64 and dw.weight.shape == (64, 1, 7, 7)
    assert list(dw.input_type["input"]) == [64, 8, 8]
    assert list(graph.nodes["input"].output_type["output"]) == [1, 8, 8]
    assert list(graph.nodes["output"].input_type["input"]) == [128, 8, 8]
    assert ("layers.2.conv", "output") in graph.edges
    lif = graph.nodes["layers.1.sep.lif1"]
    assert lif.tau.shape == (32, 8, 8)
    assert np.all(lif.tau == 2 * DT) and np.all(lif.r == 1) and np.all(lif.v_leak == 0)
    assert np.all(lif.v_threshold == 1.0) and np.all(lif.v_reset == 0)
    assert float(graph.metadata["dt"]) == DT


def test_omitted_names_the_transformer_block_and_the_head(written, graph):
    _, omitted = written
    assert [name for name, _ in omitted] == ["layers.3", "head"]
    reason = omitted[0][1]
    assert reason.startswith("layers.3 (TransformerBlock): ")
    assert "SDSA-3" in reason and "Q (K^T V)" in reason and "product of activations" in reason
    assert "layers.3" in omitted[1][1]
    assert dict(graph.metadata["omitted"]) == dict(omitted)


def test_plain_nir_read_trips_on_the_depthwise_convolution(written):
    """nir 1.0.8 types a Conv2d's input as (weight.shape[1], H, W), ignoring groups: its own
    reader rejects the depthwise 7x7 (hence `read_nir`). When this fails, nir has fixed it."""
    with pytest.raises(ValueError, match=r"layers\.1\.sep\.dw\.input: \[\[1 8 8\]\]"):
        nir.read(written[0])
    assert set(nir.read(written[0], type_check=False).nodes) == set(read_nir(written[0]).nodes)


@pytest.mark.parametrize("timesteps", [1, 4])
def test_exported_spikes_agree_with_the_float_model(model, graph, images, timesteps):
    """Every disagreement is a membrane within EPS of its threshold (checked inside), and
    there are hardly any: float rounding of the folded BatchNorms, nothing systematic."""
    m = model if timesteps == model.config.timesteps else with_timesteps(model, timesteps)
    r = check_against_model(graph, m, images)
    report = (f"T={timesteps}, {IMAGES} images: spike agreement {r['agreement']:.7f} over "
              f"{r['neuron_steps']} neuron-steps, {r['forced']} disagreements of a LIF on the "
              f"model's own input spikes (each within {EPS} of the threshold), {r['ties']} "
              f"membranes exactly at a threshold, output error {r['output_error']:.3g} on the "
              f"model's spikes, {r['output_error_free']:.3g} free: {r['rows']}")
    print(report)
    assert r["forced"] <= 1e-5 * r["neuron_steps"] and r["agreement"] >= 0.9999, report
    assert all(0.01 < row["firing"] < 0.9 for row in r["rows"].values()), report


def test_the_export_in_memory_is_the_file(model, graph):
    fresh, _ = export_nir(model)
    assert set(fresh.nodes) == set(graph.nodes) and sorted(fresh.edges) == sorted(graph.edges)
    for name, node in fresh.nodes.items():
        if isinstance(node, nir.Conv2d):
            assert np.array_equal(node.weight, graph.nodes[name].weight)
            assert np.array_equal(node.bias, graph.nodes[name].bias)


def _corrupt(graph, kind):
    g = copy.deepcopy(graph)
    if kind == "weight":            # one weight of the first convolution
        g.nodes["layers.0.conv"].weight[3, 0, 1, 1] += 0.5
    elif kind == "bias":
        g.nodes["layers.1.conv1"].bias[7] -= 0.5
    elif kind == "threshold":
        g.nodes["layers.1.lif2"].v_threshold[...] = 1.1
    elif kind == "tau":             # dt / tau = 1: no leak, the model's T > 1 shows it
        g.nodes["layers.1.sep.lif2"].tau[...] = DT
    elif kind == "edge":            # the SepConv's residual loses its shortcut
        g.edges.remove(("layers.0.conv", "layers.1.sep_sum"))
    return g


@pytest.mark.parametrize("kind", ["weight", "bias", "threshold", "tau", "edge"])
def test_a_corrupted_export_is_caught(model, graph, images, kind):
    with pytest.raises(AssertionError, match="spikes differ with the membrane further than"):
        check_against_model(_corrupt(graph, kind), with_timesteps(model, 4), images)


def test_another_dt_scales_tau_and_computes_the_same(model, images):
    graph, _ = export_nir(model, dt=1e-3)
    assert np.all(graph.nodes["layers.2.lif"].tau == 2e-3)
    check_against_model(graph, with_timesteps(model, 3), images[:16])


def test_bad_dt_and_models_are_refused(model):
    for dt in (0, -1e-4, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="dt must be a positive number"):
            export_nir(model, dt=dt)
    with pytest.raises(TypeError, match="expected a MetaSpikeFormer"):
        export_nir(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("kwargs", [{}, {"v_th": 0.5, "bias": 0.25, "v_reset": -0.125},
                                    {"decay_input": False, "bias": -0.25, "tau": 4.0}])
def test_lif_node_is_the_multistep_lif(kwargs):
    """`lif_node` for other MultiStepLIF settings than the model's, on random currents (with
    the model's settings the arithmetic is the same operation for operation; otherwise the
    rounding differs, hence the margin)."""
    neuron = MultiStepLIF(**kwargs)
    x = torch.randn(6, 500, 4) * 1.5 + 0.5
    with torch.no_grad():
        want = neuron(x)
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "lif": lif_node(neuron, (4,), DT), "output": nir.Output(output_type=np.array([4]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "lif"), ("lif", "output")],
                         metadata={"dt": DT})
    order, _ = _order(graph)
    assert order == ["input", "lif", "output"]
    _, own, membranes, _ = simulate(graph, x, len(x), forced={"lif": want}, per_step=True)
    diff = own["lif"] != want
    margin = (membranes["lif"] - neuron.v_th).abs()[diff]
    assert 0.05 < float(want.mean()) < 0.95
    assert int(diff.sum()) <= 3 and not bool((margin > EPS).any()), (int(diff.sum()), margin)


def test_lif_node_refuses_what_nir_cannot_hold():
    with pytest.raises(ValueError, match="soft reset"):
        lif_node(MultiStepLIF(reset="soft"), (2,), DT)
    with pytest.raises(ValueError, match="scalar threshold"):
        lif_node(MultiStepLIF(v_th=torch.tensor([1.0, 0.5])), (2,), DT)


# -- other models ----------------------------------------------------------------------------


def _seeded(stages, *, timesteps=4, variant=3, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(stages=stages, heads=2, mlp_ratio=2, in_channels=1, num_classes=10,
                      image_size=8, timesteps=timesteps, sdsa_variant=variant)
    model = MetaSpikeFormer(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return batchnorm_statistics(model, load_dataset("digits")[0][:256])


def test_a_model_without_transformer_blocks_exports_the_head(images):
    model = _seeded((StageSpec("conv", 8, 1, kernel=3, stride=1, padding=1),
                     StageSpec("conv", 16, 1, kernel=3, stride=2, padding=1)))
    graph, omitted = export_nir(model)
    assert omitted == []
    assert [type(graph.nodes[n]).__name__ for n in ("head.pool", "head.flatten", "head_lif",
                                                    "head")] == \
        ["AvgPool2d", "Flatten", "LIF", "Affine"]
    assert list(graph.nodes["output"].input_type["input"]) == [10]
    assert list(graph.nodes["head.pool"].output_type["output"]) == [16, 1, 1]
    r = check_against_model(graph, model, images)
    assert r["rows"]["head_lif"]["firing"] > 0, r
    assert r["agreement"] >= 0.9999, r
    # the model's scores are the graph's per-timestep outputs averaged over the timesteps
    outs, *_ = simulate(graph, images, model.config.timesteps)
    with torch.no_grad():
        assert torch.allclose(outs["output"].mean(0), model(images), atol=1e-5)


def test_every_layer_from_the_first_transformer_block_on_is_omitted(tmp_path):
    model = _seeded((StageSpec("conv", 8, 1, kernel=3, stride=1, padding=1),
                     StageSpec("transformer", 8, 1, stride=1),
                     StageSpec("conv", 8, 1, kernel=3, stride=2, padding=1)), variant=1)
    assert isinstance(model.layers[3], TransformerBlock)
    omitted = write_nir(model, tmp_path / "g.nir")
    assert [n for n, _ in omitted] == ["layers.3", "layers.4", "layers.5", "head"]
    assert "SDSA-1" in omitted[0][1] and "K * V" in omitted[0][1]
    assert omitted[1][1] == ("layers.4 (Downsample): its input is the output of layers.3, "
                             "which NIR cannot express")
    assert omitted[2][1].startswith("layers.5 (ConvBlock): ")
    assert list(read_nir(tmp_path / "g.nir").nodes["output"].input_type["input"]) == [8, 8, 8]


# -- writing and the command line ------------------------------------------------------------


def test_write_leaves_no_temporary_file_and_keeps_the_old_one_on_failure(model, tmp_path,
                                                                         monkeypatch):
    path = tmp_path / "g.nir"
    path.write_bytes(b"old")

    def broken(filename, graph, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(OSError):
        write_nir(model, path)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["g.nir"]
    monkeypatch.undo()
    write_nir(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.nir"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_cli_writes_the_graph_and_lists_what_it_omits(capsys, tmp_path):
    out = tmp_path / "digits.nir"
    status, stdout, err = cli.run(capsys, "--checkpoint", CHECKPOINT, "--out", out)
    assert (status, err) == (0, "")
    lines = stdout.splitlines()
    assert lines[0].startswith("omitted layers.3 (TransformerBlock): spike-driven")
    assert lines[1].startswith("omitted head ")
    assert lines[2] == (f"sw.nir_export: wrote {out}: 16 nodes, 3 of 5 layers exported (the "
                        f"head counts as one), dt 0.0001")
    assert len(read_nir(out).nodes) == 16


def test_cli_missing_checkpoint_is_exit_status_2(capsys, tmp_path):
    status, out, err = cli.run(capsys, "--checkpoint", tmp_path / "nope.pt", "--out",
                               tmp_path / "g.nir")
    cli.assert_one_line_error(status, out, err,
                              f"checkpoint {str(tmp_path / 'nope.pt')!r} does not exist")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/no/g.nir"], "output folder '{tmp}/no' does not exist"),
    (["--out", "{tmp}"], "output '{tmp}' is a folder, not a file name"),
    (["--out", "-"], "--out must be a file name: a NIR file is HDF5, not text for stdout"),
    (["--out", "{tmp}/g.nir", "--dt", "0"], "--dt must be a positive number, not '0'"),
    (["--out", "{tmp}/g.nir", "--dt", "x"], "--dt must be a positive number, not 'x'"),
])
def test_cli_bad_output_or_dt_is_exit_status_2(capsys, tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    status, out, err = cli.run(capsys, "--checkpoint", CHECKPOINT, *args)
    cli.assert_one_line_error(status, out, err, message.format(tmp=tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_cli_unwritable_folder_is_exit_status_2(capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        status, out, err = cli.run(capsys, "--checkpoint", CHECKPOINT, "--out", folder / "g.nir")
    finally:
        folder.chmod(0o700)
    cli.assert_one_line_error(status, out, err, f"output folder {str(folder)!r} is not writable")


def test_cli_write_error_is_exit_status_2(capsys, tmp_path, monkeypatch):
    def refused(filename, graph, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(nir, "write", refused)
    out = tmp_path / "g.nir"
    status, stdout, err = cli.run(capsys, "--checkpoint", CHECKPOINT, "--out", out)
    cli.assert_one_line_error(status, stdout, err, f"cannot write {str(out)!r}: Permission denied")
    assert list(tmp_path.iterdir()) == []
