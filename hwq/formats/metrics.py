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

Scale sweeps
------------
:func:`sweep_scales` gives the MSE of nearest-value rounding to a fixed value set at many candidate
scales, per row of a tensor (a weight's output channels), without encoding the row once per scale:
the row is sorted once, and the squared error at a scale is a sum over the value set's rounding
thresholds (midpoints) of cumulative sums of ``x`` and ``x**2`` at each threshold's position, the
expansion ``sum((x - l)**2) = sum(x**2) - 2 * l * sum(x) + count * l**2`` per cell (a value set
symmetric about 0 rounds ``|x|`` to its magnitudes: half the thresholds). Each threshold's position
is a binary search of the sorted row, so a row costs ``O(scales * values * log(n))`` after the
sort instead of ``O(scales * n * log(values))``. ESB's and AUSN's calibrators use it for their
per-channel (and ESB's per-tensor) scale searches, fxp's for its fraction-length search.
"""

import dataclasses

import numpy as np

from ..errors import InputError
from .base import NumberFormat
from .rounding import check_finite

__all__ = ["QuantError", "clip_thresholds", "split_error", "quantization_error", "sweep_scales", "clip_sweep"]

#: rows whose per-scale counts are held at once by :func:`sweep_scales` (times scales times values)
_SWEEP_BLOCK = 1 << 16


def clip_sweep(peak, top, points=100):
    """Scales of a plain clip sweep: the largest magnitude ``top`` of a value set placed at
    ``peak * i / points`` for ``i = 1 ... points``.

    Parameters
    ----------
    peak : array-like
        ``max|x|`` per row (a zero row gets the scales of ``peak = 1``).
    top : float
        Largest magnitude of the value set (``max|value|``).
    points : int
        Number of clip values.

    Returns
    -------
    numpy.ndarray
        ``(rows, points)`` scales.
    """
    peak = np.atleast_1d(np.asarray(peak, dtype=np.float64))
    peak = np.where(peak > 0, peak, 1.0)
    return peak[:, None] * (np.arange(1, points + 1) / points)[None, :] / float(top)


def sweep_scales(rows, values, scales):
    """MSE of every row rounded to ``values * scale`` for each of its candidate scales.

    Nearest-value rounding, the largest or least value beyond the ends (saturation): what every hwq
    encoder does, up to which neighbour a tie goes to (a tie has the same error either way). Exact
    up to float64 rounding of the cumulative sums (module docstring, "Scale sweeps").

    Parameters
    ----------
    rows : array-like
        2-D tensor, one row per channel (NaN/Inf raise :class:`InputError`).
    values : array-like
        The value set (any order, repeats allowed), e.g. ``fmt.to_real(fmt.codes)``.
    scales : array-like
        Positive candidate scales: ``(rows, S)``, or ``(S,)`` for the same ones on every row.

    Returns
    -------
    numpy.ndarray
        ``(rows, S)`` mean squared errors.
    """
    rows = check_finite(rows, "tensor")
    if rows.ndim != 2 or rows.size == 0:
        raise InputError(f"sweep_scales needs a non-empty 2-D tensor, not shape {rows.shape}")
    values = np.unique(check_finite(values, "value set"))
    scales = check_finite(scales, "scales")
    scales = np.broadcast_to(scales, (len(rows), scales.shape[-1])) if scales.ndim == 1 else scales
    if scales.shape[0] != len(rows) or scales.shape[1] == 0 or not (scales > 0).all():
        raise InputError(f"scales must be positive, one row per tensor row: shape {scales.shape} for {len(rows)} rows")
    n = rows.shape[1]
    magnitudes = np.abs(rows)
    if np.array_equal(values, -values[::-1]):            # a symmetric set: round |x| to its magnitudes
        rows, values = magnitudes, values[values >= 0]
    # each row in units of a power of two near its largest magnitude: exact, and no square overflows
    exponent = np.frexp(magnitudes.max(axis=1))[1]
    rows = np.sort(np.ldexp(rows, -exponent[:, None]), axis=1)
    scales = np.ldexp(scales, -exponent[:, None])
    prefix = np.zeros((2, len(rows), n + 1))
    np.cumsum(rows, axis=1, out=prefix[0, :, 1:])
    np.cumsum(rows * rows, axis=1, out=prefix[1, :, 1:])
    mids = (values[:-1] + values[1:]) / 2
    out = np.empty(scales.shape)
    block = max(1, _SWEEP_BLOCK // (scales.shape[1] * len(values)))
    for lo in range(0, len(rows), block):
        part = slice(lo, lo + block)
        count = np.empty((len(rows[part]), scales.shape[1], len(values) + 1), dtype=np.int64)
        count[..., 0], count[..., -1] = 0, n
        for i, (row, scale) in enumerate(zip(rows[part], scales[part])):
            count[i, :, 1:-1] = np.searchsorted(row, mids[None, :] * scale[:, None], side="right")
        flat = count + (np.arange(len(count)) * (n + 1))[:, None, None]
        s1 = np.diff(prefix[0, part].ravel()[flat], axis=-1)
        s2 = np.diff(prefix[1, part].ravel()[flat], axis=-1)
        levels = values[None, None, :] * scales[part, :, None]
        err = (s2 - 2 * levels * s1 + np.diff(count, axis=-1) * levels * levels).sum(axis=-1)
        out[part] = np.ldexp(np.maximum(err, 0.0), 2 * exponent[part, None]) / n
    return out


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
