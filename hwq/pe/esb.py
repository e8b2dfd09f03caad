"""ESB processing element: a reduced-significand multiplier plus a shifter.

Each operand goes through an :class:`EsbDecoder`, which splits a code ``sign | c | f`` into
``(sign, significand, shift)`` with ``value = (-1)**sign * (significand << shift)`` in units of
``2**-m`` (see :mod:`hwq.formats.esb`): the significand is ``f`` with the hidden bit ``c != 0`` on
top, ``shift = c - 1`` (0 for ``c = 0``), and the mid-rise grid's significand is the magnitude code
with a 1 appended. The PE
multiplies the ``k_a``-bit by the ``k_w``-bit significands in logic (no DSP: they are small), adds
the exponents, shifts and accumulates; the sign is folded into the accumulator's adder (a negative
product is added as its ones' complement plus a carry-in) instead of negating the product.

Operands: unsigned activations and sign-magnitude weights by default, as the other PEs. The
default activation ``k`` gives the activation the same number of exponent bits as the weight
(at equal widths an unsigned activation then has one significant bit more, ``k_a = k_w + 1``,
as unsigned fixed point gains a magnitude bit): both operands span the same binades, and the
largest ``k`` is an unsigned-int by sign-magnitude-int PE like fxp's.

The build emits one PE per distinct weight ``k`` (:meth:`EsbPE.variants`): at 4 bits ``k = 1,
2, 3`` (power of two, two exponent bits, int); at 8 bits ``k = 4, 5, 6, 7`` (4, 3, 2 and 1
exponent bits; ``k < 4`` is the same format as ``k = 4``, the exponent field being capped at 4
bits). That is every value set the width has, so the synthesis report shows the cost of every
``k``. Module names carry the weight ``k`` (``esb_pe_a4_w4_k2``), then ``ak<k>`` for a
non-default activation ``k``, ``as`` / ``wu`` for non-default signedness and ``amr`` / ``wmr``
for mid-rise operands.

:class:`EsbDecoderProperties` is the formal check of the decoder against
:meth:`hwq.formats.esb.Esb.decompose` (prove it with :func:`hwq.pe.formal.prove_component`).
"""

from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from ..formats import Esb, product_range
from ..formats.base import check_int
from ..formats.esb import esb_fields
from ..formats.golden import signed_width
from .base import ProcessingElement

__all__ = ["EsbDecoder", "EsbDecoderProperties", "EsbPE", "SignificandMultiplier", "default_a_k"]


def _check_esb(role, fmt):
    if not isinstance(fmt, Esb):
        raise InputError(f"an ESB {role} must be an Esb format, not {fmt!r}")
    return fmt


def default_a_k(a_bits, a_signed, w_format):
    """Activation ``k`` with as many exponent bits as ``w_format`` (the nearest possible)."""
    B = a_bits - 1 if a_signed else a_bits
    return min(B, max(1, B - w_format.exponent_bits + 1))


class EsbDecoder(wiring.Component):
    """Decode an ESB code into ``(sign, significand, shift)``, named as
    :class:`~hwq.pe.ant.AntDecoder`'s outputs: ``value = (-1)**sign * (significand << shift)``.

    Parameters
    ----------
    fmt : Esb

    Attributes
    ----------
    code : Signal(bits), in
    sign : Signal(1), out
    significand : Signal, out
        ``m + 1`` bits (``m + 2`` mid-rise).
    shift : Signal, out
        At most ``2**e - 2``.
    """

    def __init__(self, fmt):
        self._format = _check_esb("decoder format", fmt)
        _, significand, shift = fmt.decompose(fmt.codes)
        super().__init__({"code": In(fmt.bits), "sign": Out(1),
                          "significand": Out(unsigned(max(int(significand.max()).bit_length(), 1))),
                          "shift": Out(unsigned(max(int(shift.max()).bit_length(), 1)))})

    @property
    def format(self):
        """The decoded format."""
        return self._format

    def fields(self):
        """``(sign, significand, shift)`` as Amaranth values of ``self.code`` (subclasses may alter them)."""
        fmt = self._format
        B, m = fmt.magnitude_bits, fmt.fraction_bits
        sign = self.code[B] if fmt.signed else Const(0, 1)
        r = self.code[:B]
        if fmt.midrise:
            return sign, Cat(Const(1, 1), r), Const(0, 1)
        c, f = r[m:], r[:m]
        return sign, Cat(f, c != 0), Mux(c == 0, 0, c - 1)

    def elaborate(self, platform):
        m = Module()
        sign, significand, shift = self.fields()
        m.d.comb += [self.sign.eq(sign), self.significand.eq(significand), self.shift.eq(shift)]
        return m


class SignificandMultiplier(wiring.Component):
    """The unsigned ``(m_a + 1) x (m_w + 1)`` significand multiplier, a submodule of its own so
    that synthesis reports its cost per ``k`` (the paper's claim: fewer significant bits, a
    cheaper multiply).

    Parameters
    ----------
    a_width, w_width : int
        Significand widths.
    """

    def __init__(self, a_width, w_width):
        super().__init__({"a": In(a_width), "w": In(w_width), "product": Out(a_width + w_width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(self.a * self.w)
        return m


class EsbDecoderProperties(wiring.Component):
    """Formal wrapper asserting that an :class:`EsbDecoder` gives the golden
    ``(sign, significand, shift)`` of :meth:`hwq.formats.esb.Esb.decompose` for every code.

    The code is a free input; prove it with :func:`hwq.pe.formal.prove_component` at depth 1
    (the decoder is combinational).
    """

    def __init__(self, decoder):
        if not isinstance(decoder, EsbDecoder):
            raise InputError(f"EsbDecoderProperties wraps an EsbDecoder, not {decoder!r}")
        self._decoder = decoder
        super().__init__({"code": In(decoder.code.shape())})

    def elaborate(self, platform):
        m = Module()
        dec = m.submodules.decoder = self._decoder
        fmt = dec.format
        m.d.comb += dec.code.eq(self.code)
        sign, significand, shift = fmt.decompose(fmt.codes)
        expected = [Signal.like(dec.sign, name="golden_sign"),
                    Signal.like(dec.significand, name="golden_significand"),
                    Signal.like(dec.shift, name="golden_shift")]
        with m.Switch(self.code):                          # the golden tables, one case per code
            for code in range(1 << fmt.bits):
                with m.Case(code):
                    m.d.comb += [e.eq(int(t[code])) for e, t in zip(expected, (sign, significand, shift))]
        m.d.comb += Assert((dec.sign == expected[0]) & (dec.significand == expected[1]) & (dec.shift == expected[2]))
        return m


class EsbPE(ProcessingElement):
    """ESB PE: decode both operands, multiply significands, shift, accumulate.

    Parameters
    ----------
    a_format, w_format : Esb
        Activation and weight formats.
    max_terms, pipeline
        As for :class:`~hwq.pe.base.ProcessingElement`.
    """

    format_name = "esb"
    default_widths = ((4, 4), (8, 8))
    #: decoder component of each operand
    decoder_class = EsbDecoder

    def __init__(self, a_format, w_format, *, max_terms=1024, pipeline=0):
        _check_esb("activation format", a_format)
        _check_esb("weight format", w_format)
        super().__init__(a_format, w_format, max_terms=max_terms, pipeline=pipeline)

    @classmethod
    def from_bits(cls, a_bits, w_bits, *, a_k=None, w_k=None, a_signed=False, w_signed=True, **kwargs):
        """PE for ``a_bits``-bit activations (unsigned by default) and ``w_bits``-bit weights
        (signed by default).

        ``w_k`` defaults to two exponent bits (:class:`~hwq.formats.esb.Esb`'s default) and ``a_k``
        to :func:`default_a_k`: as many exponent bits as the weights. Other keyword arguments go
        to the class.
        """
        w_format = Esb(w_bits, k=w_k, signed=w_signed)
        if a_k is None:
            a_k = default_a_k(check_int("esb activation bit width", a_bits, *Esb.bit_range), a_signed, w_format)
        return cls(Esb(a_bits, k=a_k, signed=a_signed), w_format, **kwargs)

    @classmethod
    def variants(cls, a_bits, w_bits, **kwargs):
        """What the build emits: one PE per distinct weight ``k`` of ``w_bits``, increasing."""
        if "w_k" in kwargs:
            return [cls.from_bits(a_bits, w_bits, **kwargs)]
        w_signed = kwargs.get("w_signed", True)
        B = Esb(w_bits, signed=w_signed).magnitude_bits
        ks = sorted({esb_fields(B, k)[1] + 1 for k in range(1, B + 1)})
        return [cls.from_bits(a_bits, w_bits, w_k=k, **kwargs) for k in ks]

    def name_suffixes(self):
        a, w = self.a_format, self.w_format
        suffixes = [f"k{w.k}"]
        if a.k != default_a_k(a.bits, a.signed, w):
            suffixes.append(f"ak{a.k}")
        if a.signed:
            suffixes.append("as")
        if not w.signed:
            suffixes.append("wu")
        suffixes += [f"{role}mr" for role, fmt in (("a", a), ("w", w)) if fmt.midrise]
        return suffixes

    def elaborate_product(self, m):
        """Decoders, significand multiplier and shifter: ``(negative, magnitude)`` of the product
        (the base adds the sign as a carry-in)."""
        decoders = {}
        for role, fmt in (("a", self.a_format), ("w", self.w_format)):
            decoder = decoders[role] = m.submodules[f"{role}_decoder"] = self.decoder_class(fmt)
            m.d.comb += decoder.code.eq(getattr(self, role))
        a, w = decoders["a"], decoders["w"]
        multiplier = m.submodules.multiplier = SignificandMultiplier(len(a.significand), len(w.significand))
        m.d.comb += [multiplier.a.eq(a.significand), multiplier.w.eq(w.significand)]
        significands = multiplier.product
        magnitude = Signal(unsigned(signed_width(*product_range(self.a_format, self.w_format))), name="magnitude")
        m.d.comb += magnitude.eq(significands << (a.shift + w.shift))
        return a.sign ^ w.sign, magnitude
