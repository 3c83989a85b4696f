"""Generate a membrane-shortcut datapath as Verilog.

    python -m gen.shortcut --channels 64 --height 14 --width 14 --lanes 16 --acc-bits 16 \\
        --bits 16 [--no-residual] > shortcut.v
    python -m gen.shortcut --config shortcut.yaml [--seed N] > shortcut.v
    python -m gen.shortcut --bundle DIR > shortcut.v

Shifts and biases come from the bundle; without one, from a seeded default (`--seed`), so the
design is complete. The configuration comes from flags, a YAML file, or a bundle; not from
more than one. The residual buffer's size is printed on stderr.
"""

import sys

from hw.shortcut import Shortcut
from spec.cli import Parser, check_output_path, emit, fail, run_main, verilog_name
from spec.shortcut import ShortcutConfig, ShortcutParams, load_shortcut_bundle

from .verilog import to_verilog

PROG = "gen.shortcut"

_FLAGS = {
    "--channels": ("channels", int, "channels"),
    "--height": ("height", int, "map height"),
    "--width": ("width", int, "map width"),
    "--lanes": ("lanes", int, "channels per beat"),
    "--acc-bits": ("acc_bits", int, "signed width of the branch's accumulations"),
    "--bits": ("bits", int, "signed width of the residual stream"),
}


def build_parser():
    p = Parser(prog=PROG, description="Generate a membrane-shortcut datapath as Verilog.")
    for flag, (dest, kind, text) in _FLAGS.items():
        p.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    p.add_argument("--no-residual", dest="residual", action="store_false", default=None,
                   help="no residual input (a downsampling layer starts a stream)")
    p.add_argument("--config", help="shortcut configuration YAML file")
    p.add_argument("--bundle", help="bundle folder or .zip with configuration, shifts and biases")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the default shifts and biases when no bundle is given")
    p.add_argument("--name", default="shortcut", help="Verilog module name (default: shortcut)")
    p.add_argument("-o", "--out", help="write the Verilog here instead of stdout")
    p.add_argument("--quiet", action="store_true", help="no buffer-size line on stderr")
    return p


def config_and_params(args):
    given = {dest: getattr(args, dest) for dest in [d for d, _, _ in _FLAGS.values()]
             + ["residual"] if getattr(args, dest) is not None}
    if args.config is not None and args.bundle is not None:
        fail("give --config or --bundle, not both")
    source = "--config" if args.config is not None else "--bundle" if args.bundle else None
    if source and given:
        fail(f"unit flags cannot be combined with {source}")
    if args.bundle is not None:
        config, params, _ = load_shortcut_bundle(args.bundle)
        return config, params
    config = ShortcutConfig.load(args.config) if args.config is not None \
        else ShortcutConfig(**given)
    return config, ShortcutParams.seeded(config, args.seed)


def main(argv=None):
    args = build_parser().parse_args(argv)
    verilog_name(args.name)
    check_output_path(args.out)
    if args.seed < 0:
        fail(f"--seed must be at least 0, not {args.seed}")
    config, params = config_and_params(args)
    emit(to_verilog(Shortcut(config, params), args.name), args.out)
    if not args.quiet:
        print(f"[{PROG}] residual buffer: {config.buffer_words} words x "
              f"{config.lanes * config.bits} bits = {config.buffer_bits} bits", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
