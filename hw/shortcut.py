"""Membrane-shortcut datapath: a branch's accumulations, aligned and biased, plus the residual."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.shortcut import SHORTCUT_OUT_FIFO_DEPTH, ShortcutConfig, ShortcutParams

from .common import saturate, struct_layout
from .sae_drain import pack_words

__all__ = ["Shortcut"]


class Shortcut(wiring.Component):
    """`out = sat(residual + sat((acc << shift) + bias))` per channel, token by token.

    Ports: `branch` (`ShortcutConfig.branch_fields`, an accumulate engine's output), `residual`
    (`stream_fields`; absent when `config.residual` is false) and `o` (`stream_fields`).

    The residual goes into a buffer of one frame (`config.buffer_words` beats, at least 3, a
    block RAM FIFO), so the block input can stream on into the branch while the branch
    accumulates; a beat leaves when the branch beat of the same place arrives. The shift of
    each lane is a multiplexer over the shifts its channels use (wiring alone when there is
    one), the biases are read from a small memory by the beat's group: shifts and adds, no
    multiplier.

    Pipeline: pair (branch beat + buffered residual beat), shift, add bias and saturate, add the
    residual and saturate, then an output FIFO under a credit counter, so a stalled output
    stops the inputs without a combinational path from `o.ready` (see
    `ShortcutConfig.LATENCY`).

    Parameters
    ----------
    config : spec.ShortcutConfig
    params : spec.ShortcutParams
    """

    def __init__(self, config, params):
        if not isinstance(config, ShortcutConfig):
            raise TypeError(f"config must be a ShortcutConfig, not {config!r}")
        if not isinstance(params, ShortcutParams):
            raise TypeError(f"params must be ShortcutParams, not {params!r}")
        self._config = config
        self._params = ShortcutParams.checked(config, params.shift, params.bias)
        ports = {name: In(stream.Signature(struct_layout(fields)))
                 for name, fields in config.input_ports().items()}
        ports["o"] = Out(stream.Signature(struct_layout(config.stream_fields())))
        super().__init__(ports)

    @property
    def config(self):
        return self._config

    def _lane_values(self, values, lane):
        """Per-group values of one lane (padding channels: 0)."""
        cfg = self._config
        return [int(values[g * cfg.lanes + lane]) if g * cfg.lanes + lane < cfg.channels else 0
                for g in range(cfg.groups)]

    def elaborate(self, platform):
        cfg, prm = self._config, self._params
        lanes, groups, ab, bits = cfg.lanes, cfg.groups, cfg.acc_bits, cfg.bits
        m = Module()

        # -- credits: a beat is taken only when the output FIFO will have room for it ---------
        depth = SHORTCUT_OUT_FIFO_DEPTH
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(width=lanes * bits + 2,
                                                                 depth=depth)
        outstanding = Signal(range(depth + 1))
        pop = Signal()
        room = Signal()
        fire = Signal()
        m.d.comb += room.eq(outstanding < depth)
        m.d.sync += outstanding.eq(outstanding + fire - pop)

        # -- pairing: a branch beat with the oldest buffered residual beat ---------------------
        branch = self.branch.payload
        if cfg.residual:
            m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=lanes * bits,
                                                                 depth=cfg.buffer_words)
            m.d.comb += [
                buffer.w_data.eq(self.residual.payload.x.as_value()),
                buffer.w_en.eq(self.residual.valid),
                self.residual.ready.eq(buffer.w_rdy),
                self.branch.ready.eq(room & buffer.r_rdy),
                buffer.r_en.eq(room & self.branch.valid),
                fire.eq(self.branch.valid & room & buffer.r_rdy),
            ]
        else:
            m.d.comb += [self.branch.ready.eq(room), fire.eq(self.branch.valid & room)]

        g = Signal(range(max(2, groups)))       # the group of the beat being paired
        if groups > 1:
            with m.If(fire):
                m.d.sync += g.eq(Mux(g == groups - 1, 0, g + 1))

        # -- stage 1: shift each lane by its channel's shift -----------------------------------
        wide = ab + max(0, int(prm.shift.max()))
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_moved = [Signal(signed(wide), name=f"s1_moved{j}") for j in range(lanes)]
        s1_res = Signal(lanes * bits)
        m.d.sync += [s1_valid.eq(fire), s1_first.eq(branch.first), s1_last.eq(branch.last)]
        if cfg.residual:
            m.d.sync += s1_res.eq(buffer.r_data)
        for j in range(lanes):
            acc = branch.acc[j]
            shifts = self._lane_values(prm.shift, j)
            options = sorted(set(shifts))
            moved = [acc << s if s >= 0 else acc >> -s for s in options]
            if len(options) == 1:
                value = moved[0]
            else:
                pick = Array(Const(options.index(s), range(len(options))) for s in shifts)[g]
                value = Array(moved)[pick]
            m.d.sync += s1_moved[j].eq(value)

        # -- stage 2: add the bias (read by group during stage 1), saturate --------------------
        if groups > 1:
            bmem = memory.Memory(shape=unsigned(lanes * bits), depth=groups, init=[
                pack_words([self._lane_values(prm.bias, j)[gg] for j in range(lanes)], bits)
                for gg in range(groups)])
            m.submodules.bmem = bmem
            b_rd = bmem.read_port()
            m.d.comb += b_rd.addr.eq(g)
            bias_word = b_rd.data
        else:
            bias_word = Const(pack_words([self._lane_values(prm.bias, j)[0]
                                          for j in range(lanes)], bits), lanes * bits)
        s2_valid, s2_first, s2_last = Signal(), Signal(), Signal()
        s2_branch = Signal(lanes * bits)
        s2_res = Signal(lanes * bits)
        m.d.sync += [s2_valid.eq(s1_valid), s2_first.eq(s1_first), s2_last.eq(s1_last),
                     s2_res.eq(s1_res)]
        for j in range(lanes):
            bias = bias_word[j * bits:(j + 1) * bits].as_signed()
            m.d.sync += s2_branch[j * bits:(j + 1) * bits].eq(saturate(s1_moved[j] + bias, bits))

        # -- stage 3: add the residual, saturate; into the output FIFO -------------------------
        s3_valid = Signal()
        s3_word = Signal(lanes * bits + 2)
        outs = []
        for j in range(lanes):
            value = s2_branch[j * bits:(j + 1) * bits].as_signed()
            if cfg.residual:
                value = saturate(s2_res[j * bits:(j + 1) * bits].as_signed() + value, bits)
            outs.append(value)
        m.d.sync += [s3_valid.eq(s2_valid), s3_word.eq(Cat(*outs, s2_first, s2_last))]
        m.d.comb += [
            out_fifo.w_data.eq(s3_word),
            out_fifo.w_en.eq(s3_valid),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.as_value().eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
            pop.eq(out_fifo.r_rdy & self.o.ready),
        ]
        return m

