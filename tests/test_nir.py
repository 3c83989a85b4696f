"""NIR import (`sw.nirio`): a spiking CNN trained in snnTorch and exported with snnTorch's own
converter imports; its float run by NIR's equations equals snnTorch's forward pass spike for
spike; the integer network keeps its accuracy; the generated RTL (spatial) equals the integer
network on every class accumulation; what does not map is refused with the node's name (exit
status 2 on the command line)."""

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
snn = pytest.importorskip("snntorch")
nirtorch = pytest.importorskip("nirtorch")

from snntorch import utils as snn_utils  # noqa: E402
from snntorch.export_nir import _extract_snntorch_module  # noqa: E402
from test_flow import build_root  # noqa: E402  (where tb/ keeps its Verilator builds)

from flow import Flow  # noqa: E402
from spec.cli import run_main  # noqa: E402
from sw.nirio import NirError, from_graph, import_graph, main, report_chain  # noqa: E402
from sw.train import load_dataset  # noqa: E402

T = 4



def _leaky(beta, output=False):
    # NIR's LIF is snnTorch's Leaky with a reset to zero at the step that fires (snnTorch's
    # own NIR import builds exactly this)
    return snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero", reset_delay=False,
                     output=output)


def _forward(net, x):
    snn_utils.reset(net)
    out = 0
    for _ in range(T):
        spk, _ = net(x)
        out = out + spk
    return out


@pytest.fixture(scope="module")
def trained():
    """(snnTorch model, its NIR graph, data): conv 3x3 + LIF (beta 0.5), avg pool, conv 3x3 +
    LIF (beta 0.75), flatten, linear + LIF; 8 epochs on digits (about 1 s)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), _leaky(0.5), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), _leaky(0.75), torch.nn.Flatten(),
        torch.nn.Linear(16 * 4 * 4, 10), _leaky(0.5, output=True))
    data = load_dataset("digits")
    xtr, ytr = data[0], data[1]
    opt = torch.optim.Adam(net.parameters(), 5e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(8):
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(2 * _forward(net, xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    graph = nirtorch.extract_nir_graph(net, _extract_snntorch_module, torch.zeros(1, 1, 8, 8),
                                       ignore_dims=[0])
    return net, graph, data


def test_float_run_equals_snntorch(trained):
    net, graph, (_, _, xte, _) = trained
    chain = from_graph(graph, timesteps=T)
    assert [s.neuron.tau for s in chain.stages] == [2, 4, 2]      # beta 0.5, 0.75, 0.5
    # the average pool folded into the second convolution: kernel 6, stride 2, padding 2
    assert (chain.stages[1].kernel, chain.stages[1].stride, chain.stages[1].padding) == (6, 2, 2)
    scores, _ = chain.run(xte)
    with torch.no_grad():
        ref = _forward(net, xte).numpy()
    np.testing.assert_array_equal(scores, ref)
    # the comparison can fail: one weight changed changes the spike counts
    chain.stages[0].weight[0, 0, 1, 1] += 0.5
    assert not np.array_equal(chain.run(xte)[0], ref)


def test_import_keeps_accuracy(trained):
    _, graph, (_, _, xte, yte) = trained
    chain, net = import_graph(graph, timesteps=T, calibration=256)
    rep = report_chain(chain, net, xte, yte.numpy())
    assert rep["float_accuracy"] > 0.85, rep
    assert abs(rep["int_accuracy"] - rep["float_accuracy"]) < 0.03, rep
    assert min(r["agreement"] for r in rep["layers"]) > 0.97, rep
    assert [layer.neuron.tau for layer in net.layers[1:]] + [net.head.neuron.tau] == [2, 4, 2]


def _writable(net, graph):
    """snnTorch 1.0 leaves the node types unset and writes its LIF parameters as 0-d arrays
    and numpy scalars; nir 1.0.8's `infer_types` fails on those and `nir.write` can write
    neither. Make the
    parameters 1-d (the same broadcast values) and fill the types in from a forward pass
    (hooks on the Sequential's children, named as the nodes are)."""
    shapes = {}

    def keep(name, args, out):            # returns None: the output stays as it is
        out = out[0] if isinstance(out, tuple) else out
        shapes.setdefault(name, (tuple(args[0].shape[1:]), tuple(out.shape[1:])))

    hooks = [m.register_forward_hook(lambda m, a, o, n=n: keep(n, a, o))
             for n, m in net.named_children()]
    with torch.no_grad():
        _forward(net, torch.zeros(1, 1, 8, 8))
    for h in hooks:
        h.remove()
    for name, node in graph.nodes.items():
        for attr, value in vars(node).items():   # h5py cannot compress 0-d arrays
            if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
                setattr(node, attr, np.asarray(value).reshape(1))
        if name in shapes:
            node.input_type = {"input": np.array(shapes[name][0])}
            node.output_type = {"output": np.array(shapes[name][1])}
            if isinstance(node, nir.Conv2d):
                node.input_shape = shapes[name][0][1:]
    return graph


def test_nir_file_to_rtl(trained, tmp_path):
    net, graph, _ = trained
    path = tmp_path / "snn.nir"
    nir.write(path, _writable(net, graph))
    # the command line: a bundle of the integer network
    assert main([str(path), "--out", str(tmp_path / "bundle"), "--calibration", "128",
                 "--quiet"]) == 0
    assert (tmp_path / "bundle" / "config.yaml").is_file()
    # the API: the file through the integer model and the spatial RTL (Verilator), every
    # class accumulation checked against the integer model
    flow = Flow(tmp_path / "flow", nir=path, timesteps=T)
    flow.quantize(calibration=128)
    flow.generate("spatial")
    figures = flow.cosimulate(images=3, build_root=build_root() / "harness")
    assert figures["rtl_predictions"] == flow.predict(3).tolist()


def _graph(nodes, edges=None):
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=edges or list(zip(names, names[1:], strict=False)),
                        type_check=False)


def _lif(n, tau=2e-4, **kw):
    args = dict(tau=np.full(n, tau), r=np.full(n, tau / 1e-4), v_leak=np.zeros(n),
                v_threshold=np.ones(n), v_reset=np.zeros(n))
    args.update(kw)
    return nir.LIF(**args)


def _mlp(neuron, head=None):
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type={"input": np.array([64])}),
             "fc1": nir.Affine(weight=rng.normal(size=(10, 64)), bias=np.zeros(10)),
             "lif1": neuron}
    if head is not None:
        nodes["extra"] = head
    nodes["output"] = nir.Output(output_type={"output": np.array([10])})
    return _graph(nodes)


REFUSALS = {
    "tau-not-power-of-two": (_mlp(_lif(10, tau=3e-4)),
                             r"node 'lif1' \(LIF\): tau/dt = 0.0003/0.0001 = 3 steps is not a "
                             r"power of two"),
    "reset-not-zero": (_mlp(_lif(10, v_reset=np.full(10, 0.5))),
                       r"node 'lif1' \(LIF\): v_reset 0.5; our LIF starts at 0 and resets to 0"),
    "unsupported-node": (_mlp(_lif(10), head=nir.LI(tau=np.ones(10), r=np.ones(10),
                                                  v_leak=np.zeros(10))),
                         r"node 'extra' is a LI: not supported"),
    "if-above-t1": (_mlp(nir.IF(r=np.ones(10), v_threshold=np.ones(10))),
                    r"node 'lif1' \(IF\): an integrate-and-fire neuron never leaks"),
    "cuba-synapse": (_mlp(nir.CubaLIF(tau_syn=np.full(10, 4e-4), tau_mem=np.full(10, 2e-4),
                                      r=np.full(10, 2.0), v_leak=np.zeros(10),
                                      v_threshold=np.ones(10))),
                     r"node 'lif1' \(CubaLIF\): tau_syn 0.0004 s is 4 steps"),
    "threshold-within-channel": (
        _graph({"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
                "conv": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1,
                                   padding=1, dilation=1, groups=1, bias=np.zeros(2)),
                "lif": _lif(32, v_threshold=np.arange(32.0) + 1),
                "fc": nir.Linear(weight=np.ones((10, 32))),
                "output": nir.Output(output_type={"output": np.array([10])})}),
        r"node 'lif' \(LIF\): v_threshold differs within a channel"),
    "no-flatten": (
        _graph({"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
                "conv": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1,
                                   padding=1, dilation=1, groups=1, bias=np.zeros(2)),
                "lif": _lif(32),
                "fc": nir.Linear(weight=np.ones((10, 32))),
                "output": nir.Output(output_type={"output": np.array([10])})}),
        r"node 'fc' \(Linear\) reads a 2x4x4 map; it needs a Flatten before it"),
    "fan-out": (_graph({"input": nir.Input(input_type={"input": np.array([64])}),
                        "fc1": nir.Linear(weight=np.ones((10, 64))), "lif1": _lif(10),
                        "fc2": nir.Linear(weight=np.ones((10, 10))),
                        "output": nir.Output(output_type={"output": np.array([10])})},
                       [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "output"),
                        ("fc1", "fc2")]),
                r"node 'fc1' feeds 2 nodes"),
    "grouped-conv": (
        _graph({"input": nir.Input(input_type={"input": np.array([2, 4, 4])}),
                "dw": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1,
                                 padding=1, dilation=1, groups=2, bias=np.zeros(2)),
                "lif": _lif(32), "output": nir.Output(output_type={"output": np.array([32])})}),
        r"node 'dw' \(Conv2d\): groups 2"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_node(case):
    graph, message = REFUSALS[case]
    with pytest.raises(NirError, match=message):
        from_graph(graph, timesteps=4)


def test_t1_maps_any_leak():
    # at T = 1 only the first step counts: an IF and a tau of 3 steps both map
    for neuron in (nir.IF(r=np.ones(10), v_threshold=np.ones(10)), _lif(10, tau=3e-4)):
        chain = from_graph(_mlp(neuron), timesteps=1)
        assert chain.stages[0].neuron.tau == 1


def test_command_line_refusal_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.nir"
    nir.write(path, REFUSALS["tau-not-power-of-two"][0])
    out = tmp_path / "bundle"
    assert run_main("sw.nirio", main, [str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "node 'lif1' (LIF): tau/dt" in err and err.count("\n") == 1
    assert not out.exists()
    nir.write(path, REFUSALS["unsupported-node"][0])
    assert run_main("sw.nirio", main, [str(path), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"sw.nirio: error: {path}: node 'extra' is a LI: not supported (supported: Input, "
        f"Output, Conv2d, Linear, Affine, Scale, SumPool2d, AvgPool2d, Flatten, LIF, CubaLIF, "
        f"IF, Threshold)\n")
    assert not out.exists()
    (tmp_path / "not.nir").write_text("hello")
    assert run_main("sw.nirio", main, [str(tmp_path / "not.nir"), "--out", str(out)]) == 2
    assert "not a NIR file" in capsys.readouterr().err


def test_overlay_core_runs_tau_2_and_refuses_others(trained, tmp_path):
    import copy

    from gen.program import CompileError
    from sim.harness import build_core
    from spec.core import CoreConfig

    _, graph, _ = trained
    flow = Flow(tmp_path / "tau4", nir=graph, timesteps=T)
    with pytest.raises(CompileError, match=r"layers.2.lif: the overlay core's LIF leaks with "
                                           r"tau 2, this neuron with tau 4"):
        flow.generate("overlay")
    # the same graph with the second LIF at tau 2: every layer on the core's RTL equals the
    # integer model's (the harness tests/test_flow.py builds for the default core)
    graph = copy.deepcopy(graph)
    graph.nodes["4"].tau = np.asarray(2e-4)
    graph.nodes["4"].r = np.asarray(2.0)
    flow = Flow(tmp_path / "tau2", nir=graph, timesteps=T)
    flow.quantize(calibration=128, test=False)
    flow.generate("overlay")
    binary = build_core(CoreConfig(), build_root() / "harness", waves=True, opt="-O1")
    figures = flow.cosimulate(images=2, harness=binary)
    assert figures["rtl_predictions"] == flow.predict(2).tolist()
    assert figures["cycles_per_image"] > 0
