"""LIF-neuron array: membranes in block RAM, `lanes` neurons updated per cycle."""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.lif import LIF_HAZARD_DISTANCE, LIF_LATENCY, LIFConfig

from .common import saturate, struct_layout

__all__ = ["LIFArray"]

#: Output FIFO depth: one more than the beats that can be in flight at full rate, so the credit
#: counter never throttles an unstalled stream.
_FIFO_DEPTH = LIF_LATENCY + 2


class LIFArray(wiring.Component):
    """An array of `config.neurons` LIF neurons behind two streams.

    Input beats carry `lanes` signed currents (`x`) and `first`/`last` sample markers; output
    beats carry `lanes` spikes, optionally the `lanes` membranes after reset (`v`), and the
    `first`/`last` markers of the sample. Beat `b` of a timestep holds neurons `b * lanes ..
    b * lanes + lanes - 1`; lanes past the last neuron are ignored and output as 0.

    The unit counts beats and timesteps itself; an input beat with `first` set restarts the
    count (a new sample begins), and the output markers come from the count. Membranes live in a
    `lib.memory.Memory` of `ceil(neurons / lanes)` words of `lanes * v_bits` bits; per-channel
    thresholds and biases in a read-only memory holding one word per beat of the repeating
    channel pattern (`config.param_period` words), or in constants when all channels agree.

    The datapath is a free-running six-stage pipeline without stall enables (RAM read, RAM
    output register, input charge, leak, saturate, fire and reset; then the membrane write-back)
    feeding an output FIFO. A credit counter lowers `i.ready` before the FIFO could overflow.
    One beat per cycle is sustained; latency and the cycle model are in `spec.LIFConfig`.

    Parameters
    ----------
    config : spec.LIFConfig

    Attributes
    ----------
    i : In(stream.Signature(...))
    o : Out(stream.Signature(...))
    """

    def __init__(self, config):
        if not isinstance(config, LIFConfig):
            raise TypeError(f"config must be a LIFConfig, not {config!r}")
        self._config = config
        super().__init__({
            "i": In(stream.Signature(struct_layout(config.input_fields()))),
            "o": Out(stream.Signature(struct_layout(config.output_fields()))),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        lanes, beats, steps = cfg.lanes, cfg.beats_per_step, cfg.timesteps
        vb, frac, shift = cfg.v_bits, cfg.frac_bits, cfg.shift
        vr = Const(cfg.v_reset_fixed, signed(vb))
        m = Module()

        # With T = 1 every membrane starts at v_reset and is never read back: no memory.
        stateful = steps > 1
        if stateful:
            # Reads and writes never meet on one address in one cycle: the hazard check below
            # (or beats_per_step >= LIF_HAZARD_DISTANCE) guarantees it, so no bypass is needed.
            vmem = memory.Memory(shape=unsigned(lanes * vb), depth=beats, init=[],
                                 attrs={"no_rw_check": 1})
            m.submodules.vmem = vmem
            v_rd = vmem.read_port()
            v_wr = vmem.write_port()

        # -- input side: counters, hazard check, credits ---------------------------------------
        b_cnt = Signal(range(beats))
        t_cnt = Signal(range(steps))
        period = cfg.param_period
        p_cnt = Signal(range(period))
        outstanding = Signal(range(_FIFO_DEPTH + 1))

        first_in = self.i.payload.first
        eff_b = Mux(first_in, 0, b_cnt)
        eff_t = Mux(first_in, 0, t_cnt)
        eff_p = Mux(first_in, 0, p_cnt)
        accept = Signal()
        pop = Signal()

        stages = 6  # valid[k], addr[k]: the beat in stage k (index 0 unused)
        valid = [None] + [Signal(name=f"s{k}_valid") for k in range(1, stages + 1)]
        addr = [None] + [Signal(range(beats), name=f"s{k}_addr") for k in range(1, stages + 1)]

        hazard = Const(0)
        if stateful and beats < LIF_HAZARD_DISTANCE:
            # A membrane read must not overtake the write-back of the same address.
            in_flight = Cat(*(valid[k] & (addr[k] == b_cnt) for k in range(1, stages + 1)))
            hazard = (t_cnt != 0) & in_flight.any()
        m.d.comb += [
            self.i.ready.eq((outstanding < _FIFO_DEPTH) & ~hazard),
            accept.eq(self.i.valid & self.i.ready),
        ]
        m.d.sync += outstanding.eq(outstanding + accept - pop)

        with m.If(accept):
            last_beat = eff_b == beats - 1
            m.d.sync += b_cnt.eq(Mux(last_beat, 0, eff_b + 1))
            m.d.sync += p_cnt.eq(Mux(last_beat | (eff_p == period - 1), 0, eff_p + 1))
            with m.If(last_beat):
                m.d.sync += t_cnt.eq(Mux(eff_t == steps - 1, 0, eff_t + 1))
            with m.Else():
                m.d.sync += t_cnt.eq(eff_t)

        # -- stage 1: beat registered while the RAMs read ----------------------------------
        x_bits = cfg.in_bits
        s1_x = Signal(unsigned(lanes * x_bits))
        s1_t0, s1_first, s1_last, s1_tail = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [
            valid[1].eq(accept),
            addr[1].eq(eff_b),
            s1_x.eq(self.i.payload.x.as_value()),
            s1_t0.eq(eff_t == 0),
            s1_first.eq((eff_t == 0) & (eff_b == 0)),
            s1_last.eq((eff_t == steps - 1) & (eff_b == beats - 1)),
            s1_tail.eq(eff_b == beats - 1),
        ]

        if cfg.uniform_parameters:
            th_consts = [Const(cfg.v_th_fixed[0], signed(vb))] * lanes
            bias_consts = [Const(cfg.bias_fixed[0], signed(vb))] * lanes
            s2_th, s2_bias = th_consts, bias_consts
        else:
            words = []
            th_f, bias_f = cfg.v_th_fixed, cfg.bias_fixed
            for p in range(period):
                word = 0
                for j in range(lanes):
                    c = (p * lanes + j) % cfg.channels
                    word |= (th_f[c] & ((1 << vb) - 1)) << (2 * j * vb)
                    word |= (bias_f[c] & ((1 << vb) - 1)) << ((2 * j + 1) * vb)
                words.append(word)
            pmem = memory.Memory(shape=unsigned(2 * lanes * vb), depth=period, init=words)
            m.submodules.pmem = pmem
            p_rd = pmem.read_port()
            m.d.comb += p_rd.addr.eq(eff_p)
            s2_param = Signal(unsigned(2 * lanes * vb))
            m.d.sync += s2_param.eq(p_rd.data)
            s2_th = [s2_param[2 * j * vb:(2 * j + 1) * vb].as_signed() for j in range(lanes)]
            s2_bias = [s2_param[(2 * j + 1) * vb:(2 * j + 2) * vb].as_signed()
                       for j in range(lanes)]

        # -- stage 2: RAM outputs registered before any logic ---------------------------------
        s2_v = Signal(unsigned(lanes * vb))
        s2_x = Signal.like(s1_x)
        s2_t0, s2_first, s2_last, s2_tail = Signal(), Signal(), Signal(), Signal()
        if stateful:
            m.d.comb += v_rd.addr.eq(eff_b)
            m.d.sync += s2_v.eq(v_rd.data)
        m.d.sync += [
            valid[2].eq(valid[1]), addr[2].eq(addr[1]),
            s2_x.eq(s1_x),
            s2_t0.eq(s1_t0), s2_first.eq(s1_first), s2_last.eq(s1_last), s2_tail.eq(s1_tail),
        ]

        # markers travel with the beat through the remaining stages
        marks = [(s2_first, s2_last, s2_tail)]
        for k in range(3, stages + 1):
            prev = marks[-1]
            cur = (Signal(name=f"s{k}_first"), Signal(name=f"s{k}_last"),
                   Signal(name=f"s{k}_tail"))
            m.d.sync += [cur[n].eq(prev[n]) for n in range(3)]
            m.d.sync += [valid[k].eq(valid[k - 1]), addr[k].eq(addr[k - 1])]
            marks.append(cur)
        s6_first, s6_last, _ = marks[-1]
        s5_tail = marks[-2][2]

        s6_spikes = Signal(lanes)
        s6_vnew = [Signal(signed(vb), name=f"s6_v{j}") for j in range(lanes)]
        wide = signed(vb + 4)
        for j in range(lanes):
            th = s2_th[j]
            # stage 3: charge from the input, initial membrane at t = 0
            x = s2_x[j * x_bits:(j + 1) * x_bits].as_signed()
            v_old = Mux(s2_t0, vr, s2_v[j * vb:(j + 1) * vb].as_signed()) if stateful else vr
            s3_charge = Signal(signed(vb), name=f"s3_charge{j}")
            s3_v = Signal(signed(vb), name=f"s3_v{j}")
            s3_vm = Signal(signed(vb + 1), name=f"s3_vm{j}")
            s3_th = Signal(signed(vb), name=f"s3_th{j}")
            m.d.sync += [
                s3_charge.eq(saturate((x << frac) + s2_bias[j], vb)),
                s3_v.eq(v_old),
                s3_vm.eq(v_old - vr),
                s3_th.eq(th),
            ]
            # stage 4: the leak term
            s4_a = Signal(wide, name=f"s4_a{j}")
            s4_b = Signal(wide, name=f"s4_b{j}")
            s4_th = Signal(signed(vb), name=f"s4_th{j}")
            if cfg.decay_input:
                m.d.sync += [s4_a.eq(s3_v), s4_b.eq((s3_charge - s3_vm) >> shift)]
            else:
                m.d.sync += [s4_a.eq(s3_v - (s3_vm >> shift)), s4_b.eq(s3_charge)]
            m.d.sync += s4_th.eq(s3_th)
            # stage 5: the charged membrane H
            s5_h = Signal(signed(vb), name=f"s5_h{j}")
            s5_th = Signal(signed(vb), name=f"s5_th{j}")
            m.d.sync += [s5_h.eq(saturate(s4_a + s4_b, vb)), s5_th.eq(s4_th)]
            # stage 6: fire and reset (one subtraction gives both the comparison and soft reset)
            diff = Signal(signed(vb + 1), name=f"s5_diff{j}")
            m.d.comb += diff.eq(s5_h - s5_th)
            fired = ~diff[-1]
            if cfg.reset == "hard":
                v_next = Mux(fired, vr, s5_h)
            else:
                v_next = Mux(fired, saturate(diff, vb), s5_h)
            live = Const(1) if j < cfg.tail_lanes else ~s5_tail
            m.d.sync += [
                s6_spikes[j].eq(fired & live),
                s6_vnew[j].eq(Mux(live, v_next, 0)),
            ]

        # -- write-back and output FIFO -------------------------------------------------------
        if stateful:
            m.d.comb += [
                v_wr.addr.eq(addr[stages]),
                v_wr.data.eq(Cat(*s6_vnew)),
                v_wr.en.eq(valid[stages]),
            ]
        out_layout = struct_layout(cfg.output_fields())
        out_word = Signal(out_layout)
        m.d.comb += [
            out_word.spikes.eq(s6_spikes),
            out_word.first.eq(s6_first),
            out_word.last.eq(s6_last),
        ]
        if cfg.expose_membrane:
            m.d.comb += out_word.v.eq(Cat(*s6_vnew))

        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(
            width=out_layout.size, depth=_FIFO_DEPTH)
        m.d.comb += [
            out_fifo.w_data.eq(out_word.as_value()),
            out_fifo.w_en.eq(valid[stages]),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
            pop.eq(out_fifo.r_rdy & self.o.ready),
        ]
        return m

