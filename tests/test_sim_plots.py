"""`sim.plots`: each picture is a PNG, the same figures give the same bytes, and figures that
do not fit together are refused."""

import os

import numpy as np
import pytest

from sim import plots
from spec.yamlio import umask

PNG = b"\x89PNG\r\n\x1a\n"


def _spikes(seed, shape=(2, 8, 3, 4)):
    return (np.random.default_rng(seed).random(shape) < 0.2).astype(np.uint8)


def test_pictures_are_reproducible_pngs(tmp_path):
    names = ["conv", "lif", "fc"]
    draw = [
        lambda d: plots.cycles_per_layer(names, [1200, 300, 9000], [1000, 280, 9100],
                                         [900, 250, 8800], d / "c.png"),
        lambda d: plots.firing_rates(names, [0.1, 0.25, 0.0], d / "f.png"),
        lambda d: plots.rasters(names, [_spikes(k) for k in range(3)],
                                [_spikes(k) for k in range(3)], d / "r.png"),
        lambda d: plots.rasters(names[:1], [_spikes(5)], None, d / "m.png"),
    ]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for f in draw:
            path = f(tmp_path / folder)
            assert path.read_bytes().startswith(PNG)
            assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask()
    for name in ("c.png", "f.png", "r.png", "m.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("draw, message", [
    (lambda p: plots.cycles_per_layer(["a", "b"], [1, 2], [1], [1, 2], p), "one measured"),
    (lambda p: plots.firing_rates(["a"], [0.1, 0.2], p), "one rate per operation"),
    (lambda p: plots.rasters(["a"], [_spikes(1)], [], p), "one spike array"),
    (lambda p: plots.rasters(["a"], [np.zeros((3, 3))], None, p), r"\(T, C, H, W\)"),
])
def test_figures_that_do_not_fit_are_refused(draw, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        draw(tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
