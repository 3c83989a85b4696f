"""The overlay core's AXI4 master: a reader and a writer that move commands of (address, bytes)
as INCR bursts (`spec.axi.bursts`, exactly), and their port signature.

Port names. `AXI4Signature` has the AXI signal names themselves as members (`awaddr`, `wdata`,
`rready`, ...), so a component port `m_axi` of it flattens to `m_axi__awaddr`, `m_axi__wdata`,
... in Verilog (Amaranth joins a path with `__`). cocotbext-axi finds them with
`AxiBus.from_prefix(dut, "m_axi_")`: it names a signal `prefix + "_" + name`.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.axi import AXI_BURST_INCR, AXI_CACHE, AXI_PROT, AXI_RESP_OKAY, AxiConfig
from spec.core import AXI_BOUNDARY_BYTES

from .common import struct_layout

__all__ = ["AXI4Signature", "BurstPlanner", "AxiReader", "AxiWriter", "AxiMaster",
           "RegisterSlice"]


class AXI4Signature(wiring.Signature):
    """An AXI4 manager (master) port, flat AXI signal names, seen from the master.

    Parameters
    ----------
    data_bits, addr_bits, id_bits : int
    read, write : bool
        Which halves the port has (AR and R; AW, W and B).

    Besides the five channels' handshakes, payloads and IDs, the port carries AxCACHE and
    AxPROT (driven constant by the master here); AxLOCK, AxQOS, AxREGION and the user signals
    are left out (their defaults are 0).
    """

    def __init__(self, *, data_bits, addr_bits, id_bits, read=True, write=True):
        for name, value in (("data_bits", data_bits), ("addr_bits", addr_bits),
                            ("id_bits", id_bits)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        if data_bits % 8:
            raise ValueError(f"data_bits must be a multiple of 8, not {data_bits}")
        if not (read or write):
            raise ValueError("an AXI4 port needs a read half, a write half or both")
        self._params = (data_bits, addr_bits, id_bits, bool(read), bool(write))
        members = {}
        if write:
            members.update({
                "awid": Out(id_bits), "awaddr": Out(addr_bits), "awlen": Out(8),
                "awsize": Out(3), "awburst": Out(2), "awcache": Out(4), "awprot": Out(3),
                "awvalid": Out(1), "awready": In(1),
                "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wlast": Out(1),
                "wvalid": Out(1), "wready": In(1),
                "bid": In(id_bits), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            })
        if read:
            members.update({
                "arid": Out(id_bits), "araddr": Out(addr_bits), "arlen": Out(8),
                "arsize": Out(3), "arburst": Out(2), "arcache": Out(4), "arprot": Out(3),
                "arvalid": Out(1), "arready": In(1),
                "rid": In(id_bits), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1),
                "rvalid": In(1), "rready": Out(1),
            })
        super().__init__(members)

    @classmethod
    def of(cls, config, *, read=True, write=True):
        """The port of an `AxiConfig`."""
        return cls(data_bits=config.data_bits, addr_bits=config.addr_bits,
                   id_bits=config.id_bits, read=read, write=write)

    def __eq__(self, other):
        return type(other) is type(self) and other._params == self._params

    def __hash__(self):
        return hash(self._params)

    def __repr__(self):
        data_bits, addr_bits, id_bits, read, write = self._params
        return (f"AXI4Signature(data_bits={data_bits}, addr_bits={addr_bits}, "
                f"id_bits={id_bits}, read={read}, write={write})")


def _check_config(config):
    if not isinstance(config, AxiConfig):
        raise TypeError(f"config must be an AxiConfig, not {config!r}")
    return config


def _forward(m, outer, inner):
    """Join the port `inner` of a submodule to the same-named members of this component's port
    `outer` (a superset: the reader's half or the writer's half of the full port)."""
    for name, member in inner.signature.members.items():
        if member.flow == Out:
            m.d.comb += getattr(outer, name).eq(getattr(inner, name))
        else:
            m.d.comb += getattr(inner, name).eq(getattr(outer, name))


class RegisterSlice(wiring.Component):
    """A full-throughput register slice on a stream (a two-entry skid buffer): `o.valid`, its
    payload and `i.ready` all come from registers, so no path runs through it from the
    consumer's `ready` back into the producer. One beat a cycle, in order; one cycle of
    latency.

    Parameters
    ----------
    shape : the payload's shape (a `struct_layout` or a width)
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        skid = Signal.like(i.payload)
        skid_valid = Signal()
        m.d.comb += i.ready.eq(~skid_valid)
        with m.If(~o.valid | o.ready):
            # the output register is free (or frees now): it takes the skid's beat first
            with m.If(skid_valid):
                m.d.sync += [o.payload.eq(skid), o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [o.payload.eq(i.payload), o.valid.eq(i.valid)]
        with m.Elif(i.valid & ~skid_valid):
            # the output is held: a beat offered now waits in the skid
            m.d.sync += [skid.eq(i.payload), skid_valid.eq(1)]
        return m


class BurstPlanner(wiring.Component):
    """Splits commands (address, bytes) into the bursts of `spec.axi.bursts`, one per cycle.

    Counters, adders and comparators only, and one long carry chain per cycle (the address and
    count updates). With `top = min(max_burst, beats per 4 KiB page)`, a power of two, a burst
    is the least of the beats left, `top`, and the beats to the page's end; the last is less
    than `top` only when the page offset's bits above `log2(top)` are all ones and the bits
    below (`low`) are not all zero, and then it is `top - low`. So every choice is a test of
    high bits or a comparison `log2(top) + 1` bits wide.

    A command of 0 bytes gives no burst. `flush` drops the command in progress and the planned
    burst, and holds `cmd` while high.

    Parameters
    ----------
    config : spec.axi.AxiConfig

    Attributes
    ----------
    cmd : In(stream.Signature(addr, length))
    burst : Out(stream.Signature(addr, beats, final))
    flush : In(1)
    busy : Out(1)
        A command is being split or a planned burst waits.
    """

    def __init__(self, config):
        self._config = _check_config(config)
        super().__init__({
            "cmd": In(stream.Signature(struct_layout(config.command_fields()))),
            "burst": Out(stream.Signature(struct_layout(config.burst_fields()))),
            "flush": In(1),
            "busy": Out(1),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        shift = cfg.size
        page_beats = AXI_BOUNDARY_BYTES // cfg.beat_bytes
        page_bits = page_beats.bit_length() - 1
        top = min(cfg.max_burst, page_beats)
        j = top.bit_length() - 1                        # top = 2^j
        m = Module()

        beat_addr = Signal(cfg.addr_bits - shift)       # the next burst's address, in beats
        beats_left = Signal(cfg.length_bits - shift)
        active = Signal()

        # the least of beats_left, top and the beats to the page's end; is it the command's last
        left_small = Signal()           # beats_left <= top
        page_short = Signal()           # the page ends less than `top` beats ahead ...
        to_page = Signal(range(top + 1))                # ... after this many beats
        page_first = Signal()           # ... before the command does (when beats_left <= top)
        beats = Signal(range(top + 1))
        final = Signal()
        m.d.comb += left_small.eq((beats_left >> j == 0) | (beats_left == top))
        if j > 0:
            offset = beat_addr[:page_bits]
            low = offset[:j]
            high_ones = offset[j:] == (1 << (page_bits - j)) - 1 if j < page_bits else 1
            m.d.comb += [
                page_short.eq(high_ones & (low != 0)),
                to_page.eq(top - low),
                page_first.eq(beats_left[:j + 1] + low > top),
            ]
        with m.If(left_small):
            with m.If(page_short & page_first):
                m.d.comb += beats.eq(to_page)
            with m.Else():
                m.d.comb += [beats.eq(beats_left), final.eq(1)]
        with m.Else():
            m.d.comb += beats.eq(Mux(page_short, to_page, top))

        out = self.burst
        load = Signal()
        m.d.comb += [
            load.eq(active & (~out.valid | out.ready) & ~self.flush),
            self.cmd.ready.eq(~self.flush & (~active | (load & final))),
            self.busy.eq(active | out.valid),
        ]
        with m.If(self.flush):
            m.d.sync += [active.eq(0), out.valid.eq(0)]
        with m.Else():
            with m.If(load):
                m.d.sync += [
                    out.valid.eq(1),
                    out.payload.addr.eq(beat_addr << shift),
                    out.payload.beats.eq(beats),
                    out.payload.final.eq(final),
                    beat_addr.eq(beat_addr + beats),
                    beats_left.eq(beats_left - beats),
                    active.eq(~final),
                ]
            with m.Elif(out.ready):
                m.d.sync += out.valid.eq(0)
            with m.If(self.cmd.valid & self.cmd.ready):
                length = self.cmd.payload.length[shift:]
                m.d.sync += [
                    beat_addr.eq(self.cmd.payload.addr[shift:]),
                    beats_left.eq(length),
                    active.eq(length != 0),
                ]
        return m


class _Flush:
    """The soft-reset state both directions share: `flush` is high from `soft_reset` until the
    bursts in flight are finished (`drained`)."""

    def __init__(self, m, soft_reset, drained):
        self.flushing = Signal()
        self.flush = Signal()
        m.d.comb += self.flush.eq(soft_reset | self.flushing)
        with m.If(soft_reset):
            m.d.sync += self.flushing.eq(1)
        with m.Elif(drained):
            m.d.sync += self.flushing.eq(0)


class AxiReader(wiring.Component):
    """Reads commands (address, bytes) over AXI4 (AR, R) into a stream of beats.

    Each command's beats leave on `data` in address order, `last` on its last beat; a command
    of 0 bytes gives none. Bursts follow `spec.axi.bursts` (ID 0: in-order responses). At most
    `outstanding` bursts are in flight, and a burst is issued only when the data buffer
    (`outstanding * max_burst` beats) has room reserved for all its beats, so `rready` stays
    high: R never waits for the output stream, which may stall freely.

    An RRESP other than OKAY sets `error` (sticky; the beat is still delivered); `bytes` counts
    the bytes received (it wraps). `soft_reset` drops the command in progress and the beats
    not yet delivered, clears `error` and `bytes`, takes no command until every burst in flight
    has returned its beats (taken and dropped, their responses ignored), then the reader is
    `idle`. `idle`: no command in progress, no burst in flight, no beat undelivered.

    Parameters
    ----------
    config : spec.axi.AxiConfig
    """

    def __init__(self, config):
        self._config = _check_config(config)
        super().__init__({
            "cmd": In(stream.Signature(struct_layout(config.command_fields()))),
            "data": Out(stream.Signature(struct_layout(config.read_fields()))),
            "m_axi": Out(AXI4Signature.of(config, write=False)),
            "soft_reset": In(1),
            "idle": Out(1),
            "error": Out(1),
            "bytes": Out(config.counter_bits),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        axi = self.m_axi
        depth = cfg.read_buffer_beats
        m = Module()
        m.submodules.planner = planner = BurstPlanner(cfg)
        wiring.connect(m, wiring.flipped(self.cmd), planner.cmd)
        # beat data and the command's `last`; a registered read side for the RAM output
        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=cfg.data_bits + 1,
                                                             depth=depth)
        # per burst in flight: is it its command's last
        m.submodules.finals = finals = fifo.SyncFIFO(width=1, depth=cfg.outstanding)

        in_flight = Signal(range(cfg.outstanding + 1))    # AR issued, RLAST not yet in
        credit = Signal(range(depth + 1), init=depth)     # buffer beats not yet reserved
        flush = _Flush(m, self.soft_reset, (in_flight == 0) & (buffer.level == 0))
        m.d.comb += planner.flush.eq(flush.flush)

        burst = planner.burst
        issue = Signal()
        m.d.comb += [
            issue.eq(burst.valid & ~flush.flush & (credit >= burst.payload.beats)
                     & (in_flight < cfg.outstanding) & (~axi.arvalid | axi.arready)),
            burst.ready.eq(issue),
            axi.arid.eq(0), axi.arsize.eq(cfg.size), axi.arburst.eq(AXI_BURST_INCR),
            axi.arcache.eq(AXI_CACHE), axi.arprot.eq(AXI_PROT),
            finals.w_en.eq(issue), finals.w_data.eq(burst.payload.final),
        ]
        with m.If(~axi.arvalid | axi.arready):
            m.d.sync += axi.arvalid.eq(issue)
        with m.If(issue):
            m.d.sync += [axi.araddr.eq(burst.payload.addr),
                         axi.arlen.eq(burst.payload.beats - 1)]

        r_take, r_end = Signal(), Signal()
        m.d.comb += [
            axi.rready.eq(buffer.w_rdy),
            r_take.eq(axi.rvalid & axi.rready),
            r_end.eq(r_take & axi.rlast),
            buffer.w_en.eq(r_take),
            buffer.w_data.eq(Cat(axi.rdata, axi.rlast & finals.r_data)),
            finals.r_en.eq(r_end),
        ]
        m.d.sync += in_flight.eq(in_flight + issue - r_end)

        # while flushing, the buffer empties itself; every beat leaving returns its credit
        out_take = Signal()
        m.d.comb += [
            self.data.valid.eq(buffer.r_rdy & ~flush.flush),
            self.data.payload.eq(buffer.r_data),
            buffer.r_en.eq(self.data.ready | flush.flush),
            out_take.eq(buffer.r_rdy & buffer.r_en),
        ]
        m.d.sync += credit.eq(credit - Mux(issue, burst.payload.beats, 0) + out_take)

        with m.If(self.soft_reset):
            m.d.sync += [self.error.eq(0), self.bytes.eq(0)]
        with m.Elif(r_take & ~flush.flush):
            m.d.sync += self.bytes.eq(self.bytes + cfg.beat_bytes)
            with m.If(axi.rresp != AXI_RESP_OKAY):
                m.d.sync += self.error.eq(1)
        m.d.comb += self.idle.eq(~flush.flush & ~planner.busy & (in_flight == 0)
                                 & (buffer.level == 0))
        return m


class AxiWriter(wiring.Component):
    """Writes commands (address, bytes) with the beats of a data stream over AXI4 (AW, W, B).

    `data` must bring each command's beats in order (`length / beat_bytes` of them; `strb`
    bit `i` writes byte `i`). Bursts follow `spec.axi.bursts` (ID 0). A burst's W beats may
    start as soon as its AW is offered (before AWREADY), never before; at most `outstanding`
    bursts are in flight (AW offered, B not yet in). BREADY is always high.

    A BRESP other than OKAY sets `error` (sticky). `bytes` counts the bytes taken from `data`,
    `responses` the B responses (both wrap). `soft_reset` drops the command in progress,
    clears `error` and the counters, takes neither commands nor data until every burst in
    flight is finished (its missing W beats are sent with WSTRB 0, writing nothing, and its B
    response is taken and ignored), then the writer is `idle`. `idle`: no command in
    progress, every B response in.

    Parameters
    ----------
    config : spec.axi.AxiConfig
    """

    def __init__(self, config):
        self._config = _check_config(config)
        super().__init__({
            "cmd": In(stream.Signature(struct_layout(config.command_fields()))),
            "data": In(stream.Signature(struct_layout(config.write_fields()))),
            "m_axi": Out(AXI4Signature.of(config, read=False)),
            "soft_reset": In(1),
            "idle": Out(1),
            "error": Out(1),
            "bytes": Out(config.counter_bits),
            "responses": Out(config.counter_bits),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        axi = self.m_axi
        m = Module()
        m.submodules.planner = planner = BurstPlanner(cfg)
        wiring.connect(m, wiring.flipped(self.cmd), planner.cmd)
        # AWLEN of each burst whose W beats are not all sent (at most `outstanding`)
        m.submodules.lengths = lengths = fifo.SyncFIFO(width=8, depth=cfg.outstanding)

        in_flight = Signal(range(cfg.outstanding + 1))    # AW offered, B not yet in
        flush = _Flush(m, self.soft_reset, in_flight == 0)
        m.d.comb += planner.flush.eq(flush.flush)

        burst = planner.burst
        issue = Signal()
        m.d.comb += [
            issue.eq(burst.valid & ~flush.flush & (in_flight < cfg.outstanding)
                     & (~axi.awvalid | axi.awready)),
            burst.ready.eq(issue),
            axi.awid.eq(0), axi.awsize.eq(cfg.size), axi.awburst.eq(AXI_BURST_INCR),
            axi.awcache.eq(AXI_CACHE), axi.awprot.eq(AXI_PROT),
            lengths.w_en.eq(issue), lengths.w_data.eq(burst.payload.beats - 1),
        ]
        with m.If(~axi.awvalid | axi.awready):
            m.d.sync += axi.awvalid.eq(issue)
        with m.If(issue):
            m.d.sync += [axi.awaddr.eq(burst.payload.addr),
                         axi.awlen.eq(burst.payload.beats - 1)]

        # W: a register loaded from `data` (or, while flushing, with an empty beat)
        beat = Signal(8)                                  # beat of the current W burst
        w_free, w_last = Signal(), Signal()
        from_data, filler = Signal(), Signal()
        m.d.comb += [
            w_free.eq(~axi.wvalid | axi.wready),
            w_last.eq(beat == lengths.r_data),
            self.data.ready.eq(lengths.r_rdy & w_free & ~flush.flush),
            from_data.eq(self.data.valid & self.data.ready),
            filler.eq(lengths.r_rdy & w_free & flush.flush),
            lengths.r_en.eq((from_data | filler) & w_last),
        ]
        with m.If(w_free):
            m.d.sync += axi.wvalid.eq(from_data | filler)
        with m.If(from_data | filler):
            m.d.sync += [
                axi.wdata.eq(Mux(filler, 0, self.data.payload.data)),
                axi.wstrb.eq(Mux(filler, 0, self.data.payload.strb)),
                axi.wlast.eq(w_last),
                beat.eq(Mux(w_last, 0, beat + 1)),
            ]

        b_take = Signal()
        m.d.comb += [axi.bready.eq(1), b_take.eq(axi.bvalid)]
        m.d.sync += in_flight.eq(in_flight + issue - b_take)
        with m.If(self.soft_reset):
            m.d.sync += [self.error.eq(0), self.bytes.eq(0), self.responses.eq(0)]
        with m.Else():
            with m.If(from_data):
                m.d.sync += self.bytes.eq(self.bytes + cfg.beat_bytes)
            with m.If(b_take & ~flush.flush):
                m.d.sync += self.responses.eq(self.responses + 1)
                with m.If(axi.bresp != AXI_RESP_OKAY):
                    m.d.sync += self.error.eq(1)
        m.d.comb += self.idle.eq(~flush.flush & ~planner.busy & (in_flight == 0))
        return m


class AxiMaster(wiring.Component):
    """A reader and a writer on one AXI4 port `m_axi`: reads and writes are independent.

    The reader's ports are prefixed `read_`, the writer's `write_` (`read_cmd`, `read_data`,
    `write_cmd`, `write_data`, `read_error`, ...); one `soft_reset` restarts both.

    Parameters
    ----------
    config : spec.axi.AxiConfig
    """

    def __init__(self, config):
        self._config = _check_config(config)
        command = stream.Signature(struct_layout(config.command_fields()))
        super().__init__({
            "read_cmd": In(command),
            "read_data": Out(stream.Signature(struct_layout(config.read_fields()))),
            "write_cmd": In(command),
            "write_data": In(stream.Signature(struct_layout(config.write_fields()))),
            "m_axi": Out(AXI4Signature.of(config)),
            "soft_reset": In(1),
            "read_idle": Out(1), "read_error": Out(1), "read_bytes": Out(config.counter_bits),
            "write_idle": Out(1), "write_error": Out(1),
            "write_bytes": Out(config.counter_bits),
            "write_responses": Out(config.counter_bits),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = AxiReader(self._config)
        m.submodules.writer = writer = AxiWriter(self._config)
        wiring.connect(m, wiring.flipped(self.read_cmd), reader.cmd)
        wiring.connect(m, reader.data, wiring.flipped(self.read_data))
        wiring.connect(m, wiring.flipped(self.write_cmd), writer.cmd)
        wiring.connect(m, wiring.flipped(self.write_data), writer.data)
        _forward(m, self.m_axi, reader.m_axi)
        _forward(m, self.m_axi, writer.m_axi)
        m.d.comb += [
            reader.soft_reset.eq(self.soft_reset), writer.soft_reset.eq(self.soft_reset),
            self.read_idle.eq(reader.idle), self.read_error.eq(reader.error),
            self.read_bytes.eq(reader.bytes),
            self.write_idle.eq(writer.idle), self.write_error.eq(writer.error),
            self.write_bytes.eq(writer.bytes), self.write_responses.eq(writer.responses),
        ]
        return m

