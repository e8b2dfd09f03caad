"""Manifest-only reference model of the PE port contract
(docs/architecture.md, "PE port contract" and "Manifest contract").

This module imports nothing from ``hwq`` but the manifest schema and its reader
(:mod:`hwq.manifest`, standard library only) and :mod:`hwq.errors`: anyone holding a
``<module>.json`` manifest can compute what the RTL must show, without hwq's formats or amaranth.
Values are exact (:class:`fractions.Fraction`, Python ints); nothing is rounded.

The contract, one clock edge per cycle::

    sum <- rst ? 0 : (clear ? 0 : sum) + (valid ? P[a][w] : 0)
    P[a][w] = value(a) * value(w) / 2**acc_lsb_exp      (an exact integer)

and ``acc`` shows ``sum`` ``latency`` cycles after the inputs.

Read a manifest with :func:`hwq.manifest.read_manifest` (re-exported here): it checks it against
the schema and raises :class:`~hwq.errors.InputError` naming the file and the key at fault.

Functions
---------
parse_value(text), parse_codebook(strings)
    ``"p"`` / ``"p/q"`` (``q`` a power of two) to :class:`~fractions.Fraction`.
product_table(codebook_a, codebook_w, acc_lsb_exp)
    The integer product table ``P[a][w]``; :class:`ReferenceModelError` if a product is not an
    integer.
expected_sums(product, a, w, valid, clear, rst=None, start=0)
    Per-cycle sums of a stream, exactly per the contract.
manifest_modes(manifest), init_cycles(manifest)
    The run-time modes (one implicit mode when the manifest has none) and the init sequence.
extreme_codes(values)
    Codes worth testing at the edges of a codebook.

Classes
-------
ProductModel
    Exact products of two codebooks in accumulator units, with the table built on demand.
Mode
    One run-time number type: held inputs, codebooks, ``acc_lsb_exp``.
"""

from dataclasses import dataclass, field

from hwq import manifest as _schema
from hwq.errors import InputError
from hwq.manifest import decode_signed, read_manifest

__all__ = ["ReferenceModelError", "read_manifest", "parse_value", "parse_codebook", "ProductModel",
           "product_table", "expected_sums", "Mode", "manifest_modes", "init_cycles",
           "extreme_codes", "decode_signed"]


class ReferenceModelError(InputError):
    """Values the reference cannot model exactly (bad value, non-integer product, ...).

    An :class:`~hwq.errors.InputError` (exit status 2): the input, not a tool, is at fault.
    """


def parse_value(text):
    """Exact value of a codebook entry: ``"p"`` or ``"p/q"`` with ``q`` a power of two
    (:func:`hwq.manifest.parse_value`, raising :class:`ReferenceModelError`).

    Ints and Fractions are accepted as they are (the dyadic check still applies).
    """
    try:
        return _schema.parse_value(text)
    except InputError as exc:
        raise ReferenceModelError(str(exc)) from None


def parse_codebook(strings):
    """Parse a manifest codebook list (index = code) into a list of :class:`~fractions.Fraction`."""
    return [parse_value(s) for s in strings]


def _scaled(values):
    """``(ints, exp)`` with ``values[i] == ints[i] * 2**exp`` for every ``i``."""
    exp = -max((v.denominator.bit_length() - 1 for v in values), default=0)
    return [int(v * 2 ** -exp) for v in values], exp


def _trailing_zeros(n):
    return (n & -n).bit_length() - 1


def _min_trailing_zeros(ints):
    nonzero = [v for v in ints if v]
    return min((_trailing_zeros(v) for v in nonzero), default=None)


class ProductModel:
    """Exact products ``value(a) * value(w) / 2**acc_lsb_exp`` of two codebooks.

    Parameters
    ----------
    a_values, w_values : sequence of str, int or Fraction
        Exact value of every code (index = code, the bit pattern read as unsigned).
    acc_lsb_exp : int
        Exponent of the accumulator's unit.

    Raises
    ------
    ReferenceModelError
        If some product is not an integer multiple of ``2**acc_lsb_exp`` (checked for every
        pair at construction, in time linear in the codebook sizes).
    """

    def __init__(self, a_values, w_values, acc_lsb_exp):
        if isinstance(acc_lsb_exp, bool) or not isinstance(acc_lsb_exp, int):
            raise ReferenceModelError(f"acc_lsb_exp must be an integer, not {acc_lsb_exp!r}")
        self.a_values = [parse_value(v) for v in a_values]
        self.w_values = [parse_value(v) for v in w_values]
        if not self.a_values or not self.w_values:
            raise ReferenceModelError("codebooks must not be empty")
        self.acc_lsb_exp = acc_lsb_exp
        self._a_int, a_exp = _scaled(self.a_values)
        self._w_int, w_exp = _scaled(self.w_values)
        self._shift = a_exp + w_exp - acc_lsb_exp
        if self._shift < 0:
            tz_a, tz_w = _min_trailing_zeros(self._a_int), _min_trailing_zeros(self._w_int)
            if tz_a is not None and tz_w is not None and tz_a + tz_w + self._shift < 0:
                a = next(i for i, v in enumerate(self._a_int) if v and _trailing_zeros(v) == tz_a)
                w = next(i for i, v in enumerate(self._w_int) if v and _trailing_zeros(v) == tz_w)
                raise ReferenceModelError(
                    f"product of a code {a} ({self.a_values[a]}) and w code {w} ({self.w_values[w]}) "
                    f"is not an integer multiple of 2**{acc_lsb_exp}; the manifest's acc_lsb_exp is too large")
        self._table = None

    def product(self, a, w):
        """Integer product of codes ``a`` and ``w`` in units of ``2**acc_lsb_exp``."""
        v = self._a_int[a] * self._w_int[w]
        return v << self._shift if self._shift >= 0 else v >> -self._shift

    def table(self):
        """The full table ``P[a][w]`` as a list of lists of ints (built once, then cached)."""
        if self._table is None:
            s = self._shift
            w_int = self._w_int
            if s >= 0:
                self._table = [[(x * y) << s for y in w_int] for x in self._a_int]
            else:
                self._table = [[(x * y) >> -s for y in w_int] for x in self._a_int]
        return self._table

    def value(self, role, code):
        """Exact value of ``code`` of operand ``role`` (``"a"`` or ``"w"``)."""
        return (self.a_values if role == "a" else self.w_values)[code]

    def extreme_products(self):
        """``((a, w, p_max), (a, w, p_min))``: the code pairs with the largest and smallest product."""
        a_lo = min(range(len(self.a_values)), key=self.a_values.__getitem__)
        a_hi = max(range(len(self.a_values)), key=self.a_values.__getitem__)
        w_lo = min(range(len(self.w_values)), key=self.w_values.__getitem__)
        w_hi = max(range(len(self.w_values)), key=self.w_values.__getitem__)
        corners = [(a, w, self.product(a, w)) for a in (a_lo, a_hi) for w in (w_lo, w_hi)]
        return max(corners, key=lambda c: c[2]), min(corners, key=lambda c: c[2])


def product_table(codebook_a, codebook_w, acc_lsb_exp):
    """Integer product table ``P[a][w] = value(a) * value(w) / 2**acc_lsb_exp``.

    Parameters
    ----------
    codebook_a, codebook_w : sequence of str
        Manifest codebooks (``"p"`` or ``"p/q"``), index = code.
    acc_lsb_exp : int
        The manifest's ``acc_lsb_exp``.

    Returns
    -------
    list of list of int

    Raises
    ------
    ReferenceModelError
        If any product is not an exact integer in accumulator units.
    """
    return ProductModel(codebook_a, codebook_w, acc_lsb_exp).table()


def _product_fn(product):
    if isinstance(product, ProductModel):
        return product.product
    if callable(product):
        return product
    return lambda a, w: product[a][w]


def expected_sums(product, a, w, valid, clear, rst=None, start=0):
    """Sum after every cycle of a stream, exactly per the contract.

    ``sum[t] = rst[t] ? 0 : (clear[t] ? 0 : sum[t-1]) + (valid[t] ? P[a[t]][w[t]] : 0)``,
    ``sum[-1] = start`` (0 after reset).

    Parameters
    ----------
    product : ProductModel, list of list of int, or callable ``(a, w) -> int``
        The product table.
    a, w, valid, clear : sequences of int, all the same length
        Per-cycle inputs (codes and 0/1 flags).
    rst : sequence of int, optional
        Per-cycle synchronous reset (the cycle's other inputs are then ignored).
    start : int
        The sum before the first cycle.

    Returns
    -------
    list of int
        ``sum[t]``, what ``acc`` shows ``latency`` cycles after cycle ``t``'s inputs.
    """
    n = len(a)
    if not len(w) == len(valid) == len(clear) == n or (rst is not None and len(rst) != n):
        raise ReferenceModelError("a, w, valid, clear (and rst) must have the same length")
    p = _product_fn(product)
    out = []
    s = start
    for t in range(n):
        if rst is not None and rst[t]:
            s = 0
        else:
            if clear[t]:
                s = 0
            if valid[t]:
                s += p(a[t], w[t])
        out.append(s)
    return out


@dataclass
class Mode:
    """One run-time number type of a PE.

    Attributes
    ----------
    name : str or None
        The mode's name in the manifest's ``modes`` (``None`` for a PE without modes).
    set : dict of str to int
        Inputs held at these values while the mode runs.
    codebook : dict
        ``{"a": [...], "w": [...]}`` as in the manifest; a role is missing for codes > 10 bits.
    acc_lsb_exp : int
        Exponent of the accumulator's unit in this mode.
    """

    name: "str | None"
    set: dict = field(default_factory=dict)
    codebook: dict = field(default_factory=dict)
    acc_lsb_exp: int = 0

    def product_model(self, a_values=None, w_values=None):
        """The :class:`ProductModel` of this mode.

        ``a_values`` / ``w_values`` supply a codebook the manifest does not list (codes > 10 bits).
        """
        a_values = self.codebook.get("a", a_values)
        w_values = self.codebook.get("w", w_values)
        missing = [r for r, v in (("a", a_values), ("w", w_values)) if v is None]
        if missing:
            raise ReferenceModelError(
                f"mode {self.name!r}: the manifest lists no codebook for {', '.join(missing)} "
                f"(codes wider than 10 bits); supply the values from hwq.formats")
        return ProductModel(a_values, w_values, self.acc_lsb_exp)

    @property
    def label(self):
        """Human-readable name for messages."""
        return "default" if self.name is None else self.name


def manifest_modes(manifest):
    """Every run-time mode of the manifest; one unnamed mode when it has no ``modes``."""
    modes = manifest.get("modes")
    if not modes:
        return [Mode(None, {}, dict(manifest.get("codebook", {})), manifest["acc_lsb_exp"])]
    return [Mode(name, dict(entry.get("set", {})),
                 dict(entry.get("codebook", manifest.get("codebook", {}))),
                 entry.get("acc_lsb_exp", manifest["acc_lsb_exp"]))
            for name, entry in modes.items()]


def init_cycles(manifest):
    """The manifest's ``init`` list: one ``{port: value}`` dict per clock cycle (may be empty)."""
    init = manifest.get("init") or []
    for entry in init:
        if not isinstance(entry, dict):
            raise ReferenceModelError(f"manifest init entries must be {{port: value}} objects, not {entry!r}")
    return [dict(entry) for entry in init]


def extreme_codes(values):
    """Codes at the edges of a codebook, without duplicates, in a fixed order.

    The first and last bit patterns, both sides of the two's-complement sign boundary, the
    smallest and largest values (most negative, most positive), every distinct zero, and the
    nonzero values closest to zero on each side.
    """
    n = len(values)
    codes = [0, n - 1, n // 2, n // 2 - 1]
    codes.append(min(range(n), key=values.__getitem__))
    codes.append(max(range(n), key=values.__getitem__))
    zeros = [c for c in range(n) if values[c] == 0]
    codes += zeros[:2]
    pos = [c for c in range(n) if values[c] > 0]
    neg = [c for c in range(n) if values[c] < 0]
    if pos:
        codes.append(min(pos, key=values.__getitem__))
    if neg:
        codes.append(max(neg, key=values.__getitem__))
    seen = []
    for c in codes:
        if 0 <= c < n and c not in seen:
            seen.append(c)
    return seen
