"""hwq.sim.workload: a real layer's operand stream through a PE, every sum checked, with its
switching activity recorded (SAIF) on Verilator. The digits CNN is trained in the session
(tests/conftest.py); nothing is downloaded."""

import json
from fractions import Fraction

import numpy as np
import pytest

from hwq.errors import InputError
from hwq.pe import AntPE, FixedPointPE
from hwq.sim import runner
from hwq.sim.workload import layer_workload, load_workload, match_mode, save_workload
from hwq.synth.activity import read_saif
from tests.sim.test_bench import emit, require


@pytest.fixture(scope="module")
def quantized(digits):
    """``get(a, w) -> (integer model, 40 test input codes)`` of the digits CNN."""
    from hwq.quant import quantize
    from hwq.quant.integer import integer_model

    model, (x_train, _, x_test, _) = digits
    cache = {}

    def get(a, w):
        if (a, w) not in cache:
            imodel = integer_model(quantize(model, a, w, calibration=[x_train[:64]]))
            cache[a, w] = imodel, imodel.quantize_input(x_test[:40].numpy())
        return cache[a, w]
    return get


@pytest.mark.parametrize("layer", ["conv1", "conv2", "fc"])
def test_each_sum_of_the_stream_is_the_layers_accumulator(quantized, layer):
    """Decode the streamed codes with the formats' own values and add the products up per sum:
    each is the accumulator the integer model computed for that output."""
    imodel, codes = quantized("fxp8", "fxp8")
    wl = layer_workload(imodel, codes, layer, sums=64, seed=3)
    k = wl["fan_in"]
    assert len(wl["a"]) == len(wl["w"]) == 64 * k and wl["valid"].all()
    assert (wl["clear"].reshape(64, k) == np.eye(1, k, dtype=np.int64)).all()
    a_values = np.array(wl["a_format"].int_values, dtype=np.int64)
    w_values = np.array(wl["w_format"].int_values, dtype=np.int64)
    sums = (a_values[wl["a"]] * w_values[wl["w"]]).reshape(64, k).sum(axis=1)
    assert (sums == wl["acc"]).all() and np.count_nonzero(wl["acc"]) > 32
    again = layer_workload(imodel, codes, layer, sums=64, seed=3)
    assert all((again[key] == wl[key]).all() for key in ("a", "w", "acc"))      # seeded


def test_the_matching_mode_of_a_pe_with_run_time_types(quantized, tmp_path):
    """ANT: the mode picked holds the layer's activation and weight values (up to one scale)."""
    imodel, codes = quantized("ant4", "ant4")
    wl = layer_workload(imodel, codes, "conv2", sums=4)
    manifest = json.loads(emit(AntPE.from_bits(4, 4), tmp_path / "ant").read_text())
    mode, note = match_mode(manifest, wl["a_format"], wl["w_format"])
    assert note is None and len(manifest["modes"]) > 1
    book = manifest["modes"][mode]["codebook"]
    for role, fmt in (("a", wl["a_format"]), ("w", wl["w_format"])):
        values = [Fraction(v) for v in fmt.int_values]
        scale = next(Fraction(b) / v for b, v in zip(book[role], values) if v)
        assert scale > 0 and [Fraction(b) for b in book[role]] == [scale * v for v in values]
    wide = json.loads(emit(FixedPointPE.from_bits(8, 8), tmp_path / "fxp").read_text())
    with pytest.raises(InputError, match="the layer's a codes have 4 bits, PE fxp_pe_a8_w8's a port 8"):
        match_mode(wide, wl["a_format"], wl["w_format"])


def test_a_layer_stream_through_the_pe_with_its_saif(quantized, tmp_path):
    """fxp 4x4: 32 sums of conv2 on Verilator, every sum checked by the bench; the SAIF holds
    the PE's nets."""
    require("verilator")
    imodel, codes = quantized("fxp4", "fxp4")
    wl = layer_workload(imodel, codes, "conv2", sums=32)
    manifest_path = emit(FixedPointPE.from_bits(4, 4), tmp_path / "rtl")
    mode, _ = match_mode(json.loads(manifest_path.read_text()), wl["a_format"], wl["w_format"])
    save_workload(tmp_path / "conv2.npz", wl, mode)
    saif = tmp_path / "run.saif"
    ntests, nfail = runner.run_bench(manifest_path, "verilator", tmp_path / "build", saif=saif,
                                     workload=tmp_path / "conv2.npz")
    assert (ntests, nfail) == (1, 0)
    parsed = read_saif(saif)
    nets = {name for _, scope in parsed.scopes() for name in scope.nets}
    assert parsed.duration > 0 and {"acc[0]", "a[0]", "w[3]"} <= nets


def test_bad_workloads_are_refused_before_any_work(quantized, tmp_path):
    imodel, codes = quantized("fxp4", "fxp4")
    with pytest.raises(InputError, match="layer 'conv9': not a convolution or linear layer .*conv1"):
        layer_workload(imodel, codes, "conv9")
    with pytest.raises(InputError, match="sums=100000: layer 'fc' has 400 outputs"):
        layer_workload(imodel, codes, "fc", sums=100000)
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.zeros(3, dtype=np.int64))
    with pytest.raises(InputError, match="bad.npz: not a workload file"):
        load_workload(bad)
    np.savez(bad, a=np.zeros(3, dtype=np.int64), w=np.zeros(3, dtype=np.int64), valid=np.full(3, 2),
             clear=np.zeros(3, dtype=np.int64))
    with pytest.raises(InputError, match="array 'valid' must hold 0 and 1 only"):
        load_workload(bad)
    manifest_path = emit(FixedPointPE.from_bits(4, 4), tmp_path / "rtl")
    good = tmp_path / "good.npz"
    save_workload(good, layer_workload(imodel, codes, "fc", sums=2), "no_such_mode")
    with pytest.raises(InputError, match="mode 'no_such_mode' is not a mode of fxp_pe_a4_w4"):
        runner.run_bench(manifest_path, "icarus", tmp_path / "b", workload=good)
    with pytest.raises(InputError, match="leave out --test"):
        runner.run_bench(manifest_path, "icarus", tmp_path / "b", workload=good, testcase="exhaustive")
    with pytest.raises(InputError, match="SAIF.* Verilator only, not icarus"):
        runner.run_bench(manifest_path, "icarus", tmp_path / "b", saif=tmp_path / "x.saif")
