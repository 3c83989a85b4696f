"""cocotb tests of the overlay core (`hw.core.OverlayCore`), run inside the simulator by
tb/test_core.py.

Memory is cocotbext-axi's `AxiRam` with seeded random pauses on all five AXI channels; the host
is its `AxiLiteMaster` on the register port. A test copies a compiled program (`gen.program`)
and an image's pixels into the RAM, writes `PROGRAM` and `CONTROL.start`, waits for the `irq`
(within a cycle budget), and then compares every operation's output region with the integer
model's traces (`sim.overlay.check_outputs`, which names the first divergence: layer,
timestep, token, channel).

Environment: SPIKEGEN_CASE, a JSON file written by tb/test_core.py: the core configuration,
the program folder, the bundle, the samples, the cycle budget and what the test expects.
"""

import json
import logging
import os
import warnings
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from sim.axi import pause_all_channels
from sim.overlay import Divergence, Memory, check_outputs, check_scores
from spec.core import CoreConfig
from spec.csr import (
    CONTROL_IRQ_ENABLE,
    CONTROL_SOFT_RESET,
    CONTROL_START,
    OFFSETS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
)
from spec.netbundle import read_network_bundle
from spec.program import FIELDS, pack_values

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")


class CoreBench:
    """Clock, reset, the RAM (pauses on all five channels, seeded by the case) holding the
    program, and the AXI4-Lite master."""

    def __init__(self, dut):
        self.dut = dut
        self.case = json.loads(Path(os.environ["SPIKEGEN_CASE"]).read_text())
        self.core = CoreConfig.from_dict(self.case["core"])
        folder = Path(self.case["program"])
        self.image = (folder / "image.bin").read_bytes()
        self.layout = json.loads((folder / "layout.json").read_text())
        self.size = self.case["memory"]
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        logging.getLogger(f"cocotb.{dut._name}.m_axi_").setLevel(logging.WARNING)
        logging.getLogger(f"cocotb.{dut._name}.s_axil_").setLevel(logging.WARNING)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=self.size)
        pause_all_channels(self.ram, self.case["pause"], self.case["seed"])
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)

    async def reset(self):
        self.dut.rst.value = 1
        for _ in range(3):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await FallingEdge(self.dut.clk)

    def load(self, image, pixels):
        self.ram.write(0, bytes(self.size))
        self.ram.write(0, image)
        if pixels is not None:
            header = np.frombuffer(image[:64], "<u4")
            first = np.frombuffer(image[header[5]:header[5] + 256], "<u4")
            in_bits = int(first[FIELDS.index("in_bits")])
            self.ram.write(int(header[9]), pack_values(np.asarray(pixels)[None], in_bits,
                                                       self.core, signed=False))

    async def reg(self, name):
        return int.from_bytes((await self.axil.read(OFFSETS[name], 4)).data, "little")

    async def run(self, budget):
        """Start the program at 0 and wait for the irq; returns (status, cycles waited)."""
        await self.axil.write(OFFSETS["PROGRAM"], (0).to_bytes(4, "little"))
        await self.axil.write(OFFSETS["CONTROL"],
                              (CONTROL_START | CONTROL_IRQ_ENABLE).to_bytes(4, "little"))
        waited = 0
        while not int(self.dut.irq.value):
            await ClockCycles(self.dut.clk, 64)
            waited += 64
            if waited > budget:
                raise TimeoutError(f"no done or error within {budget} cycles (status "
                                   f"{await self.reg('STATUS'):#x}, layer "
                                   f"{await self.reg('LAYER')})")
        status = await self.reg("STATUS")
        await self.axil.write(OFFSETS["STATUS"], (STATUS_DONE | STATUS_ERROR).to_bytes(4,
                                                                                        "little"))
        return status, waited

    def memory(self):
        mem = Memory(0, self.size)
        mem.write(0, self.ram.read(0, self.size))
        return mem


def _arrays(path):
    return read_network_bundle(path)[2].arrays


async def _run_and_check(bench, arrays, layout, sample, log):
    case = bench.case
    bench.load(bench.image, arrays["pixels"][sample])
    status, _ = await bench.run(case["budget"])
    assert status & STATUS_DONE and not status & STATUS_ERROR, \
        f"image {sample}: status {status:#x}, error {await bench.reg('ERROR'):#x}"
    cycles = await bench.reg("CYCLES_LO")
    per_layer = []
    for n in range(len(layout["ops"])):
        await bench.axil.write(OFFSETS["LAYER_SELECT"], n.to_bytes(4, "little"))
        per_layer.append(await bench.reg("LAYER_CYCLES"))
    counters = {name: await bench.reg(name) for name in ("EVENTS_LO", "READ_LO",
                                                         "WRITTEN_LO")}
    mem = bench.memory()
    if case.get("dump"):
        Path(case["dump"]).write_bytes(bytes(mem.read(0, bench.size)))
    compared = check_outputs(mem, layout, bench.core, arrays, sample)
    result = {"sample": sample, "cycles": cycles, "layer_cycles": per_layer,
              "compared": compared, **counters}
    if case.get("classes"):
        expected = arrays["scores"][sample]
        assert len(expected) == case["classes"]
        scores = check_scores(mem, layout, bench.core, case["timesteps"], expected, sample)
        result["prediction"] = int(np.argmax(scores))
    log.info("image %d: %d cycles, %d values compared", sample, cycles, compared)
    return mem, result


def _layout(bench):
    layout = dict(bench.layout)
    layout["ops"] = layout["ops"][:bench.case["layers"]]
    return layout


@cocotb.test()
async def test_images(dut):
    """Every sample: run, check every operation's output region against the traces (and the
    class scores, for a whole network)."""
    bench = CoreBench(dut)
    await bench.reset()
    case = bench.case
    arrays = _arrays(case["bundle"])
    layout = _layout(bench)
    log = logging.getLogger("cocotb.core")
    results = []
    for sample in case["samples"]:
        mem, result = await _run_and_check(bench, arrays, layout, sample, log)
        results.append(result)
        if case.get("corrupt"):
            # the checker must name one flipped bit of the last operation's output
            op = layout["ops"][-1]
            region = layout["regions"][op["output"]]
            data = bytearray(mem.read(region["addr"], 1))
            data[0] ^= 1
            mem.write(region["addr"], bytes(data))
            try:
                check_outputs(mem, layout, bench.core, arrays, sample)
            except Divergence as exc:
                assert str(exc).startswith(f"{op['name']} ") and "timestep 0, token 0 (row 0, "\
                    "column 0), channel 0" in str(exc) and "(1 values differ)" in str(exc), exc
            else:
                raise AssertionError("a flipped output bit was not caught")
    Path(case["report"]).write_text(json.dumps(results))


@cocotb.test()
async def test_bad_programs(dut):
    """Each damaged program ends with STATUS.error, the expected code and layer in ERROR,
    within the cycle budget and with no transfer left open (the next start works); then the
    good program runs and every region is checked."""
    bench = CoreBench(dut)
    await bench.reset()
    case = bench.case
    arrays = _arrays(case["bundle"])
    results = []
    for bad in case["bad"]:
        bench.load(Path(bad["image"]).read_bytes(), arrays["pixels"][0])
        status, waited = await bench.run(case["error_budget"])
        error = await bench.reg("ERROR")
        got = {"code": error & 0xFF, "layer": error >> 16}
        assert status & STATUS_ERROR and not status & STATUS_DONE, \
            f"{bad['name']}: status {status:#x}"
        assert got == {"code": bad["code"], "layer": bad["layer"]}, \
            f"{bad['name']}: ERROR {got}, expected code {bad['code']} at layer {bad['layer']}"
        assert not await bench.reg("STATUS") & STATUS_BUSY
        results.append({"name": bad["name"], "cycles": waited, **got})
    log = logging.getLogger("cocotb.core")
    _, result = await _run_and_check(bench, arrays, _layout(bench), 0, log)
    results.append(result)
    Path(case["report"]).write_text(json.dumps(results))


@cocotb.test()
async def test_soft_reset(dut):
    """Soft reset in the middle of a layer: the core stops (busy falls, neither done nor
    error), every transfer in flight finishes; then a clean image is bit-exact."""
    bench = CoreBench(dut)
    await bench.reset()
    case = bench.case
    arrays = _arrays(case["bundle"])
    bench.load(bench.image, arrays["pixels"][1])
    await bench.axil.write(OFFSETS["PROGRAM"], (0).to_bytes(4, "little"))
    await bench.axil.write(OFFSETS["CONTROL"], CONTROL_START.to_bytes(4, "little"))
    await ClockCycles(dut.clk, case["reset_after"])
    layer = await bench.reg("LAYER")
    assert await bench.reg("STATUS") & STATUS_BUSY and 0 < layer < case["layers"], layer
    await bench.axil.write(OFFSETS["CONTROL"], CONTROL_SOFT_RESET.to_bytes(4, "little"))
    waited = 0
    while await bench.reg("STATUS") & STATUS_BUSY:
        await ClockCycles(dut.clk, 16)
        waited += 16
        if waited > 10_000:
            raise TimeoutError("busy did not fall within 10,000 cycles of the soft reset")
    status = await bench.reg("STATUS")
    assert not status & (STATUS_DONE | STATUS_ERROR), f"status {status:#x} after soft reset"
    log = logging.getLogger("cocotb.core")
    _, result = await _run_and_check(bench, arrays, _layout(bench), 0, log)
    Path(case["report"]).write_text(json.dumps([{"reset_in_layer": layer,
                                                 "busy_fell_after": waited}, result]))
