"""Figures measured with the open flow that other tools quote (the demo's and the benchmarks'
images per second): kept here, once, and updated when a new place-and-route is measured."""

__all__ = ["CORE_FMAX_MHZ", "CORE_FMAX_SOURCE"]

#: Fmax (MHz) of the default overlay core out of context per (device, speed grade):
#: `python -m fpga.build --design core --target ecp5-45k --speed 6` (nextpnr seed 1). The core
#: does not fit the LFE5U-25F yet (docs/ARCHITECTURE.md, "Known limits").
CORE_FMAX_MHZ = {("LFE5U-45F", 6): 54.7}
#: where that figure was measured
CORE_FMAX_SOURCE = ("commit 8dbee99, 2026-12-08: 54.71 MHz, 31,641 logic cells (44.04 MHz and "
                    "29,884 cells at 25ccc50)")
