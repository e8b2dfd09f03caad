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

Per-channel scales (beyond the paper)
-------------------------------------
UNIQ fits one table per layer to the weights themselves. With BatchNorm folded in, a layer's
output channels can differ in spread a hundredfold, and one table in the weights' units fits none
of them. :func:`fit_channel_table` (the calibrator's default for weights, ``per_channel=True``)
keeps one table per layer -- what the PE loads -- fitted to the weights divided by their
channel's root mean square, and gives every output channel a scale of least squared error against
it (:func:`search_scales`), an arbitrary positive real that the hardware folds into the channel's
requantization multiplier. Words that would collide are spread apart (``round_levels(...,
spread=True)``) so the table keeps ``level_bits``.

Word length
-----------
``level_bits`` defaults to ``bits + 4`` (8 for 4-bit indices). For the standard Gaussian table
this leaves about 5 LSBs between the two levels nearest zero at every ``bits`` from 2 to 8, and
the 4-bit table is ``levels * 2**-6`` with ``levels`` in ``[-119, 119]``
(:meth:`Uniq.gaussian`). Lloyd-Max tables at 7 and 8 bits can crowd their inner levels closer
than that (a small layer: a few weights per level); :func:`fit_lloyd_levels` then raises, the
calibrator spreads the words.
"""

import dataclasses
from statistics import NormalDist

import numpy as np

from ..errors import InputError
from .ant import least_squares_scales
from .base import NumberFormat, check_int, nearest_index
from .calibration import CALIBRATORS, Calibration, IntOption, check_options, declare_options
from .fxp import FRAC_RANGE, FixedPoint, frac_for_max
from .rounding import check_finite

__all__ = ["Uniq", "DISTRIBUTIONS", "Distribution", "LevelFit", "quantile_points", "gaussian_levels",
           "fit_distribution", "round_levels", "fit_levels", "select_levels", "LEVEL_BITS_MAX",
           "DEFAULT_EXTRA_LEVEL_BITS", "LloydMax", "lloyd_max", "fit_lloyd_levels", "LLOYD_TOL",
           "LLOYD_MAX_ITER", "SCALE_GRID", "search_scales", "fit_channel_table", "calibrate_uniq"]

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


def round_levels(real_levels, level_bits, frac=None, *, spread=False):
    """Store real levels as ``level_bits``-bit two's-complement fixed point.

    Parameters
    ----------
    real_levels : sequence of float
        Ascending levels.
    level_bits : int
        Word length of a stored level, 2 to :data:`LEVEL_BITS_MAX`.
    frac : int, optional
        Fraction length; by default the largest at which no level saturates.
    spread : bool
        What to do with levels that round to the same word: raise (False, the default), or (True)
        move them apart by whole LSBs -- each word at least one above the one before it, then, if
        the top word saturates, each at least one below the one after it -- so the table keeps
        ``len(real_levels)`` distinct words of ``level_bits`` bits (possible whenever there are at
        most ``2**level_bits`` levels). The calibrator spreads: a table of densely packed levels
        (Lloyd-Max's, at 8 bits, around zero) keeps the PE's word length.

    Returns
    -------
    levels : list of int
        ``round_half_even(real * 2**frac)``, saturated to the word (then spread, if asked).
    frac : int

    Raises
    ------
    InputError
        Two levels round to the same word (more ``level_bits`` or ``frac`` needed), unless
        ``spread``; more levels than words.
    """
    real = check_finite(real_levels, "levels")
    level_bits = check_int("uniq level word length", level_bits, 2, LEVEL_BITS_MAX)
    if frac is None:
        frac = frac_for_max(real, level_bits, signed=True)
    word = FixedPoint(level_bits, frac=frac, signed=True)
    levels = word.decode(word.encode(real)).tolist()
    if spread and len(levels) <= 1 << level_bits:
        half = 1 << (level_bits - 1)
        for i in range(1, len(levels)):
            levels[i] = max(levels[i], levels[i - 1] + 1)
        if levels and levels[-1] > half - 1:
            levels[-1] = half - 1
            for i in range(len(levels) - 2, -1, -1):
                levels[i] = min(levels[i], levels[i + 1] - 1)
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
        return nearest_index(self._table, x, ties="up").astype(np.int64, copy=False)


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


def fit_levels(x, bits, *, distribution="gaussian", level_bits=None, frac=None, spread=False):
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
    spread : bool
        Spread levels that round to the same word apart instead of raising (:func:`round_levels`).

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
    levels, frac = round_levels(real, level_bits, frac, spread=spread)
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


def fit_lloyd_levels(x, bits, *, level_bits=None, frac=None, tol=LLOYD_TOL, max_iter=LLOYD_MAX_ITER, spread=False):
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
    spread : bool
        Spread levels that round to the same word apart instead of raising (:func:`round_levels`).

    Returns
    -------
    LevelFit
        ``real_levels`` (shape ``(k,)``) are the Lloyd-Max levels, ``mse`` the error of the stored
        table, ``lloyd`` the run, ``distribution`` the empirical one.

    Raises
    ------
    InputError
        As :func:`lloyd_max` and :func:`fit_distribution` (fewer than two values, a constant
        tensor), or two levels rounding to the same word (more ``level_bits`` needed) unless
        ``spread``.
    """
    bits = check_int("uniq bit width", bits, *Uniq.bit_range)
    level_bits = _default_level_bits(bits) if level_bits is None else level_bits
    check_int("uniq level word length", level_bits, bits, LEVEL_BITS_MAX)
    tol, max_iter = _check_lloyd_controls(tol, max_iter)
    x = check_finite(x)
    dist = fit_distribution(x, "empirical")
    run = _lloyd_sorted(dist.samples, 1 << bits, tol, max_iter)
    levels, frac = round_levels(run.levels, level_bits, frac, spread=spread)
    fmt = Uniq(bits, levels=levels, level_bits=level_bits, frac=frac)
    mse = float(np.mean((fmt.fake_quantize(x) - x) ** 2))
    return LevelFit(fmt, dist, run.levels, mse, run)


#: per-channel scale search (hwq extension): grid points per octave of the scale
SCALE_STEPS_PER_OCTAVE = 128
#: the search's scales, in units of a channel's root mean square: ``2**(j / 128)`` from 1/4 to 32
#: (0.54 % apart). On EfficientNet-Lite0's weights the least-error scale lies between 0.52 and 3.9
#: root mean squares (k-quantile and Lloyd-Max tables, 4 and 8 bits); a row with a few far
#: outliers keeps them in range at 8 bits, up to ``max|w_c| / max|value|``, tens of root mean squares
SCALE_GRID = 2.0 ** (np.arange(-2 * SCALE_STEPS_PER_OCTAVE, 5 * SCALE_STEPS_PER_OCTAVE + 1) / SCALE_STEPS_PER_OCTAVE)
#: histogram bins per channel the coarse pass may spend (one per grid point and threshold of the
#: table); its stride is the least power of two from 4 up that fits
SCALE_BINS = 1 << 14
#: least-squares steps after the grid (:func:`hwq.formats.ant.least_squares_scales`)
SCALE_REFINE_STEPS = 2
#: most histogram bins (and elements) of one block of channels in :func:`_histogram_sse`, and
#: events of one batch of :func:`_exact_scales`
_BLOCK_BINS = 1 << 18
#: a channel is searched exactly (:func:`_exact_scales`) unless that costs more than this many
#: times its histograms
_EXACT_COST = 2


def _exact_scales(rows, values):
    """The scale of least squared error of each row over all positive scales, exactly.

    As the scale ``s`` grows, an element ``w`` changes level only where ``w / s`` crosses a
    midpoint ``m`` of the table, at ``s = w / m`` (a positive element crossing the positive
    midpoints downward, a negative one the negative midpoints upward). Between two such events
    every element keeps its level ``g`` and the squared error is the quadratic
    ``sum(w**2) - 2 s sum(w g) + s**2 sum(g**2)``, least at ``s = sum(w g) / sum(g**2)`` clipped to
    the interval; the error is continuous in ``s``, so the least of those interval minima is the
    global one. The events are sorted per row and the sums kept by cumulative sums:
    ``O(n K log(n K))`` for ``n`` elements and ``K`` midpoints -- for short rows (a depthwise 3x3
    filter) cheaper than the grid, and exact where the grid would have to be very fine (few
    elements on many levels make the error needle-sharp in the scale).
    """
    n_rows, n = rows.shape
    midpoints = (values[:-1] + values[1:]) / 2
    low, high = values[:-1], values[1:]
    zero_level = values[np.searchsorted(midpoints, 0.0, side="right")]       # where 0 rounds (ties up)
    scale = np.empty(n_rows)
    batch = max(1, _BLOCK_BINS // max(n * len(midpoints), 1))
    for lo in range(0, n_rows, batch):
        w = rows[lo:lo + batch]
        start = np.where(w > 0, values[-1], np.where(w < 0, values[0], zero_level))   # levels as s -> 0
        sum_sq = np.einsum("ij,ij->i", w, w)
        sum_wg, sum_gg = np.einsum("ij,ij->i", w, start), np.einsum("ij,ij->i", start, start)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = w[:, :, None] / midpoints                                     # (rows, n, K)
        valid = ((w[:, :, None] > 0) & (midpoints > 0)) | ((w[:, :, None] < 0) & (midpoints < 0))
        at = np.where(valid, at, np.inf).reshape(len(w), -1)
        sign = np.sign(w)[:, :, None]                   # down a level (w > 0) or up one (w < 0)
        d_wg = np.where(valid, w[:, :, None] * (low - high) * sign, 0.0).reshape(len(w), -1)
        d_gg = np.where(valid, (low * low - high * high) * sign, 0.0).reshape(len(w), -1)
        order = np.argsort(at, axis=1, kind="stable")
        at = np.take_along_axis(at, order, 1)
        zero = np.zeros((len(w), 1))                    # the first interval: before any crossing
        wg = sum_wg[:, None] + np.concatenate([zero, np.cumsum(np.take_along_axis(d_wg, order, 1), 1)], 1)
        gg = sum_gg[:, None] + np.concatenate([zero, np.cumsum(np.take_along_axis(d_gg, order, 1), 1)], 1)
        left = np.concatenate([zero, at], 1)
        right = np.concatenate([at, np.full((len(w), 1), np.inf)], 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            best = np.clip(np.where(gg > 0, wg / gg, left), left, right)
            sse = np.where(np.isfinite(left) & (best > 0), sum_sq[:, None] - 2 * best * wg + best * best * gg, np.inf)
        pick = np.argmin(sse, axis=1)
        scale[lo:lo + batch] = best[np.arange(len(w)), pick]
    return scale


def _histogram_sse(rows, unit, mults, values):
    """Sum of squared errors of each row of ``rows`` rounded (nearest value, ties up, saturating) to
    ``values * s`` at every scale ``s = unit[r] * m``, ``m`` in ``mults``: shape
    ``(rows, len(mults))``, from one histogram per row over every multiplier's thresholds.

    With ``u = w / unit``, an element rounds at multiplier ``m`` to
    ``values[0] + sum(dv[j] * (u >= t[m, j]))``, ``t[m, j] = m * midpoint[j]``, ``dv`` the steps
    between values (a value on a threshold goes up: ties to the larger value). So ``sum(u * g)``
    and ``sum(g**2)`` are sums over the thresholds of a step times the sum, or the count, of the
    elements at or above the threshold: suffix sums of one histogram per row over the sorted
    thresholds of every multiplier. The squared error is
    ``unit**2 * (sum(u**2) - 2 m sum(u * g) + m**2 sum(g**2))``; rounding makes it differ from
    rounding each element by about ``1e-16 * sum(w**2)``, which only matters between multipliers
    that near-tie.
    """
    n_rows, n = rows.shape
    midpoints = (values[:-1] + values[1:]) / 2
    thresholds = mults[:, None] * midpoints[None, :]                # (multipliers, K)
    sorted_thresholds = np.unique(thresholds)
    n_bins = len(sorted_thresholds) + 1
    cols = np.searchsorted(sorted_thresholds, thresholds) + 1       # suffix column of u >= t
    steps, square_steps = np.diff(values), np.diff(values * values)
    out = np.empty((n_rows, len(mults)))
    block = max(1, min(_BLOCK_BINS // n_bins, _BLOCK_BINS // max(n, 1)))
    for lo in range(0, n_rows, block):
        u = rows[lo:lo + block] / unit[lo:lo + block, None]
        block_rows = len(u)
        rank = np.searchsorted(sorted_thresholds, u.ravel(), side="right")          # thresholds <= u
        flat = rank + n_bins * np.repeat(np.arange(block_rows), n)
        size = block_rows * n_bins
        count, total = (np.cumsum(h.reshape(block_rows, n_bins)[:, ::-1], axis=1)[:, ::-1]
                        for h in (np.bincount(flat, minlength=size), np.bincount(flat, u.ravel(), size)))
        sum_ug = values[0] * u.sum(axis=1)[:, None] + np.einsum("rmk,k->rm", total[:, cols], steps)
        sum_gg = values[0] ** 2 * n + np.einsum("rmk,k->rm", count[:, cols], square_steps)
        sse = np.einsum("ij,ij->i", u, u)[:, None] - 2 * mults * sum_ug + mults ** 2 * sum_gg
        out[lo:lo + block_rows] = sse * unit[lo:lo + block, None] ** 2
    return out


def _coarse_stride(n_thresholds):
    """Stride of the coarse pass over :data:`SCALE_GRID` for a table of ``n_thresholds``
    thresholds: the least power of two from 4 up whose points fit :data:`SCALE_BINS`."""
    stride = 4
    while -(-len(SCALE_GRID) // stride) * n_thresholds > SCALE_BINS and stride < len(SCALE_GRID):
        stride *= 2
    return stride


def _search_rows(rows, values, steps):
    """:func:`search_scales` on 2-D float64 ``rows`` and the table's ascending ``values``."""
    # each row's errors do not depend on the order of its elements: sorted, the binary searches
    # of the histograms and of the rounding run several times faster (they walk the thresholds in order)
    rows = np.sort(rows, axis=1)
    norm = np.sqrt(np.einsum("ij,ij->i", rows, rows) / rows.shape[1])
    live = np.flatnonzero(norm > 0)
    scale = np.ones(len(rows))
    if len(live):
        w, unit, n = rows[live], norm[live], rows.shape[1]
        grid, stride = SCALE_GRID, _coarse_stride(len(values) - 1)
        step = max(1, stride // 4)
        window = np.arange(-stride, stride + 1, step)                        # grid offsets
        bins = (-(-len(grid) // stride) + 3 * len(window)) * (len(values) - 1)
        events = n * (len(values) - 1)
        if events * (np.log2(max(events, 2)) + 8) <= _EXACT_COST * (6 * bins + 40 * n):
            mult = _exact_scales(w, values) / unit
            mult = np.where(np.isfinite(mult) & (mult > 0), mult, 1.0)
        else:
            coarse = _histogram_sse(w, unit, grid[::stride], values)
            padded = np.pad(coarse, ((0, 0), (1, 1)), constant_values=np.inf)
            minima = np.where((coarse <= padded[:, :-2]) & (coarse <= padded[:, 2:]), coarse, np.inf)
            order = np.argsort(minima, axis=1, kind="stable")[:, :2]        # the two best local minima
            second = np.take_along_axis(minima, order[:, 1:], 1)[:, 0]
            order[:, 1] = np.where(np.isfinite(second), order[:, 1], order[:, 0])
            fine = 2.0 ** (window / SCALE_STEPS_PER_OCTAVE)
            best_sse, mult = np.full(len(w), np.inf), np.ones(len(w))
            # and the clip edge, where the table's largest magnitude meets the channel's: below it
            # the largest weights saturate, and with sparse outer levels the error is often least there
            edge = np.abs(w).max(axis=1) / np.abs(values).max() / unit
            for centre in (*grid[::stride][order.T], edge):
                sse = _histogram_sse(w, unit * centre, fine, values)
                pick = np.argmin(sse, axis=1)
                found = sse[np.arange(len(w)), pick]
                better = found < best_sse
                best_sse[better], mult[better] = found[better], (centre * fine[pick])[better]
        scale[live] = unit * mult
    scale, mse = least_squares_scales(rows, values, scale, steps)
    dead = norm == 0
    if dead.any() and len(live):                         # the least scale of the others
        scale[dead] = scale[live].min()
        mse[dead] = (scale[dead] * values[np.searchsorted((values[:-1] + values[1:]) / 2, 0.0, side="right")]) ** 2
    return scale, mse


def search_scales(x, fmt, *, channel_axis=0, steps=SCALE_REFINE_STEPS):
    """Per-channel scales of least squared error against one table (hwq extension; UNIQ has none).

    Each channel's scale is searched over :data:`SCALE_GRID` (1/4 to 32 times the channel's root
    mean square, 0.54 % apart) and refined by least squares
    (:func:`hwq.formats.ant.least_squares_scales`, which never raises the error). The grid's
    errors come from one histogram per channel over the rounding thresholds of the grid points
    searched (:func:`_histogram_sse`), coarse to fine: every ``stride``-th grid point
    (:func:`_coarse_stride`: 4, 2.2 % apart, up to 6 bits; 16 at 8 bits), then the points within
    ``stride`` at ``stride / 4`` apart around the two best local minima of those errors and around
    the clip edge, the scale that puts the table's largest magnitude at the channel's ``max|w|``.
    The error is wavy over the scale, a few large weights jumping between the sparse outer levels,
    so the best coarse point may sit in the wrong wave; and with sparse outer levels (k-quantile
    tables at 8 bits) the least error is often right at the clip edge, in a basin narrower than the
    coarse step, where the largest weights stop saturating. Short channels (a depthwise 3x3
    filter; at 4 bits up to about 230 weights, at 8 bits about 50) get the exact least-error scale
    instead (:func:`_exact_scales`), at most twice what their histograms would cost. The scales
    are arbitrary positive floats: the hardware folds them into the channel's
    requantization multiplier. An all-zero channel gets the least scale of the others (its error
    is that of the table's level nearest zero, at that scale).

    Parameters
    ----------
    x : array-like
        The weights.
    fmt : Uniq
        The table.
    channel_axis : int
        Axis of the output channels.
    steps : int
        Least-squares steps.

    Returns
    -------
    scale : numpy.ndarray
        Shape ``(channels,)``, positive.
    mse : numpy.ndarray
        Each channel's mean squared error ``mean((s * value(encode(w / s)) - w)**2)``.
    """
    x = check_finite(x)
    rows = np.ascontiguousarray(np.moveaxis(x, channel_axis, 0).reshape(x.shape[channel_axis], -1))
    return _search_rows(rows, np.unique(fmt.to_real(fmt.codes)), steps)


def _layer_table(y, bits, family, level_bits):
    """The table of normalised weights ``y`` (1-D): k-quantile of the fitted Gaussian or Lloyd-Max,
    stored as ``level_bits``-bit words, colliding words spread (:func:`round_levels`)."""
    if family == "lloyd":
        real = _lloyd_sorted(np.sort(y), 1 << bits, LLOYD_TOL, LLOYD_MAX_ITER).levels
    else:
        real = fit_distribution(y, "gaussian").quantile(quantile_points(bits))
    levels, frac = round_levels(real, level_bits, spread=True)
    return Uniq(bits, levels=levels, level_bits=level_bits, frac=frac)


def fit_channel_table(x, bits, *, lloyd=False, level_bits=None, channel_axis=0):
    """One level table per layer and one scale per output channel (hwq extension).

    UNIQ fits one table per layer to the weights themselves (:func:`fit_levels`), so a channel
    whose weights are 100 times smaller than another's -- common once BatchNorm is folded in --
    sees the same levels. Here every channel is normalised first (by its root mean square), the
    table -- still one per layer, which is what the PE loads -- is fitted to the normalised
    weights of the whole layer (the paper's k-quantile table of the fitted Gaussian, or Lloyd-Max
    with ``lloyd``; every channel counts alike), and each channel then gets the scale of least
    squared error against that table (:func:`search_scales`).

    Parameters
    ----------
    x : array-like
        The weights, at least 2-D.
    bits : int
        Index width, 2 to 8.
    lloyd : bool
        Lloyd-Max levels instead of k-quantiles.
    level_bits : int, optional
        Stored word length (``bits + 4`` by default); words that would collide are spread apart
        (:func:`round_levels`), so the table keeps the PE's word length.
    channel_axis : int
        Axis of the output channels.

    Returns
    -------
    format : Uniq
        The table, in normalised units.
    scale : numpy.ndarray
        Shape ``(channels,)``: ``w ~ scale[c] * value(code)``.
    mse : float
        Mean squared error of the weights.

    Raises
    ------
    InputError
        NaN/Inf, a tensor with fewer than two dimensions or all zeros, or (Lloyd-Max) fewer
        distinct normalised values than levels.
    """
    bits = check_int("uniq bit width", bits, *Uniq.bit_range)
    level_bits = _default_level_bits(bits) if level_bits is None else level_bits
    check_int("uniq level word length", level_bits, bits, LEVEL_BITS_MAX)
    x = check_finite(x)
    if x.ndim < 2:
        raise InputError(f"per-channel uniq scales need weights of at least 2 dimensions, not {x.ndim}")
    rows = np.ascontiguousarray(np.moveaxis(x, channel_axis, 0).reshape(x.shape[channel_axis], -1))
    del x
    norm = np.sqrt(np.einsum("ij,ij->i", rows, rows) / rows.shape[1])
    live = norm > 0
    if not live.any():
        raise InputError("cannot fit levels to an all-zero tensor")
    fmt = _layer_table((rows[live] / norm[live, None]).ravel(), bits, "lloyd" if lloyd else "gaussian", level_bits)
    scale, mse = _search_rows(rows, np.unique(fmt.to_real(fmt.codes)), SCALE_REFINE_STEPS)
    return fmt, scale, float(mse.mean())


@CALIBRATORS.register("uniq")
@declare_options(IntOption("lloyd", 0, 1, doc="1: Lloyd-Max levels (beyond the paper), 0: the paper's k-quantiles"))
def calibrate_uniq(x, bits, *, role, per_channel, options):
    """UNIQ's calibration: k-quantile levels of the Gaussian fitted to the weights, stored as fixed
    point, one table per layer. Weights only: UNIQ's activations are uniform.

    With ``per_channel`` (and weights of at least 2 dimensions) every output channel (axis 0) also
    gets its own scale against the layer's one table (:func:`fit_channel_table`, hwq extension:
    the table is fitted to the channel-normalised weights, each channel's scale by least squared
    error). Without it, the paper's method as is: the table fitted to the weights themselves
    (:func:`fit_levels`), scale 1. Option ``lloyd`` (spec ``"uniq4lloyd1"`` or ``{"format":
    "uniq", "bits": 4, "lloyd": 1}``): 1 for Lloyd-Max levels (:func:`fit_lloyd_levels`, beyond
    the paper), 0 (the default) for the paper's k-quantile levels.

    Returns
    -------
    Calibration
        ``candidates`` maps ``"gaussian"`` (k-quantile) or ``"lloyd"`` (Lloyd-Max) to the
        weights' MSE.

    Raises
    ------
    InputError
        For activations (use an fxp spec for them), an unknown option, or a ``lloyd`` value
        other than 0 or 1.
    """
    options = check_options("uniq", options, bits)
    if role != "weight":
        raise InputError("UNIQ quantizes weights only; its activations are uniform: use an fxp spec for them")
    lloyd = bool(options.get("lloyd", 0))
    name = "lloyd" if lloyd else "gaussian"
    if per_channel and np.ndim(x) >= 2:
        fmt, scale, mse = fit_channel_table(x, bits, lloyd=lloyd)
        return Calibration(fmt, scale, 0, {name: mse})
    fit = fit_lloyd_levels(x, bits, spread=True) if lloyd else fit_levels(x, bits, distribution="gaussian", spread=True)
    return Calibration(fit.format, np.ones(1), None, {name: fit.mse})
