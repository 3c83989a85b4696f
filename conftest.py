# The repository root on sys.path, so that pytest and the cocotb simulator (which inherits
# sys.path) import spec, hw, sw, gen, sim and tb from this checkout.
