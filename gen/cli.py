"""Shared command-line machinery: one clear message and exit status 2 on bad input."""

import argparse
import sys
from pathlib import Path

from spec.errors import BundleError, ConfigError
from spec.yamlio import atomic_write_text

__all__ = ["Parser", "fail", "run_main", "emit", "float_or_list"]


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line on stderr and exit status 2."""

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


def emit(text, out):
    """Write `text` to the file `out` (atomically), or to stdout when `out` is None or '-'."""
    if out is None or str(out) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    out = Path(out)
    if not out.parent.is_dir():
        raise UsageError(f"output folder {str(out.parent)!r} does not exist")
    atomic_write_text(out, text)


def float_or_list(text):
    """A number, or comma-separated numbers (one per channel)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or comma-separated numbers, not {text!r}") from None
    return values[0] if len(values) == 1 else values
