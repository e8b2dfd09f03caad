"""Fixtures shared by the hwq.quant tests: the digits CNN is trained once per test session (per
xdist worker) and quantized once per configuration; tests must not modify either."""

import pytest
import torch

from hwq.quant import quantize
from hwq.quant.digits import train_digits_cnn
from hwq.quant.integer import integer_model


@pytest.fixture(scope="session")
def digits():
    """``(model, (x_train, y_train, x_test, y_test))``: the float digits CNN after 8 epochs."""
    torch.manual_seed(0)
    model, data = train_digits_cnn(epochs=8, device="cpu")
    return model, data


@pytest.fixture(scope="session")
def quantized(digits):
    """``{(weights, activations): (QuantizedModel, IntegerModel)}`` for three configurations."""
    model, (x_train, _, x_test, _) = digits
    out = {}
    for w, a in (("fxp8", "fxp8"), ("ant4", "fxp8"), ("ant4", "ant4")):
        qmodel = quantize(model, w, a, calibration=[x_train[:64]])
        out[w, a] = (qmodel, integer_model(qmodel))
    return out
