"""Spike encoder: dense spike beats in, address events out, so zeros cost nothing downstream.
Multi-bit inputs become one event per set magnitude bit (`BitPlaneStage` splits them)."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.sae import SAEConfig

from .common import struct_layout
from .scanner import lowest_set

__all__ = ["SpikeEncoder", "BitPlaneStage"]


def plane_layout(config):
    """Payload of `BitPlaneStage.o`, one plane word: the set bits of one magnitude plane of a
    beat (`bits`, bit `lane` is bit `plane` of |value of lane|), its `plane`, the lanes' signs
    (`neg`, signed inputs only), `end` (the beat's last word), and the beat's `first` and
    `last`."""
    members = {"bits": config.in_lanes, "plane": range(config.in_bits)}
    if config.in_signed:
        members["neg"] = config.in_lanes
    return data.StructLayout({**members, "end": 1, "first": 1, "last": 1})


class BitPlaneStage(wiring.Component):
    """Input stage of the encoder for multi-bit inputs: turns each beat of `in_lanes` values
    (`SAEConfig.input_fields`) into plane words (`plane_layout`), one per magnitude plane with a
    set bit, lowest plane first, the last marked `end`; a beat without any set bit is one empty
    word marked `end`. Lanes past `in_channels` in a pixel's last beat are masked (the stage
    counts beats per pixel itself; `first` restarts the count).

    Two registers deep: the beat's magnitude planes, signs and a non-empty flag per plane, then
    the word, chosen by the lowest flag still set. So the negation of negative values and the
    choice of the plane are off the encoder's lowest-set-bit path, and the encoder scans words of
    `in_lanes` bits as it scans spikes. It hands on one word per cycle and takes the next beat
    in the cycle its last word leaves, so a beat costs the encoder max(1, its set bits) cycles
    as before. Latency two cycles (`SAEConfig.input_latency`).

    Parameters
    ----------
    config : spec.SAEConfig
        With `in_bits > 1`.
    """

    def __init__(self, config):
        if not isinstance(config, SAEConfig) or config.in_bits < 2:
            raise TypeError(f"config must be an SAEConfig with in_bits > 1, not {config!r}")
        self._config = config
        super().__init__({
            "i": In(stream.Signature(struct_layout(config.input_fields()))),
            "o": Out(stream.Signature(plane_layout(config))),
        })

    def elaborate(self, platform):
        cfg = self._config
        lanes, planes, beats_pp = cfg.in_lanes, cfg.in_bits, cfg.in_beats_per_pixel
        m = Module()
        src = self.i.payload

        # beats per pixel, counted here to mask the padding lanes of a pixel's last beat
        group = Signal(range(beats_pp))
        eff_group = Mux(src.first, 0, group)
        tail = cfg.in_channels - (beats_pp - 1) * lanes
        values = [src.values[j] for j in range(lanes)]
        if cfg.in_signed:
            # |x| fits in_bits unsigned bits, -2**(in_bits-1) included
            magnitudes = [Mux(v[-1], -v, v)[:planes] for v in values]
        else:
            magnitudes = [v[:planes] for v in values]
        if tail < lanes:
            pad = eff_group == beats_pp - 1
            magnitudes = [Mux(pad, 0, mag) if j >= tail else mag
                          for j, mag in enumerate(magnitudes)]
        rows = [Cat(*(mag[b] for mag in magnitudes)) for b in range(planes)]

        # register 1: the beat being split
        held = Signal()
        bits = Signal(lanes * planes)       # plane-major
        busy = Signal(planes)               # planes with a set bit not yet handed on
        neg = Signal(lanes) if cfg.in_signed else None
        first, last = Signal(), Signal()
        plane_hot, plane = lowest_set(m, busy, planes)
        word = Signal(lanes)
        m.d.comb += word.eq(_or_all(bits[b * lanes:(b + 1) * lanes] & plane_hot[b].replicate(lanes)
                                    for b in range(planes)))
        remaining = busy & ~plane_hot
        ends = remaining == 0               # also for a beat without any set bit

        # register 2: the word
        out = self.o.payload
        move = ~self.o.valid | self.o.ready
        with m.If(move):
            m.d.sync += self.o.valid.eq(held)
            with m.If(held):
                m.d.sync += [out.bits.eq(word), out.plane.eq(plane), out.end.eq(ends),
                             out.first.eq(first), out.last.eq(last), busy.eq(remaining)]
                if cfg.in_signed:
                    m.d.sync += out.neg.eq(neg)
                with m.If(ends):
                    m.d.sync += held.eq(0)
        m.d.comb += self.i.ready.eq(~held | (move & ends))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                held.eq(1), bits.eq(Cat(*rows)), busy.eq(Cat(*(r.any() for r in rows))),
                first.eq(src.first), last.eq(src.last),
                group.eq(Mux(eff_group == beats_pp - 1, 0, eff_group + 1)),
            ]
            if cfg.in_signed:
                m.d.sync += neg.eq(Cat(*(v[-1] for v in values)))
        return m


def _or_all(values):
    """The OR of `values`, as a balanced tree."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


class SpikeEncoder(wiring.Component):
    """Turns beats of `in_lanes` spikes into one address event per spike.

    Input beats follow `SAEConfig.input_fields` (pixels in raster order, `in_beats_per_pixel`
    beats each); events follow `SAEConfig.event_fields`: pixel `row`, `col` and `channel` of each
    spike, lowest channel first. A beat without spikes is consumed in one cycle and emits
    nothing, except that the frame's last beat always ends with an event marked `last` (a token
    with `spike = 0` when that beat had no spike), so the frame end reaches the engine.

    With `in_bits > 1` a `BitPlaneStage` first turns each beat into plane words of `in_lanes`
    magnitude bits, and the encoder scans those as it scans spike beats: one event per set bit,
    lowest bit index `plane * in_lanes + lane` first (plane 0 lanes ascending, then plane 1,
    ...), with its `plane` and, for signed inputs, the lane's sign as `neg`. The pixel and beat
    counts move on at a beat's last word (`end`).

    The unit counts pixels and beats itself; an input beat with `first` set restarts the count.
    Throughput: one event per cycle; a beat costs max(1, its events) cycles
    (`SAEConfig.encoder_cycles`). Latency: one cycle, plus `SAEConfig.input_latency`; every
    output field is a register.

    Parameters
    ----------
    config : spec.SAEConfig
    """

    def __init__(self, config):
        if not isinstance(config, SAEConfig):
            raise TypeError(f"config must be an SAEConfig, not {config!r}")
        self._config = config
        super().__init__({
            "i": In(stream.Signature(struct_layout(config.input_fields()))),
            "o": Out(stream.Signature(struct_layout(config.event_fields()))),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        lanes, beats_pp = cfg.in_lanes, cfg.in_beats_per_pixel
        multi = cfg.in_bits > 1
        width = lanes                      # bits scanned per word (a beat, or a plane of one)
        m = Module()
        if multi:
            m.submodules.planes = stage = BitPlaneStage(cfg)
            wiring.connect(m, wiring.flipped(self.i), stage.i)
            src, src_bits = stage.o, stage.o.payload.bits
            beat_end = src.payload.end      # the word ends its beat
        else:
            src, src_bits = self.i, self.i.payload.spikes.as_value()

        # counters of the next input beat's place
        row = Signal(range(cfg.height))
        col = Signal(range(cfg.width))
        group = Signal(range(beats_pp))
        base = Signal(range(beats_pp * lanes))  # group * in_lanes, kept by addition
        first = src.payload.first
        eff_row, eff_col = Mux(first, 0, row), Mux(first, 0, col)
        eff_group, eff_base = Mux(first, 0, group), Mux(first, 0, base)

        # lanes past in_channels in a pixel's last beat are not spikes (the multi-bit input
        # stage masks them itself)
        tail = cfg.in_channels - (beats_pp - 1) * lanes
        incoming = Signal(width)
        if multi:
            m.d.comb += incoming.eq(src_bits)
        else:
            valid_mask = Mux(eff_group == beats_pp - 1, (1 << tail) - 1, (1 << width) - 1)
            m.d.comb += incoming.eq(src_bits & valid_mask)
        frame_end = (eff_row == cfg.height - 1) & (eff_col == cfg.width - 1) & \
            (eff_group == beats_pp - 1)
        if multi:
            frame_end = frame_end & beat_end

        # the event being emitted comes straight from registers: each handshake loads the next
        # spike of the beat (or the next beat), so no priority encoder sits on the output
        have = Signal()
        rest = Signal(width)       # spikes of the beat after the current one
        cur_base = Signal.like(base)
        cur_frame_end = Signal()
        out = self.o.payload
        final = Signal()           # the current event is its beat's last
        m.d.comb += self.o.valid.eq(have)

        if multi:
            rest_plane = Signal(range(cfg.in_bits))  # the word's plane, beside `rest`
        if cfg.in_signed:
            rest_neg = Signal(lanes)   # signs of the word's lanes, beside `rest`

        def load(mask, base_value, frame_end_value, plane=None, neg=None):
            """Registers of the lowest spike of `mask`; the rest stays for the next events."""
            lowest, index = lowest_set(m, mask, width)
            beat_done = (mask & ~lowest) == 0
            fields = [
                rest.eq(mask & ~lowest),
                final.eq(beat_done),
                out.last.eq(frame_end_value & beat_done),
            ]
            fields += [out.lane.eq(index), out.channel.eq(base_value + index)]
            if multi:
                fields.append(out.plane.eq(plane))
            if cfg.in_signed:
                # the chosen lane's sign, from the one-hot bit (in parallel with the index)
                fields.append(out.neg.eq((neg & lowest).any()))
            return fields

        done = self.o.valid & self.o.ready & final
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += load(rest, cur_base, cur_frame_end, rest_plane if multi else None,
                             rest_neg if cfg.in_signed else None)
            with m.If(final):
                m.d.sync += have.eq(0)

        def advance():
            """Counters of the beat after the one taken (at `eff_*`)."""
            last_group = eff_group == beats_pp - 1
            m.d.sync += [
                group.eq(Mux(last_group, 0, eff_group + 1)),
                base.eq(Mux(last_group, 0, eff_base + lanes)),
            ]
            with m.If(last_group):
                last_col = eff_col == cfg.width - 1
                m.d.sync += col.eq(Mux(last_col, 0, eff_col + 1))
                with m.If(last_col):
                    m.d.sync += row.eq(Mux(eff_row == cfg.height - 1, 0, eff_row + 1))
                with m.Else():
                    m.d.sync += row.eq(eff_row)
            with m.Else():
                m.d.sync += [col.eq(eff_col), row.eq(eff_row)]

        m.d.comb += src.ready.eq(~have | done)
        with m.If(src.valid & src.ready):
            spiking = incoming != 0
            m.d.sync += [
                have.eq(spiking | frame_end),
                out.spike.eq(spiking),
                cur_frame_end.eq(frame_end),
                out.row.eq(eff_row),
                out.col.eq(eff_col),
                out.group.eq(Mux(spiking, eff_group, 0)),
                cur_base.eq(eff_base),
            ]
            # a frame-final beat without spikes is one token: lane and channel 0, spike 0 (and
            # plane 0, neg 0: lane 0 is a channel, its value is 0 when no bit is set)
            if multi:
                m.d.sync += rest_plane.eq(src.payload.plane)
            if cfg.in_signed:
                m.d.sync += rest_neg.eq(src.payload.neg)
            m.d.sync += load(incoming, Mux(spiking, eff_base, 0), frame_end,
                             src.payload.plane if multi else None,
                             src.payload.neg if cfg.in_signed else None)
            if multi:
                with m.If(~beat_end):    # another word of this beat follows: hold its place
                    m.d.sync += [group.eq(eff_group), base.eq(eff_base), col.eq(eff_col),
                                 row.eq(eff_row)]
                with m.Else():
                    advance()
            else:
                advance()
        return m
