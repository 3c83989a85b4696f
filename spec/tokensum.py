"""Configuration of the token sum: a frame of a residual stream summed over its tokens.

The classification head reads the last stage's stream summed over all tokens, per channel::

    out[c] = sat(sum over tokens n of x[n, c])      (one saturation, after the exact sum)

(`sw.int_model.IntHead` is the integer reference). Input beats carry `lanes` channels of one
token, tokens in raster order, `groups` beats per token, one frame per timestep; the output is
one token's worth of beats per frame: `groups` beats of `lanes` sums, `first` on the first and
`last` on the last.
"""

from dataclasses import dataclass

from .errors import ConfigError
from .lif import _check_int
from .ports import Field
from .unit import UnitConfig

__all__ = ["TokenSumConfig", "TOKENSUM_OUT_FIFO_DEPTH"]

#: Depth of the output FIFO (the credit limit of the input).
TOKENSUM_OUT_FIFO_DEPTH = 4


@dataclass(frozen=True)
class TokenSumConfig(UnitConfig):
    """A per-channel sum over the tokens of a frame.

    Parameters
    ----------
    channels, tokens, lanes : int
    in_bits : int
        Signed width of the input stream.
    bits : int
        Signed width of the sums (the output saturates to it).
    """

    UNIT = "tokensum"
    NAME = "a token sum"

    channels: int = 128
    tokens: int = 64
    lanes: int = 16
    in_bits: int = 18
    bits: int = 24

    def __post_init__(self):
        _check_int("channels", self.channels, minimum=1, maximum=1 << 14)
        _check_int("tokens", self.tokens, minimum=1, maximum=1 << 24)
        _check_int("lanes", self.lanes, minimum=1, maximum=256)
        _check_int("in_bits", self.in_bits, minimum=2, maximum=48)
        _check_int("bits", self.bits, minimum=2, maximum=64)

    @property
    def groups(self):
        """Beats per token: ceil(channels / lanes)."""
        return -(-self.channels // self.lanes)

    @property
    def wide_bits(self):
        """Width of the running sums, which never overflow: in_bits + ceil(log2(tokens))."""
        return self.in_bits + max(0, (self.tokens - 1).bit_length())

    def input_fields(self):
        return (Field("x", self.in_bits, signed=True, count=self.lanes),
                Field("first", 1), Field("last", 1))

    def output_fields(self):
        return (Field("sum", self.bits, signed=True, count=self.lanes),
                Field("first", 1), Field("last", 1))

    def cycles(self, frames):
        """Cycles from the first input handshake to the last output handshake, frames back to
        back without stalls: one beat per cycle, and the output 2 cycles behind its input."""
        if frames < 1:
            raise ConfigError(f"frames must be at least 1, not {frames}")
        return frames * self.tokens * self.groups + 2
