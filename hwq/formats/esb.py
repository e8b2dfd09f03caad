"""ESB: elastic significant bits.

A code of ``bits`` bits holds a sign bit (signed formats only) and a magnitude of ``B`` bits
(``B = bits - 1`` signed, ``B = bits`` unsigned), laid out as ``sign | c (e bits) | f (m bits)``.
``k = m + 1`` is the number of significant bits.

Field widths (one formula, the reference's ``autoqnn/quantizers/esb.py`` written for ``B``
magnitude bits): asked for ``k`` significant bits,

    ``e = min(4, max(1, B - k + 1))``, then ``m = B - e`` and ``k = m + 1``.

For signed formats this is the reference's ``e = min(4, max(1, b - m - 1))``, ``m = b - e - 1``.
An unsigned format spends the sign bit on the magnitude: unsigned ``b`` bits with ``k`` significant
bits has the magnitudes of signed ``b + 1`` bits with ``k`` (the same formula with ``B = b``).
The exponent field holds at most 4 bits, so a ``k`` below ``B - 3`` is raised to ``B - 3``: the
format keeps (and :meth:`Esb.params` reports) the effective ``k``, and ``Esb(8, k=1)`` equals
``Esb(8, k=4)``. The default ``k`` gives two exponent bits (``k = B - 1``), the configuration the
reference's scale table is built around.

Magnitudes (real units, ``N = 2**e - 2`` the largest binade):

    ``c = 0``: ``f * 2**-m`` (subnormals, including 0); ``c >= 1``: ``2**(c - 1) * (1 + f * 2**-m)``,

an IEEE-like minifloat with subnormals and no inf/NaN, ``2**B`` distinct magnitudes from 0 to
``2**N * (2 - 2**-m)``. ``e = 1`` is the plain uniform grid ``0 ... 2**(m+1) - 1`` in steps of
``2**-m`` (the largest ``k``: sign-magnitude int levels); ``k = 1`` (``m = 0``, possible for
``B <= 4``) gives power-of-two levels ``{0} U {2**i : 0 <= i <= 2**B - 2}``. Signed formats are
sign-magnitude: ``+0`` and ``-0`` both decode to 0 and :meth:`Esb.encode` writes ``+0``.

Integer values are in units of ``2**-m`` (:attr:`Esb.lsb_exp` ``= -m``): every magnitude is
``significand << shift`` with the ``(m + 1)``-bit ``significand = f`` (``c = 0``) or ``2**m + f``
and ``shift = max(c - 1, 0)`` (:meth:`Esb.decompose` gives ``(sign, significand, shift)``, as
:meth:`hwq.formats.ant.Ant.decompose` does), which is what the processing element multiplies and
shifts.

Mid-rise variant (``midrise=True``, only with one exponent bit, i.e. the largest ``k``): the
reference quantizes ``e = 1`` tensors on a mid-rise grid with no zero level, magnitudes
``(j + 1/2) * 2**-m`` for ``j = c * 2**m + f``; integer values are then in units of ``2**-(m+1)``
(``lsb_exp = -(m + 1)``) and ``significand = 2j + 1``, ``shift = 0`` (an ``(m + 2)``-bit significand whose
last bit is always 1). hwq's default is the zero-level grid above, the one whose code layout and
examples docs/formats.md ("esb") gives; the mid-rise grid is an option.

Encoding (round half to even in the normalized domain, as the reference; saturating)
----------------------------------------------------------------------------------
For ``|x|`` take the binade ``n = clip(floor(log2 |x|), 0, N)``, found exactly with
:func:`numpy.frexp` (the reference's float ``log2`` can pick the neighbouring binade right at
powers of two), and round ``|x| / 2**(n - m)`` to the nearest integer, ties to even; the result,
times ``2**(n - m)``, is clamped to the largest magnitude. So the encoder gives the nearest grid
value, and a tie goes to the neighbour that is an even multiple of the step of the binade that
``x`` lies in: within a binade to the even ``f``; at the top of a binade (between
``2**(n+1) - 2**(n-m)`` and ``2**(n+1)``) to ``2**(n+1)``; for ``m = 0`` ties between ``2**n``
and ``2**(n+1)`` go up and ``1/2`` goes to 0. Magnitudes beyond the largest saturate to it. The
sign is that of ``x``; a value that rounds to zero gets ``+0``. Mid-rise: the nearest level
``(j + 1/2) * 2**-m``, ties (at multiples of ``2**-m``) to the even ``j``, so 0 encodes as
``+2**-(m+1)``; beyond the largest magnitude saturates. Unsigned formats encode negative values as
their least value (0, or ``2**-(m+1)`` mid-rise).

The distribution difference aligner (DDA), which picks each tensor's scale, is in
:mod:`hwq.formats.esb_dda`.
"""

import numpy as np

from ..errors import InputError
from .base import NumberFormat, check_int

__all__ = ["Esb", "MAX_EXPONENT_BITS", "esb_fields"]

#: widest exponent field (the reference's cap)
MAX_EXPONENT_BITS = 4


def esb_fields(magnitude_bits, k):
    """``(e, m)``: exponent and fraction bits of an ESB magnitude of ``magnitude_bits`` bits asked
    for ``k`` significant bits (``e = min(4, max(1, B - k + 1))``, ``m = B - e``)."""
    e = min(MAX_EXPONENT_BITS, max(1, magnitude_bits - k + 1))
    return e, magnitude_bits - e


class Esb(NumberFormat):
    """An ESB format: ``bits``-bit sign-magnitude (or unsigned) minifloat with ``k`` significant bits.

    Parameters
    ----------
    bits : int
        Total width, 3 to 8.
    k : int or None
        Significant bits, 1 to ``B`` (``bits - 1`` signed, ``bits`` unsigned); below ``B - 3`` it
        is raised to ``B - 3`` (4 exponent bits at most). ``None``: two exponent bits,
        ``k = B - 1``.
    signed : bool
        Sign-magnitude (weights) or unsigned (post-ReLU activations).
    midrise : bool
        The reference's mid-rise grid without a zero level; only for one exponent bit (``k = B``).
    """

    name = "esb"
    bit_range = (3, 8)

    def __init__(self, bits, *, k=None, signed=True, midrise=False):
        super().__init__(bits, signed=signed)
        B = self.magnitude_bits
        k = B - 1 if k is None else check_int(f"ESB significant bits k at {bits} bits", k, 1, B)
        if not isinstance(midrise, bool):
            raise InputError(f"midrise must be True or False, not {midrise!r}")
        self._e, self._m = esb_fields(B, k)
        if midrise and self._e != 1:
            raise InputError(f"the mid-rise ESB grid needs one exponent bit: k = {B} at {bits} bits "
                           f"{'signed' if signed else 'unsigned'}, not k = {k}")
        self._midrise = midrise
        r = np.arange(1 << B, dtype=np.int64)
        if midrise:
            self._significand, self._shift = 2 * r + 1, np.zeros_like(r)
        else:
            c, f = r >> self._m, r & ((1 << self._m) - 1)
            self._significand = np.where(c == 0, f, (1 << self._m) | f)
            self._shift = np.maximum(c - 1, 0)
        self._magnitude = self._significand << self._shift              # increasing in the magnitude code r
        codes = self.codes
        self._sign_of = (codes >> B) & 1 if signed else np.zeros_like(codes)
        rows = codes & ((1 << B) - 1)
        self._table = np.where(self._sign_of == 1, -1, 1) * self._magnitude[rows]
        # the encoder's saturation bound: twice the largest magnitude keeps its scaling finite
        self._saturation = 2.0 * self.max_value

    @property
    def exponent_bits(self):
        """``e``: width of the exponent field ``c``."""
        return self._e

    @property
    def fraction_bits(self):
        """``m``: width of the fraction field ``f``."""
        return self._m

    @property
    def k(self):
        """Significant bits, ``m + 1`` (the effective value, after the 4-exponent-bit cap)."""
        return self._m + 1

    @property
    def midrise(self):
        """Whether the grid is the mid-rise one (no zero level)."""
        return self._midrise

    @property
    def max_binade(self):
        """``N = 2**e - 2``: the largest magnitude lies in ``[2**N, 2**(N+1))``."""
        return (1 << self._e) - 2

    @property
    def lsb_exp(self):
        return -self._m - (1 if self._midrise else 0)

    def params(self):
        return {"bits": self.bits, "k": self.k, "signed": self.signed, "midrise": self.midrise}

    def decompose(self, codes):
        """``(sign, significand, shift)`` arrays with
        ``decode(code) = (-1)**sign * (significand << shift)``.

        ``significand`` has ``m + 1`` bits (``m + 2`` for the mid-rise grid) and
        ``shift <= 2**e - 2``.
        """
        codes = np.asarray(codes)
        self.decode(codes)                                 # validates
        rows = codes.astype(np.int64) & ((1 << self.magnitude_bits) - 1)
        return self._sign_of[codes.astype(np.int64)], self._significand[rows], self._shift[rows]

    def _decode(self, codes):
        return self._table[codes]

    def _encode(self, x):
        shape = x.shape
        x = x.reshape(-1)                                  # 1-D (a view of the scratch array): ufuncs return arrays
        if self.signed:
            negative = x < 0
            a = np.abs(x, out=x)
        else:
            a = np.maximum(x, 0.0, out=x)                  # an unsigned format's nearest value is its least
        # anything at or beyond the largest magnitude saturates; the bound keeps the scaling finite
        np.minimum(a, self._saturation, out=a)
        m, top = self._m, (1 << self.magnitude_bits) - 1
        if self._midrise:
            u = np.ldexp(a, m)                             # levels at j + 1/2
            j = np.floor(u)
            j -= (j == u) & (np.fmod(j, 2) == 1)           # tie (u an integer): to the even j
            r = np.minimum(j, top).astype(np.int64)
            if self.signed:
                r |= np.left_shift(negative, self.magnitude_bits, dtype=np.int64)
        else:
            # the binade n = floor(log2 a), clipped to [0, N]: frexp's exponent is n + 1 (exact; 0
            # for 0, and below 1 for subnormals, which clip to n = 0)
            e = np.frexp(a)[1]
            np.clip(e, 1, self.max_binade + 1, out=e)
            e -= m + 1
            q = np.ldexp(a, np.negative(e, out=e), out=a)  # a * 2**(m - n)
            np.rint(q, out=q)                              # half to even, in the binade's steps
            # q * 2**n (units of 2**-m) is on the grid at r = n * 2**m + q, or beyond the largest
            np.left_shift(np.subtract(m, e, out=e), m, out=e)
            q += e
            np.minimum(q, top, out=q)
            if self.signed:
                negative &= q != 0                         # zero is written +0
                q += negative * float(1 << self.magnitude_bits)     # the sign bit
            r = q.astype(np.int64)
        return r.reshape(shape)
