# amaranth: UnusedElaboratable=no
"""The cocotb bench of the whole accelerator (``sim/accel_bench.py``, ``sim/accel_runner.py``) on
real inputs: the digits CNN's test images, quantized at W8A8 in every format, bit-exact against
the integer model in every tensor (the whole activation memory is read back after each image)
and in the final scores, with the cycle count of every inference.

UNIQ quantizes weights only (``quantize`` refuses UNIQ activations), so its case is uniq8
weights with fxp8 activations. Both simulators are required: a missing one fails, never skips.

Cost: each (format, array) is built once per test process (a module-scoped cache) and runs
:data:`IMAGES` images; the slow suite runs :data:`SLOW_IMAGES` per format in the same build
directory (the build is reused when its Verilog is unchanged). The fault-injection and the Icarus
tests run on Icarus, whose build of this design takes a second where Verilator's takes tens.
"""

import dataclasses

import numpy as np
import pytest

from hwq.accel.schedule import Array, execute, schedule
from hwq.errors import InputError
from hwq.sim import runner
from hwq.sim.accel_runner import run_accel_bench
from tests.sim.test_inputs import require

#: W8A8 in every format (UNIQ: fxp8 activations)
FORMATS = [("fxp8", "fxp8"), ("ant8", "ant8"), ("esb8", "esb8"), ("ausn8", "ausn8"), ("uniq8", "fxp8")]
#: images per format in the default suite (Verilator)
IMAGES = 20
#: images per format in the slow suite (Verilator)
SLOW_IMAGES = 200
#: images on Icarus (~15 s each on one core)
ICARUS_IMAGES = 2
INPUT_SHAPE = (1, 8, 8)
CASES = [pytest.param(config, Array(1, 16), id=f"{'/'.join(config)}-1x16") for config in FORMATS]
CASES.append(pytest.param(("ant8", "ant8"), Array(2, 8), id="ant8/ant8-2x8"))


@pytest.fixture(scope="module")
def digits_codes(digits):
    """``get(config) -> (imodel, test input codes (450, 1, 8, 8))``, each quantized once."""
    from hwq.quant import quantize
    from hwq.quant.integer import integer_model

    model, (x_train, _, x_test, _) = digits
    cache = {}

    def get(config):
        if config not in cache:
            imodel = integer_model(quantize(model, *config, calibration=[x_train[:64]]))
            cache[config] = imodel, imodel.quantize_input(x_test.numpy())
        return cache[config]
    return get


@pytest.fixture(scope="module")
def bench(digits_codes, tmp_path_factory):
    """``run(config, array, simulator, images) -> (imodel, codes, result)``, each run once; the
    build directories of one simulator share a parent (Verilator's runtime objects are shared)."""
    root = tmp_path_factory.mktemp("accel_build")
    cache = {}

    def run(config, array, simulator, images):
        key = (config, array, simulator, images)
        if key not in cache:
            require(simulator)
            imodel, codes = digits_codes(config)
            build_dir = root / simulator / f"{'-'.join(config)}-{array}"
            result = run_accel_bench(imodel, codes[:images], input_shape=INPUT_SHAPE, array=array,
                                     simulator=simulator, build_dir=build_dir)
            cache[key] = imodel, codes[:images], result
        return cache[key]
    return run


def _check(imodel, codes, result, array, config):
    """Assertions on a passing run whose expected values come from the integer model and the
    schedule, not from the bench."""
    n = len(codes)
    assert result["images"] == n and result["mismatches"] == 0
    scores = imodel.run_codes(codes)
    assert result["outputs"].shape == scores.shape and np.array_equal(result["outputs"], scores)
    sched = schedule(imodel, INPUT_SHAPE, array, keep_all=True)
    cycles = result["cycles"]
    assert len(cycles) == n and len(set(cycles)) == 1 and cycles[0] == result["expected_cycles"]
    # the schedule's steady-state count plus the streams (input codes, the memory read back),
    # plus a small pipeline overhead per step
    floor = sched.cycles + sched.input.size + sched.act_words
    assert floor < cycles[0] < floor + 0.02 * sched.cycles, (cycles[0], floor)
    timing = result["timing"]
    print(f"{result['simulator']} {'/'.join(config)} {array}: {n} images, {cycles[0]} cycles per inference (schedule "
          f"{sched.cycles}); emit {timing['emit_s']:.1f} s, build {timing['build_s']:.1f} s, sim "
          f"{timing['sim_s']:.1f} s ({timing['sim_s'] / n:.2f} s per image)")


@pytest.mark.parametrize("config, array", CASES)
def test_digits_cnn_on_verilator(bench, config, array):
    imodel, codes, result = bench(config, array, "verilator", IMAGES)
    assert IMAGES >= 20
    _check(imodel, codes, result, array, config)


@pytest.mark.slow
@pytest.mark.parametrize("config, array", CASES[:len(FORMATS)])
def test_digits_cnn_on_verilator_many_images(bench, config, array):
    imodel, codes, result = bench(config, array, "verilator", SLOW_IMAGES)
    assert SLOW_IMAGES >= 200
    _check(imodel, codes, result, array, config)


def test_digits_cnn_on_icarus(bench):
    array, config = Array(1, 16), ("fxp8", "fxp8")
    imodel, codes, result = bench(config, array, "icarus", ICARUS_IMAGES)
    _check(imodel, codes, result, array, config)


def test_an_altered_weight_is_caught_and_named(digits_codes, tmp_path):
    """Hardware built from a schedule with one weight code altered (its sign bit flipped), checked
    against the true model: BenchFailed names the layer, the first wrong channel and position and
    the expected and actual codes, as the numpy sequencer predicts them for the altered image."""
    require("icarus")
    imodel, codes = digits_codes(("fxp8", "fxp8"))
    image = codes[0]
    true = schedule(imodel, INPUT_SHAPE, Array(1, 16), keep_all=True)
    step = next(s for s in true.steps if s.name == "conv2")
    lane = 3
    want = {}
    execute(true, image, trace=want)
    for k in range(step.fan_in):
        weights = true.weights.copy()
        weights[step.weight_base + k, lane] ^= 1 << (true.weight_bits - 1)
        altered = dataclasses.replace(true, weights=weights)
        got = {}
        execute(altered, image, trace=got)
        wrong = np.argwhere(got["conv2"] != want["conv2"])
        if len(wrong):
            break
    assert len(wrong) and np.array_equal(got["conv1"], want["conv1"])     # conv2 is the first wrong layer
    channel, y, x = (int(v) for v in wrong[0])                    # row-major: the first wrong word
    assert channel == step.channel0[0] + lane
    with pytest.raises(runner.BenchFailed) as info:
        run_accel_bench(imodel, codes[:1], input_shape=INPUT_SHAPE, array=Array(1, 16), simulator="icarus",
                        build_dir=tmp_path / "build", sched=altered)
    message = str(info.value)
    assert "1 of 1 images read back differ" in message
    region = true.regions["conv2"]
    _, h, w = region.shape
    assert (f"layer conv2: channel {channel}, position ({y}, {x}) (word {region.base + (channel * h + y) * w + x}; "
            f"{len(wrong)} of {region.size} codes differ): "
            f"expected code {want['conv2'][channel, y, x]}, got {got['conv2'][channel, y, x]}") in message
    assert "accumulator" in message and "weights" in message
    assert "took other than the expected" not in message


def test_bad_arguments_fail_before_any_work(digits_codes, tmp_path):
    imodel, codes = digits_codes(("fxp8", "fxp8"))
    build = tmp_path / "build"

    def call(**changes):
        kwargs = dict(imodel=imodel, images=codes[:2], input_shape=INPUT_SHAPE, array=Array(1, 16),
                      simulator="icarus", build_dir=build)
        kwargs.update(changes)
        return run_accel_bench(**kwargs)

    with pytest.raises(InputError, match="simulator"):
        call(simulator="questa")
    with pytest.raises(InputError, match="imodel"):
        call(imodel="model")
    with pytest.raises(InputError, match="array"):
        call(array=(1, 16))
    with pytest.raises(InputError, match="input_shape"):
        call(input_shape=(1, 8, 0))
    with pytest.raises(InputError, match="conv1"):                        # the layer it does not fit
        call(input_shape=(3, 8, 8))
    with pytest.raises(InputError, match="images"):
        call(images=codes[:2, :, :7])
    with pytest.raises(InputError, match="images"):
        call(images=codes[0])
    with pytest.raises(InputError, match="images"):
        call(images=codes[:0])
    with pytest.raises(InputError, match="images"):
        call(images=codes[:2].astype(float))
    for bad in (-1, 256):
        too = codes[:2].copy()
        too[1, 0, 3, 3] = bad
        with pytest.raises(InputError, match="images hold codes"):
            call(images=too)
    other = schedule(imodel, INPUT_SHAPE, Array(2, 8), keep_all=True)
    with pytest.raises(InputError, match="sched"):
        call(sched=other)
    with pytest.raises(InputError, match="sched"):
        call(sched="schedule")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="build"):
        call(build_dir=tmp_path / "file")
    assert not build.exists()


#: W8A8 as hwq-build makes it for the UP5K on 1x8: activation banks in SPRAM, products in SB_MAC16
#: pairs (not for AUSN), two layers' weights in the SPRAM weight store, preloaded by the bench
#: fxp8 in the default suite; the other formats' UP5K builds in the slow one
UP5K_CASES = [pytest.param(("fxp8", "fxp8"), id="fxp8/fxp8"),
              pytest.param(("ant8", "ant8"), id="ant8/ant8", marks=pytest.mark.slow),
              pytest.param(("ausn8", "ausn8"), id="ausn8/ausn8", marks=pytest.mark.slow)]


@pytest.mark.parametrize("config", UP5K_CASES)
def test_digits_cnn_as_built_for_the_up5k_with_its_weight_store(digits_codes, tmp_path, config):
    from hwq.accel_build import hardware
    imodel, codes = digits_codes(config)
    array = Array(1, 8)
    sched, acc = hardware(imodel, array, "up5k")
    assert sched.loads and sched.banks == 3                         # the store is exercised
    assert acc.conv.mapping == ("fabric" if config[0].startswith("ausn") else "dsp")
    result = run_accel_bench(imodel, codes[:IMAGES], input_shape=INPUT_SHAPE, array=array, simulator="verilator",
                             build_dir=tmp_path / "build", banks=sched.banks, mapping=acc.conv.mapping,
                             max_dsp=acc.conv.max_dsp, weight_capacity=sched.weight_capacity)
    assert result["mismatches"] == 0 and result["images"] == IMAGES           # every tensor read back
    assert np.array_equal(result["outputs"], imodel.run_codes(codes[:IMAGES]))
    # the loads are part of every inference: the schedule's count with them, plus the streams
    read_back = schedule(imodel, INPUT_SHAPE, array, keep_all=True, banks=3, weight_capacity=sched.weight_capacity)
    floor = read_back.cycles + read_back.input.size + read_back.act_words
    assert set(result["cycles"]) == {result["expected_cycles"]}
    assert floor < result["expected_cycles"] < floor + 0.02 * read_back.cycles
    assert sum(load.cycles for load in read_back.loads.values()) == 6912   # 1 728 words x 4 pieces
