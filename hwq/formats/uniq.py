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
from .calibration import CALIBRATORS, Calibration, check_options
from .fxp import FRAC_RANGE, FixedPoint, frac_for_max
from .rounding import check_finite

__all__ = ["Uniq", "DISTRIBUTIONS", "Distribution", "LevelFit", "quantile_points", "gaussian_levels",
           "fit_distribution", "round_levels", "fit_levels", "select_levels", "LEVEL_BITS_MAX",
           "DEFAULT_EXTRA_LEVEL_BITS", "calibrate_uniq"]

#: the distribution families the levels can be fitted to
DISTRIBUTIONS = ("gaussian", "laplace", "empirical")
#: widest stored level word
LEVEL_BITS_MAX = 16
#: default ``level_bits - bits``
DEFAULT_EXTRA_LEVEL_BITS = 4


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
    """

    format: Uniq
    distribution: Distribution
    real_levels: np.ndarray
    mse: float


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


@CALIBRATORS.register("uniq")
def calibrate_uniq(x, bits, *, role, per_channel, options):
    """UNIQ's calibration: k-quantile levels of the Gaussian fitted to the weights
    (:func:`fit_levels`), stored as fixed point. Weights only: UNIQ's activations are uniform.

    Returns
    -------
    Calibration
        ``candidates`` maps ``"gaussian"`` to the fit's MSE.

    Raises
    ------
    InputError
        For activations (use an fxp spec for them).
    """
    check_options("uniq", options, ())
    if role != "weight":
        raise InputError("UNIQ quantizes weights only; its activations are uniform: use an fxp spec for them")
    fit = fit_levels(x, bits, distribution="gaussian")
    return Calibration(fit.format, np.ones(1), None, {"gaussian": fit.mse})
