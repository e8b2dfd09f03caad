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
- :class:`FieldDecoder`: every code of every ANT type, ESB ``k`` (and mid-rise grid) and fixed
  point at 3 to 8 bits, signed and unsigned, the format switching every cycle; the choice of
  ``decoders="auto"``.
- AUSN weights (shift-add cells, no weight decoder): random tiles, and every weight code of 3-
  to 8-bit formats (default and other superpositions) times extreme activations.
- ``uniq_tables="loadable"``: tables loaded per layer through ``a_load`` / ``w_load``.

``mapping="dsp"`` (SB_MAC16) is simulated in Icarus: tests/accel/test_array_dsp.py.
"""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, ClockDomain, Module, Signal, Value
from amaranth.sim import Simulator

from hwq.accel.array import MAX_TABLE_BITS, FieldDecoder, LoadableTableDecoder, PEArray, TableDecoder
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
    check_decoder(TableDecoder, [FORMATS[n] for n in names])


def _field_formats():
    """``(formats, id)``: every ANT type and every ESB ``k`` (and mid-rise grid) at 3 to 8 bits,
    signed and unsigned, with fixed point, as run-time selected lists of one width and sign."""
    cases = []
    for bits in range(3, 9):
        for signed in (True, False):
            B = bits - (1 if signed else 0)
            ant = [Ant(bits, type=t, signed=signed) for t in ("int", "float", "flint") + (("pot",) if B <= 5 else ())]
            esb = [Esb(bits, k=k, signed=signed) for k in range(max(1, B - 3), B + 1)]
            esb.append(Esb(bits, k=B, signed=signed, midrise=True))
            cases.append((ant + esb + [FixedPoint(bits, signed=signed)], f"{bits}{'s' if signed else 'u'}"))
    cases.append(([FixedPoint(4, signed=True), Ant(8, type="flint"), Esb(3, signed=False), FixedPoint(8, signed=False),
                   Ant(5, type="pot", signed=False)], "mixed"))
    return cases


@pytest.mark.parametrize("formats", [c[0] for c in _field_formats()], ids=[c[1] for c in _field_formats()])
def test_field_decoder(formats):
    """Every code of every format (fixed point, ANT, ESB; 3 to 8 bits), the format switching every
    cycle, against ``int_values``."""
    check_decoder(FieldDecoder, formats)


def test_field_decoder_refuses():
    with pytest.raises(InputError, match=r"formats\[1\]"):
        FieldDecoder([FORMATS["fxp4"], FORMATS["uniq4"]])
    assert not FieldDecoder.supports(FORMATS["ausn4s"])


def check_decoder(cls, formats):
    """Decoder ``cls`` of ``formats`` against ``int_values``: every code (junk in the bits above
    a narrower format's code), the formats in random order, one cycle of latency."""
    dut = cls(formats)
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


def make_tile(dut, ai, wi, a, w, inside, pad, loaded=(None, None)):
    """One tile of formats ``ai``, ``wi`` (indices), codes ``a`` ``(K, R)`` and ``w`` ``(K, C)``,
    inside flags ``(K, R)`` and pad code, with its expected ``R x C`` sums from ``int_values``
    (of ``loaded`` formats instead, where given: the tables loaded into the decoders)."""
    fa, fw = (f or fmts[i] for f, fmts, i in zip(loaded, (dut.a_formats, dut.w_formats), (ai, wi)))
    a_eff = np.where(inside, a, pad) & ((1 << fa.bits) - 1)
    expected = fa.int_values[a_eff].T @ fw.int_values[w & ((1 << fw.bits) - 1)]         # (R, C)
    return {"a_format": ai, "w_format": wi, "a": a, "w": w, "inside": inside, "pad_code": pad,
            "expected": _wrap(expected, dut.acc_width)}


def make_tiles(rng, dut, lengths, pairs=None):
    """Random tiles: per tile the format indices (``pairs[t]``, default: cycling through both
    lists), pad code, codes (with junk high bits for a
    narrower format), inside flags and the expected ``R x C`` sums."""
    R, C = dut.rows, dut.cols
    a_bits, w_bits = max(f.bits for f in dut.a_formats), max(f.bits for f in dut.w_formats)
    tiles = []
    for t, K in enumerate(lengths):
        ai, wi = pairs[t] if pairs is not None else (t % len(dut.a_formats), (t * 2 + 1) % len(dut.w_formats))
        a = rng.integers(0, 1 << a_bits, (K, R))
        w = rng.integers(0, 1 << w_bits, (K, C))
        inside = rng.random((K, R)) < 0.8
        pad = int(rng.integers(0, 1 << a_bits))
        tiles.append(make_tile(dut, ai, wi, a, w, inside, pad))
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


def load_ports(dut):
    """Names of the array's table load ports (``a_load``, ``w_load``), those it has."""
    return [name for name in ("a_load", "w_load") if name in dut.signature.members]


def input_ports(dut):
    """``(port, width)`` of every input but ``drain.ready``, in the bit order of :func:`pack_word`
    (the first at bit 0)."""
    ports = [dut.valid, dut.first, dut.last, dut.a, dut.w, dut.inside, dut.pad_code, dut.a_format, dut.w_format]
    ports += [getattr(dut, name) for name in load_ports(dut)]
    return [(p, len(Value.cast(p))) for p in ports]


def pack_word(dut, word):
    """One :func:`input_words` element as an integer, the ports of :func:`input_ports` from bit 0
    up (``a`` and ``w`` row 0 / column 0 lowest)."""
    a_bits, w_bits = len(dut.a[0]), len(dut.w[0])
    fields = [(word["valid"], 1), (word["first"], 1), (word["last"], 1)]
    fields += [(v, a_bits) for v in word["a"]] + [(v, w_bits) for v in word["w"]]
    fields += [(word["inside"], dut.rows), (word["pad_code"], a_bits), (word["a_format"], len(dut.a_format)),
               (word["w_format"], len(dut.w_format))]
    for name in load_ports(dut):                           # (valid, addr, data), valid lowest
        port = getattr(dut, name)
        valid, addr, value = word.get(name, (0, 0, 0))
        fields += [(valid, 1), (addr, len(port.addr)), (value, len(port.data))]
    out, offset = 0, 0
    for value, width in fields:
        out |= (int(value) & ((1 << width) - 1)) << offset
        offset += width
    return out


def unpack_result(dut, payload):
    """``(row, col, acc)`` of a ``drain.payload`` bit pattern (``acc`` read signed)."""
    row_bits, col_bits = len(dut.drain.payload.row), len(dut.drain.payload.col)
    acc = payload >> (row_bits + col_bits)
    acc -= (acc >> (dut.acc_width - 1)) << dut.acc_width
    return payload & ((1 << row_bits) - 1), (payload >> row_bits) & ((1 << col_bits) - 1), acc


def simulate(dut, words, drain_ready, max_cycles):
    """Run ``words`` into ``dut`` (each held until taken), ``drain.ready`` of cycle ``i`` being
    ``drain_ready(i)``; return the drained ``(row, col, acc)`` in order, the cycle the last word
    was taken and the number of cycles ``ready`` was low while a word waited."""
    m = _bench(dut)
    ports = [p for p, _ in input_ports(dut)]
    stim = Signal(sum(len(Value.cast(p)) for p in ports))
    m.d.comb += Cat(*ports).eq(stim)
    dready = Signal()
    m.d.comb += dut.drain.ready.eq(dready)
    payload = dut.drain.payload
    observed = Signal(2 + len(Value.cast(payload)))
    m.d.comb += observed.eq(Cat(dut.ready, dut.drain.valid, payload))
    packed = [pack_word(dut, w) for w in words]
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
                results.append(unpack_result(dut, obs >> 2))
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


def expected_stalls(lengths, n, latency):
    """The cycle the last input is taken and the cycles ``ready`` is low while an input waits,
    for back-to-back tiles of ``lengths`` inputs, an always-ready drain, ``n = R * C`` cells and
    the array's ``latency``: tile ``t``'s last input, taken in cycle ``L``, sets *done* in cycle
    ``L + latency`` (later if the pipeline stalls meanwhile), which waits (``ready`` low, nothing
    moves) until the cycle ``D`` of tile ``t - 1``'s last transfer; its ``n`` transfers then
    follow in cycles ``max(L + latency, D) + 1 ...``."""
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
        stage = taken
        for _ in range(latency - 1):                        # decoded (and multiplied), then accumulated
            stage = moving(stage + 1)
        done = stage + 1
        capture = done if drain_end is None else max(done, drain_end)
        stall_windows.append((done, capture))
        drain_end = capture + n
    return taken, stalls


@pytest.mark.parametrize("rows, cols, a_names, w_names", ARRAY_CASES)
def test_array_throughput(rows, cols, a_names, w_names):
    """Back to back with no idle cycle and an always-ready drain, the stalls are exactly those of
    the design (:func:`expected_stalls`, latency 2). So a tile of ``K >= R * C`` inputs never
    stalls and a shorter one costs ``R * C`` cycles."""
    rng = np.random.default_rng(100 + rows * 10 + cols)
    dut = PEArray(rows=rows, cols=cols, a_formats=[FORMATS[n] for n in a_names],
                  w_formats=[FORMATS[n] for n in w_names], acc_width=32)
    n = rows * cols
    lengths = [5, 1, 1, n, max(1, n - 2), 2 * n + 1, 1, n + 3, n, 2]
    tiles = make_tiles(rng, dut, lengths)
    words = input_words(rng, dut, tiles)
    results, info = simulate(dut, words, lambda i: 1, len(words) + 3 * len(tiles) * n + 40)
    check_results(dut, tiles, results)
    taken, stalls = expected_stalls(lengths, n, dut.latency)
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


@pytest.mark.parametrize("pipeline", [1, 3])
@pytest.mark.parametrize("rows, cols, a_names, w_names", [ARRAY_CASES[1], (2, 2, ["fxp4"], ["ausn4s"])])
def test_array_pipeline(rows, cols, a_names, w_names, pipeline):
    """Product register stages: the same sums, ``pipeline`` more cycles of latency, and exactly
    the stalls of a design that deep (:func:`expected_stalls`), random drain back-pressure too;
    AUSN's shift-add products (the second case) are registered the same way."""
    rng = np.random.default_rng(200 + 10 * pipeline + rows)
    args = dict(rows=rows, cols=cols, a_formats=[FORMATS[n] for n in a_names],
                w_formats=[FORMATS[n] for n in w_names], acc_width=32)
    dut = PEArray(**args, pipeline=pipeline)
    assert dut.pipeline == pipeline and dut.latency == 2 + pipeline
    n = rows * cols
    lengths = [5, 1, 1, n, max(1, n - 2), 2 * n + 1, 1, n + 3, n, 2]
    tiles = make_tiles(rng, dut, lengths)
    results, info = simulate(dut, input_words(rng, dut, tiles), lambda i: 1, 4 * len(lengths) * (n + 8) + 40)
    check_results(dut, tiles, results)
    taken, stalls = expected_stalls(lengths, n, 2 + pipeline)
    assert (info["last_taken"], info["stalls"]) == (taken, stalls)
    dut = PEArray(**args, pipeline=pipeline)
    tiles = make_tiles(rng, dut, [1, 9, 1, n + 1, 2])
    ready = rng.random(4000) < 0.6
    results, _ = simulate(dut, input_words(rng, dut, tiles, idle=0.2), lambda i: int(ready[i]), 600)
    check_results(dut, tiles, results)


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


AUSN_SHIFT_ADD_CASES = [
    (2, 3, [FORMATS["fxp8u"], FORMATS["flint4"], FORMATS["fxp8s"]], [Ausn(4), Ausn(4, exp_base=-3)]),
    (1, 4, [FORMATS["fxp4"], FORMATS["uniq4"]], [Ausn(8, signed=False)]),
    (3, 2, [FORMATS["fxp8s"], FORMATS["esb4"]], [Ausn(8, fields=(4, 3), offsets=(3, 0))]),
]


@pytest.mark.parametrize("rows, cols, a_formats, w_formats", AUSN_SHIFT_ADD_CASES)
def test_array_ausn_shift_add(rows, cols, a_formats, w_formats):
    """AUSN weights of one superposition: no column decoder, the fields drive shift-add cells;
    random tiles as for the table path, against ``int_values`` products."""
    rng = np.random.default_rng(rows * 10 + cols + 300)
    dut = PEArray(rows=rows, cols=cols, a_formats=a_formats, w_formats=w_formats, acc_width=30)
    assert dut.weight_path == "shift-add" and dut.latency == 2
    n = rows * cols
    lengths = [1, 9, 1, max(1, n - 1), n, n + 1, 2, 17, 3]
    tiles = make_tiles(rng, dut, lengths)
    ready = rng.random(4000) < 0.7
    words = input_words(rng, dut, tiles, idle=0.1)
    results, info = simulate(dut, words, lambda i: int(ready[i]), len(words) + 3 * len(tiles) * n + 40)
    check_results(dut, tiles, results)
    text = verilog.convert(dut, name="pe_array")
    assert "col_decoder" not in text and "row_decoder0" in text


def _ausn_cases():
    """``(format, id)``: the default superposition of every width, signed and unsigned, and a few
    others (overlapping windows, one-bit terms, one wide term)."""
    cases = [(Ausn(bits, signed=s), f"ausn{bits}{'s' if s else 'u'}") for bits in range(3, 9) for s in (True, False)]
    for bits, fields, offsets in [(8, (1,) * 7, (6, 5, 4, 3, 2, 1, 0)), (8, (3, 4), (0, 0)), (5, (4,), (0,)),
                                  (6, (2, 3), (3, 0))]:
        cases.append((Ausn(bits, fields=fields, offsets=offsets), f"ausn{bits}_" + "_".join(map(str, fields))))
    return cases


@pytest.mark.parametrize("w_format", [c[0] for c in _ausn_cases()], ids=[c[1] for c in _ausn_cases()])
def test_array_ausn_every_code(w_format):
    """Every weight code of an AUSN format (3 to 8 bits) times the extreme and some random
    activations of signed and unsigned 8-bit fixed point: one-input tiles, so each drained sum is
    one product, against ``int_values`` products."""
    rng = np.random.default_rng(w_format.bits)
    a_formats = [FixedPoint(8, signed=False), FixedPoint(8, signed=True)]
    rows, cols = 3, 8
    dut = PEArray(rows=rows, cols=cols, a_formats=a_formats, w_formats=[w_format], acc_width=24)
    assert dut.weight_path == "shift-add"
    codes = np.arange(1 << w_format.bits)
    codes = np.concatenate([codes, rng.integers(0, 1 << w_format.bits, -len(codes) % cols)])
    tiles = []
    for t, start in enumerate(range(0, len(codes), cols)):
        ai = t % 2
        extremes = [255, 0] if ai == 0 else [127, 128]       # codes of 255 and 0; of 127 and -128
        a = np.array([extremes + [int(rng.integers(0, 256))]])
        tiles.append(make_tile(dut, ai, 0, a, codes[None, start:start + cols], np.ones((1, rows), bool), 0))
    words = input_words(rng, dut, tiles)
    results, _ = simulate(dut, words, lambda i: 1, len(tiles) * (rows * cols + 4) + 40)
    check_results(dut, tiles, results)


@pytest.mark.parametrize("decoders", ["auto", "table"])
def test_array_decoder_choice(decoders):
    """``decoders="auto"`` builds field decoders where every format of the operand has field
    logic (fixed point, ANT, ESB) and a code is wider than 4 bits or every format is read
    directly, tables otherwise; ``"table"`` always tables. Random tiles either way."""
    rng = np.random.default_rng(11)
    a_formats = [FORMATS[n] for n in ("fxp8s", "flint4", "pot4", "esb4")]
    w_formats = [FORMATS[n] for n in ("fxp4", "uniq4")]
    dut = PEArray(rows=2, cols=2, a_formats=a_formats, w_formats=w_formats, acc_width=32, decoders=decoders)
    assert dut.a_decoder is (FieldDecoder if decoders == "auto" else TableDecoder)
    assert dut.w_decoder is TableDecoder
    choice = lambda fmts: PEArray(rows=1, cols=1, a_formats=fmts, w_formats=fmts, acc_width=45,  # noqa: E731
                                  decoders=decoders).a_decoder
    field = FieldDecoder if decoders == "auto" else TableDecoder
    assert choice([FORMATS["fxp4"], FixedPoint(3, signed=False), Ant(4, type="int")]) is field
    assert choice([FORMATS["flint4"], FORMATS["esb4"], FORMATS["fxp4"]]) is TableDecoder
    assert choice([Esb(5), FORMATS["pot4"]]) is field
    tiles = make_tiles(rng, dut, [3, 1, 6, 2, 5, 4, 1, 7])
    results, _ = simulate(dut, input_words(rng, dut, tiles, idle=0.1), lambda i: 1, 200)
    check_results(dut, tiles, results)


def test_array_loadable_uniq():
    """``uniq_tables="loadable"``: the layer's UNIQ table is written into every decoder of the
    operand through ``a_load`` / ``w_load``, then tiles use it; three layers with different
    tables (and a 3-bit one in the 4-bit decoders), against the loaded formats' ``int_values``."""
    rng = np.random.default_rng(13)
    dut = PEArray(rows=2, cols=3, a_formats=[Uniq(4), FORMATS["fxp4"]], w_formats=[Uniq(4)], acc_width=30,
                  uniq_tables="loadable")
    assert dut.a_decoder is LoadableTableDecoder and dut.w_decoder is LoadableTableDecoder
    decoder = LoadableTableDecoder([Uniq(4), FORMATS["fxp4"]])

    def random_uniq(bits):
        levels = np.sort(rng.choice(np.arange(-128, 128), 1 << bits, replace=False))
        return Uniq(bits, levels=[int(v) for v in levels], level_bits=8)

    words, tiles = [], []
    for layer in range(3):
        fa = random_uniq(4) if layer != 1 else FixedPoint(4, signed=True)
        fw = random_uniq(4 if layer != 2 else 3)
        writes = {"a_load": decoder.load_words(fa), "w_load": decoder.load_words(fw)}
        for i in range(16):                                # the load, while no input is valid
            words.append({"valid": 0, "first": 0, "last": 0, "a": [0] * 2, "w": [0] * 3, "inside": 0,
                          "pad_code": 0, "a_format": 0, "w_format": 0,
                          **{name: (1, *w[i]) for name, w in writes.items()}})
        for K in (1, 5, 9, 2):
            a, w = rng.integers(0, 16, (K, 2)), rng.integers(0, 16, (K, 3))
            tile = make_tile(dut, 0, 0, a, w, rng.random((K, 2)) < 0.8, int(rng.integers(0, 16)), (fa, fw))
            tiles.append(tile)
            words += input_words(rng, dut, [tile], idle=0.1)
    # a load may follow a layer's last input at once: its codes were decoded when it was taken
    results, _ = simulate(dut, words, lambda i: 1, len(words) + 10 * len(tiles) * 6 + 40)
    check_results(dut, tiles, results)
    with pytest.raises(InputError, match="fmt"):
        decoder.load_words(Uniq(5))


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
    ({"decoders": "rom"}, "decoders"), ({"decoders": None}, "decoders"), ({"uniq_tables": "ram"}, "uniq_tables"),
    ({"pipeline": -1}, "pipeline"), ({"pipeline": 5}, "pipeline"), ({"pipeline": True}, "pipeline"),
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
