"""The number-format abstraction every hwq format implements.

A tensor is stored as integer *codes* plus a real *scale* ``s``: ``x ~ s * value(code)``.
A code is always the bit pattern read as an unsigned integer (``0 <= code < 2**bits``), the
index of the manifest's codebook. ``value(code)`` is exact and dyadic:
``value(code) = decode(code) * 2**lsb_exp`` with ``decode`` an integer.
"""

import abc
import functools
import json
from fractions import Fraction

import numpy as np

from ..errors import InputError
from ..registry import FORMAT_NAME, Registry
from .rounding import check_finite

__all__ = ["NumberFormat", "FORMATS", "check_int", "fraction_str", "nearest_index"]

#: every format class by :attr:`NumberFormat.name`; a subclass that sets ``name`` registers itself
FORMATS = Registry("format", packages=("hwq.formats",), **FORMAT_NAME)


def check_int(name, value, lo, hi):
    """Return ``value`` if it is an int in ``[lo, hi]``; raise :class:`InputError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}, not {value}")
    return int(value)


def nearest_index(grid, x, *, ties="up", labels=None):
    """Index of the value of sorted integer array ``grid`` nearest each element of ``x``.

    Ties go to the larger value (``ties="up"``) or the smaller one (``"down"``); values beyond
    either end take the end (saturation). Exact: the grid's integers are below ``2**52``, so
    their midpoints are exact in float64.

    For an integer grid spanning at most :data:`LOOKUP_SPAN` the index is read from a table
    instead of found by a binary search: the same result, several times faster on large tensors.
    With ``d = 2 * x`` (exact) and the doubled midpoints ``m_j = grid[j] + grid[j + 1]``
    (integers), the index is the number of midpoints that ``x`` reaches: ``#(m_j <= d)`` with ties
    up, which is ``#(m_j <= floor(d))``, and ``#(m_j < d)`` with ties down, which is
    ``#(m_j < ceil(d))``. So it is a table indexed by ``floor(d)`` or ``ceil(d)``, clipped to the
    range of keys where the count changes (:func:`_lookup_table`).

    Parameters
    ----------
    grid : array_like
        Sorted distinct values (integers for the table).
    x : array_like
        The values (finite, or at least not NaN), in the grid's units; not modified.
    ties : str
        ``"up"`` or ``"down"``.
    labels : numpy.ndarray, optional
        One label per grid value (e.g. its code): returned in place of the index,
        ``labels[index]`` (read from the same table).

    Returns
    -------
    numpy.ndarray
        The index (intp), or the label, of every element of ``x``.
    """
    grid = np.asarray(grid)
    x = np.asarray(x, dtype=np.float64)
    span = int(grid[-1]) - int(grid[0])
    if grid.dtype.kind in "iu" and len(grid) > 1 and span <= LOOKUP_SPAN and x.size > 4 * len(grid):
        low, table = _lookup_table(grid.tobytes(), grid.dtype.str, ties, None if labels is None else (
            labels.tobytes(), labels.dtype.str))
        with np.errstate(over="ignore"):                # beyond float64: inf, clipped to an end
            key = np.multiply(x, 2.0)
        (np.floor if ties == "up" else np.ceil)(key, out=key)
        np.clip(key, low, low + len(table) - 1, out=key)
        key = key.astype(np.intp)
        if low:
            key -= low
        return table[key]
    upper = np.clip(np.searchsorted(grid, x), 1, len(grid) - 1)
    midpoint = (grid[upper - 1].astype(np.float64) + grid[upper].astype(np.float64)) / 2
    above = x >= midpoint if ties == "up" else x > midpoint
    index = np.where(above, upper, upper - 1)
    return index if labels is None else np.asarray(labels[index])


#: grids spanning at most this many integers use a lookup table in :func:`nearest_index`
LOOKUP_SPAN = 1 << 16


@functools.lru_cache(maxsize=64)
def _lookup_table(grid_bytes, dtype, ties, labels):
    """``(low, table)``: the result of :func:`nearest_index` (the index, or its label) for the key
    ``low + i`` is ``table[i]``; keys below ``low`` or beyond ``low + len(table) - 1`` share the
    end entries. The key of ``x`` is ``floor(2 * x)`` with ``ties="up"``, ``ceil(2 * x)`` with
    ``"down"``.

    ``grid`` and ``labels`` (``(bytes, dtype)`` or ``None``) are given as bytes, for caching.
    """
    grid = np.frombuffer(grid_bytes, dtype=np.dtype(dtype)).astype(np.int64)
    midpoints2 = grid[:-1] + grid[1:]
    up = ties == "up"
    low = int(midpoints2[0]) - (1 if up else 0)         # every key at or below low: index 0
    keys = np.arange(low, int(midpoints2[-1]) + (1 if up else 2), dtype=np.int64)
    table = np.searchsorted(midpoints2, keys, side="right" if up else "left").astype(np.intp)
    if labels is not None:
        table = np.frombuffer(labels[0], dtype=np.dtype(labels[1]))[table]
    return low, table


def fraction_str(value):
    """Format an exact :class:`~fractions.Fraction` as ``"p"`` or ``"p/q"``."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


class NumberFormat(abc.ABC):
    """A number format of ``bits`` bits.

    Parameters
    ----------
    bits : int
        Code width.
    signed : bool
        Whether the format has negative values.

    Subclasses define :attr:`name`, :attr:`lsb_exp`, :meth:`decode`, :meth:`encode` and
    :meth:`params`; everything else (codebook, quantize, ranges) follows from those. A subclass
    whose own body sets :attr:`name` is registered in :data:`FORMATS` under that name
    (:class:`~hwq.errors.InputError` if another format has it); subclasses that inherit the name
    (e.g. test mutants) are not.
    """

    #: the format's name (``"fxp"``), its key in :data:`FORMATS` and in format specs
    name = None
    #: inclusive range of code widths the format supports
    bit_range = (2, 16)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name") is not None:
            FORMATS.register(cls.name, cls)

    def __init__(self, bits, *, signed):
        self._bits = check_int(f"{self.name} bit width", bits, *self.bit_range)
        if not isinstance(signed, bool):
            raise InputError(f"signed must be True or False, not {signed!r}")
        self._signed = signed

    @property
    def bits(self):
        """Code width in bits."""
        return self._bits

    @property
    def signed(self):
        """Whether the format has negative values."""
        return self._signed

    @property
    def magnitude_bits(self):
        """``B``, the magnitude bits of a sign-magnitude code: ``bits - 1`` when signed, else
        ``bits``."""
        return self.bits - 1 if self.signed else self.bits

    @property
    @abc.abstractmethod
    def lsb_exp(self):
        """Exponent of the integer unit: ``value(code) = decode(code) * 2**lsb_exp``."""

    @abc.abstractmethod
    def params(self):
        """JSON-able parameters; ``type(self)(**params())`` rebuilds the format."""

    @abc.abstractmethod
    def _decode(self, codes):
        """Decode valid int64 ``codes`` to int64 integer values (units of ``2**lsb_exp``)."""

    @abc.abstractmethod
    def _encode(self, x):
        """Encode finite float64 ``x`` (format units) to int64 codes (rounding, saturation).

        ``x`` is a scratch array owned by the caller: it may be overwritten.
        """

    def decode(self, codes):
        """Integer value of every code, in units of ``2**lsb_exp``.

        Raises :class:`InputError` on a code outside ``[0, 2**bits)``.
        """
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise InputError(f"codes must be integers, not {codes.dtype}")
        codes = codes.astype(np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= 1 << self.bits):
            raise InputError(f"codes of {self} must lie in [0, {(1 << self.bits) - 1}]")
        return self._decode(codes)

    def encode(self, x, *, overwrite=False):
        """Codes of the representable values nearest ``x`` (given in format units).

        Rounding and saturation are the format's documented rules. NaN/Inf raise
        :class:`InputError` before any work. With ``overwrite=True`` a (writable) float64 numpy
        array ``x`` is encoded in place, as scratch, instead of a copy of it (for a caller that no
        longer needs it: its contents are then undefined).
        """
        return self._encode(check_finite(x, copy=not overwrite))

    def quantize(self, x, scale=1.0):
        """Codes for real tensor ``x`` with scale ``scale``: ``encode(x / scale)``."""
        scale = float(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise InputError(f"scale must be a finite positive number, not {scale!r}")
        x = check_finite(x)
        return self._encode(np.divide(x, scale, out=x))

    def to_real(self, codes, scale=1.0):
        """Real values ``scale * value(codes)`` as float64 (exact up to float64 rounding)."""
        return np.ldexp(self.decode(codes).astype(np.float64), self.lsb_exp) * float(scale)

    def fake_quantize(self, x, scale=1.0):
        """``to_real(quantize(x, scale), scale)``: the value the hardware will see."""
        return self.to_real(self.quantize(x, scale), scale)

    @property
    def codes(self):
        """Every code, ``0 ... 2**bits - 1``, as int64."""
        return np.arange(1 << self.bits, dtype=np.int64)

    @property
    def int_values(self):
        """Integer value of every code (index = code)."""
        return self._decode(self.codes)

    @property
    def int_min(self):
        """Smallest integer value."""
        return int(self.int_values.min())

    @property
    def int_max(self):
        """Largest integer value."""
        return int(self.int_values.max())

    @property
    def max_value(self):
        """Largest real value, ``int_max * 2**lsb_exp``, as float."""
        return float(np.ldexp(float(self.int_max), self.lsb_exp))

    def codebook(self):
        """Exact value of every code as a list of :class:`~fractions.Fraction` (index = code)."""
        unit = Fraction(2) ** self.lsb_exp
        return [int(v) * unit for v in self.int_values]

    def grid(self):
        """Sorted distinct integer values (units of ``2**lsb_exp``)."""
        return np.unique(self.int_values)

    def __eq__(self, other):
        return type(self) is type(other) and self.params() == other.params()

    def __hash__(self):
        return hash((self.name, json.dumps(self.params(), sort_keys=True)))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
