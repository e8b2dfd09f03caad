"""AUSN: values as superposed power-of-two terms whose code fields are the shift amounts.

hwq's reading of AUSN (docs/formats.md, "ausn"; only the paper's abstract was available). A value
is a signed sum of at most ``T`` power-of-two terms,

    ``value = (-1)**sign * sum_t term_t * 2**exp_base``,  ``term_t = 0`` or ``2**(o_t + f_t - 1)``,

with one code field ``f_t`` per term. The *superposition* (chosen per layer) is the field widths
``k_t`` and the offsets ``o_t``: term ``t`` is absent when ``f_t = 0`` and otherwise takes one of
the ``2**k_t - 1`` consecutive exponents ``o_t ... o_t + 2**k_t - 2``. ``T = 1`` is power-of-two
(PoT) quantization; many contiguous one-bit terms are a uniform grid (``k = (1, 1, 1)`` with
offsets ``(2, 1, 0)`` is sign-magnitude ``-7 ... 7``).

Code layout
-----------
The code's bit pattern, most significant bit first::

    [sign] [f_1: k_1 bits] [f_2: k_2 bits] ... [f_T: k_T bits]

The sign bit exists for signed formats only (``sum(k) = bits - 1``; unsigned: ``sum(k) = bits``);
``f_T`` is in the lowest bits. The fields are the shift amounts themselves: a processing element
computes ``a * value = (-1)**sign * sum_t [f_t != 0] * (a << (o_t - 1 + f_t))`` with a
``k_t``-bit barrel shifter per term selected directly by ``f_t`` (``o_t - 1`` is constant wiring)
and the term enable ``f_t != 0`` (for a one-bit field, the field itself). No decoder precedes the
shift-add MAC. A term's exponents form a window of consecutive exponents *because* of this: any
other set would need a field-to-exponent decoder.

Parameters are normalized: every offset is at least 0 and the smallest is 0 (the unit of the
integer values is the smallest term, so a grid always contains 1), and no exponent exceeds
:data:`EXPONENT_MAX` (so integer values are at most ``8 * 2**30``). The value set is listed exactly by
:meth:`Ausn.codebook`; :meth:`Ausn.decompose` gives ``(sign, fields)`` for the PE.

Several codes may share a value (``-0`` and ``+0``; overlapping windows, where
``2**e + 2**e = 2**(e+1) + 0``). :meth:`Ausn.encode` writes the *canonical* code of a value: the
lowest code (bit pattern read unsigned) with that value, so ``+0`` is code 0 and, of two equal
sums, the one with less in the upper fields.

Rounding (the AUSN rule)
------------------------
:meth:`Ausn.encode` picks the representable sum nearest ``x`` in one step: the candidates are the
sums the fields can hold, never a fixed-point value that must then be split into terms. So a
round-up never carries a bit into a term the code lacks or past a field's range (no bit-width
overflow) and its result never needs a second rounding (no re-quantization; ``encode`` of a
decoded value gives back its canonical code). Where the round-up *would* have to carry past the top
of the fields (``|x|`` above the largest representable sum), the result is the largest
representable value instead (saturation; unsigned formats clamp negative ``x`` to 0).

A greedy encoder (each term the leading one of what is left, the last term rounded) is not used:
with terms ``{2, 4, 8}`` and ``{1}``, ``x = 7`` gives ``4 + 1`` and its round-up ``4 + 4`` has no
code, while the nearest sum, ``8``, has one.

Ties (``|x|`` exactly half-way between two neighbouring sums) go to the *smaller magnitude*
(toward zero): a tie never rounds up, so it never changes a higher field, and
``encode(-x)`` is ``encode(x)`` with the sign bit set (sign-magnitude symmetry).

Superposition search
--------------------
:func:`select_superposition` chooses the superposition and scale of one tensor (a layer) with the
least mean squared error, over :func:`superpositions`: for ``T = 1 ... max_terms`` terms (by default
half the magnitude bits, rounded up: at most half the partial products of a multiplier), every
composition ``k_1 + ... + k_T`` of the magnitude bits (in lexicographic order), with windows that
range from fully overlapping to just contiguous: ``o_T = 0`` and ``o_t = o_{t+1} + g_t``,
``0 <= g_t <= 2**k_{t+1} - 1`` (gaps between windows would leave holes in the grid). Candidates
with an exponent above :data:`EXPONENT_MAX`, or with the same value set as an earlier candidate,
are left out. For each candidate the scale sweeps ``alpha = max|x| * 2**(-j/16)``,
``j = -8 ... 48`` (``1.41 * max|x|`` down to ``max|x| / 8`` in steps of 4.4 %; PoT-like grids clip
far below the maximum), with scale ``alpha / max(value)``; the least MSE wins, ties to the earlier
candidate (fewer terms: cheaper hardware), then to the earlier scale. Every candidate's clipping,
rounding and total error at its best scale is returned (:mod:`hwq.formats.metrics`).

The search gives that exhaustive sweep's choice without encoding the tensor once per candidate and
scale (2926 unsigned 8-bit candidates; minutes for 10**6 activations): the magnitudes are sorted
once, a candidate's squared error at a scale is a sum over its rounding thresholds of cumulative
sums, bounded from a table indexed by the thresholds' float64 bit patterns, and summed exactly
only where the bounds cannot rule a scale out (:func:`select_superposition`, :func:`_bounds`). Two
sums equal up to float64 rounding may break their tie either way.

Per-channel weights (:func:`calibrate_ausn`, an hwq extension): one superposition per layer,
chosen on the channels each divided by its maximum, and one scale per output channel.
"""

import dataclasses
import functools
import itertools

import numpy as np

from ..errors import InputError
from .base import NumberFormat, check_int, nearest_index
from .calibration import CALIBRATORS, Calibration, check_options
from .metrics import QuantError, sweep_scales
from .rounding import check_finite

__all__ = ["Ausn", "EXPONENT_MAX", "DEFAULT_SUPERPOSITIONS", "default_superposition", "superposition_label",
           "superpositions", "SuperpositionChoice", "select_superposition", "SCALE_RATIOS", "WEIGHT_RATIOS",
           "calibrate_ausn"]

#: largest exponent of any term
EXPONENT_MAX = 30

#: default ``(fields, offsets)`` per number of magnitude bits: the superposition
#: :func:`select_superposition` picks (default ``max_terms``) for 8192 samples of N(0, 1)
#: (``numpy.random.default_rng(0).normal(size=8192)``; its absolute values for unsigned formats)
DEFAULT_SUPERPOSITIONS = {
    2: ((2,), (0,)),
    3: ((2, 1), (1, 0)),
    4: ((2, 2), (2, 0)),
    5: ((2, 2, 1), (2, 1, 0)),
    6: ((2, 2, 2), (3, 1, 0)),
    7: ((2, 1, 1, 3), (4, 3, 2, 0)),
    8: ((2, 1, 2, 3), (4, 3, 1, 0)),
}

#: scale sweep of :func:`select_superposition`: ``alpha / max|x|``
SCALE_RATIOS = 2.0 ** (-np.arange(-8, 49) / 16)


def default_superposition(bits, signed=True):
    """``(fields, offsets)`` of the default superposition for ``bits``-bit codes."""
    check_int("AUSN bit width", bits, *Ausn.bit_range)
    return DEFAULT_SUPERPOSITIONS[bits - (1 if signed else 0)]


def superposition_label(fields, offsets):
    """Short name of a superposition, e.g. ``"k2o1_k1o0"`` (field width and offset per term)."""
    return "_".join(f"k{k}o{o}" for k, o in zip(fields, offsets))


def _check_superposition(magnitude_bits, fields, offsets):
    """Validated ``(fields, offsets)`` as tuples of ints."""
    if isinstance(fields, (str, bytes)) or not hasattr(fields, "__len__") or not len(fields):
        raise InputError(f"AUSN fields must be a non-empty sequence of field widths, not {fields!r}")
    fields = tuple(check_int("AUSN field width", k, 1, magnitude_bits) for k in fields)
    if sum(fields) != magnitude_bits:
        raise InputError(f"AUSN field widths {list(fields)} must add up to the {magnitude_bits} magnitude bits")
    if isinstance(offsets, (str, bytes)) or not hasattr(offsets, "__len__") or len(offsets) != len(fields):
        raise InputError(f"AUSN offsets must list one offset per term ({len(fields)}), not {offsets!r}")
    offsets = tuple(check_int("AUSN offset", o, 0, EXPONENT_MAX) for o in offsets)
    if min(offsets) != 0:
        raise InputError(f"AUSN offsets {list(offsets)} must have 0 as their smallest (move the rest into exp_base)")
    for k, o in zip(fields, offsets):
        if o + (1 << k) - 2 > EXPONENT_MAX:
            raise InputError(f"AUSN term with a {k}-bit field at offset {o} reaches exponent "
                           f"{o + (1 << k) - 2}, above {EXPONENT_MAX}")
    return fields, offsets


class Ausn(NumberFormat):
    """An AUSN format: sums of power-of-two terms whose fields are shift amounts.

    Parameters
    ----------
    bits : int
        Code width, 3 to 8.
    fields : sequence of int, optional
        Field width ``k_t`` of every term, top field first; they add up to the magnitude bits.
        Default: :func:`default_superposition`.
    offsets : sequence of int, optional
        Offset ``o_t`` of every term (smallest 0); required when ``fields`` is given.
    signed : bool
        Sign bit on top (weights) or none.
    exp_base : int
        Exponent of the unit: ``value = decode(code) * 2**exp_base`` (-32 to 32).
    """

    name = "ausn"
    bit_range = (3, 8)

    def __init__(self, bits, *, fields=None, offsets=None, signed=True, exp_base=0):
        super().__init__(bits, signed=signed)
        if fields is None:
            if offsets is not None:
                raise InputError("AUSN offsets need their field widths; pass fields= too")
            fields, offsets = default_superposition(bits, signed)
        self._fields, self._offsets = _check_superposition(self.magnitude_bits, fields, offsets)
        self._exp_base = check_int("AUSN exp_base", exp_base, -32, 32)
        codes = np.arange(1 << bits, dtype=np.int64)
        self._sign = (codes >> self.magnitude_bits) if signed else np.zeros_like(codes)
        self._field_values = np.stack([(codes >> lsb) & ((1 << k) - 1) for lsb, k in self.field_slices])
        terms = np.where(self._field_values > 0,
                         np.left_shift(1, np.array(offsets)[:, None] + self._field_values - 1), 0)
        magnitude = terms.sum(axis=0)
        self._table = np.where(self._sign == 1, -magnitude, magnitude)
        # canonical code of every magnitude: the lowest code (its sign bit is clear)
        self._magnitudes, first = np.unique(magnitude, return_index=True)
        self._magnitude_codes = first.astype(np.int64)

    @property
    def fields(self):
        """Field width of every term, top field first."""
        return self._fields

    @property
    def offsets(self):
        """Offset of every term (its smallest exponent)."""
        return self._offsets

    @property
    def terms(self):
        """Number of terms ``T``."""
        return len(self._fields)

    @property
    def exp_base(self):
        """Exponent of the unit."""
        return self._exp_base

    @property
    def field_slices(self):
        """``(lsb, width)`` of every term's field in the code, top field first."""
        lsbs = np.cumsum((0,) + self._fields[::-1])[:-1][::-1]
        return tuple((int(lsb), k) for lsb, k in zip(lsbs, self._fields))

    @property
    def magnitudes(self):
        """Sorted distinct magnitudes (integer units): the unsigned grid."""
        return self._magnitudes.copy()

    @property
    def exponents(self):
        """Every term's exponent window, ``(o_t, ..., o_t + 2**k_t - 2)``, as tuples."""
        return tuple(tuple(range(o, o + (1 << k) - 1)) for k, o in zip(self._fields, self._offsets))

    @property
    def label(self):
        """:func:`superposition_label` of this format."""
        return superposition_label(self._fields, self._offsets)

    @property
    def lsb_exp(self):
        return self._exp_base

    def params(self):
        return {"bits": self.bits, "fields": list(self._fields), "offsets": list(self._offsets),
                "signed": self.signed, "exp_base": self._exp_base}

    def decompose(self, codes):
        """``(sign, fields)``: the code's sign bit and its field values.

        ``fields`` has shape ``(T,) + codes.shape`` (top field first), and
        ``decode(code) = (-1)**sign * sum_t [f_t > 0] * 2**(o_t + f_t - 1)``. ``sign`` is 0 for
        unsigned formats.
        """
        codes = np.asarray(codes)
        self.decode(codes)                                  # validates
        codes = codes.astype(np.int64)
        return self._sign[codes], self._field_values[:, codes]

    def _decode(self, codes):
        return self._table[codes]

    def _encode(self, x):
        x *= 2.0 ** -self._exp_base
        magnitude = np.abs(x) if self.signed else np.maximum(x, 0.0)
        codes = nearest_index(self._magnitudes, magnitude, ties="down", labels=self._magnitude_codes)
        if self.signed:                            # the sign bit, except on zero (+0, the only code 0)
            negative = x < 0
            negative &= codes != 0
            codes |= np.left_shift(negative, self.magnitude_bits, dtype=np.int64)
        return codes


def _grid_of(fields, offsets):
    """Sorted distinct magnitudes (int64) of superposition ``(fields, offsets)``.

    Every sum of one value per term, a term's values being 0 and ``2**e`` for each ``e`` in its
    window: :attr:`Ausn.magnitudes` without building the format (the search lists thousands).
    """
    sums = np.zeros(1, dtype=np.int64)
    for k, o in zip(fields, offsets):
        term = np.concatenate([[0], np.left_shift(1, np.arange(o, o + (1 << k) - 1, dtype=np.int64))])
        sums = np.unique(np.add.outer(sums, term).ravel())
    return sums


@functools.lru_cache(maxsize=None)
def _candidates(bits, signed, max_terms):
    """``((fields, offsets), ...)`` in search order and their grids (:func:`_grid_of`), computed
    once per width (:func:`superpositions` checks the arguments)."""
    magnitude_bits = bits - (1 if signed else 0)
    found, grids, seen = [], [], set()
    for count in range(1, min(max_terms, magnitude_bits) + 1):
        for cuts in itertools.combinations(range(1, magnitude_bits), count - 1):
            fields = tuple(b - a for a, b in zip((0,) + cuts, cuts + (magnitude_bits,)))
            for gaps in itertools.product(*(range(1 << k) for k in fields[1:])):
                offsets = tuple(itertools.accumulate((0,) + gaps[::-1]))[::-1]
                if any(o + (1 << k) - 2 > EXPONENT_MAX for k, o in zip(fields, offsets)):
                    continue
                grid = _grid_of(fields, offsets)
                key = grid.tobytes()
                if key not in seen:
                    seen.add(key)
                    found.append((fields, offsets))
                    grid.setflags(write=False)
                    grids.append(grid)
    return tuple(found), tuple(grids)


def superpositions(bits, *, signed=True, max_terms=None):
    """The candidate superpositions of :func:`select_superposition` (module docstring).

    Parameters
    ----------
    bits : int
        Code width, 3 to 8.
    signed : bool
        Whether the codes have a sign bit.
    max_terms : int, optional
        Most terms; by default half the magnitude bits, rounded up (at most half the partial
        products of a multiplier of the same width).

    Returns
    -------
    list of (tuple, tuple)
        ``(fields, offsets)`` pairs in search order, each with a distinct value set.
    """
    return list(_candidates(bits, bool(signed), _max_terms(bits, signed, max_terms))[0])


def _max_terms(bits, signed, max_terms):
    """Checked ``bits`` and ``max_terms``; the default: half the magnitude bits, rounded up."""
    check_int("AUSN bit width", bits, *Ausn.bit_range)
    if max_terms is None:
        return (bits - (1 if signed else 0) + 1) // 2
    return check_int("max_terms", max_terms, 1, Ausn.bit_range[1])


@dataclasses.dataclass(frozen=True)
class SuperpositionChoice:
    """Result of :func:`select_superposition`.

    Attributes
    ----------
    format : Ausn
        The chosen superposition.
    scale : float
        Its scale: ``x ~ scale * value(code)``.
    errors : dict of str to QuantError
        Every candidate's error at its own best scale, by :attr:`Ausn.label`
        (:class:`hwq.formats.metrics.QuantError`: clipping, rounding and total MSE), from the
        search's cumulative sums: equal to :func:`~hwq.formats.metrics.quantization_error`'s up
        to float64 rounding of the sums (the thresholds and the clipped fraction exactly).
    """

    format: Ausn
    scale: float
    errors: dict


# ---------------------------------------------------------------------------------------------
# the search: every candidate's squared error over the scale sweep from cumulative sums, bounded
# per candidate and scale from a bucket table, exact where the bounds cannot decide

_UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
#: buckets of the bound phase: ``2**_BUCKET_BITS`` per octave (a float64's top mantissa bits)
_BUCKET_BITS = 10
#: most buckets: past them (an absurd clip range) the lowest bucket takes every lower threshold
_MAX_BUCKETS = 1 << 20
#: thresholds handled per block of the bound phase and of the exact phase (memory: ~70 bytes each)
_BLOCK = 1 << 16


@dataclasses.dataclass(frozen=True)
class _Grids:
    """The candidates of one width as arrays: grids padded to a common length with their largest
    value (an empty cell between equal levels adds nothing to any sum)."""

    labels: tuple
    table: np.ndarray        # (candidates, longest grid) float64
    lengths: np.ndarray      # distinct magnitudes per candidate
    tops: np.ndarray         # largest magnitude per candidate (float: Ausn.max_value at exp_base 0)


@functools.lru_cache(maxsize=None)
def _grid_table(bits, signed, max_terms):
    candidates, grids = _candidates(bits, signed, max_terms)
    lengths = np.array([len(g) for g in grids])
    table = np.empty((len(grids), int(lengths.max())))
    for row, grid in zip(table, grids):
        row[:len(grid)] = grid
        row[len(grid):] = grid[-1]
    table.setflags(write=False)
    lengths.setflags(write=False)
    tops = table[:, -1].copy()
    tops.setflags(write=False)
    return _Grids(tuple(superposition_label(f, o) for f, o in candidates), table, lengths, tops)


class _Buckets:
    """Where rounding thresholds fall among the sorted magnitudes ``m``, from their bit patterns.

    A positive float64's bit pattern read as an integer grows with the value, so its top
    ``12 + _BUCKET_BITS`` bits number a bucket (``2**_BUCKET_BITS`` per octave) with no search.
    The table has a row per bucket from ``lowest`` to ``highest`` (every threshold of the search
    lies between them): the count ``L`` of magnitudes below the bucket, their sum ``prefix1[L]``,
    the count of magnitudes inside it, and its lower edge. A threshold ``q`` has ``#(m <= q)``
    between ``L`` and ``L`` plus the bucket's count: exactly ``L`` when the bucket is empty.
    Past :data:`_MAX_BUCKETS` (an absurd clip range), the lowest row takes every threshold below
    it.
    """

    def __init__(self, m, prefix1, lowest, highest):
        self.shift = 52 - _BUCKET_BITS
        high = self._key(highest)
        low = max(self._key(lowest), high - _MAX_BUCKETS + 1)
        self.clip = low > self._key(lowest)
        edges = (np.arange(low, high + 2, dtype=np.int64) << self.shift).view(np.float64)
        if self.clip:                                   # the first row reaches down to ``lowest``
            edges[0] = lowest
        counts = np.searchsorted(m, edges, side="left")
        below = counts[:-1]
        # one array per column: four 1-D gathers beat one of rows
        self.columns = (below.astype(np.float64), prefix1[below], np.diff(counts).astype(np.float64), edges[:-1])
        self.low = low

    def _key(self, value):
        return int(np.array(value, dtype=np.float64).view(np.int64)) >> self.shift

    def index(self, q):
        """Bucket of every threshold ``q`` in ``[lowest, highest]`` (float64, C-contiguous)."""
        index = np.right_shift(q.view(np.int64), self.shift)
        index -= self.low
        if self.clip:
            np.maximum(index, 0, out=index)
        return index

    def rows(self, q, columns=(0, 1, 2, 3)):
        """The table's ``columns`` (indices: 0 count below, 1 sum below, 2 count inside, 3 lower
        edge) at thresholds ``q``."""
        index = self.index(q)
        return tuple(self.columns[c][index] for c in columns)


def _levels(grid, scales):
    """Levels ``grid * scale``, rounding thresholds (midpoints) and steps, last axis the grid's."""
    levels = grid * scales[..., None]
    return levels, (levels[..., :-1] + levels[..., 1:]) / 2, levels[..., 1:] - levels[..., :-1]


def _bounds(grid, scales, buckets, sums):
    """Bounds on the squared-error sum of every candidate of a block at every scale.

    With thresholds ``q_k`` (midpoints of the levels ``l_k``, steps ``d_k = l_{k+1} - l_k``) and
    ``N_k = #(m <= q_k)``, summing by parts gives the exact sum of squared errors of
    nearest-value rounding (ties down) with saturation at the top level ``l_top``::

        SSE = sum((m - l_top)**2) + 2 * sum_k d_k * (P1[N_k] - q_k * N_k),

    ``P1`` the cumulative sums of the sorted ``m``. Taking each ``N_k`` as the count ``L_k`` below
    ``q_k``'s bucket gives an upper bound ``U``: elements of the bucket at or below ``q_k`` are
    then rounded up a level, a valid if worse rounding. Each such element costs
    ``2 * d_k * (q_k - m) <= 2 * d_k * (q_k - edge_k)`` more, so ``U - 2 * sum_k d_k * c_k *
    (q_k - edge_k)`` (``c_k`` the bucket's count) is a lower bound.

    Parameters
    ----------
    grid : numpy.ndarray
        ``(K, G)`` padded grids.
    scales : numpy.ndarray
        ``(K, S)`` scales.
    buckets : _Buckets
    sums : tuple
        ``(n, sum(m), sum(m**2))``.

    Returns
    -------
    upper, lower : numpy.ndarray
        ``(K, S)`` bounds (before the rounding tolerance of :func:`_tolerance`).
    """
    n, total1, total2 = sums
    levels, mids, steps = _levels(grid[:, None, :], scales)
    below, below_sum, inside, edge = buckets.rows(mids)
    top = levels[..., -1]
    upper = total2 - 2 * top * total1 + n * top * top + 2 * np.einsum("ksg,ksg->ks", steps, below_sum - mids * below)
    slack = 2 * np.einsum("ksg,ksg->ks", steps, inside * (mids - edge))
    return upper, upper - slack


def _tolerance(top, length, sums, n):
    """Rounding tolerance of the bounds and of the exact sums at top level(s) ``top``.

    Float64 rounding of a sum of ``t`` terms is at most ``(t - 1) * u`` times the sum of their
    magnitudes (N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM 2002,
    sec. 4.2), ``u`` the unit roundoff. The terms of both formulas are bounded by
    ``size = sum(m**2) + 2 * l_top * sum(m) + n * l_top**2``; the cumulative sums, also used by both,
    are each off by at most ``n * u * sum(m)``, which moves a lower bound's elements by that
    much. Twice the sum of the two, with margin: ``8 * (G + 2) * u * size + 4 * l_top * n * u * sum(m)``.
    """
    _, total1, total2 = sums
    size = total2 + 2 * top * total1 + n * top * top
    return 8 * (length + 2) * _UNIT_ROUNDOFF * size + 4 * top * n * _UNIT_ROUNDOFF * total1


def _exact_sse(m, prefix, buckets, grid, scales):
    """Sum of squared errors of ``grid[p] * scales[p]`` for every row ``p``: the cells between
    consecutive thresholds from cumulative sums, each threshold's count found in its bucket (or
    by a search of ``m`` where the bucket is not empty)."""
    n = len(m)
    levels, mids, _ = _levels(grid, scales)
    below, inside = buckets.rows(mids, (0, 2))
    count = below.astype(np.int64)
    unsure = inside > 0
    count[unsure] = np.searchsorted(m, mids[unsure], side="right")
    edges = np.concatenate([np.zeros((len(grid), 1), np.int64), count, np.full((len(grid), 1), n)], axis=1)
    s1 = prefix[0][edges[:, 1:]] - prefix[0][edges[:, :-1]]
    s2 = prefix[1][edges[:, 1:]] - prefix[1][edges[:, :-1]]
    cells = edges[:, 1:] - edges[:, :-1]
    return (s2 - 2 * levels * s1 + cells * levels ** 2).sum(axis=1)


def _blocks(lengths, width):
    """Runs of indices into ``lengths``, sorted by length, each holding at most :data:`_BLOCK`
    thresholds (``width`` per grid value of the run's longest grid) unless it is one index."""
    order = np.argsort(lengths, kind="stable")
    sizes = lengths[order].astype(np.int64) * width
    start = 0
    while start < len(order):
        cost = np.arange(1, len(order) - start + 1) * sizes[start:]       # grows with the run
        stop = start + max(1, int(np.searchsorted(cost, _BLOCK, side="right")))
        yield order[start:stop]
        start = stop


def _search(m, grids, scales):
    """Every candidate's least squared-error sum over its scales.

    Parameters
    ----------
    m : numpy.ndarray
        Sorted magnitudes, not all zero.
    grids : _Grids
    scales : numpy.ndarray
        ``(candidates, sweep)`` scales.

    Returns
    -------
    best : numpy.ndarray
        Per candidate, the first index into the sweep with the least sum.
    sse : numpy.ndarray
        That sum.
    prefix : tuple of numpy.ndarray
        Cumulative sums of ``m`` and ``m**2`` (with a leading 0).
    """
    n = len(m)
    count = len(grids.table)
    prefix = (np.empty(n + 1), np.empty(n + 1))
    prefix[0][0] = prefix[1][0] = 0.0
    np.cumsum(m, out=prefix[0][1:])
    np.cumsum(np.square(m), out=prefix[1][1:])
    sums = (n, float(prefix[0][-1]), float(prefix[1][-1]))
    top = grids.tops[:, None] * scales                    # every top level (the thresholds lie below)
    buckets = _Buckets(m, prefix[0], float(scales.min()) / 2, float(top.max()))
    upper, lower = np.empty_like(scales), np.empty_like(scales)
    for block in _blocks(grids.lengths, scales.shape[1]):
        width = int(grids.lengths[block].max())
        upper[block], lower[block] = _bounds(grids.table[block, :width], scales[block], buckets, sums)
    tolerance = _tolerance(top, grids.lengths[:, None], sums, n)
    possible = lower - tolerance <= (upper + tolerance).min(axis=1, keepdims=True)
    cand, ratio = np.nonzero(possible)
    exact = np.empty(len(cand))
    for block in _blocks(grids.lengths[cand], 1):
        rows, width = cand[block], int(grids.lengths[cand[block]].max())
        exact[block] = _exact_sse(m, prefix, buckets, grids.table[rows, :width], scales[rows, ratio[block]])
    # a sum within rounding of 0 is 0 (an exact fit): such ties go to the first scale and candidate
    exact[np.abs(exact) <= tolerance[cand, ratio]] = 0.0
    order = np.lexsort((ratio, exact, cand))               # per candidate: least sum, then first scale
    first = order[np.r_[True, cand[order][1:] != cand[order][:-1]]]
    if len(first) != count:
        raise AssertionError("AUSN search: a candidate lost every scale (bounds inconsistent)")
    best, sse = np.empty(count, np.int64), np.empty(count)
    best[cand[first]] = ratio[first]
    sse[cand[first]] = exact[first]
    return best, sse, prefix


def select_superposition(x, bits, *, signed=None, max_terms=None, ratios=None):
    """Choose the superposition and scale with the least MSE for tensor ``x`` (one layer).

    The result is that of encoding ``x`` with every candidate at every scale of the sweep and
    keeping the least MSE (module docstring), computed without encoding: the magnitudes are
    sorted once, and a candidate's squared error at a scale is a sum over its rounding thresholds
    of cumulative sums at each threshold's position. A table of buckets of the float64 bit
    pattern gives every position, or bounds on the sum when a bucket holds magnitudes, so each
    threshold costs a table look-up; only the scales whose bounds come within rounding of the
    candidate's best are then summed exactly (:func:`_bounds`, :func:`_tolerance`). Ties (equal
    sums) go to the first scale and the first candidate, as in the exhaustive sweep.

    Parameters
    ----------
    x : array-like
        The tensor (NaN/Inf raise :class:`InputError`).
    bits : int
        Code width, 3 to 8.
    signed : bool or None
        ``None``: signed when ``x`` has negative values.
    max_terms : int, optional
        Most terms of a candidate (:func:`superpositions`, whose default it has).
    ratios : sequence of float, optional
        Clip values ``alpha / max|x|`` to sweep; :data:`SCALE_RATIOS` by default.

    Returns
    -------
    SuperpositionChoice
    """
    x = check_finite(x).ravel()
    if x.size == 0:
        raise InputError("cannot choose an AUSN superposition for an empty tensor")
    if signed is None:
        signed = bool((x < 0).any())
    elif not signed and (x < 0).any():
        raise InputError("an unsigned AUSN format cannot hold negative values; use signed=True")
    ratios = SCALE_RATIOS if ratios is None else check_finite(ratios, "scale ratios").ravel()
    if ratios.size == 0 or (ratios <= 0).any():
        raise InputError("scale ratios must be positive numbers")
    max_terms = _max_terms(bits, signed, max_terms)
    candidates = _candidates(bits, signed, max_terms)[0]
    grids = _grid_table(bits, signed, max_terms)
    m = np.abs(x, out=x)
    m.sort()
    n = len(m)
    peak = float(m[-1]) or 1.0
    scales = (peak * ratios)[None, :] / grids.tops[:, None]     # the sweep: alpha / max(value)
    if m[-1] == 0:                                         # all zero: every scale is exact
        best, sse, count = np.zeros(len(scales), np.int64), np.zeros(len(scales)), np.full(len(scales), n)
        clipping = np.zeros(len(scales))
    else:
        # in units of 2**exponent, so that no square overflows: exact (powers of two) and the same
        # roundings, thresholds and choices
        exponent = int(np.frexp(peak)[1])
        np.ldexp(m, -exponent, out=m)
        best, sse, prefix = _search(m, grids, np.ldexp(scales, -exponent))
        high = grids.tops * np.ldexp(scales[np.arange(len(best)), best], -exponent)
        count = np.searchsorted(m, high, side="right")
        clipping = np.maximum((prefix[1][-1] - prefix[1][count]) - 2 * high * (prefix[0][-1] - prefix[0][count])
                              + (n - count) * high * high, 0.0)
        with np.errstate(over="ignore"):                  # an error beyond float64 is inf, as when encoding
            clipping, sse = np.ldexp(clipping, 2 * exponent), np.ldexp(sse, 2 * exponent)
    scale = scales[np.arange(len(best)), best]
    high = grids.tops * scale                               # as Ausn.to_real computes max(value) * scale
    clipping /= n
    total = np.maximum(sse, 0.0) / n
    errors = {label: QuantError(clipping=float(clipping[i]), rounding=float(max(total[i] - clipping[i], 0.0)),
                                total=float(total[i]), clip_low=float(-high[i]) if signed else 0.0,
                                clip_high=float(high[i]), clipped=float((n - count[i]) / n))
              for i, label in enumerate(grids.labels)}
    chosen = int(np.argmin(sse))                          # the first least
    fields, offsets = candidates[chosen]
    return SuperpositionChoice(Ausn(bits, fields=fields, offsets=offsets, signed=signed), float(scale[chosen]), errors)


#: clip values of a weight channel's own scale search (:func:`calibrate_ausn`): the sweep's, then a
#: plain clip sweep in steps of 1 % of the channel's maximum
WEIGHT_RATIOS = np.concatenate([SCALE_RATIOS, np.arange(1, 101) / 100])


@CALIBRATORS.register("ausn")
def calibrate_ausn(x, bits, *, role, per_channel, options):
    """AUSN's calibration: the adaptive superposition (:func:`select_superposition`), per layer.

    Activations (and weights with ``per_channel=False``): one superposition and one scale per
    tensor, the search's. Weights with ``per_channel`` (hwq extension; the paper adapts the code
    per layer): one superposition per layer, chosen by the same search on the channels each
    divided by its largest magnitude (so every channel's shape counts, not only the largest
    channels'), then one scale per output channel (axis 0), the least-MSE one among
    ``max|x_c| * r / max(value)`` for the clip ratios ``r`` of :data:`WEIGHT_RATIOS` (the search's
    sweep and a plain sweep in steps of 1 % of the channel's maximum,
    :func:`hwq.formats.metrics.sweep_scales`). The hardware folds a channel's scale into its
    requantization multiplier, as for every per-channel format.

    Returns
    -------
    Calibration
        ``candidates`` maps each superposition tried to its total (clipping + rounding) error
        (per channel: on the channels divided by their maxima).
    """
    options = check_options("ausn", options, bits)
    if not (per_channel and role == "weight" and x.ndim >= 1):
        choice = select_superposition(x, bits)
        return Calibration(choice.format, np.array([float(choice.scale)]), None,
                           {label: error.total for label, error in choice.errors.items()})
    rows = x.reshape(len(x), -1)
    peak = np.abs(rows).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0)                  # an all-zero channel: any scale is exact
    choice = select_superposition(rows / peak[:, None], bits, signed=bool((x < 0).any()))
    fmt = choice.format
    scales = peak[:, None] * WEIGHT_RATIOS[None, :] / fmt.max_value
    best = np.argmin(sweep_scales(rows, fmt.to_real(fmt.codes), scales), axis=1)       # the first least
    return Calibration(fmt, scales[np.arange(len(rows)), best], 0,
                       {label: error.total for label, error in choice.errors.items()})
