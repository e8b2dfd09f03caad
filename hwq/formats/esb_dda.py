"""ESB's distribution difference aligner (DDA): the scale of each tensor or channel, and ``k``.

A tensor (or each output channel) is stored as ``x ~ alpha * value(code) + mu``: ``value`` is
the :class:`~hwq.formats.esb.Esb` value (docs/formats.md, "esb": magnitudes, subnormal step ``2**-m``),
``alpha`` the scale and ``mu`` the mean, 0 unless ``mean_shift`` is asked for.

Gaussian scale (``method="gaussian"``, the reference's DDA)
-----------------------------------------------------------
``alpha = lambda(fmt) * sigma`` with ``lambda`` the scale that minimizes the mean squared error of
the grid for a unit Gaussian, ``E[(x - lambda * Q(x / lambda))**2]``, ``x ~ N(0, 1)`` (signed
formats) or ``|x|`` (unsigned formats: the half-normal, whose error on the magnitude grid equals
the signed grid's on ``x``). :func:`gaussian_mse` computes that expectation exactly, cell by cell
of the nearest-value quantizer, from ``math.erfc`` (no tables, no scipy); :func:`gaussian_lambda`
minimizes it numerically (a log-spaced scan of the clip value ``lambda * max(grid)`` from
``0.25`` to ``16`` sigma, then a golden-section refinement of every local minimum found, keeping
the least). In this normalisation (the grid in the format's real values) the results reproduce
the reference's table for two exponent bits: (b, m) = (3, 0) 0.5181, (4, 1) 0.4871, (5, 2) 0.4828,
(6, 3) 0.4997, (7, 4) 0.5247, (8, 5) 0.5527; for the zero-level one-exponent-bit (int) grid the
reference's table entries its code never reads ((3, 1) 1.3015, (4, 2) 1.4136, ..., (8, 6) 1.9757);
and for the mid-rise grid ``lambda * 2**-m`` is Max's optimal uniform step (the reference's
linear path). The Gaussian error of three-exponent-bit grids has several local
minima about a factor of two apart (scaling the grid by 2 moves it one binade): the reference's
(4, 0) 0.0381 and (5, 1) 0.0391 are local minima, the global ones are near 0.0656 and 0.0766
(:func:`gaussian_minima` lists them all); its (6, 2), (7, 3), (8, 4) entries are global.

``sigma`` is the root mean square about the grid's centre: about the mean with ``mean_shift``
(the population standard deviation), about 0 without. The reference uses the sample standard
deviation (``torch.std``, about the mean) in both cases; the two agree for zero-mean data, and for
unsigned (post-ReLU) data only the RMS about 0 fits the half-normal model.

Data-driven scale (``method="mse"``)
------------------------------------
Per channel, the least empirical MSE over the Gaussian scale ``lambda * sigma`` (first, so a tie
keeps it), ``alpha = lambda * sigma * t`` for 121 values of ``t`` log-spaced from 1/4 to 4, and a
plain clip sweep that puts the grid's largest magnitude at ``max|x| * i / 100``, ``i = 1 ... 100``
(:func:`hwq.formats.metrics.clip_sweep`; hwq's addition, for channels far from Gaussian: heavy
tails, a few outliers, a handful of values). So it is never worse on the data than the Gaussian
scale nor than a per-channel clip search on the same grid. The search runs on sorted channels
with cumulative sums (:func:`hwq.formats.metrics.sweep_scales`), whose MSEs (reported too) equal
encoding's up to float64 rounding of the sums. :func:`calibrate_esb` uses this method.

Choosing ``k``
--------------
With several candidate ``k`` (or ``k="all"``: every distinct ``k`` of the width), each one's
per-channel MSE is summed over the channels and the least wins (ties to the smaller ``k``).
:class:`DdaChoice` returns every candidate's summed MSE and lambda.

Carrying the mean
-----------------
The PE computes ``acc = sum_i v_w[i] * v_a[i]`` on codes only. With ``W ~ alpha_w * v_w + mu_w``
(per output channel ``o``) and ``A ~ alpha_a * v_a + mu_a`` (per tensor), the layer output is

    ``y[o] = alpha_w[o] * alpha_a * acc[o] + alpha_w[o] * mu_a * sum_i v_w[o, i] + mu_w[o] * sum_i A[i]``.

The second term is a per-output-channel constant (fold it into the bias, computed once from the
weight codes); the third needs the sum of the activations of the receptive field, one sum per
output position shared by every output channel (``sum_i A[i] = alpha_a * sum_i v_a[i] + K *
mu_a``). With ``mean_shift=False`` (the default) ``mu = 0`` and both terms vanish.
"""

import dataclasses
import functools
import math

import numpy as np

from ..errors import InputError
from .base import check_int
from .calibration import CALIBRATORS, Calibration, IntOption, check_options, declare_options
from .esb import Esb
from .metrics import clip_sweep, sweep_scales
from .rounding import check_finite

__all__ = ["DdaChoice", "dda", "gaussian_mse", "gaussian_lambda", "gaussian_minima", "DDA_METHODS", "calibrate_esb"]

#: scale-selection methods of :func:`dda`
DDA_METHODS = ("gaussian", "mse")

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
_erfc = np.frompyfunc(math.erfc, 1, 1)
#: clip values (in sigma) the lambda scan covers, and its points
_CLIP_RANGE = (0.25, 16.0)
_SCAN_POINTS = 400
#: the data-driven search's factors around the Gaussian scale
_MSE_FACTORS = np.geomspace(0.25, 4.0, 121)


def _check_format(fmt):
    if not isinstance(fmt, Esb):
        raise InputError(f"the DDA needs an Esb format, not {fmt!r}")
    return fmt


def _magnitudes(fmt):
    """Sorted distinct non-negative real magnitudes of ``fmt``'s grid."""
    values = np.unique(np.abs(fmt.int_values)).astype(np.float64)
    return np.ldexp(values, fmt.lsb_exp)


def gaussian_mse(fmt, alpha):
    """Exact mean squared error of ``alpha * Q(x / alpha)`` for ``x ~ N(0, 1)``.

    ``Q`` is ``fmt``'s nearest-value quantizer (ties have probability 0). Unsigned formats take
    the half-normal ``|x|``, which gives the same value on the magnitude grid.

    Parameters
    ----------
    fmt : Esb
    alpha : float
        Positive scale, in units of the standard deviation.

    Returns
    -------
    float
    """
    _check_format(fmt)
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise InputError(f"alpha must be a finite positive number, not {alpha!r}")
    return _gaussian_mse(_magnitudes(fmt), alpha)


def _gaussian_mse(magnitudes, alpha):
    q = alpha * magnitudes
    lo = np.concatenate([[0.0], (q[:-1] + q[1:]) / 2])
    hi = np.concatenate([lo[1:], [np.inf]])
    tail = lambda t: 0.5 * _erfc(t / _SQRT2).astype(np.float64)         # P(x > t)
    density = lambda t: np.exp(-0.5 * t * t) / _SQRT2PI
    mass = tail(lo) - tail(hi)
    t_phi = lambda t: (finite := np.where(np.isinf(t), 0.0, t)) * density(finite)     # t phi(t), 0 at infinity
    second = mass + t_phi(lo) - t_phi(hi)                  # integral of x**2 phi over the cell
    first = density(lo) - density(hi)                      # integral of x phi over the cell
    return float(2.0 * np.sum(second - 2.0 * q * first + q * q * mass))


def _golden_section(f, lo, hi, tol=1e-10):
    """Minimum ``(x, f(x))`` of unimodal ``f`` on ``[lo, hi]`` (``x`` on a log scale)."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = math.log(lo), math.log(hi)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(math.exp(c)), f(math.exp(d))
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(math.exp(d))
    x = math.exp((a + b) / 2)
    return x, f(x)


@functools.lru_cache(maxsize=None)
def _minima(params):
    fmt = Esb(**dict(params))
    magnitudes = _magnitudes(fmt)
    top = magnitudes[-1]
    alphas = np.geomspace(_CLIP_RANGE[0] / top, _CLIP_RANGE[1] / top, _SCAN_POINTS)
    errors = [_gaussian_mse(magnitudes, a) for a in alphas]
    found = []
    for i in range(1, len(alphas) - 1):
        if errors[i] <= errors[i - 1] and errors[i] <= errors[i + 1]:
            found.append(_golden_section(lambda a: _gaussian_mse(magnitudes, a), alphas[i - 1], alphas[i + 1]))
    if not found:                                          # monotone over the scan: its best end
        i = int(np.argmin(errors))
        found.append((float(alphas[i]), errors[i]))
    return tuple(found)


def gaussian_minima(fmt):
    """Every local minimum ``(lambda, mse)`` of :func:`gaussian_mse` over the clip range
    0.25 to 16 sigma, in increasing ``lambda``."""
    return list(_minima(tuple(sorted(_check_format(fmt).params().items()))))


def gaussian_lambda(fmt):
    """``lambda(fmt)``: the scale (per unit standard deviation) with the least Gaussian MSE.

    Computed, not tabulated: the global minimum of :func:`gaussian_minima`.
    """
    return min(gaussian_minima(fmt), key=lambda p: p[1])[0]


@dataclasses.dataclass(frozen=True)
class DdaChoice:
    """Result of :func:`dda`.

    Attributes
    ----------
    format : Esb
        The chosen format (its ``k`` the chosen one).
    scale : numpy.ndarray
        Per-channel ``alpha`` (shape ``(channels,)``; one entry per tensor).
    mean : numpy.ndarray
        Per-channel ``mu`` (zeros without ``mean_shift``).
    mse : dict of int to float
        Every candidate ``k``'s MSE summed over the channels, so the choice can be read.
    lam : dict of int to float
        Every candidate ``k``'s Gaussian ``lambda``.
    channel_axis : int or None
        The axis the per-channel entries run along.
    """

    format: Esb
    scale: np.ndarray
    mean: np.ndarray
    mse: dict
    lam: dict
    channel_axis: int | None

    def _broadcast(self, values, ndim):
        if self.channel_axis is None:
            return values[0]
        shape = [1] * ndim
        shape[self.channel_axis] = -1
        return values.reshape(shape)

    def quantize(self, x):
        """Codes of tensor ``x``: ``encode((x - mean) / scale)`` per channel."""
        x = check_finite(x)
        return self.format._encode((x - self._broadcast(self.mean, x.ndim)) / self._broadcast(self.scale, x.ndim))

    def to_real(self, codes):
        """``scale * value(codes) + mean`` per channel, as float64."""
        codes = np.asarray(codes)
        return (self.format.to_real(codes) * self._broadcast(self.scale, codes.ndim)
                + self._broadcast(self.mean, codes.ndim))

    def fake_quantize(self, x):
        """``to_real(quantize(x))``: the value the hardware sees."""
        return self.to_real(self.quantize(x))


def _candidate_ks(bits, k, signed):
    B = bits - 1 if signed else bits
    if isinstance(k, str):
        if k != "all":
            raise InputError(f"k must be an int, a sequence of ints or 'all', not {k!r}")
        k = range(1, B + 1)
    elif k is None or isinstance(k, (int, np.integer)):
        k = [k]
    formats = {}
    for value in k:
        fmt = Esb(bits, k=value, signed=signed)
        formats.setdefault(fmt.k, fmt)
    if not formats:
        raise InputError("k must name at least one candidate")
    return dict(sorted(formats.items()))


def _channel_errors(rows, fmt, scale):
    q = fmt.to_real(fmt._encode(rows / scale[:, None])) * scale[:, None]
    return np.mean((q - rows) ** 2, axis=1)


def dda(x, bits, *, k=None, signed=None, channel_axis=None, mean_shift=False, method="gaussian"):
    """Choose the ESB scale (and, given several candidates, ``k``) of tensor ``x``.

    Parameters
    ----------
    x : array-like
        The tensor (NaN/Inf raise :class:`InputError`).
    bits : int
        Total width, 3 to 8.
    k : int, sequence of int, "all" or None
        Significant bits, or the candidates to choose from (``"all"``: every distinct ``k``);
        ``None``: the format's default (two exponent bits).
    signed : bool or None
        ``None``: signed when ``x`` (after the mean shift) has negative values.
    channel_axis : int or None
        Axis of output channels for per-channel scales (weights: 0), or ``None`` for one scale.
    mean_shift : bool
        Subtract each channel's mean first (see the module docstring for how it is carried).
    method : str
        ``"gaussian"`` (``alpha = lambda * sigma``) or ``"mse"`` (data-driven search).

    Returns
    -------
    DdaChoice
    """
    x = check_finite(x, "tensor")
    check_int("ESB bit width", bits, *Esb.bit_range)
    if method not in DDA_METHODS:
        raise InputError(f"unknown DDA method {method!r}; use one of {', '.join(DDA_METHODS)}")
    if not isinstance(mean_shift, bool):
        raise InputError(f"mean_shift must be True or False, not {mean_shift!r}")
    if x.size == 0:
        raise InputError("cannot choose an ESB scale for an empty tensor")
    if channel_axis is not None:
        channel_axis = check_int("channel_axis", channel_axis, -x.ndim, x.ndim - 1) % x.ndim
        rows = np.moveaxis(x, channel_axis, 0).reshape(x.shape[channel_axis], -1)
    else:
        rows = x.reshape(1, -1)
    mean = rows.mean(axis=1) if mean_shift else np.zeros(rows.shape[0])
    rows = rows - mean[:, None]
    if signed is None:
        signed = bool((rows < 0).any())
    elif not isinstance(signed, bool):
        raise InputError(f"signed must be True, False or None, not {signed!r}")
    elif not signed and (rows < 0).any():
        raise InputError("an unsigned ESB format cannot hold negative values; use signed=True or no mean_shift")
    candidates = _candidate_ks(bits, k, signed)
    sigma = np.sqrt(np.mean(rows ** 2, axis=1))
    sigma = np.where(sigma > 0, sigma, 1.0)                # an all-zero channel: any scale is exact
    results = {}
    peak = np.abs(rows).max(axis=1)
    for kk, fmt in candidates.items():
        lam = gaussian_lambda(fmt)
        best_scale = lam * sigma
        if method == "mse":
            values = fmt.to_real(fmt.codes)
            scales = np.concatenate([best_scale[:, None], best_scale[:, None] * _MSE_FACTORS[None, :],
                                     clip_sweep(peak, np.abs(values).max())], axis=1)
            mse = sweep_scales(rows, values, scales)
            best = np.argmin(mse, axis=1)                                        # the first least
            best_scale, best_mse = scales[np.arange(len(rows)), best], mse[np.arange(len(rows)), best]
        else:
            best_mse = _channel_errors(rows, fmt, best_scale)
        results[kk] = (fmt, best_scale, float(best_mse.sum()), lam)
    best = min(results, key=lambda kk: (results[kk][2], kk))
    fmt, scale, _, _ = results[best]
    return DdaChoice(fmt, scale, mean, {kk: r[2] for kk, r in results.items()},
                     {kk: r[3] for kk, r in results.items()}, channel_axis)


@CALIBRATORS.register("esb")
@declare_options(IntOption("k", 1, lambda bits: bits, many=True, words=("all",),
                           doc="significant bits (k = bits for unsigned tensors only); several: the aligner picks"))
def calibrate_esb(x, bits, *, role, per_channel, options):
    """ESB's calibration: the distribution difference aligner (:func:`dda`) with the data-driven
    scale (``method="mse"``).

    Per output channel for weights (``per_channel``), per tensor for activations (signed or not as
    the data is). The scale is the least-MSE one among the DDA's Gaussian scale, multiples of it
    and a plain clip sweep (module docstring, "Data-driven scale"), so an activation's range is
    chosen by its error, never by its maximum alone, and a few outliers are clipped when that
    pays. Option ``k`` fixes the significant bits, or lists candidates for the aligner to pick
    from; without it, the default ``k`` (two exponent bits). No mean shift: the PE sums products
    of codes.

    Returns
    -------
    Calibration
        ``candidates`` maps ``"k=<k>"`` to that choice's MSE.
    """
    options = check_options("esb", options, bits)
    axis = 0 if per_channel and role == "weight" else None
    choice = dda(x, bits, k=options.get("k"), channel_axis=axis, method="mse")
    return Calibration(choice.format, choice.scale, axis, {f"k={k}": mse for k, mse in choice.mse.items()})
