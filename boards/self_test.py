"""A self-checking wrapper around any processing element: stimulus ROM, golden sums, verdict.

The ROM holds one row per test cycle: the activation and weight codes, ``valid``, ``clear`` and
the sum :func:`hwq.formats.accumulate` (the golden model) gives for that cycle. After reset the
wrapper reads the rows in order, one a cycle, drives the PE from registers loaded from the ROM
(so the PE sits on a register-to-register path) and compares the PE's ``acc`` with the golden sum
when that sum is due (``latency`` cycles after the PE took the inputs). Timing of row ``t``::

    cycle t      address t on the ROM read port
    cycle t+1    row t on the read data (synchronous read, one cycle)
    cycle t+2    row t's codes, valid and clear in the PE's input registers
    cycle t+2+L  the PE's acc shows sum[t] (L = pe.latency); the golden sum has been delayed
                 through 1+L registers to meet it, and they are compared into a register
    cycle t+3+L  the mismatch bit updates ``failed`` (and ``fail_index``) at the clock edge

``failed`` is sticky; ``fail_index`` holds the first failing row. ``done`` rises
:attr:`SelfTest.run_cycles` cycles after reset.
"""

import numpy as np
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from hwq.errors import InputError
from hwq.formats import accumulate
from hwq.formats.base import check_int
from hwq.pe import ProcessingElement

__all__ = ["SelfTest", "Vectors", "make_vectors", "extreme_codes", "rom_layout", "rom_blocks", "check_args",
           "MAX_CYCLES", "MAX_SEED"]

#: most rows a self-test ROM may have
MAX_CYCLES = 1 << 14
#: largest stimulus seed
MAX_SEED = (1 << 32) - 1


class Vectors:
    """Per-cycle stimulus and golden sums of a self-test (numpy arrays of equal length).

    Attributes
    ----------
    a, w : numpy.ndarray of int64
        Activation and weight codes (unsigned bit patterns).
    valid, clear : numpy.ndarray of bool
        The PE's ``valid`` and ``clear`` inputs.
    expected : numpy.ndarray of int64
        ``sum[t]`` after cycle ``t``'s inputs, from :func:`hwq.formats.accumulate`.
    """

    def __init__(self, a, w, valid, clear, expected):
        self.a, self.w, self.valid, self.clear, self.expected = a, w, valid, clear, expected

    def __len__(self):
        return len(self.a)


def extreme_codes(fmt):
    """Codes worth testing in every format: 0, all ones, and those of the smallest and largest value.

    Parameters
    ----------
    fmt : hwq.formats.NumberFormat
        The format.

    Returns
    -------
    list of int
        Distinct codes, in that order.
    """
    codes = np.arange(1 << fmt.bits, dtype=np.int64)
    values = fmt.decode(codes)
    picks = [0, (1 << fmt.bits) - 1, int(codes[np.argmin(values)]), int(codes[np.argmax(values)])]
    return list(dict.fromkeys(picks))


def _limit_terms(valid, clear, max_terms):
    """Set ``clear`` where a sum would otherwise grow past ``max_terms`` terms (in place)."""
    terms = 0
    for t in range(len(valid)):
        if clear[t]:
            terms = 0
        if valid[t]:
            if terms == max_terms:
                clear[t] = True
                terms = 0
            terms += 1


def make_vectors(pe, cycles=512, seed=1):
    """Seeded stimulus for ``pe`` and the golden sum of every cycle.

    The cycles are, in order: a few random terms before the first ``clear`` (the sum starts
    from the reset state); every pair of :func:`extreme_codes` as a one-term sum, each with
    ``clear`` and ``valid`` high, so the clears come back to back with no idle cycle; a long run
    of the most negative product and one of the most positive (carries into the top accumulator
    bits); then uniform random codes with ``valid`` high 3/4 and ``clear`` 1/8 of the time. The
    list is cut to ``cycles``, and a ``clear`` is forced wherever a sum would pass
    ``pe.max_terms`` terms, so the accumulator never overflows.

    Parameters
    ----------
    pe : hwq.pe.ProcessingElement
        Gives the formats and ``max_terms``.
    cycles : int
        Number of cycles (rows), 1 to :data:`MAX_CYCLES`.
    seed : int
        Seed of the random part.

    Returns
    -------
    Vectors
    """
    cycles = check_int("cycles", cycles, 1, MAX_CYCLES)
    seed = check_int("seed", seed, 0, MAX_SEED)
    af, wf = pe.a_format, pe.w_format
    rng = np.random.default_rng(seed)
    a, w, valid, clear = [], [], [], []

    def emit(a_code, w_code, v, c):
        a.append(int(a_code))
        w.append(int(w_code))
        valid.append(bool(v))
        clear.append(bool(c))

    for _ in range(4):
        emit(rng.integers(1 << af.bits), rng.integers(1 << wf.bits), 1, 0)
    for ea in extreme_codes(af):
        for ew in extreme_codes(wf):
            emit(ea, ew, 1, 1)
    pairs = [(ea, ew) for ea in extreme_codes(af) for ew in extreme_codes(wf)]
    prods = [int(af.decode(np.int64(ea)) * wf.decode(np.int64(ew))) for ea, ew in pairs]
    run = max(1, min(pe.max_terms, cycles // 8))
    for pair in (pairs[int(np.argmin(prods))], pairs[int(np.argmax(prods))]):
        for i in range(run):
            emit(*pair, 1, i == 0)
    rest = max(0, cycles - len(a))
    a += rng.integers(1 << af.bits, size=rest).tolist()
    w += rng.integers(1 << wf.bits, size=rest).tolist()
    valid += (rng.random(rest) < 0.75).tolist()
    clear += (rng.random(rest) < 0.125).tolist()

    a = np.array(a[:cycles], dtype=np.int64)
    w = np.array(w[:cycles], dtype=np.int64)
    valid = np.array(valid[:cycles], dtype=bool)
    clear = np.array(clear[:cycles], dtype=bool)
    _limit_terms(valid, clear, pe.max_terms)
    expected = accumulate(af, a, wf, w, valid, clear)
    lo, hi = -(1 << (pe.acc_width - 1)), (1 << (pe.acc_width - 1)) - 1
    if expected.min() < lo or expected.max() > hi:
        raise InputError(f"golden sums do not fit the {pe.acc_width}-bit accumulator; check max_terms")
    return Vectors(a, w, valid, clear, expected)


def rom_layout(pe):
    """Layout of one ROM row: ``a``, ``w``, ``valid``, ``clear`` and the golden sum ``expect``."""
    return data.StructLayout({
        "a": unsigned(pe.a_format.bits),
        "w": unsigned(pe.w_format.bits),
        "valid": unsigned(1),
        "clear": unsigned(1),
        "expect": unsigned(pe.acc_width),
    })


def rom_blocks(pe, cycles):
    """iCE40 block RAMs (SB_RAM40_4K) a ``cycles``-row ROM for ``pe`` needs, in their best shape."""
    width = rom_layout(pe).size
    shapes = ((256, 16), (512, 8), (1024, 4), (2048, 2))      # SB_RAM40_4K depth x width
    return min(-(-cycles // depth) * -(-width // bits) for depth, bits in shapes)


def check_args(pe, cycles, seed, *, names=None):
    """Check :class:`SelfTest`'s arguments without building anything.

    Parameters
    ----------
    pe, cycles, seed
        As for :class:`SelfTest`.
    names : dict or None
        How the messages name ``cycles`` and ``seed`` (default: those words); a command line
        passes its options, e.g. ``{"cycles": "--cycles", "seed": "--seed"}``.

    Raises
    ------
    InputError
        If ``pe`` is not a processing element or needs an ``init`` sequence, or ``cycles`` or
        ``seed`` are out of range.
    """
    names = names or {}
    if not isinstance(pe, ProcessingElement):
        raise InputError(f"SelfTest needs a ProcessingElement, not {pe!r}")
    if pe.init_sequence() is not None:
        raise InputError(f"{pe.module_name} needs an init sequence, which SelfTest does not drive yet")
    check_int(names.get("cycles", "cycles"), cycles, 1, MAX_CYCLES)
    check_int(names.get("seed", "seed"), seed, 0, MAX_SEED)


class SelfTest(wiring.Component):
    """Power-on self-test of ``pe``: walk a ROM of stimulus once, compare ``acc`` every cycle.

    Parameters
    ----------
    pe : hwq.pe.ProcessingElement
        The PE under test; it becomes the submodule ``pe``. Extra input ports (a run-time
        ``mode``) stay at their initial value; the golden model uses ``pe.a_format`` and
        ``pe.w_format``.
    cycles : int
        ROM rows, one test cycle each (1 to :data:`MAX_CYCLES`). An iCE40 block RAM holds 512
        rows of 8 bits, so 512 rows take one block per 8 bits of row width (:func:`rom_layout`).
    seed : int
        Seed of the random stimulus (:func:`make_vectors`).

    Attributes
    ----------
    done : Signal(1), out
        Every row has been compared; stays high until reset.
    passed : Signal(1), out
        ``done`` and no mismatch.
    failed : Signal(1), out
        Sticky: some ``acc`` differed from the golden sum (may rise before ``done``).
    fail_index : Signal(range(cycles)), out
        Row of the first mismatch (valid while ``failed`` is high).
    vectors : Vectors
        The stimulus and golden sums in the ROM.

    Raises
    ------
    InputError
        If ``pe`` is not a processing element, needs an ``init`` sequence, or ``cycles`` or
        ``seed`` are out of range.
    """

    def __init__(self, pe, *, cycles=512, seed=1):
        check_args(pe, cycles, seed)
        self._pe = pe
        self._vectors = make_vectors(pe, cycles, seed)
        self._cycles = len(self._vectors)
        super().__init__({
            "done": Out(1),
            "passed": Out(1),
            "failed": Out(1),
            "fail_index": Out(range(max(2, self._cycles))),
        })

    @property
    def pe(self):
        """The processing element under test."""
        return self._pe

    @property
    def cycles(self):
        """Number of ROM rows (test cycles)."""
        return self._cycles

    @property
    def vectors(self):
        """The stimulus and golden sums (:class:`Vectors`)."""
        return self._vectors

    @property
    def run_cycles(self):
        """Clock cycles from the end of reset until ``done`` is high."""
        return self._cycles + 3 + self._pe.latency

    @property
    def rom_blocks(self):
        """iCE40 block RAMs (SB_RAM40_4K) the ROM needs (:func:`rom_blocks`)."""
        return rom_blocks(self._pe, self._cycles)

    def rom_init(self):
        """The ROM contents: one packed integer per row, fields as in :func:`rom_layout`."""
        layout = rom_layout(self._pe)
        v = self._vectors
        mask = (1 << self._pe.acc_width) - 1
        fields = {"a": v.a, "w": v.w, "valid": v.valid, "clear": v.clear, "expect": v.expected}
        rows = [0] * self._cycles
        for name, values in fields.items():
            offset = layout[name].offset
            for t, value in enumerate(values.tolist()):
                rows[t] |= (int(value) & (mask if name == "expect" else -1)) << offset
        return rows

    def elaborate(self, platform):
        m = Module()
        pe = self._pe
        m.submodules.pe = pe
        layout = rom_layout(pe)
        m.submodules.rom = rom = Memory(shape=unsigned(layout.size), depth=self._cycles,
                                        init=self.rom_init())
        port = rom.read_port(domain="sync")

        addr = Signal(range(self._cycles + 1))
        reading = Signal()      # the read data is a row (not reset or past the end)
        m.d.comb += port.addr.eq(addr)
        with m.If(addr != self._cycles):
            m.d.sync += addr.eq(addr + 1)
        m.d.sync += reading.eq(addr != self._cycles)
        row = layout(port.data)

        # the PE's inputs are registers loaded from the ROM
        m.d.sync += [
            pe.a.eq(row.a),
            pe.w.eq(row.w),
            pe.valid.eq(reading & row.valid),
            pe.clear.eq(reading & row.clear),
        ]

        # the golden sum waits 1 + latency cycles for the PE's acc
        expect, check = row.expect, reading
        for stage in range(1 + pe.latency):
            expect_q = Signal(pe.acc_width, name=f"expect_s{stage}", reset_less=True)
            check_q = Signal(name=f"check_s{stage}")
            m.d.sync += [expect_q.eq(expect), check_q.eq(check)]
            expect, check = expect_q, check_q

        # compare into a register, so the verdict logic is off the PE's paths
        mismatch = Signal()
        checked_row = Signal()
        m.d.sync += [mismatch.eq(check & (expect != pe.acc.as_unsigned())), checked_row.eq(check)]

        checked = Signal(range(self._cycles + 1))
        with m.If(checked_row):
            m.d.sync += checked.eq(checked + 1)
            with m.If(mismatch & ~self.failed):
                m.d.sync += [self.failed.eq(1), self.fail_index.eq(checked)]
        m.d.comb += [
            self.done.eq(checked == self._cycles),
            self.passed.eq(self.done & ~self.failed),
        ]
        return m
