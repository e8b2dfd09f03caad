"""ANT's unified processing element: every ANT type on one datapath.

Each operand goes through an :class:`AntDecoder`, which turns a code into
``(sign, significand, shift)`` with ``value = (-1)**sign * (significand << shift)`` (see
:mod:`hwq.formats.ant`) using the types' own bit logic: flint's exponent is its top bit plus a
priority-encoded first-one prefix, float splits exponent and mantissa fields, PoT is a shift, int
a two's-complement magnitude. The PE then multiplies the
small significands ``significand_a * significand_w``, shifts by ``shift_a + shift_w``, applies the
sign and accumulates.

The type of each operand is a run-time input (``a_type``, ``w_type``: the index into
``a_types`` / ``w_types``) so one PE serves tensors of any type, as in the paper; the manifest has
one ``modes`` entry per type pair. A PE with a single type per operand has no type inputs: the
fixed-type variants show what the generality costs.

Supported pairs (the default): unsigned activations in int or flint, signed weights in int,
flint or PoT. Unsigned PoT activations are left out on purpose: at 4 bits they reach ``2**14``
and a PoT x PoT product ``2**20``, which would widen the shifter and the accumulator of every mode
for a type ANT hardly ever picks for activations (docs/formats.md, "ant"). PoT needs at most 5 magnitude
bits, so 8-bit PEs offer int and flint only. float is supported by the decoder and can be asked for.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from ..formats import Ant, product_range
from ..formats.ant import ANT_TYPES, POT_MAX_MAGNITUDE_BITS
from ..formats.base import check_int
from ..formats.golden import signed_width
from .base import ProcessingElement, operand_params

__all__ = ["AntDecoder", "AntPE", "DEFAULT_A_TYPES", "DEFAULT_W_TYPES"]

#: activation types of the default unified PE
DEFAULT_A_TYPES = ("int", "flint")
#: weight types of the default unified PE (PoT only where it fits)
DEFAULT_W_TYPES = ("int", "flint", "pot")


def _check_types(role, types):
    types = tuple(types)
    if not types:
        raise InputError(f"{role} types must name at least one ANT type")
    for name in types:
        if name not in ANT_TYPES:
            raise InputError(f"unknown ANT type {name!r} for {role}s; use one of {', '.join(ANT_TYPES)}")
    if len(set(types)) != len(types):
        raise InputError(f"{role} types {types} list a type twice")
    return types


class AntDecoder(wiring.Component):
    """Decode an ANT code of a run-time-selected type into ``(sign, significand, shift)``.

    The outputs are named as :class:`~hwq.pe.esb.EsbDecoder`'s:
    ``value = (-1)**sign * (significand << shift)``.

    Parameters
    ----------
    formats : sequence of Ant
        The types, all of the same width and signedness; ``type`` selects among them.

    Attributes
    ----------
    code : Signal(bits), in
    type : Signal(range(len(formats))), in
        Index of the type (absent for a single type).
    sign : Signal(1), out
    significand : Signal, out
        Unsigned integer significand.
    shift : Signal, out
        Left shift.
    """

    def __init__(self, formats):
        formats = list(formats)
        if len({(f.bits, f.signed) for f in formats}) != 1:
            raise InputError("an ANT decoder's types must share one width and signedness")
        self._formats = formats
        significand_max = max(int(f.decompose(f.codes)[1].max()) for f in formats)
        shift_max = max(int(f.decompose(f.codes)[2].max()) for f in formats)
        members = {"code": In(formats[0].bits)}
        if len(formats) > 1:
            members["type"] = In(range(len(formats)))
        members.update(sign=Out(1), significand=Out(unsigned(max(significand_max.bit_length(), 1))),
                       shift=Out(unsigned(max(shift_max.bit_length(), 1))))
        super().__init__(members)

    @property
    def formats(self):
        """The decoded types, in ``type`` order."""
        return self._formats

    def _decode(self, m, fmt):
        """``(sign, significand, shift)`` Values of ``self.code`` read as ``fmt``."""
        n, B = fmt.bits, fmt.magnitude_bits
        code = self.code
        sign = code[n - 1] if fmt.signed else 0
        r = code[:B]
        if fmt.type == "int":
            return sign, (Mux(sign, -code.as_signed(), code) if fmt.signed else code), 0
        if fmt.type == "pot":
            return sign, r != 0, Mux(r != 0, r - 1, 0)
        if fmt.type == "float":
            E = min(3, B)
            M = B - E
            e, mant = r[M:], r[:M]
            return sign, Mux(e == 0, mant, (1 << M) | mant), Mux(e == 0, 0, e - 1)
        # flint: top bit t; low bits; z = leading zeros of low within B - 1 bits (priority encoder)
        t, low = r[B - 1], r[:B - 1]
        z = Signal(range(B), name="flint_z")
        m.d.comb += z.eq(B - 1)
        for bit in range(B - 1):                         # the highest set bit is assigned last
            with m.If(low[bit]):
                m.d.comb += z.eq(B - 2 - bit)
        significand = Mux(t & (low == 0), 1, low)
        shift = Mux(t, Mux(low == 0, 2 * B - 2, 2 * z + 1), 0)
        return sign, significand, shift

    def elaborate(self, platform):
        m = Module()
        decoded = [self._decode(m, fmt) for fmt in self._formats]
        if len(decoded) == 1:
            sign, significand, shift = decoded[0]
            m.d.comb += [self.sign.eq(sign), self.significand.eq(significand), self.shift.eq(shift)]
            return m
        with m.Switch(self.type):
            for index, (sign, significand, shift) in enumerate(decoded):
                with m.Case(index):
                    m.d.comb += [self.sign.eq(sign), self.significand.eq(significand), self.shift.eq(shift)]
        return m


class AntPE(ProcessingElement):
    """ANT PE: decode both operands, multiply significands, shift, accumulate.

    Parameters
    ----------
    a_bits, w_bits : int
        Code widths, 3 to 8.
    a_types, w_types : sequence of str
        Types each operand may take at run time (one each: a fixed-type PE). A PoT weight type
        wider than PoT allows is dropped from the default list, never from an explicit one.
    a_signed, w_signed : bool
        Operand signedness (unsigned activations, signed weights by default).
    max_terms, pipeline
        As for :class:`~hwq.pe.base.ProcessingElement`.

    Attributes
    ----------
    a_type, w_type : Signal, in
        Run-time type of each operand (only when it has more than one).
    """

    format_name = "ant"
    default_widths = ((4, 4), (8, 8))

    def __init__(self, a_bits=4, w_bits=4, *, a_types=DEFAULT_A_TYPES, w_types=None, a_signed=False,
                 w_signed=True, max_terms=1024, pipeline=0):
        a_bits = check_int("ant activation bit width", a_bits, *Ant.bit_range)
        w_bits = check_int("ant weight bit width", w_bits, *Ant.bit_range)
        if w_types is None:
            fits = (w_bits - (1 if w_signed else 0)) <= POT_MAX_MAGNITUDE_BITS
            w_types = tuple(t for t in DEFAULT_W_TYPES if t != "pot" or fits)
        self._a_formats = [Ant(a_bits, type=t, signed=a_signed) for t in _check_types("activation", a_types)]
        self._w_formats = [Ant(w_bits, type=t, signed=w_signed) for t in _check_types("weight", w_types)]
        super().__init__(self._a_formats[0], self._w_formats[0], max_terms=max_terms, pipeline=pipeline)

    @classmethod
    def from_bits(cls, a_bits, w_bits, **kwargs):
        """The unified PE at ``a_bits`` x ``w_bits`` (keyword arguments as for the class)."""
        return cls(a_bits, w_bits, **kwargs)

    @classmethod
    def variants(cls, a_bits, w_bits, **kwargs):
        """What the build emits: the unified PE and the fixed-type flint x flint PE."""
        return [cls(a_bits, w_bits, **kwargs), cls(a_bits, w_bits, a_types=("flint",), w_types=("flint",), **kwargs)]

    @property
    def a_types(self):
        """Activation types, in ``a_type`` order."""
        return tuple(f.type for f in self._a_formats)

    @property
    def w_types(self):
        """Weight types, in ``w_type`` order."""
        return tuple(f.type for f in self._w_formats)

    def format_pairs(self):
        return [(a, w) for a in self._a_formats for w in self._w_formats]

    def extra_ports(self):
        ports = {}
        if len(self._a_formats) > 1:
            ports["a_type"] = In(range(len(self._a_formats)))
        if len(self._w_formats) > 1:
            ports["w_type"] = In(range(len(self._w_formats)))
        return ports

    def name_suffixes(self):
        suffixes = []
        if self.a_types != DEFAULT_A_TYPES or self.w_types != tuple(self._default_w_types()):
            suffixes.append(f"{'_'.join(self.a_types)}_x_{'_'.join(self.w_types)}")
        if self.a_format.signed:
            suffixes.append("as")
        if not self.w_format.signed:
            suffixes.append("wu")
        return suffixes

    def _default_w_types(self):
        fits = self.w_format.magnitude_bits <= POT_MAX_MAGNITUDE_BITS
        return [t for t in DEFAULT_W_TYPES if t != "pot" or fits]

    def format_params(self):
        params = super().format_params()
        params.update(a_types=list(self.a_types), w_types=list(self.w_types))
        return params

    def modes(self):
        if len(self.format_pairs()) == 1:
            return None
        from .manifest import codebook_strings
        modes = {}
        for ai, a in enumerate(self._a_formats):
            for wi, w in enumerate(self._w_formats):
                held = {}
                if "a_type" in self.signature.members:
                    held["a_type"] = ai
                if "w_type" in self.signature.members:
                    held["w_type"] = wi
                modes[f"{a.type}_{w.type}"] = {
                    "set": held,
                    "format": {"a": operand_params(self.format_name, a), "w": operand_params(self.format_name, w)},
                    "codebook": {"a": codebook_strings(a), "w": codebook_strings(w)},
                    "acc_lsb_exp": a.lsb_exp + w.lsb_exp,
                }
        return modes

    def elaborate_product(self, m):
        decoders = {}
        for role, formats in (("a", self._a_formats), ("w", self._w_formats)):
            decoder = m.submodules[f"{role}_decoder"] = AntDecoder(formats)
            m.d.comb += decoder.code.eq(getattr(self, role))
            if len(formats) > 1:
                m.d.comb += decoder.type.eq(getattr(self, f"{role}_type"))
            decoders[role] = decoder
        a, w = decoders["a"], decoders["w"]
        lows, highs = zip(*(product_range(x, y) for x, y in self.format_pairs()))
        width = signed_width(min(lows), max(highs))
        magnitude = Signal(unsigned(width), name="magnitude")
        m.d.comb += magnitude.eq((a.significand * w.significand) << (a.shift + w.shift))
        return a.sign ^ w.sign, magnitude
