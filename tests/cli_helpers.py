"""What the command-line tests of the generators share: running `gen.<unit>` in-process and
checking its output and errors."""

import re
from pathlib import Path

from spec.cli import run_main


class CLI:
    """Run the command line `prog` (its `main`) in-process under pytest's `capsys`."""

    def __init__(self, prog, main):
        self.prog, self.main = prog, main

    def run(self, capsys, *argv):
        """(exit status, stdout, stderr)."""
        status = run_main(self.prog, self.main, [str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    def generate(self, capsys, *argv):
        """stdout of a run that must succeed silently."""
        status, out, err = self.run(capsys, *argv)
        assert (status, err) == (0, "")
        return out

    def assert_one_line_error(self, status, out, err, message):
        assert status == 2
        assert out == ""
        assert err == f"{self.prog}: error: {message}\n"


def assert_reproducible_text(text, *folders):
    """No machine path (nor any of `folders`) and no source-location attribute in `text`."""
    assert "/work" not in text
    assert "/tmp" not in text
    home = str(Path.home())
    if home not in ("", "/"):
        assert home not in text
    for folder in folders:
        assert str(folder) not in text
    assert not re.search(r"\bsrc\s*=", text), "source-location attribute in the output"
    assert "(* src" not in text
