# amaranth: UnusedElaboratable=no
"""amaranth.sim of the convolution address generator against the schedule's loop nest
(hwq.accel.schedule: ``ConvStep``, ``_conv_addresses``; docs/accelerator.md, "Tiles").

One generator per schedule runs every ConvStep of the schedule in turn (the descriptor inputs
change from step to step, as the sequencer loads them). ``ready`` is held high for some steps and
toggled at random for others; every transfer (``valid`` and ``ready``) must be the schedule's
next ``(channel tile, position tile, k)``: row addresses where inside, inside and row-valid
flags, weight word, ``first``/``last``, tile indices. With ``ready`` high the first ``valid`` comes
:attr:`latency` cycles after ``start`` and the transfers are back to back.
"""

import math

import numpy as np
import pytest
import torch
from amaranth.back import verilog
from amaranth.hdl import Cat, Fragment, Module, Signal
from amaranth.sim import Simulator
from torch import nn
from torch.nn import functional as F

from hwq.accel.address import DESCRIPTOR_FIELDS, ConvAddressGenerator
from hwq.accel.schedule import Array, _conv_addresses, schedule
from hwq.errors import InputError
from hwq.quant import quantize
from hwq.quant.integer import integer_model


class Zoo(nn.Module):
    """Strided, padded, dilated depthwise, grouped, 1 x 1, non-square kernel and stride, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=6)
        self.grouped = nn.Conv2d(6, 4, 1, groups=2)
        self.odd = nn.Conv2d(4, 5, (2, 3), stride=(1, 2), padding=(1, 0))
        self.wide = nn.Conv2d(5, 3, (1, 2), dilation=(1, 2), padding=(0, 3), stride=(2, 1))
        self.fc = nn.Linear(45, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.grouped(self.dw(x)))
        x = self.wide(F.relu(self.odd(x)))
        return self.fc(torch.flatten(x, 1))


class Plain(nn.Module):
    """A 1 x 1 input (linear-like convolution), a 1 x 1 kernel, a kernel as large as its input."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 1)
        self.b = nn.Conv2d(3, 4, (2, 4), padding=(1, 0))
        self.fc = nn.Linear(4 * 2 * 1, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.b(F.relu(self.a(x))), 1))


def _steps(model, shape, array, seed=0):
    torch.manual_seed(seed)
    model = model.eval()
    x = torch.randn((4,) + shape)
    imodel = integer_model(quantize(model, calibration=[x]))
    return [s for s in schedule(imodel, shape, array).steps if s.kind == "conv"]


@pytest.fixture(scope="module")
def zoo_steps():
    cache = {}

    def get(array):
        if array not in cache:
            cache[array] = _steps(Zoo(), (3, 9, 7), array)
        return cache[array]
    return get


def expected(step, rows):
    """The schedule's issue sequence of ``step``: dict of arrays over ``(t, p, k)`` (and ``r``)."""
    address, inside = _conv_addresses(step)
    c_in, h, w = step.in_shape
    per_group = step.out_shape[0] // step.groups
    offset = np.array([c0 // per_group * (c_in // step.groups) * h * w for c0 in step.channel0])
    tiles, ptiles, fan_in = step.tiles, math.ceil(step.positions / rows), step.fan_in
    pos = np.arange(ptiles)[:, None] * rows + np.arange(rows)[None, :]              # (P, R)
    valid = pos < step.positions
    clipped = np.minimum(pos, step.positions - 1)
    addr = address[clipped].transpose(0, 2, 1)[None] + offset[:, None, None, None]  # (T, P, K, R)
    ins = inside[clipped].transpose(0, 2, 1)[None] & valid[None, :, None, :]
    shape = (tiles, ptiles, fan_in)
    t, p, k = np.meshgrid(np.arange(tiles), np.arange(ptiles), np.arange(fan_in), indexing="ij")
    return {"addr": np.broadcast_to(addr, shape + (rows,)).reshape(-1, rows),
            "inside": np.broadcast_to(ins, shape + (rows,)).reshape(-1, rows),
            "row_valid": np.broadcast_to(valid[None, :, None, :], shape + (rows,)).reshape(-1, rows),
            "weight_addr": (step.weight_base + t * fan_in + k).ravel(), "first": (k == 0).ravel(),
            "last": (k == fan_in - 1).ravel(), "tile": t.ravel(), "position_tile": p.ravel()}


def run(dut, steps, ready_modes, seed=0):
    """Run ``steps`` through ``dut`` one after the other, ``ready`` high (mode ``"high"``) or
    random (``"random"``: low about a third of the time) per step. Returns per step the
    transfers (dict of arrays), the cycles from ``start`` to the first ``valid`` and the cycles
    from the first transfer to the last."""
    rng = np.random.default_rng(seed)
    R, A = dut.rows, len(dut.addr[0])
    fields = [("valid", 1), ("done", 1), ("busy", 1), ("first", 1), ("last", 1), ("inside", R), ("row_valid", R),
              ("weight_addr", len(dut.weight_addr)), ("tile", len(dut.tile)),
              ("position_tile", len(dut.position_tile))]
    m = Module()
    m.submodules.dut = dut
    observed = Signal(sum(w for _, w in fields) + R * A)
    m.d.comb += observed.eq(Cat(*[getattr(dut, name) for name, _ in fields], *dut.addr))
    descriptor = Signal(sum(len(getattr(dut, f)) for f, _ in DESCRIPTOR_FIELDS))
    offset = 0
    for field, _ in DESCRIPTOR_FIELDS:
        port = getattr(dut, field)
        m.d.comb += port.eq(descriptor[offset:offset + len(port)])
        offset += len(port)
    results = []

    def unpack(word):
        out, offset = {}, 0
        for name, width in fields:
            out[name] = (word >> offset) & ((1 << width) - 1)
            offset += width
        out["addr"] = [(word >> (offset + r * A)) & ((1 << A) - 1) for r in range(R)]
        return out

    async def bench(ctx):
        for step, mode in zip(steps, ready_modes):
            values = dut.descriptor(step)
            word, offset = 0, 0
            for field, _ in DESCRIPTOR_FIELDS:
                word |= values[field] << offset
                offset += len(getattr(dut, field))
            ctx.set(descriptor, word)
            ctx.set(dut.start, 1)
            ctx.set(dut.ready, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycle, first_valid, transfers, cycles = 1, None, [], []
            while True:
                ready = 1 if mode == "high" else int(rng.random() > 0.35)
                ctx.set(dut.ready, ready)
                out = unpack(ctx.get(observed))
                if out["done"]:
                    break
                assert out["busy"]
                if out["valid"] and first_valid is None:
                    first_valid = cycle
                if out["valid"] and ready:
                    transfers.append(out)
                    cycles.append(cycle)
                await ctx.tick()
                cycle += 1
                assert cycle < 100_000
            assert not out["busy"] and not out["valid"]
            results.append(({key: np.array([o[key] for o in transfers]) for key in transfers[0]}, first_valid,
                             cycles[-1] - cycles[0] + 1))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def check(dut, steps, ready_modes, seed=0):
    for step, mode, (got, first_valid, span) in zip(steps, ready_modes, run(dut, steps, ready_modes, seed)):
        want = expected(step, dut.rows)
        n = len(want["weight_addr"])
        assert len(got["weight_addr"]) == n, step.name
        assert n == step.tiles * math.ceil(step.positions / dut.rows) * step.fan_in
        bits = lambda a: (a[:, None] >> np.arange(dut.rows)[None, :]) & 1          # noqa: E731
        assert np.array_equal(bits(got["inside"]), want["inside"]), step.name
        assert np.array_equal(bits(got["row_valid"]), want["row_valid"]), step.name
        addr = np.array(got["addr"]).reshape(n, dut.rows)
        where = want["inside"]
        assert np.array_equal(addr[where], want["addr"][where]), step.name
        for key in ("weight_addr", "first", "last", "tile", "position_tile"):
            assert np.array_equal(got[key], want[key]), (step.name, key)
        if mode == "high":
            assert first_valid == dut.latency, step.name
            assert span == n, step.name                                        # back to back


@pytest.mark.parametrize("array", [Array(1, 2), Array(2, 4), Array(3, 3)], ids=str)
def test_zoo_steps_issue_the_schedule(zoo_steps, array):
    steps = zoo_steps(array)
    assert {s.groups for s in steps} >= {1, 2, 6} and any(s.dilation != (1, 1) for s in steps)
    assert any(s.positions % array.rows for s in steps) or array.rows == 1
    dut = ConvAddressGenerator.for_steps(steps)
    modes = ["high" if i % 2 == 0 else "random" for i in range(len(steps))]
    check(dut, steps, modes, seed=array.rows)


@pytest.mark.parametrize("array", [Array(1, 1), Array(2, 2), Array(3, 5)], ids=str)
def test_plain_steps_issue_the_schedule(array):
    steps = _steps(Plain(), (2, 1, 4), array, seed=1)
    dut = ConvAddressGenerator.for_steps(steps)
    check(dut, steps, ["random"] * len(steps) + ["high"], seed=7)


def test_a_wider_generator_runs_the_same_steps(zoo_steps):
    """Ports wider than the steps need, and rows given explicitly."""
    steps = zoo_steps(Array(2, 4))[:2]
    dut = ConvAddressGenerator(2, addr_width=12, weight_addr_width=11, channel_bits=5, size_bits=6, kernel_bits=3,
                               stride_bits=3, dilation_bits=2, pad_bits=3, tile_bits=4)
    assert dut.latency == max(6, 3, 2, 3) + 5 + 1 + 2
    check(dut, steps, ["high", "random"])


def test_converts_to_verilog(zoo_steps):
    dut = ConvAddressGenerator.for_steps(zoo_steps(Array(3, 3)))
    text = verilog.convert(dut, name="conv_address", emit_src=False)
    assert "module conv_address" in text and "weight_addr" in text
    assert " * " not in text.replace("(* ", "").replace(" *)", "")        # no multiplier


GOOD = dict(addr_width=10, weight_addr_width=10, channel_bits=4, size_bits=4, kernel_bits=2, stride_bits=2,
            dilation_bits=2, pad_bits=2, tile_bits=3)


@pytest.mark.parametrize("rows, change, match", [
    (0, {}, "rows must be between 1 and 64, not 0"),
    (True, {}, "rows must be an integer"),
    (2, {"addr_width": 0}, "addr_width must be between 1 and 32, not 0"),
    (2, {"size_bits": "4"}, "size_bits must be an integer"),
    (2, {"kernel_bits": 9}, "kernel_bits must be between 1 and 8"),
    (2, {"tile_bits": 17}, "tile_bits must be between 1 and 16"),
])
def test_bad_parameters_are_refused(rows, change, match):
    with pytest.raises(InputError, match=match):
        ConvAddressGenerator(rows, **{**GOOD, **change})


def test_bad_steps_are_refused(zoo_steps):
    steps = zoo_steps(Array(2, 4))
    with pytest.raises(InputError, match="at least one ConvStep"):
        ConvAddressGenerator.for_steps([])
    with pytest.raises(InputError, match=r"steps\[1\] must be a ConvStep"):
        ConvAddressGenerator.for_steps([steps[0], "conv"])
    with pytest.raises(InputError, match=r"arrays of \[1, 2\] rows; pass rows"):
        ConvAddressGenerator.for_steps([steps[0], zoo_steps(Array(1, 2))[0]])
    dut = ConvAddressGenerator.for_steps(steps[1:2])
    Fragment.get(dut, None)                                  # used: no UnusedElaboratable warning
    with pytest.raises(InputError, match=r"step 'stem': \w+ \d+ does not fit"):
        dut.descriptor(steps[0])
    with pytest.raises(InputError, match="scheduled on 1 rows, the generator has 2"):
        dut.descriptor(zoo_steps(Array(1, 2))[1])
    small = ConvAddressGenerator(2, **{**GOOD, "addr_width": 6, "size_bits": 5, "channel_bits": 5})
    with pytest.raises(InputError, match="past addr_width 6"):
        small.descriptor(steps[0])
