"""A sixth number format written as a plug-in, the way a user adds one: nothing in hwq is edited.

``toy``: sign-magnitude integers, ``code = sign << (bits - 1) | magnitude``, value
``(-1)**sign * magnitude`` (two codes for zero), rounding half to even, saturating at
``±(2**(bits - 1) - 1)``. Its PE multiplies the magnitudes and hands the base class a
``(negative, magnitude)`` product; its calibrator is a per-tensor max scale.

Importing this module registers the format, its PE and its calibrator. The simulator's Python
finds it through ``HWQ_PLUGINS=tests.plugins.toy_format``.
"""

import numpy as np
from amaranth.hdl import Signal, unsigned

from hwq.formats import CALIBRATORS, Calibration, NumberFormat
from hwq.formats.calibration import check_options
from hwq.formats.rounding import round_to_int, saturate
from hwq.pe import ProcessingElement

MODULE = __name__


class SignMagnitude(NumberFormat):
    """Sign-magnitude integers of 2 to 8 bits (always signed)."""

    name = "toy"
    bit_range = (2, 8)

    def __init__(self, bits, *, signed=True):
        super().__init__(bits, signed=signed)

    @property
    def lsb_exp(self):
        return 0

    @property
    def m_max(self):
        """Largest magnitude."""
        return (1 << (self.bits - 1)) - 1

    def params(self):
        return {"bits": self.bits}

    def _decode(self, codes):
        magnitude = codes & self.m_max
        return np.where(codes >> (self.bits - 1), -magnitude, magnitude)

    def _encode(self, x):
        q = saturate(round_to_int(x, "half_even"), -self.m_max, self.m_max)
        return np.where(q < 0, (1 << (self.bits - 1)) | -q, q)


@CALIBRATORS.register("toy")
def calibrate_toy(x, bits, *, role, per_channel, options):
    """One scale per tensor: the largest magnitude maps to the largest code."""
    options = check_options("toy", options, bits)
    fmt = SignMagnitude(bits)
    peak = float(np.abs(x).max()) or 1.0
    scale = peak / fmt.m_max
    error = float(np.mean((fmt.to_real(fmt.quantize(x, scale), scale) - x) ** 2))
    return Calibration(fmt, np.array([scale]), None, {"max": error})


class SignMagnitudePE(ProcessingElement):
    """Multiplies magnitudes; the sign is the XOR of the operand signs."""

    format_name = "toy"
    default_widths = ((4, 4),)

    @classmethod
    def from_bits(cls, a_bits, w_bits, **kwargs):
        return cls(SignMagnitude(a_bits), SignMagnitude(w_bits), **kwargs)

    def elaborate_product(self, m):
        a_bits, w_bits = self.a_format.bits, self.w_format.bits
        magnitude = Signal(unsigned(a_bits + w_bits - 1))          # top bit always 0
        negative = Signal()
        m.d.comb += [
            magnitude.eq(self.a[:a_bits - 1] * self.w[:w_bits - 1]),
            negative.eq(self.a[a_bits - 1] ^ self.w[w_bits - 1]),
        ]
        return negative, magnitude
