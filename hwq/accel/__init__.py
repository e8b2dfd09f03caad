"""The accelerator generator: Amaranth hardware that runs an exported integer program
(docs/integer-semantics.md) bit for bit.

So far the requantization datapath (:mod:`hwq.accel.requant`): :class:`Requantizer` turns an
exact accumulator, bias, multiplier and shift into the output format's code through a pipelined
:class:`ThresholdEncoder`, one value per cycle.
"""

from .requant import MAX_ACC_WIDTH, MAX_INDEX_BITS, MAX_Q_WIDTH, SHIFT_BITS, Requantizer, ThresholdEncoder

__all__ = ["ThresholdEncoder", "Requantizer", "MAX_ACC_WIDTH", "MAX_INDEX_BITS", "MAX_Q_WIDTH", "SHIFT_BITS"]
