"""Progress bars for long runs (tqdm, on stderr): shown on a terminal, silent otherwise or when
a command's `--quiet` turns them off."""

import sys
import threading

from tqdm import tqdm

__all__ = ["PhaseBars", "Elapsed"]


class PhaseBars:
    """A progress callback `(done, total, phase="")` for work that reports in phases (a
    quantizer's calibration passes, a batch of images): one bar per phase, `desc (phase)`,
    closed when the next phase starts or by `close()` (also a context manager). `enabled`
    False draws nothing; True draws on a terminal only (tqdm's `disable=None`). `options` go
    to tqdm."""

    def __init__(self, desc, *, unit="image", enabled=True, file=None, **options):
        self.desc, self.unit, self.enabled, self.options = desc, unit, enabled, options
        self.file = file if file is not None else sys.stderr
        self.bar, self.phase = None, None

    def __call__(self, done, total, phase=""):
        if self.bar is None or phase != self.phase or total != self.bar.total:
            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, unit=self.unit, leave=False, file=self.file,
                            desc=f"{self.desc} ({phase})" if phase else self.desc,
                            disable=None if self.enabled else True, **self.options)
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Elapsed:
    """A ticking `desc: 12 s` line on a terminal (stderr) while one long step that cannot
    report its own progress runs (Verilog generation: Amaranth then Yosys), as a context
    manager; silent when not on a terminal or with `enabled` False."""

    def __init__(self, desc, *, enabled=True, file=None, every=0.5):
        self.desc, self.every = desc, every
        self.file = file if file is not None else sys.stderr
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = None
        self.bar = None

    def __enter__(self):
        self.bar = tqdm(total=None, desc=self.desc, file=self.file, leave=False,
                        bar_format="{desc}: {elapsed}", disable=None if self.enabled else True)
        if not self.bar.disable:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def _tick(self):
        while not self._stop.wait(self.every):
            self.bar.refresh()

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.bar.close()
