"""Generate the overlay core (`hw.core.OverlayCore`) as Verilog.

    python -m gen.core > core.v                              # the default core
    python -m gen.core --config core.yaml -o core.v          # a core configuration file
    python -m gen.core --set lanes=8 --set acc_words=256 > core.v

The configuration is `spec.core.CoreConfig` (defaults: 8 lanes, 64-bit AXI, the maxima in
docs/overlay-format.md); `--set KEY=VALUE` changes one field over the file or the defaults.
Programs for the core come from `python -m gen.program` with the same configuration (the
header's fingerprint must equal the core's `CORE_ID`). The same configuration gives the same
bytes. `--report FILE` writes the configuration, its fingerprint and the core's memories (JSON).
"""

import json
import sys

from hw.core import IMPLEMENTED_OPS, OverlayCore, check_config
from spec.cli import Parser, check_output_path, emit, fail, run_main, verilog_name
from spec.errors import ConfigError
from spec.program import core_fingerprint
from spec.progress import Elapsed
from spec.yamlio import atomic_write_text

from .program import core_from_args
from .verilog import to_verilog

PROG = "gen.core"


def build_parser():
    p = Parser(prog=PROG, description="Generate the overlay core as Verilog.")
    p.add_argument("--config", help="core configuration YAML file (unit: core)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change one configuration field (repeatable)")
    p.add_argument("--name", default="overlay_core",
                   help="Verilog module name (default: overlay_core)")
    p.add_argument("-o", "--out", help="write the Verilog here instead of stdout")
    p.add_argument("--report", help="write the configuration and memories here (JSON)")
    return p


def config_from_args(args):
    return core_from_args(args.config, args.set, prog=PROG)


def core_component(config):
    """The `OverlayCore` of `config`; a configuration the RTL cannot build fails with one
    message."""
    try:
        check_config(config)
    except ValueError as exc:
        fail(str(exc))
    return OverlayCore(config)


def main(argv=None):
    args = build_parser().parse_args(argv)
    verilog_name(args.name)
    check_output_path(args.out)
    if args.report == "-":
        fail("--report needs a file name (stdout carries the Verilog)")
    check_output_path(args.report)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        fail(str(exc))
    with Elapsed(f"{PROG}: generating Verilog"):
        text = to_verilog(core_component(config), args.name)
    if args.report is not None:
        report = {"unit": "core", "config": config.to_dict(),
                  "core_id": f"{core_fingerprint(config):#010x}",
                  "operations": list(IMPLEMENTED_OPS),
                  "memories": [vars(mem) for mem in config.memories()]}
        atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
