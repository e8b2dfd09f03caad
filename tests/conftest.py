"""Shared pytest set-up: reproducible hypothesis runs with no per-example deadline, one torch thread."""

import torch
from hypothesis import settings

# one intra-op thread per test process: pytest-xdist runs a process per core already
torch.set_num_threads(1)

settings.register_profile("hwq", deadline=None, derandomize=True, max_examples=100)
settings.load_profile("hwq")
