# amaranth: UnusedElaboratable=no
"""amaranth.sim of the PE array and its table decoders against sums computed here in numpy from
``fmt.int_values`` (docs/accelerator.md, "Dataflow"; the reference arithmetic is
``hwq.accel.schedule._run_conv``: ``decode_a(act) @ decode_w(weights)`` per tile).

- :class:`TableDecoder`: every code of every format (with junk in the bits above a narrower
  format's code), the format switching every cycle, one cycle of latency.
- :class:`PEArray`: arrays 1x4, 2x3, 3x1 with several activation and weight formats (fxp8 signed
  and unsigned, fxp4, ANT flint and pot, ESB, UNIQ, AUSN), random codes, rows outside the input
  (``pad_code``), tiles back to back of lengths 1, shorter than ``R * C`` (the stall path) and
  longer, the formats switching between tiles, idle input cycles and a drain consumer that is
  not always ready; the results are collected by handshake and must come out row-major, tile
  after tile. With an always-ready consumer and no idle cycles, a tile costs ``max(K, R * C)``
  cycles; an accumulator of the product width wraps modulo ``2**acc_width``.
"""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, ClockDomain, Module, Signal, Value
from amaranth.sim import Simulator

from hwq.accel.array import MAX_TABLE_BITS, PEArray, TableDecoder
from hwq.errors import InputError
from hwq.formats import Ant, Ausn, Esb, FixedPoint, Uniq

FORMATS = {
    "fxp8s": FixedPoint(8, signed=True),
    "fxp8u": FixedPoint(8, signed=False),
    "fxp4": FixedPoint(4, signed=True),
    "flint4": Ant(4, type="flint", signed=True),
    "pot4": Ant(4, type="pot", signed=True),
    "esb4": Esb(4, signed=True),
    "uniq4": Uniq(4),
    "ausn4s": Ausn(4, signed=True),
    "ausn4u": Ausn(4, signed=False),
}


def _wrap(x, width):
    """``x`` (int64 array) as a ``width``-bit two's-complement integer."""
    x = np.asarray(x, dtype=np.int64) & ((1 << width) - 1)
    return np.where(x >= 1 << (width - 1), x - (1 << width), x)


def _bench(dut):
    """A module around ``dut`` and its simulator with a clock."""
    m = Module()
    m.domains.sync = ClockDomain("sync")
    m.submodules.dut = dut
    return m


# ---------------------------------------------------------------------------------------------
# TableDecoder


@pytest.mark.parametrize("names", [["fxp8s", "fxp4", "flint4", "pot4", "esb4", "uniq4", "ausn4s", "ausn4u", "fxp8u"],
                                   ["uniq4"], ["pot4", "ausn4u"]])
def test_table_decoder(names):
    formats = [FORMATS[n] for n in names]
    dut = TableDecoder(formats)
    assert dut.code_bits == max(f.bits for f in formats)
    assert dut.latency == 1
    rng = np.random.default_rng(1)
    fmt_idx, codes, expected = [], [], []
    for i, f in enumerate(formats):
        for code in range(1 << f.bits):
            junk = int(rng.integers(0, 1 << dut.code_bits)) >> f.bits << f.bits
            fmt_idx.append(i)
            codes.append(code | junk)
            expected.append(int(f.int_values[code]))
    order = rng.permutation(len(codes))
    fmt_idx, codes, expected = (np.array(v)[order] for v in (fmt_idx, codes, expected))
    m = _bench(dut)
    stim = Signal(dut.code_bits + dut.format_bits)
    m.d.comb += Cat(dut.code, dut.format).eq(stim)
    sim = Simulator(m)
    sim.add_clock(1e-6)
    out = []

    async def bench(ctx):
        for f, c in zip(fmt_idx, codes):
            ctx.set(stim, int(c) | (int(f) << dut.code_bits))
            await ctx.tick()
            out.append(ctx.get(dut.value))                  # registered: the value of this input

    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(out, expected)
    lo, hi = min(int(f.int_values.min()) for f in formats), max(int(f.int_values.max()) for f in formats)
    assert -(1 << (dut.value_width - 1)) <= lo and hi < 1 << (dut.value_width - 1)
    assert dut.value_width == 1 or not (-(1 << (dut.value_width - 2)) <= lo and hi < 1 << (dut.value_width - 2))


# ---------------------------------------------------------------------------------------------
# PEArray


def make_tiles(rng, dut, lengths, pairs=None):
    """Random tiles: per tile the format indices (``pairs[t]``, default: cycling through both
    lists), pad code, codes (with junk high bits for a
    narrower format), inside flags and the expected ``R x C`` sums."""
    R, C = dut.rows, dut.cols
    a_bits, w_bits = max(f.bits for f in dut.a_formats), max(f.bits for f in dut.w_formats)
    tiles = []
    for t, K in enumerate(lengths):
        ai, wi = pairs[t] if pairs is not None else (t % len(dut.a_formats), (t * 2 + 1) % len(dut.w_formats))
        fa, fw = dut.a_formats[ai], dut.w_formats[wi]
        a = rng.integers(0, 1 << a_bits, (K, R))
        w = rng.integers(0, 1 << w_bits, (K, C))
        inside = rng.random((K, R)) < 0.8
        pad = int(rng.integers(0, 1 << a_bits))
        a_eff = np.where(inside, a, pad) & ((1 << fa.bits) - 1)
        expected = fa.int_values[a_eff].T @ fw.int_values[w & ((1 << fw.bits) - 1)]     # (R, C)
        tiles.append({"a_format": ai, "w_format": wi, "a": a, "w": w, "inside": inside, "pad_code": pad,
                      "expected": _wrap(expected, dut.acc_width)})
    return tiles


def input_words(rng, dut, tiles, idle=0.0):
    """The input stream, one dict of port values per element, with idle elements (``valid`` 0,
    random data) inserted at random, about ``idle`` of the stream."""
    words = []
    for tile in tiles:
        K = len(tile["a"])
        for k in range(K):
            while rng.random() < idle:
                words.append({"valid": 0, "first": int(rng.integers(2)), "last": int(rng.integers(2)),
                              "a": [int(v) for v in rng.integers(0, 1 << len(dut.a[0]), dut.rows)],
                              "w": [int(v) for v in rng.integers(0, 1 << len(dut.w[0]), dut.cols)],
                              "inside": int(rng.integers(0, 1 << dut.rows)), "pad_code": 0,
                              "a_format": 0, "w_format": 0})
            words.append({"valid": 1, "first": int(k == 0), "last": int(k == K - 1),
                          "a": [int(v) for v in tile["a"][k]], "w": [int(v) for v in tile["w"][k]],
                          "inside": int(sum(int(b) << r for r, b in enumerate(tile["inside"][k]))),
                          "pad_code": tile["pad_code"], "a_format": tile["a_format"], "w_format": tile["w_format"]})
    return words


def simulate(dut, words, drain_ready, max_cycles):
    """Run ``words`` into ``dut`` (each held until taken), ``drain.ready`` of cycle ``i`` being
    ``drain_ready(i)``; return the drained ``(row, col, acc)`` in order, the cycle the last word
    was taken and the number of cycles ``ready`` was low while a word waited."""
    m = _bench(dut)
    ports = [dut.valid, dut.first, dut.last, dut.a, dut.w, dut.inside, dut.pad_code, dut.a_format, dut.w_format]
    stim = Signal(sum(len(Value.cast(p)) for p in ports))
    m.d.comb += Cat(*ports).eq(stim)
    dready = Signal()
    m.d.comb += dut.drain.ready.eq(dready)
    payload = dut.drain.payload
    observed = Signal(2 + len(Value.cast(payload)))
    m.d.comb += observed.eq(Cat(dut.ready, dut.drain.valid, payload))
    row_bits, col_bits = len(payload.row), len(payload.col)
    a_bits, w_bits = len(dut.a[0]), len(dut.w[0])

    def pack(word):
        fields = [(word["valid"], 1), (word["first"], 1), (word["last"], 1)]
        fields += [(v, a_bits) for v in word["a"]] + [(v, w_bits) for v in word["w"]]
        fields += [(word["inside"], dut.rows), (word["pad_code"], a_bits), (word["a_format"], len(dut.a_format)),
                   (word["w_format"], len(dut.w_format))]
        out, offset = 0, 0
        for value, width in fields:
            out |= (int(value) & ((1 << width) - 1)) << offset
            offset += width
        return out

    packed = [pack(w) for w in words]
    results, info = [], {}
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def bench(ctx):
        i, stalls = 0, 0
        for cycle in range(max_cycles):
            ctx.set(stim, packed[i] if i < len(packed) else 0)
            ready_out = drain_ready(cycle)
            ctx.set(dready, ready_out)
            obs = ctx.get(observed)
            if obs & 2 and ready_out:
                p = obs >> 2
                acc = p >> (row_bits + col_bits)
                acc -= (acc >> (dut.acc_width - 1)) << dut.acc_width
                results.append((p & ((1 << row_bits) - 1), (p >> row_bits) & ((1 << col_bits) - 1), acc))
            if i < len(packed):
                if obs & 1:
                    i += 1
                    if i == len(packed):
                        info["last_taken"] = cycle
                else:
                    stalls += 1
            await ctx.tick()
        info["stalls"] = stalls

    sim.add_testbench(bench)
    sim.run()
    return results, info


def check_results(dut, tiles, results):
    R, C = dut.rows, dut.cols
    assert len(results) == len(tiles) * R * C
    for t, tile in enumerate(tiles):
        got = results[t * R * C:(t + 1) * R * C]
        assert [(r, c) for r, c, _ in got] == [(r, c) for r in range(R) for c in range(C)]
        sums = np.array([acc for _, _, acc in got]).reshape(R, C)
        assert np.array_equal(sums, tile["expected"]), (
            f"tile {t} (K={len(tile['a'])}, {dut.a_formats[tile['a_format']]} x {dut.w_formats[tile['w_format']]}): "
            f"{sums.tolist()} != {tile['expected'].tolist()}")


ARRAY_CASES = [
    (1, 4, ["fxp8s", "fxp4", "flint4"], ["fxp8u", "pot4", "uniq4"]),
    (2, 3, ["esb4", "ausn4u", "fxp8u"], ["ausn4s", "fxp8s", "esb4", "fxp4"]),
    (3, 1, ["uniq4", "pot4", "ausn4s"], ["flint4", "uniq4", "fxp8s"]),
]


@pytest.mark.parametrize("rows, cols, a_names, w_names", ARRAY_CASES)
def test_array_random(rows, cols, a_names, w_names):
    rng = np.random.default_rng(rows * 10 + cols)
    dut = PEArray(rows=rows, cols=cols, a_formats=[FORMATS[n] for n in a_names],
                  w_formats=[FORMATS[n] for n in w_names], acc_width=32)
    n = rows * cols
    lengths = [1, 9, 1, 1, max(1, n - 1), 2, n, n + 1, 1, 17, 3, 1]
    tiles = make_tiles(rng, dut, lengths)
    words = input_words(rng, dut, tiles, idle=0.1)
    ready = rng.random(4000) < 0.7
    results, info = simulate(dut, words, lambda i: int(ready[i]), len(words) + 3 * len(tiles) * n + 40)
    check_results(dut, tiles, results)
    assert info["stalls"] > 0                               # short tiles waited for the drain


@pytest.mark.parametrize("rows, cols, a_names, w_names", ARRAY_CASES)
def test_array_throughput(rows, cols, a_names, w_names):
    """Back to back with no idle cycle and an always-ready drain, the stalls are exactly those of
    the design: tile ``t``'s last input, taken in cycle ``L``, sets *done* in cycle ``L + 2``
    (or later if the pipeline stalls meanwhile),
    which waits (``ready`` low, nothing moves) until the cycle ``D`` of tile ``t - 1``'s last
    transfer; its ``R * C`` transfers then follow in cycles ``max(L + 2, D) + 1 ...``. So a tile
    of ``K >= R * C`` inputs never stalls and a shorter one costs ``R * C`` cycles."""
    rng = np.random.default_rng(100 + rows * 10 + cols)
    dut = PEArray(rows=rows, cols=cols, a_formats=[FORMATS[n] for n in a_names],
                  w_formats=[FORMATS[n] for n in w_names], acc_width=32)
    n = rows * cols
    lengths = [5, 1, 1, n, max(1, n - 2), 2 * n + 1, 1, n + 3, n, 2]
    tiles = make_tiles(rng, dut, lengths)
    words = input_words(rng, dut, tiles)
    results, info = simulate(dut, words, lambda i: 1, len(words) + 3 * len(tiles) * n + 40)
    check_results(dut, tiles, results)
    stall_windows = []                                      # [start, stop): ready low, nothing moves

    def moving(cycle):
        """The first cycle from ``cycle`` on in which the pipeline moves."""
        for start, stop in stall_windows:
            if start <= cycle < stop:
                cycle = stop
        return cycle

    cycle, drain_end, stalls = 0, None, 0
    for K in lengths:
        for _ in range(K):
            taken = moving(cycle)
            stalls += taken - cycle
            cycle = taken + 1
        done = moving(taken + 1) + 1                        # decoded, then accumulated
        capture = done if drain_end is None else max(done, drain_end)
        stall_windows.append((done, capture))
        drain_end = capture + n
    assert info["last_taken"] == taken
    assert info["stalls"] == stalls
    if n > 1:
        assert stalls > 0
    # tiles of at least R * C inputs after the first: no stall at all
    long_lengths = [1, n, n + 1, 2 * n]
    long_tiles = make_tiles(rng, dut, long_lengths)
    results, info = simulate(dut, input_words(rng, dut, long_tiles), lambda i: 1, 5 * n + 40)
    check_results(dut, long_tiles, results)
    assert info["stalls"] == 0 and info["last_taken"] == sum(long_lengths) - 1


def test_array_every_format_pair():
    """Every format on both sides, every (activation, weight) pair one tile, in random order."""
    rng = np.random.default_rng(5)
    formats = list(FORMATS.values())
    dut = PEArray(rows=2, cols=2, a_formats=formats, w_formats=formats[::-1], acc_width=28)
    pairs = [(i, j) for i in range(len(formats)) for j in range(len(formats))]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    lengths = [int(k) for k in rng.integers(1, 7, len(pairs))]
    tiles = make_tiles(rng, dut, lengths, pairs)
    words = input_words(rng, dut, tiles, idle=0.05)
    ready = rng.random(4 * len(words) + 8 * len(tiles)) < 0.8
    results, info = simulate(dut, words, lambda i: int(ready[i]), len(ready))
    check_results(dut, tiles, results)
    assert info["stalls"] > 0


def test_array_wraps():
    """An accumulator as wide as one product wraps modulo ``2**acc_width``."""
    rng = np.random.default_rng(7)
    dut = PEArray(rows=2, cols=2, a_formats=[FORMATS["fxp8s"]], w_formats=[FORMATS["fxp8s"]], acc_width=16)
    assert dut.product_width == 16
    with pytest.raises(InputError, match="acc_width"):
        PEArray(rows=2, cols=2, a_formats=[FORMATS["fxp8s"]], w_formats=[FORMATS["fxp8s"]], acc_width=15)
    tiles = make_tiles(rng, dut, [40, 3])
    results, _ = simulate(dut, input_words(rng, dut, tiles), lambda i: 1, 120)
    check_results(dut, tiles, results)


@pytest.mark.parametrize("kwargs, match", [
    ({"rows": 0}, "rows"), ({"rows": 2.0}, "rows"), ({"cols": 0}, "cols"), ({"cols": 65}, "cols"),
    ({"acc_width": 46}, "acc_width"), ({"acc_width": True}, "acc_width"), ({"acc_width": 4}, "acc_width"),
    ({"a_formats": []}, "a_formats"), ({"a_formats": "fxp8"}, "a_formats"), ({"w_formats": [3]}, r"w_formats\[0\]"),
    ({"w_formats": [FixedPoint(12, signed=True)]}, r"w_formats\[0\]"),
])
def test_bad_parameters(kwargs, match):
    args = {"rows": 2, "cols": 2, "a_formats": [FORMATS["fxp4"]], "w_formats": [FORMATS["fxp4"]], "acc_width": 20}
    with pytest.raises(InputError, match=match):
        PEArray(**{**args, **kwargs})


def test_bad_decoder_formats():
    for bad in ([], None, "fxp4", [FORMATS["fxp4"], object()], [FixedPoint(MAX_TABLE_BITS + 1, signed=False)]):
        with pytest.raises(InputError, match="formats"):
            TableDecoder(bad)


def test_verilog():
    dut = PEArray(rows=2, cols=3, a_formats=[FORMATS["fxp8u"], FORMATS["uniq4"]], w_formats=[FORMATS["esb4"]],
                  acc_width=24)
    text = verilog.convert(dut, name="pe_array")
    assert "module pe_array" in text and "drain__payload" in text
    assert "module" in verilog.convert(TableDecoder([FORMATS["pot4"], FORMATS["fxp8s"]]), name="decoder")
