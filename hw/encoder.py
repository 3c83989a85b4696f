"""Spike encoder: dense spike beats in, address events out, so zeros cost nothing downstream."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from spec.sae import SAEConfig

from .common import struct_layout
from .scanner import lowest_set

__all__ = ["SpikeEncoder"]


class SpikeEncoder(wiring.Component):
    """Turns beats of `in_lanes` spikes into one address event per spike.

    Input beats follow `SAEConfig.input_fields` (pixels in raster order, `in_beats_per_pixel`
    beats each); events follow `SAEConfig.event_fields`: pixel `row`, `col` and `channel` of each
    spike, lowest channel first. A beat without spikes is consumed in one cycle and emits
    nothing, except that the frame's last beat always ends with an event marked `last` (a token
    with `spike = 0` when that beat had no spike), so the frame end reaches the engine.

    The unit counts pixels and beats itself; an input beat with `first` set restarts the count.
    Throughput: one event per cycle; a beat costs max(1, its spikes) cycles
    (`SAEConfig.encoder_cycles`). Latency: one cycle; every output field is a register.

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
        m = Module()

        # counters of the next input beat's place
        row = Signal(range(cfg.height))
        col = Signal(range(cfg.width))
        group = Signal(range(beats_pp))
        base = Signal(range(beats_pp * lanes))  # group * in_lanes, kept by addition
        first = self.i.payload.first
        eff_row, eff_col = Mux(first, 0, row), Mux(first, 0, col)
        eff_group, eff_base = Mux(first, 0, group), Mux(first, 0, base)

        # lanes past in_channels in a pixel's last beat are not spikes
        tail = cfg.in_channels - (beats_pp - 1) * lanes
        full = (1 << lanes) - 1
        valid_mask = Mux(eff_group == beats_pp - 1, (1 << tail) - 1, full)
        incoming = Signal(lanes)
        m.d.comb += incoming.eq(self.i.payload.spikes.as_value() & valid_mask)
        frame_end = (eff_row == cfg.height - 1) & (eff_col == cfg.width - 1) & \
            (eff_group == beats_pp - 1)

        # the event being emitted comes straight from registers: each handshake loads the next
        # spike of the beat (or the next beat), so no priority encoder sits on the output
        have = Signal()
        rest = Signal(lanes)       # spikes of the beat after the current one
        cur_base = Signal.like(base)
        cur_frame_end = Signal()
        out = self.o.payload
        final = Signal()           # the current event is its beat's last
        m.d.comb += self.o.valid.eq(have)

        def load(mask, base_value, frame_end_value):
            """Registers of the lowest spike of `mask`; the rest stays for the next events."""
            lowest, index = lowest_set(m, mask, lanes)
            beat_done = (mask & ~lowest) == 0
            return [
                rest.eq(mask & ~lowest),
                final.eq(beat_done),
                out.last.eq(frame_end_value & beat_done),
                out.lane.eq(index),
                out.channel.eq(base_value + index),
            ]

        done = self.o.valid & self.o.ready & final
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += load(rest, cur_base, cur_frame_end)
            with m.If(final):
                m.d.sync += have.eq(0)

        m.d.comb += self.i.ready.eq(~have | done)
        with m.If(self.i.valid & self.i.ready):
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
            # a frame-final beat without spikes is one token: lane and channel 0, spike 0
            m.d.sync += load(incoming, Mux(spiking, eff_base, 0), frame_end)
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
