"""Shared pytest set-up: reproducible hypothesis runs with no per-example deadline."""

from hypothesis import settings

settings.register_profile("hwq", deadline=None, derandomize=True, max_examples=100)
settings.load_profile("hwq")
