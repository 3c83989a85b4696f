"""Command lines: configuration (flags, YAML or bundle) -> hw component -> Verilog."""
