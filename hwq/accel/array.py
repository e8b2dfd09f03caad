"""The PE array: edge decoders and an ``R x C`` output-stationary grid of integer MAC cells.

docs/accelerator.md, "Dataflow" and "Decoders at the edge". Row ``r`` of the array is an output
position, column ``c`` an output channel. Each cycle the array takes ``R`` activation codes and
one weight word of ``C`` codes, decodes them once per row and once per column
(:class:`TableDecoder`) and updates every cell

    ``acc[r][c] <- (first ? 0 : acc[r][c]) + a_val[r] * w_val[c]``

which is :func:`hwq.accel.schedule.execute`'s ``decode_a(act) @ decode_w(weights)`` for one tile
(``_run_conv``). When a tile ends (its last input, ``last`` high, has been accumulated) the
``R x C`` sums are copied into capture registers and drained one per cycle, row-major, through a
stream, while the next tile accumulates.

Data registers have no reset (only valid bits and counters are reset), as in
:mod:`hwq.accel.requant`.
"""

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..errors import InputError
from ..formats import NumberFormat
from ..formats.base import check_int
from .requant import MAX_ACC_WIDTH, _signed_width

__all__ = ["TableDecoder", "PEArray", "MAX_TABLE_BITS", "MAX_ROWS", "MAX_COLS"]

#: widest code a :class:`TableDecoder` takes (its tables are logic: ``2**bits`` constants each)
MAX_TABLE_BITS = 8
#: most rows and columns of a :class:`PEArray`
MAX_ROWS = MAX_COLS = 64


def _check_formats(name, formats):
    """``formats`` as a non-empty tuple of :class:`NumberFormat` of at most MAX_TABLE_BITS bits."""
    if isinstance(formats, NumberFormat):
        formats = [formats]
    if isinstance(formats, (str, bytes)) or not hasattr(formats, "__len__") or not len(formats):
        raise InputError(f"{name} must be a non-empty list of number formats, not {formats!r}")
    formats = tuple(formats)
    for i, fmt in enumerate(formats):
        if not isinstance(fmt, NumberFormat):
            raise InputError(f"{name}[{i}] must be a number format (hwq.formats), not {type(fmt).__name__}")
        if fmt.bits > MAX_TABLE_BITS:
            raise InputError(f"{name}[{i}] ({fmt}) has {fmt.bits}-bit codes; a table decoder takes at most "
                             f"{MAX_TABLE_BITS}")
    return formats


def _table_layout(formats):
    """``(code_bits, format_bits, lo, hi, value_width)`` of a decoder of checked ``formats``."""
    values = [int(v) for fmt in formats for v in fmt.int_values]
    lo, hi = min(values), max(values)
    return (max(fmt.bits for fmt in formats), max(1, ceil_log2(len(formats))), lo, hi, _signed_width(lo, hi))


class TableDecoder(wiring.Component):
    """Code to signed integer value, by a table per format, the format chosen at run time.

    The generic edge decoder of docs/accelerator.md, "Decoders at the edge": one table per format
    of ``formats``, built from :attr:`NumberFormat.int_values`, and a registered ``case`` over
    constants (LUTs) selecting ``table[format][code]``. A format narrower than :attr:`code_bits`
    reads the low ``bits`` of ``code`` (the bits above are ignored).

    Parameters
    ----------
    formats : sequence of NumberFormat, or one NumberFormat
        The formats, selected by the ``format`` port (index into this sequence), each of at most
        :data:`MAX_TABLE_BITS` bits.

    Attributes
    ----------
    code : Signal(unsigned(code_bits)), in
        The code (bit pattern).
    format : Signal(unsigned(format_bits)), in
        Index into ``formats``; at or above ``len(formats)`` the value is unspecified.
    en : Signal(1), in
        Load the output register this cycle (default 1); low, ``value`` holds.
    value : Signal(signed(value_width)), out
        ``formats[format].int_values[code]``, :attr:`latency` (1) cycle after its inputs.

    Raises
    ------
    InputError
        Before elaboration: ``formats`` empty, holding something other than a number format, or a
        format wider than :data:`MAX_TABLE_BITS` bits.
    """

    def __init__(self, formats):
        self._formats = _check_formats("formats", formats)
        self._code_bits, self._format_bits, self._lo, self._hi, self._value_width = _table_layout(self._formats)
        super().__init__({
            "code": In(unsigned(self._code_bits)),
            "format": In(unsigned(self._format_bits)),
            "en": In(1, init=1),
            "value": Out(signed(self._value_width)),
        })

    @property
    def formats(self):
        """The formats, in ``format`` port order (tuple)."""
        return self._formats

    @property
    def code_bits(self):
        """Width of ``code``: the widest format's."""
        return self._code_bits

    @property
    def format_bits(self):
        """Width of ``format`` (at least 1)."""
        return self._format_bits

    @property
    def value_width(self):
        """Width of the signed ``value``: the fewest bits holding every value of every format."""
        return self._value_width

    @property
    def value_range(self):
        """``(lo, hi)``: the smallest and largest value of every format."""
        return self._lo, self._hi

    @property
    def latency(self):
        """Cycles from ``code`` to ``value``: 1."""
        return 1

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            with m.Switch(self.format):
                for i, fmt in enumerate(self._formats):
                    with m.Case(i):
                        with m.Switch(self.code[:fmt.bits]):
                            for code, value in enumerate(fmt.int_values):
                                with m.Case(code):
                                    m.d.sync += self.value.eq(Const(int(value), signed(self._value_width)))
        return m


class PEArray(wiring.Component):
    """``R x C`` output-stationary integer MAC cells with row and column decoders at the edge and
    a drain stream of the finished sums.

    Pipeline (every stage advances together, on ``ready``):

    0. input: the ``R`` activation codes (``pad_code`` where ``inside`` is low) and the ``C``
       weight codes enter the :class:`TableDecoder` of their row or column, ``valid``, ``first``
       and ``last`` a register beside them;
    1. ``acc[r][c] <- (first ? 0 : acc[r][c]) + a_val[r] * w_val[c]`` for a valid input (a plain
       ``*`` and ``+`` of ``acc_width`` bits, wrapping modulo ``2**acc_width``); after a ``last``
       input the tile is *done*;
    2. a done tile is copied into the capture registers, when they are free, which starts the
       drain: ``R * C`` transfers on ``drain``, row-major, one per cycle while ``drain.ready`` is
       high (the capture registers shift by one word per transfer).

    A done tile whose capture registers are still draining stalls the array: ``ready`` is low and
    nothing moves (inputs, decoders, accumulators) until the drain's last transfer, in whose cycle
    the tile is captured. The capture registers are free for the next tile in the cycle of the
    last transfer, so with ``drain.ready`` always high a tile of ``K`` inputs costs
    ``max(K, R * C)`` cycles in the steady state (docs/accelerator.md, "Tiles"). ``ready``
    depends combinationally on ``drain.ready`` (through that last transfer), not on ``valid``.

    Parameters
    ----------
    rows, cols : int
        ``R`` (output positions, activation codes per cycle) and ``C`` (output channels, weight
        codes per cycle), 1 to :data:`MAX_ROWS` / :data:`MAX_COLS`.
    a_formats, w_formats : sequence of NumberFormat, or one NumberFormat
        Activation and weight formats, selected per input by ``a_format`` and ``w_format``; each
        of at most :data:`MAX_TABLE_BITS` bits (see :class:`TableDecoder`).
    acc_width : int
        Width of each signed accumulator, at least the width of every product of the formats'
        values (so one product is exact) and at most :data:`~hwq.accel.requant.MAX_ACC_WIDTH`
        (what the requantizer takes). A longer sum wraps modulo ``2**acc_width``: the caller
        sizes it for its longest reduction.

    Attributes
    ----------
    valid : Signal(1), in
        The inputs hold one reduction step; taken on a clock edge when ``ready`` is high.
    ready : Signal(1), out
        The array takes an input this cycle.
    a : Signal(ArrayLayout(unsigned(a_bits), rows)), in
        Activation code of each row.
    inside : Signal(rows), in
        Bit ``r``: row ``r``'s code lies in the input; low, the row takes ``pad_code`` instead
        (the code of 0 of the activation format, for zero padding).
    pad_code : Signal(unsigned(a_bits)), in
        Activation code of a row outside the input.
    w : Signal(ArrayLayout(unsigned(w_bits), cols)), in
        Weight code of each column (the weight word).
    first : Signal(1), in
        This input starts new sums (the accumulators are cleared first).
    last : Signal(1), in
        This input ends the tile: its sums are captured and drained.
    a_format, w_format : Signal(unsigned), in
        Index into ``a_formats`` / ``w_formats`` of this input's codes.
    drain : stream.Signature(StructLayout({"row", "col", "acc"})), out
        ``valid``, ``ready`` (in) and ``payload``: ``row`` (unsigned), ``col`` (unsigned) and
        ``acc`` (``signed(acc_width)``), the sum of cell ``(row, col)``. A transfer happens on a
        clock edge with ``valid`` and ``ready`` both high; ``valid`` does not depend on
        ``ready``.

    Raises
    ------
    InputError
        Before elaboration, naming the parameter: ``rows``, ``cols`` or ``acc_width`` not an
        integer in range (``acc_width`` below the product width), and every error of
        :class:`TableDecoder` (for ``a_formats`` or ``w_formats``).
    """

    def __init__(self, *, rows, cols, a_formats, w_formats, acc_width):
        self._rows = check_int("rows", rows, 1, MAX_ROWS)
        self._cols = check_int("cols", cols, 1, MAX_COLS)
        self._a_formats = _check_formats("a_formats", a_formats)
        self._w_formats = _check_formats("w_formats", w_formats)
        # the decoders are built in elaborate(), so that an unelaborated array leaves no unused
        # elaboratable behind
        self._a_bits, self._a_format_bits, alo, ahi, _ = _table_layout(self._a_formats)
        self._w_bits, self._w_format_bits, wlo, whi, _ = _table_layout(self._w_formats)
        products = [alo * wlo, alo * whi, ahi * wlo, ahi * whi]
        self._product_width = _signed_width(min(products), max(products))
        if isinstance(acc_width, bool) or not isinstance(acc_width, (int, np.integer)):
            raise InputError(f"acc_width must be an integer, not {acc_width!r}")
        if not self._product_width <= acc_width <= MAX_ACC_WIDTH:
            raise InputError(f"acc_width must be between {self._product_width} (the widest product of "
                             f"the formats' values) and {MAX_ACC_WIDTH}, not {acc_width}")
        self._acc_width = int(acc_width)
        self._row_bits = max(1, ceil_log2(self._rows))
        self._col_bits = max(1, ceil_log2(self._cols))
        payload = data.StructLayout({
            "row": unsigned(self._row_bits),
            "col": unsigned(self._col_bits),
            "acc": signed(self._acc_width),
        })
        super().__init__({
            "valid": In(1),
            "ready": Out(1),
            "a": In(data.ArrayLayout(unsigned(self._a_bits), self._rows)),
            "inside": In(self._rows),
            "pad_code": In(unsigned(self._a_bits)),
            "w": In(data.ArrayLayout(unsigned(self._w_bits), self._cols)),
            "first": In(1),
            "last": In(1),
            "a_format": In(unsigned(self._a_format_bits)),
            "w_format": In(unsigned(self._w_format_bits)),
            "drain": Out(stream.Signature(payload)),
        })

    @property
    def rows(self):
        """``R``."""
        return self._rows

    @property
    def cols(self):
        """``C``."""
        return self._cols

    @property
    def a_formats(self):
        """Activation formats, in ``a_format`` port order (tuple)."""
        return self._a_formats

    @property
    def w_formats(self):
        """Weight formats, in ``w_format`` port order (tuple)."""
        return self._w_formats

    @property
    def acc_width(self):
        """Width of each signed accumulator and of ``drain.payload.acc``."""
        return self._acc_width

    @property
    def product_width(self):
        """Fewest signed bits holding every product of an activation and a weight value."""
        return self._product_width

    @property
    def latency(self):
        """Cycles from the clock edge that takes a tile's ``last`` input to the first cycle with
        its first result on ``drain`` (``valid`` high), when the capture registers are free: 2
        (decoders, accumulate), so the result is on ``drain`` in the cycle after the second edge."""
        return 2

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        en = Signal()                          # every stage advances

        # 0: edge decoders, control beside them
        a_vals = []
        for r in range(R):
            dec = m.submodules[f"row_decoder{r}"] = TableDecoder(self._a_formats)
            m.d.comb += [dec.code.eq(Mux(self.inside[r], self.a[r], self.pad_code)),
                         dec.format.eq(self.a_format), dec.en.eq(en)]
            a_vals.append(dec.value)
        w_vals = []
        for c in range(C):
            dec = m.submodules[f"col_decoder{c}"] = TableDecoder(self._w_formats)
            m.d.comb += [dec.code.eq(self.w[c]), dec.format.eq(self.w_format), dec.en.eq(en)]
            w_vals.append(dec.value)
        s1_valid = Signal(name="s1_valid")
        s1_first = Signal(name="s1_first", reset_less=True)
        s1_last = Signal(name="s1_last", reset_less=True)
        with m.If(en):
            m.d.sync += [s1_valid.eq(self.valid), s1_first.eq(self.first), s1_last.eq(self.last)]

        # 1: the MAC cells
        acc = [[Signal(signed(self._acc_width), name=f"acc_{r}_{c}", reset_less=True) for c in range(C)]
               for r in range(R)]
        done = Signal(name="done")             # acc holds a finished tile
        with m.If(en):
            m.d.sync += done.eq(s1_valid & s1_last)
            with m.If(s1_valid):
                for r in range(R):
                    for c in range(C):
                        m.d.sync += acc[r][c].eq(Mux(s1_first, 0, acc[r][c]) + a_vals[r] * w_vals[c])

        # 2: capture and drain, row-major; the capture registers shift one word per transfer
        n = R * C
        capture = [Signal(signed(self._acc_width), name=f"capture{i}", reset_less=True) for i in range(n)]
        row = Signal(self._row_bits, name="drain_row")
        col = Signal(self._col_bits, name="drain_col")
        busy = Signal(name="drain_busy")
        transfer = busy & self.drain.ready
        at_end = (row == R - 1) & (col == C - 1)
        free = ~busy | (transfer & at_end)
        take = done & free
        m.d.comb += [en.eq(~(done & ~free)), self.ready.eq(en),
                     self.drain.valid.eq(busy), self.drain.payload.row.eq(row), self.drain.payload.col.eq(col),
                     self.drain.payload.acc.eq(capture[0])]
        with m.If(take):
            m.d.sync += [capture[r * C + c].eq(acc[r][c]) for r in range(R) for c in range(C)]
            m.d.sync += [busy.eq(1), row.eq(0), col.eq(0)]
        with m.Elif(transfer):
            m.d.sync += [capture[i].eq(capture[i + 1]) for i in range(n - 1)]
            with m.If(col == C - 1):
                m.d.sync += [col.eq(0), row.eq(row + 1)]
            with m.Else():
                m.d.sync += col.eq(col + 1)
            with m.If(at_end):
                m.d.sync += busy.eq(0)
        return m
