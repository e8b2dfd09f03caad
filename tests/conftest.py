"""Shared pytest set-up: reproducible hypothesis runs with no per-example deadline, one thread per
test process (pytest-xdist runs a process per core already).

Nothing here imports torch: the format, PE, simulation and synthesis tests run without it.
"""

import os

from hypothesis import settings

# read by torch (and numpy's BLAS) when they are first imported, in whichever test needs them
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

settings.register_profile("hwq", deadline=None, derandomize=True, max_examples=100)
settings.load_profile("hwq")
