"""UNIQ: k-quantile non-uniform levels held in a per-layer table of fixed-point words.

A ``bits``-bit UNIQ code is an *index* into a table of ``k = 2**bits`` levels. The levels are
what the hardware stores, so the format holds them as integers: ``levels[i]`` is a
``level_bits``-bit two's-complement word and ``value(i) = levels[i] * 2**-frac``. The codebook is
therefore exact and dyadic, whatever distribution the levels came from.

Index order
-----------
``levels`` is strictly increasing and code ``i`` selects ``levels[i]``: code 0 is the lowest
level and code ``k - 1`` the highest, the order of the quantile bins (the level of the bin of
probability ``[i/k, (i+1)/k)`` is ``levels[i]``). The code is *not* a two's-complement number:
the Gaussian table has no zero level (``k`` is even and the levels are symmetric, mid-rise).

Encoding
--------
:meth:`Uniq.encode` picks the nearest level; a value exactly halfway between two adjacent levels
goes to the **larger** level (the higher index), as ANT's encoder does; values beyond the end
levels saturate to them. (UNIQ's own quantizer bins by the quantile *thresholds*
``t_i = F^-1(i/k)`` of the fitted distribution rather than by the midpoints between levels; the
golden format knows only its table, and nearest-level encoding is the least-error encoding of
that table. The threshold quantizer lives in :mod:`hwq.quant.uniq_noise`.)

Level fitting
-------------
:func:`fit_levels`: ``k`` levels at the quantiles ``q_i = F^-1((i + 1/2)/k)``, ``i = 0 ... k-1``
(docs/formats.md, "uniq": ``F^-1((i - 1/2)/k)``, ``i = 1 ... k``) of a distribution fitted to the tensor
(:func:`fit_distribution`):

``"gaussian"``
    mean and population standard deviation (``ddof = 0``) of the tensor; quantiles from the
    standard library's :meth:`statistics.NormalDist.inv_cdf`.
``"laplace"``
    maximum-likelihood fit: location the median, scale the mean absolute deviation from it;
    ``F^-1(p) = loc - scale * sign(p - 1/2) * ln(1 - 2|p - 1/2|)``.
``"empirical"``
    the tensor's own distribution: the piecewise-linear inverse CDF through the sorted samples
    ``s_j`` at probabilities ``(j + 1/2)/n`` (numpy's ``"hazen"`` quantile), constant beyond the
    end samples. It is continuous, so the torch side can differentiate it.

The real levels are then stored as ``level_bits``-bit fixed point: ``frac`` is the largest
fraction length at which no level saturates (:func:`~hwq.formats.fxp.frac_for_max`) unless given,
and each level is rounded half to even (the fixed-point encoder). Levels that round to the same
word raise :class:`~hwq.errors.InputError` (give more ``level_bits``): every index keeps its own level.

Lloyd-Max levels (beyond the paper)
-----------------------------------
:func:`fit_lloyd_levels` (spec option ``lloyd1``, e.g. ``"uniq4lloyd1"``): instead of k-quantile
levels, the ``k`` levels that minimise the tensor's own mean squared error, found by Lloyd's
algorithm (S. P. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28(2),
1982; J. Max, "Quantizing for minimum distortion", IRE Trans. Inf. Theory 6(1), 1960), i.e. 1-D
k-means on the tensor's values (:func:`lloyd_max`). A Lloyd-Max quantizer satisfies two
conditions: each threshold is the midpoint of its two levels (nearest-level cells) and each level
is the mean (centroid) of the values in its cell. Lloyd's algorithm alternates the two:

1. start from fixed levels (no randomness): the tensor's k-quantile levels (the ``"empirical"``
   fit's), and, in a second run, the quantiles of the asymptotically optimal level density
   ``p**(1/3)`` (Bennett 1948; Panter and Dite 1951), ``p`` a histogram of the tensor;
2. thresholds ``t_i = (l_i + l_{i+1}) / 2``; cell ``i`` is ``[t_{i-1}, t_i)`` (a value on a
   threshold goes to the higher level, as :meth:`Uniq.encode` does);
3. ``l_i`` = mean of cell ``i`` (an empty cell keeps its level);
4. repeat until the cells stop changing (an exact fixed point), no level moves by more than
   ``tol`` times the tensor's standard deviation, or ``max_iter`` updates;
5. keep the run with the lower error (the quantile run on a tie).

On a finite sample Lloyd's algorithm stops at a local minimum; the k-quantile start makes the
real levels never worse than the empirical k-quantile levels, and the ``p**(1/3)`` start finds a
better minimum at 6 to 8 bits, where levels started at the quantiles crowd the centre and stall in
the sparse tails (8 bits, 200 000 Gaussian values: MSE 4.5e-5 against 1.1e-4).

The values are sorted once and their cumulative sums kept, so one iteration is ``k`` binary
searches and ``k`` differences of cumulative sums, ``O(k log n)``. Each step can only lower the
mean squared error. The levels are then stored exactly like k-quantile levels
(:func:`round_levels`): one table per tensor (per layer), scale 1.

Word length
-----------
``level_bits`` defaults to ``bits + 4`` (8 for 4-bit indices). For the standard Gaussian table
this leaves about 5 LSBs between the two levels nearest zero at every ``bits`` from 2 to 8, and
the 4-bit table is ``levels * 2**-6`` with ``levels`` in ``[-119, 119]``
(:meth:`Uniq.gaussian`).
"""

import dataclasses
from statistics import NormalDist

import numpy as np

from ..errors import InputError
from .base import NumberFormat, check_int, nearest_index
from .calibration import CALIBRATORS, Calibration, IntOption, check_options, declare_options
from .fxp import FRAC_RANGE, FixedPoint, frac_for_max
from .rounding import check_finite

__all__ = ["Uniq", "DISTRIBUTIONS", "Distribution", "LevelFit", "quantile_points", "gaussian_levels",
           "fit_distribution", "round_levels", "fit_levels", "select_levels", "LEVEL_BITS_MAX",
           "DEFAULT_EXTRA_LEVEL_BITS", "LloydMax", "lloyd_max", "fit_lloyd_levels", "LLOYD_TOL",
           "LLOYD_MAX_ITER", "calibrate_uniq"]

#: the distribution families the levels can be fitted to
DISTRIBUTIONS = ("gaussian", "laplace", "empirical")
#: widest stored level word
LEVEL_BITS_MAX = 16
#: default ``level_bits - bits``
DEFAULT_EXTRA_LEVEL_BITS = 4
#: :func:`lloyd_max`'s default convergence tolerance, in units of the tensor's standard deviation
LLOYD_TOL = 1e-9
#: :func:`lloyd_max`'s default iteration cap (an 8-bit table of 3 million Gaussian values converges
#: in about 15 000 iterations, 4 bits in about 300)
LLOYD_MAX_ITER = 20000


def quantile_points(bits):
    """The probabilities ``(i + 1/2) / 2**bits``, ``i = 0 ... 2**bits - 1``, of the levels."""
    k = 1 << check_int("uniq bit width", bits, *Uniq.bit_range)
    return [(2 * i + 1) / (2 * k) for i in range(k)]


def gaussian_levels(bits):
    """The ``2**bits`` standard-normal k-quantile levels, in units of the standard deviation.

    ``NormalDist().inv_cdf((i + 1/2) / k)``, ascending (float).
    """
    return [NormalDist().inv_cdf(p) for p in quantile_points(bits)]


@dataclasses.dataclass(frozen=True, eq=False)
class Distribution:
    """A distribution fitted to a tensor (:func:`fit_distribution`).

    Attributes
    ----------
    family : str
        The distribution family, one of :data:`DISTRIBUTIONS`.
    loc, scale : float
        Gaussian: mean and standard deviation; Laplace: median and mean absolute deviation;
        empirical: the samples' mean and standard deviation (for information only).
    samples : numpy.ndarray or None
        Empirical only: the sorted samples (float64).
    """

    family: str
    loc: float
    scale: float
    samples: np.ndarray = None

    def quantile(self, p):
        """Inverse CDF ``F^-1(p)`` for probabilities ``p`` in ``(0, 1)``, as float64."""
        p = check_finite(p, "probabilities")
        if p.size and (p.min() <= 0 or p.max() >= 1):
            raise InputError("quantile probabilities must lie strictly between 0 and 1")
        if self.family == "gaussian":
            normal = NormalDist(self.loc, self.scale)
            return np.array([normal.inv_cdf(float(v)) for v in p.flat]).reshape(p.shape)
        if self.family == "laplace":
            d = p - 0.5
            return self.loc - self.scale * np.sign(d) * np.log1p(-2 * np.abs(d))
        s = self.samples
        n = len(s)
        pos = np.clip(p * n - 0.5, 0, n - 1)
        j = np.minimum(np.floor(pos), n - 2).astype(np.int64)
        t = pos - j
        return s[j] + t * (s[j + 1] - s[j])


def fit_distribution(x, family="gaussian"):
    """Fit a distribution of family ``family`` (one of :data:`DISTRIBUTIONS`) to tensor ``x``.

    Raises :class:`InputError` for NaN/Inf, fewer than two values, or a constant tensor.
    """
    if family not in DISTRIBUTIONS:
        raise InputError(f"unknown distribution {family!r}; use one of {', '.join(DISTRIBUTIONS)}")
    x = check_finite(x).ravel()
    if x.size < 2:
        raise InputError(f"cannot fit a distribution to {x.size} value(s); need at least 2")
    if x.min() == x.max():
        raise InputError("cannot fit levels to a constant tensor (its spread is 0)")
    if family == "laplace":
        median = float(np.median(x))
        return Distribution(family, median, float(np.mean(np.abs(x - median))))
    mean, std = float(np.mean(x)), float(np.std(x))
    if family == "gaussian":
        return Distribution(family, mean, std)
    return Distribution(family, mean, std, np.sort(x))


def _default_level_bits(bits):
    return min(bits + DEFAULT_EXTRA_LEVEL_BITS, LEVEL_BITS_MAX)


def round_levels(real_levels, level_bits, frac=None):
    """Store real levels as ``level_bits``-bit two's-complement fixed point.

    Parameters
    ----------
    real_levels : sequence of float
        Ascending levels.
    level_bits : int
        Word length of a stored level, 2 to :data:`LEVEL_BITS_MAX`.
    frac : int, optional
        Fraction length; by default the largest at which no level saturates.

    Returns
    -------
    levels : list of int
        ``round_half_even(real * 2**frac)``, saturated to the word.
    frac : int

    Raises
    ------
    InputError
        Two levels round to the same word (more ``level_bits`` or ``frac`` needed).
    """
    real = check_finite(real_levels, "levels")
    level_bits = check_int("uniq level word length", level_bits, 2, LEVEL_BITS_MAX)
    if frac is None:
        frac = frac_for_max(real, level_bits, signed=True)
    word = FixedPoint(level_bits, frac=frac, signed=True)
    levels = word.decode(word.encode(real)).tolist()
    same = next((i for i in range(1, len(levels)) if levels[i] <= levels[i - 1]), None)
    if same is not None:
        raise InputError(f"levels {same - 1} and {same} ({real[same - 1]:.6g}, {real[same]:.6g}) round to "
                       f"the same {level_bits}-bit word at frac {frac}; use more level_bits")
    return levels, frac


class Uniq(NumberFormat):
    """A UNIQ level table: ``bits``-bit indices into ``2**bits`` stored fixed-point levels.

    Parameters
    ----------
    bits : int
        Index width, 2 to 8.
    levels : sequence of int, optional
        The stored words, strictly increasing, each a ``level_bits``-bit two's-complement
        integer; code ``i`` has value ``levels[i] * 2**-frac``. By default the standard-normal
        levels (:func:`gaussian_levels`, units of the standard deviation) rounded at ``frac``.
    level_bits : int, optional
        Word length of a stored level, ``bits`` to :data:`LEVEL_BITS_MAX`; ``bits + 4`` by default.
    frac : int, optional
        Fraction length of the stored levels, -64 to 64. Default: 0 for explicit ``levels``;
        for the Gaussian default, the largest at which no level saturates.

    Notes
    -----
    :attr:`signed` is true when some level is negative; the words are two's complement either way.
    """

    name = "uniq"
    bit_range = (2, 8)

    def __init__(self, bits, *, levels=None, level_bits=None, frac=None):
        super().__init__(bits, signed=True)
        if level_bits is None:
            level_bits = _default_level_bits(self.bits)
        self._level_bits = check_int("uniq level word length", level_bits, self.bits, LEVEL_BITS_MAX)
        if frac is not None:
            check_int("uniq fraction length", frac, *FRAC_RANGE)
        if levels is None:
            levels, frac = round_levels(gaussian_levels(self.bits), self._level_bits, frac)
        self._levels = self._check_levels(levels)
        self._frac = 0 if frac is None else int(frac)
        self._table = np.array(self._levels, dtype=np.int64)
        self._signed = self._levels[0] < 0

    def _check_levels(self, levels):
        if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__"):
            raise InputError(f"uniq levels must be a sequence of integers, not {levels!r}")
        k = 1 << self.bits
        if len(levels) != k:
            raise InputError(f"a {self.bits}-bit uniq table needs {k} levels, not {len(levels)}")
        half = 1 << (self._level_bits - 1)
        out = [check_int(f"uniq level {i}", v, -half, half - 1) for i, v in enumerate(levels)]
        for i in range(1, k):
            if out[i] <= out[i - 1]:
                raise InputError(f"uniq levels must be strictly increasing (code = rank); "
                               f"level {i} is {out[i]} after {out[i - 1]}")
        return out

    @classmethod
    def gaussian(cls, bits, level_bits=None):
        """The standard-normal table (units of the standard deviation) at the largest fraction
        length that fits ``level_bits`` (``bits + 4`` by default): the default PE's weights."""
        return cls(bits, level_bits=level_bits)

    @property
    def levels(self):
        """The stored words (list of int, index = code)."""
        return list(self._levels)

    @property
    def level_bits(self):
        """Word length of a stored level."""
        return self._level_bits

    @property
    def frac(self):
        """Fraction length of the stored levels."""
        return self._frac

    @property
    def lsb_exp(self):
        return -self._frac

    def params(self):
        return {"bits": self.bits, "levels": self.levels, "level_bits": self.level_bits, "frac": self.frac}

    def _decode(self, codes):
        return self._table[codes]

    def _encode(self, x):
        x *= 2.0 ** self._frac                    # exact: a power of two, |frac| <= 64
        return nearest_index(self._table, x, ties="up").astype(np.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class LevelFit:
    """Result of :func:`fit_levels`.

    Attributes
    ----------
    format : Uniq
        The stored table (use it with scale 1: its values are in the tensor's units).
    distribution : Distribution
        The fitted distribution.
    real_levels : numpy.ndarray
        ``F^-1((i + 1/2)/k)`` before rounding to the stored words.
    mse : float
        Mean squared error of the tensor encoded with :attr:`format` (nearest level).
    lloyd : LloydMax or None
        :func:`fit_lloyd_levels` only: the Lloyd-Max run (iterations, convergence, the real
        levels' error); :attr:`distribution` is then the tensor's empirical distribution, whose
        Lloyd-Max quantizer :attr:`real_levels` are.
    """

    format: Uniq
    distribution: Distribution
    real_levels: np.ndarray
    mse: float
    lloyd: object = None


def fit_levels(x, bits, *, distribution="gaussian", level_bits=None, frac=None):
    """The k-quantile level table of tensor ``x``.

    Parameters
    ----------
    x : array-like
        The tensor (NaN/Inf raise :class:`InputError`).
    bits : int
        Index width, 2 to 8 (``k = 2**bits`` levels).
    distribution : str
        The distribution family: ``"gaussian"``, ``"laplace"`` or ``"empirical"`` (see the module
        docstring).
    level_bits : int, optional
        Stored word length (``bits + 4`` by default).
    frac : int, optional
        Stored fraction length (by default the largest at which no level saturates).

    Returns
    -------
    LevelFit
    """
    bits = check_int("uniq bit width", bits, *Uniq.bit_range)
    level_bits = _default_level_bits(bits) if level_bits is None else level_bits
    check_int("uniq level word length", level_bits, bits, LEVEL_BITS_MAX)
    x = check_finite(x)
    dist = fit_distribution(x, distribution)
    real = dist.quantile(quantile_points(bits))
    levels, frac = round_levels(real, level_bits, frac)
    fmt = Uniq(bits, levels=levels, level_bits=level_bits, frac=frac)
    mse = float(np.mean((fmt.fake_quantize(x) - x) ** 2))
    return LevelFit(fmt, dist, real, mse)


def select_levels(x, bits, *, distributions=DISTRIBUTIONS, level_bits=None):
    """Fit the levels of every candidate distribution and keep the least-MSE table.

    Returns
    -------
    fit : LevelFit
        The chosen fit; ties go to the earlier candidate.
    mse : dict of str to float
        Every candidate's mean squared error, so the choice can be inspected.
    """
    x = check_finite(x)
    fits = {}
    for family in dict.fromkeys(distributions):
        fits[family] = fit_levels(x, bits, distribution=family, level_bits=level_bits)
    if not fits:
        raise InputError("select_levels needs at least one distribution")
    best = min(fits, key=lambda k: (fits[k].mse, list(fits).index(k)))
    return fits[best], {k: f.mse for k, f in fits.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class LloydMax:
    """Result of :func:`lloyd_max`: a Lloyd-Max (minimum mean squared error) quantizer of a tensor.

    Attributes
    ----------
    levels : numpy.ndarray
        Shape ``(k,)``, float64, strictly increasing: the real levels.
    thresholds : numpy.ndarray
        Shape ``(k - 1,)``, float64: ``(levels[i] + levels[i + 1]) / 2``; cell ``i`` is
        ``[thresholds[i - 1], thresholds[i])``.
    mse : float
        Mean squared error of the tensor quantized to the nearest of :attr:`levels` (before any
        rounding to stored words).
    iterations : int
        Centroid updates made by the kept run.
    converged : bool
        True if the cells stopped changing or no level moved by more than ``tol`` standard
        deviations; False if the run stopped at ``max_iter``.
    start : str
        The starting levels of the kept run: ``"quantile"`` (the k-quantile levels) or
        ``"compander"`` (the quantiles of ``p**(1/3)``).
    """

    levels: np.ndarray
    thresholds: np.ndarray
    mse: float
    iterations: int
    converged: bool
    start: str


def _check_lloyd_controls(tol, max_iter):
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) \
            or not np.isfinite(tol) or tol < 0:
        raise InputError(f"Lloyd-Max tolerance must be a finite number >= 0, not {tol!r}")
    return float(tol), check_int("Lloyd-Max iteration cap max_iter", max_iter, 1, 10 ** 9)


def _compander_levels(y, k):
    """``k`` levels at the quantiles of the point density ``p**(1/3)`` of sorted samples ``y``.

    ``p**(1/3)`` is the asymptotically optimal density of levels (W. R. Bennett, "Spectra of
    quantized signals", Bell Syst. Tech. J. 27, 1948; P. F. Panter, W. Dite, Proc. IRE 39(1), 1951);
    ``p`` is estimated by a ``16 k``-bin histogram over ``[y[0], y[-1]]``, inverted linearly inside
    each bin. Returns shape ``(k,)``, strictly increasing, or None if two levels coincide.
    """
    m = 16 * k
    edges = np.linspace(y[0], y[-1], m + 1)
    counts = np.diff(np.concatenate(([0], np.searchsorted(y, edges[1:-1], side="left"), [len(y)])))
    weight = np.concatenate(([0.0], np.cumsum(np.cbrt(counts))))
    target = (2 * np.arange(k) + 1) / (2 * k) * weight[-1]
    j = np.clip(np.searchsorted(weight, target, side="right") - 1, 0, m - 1)   # weight[j] <= target < weight[j+1]
    levels = edges[j] + (target - weight[j]) / (weight[j + 1] - weight[j]) * (edges[j + 1] - edges[j])
    return levels if np.all(np.diff(levels) > 0) else None


def _lloyd_run(y, csum, levels, step_tol, max_iter):
    """Lloyd's algorithm on sorted samples ``y`` (shape ``(n,)``, cumulative sums ``csum`` of shape
    ``(n + 1,)``) from strictly increasing ``levels`` (shape ``(k,)``).

    Returns ``(levels, iterations, converged, mse)``.
    """
    n = len(y)

    def cells(levels):
        return np.concatenate(([0], np.searchsorted(y, (levels[:-1] + levels[1:]) / 2, side="left"), [n]))

    def centroids(bounds, levels):
        lo, hi = bounds[:-1], bounds[1:]
        count = hi - lo
        mean = (csum[hi] - csum[lo]) / np.maximum(count, 1)
        # a cell's mean lies between its smallest and largest value; clipping keeps the rounding
        # of the cumulative sums from breaking the strict order of the levels
        first, last = y[np.minimum(lo, n - 1)], y[np.maximum(hi - 1, 0)]
        return np.where(count > 0, np.clip(mean, first, last), levels)

    bounds = cells(levels)
    converged, iterations = False, 0
    for iterations in range(1, max_iter + 1):
        new = centroids(bounds, levels)
        moved = float(np.max(np.abs(new - levels)))
        levels = new
        new_bounds = cells(levels)
        if np.array_equal(new_bounds, bounds) or moved <= step_tol:
            converged = True
            break
        bounds = new_bounds
    mse = float(np.mean((y - np.repeat(levels, np.diff(cells(levels)))) ** 2))
    return levels, iterations, converged, mse


def _lloyd_sorted(s, k, tol, max_iter):
    """:func:`lloyd_max` on sorted float64 samples ``s`` (shape ``(n,)``)."""
    distinct = int(np.count_nonzero(np.diff(s))) + 1 if len(s) else 0
    if distinct < k:
        raise InputError(f"a {k}-level Lloyd-Max table needs at least {k} distinct values; "
                         f"the tensor has {distinct}")
    points = (2 * np.arange(k) + 1) / (2 * k)          # (i + 1/2) / k
    init = np.quantile(s, points, method="hazen")
    if not np.all(np.diff(init) > 0):
        # repeated values make some quantiles coincide: start from the quantiles of the distinct
        # values, which are distinct since there are at least k of them
        init = np.quantile(np.unique(s), points, method="hazen")
    center = float(np.mean(s))
    y = s - center                          # centred: smaller cumulative sums, less cancellation
    csum = np.concatenate(([0.0], np.cumsum(y)))
    step_tol = tol * float(np.std(s))
    starts = {"quantile": init - center, "compander": _compander_levels(y, k)}
    runs = {name: _lloyd_run(y, csum, start, step_tol, max_iter)
            for name, start in starts.items() if start is not None}
    best = min(runs, key=lambda name: (runs[name][3], list(runs).index(name)))   # ties: quantile start
    levels, iterations, converged, mse = runs[best]
    levels = levels + center
    return LloydMax(levels, (levels[:-1] + levels[1:]) / 2, mse, iterations, converged, best)


def lloyd_max(x, k, *, tol=LLOYD_TOL, max_iter=LLOYD_MAX_ITER):
    """The ``k`` real levels of least mean squared error for tensor ``x``: Lloyd's algorithm.

    One-dimensional k-means on the values of ``x`` (all of them: one table for the whole tensor).
    Each iteration sets the thresholds to the midpoints of adjacent levels and each level to the
    mean of its cell (an empty cell keeps its level), with the values sorted once and their
    cumulative sums kept: ``O(k log n)`` per iteration after an ``O(n log n)`` sort. Two runs,
    from fixed starts, and the one of lower error is kept (the first on a tie):

    ``"quantile"``
        the k-quantile levels (numpy's ``"hazen"`` quantiles at ``(i + 1/2)/k``, or those of the
        distinct values if repeated values make two coincide), so the real levels are never worse
        than the empirical k-quantile levels;
    ``"compander"``
        the quantiles of ``p**(1/3)``, the asymptotically optimal density of levels, ``p`` a
        ``16 k``-bin histogram (skipped if two of its levels coincide).

    The result is deterministic and independent of the order and shape of the values.

    Parameters
    ----------
    x : array-like
        The tensor, any shape (flattened); NaN/Inf raise :class:`InputError`.
    k : int
        Number of levels, 2 to ``2**LEVEL_BITS_MAX``.
    tol : float
        Stop once no level moves by more than ``tol`` times the standard deviation of ``x``
        (default :data:`LLOYD_TOL`). The run also stops, converged exactly, as soon as an
        iteration leaves every cell as it was.
    max_iter : int
        Iteration cap (default :data:`LLOYD_MAX_ITER`); stopping there is not an error
        (:attr:`LloydMax.converged` is then False), since every iteration lowers the error.

    Returns
    -------
    LloydMax
        ``levels`` of shape ``(k,)``, ``thresholds`` of shape ``(k - 1,)``.

    Raises
    ------
    InputError
        NaN/Inf in ``x``, fewer than ``k`` distinct values, ``k`` out of range, a negative or
        non-finite ``tol``, or ``max_iter`` < 1.

    Notes
    -----
    The fixed points satisfy Max's two conditions for a minimum-distortion quantizer: every
    threshold is the midpoint of its levels and every level is the centroid of its cell
    (J. Max, "Quantizing for minimum distortion", IRE Trans. Inf. Theory 6(1):7-12, 1960; S. P.
    Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28(2):129-137, 1982). For
    a standard Gaussian they are ``±0.7979`` (``k = 2``, ``±sqrt(2/pi)``), ``±0.4528, ±1.5104``
    (``k = 4``). Lloyd's algorithm stops at a fixed point, a local minimum of the sample's error;
    for a strictly log-concave density such as the Gaussian the locally optimal quantizer is unique
    (P. E. Fleischer, IEEE Int. Conv. Rec., 1964), so on a large sample the fixed point's error is
    close to the least possible.
    """
    k = check_int("Lloyd-Max level count", k, 2, 1 << LEVEL_BITS_MAX)
    tol, max_iter = _check_lloyd_controls(tol, max_iter)
    x = check_finite(x).ravel()
    return _lloyd_sorted(np.sort(x), k, tol, max_iter)


def fit_lloyd_levels(x, bits, *, level_bits=None, frac=None, tol=LLOYD_TOL, max_iter=LLOYD_MAX_ITER):
    """The Lloyd-Max (least mean squared error) level table of tensor ``x``, stored as words.

    Beyond the paper, whose levels are k-quantiles (:func:`fit_levels`): the real levels are
    :func:`lloyd_max`'s, then rounded to ``level_bits``-bit words by :func:`round_levels` exactly
    as the k-quantile levels are, so the table is what the hardware holds. One table for the
    whole tensor (a layer's weights), in the tensor's units (scale 1).

    Parameters
    ----------
    x : array-like
        The tensor, any shape; NaN/Inf raise :class:`InputError`.
    bits : int
        Index width, 2 to 8 (``k = 2**bits`` levels).
    level_bits : int, optional
        Stored word length (``bits + 4`` by default).
    frac : int, optional
        Stored fraction length (by default the largest at which no level saturates).
    tol, max_iter
        Lloyd's algorithm's stopping rule (:func:`lloyd_max`).

    Returns
    -------
    LevelFit
        ``real_levels`` (shape ``(k,)``) are the Lloyd-Max levels, ``mse`` the error of the stored
        table, ``lloyd`` the run, ``distribution`` the empirical one.

    Raises
    ------
    InputError
        As :func:`lloyd_max` and :func:`fit_distribution` (fewer than two values, a constant
        tensor), or two levels rounding to the same word (more ``level_bits`` needed).
    """
    bits = check_int("uniq bit width", bits, *Uniq.bit_range)
    level_bits = _default_level_bits(bits) if level_bits is None else level_bits
    check_int("uniq level word length", level_bits, bits, LEVEL_BITS_MAX)
    tol, max_iter = _check_lloyd_controls(tol, max_iter)
    x = check_finite(x)
    dist = fit_distribution(x, "empirical")
    run = _lloyd_sorted(dist.samples, 1 << bits, tol, max_iter)
    levels, frac = round_levels(run.levels, level_bits, frac)
    fmt = Uniq(bits, levels=levels, level_bits=level_bits, frac=frac)
    mse = float(np.mean((fmt.fake_quantize(x) - x) ** 2))
    return LevelFit(fmt, dist, run.levels, mse, run)


@CALIBRATORS.register("uniq")
@declare_options(IntOption("lloyd", 0, 1, doc="1: Lloyd-Max levels (beyond the paper), 0: the paper's k-quantiles"))
def calibrate_uniq(x, bits, *, role, per_channel, options):
    """UNIQ's calibration: k-quantile levels of the Gaussian fitted to the weights
    (:func:`fit_levels`), stored as fixed point. Weights only: UNIQ's activations are uniform.

    One table per tensor (per layer) with scale 1, whatever ``per_channel`` says. Option
    ``lloyd`` (spec ``"uniq4lloyd1"`` or ``{"format": "uniq", "bits": 4, "lloyd": 1}``): 1 for
    Lloyd-Max levels (:func:`fit_lloyd_levels`, beyond the paper), 0 (the default) for the
    paper's k-quantile levels.

    Returns
    -------
    Calibration
        ``candidates`` maps ``"gaussian"`` (k-quantile) or ``"lloyd"`` (Lloyd-Max) to the
        stored table's MSE.

    Raises
    ------
    InputError
        For activations (use an fxp spec for them), an unknown option, or a ``lloyd`` value
        other than 0 or 1.
    """
    options = check_options("uniq", options, bits)
    if role != "weight":
        raise InputError("UNIQ quantizes weights only; its activations are uniform: use an fxp spec for them")
    if options.get("lloyd", 0):
        fit = fit_lloyd_levels(x, bits)
        return Calibration(fit.format, np.ones(1), None, {"lloyd": fit.mse})
    fit = fit_levels(x, bits, distribution="gaussian")
    return Calibration(fit.format, np.ones(1), None, {"gaussian": fit.mse})
