"""hwq.accel.loader: the weight store is filled over a stream of payloads of any width, and each
load copies its layer's words, packed lane by lane, into the weight memory, in the cycles it
claims (amaranth.sim)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwq.accel.loader import WeightLoader, preload_payloads
from hwq.accel.schedule import Array, schedule
from hwq.errors import InputError
from hwq.quant import quantize
from hwq.quant.integer import integer_model


@pytest.fixture(scope="module")
def stored(digits):
    """fxp4 and fxp8 digits CNNs on 1x8 with a weight store (a quarter of the words held)."""
    model, (x_train, _, _, _) = digits
    out = {}
    for bits in (4, 8):
        imodel = integer_model(quantize(model, f"fxp{bits}", f"fxp{bits}", calibration=[x_train[:64]]))
        plain = schedule(imodel, (1, 8, 8), Array(1, 8))
        out[bits] = schedule(imodel, (1, 8, 8), Array(1, 8), weight_capacity=len(plain.weights) * 3 // 4)
    return out


def _packed(rows, bits):
    """Weight words packed here, independently: lane c at bits c * bits, two's complement."""
    return [sum((int(code) % (1 << bits)) << (c * bits) for c, code in enumerate(row)) for row in rows]


def _payloads(sched, payload_bits):
    """The fill stream, built here from the store's rows: 16-bit pieces, then payloads, LSB first."""
    width = sched.array.cols * sched.weight_bits
    pieces = -(-width // 16)
    words = [(w >> (16 * j)) & 0xFFFF for w in _packed(sched.store, sched.weight_bits) for j in range(pieces)]
    per = -(-16 // payload_bits)
    return [(w >> (payload_bits * j)) & ((1 << payload_bits) - 1) for w in words for j in range(per)]


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("payload_bits", [8, 3, 16])
def test_fill_then_every_load_writes_its_words(stored, bits, payload_bits):
    sched = stored[bits]
    assert sched.loads
    payloads = _payloads(sched, payload_bits)
    assert preload_payloads(sched, payload_bits) == payloads
    dut = WeightLoader(sched, payload_bits=payload_bits, weight_addr_width=12)
    assert dut.preload_words == len(payloads)
    writes, timing = [], []

    async def bench(ctx):
        for i, value in enumerate(payloads):                     # a gap every 7th payload
            ctx.set(dut.fill.valid, i % 7 != 3)
            ctx.set(dut.fill.payload, value)
            if i % 7 == 3:
                await ctx.tick()
                ctx.set(dut.fill.valid, 1)
            assert ctx.get(dut.fill.ready) and not ctx.get(dut.filled)
            await ctx.tick()
        ctx.set(dut.fill.valid, 0)
        await ctx.tick()
        assert ctx.get(dut.filled) and not ctx.get(dut.fill.ready)
        for load in sched.loads.values():
            for field, value in dut.descriptor(load).items():
                ctx.set(getattr(dut, field), value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles, got = 1, []
            while not ctx.get(dut.done):
                if ctx.get(dut.w_en):
                    got.append((ctx.get(dut.w_addr), ctx.get(dut.w_data)))
                await ctx.tick()
                cycles += 1
                assert cycles < 4 * load.cycles + 10
            writes.append(got)
            timing.append(cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for load, got, cycles in zip(sched.loads.values(), writes, timing):
        expected = _packed(sched.store[load.src:load.src + load.words], sched.weight_bits)
        assert [a for a, _ in got] == list(range(load.dst, load.dst + load.words))
        assert [d for _, d in got] == expected, load.step
        assert cycles == WeightLoader.cycles(load) == load.words * load.pieces + 2


def test_loader_arguments_are_checked(stored):
    plain = schedule(stored[4].model, (1, 8, 8), Array(1, 8))
    with pytest.raises(InputError, match="no weight store"):
        WeightLoader(plain, payload_bits=8, weight_addr_width=12)
    with pytest.raises(InputError, match="sched must be a Schedule"):
        WeightLoader("sched", payload_bits=8, weight_addr_width=12)
    for bad in (0, 2.0, True):
        with pytest.raises(InputError, match="payload_bits must be a positive integer"):
            WeightLoader(stored[4], payload_bits=bad, weight_addr_width=12)
    with pytest.raises(InputError, match="weight_addr_width 3 cannot address"):
        WeightLoader(stored[4], payload_bits=8, weight_addr_width=3)
    for bad in (0, -1, 1.5, None, True):
        with pytest.raises(InputError, match="payload_bits must be a positive integer"):
            preload_payloads(stored[4], bad)
    with pytest.raises(InputError, match="sched must be a Schedule"):
        preload_payloads(None, 16)
    assert preload_payloads(plain, 8) == []


def test_the_accelerators_preload_is_the_store_image(stored):
    """Accelerator.preload: the loader's payload count, the store's words as built here; a
    schedule without a store has none (the bench sends it: tests/test_accel_build.py)."""
    from hwq.accel.top import Accelerator
    acc = Accelerator(stored[8])
    assert acc.loader is not None and len(acc.preload()) == acc.loader.preload_words
    assert np.array_equal(acc.preload(), _payloads(stored[8], acc.act_bits))
    assert Accelerator(schedule(stored[8].model, (1, 8, 8), Array(1, 8))).preload() == []
