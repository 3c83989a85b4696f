"""The overlay core's AXI4 master port as plain data: the configuration of its reader and writer
(`AxiConfig`), their stream payloads, and the burst plan (`bursts`) that the hardware
(`hw.axi`) must issue exactly.

A transfer of `length` bytes at `addr` becomes INCR bursts of full-width beats, taken greedily:
each burst is as long as the transfer's remaining beats, the beats left before the next 4 KiB
boundary and `max_burst` allow, whichever is least. No burst crosses a 4 KiB boundary (AXI4).
"""

from dataclasses import dataclass

from .core import AXI_BOUNDARY_BYTES
from .errors import ConfigError
from .lif import _check_int
from .ports import Field
from .unit import UnitConfig

__all__ = ["AxiConfig", "bursts", "AXI_MAX_BEATS", "AXI_BURST_INCR", "AXI_RESP_OKAY",
           "AXI_RESP_SLVERR", "AXI_CACHE", "AXI_PROT"]

#: AXI4: an INCR burst has at most 256 beats (AxLEN is 8 bits).
AXI_MAX_BEATS = 256
#: AxBURST of an incrementing burst.
AXI_BURST_INCR = 0b01
#: xRESP codes.
AXI_RESP_OKAY = 0b00
AXI_RESP_SLVERR = 0b10
#: AxCACHE "normal non-cacheable bufferable" and AxPROT "unprivileged, secure, data": the
#: constant attributes of every burst.
AXI_CACHE = 0b0011
AXI_PROT = 0b000


def _is_power_of_two(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        and not value & (value - 1)


def _check_uint(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def bursts(addr, length, beat_bytes, max_burst, *, addr_bits=32):
    """Split a transfer into AXI4 INCR bursts.

    Parameters
    ----------
    addr : int
        Byte address of the first beat, a multiple of `beat_bytes`.
    length : int
        Bytes to transfer, a multiple of `beat_bytes` (0: no burst).
    beat_bytes : int
        Bytes per beat (the data width / 8), a power of two from 1 to 128.
    max_burst : int
        Most beats per burst, a power of two from 1 to 256.
    addr_bits : int
        Width of the address space; the transfer must lie inside it.

    Returns
    -------
    list of (int, int)
        (address, beats) of each burst, in order. Bursts are greedy: each takes the least of
        the beats left, the beats before the next 4 KiB boundary and `max_burst`.

    Raises
    ------
    ValueError
        When an argument is out of range, misaligned, or the transfer leaves the address space.
    """
    if not _is_power_of_two(beat_bytes) or beat_bytes > 128:
        raise ValueError(f"beat_bytes must be a power of two from 1 to 128, not {beat_bytes!r}")
    if not _is_power_of_two(max_burst) or max_burst > AXI_MAX_BEATS:
        raise ValueError(f"max_burst must be a power of two from 1 to {AXI_MAX_BEATS}, "
                         f"not {max_burst!r}")
    if isinstance(addr_bits, bool) or not isinstance(addr_bits, int) or addr_bits < 12:
        raise ValueError(f"addr_bits must be an integer of at least 12, not {addr_bits!r}")
    _check_uint("addr", addr)
    _check_uint("length", length)
    if addr % beat_bytes:
        raise ValueError(f"addr {addr:#x} is not a multiple of the beat ({beat_bytes} bytes)")
    if length % beat_bytes:
        raise ValueError(f"length {length} is not a multiple of the beat ({beat_bytes} bytes)")
    if addr + length > 1 << addr_bits:
        raise ValueError(f"{length} bytes at {addr:#x} run past the {addr_bits}-bit address "
                         f"space")
    out = []
    beats_left = length // beat_bytes
    while beats_left:
        to_boundary = (AXI_BOUNDARY_BYTES - addr % AXI_BOUNDARY_BYTES) // beat_bytes
        beats = min(beats_left, to_boundary, max_burst)
        out.append((addr, beats))
        addr += beats * beat_bytes
        beats_left -= beats
    return out


@dataclass(frozen=True)
class AxiConfig(UnitConfig):
    """The AXI4 master's reader and writer (`hw.axi.AxiReader`, `AxiWriter`, `AxiMaster`).

    Parameters
    ----------
    data_bits : int
        Data width: 8 to 1024 bits, a power of two. Every beat is full width
        (AxSIZE = log2(data_bits / 8)).
    addr_bits : int
        Address width (16 to 64).
    id_bits : int
        Width of AxID and xID (1 to 16). Every burst uses ID 0, so responses come in order.
    max_burst : int
        Most beats per burst, a power of two from 1 to 256.
    outstanding : int
        Most bursts in flight per direction (1 to 64): address issued, last response not in.
    length_bits : int
        Width of a command's byte count: transfers of up to `2^length_bits - 1` bytes.
    counter_bits : int
        Width of the byte and response counters (they wrap).
    """

    UNIT = "axi"
    NAME = "an AXI master"

    data_bits: int = 64
    addr_bits: int = 32
    id_bits: int = 4
    max_burst: int = 16
    outstanding: int = 4
    length_bits: int = 24
    counter_bits: int = 32

    def __post_init__(self):
        _check_int("data_bits", self.data_bits, minimum=8, maximum=1024)
        if not _is_power_of_two(self.data_bits):
            raise ConfigError(f"data_bits must be a power of two, not {self.data_bits}")
        _check_int("addr_bits", self.addr_bits, minimum=16, maximum=64)
        _check_int("id_bits", self.id_bits, minimum=1, maximum=16)
        _check_int("max_burst", self.max_burst, minimum=1, maximum=AXI_MAX_BEATS)
        if not _is_power_of_two(self.max_burst):
            raise ConfigError(f"max_burst must be a power of two, not {self.max_burst}")
        _check_int("outstanding", self.outstanding, minimum=1, maximum=64)
        _check_int("length_bits", self.length_bits, minimum=self.size + 1,
                   maximum=self.addr_bits)
        _check_int("counter_bits", self.counter_bits, minimum=1, maximum=64)

    @classmethod
    def from_core(cls, core, **changes):
        """The AXI master of a `spec.core.CoreConfig` (its data, address and ID widths and burst
        length), with `changes` on top."""
        return cls(data_bits=core.axi_data_bits, addr_bits=core.axi_addr_bits,
                   id_bits=core.axi_id_bits, max_burst=core.max_burst, **changes)

    # -- derived sizes ------------------------------------------------------------------------

    @property
    def beat_bytes(self):
        """Bytes per beat."""
        return self.data_bits // 8

    @property
    def size(self):
        """AxSIZE: log2 of the bytes per beat."""
        return self.beat_bytes.bit_length() - 1

    @property
    def read_buffer_beats(self):
        """Depth of the reader's data buffer: room for every beat of `outstanding` bursts, so a
        burst is only issued when its beats have space and R never waits for it."""
        return self.outstanding * self.max_burst

    def bursts(self, addr, length):
        """`bursts` for this port's beat, burst length and address width."""
        return bursts(addr, length, self.beat_bytes, self.max_burst, addr_bits=self.addr_bits)

    # -- stream payloads ----------------------------------------------------------------------

    def command_fields(self):
        """A read or write command: byte address and byte count (multiples of the beat; the
        bits below the beat are ignored)."""
        return [Field("addr", self.addr_bits), Field("length", self.length_bits)]

    def burst_fields(self):
        """One planned burst (inside `hw.axi`): its address, beats, and whether it is the
        command's last."""
        return [Field("addr", self.addr_bits), Field("beats", self.max_burst.bit_length()),
                Field("final", 1)]

    def read_fields(self):
        """A beat read: its data, and `last` on the command's last beat."""
        return [Field("data", self.data_bits), Field("last", 1)]

    def write_fields(self):
        """A beat to write: its data and byte strobes (bit `i` writes byte `i`)."""
        return [Field("data", self.data_bits), Field("strb", self.beat_bytes)]
