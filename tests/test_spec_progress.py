"""`spec.progress.PhaseBars`: a bar per phase on a terminal, nothing elsewhere or when off;
`Elapsed`: a ticking line while one long step runs, on a terminal only."""

import io
import time

from spec.progress import Elapsed, PhaseBars


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_per_phase_on_a_terminal():
    out = Terminal()
    with PhaseBars("calibration", file=out, mininterval=0) as bars:
        for phase in ("pass 1 of 2", "pass 2 of 2"):
            for done in (64, 128):
                bars(done, 128, phase)
    text = out.getvalue()
    assert "calibration (pass 1 of 2)" in text and "calibration (pass 2 of 2)" in text
    assert "128/128" in text and bars.bar is None


def test_silent_when_off_or_not_a_terminal():
    for out, enabled in ((Terminal(), False), (io.StringIO(), True)):
        with PhaseBars("test", file=out, enabled=enabled) as bars:
            bars(5, 10)
            bars(10, 10)
        assert out.getvalue() == ""


def test_elapsed_ticks_on_a_terminal_only():
    term = Terminal()
    with Elapsed("gen.core: generating Verilog", file=term, every=0.05):
        time.sleep(0.3)
    ticks = [part for part in term.getvalue().split("\r") if part.strip()]
    assert len(ticks) >= 3 and ticks[0].startswith("gen.core: generating Verilog: 00:00")
    pipe = io.StringIO()
    with Elapsed("x", file=pipe, every=0.05):
        time.sleep(0.1)
    assert pipe.getvalue() == ""
    quiet = Terminal()
    with Elapsed("x", file=quiet, enabled=False, every=0.05):
        time.sleep(0.1)
    assert quiet.getvalue() == ""
