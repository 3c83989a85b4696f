"""Soak benchmark: designs under random stalls on every stream until at least `--beats` output
beats (default 10^6), every beat compared with the integer model; prints beats, mismatches
(0, or 1 with the first divergence named: the checkers stop there), stall rates, cycles and
cycles per second. Runs in the compiled harnesses (`sim.harness`):

- `lif`: a LIF array (256 neurons, 16 lanes, T = 4, per-channel thresholds, membranes out)
  in the stream harness, random inputs, pauses on its input and its output;
- `sae`, `depthwise`: the encoder + accumulate engine of a 3x3 convolution (16 -> 32 channels,
  8 x 8 map, spikes of density 0.25), and of a strided 3x3 depthwise convolution (32 channels);
- `sdsa1`, `sdsa3`: the attention units of variants 1 and 3 (8 heads, 64 channels, 16 tokens,
  8 lanes, T = 4; spikes of density 0.25), each of Q, K and V its own stream with its own
  pauses;
- `shortcut`: the membrane shortcut (32 channels, saturating: values over 3x the range), the
  branch and the residual each their own stream;
- `network`: the digits network built spatially (every layer's output stream tapped), images
  back to back (the 360 test images, repeated when more are needed); an output beat is a beat
  of any layer's stream or of the class sums, each checked;
- `core`: the digits network on the overlay core, images back to back, pauses on all five AXI
  channels, every layer's output region and the class scores checked (an output beat is an
  AXI write beat).

Units run on seeded random stimuli and compare every output beat with the integer model
(`sw.*_int`) through the cocotb benches' scoreboards.

    python -m bench.soak [--designs lif sae ... core] [--beats 1000000] [--pause 0.3]
                         [--seed 1] [--json FILE]
"""

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.networks import digits_network
from gen.verilog import to_verilog
from hw.lif import LIFArray
from hw.network import Network
from hw.sae import SpikeAccumulator
from hw.sdsa import sdsa_unit
from hw.shortcut import Shortcut
from sim.cosim import REPO_ROOT
from sim.harness import CXX_OPT, build_stream, run_stream
from sim.lif import lif_expected_beats, lif_input_beats
from sim.network import NetworkStreams, run_in_harness
from sim.run import overlay_images
from sim.sae import sae_expected_beats, sae_input_beats
from sim.scoreboard import Scoreboard, ScoreboardMismatch
from sim.sdsa import sdsa_expected_beats, sdsa_inputs
from sim.shortcut import shortcut_expected_beats, shortcut_input_beats
from spec.cli import Parser, check_output_path, fail, run_main
from spec.core import CoreConfig
from spec.lif import LIFConfig, LIFTraces
from spec.ports import pack, payload_width, unpack
from spec.sae import SAEConfig, SAEParams, SAETraces
from spec.sdsa import SDSAConfig, SDSATraces
from spec.shortcut import ShortcutConfig, ShortcutParams
from sw.export import random_qkv, random_sae_inputs, shortcut_traces
from sw.lif_int import lif_int
from sw.netbundle import read_network_bundle, trace_arrays, write_network_bundle
from sw.sae_int import sae_int
from sw.sdsa_int import sdsa_int

BUILD = REPO_ROOT / "build" / "harness"
DESIGNS = ("lif", "sae", "depthwise", "sdsa1", "sdsa3", "shortcut", "network", "core")

SAE = SAEConfig(in_channels=16, out_channels=32, kernel=3, stride=1, padding=1, height=8,
                width=8, lanes=8, in_lanes=8)
DEPTHWISE = SAEConfig(mode="depthwise", in_channels=32, out_channels=32, kernel=3, stride=2,
                      padding=1, height=8, width=8, lanes=8, in_lanes=8)
SHORTCUT = ShortcutConfig(channels=32, height=4, width=4, lanes=16, acc_bits=16, bits=12)


def _sdsa(variant):
    return SDSAConfig(variant=variant, heads=8, channels=64, tokens=16, lanes=8, timesteps=4)


def _soak_unit(design, component, top, inputs, in_fields, expected, out_fields, pause, seed,
               *, build_root=BUILD, opt=CXX_OPT):
    """Stream `inputs` ({port: beat dicts}) into the unit in the stream harness with pauses
    on every stream; check every output beat against `expected` (the row's `mismatches` and
    `first_mismatch` say whether and where they diverged)."""
    binary, _ = build_stream(to_verilog(component, top), top, build_root, opt=opt)
    beats = {port: [pack(in_fields[port], b) for b in bs] for port, bs in inputs.items()}
    widths = {port: payload_width(in_fields[port]) for port in inputs}
    t0 = time.perf_counter()
    report, out, _ = run_stream(binary, beats, widths, payload_width(out_fields),
                                expect=len(expected), in_pause=pause, out_pause=pause,
                                seed=seed)
    seconds = time.perf_counter() - t0
    board = Scoreboard(top, expected)
    mismatch = ""
    try:
        for cycle, word in out:
            board.check(unpack(out_fields, word), cycle)
        board.check_done()
    except ScoreboardMismatch as exc:       # the first divergence, named
        mismatch = str(exc)
    cycles = report["cycles"]
    return {"design": design, "output_beats": len(out), "expected_beats": len(expected),
            "mismatches": int(bool(mismatch)), "first_mismatch": mismatch,
            "stall_rate": {f"input {port}": pause for port in inputs} | {"output": pause},
            "cycles": int(cycles), "seconds": round(seconds, 1),
            "cycles_per_second": round(cycles / seconds) if seconds else None}


def soak_sae(goal, pause, seed, config=SAE, design="sae"):
    per_frame = config.out_groups * config.out_height * config.out_width
    frames = math.ceil(goal / per_frame)
    params = SAEParams.seeded(config, seed)
    spikes = random_sae_inputs(config, (frames, config.in_channels, config.height,
                                        config.width), 0.25, seed=seed)
    traces = SAETraces(inputs=spikes, outputs=sae_int(config, params, spikes))
    return _soak_unit(design, SpikeAccumulator(config, params), "sae",
                      {"i": sae_input_beats(config, spikes)}, {"i": config.input_fields()},
                      sae_expected_beats(config, traces), config.output_fields(), pause, seed)


def soak_depthwise(goal, pause, seed):
    return soak_sae(goal, pause, seed, DEPTHWISE, "depthwise")


def soak_sdsa(goal, pause, seed, variant):
    config = _sdsa(variant)
    per_sample = config.timesteps * config.tokens * (config.channels // config.lanes)
    samples = math.ceil(goal / per_sample)
    q, k, v = random_qkv(config, samples, 0.25, seed=seed)
    spikes, neuron_input = sdsa_int(config, q, k, v)
    traces = SDSATraces(q=q, k=k, v=v, spikes=spikes, neuron_input=neuron_input)
    inputs = sdsa_inputs(config, traces)
    return _soak_unit(f"sdsa{variant}", sdsa_unit(config), "sdsa", inputs,
                      {port: config.input_fields() for port in inputs},
                      sdsa_expected_beats(config, traces), config.output_fields(), pause, seed)


def soak_shortcut(goal, pause, seed):
    config = SHORTCUT
    per_frame = config.height * config.width * (config.channels // config.lanes)
    frames = math.ceil(goal / per_frame)
    params = ShortcutParams.seeded(config, seed)
    traces = shortcut_traces(config, params, frames=frames, spread=3.0, seed=seed)
    return _soak_unit("shortcut", Shortcut(config, params), "shortcut",
                      shortcut_input_beats(config, traces), config.input_ports(),
                      shortcut_expected_beats(config, traces), config.stream_fields(), pause,
                      seed)


def soak_network(goal, pause, seed):
    """The spatial digits network with every layer tapped: images back to back until the
    checked beats (taps and class sums) reach `goal`."""
    net, pixels = digits_network(1, 360)
    hw = Network(net, taps=True)
    binary, taps = build_stream(to_verilog(hw, "network"), "network", BUILD)
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        probe_dir = Path(work) / "probe"
        write_network_bundle(probe_dir, net, pixels[:1])
        _, _, bundle = read_network_bundle(probe_dir)
        streams = NetworkStreams(hw, net, bundle, 1)
        per_image = len(streams.output_expected()) + sum(
            len(streams.tap_expected(n)) for n in taps)
        images = math.ceil(goal / per_image)
        # the 360 test images, again from the first when more are needed
        pixels = np.resize(pixels, (images, *pixels.shape[1:]))
        bundle_dir = Path(work) / "bundle"
        write_network_bundle(bundle_dir, net, pixels)
        _, net, bundle = read_network_bundle(bundle_dir)
        t0 = time.perf_counter()
        mismatch = ""
        try:
            figures = run_in_harness(hw, net, bundle, binary, taps, in_pause=pause,
                                     out_pause=pause, seed=seed)
        except AssertionError as exc:      # a ScoreboardMismatch, or the class scores
            mismatch, figures = str(exc), None
        seconds = time.perf_counter() - t0
    row = {"design": "network (spatial digits network)", "images": images,
           "output_beats": per_image * images, "taps": len(taps),
           "mismatches": int(bool(mismatch)), "first_mismatch": mismatch,
           "stall_rate": {"input": pause, "output": pause}}
    if figures:
        row.update(cycles=int(figures["simulated_cycles"]), seconds=round(seconds, 1),
                   cycles_per_second=round(figures["simulated_cycles"] / figures["seconds"]))
    else:
        row.update(cycles=0, seconds=round(seconds, 1), cycles_per_second=0)
    return row


def soak_lif(goal, pause, seed):
    cfg = LIFConfig(neurons=256, lanes=16, channels=16, timesteps=4, v_bits=16, in_bits=8,
                    frac_bits=4, v_th=tuple(0.5 + 0.25 * (c % 8) for c in range(16)),
                    expose_membrane=True)
    per_sample = cfg.beats_per_step * cfg.timesteps
    samples = math.ceil(goal / per_sample)
    rng = np.random.default_rng(seed)
    inputs = rng.integers(-8, 24, size=(samples, cfg.timesteps, cfg.neurons))
    spikes, membranes = lif_int(cfg, inputs)
    traces = LIFTraces(inputs=inputs, spikes=spikes, membranes=membranes)
    return _soak_unit("lif", LIFArray(cfg), "lif", {"i": lif_input_beats(cfg, inputs)},
                      {"i": cfg.input_fields()}, lif_expected_beats(cfg, traces),
                      cfg.output_fields(), pause, seed)


def soak_core(goal, pause, seed):
    core = CoreConfig()
    beat_bytes = core.axi_data_bits // 8
    net, pixels = digits_network(1, 360)       # quantized once; the images it needs later
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        # one image, to learn the beats an image writes (the same for every image)
        probe = overlay_images(net, pixels[:1],
                               SimpleNamespace(arrays=trace_arrays(net, pixels[:1])),
                               Path(work), core=core, build_root=BUILD)
        per_image = probe["images"][0]["written"] // beat_bytes
        images = min(360, math.ceil(goal / per_image))
        pixels = pixels[:images]
        arrays = trace_arrays(net, pixels)
        t0 = time.perf_counter()
        run = overlay_images(net, pixels, SimpleNamespace(arrays=arrays), Path(work),
                             core=core, build_root=BUILD, pause=pause, seed=seed)
    seconds = time.perf_counter() - t0
    written = sum(r["written"] for r in run["images"]) // beat_bytes
    return {"design": "core (digits network)", "images": images, "output_beats": int(written),
            "mismatches": 0, "values_compared": int(sum(r["compared"] for r in run["images"])),
            "stall_rate": {"every AXI channel": pause},
            "cycles": int(run["simulated_cycles"]), "seconds": round(seconds, 1),
            "cycles_per_second": round(run["simulated_cycles"] / run["simulation_seconds"])}


RUNS = {"lif": soak_lif, "sae": soak_sae, "depthwise": soak_depthwise,
        "sdsa1": lambda *a: soak_sdsa(*a, variant=1), "sdsa3": lambda *a: soak_sdsa(*a, variant=3),
        "shortcut": soak_shortcut, "network": soak_network, "core": soak_core}


def main(argv=None):
    p = Parser(prog="bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    p.add_argument("--beats", type=int, default=1_000_000)
    p.add_argument("--pause", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.beats < 1:
        fail(f"--beats must be at least 1, not {args.beats}")
    if not 0 <= args.pause < 1:
        fail(f"--pause must be at least 0 and below 1, not {args.pause}")
    check_output_path(args.json)
    rows = []
    for design in args.designs:
        row = RUNS[design](args.beats, args.pause, args.seed)
        rows.append(row)
        print(f"{row['design']}: {row['output_beats']:,} output beats, {row['mismatches']} "
              f"mismatches, stalls {row['stall_rate']}, {row['cycles']:,} cycles in "
              f"{row['seconds']} s ({row['cycles_per_second']:,} cycles/s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if any(r["mismatches"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(run_main("bench.soak", main))
