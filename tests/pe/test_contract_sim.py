"""amaranth.sim of FixedPointPE, cycle by cycle against the golden ``hwq.formats.accumulate``.

Inputs applied before clock edge ``t`` are in ``sum[t]``; ``acc`` read after edge
``t + latency - 1`` (that is, during cycle ``t + latency``) must equal ``sum[t]``. Before the
first input comes out, and after a reset, ``acc`` reads 0.
"""

import itertools

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, signed, unsigned
from amaranth.sim import Simulator

from hwq.formats import FixedPoint, accumulate, product_range
from hwq.pe import FixedPointPE

SIGNEDNESS = list(itertools.product([False, True], repeat=2))     # (a_signed, w_signed)
PIPELINES = [0, 1, 2]


def port_value(code, shape):
    """The int ``ctx.set`` takes for the code (bit pattern) ``code`` on a port of ``shape``."""
    if shape.signed and code >= 1 << (shape.width - 1):
        return code - (1 << shape.width)
    return code


def simulate(pe, a, w, valid, clear, rst=None):
    """Drive ``pe`` with one input per cycle; return ``acc`` after every clock edge.

    Parameters
    ----------
    pe : ProcessingElement
        A fresh PE.
    a, w, valid, clear, rst : sequence of int
        Inputs per cycle (codes as bit patterns); ``rst`` is the synchronous reset (default 0).
        ``pe.latency - 1`` idle cycles are appended so every input's sum comes out.

    Returns
    -------
    numpy.ndarray
        ``acc`` read after each edge, ``len(a) + pe.latency - 1`` entries.
    """
    n = len(a)
    rst = [0] * n if rst is None else list(rst)
    idle = [0] * (pe.latency - 1)
    a, w = list(a) + idle, list(w) + idle
    valid, clear, rst = list(valid) + idle, list(clear) + idle, rst + idle

    m = Module()
    m.domains.sync = sync = ClockDomain("sync")
    m.submodules.pe = pe
    sim = Simulator(m)
    sim.add_clock(1e-6)
    trace = []

    async def bench(ctx):
        a_shape, w_shape = pe.a.shape(), pe.w.shape()
        for t in range(len(a)):
            ctx.set(pe.a, port_value(int(a[t]), a_shape))
            ctx.set(pe.w, port_value(int(w[t]), w_shape))
            ctx.set(pe.valid, int(valid[t]))
            ctx.set(pe.clear, int(clear[t]))
            ctx.set(sync.rst, int(rst[t]))
            await ctx.tick()
            trace.append(ctx.get(pe.acc))

    sim.add_testbench(bench)
    sim.run()
    return np.array(trace, dtype=np.int64)


def expected_trace(pe, a, w, valid, clear, rst=None):
    """Golden ``acc`` after every edge, as :func:`simulate` returns it (resets split the sums)."""
    n = len(a)
    rst = np.zeros(n, dtype=bool) if rst is None else np.asarray(rst, dtype=bool)
    sums = np.zeros(n, dtype=np.int64)
    start = 0
    for stop in list(np.flatnonzero(rst)) + [n]:
        # inputs of a reset cycle are dropped; the sum restarts from 0 after it
        if stop > start:
            sums[start:stop] = accumulate(pe.a_format, a[start:stop], pe.w_format, w[start:stop],
                                          valid[start:stop], clear[start:stop])
        start = stop + 1
    expected = np.zeros(n + pe.latency - 1, dtype=np.int64)
    expected[pe.latency - 1:] = sums
    for r in np.flatnonzero(rst):
        # after a reset edge acc reads 0 until the first input after it comes out
        expected[r:r + pe.latency] = 0
    return expected


def check(pe, a, w, valid, clear, rst=None):
    got = simulate(pe, a, w, valid, clear, rst)
    want = expected_trace(pe, np.asarray(a), np.asarray(w), valid, clear, rst)
    bad = np.flatnonzero(got != want)
    if bad.size:
        t = int(bad[0])
        pytest.fail(f"{pe.module_name}: first mismatch after edge {t}: acc={got[t]}, golden={want[t]} "
                    f"(inputs of cycle {t - pe.latency + 1} come out there)")


def pe_of(a_bits, w_bits, a_signed, w_signed, pipeline, **kwargs):
    return FixedPointPE.from_bits(a_bits, w_bits, a_signed=a_signed, w_signed=w_signed,
                                  pipeline=pipeline, **kwargs)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("a_signed,w_signed", SIGNEDNESS)
def test_exhaustive_4x4(a_signed, w_signed, pipeline):
    """Every (a, w) pair once with clear on every cycle (each product seen alone), then every pair
    again in random order with random valid/clear (running sums)."""
    rng = np.random.default_rng(4)
    pe = pe_of(4, 4, a_signed, w_signed, pipeline)
    a, w = (x.ravel() for x in np.meshgrid(np.arange(16), np.arange(16), indexing="ij"))
    order = rng.permutation(a.size)
    a2, w2 = np.concatenate([a, a[order]]), np.concatenate([w, w[order]])
    valid = np.concatenate([np.ones(a.size, bool), rng.random(a.size) < 0.85])
    clear = np.concatenate([np.ones(a.size, bool), rng.random(a.size) < 0.1])
    clear[a.size] = True                       # a back-to-back clear: no idle cycle between sums
    check(pe, a2, w2, valid, clear)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("a_signed,w_signed", [(False, True), (True, True), (False, False)])
def test_random_8x8(a_signed, w_signed, pipeline):
    """Seeded random codes, valid and clear (sums restart often), plus extreme codes."""
    rng = np.random.default_rng(8 + pipeline)
    n = 3000
    a = rng.integers(0, 256, n)
    w = rng.integers(0, 256, n)
    a[:64] = rng.choice([0, 127, 128, 255], 64)    # extremes: most negative, largest, -1
    w[:64] = rng.choice([0, 127, 128, 255], 64)
    valid = rng.random(n) < 0.9
    clear = rng.random(n) < 0.05
    clear[[0, 1, 2]] = True
    check(pe_of(8, 8, a_signed, w_signed, pipeline), a, w, valid, clear)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_reset_in_the_middle_of_a_sum(pipeline):
    """A synchronous reset drops the running sum and everything in the pipeline."""
    rng = np.random.default_rng(17)
    n = 400
    a = rng.integers(0, 256, n)
    w = rng.integers(0, 256, n)
    valid = rng.random(n) < 0.9
    clear = rng.random(n) < 0.03
    clear[40:110] = False                              # one long sum across the first reset
    rst = np.zeros(n, bool)
    rst[[50, 51, 120, 121 + pipeline, 300]] = True    # single, back-to-back, just after one
    clear[301] = True                                  # clear right after a reset
    pe = pe_of(8, 8, False, True, pipeline)
    check(pe, a, w, valid, clear, rst)
    # a reset mid-sum really changes the result
    assert accumulate(pe.a_format, a, pe.w_format, w, valid, clear)[100] != \
        expected_trace(pe, a, w, valid, clear, rst)[100 + pipeline]


@pytest.mark.parametrize("a_signed,w_signed", SIGNEDNESS)
def test_max_terms_without_overflow(a_signed, w_signed):
    """``max_terms`` copies of the smallest and of the largest product fit in ``acc``."""
    pe = pe_of(4, 4, a_signed, w_signed, 0, max_terms=64)
    lo, hi = product_range(pe.a_format, pe.w_format)
    codes = {}
    for a_code in range(16):
        for w_code in range(16):
            value = int(pe.a_format.decode(a_code)) * int(pe.w_format.decode(w_code))
            codes.setdefault(value, (a_code, w_code))
    k = pe.max_terms
    a = [codes[lo][0]] * k + [codes[hi][0]] * k
    w = [codes[lo][1]] * k + [codes[hi][1]] * k
    clear = [1] + [0] * (k - 1) + [1] + [0] * (k - 1)
    got = simulate(pe, a, w, [1] * 2 * k, clear)
    assert got[k - 1] == k * lo and got[2 * k - 1] == k * hi
    check(pe, a, w, [1] * 2 * k, clear)


def test_port_value():
    assert port_value(15, signed(4)) == -1 == FixedPoint(4, signed=True).decode(15)
    assert port_value(7, signed(4)) == 7
    assert port_value(15, unsigned(4)) == 15 == FixedPoint(4, signed=False).decode(15)
