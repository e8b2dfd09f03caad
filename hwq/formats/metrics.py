"""Clipping and rounding error of any format: AUSN's two error metrics
(docs/formats.md, "Error metrics").

For a tensor ``x``, a quantizer ``Q`` and a clip interval ``[L, H]`` (the thresholds):

``clipping``
    ``E[(x - H)**2 * 1{x > H}] + E[(L - x)**2 * 1{x < L}]``, which for a symmetric grid
    (``L = -C``, ``H = C``) is ``E[(|x| - C)**2 * 1{|x| > C}]``;
``rounding``
    ``E[(x - Q(x))**2 * 1{L <= x <= H}]``;
``total``
    ``E[(x - Q(x))**2]``, the mean squared error.

Expectations are means over the elements of ``x``. ``clipping + rounding = total`` holds when ``Q``
saturates at the thresholds (``Q(x) = H`` for ``x > H`` and ``Q(x) = L`` for ``x < L``), as every
hwq format's nearest-value encoder does when they are its extreme values. For a format with scale
``s`` (:func:`clip_thresholds`): ``L = s * min(value)`` and ``H = s * max(value)``, each computed
exactly as :meth:`~hwq.formats.base.NumberFormat.to_real` computes that value. So the split is
exact for asymmetric grids too: two's-complement fxp (``L = -H - s * 2**-frac``) and unsigned
formats (``L = 0``: every negative ``x`` is clipped to 0).
"""

import dataclasses

import numpy as np

from ..errors import InputError
from .base import NumberFormat
from .rounding import check_finite

__all__ = ["QuantError", "clip_thresholds", "split_error", "quantization_error"]


@dataclasses.dataclass(frozen=True)
class QuantError:
    """Clipping, rounding and total mean squared error of one quantization.

    Attributes
    ----------
    clipping : float
        Error of the elements beyond the thresholds.
    rounding : float
        Error of the elements within the thresholds.
    total : float
        Mean squared error, ``clipping + rounding`` up to float64 rounding.
    clip_low, clip_high : float
        The thresholds ``L <= H``: clipping below ``L`` and above ``H``.
    clipped : float
        Fraction of the elements beyond the thresholds.
    """

    clipping: float
    rounding: float
    total: float
    clip_low: float
    clip_high: float
    clipped: float


def clip_thresholds(fmt, scale=1.0):
    """``(L, H)``: the least and largest real value of format ``fmt`` at ``scale``, as floats
    (``L = -H`` for symmetric grids, ``L = 0`` for unsigned formats)."""
    if not isinstance(fmt, NumberFormat):
        raise InputError(f"format must be a NumberFormat, not {fmt!r}")
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"scale must be a finite positive number, not {scale!r}")
    low, high = fmt.to_real(fmt.codes[[np.argmin(fmt.int_values), np.argmax(fmt.int_values)]], scale) + 0.0
    return float(low), float(high)


def split_error(x, q, clip_low, clip_high):
    """Clipping/rounding split of quantizer output ``q = Q(x)`` for thresholds ``[clip_low, clip_high]``.

    Parameters
    ----------
    x, q : array-like
        The tensor and its quantized values (same shape; NaN/Inf raise :class:`InputError`).
    clip_low, clip_high : float
        The thresholds ``L <= H``.

    Returns
    -------
    QuantError
    """
    x, q = check_finite(x), check_finite(q, "quantized tensor")
    if x.shape != q.shape:
        raise InputError(f"tensor and quantized tensor differ in shape: {x.shape} vs {q.shape}")
    if x.size == 0:
        raise InputError("cannot measure the quantization error of an empty tensor")
    clip_low, clip_high = float(clip_low), float(clip_high)
    if not (np.isfinite(clip_low) and np.isfinite(clip_high)) or clip_low > clip_high:
        raise InputError(f"clip thresholds must be finite with low <= high, not {clip_low!r}, {clip_high!r}")
    above, below = x > clip_high, x < clip_low
    inside = ~(above | below)
    excess = np.where(above, x - clip_high, 0.0) + np.where(below, clip_low - x, 0.0)
    squared = (x - q) ** 2
    return QuantError(clipping=float(np.mean(excess ** 2)), rounding=float(np.mean(np.where(inside, squared, 0.0))),
                      total=float(np.mean(squared)), clip_low=clip_low, clip_high=clip_high,
                      clipped=float(np.mean(~inside)))


def quantization_error(x, fmt, scale=1.0):
    """Clipping, rounding and total error of ``fmt.fake_quantize(x, scale)``.

    Parameters
    ----------
    x : array-like
        The tensor (NaN/Inf raise :class:`InputError`).
    fmt : NumberFormat
        Any hwq format.
    scale : float
        Its scale: ``x ~ scale * value(code)``.

    Returns
    -------
    QuantError
        ``clipping + rounding == total`` up to float64 rounding, with the thresholds of
        :func:`clip_thresholds`.
    """
    clip_low, clip_high = clip_thresholds(fmt, scale)
    x = check_finite(x)
    return split_error(x, fmt.fake_quantize(x, scale), clip_low, clip_high)
