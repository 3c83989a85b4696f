# amaranth: UnusedElaboratable=no
"""`hw.scanner.WordScanner` in the Amaranth simulator: one event per spike, lowest lane first,
tags copied, `mark`/`final` on a word's last event (or on one `spike = 0` event of an empty
flagged word), one event per cycle plus one cycle per empty unflagged word, random stalls;
`lowest_set`.
"""

import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator
from amaranth_streams import run_ports

from hw.scanner import WordScanner, lowest_set
from spec.ports import Field, pack, unpack

TAG = {"a": 3, "b": 5}


def lane_bits(lanes):
    """Bits of the event's `lane` field: range(max(2, lanes)) as an unsigned shape."""
    return max(1, (max(2, lanes) - 1).bit_length())


def in_fields(lanes, tag=TAG):
    # StructLayout: first member in the low bits; the tag struct's members in order after
    return ([Field("bits", lanes), Field("mark", 1), Field("final", 1)]
            + [Field(f"tag_{name}", width) for name, width in tag.items()])


def out_fields(lanes, tag=TAG):
    return ([Field("lane", lane_bits(lanes)), Field("spike", 1), Field("end", 1),
             Field("final", 1)]
            + [Field(f"tag_{name}", width) for name, width in tag.items()])


def word(bits, mark=0, final=0, a=0, b=0):
    return {"bits": bits, "mark": mark, "final": final, "tag_a": a, "tag_b": b}


def event(lane, spike=1, end=0, final=0, a=0, b=0):
    return {"lane": lane, "spike": spike, "end": end, "final": final, "tag_a": a, "tag_b": b}


def reference(lanes, words, tag=TAG):
    """The events of `words` as the docstring describes them, and per word its cost in cycles
    (max(1, events))."""
    events, costs = [], []
    for w in words:
        tags = {f"tag_{name}": w[f"tag_{name}"] for name in tag}
        set_lanes = [i for i in range(lanes) if (w["bits"] >> i) & 1]
        if set_lanes:
            for n, lane in enumerate(set_lanes):
                last = n == len(set_lanes) - 1
                events.append({"lane": lane, "spike": 1, "end": w["mark"] & last,
                               "final": w["final"] & last, **tags})
        elif w["mark"] or w["final"]:
            events.append({"lane": 0, "spike": 0, "end": w["mark"], "final": w["final"],
                           **tags})
        costs.append(max(1, len(set_lanes) if set_lanes else int(w["mark"] or w["final"])))
    return events, costs


def scan(lanes, words, tag=TAG, *, n_events=None, **stalls):
    """Run `words` through a WordScanner; stops a few cycles after the expected event count
    (so surplus events are seen)."""
    if n_events is None:
        n_events = len(reference(lanes, words, tag)[0])
    after = [0]

    def done(run):
        if len(run.outputs) < n_events:
            return False
        after[0] += 1
        return after[0] > 8

    return run_ports(WordScanner(lanes, tag), {"i": (in_fields(lanes, tag), words)},
                     out_fields(lanes, tag), done=done, **stalls)


def random_words(lanes, count, seed, tag=TAG):
    rng = random.Random(seed)
    words = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.3:
            bits = 0
        elif kind < 0.4:
            bits = (1 << lanes) - 1
        else:
            density = rng.choice([0.1, 0.3, 0.7])
            bits = sum(1 << i for i in range(lanes) if rng.random() < density)
        words.append({"bits": bits, "mark": int(rng.random() < 0.3),
                      "final": int(rng.random() < 0.2),
                      **{f"tag_{n}": rng.randrange(1 << w) for n, w in tag.items()}})
    return words


# -- the layouts the fields above assume --------------------------------------------------------


@pytest.mark.parametrize("lanes", [1, 4, 5, 16])
def test_port_layouts(lanes):
    dut = WordScanner(lanes, TAG)
    i_layout = dut.i.payload.shape()
    o_layout = dut.o.payload.shape()
    assert i_layout.size == sum(f.width for f in in_fields(lanes))
    assert o_layout.size == sum(f.width for f in out_fields(lanes))
    assert [(n, i_layout[n].offset) for n in ("bits", "mark", "final", "tag")] == \
        [("bits", 0), ("mark", lanes), ("final", lanes + 1), ("tag", lanes + 2)]
    lb = lane_bits(lanes)
    assert [(n, o_layout[n].offset) for n in ("lane", "spike", "end", "final", "tag")] == \
        [("lane", 0), ("spike", lb), ("end", lb + 1), ("final", lb + 2), ("tag", lb + 3)]


# -- hand-made sequences ----------------------------------------------------------------------


def test_hand_sequence_events_and_cycles():
    words = [
        word(0b0101, a=1, b=2),                  # two events, lowest lane first
        word(0b0000, a=3, b=3),                  # empty, unflagged: nothing, one cycle
        word(0b0000, mark=1, a=4, b=4),          # empty, marked: one spike=0 event
        word(0b1000, mark=1, a=5, b=5),          # one event carrying end
        word(0b0000, final=1, a=6, b=6),         # empty, final: one spike=0 event
        word(0b1111, mark=1, final=1, a=7, b=31),
    ]
    want = [
        event(0, a=1, b=2), event(2, a=1, b=2),
        event(0, spike=0, end=1, a=4, b=4),
        event(3, end=1, a=5, b=5),
        event(0, spike=0, final=1, a=6, b=6),
        event(0, a=7, b=31), event(1, a=7, b=31), event(2, a=7, b=31),
        event(3, end=1, final=1, a=7, b=31),
    ]
    assert reference(4, words)[0] == want
    run = scan(4, words)
    assert run.outputs == want
    # words taken at 0 (2 events), 2 (empty: 1 cycle), 3, 4, 5 (1 event each), 6 (4 events);
    # each event one cycle after its word is taken, then one per cycle
    assert run.in_cycles == [0, 2, 3, 4, 5, 6]
    assert run.out_cycles == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert run.cycles == 11


def test_empty_unflagged_words_give_nothing():
    words = [word(0, a=1), word(0, a=2), word(0, a=3), word(0, final=1, a=4)]
    run = scan(4, words)
    assert run.outputs == [event(0, spike=0, final=1, a=4)]
    assert run.in_cycles == [0, 1, 2, 3]
    assert run.out_cycles == [4]


def test_only_empty_unflagged_words():
    # nothing at all comes out; every word is still taken, one per cycle
    words = [word(0, a=n) for n in range(5)]
    run = scan(4, words, n_events=0)
    assert run.outputs == []
    assert run.in_cycles == [0, 1, 2, 3, 4]


def test_mark_and_final_on_the_last_event_only():
    words = [word(0b10110, mark=1, final=1, a=2, b=9)]
    run = scan(5, words)
    assert run.outputs == [event(1, a=2, b=9), event(2, a=2, b=9),
                           event(4, end=1, final=1, a=2, b=9)]


def test_empty_word_with_both_flags():
    run = scan(16, [word(0, mark=1, final=1, a=7, b=17), word(1 << 15, a=1)])
    assert run.outputs == [event(0, spike=0, end=1, final=1, a=7, b=17), event(15, a=1)]
    assert run.out_cycles == [1, 2]


def test_lanes_1():
    words = [word(1, a=1), word(0, a=2), word(0, mark=1, a=3), word(1, mark=1, final=1, a=4),
             word(1, a=5)]
    run = scan(1, words)
    assert run.outputs == [event(0, a=1), event(0, spike=0, end=1, a=3),
                           event(0, end=1, final=1, a=4), event(0, a=5)]
    assert run.in_cycles == [0, 1, 2, 3, 4]
    assert run.out_cycles == [1, 3, 4, 5]


def test_full_16_lane_word_is_16_cycles():
    words = [word(0xFFFF, mark=1, a=1), word(0x8001, final=1, a=2)]
    run = scan(16, words)
    assert run.outputs == ([event(n, a=1) for n in range(15)] + [event(15, end=1, a=1)]
                           + [event(0, a=2), event(15, final=1, a=2)])
    assert run.in_cycles == [0, 16]
    assert run.out_cycles == list(range(1, 19))


def test_empty_tag():
    words = [{"bits": 0b11, "mark": 1, "final": 0}, {"bits": 0, "mark": 0, "final": 1}]
    run = scan(2, words, tag={})
    assert run.outputs == [{"lane": 0, "spike": 1, "end": 0, "final": 0},
                           {"lane": 1, "spike": 1, "end": 1, "final": 0},
                           {"lane": 0, "spike": 0, "end": 0, "final": 1}]


# -- random sequences ---------------------------------------------------------------------------


@pytest.mark.parametrize("lanes", [1, 2, 5, 16])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_words_without_stalls(lanes, seed):
    words = random_words(lanes, 60, seed)
    want, costs = reference(lanes, words)
    run = scan(lanes, words)
    assert run.outputs == want
    # timing: word i is taken once word i-1 has cost its cycles; events follow one per cycle
    taken = [sum(costs[:i]) for i in range(len(words))]
    assert run.in_cycles == taken
    outs = []
    for w, t in zip(words, taken, strict=True):
        n = bin(w["bits"]).count("1") or int(w["mark"] or w["final"])
        outs += [t + 1 + k for k in range(n)]
    assert run.out_cycles == outs
    last_events = bin(words[-1]["bits"]).count("1") or int(words[-1]["mark"]
                                                             or words[-1]["final"])
    if last_events:
        assert run.cycles == sum(costs) + 1


@pytest.mark.parametrize("lanes", [1, 16])
@pytest.mark.parametrize(("seed", "in_stall", "out_stall"),
                         [(0, 0.3, 0.6), (1, 0.6, 0.3), (2, 0.5, 0.5), (3, 0.0, 0.6)])
def test_random_words_with_random_stalls(lanes, seed, in_stall, out_stall):
    words = random_words(lanes, 60, 100 + seed)
    want, _ = reference(lanes, words)
    run = scan(lanes, words, in_stall=in_stall, out_stall=out_stall, seed=seed)
    assert run.outputs == want


@pytest.mark.parametrize("lanes", [1, 16])
def test_stream_rules_under_stalls(lanes):
    # an offered event stays offered and unchanged until taken; every word is taken once
    dut = WordScanner(lanes, TAG)
    words = random_words(lanes, 40, 7)
    want, _ = reference(lanes, words)
    fields_in = in_fields(lanes)
    packed = [pack(fields_in, w) for w in words]
    got = []
    rng = random.Random(lanes)

    async def bench(ctx):
        n, held = 0, None
        for _ in range(2000):
            if n == len(packed) and len(got) == len(want):
                break
            offer = n < len(packed) and rng.random() < 0.7
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload.as_value(), packed[n])
            ready = rng.random() < 0.5
            ctx.set(dut.o.ready, ready)
            valid = ctx.get(dut.o.valid)
            payload = ctx.get(dut.o.payload.as_value())
            if held is not None:
                assert valid, "valid dropped before the event was taken"
                assert payload == held, "payload changed before the event was taken"
            taken_in = offer and ctx.get(dut.i.ready)
            await ctx.tick()
            if taken_in:
                n += 1
            if valid and ready:
                got.append(unpack(out_fields(lanes), payload))
                held = None
            elif valid:
                held = payload
        else:
            raise AssertionError("no completion")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want


# -- lowest_set ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lanes", [1, 2, 3, 5, 8])
def test_lowest_set(lanes):
    m = Module()
    mask = Signal(lanes)
    lowest, index = lowest_set(m, mask, lanes)

    async def bench(ctx):
        for value in range(1 << lanes):
            ctx.set(mask, value)
            low = ctx.get(lowest)
            if value:
                bit = next(i for i in range(lanes) if (value >> i) & 1)
                assert (low, ctx.get(index)) == (1 << bit, bit), value
            else:
                assert low == 0

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
