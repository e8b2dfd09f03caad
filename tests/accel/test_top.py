# amaranth: UnusedElaboratable=no
"""amaranth.sim of the whole accelerator (hwq.accel.top.Accelerator) against the integer model.

The digits CNN, quantized and compiled for a PE array (region reuse on, as deployed), runs two
test images back to back: a producer process feeds both images' input codes through the
``input`` stream (the second waits for the accelerator to take it), a consumer process keeps
``output.ready`` high and collects the codes. Each image's output codes must equal
``IntegerModel.run_codes`` exactly, and the ``cycles`` counter must equal
``Accelerator.expected_cycles`` (the schedule's steady-state count plus the per-step pipeline
overheads, the sequencer's start cycles and the input and output transfers).
"""

import time

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hwq.accel.schedule import Array, schedule
from hwq.accel.top import Accelerator
from hwq.errors import InputError
from hwq.quant import quantize
from hwq.quant.integer import integer_model

from .test_vector import _mixed


@pytest.fixture(scope="module")
def digits_sched(digits):
    model, (x_train, _, x_test, _) = digits
    cache = {}

    def get(config, array):
        key = (config, array)
        if key not in cache:
            imodel = integer_model(quantize(model, *config, calibration=[x_train[:64]]))
            sched = schedule(imodel, (1, 8, 8), array)
            cache[key] = imodel, sched, imodel.quantize_input(x_test[:4].numpy())
        return cache[key]
    return get


def run_images(dut, images, limit, stall=None):
    """Stream ``images`` (each an array of input codes) through ``dut`` back to back; return the
    output codes of each image and the ``cycles`` value after each. With ``stall`` (a
    numpy Generator) the host drops ``input.valid`` and ``output.ready`` for random spells."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    n_out = dut.output_words
    outputs, cycles = [], []

    async def pause(ctx):
        if stall is not None and stall.random() < 0.3:
            await ctx.tick().repeat(int(stall.integers(1, 4)))

    async def producer(ctx):
        for image in images:
            for code in np.asarray(image).ravel():
                await pause(ctx)
                ctx.set(dut.input.valid, 1)
                ctx.set(dut.input.payload, int(code))
                await ctx.tick().until(dut.input.ready)
                ctx.set(dut.input.valid, 0)

    async def consumer(ctx):
        for _ in images:
            codes = []
            for _ in range(n_out):
                await pause(ctx)
                ctx.set(dut.output.ready, 1)
                payload, = await ctx.tick().sample(dut.output.payload).until(dut.output.valid)
                ctx.set(dut.output.ready, 0)
                codes.append(payload)
            outputs.append(codes)
            assert not ctx.get(dut.busy)
            cycles.append(ctx.get(dut.cycles))

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(limit * 1e-6)                                      # a hang stops here
    assert len(outputs) == len(images), f"{len(outputs)} of {len(images)} images out after {limit} cycles"
    return outputs, cycles


@pytest.mark.parametrize("config, array", [
    (("fxp8", "fxp8"), Array(1, 16)),
    (("ant4", "ant4"), Array(2, 8)),
], ids=["fxp8-1x16", "ant4-2x8"])
def test_digits_cnn_images(digits_sched, config, array):
    imodel, sched, codes = digits_sched(config, array)
    dut = Accelerator(sched)
    images = codes[:2]
    start = time.time()
    outputs, cycles = run_images(dut, images, limit=2 * (dut.expected_cycles + 1000))
    elapsed = time.time() - start
    for image, got in zip(images, outputs):
        want = imodel.run_codes(image[None])[0].ravel()
        assert np.array_equal(np.array(got), want), (got, want)
    assert cycles == [dut.expected_cycles] * len(images), (cycles, dut.expected_cycles)
    print(f"{config} {array}: {cycles[0]} cycles per inference, schedule {sched.cycles} "
          f"(+{cycles[0] - sched.cycles}, {cycles[0] / sched.cycles - 1:.2%}), sim {elapsed:.1f}s")


@pytest.mark.parametrize("pipeline", [2])
def test_product_pipeline(digits_sched, pipeline):
    """A deeper PE array (product register stages): the same output codes, and each conv step
    ``pipeline`` cycles longer than without them (its fixed overhead), exactly."""
    imodel, sched, codes = digits_sched(("ausn4", "fxp4"), Array(1, 4))
    base = Accelerator(sched)
    base._MustUse__silence = True
    dut = Accelerator(sched, pipeline=pipeline)
    convs = sum(1 for step in sched.steps if step.kind == "conv")
    assert dut.conv.pipeline == pipeline
    assert dut.expected_cycles == base.expected_cycles + pipeline * convs
    outputs, cycles = run_images(dut, codes[:1], limit=2 * (dut.expected_cycles + 1000))
    assert np.array_equal(np.array(outputs[0]), imodel.run_codes(codes[:1])[0].ravel())
    assert cycles == [dut.expected_cycles]


@pytest.mark.parametrize("config, array, banks", [
    (("fxp8", "fxp8"), Array(2, 3), 1),
    (("ant4", "ant8"), Array(1, 4), 1),
    (("fxp8", "fxp8"), Array(2, 3), 3),
    (("ant4", "ant8"), Array(1, 4), 4),
], ids=["fxp8-2x3", "ant4-ant8-1x4", "fxp8-2x3-3banks", "ant4-ant8-1x4-4banks"])
def test_every_op_kind_with_a_stalling_host(config, array, banks):
    """The Mixed model (every step kind, grouped/depthwise/strided/dilated convolutions, region
    reuse) with random gaps in both streams: the codes must still match, and the counter counts
    the stalls too. With banks the activation memory is single-port banks (SPRAM), which is
    exact only if no step reads the bank it writes (the schedule's bank rule)."""
    imodel, _ = _mixed(config)
    sched = schedule(imodel, (3, 13, 11), array, banks=banks)
    assert {s.kind for s in sched.steps} == {"conv", "add", "avgpool", "maxpool", "pad"}
    rng = np.random.default_rng(0)
    codes = len(imodel.tensors[imodel.input].format.int_values)
    images = rng.integers(0, codes, size=(2,) + sched.input.shape)
    dut = Accelerator(sched)
    assert dut.spram == (banks > 1)
    outputs, cycles = run_images(dut, images, limit=2 * (3 * dut.expected_cycles + 1000), stall=rng)
    for image, got in zip(images, outputs):
        assert np.array_equal(np.array(got), imodel.run_codes(image[None])[0].ravel())
    assert all(n > dut.expected_cycles for n in cycles), (cycles, dut.expected_cycles)


@pytest.mark.parametrize("banks", [1, 3], ids=["one-memory", "3banks"])
def test_dump_reads_back_every_tensor(banks):
    """With ``dump`` and a ``keep_all`` schedule the output stream sends the whole activation
    memory; every tensor's region in it must equal the integer model's codes of that tensor."""
    imodel, _ = _mixed(("fxp8", "fxp8"))
    sched = schedule(imodel, (3, 13, 11), Array(2, 3), keep_all=True, banks=banks)
    rng = np.random.default_rng(1)
    image = rng.integers(0, len(imodel.tensors[imodel.input].format.int_values), size=sched.input.shape)
    dut = Accelerator(sched, dump=True)
    assert dut.output_words == sched.act_words
    (words,), (cycles,) = run_images(dut, [image], limit=2 * (dut.expected_cycles + 1000))
    assert cycles == dut.expected_cycles
    trace = {}
    imodel.run_codes(image[None], trace=trace)
    words = np.array(words)
    for name, region in sched.regions.items():
        want = np.asarray(trace[name])[0].ravel()
        assert np.array_equal(words[region.base:region.base + region.size], want), name
    assert len(sched.regions) >= 8


def test_verilog(digits_sched):
    imodel, sched, _ = digits_sched(("ant4", "ant4"), Array(2, 8))
    dut = Accelerator(sched)
    text = verilog.convert(dut, name="accelerator")
    assert "module accelerator" in text
    for port in ("input__valid", "input__ready", "input__payload", "output__valid", "output__ready",
                 "output__payload", "busy", "cycles"):
        assert port in text, port


def test_bad_parameters(digits_sched):
    _, sched, _ = digits_sched(("ant4", "ant4"), Array(2, 8))
    with pytest.raises(InputError, match="sched must be a Schedule"):
        Accelerator("not a schedule")
    with pytest.raises(InputError, match="sched must be a Schedule"):
        Accelerator(None)
    for bad in (0, -1, 1.5, True, "32"):
        with pytest.raises(InputError, match="cycle_bits"):
            Accelerator(sched, cycle_bits=bad)
    with pytest.raises(InputError, match="spram: the schedule has one activation bank"):
        Accelerator(sched, spram=True)
    with pytest.raises(InputError, match="spram must be None, True or False"):
        Accelerator(sched, spram="yes")
    assert Accelerator(sched).spram is False


def test_activation_memory_parameters():
    from hwq.accel.memory import ActivationMemory
    with pytest.raises(InputError, match="depth must be a positive integer"):
        ActivationMemory(0, 16, 1, 8)
    with pytest.raises(InputError, match="addr_bits 4 cannot address depth 100"):
        ActivationMemory(100, 16, 1, 4)
    with pytest.raises(InputError, match="bank_words must be a power of two"):
        ActivationMemory(100, 16, 1, 8, banks=3, bank_words=48)
    with pytest.raises(InputError, match="bank_words must be a power of two"):
        ActivationMemory(100, 16, 1, 8, banks=3, bank_words=32)
    with pytest.raises(InputError, match="spram needs banks > 1"):
        ActivationMemory(100, 16, 1, 8, spram=True)
    assert ActivationMemory(100, 16, 2, 8, banks=4, bank_words=64, spram=True).banks == 2


def test_one_requantizer_is_shared():
    """The conv engine and the vector unit drive one Requantizer (they never run at once): the
    engine's tables first, then the vector unit's; each unit refuses a requantizer that lacks its
    tables."""
    from hwq.accel.conv import ConvEngine
    from hwq.accel.requant import Requantizer
    from hwq.accel.vector import VectorUnit
    imodel, _ = _mixed(("ant4", "ant8"))
    sched = schedule(imodel, (3, 13, 11), Array(1, 4))
    dut = Accelerator(sched)
    shared = dut.vector.tables
    assert shared[:len(ConvEngine(sched).tables)] == dut.conv.tables
    assert all(any(t is s for s in shared) for t in VectorUnit(sched).tables)
    alone = Accelerator(sched, share_requant=False)
    assert alone.vector.tables == VectorUnit(sched).tables
    with pytest.raises(InputError, match="share_requant must be True or False"):
        Accelerator(sched, share_requant=None)
    with pytest.raises(InputError, match="requant must be a Requantizer"):
        ConvEngine(sched, requant="shared")
    conv_tables = list(ConvEngine(sched).tables)                  # ant8 unsigned, ant8 signed, fxp16
    acc = max(dut.conv.acc_width, VectorUnit(sched).acc_width)
    with pytest.raises(InputError, match="requant has no table for step"):
        VectorUnit(sched, requant=Requantizer(conv_tables[1:], acc_width=acc))
    with pytest.raises(InputError, match="must start with the engine's own"):
        ConvEngine(sched, requant=Requantizer(conv_tables[::-1], acc_width=acc))
    with pytest.raises(InputError, match="bit accumulators, the engine needs"):
        ConvEngine(sched, requant=Requantizer(conv_tables, acc_width=8))
