"""Generate a spike-driven self-attention (SDSA) unit as Verilog.

    python -m gen.sdsa --heads 8 > sdsa.v
    python -m gen.sdsa --variant 1 --channels 128 --tokens 64 --lanes 8 --timesteps 4 > sdsa.v
    python -m gen.sdsa --config sdsa.yaml > sdsa.v
    python -m gen.sdsa --bundle DIR > sdsa.v

Defaults are the paper's stage-3 attention of the smallest Meta-SpikeFormer: variant 3, 8 heads,
256 channels, 14 x 14 = 196 tokens, 16 lanes, T = 1. Without `--lanes`, a shape the default 16
lanes do not divide takes the largest lanes below 16 that do (said on stderr): `--heads 8
--channels 64` takes 8. The configuration comes from flags (over
those defaults), a YAML file or a bundle; flags given with --config or --bundle must agree with
it. `--report FILE` writes the configuration and the on-chip buffer sizes as JSON.
"""

import json
import sys

from hw.sdsa import sdsa_unit
from spec.cli import Parser, check_output_path, emit, fail, float_or_list, run_main, verilog_name
from spec.sdsa import SDSAConfig, fitting_lanes, load_sdsa_bundle
from spec.yamlio import atomic_write_text

from .verilog import to_verilog

PROG = "gen.sdsa"

_FLAGS = {
    "--variant": ("variant", int, "1, 2, 3 or 4 (default 3)"),
    "--heads": ("heads", int, "attention heads; must divide channels (default 8)"),
    "--channels": ("channels", int, "channels of Q, K, V (default 256)"),
    "--tokens": ("tokens", int, "tokens per timestep, H x W (default 196)"),
    "--lanes": ("lanes", int, "channels per stream beat (default 16, or the largest below it "
                              "that divides channels and the head dimension)"),
    "--timesteps": ("timesteps", int, "timesteps per sample, T (default 1)"),
    "--v-th": ("v_th", float_or_list, "threshold (variant 4), or one per channel"),
    "--count-bits": ("count_bits", int, "width of the KV / column counters"),
    "--acc-bits": ("acc_bits", int, "width of A = Q KV (variants 3/4)"),
}


def build_parser():
    p = Parser(prog=PROG, description="Generate a spike-driven self-attention unit as Verilog.")
    for flag, (dest, kind, text) in _FLAGS.items():
        p.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    p.add_argument("--config", help="SDSA configuration YAML file")
    p.add_argument("--bundle", help="bundle folder or .zip holding the configuration")
    p.add_argument("--name", default="sdsa", help="Verilog module name (default: sdsa)")
    p.add_argument("-o", "--out", help="write the Verilog here instead of stdout")
    p.add_argument("--report", help="write the configuration and buffer sizes here (JSON)")
    return p


def config_from_args(args):
    given = {dest: getattr(args, dest) for dest, _, _ in _FLAGS.values()
             if getattr(args, dest) is not None}
    if args.config is not None and args.bundle is not None:
        fail("give --config or --bundle, not both")
    if args.config is None and args.bundle is None:
        if "lanes" not in given:
            shape = {k: given[k] for k in ("variant", "heads", "channels") if k in given}
            lanes, reason = fitting_lanes(**shape)
            if reason is not None:
                print(f"{PROG}: lanes {lanes} ({reason}; --lanes sets them)", file=sys.stderr)
            given["lanes"] = lanes
        return SDSAConfig(**given)
    if args.config is not None:
        config, source = SDSAConfig.load(args.config), f"configuration {args.config!r}"
    else:
        config, _ = load_sdsa_bundle(args.bundle)
        source = f"bundle {args.bundle!r}"
    flags = {dest: flag for flag, (dest, _, _) in _FLAGS.items()}
    # widths compare as used: a file's `null` means the least width, which a flag may name
    effective = {"count_bits": config.kv_bits, "acc_bits": config.a_bits}
    for dest, value in given.items():
        have = effective.get(dest, getattr(config, dest))
        if (list(have) if isinstance(have, tuple) else have) != value:
            fail(f"{source} has {dest} {have!r}, but {flags[dest]} {value!r} was given")
    return config


def main(argv=None):
    args = build_parser().parse_args(argv)
    verilog_name(args.name)
    check_output_path(args.out)
    if args.report == "-":
        fail("--report needs a file name (stdout carries the Verilog)")
    check_output_path(args.report)
    config = config_from_args(args)
    text = to_verilog(sdsa_unit(config), args.name)
    if args.report is not None:
        report = {"unit": "sdsa", "config": config.to_dict(), "buffers": config.memory_report()}
        atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
