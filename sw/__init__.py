"""Golden model: float (PyTorch) and integer (bit-exact with the hardware) references, export.

Submodules that need torch import it themselves; `sw.lif_int` and `sw.export` need only NumPy.
"""
