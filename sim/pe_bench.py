"""cocotb 2.x testbench for any PE that keeps the port contract, driven from its manifest alone.

Run it through :func:`hwq.sim.runner.run_bench` (or ``hwq-sim MANIFEST.json``); it is
imported by cocotb inside the simulator.

Environment
-----------
HWQ_MANIFEST
    Path of the ``<module>.json`` manifest (required).
HWQ_SEED
    Seed of every random choice (default 1); the same seed drives the same cycles.
HWQ_RANDOM_CYCLES
    Cycles of the random test, and random pairs of the wide-code test (default 20000).

Tests (each runs once per run-time mode of the manifest, with the mode's ``set`` inputs held)
-----------------------------------------------------------------------------------------------
exhaustive
    Codes of <= 8 bits: every ``(a, w)`` pair, shuffled, back to back in sums of random length
    1..8 (each starting with ``clear``, no idle cycle). Wider codes: every pair of extreme codes
    plus ``HWQ_RANDOM_CYCLES`` seeded random pairs.
random_sums
    Random codes (uniform, 1 in 8 an extreme code), random ``valid``, random ``clear``; a clear is
    forced before a sum would exceed ``max_terms`` terms.
max_terms
    ``max_terms`` copies of the most positive product, then (cleared without an idle cycle)
    ``max_terms`` copies of the most negative one: no overflow, ``acc`` exact.
reset_mid_sum
    Reset in the middle of sums (with ``valid`` high during the reset cycle): after the reset
    (and ``init``) and ``latency`` idle cycles ``acc`` is 0, and accumulation continues from 0.

How the DUT is driven
---------------------
Inputs change on the falling clock edge; ``acc`` is read on the falling edge too, so the value
read at falling edge ``t + latency`` is the sum after cycle ``t``. Codes are driven as their bit
patterns (unsigned ints; cocotb 2.1 accepts any int in ``[-2**(n-1), 2**n - 1]`` for an
``n``-bit vector, so this works whether or not the Verilog port is declared signed). ``acc`` is
compared as a bit string (which also catches X/Z). Expected values come from
:mod:`hwq.sim.reference`, built by :func:`hwq.sim.golden.bench_models` (which the runner also calls
before it builds): the manifest's codebooks are first checked against
``hwq.formats.from_params(...).codebook()``, and codebooks the manifest leaves out (codes > 10
bits) are taken from ``hwq.formats``. Expected sums are computed and compared in chunks of
:data:`CHUNK` cycles, so a long stream (``max_terms`` up to :data:`hwq.manifest.MAX_TERMS`, or
``HWQ_RANDOM_CYCLES``) holds only its inputs, not every expected sum, in memory.

On a mismatch the test fails with an :class:`AssertionError` naming the test, mode, cycle, the
last inputs (codes and decoded values), and the expected and actual ``acc``.
"""

import os
import random
import time
from fractions import Fraction

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge

from ..errors import InputError
from ..manifest import read_manifest
from .golden import bench_models
from .reference import ReferenceModelError, decode_signed, expected_sums, init_cycles

#: period of the generated clock, ns
CLOCK_NS = 10
#: codes of at most this many bits (both operands) are tested exhaustively
EXHAUSTIVE_BITS = 8
#: longest sum in the exhaustive test
EXHAUSTIVE_SUM_MAX = 8
#: cycles whose expected sums are computed (and held) at a time
CHUNK = 1 << 16


def _env_int(name, default):
    text = os.environ.get(name, "")
    try:
        return int(text) if text.strip() else default
    except ValueError:
        raise ReferenceModelError(f"environment variable {name} must be an integer, not {text!r}") from None


def _require(condition, message):
    """Raise :class:`AssertionError` with ``message`` (a string or a callable giving one) unless ``condition``."""
    if not condition:
        raise AssertionError(message() if callable(message) else message)


class Setup:
    """Everything the tests need from the manifest, loaded once per simulator run.

    Attributes
    ----------
    manifest : dict
    modes, models, extremes, golden
        As in :class:`hwq.sim.golden.BenchModels`.
    """

    def __init__(self, path):
        self.path = path
        self.manifest = m = read_manifest(path)
        self.seed = _env_int("HWQ_SEED", 1)
        self.random_cycles = _env_int("HWQ_RANDOM_CYCLES", 20000)
        self.latency = m["latency"]
        self.max_terms = m["max_terms"]
        self.ports = m["ports"]
        self.widths = {role: self.ports[role]["width"] for role in ("a", "w", "acc")}
        self.init = init_cycles(m)
        try:
            built = bench_models(m, path)        # the runner ran the same checks before building
        except InputError as exc:
            raise AssertionError(str(exc)) from None
        self.modes = built.modes
        self.models = built.models
        self.extremes = built.extremes
        self.golden = built.golden


_SETUP = None


def setup():
    """The :class:`Setup` of ``$HWQ_MANIFEST`` (loaded on first use)."""
    global _SETUP
    if _SETUP is None:
        path = os.environ.get("HWQ_MANIFEST")
        if not path:
            raise ReferenceModelError("set HWQ_MANIFEST to the PE's manifest (<module>.json); use hwq.sim.runner.run_bench")
        _SETUP = Setup(path)
    return _SETUP


def _port_name(ports, key):
    entry = ports.get(key, key)
    return entry["name"] if isinstance(entry, dict) else entry


class Bench:
    """Drives one DUT for one test: clock, reset, init, held mode inputs, checked streams.

    The bench tracks the model state between streams: :attr:`sum` (the sum after the last
    driven cycle) and :attr:`pending` (the ``latency - 1`` sums still in flight, which ``acc``
    shows on the next falling edges).
    """

    def __init__(self, dut, test):
        self.s = s = setup()
        self.dut = dut
        self.test = test
        self.latency = s.latency
        self.cycle = 0            # falling edges seen since the test started
        ports = s.ports
        self.handle = {key: self._get(_port_name(ports, key))
                       for key in ("clk", "rst", "valid", "clear", "a", "w", "acc")}
        for role in ("a", "w", "acc"):
            n = len(self.handle[role])
            _require(n == s.widths[role], f"port {_port_name(ports, role)} is {n} bits in the Verilog "
                                          f"but {s.widths[role]} in the manifest {s.path}")
        self.acc_width = s.widths["acc"]
        self.acc_mask = (1 << self.acc_width) - 1
        self.extra = {}           # ports named only by modes / init
        keys = [k for mode in s.modes for k in mode.set] + [k for entry in s.init for k in entry]
        for key in keys:
            if key not in self.handle and key not in self.extra:
                self.extra[key] = self._get(_port_name(ports, key))
        self.fall = FallingEdge(self.handle["clk"])
        self.last = {}            # last value driven on each port key
        self.mode = None
        self.model = None
        self.sum = 0
        self.pending = [0] * (self.latency - 1)
        # the clock in C (GPI), also on Icarus where cocotb would default to a Python task: inputs
        # change only on falling edges, so no write races the rising edge, and it halves the run time
        Clock(self.handle["clk"], CLOCK_NS, unit="ns", impl="gpi").start()

    def _get(self, name):
        try:
            return getattr(self.dut, name)
        except AttributeError:
            raise AssertionError(f"the DUT has no port {name!r} (named in the manifest {self.s.path})") from None

    def drive(self, key, value):
        """Drive port ``key`` (a manifest port key) with ``value`` unless it already holds it."""
        if self.last.get(key) != value:
            handle = self.handle[key] if key in self.handle else self.extra[key]
            handle.value = value
            self.last[key] = value

    def drive_idle(self, **override):
        """Drive every input 0 except the held mode inputs and ``override``."""
        values = {k: 0 for k in ("rst", "valid", "clear", "a", "w")}
        values.update({k: 0 for k in self.extra})
        values.update(self.mode.set)
        values.update(override)
        for key, value in values.items():
            self.drive(key, value)

    async def tick(self, n=1):
        """Wait ``n`` clock cycles (falling edge to falling edge)."""
        for _ in range(n):
            await self.fall
            self.cycle += 1

    async def reset(self, mode=None, *, cycles=2, what="reset", **during):
        """Reset, run ``init``, wait ``latency`` idle cycles and check ``acc == 0``.

        ``mode`` selects a new mode (its ``set`` inputs are held from now on); ``during``
        gives input values to drive while ``rst`` is high (all 0 otherwise).
        """
        if mode is not None:
            self.mode = mode
            self.model = self.s.models[mode.name]
            self.extremes = self.s.extremes[mode.name]
        self.drive_idle(rst=1, **during)
        await self.tick(cycles)
        for entry in self.s.init:
            self.drive_idle(**entry)
            await self.tick()
        self.drive_idle()
        await self.tick(self.latency)
        self.expect_acc(0, f"{what}: {cycles} reset cycle(s), {len(self.s.init)} init cycle(s) "
                           f"and {self.latency} idle cycle(s)")
        self.sum = 0
        self.pending = [0] * (self.latency - 1)

    # ------------------------------------------------------------------ checking

    def _actual(self, got):
        try:
            return f"{decode_signed(int(got, 2), self.acc_width)} (0b{got})"
        except ValueError:
            return f"{got} (not a number)"

    def _value(self, x):
        lsb = self.model.acc_lsb_exp
        return f"{x}" if lsb == 0 else f"{x} (= {x} * 2**{lsb} = {Fraction(x) * Fraction(2) ** lsb})"

    def describe(self, role, code):
        """``"0xfe (-2)"``: a code and its decoded value."""
        return f"0x{code:0{(self.s.widths[role] + 3) // 4}x} ({self.model.value(role, code)})"

    def _head(self, cycle, what):
        return (f"{self.test} [mode {self.mode.label}] FAILED at cycle {cycle} "
                f"(t={get_sim_time('ns'):g} ns; {what})")

    def expect_acc(self, value, what):
        """Check ``acc`` now (no clock edge)."""
        got = str(self.handle["acc"].value)
        if got != format(value & self.acc_mask, f"0{self.acc_width}b"):
            raise AssertionError(f"{self._head(self.cycle, what)}: acc expected {self._value(value)}, "
                                 f"actual {self._actual(got)}; seed {self.s.seed}")

    def _fail(self, name, where, i, expected, got, a, w, valid, clear):
        t = i - (self.latency - 1)      # the stream cycle whose sum edge i shows
        parts = [f"{self._head(self.cycle + i + 1, name + (', ' + where if where else ''))}: "
                 f"acc expected {self._value(expected)}, actual {self._actual(got)}"]
        if 0 <= t < len(a):
            start = t
            while start > 0 and not clear[start]:
                start -= 1
            parts.append(f"; last inputs (stream cycle {t} of {len(a)}, {self.latency} cycle(s) earlier): "
                         f"a={self.describe('a', a[t])} w={self.describe('w', w[t])} "
                         f"valid={valid[t]} clear={clear[t]}"
                         + (f" product={self.model.product(a[t], w[t])}" if valid[t] else "")
                         + f"; this sum began at stream cycle {start}"
                         + ("" if clear[start] else " (no clear: continued from the previous sum)"))
        elif t < 0:
            parts.append(f"; the value still in flight from before this stream (latency {self.latency})")
        else:
            parts.append("; idle cycles after the stream")
        parts.append(f"; seed {self.s.seed}")
        raise AssertionError("".join(parts))

    async def stream(self, name, a, w, valid, clear, *, drain=True, where=""):
        """Drive one cycle per list entry and check ``acc`` on every falling edge.

        With ``drain``, ``latency - 1`` idle cycles follow so that every sum of the stream is
        seen; without, the last sums stay :attr:`pending` for the next stream. Returns the sum
        after the last cycle.
        """
        n = len(a)
        lat = self.latency
        total = n + (lat - 1 if drain else 0)             # falling edges checked
        lo, hi = -(1 << (self.acc_width - 1)), (1 << (self.acc_width - 1)) - 1
        width, mask = self.acc_width, self.acc_mask
        h = self.handle
        ha, hw, hv, hc, hacc = h["a"], h["w"], h["valid"], h["clear"], h["acc"]
        fall = self.fall
        last = self.last
        pa, pw, pv, pc = last.get("a"), last.get("w"), last.get("valid"), last.get("clear")
        i = 0                                             # exp index: acc on the edge after driving cycle i
        tail = []                                         # the last lat - 1 values of exp
        final = self.sum
        for chunk in self._expected(a, w, valid, clear):
            out = [x for x in chunk if not lo <= x <= hi]
            _require(not out, lambda: f"{self._head(self.cycle, name)}: the expected sum {out[0]} does not fit the "
                              f"{self.acc_width}-bit acc (max_terms {self.s.max_terms}): the manifest's acc width "
                              f"or max_terms is wrong")
            final = chunk[-1]
            if lat > 1:
                tail = (tail + chunk)[-(lat - 1):]
            exp_strs = [format(x & mask, f"0{width}b") for x in chunk[:total - i]]
            for j, expected in enumerate(exp_strs):
                if i < n:
                    x = a[i]
                    if x != pa:
                        ha.value = pa = x
                    x = w[i]
                    if x != pw:
                        hw.value = pw = x
                    x = valid[i]
                    if x != pv:
                        hv.value = pv = x
                    x = clear[i]
                    if x != pc:
                        hc.value = pc = x
                elif i == n:
                    if pv:
                        hv.value = pv = 0
                    if pc:
                        hc.value = pc = 0
                await fall
                got = hacc.value
                if got != expected:
                    last.update(a=pa, w=pw, valid=pv, clear=pc)
                    self._fail(name, where, i, chunk[j], str(got), a, w, valid, clear)
                i += 1
        self.cycle += total
        last.update(a=pa, w=pw, valid=pv, clear=pc)
        if n:
            self.sum = final
        self.pending = [self.sum] * (lat - 1) if drain else tail
        return self.sum

    def _expected(self, a, w, valid, clear):
        """``acc`` on every edge of a stream, in chunks: the :attr:`pending` sums, then the sums of
        the stream's cycles, :data:`CHUNK` cycles at a time (each computed as it is needed)."""
        if not len(w) == len(valid) == len(clear) == len(a):
            raise ReferenceModelError("a, w, valid, clear must have the same length")
        product = self.model.table() if self._tabled() else self.model
        if self.pending:
            yield list(self.pending)
        start = self.sum
        for c in range(0, len(a), CHUNK):
            sums = expected_sums(product, a[c:c + CHUNK], w[c:c + CHUNK], valid[c:c + CHUNK],
                                 clear[c:c + CHUNK], start=start)
            start = sums[-1]
            yield sums

    def _tabled(self):
        return self.s.widths["a"] + self.s.widths["w"] <= 2 * EXHAUSTIVE_BITS


# ---------------------------------------------------------------------- stimulus


def _split_sums(rng, n, longest):
    """``clear`` flags that cut ``n`` cycles into sums of random length ``1..longest``."""
    clear = [0] * n
    i = 0
    while i < n:
        clear[i] = 1
        i += rng.randint(1, longest)
    return clear


def _random_stream(rng, b, n, *, p_valid=0.8, p_clear=1 / 12, p_extreme=1 / 8, first=(None, 1)):
    """Random codes / valid / clear for ``n`` cycles; no sum gets more than ``max_terms`` terms.

    ``first`` forces ``(valid, clear)`` of the first cycle (``None``: random); the stream is
    assumed to start a new sum (after a clear or a reset).
    """
    na, nw = 1 << b.s.widths["a"], 1 << b.s.widths["w"]
    ea, ew, _ = b.extremes
    max_terms = b.s.max_terms
    a, w, valid, clear = [], [], [], []
    terms = 0
    rand, randrange, choice = rng.random, rng.randrange, rng.choice
    for t in range(n):
        c = int(rand() < p_clear)
        v = int(rand() < p_valid)
        if t == 0:
            v = v if first[0] is None else first[0]
            c = c if first[1] is None else first[1]
        if c:
            terms = 0
        if v:
            if terms >= max_terms:
                c, terms = 1, 0
            terms += 1
        a.append(choice(ea) if rand() < p_extreme else randrange(na))
        w.append(choice(ew) if rand() < p_extreme else randrange(nw))
        valid.append(v)
        clear.append(c)
    return a, w, valid, clear


def _rng(s, test, mode):
    return random.Random(f"{s.seed}:{test}:{mode.label}")


async def _each_mode(dut, test, body):
    b = Bench(dut, test)
    log = dut._log
    log.info("%s: %s; latency %d, max_terms %d, mode(s) %s", b.s.manifest["module"], b.s.golden,
             b.latency, b.s.max_terms, ", ".join(m.label for m in b.s.modes))
    for mode in b.s.modes:
        t0 = time.perf_counter()
        c0 = b.cycle
        await b.reset(mode, what="reset at the start")
        await body(b, _rng(b.s, test, mode))
        log.info("%s [mode %s]: %d cycles checked in %.2f s", test, mode.label, b.cycle - c0,
                 time.perf_counter() - t0)


# ---------------------------------------------------------------------- tests


@cocotb.test()
async def exhaustive(dut):
    """Every code pair (codes <= 8 bits) or all extreme pairs + seeded random pairs, in short sums."""

    async def body(b, rng):
        s = b.s
        longest = min(EXHAUSTIVE_SUM_MAX, s.max_terms)
        na, nw = 1 << s.widths["a"], 1 << s.widths["w"]
        if s.widths["a"] <= EXHAUSTIVE_BITS and s.widths["w"] <= EXHAUSTIVE_BITS:
            pairs = [(x, y) for x in range(na) for y in range(nw)]
            where = f"all {len(pairs)} code pairs"
        else:
            ea, ew, _ = b.extremes
            corner = [(x, y) for x in ea for y in ew]
            # each extreme pair alone (a one-term sum: acc = its product) ...
            ones = [1] * len(corner)
            await b.stream("exhaustive", [p[0] for p in corner], [p[1] for p in corner], ones, ones,
                           drain=False, where=f"{len(corner)} extreme pairs, one per sum")
            # ... then again, mixed with random pairs into longer sums
            pairs = corner + [(rng.randrange(na), rng.randrange(nw)) for _ in range(s.random_cycles)]
            where = f"{len(corner)} extreme + {s.random_cycles} random pairs"
        rng.shuffle(pairs)
        n = len(pairs)
        await b.stream("exhaustive", [p[0] for p in pairs], [p[1] for p in pairs], [1] * n,
                       _split_sums(rng, n, longest), where=where)

    await _each_mode(dut, "exhaustive", body)


@cocotb.test()
async def random_sums(dut):
    """Seeded random codes, valid and clear (clear with and without valid, no idle cycles)."""

    async def body(b, rng):
        a, w, valid, clear = _random_stream(rng, b, b.s.random_cycles)
        await b.stream("random_sums", a, w, valid, clear, where=f"{len(a)} random cycles")

    await _each_mode(dut, "random_sums", body)


@cocotb.test()
async def max_terms(dut):
    """``max_terms`` x the most positive product, then x the most negative: no overflow."""

    async def body(b, rng):
        k = b.s.max_terms
        for (x, y, p) in b.extremes[2]:
            where = (f"{k} x a={b.describe('a', x)} * w={b.describe('w', y)} = {k} x {p}")
            await b.stream("max_terms", [x] * k, [y] * k, [1] * k, [1] + [0] * (k - 1), where=where)
            b.expect_acc(k * p, f"max_terms, final sum of {where}")

    await _each_mode(dut, "max_terms", body)


@cocotb.test()
async def reset_mid_sum(dut):
    """Reset (with valid high) in the middle of sums; acc is 0 after it and sums restart from 0."""

    async def body(b, rng):
        (xa, ya, _), (xb, yb, _) = b.extremes[2]
        for rep in range(8):
            n1 = rng.randint(1, 40)
            a, w, valid, clear = _random_stream(rng, b, n1, p_valid=0.9, p_clear=1 / 20)
            await b.stream("reset_mid_sum", a, w, valid, clear, drain=rep % 2 == 1,
                           where=f"before reset {rep}")
            x, y = (xa, ya) if rep % 2 else (xb, yb)
            await b.reset(cycles=1 + rep % 3 // 2, what=f"reset_mid_sum, reset {rep}",
                          valid=1, clear=int(rep % 4 == 3), a=x, w=y)
            n2 = rng.randint(1, 40)
            # the first cycle continues from 0 without a clear
            a, w, valid, clear = _random_stream(rng, b, n2, p_valid=0.9, p_clear=1 / 20, first=(1, 0))
            await b.stream("reset_mid_sum", a, w, valid, clear, drain=True,
                           where=f"after reset {rep}, no clear")

    await _each_mode(dut, "reset_mid_sum", body)


@cocotb.test()
async def workload(dut):
    """The operand stream of ``$HWQ_WORKLOAD`` (:mod:`hwq.sim.workload`: a real layer's codes),
    in the mode ``$HWQ_WORKLOAD_MODE`` (or the PE's only one), every sum checked. Without
    ``$HWQ_WORKLOAD`` (the runner then does not select this test) it drives nothing."""
    from .workload import load_workload

    path = os.environ.get("HWQ_WORKLOAD")
    if not path:
        dut._log.info("workload: no $HWQ_WORKLOAD; nothing to stream")
        return
    arrays, _ = load_workload(path)
    label = os.environ.get("HWQ_WORKLOAD_MODE") or None
    b = Bench(dut, "workload")
    modes = [m for m in b.s.modes if label is None or m.name == label]
    _require(len(modes) == 1, f"workload mode {label!r} is not one mode of {b.s.manifest['module']}: "
                              f"{', '.join(str(m.name) for m in b.s.modes)}")
    await b.reset(modes[0], what="reset at the start")
    a, w, valid, clear = ([int(v) for v in arrays[key]] for key in ("a", "w", "valid", "clear"))
    await b.stream("workload", a, w, valid, clear, where=f"{len(a)} cycles of {path}")
