"""Integer reference of the membrane-shortcut datapath: the one place its arithmetic is written.

A branch's last convolution accumulates `acc` in its own per-channel scale, a power-of-two
multiple `2**shift` of the residual stream's scale. The shortcut brings it into the stream's
scale with a shift (left for `shift >= 0`; an arithmetic right shift by `-shift` for a channel
finer than the stream, whose convolution added `2**(-shift-1)` to round), adds the branch's
bias (stream units) and the residual (the block's input), saturating to the stream's width
after each add, never wrapping::

    branch = sat((acc << shift) + bias)          (acc >> -shift when shift < 0)
    out    = sat(residual + branch)

A downsampling layer starts a stream: the same, with no residual. No multiplier anywhere.
"""

import numpy as np

from spec.shortcut import SHORTCUT_MAX_LEFT as MAX_LEFT
from spec.shortcut import SHORTCUT_MAX_RIGHT as MAX_RIGHT

from .lif_int import saturate

__all__ = ["shortcut_int", "MAX_LEFT", "MAX_RIGHT"]


def shortcut_int(acc, shift, bias, bits, residual=None, *, channel_axis=-3):
    """`sat(residual + sat((acc << shift) + bias))` per channel, to `bits` bits.

    Parameters
    ----------
    acc : int array
        The branch's accumulations, channels on `channel_axis`.
    shift, bias : int arrays of one value per channel
        Left shifts (negative: arithmetic right shifts), and biases in stream units.
    bits : int
        The stream's width (signed).
    residual : int array or None
        The stream values the branch adds to (same shape as `acc`); None for a downsampling
        layer, which starts a stream.
    """
    acc = np.asarray(acc, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if shift.size and (shift.min() < -MAX_RIGHT or shift.max() > MAX_LEFT):
        raise ValueError(f"shifts must be within -{MAX_RIGHT} .. {MAX_LEFT}")
    view = [1] * acc.ndim
    view[channel_axis] = -1
    shift = shift.reshape(view)
    moved = np.where(shift >= 0, acc << np.maximum(shift, 0), acc >> np.maximum(-shift, 0))
    branch = saturate(moved + np.asarray(bias, np.int64).reshape(view), bits)
    if residual is None:
        return branch
    return saturate(np.asarray(residual, dtype=np.int64) + branch, bits)
