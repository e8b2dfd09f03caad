# amaranth: UnusedElaboratable=no
"""amaranth.sim of the convolution engine (hwq.accel.conv.ConvEngine) against the integer model.

The activation memory is an :class:`amaranth.lib.memory.Memory` in a small wrapper, with ``R``
synchronous read ports (latency 1) and one write port, preloaded with the memory image
:func:`hwq.accel.schedule.execute` leaves (``keep_all``: every tensor in a region of its own),
the step's output region zeroed. The engine runs one ConvStep; the output region must then hold
the integer model's codes for that tensor, and the cycles from ``start`` to ``done`` are compared
with ``ConvStep.cycles`` (the steady state) plus a fixed overhead.
"""

import time

import numpy as np
import pytest
import torch
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hwq.accel.conv import ConvEngine
from hwq.accel.schedule import Array, execute, schedule
from hwq.errors import InputError
from hwq.quant import quantize
from hwq.quant.integer import integer_model


class Bench(Elaboratable):
    """The engine and an activation memory of ``image`` (R read ports, one write port)."""

    def __init__(self, engine, image):
        self.engine = engine
        self.memory = Memory(shape=unsigned(engine.act_bits), depth=len(image), init=[int(v) for v in image])

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.engine = dut = self.engine
        m.submodules.memory = mem = self.memory
        for r in range(dut.rows):
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(dut.act_addr[r]), dut.act_data[r].eq(port.data)]
        wport = mem.write_port()
        m.d.comb += [wport.addr.eq(dut.wr_addr), wport.data.eq(dut.wr_data), wport.en.eq(dut.wr_en)]
        return m


async def run_unit(ctx, unit, limit, name):
    """Pulse ``unit.start``, wait for ``done`` (``busy`` high until then, low after); return the
    cycles from ``start`` to ``done``. Fails after ``limit`` cycles."""
    ctx.set(unit.start, 1)
    await ctx.tick()
    ctx.set(unit.start, 0)
    cycles = 1
    while not ctx.get(unit.done):
        assert ctx.get(unit.busy)
        await ctx.tick()
        cycles += 1
        assert cycles < limit, f"{name}: no done after {cycles} cycles"
    assert not ctx.get(unit.busy)
    return cycles


def final_memory(sched, codes):
    """The activation memory after :func:`execute` (keep_all: nothing overwritten)."""
    memory = np.zeros(sched.act_words, dtype=np.int64)
    memory[sched.input.base:sched.input.base + sched.input.size] = codes.ravel()
    trace = {}
    execute(sched, codes, trace)
    for step in sched.steps:
        memory[step.out.base:step.out.base + step.out.size] = trace[step.name].ravel()
    return memory, trace


def run_steps(sched, codes, names, engine=None):
    """Run the conv steps ``names`` one after the other, each on a fresh memory image; return
    per step (output codes, cycles from start to done)."""
    memory, _ = final_memory(sched, codes)
    engine = engine or ConvEngine(sched)
    steps = {s.name: s for s in sched.steps if s.kind == "conv"}
    results = {}
    for name in names:
        step = steps[name]
        image = memory.copy()
        image[step.out.base:step.out.base + step.out.size] = 0
        bench = Bench(engine, image)
        sim = Simulator(bench)
        sim.add_clock(1e-6)
        values = engine.descriptor(step)
        limit = 4 * step.cycles + 500

        async def testbench(ctx, step=step, values=values):
            for field, value in values.items():
                ctx.set(getattr(engine, field), value)
            cycles = await run_unit(ctx, engine, limit, step.name)
            out = [ctx.get(bench.memory.data[step.out.base + i]) for i in range(step.out.size)]
            whole = [ctx.get(bench.memory.data[i]) for i in range(len(image))]
            results[step.name] = (np.array(out), cycles, np.array(whole))

        sim.add_testbench(testbench)
        sim.run()
    return results, memory


def check(sched, imodel, codes, names, engine=None):
    """Every step of ``names`` writes the integer model's codes and nothing outside its region;
    return the cycles per step."""
    trace = {}
    imodel.run_codes(codes[None], trace)
    engine = engine or ConvEngine(sched)
    results, memory = run_steps(sched, codes, names, engine)
    cycles = {}
    for name in names:
        step = next(s for s in sched.steps if s.name == name)
        got, n, whole = results[name]
        want = trace[name][0].ravel()
        assert np.array_equal(got, want), (name, np.flatnonzero(got != want)[:5], got[:8], want[:8])
        assert np.array_equal(whole, memory), name                  # nothing else written
        cycles[name] = (n, step.cycles)
        assert n == step.cycles + engine.overhead(step), (name, n, step.cycles, engine.overhead(step))
    return cycles


@pytest.fixture(scope="module")
def digits_sched(digits):
    model, (x_train, _, x_test, _) = digits
    cache = {}

    def get(config, array, output=OUTPUT):
        key = (config, array, output)
        if key not in cache:
            imodel = integer_model(quantize(model, *config, calibration=[x_train[:64]], output=output))
            sched = schedule(imodel, (1, 8, 8), array, keep_all=True)
            cache[key] = imodel, sched, imodel.quantize_input(x_test[:1].numpy())[0]
        return cache[key]
    return get


#: the scores' format (the default; the encoder computes its uniform grid instead of searching it)
OUTPUT = "fxp16"


@pytest.mark.parametrize("config, array, names", [
    (("fxp8", "fxp8"), Array(1, 16), ("conv1", "conv2", "conv3", "fc")),
    (("fxp8", "fxp8"), Array(2, 8), ("conv1", "conv3", "fc")),
    (("ant4", "ant4"), Array(2, 8), ("conv1", "conv2", "conv3", "fc")),
    (("ant4", "ant4"), Array(1, 16), ("conv1", "fc")),
    (("uniq4", "fxp4"), Array(2, 8), ("conv1", "conv3", "fc")),
    (("esb4", "esb8"), Array(1, 16), ("conv1", "fc")),
], ids=lambda v: "/".join(v) if isinstance(v, tuple) and isinstance(v[0], str) and "conv1" not in v else
    (str(v) if isinstance(v, Array) else None))
def test_digits_cnn_steps(digits_sched, config, array, names):
    imodel, sched, codes = digits_sched(config, array)
    start = time.time()
    cycles = check(sched, imodel, codes, names)
    print(config, array, {k: v for k, v in cycles.items()}, f"{time.time() - start:.1f}s")


class Mixed(torch.nn.Module):
    """Grouped, depthwise (dilated), strided and padded convolutions, a non-square kernel, a
    linear layer."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.grouped = torch.nn.Conv2d(8, 12, 1, groups=4)
        self.odd = torch.nn.Conv2d(12, 5, (2, 3), stride=(1, 2), padding=(1, 0))
        self.fc = torch.nn.Linear(5 * 6 * 1, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.grouped(self.dw(x)))
        return self.fc(torch.flatten(self.odd(x), 1))


@pytest.mark.parametrize("config", [("fxp8", "fxp8"), ("ant4", "ant4")], ids="/".join)
def test_grouped_strided_padded(config):
    torch.manual_seed(0)
    model = Mixed().eval()
    x = torch.randn(6, 3, 9, 7)
    imodel = integer_model(quantize(model, *config, calibration=[x], output=OUTPUT))
    sched = schedule(imodel, (3, 9, 7), Array(2, 3), keep_all=True)
    codes = imodel.quantize_input(x[:1].numpy())[0]
    names = [s.name for s in sched.steps if s.kind == "conv"]
    print(config, check(sched, imodel, codes, names))


def test_bad_parameters_and_verilog(digits_sched):
    imodel, sched, _ = digits_sched(("fxp8", "fxp8"), Array(2, 8))
    with pytest.raises(InputError, match="sched must be a Schedule"):
        ConvEngine("sched")
    engine = ConvEngine(sched)
    with pytest.raises(InputError, match="step must be a ConvStep"):
        engine.descriptor(next(s for s in sched.steps if s.kind != "conv"))
    other = digits_sched(("fxp8", "fxp8"), Array(1, 16))[1]
    with pytest.raises(InputError, match="not a conv step of the engine's schedule"):
        engine.descriptor(next(s for s in other.steps if s.kind == "conv"))
    ant = digits_sched(("ant4", "ant4"), Array(2, 8))[1]
    with pytest.raises(InputError, match="a_formats"):
        ConvEngine(ant, a_formats=[])
    with pytest.raises(InputError, match="w_formats"):
        ConvEngine(ant, w_formats=["fxp8"])
    d = engine.descriptor(next(s for s in sched.steps if s.name == "conv2"))
    assert set(d) == {name for name in engine.widths}
    text = verilog.convert(engine, name="conv_engine")
    assert "module conv_engine" in text


def test_chained_steps_in_one_simulation():
    """Every conv step of the small model, one after the other in one simulation, from the input
    image alone: the memory ends as :func:`execute` leaves it; ``start`` while busy is ignored."""
    torch.manual_seed(1)
    model = Mixed().eval()
    x = torch.randn(4, 3, 9, 7)
    imodel = integer_model(quantize(model, "ant4", "fxp8", calibration=[x], output=OUTPUT))
    sched = schedule(imodel, (3, 9, 7), Array(2, 3))                     # regions reused
    codes = imodel.quantize_input(x[:1].numpy())[0]
    assert all(step.kind == "conv" for step in sched.steps)
    expected = execute(sched, codes)
    image = np.zeros(sched.act_words, dtype=np.int64)
    image[sched.input.base:sched.input.base + sched.input.size] = codes.ravel()
    engine = ConvEngine(sched)
    bench = Bench(engine, image)
    sim = Simulator(bench)
    sim.add_clock(1e-6)
    out = {}

    async def testbench(ctx):
        for step in sched.steps:
            for field, value in engine.descriptor(step).items():
                ctx.set(getattr(engine, field), value)
            ctx.set(engine.start, 1)
            await ctx.tick()
            cycles = 1
            while not ctx.get(engine.done):
                await ctx.tick()                        # start held high: ignored while busy
                cycles += 1
            ctx.set(engine.start, 0)
            assert cycles == step.cycles + engine.overhead(step), step.name
            await ctx.tick()
        region = sched.output
        out["codes"] = [ctx.get(bench.memory.data[region.base + i]) for i in range(region.size)]

    sim.add_testbench(testbench)
    sim.run()
    assert np.array_equal(np.array(out["codes"]), expected.ravel())


def test_scores_in_fxp16_and_fxp12_run(digits_sched):
    """The scores' uniform formats need no threshold search: fxp16 (65536 grid values) and fxp12
    both run, and the engine keeps every table of the schedule."""
    for output in ("fxp16", "fxp12"):
        imodel, sched, codes = digits_sched(("fxp8", "fxp8"), Array(2, 8), output=output)
        engine = ConvEngine(sched)
        assert len(engine.tables) == len(sched.tables)
        check(sched, imodel, codes, ["fc"], engine)
