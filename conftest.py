# The repository root on sys.path, so that pytest and the cocotb simulator (which inherits
# sys.path) import spec, hw, sw, gen, sim and tb from this checkout.

import os

# `make test` runs two pytest workers on two cores: one thread each for torch and numpy keeps
# them from fighting over the cores (a three-epoch training test took 95 s instead of 12 s).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
