"""Amaranth components of the accelerator. Imports `spec`, never torch."""
