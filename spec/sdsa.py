"""Configuration of a Spike-Driven Self-Attention (SDSA) unit: variants, widths, buffers, costs.

Tensors are token-major: Q, K, V and the output are spikes of shape (samples, timesteps, tokens,
channels); channel `c` belongs to head `c // d`, `d = channels / heads`.

Variants (Meta-SpikeFormer, "Spike-driven Transformer V2"; DESIGN.md section 4):

- 1 (V1 code): `out = Q AND SN(sum over tokens of (K AND V))`: per channel a count, a
  threshold-0.5 LIF neuron over the counts makes a channel mask, the mask gates Q.
- 2: the same with `V` alone.
- 3 (what the V2 code runs): per head `KV = K^T V` (counts in [0, tokens]), `A = Q KV` (in
  [0, d * tokens]), then the attention LIF on `Y = A * 0.125` with threshold 0.5.
- 4: variant 3 with the threshold a parameter (`v_th`, one value or one per channel).

Integer form: the neuron sees the integer `A` (variants 3/4) or the count (1/2) directly; the
0.125 scale is folded into its threshold (`v_th / 0.125`), and its membrane carries `timesteps`
fractional bits, so every halving of the tau = 2 leak is exact. At T = 1 the variant-3 neuron
fires exactly when `A >= 8`, the variant-1/2 neuron when the count is at least 1. Counts and
sums never saturate: their widths hold the largest possible value (validated).
"""

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .errors import BundleError, ConfigError
from .lif import LIFConfig, _check_int
from .ports import Field
from .unit import UnitConfig

__all__ = ["SDSAConfig", "SDSA_VARIANTS", "SDSATraces", "load_sdsa_bundle", "SDSA_SCALE"]

SDSA_VARIANTS = (1, 2, 3, 4)
#: The fixed scale of Y = Q KV * 0.125 in the V2 code (whatever the head dimension is).
SDSA_SCALE = Fraction(1, 8)
#: The threshold of the attention (3/4) and talking-heads (1/2) neurons in the paper.
SDSA_V_TH = 0.5
_MAX_CHANNELS = 1 << 12
_MAX_TOKENS = 1 << 14
_MAX_LANES = 256


def _bits_for(value):
    """Unsigned bits that hold 0 .. value."""
    return max(1, int(value).bit_length())


@dataclass(frozen=True)
class SDSAConfig(UnitConfig):
    """A spike-driven self-attention unit.

    Parameters
    ----------
    variant : int
        1, 2, 3 or 4 (module docstring).
    heads : int
        Attention heads; must divide `channels`.
    channels : int
        Channels of Q, K, V and the output (C).
    tokens : int
        Tokens per timestep (N = H x W).
    lanes : int
        Channels per stream beat; must divide `channels` and, for variants 3/4, the head
        dimension `d`, since KV rows are processed `lanes` at a time.
    timesteps : int
        Timesteps per sample (T); the neuron is a multi-step LIF over them.
    v_th : float or sequence of float
        Neuron threshold in the paper's units. Variants 1-3 use the paper's fixed 0.5; variant 4
        takes any positive value, or one per channel.
    count_bits : int or None
        Unsigned width of the column counts (1/2) and KV counts (3/4); None: the least that
        holds `tokens`.
    acc_bits : int or None
        Unsigned width of `A = Q KV` (3/4); None: the least that holds `d * tokens`.
    """

    UNIT = "sdsa"
    NAME = "an SDSA"

    variant: int = 3
    heads: int = 8
    channels: int = 256
    tokens: int = 196
    lanes: int = 16
    timesteps: int = 1
    v_th: float | tuple = SDSA_V_TH
    count_bits: int | None = None
    acc_bits: int | None = None

    def __post_init__(self):
        _check_int("variant", self.variant, minimum=1)
        if self.variant not in SDSA_VARIANTS:
            raise ConfigError(f"variant must be 1, 2, 3 or 4, not {self.variant}")
        _check_int("heads", self.heads, minimum=1)
        _check_int("channels", self.channels, minimum=1, maximum=_MAX_CHANNELS)
        _check_int("tokens", self.tokens, minimum=1, maximum=_MAX_TOKENS)
        _check_int("lanes", self.lanes, minimum=1, maximum=_MAX_LANES)
        _check_int("timesteps", self.timesteps, minimum=1, maximum=16)
        if self.channels % self.heads:
            raise ConfigError(f"heads ({self.heads}) must divide channels ({self.channels})")
        if self.channels % self.lanes:
            raise ConfigError(f"lanes ({self.lanes}) must divide channels ({self.channels})")
        if self.variant >= 3 and self.head_dim % self.lanes:
            fits = [n for n in range(1, self.head_dim + 1) if self.head_dim % n == 0]
            raise ConfigError(
                f"lanes ({self.lanes}) must divide the head dimension channels/heads = "
                f"{self.head_dim} (variants 3/4 process KV rows lanes at a time); lanes that "
                f"fit: {', '.join(map(str, fits))}"
            )
        self._check_v_th()
        if self.variant < 3 and self.acc_bits is not None:
            raise ConfigError(f"acc_bits (the width of Q KV) applies to variants 3/4 only; "
                              f"variant {self.variant} has no Q KV")
        for name, need in (("count_bits", self.min_count_bits),
                           ("acc_bits", self.min_acc_bits)):
            value = getattr(self, name)
            if value is None:
                continue
            _check_int(name, value, minimum=1, maximum=32)
            if value < need:
                largest = self.tokens if name == "count_bits" else self.max_attention
                raise ConfigError(
                    f"{name}={value} cannot hold the largest possible value {largest} "
                    f"(needs at least {need} bits)"
                )
        # the neuron's own checks (threshold range) with the widths above
        self.neuron_config()

    def _check_v_th(self):
        value = self.v_th
        if isinstance(value, list):
            value = tuple(value)
            object.__setattr__(self, "v_th", value)
        if self.variant < 4:
            if value != SDSA_V_TH:
                raise ConfigError(
                    f"variant {self.variant} has the paper's fixed threshold {SDSA_V_TH}, not "
                    f"{value!r}; variant 4 takes a threshold parameter"
                )
            return
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and len(value) != self.channels:
            raise ConfigError(f"v_th has {len(value)} values, but channels is {self.channels}")
        for n, v in enumerate(values):
            name = "v_th" if len(values) == 1 else f"v_th[{n}]"
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, not {v!r}")
            if v <= 0:
                raise ConfigError(f"{name} must be positive, not {v!r}")
            step = self.scale / (1 << self.frac_bits)
            if Fraction(v) % step:
                raise ConfigError(
                    f"{name} {v!r} is not a multiple of {float(step)!r}: with scale "
                    f"{float(self.scale)} and {self.frac_bits} fractional membrane bits "
                    f"(timesteps={self.timesteps}) the integer threshold must be exact"
                )
        if isinstance(value, tuple):
            object.__setattr__(self, "v_th", tuple(float(v) for v in value))

    # -- shape and numeric format --------------------------------------------------------------

    @property
    def head_dim(self):
        """d = channels / heads."""
        return self.channels // self.heads

    @property
    def words_per_token(self):
        """Stream beats per token: channels / lanes."""
        return self.channels // self.lanes

    @property
    def words_per_head(self):
        """Beats per head and KV row: d / lanes (variants 3/4)."""
        return self.head_dim // self.lanes

    @property
    def scale(self):
        """The factor between the integer the neuron sees and the paper's Y (0.125 or 1)."""
        return SDSA_SCALE if self.variant >= 3 else Fraction(1)

    @property
    def frac_bits(self):
        """Fractional bits of the neuron's membrane: one per timestep keeps the leak exact."""
        return self.timesteps

    @property
    def max_attention(self):
        """The largest `A = Q KV`: d * tokens."""
        return self.head_dim * self.tokens

    @property
    def min_count_bits(self):
        return _bits_for(self.tokens)

    @property
    def min_acc_bits(self):
        return _bits_for(self.max_attention)

    @property
    def kv_bits(self):
        """Width of the column (1/2) or KV (3/4) counters."""
        return self.count_bits if self.count_bits is not None else self.min_count_bits

    @property
    def a_bits(self):
        """Width of A = Q KV (3/4)."""
        return self.acc_bits if self.acc_bits is not None else self.min_acc_bits

    @property
    def neuron_input_bits(self):
        return (self.a_bits if self.variant >= 3 else self.kv_bits) + 1

    def neuron_config(self):
        """The LIF neuron of the unit as a `LIFConfig`: the attention neuron over all `tokens x
        channels` outputs (3/4) or the talking-heads neuron over the `channels` counts (1/2), in
        integer units (threshold `v_th / scale`)."""
        per_channel = isinstance(self.v_th, tuple)
        v_th = tuple(float(Fraction(v) / self.scale) for v in self.v_th) if per_channel \
            else float(Fraction(self.v_th) / self.scale)
        thresholds = v_th if per_channel else (v_th,)
        # wide enough for the largest input and for the threshold (which may exceed it); the
        # membrane never leaves [0, largest input], so in_bits + frac_bits never saturate
        in_bits = max(self.neuron_input_bits, math.ceil(max(thresholds)).bit_length() + 1)
        try:
            return LIFConfig(
                neurons=self.tokens * self.channels if self.variant >= 3 else self.channels,
                lanes=self.lanes, channels=self.channels if per_channel else 1,
                v_bits=in_bits + self.frac_bits, in_bits=in_bits, frac_bits=self.frac_bits,
                tau=2, decay_input=True, reset="hard", v_reset=0.0, v_th=v_th,
                timesteps=self.timesteps)
        except ConfigError as exc:
            raise ConfigError(f"the neuron does not fit: {exc}") from None

    @property
    def integer_threshold(self):
        """Per-channel thresholds in units of the neuron's integer input (`v_th / scale`)."""
        cfg = self.neuron_config()
        return tuple(Fraction(v, 1 << cfg.frac_bits) for v in cfg.v_th_fixed)

    # -- streams -------------------------------------------------------------------------------

    def input_fields(self):
        """Q, K and V beats: `lanes` spikes and the sample markers (layout of a LIF's output,
        so a LIF array connects straight in). The unit counts beats itself."""
        return (Field("spikes", 1, count=self.lanes), Field("first", 1), Field("last", 1))

    def output_fields(self):
        """Output beats: `lanes` spikes, `first`/`last` of a sample."""
        return self.input_fields()

    @property
    def beats_per_step(self):
        return self.tokens * self.words_per_token

    # -- buffers -------------------------------------------------------------------------------

    @property
    def q_buffer_bits(self):
        """Q of one timestep waits on chip while the column sums or KV are built."""
        return self.tokens * self.channels

    @property
    def v_buffer_bits(self):
        """Variants 3/4 keep V of one timestep: a K spike of token n reads that token's V row."""
        return self.tokens * self.channels if self.variant >= 3 else 0

    @property
    def kv_memory_bits(self):
        """KV counts (3/4: heads x d x d) or column counts (1/2: channels)."""
        if self.variant >= 3:
            return self.channels * self.head_dim * self.kv_bits
        return self.channels * self.kv_bits

    def memory_report(self):
        """Bits of every on-chip buffer, by name."""
        neuron = self.neuron_config()
        out = {
            "q_buffer_bits": self.q_buffer_bits,
            "v_buffer_bits": self.v_buffer_bits,
            ("kv_memory_bits" if self.variant >= 3 else "count_memory_bits"):
                self.kv_memory_bits,
            "neuron_membrane_bits": neuron.membrane_memory_bits,
        }
        if self.variant >= 3:
            out["row_touched_bits"] = self.channels
        else:
            out["mask_bits"] = self.channels
        return out

    # -- costs ---------------------------------------------------------------------------------

    def ideal_cycles(self, q, k, v):
        """The ideal event-driven cost of spikes (samples, timesteps, tokens, channels).

        Variants 1/2, per timestep: one pass of `tokens * channels / lanes` beats in (Q, K and V
        side by side) and one out. Variants 3/4, per timestep: building KV costs `nnz(K) * d /
        lanes` accumulate cycles and `Y = Q KV` costs `nnz(Q) * d / lanes`; neither pass can be
        shorter than streaming a timestep's `tokens * channels / lanes` beats (in, then out), so
        each phase costs the larger of the two.
        """
        q, k, v = (np.asarray(a) for a in (q, k, v))
        beats = self.beats_per_step
        steps = int(np.prod(q.shape[:2]))
        if self.variant < 3:
            return 2 * beats * steps
        dw = self.words_per_head
        nk = k.reshape(steps, -1).sum(axis=1).astype(np.int64) * dw
        nq = q.reshape(steps, -1).sum(axis=1).astype(np.int64) * dw
        return int(np.maximum(nk, beats).sum() + np.maximum(nq, beats).sum())


    # -- cycle model ---------------------------------------------------------------------------

    #: an update re-reading a KV (or count) word waits this long after the word's last update
    UPDATE_DISTANCE = 4
    #: cycles from the last LOAD update (or the last Q beat) to the first RUN/MASK read
    FLUSH_CYCLES = 4
    #: words in flight between the Q buffer and its scanner (variants 3/4)
    Q_FETCH_DEPTH = 4
    #: events a scanner may run ahead of the engine (variants 3/4), so that words without
    #: spikes are scanned while the engine works
    EVENT_FIFO_DEPTH = 4
    #: cycles from a memory read to its word leaving a `SyncFIFOBuffered` (read, register,
    #: FIFO write, two cycles of FIFO) and from a LIF array's input to its output
    FIFO_LATENCY = 2
    NEURON_LATENCY = 8

    def cycles(self, q, k, v):
        """Cycle model: predicted cycles from the first input handshake to the last output
        handshake for samples of Q, K, V (samples, timesteps, tokens, channels) streamed back
        to back, every beat offered at once and the output never stalled (after a reset, with
        beats offered from the first cycle).

        Replays the unit's schedule: per timestep LOAD (K/V/Q beats one per cycle; variants
        3/4 scan K spikes and issue `d / lanes` KV updates each, once their token's V row is
        complete; variants 1/2 update the counts per beat), FLUSH, MASK (1/2), and RUN.
        """
        q, k, v = (np.asarray(a) for a in (q, k, v))
        if self.variant < 3:
            return self._column_cycles(q.shape[0])
        t = 0
        last_out = 0
        for sample in range(q.shape[0]):
            for step in range(self.timesteps):
                t, last_out = self._linear_step(t, q[sample, step], k[sample, step])
        return last_out + 1

    def _column_cycles(self, samples):
        W, words = self.words_per_token, self.beats_per_step
        t, last_out = 0, 0
        for _ in range(samples * self.timesteps):
            start = t
            take, last_take = [], {}
            for b in range(words):
                w = b % W
                cycle = max(take[-1] + 1 if take else start,
                            last_take.get(w, -self.UPDATE_DISTANCE) + self.UPDATE_DISTANCE)
                take.append(cycle)
                last_take[w] = cycle
            done = max(take[-1] + 1, start + words)
            mask_start = done + self.FLUSH_CYCLES
            # count read, register, FIFO, neuron; the last mask word written, then RUN
            run = mask_start + W - 1 + 3 + self.NEURON_LATENCY + 1
            last_out = run + words - 1 + 2 + self.FIFO_LATENCY
            t = run + words
        return last_out + 1

    def _linear_step(self, start, q, k):
        """One timestep of `LinearSDSA` from LOAD at `start`: (next LOAD cycle, last output)."""
        L, W = self.lanes, self.words_per_token
        dw, words = self.words_per_head, self.beats_per_step
        kbits = np.asarray(k).reshape(words, L)
        qbits = np.asarray(q).reshape(words, L)
        depth = W + 1                         # the K FIFO
        load, accept = [], []
        engine = {"free": start + W, "last": {}, "final": None}   # touched words clear first

        def k_ready(i):
            # beat i is taken when the K FIFO has room: word i - depth has left it
            cycle = start + i if i == 0 else load[i - 1] + 1
            if i >= depth:
                cycle = max(cycle, accept[i - depth] + 1)
            return cycle

        def take_k(event, when):
            i, lane = event
            token_done = load[(i // W) * W + W - 1] + 1
            take = max(when, engine["free"], token_done)
            t = take
            if lane is None:
                engine["free"] = take + 1
            else:
                row = (i % W * L + lane) * dw
                for j in range(dw):
                    t = max(t + 1, engine["last"].get(row + j, -self.UPDATE_DISTANCE)
                            + self.UPDATE_DISTANCE)
                    engine["last"][row + j] = t
                engine["free"] = t
            engine["final"] = t + 1 if lane is not None else take + 1
            return take

        # the scanner's acceptance times depend on the load times and vice versa; both move
        # forward in order, so interleave: load as far as the FIFO allows, then scan a word
        queue = _EventQueue(self.EVENT_FIFO_DEPTH, take_k)
        free = 0
        for i in range(words):
            while len(load) < words and (len(load) < depth + len(accept)):
                load.append(k_ready(len(load)))
            a = max(free, load[i] + 1)
            accept.append(a)
            lanes = list(np.flatnonzero(kbits[i]))
            final = i == words - 1
            if not lanes and not final:
                free = a + 1
                continue
            when = a + 1
            for lane in lanes or [None]:
                pushed = queue.push((i, lane), when)
                when = pushed + 1
            free = pushed
        done = max(engine["final"], start + words)
        run = done + self.FLUSH_CYCLES

        # RUN: Q fetched into a 4-word FIFO, scanned, one head at a time
        fetch, q_accept = [], []
        state = {"free": run, "end": -dw, "last_end": None}
        q_full = start + words

        def take_q(event, when):
            i, lane, last_of_word = event
            head_end = (i % dw == dw - 1) and last_of_word
            take = max(when, state["free"])
            if lane is None:
                t = take + 1
                t = max(t, state["end"] + dw)
            else:
                t = take + dw
                if head_end:
                    t = max(t, state["end"] + dw)
            if head_end:
                state["end"] = t
            state["free"] = t
            return take

        queue = _EventQueue(self.EVENT_FIFO_DEPTH, take_q)
        free = 0
        for i in range(words):
            while len(fetch) < words and len(fetch) < self.Q_FETCH_DEPTH + len(q_accept):
                n = len(fetch)
                cycle = max(q_full, fetch[-1] + 1 if fetch else q_full)
                if n >= self.Q_FETCH_DEPTH:
                    cycle = max(cycle, q_accept[n - self.Q_FETCH_DEPTH] + 1)
                fetch.append(cycle)
            a = max(free, fetch[i] + 3)
            q_accept.append(a)
            lanes = list(np.flatnonzero(qbits[i]))
            flagged = i % dw == dw - 1
            if not lanes and not flagged:
                free = a + 1
                continue
            when = a + 1
            events = lanes or [None]
            for n, lane in enumerate(events):
                pushed = queue.push((i, lane, n == len(events) - 1), when)
                when = pushed + 1
            free = pushed
        final_issue = state["free"]
        last_out = state["end"] + 2 + dw + self.FIFO_LATENCY + self.NEURON_LATENCY
        return final_issue + 1, last_out

    def dense_cycles(self, samples=1):
        """The same cost if every Q, K and V position were a spike."""
        ones = np.ones((samples, self.timesteps, self.tokens, self.channels), dtype=np.uint8)
        return self.ideal_cycles(ones, ones, ones)


def fitting_lanes(variant=SDSAConfig.variant, heads=SDSAConfig.heads,
                  channels=SDSAConfig.channels):
    """(lanes, reason): the default lanes when they fit `channels` (and the head dimension,
    variants 3/4), else the largest that fit below it, with the reason the default did not
    (None when it did). For configurations whose lanes are not given: an SDSA of 64 channels
    and 8 heads takes 8 lanes instead of failing on the default 16."""
    default = SDSAConfig.lanes
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
               for v in (variant, heads, channels)) or channels % heads:
        return default, None                     # the configuration's own checks say why
    divisor = math.gcd(channels, channels // heads) if variant >= 3 else channels
    if divisor % default == 0:
        return default, None
    lanes = max(n for n in range(1, default + 1) if divisor % n == 0)
    what = (f"the head dimension channels/heads = {channels // heads}"
            if variant >= 3 and (channels // heads) % default else f"channels ({channels})")
    return lanes, f"the default {default} does not divide {what}"


class _EventQueue:
    """Replay of a `SyncFIFO` of `depth` events and a pipeline register between a scanner and
    an engine: `push(event, when)` returns the cycle the scanner hands the event over (from
    `when`, once there is room); the register loads it from the next cycle, once the event
    before has been taken; the engine's `take(event, when)` gives the cycle it takes it, from
    the cycle after the load."""

    def __init__(self, depth, take):
        self.depth, self.take, self.taken, self.loaded = depth, take, [], []

    def push(self, event, when):
        k = len(self.taken)
        if k >= self.depth:
            when = max(when, self.loaded[k - self.depth] + 1)
        # the pipeline register after the FIFO takes the event once the one before has gone
        loaded = max(when + 1, self.taken[-1] if self.taken else 0)
        self.loaded.append(loaded)
        self.taken.append(self.take(event, loaded + 1))
        return when


@dataclass(frozen=True)
class SDSATraces:
    """Q, K, V spikes and expected output spikes, each (samples, timesteps, tokens, channels),
    plus the integer the neuron sees: `attention` A (3/4, same shape) or `counts` (1/2,
    (samples, timesteps, channels))."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    spikes: np.ndarray
    neuron_input: np.ndarray

    @property
    def samples(self):
        return self.q.shape[0]


def load_sdsa_bundle(path):
    """Read an SDSA bundle: (config, traces), checked against each other."""
    from .bundle import read_bundle

    bundle = read_bundle(path, unit="sdsa")
    try:
        config = SDSAConfig.from_dict(bundle.config)
    except ConfigError as exc:
        raise BundleError(f"bundle {bundle.source!r} has an invalid SDSA configuration: {exc}") \
            from None
    want = (config.timesteps, config.tokens, config.channels)
    arrays = {}
    for name in ("q", "k", "v", "spikes"):
        a = bundle.array(name)
        if a.ndim != 4 or a.shape[1:] != want or a.dtype.kind not in "iu":
            raise BundleError(
                f"bundle {bundle.source!r}: array {name!r} has shape {list(a.shape)}, but the "
                f"configuration needs spikes of shape [samples, {', '.join(map(str, want))}] "
                f"(timesteps, tokens, channels)"
            )
        if a.size and (int(a.min()) < 0 or int(a.max()) > 1):
            raise BundleError(f"bundle {bundle.source!r}: {name} must be spikes (0 or 1)")
        arrays[name] = a.astype(np.uint8)
    name = "attention" if config.variant >= 3 else "counts"
    a = bundle.array(name)
    shape = want if config.variant >= 3 else want[:1] + want[2:]
    limit = config.max_attention if config.variant >= 3 else config.tokens
    if a.ndim != len(shape) + 1 or a.shape[1:] != shape or a.dtype.kind not in "iu":
        raise BundleError(
            f"bundle {bundle.source!r}: array {name!r} has shape {list(a.shape)}, but the "
            f"configuration needs integers of shape [samples, {', '.join(map(str, shape))}]"
        )
    if a.size and (int(a.min()) < 0 or int(a.max()) > limit):
        raise BundleError(f"bundle {bundle.source!r}: {name} outside 0 .. {limit}")
    if len({x.shape[0] for x in (*arrays.values(), a)}) != 1:
        raise BundleError(f"bundle {bundle.source!r}: arrays disagree on the sample count")
    return config, SDSATraces(neuron_input=a.astype(np.int64), **arrays)
