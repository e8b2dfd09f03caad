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
candidate (fewer terms: cheaper hardware). Every candidate's clipping, rounding and total error at
its best scale is returned (:mod:`hwq.formats.metrics`).
"""

import dataclasses
import itertools

import numpy as np

from ..errors import InputError
from .base import NumberFormat, check_int, nearest_index
from .calibration import CALIBRATORS, Calibration, check_options
from .metrics import quantization_error
from .rounding import check_finite

__all__ = ["Ausn", "EXPONENT_MAX", "DEFAULT_SUPERPOSITIONS", "default_superposition", "superposition_label",
           "superpositions", "SuperpositionChoice", "select_superposition", "SCALE_RATIOS", "calibrate_ausn"]

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
        index = nearest_index(self._magnitudes, magnitude, ties="down")
        codes = self._magnitude_codes[index]
        if self.signed:                            # the sign bit, except on zero (+0)
            codes = np.where((x < 0) & (index > 0), codes | (1 << self.magnitude_bits), codes)
        return codes


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
    check_int("AUSN bit width", bits, *Ausn.bit_range)
    magnitude_bits = bits - (1 if signed else 0)
    if max_terms is None:
        max_terms = (magnitude_bits + 1) // 2
    max_terms = check_int("max_terms", max_terms, 1, Ausn.bit_range[1])
    out, seen = [], set()
    for count in range(1, min(max_terms, magnitude_bits) + 1):
        for cuts in itertools.combinations(range(1, magnitude_bits), count - 1):
            fields = tuple(b - a for a, b in zip((0,) + cuts, cuts + (magnitude_bits,)))
            for gaps in itertools.product(*(range(1 << k) for k in fields[1:])):
                offsets = tuple(int(o) for o in np.cumsum((0,) + gaps[::-1])[::-1])
                if any(o + (1 << k) - 2 > EXPONENT_MAX for k, o in zip(fields, offsets)):
                    continue
                grid = tuple(Ausn(bits, fields=fields, offsets=offsets, signed=signed).magnitudes)
                if grid not in seen:
                    seen.add(grid)
                    out.append((fields, offsets))
    return out


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
        (:class:`hwq.formats.metrics.QuantError`: clipping, rounding and total MSE).
    """

    format: Ausn
    scale: float
    errors: dict


def _sweep(magnitudes, prefix, grid, scales):
    """Squared-error sums of quantizing sorted ``magnitudes`` to ``grid * scale`` for every scale.

    Nearest grid value, ties to the smaller one, the largest beyond the top: the rule of
    :meth:`Ausn.encode`, applied per interval between midpoints with prefix sums of ``m`` and
    ``m**2`` (``prefix``), so each scale costs ``O(len(grid) * log(len(magnitudes)))``.
    """
    levels = grid[None, :] * scales[:, None]                          # (scales, G)
    cuts = np.searchsorted(magnitudes, (levels[:, :-1] + levels[:, 1:]) / 2, side="right")
    edges = np.concatenate([np.zeros((len(scales), 1), np.int64), cuts,
                            np.full((len(scales), 1), len(magnitudes))], axis=1)
    s1 = prefix[0][edges[:, 1:]] - prefix[0][edges[:, :-1]]
    s2 = prefix[1][edges[:, 1:]] - prefix[1][edges[:, :-1]]
    n = edges[:, 1:] - edges[:, :-1]
    return (s2 - 2 * levels * s1 + n * levels ** 2).sum(axis=1)


def select_superposition(x, bits, *, signed=None, max_terms=None, ratios=None):
    """Choose the superposition and scale with the least MSE for tensor ``x`` (one layer).

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
    candidates = superpositions(bits, signed=signed, max_terms=max_terms)
    magnitudes = np.sort(np.abs(x))
    prefix = [np.concatenate([[0.0], np.cumsum(magnitudes ** p)]) for p in (1, 2)]
    peak = float(magnitudes[-1]) or 1.0
    swept = []
    for fields, offsets in candidates:
        fmt = Ausn(bits, fields=fields, offsets=offsets, signed=signed)
        scales = peak * ratios / fmt.max_value
        sse = _sweep(magnitudes, prefix, fmt.magnitudes.astype(np.float64), scales)
        best = int(np.argmin(sse))
        swept.append((sse[best], fmt, float(scales[best])))
    errors = {fmt.label: quantization_error(x, fmt, scale) for _, fmt, scale in swept}
    _, fmt, scale = min(swept, key=lambda c: c[0])
    return SuperpositionChoice(fmt, scale, errors)


@CALIBRATORS.register("ausn")
def calibrate_ausn(x, bits, *, role, per_channel, options):
    """AUSN's calibration: the adaptive superposition (:func:`select_superposition`), per layer.

    Returns
    -------
    Calibration
        ``candidates`` maps each superposition tried to its total (clipping + rounding) error.
    """
    options = check_options("ausn", options, bits)
    choice = select_superposition(x, bits)
    return Calibration(choice.format, np.array([float(choice.scale)]), None,
                       {label: error.total for label, error in choice.errors.items()})
