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


def nearest_index(grid, x, *, ties="up"):
    """Index of the value of sorted integer array ``grid`` nearest each element of ``x``.

    Ties go to the larger value (``ties="up"``) or the smaller one (``"down"``); values beyond
    either end take the end (saturation). Exact: the grid's integers are below ``2**52``, so
    their midpoints are exact in float64.

    For an integer grid spanning at most :data:`LOOKUP_SPAN` the neighbour below is found with a
    table indexed by ``floor(x)`` (exact for float64) instead of a binary search: the same result,
    several times faster on large tensors.
    """
    grid = np.asarray(grid)
    x = np.asarray(x, dtype=np.float64)
    low_value, span = int(grid[0]), int(grid[-1]) - int(grid[0])
    if grid.dtype.kind in "iu" and len(grid) > 1 and span <= LOOKUP_SPAN and x.size > 4 * len(grid):
        table = _lookup_table(grid.tobytes(), grid.dtype.str)
        offset = np.clip(np.floor(x), low_value, low_value + span) - low_value
        upper = np.clip(table[offset.astype(np.int64)] + 1, 1, len(grid) - 1)
    else:
        upper = np.clip(np.searchsorted(grid, x), 1, len(grid) - 1)
    midpoint = (grid[upper - 1].astype(np.float64) + grid[upper].astype(np.float64)) / 2
    above = x >= midpoint if ties == "up" else x > midpoint
    return np.where(above, upper, upper - 1)


#: grids spanning at most this many integers use a lookup table in :func:`nearest_index`
LOOKUP_SPAN = 1 << 16


@functools.lru_cache(maxsize=64)
def _lookup_table(grid_bytes, dtype):
    """For each integer ``v`` from ``grid[0]`` to ``grid[-1]``: the index of the largest grid value
    ``<= v`` (``grid`` given as bytes, for caching)."""
    grid = np.frombuffer(grid_bytes, dtype=np.dtype(dtype)).astype(np.int64)
    values = np.arange(grid[0], grid[-1] + 1, dtype=np.int64)
    return np.searchsorted(grid, values, side="right") - 1


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

    def encode(self, x):
        """Codes of the representable values nearest ``x`` (given in format units).

        Rounding and saturation are the format's documented rules. NaN/Inf raise
        :class:`InputError` before any work.
        """
        return self._encode(check_finite(x))

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
