"""Progress bars for long runs (tqdm, on stderr): shown on a terminal, silent otherwise or when
a command's `--quiet` turns them off."""

import sys

from tqdm import tqdm

__all__ = ["PhaseBars"]


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
