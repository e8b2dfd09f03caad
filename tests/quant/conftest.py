"""Fixtures shared by the hwq.quant tests: the digits CNN (``digits``, tests/conftest.py)
quantized once per configuration; tests must not modify it."""

import pytest

from hwq.quant import quantize
from hwq.quant.integer import integer_model


@pytest.fixture(scope="session")
def quantized(digits):
    """``{(weights, activations): (QuantizedModel, IntegerModel)}`` for three configurations."""
    model, (x_train, _, x_test, _) = digits
    out = {}
    for w, a in (("fxp8", "fxp8"), ("ant4", "fxp8"), ("ant4", "ant4")):
        qmodel = quantize(model, w, a, calibration=[x_train[:64]])
        out[w, a] = (qmodel, integer_model(qmodel))
    return out
