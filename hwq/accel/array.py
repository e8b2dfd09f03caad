"""The PE array: edge decoders and an ``R x C`` output-stationary grid of integer MAC cells.

docs/accelerator.md, "Dataflow" and "Decoders at the edge". Row ``r`` of the array is an output
position, column ``c`` an output channel. Each cycle the array takes ``R`` activation codes and
one weight word of ``C`` codes, decodes them once per row and once per column and updates every
cell

    ``acc[r][c] <- (first ? 0 : acc[r][c]) + a_val[r] * w_val[c]``

which is :func:`hwq.accel.schedule.execute`'s ``decode_a(act) @ decode_w(weights)`` for one tile
(``_run_conv``). When a tile ends (its last input, ``last`` high, has been accumulated) the
``R x C`` sums are copied into capture registers and drained one per cycle, row-major, through a
stream, while the next tile accumulates.

The edge decoders are arithmetic on the code's fields where the format allows it and that is
the cheaper (:class:`FieldDecoder`: fixed point, ANT, ESB) and tables otherwise
(:class:`TableDecoder`; UNIQ's loaded per layer with ``uniq_tables="loadable"``,
:class:`LoadableTableDecoder`). AUSN weights are not decoded at all: their fields drive
shift-add cells (:attr:`PEArray.weight_path`). ``mapping="dsp"`` computes the products two per
SB_MAC16. ``benchmarks/pe_array_synth.py`` measures each part after ``synth_ice40``: a
registered table of 8-bit codes becomes a ROM in one SB_RAM40_4K (EBR) per decoder, 4-bit tables
a few LUTs each, and the cells' products dominate every array.

Data registers have no reset (only valid bits and counters are reset), as in
:mod:`hwq.accel.requant`.
"""

import numpy as np
from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..errors import InputError
from ..formats import Ant, Ausn, Esb, FixedPoint, NumberFormat, Uniq
from ..formats.base import check_int
from ..pe.ausn import AusnPE
from .requant import MAX_ACC_WIDTH, _signed_width

__all__ = ["TableDecoder", "FieldDecoder", "LoadableTableDecoder", "load_layout", "PEArray", "MAX_TABLE_BITS",
           "MAX_ROWS", "MAX_COLS", "MAPPINGS", "DECODERS", "UNIQ_TABLES", "AUTO_TABLE_MAX_BITS", "DSP_OPERAND_BITS",
           "MAX_PIPELINE"]

#: widest code a :class:`TableDecoder` takes (``2**bits`` constants each: LUTs, or for 8-bit codes
#: a ROM that yosys puts in an SB_RAM40_4K)
MAX_TABLE_BITS = 8
#: most rows and columns of a :class:`PEArray`
MAX_ROWS = MAX_COLS = 64
#: where a :class:`PEArray`'s products are computed: LUT fabric, or SB_MAC16 blocks (two 8x8
#: products each) and the fabric
MAPPINGS = ("fabric", "dsp")
#: which edge decoders a :class:`PEArray` builds: a :class:`FieldDecoder` where every format of
#: the operand allows it and it is the cheaper, else a :class:`TableDecoder` (``"auto"``, see
#: :data:`AUTO_TABLE_MAX_BITS`); always a table (``"table"``)
DECODERS = ("auto", "table")
#: a :class:`PEArray`'s UNIQ tables: constants (``"fixed"``) or loaded per layer (``"loadable"``,
#: :class:`LoadableTableDecoder`)
UNIQ_TABLES = ("fixed", "loadable")
#: ``decoders="auto"`` keeps a :class:`TableDecoder` for sign-magnitude formats (ANT PoT, float,
#: flint; ESB) of at most this many bits: after ``synth_ice40`` a 1x16 array's 17 tables of 4-bit
#: ANT (every type) cost 527 LUT4 against 626 LUT4 and 82 SB_CARRY for field decoders, of 4-bit
#: ESB 102 against 166 and 48; at 8 bits a table is an SB_RAM40_4K each, or, for ANT's three
#: types, 2249 LUT4 against 1372 and 193 SB_CARRY (``benchmarks/pe_array_synth.py``)
AUTO_TABLE_MAX_BITS = 4
#: widest operand of one of an SB_MAC16's two 8x8 multipliers
DSP_OPERAND_BITS = 8
#: most product register stages of a :class:`PEArray` (``pipeline``)
MAX_PIPELINE = 4


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


def _shared_superposition(formats):
    """The one :class:`~hwq.formats.Ausn` superposition of checked ``formats``, or ``None``.

    A shift-add cell wires one superposition's field slices and offsets, so every format must be
    an AUSN format with the same width, signedness, field widths and offsets (``exp_base`` may
    differ: it does not change the integer values). Returns the first format, or ``None`` when
    the formats do not share one superposition.
    """
    first = formats[0]
    if not all(isinstance(fmt, Ausn) for fmt in formats):
        return None
    key = lambda f: (f.bits, f.signed, f.fields, f.offsets)  # noqa: E731
    return first if all(key(fmt) == key(first) for fmt in formats) else None


def _dsp_signed(name, lo, hi):
    """Whether an SB_MAC16 8x8 operand of values ``[lo, hi]`` is read signed (``A_SIGNED`` /
    ``B_SIGNED``): unsigned when ``0 <= lo`` and ``hi < 256``, signed when ``-128 <= lo`` and
    ``hi < 128`` (and ``lo < 0``).

    Raises
    ------
    InputError
        Naming ``name`` (the formats' parameter) and ``mapping``, when the values fit neither.
    """
    half = 1 << (DSP_OPERAND_BITS - 1)
    if lo >= 0 and hi < 2 * half:
        return False
    if -half <= lo and hi < half:
        return True
    raise InputError(f"mapping='dsp' needs {name} values that fit an SB_MAC16 8x8 operand ({-half} to {half - 1} "
                     f"or 0 to {2 * half - 1}); {name} range from {lo} to {hi}")


class TableDecoder(wiring.Component):
    """Code to signed integer value, by a table per format, the format chosen at run time.

    The generic edge decoder of docs/accelerator.md, "Decoders at the edge": one table per format
    of ``formats``, built from :attr:`NumberFormat.int_values`, and a registered ``case`` over
    constants selecting ``table[format][code]``. ``synth_ice40`` makes the case LUTs, or, for
    8-bit codes, a ROM in one SB_RAM40_4K (EBR) per decoder (``benchmarks/pe_array_synth.py``).
    A format narrower than :attr:`code_bits` reads the low ``bits`` of ``code`` (the bits above
    are ignored).

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
        Index into ``formats``; at or above ``len(formats)`` the value is unspecified (a
        :class:`FieldDecoder` decodes the last format).
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
            **self._extra_ports(),
        })

    def _extra_ports(self):
        """Ports beyond ``code``, ``format``, ``en`` and ``value`` (none)."""
        return {}

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


def load_layout(code_bits, value_width):
    """Layout of a table load port: ``valid`` (write this cycle), ``addr`` (the code) and
    ``data`` (its signed value)."""
    return data.StructLayout({"valid": 1, "addr": unsigned(code_bits), "data": signed(value_width)})


class LoadableTableDecoder(TableDecoder):
    """Code to signed integer value by a table loaded at run time: UNIQ's per-layer table
    (docs/accelerator.md, "Decoders at the edge").

    The table has ``2**code_bits`` entries of ``value_width`` bits (an ``amaranth.lib.memory``
    memory, which ``synth_ice40`` puts in one SB_RAM40_4K per decoder, 4-bit codes too: 17 of
    the UP5K's 30 for a 1x16 array, ``benchmarks/pe_array_synth.py``), one write port (``load``)
    and a registered read (latency 1, as :class:`TableDecoder`). The table holds one
    format at a time, the layer's, loaded before the layer starts by :meth:`load_words` (a
    narrower format's table repeats, so that its code's bits above its width are ignored, as
    :class:`TableDecoder` ignores them); it starts as ``formats[0]``'s. ``format`` is ignored.

    Parameters
    ----------
    formats : sequence of NumberFormat, or one NumberFormat
        The formats whose tables may be loaded: they set :attr:`code_bits` and
        :attr:`value_width` as for :class:`TableDecoder`.

    Attributes
    ----------
    load : Signal(load_layout(code_bits, value_width)), in
        ``valid``: write ``data`` into entry ``addr`` on this clock edge (whatever ``en``).
    """

    def _extra_ports(self):
        return {"load": In(load_layout(self._code_bits, self._value_width))}

    def load_words(self, fmt):
        """``[(addr, data), ...]``: the writes that load ``fmt``'s table, one per entry.

        Raises
        ------
        InputError
            If ``fmt`` is wider than :attr:`code_bits` or has a value outside :attr:`value_width`.
        """
        if not isinstance(fmt, NumberFormat) or fmt.bits > self._code_bits:
            raise InputError(f"fmt must be a number format of at most {self._code_bits} bits, not {fmt!r}")
        values = [int(fmt.int_values[code & ((1 << fmt.bits) - 1)]) for code in range(1 << self._code_bits)]
        half = 1 << (self._value_width - 1)
        if not all(-half <= v < half for v in values):
            raise InputError(f"fmt ({fmt}) has values outside this table's {self._value_width} signed bits")
        return list(enumerate(values))

    def elaborate(self, platform):
        m = Module()
        init = [value for _, value in self.load_words(self._formats[0])]
        table = m.submodules.table = Memory(shape=signed(self._value_width), depth=1 << self._code_bits, init=init)
        write = table.write_port()
        read = table.read_port(domain="sync")
        m.d.comb += [write.en.eq(self.load.valid), write.addr.eq(self.load.addr), write.data.eq(self.load.data),
                     read.addr.eq(self.code), read.en.eq(self.en), self.value.eq(read.data)]
        return m


def _flint_fields(r, B):
    """``(significand, shift)`` of ANT flint magnitude ``r`` (``B`` bits) as logic: the low
    ``B - 1`` bits are the significand as they are (their first one is the hidden bit), the
    shift is ``2 z + 1`` for ``z`` leading zeros (a priority encoder), and the top bit selects
    between this and plain int (:mod:`hwq.formats.ant`, "flint"; ``r' = 0`` with the top bit set is
    ``1 << (2B - 2)``)."""
    top, low = r[B - 1], r[:B - 1]
    z = Const(B - 1, range(B))                                # leading zeros of low (B - 1 when 0)
    for j in range(B - 1):                                   # the highest one wins
        z = Mux(low[j], B - 2 - j, z)
    big = top & ~low.any()
    significand = Mux(big, 1, low)
    shift = Mux(top, Mux(big, 2 * B - 2, 2 * z + 1), 0)
    return significand, shift


def _minifloat_fields(r, m):
    """``(significand, shift)`` of an IEEE-like minifloat magnitude ``r`` with ``m`` fraction bits
    and subnormals (ANT float, ESB): exponent ``c = r >> m``, ``significand = c ? 2**m + f : f``,
    ``shift = max(c - 1, 0)`` (:mod:`hwq.formats.ant`, "float"; :mod:`hwq.formats.esb`)."""
    c, f = r[m:], r[:m]
    normal = c.any()
    return Mux(normal, Cat(f, Const(1, 1)), f), Mux(normal, (c - 1)[:len(c)], 0)


def _field_logic(fmt, code):
    """The value of ``fmt``'s code ``code`` (its low ``fmt.bits`` bits) as logic: ``("direct",
    value)`` for a two's-complement or unsigned integer code, ``("sm", sign, significand, shift)``
    for a sign-magnitude one (``value = (-1)**sign * (significand << shift)``, as
    :meth:`hwq.formats.ant.Ant.decompose` and :meth:`hwq.formats.esb.Esb.decompose`), or ``None``
    when the format has no such logic here (UNIQ, AUSN: tables)."""
    if FieldDecoder.reads_directly(fmt):
        return "direct", code.as_signed() if fmt.signed else code.as_unsigned()
    if not isinstance(fmt, (Ant, Esb)):
        return None
    B = fmt.magnitude_bits
    sign, r = (code[B], code[:B]) if fmt.signed else (Const(0, 1), code[:B])
    if isinstance(fmt, Esb):
        significand, shift = (Cat(Const(1, 1), r), Const(0, 1)) if fmt.midrise else \
            _minifloat_fields(r, fmt.fraction_bits)
    elif fmt.type == "pot":
        significand, shift = r.any(), (r - 1)[:B]                  # r = 0: significand 0
    elif fmt.type == "float":
        significand, shift = _minifloat_fields(r, B - min(3, B))
    else:
        significand, shift = _flint_fields(r, B)
    return "sm", sign, significand, shift


class FieldDecoder(TableDecoder):
    """Code to signed integer value by arithmetic on the code's fields, the format chosen at run
    time: the cheap edge decoder of docs/accelerator.md, "Decoders at the edge", for fixed point,
    ANT (int, PoT, float, flint) and ESB.

    Per format, small logic splits the code into sign, significand and shift (fixed point and ANT
    int: the code itself, read two's complement or unsigned; PoT: ``1 << (r - 1)``; float and
    ESB: a minifloat with subnormals; flint: a priority encoder on the low bits; see
    :func:`_field_logic`); the selected format's fields then go through one barrel shifter and
    one negation shared by every format, into the output register. Ports, properties and latency
    (1) are :class:`TableDecoder`'s, and so is every value (``formats[format].int_values[code]``).

    Parameters
    ----------
    formats : sequence of NumberFormat, or one NumberFormat
        As for :class:`TableDecoder`; each a :class:`~hwq.formats.FixedPoint`,
        :class:`~hwq.formats.Ant` or :class:`~hwq.formats.Esb` (:meth:`supports`).

    Raises
    ------
    InputError
        Every error of :class:`TableDecoder`, and a format :meth:`supports` refuses, naming its
        index in ``formats``.
    """

    def __init__(self, formats):
        super().__init__(formats)
        for i, fmt in enumerate(self.formats):
            if not self.supports(fmt):
                raise InputError(f"formats[{i}] ({fmt}) has no field decoder; use a TableDecoder")

    @staticmethod
    def supports(fmt):
        """Whether ``fmt`` has field logic (fixed point, ANT, ESB)."""
        return isinstance(fmt, (FixedPoint, Ant, Esb))

    @staticmethod
    def reads_directly(fmt):
        """Whether ``fmt``'s value is its code read as an integer (fixed point, ANT int)."""
        return isinstance(fmt, FixedPoint) or (isinstance(fmt, Ant) and fmt.type == "int")

    def elaborate(self, platform):
        m = Module()
        logic = [_field_logic(fmt, self.code[:fmt.bits]) for fmt in self.formats]
        sm = [fields for fields in logic if fields[0] == "sm"]
        width = self.value_width
        direct = Signal(name="direct")
        direct_value = Signal(signed(width), name="direct_value")
        sign = Signal(name="sign")
        significand = Signal(max([len(f[2]) for f in sm], default=1), name="significand")
        shift = Signal(max([len(f[3]) for f in sm], default=1), name="shift")
        with m.Switch(self.format):
            for i, fields in enumerate(logic):
                # the last format takes every index from its own up (a larger one is unspecified):
                # one format needs no selection logic at all
                with (m.Default() if i == len(logic) - 1 else m.Case(i)):
                    if fields[0] == "direct":
                        m.d.comb += [direct.eq(1), direct_value.eq(fields[1])]
                    else:
                        m.d.comb += [sign.eq(fields[1]), significand.eq(fields[2]), shift.eq(fields[3])]
        magnitude = Signal(unsigned(width), name="magnitude")
        m.d.comb += magnitude.eq(significand << shift)
        value = Mux(sign, -magnitude, magnitude)
        if len(sm) < len(logic):                       # some format is read directly
            value = direct_value if not sm else Mux(direct, direct_value, value)
        with m.If(self.en):
            m.d.sync += self.value.eq(value)
        return m


class PEArray(wiring.Component):
    """``R x C`` output-stationary integer MAC cells with row and column decoders at the edge and
    a drain stream of the finished sums.

    Pipeline (every stage advances together, on ``ready``):

    0. input: the ``R`` activation codes (``pad_code`` where ``inside`` is low) enter the
       decoder of their row (:class:`FieldDecoder` or :class:`TableDecoder`, see ``decoders``),
       the ``C`` weight codes the decoder of their column (or,
       for AUSN weights, a plain register: see *Weights* below); ``valid``, ``first`` and
       ``last`` a register beside them;
    1. ``acc[r][c] <- (first ? 0 : acc[r][c]) + a_val[r] * w_val[c]`` for a valid input (a
       ``acc_width``-bit sum, wrapping modulo ``2**acc_width``); after a ``last`` input the tile
       is *done*. With ``mapping="dsp"`` the products are registered first (in the SB_MAC16,
       one more stage), then accumulated;
    2. a done tile is copied into the capture registers, when they are free, which starts the
       drain: ``R * C`` transfers on ``drain``, row-major, one per cycle while ``drain.ready`` is
       high (the capture registers shift by one word per transfer).

    A done tile whose capture registers are still draining stalls the array: ``ready`` is low and
    nothing moves (inputs, decoders, products, accumulators) until the drain's last transfer, in
    whose cycle the tile is captured. The capture registers are free for the next tile in the
    cycle of the last transfer, so with ``drain.ready`` always high a tile of ``K`` inputs costs
    ``max(K, R * C)`` cycles in the steady state (docs/accelerator.md, "Tiles"). ``ready``
    depends combinationally on ``drain.ready`` (through that last transfer), not on ``valid``.

    Weights (docs/accelerator.md, "Decoders at the edge"): when every weight format is an AUSN
    format of one superposition (:class:`~hwq.formats.Ausn` with the same width, signedness,
    fields and offsets) and ``mapping`` is ``"fabric"``, nothing decodes the weights
    (:attr:`weight_path` ``"shift-add"``): the column's code is registered as it is, and its
    fields drive each cell's shift-add, as in :class:`hwq.pe.ausn.AusnPE` (whose term it uses),
    ``a_val * w_val = sum_t [f_t != 0] * (x << (o_t - 1 + f_t))`` with ``x = sign ? -a_val :
    a_val`` (:mod:`hwq.formats.ausn`; the negation ``-a_val`` is computed once per row). Any
    other weight formats are decoded to integers by a :class:`TableDecoder` per column and
    multiplied (:attr:`weight_path` ``"table"``).

    Mapping ``"dsp"``: each pair of columns ``(2j, 2j + 1)`` of a row is one ``SB_MAC16`` in its
    8x8 mode (iCE40 DSP; yosys's ``techlibs/ice40/cells_sim.v`` model): ``A`` holds the row's
    activation value in both bytes, ``B`` the two columns' weight values, the top and bottom
    8x8 products (``O[31:16]``, ``O[15:0]``) are registered in the block
    (``TOP_8x8_MULT_REG``, ``BOT_8x8_MULT_REG``, clock enable ``CE`` the pipeline's) and added
    to the accumulators in the fabric. An odd last column multiplies in the fabric. Every
    activation value and every weight value must fit an 8-bit operand: signed (``A_SIGNED`` /
    ``B_SIGNED``) when a value is negative, unsigned otherwise. The iCE40UP5K has 8 SB_MAC16: a
    ``1 x 16`` array uses them all; nothing here counts them. amaranth.sim cannot simulate the
    ``Instance``: the mapping is verified in Icarus Verilog with yosys's model
    (tests/accel/test_array_dsp.py).

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
    mapping : str
        ``"fabric"`` (default: every product in LUTs, behavioural, simulated by amaranth.sim) or
        ``"dsp"`` (pairs of products in SB_MAC16 blocks; one more pipeline stage), one of
        :data:`MAPPINGS`.
    max_dsp : int or None
        With ``mapping="dsp"``, at most this many SB_MAC16 (the first pairs, row-major); the
        other products are registered fabric multipliers, with the same latency. ``None``
        (default): every pair of columns.
    pipeline : int
        Register stages between the products and the accumulators, 0 (default) to
        :data:`MAX_PIPELINE`: each cuts the path from the decoders through the multiplier (or
        shift-add) to the accumulator's adder, for a higher Fmax, at one register per product
        and one cycle of :attr:`latency` per stage (the throughput, one input per cycle, is the
        same). With ``mapping="dsp"`` they follow the SB_MAC16's own product register.
    uniq_tables : str
        ``"fixed"`` (default): an operand's UNIQ tables are constants, as every table;
        ``"loadable"``: an operand with a UNIQ format among its formats decodes by a
        :class:`LoadableTableDecoder` (its ``format`` port ignored), the table of the layer's
        format loaded through the port ``a_load`` / ``w_load`` (all of the operand's decoders
        at once) before the layer starts. One of :data:`UNIQ_TABLES`.
    decoders : str
        ``"auto"`` (default): an operand's edge decoders are :class:`FieldDecoder` when every
        one of its formats has field logic (fixed point, ANT, ESB) and either every one is read
        directly (fixed point, ANT int) or some code is wider than
        :data:`AUTO_TABLE_MAX_BITS` (where tables are the cheaper), else
        :class:`TableDecoder`; ``"table"``: always tables. One of :data:`DECODERS`; the values
        are the same.

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
    a_load, w_load : Signal(load_layout(a_bits or w_bits, value width)), in
        Only with ``uniq_tables="loadable"`` for an operand with a UNIQ format: a table write
        into every decoder of the operand (:class:`LoadableTableDecoder`, ``load``), on the
        clock edge whatever ``ready``. It changes the values of the codes taken after it (an
        input taken is decoded on that edge), so a layer's table may be loaded as soon as the
        previous layer's last input is taken.
    drain : stream.Signature(StructLayout({"row", "col", "acc"})), out
        ``valid``, ``ready`` (in) and ``payload``: ``row`` (unsigned), ``col`` (unsigned) and
        ``acc`` (``signed(acc_width)``), the sum of cell ``(row, col)``. A transfer happens on a
        clock edge with ``valid`` and ``ready`` both high; ``valid`` does not depend on
        ``ready``.

    Raises
    ------
    InputError
        Before elaboration, naming the parameter: ``rows``, ``cols`` or ``acc_width`` not an
        integer in range (``acc_width`` below the product width), ``mapping`` not one of
        :data:`MAPPINGS`, ``decoders`` not one of :data:`DECODERS`, ``uniq_tables`` not one of
        :data:`UNIQ_TABLES`, ``mapping="dsp"`` with
        ``a_formats`` or ``w_formats`` values that do not fit an 8-bit operand, and every error
        of :class:`TableDecoder` (for ``a_formats`` or ``w_formats``).
    """

    def __init__(self, *, rows, cols, a_formats, w_formats, acc_width, mapping="fabric", decoders="auto",
                 uniq_tables="fixed", max_dsp=None, pipeline=0):
        self._rows = check_int("rows", rows, 1, MAX_ROWS)
        self._pipeline = check_int("pipeline", pipeline, 0, MAX_PIPELINE)
        self._cols = check_int("cols", cols, 1, MAX_COLS)
        self._max_dsp = None if max_dsp is None else check_int("max_dsp", max_dsp, 0, MAX_ROWS * MAX_COLS)
        self._a_formats = _check_formats("a_formats", a_formats)
        self._w_formats = _check_formats("w_formats", w_formats)
        if not isinstance(mapping, str) or mapping not in MAPPINGS:
            raise InputError(f"mapping must be one of {', '.join(map(repr, MAPPINGS))}, not {mapping!r}")
        self._mapping = mapping
        if not isinstance(decoders, str) or decoders not in DECODERS:
            raise InputError(f"decoders must be one of {', '.join(map(repr, DECODERS))}, not {decoders!r}")
        self._decoders = decoders
        if not isinstance(uniq_tables, str) or uniq_tables not in UNIQ_TABLES:
            raise InputError(f"uniq_tables must be one of {', '.join(map(repr, UNIQ_TABLES))}, not {uniq_tables!r}")
        self._uniq_tables = uniq_tables
        # the decoders are built in elaborate(), so that an unelaborated array leaves no unused
        # elaboratable behind
        self._a_bits, self._a_format_bits, alo, ahi, a_width = _table_layout(self._a_formats)
        self._w_bits, self._w_format_bits, wlo, whi, w_width = _table_layout(self._w_formats)
        self._a_range, self._w_range = (alo, ahi), (wlo, whi)
        if mapping == "dsp":
            self._dsp_signed = (_dsp_signed("a_formats", alo, ahi), _dsp_signed("w_formats", wlo, whi))
        self._ausn = _shared_superposition(self._w_formats) if mapping == "fabric" else None
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
            **{f"{side}_load": In(load_layout(bits, width))
               for side, decoder, bits, width in (("a", self.a_decoder, self._a_bits, a_width),
                                                  ("w", self.w_decoder, self._w_bits, w_width))
               if decoder is LoadableTableDecoder},
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
    def mapping(self):
        """``"fabric"`` or ``"dsp"`` (see the class docstring)."""
        return self._mapping

    @property
    def pipeline(self):
        """Product register stages (``pipeline``)."""
        return self._pipeline

    @property
    def weight_path(self):
        """``"shift-add"`` (AUSN weight fields drive shift-add cells, no weight decoder) or
        ``"table"`` (a :class:`TableDecoder` per column, cells multiply)."""
        return "shift-add" if self._ausn is not None else "table"

    def _decoder_class(self, formats):
        """:class:`LoadableTableDecoder` for ``formats`` holding a UNIQ format when
        ``uniq_tables="loadable"``; else :class:`FieldDecoder` when ``decoders="auto"``, it
        supports every one of them and either each is read directly or a code is wider than
        :data:`AUTO_TABLE_MAX_BITS`; else :class:`TableDecoder`."""
        if self._uniq_tables == "loadable" and any(isinstance(fmt, Uniq) for fmt in formats):
            return LoadableTableDecoder
        if self._decoders == "auto" and all(FieldDecoder.supports(fmt) for fmt in formats) and (
                all(FieldDecoder.reads_directly(fmt) for fmt in formats)
                or max(fmt.bits for fmt in formats) > AUTO_TABLE_MAX_BITS):
            return FieldDecoder
        return TableDecoder

    @property
    def a_decoder(self):
        """The row decoders' class: :class:`FieldDecoder`, :class:`TableDecoder` or
        :class:`LoadableTableDecoder`."""
        return self._decoder_class(self._a_formats)

    @property
    def w_decoder(self):
        """The column decoders' class, or ``None`` when the weights drive shift-add cells."""
        return None if self._ausn is not None else self._decoder_class(self._w_formats)

    @property
    def dsp_blocks(self):
        """Number of SB_MAC16 the array instantiates: ``R * floor(C / 2)`` with ``mapping="dsp"``,
        else 0."""
        if self._mapping != "dsp":
            return 0
        pairs = self._rows * (self._cols // 2)
        return pairs if self._max_dsp is None else min(pairs, self._max_dsp)

    @property
    def latency(self):
        """Cycles from the clock edge that takes a tile's ``last`` input to the first cycle with
        its first result on ``drain`` (``valid`` high), when the capture registers are free: 2
        (decoders, accumulate), so the result is on ``drain`` in the cycle after the second edge;
        3 with ``mapping="dsp"`` (decoders, SB_MAC16 product register, accumulate); plus
        :attr:`pipeline`."""
        return (3 if self._mapping == "dsp" else 2) + self._pipeline

    def _dsp_products(self, m, en, a_vals, w_vals):
        """``products[r][c]``: registered products, pairs of columns in SB_MAC16 blocks (the first
        :attr:`dsp_blocks` pairs, row-major), the other columns (an odd last one, pairs past
        ``max_dsp``) in fabric registers; each register loads when ``en`` is high."""
        R, C = self._rows, self._cols
        blocks = self.dsp_blocks

        def fabric(r, c):
            product = Signal(signed(self._product_width), name=f"product_{r}_{c}", reset_less=True)
            with m.If(en):
                m.d.sync += product.eq(a_vals[r] * w_vals[c])
            return product
        a_signed, w_signed = self._dsp_signed
        operand = lambda is_signed: signed(DSP_OPERAND_BITS) if is_signed else unsigned(DSP_OPERAND_BITS)  # noqa: E731
        products = [[None] * C for _ in range(R)]
        zero16 = Const(0, 16)
        for r in range(R):
            a8 = Signal(operand(a_signed), name=f"dsp_a{r}")
            m.d.comb += a8.eq(a_vals[r])
            for j in range(C // 2):
                if r * (C // 2) + j >= blocks:
                    products[r][2 * j], products[r][2 * j + 1] = fabric(r, 2 * j), fabric(r, 2 * j + 1)
                    continue
                w8 = [Signal(operand(w_signed), name=f"dsp_w{r}_{2 * j + i}") for i in range(2)]
                m.d.comb += [w8[i].eq(w_vals[2 * j + i]) for i in range(2)]
                out = Signal(32, name=f"dsp_o{r}_{j}")
                m.submodules[f"mac16_{r}_{j}"] = Instance(
                    "SB_MAC16",
                    p_MODE_8x8=Const(1, 1), p_A_SIGNED=Const(int(a_signed), 1), p_B_SIGNED=Const(int(w_signed), 1),
                    p_TOP_8x8_MULT_REG=Const(1, 1), p_BOT_8x8_MULT_REG=Const(1, 1),
                    p_TOPOUTPUT_SELECT=Const(2, 2), p_BOTOUTPUT_SELECT=Const(2, 2),
                    i_CLK=ClockSignal(), i_CE=en,
                    i_A=Cat(a8, a8), i_B=Cat(w8[0], w8[1]), i_C=zero16, i_D=zero16,
                    i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0, i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0,
                    i_ORSTBOT=0, i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0, i_OHOLDTOP=0,
                    i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
                    o_O=out)
                for i, half in enumerate((out[:16], out[16:])):     # bottom: column 2j, top: 2j + 1
                    products[r][2 * j + i] = half.as_signed() if a_signed or w_signed else half.as_unsigned()
            if C % 2:
                products[r][C - 1] = fabric(r, C - 1)
        return products

    def _shift_add_products(self, m, a_vals, w_codes):
        """``products[r][c]``: the AUSN shift-add of row ``r``'s value by column ``c``'s fields
        (combinational; :meth:`hwq.pe.ausn.AusnPE.term` per term)."""
        fmt = self._ausn
        alo, ahi = self._a_range
        lo, hi = (min(alo, -ahi), max(ahi, -alo)) if fmt.signed else (alo, ahi)
        xs = []
        for r in range(self._rows):
            if fmt.signed:                                    # the row's negation, once per row
                neg = Signal(signed(_signed_width(-ahi, -alo)), name=f"a_neg{r}")
                m.d.comb += neg.eq(-a_vals[r])
                xs.append((a_vals[r], neg))
            else:
                xs.append((a_vals[r], None))
        products = [[None] * self._cols for _ in range(self._rows)]
        for r, (pos, neg) in enumerate(xs):
            for c, code in enumerate(w_codes):
                x = Signal(signed(_signed_width(lo, hi)), name=f"x_{r}_{c}")
                m.d.comb += x.eq(Mux(code[fmt.bits - 1], neg, pos) if fmt.signed else pos)
                terms = []
                for (lsb, k), offset in zip(fmt.field_slices, fmt.offsets):
                    term = Signal(signed(len(x) + offset + (1 << k) - 2), name=f"term_{r}_{c}_{len(terms)}")
                    m.d.comb += term.eq(AusnPE.term(x, code[lsb:lsb + k], offset))
                    terms.append(term)
                products[r][c] = sum(terms[1:], terms[0])
        return products

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        en = Signal()                          # every stage advances

        # 0: edge decoders (or the AUSN weight codes as they are), control beside them
        a_vals = []
        for r in range(R):
            dec = m.submodules[f"row_decoder{r}"] = self.a_decoder(self._a_formats)
            m.d.comb += [dec.code.eq(Mux(self.inside[r], self.a[r], self.pad_code)),
                         dec.format.eq(self.a_format), dec.en.eq(en)]
            if isinstance(dec, LoadableTableDecoder):
                m.d.comb += dec.load.eq(self.a_load)
            a_vals.append(dec.value)
        w_vals = []
        for c in range(C):
            if self._ausn is not None:
                code = Signal(self._w_bits, name=f"w_code{c}", reset_less=True)
                with m.If(en):
                    m.d.sync += code.eq(self.w[c])
                w_vals.append(code)
            else:
                dec = m.submodules[f"col_decoder{c}"] = self.w_decoder(self._w_formats)
                m.d.comb += [dec.code.eq(self.w[c]), dec.format.eq(self.w_format), dec.en.eq(en)]
                if isinstance(dec, LoadableTableDecoder):
                    m.d.comb += dec.load.eq(self.w_load)
                w_vals.append(dec.value)
        s_valid = Signal(name="s1_valid")
        s_first = Signal(name="s1_first", reset_less=True)
        s_last = Signal(name="s1_last", reset_less=True)
        with m.If(en):
            m.d.sync += [s_valid.eq(self.valid), s_first.eq(self.first), s_last.eq(self.last)]

        # 1: the MAC cells (mapping "dsp": the products, registered, then the sums)
        cells = m.submodules.cells = Module()
        if self._mapping == "dsp":
            products = self._dsp_products(cells, en, a_vals, w_vals)
            s2 = (Signal(name="s2_valid"), Signal(name="s2_first", reset_less=True),
                  Signal(name="s2_last", reset_less=True))
            with m.If(en):
                m.d.sync += [s2[0].eq(s_valid), s2[1].eq(s_first), s2[2].eq(s_last)]
            s_valid, s_first, s_last = s2
        elif self._ausn is not None:
            products = self._shift_add_products(cells, a_vals, w_vals)
        else:
            products = [[a_vals[r] * w_vals[c] for c in range(C)] for r in range(R)]
        for stage in range(self._pipeline):    # product registers, the control beside them
            staged = [[Signal(signed(self._product_width), name=f"p{stage}_{r}_{c}", reset_less=True)
                       for c in range(C)] for r in range(R)]
            ctrl = (Signal(name=f"p{stage}_valid"), Signal(name=f"p{stage}_first", reset_less=True),
                    Signal(name=f"p{stage}_last", reset_less=True))
            with cells.If(en):
                cells.d.sync += [staged[r][c].eq(products[r][c]) for r in range(R) for c in range(C)]
            with m.If(en):
                m.d.sync += [ctrl[0].eq(s_valid), ctrl[1].eq(s_first), ctrl[2].eq(s_last)]
            products = staged
            s_valid, s_first, s_last = ctrl
        acc = [[Signal(signed(self._acc_width), name=f"acc_{r}_{c}", reset_less=True) for c in range(C)]
               for r in range(R)]
        done = Signal(name="done")             # acc holds a finished tile
        with m.If(en):
            m.d.sync += done.eq(s_valid & s_last)
        with cells.If(en & s_valid):
            for r in range(R):
                for c in range(C):
                    cells.d.sync += acc[r][c].eq(Mux(s_first, 0, acc[r][c]) + products[r][c])

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
