"""Fixed-point PE: an integer multiplier feeding the accumulator."""

from amaranth.hdl import Signal, signed, unsigned

from ..formats import FixedPoint, product_range
from ..formats.golden import signed_width
from .base import ProcessingElement

__all__ = ["FixedPointPE"]


class FixedPointPE(ProcessingElement):
    """Integer MAC for :class:`~hwq.formats.FixedPoint` codes.

    The fraction lengths only move ``acc_lsb_exp`` (``-(frac_a + frac_w)``); the datapath is a
    plain ``a_bits x w_bits`` multiplier, signed or unsigned per operand. Code ports are signed
    for two's-complement formats. See :class:`~hwq.pe.base.ProcessingElement` for the ports.
    """

    format_name = "fxp"
    default_widths = ((8, 8), (4, 4))

    @classmethod
    def from_bits(cls, a_bits, w_bits, *, a_signed=False, w_signed=True, **kwargs):
        """PE for ``a_bits``-bit activations (unsigned, post-ReLU, by default) and
        ``w_bits``-bit weights (signed by default), fraction lengths 0."""
        return cls(FixedPoint(a_bits, signed=a_signed), FixedPoint(w_bits, signed=w_signed), **kwargs)

    def name_suffixes(self):
        suffixes = []
        if self.a_format.signed:
            suffixes.append("as")
        if not self.w_format.signed:
            suffixes.append("wu")
        for role, fmt in (("a", self.a_format), ("w", self.w_format)):
            if fmt.frac:
                suffixes.append(f"{role}f{fmt.frac}".replace("-", "m"))
        return suffixes

    def code_shape(self, fmt):
        return signed(fmt.bits) if fmt.signed else unsigned(fmt.bits)

    def elaborate_product(self, m):
        product = Signal(signed(signed_width(*product_range(self.a_format, self.w_format))))
        m.d.comb += product.eq(self.a * self.w)
        return product
