"""Generate one SNN layer (a Transformer-based or Conv-based block, or a downsampling layer) as
Verilog.

    python -m gen.block --kind transformer --channels 64 --heads 8 --height 4 --width 4 > block.v
    python -m gen.block --kind conv --channels 32 --height 8 --width 8 --timesteps 4 > conv.v
    python -m gen.block --bundle DIR > block.v                    # a block bundle (sw.export)
    python -m gen.block --bundle NET --layer layers.3 > block.v   # one layer of a network bundle

Without a bundle the layer comes from a seeded one-stage model quantized on seeded images
(`sw.seeded`, `--seed`), so thresholds, shifts and widths are the quantizer's own. `--kind
downsample` is that model's first layer, which reads multi-bit pixels. A summary of the units
goes to stderr.
"""

import sys
import time

from hw.block import layer_component, unit_config
from spec.cli import Parser, check_output_path, emit, fail, run_main, verilog_name
from spec.netbundle import read_network_bundle
from spec.progress import Elapsed

from .verilog import to_verilog

PROG = "gen.block"

_FLAGS = ("kind", "channels", "heads", "height", "width", "timesteps", "variant")


def build_parser():
    from sw.seeded import KINDS

    p = Parser(prog=PROG, description="Generate an SNN block or downsampling layer as Verilog.")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="layer kind (default transformer)")
    p.add_argument("--channels", type=int, default=None, help="channels (default 64)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default 8)")
    p.add_argument("--height", type=int, default=None, help="map height (default 4)")
    p.add_argument("--width", type=int, default=None, help="map width (default 4)")
    p.add_argument("--timesteps", type=int, default=None, help="T (default 1)")
    p.add_argument("--variant", type=int, default=None, help="SDSA variant 1-4 (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the default model")
    p.add_argument("--bundle", help="block bundle, or network bundle with --layer")
    p.add_argument("--layer", help="the layer of a network bundle (e.g. layers.3)")
    p.add_argument("--name", default="block", help="Verilog module name (default: block)")
    p.add_argument("-o", "--out", help="write the Verilog here instead of stdout")
    p.add_argument("--quiet", action="store_true", help="no summary on stderr")
    return p


def _positive(name, value, maximum):
    if value < 1 or value > maximum:
        fail(f"--{name} must be 1 to {maximum}, not {value}")


def layer_from_args(args):
    """(integer layer, widths, timesteps) from the flags or the bundle."""
    given = [f"--{d}" for d in _FLAGS if getattr(args, d) is not None]
    if args.bundle is not None:
        if given:
            fail(f"{given[0]} cannot be combined with --bundle")
        return _from_bundle(args.bundle, args.layer)
    if args.layer is not None:
        fail("--layer needs --bundle (a network bundle)")
    if args.seed < 0:
        fail(f"--seed must be at least 0, not {args.seed}")
    kind = args.kind or "transformer"
    channels = 64 if args.channels is None else args.channels
    heads = (8 if kind == "transformer" else 1) if args.heads is None else args.heads
    height = 4 if args.height is None else args.height
    width = 4 if args.width is None else args.width
    timesteps = 1 if args.timesteps is None else args.timesteps
    variant = 3 if args.variant is None else args.variant
    _positive("channels", channels, 1024)
    _positive("heads", heads, channels)
    _positive("height", height, 64)
    _positive("width", width, 64)
    _positive("timesteps", timesteps, 16)
    if variant not in (1, 2, 3, 4):
        fail(f"--variant must be 1, 2, 3 or 4, not {variant}")
    if channels % heads:
        fail(f"--heads ({heads}) must divide --channels ({channels})")
    if kind != "transformer" and args.heads is not None:
        fail(f"--heads is for --kind transformer, not {kind}")
    from sw.seeded import seeded_network

    try:
        net = seeded_network(kind, channels=channels, heads=heads, height=height, width=width,
                             timesteps=timesteps, seed=args.seed, variant=variant)
    except ValueError as exc:
        fail(str(exc))
    layer = net.layers[0 if kind == "downsample" else 1]
    return layer, net.widths, net.timesteps


def _from_bundle(path, name):
    unit, found, bundle = read_network_bundle(path)
    timesteps = int(bundle.config["timesteps"])
    if unit == "block":
        if name is not None and name != found[0].name:
            fail(f"the block bundle holds {found[0].name}, not {name}")
        return found[0], bundle.config["widths"], timesteps
    names = [layer.name for layer in found.layers]
    if name is None:
        fail(f"a network bundle needs --layer (one of {', '.join(names)})")
    if name not in names:
        fail(f"no layer {name!r} in the network bundle (layers: {', '.join(names)})")
    return found.layers[names.index(name)], found.widths, timesteps


def summary(component):
    """One line per unit: its kind and its main sizes."""
    lines = []
    for name, unit in component.units.items():
        cfg = unit_config(unit)
        lines.append(f"  {name:16s} {type(cfg).__name__:15s} " + ", ".join(
            f"{k} {v}" for k, v in cfg.to_dict().items()
            if k in ("neurons", "channels", "in_channels", "out_channels", "kernel", "mode",
                     "lanes", "in_bits", "acc_bits", "bits", "heads", "tokens", "variant")))
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    verilog_name(args.name)
    check_output_path(args.out)
    started = time.perf_counter()
    layer, widths, timesteps = layer_from_args(args)
    try:
        component = layer_component(layer, widths, timesteps)
    except ValueError as exc:
        fail(str(exc))
    with Elapsed(f"{PROG}: generating Verilog", enabled=not args.quiet):
        text = to_verilog(component, args.name)
    emit(text, args.out)
    if not args.quiet:
        print(f"[{PROG}] {layer.name} ({type(layer).__name__}), T = {timesteps}: "
              f"{len(component.units)} units, {len(text):,} bytes of Verilog in "
              f"{time.perf_counter() - started:.1f} s\n{summary(component)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
