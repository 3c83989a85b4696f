"""The overlay core's control and status registers (AXI4-Lite slave, 32-bit registers).

One table (`REGISTERS`) describes the register map; the core's register block, its testbench
and docs/overlay-format.md are written from it.

A host writes the program's header address to `PROGRAM` (and `PROGRAM_HI` when the core has
more than 32 address bits), sets `CONTROL.start`, and waits for `STATUS.done` (or the `irq`
output, when `CONTROL.irq_enable` is set). `STATUS.error` with `ERROR` tells what stopped the
core and at which layer. `CONTROL.soft_reset` stops whatever runs (outstanding AXI
transactions are completed, their data dropped) and returns the core to idle.
"""

from dataclasses import dataclass

__all__ = ["Register", "REGISTERS", "OFFSETS", "ERRORS", "ERROR_NAMES", "CONTROL_START",
           "CONTROL_SOFT_RESET", "CONTROL_IRQ_ENABLE", "STATUS_BUSY", "STATUS_DONE",
           "STATUS_ERROR", "CSR_ADDR_BITS"]


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str          # "rw", "ro", "wo" (reads as 0), "w1c" (write 1 to clear)
    doc: str


REGISTERS = (
    Register("CONTROL", 0x00, "rw", "bit 0 start (write 1: run the program; reads 0), bit 1 "
             "soft_reset (write 1; reads 0), bit 2 irq_enable"),
    Register("STATUS", 0x04, "w1c", "bit 0 busy (read only), bit 1 done, bit 2 error; done and "
             "error stay set until written 1 or the next start"),
    Register("ERROR", 0x08, "ro", "bits 0-7 error code (ERRORS), bits 16-31 the failing layer"),
    Register("PROGRAM", 0x0C, "rw", "address of the program's header (bits 0-31)"),
    Register("PROGRAM_HI", 0x10, "rw", "address bits 32-63 (cores with axi_addr_bits > 32)"),
    Register("LAYER", 0x14, "ro", "the layer running, or the number of layers run when idle"),
    Register("CORE_ID", 0x18, "ro", "fingerprint of the core configuration "
             "(spec.program.core_fingerprint): a program runs only on its core"),
    Register("VERSION", 0x1C, "ro", "program format version the core reads (1)"),
    Register("CYCLES_LO", 0x20, "ro", "cycles from start to done, bits 0-31"),
    Register("CYCLES_HI", 0x24, "ro", "bits 32-63"),
    Register("EVENTS_LO", 0x28, "ro", "engine events (input spikes and set bits) processed"),
    Register("EVENTS_HI", 0x2C, "ro", "bits 32-63"),
    Register("READ_LO", 0x30, "ro", "bytes read over AXI"),
    Register("READ_HI", 0x34, "ro", "bits 32-63"),
    Register("WRITTEN_LO", 0x38, "ro", "bytes written over AXI"),
    Register("WRITTEN_HI", 0x3C, "ro", "bits 32-63"),
    Register("LAYER_SELECT", 0x40, "rw", "a layer index for LAYER_CYCLES"),
    Register("LAYER_CYCLES", 0x44, "ro", "cycles the selected layer took in the last run "
             "(valid once the LAYER_SELECT write has its response)"),
)
OFFSETS = {r.name: r.offset for r in REGISTERS}
#: Bits of the register block's address (64 bytes of registers and room to grow).
CSR_ADDR_BITS = 8

CONTROL_START, CONTROL_SOFT_RESET, CONTROL_IRQ_ENABLE = 1, 2, 4
STATUS_BUSY, STATUS_DONE, STATUS_ERROR = 1, 2, 4

#: Error codes (`ERROR` bits 0-7). A bad program stops the core with one of these within a
#: bounded number of cycles; it never hangs the bus.
ERRORS = {
    "none": 0,
    "magic": 1,            # the header's magic or version is not this core's format
    "header_checksum": 2,
    "core": 3,             # the program was compiled for another core (CORE_ID)
    "descriptor_checksum": 4,
    "opcode": 5,           # an unknown opcode
    "shape": 6,            # a size above the core's maxima (channels, map, kernel, ...)
    "address": 7,          # an address outside the image and activation area the header gives
    "bus": 8,              # an AXI error response (SLVERR or DECERR)
}
ERROR_NAMES = {code: name for name, code in ERRORS.items()}
assert len({r.offset for r in REGISTERS}) == len(REGISTERS)
assert all(r.offset % 4 == 0 and r.offset < 1 << CSR_ADDR_BITS for r in REGISTERS)
