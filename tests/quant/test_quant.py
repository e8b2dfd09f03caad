"""hwq.quant: the PyTorch front end on a real model and real data (scikit-learn's digits)."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hwq.errors import HwqError
from hwq.formats import accumulate
from hwq.quant import calibrate, evaluate, parse_spec, quantize, train
from hwq.quant.digits import train_digits_cnn
from hwq.quant.export import export, load
from hwq.quant.graph import fold_batchnorm, trace
from hwq.quant.integer import IntegerModel, compare


@pytest.fixture(scope="module")
def digits():
    torch.manual_seed(0)
    model, data = train_digits_cnn(epochs=8, device="cpu")
    return model, data


@pytest.fixture(scope="module")
def quantized(digits):
    model, (x_train, _, x_test, _) = digits
    out = {}
    for w, a in (("fxp8", "fxp8"), ("ant4", "fxp8"), ("ant4", "ant4")):
        qmodel = quantize(model, w, a, calibration=[x_train[:64]])
        out[w, a] = (qmodel, IntegerModel.from_quantized(qmodel))
    return out


def test_spec_parsing():
    assert parse_spec("ant4") == parse_spec({"format": "ant", "bits": 4})
    assert str(parse_spec("FXP8")) == "fxp8"
    assert parse_spec("esb4k2").option("k") == 2
    with pytest.raises(HwqError, match="cannot read format spec"):
        parse_spec("4ant")
    with pytest.raises(HwqError, match="unknown format 'posit'"):
        parse_spec("posit8")


def test_float_model_trains(digits):
    model, (_, _, x_test, y_test) = digits
    assert evaluate(model, x_test, y_test, device="cpu") > 0.9


def test_batchnorm_folding_keeps_the_function(digits):
    model, (_, _, x_test, _) = digits
    folded = fold_batchnorm(trace(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x_test[:64]), model.eval()(x_test[:64]), rtol=1e-4, atol=1e-4)


def test_per_channel_quantizer_matches_the_golden_format():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3, 3, 3))
    q = calibrate("ant4", w, role="weight")
    assert q.scale.shape == (6,) and q.channel_axis == 0
    for c in range(6):
        np.testing.assert_array_equal(q.fake(w)[c], q.format.fake_quantize(w[c], q.scale[c]))
    assert set(q.candidates) == {"int", "flint", "pot"}


@pytest.mark.parametrize("w, a, floor", [("fxp8", "fxp8", -0.02), ("ant4", "fxp8", -0.10), ("ant4", "ant4", -0.15)])
def test_ptq_accuracy(digits, quantized, w, a, floor):
    model, (_, _, x_test, y_test) = digits
    base = evaluate(model, x_test, y_test, device="cpu")
    assert evaluate(quantized[w, a][0], x_test, y_test, device="cpu") >= base + floor


def test_qat_fine_tunes_through_the_quantizers(digits):
    model, (x_train, y_train, x_test, y_test) = digits
    qmodel = quantize(model, "fxp4", "fxp4", calibration=[x_train[:64]])
    before = evaluate(qmodel, x_test, y_test, device="cpu")
    weight = qmodel.layers["conv2"].layer.weight.detach().clone()
    train(qmodel, x_train, y_train, epochs=2, lr=1e-3, device="cpu")
    assert not torch.equal(weight, qmodel.layers["conv2"].layer.weight)
    assert evaluate(qmodel, x_test, y_test, device="cpu") >= before - 0.01


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
        if layer.kind == "conv2d":
            w_values = w_values.reshape(len(w_values), a_values.shape[1], *layer.geometry["kernel_size"])
            expected = F.conv2d(a_values, w_values, stride=layer.geometry["stride"], padding=layer.geometry["padding"])
            bias = layer.bias[None, :, None, None]
        else:
            expected = a_values @ w_values.T
            bias = layer.bias[None, :]
        # small integers: float64 sums are exact
        np.testing.assert_array_equal(acc - bias, expected.numpy().astype(np.int64))
        # one output through the PE contract itself (clear, then one valid term per cycle)
        if layer.kind == "linear":
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


def test_export_reloads_bit_exactly(digits, quantized, tmp_path):
    _, (_, _, x_test, _) = digits
    _, imodel = quantized["ant4", "ant4"]
    manifest = export(imodel, tmp_path / "export")
    reloaded = load(tmp_path / "export")
    np.testing.assert_array_equal(reloaded.run(x_test), imodel.run(x_test))
    written = json.loads((tmp_path / "export" / "model.json").read_text())
    assert written == json.loads(json.dumps(manifest))
    blob = (tmp_path / "export" / "weights.bin").read_bytes()
    for entry in written["layers"]:
        w = entry["weight"]
        lines = (tmp_path / "export" / w["mem"]).read_text().split()
        assert len(lines) == w["count"] and all(len(line) == 1 for line in lines)      # 4-bit codes: one hex digit
        packed = np.frombuffer(blob[w["offset_bytes"]:w["offset_bytes"] + w["count"]], dtype=np.uint8)
        assert packed.tolist() == [int(line, 16) for line in lines]


def test_export_is_deterministic(quantized, tmp_path):
    _, imodel = quantized["fxp8", "fxp8"]
    export(imodel, tmp_path / "a")
    export(imodel, tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()


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
    with pytest.raises(HwqError, match="NaN/Inf weights"):
        quantize(broken, calibration=x)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(HwqError, match="calibration data is empty"):
        quantize(model, calibration=[])
    with pytest.raises(HwqError, match=r"layer '0': ant16 is not possible .*between 3 and 8"):
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
        IntegerModel.from_quantized(qmodel)


def test_fxp_qnet_word_length_allocation_stays_within_budget(digits):
    from hwq.quant.fxp_qnet import allocate_word_lengths, disagreement, self_distill
    model, (x_train, _, _, _) = digits
    x = x_train[:96]
    # 8-bit fxp disagrees with the teacher on about 2 of these 96 inputs: a 10 % budget (about 10
    # inputs) leaves the search room to lower widths without the test hinging on one input
    result = allocate_word_lengths(model, x, start_bits=8, min_bits=6, budget=0.10)
    with torch.no_grad():
        teacher = model(x)
    assert result.disagreement <= 0.10
    assert disagreement(result.model, teacher, x) == result.disagreement
    assert all(6 <= b[k] <= 8 for b in result.bits.values() for k in ("weights", "activations"))
    assert result.history, "nothing was lowered"
    memory = [step["memory_bits"] for step in result.history]
    assert memory == sorted(memory, reverse=True) and memory[-1] == result.memory_bits
    for name, bits in result.bits.items():
        layer = result.model.layers[name]
        assert (layer.weight_quantizer.format.bits, layer.input_quantizer.format.bits) == \
            (bits["weights"], bits["activations"])
    first = self_distill(result.model, model, x, epochs=1, device="cpu")
    last = self_distill(result.model, model, x, epochs=2, device="cpu")
    assert last <= first + 1e-3
    with pytest.raises(HwqError, match="budget"):
        allocate_word_lengths(model, x, budget=2)
    with pytest.raises(HwqError, match="already disagrees"):
        allocate_word_lengths(model, x, start_bits=3, budget=0.0)


def test_uniq_gradual_noise_training(digits):
    from hwq.quant.uniq_train import uniq_gradual_training
    model, (x_train, y_train, x_test, y_test) = digits
    qmodel = quantize(model, "uniq4", "fxp8", calibration=[x_train[:64]])
    before = evaluate(qmodel, x_test, y_test, device="cpu")
    stages = []
    uniq_gradual_training(qmodel, x_train[:512], y_train[:512], epochs_per_stage=1, device="cpu", log=stages.append)
    assert len(stages) == len(qmodel.layers)
    assert all(layer.mode == "quantized" and layer.weight_quantizer.format.name == "uniq"
               for layer in qmodel.layers.values())
    assert evaluate(qmodel, x_test, y_test, device="cpu") >= before - 0.03
    with pytest.raises(HwqError, match="needs uniq weights"):
        uniq_gradual_training(quantize(model, "fxp8", "fxp8", calibration=[x_train[:64]]), x_train, y_train)


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
        if layer.kind == "linear":      # the golden PE contract on one output
            a, w = trace_[name]["codes"][0], layer.weight_codes[0]
            stream = accumulate(layer.a_format, a, layer.w_format, w, np.ones(len(a)), np.arange(len(a)) == 0)
            assert stream[-1] == trace_[name]["acc"][0, 0] - layer.bias[0]
    report = compare(qmodel, imodel, x_test[:32])
    assert all(e["differing_codes"] <= 0.02 * e["codes"] for e in report["layers"].values()), report["layers"]
    export(imodel, tmp_path / "export")
    np.testing.assert_array_equal(load(tmp_path / "export").run(x_test[:32]), logits)
    assert evaluate(qmodel, x_test, y_test, device="cpu") > 0.5
