"""Generate a spike-sparse accumulate engine (spike encoder + engine) as Verilog.

    python -m gen.sae --mode conv --in-ch 64 --out-ch 128 --kernel 3 --stride 2 --padding 1 \\
        --height 14 --width 14 --lanes 16 [--bundle DIR] > sae.v
    python -m gen.sae --config sae.yaml [--seed N] > sae.v
    python -m gen.sae --mode conv --in-ch 1 --out-ch 16 --height 8 --width 8 --in-lanes 1 \
        --in-bits 5 --acc-bits 17 > first_layer.v       # 5-bit unsigned pixels, bit planes

Weights come from the bundle; without one, from a seeded default (`--seed`), so the design is
complete. The configuration comes from flags, a YAML file, or a bundle; not from more than one.
"""

import sys

from hw.sae import SpikeAccumulator
from spec.cli import Parser, check_output_path, emit, fail, run_main, verilog_name
from spec.sae import SAEConfig, SAEParams, load_sae_bundle

from .verilog import to_verilog

PROG = "gen.sae"

_FLAGS = {
    "--mode": ("mode", str, "linear, conv or depthwise"),
    "--in-ch": ("in_channels", int, "input channels"),
    "--out-ch": ("out_channels", int, "output channels"),
    "--kernel": ("kernel", int, "square kernel size"),
    "--stride": ("stride", int, "stride"),
    "--padding": ("padding", int, "zero padding"),
    "--height": ("height", int, "input map height (linear: tokens = height x width)"),
    "--width": ("width", int, "input map width"),
    "--lanes": ("lanes", int, "accumulators updated per cycle"),
    "--in-lanes": ("in_lanes", int, "spikes per input beat"),
    "--w-bits": ("w_bits", int, "signed weight width"),
    "--acc-bits": ("acc_bits", int, "signed accumulator width"),
    "--in-bits": ("in_bits", int, "bits per input value (1: spikes; more: one event per set "
                  "magnitude bit, linear and conv only)"),
}


def build_parser():
    p = Parser(prog=PROG, description="Generate a spike-sparse accumulate engine as Verilog.")
    for flag, (dest, kind, text) in _FLAGS.items():
        p.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    p.add_argument("--no-bias", dest="bias", action="store_false", default=None,
                   help="no per-channel bias")
    p.add_argument("--in-signed", dest="in_signed", action="store_true", default=None,
                   help="multi-bit inputs are two's complement (needs --in-bits >= 2)")
    p.add_argument("--config", help="SAE configuration YAML file")
    p.add_argument("--bundle", help="bundle folder or .zip with configuration and weights")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the default weights when no bundle is given (default 0)")
    p.add_argument("--name", default="sae", help="Verilog module name (default: sae)")
    p.add_argument("-o", "--out", help="write the Verilog here instead of stdout")
    return p


def config_and_params(args):
    given = {dest: getattr(args, dest)
             for dest in [d for d, _, _ in _FLAGS.values()] + ["bias", "in_signed"]
             if getattr(args, dest) is not None}
    if args.config is not None and args.bundle is not None:
        fail("give --config or --bundle, not both")
    source = "--config" if args.config is not None else "--bundle" if args.bundle else None
    if source and given:
        fail(f"unit flags cannot be combined with {source}")
    if args.bundle is not None:
        config, params, _ = load_sae_bundle(args.bundle)
        return config, params
    config = SAEConfig.load(args.config) if args.config is not None else SAEConfig(**given)
    return config, SAEParams.seeded(config, args.seed)


def main(argv=None):
    args = build_parser().parse_args(argv)
    verilog_name(args.name)
    check_output_path(args.out)
    if args.seed < 0:
        fail(f"--seed must be at least 0, not {args.seed}")
    config, params = config_and_params(args)
    emit(to_verilog(SpikeAccumulator(config, params), args.name), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
