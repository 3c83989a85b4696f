"""Stimulus and checks for the AXI4 master (`hw.axi`), shared by the Amaranth-simulator tests
(tests/test_hw_axi.py) and the Verilator testbench (tb/cocotb_axi.py): random transfers that
cross 4 KiB boundaries, their bursts by `spec.axi.bursts`, data beats with strobes applied to
an expected memory, one comparison that names the first difference, and seeded pauses on
all five channels of a cocotbext-axi `AxiRam` (tb/cocotb_axi.py, tb/cocotb_core.py)."""

from .streams import random_stalls

__all__ = ["pause_all_channels", "random_transfers", "planned_bursts", "expected_read",
           "write_beats", "beats_bytes", "first_difference"]


def random_transfers(cfg, rng, count, max_beats, *, memory_bytes, disjoint=True, base=0):
    """`count` commands ({addr, length}) inside `[base, base + memory_bytes)`: every third one
    ends just past a 4 KiB boundary, every fifth may be empty; with `disjoint`, none overlaps
    another's bytes (so the data written there is unambiguous)."""
    bb, taken, out = cfg.beat_bytes, [], []
    pages = memory_bytes // 4096
    for _ in range(100 * count):
        if len(out) == count:
            return out
        n = len(out)
        beats = rng.randint(0 if n % 5 == 4 else 1, max_beats)
        if n % 3 == 0 and pages > 1:
            boundary = rng.randrange(1, pages) * 4096
            addr = boundary - rng.randint(1, max(1, min(beats, 4096 // bb))) * bb
        else:
            addr = rng.randrange(0, memory_bytes - beats * bb + 1, bb)
        end = addr + beats * bb
        if addr < 0 or end > memory_bytes or (disjoint and any(addr < e and s < end
                                                               for s, e in taken)):
            continue
        taken.append((addr, end))
        out.append({"addr": base + addr, "length": beats * bb})
    raise ValueError(f"{count} disjoint transfers of up to {max_beats} beats do not fit in "
                     f"{memory_bytes} bytes")


def planned_bursts(cfg, commands):
    """Every command's bursts by `spec.axi.bursts`, in order: what AR or AW must carry."""
    return [b for c in commands for b in cfg.bursts(c["addr"], c["length"])]


def expected_read(cfg, memory, commands, *, base=0):
    """The bytes every command reads from `memory` (holding addresses from `base`), and the
    `last` flag of every beat, in order."""
    data, last = bytearray(), []
    for c in commands:
        at = c["addr"] - base
        data += memory[at:at + c["length"]]
        beats = c["length"] // cfg.beat_bytes
        last += [n == beats - 1 for n in range(beats)]
    return bytes(data), last


def write_beats(cfg, rng, commands, memory, *, partial=0.2, base=0):
    """Data beats ({data, strb}) for `commands`: random bytes, and with chance `partial` random
    strobes instead of all ones. Applies them to `memory` (the expectation, from `base`)."""
    beats = []
    full = (1 << cfg.beat_bytes) - 1
    for c in commands:
        for n in range(c["length"] // cfg.beat_bytes):
            word = rng.randbytes(cfg.beat_bytes)
            strb = rng.randrange(full + 1) if rng.random() < partial else full
            at = c["addr"] - base + n * cfg.beat_bytes
            for i in range(cfg.beat_bytes):
                if strb >> i & 1:
                    memory[at + i] = word[i]
            beats.append({"data": int.from_bytes(word, "little"), "strb": strb})
    return beats


def beats_bytes(cfg, beats):
    """The bytes of read beats ({data, ...}), in order."""
    return b"".join(b["data"].to_bytes(cfg.beat_bytes, "little") for b in beats)


def first_difference(expected, got, *, what="byte", base=0):
    """None when the two sequences (byte strings, lists of bursts) are equal, else a message
    naming the first differing element (`what` and its place, `base + index`) and both
    values."""
    def show(value):
        return f"{value:#04x}" if isinstance(value, int) else repr(value)

    for n, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            return f"{what} {base + n:#x}: expected {show(want)}, got {show(have)}"
    if len(expected) != len(got):
        return f"{len(expected)} {what}s expected, got {len(got)}"
    return None


def pause_all_channels(ram, pause, seed):
    """Seeded random pauses (`sim.streams.random_stalls`, chance `pause`) on all five channels
    of a cocotbext-axi `AxiRam`: AW, W, B, AR, R, with seeds `seed + 100` to `seed + 104`."""
    channels = [ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                ram.read_if.ar_channel, ram.read_if.r_channel]
    for n, channel in enumerate(channels):
        channel.set_pause_generator(random_stalls(pause, seed + 100 + n))
