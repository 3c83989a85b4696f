"""Generate a LIF-neuron array as Verilog.

    python -m gen.lif [--neurons N --lanes L ...] > lif.v
    python -m gen.lif --config lif.yaml > lif.v
    python -m gen.lif --bundle DIR > lif.v

The configuration comes from flags (over the defaults of `spec.LIFConfig`), from a YAML file,
or from a bundle; not from more than one.
"""

import sys

from hw.lif import LIFArray
from spec.cli import Parser, check_output_path, emit, fail, float_or_list, run_main, verilog_name
from spec.lif import LIFConfig, load_lif_bundle

from .verilog import to_verilog

PROG = "gen.lif"

# flag -> (config field, type, help)
_FLAGS = {
    "--neurons": ("neurons", int, "neurons per timestep (tokens x channels)"),
    "--lanes": ("lanes", int, "neurons updated per cycle"),
    "--channels": ("channels", int, "per-channel parameter sets (divides neurons)"),
    "--v-bits": ("v_bits", int, "membrane width, signed, fractional bits included"),
    "--in-bits": ("in_bits", int, "input current width, signed"),
    "--frac-bits": ("frac_bits", int, "fractional bits of the membrane"),
    "--tau": ("tau", int, "membrane time constant, a power of two"),
    "--reset": ("reset", str, "hard or soft"),
    "--v-reset": ("v_reset", float, "reset potential"),
    "--v-th": ("v_th", float_or_list, "threshold, or comma-separated per-channel thresholds"),
    "--bias": ("bias", float_or_list, "bias, or comma-separated per-channel biases"),
    "--timesteps": ("timesteps", int, "timesteps per sample (T)"),
}


def build_parser():
    p = Parser(prog=PROG, description="Generate a LIF-neuron array as Verilog.")
    for flag, (dest, kind, text) in _FLAGS.items():
        p.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    p.add_argument("--decay-input", dest="decay_input", action="store_true", default=None,
                   help="divide the input by tau too (the default)")
    p.add_argument("--no-decay-input", dest="decay_input", action="store_false",
                   help="add the input undivided")
    p.add_argument("--expose-membrane", dest="expose_membrane", action="store_true",
                   default=None, help="also stream out the membranes after reset")
    p.add_argument("--config", help="LIF configuration YAML file")
    p.add_argument("--bundle", help="bundle folder or .zip holding the configuration")
    p.add_argument("--name", default="lif", help="Verilog module name (default: lif)")
    p.add_argument("-o", "--out", help="write the Verilog here instead of stdout")
    return p


def config_from_args(args):
    given = {dest: getattr(args, dest)
             for dest in [d for d, _, _ in _FLAGS.values()] + ["decay_input", "expose_membrane"]
             if getattr(args, dest) is not None}
    sources = [name for name, on in (("--config", args.config), ("--bundle", args.bundle))
               if on is not None]
    if len(sources) > 1:
        fail("give --config or --bundle, not both")
    if sources and set(given) - {"expose_membrane"}:
        fail(f"unit flags cannot be combined with {sources[0]}")
    if args.config is not None:
        config = LIFConfig.load(args.config)
    elif args.bundle is not None:
        config, _ = load_lif_bundle(args.bundle)
    else:
        return LIFConfig(**given)
    if given.get("expose_membrane"):
        config = config.replace(expose_membrane=True)
    return config


def main(argv=None):
    args = build_parser().parse_args(argv)
    verilog_name(args.name)
    check_output_path(args.out)
    config = config_from_args(args)
    emit(to_verilog(LIFArray(config), args.name), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
