"""Configuration of a spike-sparse accumulate engine (SAE): geometry, widths, ideal cost.

The engine computes `y = W * s + b` for binary spikes `s`, event by event, with additions only:
per-token linear (1x1 convolution), dense k x k convolution with stride and padding, and
depthwise k x k convolution. Tensors follow PyTorch: spikes (frames, C_in, H, W), weights
(C_out, C_in, k, k) (depthwise: (C, 1, k, k)), outputs (frames, C_out, H_out, W_out).

Numeric contract (what the integer reference `sw.sae_int` and the hardware both compute): every
accumulator starts at 0 and adds one weight per input spike with saturation to `acc_bits`, in
the order the engine sees events: input pixels in raster order, channels ascending within a
pixel. For one accumulator that is the order (kh, kw, c_in). The output is `sat(acc + bias)`.

Multi-bit inputs (`in_bits > 1`, linear and conv): each input is an `in_bits`-bit integer
(two's complement when `in_signed`), and the engine makes one event per set bit b of its
magnitude |x|, adding `w << b` (or subtracting it when x < 0). The accumulator is then at least
`lossless_acc_bits` wide, so no add saturates and the result is the exact sum
`sat(sum(w * x) + bias)`, whatever the event order.
"""

import math
from dataclasses import dataclass

import numpy as np

from .errors import BundleError, ConfigError
from .lif import _check_int
from .ports import Field
from .unit import UnitConfig

__all__ = ["SAEConfig", "SAEParams", "SAE_MODES", "SAE_FLUSH_CYCLES", "SAE_OUT_FIFO_DEPTH",
           "load_sae_bundle", "SAETraces"]

SAE_MODES = ("linear", "conv", "depthwise")
#: Cycles the engine waits after a frame's last event before draining (the update pipeline
#: empties: read, RAM output register, add, write).
SAE_FLUSH_CYCLES = 3
#: Depth of the engine's output FIFO (the drain's credit limit).
SAE_OUT_FIFO_DEPTH = 8
_MAX_CHANNELS = 1 << 14
_MAX_MAP = 1 << 12


@dataclass(frozen=True)
class SAEConfig(UnitConfig):
    """A spike-sparse accumulate engine.

    Parameters
    ----------
    mode : {"linear", "conv", "depthwise"}
        `linear` is a per-token 1x1 convolution (kernel 1, stride 1, padding 0) over
        `height * width` tokens; `depthwise` has `out_channels == in_channels`.
    in_channels, out_channels : int
    kernel, stride, padding : int
        Square kernel size, stride and zero padding.
    height, width : int
        Input map size (for `linear`, the tokens are `height * width`).
    lanes : int
        Accumulators updated per cycle (outputs per output beat).
    in_lanes : int
        Spikes per input beat.
    w_bits : int
        Signed weight width.
    acc_bits : int
        Signed accumulator and output width; every add saturates to it.
    bias : bool
        Whether a per-output-channel bias (signed, `acc_bits` wide) is added when draining.
    in_bits : int
        Bits per input value: 1 for spikes; more for multi-bit integer inputs (linear and conv
        only), fed to the engine one event per set magnitude bit ("bit planes").
    in_signed : bool
        Whether multi-bit inputs are two's complement (`in_bits >= 2`).
    """

    UNIT = "sae"
    NAME = "an SAE"

    mode: str = "conv"
    in_channels: int = 64
    out_channels: int = 128
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    height: int = 14
    width: int = 14
    lanes: int = 16
    in_lanes: int = 16
    w_bits: int = 8
    acc_bits: int = 16
    bias: bool = True
    in_bits: int = 1
    in_signed: bool = False

    def __post_init__(self):
        if self.mode not in SAE_MODES:
            raise ConfigError(f"mode must be one of {', '.join(SAE_MODES)}, not {self.mode!r}")
        _check_int("in_channels", self.in_channels, minimum=1, maximum=_MAX_CHANNELS)
        _check_int("out_channels", self.out_channels, minimum=1, maximum=_MAX_CHANNELS)
        _check_int("kernel", self.kernel, minimum=1, maximum=15)
        _check_int("stride", self.stride, minimum=1, maximum=15)
        _check_int("padding", self.padding, minimum=0, maximum=15)
        _check_int("height", self.height, minimum=1, maximum=_MAX_MAP)
        _check_int("width", self.width, minimum=1, maximum=_MAX_MAP)
        _check_int("lanes", self.lanes, minimum=1, maximum=256)
        _check_int("in_lanes", self.in_lanes, minimum=1, maximum=256)
        _check_int("w_bits", self.w_bits, minimum=2, maximum=16)
        _check_int("acc_bits", self.acc_bits, minimum=2, maximum=48)
        if not isinstance(self.bias, bool):
            raise ConfigError(f"bias must be true or false, not {self.bias!r}")
        _check_int("in_bits", self.in_bits, minimum=1, maximum=24)
        if not isinstance(self.in_signed, bool):
            raise ConfigError(f"in_signed must be true or false, not {self.in_signed!r}")
        if self.mode == "linear" and (self.kernel, self.stride, self.padding) != (1, 1, 0):
            raise ConfigError(
                f"linear mode needs kernel 1, stride 1, padding 0, not kernel {self.kernel}, "
                f"stride {self.stride}, padding {self.padding}"
            )
        if self.mode == "depthwise" and self.out_channels != self.in_channels:
            raise ConfigError(
                f"depthwise mode needs out_channels == in_channels, not {self.out_channels} "
                f"and {self.in_channels}"
            )
        if self.mode == "depthwise" and self.in_lanes != self.lanes:
            raise ConfigError(
                f"depthwise mode needs in_lanes == lanes (an input beat is one accumulator "
                f"group), not {self.in_lanes} and {self.lanes}"
            )
        if self.mode == "depthwise" and self.lanes & (self.lanes - 1):
            raise ConfigError(
                f"depthwise mode needs lanes to be a power of two (banks of rows x columns), "
                f"not {self.lanes}"
            )
        if self.padding >= self.kernel:
            raise ConfigError(
                f"padding ({self.padding}) must be smaller than kernel ({self.kernel})"
            )
        for name, size in (("height", self.height), ("width", self.width)):
            if self.kernel > size + 2 * self.padding:
                raise ConfigError(
                    f"kernel ({self.kernel}) is larger than the padded map: {name} {size} + 2 x "
                    f"padding {self.padding} = {size + 2 * self.padding}"
                )
        if self.acc_bits < self.w_bits + 1:
            raise ConfigError(
                f"acc_bits ({self.acc_bits}) is too small: weights of w_bits={self.w_bits} need "
                f"at least {self.w_bits + 1}"
            )
        if self.in_signed and self.in_bits < 2:
            raise ConfigError(
                f"in_signed needs in_bits >= 2 (a sign and a magnitude bit), not {self.in_bits}"
            )
        if self.in_bits > 1:
            if self.mode == "depthwise":
                raise ConfigError(
                    f"in_bits > 1 (multi-bit inputs) needs mode linear or conv, not "
                    f"{self.mode}"
                )
            if self.acc_bits < self.lossless_acc_bits:
                raise ConfigError(
                    f"in_bits > 1 needs acc_bits >= lossless_acc_bits = "
                    f"{self.lossless_acc_bits} (so that no add saturates), not {self.acc_bits}"
                )

    # -- geometry ------------------------------------------------------------------------------

    @property
    def out_height(self):
        return (self.height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_width(self):
        return (self.width + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def weight_shape(self):
        k = self.kernel
        if self.mode == "depthwise":
            return (self.out_channels, 1, k, k)
        return (self.out_channels, self.in_channels, k, k)

    @property
    def fan_in(self):
        """Weights summed into one output at most."""
        k2 = self.kernel * self.kernel
        return k2 if self.mode == "depthwise" else self.in_channels * k2

    @property
    def out_groups(self):
        """Output beats per output pixel: ceil(out_channels / lanes)."""
        return -(-self.out_channels // self.lanes)

    @property
    def in_beats_per_pixel(self):
        """Input beats per input pixel: ceil(in_channels / in_lanes)."""
        return -(-self.in_channels // self.in_lanes)

    def touched(self, size, out_size):
        """For each input row (or column) index, how many output rows it contributes to."""
        counts = np.zeros(size, dtype=np.int64)
        for i in range(size):
            for k in range(self.kernel):
                o, rem = divmod(i + self.padding - k, self.stride)
                if rem == 0 and 0 <= o < out_size:
                    counts[i] += 1
        return counts

    def touched_pixels(self):
        """(height, width) array: output pixels each input pixel contributes to."""
        rows = self.touched(self.height, self.out_height)
        cols = self.touched(self.width, self.out_width)
        return np.outer(rows, cols)

    # -- stream layouts ----------------------------------------------------------------------

    def input_fields(self):
        """Input beat: `in_lanes` spikes of one pixel (pixels in raster order, each in
        `in_beats_per_pixel` beats, lanes past `in_channels` ignored), `first`/`last` of a frame.
        With `in_bits > 1` the beat carries `in_lanes` integer `values` instead of `spikes`."""
        if self.in_bits > 1:
            value = Field("values", self.in_bits, signed=self.in_signed, count=self.in_lanes)
        else:
            value = Field("spikes", 1, count=self.in_lanes)
        return (value, Field("first", 1), Field("last", 1))

    def event_fields(self):
        """Address event: the spike's pixel (`row`, `col`), `channel`, and the input beat
        (`group`) and `lane` it came from (`channel = group * in_lanes + lane`). `spike` is 0
        only for the token that ends a frame whose last beat had no spike (all other fields 0
        but the pixel); `last` ends the frame.

        With `in_bits > 1` an event is one set bit of an input's magnitude: `plane` is the bit's
        index b (the engine adds `w << b`) and, for signed inputs, `neg` is the input's sign
        (the engine subtracts)."""
        multi = ()
        if self.in_bits > 1:
            multi = (Field("plane", _bits(self.in_bits)),)
            if self.in_signed:
                multi += (Field("neg", 1),)
        return (
            Field("row", _bits(self.height)),
            Field("col", _bits(self.width)),
            Field("channel", _bits(self.in_channels)),
            Field("group", _bits(self.in_beats_per_pixel)),
            Field("lane", _bits(self.in_lanes)),
            *multi,
            Field("spike", 1),
            Field("last", 1),
        )

    def output_fields(self):
        """Output beat: `lanes` accumulators of one output pixel, `first`/`last` of a frame."""
        return (Field("acc", self.acc_bits, signed=True, count=self.lanes),
                Field("first", 1), Field("last", 1))

    # -- inputs ------------------------------------------------------------------------------

    @property
    def input_range(self):
        """(lowest, highest) input value: (0, 1) for spikes."""
        if self.in_signed:
            return -(1 << (self.in_bits - 1)), (1 << (self.in_bits - 1)) - 1
        return 0, (1 << self.in_bits) - 1

    @property
    def input_magnitude(self):
        """The largest input magnitude M: 1 for spikes, 2**(in_bits-1) signed, 2**in_bits - 1
        unsigned."""
        lo, hi = self.input_range
        return max(-lo, hi)

    @property
    def input_latency(self):
        """Cycles the multi-bit input stage adds before the encoder (0 for spikes): one to
        split the beat into planes, one to choose the plane word."""
        return 2 if self.in_bits > 1 else 0

    def check_inputs(self, values):
        """`values` (..., C_in, H, W) as int64, or `ValueError` naming what is wrong with them:
        not integers, wrong shape, or outside `input_range`."""
        v = np.asarray(values)
        want = (self.in_channels, self.height, self.width)
        if v.dtype.kind not in "biu":
            raise ValueError(f"inputs must be integers, not {v.dtype}")
        if v.ndim < 3 or v.shape[-3:] != want:
            raise ValueError(f"inputs must have shape (..., {', '.join(map(str, want))}), not "
                             f"{v.shape}")
        v = v.astype(np.int64)
        lo, hi = self.input_range
        if v.size and (int(v.min()) < lo or int(v.max()) > hi):
            kind = "spikes" if self.in_bits == 1 else \
                f"in_bits={self.in_bits}, {'signed' if self.in_signed else 'unsigned'}"
            raise ValueError(f"inputs must be integers in {lo} .. {hi} ({kind}), not "
                             f"{int(v.min())} .. {int(v.max())}")
        return v

    def magnitude_planes(self, values):
        """The events of `values` (..., C_in, H, W) as bits: a uint8 array (frames, in_bits,
        C_in, H, W) whose [f, b] is bit b of |x| (for spikes, the spikes themselves). One event
        per set bit; leading dimensions are frames (none: one frame)."""
        v = self.check_inputs(values).reshape(-1, self.in_channels, self.height, self.width)
        planes = np.arange(self.in_bits).reshape(1, -1, 1, 1, 1)
        return ((np.abs(v)[:, None] >> planes) & 1).astype(np.uint8)

    def _beat_planes(self, values):
        """(frames, in_bits, in_beats_per_pixel * in_lanes, H, W): `magnitude_planes` with the
        padding lanes of each pixel's last beat zero."""
        planes = self.magnitude_planes(values)
        pad = self.in_beats_per_pixel * self.in_lanes - self.in_channels
        return np.pad(planes, ((0, 0), (0, 0), (0, pad), (0, 0), (0, 0)))

    def encoder_cycles(self, spikes):
        """Cycles the spike encoder needs for `spikes` (..., C_in, H, W) with no stalls: one per
        event (one per set magnitude bit when `in_bits > 1`), and one per input beat without
        any (not counting the `input_latency` of a multi-bit input stage)."""
        p = self._beat_planes(spikes)
        per_beat = p.reshape(p.shape[0], self.in_bits, self.in_beats_per_pixel, self.in_lanes,
                             self.height, self.width).sum(axis=(1, 3))
        return int(np.maximum(per_beat, 1).sum())

    # -- addressing: shared by the engines and the cycle model ------------------------------
    #
    # Accumulator word (oh, ow, g) holds output channels g*lanes .. g*lanes+lanes-1 of output
    # pixel (oh, ow), at address (oh * out_width + ow) * out_groups + g (the depthwise engine
    # spreads each word's lanes over banks, see hw/depthwise.py). Linear/conv weight words hold
    # `lanes` weights, word (c_in, kh, kw, g) at ((c_in * k + kh) * k + kw) * out_groups + g;
    # depthwise weight words hold one channel's k x k taps, word c.

    @property
    def acc_words(self):
        return self.out_height * self.out_width * self.out_groups

    @property
    def weight_words(self):
        if self.mode == "depthwise":
            return self.out_groups * self.lanes
        return self.in_channels * self.kernel * self.kernel * self.out_groups

    @property
    def w_kh_step(self):
        """Linear/conv weight address step from one kernel row to the next."""
        return self.kernel * self.out_groups

    @property
    def w_kw_step(self):
        """Linear/conv weight address step from one kernel column to the next."""
        return self.out_groups

    def _axis_table(self, size, out_size, acc_step, w_step):
        table = []
        for i in range(size):
            taps = [k for k in range(self.kernel)
                    if (i + self.padding - k) % self.stride == 0
                    and 0 <= (i + self.padding - k) // self.stride < out_size]
            if taps:
                o = (i + self.padding - taps[0]) // self.stride
                table.append((len(taps), o * acc_step, taps[0] * w_step))
            else:
                table.append((0, 0, 0))
        return table

    def row_table(self):
        """Per input row: (output rows touched, accumulator offset of the first (highest) one,
        weight offset of its kernel row). Each further tap: kernel row + stride, output row - 1.
        """
        return self._axis_table(self.height, self.out_height,
                                self.out_width * self.out_groups, self.w_kh_step)

    def col_table(self):
        """Per input column, the same as `row_table` for columns."""
        return self._axis_table(self.width, self.out_width, self.out_groups, self.w_kw_step)

    @property
    def depthwise_banks(self):
        """(rows, cols) of the depthwise accumulator banks: rows * cols = lanes, both powers of
        two, rows <= cols. An R x C window of output pixels of one channel falls in distinct
        banks, and so do the `lanes` channels of one pixel."""
        rows = 1 << ((self.lanes.bit_length() - 1) // 2)
        return rows, self.lanes // rows

    def depthwise_axis_table(self, size, out_size):
        """Per input index: (taps, first output index, first kernel index)."""
        table = []
        for i in range(size):
            taps = [k for k in range(self.kernel)
                    if (i + self.padding - k) % self.stride == 0
                    and 0 <= (i + self.padding - k) // self.stride < out_size]
            table.append((len(taps), (i + self.padding - taps[0]) // self.stride, taps[0])
                         if taps else (0, 0, 0))
        return table

    def event_ops(self, row, col, channel):
        """(accumulator address, weight address) of every update a linear/conv event makes,
        in order (the depthwise engine updates windows: `SAEConfig.cycles`)."""
        if self.mode == "depthwise":
            raise ValueError("event_ops describes the linear/conv engine, not depthwise")
        n_rows, acc_row, w_row = self.row_table()[row]
        n_cols, acc_col0, w_col0 = self.col_table()[col]
        base = channel * self.kernel * self.kernel * self.out_groups
        ops = []
        for _ in range(n_rows):
            acc_col, w_col = acc_col0, w_col0
            for _ in range(n_cols):
                for g in range(self.out_groups):
                    ops.append((acc_row + acc_col + g, base + w_row + w_col + g))
                acc_col -= self.out_groups
                w_col += self.stride * self.w_kw_step
            acc_row -= self.out_width * self.out_groups
            w_row += self.stride * self.w_kh_step
        return ops

    # -- widths, footprint, ideal cost ------------------------------------------------------

    @property
    def lossless_acc_bits(self):
        """Accumulator width that never saturates while accumulating, whatever the weights and
        inputs (the final bias add can still saturate): `fan_in` times the extreme products of
        a weight and an input (largest input magnitude M = `input_magnitude`, 1 for spikes).
        Every partial sum of a multi-bit input's planes is itself such a sum of products."""
        w_lo, w_hi = -(1 << (self.w_bits - 1)), (1 << (self.w_bits - 1)) - 1
        x_lo, x_hi = self.input_range
        products = [a * b for a in (w_lo, w_hi) for b in (x_lo, x_hi)]
        most_negative = -min(products) * self.fan_in
        most_positive = max(products) * self.fan_in
        return max((most_negative - 1).bit_length(), most_positive.bit_length()) + 1

    @property
    def weight_memory_bits(self):
        return math.prod(self.weight_shape) * self.w_bits

    @property
    def accumulator_memory_bits(self):
        return self.out_height * self.out_width * self.out_channels * self.acc_bits

    @property
    def bias_memory_bits(self):
        return self.out_channels * self.acc_bits if self.bias else 0

    def drain_cycles(self):
        """Beats to stream out every accumulator of one frame."""
        return self.out_height * self.out_width * self.out_groups

    def ideal_cycles(self, spikes):
        """The ideal event-driven cost of one or more frames of `spikes` (..., C_in, H, W):
        the sum over input spikes (with `in_bits > 1`: over set magnitude bits) of
        ceil(outputs touched / lanes), plus the drain of each frame.
        """
        planes = self.magnitude_planes(spikes)
        return self._ideal(planes.sum(axis=(0, 1, 2), dtype=np.int64), planes.shape[0])

    def _ideal(self, events_per_pixel, frames):
        per_pixel = self.touched_pixels()
        if self.mode != "depthwise":
            per_pixel = per_pixel * self.out_channels
        cost = -(-per_pixel // self.lanes)
        return int((events_per_pixel * cost).sum()) + frames * self.drain_cycles()

    def _depthwise_windows(self):
        """(height, width) array: R x C windows (update cycles) of an event at each pixel."""
        rows, cols = self.depthwise_banks
        n_rows = np.array([e[0] for e in self.depthwise_axis_table(self.height,
                                                                   self.out_height)])
        n_cols = np.array([e[0] for e in self.depthwise_axis_table(self.width,
                                                                   self.out_width)])
        return np.outer(-(-n_rows // rows), -(-n_cols // cols))

    #: cycles from the drain's first read to its first output handshake
    DRAIN_LATENCY = 5
    #: cycles from a frame's last update (or last event) to the drain's first read
    DRAIN_START = 4
    #: update pipeline depth: an update waits until an earlier one to its word has written
    UPDATE_DISTANCE = 4

    def cycles(self, spikes):
        """Cycle model of `SpikeAccumulator`: predicted cycles from the first input handshake to
        the last output handshake for frames of `spikes` (frames, C_in, H, W) streamed back to
        back with no stalls, the accumulators already cleared (after reset the engine zeroes
        `acc_words` words first).

        Replays the event order: the encoder takes one input beat per cycle when it has no
        spike, and presents one event per cycle; the engine takes an event when the previous
        one's last update issues and issues one update per cycle, delayed when the same
        accumulator word was updated fewer than `UPDATE_DISTANCE` cycles earlier; after a
        frame's last event it waits for the pipeline, drains `acc_words` words at one per cycle,
        and takes events again.

        With `in_bits > 1` the events of a beat are its set magnitude bits in the encoder's
        order (bit index `plane * in_lanes + lane` ascending), and the input stage delays the
        encoder's first beat by `input_latency` cycles (it then has each plane word ready when
        the encoder takes it, so nothing else moves). An event's updates depend on its pixel and
        channel, not its plane.
        """
        lanes, groups_in = self.in_lanes, self.in_beats_per_pixel
        padded = self._beat_planes(spikes)
        # a multi-bit input stage delays the encoder's first beat by its latency; after that it
        # has the next plane word ready whenever the encoder takes one, so nothing else changes
        encoder_free, engine_free, last_out = self.input_latency, 0, None
        if self.mode == "depthwise":
            windows = self._depthwise_windows()
        for frame in padded:
            last_issue = {}
            beats = [(r, c, g) for r in range(self.height) for c in range(self.width)
                     for g in range(groups_in)]
            for n, (r, c, g) in enumerate(beats):
                accept = encoder_free
                # the encoder's scan order: bit index plane * in_lanes + lane, lowest first
                bits_set = np.flatnonzero(frame[:, g * lanes:(g + 1) * lanes, r, c])
                frame_last = n == len(beats) - 1
                if len(bits_set) == 0 and not frame_last:
                    encoder_free = accept + 1
                    continue
                ready = accept + 1
                # the engine's updates depend on the event's channel, not on its plane
                events = [(g * lanes + int(j) % lanes, g) for j in bits_set] or [None]
                for event in events:
                    take = max(ready, engine_free)
                    t = take
                    if self.mode == "depthwise":
                        # one update per R x C window; the first waits while updates of the
                        # same channel from an earlier event are in flight
                        ops = [] if event is None else [None] * int(windows[r, c])
                        if ops:
                            t = max(take + 1, last_issue.get(event[0], -self.UPDATE_DISTANCE)
                                    + self.UPDATE_DISTANCE) + len(ops) - 1
                            last_issue[event[0]] = t
                    else:
                        ops = [] if event is None else self.event_ops(r, c, event[0])
                        for addr, _ in ops:
                            t = max(t + 1, last_issue.get(addr, -self.UPDATE_DISTANCE)
                                    + self.UPDATE_DISTANCE)
                            last_issue[addr] = t
                    engine_free = t if ops else take + 1
                    ready = take + 1
                    encoder_free = take
                if frame_last:
                    drain = (t if ops else take) + 1 + self.DRAIN_START
                    last_out = drain + self.acc_words - 1 + self.DRAIN_LATENCY
                    engine_free = drain + self.acc_words
        return last_out + 1

    def dense_cycles(self, frames=1):
        """The same cost if every input position were a spike (with `in_bits > 1`: every bit of
        every input set), a dense engine's work."""
        events = np.full((self.height, self.width), self.in_channels * self.in_bits, np.int64)
        return self._ideal(frames * events, frames)



def _bits(size):
    """Bits of an index below `size` (at least 1)."""
    return max(1, (size - 1).bit_length())


@dataclass(frozen=True)
class SAEParams:
    """Integer weights (and bias) of an SAE, checked against its configuration."""

    weight: np.ndarray
    bias: np.ndarray | None

    @classmethod
    def checked(cls, config, weight, bias):
        """Validate shapes and ranges; raises `ConfigError` naming the problem."""
        weight = np.asarray(weight)
        if weight.dtype.kind not in "iu" or weight.shape != config.weight_shape:
            raise ConfigError(
                f"weights must be integers of shape {list(config.weight_shape)}, not "
                f"{weight.dtype} {list(weight.shape)}"
            )
        lo, hi = -(1 << (config.w_bits - 1)), (1 << (config.w_bits - 1)) - 1
        if weight.size and (int(weight.min()) < lo or int(weight.max()) > hi):
            raise ConfigError(
                f"weights range {int(weight.min())} .. {int(weight.max())} does not fit "
                f"w_bits={config.w_bits} ({lo} .. {hi})"
            )
        if config.bias:
            if bias is None:
                raise ConfigError("the configuration has a bias, but no bias values were given")
            bias = np.asarray(bias)
            if bias.dtype.kind not in "iu" or bias.shape != (config.out_channels,):
                raise ConfigError(
                    f"bias must be integers of shape [{config.out_channels}], not {bias.dtype} "
                    f"{list(bias.shape)}"
                )
            lo, hi = -(1 << (config.acc_bits - 1)), (1 << (config.acc_bits - 1)) - 1
            if bias.size and (int(bias.min()) < lo or int(bias.max()) > hi):
                raise ConfigError(
                    f"bias range {int(bias.min())} .. {int(bias.max())} does not fit "
                    f"acc_bits={config.acc_bits}"
                )
            bias = bias.astype(np.int64)
        elif bias is not None:
            raise ConfigError("bias values were given, but the configuration has bias: false")
        return cls(weight=weight.astype(np.int64), bias=bias)

    @classmethod
    def seeded(cls, config, seed=0):
        """Seeded random weights over the whole `w_bits` range (and a small bias): the default
        when no bundle gives real ones, so a generated design is complete."""
        rng = np.random.default_rng(seed)
        lo, hi = -(1 << (config.w_bits - 1)), (1 << (config.w_bits - 1)) - 1
        weight = rng.integers(lo, hi + 1, size=config.weight_shape)
        bias = None
        if config.bias:
            span = min((1 << (config.acc_bits - 1)) - 1, 4 * hi)
            bias = rng.integers(-span, span + 1, size=config.out_channels)
        return cls.checked(config, weight, bias)


@dataclass(frozen=True)
class SAETraces:
    """Input spikes (frames, C_in, H, W) (with `in_bits > 1`: integer values) and expected
    outputs (frames, C_out, H_out, W_out)."""

    inputs: np.ndarray
    outputs: np.ndarray

    @property
    def frames(self):
        return self.inputs.shape[0]


def load_sae_bundle(path):
    """Read an SAE bundle: (config, params, traces), each checked against the configuration."""
    from .bundle import read_bundle

    bundle = read_bundle(path, unit="sae")
    try:
        config = SAEConfig.from_dict(bundle.config)
        params = SAEParams.checked(config, bundle.array("weight"),
                                   bundle.array("bias") if config.bias else None)
    except ConfigError as exc:
        raise BundleError(f"bundle {bundle.source!r} does not fit its SAE configuration: {exc}") \
            from None
    if not config.bias and "bias" in bundle.arrays:
        raise BundleError(f"bundle {bundle.source!r} has a bias array, but its configuration has "
                          f"bias: false")
    inputs, outputs = bundle.array("inputs"), bundle.array("outputs")
    want_in = (config.in_channels, config.height, config.width)
    want_out = (config.out_channels, config.out_height, config.out_width)
    for name, a, want in (("inputs", inputs, want_in), ("outputs", outputs, want_out)):
        if a.ndim != 4 or a.shape[1:] != want or a.dtype.kind not in "iu":
            raise BundleError(
                f"bundle {bundle.source!r}: array {name!r} has shape {list(a.shape)}, but the "
                f"configuration needs integers of shape [frames, {', '.join(map(str, want))}]"
            )
    if inputs.shape[0] != outputs.shape[0]:
        raise BundleError(f"bundle {bundle.source!r}: inputs and outputs disagree on frames")
    if config.in_bits == 1:
        if inputs.size and (int(inputs.min()) < 0 or int(inputs.max()) > 1):
            raise BundleError(f"bundle {bundle.source!r}: inputs must be spikes (0 or 1)")
    else:
        try:
            config.check_inputs(inputs)
        except ValueError as exc:
            raise BundleError(f"bundle {bundle.source!r}: {exc}") from None
    lo, hi = -(1 << (config.acc_bits - 1)), (1 << (config.acc_bits - 1)) - 1
    if outputs.size and (int(outputs.min()) < lo or int(outputs.max()) > hi):
        raise BundleError(
            f"bundle {bundle.source!r}: outputs do not fit acc_bits={config.acc_bits}"
        )
    inputs = inputs.astype(np.uint8 if config.in_bits == 1 else np.int64)
    traces = SAETraces(inputs=inputs, outputs=outputs.astype(np.int64))
    return config, params, traces
