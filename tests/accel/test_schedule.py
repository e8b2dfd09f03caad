"""hwq.accel.schedule: the accelerator's memory map, weight image and loop nest, run in numpy as
the sequencer runs them, give the integer model's codes for every tensor."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hwq.accel.schedule import Array, execute, schedule
from hwq.errors import InputError
from hwq.quant import quantize
from hwq.quant.integer import integer_model

#: the digits CNN in every format (UNIQ's activations are uniform: fxp)
DIGITS_CONFIGS = [("fxp8", "fxp8"), ("ant4", "ant4"), ("esb4", "esb8"), ("ausn4", "ausn4"), ("uniq4", "fxp4"),
                  ("ant4", "fxp8")]
ARRAYS = [Array(1, 16), Array(2, 8), Array(3, 5), Array(1, 1)]


def _check(imodel, codes, sched):
    """Every tensor and the output of every sample, against the integer model's trace."""
    trace = {}
    expected = imodel.run_codes(codes, trace)
    for i in range(len(codes)):
        steps = {}
        out = execute(sched, codes[i], steps)
        assert np.array_equal(out, expected[i])
        for name, got in steps.items():
            want = trace[name][i].reshape(got.shape)
            assert np.array_equal(got, want), (name, np.argwhere(got != want)[:3])
        assert set(steps) == {op.name for op in imodel.ops if op.op != "reshape"}


@pytest.fixture(scope="module")
def digits_integer(digits):
    model, (x_train, _, x_test, _) = digits
    cache = {}

    def get(config):
        if config not in cache:
            imodel = integer_model(quantize(model, *config, calibration=[x_train[:64]]))
            cache[config] = imodel, imodel.quantize_input(x_test[:12].numpy())
        return cache[config]
    return get


@pytest.mark.parametrize("config", DIGITS_CONFIGS, ids="/".join)
@pytest.mark.parametrize("array", ARRAYS, ids=str)
@pytest.mark.parametrize("keep_all", [False, True], ids=["reuse", "keep_all"])
def test_digits_cnn_schedule_runs_the_integer_model(digits_integer, config, array, keep_all):
    imodel, codes = digits_integer(config)
    _check(imodel, codes, schedule(imodel, (1, 8, 8), array, keep_all=keep_all))


class Mixed(nn.Module):
    """Every op the accelerator runs: grouped, depthwise, strided and dilated convolutions,
    explicit zero padding, max and average pooling with their attributes, adds with alpha and a
    constant, global pooling, flatten and linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.grouped = nn.Conv2d(8, 12, 1, groups=4)
        self.pw = nn.Conv2d(12, 8, 1)
        self.odd = nn.Conv2d(8, 8, (2, 3), stride=(1, 2), padding=(1, 0))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu6(self.stem(F.pad(x, (0, 1, 0, 1))))
        y = F.relu(self.pw(F.relu(self.grouped(self.dw(x)))))
        x = torch.add(x, y, alpha=0.5)
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        x = self.odd(x) + 0.25
        x = F.avg_pool2d(F.relu(x), 2, stride=1, padding=1, count_include_pad=False, ceil_mode=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("config", [("fxp8", "fxp8"), ("ant4", "ant8"), ("esb8", "esb8"), ("uniq4", "fxp8"),
                                    ("ausn8", "ausn8")], ids="/".join)
@pytest.mark.parametrize("array", [Array(1, 4), Array(2, 3)], ids=str)
def test_every_op_kind_runs_the_integer_model(config, array):
    torch.manual_seed(0)
    model = Mixed().eval()
    x = torch.randn(6, 3, 13, 11)
    imodel = integer_model(quantize(model, *config, calibration=[x]))
    sched = schedule(imodel, (3, 13, 11), array)
    assert {step.kind for step in sched.steps} == {"pad", "conv", "add", "maxpool", "avgpool"}
    _check(imodel, imodel.quantize_input(x.numpy()), sched)


def test_regions_of_live_tensors_never_overlap(digits_integer):
    imodel, _ = digits_integer(("fxp8", "fxp8"))
    reuse = schedule(imodel, (1, 8, 8), Array(1, 16))
    alone = schedule(imodel, (1, 8, 8), Array(1, 16), keep_all=True)
    assert reuse.act_words < alone.act_words
    assert alone.act_words == sum(r.size for name, r in alone.regions.items()
                                  if name == imodel.input or any(op.name == name and op.op != "reshape"
                                                                 for op in imodel.ops))
    written = [imodel.input] + [step.name for step in reuse.steps]
    for index, step in enumerate(reuse.steps):
        later = {name for s in reuse.steps[index:] for name in _reads(s)}
        live = [reuse.regions[name] for name in written[:index + 1] if name in later]
        out = step.out
        for region in live:
            assert out.base + out.size <= region.base or region.base + region.size <= out.base, (step.name, region)


def _reads(step):
    return [src.tensor for src in (step.srcs if step.kind == "add" else (step.src,))]


def test_cycles_and_utilization_by_hand(digits_integer):
    """The digits CNN on 1 x 16: conv1 (1 -> 16, 3 x 3, 8 x 8) is 64 position tiles of
    max(9, 16) cycles; conv2 (16 -> 32) 2 channel tiles x 64 x 144; conv3 (32 -> 32 on 4 x 4)
    2 x 16 x 288; fc (32 -> 10) 1 x 1 x 32."""
    imodel, _ = digits_integer(("fxp8", "fxp8"))
    sched = schedule(imodel, (1, 8, 8), Array(1, 16))
    conv = {step.name: step for step in sched.steps if step.kind == "conv"}
    assert [conv[name].cycles for name in ("conv1", "conv2", "conv3", "fc")] == [64 * 16, 2 * 64 * 144,
                                                                                2 * 16 * 288, 32]
    assert sched.macs == 16 * 64 * 9 + 32 * 64 * 144 + 32 * 16 * 288 + 10 * 32
    assert sched.utilization([conv["conv2"], conv["conv3"]]) == 1.0
    assert sched.utilization([conv["fc"]]) == pytest.approx(10 / 16)
    assert sched.weights.shape == (9 + 2 * 144 + 2 * 288 + 32, 16)
    fc = imodel.layers["fc"].weight_codes
    assert np.array_equal(sched.weights[conv["fc"].weight_base:][:32, :10], fc.T)


def test_refused_before_any_work_naming_the_op_and_parameter():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 6, 6)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.Flatten(), nn.Linear(108, 2))
    imodel = integer_model(quantize(model.eval(), calibration=[x]))
    with pytest.raises(InputError, match=r"layer '0': padding_mode 'reflect' is not supported by the accelerator"):
        schedule(imodel, (2, 6, 6))
    model = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(108, 2))
    imodel = integer_model(quantize(model.eval(), calibration=[x]))
    with pytest.raises(InputError, match=r"pad '_0': mode 'reflect' is not supported by the accelerator"):
        schedule(imodel, (2, 6, 6))
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(108, 2))
    imodel = integer_model(quantize(model.eval(), calibration=[x]))
    with pytest.raises(InputError, match=r"layer '0': input of shape \(3, 6, 6\), the layer takes 2 channels"):
        schedule(imodel, (3, 6, 6))
    with pytest.raises(InputError, match=r"reshape '_1': cannot reshape \(3, 5, 5\) to \(108,\)"):
        schedule(imodel, (2, 5, 5))
    with pytest.raises(InputError, match=r"input codes of shape \(2, 5, 5\), the schedule takes \(2, 6, 6\)"):
        execute(schedule(imodel, (2, 6, 6)), np.zeros((2, 5, 5), np.int64))


@pytest.mark.parametrize("text, match", [("16", "ROWSxCOLS"), ("0x4", "rows must be a positive integer"),
                                         ("2x-1", "ROWSxCOLS"), ("axb", "ROWSxCOLS")])
def test_array_sizes_are_checked(text, match):
    with pytest.raises(InputError, match=match):
        Array.parse(text)
    assert Array.parse("2X8") == Array(2, 8) and str(Array(2, 8)) == "2x8"


@pytest.mark.parametrize("banks", [3, 4])
@pytest.mark.parametrize("keep_all", [False, True], ids=["reuse", "keep_all"])
def test_banks_keep_each_step_out_of_its_inputs_banks(digits_integer, banks, keep_all):
    """Banked schedules (single-port activation RAM): a step never writes a bank it reads, every
    region stays inside its bank, live regions of a bank never overlap, and the schedule still
    runs the integer model."""
    imodel, codes = digits_integer(("fxp8", "fxp8"))
    sched = schedule(imodel, (1, 8, 8), Array(1, 16), keep_all=keep_all, banks=banks)
    single = schedule(imodel, (1, 8, 8), Array(1, 16), keep_all=keep_all)
    assert sched.banks == banks and sched.bank_words & (sched.bank_words - 1) == 0
    assert single.banks == 1 and single.bank_words == single.act_words
    assert sched.act_words <= banks * sched.bank_words
    for region in sched.regions.values():
        assert region.base // sched.bank_words == (region.base + region.size - 1) // sched.bank_words
    for step in sched.steps:
        assert sched.bank_of(step.out) not in {sched.bank_of(r) for r in _reads_regions(step)}, step.name
    assert sched.bank_of(sched.input) == 0
    # the same steps, cycles and images as the one-bank schedule, only the bases move
    assert [s.name for s in sched.steps] == [s.name for s in single.steps] and sched.cycles == single.cycles
    assert np.array_equal(sched.weights, single.weights)
    _check(imodel, codes[:4], sched)


def _reads_regions(step):
    return list(step.srcs) if hasattr(step, "srcs") else [step.src]


def test_banks_are_checked(digits_integer):
    imodel, _ = digits_integer(("fxp8", "fxp8"))
    # the residual add reads conv3 and pool, which conv3 alone keeps apart: three banks needed
    with pytest.raises(InputError, match="banks: op 'add' reads 2 banks; .* at least 3"):
        schedule(imodel, (1, 8, 8), Array(1, 16), banks=2)
    for bad in (0, True, 1.5):
        with pytest.raises(InputError, match="banks must be a positive integer"):
            schedule(imodel, (1, 8, 8), Array(1, 16), banks=bad)


# --- the weight store -----------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, capacity, expected", [
    ({"a": 9, "b": 288, "c": 576, "d": 32}, 905, []),                 # everything fits
    ({"a": 9, "b": 288, "c": 576, "d": 32}, 768, ["b", "c"]),         # 41 resident + 576 overlay
    ({"a": 9, "b": 288, "c": 576, "d": 32}, 617, ["b", "c"]),         # exactly
    ({"a": 100, "b": 120, "c": 100}, 250, ["a", "c"]),                # 120 resident + 100 overlay
    ({"a": 10, "b": 200, "c": 30}, 210, ["b", "c"]),                  # 10 + 200 overlay (b must move)
])
def test_spill_keeps_resident_words_plus_the_overlay_within_capacity(sizes, capacity, expected):
    from hwq.accel.schedule import spill
    got = spill(sizes, capacity)
    resident = sum(v for k, v in sizes.items() if k not in got)
    assert resident + max((sizes[k] for k in got), default=0) <= capacity
    assert got == [k for k in sizes if k in got]                      # step order
    # no smaller set of spilled words fits (brute force over every subset)
    import itertools
    best = min(sum(sizes[k] for k in chosen) for n in range(len(sizes) + 1)
               for chosen in itertools.combinations(sizes, n)
               if sum(sizes.values()) - sum(sizes[k] for k in chosen)
               + max((sizes[k] for k in chosen), default=0) <= capacity)
    assert sum(sizes[k] for k in got) == best
    assert got == expected


def test_spill_refuses_a_layer_larger_than_the_capacity():
    from hwq.accel.schedule import spill
    with pytest.raises(InputError, match=r"layer 'c': its weights take 576 words .* holds 500"):
        spill({"a": 9, "c": 576}, 500)
    assert spill({"a": 300, "b": 300, "c": 300}, 400) == ["a", "b", "c"]       # only all three fit
    assert spill({"a": np.int64(3), "b": 5}, np.int64(6)) == ["a", "b"]       # NumPy integers are integers
    for sizes, capacity, match in [({"a": -3, "b": 5}, 4, r"sizes\['a'\] must be a non-negative"),
                                   ({"a": "3"}, 4, r"sizes\['a'\]"), ([3, 5], 4, "sizes must be a dict"),
                                   (None, 4, "sizes must be a dict"), ({"a": 3}, 0, "capacity must be a positive"),
                                   ({"a": 3}, 4.5, "capacity"), ({"a": 3}, True, "capacity"),
                                   ({"a": 3}, None, "capacity")]:
        with pytest.raises(InputError, match=match):
            spill(sizes, capacity)


@pytest.mark.parametrize("config", [("fxp8", "fxp8"), ("ant4", "ant4"), ("ausn4", "ausn4")], ids="/".join)
@pytest.mark.parametrize("array", [Array(1, 16), Array(2, 8)], ids=str)
def test_weight_store_schedule_runs_the_integer_model(digits_integer, config, array):
    """Weights loaded from the store into the overlay before their step give the same codes,
    and the store plus the resident words are exactly the weight image without a store."""
    imodel, codes = digits_integer(config)
    plain = schedule(imodel, (1, 8, 8), array)
    total = len(plain.weights)
    sched = schedule(imodel, (1, 8, 8), array, weight_capacity=total * 3 // 4)
    assert sched.loads and len(sched.weights) <= total * 3 // 4
    _check(imodel, codes, sched)
    for step in plain.steps:
        if step.kind != "conv":
            continue
        words = plain.weights[step.weight_base:step.weight_base + step.tiles * step.fan_in]
        moved = next(s for s in sched.steps if s.name == step.name)
        if step.name in sched.loads:
            load = sched.loads[step.name]
            assert load.dst == moved.weight_base and load.words == len(words)
            assert np.array_equal(sched.store[load.src:load.src + load.words], words)
            assert load.cycles == load.words * -(-array.cols * sched.weight_bits // 16)
        else:
            assert np.array_equal(sched.weights[moved.weight_base:moved.weight_base + len(words)], words)
    assert sched.cycles == plain.cycles + sum(load.cycles for load in sched.loads.values())


def test_weight_capacity_is_checked(digits_integer):
    imodel, _ = digits_integer(("fxp8", "fxp8"))
    for bad in (0, -3, 2.5, True, "768"):
        with pytest.raises(InputError, match="weight_capacity must be a positive number of words"):
            schedule(imodel, (1, 8, 8), Array(1, 16), weight_capacity=bad)
    assert schedule(imodel, (1, 8, 8), Array(1, 16), weight_capacity=np.int64(768)).weight_capacity == 768
    with pytest.raises(InputError, match="input_shape must be a tuple of integers"):
        schedule(imodel, "abc", Array(1, 16))
    with pytest.raises(InputError, match=r"layer 'conv3': its weights take 576 words"):
        schedule(imodel, (1, 8, 8), Array(1, 16), weight_capacity=400)
