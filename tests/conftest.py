"""Shared pytest set-up: reproducible hypothesis runs with no per-example deadline, one thread per
test process (pytest-xdist runs a process per core already).

Nothing here imports torch at import time: the format, PE, simulation and synthesis tests run
without it. The ``digits`` fixture imports it when a test first asks for it.
"""

import os

import pytest
from hypothesis import settings

# read by torch (and numpy's BLAS) when they are first imported, in whichever test needs them
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

settings.register_profile("hwq", deadline=None, derandomize=True, max_examples=100)
settings.load_profile("hwq")


@pytest.fixture(scope="session")
def digits():
    """``(model, (x_train, y_train, x_test, y_test))``: the float digits CNN after 8 epochs, trained
    once per test session (per xdist worker); tests must not modify it."""
    import torch

    from hwq.quant.digits import train_digits_cnn
    torch.manual_seed(0)
    model, data = train_digits_cnn(epochs=8, device="cpu")
    return model, data
