"""EfficientNet-Lite0 (ReLU6, depthwise convolutions, TF "same" padding, residual adds, global
pooling): the integer path equals fake quantization code for code, in every format.

The default suite runs three configurations on a few crops; the slow suite runs every format at
W8A8 and W4A8 (first and last layer at 8-bit weights, as the benchmark does)."""

import warnings

import pytest
import torch

from hwq.formats import FORMATS
from hwq.models.efficientnet_lite0 import efficientnet_lite0
from hwq.models.photos import photo_crops
from hwq.quant import quantize
from hwq.quant.integer import compare, integer_model

CONFIGS = {"W8A8": (8, 8), "W4A8": (4, 8)}
DEFAULT = [("ant", "W8A8"), ("fxp", "W8A8"), ("esb", "W4A8")]
SLOW = [(fmt, config) for fmt in sorted(FORMATS) if fmt != "toy" for config in CONFIGS
        if (fmt, config) not in DEFAULT]


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    model = efficientnet_lite0()
    calibration, _ = photo_crops(4, seed=1)
    crops, _ = photo_crops(3, seed=2)
    return model, calibration, crops


def _check(lite0, fmt, config):
    model, calibration, crops = lite0
    w_bits, a_bits = CONFIGS[config]
    act = f"{'fxp' if fmt == 'uniq' else fmt}{a_bits}"
    layers = [name for name, module in model.named_modules() if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))]
    overrides = {name: {"weights": f"{fmt}8"} for name in (layers[0], layers[-1])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # floored dead channels are expected here
        qmodel = quantize(model, f"{fmt}{w_bits}", act, calibration=[calibration], overrides=overrides)
    report = compare(qmodel, integer_model(qmodel), crops)
    assert report["differing_codes"] == 0 and report["output_agrees"], report["first"]
    assert len(report["ops"]) >= 60                       # every layer, add and the pool were compared
    if config == "W8A8":                                  # fake quantization follows the float model
        with torch.no_grad():
            assert (qmodel(crops).argmax(1) == model(crops).argmax(1)).float().mean() >= 2 / 3


@pytest.mark.parametrize("fmt, config", DEFAULT, ids=lambda p: p if isinstance(p, str) else "-".join(p))
def test_integer_path_equals_fake_quantization(lite0, fmt, config):
    _check(lite0, fmt, config)


@pytest.mark.slow
@pytest.mark.parametrize("fmt, config", SLOW, ids=lambda p: p if isinstance(p, str) else "-".join(p))
def test_integer_path_equals_fake_quantization_in_every_format(lite0, fmt, config):
    _check(lite0, fmt, config)
