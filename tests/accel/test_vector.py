# amaranth: UnusedElaboratable=no
"""amaranth.sim of the vector unit (hwq.accel.vector) against the integer model.

Each schedule is compiled with ``keep_all`` (every tensor in its own region) and run by
:func:`hwq.accel.schedule.execute`; the activation memory (an ``amaranth.lib.memory.Memory`` in
a small wrapper) starts with every tensor of that run, except the outputs of the add, pool and
pad steps, which hold junk. The unit then runs those steps in schedule order, back to back, each
from its :meth:`~hwq.accel.vector.VectorUnit.descriptor`, so a later step reads what the unit
wrote. After each step its region must equal the integer model's tensor, nothing else in the
memory may have changed, and the step must take exactly
:meth:`~hwq.accel.vector.VectorUnit.cycles` (its ``cycles`` plus the pipeline).

- The ``Mixed`` model of test_schedule.py (a zero pad, an add with alpha, an add of a constant,
  max pool with padding and ceil mode, average pool with ``count_include_pad=False`` and ceil
  mode, global average pool) in fxp8, ANT, ESB and AUSN;
- the digits CNN's max pool, residual add and global average pool.
"""

import dataclasses
import functools

import numpy as np
import pytest
import torch
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hwq.accel.schedule import _RUN, Array, Region, execute, schedule
from hwq.accel.vector import KINDS, VectorUnit
from hwq.errors import InputError
from hwq.formats import Ausn, FixedPoint
from hwq.integer.ops import pool_output_size
from hwq.quant import quantize
from hwq.quant.integer import integer_model

from .test_conv import run_unit
from .test_schedule import Mixed

VECTOR_KINDS = tuple(KINDS)


def _image(sched, codes):
    """The activation memory after ``execute``, every tensor in its region (keep_all), and the
    trace of every step's output."""
    trace = {}
    execute(sched, codes, trace)
    image = np.zeros(sched.act_words, dtype=np.int64)
    image[sched.input.base:sched.input.base + sched.input.size] = codes.ravel()
    for step in sched.steps:
        image[step.out.base:step.out.base + step.out.size] = trace[step.name].ravel()
    return image


def run_vector_steps(sched, image, expected=None):
    """Run every vector step of ``sched`` on the unit, back to back, on a memory starting as
    ``image`` with the steps' output regions junk; check each step's region against the numpy
    reference run on the memory as it was (and against ``expected[name]``, flat codes, if given),
    the rest of the memory, and the cycles."""
    dut = VectorUnit(sched)
    steps = [s for s in sched.steps if s.kind in VECTOR_KINDS]
    junk = (1 << sched.act_bits) - 1
    start = np.array(image, dtype=np.int64)
    for step in steps:
        start[step.out.base:step.out.base + step.out.size] = junk

    m = Module()
    m.domains.sync = ClockDomain("sync")
    m.submodules.dut = dut
    m.submodules.mem = mem = Memory(shape=sched.act_bits, depth=sched.act_words, init=[int(v) for v in start])
    rd, wr = mem.read_port(domain="sync"), mem.write_port()
    m.d.comb += [rd.addr.eq(dut.rd_addr), dut.rd_data.eq(rd.data), wr.addr.eq(dut.wr_addr),
                 wr.data.eq(dut.wr_data), wr.en.eq(dut.wr_en)]
    sim = Simulator(m)
    sim.add_clock(1e-6)
    results = []

    async def bench(ctx):
        for step in steps:
            ctx.set(dut.desc, dut.descriptor(step))
            cycles = await run_unit(ctx, dut, 10 * step.cycles + 100, step.name)
            memory = np.array([ctx.get(mem.data[i]) for i in range(sched.act_words)], dtype=np.int64)
            results.append((step, cycles, memory))

    sim.add_testbench(bench)
    sim.run()

    state = start.copy()
    for step, cycles, memory in results:
        region = slice(step.out.base, step.out.base + step.out.size)
        want = _RUN[step.kind](sched, step, state)
        if expected is not None:
            assert np.array_equal(want, np.asarray(expected[step.name]).ravel()), step.name
        got = memory[region]
        assert np.array_equal(got, want), (step.name, step.kind, np.flatnonzero(got != want)[:5],
                                           got[got != want][:5], want[got != want][:5])
        state[region] = want
        assert np.array_equal(memory, state), (step.name, "wrote outside its region")
        assert cycles == dut.cycles(step) == step.cycles + dut.overhead(step.kind), (step.name, cycles)
    return dut, results


@functools.lru_cache(maxsize=None)
def _mixed(config):
    torch.manual_seed(0)
    model = Mixed().eval()
    x = torch.randn(6, 3, 13, 11)
    imodel = integer_model(quantize(model, *config, calibration=[x]))
    return imodel, imodel.quantize_input(x[:1].numpy())


@pytest.mark.parametrize("config", [("fxp8", "fxp8"), ("ant4", "ant8"), ("esb8", "esb8"), ("ausn8", "ausn8")],
                         ids="/".join)
def test_mixed_model_steps_match_the_integer_model(config):
    imodel, codes = _mixed(config)
    sched = schedule(imodel, (3, 13, 11), Array(1, 4), keep_all=True)
    trace = {}
    imodel.run_codes(codes, trace)
    expected = {name: value[0] for name, value in trace.items()}
    dut, results = run_vector_steps(sched, _image(sched, codes[0]), expected)
    kinds = [step.kind for step, _, _ in results]
    assert sorted(set(kinds)) == sorted(VECTOR_KINDS) and kinds.count("avgpool") == 2 and kinds.count("add") == 2


def test_digits_cnn_pool_add_and_global_pool(digits):
    model, (x_train, _, x_test, _) = digits
    imodel = integer_model(quantize(model, "fxp8", "fxp8", calibration=[x_train[:64]]))
    codes = imodel.quantize_input(x_test[:2].numpy())
    sched = schedule(imodel, (1, 8, 8), Array(1, 16), keep_all=True)
    trace = {}
    imodel.run_codes(codes, trace)
    for i in range(2):
        expected = {name: value[i] for name, value in trace.items()}
        dut, results = run_vector_steps(sched, _image(sched, codes[i]), expected)
        assert sorted(step.kind for step, _, _ in results) == ["add", "avgpool", "maxpool"]


def test_random_codes_duplicate_values_and_dilation():
    """Every vector step of the AUSN schedule on random codes, plus a max pool over a format
    with many codes per value (signed AUSN: the first maximum's code must win) with dilation,
    odd strides, padding and ceil mode, into a region of its own."""
    imodel, _ = _mixed(("ausn8", "ausn8"))
    sched = schedule(imodel, (3, 13, 11), Array(1, 4), keep_all=True)
    add = next(s for s in sched.steps if s.kind == "add" and len(s.srcs) == 2)
    pool = next(s for s in sched.steps if s.kind == "maxpool")
    src = add.srcs[0]                                      # a convolution's output: not overwritten
    c, h, w = src.shape
    kernel, stride, padding, dilation = (3, 2), (2, 1), (1, 1), (2, 3)
    out_hw = tuple(pool_output_size(size, k, st, pd, dl, True)
                   for size, k, st, pd, dl in zip((h, w), kernel, stride, padding, dilation))
    size = c * out_hw[0] * out_hw[1]
    out = Region("dilated", sched.act_words, size, (c,) + out_hw)
    extra = dataclasses.replace(pool, name="dilated", out=out, src=src, in_shape=(c, h, w),
                                out_shape=(c,) + out_hw, kernel=kernel, stride=stride, padding=padding,
                                dilation=dilation, format=Ausn(8, signed=True))
    sched = dataclasses.replace(sched, steps=sched.steps + [extra], act_words=sched.act_words + size)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, sched.act_words)
    # pairs of codes of one value (95 and 126: 108; 87 and 118: 104), two zeros, a negative
    image[src.base:src.base + src.size] = rng.choice([95, 126, 87, 118, 0, 128, 129], src.size)
    dut, results = run_vector_steps(sched, image)
    assert [step.name for step, _, _ in results][-1] == "dilated"


@pytest.mark.parametrize("kinds", [("pad",), ("maxpool", "pad")], ids="+".join)
def test_without_adds_or_average_pools_no_requantizer(mixed_fxp8, kinds):
    sched = mixed_fxp8
    steps = [s for s in sched.steps if s.kind in kinds]
    sched = dataclasses.replace(sched, steps=steps)
    image = np.random.default_rng(2).integers(0, 256, sched.act_words)
    dut, results = run_vector_steps(sched, image)
    assert dut.requant_latency == 0 and dut.overhead("pad") == 5 and len(results) == len(steps)


@pytest.fixture(scope="module")
def mixed_fxp8():
    imodel, codes = _mixed(("fxp8", "fxp8"))
    return schedule(imodel, (3, 13, 11), Array(1, 4), keep_all=True)


def test_descriptor_and_cycles(mixed_fxp8):
    sched = mixed_fxp8
    dut = VectorUnit(sched)
    steps = {step.name: step for step in sched.steps}
    add = dut.descriptor(steps["add"])
    assert add["kind"] == KINDS["add"] and add["out_w"] == steps["add"].out.size and add["kernel_w"] == 2
    assert (add["src_a"], add["src_b"]) == tuple(src.base for src in steps["add"].srcs)
    assert dut.descriptor("add_1")["kernel_w"] == 1
    pool = dut.descriptor(steps["max_pool2d"])
    assert (pool["out_h"], pool["out_w"], pool["pad_top"], pool["pad_left"]) == (4, 4, 1, 1)
    gap = dut.descriptor(steps["adaptive_avg_pool2d"])
    assert gap["param_base"] == 6 * 2 and dut.param_words[gap["param_base"]] == (
        int(sched.multiplier[steps["adaptive_avg_pool2d"].param_base])
        | int(sched.shift[steps["adaptive_avg_pool2d"].param_base]) << 16)
    assert set(dut.descriptor(steps["pad"])) == set(dut.desc_layout.members)
    assert dut.overhead("pad") == 5 and dut.overhead("add") == 5 + dut.requant_latency
    assert dut.cycles(steps["max_pool2d"]) == 8 * 16 * 9 + 5


def test_bad_parameters_raise_input_error(mixed_fxp8):
    sched = mixed_fxp8
    with pytest.raises(InputError, match="sched must be a Schedule"):
        VectorUnit("sched")
    convs = [s for s in sched.steps if s.kind == "conv"]
    with pytest.raises(InputError, match="sched has no add, average pool, max pool or pad step"):
        VectorUnit(dataclasses.replace(sched, steps=convs))
    add = next(s for s in sched.steps if s.kind == "add")
    wide = dataclasses.replace(add, in_formats=(FixedPoint(16, signed=True),) * 2)
    with pytest.raises(InputError, match=r"step 'add': input format .* has 16-bit codes"):
        VectorUnit(dataclasses.replace(sched, steps=[wide]))
    huge = dataclasses.replace(add, multipliers=(1 << 40, 1))
    with pytest.raises(InputError, match="accumulator"):
        VectorUnit(dataclasses.replace(sched, steps=[huge]))
    dut = VectorUnit(sched)
    with pytest.raises(InputError, match="step must be an add, pool or pad step"):
        dut.descriptor(convs[0])
    with pytest.raises(InputError, match="step must be an add, pool or pad step"):
        dut.cycles("nonexistent")
    with pytest.raises(InputError, match="kind must be one of"):
        dut.overhead("conv")


def test_converts_to_verilog(mixed_fxp8):
    text = verilog.convert(VectorUnit(mixed_fxp8), name="vector_unit", emit_src=False)
    assert "module vector_unit" in text and "rd_addr" in text and "wr_en" in text
