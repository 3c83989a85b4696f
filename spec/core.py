"""Configuration of the overlay core: one set of engines that runs any Meta-SpikeFormer layer
after layer from external memory (see docs/ARCHITECTURE.md, "The overlay core").

A spatial design (`gen.network`) is generated for one network: every size is a generation-time
constant. The overlay core is generated for *maxima* and buffer sizes instead; a compiled
program sets each layer's geometry at run time, and the compiler (`gen.program`) refuses a
layer that exceeds them, naming the layer and the limit. Everything here is plain data: the
core's memories (`CoreConfig.memories`) are priced by `fpga.estimate.estimate_core`.

Datapath widths are maxima too: each layer saturates at its own widths (the integer model's),
which the core takes from the layer's descriptor; a layer whose widths exceed the core's is
refused.
"""

from dataclasses import dataclass

from .errors import ConfigError
from .lif import _check_int
from .unit import UnitConfig

__all__ = ["CoreConfig", "CoreMemory", "AXI_DATA_WIDTHS", "LANE_COUNTS"]

AXI_DATA_WIDTHS = (32, 64, 128, 256)
LANE_COUNTS = (1, 2, 4, 8, 16, 32)
#: AXI4: no burst may cross a 4 KiB boundary.
AXI_BOUNDARY_BYTES = 4096
#: Bits of a per-channel shortcut shift (-MAX_RIGHT .. MAX_LEFT of spec.shortcut, signed).
SHIFT_BITS = 6
#: Layers whose cycle counts the core keeps for LAYER_CYCLES (later layers still run).
MAX_LAYER_CYCLES = 256


@dataclass(frozen=True)
class CoreMemory:
    """One on-chip memory of the core: `width` bits x `depth` words; `purpose` says what it
    holds and how its depth follows from the configuration."""

    name: str
    width: int
    depth: int
    purpose: str
    style: str = "auto"      # "lutram": small tables read beside block-RAM reads


@dataclass(frozen=True)
class CoreConfig(UnitConfig):
    """An overlay core.

    Parameters
    ----------
    lanes : int
        Output channels one accumulator word holds: the engine updates `lanes` accumulators
        per cycle, and a layer's output channels are processed in groups of `lanes`.
    in_lanes : int
        Input channels per spike word: the encoder scans `in_lanes` spikes per cycle.
    w_bits : int
        Weight width (signed). Weights travel in bytes (`w_bits <= 8`) or 16-bit halves.
    acc_bits, stream_bits, v_bits : int
        The widest accumulator, residual-stream value and LIF membrane any layer may use.
    max_channels : int
        Channels of any layer (inputs or outputs, the MLP's hidden layer included).
    max_map : int
        Height and width of any layer's input map (the first layer's image included).
    max_kernel, max_stride : int
        Largest convolution kernel and stride.
    max_heads, max_head_dim, max_tokens : int
        Largest attention: heads, channels per head, tokens (pixels) per map.
    max_timesteps : int
        Timesteps T. With T > 1 the LIF membranes of an output tile stay on chip across
        timesteps (`membrane` memory); with 1, the core has none.
    weight_words : int
        Weight buffer, in words of `lanes` weights: one output group's weights of a layer
        (`C_in x k x k` words; split by kernel rows or taps when they do not fit) must fit.
        When two tiles' weights fit, the next tile's load overlaps the current tile's work.
    acc_words : int
        Accumulator tile, in words of `lanes` accumulators: an output tile (a band of output
        rows times a slice of output groups) must fit; at least one output row of one group.
        The attention keeps its `K^T V` counts here too (one head at least).
    tile_groups : int
        Most output groups (of `lanes` channels) in one tile: the depth of the per-channel
        parameter memories.
    axi_data_bits, axi_addr_bits, axi_id_bits : int
        The AXI4 master's data, address and ID widths.
    max_burst : int
        Beats per AXI burst (a power of two; bursts never cross a 4 KiB boundary).
    """

    UNIT = "core"
    NAME = "a core"

    lanes: int = 8
    in_lanes: int = 8
    w_bits: int = 8
    acc_bits: int = 20
    stream_bits: int = 24
    v_bits: int = 32
    max_channels: int = 2048
    max_map: int = 256
    max_kernel: int = 7
    max_stride: int = 2
    max_heads: int = 16
    max_head_dim: int = 64
    max_tokens: int = 1024
    max_timesteps: int = 4
    weight_words: int = 2304
    acc_words: int = 512
    tile_groups: int = 16
    axi_data_bits: int = 64
    axi_addr_bits: int = 32
    axi_id_bits: int = 4
    max_burst: int = 16

    def __post_init__(self):
        for name in ("lanes", "in_lanes"):
            value = getattr(self, name)
            _check_int(name, value, minimum=1)
            if value not in LANE_COUNTS:
                raise ConfigError(f"{name} must be one of {', '.join(map(str, LANE_COUNTS))}, "
                                  f"not {value}")
        _check_int("w_bits", self.w_bits, minimum=2, maximum=16)
        _check_int("acc_bits", self.acc_bits, minimum=self.w_bits + 1, maximum=40)
        _check_int("stream_bits", self.stream_bits, minimum=2, maximum=32)
        _check_int("v_bits", self.v_bits, minimum=4, maximum=48)
        _check_int("max_channels", self.max_channels, minimum=1, maximum=1 << 16)
        _check_int("max_map", self.max_map, minimum=1, maximum=4096)
        _check_int("max_kernel", self.max_kernel, minimum=1, maximum=15)
        _check_int("max_stride", self.max_stride, minimum=1, maximum=self.max_kernel)
        _check_int("max_heads", self.max_heads, minimum=1, maximum=256)
        _check_int("max_head_dim", self.max_head_dim, minimum=1, maximum=self.max_channels)
        _check_int("max_tokens", self.max_tokens, minimum=1, maximum=self.max_map ** 2)
        _check_int("max_timesteps", self.max_timesteps, minimum=1, maximum=16)
        kernel_words = self.max_kernel * self.max_kernel
        _check_int("weight_words", self.weight_words, minimum=kernel_words, maximum=1 << 20)
        _check_int("acc_words", self.acc_words, minimum=1, maximum=1 << 20)
        _check_int("tile_groups", self.tile_groups, minimum=1, maximum=1024)
        _check_int("axi_data_bits", self.axi_data_bits, minimum=32)
        if self.axi_data_bits not in AXI_DATA_WIDTHS:
            raise ConfigError(f"axi_data_bits must be one of "
                              f"{', '.join(map(str, AXI_DATA_WIDTHS))}, not "
                              f"{self.axi_data_bits}")
        _check_int("axi_addr_bits", self.axi_addr_bits, minimum=16, maximum=64)
        _check_int("axi_id_bits", self.axi_id_bits, minimum=1, maximum=16)
        _check_int("max_burst", self.max_burst, minimum=1, maximum=256)
        if self.count_bits > self.acc_bits:
            raise ConfigError(f"attention counts of max_tokens ({self.max_tokens}) need "
                              f"{self.count_bits} bits, more than acc_bits ({self.acc_bits}), "
                              f"where they are kept")
        if self.lanes < self.axi_bytes:
            raise ConfigError(f"lanes ({self.lanes}) must be at least the bytes of an AXI beat "
                              f"({self.axi_bytes}, axi_data_bits {self.axi_data_bits}): a word "
                              f"of lanes values of 1 byte or more fills whole beats")
        if self.max_burst & (self.max_burst - 1):
            raise ConfigError(f"max_burst must be a power of two, not {self.max_burst}")
        if self.max_burst * self.axi_bytes > AXI_BOUNDARY_BYTES:
            raise ConfigError(f"max_burst ({self.max_burst}) beats of {self.axi_bytes} bytes "
                              f"cross a 4 KiB boundary; at most "
                              f"{AXI_BOUNDARY_BYTES // self.axi_bytes} beats")
        # a weight word (lanes x 1 or 2 bytes) and an AXI beat are both powers of two bytes,
        # so one always divides the other: the DMA never splits a word across beats unevenly

    # -- derived sizes ------------------------------------------------------------------------

    @property
    def axi_bytes(self):
        """Bytes per AXI data beat."""
        return self.axi_data_bits // 8

    @property
    def weight_bytes(self):
        """Bytes one weight travels in (sign-extended)."""
        return 1 if self.w_bits <= 8 else 2

    @property
    def weight_word_bytes(self):
        return self.lanes * self.weight_bytes

    @property
    def count_bits(self):
        """Width of an attention count (`K^T V`, at most `max_tokens`), kept in the
        accumulator memory."""
        return self.max_tokens.bit_length()

    @property
    def table_bits(self):
        """Width of a geometry table entry (per input row or column of a layer, written per
        layer): taps touched, accumulator offset of the first, weight offset of its kernel
        index; the tables replace multiplications by `out_width`, `k` and the group count."""
        return (self.max_kernel.bit_length() + (self.acc_words - 1).bit_length()
                + (self.weight_words - 1).bit_length())

    @property
    def attention_bits(self):
        """Width of an attention sum Q KV: up to max_head_dim x max_tokens counts."""
        return max(2, (self.max_head_dim * self.max_tokens).bit_length() + 1)

    def memories(self):
        """The core's on-chip memories (`CoreMemory`), largest first."""
        mems = [
            CoreMemory("weights", self.lanes * self.w_bits, self.weight_words,
                       "weight tile: C_in x k x k words of one output group"),
            CoreMemory("accumulators", self.lanes * self.acc_bits, self.acc_words,
                       "accumulator tile: band pixels x groups"),
        ]
        if self.max_timesteps > 1:
            mems.append(CoreMemory("membranes", self.lanes * self.v_bits, self.acc_words,
                                   "LIF membranes of the tile, kept across timesteps"))
        mems += [
            CoreMemory("acc_bias", self.lanes * self.acc_bits, self.tile_groups,
                       "per output channel: the engine's bias"),
            CoreMemory("shortcut", self.lanes * (SHIFT_BITS + self.stream_bits),
                       self.tile_groups, "per output channel: stream shift and bias"),
            CoreMemory("lif", self.lanes * 2 * self.v_bits, self.tile_groups,
                       "per output channel: LIF threshold and bias"),
            CoreMemory("row_table", self.table_bits, self.max_map,
                       "per input row: taps, accumulator and weight offsets"),
            CoreMemory("col_table", self.table_bits, self.max_map,
                       "per input column: taps, accumulator and weight offsets"),
            CoreMemory("attention", self.lanes * self.attention_bits,
                       max(2, -(-self.max_head_dim // self.lanes)),
                       "a head's Q KV sums, a word per group of lanes", "lutram"),
            CoreMemory("layer_cycles", 32, MAX_LAYER_CYCLES,
                       "LAYER_CYCLES: cycles per layer of the last run"),
        ]
        return sorted(mems, key=lambda m: -m.width * m.depth)
