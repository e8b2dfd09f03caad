# amaranth: UnusedElaboratable=no
"""amaranth.sim of the requantization datapath against the numpy reference
(hwq.integer.requant, docs/integer-semantics.md, "Requantization").

Each simulation streams a batch of vectors, one per cycle, with some idle (``valid`` low) cycles
among them, and collects the outputs by ``code_valid``: every input must come out exactly
:attr:`latency` cycles after it went in, in order, with the reference's code.

- :class:`ThresholdEncoder`: the tables of every format of 8 bits or fewer hwq builds (fxp with
  every rounding mode, ANT int/flint/float/pot at 3 to 8 bits, ESB with several k and mid-rise,
  AUSN, UNIQ, signed and unsigned; 122 distinct tables) on every quotient from ``MARGIN`` below
  the first threshold to ``MARGIN`` above the last, with the sticky bit 0 and 1. The 15 tables
  whose doubled thresholds span more than ``2**13`` (wide power-of-two grids) are tested within
  ``MARGIN`` of every threshold and grid value and at random points between; the slow suite
  (``-m slow``) tests 7 of them on every quotient too (spans up to ``2**17``). Random clamps, also
  ``high = 2**index_bits - 1`` (no clamp); about 20 tables per encoder, the table switching from
  one cycle to the next; quotients wider than the compare width (saturation), as wide, and
  narrower; hand-made tables with thresholds at the edges of the compare width.
- :class:`Requantizer`: seeded random vectors aimed at each grid, extremes of every port, and
  numerators exactly on a threshold (and one multiplier step either side) at shifts 0 to 60.
"""

import itertools

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, ClockDomain, Module, Signal
from amaranth.sim import Simulator
from amaranth.utils import ceil_log2

from hwq.accel import MAX_ACC_WIDTH, Requantizer, ThresholdEncoder
from hwq.accel.requant import UniformTable, uniform_table
from hwq.errors import InputError
from hwq.formats import Ant, Ausn, Esb, FixedPoint, Uniq
from hwq.formats.ant import ANT_TYPES
from hwq.formats.rounding import ROUNDING_MODES
from hwq.integer.requant import MAX_SHIFT, Clamp, EncoderTable, requantize


def _formats():
    """Every format of at most 8 bits hwq builds (defaults and a few parameter choices)."""
    out = []
    for bits, signed, mode in itertools.product((4, 8), (True, False), ROUNDING_MODES):
        out.append(FixedPoint(bits, signed=signed, rounding=mode))
    out += [FixedPoint(8, frac=5, signed=False), FixedPoint(6, frac=-2, signed=True), FixedPoint(2, signed=True),
            FixedPoint(3, signed=False)]
    for bits, kind, signed in itertools.product((3, 4, 5, 6, 7, 8), ANT_TYPES, (True, False)):
        try:
            out.append(Ant(bits, type=kind, signed=signed))
        except InputError:                                  # pot above 5 magnitude bits
            pass
    for bits, signed in itertools.product(range(3, 9), (True, False)):
        magnitude = bits - signed
        for k in (None, max(magnitude - 3, 1), magnitude):
            out.append(Esb(bits, k=k, signed=signed))
        out.append(Esb(bits, k=magnitude, signed=signed, midrise=True))
        out.append(Ausn(bits, signed=signed))
    out += [Ausn(6, fields=[3, 2], offsets=[2, 0], signed=True),
            Ausn(8, fields=[3, 3, 2], offsets=[1, 0, 0], signed=False)]
    out += [Uniq(bits) for bits in range(2, 9)]
    out += [Uniq(3, levels=[-40, -9, 0, 1, 2, 30, 31, 127], level_bits=8), Uniq(2, levels=[3, 4, 9, 100], level_bits=8)]
    return out


FORMATS = _formats()


def distinct_tables(formats):
    """The distinct encoder tables of ``formats`` (equal tables need no second run or proof)."""
    seen, out = set(), []
    for fmt in formats:
        table = EncoderTable.of(fmt)
        key = (table.grid.tobytes(), table.codes.tobytes(), table.thresholds2.tobytes(), table.up_on_tie.tobytes())
        if key not in seen:
            seen.add(key)
            out.append(table)
    return out


TABLES = distinct_tables(FORMATS)
#: quotients beyond the last threshold tested on both sides
MARGIN = 6
#: a table whose doubled thresholds span more than this is tested around its thresholds and grid
#: values (and on every quotient of its span in the slow suite, up to :data:`SLOW_SPAN`)
EXHAUSTIVE_SPAN = 1 << 13
#: the largest span the slow suite tests exhaustively (all but two 8-bit ESB grids with k = 4, 5)
SLOW_SPAN = 1 << 17


def simulate(dut, inputs):
    """Stream ``inputs`` through ``dut``, one vector per cycle; return the codes and their cycles.

    The input ports are driven from one wide signal and ``code`` and ``code_valid`` read as one,
    so each cycle costs the testbench one write and one read.

    Parameters
    ----------
    dut : ThresholdEncoder or Requantizer
        A fresh component.
    inputs : dict of str to sequence of int
        One entry per input port (``valid`` included), all of the same length.

    Returns
    -------
    codes : numpy.ndarray of int64
        ``code`` of every cycle whose ``code_valid`` is high, in order.
    cycles : numpy.ndarray of int64
        The cycle (number of clock edges since the first input) of each.
    """
    n = len(inputs["valid"])
    m = Module()
    m.domains.sync = ClockDomain("sync")
    m.submodules.dut = dut
    words = [0] * n
    offset = 0
    for name, column in inputs.items():
        port = getattr(dut, name)
        width = len(port)
        mask = (1 << width) - 1
        words = [w | ((int(v) & mask) << offset) for w, v in zip(words, column)]
        offset += width
    stimulus = Signal(offset)
    offset = 0
    for name in inputs:
        port = getattr(dut, name)
        m.d.comb += port.eq(stimulus[offset:offset + len(port)])
        offset += len(port)
    observed = Signal(len(dut.code) + 1)
    m.d.comb += observed.eq(Cat(dut.code_valid, dut.code))
    sim = Simulator(m)
    sim.add_clock(1e-6)
    trace = []

    async def bench(ctx):
        for word in words + [0] * dut.latency:
            ctx.set(stimulus, word)
            await ctx.tick()
            trace.append(ctx.get(observed))

    sim.add_testbench(bench)
    sim.run()
    trace = np.array(trace, dtype=np.int64)
    cycles = np.flatnonzero(trace & 1)
    return trace[cycles] >> 1, cycles + 1


def check_stream(dut, inputs, expected):
    """Simulate and compare with ``expected`` codes of the valid inputs, and their timing."""
    valid = np.asarray(inputs["valid"], dtype=bool)
    codes, cycles = simulate(dut, inputs)
    assert len(codes) == valid.sum()
    assert np.array_equal(cycles, np.flatnonzero(valid) + dut.latency)
    bad = np.flatnonzero(codes != expected)
    assert not bad.size, (f"{bad.size} of {len(codes)} codes differ; first: vector "
                          f"{ {k: int(np.asarray(v)[valid][bad[0]]) for k, v in inputs.items()} } "
                          f"gives {codes[bad[0]]}, expected {expected[bad[0]]}")


def with_bubbles(rng, columns, fraction=0.05):
    """``columns`` (dict of equal-length arrays) with idle cycles (``valid`` 0, random data)
    inserted at random, about ``fraction`` of the stream."""
    n = len(next(iter(columns.values())))
    idle = int(n * fraction)
    where = np.sort(rng.integers(0, n + 1, idle))
    out = {}
    for key, values in columns.items():
        values = np.asarray(values, dtype=object)
        filler = np.zeros(idle, dtype=object) if key != "q" else values[rng.integers(0, n, idle)]
        out[key] = np.insert(values, where, filler)
    out["valid"] = np.insert(np.ones(n, dtype=np.int64), where, 0)
    return out


def random_clamps(rng, sizes, index_bits):
    """Clamp bounds per vector: a random non-empty range of the grid half the time, else the
    whole grid, as ``[0, G - 1]`` or as ``[0, 2**index_bits - 1]`` (no clamp: the search itself
    must not go past the last grid value)."""
    sizes = np.asarray(sizes)
    a = rng.integers(0, sizes)
    b = rng.integers(0, sizes)
    choice = rng.random(len(sizes))
    low = np.where(choice < 0.5, 0, np.minimum(a, b))
    high = np.where(choice < 0.25, (1 << index_bits) - 1, np.where(choice < 0.5, sizes - 1, np.maximum(a, b)))
    return low, high


# ---------------------------------------------------------------------------------------------
# ThresholdEncoder


def quotients(table, q_lo, q_hi, span=EXHAUSTIVE_SPAN, rng=None):
    """Quotients to test ``table`` on, within ``[q_lo, q_hi]``: every one from ``MARGIN`` below
    its first threshold to ``MARGIN`` above its last when they span at most ``span`` (``None``: no
    limit), else every one within ``MARGIN`` of each threshold and grid value and two random ones
    in each gap between thresholds (``rng``); and the extremes of the port."""
    t2 = table.thresholds2
    lo, hi = (int(t2.min()), int(t2.max())) if t2.size else (0, 0)
    if span is None or hi - lo <= span:
        q = np.arange(lo - MARGIN, hi + MARGIN + 1, dtype=np.int64)
    else:
        centres = np.concatenate([t2, 2 * table.grid, [lo - MARGIN, hi + MARGIN]])
        q = (centres[:, None] + np.arange(-MARGIN, MARGIN + 1)[None, :]).ravel()
        if rng is not None:
            gaps = (t2[:-1, None] + rng.random((len(t2) - 1, 2)) * (t2[1:] - t2[:-1])[:, None]).astype(np.int64)
            q = np.concatenate([q, gaps.ravel()])
    q = np.concatenate([q, [q_lo, q_lo + 1, q_hi - 1, q_hi, -1, 0, 1]])
    return np.unique(np.clip(q, q_lo, q_hi))


def expected_codes(tables, table, q, sticky, low, high):
    """Reference codes: ``EncoderTable.index`` of the numerator ``2q + sticky`` at shift 2, whose
    quotient is ``q`` and sticky bit ``sticky``; quotients past every threshold are moved just past
    them first (the index no longer changes there) to keep the numerator within 62 bits."""
    out = np.zeros(len(q), dtype=np.int64)
    for i, tab in enumerate(tables):
        sel = np.flatnonzero(table == i)
        t2 = tab.thresholds2
        lo, hi = (int(t2.min()), int(t2.max())) if t2.size else (0, 0)
        qq = np.clip(np.array([int(v) for v in q[sel]], dtype=np.int64), lo - 2, hi + 2)
        index = tab.index(2 * qq + sticky[sel].astype(np.int64), 2)
        out[sel] = tab.codes[np.clip(index, low[sel].astype(np.int64), high[sel].astype(np.int64))]
    return out


def encoder_vectors(rng, enc, span=EXHAUSTIVE_SPAN):
    """The :func:`quotients` of every table of ``enc`` with sticky 0 and 1, shuffled (so the
    table changes nearly every cycle), with random clamps."""
    q_lo, q_hi = -(1 << (enc.q_width - 1)), (1 << (enc.q_width - 1)) - 1
    padding = enc.padding
    extra = [padding - 2, padding - 1, padding, padding + 1, -padding - 2, -padding - 1, -padding]
    return shuffled_vectors(rng, enc, lambda tab: np.unique(np.clip(
        np.concatenate([quotients(tab, q_lo, q_hi, span, rng), extra]), q_lo, q_hi)))


def shuffled_vectors(rng, enc, quotients_of):
    """``quotients_of(table)`` of every table of ``enc`` with sticky 0 and 1, shuffled (so the
    table changes nearly every cycle), with random clamps: the encoder's inputs by port name."""
    table, q = [], []
    for i, tab in enumerate(enc.tables):
        qs = quotients_of(tab)
        table += [i] * len(qs)
        q += [int(v) for v in qs]
    table = np.array(table * 2, dtype=np.int64)
    q = np.array(q * 2, dtype=object)
    sticky = np.repeat([0, 1], len(table) // 2)
    order = rng.permutation(len(table))
    table, q, sticky = table[order], q[order], sticky[order]
    low, high = random_clamps(rng, np.array([len(enc.tables[i].grid) for i in table]), enc.index_bits)
    return {"table": table, "q": q, "sticky": sticky, "low": low, "high": high}


def _groups(tables, count, span):
    """``tables`` in ``count`` groups of similar simulation length, one encoder each."""
    cost = [len(quotients(t, -(1 << 40), 1 << 40, span)) for t in tables]
    groups = [[] for _ in range(count)]
    load = [0] * count
    for i in np.argsort(cost, kind="stable")[::-1]:
        g = int(np.argmin(load))
        groups[g].append(tables[i])
        load[g] += cost[i]
    return [g for g in groups if g]


def _span(table):
    t2 = table.thresholds2
    return int(t2.max()) - int(t2.min()) if t2.size else 0


GROUPS = _groups(TABLES, 6, EXHAUSTIVE_SPAN)
SLOW_GROUPS = _groups([t for t in TABLES if EXHAUSTIVE_SPAN < _span(t) <= SLOW_SPAN], 4, None)


def check_encoder(enc, seed, span=EXHAUSTIVE_SPAN):
    rng = np.random.default_rng(seed)
    inputs = with_bubbles(rng, encoder_vectors(rng, enc, span))
    v = inputs["valid"].astype(bool)
    expected = expected_codes(enc.tables, inputs["table"][v].astype(np.int64), inputs["q"][v],
                              inputs["sticky"][v].astype(np.int64), inputs["low"][v], inputs["high"][v])
    check_stream(enc, inputs, expected)


@pytest.mark.parametrize("group", range(len(GROUPS)))
def test_encoder_is_the_reference_on_every_quotient(group):
    """All tables in six encoders (lookups as memories and logic by the default threshold), with
    quotients 3 bits wider than the compare width, so the saturation is exercised too."""
    tables = GROUPS[group]
    width = ThresholdEncoder(tables, q_width=8).compare_width
    check_encoder(ThresholdEncoder(tables, q_width=width + 3), group)


@pytest.mark.slow
@pytest.mark.parametrize("group", range(len(SLOW_GROUPS)))
def test_encoder_on_every_quotient_of_wide_grids(group):
    """The tables whose thresholds span more than :data:`EXHAUSTIVE_SPAN`, on every quotient of
    their span (up to :data:`SLOW_SPAN`)."""
    tables = SLOW_GROUPS[group]
    width = ThresholdEncoder(tables, q_width=8).compare_width
    check_encoder(ThresholdEncoder(tables, q_width=width + 3), 50 + group, span=None)


def _table(grid, thresholds2, up, codes=None):
    """A hand-made table (no format)."""
    codes = np.arange(len(grid)) if codes is None else np.array(codes)
    return EncoderTable(None, np.array(grid, dtype=np.int64), codes, np.array(thresholds2, dtype=np.int64),
                        np.array(up, dtype=bool))


#: tables of formats, and hand-made ones: a single value; two equal thresholds (ties up, then
#: down); thresholds at the edges of the compare width ``W``, ``-2**(W-1) + 1`` and ``2**(W-1) - 3``
#: (next to the saturated quotients and the padding); thresholds that need the width's margins,
#: ``-2**(W-2)`` and ``2**(W-2) - 2``
VARIANT_TABLES = {
    "formats": [EncoderTable.of(f) for f in (FixedPoint(8, signed=True), Uniq(8), Ant(4, type="flint", signed=False),
                                             Esb(5, signed=True), FixedPoint(4, signed=False, rounding="floor"))],
    "edges": [_table([7], [], [], codes=[3]), _table([-2, 0, 2], [0, 0], [True, False], codes=[6, 0, 2]),
              _table([-64, 0, 63], [-127, 125], [False, False], codes=[5, 4, 3]),
              _table([-60, 0, 60, 61], [-120, 0, 121], [True, False, True]),
              EncoderTable.of(FixedPoint(2, signed=False))],
    "margins": [_table([-64, 0, 63], [-128, 126], [True, False]), _table([1, 2], [3], [True], codes=[9, 8])],
}


@pytest.mark.parametrize("tables, q_extra, index_bits, max_logic_words", [
    ("formats", 0, None, 0), ("formats", -1, 9, 0), ("formats", 40, None, 1 << 12),
    ("edges", 0, None, 0), ("edges", 0, 3, 1 << 12), ("edges", 1, None, 2), ("edges", -2, 2, 2),
    ("margins", 0, None, 0), ("margins", 2, 4, 4)])
def test_encoder_variants(tables, q_extra, index_bits, max_logic_words):
    """A quotient as wide as the compare width (it can equal the padding), narrower than it, or
    wider; every lookup a memory, or every one logic; a larger index than needed; hand-made
    tables that put the thresholds next to the saturated quotients and the padding."""
    tables = VARIANT_TABLES[tables]
    width = ThresholdEncoder(tables, q_width=8).compare_width
    enc = ThresholdEncoder(tables, q_width=min(width + q_extra, 64), index_bits=index_bits,
                           max_logic_words=max_logic_words)
    check_encoder(enc, 100 + q_extra + 3 * (index_bits or 0))


def test_encoder_ports_and_latency():
    tables = [EncoderTable.of(FixedPoint(8)), EncoderTable.of(Esb(4, signed=False)), EncoderTable.of(Uniq(3))]
    enc = ThresholdEncoder(tables, q_width=63)
    # fxp8 is uniform (computed): the search is sized by Esb(4) (16 values) and Uniq(3)
    assert enc.index_bits == 8 and enc.search_bits == 4 and enc.latency == 6
    assert enc.table_bits == 2 and enc.code_bits == 8 and enc.searched == (1, 2)
    assert enc.compare_width == 9                                # [-256, 255]: [-255, 253], one below, two above
    assert enc.q.shape().signed and len(enc.q) == 63 and len(enc.low) == len(enc.high) == 8
    assert len(ThresholdEncoder(EncoderTable.of(FixedPoint(2)), q_width=4).table) == 1


# ---------------------------------------------------------------------------------------------
# Requantizer

REQUANT_FORMATS = [FixedPoint(8, signed=True), FixedPoint(8, signed=False, rounding="half_up"),
                   Ant(4, type="flint", signed=False), Esb(8, signed=False), Uniq(8), Ausn(5, signed=True),
                   FixedPoint(4, signed=True, rounding="toward_zero")]


def _split(rng, total, acc_width):
    """``(acc, bias)`` with ``acc + bias == total`` within their ranges (``total`` is clipped to
    the reachable sums first)."""
    acc_lo, acc_hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    bias_lo, bias_hi = -(1 << 31), (1 << 31) - 1
    total = min(max(total, acc_lo + bias_lo), acc_hi + bias_hi)
    lo, hi = max(bias_lo, total - acc_hi), min(bias_hi, total - acc_lo)
    bias = int(rng.integers(lo, hi + 1)) if rng.random() < 0.8 else (lo if rng.random() < 0.5 else hi)
    return total - bias, bias


def requant_vectors(rng, tables, acc_width):
    """List of ``(acc, bias, multiplier, shift, table)`` vectors: aimed at the grid, log-uniform,
    extremes and ties."""
    acc_lo, acc_hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    sum_lo, sum_hi = acc_lo - (1 << 31), acc_hi + (1 << 31) - 1
    out = []
    # aimed: a value within the grid (and a little beyond), at random shifts and multipliers
    for _ in range(2500):
        i = int(rng.integers(len(tables)))
        grid = tables[i].grid
        shift = int(rng.integers(0, MAX_SHIFT + 1))
        m = int(rng.integers(1 << 15, 1 << 16)) if rng.random() < 0.8 else int(rng.integers(0, 1 << 16))
        value = rng.uniform(grid.min() - 3, grid.max() + 3)
        total = int(round(value * 2.0 ** shift / max(m, 1)))
        out.append((*_split(rng, total, acc_width), m, shift, i))
    # log-uniform sums: saturation on both sides, and everything in between
    for _ in range(1000):
        magnitude = int(rng.integers(0, acc_width + 1))
        total = int(rng.integers(-(1 << magnitude), (1 << magnitude) + 1))
        out.append((*_split(rng, total, acc_width), int(rng.integers(0, 1 << 16)),
                    int(rng.integers(0, MAX_SHIFT + 1)), int(rng.integers(len(tables)))))
    # extremes of every port
    for acc, bias, m, shift in itertools.product((acc_lo, acc_hi, 0, -1, 1), (-(1 << 31), (1 << 31) - 1, 0, -1),
                                                 (0, 1, 1 << 15, (1 << 16) - 1), (0, 1, 2, 31, 59, MAX_SHIFT)):
        out.append((acc, bias, m, shift, int(rng.integers(len(tables)))))
    # ties: n = t2 * 2**(S - 1) exactly on a threshold, and one multiplier step either side
    for i, table in enumerate(tables):
        t2 = [int(v) for v in table.thresholds2]
        for shift in (0, 1, 2, 3, 7, 16, 29, 44, 58, MAX_SHIFT):
            picks = t2 if len(t2) <= 40 else [t2[j] for j in rng.choice(len(t2), 40, replace=False)]
            for t in picks:
                if shift == 0 and t % 2:
                    continue                                  # no integer numerator on it
                n = t << (shift - 1) if shift else t >> 1
                if n == 0:
                    continue
                twos = (n & -n).bit_length() - 1               # n = odd * 2**twos
                odd = abs(n) >> twos
                candidates = {1 << min(twos, 15), 1}
                if odd < 1 << 16:
                    candidates.add(odd << min(twos, 15 - odd.bit_length() + 1))
                for m in candidates:
                    if m >= 1 << 16 or n % m:
                        continue
                    base = n // m
                    for total in (base - 1, base, base + 1):
                        if sum_lo <= total <= sum_hi:
                            out.append((*_split(rng, total, acc_width), m, shift, i))
    return out


def requant_inputs(rng, tables, vectors):
    acc, bias, m, shift, table = (np.array(c, dtype=object) for c in zip(*vectors))
    order = rng.permutation(len(acc))
    acc, bias, m, shift, table = (c[order] for c in (acc, bias, m, shift, table))
    index_bits = max(1, int(np.ceil(np.log2(max(len(t.grid) for t in tables)))))
    low, high = random_clamps(rng, [len(tables[int(i)].grid) for i in table], index_bits)
    return with_bubbles(rng, {"acc": acc, "bias": bias, "multiplier": m, "shift": shift, "table": table,
                              "low": low, "high": high})


def requant_expected(tables, inputs):
    v = inputs["valid"].astype(bool)
    out = []
    for acc, bias, m, shift, i, low, high in zip(*(inputs[k][v] for k in ("acc", "bias", "multiplier", "shift",
                                                                           "table", "low", "high"))):
        n = (int(acc) + int(bias)) * int(m)
        out.append(int(requantize(np.array([n], dtype=np.int64), int(shift), tables[int(i)],
                                  Clamp(int(low), int(high)))[0]))
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("acc_width", [MAX_ACC_WIDTH, 20])
def test_requantizer_is_the_reference(acc_width):
    tables = [EncoderTable.of(f) for f in REQUANT_FORMATS]
    dut = Requantizer(tables, acc_width=acc_width)
    rng = np.random.default_rng(acc_width)
    inputs = requant_inputs(rng, tables, requant_vectors(rng, tables, acc_width))
    check_stream(dut, inputs, requant_expected(tables, inputs))


def test_requantizer_ports_and_latency():
    dut = Requantizer([EncoderTable.of(FixedPoint(8)), EncoderTable.of(Uniq(4))], acc_width=MAX_ACC_WIDTH)
    assert dut.sum_width == 46 and dut.numerator_width == 62 and dut.compare_width == 9
    assert dut.latency == 4 + 4 + 2 and dut.index_bits == 8 and dut.search_bits == 4 and dut.code_bits == 8
    widths = {name: (len(getattr(dut, name)), getattr(dut, name).shape().signed)
              for name in ("acc", "bias", "multiplier", "shift", "table", "low", "high", "valid", "code", "code_valid")}
    assert widths == {"acc": (45, True), "bias": (32, True), "multiplier": (16, False), "shift": (6, False),
                      "table": (1, False), "low": (8, False), "high": (8, False), "valid": (1, False),
                      "code": (8, False), "code_valid": (1, False)}
    small = Requantizer(EncoderTable.of(FixedPoint(4)), acc_width=12)
    assert small.sum_width == 33 and small.latency == 4 + 1 + 2 and small.index_bits == 4


def test_components_convert_to_verilog():
    """Both components convert; the larger lookups are initialized memories (EBR on iCE40), the
    small ones logic."""
    tables = [EncoderTable.of(f) for f in (FixedPoint(8), Esb(6, signed=False), Uniq(2))]
    dut = Requantizer(tables, acc_width=24)
    text = verilog.convert(dut, name="requantizer", emit_src=False)
    assert "module requantizer(" in text and "module \\requantizer.encoder (" in text
    memories = {name for name in ("codes", "thresholds_b0", "thresholds_b4", "thresholds_b5")
                if f"{name} [" in text}
    # fxp8 is computed: the search (6 stages) and its lookups hold Esb(6) and Uniq(2) only
    assert {"codes", "thresholds_b0"} <= memories and not {"thresholds_b4", "thresholds_b5"} & memories
    assert "thresholds_b6" not in text
    text = verilog.convert(ThresholdEncoder(tables, q_width=12, max_logic_words=0), name="encoder", emit_src=False)
    assert "module encoder(" in text and "thresholds_b5 [" in text
    # all uniform: no memory at all, whatever the size
    text = verilog.convert(ThresholdEncoder([EncoderTable.of(FixedPoint(16)), EncoderTable.of(FixedPoint(8))],
                                            q_width=40, max_logic_words=0), name="encoder", emit_src=False)
    assert "module encoder(" in text and "thresholds_b" not in text and "codes [" not in text


# ---------------------------------------------------------------------------------------------
# parameter checks


@pytest.mark.parametrize("kwargs, match", [
    ({"tables": []}, "tables must be a non-empty list"),
    ({"tables": "fxp8"}, "tables must be a non-empty list"),
    ({"tables": [FixedPoint(8)]}, r"tables\[0\] must be an EncoderTable"),
    ({"tables": [_table([0, 1, 2], [1], [True])]}, r"tables\[0\].*G - 1 thresholds"),
    ({"tables": [_table([0, 1, 2], [3, 1], [True, True])]}, r"tables\[0\].*thresholds 0 and 1.*not monotone"),
    ({"tables": [_table([0, 1, 2], [2, 2], [False, True])]}, r"tables\[0\].*thresholds 0 and 1"),
    ({"q_width": 0}, "q_width must be between 1 and 64"),
    ({"q_width": 65}, "q_width must be between 1 and 64"),
    ({"q_width": 8.0}, "q_width must be an integer"),
    ({"index_bits": 7}, r"index_bits 7 holds 128 grid values, but tables\[0\].*has 256"),
    ({"index_bits": 33}, "index_bits must be between 1 and 32"),
    ({"tables": [EncoderTable.of(FixedPoint(16, rounding="half_away"))]},
     r"tables\[0\].*65536 grid values and is not uniform.*4096"),
    ({"max_logic_words": -1}, "max_logic_words must be between"),
])
def test_encoder_refuses_bad_parameters(kwargs, match):
    args = {"tables": [EncoderTable.of(FixedPoint(8))], "q_width": 16, **kwargs}
    with pytest.raises(InputError, match=match):
        ThresholdEncoder(args.pop("tables"), **args)


@pytest.mark.parametrize("acc_width, match", [
    (0, "acc_width must be between 1 and 45, not 0"),
    (46, "acc_width must be between 1 and 45, not 46.*62-bit numerator"),
    (True, "acc_width must be an integer"),
    ("32", "acc_width must be an integer"),
])
def test_requantizer_refuses_bad_acc_width(acc_width, match):
    with pytest.raises(InputError, match=match):
        Requantizer([EncoderTable.of(FixedPoint(8))], acc_width=acc_width)


def test_requantizer_passes_encoder_checks_on():
    with pytest.raises(InputError, match="index_bits 2"):
        Requantizer([EncoderTable.of(FixedPoint(4))], acc_width=16, index_bits=2)
    with pytest.raises(InputError, match=r"tables\[1\] must be an EncoderTable"):
        Requantizer([EncoderTable.of(FixedPoint(4)), None], acc_width=16)


# ---------------------------------------------------------------------------------------------
# uniform tables: computed, not searched (fxp16 scores)


def _fxp(bits, signed, mode, frac=0):
    return FixedPoint(bits, signed=signed, rounding=mode, frac=frac)


def test_which_tables_are_uniform():
    """Fixed point is uniform with half_even, half_up and floor, and unsigned with every mode;
    signed half_away (tie flags change at zero) and toward_zero (no even spacing at zero) are not;
    nor are the non-linear grids (ANT flint, UNIQ, ESB, AUSN)."""
    for bits, signed, mode, frac in itertools.product((2, 4, 8, 12, 16), (True, False), ROUNDING_MODES, (0, 5, -3)):
        expected = not (signed and mode in ("half_away", "toward_zero"))
        assert (uniform_table(EncoderTable.of(_fxp(bits, signed, mode, frac))) is not None) == expected
    u = uniform_table(EncoderTable.of(FixedPoint(16)))
    assert u == UniformTable(first2=-65535, up_on_tie=(False, True), last=65535, code0=32768, code_bits=16)
    for fmt in (Ant(4), Ant(8, type="flint", signed=False), Uniq(4), Esb(5), Ausn(5, signed=True)):
        assert uniform_table(EncoderTable.of(fmt)) is None
    # ANT's int type is a plain integer grid (ties up): uniform too
    assert uniform_table(EncoderTable.of(Ant(8, type="int", signed=False))) is not None
    assert uniform_table(EncoderTable.of(Ant(4, type="int", signed=True))) is not None
    # hand-made: codes counting down, or a period-3 tie pattern, are not uniform; a wrapping count is
    assert uniform_table(_table([1, 2], [3], [True], codes=[9, 8])) is None
    assert uniform_table(_table([0, 1, 2, 3, 4], [1, 3, 5, 7], [True, False, False, True])) is None
    assert uniform_table(_table([0, 1, 2], [1, 3], [True, True], codes=[3, 0, 1])) is not None


@pytest.mark.parametrize("bits", [3, 8, 12])
def test_uniform_arithmetic_is_the_table_index(bits):
    """The encoder's formula (``uniform_table``) against ``EncoderTable.index`` on every quotient
    of every uniform fxp table, both sticky bits (numpy, no simulation)."""
    for signed, mode, frac in itertools.product((True, False), ROUNDING_MODES, (0, 5, -2)):
        table = EncoderTable.of(_fxp(bits, signed, mode, frac))
        u = uniform_table(table)
        if u is None:
            continue
        lo, hi = int(table.thresholds2.min()), int(table.thresholds2.max())
        q = np.arange(lo - 5, hi + 6, dtype=np.int64)
        for sticky in (0, 1):
            d = q - u.first2
            m = d >> 1
            up = np.where(m & 1, u.up_on_tie[1], u.up_on_tie[0])
            index = np.where(d < 0, 0, np.minimum(m + ((d & 1) | sticky | up), u.last))
            assert np.array_equal(index, table.index(2 * q + sticky, 2))
            assert np.array_equal(table.codes, (u.code0 + np.arange(u.last + 1)) % (1 << u.code_bits))


#: quotients tested exhaustively beyond each end of a wide table's thresholds
END_SPAN = 48


def sampled_quotients(table, q_lo, q_hi, rng, randoms=150, picks=60):
    """Quotients for a wide table: every one within :data:`END_SPAN` of its first and last
    threshold, ``randoms`` uniform over the whole range of its thresholds, and ``picks`` random
    thresholds and grid values with their neighbourhood (``MARGIN``); small tables get
    :func:`quotients`."""
    t2 = table.thresholds2
    if not t2.size or int(t2.max()) - int(t2.min()) <= 4 * END_SPAN:
        return quotients(table, q_lo, q_hi)
    lo, hi = int(t2.min()), int(t2.max())
    ends = np.concatenate([np.arange(lo - END_SPAN, lo + END_SPAN), np.arange(hi - END_SPAN, hi + END_SPAN + 1)])
    centres = np.concatenate([rng.choice(t2, picks), 2 * rng.choice(table.grid, picks // 3)])
    near = (centres[:, None] + np.arange(-MARGIN, MARGIN + 1)[None, :]).ravel()
    q = np.concatenate([ends, rng.integers(lo - 4, hi + 5, randoms), near, [q_lo, q_lo + 1, q_hi - 1, q_hi, -1, 0, 1]])
    return np.unique(np.clip(q, q_lo, q_hi))


def check_sampled_encoder(enc, seed):
    """Every table of ``enc`` on its :func:`sampled_quotients`, sticky 0 and 1, shuffled so the
    table changes nearly every cycle, random clamps, idle cycles."""
    rng = np.random.default_rng(seed)
    q_lo, q_hi = -(1 << (enc.q_width - 1)), (1 << (enc.q_width - 1)) - 1
    inputs = with_bubbles(rng, shuffled_vectors(rng, enc, lambda tab: sampled_quotients(tab, q_lo, q_hi, rng)))
    v = inputs["valid"].astype(bool)
    expected = expected_codes(enc.tables, inputs["table"][v].astype(np.int64), inputs["q"][v],
                              inputs["sticky"][v].astype(np.int64), inputs["low"][v], inputs["high"][v])
    check_stream(enc, inputs, expected)


#: non-uniform tables mixed into the wide encoders (searched: 4 compare stages)
MIXED = [Ant(4, type="flint", signed=False), Uniq(4), Esb(4, signed=True), Ant(4, type="pot", signed=True)]
WIDE_UNIFORM = {
    "fxp16": [_fxp(16, s, mode) for s in (True, False) for mode in ROUNDING_MODES
              if not (s and mode in ("half_away", "toward_zero"))]
    + [_fxp(16, True, "half_even", 8), _fxp(16, False, "floor", -3), _fxp(16, True, "half_up", 15)],
    "fxp12": [_fxp(12, s, mode) for s in (True, False) for mode in ROUNDING_MODES
              if not (s and mode in ("half_away", "toward_zero"))]
    + [_fxp(12, False, "half_even", 6), _fxp(12, True, "floor", -2), _fxp(12, True, "half_even", 11)],
}


@pytest.mark.parametrize("kind", sorted(WIDE_UNIFORM))
def test_encoder_computes_wide_uniform_tables(kind):
    """fxp16 / fxp12 tables (every uniform rounding mode, signed and unsigned, several fraction
    lengths) in one encoder with ANT, UNIQ and ESB tables: the latency is the searched tables'
    (4 compare stages), not 16 or 12; quotients 3 bits wider than the compare width."""
    tables = [EncoderTable.of(f) for f in WIDE_UNIFORM[kind] + MIXED]
    width = ThresholdEncoder(tables, q_width=8).compare_width
    enc = ThresholdEncoder(tables, q_width=width + 3)
    bits = 16 if kind == "fxp16" else 12
    assert enc.index_bits == bits and enc.search_bits == 4 and enc.latency == 6
    assert enc.searched == tuple(range(len(WIDE_UNIFORM[kind]), len(tables)))
    check_sampled_encoder(enc, bits)


def test_encoder_searches_non_uniform_wide_tables():
    """Signed fxp12 half_away / toward_zero are not uniform: searched (12 stages), beside uniform
    fxp16 and a small table, all switching every cycle; a quotient port as wide as the
    requantizer's."""
    tables = [EncoderTable.of(f) for f in (_fxp(12, True, "half_away"), _fxp(12, True, "toward_zero", 4),
                                            FixedPoint(16), Uniq(3))]
    enc = ThresholdEncoder(tables, q_width=63)
    assert enc.searched == (0, 1, 3) and enc.search_bits == 12 and enc.index_bits == 16 and enc.latency == 14
    check_sampled_encoder(enc, 7)


@pytest.mark.parametrize("tables, q_extra, index_bits, max_logic_words", [
    ("uniform", 0, None, 0), ("uniform", 2, 20, 1 << 12), ("uniform_only", -1, None, 0), ("uniform_only", 5, 10, 4)])
def test_encoder_uniform_variants(tables, q_extra, index_bits, max_logic_words):
    """Uniform tables with thresholds next to the saturated quotients (the first at
    ``-2**(W-1) + 1``), codes that wrap modulo ``2**k``, two grid values, and only uniform tables
    (one compare stage of nothing to search); quotients as wide as the compare width or narrower."""
    uniform = [_table([-64, -63, -62], [-127, -125], [True, False], codes=[6, 7, 0]),
               _table([3, 4], [7], [False], codes=[1, 2]),
               EncoderTable.of(FixedPoint(2, signed=True)), EncoderTable.of(_fxp(6, False, "toward_zero"))]
    tables = uniform + ([EncoderTable.of(Ant(3, type="flint", signed=True))] if tables == "uniform" else [])
    assert all(uniform_table(t) is not None for t in uniform)
    width = ThresholdEncoder(tables, q_width=8).compare_width
    enc = ThresholdEncoder(tables, q_width=min(width + q_extra, 64), index_bits=index_bits,
                           max_logic_words=max_logic_words)
    assert enc.search_bits == (3 if len(tables) > len(uniform) else 1)
    check_encoder(enc, 200 + q_extra)


@pytest.mark.parametrize("formats, search_bits", [
    ([FixedPoint(8), FixedPoint(16)], 1), ([Ant(4), FixedPoint(16)], 4), ([FixedPoint(12), Esb(8, signed=False)], 8)])
def test_latency_depends_on_searched_tables_only(formats, search_bits):
    tables = [EncoderTable.of(f) for f in formats]
    enc = ThresholdEncoder(tables, q_width=63)
    rq = Requantizer(tables, acc_width=24)
    assert enc.search_bits == rq.search_bits == search_bits
    assert enc.latency == search_bits + 2 and rq.latency == 4 + search_bits + 2
    assert enc.index_bits == rq.index_bits == max(ceil_log2(len(t.grid)) for t in tables)


def test_requantizer_with_fxp16_scores():
    """A Requantizer whose tables include fxp16 (the default output scores) and an unsigned
    fxp16, beside ANT and fxp8: the reference's codes, with a 6-cycle encoder."""
    tables = [EncoderTable.of(f) for f in (FixedPoint(16), FixedPoint(16, signed=False, frac=4, rounding="floor"),
                                            Ant(4, type="flint", signed=False), FixedPoint(8, signed=False))]
    dut = Requantizer(tables, acc_width=24)
    assert dut.index_bits == 16 and dut.latency == 4 + 4 + 2 and dut.code_bits == 16
    rng = np.random.default_rng(16)
    inputs = requant_inputs(rng, tables, requant_vectors(rng, tables, 24))
    check_stream(dut, inputs, requant_expected(tables, inputs))
