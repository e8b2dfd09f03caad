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
    ``2**b`` words of ``level_bits`` bits written through the extra inputs ``load_en``,
    ``load_addr`` (``b`` bits) and ``load_data`` (signed ``level_bits``): on a clock edge with
    ``load_en`` high, ``table[load_addr] <- load_data``. The table is loaded once per layer;
    ``rst`` clears the accumulator, not the table. The manifest's ``init`` lists the load
    (docs/architecture.md, "Manifest contract"): one cycle per entry, ``{"load_en": 1, "load_addr": i,
    "load_data": levels[i]}``, after reset and before the first ``clear``; its codebook is the
    table that load writes. The accumulator is sized for any table the word can hold, so one
    PE serves every layer's table. The words power up as 0 (registers and block RAM alike).

Where a loadable table lives (``table_storage``, the manifest's ``format.table_storage``):

fabric, ``b <= 4``
    reset-less registers and a ``2**b``-way read multiplexer; the read is combinational and the
    PE's latency is the base's ``1 + pipeline``.
block RAM (EBR), ``b >= 5`` (:data:`EBR_MIN_BITS`)
    an ``amaranth.lib.memory.Memory`` with one write port and a synchronous, non-transparent
    read port, which ``synth_ice40`` maps to one SB_RAM40_4K (256 x 16 bits: up to 8-bit indices
    and 16-bit words). The read registers the word, so ``a``, ``valid`` and ``clear`` wait a cycle
    beside it and :attr:`UniqPE.latency` is ``2 + pipeline``. A read in the cycle of a write to
    the same address returns the word before the write, as the fabric table's does. The EBR
    has no reset; like the registers it powers up as 0.

``table_storage="fabric"`` or ``"ebr"`` forces either at any width (module name suffix ``_fabric``
or ``_ebr`` when it differs from this choice). Figures on the iCE40UP5K (``a8``, loadable,
fabric multiplier, nextpnr seed 1 at 48 MHz; LCs include the four-pin harness, Fmax in MHz):

=====  =====================================  ==================================
``b``  fabric table: LCs, FFs, Fmax           block RAM: LCs, FFs, EBR, Fmax
=====  =====================================  ==================================
4      500, 154, 21.6                         294, 58, 1, 29.3
5      918, 315, 18.7                         334, 62, 1, 27.4
6      1831, 668, 17.1                        369, 66, 1, 27.4
7      3327, 1437, 16.1                       401, 70, 1, 27.8
8      7330 of 5280, 3102: does not fit       433, 74, 1, 27.3
=====  =====================================  ==================================

The fabric table doubles with every index bit, the block-RAM PE grows by about 35 LCs a bit
(its multiplier and accumulator). At ``b = 4`` the 16 words cost about 200 LCs over block RAM
(4 % of the part): the table stays in fabric there, which keeps the 4-bit PEs at latency 1 and
leaves the part's 30 EBRs to the data (force ``"ebr"`` when logic cells are scarcer). From
``b = 5`` the fabric table outgrows the rest of the PE (918 against 334 LCs), and at ``b = 8`` it
does not fit. The default tables are the standard-normal levels of
:meth:`hwq.formats.Uniq.gaussian` (``level_bits = b + 4``: 8-bit words with 6 fraction bits for
4-bit indices, 12-bit words for 8-bit indices).

:class:`UniqLoadProperties` is the formal wrapper of the loadable PE: after a load with free data,
every table entry and every read return the word loaded at that address, and ``acc`` keeps the
port contract with ``a * loaded[w]`` as the product.
"""

import hashlib
import json

from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import InputError
from ..formats import FixedPoint, Uniq, product_range
from ..formats.golden import signed_width
from .base import ProcessingElement
from .formal import add_pe, golden_value, reference_sum

__all__ = ["LevelTable", "UniqPE", "UniqLoadProperties", "TABLE_STORAGES", "EBR_MIN_BITS"]

#: where a loadable table lives: chosen by the index width, or forced
TABLE_STORAGES = ("auto", "fabric", "ebr")

#: the narrowest weight index whose loadable table ``"auto"`` puts in block RAM
EBR_MIN_BITS = 5


class LevelTable(wiring.Component):
    """The level table: ``index -> level``, fixed or loadable, in fabric or in block RAM.

    Parameters
    ----------
    fmt : Uniq
        The table (fixed) or the word shape and the levels of the manifest's load (loadable).
    loadable : bool
        Written through ``load_*`` (``True``) or constants (``False``).
    ebr : bool
        Loadable only: the words live in an ``amaranth.lib.memory.Memory`` with one write port
        and a synchronous read port, which ``synth_ice40`` maps to iCE40 block RAM
        (SB_RAM40_4K), instead of reset-less registers. ``level`` is then registered:
        :attr:`latency` 1.

    Attributes
    ----------
    index : Signal(bits), in
    level : Signal(signed(level_bits)), out
        The word at ``index``: combinational (fabric), or the word at the ``index`` of the
        previous cycle, as the table held it before that cycle's write (EBR).
    load_en, load_addr, load_data : Signal, in
        Loadable only: write ``load_data`` to entry ``load_addr`` on the clock edge.
    entries : list of Signal or None
        Loadable fabric table only: the table registers (reset-less, power-up 0), for formal
        properties (:meth:`probe_entries` gives the words of either kind).
    """

    def __init__(self, fmt, *, loadable, ebr=False):
        if not isinstance(fmt, Uniq):
            raise InputError(f"a level table holds a Uniq format, not {fmt!r}")
        if not isinstance(ebr, bool) or (ebr and not loadable):
            raise InputError(f"ebr must be True (a loadable table only) or False, not {ebr!r}")
        self._format = fmt
        self._loadable = bool(loadable)
        self._ebr = ebr
        self._probes = None
        members = {"index": In(fmt.bits), "level": Out(signed(fmt.level_bits))}
        if self._loadable:
            members.update(load_en=In(1), load_addr=In(fmt.bits), load_data=In(signed(fmt.level_bits)))
        super().__init__(members)
        self.entries = ([Signal(signed(fmt.level_bits), name=f"level_{i}", reset_less=True)
                         for i in range(1 << fmt.bits)] if self._loadable and not ebr else None)

    @property
    def format(self):
        """The table's format."""
        return self._format

    @property
    def loadable(self):
        """Whether the table is written through ``load_*``."""
        return self._loadable

    @property
    def ebr(self):
        """Whether the words live in block RAM (a synchronous read)."""
        return self._ebr

    @property
    def latency(self):
        """Cycles from ``index`` to its ``level``: 0 (fabric) or 1 (EBR)."""
        return int(self._ebr)

    def probe_entries(self):
        """Every word of a loadable table as a Signal, for formal properties: the registers
        (fabric), or (EBR) one asynchronous read port per address, added beside the PE's own
        ports when the table is elaborated (call this first; a simulation or proof only, since
        synthesis would have to build them in fabric)."""
        if not self._loadable:
            raise InputError("a fixed table has no entries to probe")
        if not self._ebr:
            return self.entries
        if self._probes is None:
            self._probes = [Signal(signed(self._format.level_bits), name=f"probe_{i}")
                            for i in range(1 << self._format.bits)]
        return self._probes

    def write_enable(self):
        """Whether this cycle's ``load_data`` is written to entry ``load_addr``: ``load_en``
        (a mutant may override it)."""
        return self.load_en

    def elaborate_write(self, m):
        """The load logic of a fabric table: ``entries[load_addr] <- load_data`` when
        :meth:`write_enable`."""
        with m.If(self.write_enable()):
            with m.Switch(self.load_addr):
                for i, entry in enumerate(self.entries):
                    with m.Case(i):
                        m.d.sync += entry.eq(self.load_data)

    def elaborate_memory(self, m):
        """The EBR table: a memory written through ``load_*``, read one cycle late."""
        fmt = self._format
        memory = m.submodules.memory = Memory(shape=signed(fmt.level_bits), depth=1 << fmt.bits, init=[])
        write = memory.write_port()
        read = memory.read_port(domain="sync")            # not transparent: the word before a write
        m.d.comb += [write.en.eq(self.write_enable()), write.addr.eq(self.load_addr),
                     write.data.eq(self.load_data), read.addr.eq(self.index), self.level.eq(read.data)]
        for i, probe in enumerate(self._probes or ()):
            port = memory.read_port(domain="comb")
            m.d.comb += [port.addr.eq(i), probe.eq(port.data)]

    def elaborate(self, platform):
        m = Module()
        if self._ebr:
            self.elaborate_memory(m)
            return m
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
    table_storage : str
        Where a loadable table lives, one of :data:`TABLE_STORAGES`: ``"auto"`` (default) puts
        it in block RAM from :data:`EBR_MIN_BITS`-bit indices on and in registers below;
        ``"fabric"`` or ``"ebr"`` force one. A fixed table is always ``"auto"`` (constants in
        LUTs). Block RAM adds a cycle of :attr:`latency` (the module docstring).
    max_terms, pipeline
        As for :class:`~hwq.pe.base.ProcessingElement`.

    Attributes
    ----------
    load_en, load_addr, load_data : Signal, in
        Loadable only.
    """

    format_name = "uniq"
    default_widths = ((8, 4), (4, 4))

    def __init__(self, a_format, w_format, *, loadable=False, table_storage="auto", max_terms=1024, pipeline=0):
        if not isinstance(loadable, bool):
            raise InputError(f"loadable must be True or False, not {loadable!r}")
        if not isinstance(table_storage, str) or table_storage not in TABLE_STORAGES:
            raise InputError(f"table_storage must be one of {', '.join(map(repr, TABLE_STORAGES))}, "
                             f"not {table_storage!r}")
        if table_storage != "auto" and not loadable:
            raise InputError(f"table_storage={table_storage!r} is for a loadable table; a fixed table is "
                             f"constants in LUTs (table_storage='auto')")
        self._loadable = loadable
        super().__init__(a_format, w_format, max_terms=max_terms, pipeline=pipeline)
        self._ebr = table_storage == "ebr" or (table_storage == "auto" and loadable
                                               and w_format.bits >= EBR_MIN_BITS)
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
    def table_storage(self):
        """Where the table lives: ``"ebr"`` (block RAM) or ``"fabric"`` (registers or LUTs)."""
        return "ebr" if self._ebr else "fabric"

    @property
    def latency(self):
        """Cycles from an input to the ``acc`` that includes it: ``1 + pipeline``, plus 1 for
        the synchronous read of a table in block RAM."""
        return super().latency + int(self._ebr)

    @property
    def table(self):
        """The PE's :class:`LevelTable`, made by :meth:`make_table` on first use (a formal
        wrapper may read its entries before the PE is elaborated)."""
        if self._table is None:
            self._table = self.make_table()
        return self._table

    def make_table(self):
        """The :class:`LevelTable` of this PE (a mutant may override it)."""
        return LevelTable(self.w_format, loadable=self._loadable, ebr=self._ebr)

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
        if self._loadable and self._ebr != (self.w_format.bits >= EBR_MIN_BITS):
            suffixes.append(self.table_storage)          # not what "auto" picks at this width
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
        if self._loadable:
            params["table_storage"] = self.table_storage
        return params

    def init_sequence(self):
        if not self._loadable:
            return None
        return [{"load_en": 1, "load_addr": i, "load_data": level} for i, level in enumerate(self.w_format.levels)]

    def elaborate_product(self, m, a=None):
        """The product ``a * table[w]``; ``a`` is the activation beside the table's output (the
        ``a`` port, or with the table in block RAM the ``a`` of the previous cycle)."""
        table = m.submodules.table = self.table
        m.d.comb += table.index.eq(self.w)
        if self._loadable:
            m.d.comb += [table.load_en.eq(self.load_en), table.load_addr.eq(self.load_addr),
                         table.load_data.eq(self.load_data)]
        lows, highs = zip(*(product_range(a, w) for a, w in self.format_pairs()))
        product = Signal(signed(signed_width(min(lows), max(highs))), name="product")
        m.d.comb += product.eq((self.a if a is None else a) * table.level)
        return product

    def elaborate(self, platform):
        if not self._ebr:
            return super().elaborate(platform)
        # The table in block RAM answers a cycle late: a, valid and clear wait one cycle in
        # registers beside its read, then the base's pipeline and accumulator follow (the same
        # logic as ProcessingElement.elaborate, fed by the delayed inputs).
        m = Module()
        a_r = Signal.like(self.a, name="a_r", reset_less=True)
        valid, clear = Signal(name="valid_r"), Signal(name="clear_r")
        m.d.sync += [a_r.eq(self.a), valid.eq(self.valid), clear.eq(self.clear)]
        term = self.elaborate_product(m, a_r)
        for stage in range(self.pipeline):
            term_q = Signal.like(term, name=f"term_s{stage + 1}", reset_less=True)
            valid_q = Signal(name=f"valid_s{stage + 1}")
            clear_q = Signal(name=f"clear_s{stage + 1}")
            m.d.sync += [term_q.eq(term), valid_q.eq(valid), clear_q.eq(clear)]
            term, valid, clear = term_q, valid_q, clear_q
        m.d.sync += self.acc.eq(Mux(clear, 0, self.acc) + Mux(valid, term, 0))
        return m


class UniqLoadProperties(wiring.Component):
    """Formal wrapper: a loadable :class:`UniqPE` returns, for every index, the loaded level.

    Every input of the PE is a free input. Assumed protocol: the first cycle is a reset; after
    every reset, ``2**b`` load cycles follow (``load_en`` high, ``load_addr`` = 0, 1, ...,
    ``load_data`` free, ``valid`` and ``clear`` low); after them ``load_en`` stays low (the table
    is loaded once per layer) while ``a``, ``w``, ``valid``, ``clear`` and ``rst`` are free. A
    reset restarts the load. Beside the PE the wrapper captures each address's ``load_data`` in
    its own registers (``loaded_i``) and asserts, on every cycle after the first:

    * every table entry already loaded equals the word captured for its address (the registers
      of a fabric table; a table in block RAM is read through one asynchronous probe port per
      address, :meth:`LevelTable.probe_entries`, which the proof adds beside the PE's own ports);
    * once the load is complete, the table read returns ``loaded[w]`` for the free index ``w``
      (a block-RAM table one cycle later, for the ``w`` of the cycle before, unless that cycle
      was a reset);
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
        table = pe.table
        entries = table.probe_entries()
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
        # the word the table's read shows: a block-RAM table's, a cycle later (a reset between
        # the read and its word leaves nothing to check: the PE discards that word)
        expected_read, read_checked = expected_level, loaded
        for stage in range(table.latency):
            word_q = Signal.like(expected_level, name=f"expected_level_d{stage + 1}", reset_less=True)
            check_q = Signal(name=f"read_checked_d{stage + 1}")
            m.d.sync += [word_q.eq(expected_read), check_q.eq(read_checked)]
            expected_read, read_checked = word_q, check_q

        # the contract's sum with the loaded table, delayed by the PE's latency
        lows, highs = zip(*(product_range(a, w) for a, w in pe.format_pairs()))
        product = Signal(signed(signed_width(min(lows), max(highs))), name="ref_product")
        m.d.comb += product.eq(golden_value(m, pe.a_format, self.a) * expected_level)
        expected = reference_sum(m, pe, product, self.valid, self.clear)

        with m.If(started):
            for i, (entry, word) in enumerate(zip(entries, captured)):
                with m.If(phase > i):
                    m.d.comb += Assert(entry == word)
            with m.If(read_checked):
                m.d.comb += Assert(table.level == expected_read)
            m.d.comb += Assert(pe.acc == expected)
        return m
