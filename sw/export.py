"""Export of golden stimuli and reference traces as bundles (spec/bundle.py).

    python -m sw.export --checkpoint out/digits.pt --out out/digits-net [--unit NAME]
                        [--images N] [--list] [quantizer flags of sw.quant]

From a trained checkpoint: quantize (`sw.quant`), run `--images` test images through the integer
network, and write either the whole network (`unit: network`: every parameter, the pixels and
every layer's traces), one block (`--unit layers.3`: `unit: block`, its input and output
streams and traces), or one unit in its own bundle format (`--unit layers.3.attn.sdsa`,
`layers.3.attn.q_lif`, `layers.3.attn.q_conv`: `unit: sdsa`, `lif`, `sae`), which the
generators (`gen.* --bundle`) and the testbenches read. `--list` prints the names.
"""

import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from spec.bundle import write_bundle
from spec.cli import Parser, check_output_path, fail, run_main
from spec.lif import LIFTraces
from spec.sae import SAEParams, SAETraces
from spec.sdsa import SDSAConfig, SDSATraces
from spec.shortcut import ShortcutParams, ShortcutTraces

from .int_model import Conv, MultiBitConv, Neuron, Producer, RunContext
from .lif_int import lif_int
from .netbundle import write_network_bundle
from .sae_int import sae_int
from .sdsa_int import sdsa_int
from .shortcut_int import shortcut_int

__all__ = ["random_lif_inputs", "lif_traces", "export_lif_bundle", "random_spikes",
           "random_sae_inputs", "export_sae_bundle", "shortcut_traces", "export_shortcut_bundle",
           "random_qkv", "export_sdsa_bundle", "units_of", "export_unit_bundle"]

PROG = "sw.export"


def random_lif_inputs(config, samples, *, seed=0):
    """Seeded input currents that make a LIF array fire at a moderate rate.

    Most currents are small integers around the thresholds; a few are drawn from the whole
    `in_bits` range so that saturation is exercised too.
    """
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (config.in_bits - 1)), (1 << (config.in_bits - 1)) - 1
    scale = max(1, int(np.ceil(max(abs(v) for v in config.v_th_fixed) / (1 << config.frac_bits))))
    shape = (samples, config.timesteps, config.neurons)
    x = rng.integers(-scale, 3 * scale + 1, size=shape)
    extreme = rng.random(shape) < 0.05
    x = np.where(extreme, rng.integers(lo, hi + 1, size=shape), x)
    return np.clip(x, lo, hi).astype(np.int64)


def lif_traces(config, inputs):
    """Stimulus plus the integer model's expected spikes and membranes."""
    spikes, membranes = lif_int(config, inputs)
    return LIFTraces(inputs=np.asarray(inputs, dtype=np.int64), spikes=spikes, membranes=membranes)


def export_lif_bundle(path, config, *, inputs=None, samples=4, seed=0):
    """Write a LIF bundle: configuration, inputs, expected spikes and membranes.

    Without `inputs`, `samples` seeded random samples (`random_lif_inputs`) are used.
    Returns the traces written.
    """
    if inputs is None:
        inputs = random_lif_inputs(config, samples, seed=seed)
    traces = lif_traces(config, inputs)
    write_bundle(
        path,
        unit="lif",
        config=config.to_dict(),
        arrays={
            "inputs": traces.inputs.astype(np.int32),
            "spikes": traces.spikes.astype(np.uint8),
            "membranes": traces.membranes.astype(np.int64),
        },
        meta={"generator": "sw.export", "seed": int(seed)},
    )
    return traces


def random_spikes(shape, density, *, seed=0):
    """Seeded Bernoulli spikes (0/1, uint8) of the given density."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < density).astype(np.uint8)


def random_sae_inputs(config, shape, density, *, seed=0):
    """Seeded inputs of `shape` for `config`: Bernoulli spikes of `density` (uint8) when
    `in_bits == 1`; else int64 values, a fraction `density` of them nonzero, the nonzero ones
    uniform over the nonzero values of `config.input_range`."""
    rng = np.random.default_rng(seed)
    if config.in_bits == 1:
        return (rng.random(shape) < density).astype(np.uint8)
    lo, hi = config.input_range
    nonzero = rng.random(shape) < density
    # uniform over lo .. hi without 0: draw from lo .. hi - 1 and move 0 .. hi - 1 up by one
    drawn = rng.integers(lo, hi, size=shape, endpoint=False)
    drawn = np.where(drawn >= 0, drawn + 1, drawn)
    return np.where(nonzero, drawn, 0).astype(np.int64)


def export_sae_bundle(path, config, *, params=None, inputs=None, frames=4, density=0.1, seed=0):
    """Write an SAE bundle: configuration, weights, bias, inputs (spikes, or multi-bit values
    when `config.in_bits > 1`) and expected outputs.

    Without `params`, seeded weights (`spec.sae.SAEParams.seeded`); without `inputs`, `frames`
    frames of `random_sae_inputs` of `density`. Returns (params, traces).
    """
    if params is None:
        params = SAEParams.seeded(config, seed)
    if inputs is None:
        shape = (frames, config.in_channels, config.height, config.width)
        inputs = random_sae_inputs(config, shape, density, seed=seed)
    outputs = sae_int(config, params, inputs)
    # spikes as uint8; multi-bit values (signed, up to 24 bits) as int32, never wrapped
    dtype = np.uint8 if config.in_bits == 1 else np.int32
    arrays = {"weight": params.weight.astype(np.int32), "inputs": np.asarray(inputs, dtype),
              "outputs": outputs.astype(np.int64)}
    if config.bias:
        arrays["bias"] = params.bias.astype(np.int64)
    write_bundle(path, unit="sae", config=config.to_dict(), arrays=arrays,
                 meta={"generator": "sw.export", "seed": int(seed), "density": float(density)})
    return params, SAETraces(inputs=arrays["inputs"], outputs=outputs)


def shortcut_traces(config, params, *, acc=None, residual=None, frames=2, spread=1.0, seed=0):
    """Branch accumulations, residuals and the expected outputs (`sw.shortcut_int`): without
    `acc` / `residual`, `frames` frames of seeded integers over `spread` times each full range
    (a spread above 1 is clipped to the range, so the saturating adds are exercised)."""
    rng = np.random.default_rng(seed)
    shape = (frames, config.channels, config.height, config.width)

    def draw(bits):
        half = 1 << (bits - 1)
        values = np.round(rng.uniform(-spread, spread, size=shape) * half).astype(np.int64)
        return np.clip(values, -half, half - 1)

    acc = draw(config.acc_bits) if acc is None else np.asarray(acc, np.int64)
    if config.residual and residual is None:
        residual = draw(config.bits)
    residual = np.asarray(residual, np.int64) if config.residual else None
    outputs = shortcut_int(acc, params.shift, params.bias, config.bits, residual)
    return ShortcutTraces(acc=acc, residual=residual, outputs=outputs)


def export_shortcut_bundle(path, config, *, params=None, acc=None, residual=None, frames=2,
                           spread=1.0, seed=0):
    """Write a shortcut bundle: configuration, shifts, biases, branch accumulations, residuals
    and the expected outputs (`shortcut_traces`). Without `params`, seeded ones
    (`spec.shortcut.ShortcutParams.seeded`). Returns (params, traces).
    """
    if params is None:
        params = ShortcutParams.seeded(config, seed)
    traces = shortcut_traces(config, params, acc=acc, residual=residual, frames=frames,
                             spread=spread, seed=seed)
    arrays = {"shift": params.shift, "bias": params.bias, "acc": traces.acc,
              "outputs": traces.outputs}
    if traces.residual is not None:
        arrays["residual"] = traces.residual
    write_bundle(path, unit="shortcut", config=config.to_dict(), arrays=arrays,
                 meta={"generator": "sw.export", "seed": int(seed), "spread": float(spread)})
    return params, traces


def random_qkv(config, samples, density, *, seed=0):
    """Seeded Bernoulli Q, K, V spikes (samples, timesteps, tokens, channels). `density` is one
    value or a (q, k, v) triple."""
    dens = density if isinstance(density, (tuple, list)) else (density,) * 3
    shape = (samples, config.timesteps, config.tokens, config.channels)
    return tuple(random_spikes(shape, p, seed=seed + n) for n, p in enumerate(dens))


def export_sdsa_bundle(path, config, *, q=None, k=None, v=None, samples=2, density=0.1, seed=0):
    """Write an SDSA bundle: configuration, Q/K/V spikes, the expected output spikes and the
    neuron's integer input (`attention` A for variants 3/4, `counts` for 1/2).

    Without Q/K/V, `samples` samples of seeded Bernoulli spikes of `density` (one value or a
    (q, k, v) triple). Returns the traces written (`spec.sdsa.SDSATraces`).
    """
    given = [a is not None for a in (q, k, v)]
    if any(given) and not all(given):
        raise ValueError("give q, k and v together, or none of them (then they are drawn)")
    if not any(given):
        q, k, v = random_qkv(config, samples, density, seed=seed)
    spikes, neuron_input = sdsa_int(config, q, k, v)
    name = "attention" if config.variant >= 3 else "counts"
    arrays = {"q": np.asarray(q, np.uint8), "k": np.asarray(k, np.uint8),
              "v": np.asarray(v, np.uint8), "spikes": spikes,
              name: neuron_input.astype(np.int32)}
    dens = density if isinstance(density, (tuple, list)) else (density,) * 3
    write_bundle(path, unit="sdsa", config=config.to_dict(), arrays=arrays,
                 meta={"generator": "sw.export", "seed": int(seed),
                       "density": [float(x) for x in dens]})
    return SDSATraces(q=arrays["q"], k=arrays["k"], v=arrays["v"], spikes=spikes,
                      neuron_input=neuron_input)


def units_of(net):
    """Exportable names of an integer network: {name: (kind, piece)}, in network order. Kinds:
    "block", "lif", "sae", "sdsa", and "multibit" (a convolution fed by multi-bit integers,
    which is part of the network and block bundles but has no unit bundle of its own)."""
    found = {}

    def visit(obj, layer):
        if isinstance(obj, SDSAConfig):
            found[f"{layer.name}.attn.sdsa"] = ("sdsa", obj)
        elif isinstance(obj, Neuron):
            found[obj.name] = ("lif", obj)
        elif isinstance(obj, MultiBitConv):
            found[obj.name] = ("multibit", obj)
        elif isinstance(obj, Conv):
            found[obj.name] = ("sae", obj)
        elif isinstance(obj, Producer):
            visit(obj.conv, layer)

    for n, layer in enumerate(net.layers):
        if n:
            found[layer.name] = ("block", layer)
        for value in vars(layer).values():
            visit(value, layer)
    for value in vars(net.head).values():
        visit(value, net.head)
    return found


def export_unit_bundle(path, net, name, pixels):
    """Write the unit `name` of `net` (see `units_of`) in its own bundle format, with its inputs
    and expected outputs from running `pixels` through the network. Returns the unit kind."""
    units = units_of(net)
    if name not in units:
        raise ValueError(f"no unit {name!r} (try --list)")
    kind, piece = units[name]
    if kind in ("block", "multibit"):
        what = "block" if kind == "block" else "convolution fed by multi-bit integers"
        raise ValueError(f"{name!r} is a {what}: it has no unit bundle (export the network or "
                         f"its block)")
    ctx = RunContext(net.widths, record="full")
    net.run(pixels, ctx)
    trace = ctx.merged_traces()[name]
    if kind == "lif":
        config = piece.config(ctx, net.timesteps)
        x = trace["inputs"]
        s, t = x.shape[:2]
        flat = np.ascontiguousarray(np.moveaxis(x, 2, -1)).reshape(s, t, -1)
        traces = export_lif_bundle(path, config, inputs=flat)
        want = np.ascontiguousarray(np.moveaxis(trace["spikes"], 2, -1)).reshape(s, t, -1)
        if not np.array_equal(traces.spikes, want):
            raise AssertionError(f"{name}: the unit's spikes differ from the network's")
    elif kind == "sae":
        config = piece.config(ctx)
        x = trace["inputs"]
        frames = x.reshape(-1, *x.shape[2:])
        _, traces = export_sae_bundle(path, config, params=piece.params(config), inputs=frames)
        if not np.array_equal(traces.outputs, trace["outputs"].reshape(traces.outputs.shape)):
            raise AssertionError(f"{name}: the unit's outputs differ from the network's")
    else:
        traces = export_sdsa_bundle(path, piece, q=trace["q"], k=trace["k"], v=trace["v"])
        if not np.array_equal(traces.spikes, trace["spikes"]):
            raise AssertionError(f"{name}: the unit's spikes differ from the network's")
    return kind


def main(argv=None):
    # the quantizer needs torch: imported here so that importing sw.export (as sim's
    # testbenches do, in the simulator) needs only NumPy
    from .checkpoint import load_checkpoint
    from .quant import add_quant_flags, build, options_from, prepare

    p = Parser(prog=PROG, description="Export a quantized network, block or unit as a bundle "
               "with reference traces.")
    add_quant_flags(p)
    p.add_argument("--out", help="bundle to write (a folder, or a .zip file)")
    p.add_argument("--unit", help="a block or unit name (see --list); default: the network")
    p.add_argument("--images", type=int, default=8, help="test images to trace (default 8)")
    p.add_argument("--list", action="store_true", help="print the exportable names and exit")
    args = p.parse_args(argv)
    opts = options_from(args)
    if args.calibration < 0:
        fail(f"--calibration must not be negative, not {args.calibration}")
    if not args.list:
        if not args.out:
            fail("--out is required (or --list)")
        if not 1 <= args.images <= 4096:
            fail(f"--images must be between 1 and 4096, not {args.images}")
        out = args.out[:-1] if args.out.endswith("/") else args.out
        if out.endswith(".zip"):
            check_output_path(out)
        elif not Path(out).parent.is_dir():
            fail(f"output folder {str(Path(out).parent)!r} does not exist")

    def log(text):
        if not args.quiet:
            print(f"[{PROG}] {text}", file=sys.stderr, flush=True)

    if args.unit is not None:       # the names come from the network's shape: check them
        try:
            units = units_of(build(load_checkpoint(args.checkpoint)[0], opts))  # before sizing
        except ValueError as exc:
            fail(str(exc))
        if args.unit not in units:
            fail(f"no unit {args.unit!r} in this network (units: {', '.join(units)})")
    model, net, (_, _, xte, yte), dataset = prepare(args.checkpoint, opts, args.calibration, log,
                                                    bars=not args.quiet)
    units = units_of(net)
    if args.list:
        for name, (kind, _) in units.items():
            print(f"{name:32s} {kind}")
        return 0
    if args.unit is not None and args.unit not in units:
        fail(f"no unit {args.unit!r} in this network (units: {', '.join(units)})")
    pixels = net.to_input(xte[:args.images])
    labels = yte[:args.images].numpy()
    t0 = time.perf_counter()
    try:
        if args.unit is None:
            write_network_bundle(out, net, pixels, labels, model_config=asdict(model.config),
                                 meta={"checkpoint": str(args.checkpoint), "dataset": dataset})
            kind = "network"
        elif units[args.unit][0] == "block":
            write_network_bundle(out, net, pixels, labels, block=args.unit,
                                 model_config=asdict(model.config),
                                 meta={"checkpoint": str(args.checkpoint), "dataset": dataset})
            kind = "block"
        else:
            kind = export_unit_bundle(out, net, args.unit, pixels)
    except ValueError as exc:
        fail(str(exc))
    print(f"{PROG}: wrote {kind} bundle {out} ({len(pixels)} images, "
          f"{time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
