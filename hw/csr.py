"""The overlay core's control and status registers: an AXI4-Lite slave (register map:
`spec.csr`)."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spec.csr import (
    CONTROL_IRQ_ENABLE,
    CONTROL_SOFT_RESET,
    CONTROL_START,
    CSR_ADDR_BITS,
    OFFSETS,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
)
from spec.program import VERSION, core_fingerprint

__all__ = ["AXI4LiteSignature", "CoreControlSignature", "ControlStatusRegisters",
           "AXIL_PORT", "COUNTERS"]

#: Name of the AXI4-Lite port. Amaranth flattens `s_axil.awaddr` to the Verilog port
#: `s_axil__awaddr`, so cocotbext-axi finds the bus with `AxiLiteBus.from_prefix(dut, "s_axil_")`
#: (it joins prefix and signal with one more `_`).
AXIL_PORT = "s_axil"

#: The 64-bit counters, as (core-side input, register pair): a read of the low word latches the
#: high word, so LO then HI is one consistent 64-bit value.
COUNTERS = (("cycles", "CYCLES"), ("events", "EVENTS"), ("bytes_read", "READ"),
            ("bytes_written", "WRITTEN"))

#: AXI response OKAY (the block never answers SLVERR or DECERR).
_OKAY = 0b00


class AXI4LiteSignature(wiring.Signature):
    """An AXI4-Lite interface, seen from the master (a slave takes it with `In(...)`).

    Members keep AXI's names in lower case (`awaddr`, `awprot`, `awvalid`, `awready`, `wdata`,
    `wstrb`, ..., `rresp`, `rvalid`, `rready`), so flattened ports read `<port>__awaddr`.

    Parameters
    ----------
    addr_bits : int
        Width of `awaddr` and `araddr`, 1 to 64.
    data_bits : int
        Width of `wdata` and `rdata`: 32 or 64 (AXI4-Lite); `wstrb` has one bit per byte.
    """

    def __init__(self, *, addr_bits, data_bits=32):
        if not isinstance(addr_bits, int) or isinstance(addr_bits, bool) \
                or not 1 <= addr_bits <= 64:
            raise TypeError(f"AXI4-Lite address width must be an integer from 1 to 64, not "
                            f"{addr_bits!r}")
        if data_bits not in (32, 64) or isinstance(data_bits, bool):
            raise TypeError(f"AXI4-Lite data width must be 32 or 64, not {data_bits!r}")
        self._addr_bits, self._data_bits = addr_bits, data_bits
        super().__init__({
            "awaddr": Out(addr_bits), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_bits), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_bits), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_bits(self):
        return self._addr_bits

    @property
    def data_bits(self):
        return self._data_bits

    def __eq__(self, other):
        return (isinstance(other, AXI4LiteSignature) and other.addr_bits == self.addr_bits
                and other.data_bits == self.data_bits)

    def __hash__(self):
        return hash((AXI4LiteSignature, self._addr_bits, self._data_bits))

    def __repr__(self):
        return f"AXI4LiteSignature(addr_bits={self._addr_bits}, data_bits={self._data_bits})"


class CoreControlSignature(wiring.Signature):
    """What the register block gives the core (`Out`) and takes from it (`In`).

    Out: `start` and `soft_reset` (one-cycle pulses), `irq_enable`, `program` (the program's
    header address, `addr_bits`), `layer_select` (`layer_bits`).
    In: `busy`; `done` and `error` (one-cycle events; `error` comes with `error_code`, 8 bits,
    and `error_layer`); `layer`; the 64-bit counters `cycles`, `events`, `bytes_read`,
    `bytes_written`; `layer_cycles` (32 bits, the selected layer's cycles in the last run).
    """

    def __init__(self, *, addr_bits, layer_bits):
        self._addr_bits, self._layer_bits = addr_bits, layer_bits
        super().__init__({
            "start": Out(1), "soft_reset": Out(1), "irq_enable": Out(1),
            "program": Out(addr_bits), "layer_select": Out(layer_bits),
            "busy": In(1), "done": In(1), "error": In(1), "error_code": In(8),
            "error_layer": In(layer_bits), "layer": In(layer_bits),
            **{name: In(64) for name, _ in COUNTERS},
            "layer_cycles": In(32),
        })

    @property
    def addr_bits(self):
        return self._addr_bits

    @property
    def layer_bits(self):
        return self._layer_bits

    def __eq__(self, other):
        return (isinstance(other, CoreControlSignature) and other.addr_bits == self.addr_bits
                and other.layer_bits == self.layer_bits)

    def __hash__(self):
        return hash((CoreControlSignature, self._addr_bits, self._layer_bits))

    def __repr__(self):
        return (f"CoreControlSignature(addr_bits={self._addr_bits}, "
                f"layer_bits={self._layer_bits})")


def _bits(fields):
    """A register word from {single-bit mask: 1-bit value}; other bits 0."""
    word = [Const(0, 1)] * 32
    for mask, value in fields.items():
        word[mask.bit_length() - 1] = value
    return Cat(*word)


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {value!r}")


class ControlStatusRegisters(wiring.Component):
    """The register map of `spec.csr` behind an AXI4-Lite slave port.

    Bus: `s_axil` (32-bit data, `CSR_ADDR_BITS` address bits; `awprot`/`arprot` are ignored).
    Write address and data are each taken into a one-entry holding register (`awready` and
    `wready` are high while it is empty, whatever the valids), so they may come in either
    order or together; once both are held and no response is waiting, the write is done and
    `bvalid` rises. A read is answered from a register loaded when the address is taken
    (`arready` is low while `rvalid` is high). One transaction per direction at a time;
    every response is OKAY. Address bits 0-1 are ignored (the word holding the byte is
    accessed). An offset outside the map reads 0 and ignores writes.

    Registers (see `spec.csr.REGISTERS`): `wstrb` selects the bytes written of `rw` registers
    and of `CONTROL` and `STATUS` (their bits are in byte 0). A register holds only the bits
    the core uses (`PROGRAM`/`PROGRAM_HI`: `addr_bits`; `LAYER_SELECT`: `layer_bits`); the
    others read 0. Writing `CONTROL` with bit 0 set pulses `core.start` for one cycle and
    clears `STATUS.done`, `STATUS.error` and `ERROR`, unless the core is busy or bit 1 is set
    in the same write (then nothing starts); bit 1 pulses `core.soft_reset`. `core.done` and
    `core.error` set their `STATUS` bits (an event wins over a clear in the same cycle); the
    error event also loads `ERROR` (code, layer) unless `STATUS.error` is already set, so the
    first error of a run is kept. Reading a counter's `_LO` word latches its `_HI` word (one
    latch per counter): LO then HI is one 64-bit value; `_HI` read alone returns the word
    latched by the last `_LO` read. `irq = irq_enable & (done | error)`.

    Parameters
    ----------
    core_id : int
        The `CORE_ID` word (32 bits; `spec.program.core_fingerprint` of the core's
        configuration).
    version : int
        The `VERSION` word: the program format the core reads.
    addr_bits : int
        Width of `core.program` (the core's AXI address width), 16 to 64.
    layer_bits : int
        Width of layer indexes (`LAYER`, `LAYER_SELECT`, `ERROR` bits 16-31), 1 to 16.

    Attributes
    ----------
    s_axil : In(AXI4LiteSignature(addr_bits=CSR_ADDR_BITS))
    core : Out(CoreControlSignature(addr_bits=addr_bits, layer_bits=layer_bits))
    irq : Out(1)
    """

    def __init__(self, *, core_id, version=VERSION, addr_bits=32, layer_bits=16):
        _check_int("core_id", core_id, 0, (1 << 32) - 1)
        _check_int("version", version, 0, (1 << 32) - 1)
        _check_int("addr_bits", addr_bits, 16, 64)
        _check_int("layer_bits", layer_bits, 1, 16)
        self._core_id, self._version = core_id, version
        self._addr_bits, self._layer_bits = addr_bits, layer_bits
        super().__init__({
            AXIL_PORT: In(AXI4LiteSignature(addr_bits=CSR_ADDR_BITS)),
            "core": Out(CoreControlSignature(addr_bits=addr_bits, layer_bits=layer_bits)),
            "irq": Out(1),
        })

    @classmethod
    def for_core(cls, config):
        """The register block of the core `config` (a `spec.core.CoreConfig`): its
        fingerprint, this program format's version, its AXI address width."""
        return cls(core_id=core_fingerprint(config), version=VERSION,
                   addr_bits=config.axi_addr_bits)

    @property
    def core_id(self):
        return self._core_id

    @property
    def version(self):
        return self._version

    @property
    def addr_bits(self):
        return self._addr_bits

    @property
    def layer_bits(self):
        return self._layer_bits

    def elaborate(self, platform):
        m = Module()
        bus, core = self.s_axil, self.core
        word_bits = CSR_ADDR_BITS - 2

        # -- write channel: address and data held until both are here ------------------------
        aw_full, aw_word = Signal(), Signal(word_bits)
        w_full, w_data, w_strb = Signal(), Signal(32), Signal(4)
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full), bus.bresp.eq(_OKAY)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        write = Signal()
        m.d.comb += write.eq(aw_full & w_full & ~bus.bvalid)
        with m.If(write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1)]
        with m.Elif(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)

        def writes(name):
            return write & (aw_word == OFFSETS[name] >> 2)

        def merged(old, width):
            """`old` (a register of `width` bits) with the bytes `w_strb` selects replaced."""
            new = [Mux(w_strb[b], w_data[8 * b:8 * b + 8], old[8 * b:8 * b + 8] if
                       8 * b < width else Const(0, 8)) for b in range(4)]
            return Cat(*new)[:width]

        # -- registers --------------------------------------------------------------------------
        byte0 = Signal(8)        # byte 0 of the write data if strobed (CONTROL and STATUS bits)
        m.d.comb += byte0.eq(Mux(w_strb[0], w_data[:8], 0))
        irq_enable = Signal()
        done, error = Signal(), Signal()
        error_code, error_layer = Signal(8), Signal(self._layer_bits)
        lo_bits = min(32, self._addr_bits)
        program = Signal(lo_bits)
        program_hi = Signal(self._addr_bits - 32) if self._addr_bits > 32 else None
        layer_select = Signal(self._layer_bits)

        write_control = writes("CONTROL")
        start_request = write_control & (byte0 & CONTROL_START).any()
        reset_request = write_control & (byte0 & CONTROL_SOFT_RESET).any()
        start = start_request & ~reset_request & ~core.busy
        m.d.sync += [core.start.eq(start), core.soft_reset.eq(reset_request)]
        with m.If(write_control & w_strb[0]):
            m.d.sync += irq_enable.eq((byte0 & CONTROL_IRQ_ENABLE).any())
        with m.If(writes("PROGRAM")):
            m.d.sync += program.eq(merged(program, lo_bits))
        if program_hi is not None:
            with m.If(writes("PROGRAM_HI")):
                m.d.sync += program_hi.eq(merged(program_hi, len(program_hi)))
        with m.If(writes("LAYER_SELECT")):
            m.d.sync += layer_select.eq(merged(layer_select, self._layer_bits))

        # STATUS: an event wins over a clear (write 1 or start) in the same cycle
        clear = Signal(8)
        m.d.comb += clear.eq(Mux(writes("STATUS"), byte0, 0))
        with m.If(core.done):
            m.d.sync += done.eq(1)
        with m.Elif(start | (clear & STATUS_DONE).any()):
            m.d.sync += done.eq(0)
        with m.If(core.error):
            m.d.sync += error.eq(1)
            with m.If(~error | start):
                m.d.sync += [error_code.eq(core.error_code), error_layer.eq(core.error_layer)]
        with m.Elif(start):
            m.d.sync += [error.eq(0), error_code.eq(0), error_layer.eq(0)]
        with m.Elif((clear & STATUS_ERROR).any()):
            m.d.sync += error.eq(0)

        m.d.comb += [
            core.irq_enable.eq(irq_enable),
            core.program.eq(program if program_hi is None else Cat(program, program_hi)),
            core.layer_select.eq(layer_select),
            self.irq.eq(irq_enable & (done | error)),
        ]

        # -- read channel ---------------------------------------------------------------------
        latched = {(port, reg): Signal(32, name=f"{reg.lower()}_hi") for port, reg in COUNTERS}
        latches = {f"{reg}_LO": (port, reg) for port, reg in COUNTERS}
        values = {
            "CONTROL": _bits({CONTROL_IRQ_ENABLE: irq_enable}),
            "STATUS": _bits({STATUS_BUSY: core.busy, STATUS_DONE: done, STATUS_ERROR: error}),
            "ERROR": Cat(error_code, Const(0, 8), error_layer),
            "PROGRAM": program,
            "PROGRAM_HI": program_hi if program_hi is not None else Const(0, 32),
            "LAYER": core.layer,
            "CORE_ID": Const(self._core_id, 32),
            "VERSION": Const(self._version, 32),
            "LAYER_SELECT": layer_select,
            "LAYER_CYCLES": core.layer_cycles,
        }
        for port, reg in COUNTERS:
            values[f"{reg}_LO"] = getattr(core, port)[:32]
            values[f"{reg}_HI"] = latched[port, reg]
        assert set(values) == set(OFFSETS), "every register of spec.csr has a read value"

        ar_word = bus.araddr[2:]
        m.d.comb += [bus.arready.eq(~bus.rvalid), bus.rresp.eq(_OKAY)]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(0)]
            with m.Switch(ar_word):
                for reg in REGISTERS:
                    with m.Case(reg.offset >> 2):
                        if reg.access != "wo":
                            m.d.sync += bus.rdata.eq(values[reg.name])
                        if reg.name in latches:
                            m.d.sync += latched[latches[reg.name]].eq(
                                getattr(core, latches[reg.name][0])[32:])
        with m.Elif(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        return m
