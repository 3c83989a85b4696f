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
    """Payload of `BitPlaneStage.o`: the beat's magnitude bits, plane-major (bit
    `plane * in_lanes + lane` is bit `plane` of |value of lane|), the lanes' signs (`neg`, signed
    inputs only), `first` and `last`."""
    members = {"magnitude": config.in_lanes * config.in_bits}
    if config.in_signed:
        members["neg"] = config.in_lanes
    return data.StructLayout({**members, "first": 1, "last": 1})


class BitPlaneStage(wiring.Component):
    """Pipeline stage in front of the encoder for multi-bit inputs: registers each beat of
    `in_lanes` values (`SAEConfig.input_fields`) as magnitude bits, plane-major, and a sign bit
    per lane (`plane_layout`), so the negation of negative values is off the encoder's
    lowest-set-bit path.

    One beat per cycle; latency one cycle (`SAEConfig.input_latency`).

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
        m = Module()
        values = [self.i.payload.values[j] for j in range(cfg.in_lanes)]
        if cfg.in_signed:
            # |x| fits in_bits unsigned bits, -2**(in_bits-1) included
            magnitudes = [Mux(v[-1], -v, v)[:cfg.in_bits] for v in values]
        else:
            magnitudes = values
        planes = Cat(*(mag[b] for b in range(cfg.in_bits) for mag in magnitudes))
        out = self.o.payload
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += [
                self.o.valid.eq(self.i.valid),
                out.magnitude.eq(planes),
                out.first.eq(self.i.payload.first),
                out.last.eq(self.i.payload.last),
            ]
            if cfg.in_signed:
                m.d.sync += out.neg.eq(Cat(*(v[-1] for v in values)))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        return m


class SpikeEncoder(wiring.Component):
    """Turns beats of `in_lanes` spikes into one address event per spike.

    Input beats follow `SAEConfig.input_fields` (pixels in raster order, `in_beats_per_pixel`
    beats each); events follow `SAEConfig.event_fields`: pixel `row`, `col` and `channel` of each
    spike, lowest channel first. A beat without spikes is consumed in one cycle and emits
    nothing, except that the frame's last beat always ends with an event marked `last` (a token
    with `spike = 0` when that beat had no spike), so the frame end reaches the engine.

    With `in_bits > 1` a `BitPlaneStage` first turns each beat into `in_lanes * in_bits`
    magnitude bits, plane-major, and the encoder scans those: one event per set bit, lowest bit
    index `plane * in_lanes + lane` first (plane 0 lanes ascending, then plane 1, ...), with
    its `plane` and, for signed inputs, the lane's sign as `neg`.

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
        width = lanes * cfg.in_bits        # bits scanned per beat, plane-major
        m = Module()
        if multi:
            m.submodules.planes = stage = BitPlaneStage(cfg)
            wiring.connect(m, wiring.flipped(self.i), stage.i)
            src, src_bits = stage.o, stage.o.payload.magnitude
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

        # lanes past in_channels in a pixel's last beat are not spikes (in every plane)
        tail = cfg.in_channels - (beats_pp - 1) * lanes
        full = (1 << width) - 1
        tail_mask = sum(((1 << tail) - 1) << (b * lanes) for b in range(cfg.in_bits))
        valid_mask = Mux(eff_group == beats_pp - 1, tail_mask, full)
        incoming = Signal(width)
        m.d.comb += incoming.eq(src_bits & valid_mask)
        frame_end = (eff_row == cfg.height - 1) & (eff_col == cfg.width - 1) & \
            (eff_group == beats_pp - 1)

        # the event being emitted comes straight from registers: each handshake loads the next
        # spike of the beat (or the next beat), so no priority encoder sits on the output
        have = Signal()
        rest = Signal(width)       # spikes of the beat after the current one
        cur_base = Signal.like(base)
        cur_frame_end = Signal()
        out = self.o.payload
        final = Signal()           # the current event is its beat's last
        m.d.comb += self.o.valid.eq(have)

        if cfg.in_signed:
            rest_neg = Signal(lanes)   # signs of the beat's lanes, beside `rest`
        lane_bits = (lanes - 1).bit_length()

        def load(mask, base_value, frame_end_value, neg=None):
            """Registers of the lowest spike of `mask`; the rest stays for the next events."""
            lowest, index = lowest_set(m, mask, width)
            beat_done = (mask & ~lowest) == 0
            fields = [
                rest.eq(mask & ~lowest),
                final.eq(beat_done),
                out.last.eq(frame_end_value & beat_done),
            ]
            if not multi:
                return fields + [out.lane.eq(index), out.channel.eq(base_value + index)]
            # in_lanes is a power of two: the low bits of the index are the lane
            lane = index[:lane_bits] if lane_bits else 0
            fields += [
                out.lane.eq(lane),
                out.plane.eq(index[lane_bits:]),
                out.channel.eq(base_value + lane),
            ]
            if cfg.in_signed:
                fields.append(out.neg.eq(neg.bit_select(lane, 1) if lane_bits else neg[0]))
            return fields

        done = self.o.valid & self.o.ready & final
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += load(rest, cur_base, cur_frame_end,
                             rest_neg if cfg.in_signed else None)
            with m.If(final):
                m.d.sync += have.eq(0)

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
            if cfg.in_signed:
                m.d.sync += rest_neg.eq(src.payload.neg)
            m.d.sync += load(incoming, Mux(spiking, eff_base, 0), frame_end,
                             src.payload.neg if cfg.in_signed else None)
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
        return m
