"""hwq.quant.integer: the integer-only model is the golden PE math and agrees with fake quantization,
in every format (and exports, :mod:`hwq.quant.export`)."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hwq.formats import accumulate
from hwq.quant import evaluate, parse_spec, quantize
from hwq.quant.export import export, load
from hwq.quant.integer import IntegerModel, compare


@pytest.mark.parametrize("key", [("fxp8", "fxp8"), ("ant4", "ant4")])
def test_integer_accumulators_are_the_golden_pe_math(digits, quantized, key):
    _, (_, _, x_test, _) = digits
    qmodel, imodel = quantized[key]
    trace_ = {}
    imodel.run(x_test[:8], trace_)
    for name, layer in imodel.layers.items():
        codes, acc = trace_[name]["codes"], trace_[name]["acc"]
        a_values = torch.from_numpy(layer.a_format.decode(codes).astype(np.float64))
        w_values = torch.from_numpy(layer.w_format.decode(layer.weight_codes).astype(np.float64))
        if layer.op == "conv2d":
            w_values = w_values.reshape(len(w_values), a_values.shape[1], *layer.geometry["kernel_size"])
            expected = F.conv2d(a_values, w_values, stride=layer.geometry["stride"], padding=layer.geometry["padding"])
            bias = layer.bias[None, :, None, None]
        else:
            expected = a_values @ w_values.T
            bias = layer.bias[None, :]
        # small integers: float64 sums are exact
        np.testing.assert_array_equal(acc - bias, expected.numpy().astype(np.int64))
        # one output through the PE contract itself (clear, then one valid term per cycle)
        if layer.op == "linear":
            a, w = codes[0], layer.weight_codes[0]
            stream = accumulate(layer.a_format, a, layer.w_format, w, np.ones(len(a)), np.arange(len(a)) == 0)
            assert stream[-1] == acc[0, 0] - layer.bias[0]


@pytest.mark.parametrize("key", [("fxp8", "fxp8"), ("ant4", "fxp8")])
def test_integer_path_agrees_with_fake_quant(digits, quantized, key):
    _, (_, _, x_test, y_test) = digits
    qmodel, imodel = quantized[key]
    report = compare(qmodel, imodel, x_test)
    for name, entry in report["layers"].items():
        assert entry["differing_codes"] <= 0.01 * entry["codes"], (name, entry)
    if report["first"] is not None:
        first = report["first"]
        assert abs(first["integer_code"] - first["fake_code"]) >= 1 and "index" in first
    int_accuracy = float((torch.from_numpy(imodel.run(x_test)).argmax(1) == y_test).float().mean())
    assert int_accuracy == pytest.approx(evaluate(qmodel, x_test, y_test, device="cpu"), abs=0.01)


@pytest.mark.parametrize("weights, activations", [("esb4", "esb8"), ("ausn4", "fxp8"), ("uniq4", "fxp8"),
                                                  ("esb4k2", "fxp4"), ("ausn8", "fxp8")])
def test_every_format_runs_the_integer_path_and_exports(digits, tmp_path, weights, activations):
    model, (x_train, _, x_test, y_test) = digits
    qmodel = quantize(model, weights, activations, calibration=[x_train[:64]])
    assert {layer.weight_quantizer.format.name for layer in qmodel.layers.values()} == {parse_spec(weights).name}
    imodel = IntegerModel.from_quantized(qmodel)
    trace_ = {}
    logits = imodel.run(x_test[:32], trace_)
    for name, layer in imodel.layers.items():
        if layer.op == "linear":      # the golden PE contract on one output
            a, w = trace_[name]["codes"][0], layer.weight_codes[0]
            stream = accumulate(layer.a_format, a, layer.w_format, w, np.ones(len(a)), np.arange(len(a)) == 0)
            assert stream[-1] == trace_[name]["acc"][0, 0] - layer.bias[0]
    report = compare(qmodel, imodel, x_test[:32])
    assert all(e["differing_codes"] <= 0.02 * e["codes"] for e in report["layers"].values()), report["layers"]
    export(imodel, tmp_path / "export")
    np.testing.assert_array_equal(load(tmp_path / "export").run(x_test[:32]), logits)
    assert evaluate(qmodel, x_test, y_test, device="cpu") > 0.5
