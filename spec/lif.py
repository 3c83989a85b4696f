"""Configuration of a LIF-neuron array: parameters, numeric format, stream layout, cycle model."""

import math
from dataclasses import dataclass
from fractions import Fraction

from .errors import ConfigError
from .ports import Field
from .unit import UnitConfig

__all__ = ["LIFConfig", "LIF_HAZARD_DISTANCE", "LIF_LATENCY"]

#: Cycles between accepting a beat (membrane read issued) and its membrane write-back landing in
#: memory. A beat that must read an address still being written waits at the input.
LIF_HAZARD_DISTANCE = 7
#: Cycles from an input handshake to the earliest output handshake of the same beat
#: (6 pipeline stages, then the 2-cycle output FIFO).
LIF_LATENCY = 8

_RESET_MODES = ("hard", "soft")
_MAX_V_BITS = 48
_MAX_LANES = 256
_MAX_NEURONS = 1 << 24
_MAX_TIMESTEPS = 64


def _check_int(name, value, *, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, not {value}")


def _check_number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, not {value!r}")


@dataclass(frozen=True)
class LIFConfig(UnitConfig):
    """An array of `neurons` multi-step LIF neurons, `lanes` of them updated per cycle.

    Neuron `n` belongs to channel `n % channels` (token-major order: `neurons = tokens *
    channels`); thresholds and biases are per channel. Membranes are signed `v_bits`-bit fixed
    point numbers with `frac_bits` fractional bits; inputs are signed `in_bits`-bit integers.

    Update per neuron, per timestep (SpikingJelly semantics, `>>` an arithmetic floor shift by
    log2(tau), every sum saturating to `v_bits`; see docs/ARCHITECTURE.md)::

        X = sat(x + bias)
        H = sat(V + ((X - (V - v_reset)) >> s))      decay_input
        H = sat(V - ((V - v_reset) >> s) + X)        not decay_input
        S = H >= v_th
        V = v_reset if S else H                       hard reset
        V = sat(H - v_th) if S else H                 soft reset

    `V` is `v_reset` at the first timestep of every sample.

    Parameters
    ----------
    neurons : int
        Neurons per timestep (tokens x channels).
    lanes : int
        Neurons updated per cycle; the width of one stream beat.
    channels : int
        Number of distinct per-channel parameter sets; must divide `neurons`.
    v_bits : int
        Membrane width in bits, signed, fractional bits included.
    in_bits : int
        Input current width in bits, signed integer.
    frac_bits : int
        Fractional bits of the membrane. `timesteps * log2(tau)` make the shift exact.
    tau : int
        Membrane time constant, a power of two (the divide is a shift).
    decay_input : bool
        SpikingJelly's `decay_input`: whether the input is divided by tau as well.
    reset : str
        "hard" (to `v_reset`) or "soft" (subtract `v_th`).
    v_reset : float
        Reset potential; a multiple of `2**-frac_bits`.
    v_th : float or sequence of float
        Threshold, one value or one per channel; multiples of `2**-frac_bits`.
    bias : float or sequence of float
        Bias added to the input, one value or one per channel; multiples of `2**-frac_bits`.
    timesteps : int
        Timesteps per sample (T).
    expose_membrane : bool
        Whether the output stream also carries the membrane after reset.
    """

    UNIT = "lif"
    NAME = "a LIF"

    neurons: int = 256
    lanes: int = 16
    channels: int = 1
    v_bits: int = 16
    in_bits: int = 8
    frac_bits: int = 4
    tau: int = 2
    decay_input: bool = True
    reset: str = "hard"
    v_reset: float = 0.0
    v_th: float | tuple = 1.0
    bias: float | tuple = 0.0
    timesteps: int = 1
    expose_membrane: bool = False

    def __post_init__(self):
        _check_int("neurons", self.neurons, minimum=1, maximum=_MAX_NEURONS)
        _check_int("lanes", self.lanes, minimum=1, maximum=_MAX_LANES)
        _check_int("channels", self.channels, minimum=1, maximum=self.neurons)
        if self.neurons % self.channels:
            raise ConfigError(
                f"channels ({self.channels}) must divide neurons ({self.neurons}): "
                f"neurons are tokens x channels"
            )
        _check_int("v_bits", self.v_bits, minimum=2, maximum=_MAX_V_BITS)
        _check_int("in_bits", self.in_bits, minimum=1, maximum=_MAX_V_BITS)
        _check_int("frac_bits", self.frac_bits, minimum=0, maximum=_MAX_V_BITS - 1)
        _check_int("tau", self.tau, minimum=1, maximum=1 << 16)
        if self.tau & (self.tau - 1):
            raise ConfigError(f"tau must be a power of two, not {self.tau}")
        _check_int("timesteps", self.timesteps, minimum=1, maximum=_MAX_TIMESTEPS)
        if self.v_bits < self.in_bits + self.frac_bits:
            raise ConfigError(
                f"v_bits ({self.v_bits}) is too small: inputs of in_bits={self.in_bits} with "
                f"frac_bits={self.frac_bits} need at least {self.in_bits + self.frac_bits}"
            )
        for name in ("decay_input", "expose_membrane"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r}")
        if self.reset not in _RESET_MODES:
            raise ConfigError(f"reset must be 'hard' or 'soft', not {self.reset!r}")
        self._to_fixed("v_reset", self.v_reset)
        for name in ("v_th", "bias"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                if len(value) != self.channels:
                    raise ConfigError(
                        f"{name} has {len(value)} values, but channels is {self.channels}"
                    )
                value = tuple(float(v) if _is_number(v) else v for v in value)
                object.__setattr__(self, name, value)
                for c, v in enumerate(value):
                    self._to_fixed(f"{name}[{c}]", v)
            else:
                self._to_fixed(name, value)

    # -- numeric format ------------------------------------------------------------------------

    @property
    def shift(self):
        """log2(tau): the arithmetic right shift that divides by tau."""
        return self.tau.bit_length() - 1

    @property
    def v_min(self):
        return -(1 << (self.v_bits - 1))

    @property
    def v_max(self):
        return (1 << (self.v_bits - 1)) - 1

    def _to_fixed(self, name, value):
        _check_number(name, value)
        scaled = Fraction(value) * (1 << self.frac_bits)
        if scaled.denominator != 1:
            raise ConfigError(
                f"{name} {value!r} is not a multiple of 2**-{self.frac_bits} "
                f"(frac_bits={self.frac_bits})"
            )
        fixed = int(scaled)
        if not self.v_min <= fixed <= self.v_max:
            lo = self.v_min / (1 << self.frac_bits)
            hi = self.v_max / (1 << self.frac_bits)
            raise ConfigError(
                f"{name} {value!r} does not fit v_bits={self.v_bits} with "
                f"frac_bits={self.frac_bits} (range {lo} .. {hi})"
            )
        return fixed

    def _per_channel_fixed(self, name):
        value = getattr(self, name)
        if isinstance(value, tuple):
            return tuple(self._to_fixed(f"{name}[{c}]", v) for c, v in enumerate(value))
        return (self._to_fixed(name, value),) * self.channels

    @property
    def v_reset_fixed(self):
        """`v_reset` in membrane units (an integer, LSB = 2**-frac_bits)."""
        return self._to_fixed("v_reset", self.v_reset)

    @property
    def v_th_fixed(self):
        """Per-channel thresholds in membrane units, a tuple of `channels` integers."""
        return self._per_channel_fixed("v_th")

    @property
    def bias_fixed(self):
        """Per-channel biases in membrane units, a tuple of `channels` integers."""
        return self._per_channel_fixed("bias")

    @property
    def uniform_parameters(self):
        """True when every channel has the same threshold and bias (no parameter memory)."""
        return len(set(self.v_th_fixed)) == 1 and len(set(self.bias_fixed)) == 1

    # -- stream layout -------------------------------------------------------------------------

    @property
    def beats_per_step(self):
        """Beats per timestep: ceil(neurons / lanes); the last one padded when needed."""
        return -(-self.neurons // self.lanes)

    @property
    def tail_lanes(self):
        """Lanes that carry neurons in the last beat of a timestep."""
        return self.neurons - (self.beats_per_step - 1) * self.lanes

    @property
    def param_period(self):
        """Beats after which the lane-to-channel pattern repeats (parameter memory depth)."""
        return min(self.channels // math.gcd(self.channels, self.lanes), self.beats_per_step)

    def input_fields(self):
        """Input payload: `x` (one signed current per lane), `first`/`last` of a sample."""
        return (
            Field("x", self.in_bits, signed=True, count=self.lanes),
            Field("first", 1),
            Field("last", 1),
        )

    def output_fields(self):
        """Output payload: `spikes` (one bit per lane), `v` if exposed, `first`/`last`."""
        out = [Field("spikes", 1, count=self.lanes)]
        if self.expose_membrane:
            out.append(Field("v", self.v_bits, signed=True, count=self.lanes))
        out += [Field("first", 1), Field("last", 1)]
        return tuple(out)

    # -- cycle model and footprint -------------------------------------------------------------

    @property
    def latency(self):
        """Cycles from an input handshake to the first possible output handshake of that beat."""
        return LIF_LATENCY

    def step_cycles(self, *, first=False):
        """Cycles one timestep occupies the input without stalls.

        A timestep after the first re-reads membranes written one timestep earlier; when a
        timestep has fewer beats than the read-to-write distance, the input waits.
        """
        if first:
            return self.beats_per_step
        return max(self.beats_per_step, LIF_HAZARD_DISTANCE)

    def cycles(self, samples=1):
        """Predicted cycles from the first input handshake to the last output handshake, for
        `samples` samples streamed back to back with no stalls on either side."""
        per_sample = self.step_cycles(first=True) + (self.timesteps - 1) * self.step_cycles()
        return samples * per_sample + self.latency

    def ideal_cycles(self, samples=1):
        """The ideal: ceil(neurons / lanes) * T cycles per sample."""
        return samples * self.beats_per_step * self.timesteps

    @property
    def membrane_memory_bits(self):
        """Membrane storage; none at T = 1, where no membrane outlives its timestep."""
        if self.timesteps == 1:
            return 0
        return self.beats_per_step * self.lanes * self.v_bits

    @property
    def parameter_memory_bits(self):
        return 0 if self.uniform_parameters else self.param_period * self.lanes * 2 * self.v_bits



def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- LIF bundles -------------------------------------------------------------------------------

#: Arrays of a LIF bundle, each (samples, timesteps, neurons), neuron index `token * channels + c`.
#: `inputs`: input currents (integers); `spikes`: expected spikes (0/1); `membranes`: expected
#: membrane after reset, in membrane units (LSB = 2**-frac_bits).
LIF_TRACE_ARRAYS = ("inputs", "spikes", "membranes")


@dataclass(frozen=True)
class LIFTraces:
    """Stimulus and expected response of a LIF array, each (samples, timesteps, neurons)."""

    inputs: object
    spikes: object
    membranes: object

    @property
    def samples(self):
        return self.inputs.shape[0]


def load_lif_bundle(path):
    """Read a LIF bundle: its configuration and traces, checked against each other.

    Raises `BundleError` for a missing, corrupt or inconsistent bundle.
    """
    import numpy as np

    from .bundle import read_bundle
    from .errors import BundleError

    bundle = read_bundle(path, unit="lif")
    try:
        config = LIFConfig.from_dict(bundle.config)
    except ConfigError as exc:
        raise BundleError(f"bundle {bundle.source!r} has an invalid LIF configuration: {exc}") \
            from None
    want = (config.timesteps, config.neurons)
    bounds = {
        "inputs": (-(1 << (config.in_bits - 1)), (1 << (config.in_bits - 1)) - 1,
                   f"in_bits={config.in_bits}"),
        "spikes": (0, 1, "spikes (0 or 1)"),
        "membranes": (config.v_min, config.v_max, f"v_bits={config.v_bits}"),
    }
    arrays = {}
    for name in LIF_TRACE_ARRAYS:
        a = bundle.array(name)
        if a.ndim != 3 or a.shape[1:] != want or a.dtype.kind not in "iu":
            raise BundleError(
                f"bundle {bundle.source!r}: array {name!r} has shape {list(a.shape)}, but the "
                f"configuration needs integers of shape [samples, {want[0]}, {want[1]}] "
                f"(timesteps={want[0]}, neurons={want[1]})"
            )
        lo, hi, what = bounds[name]
        # compare in the array's own dtype (as Python ints) before any cast can wrap
        if a.size and (int(a.min()) < lo or int(a.max()) > hi):
            raise BundleError(
                f"bundle {bundle.source!r}: {name} range {int(a.min())} .. {int(a.max())} does "
                f"not fit {what}"
            )
        arrays[name] = a.astype(np.int64)
    if len({a.shape[0] for a in arrays.values()}) != 1:
        raise BundleError(f"bundle {bundle.source!r}: trace arrays disagree on the sample count")
    return config, LIFTraces(**arrays)
