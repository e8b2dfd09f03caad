"""UNIQ's LUT-based processing element: activation x table[weight index], accumulated.

Activations are uniform fixed-point codes (:class:`~hwq.formats.FixedPoint`, unsigned post-ReLU
by default: the manifest marks them with ``"format": "fxp"``); weights are ``b``-bit indices into
a table of ``2**b`` stored levels (:class:`~hwq.formats.Uniq`). The PE reads the level of the
weight index from a :class:`LevelTable`, multiplies it by the activation and accumulates, in
units of ``2**-(frac_a + frac_w)``.

Two tables, two variants (:meth:`UniqPE.variants`):

fixed (``uniq_pe_a8_w4``)
    the levels are constants fixed at elaboration: a ``2**b``-way case over the index, which
    synthesis folds into LUTs (one LUT4 per level bit for ``b = 4``).
loadable (``uniq_pe_a8_w4_load``)
    ``2**b`` reset-less registers of ``level_bits`` bits written through the extra inputs
    ``load_en``, ``load_addr`` (``b`` bits) and ``load_data`` (signed ``level_bits``): on a clock
    edge with ``load_en`` high, ``table[load_addr] <- load_data``. The table is loaded once per
    layer; ``rst`` clears the accumulator, not the table. The manifest's ``init`` lists the load
    (docs/architecture.md, "Manifest contract"): one cycle per entry, ``{"load_en": 1, "load_addr": i,
    "load_data": levels[i]}``, after reset and before the first ``clear``; its codebook is the
    table that load writes. The accumulator is sized for any table the word can hold, so one
    PE serves every layer's table. The registers power up as 0.

The table lives in fabric (LUTs, or flip-flops when loadable): with ``b <= 4`` it is at most 16
words, and iCE40's block RAM (EBR) reads synchronously, which would cost a cycle of latency for
no saving. The default tables are the standard-normal levels of :meth:`hwq.formats.Uniq.gaussian`
(``level_bits = b + 4``: 8-bit words with 6 fraction bits for 4-bit indices).

:class:`UniqLoadProperties` is the formal wrapper of the loadable PE: after a load with free data,
every table entry and every read return the word loaded at that address, and ``acc`` keeps the
port contract with ``a * loaded[w]`` as the product.
"""

import hashlib
import json

from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from ..formats import FixedPoint, Uniq, product_range
from ..formats.golden import signed_width
from .base import ProcessingElement
from .formal import add_pe, golden_value, reference_sum

__all__ = ["LevelTable", "UniqPE", "UniqLoadProperties"]


class LevelTable(wiring.Component):
    """The level table: ``index -> level``, fixed or loadable.

    Parameters
    ----------
    fmt : Uniq
        The table (fixed) or the word shape and the levels of the manifest's load (loadable).
    loadable : bool
        Registers written through ``load_*`` (``True``) or constants (``False``).

    Attributes
    ----------
    index : Signal(bits), in
    level : Signal(signed(level_bits)), out
        The word at ``index`` (combinational).
    load_en, load_addr, load_data : Signal, in
        Loadable only: write ``load_data`` to entry ``load_addr`` on the clock edge.
    entries : list of Signal or None
        Loadable only: the table registers (reset-less, power-up 0), for formal properties.
    """

    def __init__(self, fmt, *, loadable):
        if not isinstance(fmt, Uniq):
            raise InputError(f"a level table holds a Uniq format, not {fmt!r}")
        self._format = fmt
        self._loadable = bool(loadable)
        members = {"index": In(fmt.bits), "level": Out(signed(fmt.level_bits))}
        if self._loadable:
            members.update(load_en=In(1), load_addr=In(fmt.bits), load_data=In(signed(fmt.level_bits)))
        super().__init__(members)
        self.entries = ([Signal(signed(fmt.level_bits), name=f"level_{i}", reset_less=True)
                         for i in range(1 << fmt.bits)] if self._loadable else None)

    @property
    def format(self):
        """The table's format."""
        return self._format

    @property
    def loadable(self):
        """Whether the table is written through ``load_*``."""
        return self._loadable

    def elaborate_write(self, m):
        """The load logic: ``entries[load_addr] <- load_data`` when ``load_en``."""
        with m.If(self.load_en):
            with m.Switch(self.load_addr):
                for i, entry in enumerate(self.entries):
                    with m.Case(i):
                        m.d.sync += entry.eq(self.load_data)

    def elaborate(self, platform):
        m = Module()
        words = self.entries if self._loadable else self._format.levels
        if self._loadable:
            self.elaborate_write(m)
        with m.Switch(self.index):
            for i, word in enumerate(words):
                with m.Case(i):
                    m.d.comb += self.level.eq(word)
        return m


class UniqPE(ProcessingElement):
    """LUT-based UNIQ PE: ``acc += a * table[w]``.

    Parameters
    ----------
    a_format : FixedPoint
        Activation format (signed or unsigned, any fraction length).
    w_format : Uniq
        The weight table (fixed) or the table the manifest's ``init`` loads (loadable).
    loadable : bool
        Fixed table (``False``) or loadable table with ``load_*`` inputs (``True``).
    max_terms, pipeline
        As for :class:`~hwq.pe.base.ProcessingElement`.

    Attributes
    ----------
    load_en, load_addr, load_data : Signal, in
        Loadable only.
    """

    format_name = "uniq"
    default_widths = ((8, 4), (4, 4))

    def __init__(self, a_format, w_format, *, loadable=False, max_terms=1024, pipeline=0):
        if not isinstance(loadable, bool):
            raise InputError(f"loadable must be True or False, not {loadable!r}")
        self._loadable = loadable
        super().__init__(a_format, w_format, max_terms=max_terms, pipeline=pipeline)
        self._table = None

    @classmethod
    def from_bits(cls, a_bits, w_bits, *, loadable=False, a_signed=False, level_bits=None, **kwargs):
        """PE for ``a_bits``-bit fixed-point activations (unsigned by default, fraction length
        0) and ``w_bits``-bit indices into the standard-normal table (:meth:`Uniq.gaussian`)."""
        return cls(FixedPoint(a_bits, signed=a_signed), Uniq.gaussian(w_bits, level_bits),
                   loadable=loadable, **kwargs)

    @classmethod
    def variants(cls, a_bits, w_bits, **kwargs):
        """What the build emits: the fixed-table PE and the loadable-table PE."""
        return [cls.from_bits(a_bits, w_bits, **kwargs), cls.from_bits(a_bits, w_bits, loadable=True, **kwargs)]

    @classmethod
    def operand_formats(cls, role):
        return ("fxp",) if role == "activation" else ("uniq",)

    @property
    def loadable(self):
        """Whether the table is loaded through ``load_*``."""
        return self._loadable

    @property
    def table(self):
        """The PE's :class:`LevelTable`, made by :meth:`make_table` on first use (a formal
        wrapper may read its entries before the PE is elaborated)."""
        if self._table is None:
            self._table = self.make_table()
        return self._table

    def make_table(self):
        """The :class:`LevelTable` of this PE (a mutant may override it)."""
        return LevelTable(self.w_format, loadable=self._loadable)

    def widest_table(self):
        """A table with the most negative and the largest word: what a load may write."""
        w = self.w_format
        half = 1 << (w.level_bits - 1)
        k = 1 << w.bits
        levels = [-half + i for i in range(k - 1)] + [half - 1]
        return Uniq(w.bits, levels=levels, level_bits=w.level_bits, frac=w.frac)

    def format_pairs(self):
        pairs = [(self.a_format, self.w_format)]
        if self._loadable:
            pairs.append((self.a_format, self.widest_table()))
        return pairs

    def code_shape(self, fmt):
        return signed(fmt.bits) if fmt.name == "fxp" and fmt.signed else unsigned(fmt.bits)

    def extra_ports(self):
        if not self._loadable:
            return {}
        w = self.w_format
        return {"load_en": In(1), "load_addr": In(w.bits), "load_data": In(signed(w.level_bits))}

    def name_suffixes(self):
        suffixes = ["load"] if self._loadable else []
        a = self.a_format
        if a.signed:
            suffixes.append("as")
        if a.frac:
            suffixes.append(f"af{a.frac}".replace("-", "m"))
        if self.w_format != Uniq.gaussian(self.w_format.bits):
            text = json.dumps(self.w_format.params(), sort_keys=True)
            suffixes.append("t" + hashlib.sha256(text.encode()).hexdigest()[:8])
        return suffixes

    def format_params(self):
        params = super().format_params()
        params["table"] = "loadable" if self._loadable else "fixed"
        return params

    def init_sequence(self):
        if not self._loadable:
            return None
        return [{"load_en": 1, "load_addr": i, "load_data": level} for i, level in enumerate(self.w_format.levels)]

    def elaborate_product(self, m):
        table = m.submodules.table = self.table
        m.d.comb += table.index.eq(self.w)
        if self._loadable:
            m.d.comb += [table.load_en.eq(self.load_en), table.load_addr.eq(self.load_addr),
                         table.load_data.eq(self.load_data)]
        lows, highs = zip(*(product_range(a, w) for a, w in self.format_pairs()))
        product = Signal(signed(signed_width(min(lows), max(highs))), name="product")
        m.d.comb += product.eq(self.a * table.level)
        return product


class UniqLoadProperties(wiring.Component):
    """Formal wrapper: a loadable :class:`UniqPE` returns, for every index, the loaded level.

    Every input of the PE is a free input. Assumed protocol: the first cycle is a reset; after
    every reset, ``2**b`` load cycles follow (``load_en`` high, ``load_addr`` = 0, 1, ...,
    ``load_data`` free, ``valid`` and ``clear`` low); after them ``load_en`` stays low (the table
    is loaded once per layer) while ``a``, ``w``, ``valid``, ``clear`` and ``rst`` are free. A
    reset restarts the load. Beside the PE the wrapper captures each address's ``load_data`` in
    its own registers (``loaded_i``) and asserts, on every cycle after the first:

    * every table entry already loaded equals the word captured for its address;
    * once the load is complete, the table read returns ``loaded[w]`` for the free index ``w``;
    * ``acc`` keeps the port contract with the product ``value(a) * loaded[w]`` (the activation's
      golden value from :func:`~hwq.pe.formal.golden_value`), delayed by the PE's latency.

    Prove it with :func:`~hwq.pe.formal.prove_component` at a depth of at least
    :meth:`depth` so that the base case reaches the end of the load.
    """

    def __init__(self, pe):
        if not isinstance(pe, UniqPE) or not pe.loadable:
            raise InputError(f"UniqLoadProperties wraps a loadable UniqPE, not {pe!r}")
        self._pe = pe
        members = {name: In(member.shape) for name, member in pe.signature.members.items()
                   if member.flow == In}
        super().__init__(members)

    @property
    def pe(self):
        """The PE under proof."""
        return self._pe

    def depth(self):
        """Proof depth whose base case covers a reset, the whole load and the pipeline."""
        return (1 << self._pe.w_format.bits) + self._pe.latency + 3

    def elaborate(self, platform):
        m = Module()
        pe = add_pe(m, self, self._pe)
        w_format = pe.w_format
        k = 1 << w_format.bits

        started = Signal(reset_less=True)
        m.d.sync += started.eq(1)
        with m.If(~started):
            m.d.comb += Assume(ResetSignal("sync"))

        # the load protocol: phase counts the entries written since the last reset
        phase = Signal(range(k + 1), name="load_phase")
        loaded = Signal(name="loaded")
        m.d.comb += loaded.eq(phase == k)
        with m.If(loaded):
            m.d.comb += Assume(~self.load_en)
        with m.Else():
            m.d.comb += Assume(self.load_en & (self.load_addr == phase) & ~self.valid & ~self.clear)
            m.d.sync += phase.eq(phase + 1)

        # the wrapper's own copy of what the load wrote, one register per address
        captured = [Signal(signed(w_format.level_bits), name=f"loaded_{i}", reset_less=True) for i in range(k)]
        for i, word in enumerate(captured):
            with m.If(~loaded & (phase == i)):
                m.d.sync += word.eq(self.load_data)
        expected_level = Signal(signed(w_format.level_bits), name="expected_level")
        with m.Switch(self.w):
            for i, word in enumerate(captured):
                with m.Case(i):
                    m.d.comb += expected_level.eq(word)

        # the contract's sum with the loaded table, delayed by the PE's latency
        lows, highs = zip(*(product_range(a, w) for a, w in pe.format_pairs()))
        product = Signal(signed(signed_width(min(lows), max(highs))), name="ref_product")
        m.d.comb += product.eq(golden_value(m, pe.a_format, self.a) * expected_level)
        expected = reference_sum(m, pe, product, self.valid, self.clear)

        with m.If(started):
            for i, (entry, word) in enumerate(zip(pe.table.entries, captured)):
                with m.If(phase > i):
                    m.d.comb += Assert(entry == word)
            with m.If(loaded):
                m.d.comb += Assert(pe.table.level == expected_level)
            m.d.comb += Assert(pe.acc == expected)
        return m
