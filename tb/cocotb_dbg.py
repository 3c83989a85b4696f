import json, os
from pathlib import Path
import cocotb
from cocotb.triggers import RisingEdge, ReadOnly
from tb.cocotb_core import CoreBench, _arrays, _layout
from spec.csr import OFFSETS, CONTROL_START, CONTROL_IRQ_ENABLE

@cocotb.test()
async def test_probe(dut):
    bench = CoreBench(dut)
    await bench.reset()
    arrays = _arrays(bench.case["bundle"])
    bench.load(bench.image, arrays["pixels"][0])
    await bench.axil.write(OFFSETS["PROGRAM"], (0).to_bytes(4, "little"))
    await bench.axil.write(OFFSETS["CONTROL"], (CONTROL_START | CONTROL_IRQ_ENABLE).to_bytes(4, "little"))
    cyc = 0; log = []
    while not int(dut.irq.value):
        await RisingEdge(dut.clk)
        await ReadOnly()
        cyc += 1
        ev = []
        if int(dut.m_axi__arvalid.value) and int(dut.m_axi__arready.value):
            ev.append(("AR", int(dut.m_axi__araddr.value), int(dut.m_axi__arlen.value) + 1))
        if int(dut.m_axi__rvalid.value) and int(dut.m_axi__rready.value):
            ev.append(("R",))
        if int(dut.m_axi__awvalid.value) and int(dut.m_axi__awready.value):
            ev.append(("AW", int(dut.m_axi__awaddr.value)))
        if int(dut.m_axi__wvalid.value) and int(dut.m_axi__wready.value):
            ev.append(("W",))
        if ev:
            log.append((cyc, ev))
    Path(bench.case["report"]).write_text(json.dumps(log))
