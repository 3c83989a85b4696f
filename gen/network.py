"""Generate a whole integer network (every layer and the head) as one Verilog design.

    python -m gen.network --bundle out/digits-net > net.v          # a network bundle (sw.export)
    python -m gen.network --bundle out/digits-net --taps -o net.v  # with a tap per layer

Input port `i`: integer pixels, one image repeated for each timestep; output `o`: per
timestep, the class accumulations of the head's linear layer (the scores are their sum over
the timesteps). With `--taps`, ports `t<n>__data` / `t<n>__fire` show each layer's output
stream (for checking every layer; they do not affect the handshakes). A summary of the layers
goes to stderr.
"""

import sys
import time

from hw.network import Network
from spec.cli import Parser, check_output_path, emit, fail, run_main, verilog_name
from spec.netbundle import read_network_bundle
from spec.progress import Elapsed

from .verilog import to_verilog

PROG = "gen.network"


def build_parser():
    p = Parser(prog=PROG, description="Generate a whole network as Verilog.")
    p.add_argument("--bundle", help="network bundle folder or .zip (python -m sw.export)")
    p.add_argument("--taps", action="store_true", help="a tap port per layer's output stream")
    p.add_argument("--name", default="network", help="Verilog module name (default: network)")
    p.add_argument("-o", "--out", help="write the Verilog here instead of stdout")
    p.add_argument("--quiet", action="store_true", help="no summary on stderr")
    return p


def net_from_args(args):
    """The integer network of the parsed flags' bundle."""
    if args.bundle is None:
        fail("--bundle is required: a network bundle from python -m sw.export --checkpoint F "
             "--out DIR")
    unit, net, _ = read_network_bundle(args.bundle)
    if unit != "network":
        fail(f"{args.bundle!r} is a block bundle; generate it with python -m gen.block")
    return net


def network_from_args(args):
    """(integer network, its `hw.network.Network`) from the parsed flags."""
    net = net_from_args(args)
    try:
        return net, Network(net, taps=args.taps)
    except ValueError as exc:
        fail(str(exc))


def main(argv=None):
    args = build_parser().parse_args(argv)
    verilog_name(args.name)
    check_output_path(args.out)
    started = time.perf_counter()
    net, component = network_from_args(args)
    with Elapsed(f"{PROG}: generating Verilog", enabled=not args.quiet):
        text = to_verilog(component, args.name)
    emit(text, args.out)
    if not args.quiet:
        layers = ", ".join(f"{layer.name} ({type(layer).__name__[3:]}, {len(hw.units)} units)"
                           for layer, hw in zip(net.layers, component.layers, strict=True))
        print(f"[{PROG}] T = {net.timesteps}: {layers}, head ({len(component.head.units)} "
              f"units); {len(text):,} bytes of Verilog in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
