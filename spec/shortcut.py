"""Configuration of the membrane-shortcut datapath: geometry, widths, residual buffer, cycles.

The unit takes a branch's accumulations (the output of its last accumulate engine) and, token by
token, brings them into the residual stream's scale and adds the block's input (the residual)::

    branch = sat((acc << shift) + bias)      (an arithmetic right shift by -shift when shift < 0)
    out    = sat(residual + branch)          (out = branch when the unit starts a stream)

per channel, saturating to the stream's `bits` after each add (`sw.shortcut_int` is the integer
reference). Streams carry `lanes` channels of one pixel per beat, pixels in raster order,
`groups` beats per pixel (lanes past `channels` are padding), like the accumulate engine's
output. The residual arrives before the branch's first output of the same frame (the branch
needs the whole frame first), so the unit buffers one frame of it (at least
`SHORTCUT_MIN_BUFFER` beats).
"""

from dataclasses import dataclass

import numpy as np

from .errors import BundleError, ConfigError
from .lif import _check_int
from .ports import Field
from .unit import UnitConfig

__all__ = ["ShortcutConfig", "ShortcutParams", "ShortcutTraces", "SHORTCUT_MAX_LEFT",
           "SHORTCUT_MAX_RIGHT", "SHORTCUT_OUT_FIFO_DEPTH", "SHORTCUT_MIN_BUFFER",
           "load_shortcut_bundle"]

#: Shift range: left by up to 15 bits, right by up to 24 (`sw.shortcut_int` imports these as
#: MAX_LEFT / MAX_RIGHT; `spec.network` checks a network's shifts against them).
SHORTCUT_MAX_LEFT, SHORTCUT_MAX_RIGHT = 15, 24
#: Depth of the output FIFO, the credit limit: it covers the loop from a pairing to its credit's
#: return (6 cycles), so one beat per cycle flows.
SHORTCUT_OUT_FIFO_DEPTH = 8
#: Least depth of the residual buffer: a buffered FIFO of 1 or 2 entries takes a beat only every
#: other cycle while it is being read, so a frame of 1 or 2 beats gets this many.
SHORTCUT_MIN_BUFFER = 3


@dataclass(frozen=True)
class ShortcutConfig(UnitConfig):
    """A membrane-shortcut datapath.

    Parameters
    ----------
    channels : int
    height, width : int
        The map (tokens = height x width).
    lanes : int
        Channels per beat (equal to the feeding accumulate engine's `lanes`).
    acc_bits : int
        Signed width of the branch's accumulations.
    bits : int
        Signed width of the residual stream (inputs and outputs).
    residual : bool
        Whether a residual is added; false for a downsampling layer, which starts a stream.
    """

    UNIT = "shortcut"
    NAME = "a shortcut"

    channels: int = 64
    height: int = 14
    width: int = 14
    lanes: int = 16
    acc_bits: int = 16
    bits: int = 16
    residual: bool = True

    def __post_init__(self):
        _check_int("channels", self.channels, minimum=1, maximum=1 << 14)
        _check_int("height", self.height, minimum=1, maximum=1 << 12)
        _check_int("width", self.width, minimum=1, maximum=1 << 12)
        _check_int("lanes", self.lanes, minimum=1, maximum=256)
        _check_int("acc_bits", self.acc_bits, minimum=2, maximum=48)
        _check_int("bits", self.bits, minimum=2, maximum=48)
        if not isinstance(self.residual, bool):
            raise ConfigError(f"residual must be true or false, not {self.residual!r}")

    @property
    def groups(self):
        """Beats per pixel."""
        return -(-self.channels // self.lanes)

    @property
    def frame_words(self):
        """Beats per frame."""
        return self.height * self.width * self.groups

    @property
    def buffer_words(self):
        """Depth of the residual buffer: one frame, at least `SHORTCUT_MIN_BUFFER` beats (0
        without a residual)."""
        return max(self.frame_words, SHORTCUT_MIN_BUFFER) if self.residual else 0

    @property
    def buffer_bits(self):
        """Memory bits of the residual buffer."""
        return self.buffer_words * self.lanes * self.bits

    # -- stream layouts ----------------------------------------------------------------------

    def branch_fields(self):
        """Branch input beat: `lanes` accumulations (the accumulate engine's output beat)."""
        return (Field("acc", self.acc_bits, signed=True, count=self.lanes),
                Field("first", 1), Field("last", 1))

    def stream_fields(self):
        """Residual input and output beat: `lanes` stream values, `first`/`last` of a frame
        (a LIF array's input beat when its `in_bits` is `bits`)."""
        return (Field("x", self.bits, signed=True, count=self.lanes),
                Field("first", 1), Field("last", 1))

    def input_ports(self):
        """{port: payload fields} of the inputs: `branch`, and `residual` if there is one."""
        ports = {"branch": self.branch_fields()}
        if self.residual:
            ports["residual"] = self.stream_fields()
        return ports

    # -- cycle model ---------------------------------------------------------------------------

    #: cycles from a beat's input handshake (both inputs) to its earliest output handshake
    LATENCY = 5
    #: cycles from a residual beat's handshake until the unit can pair it with a branch beat
    RESIDUAL_LATENCY = 2

    def cycles(self, frames):
        """Cycles from the first input handshake to the last output handshake for `frames`
        frames, with every residual beat offered before its frame's branch beats and neither
        input nor output stalling: one beat per cycle after the buffer's read latency."""
        words = frames * self.frame_words
        start = self.RESIDUAL_LATENCY if self.residual else 0
        return start + words - 1 + self.LATENCY + 1


def _fits(values, bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return not values.size or (int(values.min()) >= lo and int(values.max()) <= hi)


@dataclass(frozen=True)
class ShortcutParams:
    """Per-channel shifts (left; negative: arithmetic right) and biases in stream units."""

    shift: np.ndarray
    bias: np.ndarray

    @classmethod
    def checked(cls, config, shift, bias):
        """Validate shapes and ranges; raises `ConfigError` naming the problem."""
        out = []
        for name, values in (("shift", shift), ("bias", bias)):
            values = np.asarray(values)
            if values.dtype.kind not in "iu" or values.shape != (config.channels,):
                raise ConfigError(f"{name} must be integers of shape [{config.channels}], not "
                                  f"{values.dtype} {list(values.shape)}")
            out.append(values)
        shift, bias = out           # ranges checked before the int64 conversion (no wrap)
        if shift.size and (int(shift.min()) < -SHORTCUT_MAX_RIGHT
                           or int(shift.max()) > SHORTCUT_MAX_LEFT):
            raise ConfigError(f"shifts {int(shift.min())} .. {int(shift.max())} are outside "
                              f"-{SHORTCUT_MAX_RIGHT} .. {SHORTCUT_MAX_LEFT}")
        if not _fits(bias, config.bits):
            raise ConfigError(f"bias range {int(bias.min())} .. {int(bias.max())} does not fit "
                              f"bits={config.bits}")
        return cls(shift=shift.astype(np.int64), bias=bias.astype(np.int64))

    @classmethod
    def seeded(cls, config, seed=0):
        """Seeded shifts over -3 .. 3 and small biases: the default of a generated design."""
        rng = np.random.default_rng(seed)
        span = (1 << max(0, config.bits - 3)) - 1
        return cls.checked(config, rng.integers(-3, 4, size=config.channels),
                           rng.integers(-span, span + 1, size=config.channels))


@dataclass(frozen=True)
class ShortcutTraces:
    """Branch accumulations, residuals (None without one) and outputs, each
    (frames, channels, height, width)."""

    acc: np.ndarray
    residual: np.ndarray | None
    outputs: np.ndarray

    @property
    def frames(self):
        return self.acc.shape[0]


def load_shortcut_bundle(path):
    """Read a shortcut bundle: (config, params, traces), each checked against the configuration.
    """
    from .bundle import read_bundle

    bundle = read_bundle(path, unit="shortcut")
    try:
        config = ShortcutConfig.from_dict(bundle.config)
        params = ShortcutParams.checked(config, bundle.array("shift"), bundle.array("bias"))
    except ConfigError as exc:
        raise BundleError(f"bundle {bundle.source!r} does not fit its shortcut configuration: "
                          f"{exc}") from None
    want = (config.channels, config.height, config.width)
    names = ["acc", "outputs"] + (["residual"] if config.residual else [])
    if not config.residual and "residual" in bundle.arrays:
        raise BundleError(f"bundle {bundle.source!r} has a residual array, but its configuration "
                          f"has residual: false")
    arrays = {}
    for name in names:
        a = bundle.array(name)
        if a.ndim != 4 or a.shape[1:] != want or a.dtype.kind not in "iu":
            raise BundleError(
                f"bundle {bundle.source!r}: array {name!r} has shape {list(a.shape)}, but the "
                f"configuration needs integers of shape [frames, {', '.join(map(str, want))}]")
        if a.shape[0] != bundle.array("acc").shape[0]:
            raise BundleError(f"bundle {bundle.source!r}: arrays disagree on frames")
        bits = config.acc_bits if name == "acc" else config.bits
        if not _fits(a, bits):
            raise BundleError(f"bundle {bundle.source!r}: {name} does not fit {bits} bits")
        arrays[name] = a.astype(np.int64)
    traces = ShortcutTraces(acc=arrays["acc"], residual=arrays.get("residual"),
                            outputs=arrays["outputs"])
    return config, params, traces
