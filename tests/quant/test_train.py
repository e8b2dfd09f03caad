"""hwq.quant.train: straight-through QAT through the quantizers, and progress only when asked."""

import torch

from hwq.quant import evaluate, quantize, train
from hwq.quant.train import quantization_aware_training


def test_qat_fine_tunes_through_the_quantizers(digits):
    model, (x_train, y_train, x_test, y_test) = digits
    qmodel = quantize(model, "fxp4", "fxp4", calibration=[x_train[:64]])
    before = evaluate(qmodel, x_test, y_test, device="cpu")
    weight = qmodel.layers["conv2"].layer.weight.detach().clone()
    train(qmodel, x_train, y_train, epochs=2, lr=1e-3, device="cpu")
    assert not torch.equal(weight, qmodel.layers["conv2"].layer.weight)
    assert evaluate(qmodel, x_test, y_test, device="cpu") >= before - 0.01


def _tiny():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    return model, x, y


def test_training_prints_nothing_unless_asked(capsys):
    model, x, y = _tiny()
    train(model, x, y, epochs=3, device="cpu")
    assert capsys.readouterr() == ("", "")
    train(model, x, y, epochs=3, device="cpu", progress=True, description="float training")
    out, err = capsys.readouterr()
    assert out == ""
    assert "float training" in err and "/3 [" in err and "epoch" in err


def test_straight_through_qat_shows_its_epochs_when_asked(capsys):
    model, x, y = _tiny()
    qmodel = quantize(model, "fxp8", "fxp8", calibration=[x])
    quantization_aware_training(qmodel, x, y, epochs=2, device="cpu")
    assert capsys.readouterr() == ("", "")
    quantization_aware_training(qmodel, x, y, epochs=2, device="cpu", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "QAT" in err and "/2 [" in err
