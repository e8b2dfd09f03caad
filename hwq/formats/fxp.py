"""Dynamic fixed point (FxP-QNet).

A value is ``q * 2**-frac`` with ``q`` a ``bits``-bit two's-complement integer (or an unsigned one,
for post-ReLU activations). The fraction length ``frac`` is metadata per data structure (weights,
biases, activations) per layer; it may be negative or larger than ``bits``.

Encoding is ``q = saturate(round(x * 2**frac))``: the product with a power of two is exact in
float64, rounding is one of :data:`~hwq.formats.rounding.ROUNDING_MODES` (``"half_even"`` by
default) and saturation clamps to ``[-2**(bits-1), 2**(bits-1) - 1]`` (``[0, 2**bits - 1]``
unsigned). The code is ``q``'s bit pattern, ``q mod 2**bits``.

Fraction-length selection
-------------------------
:func:`frac_for_max`: the largest ``frac`` at which ``max|x|`` does not saturate. This is the
paper's ``frac = bits - IL``, ``IL = ceil(log2 max|x|) + 1`` (signed), except that it is decided
on the rounded codes, so a maximum just below a power of two that would round into saturation
gets one less fraction bit.

:func:`frac_for_mse`: among ``frac_for_max(x) + 0 ... + search`` (more fraction bits, more clipping
of the largest values), the one with the least mean squared error; ties go to fewer fraction bits.
"""

import numpy as np

from ..errors import InputError
from .base import NumberFormat, check_int
from .calibration import CALIBRATORS, Calibration, check_options
from .rounding import check_finite, check_rounding, round_to_int, saturate

__all__ = ["FixedPoint", "frac_for_max", "frac_for_mse", "FRAC_RANGE", "calibrate_fxp"]

#: inclusive range of fraction lengths
FRAC_RANGE = (-64, 64)


class FixedPoint(NumberFormat):
    """Fixed-point format ``q * 2**-frac``.

    Parameters
    ----------
    bits : int
        Word length, 2 to 16.
    frac : int
        Fraction length, -64 to 64.
    signed : bool
        Two's complement (``True``) or unsigned.
    rounding : str
        One of :data:`~hwq.formats.rounding.ROUNDING_MODES`.
    """

    name = "fxp"
    bit_range = (2, 16)

    def __init__(self, bits, *, frac=0, signed=True, rounding="half_even"):
        super().__init__(bits, signed=signed)
        self._frac = check_int("fxp fraction length", frac, *FRAC_RANGE)
        self._rounding = check_rounding(rounding)

    @property
    def frac(self):
        """Fraction length."""
        return self._frac

    @property
    def rounding(self):
        """Rounding mode of :meth:`encode`."""
        return self._rounding

    @property
    def lsb_exp(self):
        return -self._frac

    @property
    def q_min(self):
        """Most negative integer ``q`` (0 when unsigned)."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def q_max(self):
        """Largest integer ``q``."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def params(self):
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed,
                "rounding": self.rounding}

    def _decode(self, codes):
        if not self.signed:
            return codes
        return np.where(codes >= 1 << (self.bits - 1), codes - (1 << self.bits), codes)

    def _encode(self, x):
        x *= 2.0 ** self.frac                     # exact: a power of two, |frac| <= 64
        q = saturate(round_to_int(x, self.rounding), self.q_min, self.q_max)
        q &= (1 << self.bits) - 1
        return q


def _saturates(x_min, x_max, fmt):
    q = round_to_int(np.array([x_min, x_max]) * 2.0 ** fmt.frac, fmt.rounding)
    return bool(q[0] < fmt.q_min or q[1] > fmt.q_max)


def frac_for_max(x, bits, *, signed=True, rounding="half_even"):
    """Largest fraction length at which no value of ``x`` saturates.

    Parameters
    ----------
    x : array-like
        The tensor (NaN/Inf raise :class:`InputError`).
    bits, signed, rounding
        As for :class:`FixedPoint`.

    Returns
    -------
    int
        The fraction length; 0 for an all-zero tensor.
    """
    x = check_finite(x)
    if x.size == 0:
        raise InputError("cannot choose a fraction length for an empty tensor")
    check_int("fxp bit width", bits, *FixedPoint.bit_range)
    if not signed and x.min() < 0:
        raise InputError("an unsigned fixed-point format cannot hold negative values; use signed=True")
    x_min, x_max = float(x.min()), float(x.max())
    peak = max(abs(x_min), abs(x_max))
    if peak == 0:
        return 0
    integer_bits = int(np.frexp(peak)[1]) + (1 if signed else 0)    # peak < 2**frexp exponent
    frac = int(np.clip(bits - integer_bits, *FRAC_RANGE))
    make = lambda f: FixedPoint(bits, frac=f, signed=signed, rounding=rounding)
    while frac > FRAC_RANGE[0] and _saturates(x_min, x_max, make(frac)):
        frac -= 1
    while frac < FRAC_RANGE[1] and not _saturates(x_min, x_max, make(frac + 1)):
        frac += 1
    return frac


def frac_for_mse(x, bits, *, signed=True, rounding="half_even", search=4):
    """Fraction length with the least mean squared quantization error.

    Tries ``frac_for_max(x) + i`` for ``i = 0 ... search``; ties go to the smaller fraction length.

    Returns
    -------
    frac : int
        The chosen fraction length.
    errors : dict of int to float
        The mean squared error of every candidate, so the choice can be inspected.
    """
    x = check_finite(x)
    start = frac_for_max(x, bits, signed=signed, rounding=rounding)
    errors = {}
    for frac in range(start, min(start + search, FRAC_RANGE[1]) + 1):
        fmt = FixedPoint(bits, frac=frac, signed=signed, rounding=rounding)
        errors[frac] = float(np.mean((fmt.fake_quantize(x) - x) ** 2))
    best = min(errors, key=lambda f: (errors[f], f))
    return best, errors


@CALIBRATORS.register("fxp")
def calibrate_fxp(x, bits, *, role, per_channel, options):
    """FxP-QNet's calibration: the fraction length with the least MSE (:func:`frac_for_mse`).

    One fraction length per tensor (FxP-QNet allocates one per data structure); the scale is 1
    and the power of two lives in the format. Signed when the tensor has negative values. No
    options.

    Returns
    -------
    Calibration
        ``candidates`` maps ``"frac=<f>"`` to that fraction length's MSE.
    """
    options = check_options("fxp", options, bits)
    signed = bool((x < 0).any())
    frac, errors = frac_for_mse(x, bits, signed=signed)
    return Calibration(FixedPoint(bits, frac=frac, signed=signed), np.ones(1), None,
                       {f"frac={f}": e for f, e in errors.items()})
