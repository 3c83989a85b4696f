"""Open FPGA flow: Yosys synthesis (yowasp) and, later, nextpnr place-and-route with reports."""
