"""The requantization datapath: an exact accumulator to one output code per cycle.

Bit for bit the arithmetic of docs/integer-semantics.md, "Requantization", whose reference is
:mod:`hwq.integer.requant`: the numerator ``n = (acc + bias) * M``, the doubled numerator ``2n``
(one guard bit) shifted right by ``S`` to the quotient ``q = floor(2n / 2**S)`` with the sticky
bit ``sticky`` (any bit shifted out), and the output format's threshold table
(:class:`~hwq.integer.requant.EncoderTable`): the grid index is the number of thresholds passed,
threshold ``j`` being passed iff

    ``q > t2[j]  or  (q == t2[j]  and  (sticky or up_on_tie[j]))``

which is ``2n / 2**S > t_j`` (``sticky`` or a tie that goes up) or ``>= t_j``. The index is
clamped to the grid indices ``[low, high]`` (the folded ReLU, ReLU6 or hardtanh,
:class:`~hwq.integer.requant.Clamp`) and replaced by the canonical code of that grid value.
A *uniform* table (thresholds one integer unit apart, tie flags of period 1 or 2, codes counting
up: fixed point, :func:`uniform_table`) is not searched but computed, exactly, from ``q`` and
``sticky``, so it needs no memory and adds no compare stage, whatever its size (fxp16 scores).

Both components are fully pipelined: one input per cycle, every output :attr:`latency` cycles
after its input, with ``valid`` travelling alongside (``code_valid``). Data registers have no
reset (yosys may retime them or pack them into an SB_MAC16); only the valid bits are reset.
"""

import dataclasses

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..errors import InputError
from ..formats.base import check_int
from ..integer.program import BIAS_BITS
from ..integer.requant import MAX_SHIFT, MULTIPLIER_BITS, NUMERATOR_BITS, EncoderTable

__all__ = ["ThresholdEncoder", "Requantizer", "UniformTable", "uniform_table", "MAX_INDEX_BITS",
           "MAX_UNIFORM_INDEX_BITS", "MAX_Q_WIDTH", "MAX_ACC_WIDTH", "SHIFT_BITS", "DEFAULT_MAX_LOGIC_WORDS"]

#: widest grid index of a *searched* (non-uniform) table: at most 4096 grid values (every
#: non-uniform format of hwq has at most 256); uniform tables are computed, see
#: :data:`MAX_UNIFORM_INDEX_BITS`
MAX_INDEX_BITS = 12
#: widest grid index (``low``, ``high``) of the encoder, and of a uniform table: at most ``2**32``
#: grid values, codes of up to 32 bits (fxp32); a uniform table needs no memory, only adders of
#: about its width
MAX_UNIFORM_INDEX_BITS = 32
#: widest quotient port of the encoder (the requantizer's is ``NUMERATOR_BITS + 1`` = 63)
MAX_Q_WIDTH = 64
#: widest accumulator the requantizer takes: ``max(acc_width, 32) + 1 + 16 <= NUMERATOR_BITS``
MAX_ACC_WIDTH = NUMERATOR_BITS - MULTIPLIER_BITS - 1
#: width of the ``shift`` port (``0 <= shift <= MAX_SHIFT``)
SHIFT_BITS = ceil_log2(MAX_SHIFT + 1)
#: a lookup of at most this many words is built from logic (LUTs), a larger one is a memory (EBR)
DEFAULT_MAX_LOGIC_WORDS = 16


def _signed_width(lo, hi):
    """Fewest bits of a two's-complement integer holding every value of ``[lo, hi]``."""
    return max((~int(lo)).bit_length() if lo < 0 else 0, (int(hi)).bit_length() if hi > 0 else 0) + 1


@dataclasses.dataclass(frozen=True)
class UniformTable:
    """The constants that replace a uniform :class:`EncoderTable` in the encoder (see
    :func:`uniform_table`).

    Attributes
    ----------
    first2 : int
        ``thresholds2[0]``, the first doubled threshold.
    up_on_tie : tuple of (bool, bool)
        ``(up_on_tie[0], up_on_tie[1])``: the tie flag of every even and every odd threshold
        (equal when the table has one threshold).
    last : int
        ``G - 1``, the last grid index.
    code0 : int
        ``codes[0]``.
    code_bits : int
        ``k``: ``codes[i] = (code0 + i) mod 2**k``.
    """

    first2: int
    up_on_tie: tuple
    last: int
    code0: int
    code_bits: int


def _table_code_bits(table):
    """The width ``k`` of a table's codes: its format's ``bits``, else that of its largest code."""
    bits = getattr(table.format, "bits", None)
    return int(bits) if bits else max(1, int(np.max(table.codes)).bit_length())


def uniform_table(table):
    """The :class:`UniformTable` of ``table`` if it is uniform, else ``None``.

    A table of ``G >= 2`` grid values is *uniform* when

    - its thresholds are one integer unit apart: ``thresholds2[j] == thresholds2[0] + 2*j``;
    - its tie flags have period 1 or 2: ``up_on_tie[j] == up_on_tie[j % 2]``;
    - its codes count up modulo ``2**k`` (``k`` the format's bits): ``codes[i] == (codes[0] + i)
      mod 2**k``, with ``0 <= codes[0] < 2**k``;

    and ``G <= 2**MAX_UNIFORM_INDEX_BITS``. Fixed point is uniform with every rounding mode whose
    rule is the same on both sides of zero: ``half_even`` (thresholds at midpoints, the tie flag
    alternating with the parity of the lower grid value), ``half_up`` (midpoints, ties up),
    ``floor`` (thresholds at the upper grid values, ties up), and for unsigned formats also
    ``half_away`` (= ``half_up``) and ``toward_zero`` (= ``floor``). Signed ``half_away`` (tie
    flags change at zero) and signed ``toward_zero`` (thresholds at the upper grid value below
    zero, the lower one above: no even spacing) are not, and are searched.

    The index is then arithmetic, and exact: with ``d = q - thresholds2[0]``, ``m = d >> 1``
    (floor) and ``odd = d & 1``, threshold ``j`` (``thresholds2[0] + 2j``) is passed iff
    ``d > 2j`` or ``d == 2j`` and (``sticky`` or ``up_on_tie[j]``). For ``d < 0`` no threshold is
    passed; otherwise ``d > 2j`` holds for ``j < m`` when ``d`` is even (``d == 2m``, then ``j = m``
    is passed iff ``sticky or up_on_tie[m % 2]``), for ``j <= m`` when it is odd. So the index is
    ``0`` for ``d < 0``, else ``min(m + (odd or sticky or up_on_tie[m % 2]), G - 1)``, the minimum
    standing for the thresholds past the last one, which do not exist.
    """
    size = len(table.grid)
    if size < 2 or size > 1 << MAX_UNIFORM_INDEX_BITS:
        return None
    t2 = np.asarray(table.thresholds2, dtype=np.int64)
    up = np.asarray(table.up_on_tie, dtype=bool)
    codes = np.asarray(table.codes, dtype=np.int64)
    j = np.arange(size - 1, dtype=np.int64)
    k = _table_code_bits(table)
    if k > 63 or not 0 <= int(codes[0]) < 1 << k:
        return None
    if not (np.array_equal(t2, t2[0] + 2 * j) and np.array_equal(up, up[j % 2])
            and np.array_equal(codes, (codes[0] + np.arange(size, dtype=np.int64)) & ((1 << k) - 1))):
        return None
    return UniformTable(int(t2[0]), (bool(up[0]), bool(up[1 % len(up)])), size - 1, int(codes[0]), k)


def _check_tables(tables):
    """``tables`` as a tuple of consistent :class:`EncoderTable`, and their :class:`UniformTable`
    (or ``None``: searched, so it must be small enough and monotone)."""
    if isinstance(tables, EncoderTable):
        tables = [tables]
    if isinstance(tables, (str, bytes)) or not hasattr(tables, "__len__") or not len(tables):
        raise InputError(f"tables must be a non-empty list of EncoderTable, not {tables!r}")
    tables = tuple(tables)
    uniform = []
    for i, table in enumerate(tables):
        if not isinstance(table, EncoderTable):
            raise InputError(f"tables[{i}] must be an EncoderTable (hwq.integer.requant), not {type(table).__name__}")
        what = f"tables[{i}] ({table.format})"
        size = len(table.grid)
        counts = (len(table.codes), len(table.thresholds2), len(table.up_on_tie))
        if size < 1 or counts != (size, size - 1, size - 1):
            raise InputError(f"{what} must have G >= 1 grid values and codes, and G - 1 thresholds and tie flags; "
                             f"it has {len(table.grid)}, {len(table.codes)}, {len(table.thresholds2)} and "
                             f"{len(table.up_on_tie)}")
        if int(np.min(table.codes)) < 0:
            raise InputError(f"{what} has a negative code; codes are bit patterns (non-negative)")
        uni = uniform_table(table)
        uniform.append(uni)
        if uni is not None:
            continue
        if size > 1 << MAX_INDEX_BITS:
            raise InputError(f"{what} has {size} grid values and is not uniform: more than the "
                             f"{1 << MAX_INDEX_BITS} (MAX_INDEX_BITS {MAX_INDEX_BITS}) the encoder searches")
        t2, up = np.asarray(table.thresholds2, dtype=np.int64), np.asarray(table.up_on_tie, dtype=bool)
        # the binary search needs "threshold j + 1 passed" to imply "threshold j passed" for every
        # (q, sticky): non-decreasing thresholds, and of two equal ones the upper goes up on a
        # tie only if the lower does
        bad = np.flatnonzero((t2[1:] < t2[:-1]) | ((t2[1:] == t2[:-1]) & up[1:] & ~up[:-1]))
        if bad.size:
            j = int(bad[0])
            raise InputError(f"{what}: thresholds {j} and {j + 1} (doubled {int(t2[j])}, {int(t2[j + 1])}) are out of "
                             "order, so its encoder is not monotone and no binary search finds it")
    return tables, tuple(uniform)


#: the stand-in searched table of an encoder whose tables are all uniform (one grid value)
_EMPTY = EncoderTable(None, np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The checked tables of an encoder and the widths derived from them."""

    tables: tuple
    uniform: tuple          # per table: its UniformTable, or None (searched)
    searched: tuple         # the indices of the searched tables, in slot order
    index_bits: int         # width of a grid index (low, high): the largest table
    search_bits: int        # compare stages: the largest searched table (at least 1)
    table_bits: int
    code_bits: int
    compare_width: int
    max_logic_words: int

    @property
    def latency(self):
        """The encoder's latency: ``search_bits + 2``."""
        return self.search_bits + 2


def _layout(tables, index_bits, max_logic_words):
    """Check the encoder parameters other than ``q_width`` and derive its widths."""
    tables, uniform = _check_tables(tables)
    largest = max(len(t.grid) for t in tables)
    needed = max(1, ceil_log2(largest))
    if index_bits is None:
        index_bits = needed
    index_bits = check_int("index_bits", index_bits, 1, MAX_UNIFORM_INDEX_BITS)
    if index_bits < needed:
        worst = max(range(len(tables)), key=lambda i: len(tables[i].grid))
        raise InputError(f"index_bits {index_bits} holds {1 << index_bits} grid values, but "
                         f"tables[{worst}] ({tables[worst].format}) has {largest}; use index_bits >= {needed}")
    max_logic_words = check_int("max_logic_words", max_logic_words, 0, 1 << 20)
    searched = tuple(i for i, u in enumerate(uniform) if u is None)
    search_bits = max([1] + [ceil_log2(len(tables[i].grid)) for i in searched])
    # every table's thresholds: the saturated quotient feeds both paths
    ends = [v for t in tables if len(t.thresholds2) for v in (int(np.min(t.thresholds2)), int(np.max(t.thresholds2)))]
    lo, hi = (min(ends), max(ends)) if ends else (0, 0)
    code_bits = max(max(int(np.max(t.codes)).bit_length(), getattr(t.format, "bits", 1) or 1, 1) for t in tables)
    code_bits = max([code_bits] + [u.code_bits for u in uniform if u is not None])
    # room for one saturated value below every threshold and two above (saturated, padding)
    return _Layout(tables, uniform, searched, index_bits, search_bits, max(1, ceil_log2(len(tables))), code_bits,
                   _signed_width(lo - 1, hi + 2), max_logic_words)


class ThresholdEncoder(wiring.Component):
    """Pipelined encoder of a quotient in one of several threshold tables, clamped, to a code.

    Implements ``codes[clip(index, low, high)]`` of :meth:`hwq.integer.requant.EncoderTable.index`
    for the quotient ``q = floor(2n / 2**S)`` and the sticky bit of ``2n`` shifted right by ``S``
    (docs/integer-semantics.md, "Requantization", "Guard and sticky bits"), for the table chosen
    at run time by ``table`` (it may change every cycle).

    Two paths of the same latency, chosen per input by the selected table:

    - **Uniform tables** (:func:`uniform_table`: thresholds one integer unit apart, tie flags of
      period 1 or 2, codes counting up modulo ``2**k``; fixed point with ``half_even``,
      ``half_up``, ``floor``, and unsigned with every rounding mode) are *computed*: with
      ``d = q - thresholds2[0]``, the index is 0 for ``d < 0``, else
      ``min((d >> 1) + (d[0] | sticky | up_on_tie[(d >> 1) % 2]), G - 1)``, exactly the count of
      thresholds passed (derivation in :func:`uniform_table`), and the code is
      ``(codes[0] + clamped index) mod 2**k``. No memory, any size up to
      :data:`MAX_UNIFORM_INDEX_BITS` (fxp16, fxp24, ...). ``d`` is registered in the first stage
      and carried along the search's stages; the index is computed in the last one.
    - **The other tables** are searched: each is padded to ``2**search_bits`` grid values, its
      ``G - 1`` thresholds followed by padding thresholds that no quotient passes, its ``G`` codes
      by zeros. Bit ``b`` of the grid index (``search_bits - 1`` first) is decided by one compare
      stage, which reads the one threshold the bits above ``b`` point to: stage ``b`` holds
      ``2**(search_bits - 1 - b)`` thresholds per searched table.

    So the latency, :attr:`search_bits` ``+ 2``, depends on the searched tables only (at least
    one compare stage). The quotient is first saturated to :attr:`compare_width` bits, to
    ``[-2**(W-1), 2**(W-1) - 2]``: beyond every threshold of every table (uniform ones included),
    so the saturation changes no comparison and no computed index, and below the padding
    ``2**(W-1) - 1``, so the padding is never passed, even by a quotient equal to it with the
    sticky bit set.

    Storage (searched tables only, in slot order :attr:`searched`): each stage's thresholds
    (``compare_width + 1`` bits: doubled threshold and tie flag, ``len(searched) *
    2**(search_bits - 1 - b)`` words) and the codes (``len(searched) * 2**search_bits`` words) are
    an :class:`amaranth.lib.memory.Memory` with ``init`` and a synchronous read port, which yosys
    maps to iCE40 block RAM (EBR), when they have more than ``max_logic_words`` words; smaller ones
    are a registered ``case`` over constants (LUTs), and a single word is a constant. The uniform
    tables' constants (first threshold, two tie flags, ``G - 1``, first code, code mask) are
    ``case`` s over ``table``.

    Parameters
    ----------
    tables : sequence of EncoderTable, or one EncoderTable
        The tables, selected by the ``table`` port (index into this sequence). A uniform table may
        have up to ``2**MAX_UNIFORM_INDEX_BITS`` grid values; any other table at most
        ``2**MAX_INDEX_BITS`` and monotone thresholds (as every table that :meth:`EncoderTable.of`
        builds has). All at most ``2**index_bits``.
    q_width : int
        Width of the signed quotient port ``q``, 1 to :data:`MAX_Q_WIDTH` (63 for a 62-bit
        numerator).
    index_bits : int, optional
        Width of a grid index (``low``, ``high``), 1 to :data:`MAX_UNIFORM_INDEX_BITS`. Default:
        the fewest that hold the largest table, uniform ones included (16 with an fxp16 table).
        The number of compare stages is :attr:`search_bits`, set by the searched tables alone.
    max_logic_words : int, optional
        Lookups of at most this many words are built from logic rather than a memory
        (default :data:`DEFAULT_MAX_LOGIC_WORDS`; 0: every lookup of two words or more is a memory).

    Attributes
    ----------
    q : Signal(signed(q_width)), in
        The quotient ``floor(2n / 2**S)``, in units of half an integer unit of the output format.
    sticky : Signal(1), in
        Some bit of ``2n`` was shifted out (``2n / 2**S > q``).
    table : Signal(unsigned(table_bits)), in
        Index into ``tables``; at or above ``len(tables)`` the code is unspecified.
    low, high : Signal(unsigned(index_bits)), in
        Clamp bounds as grid indices of the selected table (:class:`~hwq.integer.requant.Clamp`);
        the index is ``min(max(index, low), high)``, as ``numpy.clip``. Neither path goes past the
        table's last grid value, so ``high = 2**index_bits - 1`` clamps nothing; a ``low`` past it
        gives code 0 for a searched table, ``(codes[0] + low) mod 2**k`` for a uniform one.
    valid : Signal(1), in
        The inputs hold a value this cycle.
    code : Signal(unsigned(code_bits)), out
        The output code (bit pattern), :attr:`latency` cycles after its inputs.
    code_valid : Signal(1), out
        ``valid``, :attr:`latency` cycles later (reset: 0).

    Raises
    ------
    InputError
        Before elaboration, naming the parameter: ``tables`` empty or holding something other than
        an :class:`EncoderTable`, a table that is inconsistent, too large for ``index_bits``,
        a non-uniform table of more than ``2**MAX_INDEX_BITS`` grid values or not monotone;
        ``q_width``, ``index_bits`` or ``max_logic_words`` not an integer in range.
    """

    def __init__(self, tables, *, q_width, index_bits=None, max_logic_words=DEFAULT_MAX_LOGIC_WORDS):
        layout = _layout(tables, index_bits, max_logic_words)
        self._q_width = check_int("q_width", q_width, 1, MAX_Q_WIDTH)
        self._layout = layout
        self._tables, self._index_bits, self._table_bits = layout.tables, layout.index_bits, layout.table_bits
        self._code_bits, self._compare_width = layout.code_bits, layout.compare_width
        self._max_logic_words = layout.max_logic_words
        self._search_bits = layout.search_bits
        self._searched = [layout.tables[i] for i in layout.searched] or [_EMPTY]
        super().__init__({
            "q": In(signed(self._q_width)),
            "sticky": In(1),
            "table": In(unsigned(self._table_bits)),
            "low": In(unsigned(self._index_bits)),
            "high": In(unsigned(self._index_bits)),
            "valid": In(1),
            "code": Out(unsigned(self._code_bits)),
            "code_valid": Out(1),
        })

    @property
    def tables(self):
        """The encoder tables, in ``table`` port order (tuple)."""
        return self._tables

    @property
    def uniform(self):
        """Per table, its :class:`UniformTable` (computed), or ``None`` (searched) (tuple)."""
        return self._layout.uniform

    @property
    def searched(self):
        """The indices (into :attr:`tables`) of the searched tables, in the order of their words
        in the threshold and code lookups (tuple; empty when every table is uniform)."""
        return self._layout.searched

    @property
    def q_width(self):
        """Width of the signed quotient port ``q``."""
        return self._q_width

    @property
    def index_bits(self):
        """Width of a grid index (``low``, ``high``): holds the largest table."""
        return self._index_bits

    @property
    def search_bits(self):
        """The number of compare stages: the fewest bits that hold the largest searched table (at
        least 1)."""
        return self._search_bits

    @property
    def table_bits(self):
        """Width of the ``table`` port (at least 1)."""
        return self._table_bits

    @property
    def code_bits(self):
        """Width of the ``code`` port: the widest format's code."""
        return self._code_bits

    @property
    def compare_width(self):
        """Width ``W`` of the saturated quotient and of each stored doubled threshold."""
        return self._compare_width

    @property
    def latency(self):
        """Cycles from an input to its ``code``: ``search_bits + 2`` (one per compare stage, one
        for the index register before the clamp, one for the code lookup); uniform tables take as
        long, whatever their size."""
        return self._search_bits + 2

    @property
    def padding(self):
        """The padding threshold ``2**(W-1) - 1``, above every saturated quotient."""
        return (1 << (self._compare_width - 1)) - 1

    def threshold_words(self, bit):
        """The words of compare stage ``bit`` (grid index bit, ``search_bits - 1`` first), in address
        order ``slot * 2**(search_bits - 1 - bit) + (index >> (bit + 1))``, ``slot`` the position
        of the table in :attr:`searched`: each the doubled threshold (``compare_width`` bits, two's
        complement) with the tie flag above it."""
        width, levels, size = self._compare_width, self._search_bits - 1 - bit, 1 << self._search_bits
        words = []
        for table in self._searched:
            t2 = [int(v) for v in table.thresholds2] + [self.padding] * (size - len(table.grid))
            up = [bool(v) for v in table.up_on_tie] + [False] * (size - len(table.grid))
            for prefix in range(1 << levels):
                j = (prefix << (bit + 1)) + (1 << bit) - 1
                words.append((t2[j] & ((1 << width) - 1)) | (int(up[j]) << width))
        return words

    def code_words(self):
        """The searched tables' code lookup in address order ``slot * 2**search_bits + index``
        (padding: 0)."""
        size = 1 << self._search_bits
        return [int(c) for t in self._searched for c in list(t.codes) + [0] * (size - len(t.codes))]

    def _lookup(self, m, name, words, width, addr):
        """A value of ``words[addr]`` registered once (or a constant, for one word)."""
        if len(words) == 1:
            return Const(words[0], width)
        if len(words) <= self._max_logic_words:
            data = Signal(width, name=f"{name}_data", reset_less=True)
            with m.Switch(addr):
                for i, word in enumerate(words):
                    with m.Case(i):
                        m.d.sync += data.eq(word)
            return data
        memory = Memory(shape=unsigned(width), depth=len(words), init=words)
        m.submodules[name] = memory
        port = memory.read_port(domain="sync")
        m.d.comb += port.addr.eq(addr)
        return port.data

    def _per_table(self, m, name, shape, table, value):
        """``value(i)`` of table ``i = table`` (a ``case`` over the tables, combinational)."""
        out = Signal(shape, name=name)
        with m.Switch(table):
            for i in range(len(self._tables)):
                with m.Case(i):
                    m.d.comb += out.eq(value(i))
        return out

    def elaborate(self, platform):
        m = Module()
        W, B, S = self._compare_width, self._index_bits, self._search_bits
        uniform = self._layout.uniform
        any_uniform = any(u is not None for u in uniform)
        slot_of = {t: s for s, t in enumerate(self._layout.searched)}
        slot_bits = max(1, ceil_log2(len(self._searched)))

        # saturate q to [-2**(W-1), 2**(W-1) - 2]: beyond every threshold, below the padding
        q = Signal(signed(W), name="q_sat")
        if self._q_width < W:
            m.d.comb += q.eq(self.q)
        else:
            upper = self.q[W - 1:]                                  # sign-extension bits of a W-bit value
            fits = upper.all() | ~upper.any()
            lowest, highest = -(1 << (W - 1)), self.padding - 1
            m.d.comb += q.eq(Mux(~fits, Mux(self.q[-1], lowest, highest),
                                 Mux(self.q[:W] == self.padding, highest, self.q[:W].as_signed())))

        # the selected table's search slot and path
        slot = self._per_table(m, "slot", slot_bits, self.table, lambda i: slot_of.get(i, 0))
        if any_uniform:
            uni = self._per_table(m, "uniform", 1, self.table, lambda i: uniform[i] is not None)
            first2 = self._per_table(m, "first2", signed(W), self.table,
                                     lambda i: uniform[i].first2 if uniform[i] is not None else 0)
            d = Signal(signed(W + 1), name="d")                     # q - thresholds2[0] of a uniform table
            m.d.comb += d.eq(q - first2)
        else:
            uni, d = Const(0, 1), Const(0, 1)

        sticky, table, low, high, valid = self.sticky, self.table, self.low, self.high, self.valid
        prefix = Const(0, 0)                                        # grid index bits decided so far
        for stage, bit in enumerate(range(S - 1, -1, -1), start=1):
            if self._layout.searched:
                word = self._lookup(m, f"thresholds_b{bit}", self.threshold_words(bit), W + 1, Cat(prefix, slot))
            else:                                                   # nothing to search: the padding
                word = Const(self.padding, W + 1)
            regs = [Signal(signed(W), name=f"q_s{stage}", reset_less=True),
                    Signal(name=f"sticky_s{stage}", reset_less=True),
                    Signal.like(self.table, name=f"table_s{stage}", reset_less=True),
                    Signal(slot_bits, name=f"slot_s{stage}", reset_less=True),
                    Signal(name=f"uniform_s{stage}", reset_less=True),
                    Signal(d.shape(), name=f"d_s{stage}", reset_less=True),
                    Signal.like(self.low, name=f"low_s{stage}", reset_less=True),
                    Signal.like(self.high, name=f"high_s{stage}", reset_less=True),
                    Signal(len(prefix), name=f"prefix_s{stage}", reset_less=True),
                    Signal(name=f"valid_s{stage}")]
            m.d.sync += [r.eq(v) for r, v in zip(regs, (q, sticky, table, slot, uni, d, low, high, prefix, valid))]
            q, sticky, table, slot, uni, d, low, high, prefix_q, valid = regs
            t2, up = word[:W].as_signed(), word[W]
            # q > t2 or (q == t2 and (sticky or up)): the pair (q, sticky | up) above (t2, 0)
            passed = Cat(sticky | up, q).as_signed() > Cat(Const(0, 1), t2).as_signed()
            prefix = Cat(passed, prefix_q)

        # the uniform tables' index: the number of thresholds passed, computed (uniform_table)
        if any_uniform:
            half = d >> 1                                           # m = floor(d / 2)
            up_even = self._per_table(m, "up_even", 1, table,
                                      lambda i: uniform[i].up_on_tie[0] if uniform[i] is not None else 0)
            up_odd = self._per_table(m, "up_odd", 1, table,
                                     lambda i: uniform[i].up_on_tie[1] if uniform[i] is not None else 0)
            last = self._per_table(m, "last", B, table, lambda i: uniform[i].last if uniform[i] is not None else 0)
            count = Signal(signed(W + 1), name="count")
            m.d.comb += count.eq(half + (d[0] | sticky | Mux(half[0], up_odd, up_even)))
            computed = Mux(d[-1], 0, Mux(count > last, last, count[:B]))
            found = Mux(uni, computed, prefix)
        else:
            found = prefix

        index = Signal(B, name="index", reset_less=True)
        table_i = Signal.like(self.table, name="table_i", reset_less=True)
        slot_i = Signal(slot_bits, name="slot_i", reset_less=True)
        uni_i = Signal(name="uniform_i", reset_less=True)
        low_i = Signal.like(self.low, name="low_i", reset_less=True)
        high_i = Signal.like(self.high, name="high_i", reset_less=True)
        valid_i = Signal(name="valid_i")
        m.d.sync += [index.eq(found), table_i.eq(table), slot_i.eq(slot), uni_i.eq(uni), low_i.eq(low),
                     high_i.eq(high), valid_i.eq(valid)]

        raised = Mux(index < low_i, low_i, index)
        clamped = Signal(B, name="clamped")
        m.d.comb += clamped.eq(Mux(raised > high_i, high_i, raised))
        if self._layout.searched:
            searched_code = self._lookup(m, "codes", self.code_words(), self._code_bits, Cat(clamped[:S], slot_i))
        else:
            searched_code = Const(0, self._code_bits)
        if B > S and self._layout.searched:                         # past every searched table: code 0
            beyond = Signal(name="beyond", reset_less=True)
            m.d.sync += beyond.eq(clamped[S:].any())
            searched_code = Mux(beyond, 0, searched_code)
        if any_uniform:
            code0 = self._per_table(m, "code0", self._code_bits, table_i,
                                    lambda i: uniform[i].code0 if uniform[i] is not None else 0)
            mask = self._per_table(m, "code_mask", self._code_bits, table_i,
                                   lambda i: (1 << uniform[i].code_bits) - 1 if uniform[i] is not None else 0)
            computed_code = Signal(self._code_bits, name="computed_code", reset_less=True)
            uni_c = Signal(name="uniform_c", reset_less=True)
            m.d.sync += [computed_code.eq((code0 + clamped) & mask), uni_c.eq(uni_i)]
            m.d.comb += self.code.eq(Mux(uni_c, computed_code, searched_code))
        else:
            m.d.comb += self.code.eq(searched_code)
        m.d.sync += self.code_valid.eq(valid_i)
        return m


class Requantizer(wiring.Component):
    """A layer's requantization: ``clamp(encode((acc + bias) * M / 2**S))`` as a code, one per cycle.

    docs/integer-semantics.md, "Layer" steps 3 to 6 and "Requantization"; the reference is
    :func:`hwq.integer.requant.requantize` of the numerator ``(acc + bias) * multiplier``.

    Pipeline (one register stage each):

    1. ``sum = acc + bias`` (``max(acc_width, 32) + 1`` bits), beside the registered multiplier:
       the multiplier's operands are registers;
    2. ``n = sum * multiplier`` (``numerator_width`` bits), a plain ``*`` that yosys maps (a later
       step may put it on SB_MAC16), registered;
    3. ``2n`` arithmetically shifted right by ``8 * (shift >> 3)`` and the OR of the bits shifted
       out;
    4. shifted right by ``shift & 7``, ORing those bits into the sticky bit: the quotient
       ``q = floor(2n / 2**S)`` and ``sticky``;
    5. the :class:`ThresholdEncoder` (``search_bits + 2`` cycles: uniform tables, fxp16 scores
       among them, add no compare stage).

    Parameters
    ----------
    tables : sequence of EncoderTable, or one EncoderTable
        Output format tables, selected per input by ``table`` (see :class:`ThresholdEncoder`).
    acc_width : int
        Width of the signed accumulator, 1 to :data:`MAX_ACC_WIDTH` (45): the numerator
        ``(acc + bias) * M`` must fit :data:`~hwq.integer.requant.NUMERATOR_BITS` (62) bits.
    index_bits, max_logic_words : int, optional
        As for :class:`ThresholdEncoder`.

    Attributes
    ----------
    acc : Signal(signed(acc_width)), in
        Exact accumulator, in accumulator units.
    bias : Signal(signed(32)), in
        ``β``, in accumulator units.
    multiplier : Signal(unsigned(16)), in
        ``M`` (0 allowed: the output is the code of the clamped encoding of 0).
    shift : Signal(unsigned(6)), in
        ``S``, 0 to :data:`~hwq.integer.requant.MAX_SHIFT` (60); 61 to 63 shift as well.
    table, low, high, valid : Signal, in
        As for :class:`ThresholdEncoder`.
    code : Signal(unsigned(code_bits)), out
        Output code, :attr:`latency` cycles after the inputs.
    code_valid : Signal(1), out
        ``valid``, :attr:`latency` cycles later (reset: 0).

    Raises
    ------
    InputError
        Before elaboration, naming the parameter: ``acc_width`` not an integer from 1 to 45, and
        every error of :class:`ThresholdEncoder`.
    """

    def __init__(self, tables, *, acc_width, index_bits=None, max_logic_words=DEFAULT_MAX_LOGIC_WORDS):
        if isinstance(acc_width, bool) or not isinstance(acc_width, (int, np.integer)):
            raise InputError(f"acc_width must be an integer, not {acc_width!r}")
        if not 1 <= acc_width <= MAX_ACC_WIDTH:
            raise InputError(f"acc_width must be between 1 and {MAX_ACC_WIDTH}, not {acc_width}: "
                             f"max(acc_width, {BIAS_BITS}) + 1 + {MULTIPLIER_BITS} must fit the "
                             f"{NUMERATOR_BITS}-bit numerator")
        self._acc_width = int(acc_width)
        self._sum_width = max(self._acc_width, BIAS_BITS) + 1
        self._numerator_width = self._sum_width + MULTIPLIER_BITS
        # the encoder is checked now and built in elaborate(), so that an unelaborated requantizer
        # leaves no unused elaboratable behind
        self._layout = enc = _layout(tables, index_bits, max_logic_words)
        super().__init__({
            "acc": In(signed(self._acc_width)),
            "bias": In(signed(BIAS_BITS)),
            "multiplier": In(unsigned(MULTIPLIER_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "table": In(unsigned(enc.table_bits)),
            "low": In(unsigned(enc.index_bits)),
            "high": In(unsigned(enc.index_bits)),
            "valid": In(1),
            "code": Out(unsigned(enc.code_bits)),
            "code_valid": Out(1),
        })

    @property
    def tables(self):
        """The encoder tables, in ``table`` port order (tuple)."""
        return self._layout.tables

    @property
    def acc_width(self):
        """Width of the signed ``acc`` port."""
        return self._acc_width

    @property
    def sum_width(self):
        """Width of ``acc + bias``: ``max(acc_width, 32) + 1``."""
        return self._sum_width

    @property
    def numerator_width(self):
        """Width of ``n = (acc + bias) * M``: :attr:`sum_width` ``+ 16`` (at most 62)."""
        return self._numerator_width

    @property
    def index_bits(self):
        """Width of ``low`` and ``high``: holds the largest table."""
        return self._layout.index_bits

    @property
    def search_bits(self):
        """The encoder's compare stages (:attr:`ThresholdEncoder.search_bits`)."""
        return self._layout.search_bits

    @property
    def table_bits(self):
        """Width of ``table``."""
        return self._layout.table_bits

    @property
    def code_bits(self):
        """Width of ``code``."""
        return self._layout.code_bits

    @property
    def compare_width(self):
        """The encoder's :attr:`ThresholdEncoder.compare_width`."""
        return self._layout.compare_width

    @property
    def latency(self):
        """Cycles from an input to its ``code``: 4 (sum, product, two shift stages) plus the
        encoder's ``search_bits + 2``."""
        return 4 + self._layout.latency

    def encoder(self):
        """A new :class:`ThresholdEncoder` of the requantizer's tables, with a quotient of
        ``numerator_width + 1`` bits (elaborated as submodule ``encoder``)."""
        return ThresholdEncoder(self._layout.tables, q_width=self._numerator_width + 1,
                                index_bits=self._layout.index_bits, max_logic_words=self._layout.max_logic_words)

    def elaborate_product(self, m, total, multiplier):
        """The numerator ``n = total * multiplier`` (pipeline step 2), built into ``m``.

        ``total`` is stage 1's registered ``acc + bias`` (``signed(sum_width)``), ``multiplier``
        its registered ``M`` (``unsigned(16)``); the result is registered as ``n``
        (``signed(numerator_width)``). A plain ``*`` here; a subclass may replace it (the formal
        proof of :mod:`hwq.accel.formal` abstracts the product into a free value).
        """
        return total * multiplier

    def elaborate(self, platform):
        m = Module()
        m.submodules.encoder = enc = self.encoder()

        def stage(name, values):
            """Register ``values`` (name -> Value or (Value, Shape)) as stage ``name``."""
            regs = {}
            for key, value in values.items():
                if key == "valid":
                    regs[key] = Signal(name=f"valid_{name}")
                else:
                    regs[key] = Signal(value.shape(), name=f"{key}_{name}", reset_less=True)
                m.d.sync += regs[key].eq(value)
            return regs

        side = {"shift": self.shift, "table": self.table, "low": self.low, "high": self.high, "valid": self.valid}

        # 1: the sum, and the multiplier's operands in registers
        total = Signal(signed(self._sum_width), name="sum")
        m.d.comb += total.eq(self.acc + self.bias)
        s1 = stage("s1", {"sum": total, "m": self.multiplier, **side})

        # 2: the product, registered
        product = Signal(signed(self._numerator_width), name="product")
        m.d.comb += product.eq(self.elaborate_product(m, s1["sum"], s1["m"]))
        side = {k: s1[k] for k in ("shift", "table", "low", "high", "valid")}
        s2 = stage("s2", {"n": product, **side})

        # 3: 2n >> 8 * (S >> 3), sticky: the OR of the bits shifted out
        doubled = Cat(Const(0, 1), s2["n"]).as_signed()             # the guard bit
        width = len(doubled)
        coarse = Signal(signed(width), name="coarse")
        coarse_sticky = Signal(name="coarse_sticky")
        with m.Switch(s2["shift"][3:]):
            for k in range(1 << (SHIFT_BITS - 3)):
                with m.Case(k):
                    amount = min(8 * k, width)
                    m.d.comb += [coarse.eq(doubled >> amount),
                                 coarse_sticky.eq(doubled[:amount].any() if amount else 0)]
        side = {k: s2[k] for k in ("shift", "table", "low", "high", "valid")}
        s3 = stage("s3", {"q": coarse, "sticky": coarse_sticky, **side})

        # 4: >> (S & 7), ORing those bits into the sticky bit
        fine = Signal(signed(width), name="fine")
        fine_sticky = Signal(name="fine_sticky")
        with m.Switch(s3["shift"][:3]):
            for k in range(8):
                with m.Case(k):
                    m.d.comb += [fine.eq(s3["q"] >> k),
                                 fine_sticky.eq(s3["sticky"] | (s3["q"][:k].any() if k else 0))]
        side = {k: s3[k] for k in ("table", "low", "high", "valid")}
        s4 = stage("s4", {"q": fine, "sticky": fine_sticky, **side})

        # 5: the encoder
        m.d.comb += [enc.q.eq(s4["q"]), enc.sticky.eq(s4["sticky"]), enc.table.eq(s4["table"]),
                     enc.low.eq(s4["low"]), enc.high.eq(s4["high"]), enc.valid.eq(s4["valid"]),
                     self.code.eq(enc.code), self.code_valid.eq(enc.code_valid)]
        return m
