"""hwq.quant.integer: the integer model of a quantized network is the golden PE math, rounds once
with each format's own encoder, and agrees code for code with fake quantization."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hwq.formats import accumulate
from hwq.quant import quantize
from hwq.quant.integer import compare, integer_model
from hwq.quant.train import train

#: the digits CNN in every format at W8A8, W4A8 and W4A4 (UNIQ's activations are uniform: fxp)
CONFIGS = [(f"{fmt}{w}", f"{'fxp' if fmt == 'uniq' else fmt}{a}")
           for fmt in ("fxp", "ant", "esb", "ausn", "uniq") for w, a in ((8, 8), (4, 8), (4, 4))]


@pytest.fixture(scope="module")
def digits_models(digits):
    """``{config: QuantizedModel}``, each quantized when a test first asks for it."""
    model, (x_train, _, _, _) = digits

    class Models(dict):
        def __missing__(self, config):
            self[config] = quantize(model, *config, calibration=[x_train[:128]])
            return self[config]
    return Models()


@pytest.mark.parametrize("config", CONFIGS, ids="/".join)
def test_digits_cnn_integer_path_equals_fake_quantization(digits, digits_models, config):
    """0 differing codes and 0 differing accumulators, op by op, on the whole test set."""
    _, (_, _, x_test, y_test) = digits
    qmodel = digits_models[config]
    imodel = integer_model(qmodel)
    report = compare(qmodel, imodel, x_test)
    assert report["differing_codes"] == 0, report["first"]
    assert report["input"]["differing_codes"] == 0 and report["output_agrees"]
    assert set(report["ops"]) >= set(qmodel.layers)
    logits = imodel.run(x_test)
    with torch.no_grad():
        assert np.array_equal(qmodel(x_test).argmax(1).numpy(), logits.argmax(1))
    assert float((logits.argmax(1) == y_test.numpy()).mean()) > 0.5


def _patches(layer, codes):
    """im2col written out in the test: (N, L, C/g*kh*kw) per group, with torch's unfold."""
    values = torch.from_numpy(layer.a_format.decode(codes).astype(np.float64))
    top, bottom, left, right = layer.padding
    values = F.pad(values, (left, right, top, bottom))
    return F.unfold(values, layer.weight_codes.shape[2:], dilation=layer.dilation, stride=layer.stride)


@pytest.mark.parametrize("config", [("fxp8", "fxp8"), ("ant4", "ant4"), ("esb4", "esb4"), ("ausn4", "ausn4"),
                                    ("uniq4", "fxp4")], ids="/".join)
def test_every_layer_is_the_pe_contract_and_rounds_once(digits, digits_models, config):
    """Accumulators through the PE contract (clear, one product per cycle), and every output
    code equal to the format's encoder on the exact rational (acc + bias) * M / 2**S, clamped,
    computed here with Fractions."""
    _, (_, _, x_test, _) = digits
    imodel = integer_model(digits_models[config])
    trace = {}
    imodel.run(x_test[:4], trace)
    for name, layer in imodel.layers.items():
        codes, acc, out = trace[layer.inputs[0]], trace[name + ".acc"], trace[name]
        if layer.kind == "conv2d":
            a = _patches(layer, codes)[0, :, 0].numpy().astype(np.int64)      # first output position
            a_codes = layer.a_format.encode(np.ldexp(a.astype(np.float64), layer.a_format.lsb_exp))
            w_codes = layer.weight_codes[0].ravel()
            first = acc[0, 0, 0, 0]
        else:
            a_codes, w_codes, first = codes[0], layer.weight_codes[0], acc[0, 0]
        stream = accumulate(layer.a_format, a_codes, layer.w_format, w_codes, np.ones(len(a_codes)),
                            np.arange(len(a_codes)) == 0)
        assert stream[-1] == first, name
        fmt = layer.out_format
        low, high = layer.clamp.values(layer.table)
        flat_acc = np.moveaxis(acc, 1, -1).reshape(-1, acc.shape[1])[:64]
        flat_out = np.moveaxis(out, 1, -1).reshape(-1, out.shape[1])[:64]
        for row_acc, row_out in zip(flat_acc, flat_out):
            for o, (value, code) in enumerate(zip(row_acc, row_out)):
                exact = Fraction(int(value) + int(layer.bias[o])) * int(layer.multiplier.multiplier[o]) \
                    / 2 ** int(layer.multiplier.shift[o])
                exact = min(max(exact, low), high)
                expected = fmt.encode([float(exact * Fraction(2) ** fmt.lsb_exp)])[0]
                assert code == expected, (name, o, exact)


def test_requantization_rounds_once_where_two_roundings_differ():
    """One Linear at fxp8/fxp8 on 20 000 inputs (where rounding to guard bits, then half to even,
    changed 627 codes), and one hand-made tie: an input of -4.5015 code units is code -5."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4))
    x = torch.randn(20000, 16)
    qmodel = quantize(model, "fxp8", "fxp8", calibration=[x])
    imodel = integer_model(qmodel)
    report = compare(qmodel, imodel, x)
    assert report["differing_codes"] == 0 and report["ops"]["0"]["codes"] == 80000
    fmt = imodel.tensors[imodel.input].format
    value = -4.5015 / 2 ** fmt.frac
    assert fmt.decode(imodel.quantize_input(np.full((1, 16), value)))[0, 0] == -5


def test_quantization_aware_training_trains_through_the_same_arithmetic(digits):
    model, (x_train, y_train, x_test, _) = digits
    qmodel = quantize(model, "ant4", "ant4", calibration=[x_train[:128]])
    before = qmodel.layers["fc"].layer.weight.detach().clone()
    train(qmodel, x_train[:256], y_train[:256], epochs=1, lr=1e-3, device="cpu")
    assert not torch.equal(before, qmodel.layers["fc"].layer.weight)      # gradients reached the weights
    report = compare(qmodel, integer_model(qmodel), x_test[:64])
    assert report["differing_codes"] == 0, report["first"]


@pytest.mark.parametrize("a_max, w_max, channels, groups", [(127, 127, 64, 1), (4096, 4096, 16, 1),
                                                            (32767, 32767, 4, 1), (30000, 300, 8, 8)])
def test_fake_quantization_accumulators_are_exact_beyond_float32(a_max, w_max, channels, groups):
    """The float32 path (split into weight digits when products could pass 2**24) against the
    golden convolution, on integers up to 16 bits, negative weights included."""
    from hwq.formats.fxp import FixedPoint
    from hwq.integer import ops
    from hwq.quant.modules import QuantLayer
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels, 8 if groups == 1 else channels, 3, groups=groups)
    layer = QuantLayer("t", conv, None, None, None, {"stride": (1, 1), "padding": (1, 1, 1, 1),
                                                    "padding_mode": "zeros", "dilation": (1, 1), "groups": groups})
    a = torch.randint(-a_max, a_max + 1, (2, channels, 6, 6)).double()
    w = torch.randint(-w_max, w_max + 1, conv.weight.shape).double()
    w[0] = w_max                                                         # the extremes
    a[0, :, 0, 0] = -a_max
    fmt = FixedPoint(16)
    expected = ops.conv2d(fmt, fmt.encode(np.pad(a.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))), fmt,
                          fmt.encode(w.numpy()), 1, 1, groups)
    assert np.array_equal(layer._accumulate(a, w), expected)
