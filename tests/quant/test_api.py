"""hwq.quant.api: post-training quantization of a real model, its options and its input checks."""

import pytest
import torch
from torch import nn

from hwq.errors import HwqError
from hwq.quant import evaluate, quantize
from hwq.quant.integer import integer_model


@pytest.mark.parametrize("w, a, floor", [("fxp8", "fxp8", -0.02), ("ant4", "fxp8", -0.10), ("ant4", "ant4", -0.15)])
def test_ptq_accuracy(digits, quantized, w, a, floor):
    model, (_, _, x_test, y_test) = digits
    base = evaluate(model, x_test, y_test, device="cpu")
    assert evaluate(quantized[w, a][0], x_test, y_test, device="cpu") >= base + floor


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return self.gate(self.fc(x))


def test_bad_input_is_reported_before_any_work():
    x = [torch.randn(4, 4)]
    with pytest.raises(HwqError, match=r"layer 'gate' \(Sigmoid\) is not supported"):
        quantize(WithSigmoid(), calibration=x)
    broken = nn.Sequential(nn.Linear(4, 4))
    with torch.no_grad():
        broken[0].weight[0, 0] = float("nan")
    with pytest.raises(HwqError, match="NaN/Inf in .weight."):
        quantize(broken, calibration=x)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(HwqError, match="calibration data is empty"):
        quantize(model, calibration=[])
    with pytest.raises(HwqError, match=r"layer '0' weights: format spec 'ant16': ant takes an integer bit width from 3 to 8"):
        quantize(model, "ant16", calibration=x)
    with pytest.raises(HwqError, match="unknown layer"):
        quantize(model, calibration=x, overrides={"9": {"weights": "fxp4"}})
    with pytest.raises(HwqError, match="NaN/Inf"):
        quantize(model, calibration=[torch.full((2, 4), float("nan"))])


def test_keep_float_and_overrides(digits):
    model, (x_train, _, _, _) = digits
    qmodel = quantize(model, "fxp4", "fxp8", calibration=[x_train[:64]], keep_float=["first", "last"],
                      overrides={"conv2": {"weights": "ant4"}})
    assert qmodel.float_layers == ["conv1", "fc"] and list(qmodel.layers) == ["conv2", "conv3"]
    assert qmodel.layers["conv2"].weight_quantizer.format.name == "ant"
    with pytest.raises(HwqError, match="kept in float"):
        integer_model(qmodel)
