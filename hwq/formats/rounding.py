"""Rounding and saturation, specified once for every format.

All functions are vectorized over numpy arrays and exact: they act on float64 values
without ever adding 0.5 (``floor(y + 0.5)`` rounds 0.49999999999999994 up) and without
``y - floor(y)`` on negative ``y`` (inexact for -0.49999999999999994).

Rounding modes
--------------
``"half_even"``   nearest integer, ties to the even one (IEEE 754 default, :func:`numpy.rint`).
``"half_away"``   nearest integer, ties away from zero.
``"half_up"``     nearest integer, ties toward +infinity.
``"floor"``       toward -infinity (two's-complement truncation).
``"toward_zero"`` toward zero (sign-magnitude truncation).
"""

import numpy as np

from ..errors import InputError

__all__ = ["ROUNDING_MODES", "check_rounding", "round_to_int", "saturate", "check_finite"]

ROUNDING_MODES = ("half_even", "half_away", "half_up", "floor", "toward_zero")


def check_rounding(mode):
    """Raise :class:`InputError` unless ``mode`` is one of :data:`ROUNDING_MODES`."""
    if mode not in ROUNDING_MODES:
        raise InputError(f"unknown rounding mode {mode!r}; use one of {', '.join(ROUNDING_MODES)}")
    return mode


def check_finite(x, what="tensor", *, copy=True):
    """Return ``x`` as a float64 array, a new copy; raise :class:`InputError` if it holds NaN or Inf.

    Accepts numpy arrays, Python scalars and sequences, and torch tensors (converted on the CPU
    without importing torch here). With ``copy=False`` a float64 numpy array is returned as it
    is, not copied (for a caller that hands over a scratch array); anything else is converted.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    # a fresh copy unless the caller gave up x: encoders work on it in place
    x = np.array(x, dtype=np.float64) if copy else np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise InputError(f"{what} holds {bad} NaN/Inf value(s); clean or clamp it before quantizing")
    return x


def round_to_int(y, mode="half_even"):
    """Round float64 array ``y`` to integral float64 values with rounding ``mode``.

    The result may overwrite ``y`` (pass a copy to keep it).
    """
    y = np.asarray(y, dtype=np.float64)
    if mode == "half_even":
        return np.rint(y, out=y)
    if mode == "floor":
        return np.floor(y, out=y)
    if mode == "toward_zero":
        return np.trunc(y, out=y)
    magnitude = np.abs(y)
    low = np.floor(magnitude)
    rest = magnitude - low              # exact (Sterbenz): low is 0 or within a factor 2 of magnitude
    above, tie = rest > 0.5, rest == 0.5
    if mode == "half_away":
        magnitude = low + (above | tie)
    elif mode == "half_up":             # ties toward +infinity: up in magnitude only when positive
        magnitude = low + (above | (tie & (y > 0)))
    else:
        check_rounding(mode)
    return np.copysign(magnitude, y, out=magnitude)


def saturate(q, lo, hi):
    """Clamp integral float64 array ``q`` to ``[lo, hi]`` (saturating overflow); return int64.

    ``q`` is clamped in place.
    """
    return np.clip(q, lo, hi, out=q).astype(np.int64)
