# amaranth: UnusedElaboratable=no
"""Formal proofs of the accelerator's blocks (hwq.accel.formal), and mutants that must fail them.

- Encoder: every 4-bit activation format's table in one encoder (the table switching every
  cycle), k-induction for every quotient of the full 64-bit width; each 8-bit format alone in the
  slow suite (about 10 s each).
- Requantizer (product abstracted): 4-bit tables, uniform and searched, for every product the
  multiplier can make and every shift; 8-bit tables in the slow suite.
- Address generator: the tiny model's linear step with any two stall cycles (default), its conv
  step with one (slow); bounded model checks over the whole step.
- Accelerator: the tiny model, every step and the whole inference (default); the digits CNN's
  architecture (width 1) in the slow suite.

Each proof has a mutant (a flipped tie flag, a threshold or a bound off by one, a wrong
descriptor) that must fail with a counterexample.
"""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hwq.accel.address import ConvAddressGenerator
from hwq.accel.formal import (REFERENCE_MAX_GRID, AcceleratorProperties, AddressGeneratorProperties,
                              EncoderProperties, FreeProductRequantizer, RequantizerProperties,
                              prove_accelerator, prove_address_generator, prove_encoder, prove_requantizer,
                              reference_code)
from hwq.accel.requant import MAX_Q_WIDTH, Requantizer, ThresholdEncoder, uniform_table
from hwq.accel.schedule import Array, schedule
from hwq.errors import InputError
from hwq.formats import Ant, Ausn, Esb, FixedPoint, Uniq
from hwq.formats.ant import ANT_TYPES
from hwq.integer.requant import EncoderTable
from hwq.pe.formal import prove_component
from tests.accel.test_requant import distinct_tables


def _formats(bits):
    """The activation formats of ``bits`` bits hwq supports, built as tests/accel/test_requant.py
    builds them: fixed point (``half_even``: uniform; signed ``half_away``: searched), every ANT type
    (``pot`` up to 5 magnitude bits), ESB, AUSN (signed and unsigned), UNIQ."""
    out = []
    for signed_ in (True, False):
        out += [FixedPoint(bits, signed=signed_), FixedPoint(bits, signed=signed_, rounding="half_away")]
        for kind in ANT_TYPES:
            try:
                out.append(Ant(bits, type=kind, signed=signed_))
            except InputError:                          # pot above 5 magnitude bits
                pass
        out += [Esb(bits, signed=signed_), Ausn(bits, signed=signed_)]
    out.append(Uniq(bits))
    return out


TABLES4 = distinct_tables(_formats(4))
TABLES8 = distinct_tables(_formats(8))


def _mutant(table, *, flip=None, shift=None):
    """``table`` with tie flag ``flip`` inverted, or threshold ``shift`` one (doubled) unit higher."""
    up, t2 = table.up_on_tie.copy(), table.thresholds2.copy()
    if flip is not None:
        up[flip] = ~up[flip]
    if shift is not None:
        t2[shift] += 1
    return EncoderTable(table.format, table.grid, table.codes, t2, up)


def _failed(result):
    """A mutant's result: sby found a real counterexample (status FAIL, with a trace)."""
    return result.status == "FAIL" and result.trace is not None and result.trace.exists()


# --- the reference itself ---------------------------------------------------------------------


class _Reference(wiring.Component):
    def __init__(self, tables, q_width):
        self._tables = tables
        bits = max(len(t.grid) for t in tables).bit_length()
        super().__init__({"q": In(signed(q_width)), "sticky": In(1), "table": In(4), "low": In(bits),
                          "high": In(bits), "code": Out(16)})

    def elaborate(self, platform):
        m = Module()
        code = reference_code(m, self._tables, self.table, self.q, self.sticky, self.low, self.high, width=16)
        m.d.comb += self.code.eq(code)
        return m


def test_reference_is_the_numpy_encoder():
    """The comparison chain is :meth:`EncoderTable.index` (numpy, hwq.integer.requant), clamped, on
    every quotient around every table's thresholds (and with a random clamp)."""
    tables = [EncoderTable.of(f) for f in (FixedPoint(4), Uniq(4), Ant(4, type="flint", signed=False),
                                           Esb(4, signed=True), FixedPoint(4, signed=True, rounding="half_away"))]
    dut = _Reference(tables, 12)
    rng = np.random.default_rng(0)
    cases = []
    for i, t in enumerate(tables):
        for q, sticky in itertools.product(range(int(t.thresholds2.min()) - 3, int(t.thresholds2.max()) + 4), (0, 1)):
            low, high = sorted(rng.integers(0, len(t.grid), 2)) if rng.random() < 0.3 else (0, len(t.grid) - 1)
            # (q, sticky) is the quotient of 2n >> 2 for n = 2q + sticky
            index = int(np.clip(t.index(np.array([2 * q + sticky]), 2)[0], low, high))
            cases.append((i, q, sticky, int(low), int(high), int(t.codes[index])))
    got = []

    async def bench(ctx):
        for i, q, sticky, low, high, _ in cases:
            ctx.set(dut.table, i)
            ctx.set(dut.q, q)
            ctx.set(dut.sticky, sticky)
            ctx.set(dut.low, low)
            ctx.set(dut.high, high)
            got.append(ctx.get(dut.code))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert got == [c[-1] for c in cases]


# --- 1. the encoder ---------------------------------------------------------------------------


def test_encoder_proves_every_4bit_format(tmp_path):
    """All distinct 4-bit tables (uniform and searched) in one encoder of the full quotient width."""
    assert len(TABLES4) >= 14 and any(uniform_table(t) for t in TABLES4) and not all(uniform_table(t) for t in TABLES4)
    encoder = ThresholdEncoder(TABLES4, q_width=MAX_Q_WIDTH)
    result = prove_encoder(encoder, tmp_path)
    assert result.passed, result.log


@pytest.mark.slow
@pytest.mark.parametrize("table", TABLES8, ids=[f"{i}-{type(t.format).__name__}" for i, t in enumerate(TABLES8)])
def test_encoder_proves_8bit_format(tmp_path, table):
    """Each 8-bit table alone (searched: up to 8 compare stages and block-RAM lookups; uniform: 256
    values computed), full quotient width."""
    result = prove_encoder(ThresholdEncoder([table], q_width=MAX_Q_WIDTH), tmp_path)
    assert result.passed, result.log


@pytest.mark.parametrize("fmt, mutation", [
    (Uniq(4), {"flip": 7}),                                 # searched: one tie goes the other way
    (FixedPoint(4, signed=False), {"shift": 9}),            # uniform: one threshold off by one
])
def test_encoder_mutants_fail(tmp_path, fmt, mutation):
    table = EncoderTable.of(fmt)
    encoder = ThresholdEncoder([_mutant(table, **mutation)], q_width=MAX_Q_WIDTH)
    result = prove_encoder(encoder, tmp_path, tables=[table])
    assert _failed(result), result.log


# --- 2. the requantizer -----------------------------------------------------------------------


REQUANT4 = [EncoderTable.of(f) for f in (FixedPoint(4, signed=False), Uniq(4), Ant(4, type="flint", signed=False),
                                         Esb(4, signed=True))]


def test_requantizer_proves_4bit_tables(tmp_path):
    """Widest accumulator (45 bits: a 62-bit numerator), every product the multiplier can make, every
    shift 0 to 63, four tables (one uniform) switching every cycle."""
    rq = FreeProductRequantizer(REQUANT4, acc_width=45)
    result = prove_requantizer(rq, tmp_path)
    assert result.passed, result.log


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [FixedPoint(8, signed=True), FixedPoint(8, signed=False), Uniq(8),
                                 Ant(8, type="flint", signed=False)],
                         ids=["fxp8-signed", "fxp8-unsigned", "uniq8", "ant8-flint-unsigned"])
def test_requantizer_proves_8bit_table(tmp_path, fmt):
    rq = FreeProductRequantizer([EncoderTable.of(fmt)], acc_width=32)
    result = prove_requantizer(rq, tmp_path)
    assert result.passed, result.log


class _DropsLsb(FreeProductRequantizer):
    """Mutant: the shifter sees the product with its lowest bit cleared (a truncated numerator)."""

    def elaborate_product(self, m, total, multiplier):
        return super().elaborate_product(m, total, multiplier) & ~1


def test_requantizer_mutants_fail(tmp_path):
    table = EncoderTable.of(Uniq(4))
    flipped = FreeProductRequantizer([_mutant(table, flip=8)], acc_width=16)
    assert _failed(prove_requantizer(flipped, tmp_path / "flip", tables=[table]))
    assert _failed(prove_requantizer(_DropsLsb([table], acc_width=16), tmp_path / "lsb"))


def test_requantizer_hook_keeps_the_product():
    """The hook is the plain product (tests/accel/test_requant.py simulates it against numpy)."""
    rq = Requantizer([EncoderTable.of(FixedPoint(4))], acc_width=8)
    a, b = Signal(signed(rq.sum_width)), Signal(16)
    assert repr(rq.elaborate_product(Module(), a, b)) == repr(a * b)


# --- 3. the sequencer -------------------------------------------------------------------------


#: the tiny CNN's array
TINY_ARRAY = Array(2, 2)


def _tiny_model():
    """A tiny CNN: a padded 3 x 3 conv (ReLU), a max pool and a linear layer (fxp4; fxp16 scores),
    as an integer model."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from hwq.quant import quantize
    from hwq.quant.integer import integer_model

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 2 * 2, 3)

        def forward(self, x):
            return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))

    torch.manual_seed(0)
    return integer_model(quantize(Tiny().eval(), "fxp4", "fxp4", calibration=[torch.randn(8, 1, 4, 4)]))


@pytest.fixture(scope="module")
def tiny():
    """The tiny CNN's schedule on a 2 x 2 array: about 200 cycles."""
    return schedule(_tiny_model(), (1, 4, 4), TINY_ARRAY)


def _conv_steps(sched):
    return [s for s in sched.steps if s.kind == "conv"]


def test_address_generator_with_stalls(tiny, tmp_path):
    """The linear step (two tiles, fan-in 8) with any two stall cycles: addresses in range, ``done``
    exactly ``latency + transfers + stalls`` after ``start``."""
    steps = _conv_steps(tiny)
    result = prove_address_generator(ConvAddressGenerator.for_steps(steps), steps[-1], tmp_path, max_stalls=2)
    assert result.passed, result.log


@pytest.mark.slow
def test_address_generator_conv_step_with_a_stall(tiny, tmp_path):
    """The padded conv step (8 position tiles of 9) with any one stall cycle."""
    steps = _conv_steps(tiny)
    result = prove_address_generator(ConvAddressGenerator.for_steps(steps), steps[0], tmp_path, max_stalls=1)
    assert result.passed, result.log


@pytest.mark.parametrize("mutation", ["region", "cycles"])
def test_address_generator_mutants_fail(tiny, tmp_path, mutation):
    """The input region one word short (the generator reads its last word), or the bound one cycle
    short."""
    steps = _conv_steps(tiny)
    step = steps[-1]
    gen = ConvAddressGenerator.for_steps(steps)
    if mutation == "region":
        kwargs = {"region": (step.src.base, step.src.base + step.src.size - 1)}
    else:
        kwargs = {"cycles": gen.latency + step.tiles * -(-step.positions // gen.rows) * step.fan_in - 1}
    assert _failed(prove_address_generator(gen, step, tmp_path, **kwargs))


def test_accelerator_runs_the_schedule_in_time(tiny, tmp_path):
    """Every step of the tiny model (conv, max pool, linear) within its computed cycles, no access out
    of its regions, the inference exactly ``expected_cycles``, for every input image."""
    result = prove_accelerator(tiny, tmp_path)
    assert result.passed, result.log


def test_accelerator_mutant_descriptor_fails(tiny, tmp_path):
    """The conv step's ROM entry writes one word below its output region."""
    wrapper = AcceleratorProperties(tiny)
    rom = wrapper.accelerator._rom
    index = next(i for i, (unit, _, _) in enumerate(rom) if unit == "conv")
    unit, desc, step = rom[index]
    rom[index] = (unit, {**desc, "dst_base": desc["dst_base"] - 1}, step)
    result = prove_component(wrapper, tmp_path, name="mutant", depth=wrapper.expected_cycles, mode="bmc",
                             script=("flatten", "opt_clean"))
    assert _failed(result), result.log


@pytest.mark.slow
@pytest.mark.parametrize("delta", [-1, 1])
def test_accelerator_mutant_bound_fails(tiny, tmp_path, delta):
    """The inference bound one cycle off either way: the count is exact."""
    probe = AcceleratorProperties(tiny)
    probe._MustUse__silence = probe.accelerator._MustUse__silence = True       # never elaborated
    assert _failed(prove_accelerator(tiny, tmp_path, cycles=probe.expected_cycles + delta))


@pytest.mark.slow
def test_accelerator_with_weight_loads(tmp_path):
    """The tiny model with a weight store (both layers' weights loaded before them): the preload,
    the load steps and the layers, in time."""
    sched = schedule(_tiny_model(), (1, 4, 4), TINY_ARRAY, weight_capacity=20)
    assert set(sched.loads) == {"conv", "fc"}
    result = prove_accelerator(sched, tmp_path)
    assert result.passed, result.log


@pytest.mark.slow
def test_accelerator_digits_cnn(tmp_path):
    """The digits CNN's architecture (width 1: conv, conv, max pool, conv, residual add, global
    average pool, linear) on an 8 x 2 array, every step and the inference (about 850 cycles)."""
    import torch

    from hwq.quant import quantize
    from hwq.quant.digits import DigitsCNN
    from hwq.quant.integer import integer_model

    torch.manual_seed(0)
    imodel = integer_model(quantize(DigitsCNN(width=1).eval(), "fxp4", "fxp4", calibration=[torch.rand(16, 1, 8, 8)]))
    sched = schedule(imodel, (1, 8, 8), Array(8, 2))
    assert {s.kind for s in sched.steps} == {"conv", "maxpool", "add", "avgpool"}
    result = prove_accelerator(sched, tmp_path, timeout=1800)
    assert result.passed, result.log


# --- arguments ----------------------------------------------------------------------------------


def test_bad_arguments(tiny):
    table = EncoderTable.of(FixedPoint(4))
    with pytest.raises(InputError, match="ThresholdEncoder"):
        EncoderProperties(object())
    with pytest.raises(InputError, match="REFERENCE_MAX_GRID"):
        EncoderProperties(ThresholdEncoder([EncoderTable.of(FixedPoint(12))], q_width=16))
    with pytest.raises(InputError, match="2 tables"):
        EncoderProperties(ThresholdEncoder([table, table], q_width=8), tables=[table])
    with pytest.raises(InputError, match="FreeProductRequantizer"):
        RequantizerProperties(Requantizer([table], acc_width=8))
    with pytest.raises(InputError, match="bound"):
        RequantizerProperties(FreeProductRequantizer([table], acc_width=8), bound=-1)
    with pytest.raises(InputError, match="ConvAddressGenerator"):
        AddressGeneratorProperties(object(), _conv_steps(tiny)[0])
    gen = ConvAddressGenerator.for_steps(_conv_steps(tiny))
    gen._MustUse__silence = True                            # never elaborated
    with pytest.raises(InputError, match="max_stalls"):
        AddressGeneratorProperties(gen, _conv_steps(tiny)[0], max_stalls=-1)
    with pytest.raises(InputError, match="Schedule"):
        AcceleratorProperties(object())
    assert REFERENCE_MAX_GRID >= 256


def test_prove_component_checks_mode_and_script(tmp_path):
    wrapper = EncoderProperties(ThresholdEncoder([EncoderTable.of(FixedPoint(4))], q_width=8))
    with pytest.raises(InputError, match="mode"):
        prove_component(wrapper, tmp_path, name="x", depth=2, mode="cover")
    with pytest.raises(InputError, match="script"):
        prove_component(wrapper, tmp_path, name="x", depth=2, script="flatten")
    assert not list(tmp_path.iterdir())
