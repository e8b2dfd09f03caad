"""Every op is exact in the integer path or refused by quantize() before any work, naming the
layer or node, the op and the attribute; numeric extremes give exact results, a warning, or one
clear error."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hwq.errors import InputError
from hwq.quant import quantize
from hwq.quant.analysis import analyse
from hwq.quant.api import ScaleFloorWarning
from hwq.quant.integer import compare, integer_model


def _exact(model, x, weights="fxp8", activations="fxp8", faithful=0.1):
    """Quantize ``model``, check 0 differing codes against its integer model, the output shape,
    and that fake quantization follows the float model (max error <= ``faithful`` of the range)."""
    model.eval()
    qmodel = quantize(model, weights, activations, calibration=[x])
    imodel = integer_model(qmodel)
    report = compare(qmodel, imodel, x)
    assert report["differing_codes"] == 0 and report["output_agrees"], report["first"]
    with torch.no_grad():
        expected, got = model(x), qmodel(x)
    assert got.shape == expected.shape and imodel.run(x).shape == tuple(expected.shape)
    span = float(expected.max() - expected.min()) or 1.0
    assert float((got - expected).abs().max()) <= faithful * span
    return qmodel, imodel


class Add(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.a, self.b, self.op = nn.Linear(6, 4), nn.Linear(6, 4), op

    def forward(self, x):
        return self.op(self.a(x), self.b(x))


@pytest.mark.parametrize("op", [
    lambda a, b: torch.add(a, b, alpha=2), lambda a, b: torch.sub(a, b, alpha=0.5), lambda a, b: a - b,
    lambda a, b: a.add(b, alpha=-3), lambda a, b: a + b])
def test_add_and_sub_with_alpha_are_exact(op):
    torch.manual_seed(0)
    _exact(Add(op), torch.randn(64, 6))


@pytest.mark.parametrize("op", [lambda a: a + 1.5, lambda a: 2 - a, lambda a: torch.add(a, 0.25, alpha=4),
                                lambda a: 3 + a])
def test_arithmetic_with_a_constant_is_exact(op):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.b(op(self.a(x)))
    torch.manual_seed(0)
    _exact(M(), torch.randn(64, 6))


@pytest.mark.parametrize("pool", [
    nn.AvgPool2d(2, ceil_mode=True), nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
    nn.AvgPool2d(2, divisor_override=3), nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
    nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True),
    nn.MaxPool2d(2, stride=1, dilation=2), nn.AdaptiveAvgPool2d(1)], ids=repr)
def test_pooling_attributes_are_exact(pool):
    torch.manual_seed(0)
    x = torch.randn(4, 2, 5, 5)
    conv = nn.Conv2d(2, 3, 1)
    with torch.no_grad():
        size = pool(conv(x)).flatten(1).shape[1]
    _exact(nn.Sequential(conv, nn.ReLU(), pool, nn.Flatten(), nn.Linear(size, 4)), x)


@pytest.mark.parametrize("padding, kernel, dilation", [("same", 3, 1), ("same", 4, 1), ("same", 3, 2),
                                                       ("valid", 3, 1), ((1, 2), 3, 1)])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_convolution_padding_and_padding_mode_are_exact(padding, kernel, dilation, mode):
    torch.manual_seed(0)
    x = torch.randn(4, 2, 7, 7)
    conv = nn.Conv2d(2, 3, kernel, padding=padding, dilation=dilation, padding_mode=mode)
    with torch.no_grad():
        size = conv(x).flatten(1).shape[1]
    qmodel, _ = _exact(nn.Sequential(conv, nn.Flatten(), nn.Linear(size, 4)), x)
    if mode != "zeros" and padding != "valid":            # not treated as zeros: differs from zero padding
        zeros = nn.Conv2d(2, 3, kernel, padding=padding, dilation=dilation)
        zeros.load_state_dict(conv.state_dict())
        with torch.no_grad():
            assert not torch.allclose(zeros(x), conv(x))


@pytest.mark.parametrize("groups, out_channels", [(2, 4), (8, 8), (8, 16)])
def test_grouped_and_depthwise_convolutions_are_exact_and_counted(groups, out_channels):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    model = nn.Sequential(nn.Conv2d(8, out_channels, 3, groups=groups, padding=1), nn.ReLU6())
    qmodel, _ = _exact(model, x, "ant4", "ant8", faithful=0.3)
    macs = out_channels * (8 // groups) * 9 * 36                          # per sample, by hand
    fan_in = (8 // groups) * 9
    expected = macs * (8 * 4 + 8 + 4 + np.log2(fan_in))                  # UNIQ's BOPs, fan-in per group
    assert analyse(qmodel, x[:1])[0]["bops"] == pytest.approx(expected)


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 5)

    def forward(self, x):
        x = F.pad(x, (0, 1, 0, 1))
        x = F.hardtanh(self.c1(x), 0.0, 4.0)
        x = F.max_pool2d(x, 2)
        x = torch.clamp(self.c2(x), min=0.0)
        x = F.avg_pool2d(x, 2, stride=1)
        x = F.adaptive_avg_pool2d(x, 1) + x.mean((2, 3), keepdim=True)
        return self.fc(torch.flatten(x, 1))


def test_functional_forms_are_exact():
    torch.manual_seed(0)
    _exact(Functional(), torch.randn(4, 3, 12, 12), "esb8", "esb8")


def test_view_with_the_batch_size_read_from_the_input():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(2, 3, 3), nn.Linear(48, 5)

        def forward(self, x):
            return self.fc(self.c(x).view(x.size(0), -1))
    torch.manual_seed(0)
    _exact(M(), torch.randn(4, 2, 6, 6))


class Wrap(nn.Module):
    def __init__(self, body, features):
        super().__init__()
        self.c, self.body, self.fc = nn.Conv2d(2, 4, 3), body, nn.Linear(features, 3)

    def forward(self, x):
        return self.fc(self.body(self.c(x)))


@pytest.mark.parametrize("body, features, match", [
    (lambda x: x.reshape(-1, 16), 16, r"node 'reshape' \(reshape\): shape changes the batch dimension"),
    (lambda x: x.view(-1), 64, r"runs on one sample but not on a batch of two"),
    (lambda x: torch.cat([x, x], 1).flatten(1), 128, r"node 'cat'"),
    (lambda x: F.adaptive_avg_pool2d(x, 3).flatten(1), 36, r"output_size \(3, 3\) does not divide"),
    (lambda x: F.pad(x, (1, 1, 1, 1), value=1.0).flatten(1), 144, r"value 1.0 is not 0"),
    (lambda x: F.pad(x, (-1, 0, 0, 0)).flatten(1), 48, r"pad \(-1, 0, 0, 0\) has a negative"),
    (lambda x: x.mean(1).flatten(1), 16, r"\(mean\): dim 1"),
    (lambda x: (x * 2).flatten(1), 64, r"node 'mul'"),
    (lambda x: F.max_pool2d(x, 2, return_indices=True)[0].flatten(1), 16, r"max_pool2d_with_indices"),
], ids=["reshape(-1, 16)", "view(-1)", "cat", "adaptive", "pad value", "crop", "mean dim", "mul", "indices"])
def test_unsupported_ops_are_refused_before_any_work(body, features, match):
    class Body(nn.Module):
        def forward(self, x):
            return body(x)
    with pytest.raises(InputError, match=match):
        quantize(Wrap(Body(), features), calibration=[torch.randn(2, 2, 6, 6)])


def test_modules_with_attributes_the_integer_path_cannot_follow_are_refused():
    bad = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(64, 3), nn.ReLU(), nn.Hardswish())
    with pytest.raises(InputError, match=r"layer '4' \(Hardswish\) is not supported"):
        quantize(bad, calibration=[torch.randn(2, 2, 6, 6)])
    with pytest.raises(InputError, match=r"clamp.*acts on the model input"):
        quantize(nn.Sequential(nn.ReLU(), nn.Linear(4, 2)), calibration=[torch.randn(2, 4)])


def test_a_clamp_that_cannot_fold_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            y = self.a(x)
            return self.b(torch.relu(y) + y)
    with pytest.raises(InputError, match=r"node 'relu' \(clamp\) cannot fold.*'a' \(layer\) is also read"):
        quantize(M(), calibration=[torch.randn(2, 4)])


def test_one_tensor_read_in_two_formats_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) + self.c(y)
    with pytest.raises(InputError, match=r"read by layers that want different activation formats: b \(fxp8\), "
                                         r"c \(fxp4\)"):
        quantize(M(), calibration=[torch.randn(2, 4)], overrides={"c": {"activations": "fxp4"}})


def test_tiny_weights_and_bias_are_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4))
    with torch.no_grad():
        model[0].weight.mul_(1e-12)
        model[0].bias.mul_(1e-12)
    _exact(model, torch.randn(64, 6))


def test_a_nearly_dead_channel_is_floored_with_a_warning_not_wrapped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4))
    with torch.no_grad():
        model[0].weight[1].mul_(1e-20)
    x = torch.randn(64, 6)
    with pytest.warns(ScaleFloorWarning, match=r"layer '0'.*channel\(s\) 1"):
        qmodel, imodel = _exact(model, x, "ant8", "fxp8")
    bias = imodel.layers["0"].bias
    assert np.abs(bias).max() < 2 ** 31
    out = imodel.run(x)[:, 1]                      # the dead channel gives its bias, in both paths
    assert np.allclose(out, float(model[0].bias[1].detach()), atol=2 * imodel.tensors[imodel.output].unit)


@pytest.mark.parametrize("where", ["weight", "bias"])
def test_nan_parameters_are_refused_naming_the_layer(where):
    model = nn.Sequential(nn.Linear(6, 4))
    with torch.no_grad():
        getattr(model[0], where)[0] = float("nan")
    with pytest.raises(InputError, match=rf"layer '0' \(Linear\) has NaN/Inf in '{where}'"):
        quantize(model, calibration=[torch.randn(4, 6)])


def test_nan_batchnorm_statistics_are_refused():
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    model[1].running_var[0] = float("nan")
    with pytest.raises(InputError, match=r"layer '1' \(BatchNorm2d\) has NaN/Inf in 'running_var'"):
        quantize(model, calibration=[torch.randn(4, 2, 3, 3)])


@pytest.mark.parametrize("batches, match", [
    ([torch.randn(4, 3, 6, 6)], r"cannot run on inputs of shape \(3, 6, 6\) per sample; expected \(N, 2, H, W\) "
                                r"for the first layer 'c' \(Conv2d\)"),
    ([torch.zeros(4, 2, 6, 6, dtype=torch.int64)], r"batch 0 has dtype torch.int64; expected floating point "
                                                   r"\(N, 2, H, W\) for the first layer 'c' \(Conv2d\)"),
    ([torch.randn(4, 2, 6, 6), torch.randn(4, 2, 7, 7)], r"batch 1 has shape \(4, 2, 7, 7\)"),
    ([torch.randn(2, 6, 6)[0]], r"shape \(6,\) per sample; expected \(N, 2, H, W\)"),
    ([], r"calibration data is empty"),
    (torch.randn(4, 2, 6, 6), r"iterable of batches"),
    (["x"], r"batch 0 is a str"),
])
def test_bad_calibration_batches_give_one_clear_error(batches, match):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(2, 3, 3), nn.Linear(48, 5)

        def forward(self, x):
            return self.fc(torch.flatten(self.c(x), 1))
    with pytest.raises(InputError, match=match):
        quantize(M(), calibration=batches)


def test_a_layer_called_twice_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return self.a(self.a(x))
    with pytest.raises(InputError, match=r"layer 'a' is called twice"):
        quantize(M(), calibration=[torch.randn(2, 4)])


def test_bias_correction_removes_the_mean_output_error_of_quantized_weights():
    """Inputs with a large mean: 4-bit weights shift every output's mean; bias correction
    (Nagel et al. 2019) takes the shift out, and the result is still exact in the integer path."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 8))
    x = torch.randn(2048, 64) + 3.0
    with torch.no_grad():
        reference = model(x)
    errors = []
    for correct in (False, True):
        qmodel = quantize(model, "fxp4", "fxp8", output="fxp16", calibration=[x], bias_correction=correct)
        with torch.no_grad():
            errors.append(float((qmodel(x) - reference).mean(0).abs().mean()))
        assert compare(qmodel, integer_model(qmodel), x)["differing_codes"] == 0
    assert errors[1] < errors[0] / 4, errors
