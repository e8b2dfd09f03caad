"""hwq.quant.gptq: weights rounded per layer against the layer's output error, onto the same grid,
bit-exact in the integer path."""

import numpy as np
import pytest
import torch
from torch import nn

from hwq.errors import HwqError
from hwq.quant import evaluate, quantize
from hwq.quant.calibrate import calibrate
from hwq.quant.gptq import gptq, input_hessians
from hwq.quant.integer import compare, integer_model


def _correlated_inputs(rng, k, n):
    """(n, k) inputs whose features share a common factor, as real activations do."""
    common = rng.standard_normal((n, 1))
    return 0.8 * common + 0.4 * rng.standard_normal((n, k)) + 0.3


@pytest.mark.parametrize("spec", ["fxp4", "ant4", "esb4", "ausn4", "uniq4", "fxp3"])
def test_output_error_below_nearest_rounding_and_values_on_the_grid(spec):
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((32, 48))
    x = _correlated_inputs(rng, 48, 4000)
    quantizer = calibrate(spec, weight, role="weight")
    nearest = quantizer.fake_quantize(weight)
    rounded = gptq(weight, (x.T @ x / len(x))[None], quantizer.fake_quantize)
    assert np.array_equal(quantizer.fake_quantize(rounded), rounded)       # every value a grid value
    error = np.sum(((rounded - weight) @ x.T) ** 2)
    baseline = np.sum(((nearest - weight) @ x.T) ** 2)
    assert error < 0.7 * baseline, (error, baseline)


def test_uncorrelated_inputs_give_nearest_rounding():
    """With a diagonal H there is nothing to compensate: every weight rounds to nearest."""
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((8, 12))
    quantizer = calibrate("ant4", weight, role="weight")
    hessian = np.diag(rng.uniform(0.5, 2.0, 12))[None]
    assert np.array_equal(gptq(weight, hessian, quantizer.fake_quantize), quantizer.fake_quantize(weight))


def test_unexcited_inputs_round_to_nearest_and_move_nothing():
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((6, 10))
    x = _correlated_inputs(rng, 10, 500)
    x[:, [2, 7]] = 0
    quantizer = calibrate("fxp4", weight, role="weight")
    rounded = gptq(weight, (x.T @ x / len(x))[None], quantizer.fake_quantize)
    alive = [i for i in range(10) if i not in (2, 7)]
    alone = gptq(weight[:, alive], (x[:, alive].T @ x[:, alive] / len(x))[None], quantizer.fake_quantize)
    assert np.array_equal(rounded[:, [2, 7]], quantizer.fake_quantize(weight)[:, [2, 7]])
    assert np.array_equal(rounded[:, alive], alone)


def test_shapes_that_disagree_are_refused():
    quantizer = calibrate("fxp4", np.ones((4, 6)), role="weight")
    with pytest.raises(HwqError, match=r"GPTQ: weights \(4, 6\) do not match"):
        gptq(np.ones((4, 6)), np.eye(5)[None], quantizer.fake_quantize)


def test_input_hessians_of_grouped_padded_strided_convolution():
    """H per group of a depthwise, reflect-padded, strided convolution, against positions
    enumerated by hand."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, padding_mode="reflect", groups=4, bias=False)
    model = nn.Sequential(conv)
    x = torch.randn(3, 4, 7, 7)
    attrs = {"kind": "conv2d", "stride": (2, 2), "padding": (1, 1, 1, 1), "padding_mode": "reflect",
             "dilation": (1, 1), "groups": 4}
    hessians = input_hessians(model, {"0": attrs}, [x[:2], x[2:]])["0"]
    assert hessians.shape == (4, 9, 9)
    padded = np.pad(x.double().numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    for c in range(4):
        patches = np.array([padded[n, c, i:i + 3, j:j + 3].ravel()
                            for n in range(3) for i in range(0, 7, 2) for j in range(0, 7, 2)])
        assert patches.shape == (3 * 16, 9)
        assert np.allclose(hessians[c], patches.T @ patches / len(patches), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", [("esb3", "esb8"), ("ausn3", "ausn8"), ("uniq3", "fxp8"), ("ant4", "ant4"),
                                    ("fxp4", "fxp4")], ids="/".join)
def test_digits_cnn_with_gptq_is_bit_exact(digits, config):
    """The rounded weights are codes like any others: 0 differing codes against the integer path,
    and the weights of every layer lie on its grid (to float32 precision: they are float32 tensors)."""
    model, (x_train, _, x_test, _) = digits
    qmodel = quantize(model, *config, calibration=[x_train[:256]], rounding="gptq")
    report = compare(qmodel, integer_model(qmodel), x_test)
    assert report["differing_codes"] == 0, report["first"]
    assert report["output_agrees"]
    for layer in qmodel.layers.values():
        weight = layer.layer.weight.detach().double().numpy()
        assert np.allclose(layer.weight_quantizer.fake_quantize(weight), weight, rtol=2 ** -22, atol=0)


@pytest.mark.parametrize("config", [("esb3", "esb8"), ("ausn3", "ausn8"), ("uniq3", "fxp8")], ids="/".join)
def test_gptq_recovers_3_bit_accuracy(digits, config):
    """At 3-bit weights nearest rounding loses 7-20 points on the digits CNN here; GPTQ keeps
    within 5 points of FP32 and well above nearest rounding."""
    model, (x_train, _, x_test, y_test) = digits
    base = evaluate(model, x_test, y_test, device="cpu")
    nearest = evaluate(quantize(model, *config, calibration=[x_train[:256]]), x_test, y_test, device="cpu")
    rounded = evaluate(quantize(model, *config, calibration=[x_train[:256]], rounding="gptq"), x_test, y_test,
                       device="cpu")
    assert rounded >= base - 0.05
    assert rounded > nearest + 0.02


def test_unknown_rounding_is_refused_before_any_work():
    with pytest.raises(HwqError, match="rounding must be one of 'nearest', 'gptq', not 'adaround'"):
        quantize(nn.Sequential(nn.Linear(4, 2)), calibration=[torch.randn(2, 4)], rounding="adaround")
