"""The processing-element port contract shared by every format
(docs/architecture.md, "PE port contract").

Ports: ``clk`` and ``rst`` (synchronous, active high) from the ``sync`` domain; ``a`` and ``w``
(codes); ``valid``; ``clear``; ``acc`` (signed). On every clock edge the PE takes
``(clear, valid, a, w)`` and updates

    ``sum <- (clear ? 0 : sum) + (valid ? value(a) * value(w) : 0)``

and ``acc`` shows that sum :attr:`~ProcessingElement.latency` cycles later, so a new sum starts
whenever ``clear`` is high, with no idle cycle. ``acc * 2**acc_lsb_exp`` equals the sum exactly for
up to ``max_terms`` terms.
"""

import abc

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from ..registry import FORMAT_NAME, Registry
from ..formats import NumberFormat, acc_width, product_lsb_exp
from ..formats.base import check_int
from ..manifest import MAX_TERMS

__all__ = ["ProcessingElement", "PE_CLASSES", "MAX_PIPELINE", "operand_params"]

#: the PE class of every format that has one, by format name (each PE module registers its own)
PE_CLASSES = Registry("processing element", packages=("hwq.pe",), **FORMAT_NAME)

#: most product register stages a PE accepts
MAX_PIPELINE = 4


def operand_params(format_name, fmt):
    """Manifest parameters of operand format ``fmt`` in a PE of format ``format_name``."""
    return fmt.params() if fmt.name == format_name else {"format": fmt.name, **fmt.params()}


class ProcessingElement(wiring.Component):
    """A multiply-accumulate processing element for one activation and one weight format.

    Parameters
    ----------
    a_format, w_format : NumberFormat
        Formats of the activation and weight codes.
    max_terms : int
        Longest sum the accumulator holds without overflow (1 to :data:`hwq.manifest.MAX_TERMS`);
        sets :attr:`acc_width`.
    pipeline : int
        Register stages between the product and the accumulator (0 to :data:`MAX_PIPELINE`).
        Each adds a cycle of :attr:`latency` and shortens the critical path.

    Attributes
    ----------
    a, w : Signal, in
        Activation and weight codes (bit patterns, codebook indices).
    valid : Signal(1), in
        Add ``value(a) * value(w)`` this cycle.
    clear : Signal(1), in
        Start a new sum this cycle.
    acc : Signal(signed(acc_width)), out
        The running sum, in units of ``2**acc_lsb_exp``.

    Subclasses set :attr:`format_name` and implement :meth:`elaborate_product`. A subclass whose
    own body sets :attr:`format_name` is registered in :data:`PE_CLASSES` as that format's PE
    (:class:`~hwq.errors.InputError` if the format has one already); subclasses that inherit it
    (variants, test mutants) are not.
    """

    #: name of the PE's format (a key of :data:`hwq.formats.FORMATS`), the manifest's ``format.name``
    format_name = None
    #: (activation bits, weight bits) pairs the default build emits
    default_widths = ((8, 8), (4, 4))

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("format_name") is not None:
            PE_CLASSES.register(cls.format_name, cls)

    def __init__(self, a_format, w_format, *, max_terms=1024, pipeline=0):
        for role, fmt in (("activation", a_format), ("weight", w_format)):
            if not isinstance(fmt, NumberFormat):
                raise InputError(f"{role} format must be a NumberFormat, not {fmt!r}")
            accepted = self.operand_formats(role)
            if fmt.name not in accepted:
                raise InputError(f"{type(self).__name__} takes {' or '.join(accepted)} {role}s, not {fmt.name}")
        self._a_format = a_format
        self._w_format = w_format
        self._max_terms = check_int("max_terms", max_terms, 1, MAX_TERMS)
        self._pipeline = check_int("pipeline", pipeline, 0, MAX_PIPELINE)
        self._acc_width = max(acc_width(a, w, self._max_terms) for a, w in self.format_pairs())
        super().__init__({
            "a": In(self.code_shape(a_format)),
            "w": In(self.code_shape(w_format)),
            "valid": In(1),
            "clear": In(1),
            "acc": Out(signed(self._acc_width)),
            **self.extra_ports(),
        })

    @property
    def a_format(self):
        """Activation format."""
        return self._a_format

    @property
    def w_format(self):
        """Weight format."""
        return self._w_format

    @property
    def max_terms(self):
        """Longest sum that cannot overflow the accumulator."""
        return self._max_terms

    @property
    def pipeline(self):
        """Product register stages."""
        return self._pipeline

    @property
    def latency(self):
        """Cycles from an input to the ``acc`` that includes it (1: registered accumulator)."""
        return 1 + self._pipeline

    @property
    def acc_width(self):
        """Width of ``acc``."""
        return self._acc_width

    @property
    def acc_lsb_exp(self):
        """``acc * 2**acc_lsb_exp`` is the exact sum."""
        return product_lsb_exp(self._a_format, self._w_format)

    @property
    def module_name(self):
        """Verilog module name, unique for the PE's parameters."""
        name = f"{self.format_name}_pe_a{self._a_format.bits}_w{self._w_format.bits}"
        name += "".join(f"_{s}" for s in self.name_suffixes())
        if self._pipeline:
            name += f"_p{self._pipeline}"
        if self._max_terms != 1024:
            name += f"_t{self._max_terms}"
        return name

    @classmethod
    def variants(cls, a_bits, w_bits, **kwargs):
        """The PEs the build emits at ``a_bits`` x ``w_bits``: one, from ``from_bits``."""
        return [cls.from_bits(a_bits, w_bits, **kwargs)]

    @classmethod
    def operand_formats(cls, role):
        """Names of the formats the PE accepts for ``role`` (``"activation"`` or ``"weight"``):
        its own :attr:`format_name` unless a subclass says otherwise."""
        return (cls.format_name,)

    def format_pairs(self):
        """Every (activation, weight) format pair the PE computes; the accumulator holds them all.

        One pair, ``(a_format, w_format)``, unless the number types are chosen at run time.
        """
        return [(self._a_format, self._w_format)]

    def name_suffixes(self):
        """Extra parts of :attr:`module_name` for non-default parameters (none here)."""
        return []

    def code_shape(self, fmt):
        """Shape of a code port: unsigned bit pattern unless a subclass says otherwise."""
        return unsigned(fmt.bits)

    def extra_ports(self):
        """Additional ports (e.g. a run-time ``mode``) as a signature member dict."""
        return {}

    def format_params(self):
        """The manifest's ``format`` entry; an operand whose format is not :attr:`format_name` names its
        own with a ``"format"`` key (read back by :func:`hwq.formats.from_params`)."""
        return {"name": self.format_name, "a": operand_params(self.format_name, self._a_format),
                "w": operand_params(self.format_name, self._w_format)}

    def modes(self):
        """Manifest ``modes`` entry for run-time-typed PEs; ``None`` when there are none."""
        return None

    def init_sequence(self):
        """Manifest ``init`` entry for PEs that must be loaded before use; ``None`` otherwise."""
        return None

    @abc.abstractmethod
    def elaborate_product(self, m):
        """Add the product logic to ``m``; return the product in units of the accumulator.

        Either a signed Value, or a ``(negative, magnitude)`` pair of a 1-bit Value and an
        unsigned magnitude whose top bit is always 0 (as sign-magnitude PEs compute it): the base
        then adds a negative product as its ones' complement plus a carry-in,
        ``acc + ~magnitude + 1``, which saves the negation (about 10 % of the LUT4s). The product
        is combinational in ``self.a`` and ``self.w`` (and extra ports).
        """

    def elaborate(self, platform):
        m = Module()
        term, negative = self.elaborate_product(m), None
        if isinstance(term, tuple):
            negative, magnitude = term
            term = Signal(signed(len(magnitude)), name="term")         # -magnitude - 1 when negative
            m.d.comb += term.eq(Mux(negative, ~magnitude, magnitude))
        valid, clear = self.valid, self.clear
        for stage in range(self._pipeline):
            # reset-less data registers: yosys may pack them into an SB_MAC16 input register
            term_q = Signal.like(term, name=f"term_s{stage + 1}", reset_less=True)
            valid_q = Signal(name=f"valid_s{stage + 1}")
            clear_q = Signal(name=f"clear_s{stage + 1}")
            m.d.sync += [term_q.eq(term), valid_q.eq(valid), clear_q.eq(clear)]
            if negative is not None:
                negative_q = Signal(name=f"negative_s{stage + 1}", reset_less=True)
                m.d.sync += negative_q.eq(negative)
                negative = negative_q
            term, valid, clear = term_q, valid_q, clear_q
        total = Mux(clear, 0, self.acc) + Mux(valid, term, 0)
        if negative is not None:
            total = total + (valid & negative)
        m.d.sync += self.acc.eq(total)
        return m
