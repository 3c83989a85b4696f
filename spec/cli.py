"""Shared command-line machinery (of `gen`, `sw`, `fpga` and `sim`): one clear message and exit
status 2 on bad input."""

import argparse
import re
import sys
from pathlib import Path

from .errors import BundleError, ConfigError
from .yamlio import atomic_write_text

__all__ = ["Parser", "UsageError", "fail", "run_main", "emit", "check_output_path",
           "float_or_list", "verilog_name", "whole_number"]


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line on stderr and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)


def fail(message):
    raise UsageError(message)


def run_main(prog, main, argv=None):
    """Run `main(argv)`; bad input becomes `prog: error: <message>` and exit status 2."""
    try:
        return main(argv)
    except (UsageError, ConfigError, BundleError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def check_output_path(out):
    """Reject an output path that cannot be written, before any work is done."""
    if out is None or str(out) == "-":
        return
    if str(out) == "" or Path(out).is_dir():
        raise UsageError(f"output {str(out)!r} is a folder, not a file name")
    parent = Path(out).parent
    if not parent.is_dir():
        raise UsageError(f"output folder {str(parent)!r} does not exist")


def emit(text, out):
    """Write `text` to the file `out` (atomically), or to stdout when `out` is None or '-'."""
    if out is None or str(out) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    check_output_path(out)
    try:
        atomic_write_text(Path(out), text)
    except OSError as exc:
        raise UsageError(f"cannot write {str(out)!r}: {exc.strerror}") from None


_VERILOG_KEYWORDS = frozenset(
    "always and assign begin buf case default else end endcase endmodule for function if "
    "initial inout input integer module nand nor not or output parameter reg wire xor".split())


def verilog_name(text):
    """A plain Verilog identifier (ASCII, not a keyword), for module names."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) or text in _VERILOG_KEYWORDS:
        raise UsageError(f"--name must be a Verilog identifier, not {text!r}")
    return text


def float_or_list(text):
    """A number, or comma-separated numbers (one per channel)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or comma-separated numbers, not {text!r}") from None
    return values[0] if len(values) == 1 else values


def whole_number(minimum):
    """An argparse type: a whole number of `minimum` or more."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be a whole number of {minimum} or more, not {text!r}")
        return value
    return parse
