"""Co-simulation of units exported from a quantized digits network under Verilator (`pytest tb/`).

Unlike tb/test_lif.py, tb/test_sae.py and tb/test_sdsa.py, whose stimuli are seeded random
spikes and currents, the bundles here come from `sw.export.export_unit_bundle`: real quantized
weights, per-channel thresholds and biases, and the spike traces two test images produce in the
integer network. They cover one attention path of the network's transformer block,

    layers.3.attn.q_conv (3x3 spike-fed conv SAE) -> layers.3.attn.q_lif (per-channel LIF)
        -> layers.3.attn.sdsa (spike-driven self-attention, variant 3)

and each is generated the way `sim/cosim.py` does it and run by the existing cocotb module of
its kind: every beat checked without stalls (cycles equal to the cycle model), with random
stalls, and with one corrupted expectation (which the testbench must catch). One Verilator
build per unit.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from sim.cosim import read_report, run_cocotb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

#: The model: T = 2, dims (8, 16), one head so the SDSA head dimension is 16. With torch seed 3
#: the attention neuron fires 39 times over the two test images (seed 0 gives 8, seeds 1 and 2
#: fewer; heads=2 with seed 0 only once), so the output stream carries real spikes.
MODEL = {"timesteps": 2, "dims": (8, 16), "heads": 1, "seed": 3}
CALIBRATION_IMAGES = 64
TEST_IMAGES = 2

SAE_UNIT = "layers.3.attn.q_conv"
LIF_UNIT = "layers.3.attn.q_lif"
SDSA_UNIT = "layers.3.attn.sdsa"

#: unit name -> (kind = cocotb toplevel, cocotb module, random-stall testcase)
UNITS = {
    LIF_UNIT: ("lif", "tb.cocotb_lif", "test_random_stalls_both_sides"),
    SAE_UNIT: ("sae", "tb.cocotb_sae", "test_random_stalls_both_sides"),
    SDSA_UNIT: ("sdsa", "tb.cocotb_sdsa", "test_random_stalls_all_streams"),
}
NO_STALLS = "test_no_stalls_matches_cycle_model"
CORRUPTED = "test_corrupted_expectation_is_caught"
CASES = [(unit, case) for unit, (_, _, stalls) in UNITS.items()
         for case in (NO_STALLS, stalls, CORRUPTED)]


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """The quantized network and its three unit bundles (exported once for the module)."""
    from quant_helpers import digits, stats_model

    from sw.export import export_unit_bundle, units_of
    from sw.quant import quantize

    model = stats_model(**MODEL)
    net = quantize(model, digits()[0][:CALIBRATION_IMAGES])
    pixels = net.to_input(digits()[2][:TEST_IMAGES])
    units = units_of(net)
    root = tmp_path_factory.mktemp("network-units")
    bundles = {}
    for name, (kind, _, _) in UNITS.items():
        assert units[name][0] == kind, f"{name} is a {units[name][0]}, not a {kind}"
        bundles[name] = root / name / "bundle"
        bundles[name].parent.mkdir()
        assert export_unit_bundle(bundles[name], net, name, pixels) == kind
    return net, bundles


def _load(name, bundle):
    """(config, params or None, traces) of a unit bundle, read with the spec loaders."""
    kind = UNITS[name][0]
    if kind == "lif":
        from spec.lif import load_lif_bundle
        config, traces = load_lif_bundle(bundle)
        return config, None, traces
    if kind == "sae":
        from spec.sae import load_sae_bundle
        return load_sae_bundle(bundle)
    from spec.sdsa import load_sdsa_bundle
    config, traces = load_sdsa_bundle(bundle)
    return config, None, traces


def _design(name, config, params):
    kind = UNITS[name][0]
    if kind == "lif":
        from hw.lif import LIFArray
        return LIFArray(config)
    if kind == "sae":
        from hw.sae import SpikeAccumulator
        return SpikeAccumulator(config, params)
    from hw.sdsa import sdsa_unit
    return sdsa_unit(config)


@pytest.fixture(scope="module")
def prepared(network):
    """unit name -> (work folder, bundle, Verilog path, config); Verilog generated once each."""
    from gen.verilog import to_verilog

    _, bundles = network
    cache = {}

    def get(name):
        if name not in cache:
            bundle = bundles[name]
            config, params, _ = _load(name, bundle)
            verilog = bundle.parent / f"{UNITS[name][0]}.v"
            verilog.write_text(to_verilog(_design(name, config, params), UNITS[name][0]))
            cache[name] = (bundle.parent, bundle, verilog, config)
        return cache[name]

    return get


def test_exported_units_are_real_and_chained(network):
    """The bundles carry the network's parameters and traces, not degenerate stimuli: the conv's
    sums are exactly the LIF's input currents, the LIF's spikes are exactly SDSA's Q, the LIF
    has per-channel thresholds and biases, and every stream fires (the attention output too)."""
    net, bundles = network
    sae_cfg, params, sae = _load(SAE_UNIT, bundles[SAE_UNIT])
    lif_cfg, _, lif = _load(LIF_UNIT, bundles[LIF_UNIT])
    sdsa_cfg, _, sdsa = _load(SDSA_UNIT, bundles[SDSA_UNIT])
    t = net.timesteps
    assert t == MODEL["timesteps"] and lif_cfg.timesteps == t and sdsa_cfg.timesteps == t
    assert sae_cfg.mode == "conv" and sae_cfg.kernel == 3
    assert sae.frames == TEST_IMAGES * t and lif.samples == TEST_IMAGES
    assert sdsa.samples == TEST_IMAGES
    # q_conv -> q_lif: (frames, C, H, W) accumulators == (samples, T, H*W*C) currents
    sums = sae.outputs.reshape(TEST_IMAGES, t, *sae.outputs.shape[1:])
    currents = np.moveaxis(sums, 2, -1).reshape(TEST_IMAGES, t, -1)
    assert np.array_equal(currents, lif.inputs)
    # q_lif -> sdsa: (samples, T, tokens*channels) spikes == Q (samples, T, tokens, channels)
    assert np.array_equal(lif.spikes.reshape(sdsa.q.shape), sdsa.q)
    assert lif_cfg.channels == sdsa_cfg.channels == sae_cfg.out_channels
    assert sdsa_cfg.heads == 1 and sdsa_cfg.channels // sdsa_cfg.heads == 16
    # per-channel parameters really differ between channels
    assert len(set(lif_cfg.v_th)) > 1 and len(set(lif_cfg.bias)) > 1
    assert any(b != 0 for b in lif_cfg.bias)
    assert np.any(params.weight != 0)
    # every stream fires, but sparsely
    for what, spikes in (("q_conv input", sae.inputs), ("q_lif output", lif.spikes),
                         ("Q", sdsa.q), ("K", sdsa.k), ("V", sdsa.v),
                         ("SDSA output", sdsa.spikes)):
        rate = float(np.mean(spikes))
        assert 0 < rate < 0.5, f"{what} fires at rate {rate}"


@pytest.mark.parametrize("name, testcase", CASES)
def test_network_unit_cosim(name, testcase, prepared, build_root):
    work, bundle, verilog, config = prepared(name)
    toplevel, module, _ = UNITS[name]
    run_dir = work / testcase
    report = run_dir.with_suffix(".json")
    run_cocotb(verilog, toplevel=toplevel, module=module, testcase=testcase,
               test_dir=run_dir, build_root=build_root,
               env={"SPIKEGEN_BUNDLE": bundle, "SPIKEGEN_SEED": 23, "SPIKEGEN_REPORT": report})
    if testcase == NO_STALLS:
        figures = read_report(report)
        assert figures["measured_cycles"] == figures["model_cycles"]
        if toplevel == "lif":
            assert figures["measured_cycles"] == config.cycles(TEST_IMAGES)
            assert figures["beats"] == config.beats_per_step * config.timesteps * TEST_IMAGES
        else:
            assert figures["measured_cycles"] >= figures["ideal_cycles"]
        if toplevel == "sdsa":
            assert figures["out_spikes"] > 0
