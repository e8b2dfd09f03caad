"""The integer semantics of a quantized network, with numpy alone.

What hardware computes, specified in docs/integer-semantics.md: codes in, an exact accumulator,
a bias, one multiplier and shift per output channel, one rounding by the next format's own
encoder (as a threshold table), a clamp, codes out.

- :mod:`hwq.integer.requant`: multipliers, shifts, encoder threshold tables, the one rounding;
- :mod:`hwq.integer.ops`: exact numpy tensor operations (padding, convolution, pooling);
- :mod:`hwq.integer.program`: the ops of an integer program (layer, add, average and max
  pooling, padding, reshape);
- :mod:`hwq.integer.model`: :class:`IntegerModel`, the reference model;
- :mod:`hwq.integer.export`: the files hardware loads, and the loader that checks them.

Nothing here imports torch; :mod:`hwq.quant` builds integer models from PyTorch models.
"""

from .export import export, load
from .model import IntegerModel
from .program import TensorFormat
from .requant import FlushWarning, Multiplier

__all__ = ["IntegerModel", "TensorFormat", "Multiplier", "FlushWarning", "export", "load"]
