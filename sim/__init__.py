"""Co-simulation support: Verilator discovery and builds, stream drivers and monitors,
the in-order scoreboard and trace-to-beat conversion. Used by `tb/`."""
