"""AUSN processing element: a shift-add MAC with no multiplier and no decoder.

The weight is an :class:`~hwq.formats.Ausn` code whose fields are the shift amounts of its
power-of-two terms (see :mod:`hwq.formats.ausn`). The activation is a plain fixed-point integer
(:class:`~hwq.formats.FixedPoint`, unsigned by default, signed allowed): the data a shifter takes
as it is, with no decoder either. Plain integers are what a shift-add MAC naturally takes; AUSN
activations would make every product a sum of ``T_a * T_w`` powers of two chosen by both codes,
a different PE with nothing left to shift.

Datapath, for a weight code ``[sign][f_1]...[f_T]`` and activation ``a``:

1. ``x = sign ? -a : a`` (one ``a_bits + 1``-bit negation: cheaper than negating the wide sum);
2. per term, a ``k_t``-stage barrel shifter whose shift amount is the field itself,
   ``x << (o_t - 1 + f_t)`` (the constant ``o_t - 1`` is wiring), and the term enable
   ``f_t != 0`` (an OR of the field's bits; for a one-bit field the field itself);
3. the terms' sum (``T - 1`` adders) is the product ``value(a) * value(w)`` in accumulator units;
4. the accumulator adder of :class:`~hwq.pe.base.ProcessingElement`.

So the PE has ``T + 1`` adders (``T`` when the weights are unsigned) and no ``*`` anywhere. Yosys
(``synth_ice40``) turns the term additions into one carry-save sum with a single carry chain, so
the default PEs have three SB_CARRY chains each (negation, term sum, accumulator). In LUT4 fabric
a ``k``-stage shifter costs about as much as ``k`` partial-product rows of a multiplier, so at
equal code widths the PE is about the size of the fixed-point one (see the synthesis report).
"""

from amaranth.hdl import Mux, Signal, signed, unsigned

from ..formats import Ausn, FixedPoint, product_range
from ..formats.ausn import default_superposition
from ..formats.golden import signed_width
from .base import ProcessingElement

__all__ = ["AusnPE"]


class AusnPE(ProcessingElement):
    """Shift-add MAC of fixed-point activations and AUSN weights.

    Parameters
    ----------
    a_format : FixedPoint
        Activation format (unsigned for post-ReLU activations, or signed).
    w_format : Ausn
        Weight format: its superposition is wired into the shifters.
    max_terms, pipeline
        As for :class:`~hwq.pe.base.ProcessingElement`.
    """

    format_name = "ausn"
    default_widths = ((4, 4), (8, 8))

    @classmethod
    def operand_formats(cls, role):
        return ("fxp",) if role == "activation" else ("ausn",)

    @classmethod
    def from_bits(cls, a_bits, w_bits, *, a_signed=False, w_signed=True, fields=None, offsets=None, **kwargs):
        """PE for ``a_bits``-bit fixed-point activations (unsigned by default) and ``w_bits``-bit
        AUSN weights (signed by default) of superposition ``fields``/``offsets`` (the default
        superposition when omitted), fraction length and ``exp_base`` 0."""
        return cls(FixedPoint(a_bits, signed=a_signed),
                   Ausn(w_bits, fields=fields, offsets=offsets, signed=w_signed), **kwargs)

    def name_suffixes(self):
        a, w = self.a_format, self.w_format
        suffixes = []
        if (w.fields, w.offsets) != default_superposition(w.bits, w.signed):
            suffixes.append(w.label)
        if a.signed:
            suffixes.append("as")
        if not w.signed:
            suffixes.append("wu")
        if a.frac:
            suffixes.append(f"af{a.frac}".replace("-", "m"))
        if w.exp_base:
            suffixes.append(f"we{w.exp_base}".replace("-", "m"))
        return suffixes

    def code_shape(self, fmt):
        return signed(fmt.bits) if fmt.name == "fxp" and fmt.signed else unsigned(fmt.bits)

    @staticmethod
    def term(x, field, offset):
        """One term: ``x << (offset - 1 + field)``, or 0 when ``field`` is 0 (the term is absent).

        The field is the shift amount itself; ``offset - 1`` is constant wiring.
        """
        return Mux(field.any(), ((x << offset) << field) >> 1, 0)

    def elaborate_product(self, m):
        a_fmt, w_fmt = self.a_format, self.w_format
        lo, hi = a_fmt.int_min, a_fmt.int_max
        if w_fmt.signed:
            lo, hi = min(lo, -hi), max(hi, -lo)
        x = Signal(signed(signed_width(lo, hi)), name="x")
        m.d.comb += x.eq(Mux(self.w[w_fmt.bits - 1], -self.a, self.a) if w_fmt.signed else self.a)
        terms = []
        for t, ((lsb, k), offset) in enumerate(zip(w_fmt.field_slices, w_fmt.offsets)):
            field = self.w[lsb:lsb + k]
            term = Signal(signed(x.shape().width + offset + (1 << k) - 2), name=f"term{t + 1}")
            m.d.comb += term.eq(self.term(x, field, offset))
            terms.append(term)
        product = Signal(signed(signed_width(*product_range(a_fmt, w_fmt))), name="product")
        m.d.comb += product.eq(sum(terms[1:], terms[0]))
        return product
