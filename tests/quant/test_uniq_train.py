"""hwq.quant.uniq_train: UNIQ's gradual noise-injection training, stage by stage."""

import pytest

from hwq.errors import HwqError
from hwq.quant import evaluate, quantize


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


def test_uniq_stages_show_progress_only_when_asked(digits, capsys):
    from hwq.quant.uniq_train import uniq_gradual_training
    model, (x_train, y_train, _, _) = digits
    qmodel = quantize(model, "uniq4", "fxp8", calibration=[x_train[:64]])
    uniq_gradual_training(qmodel, x_train[:64], y_train[:64], device="cpu")
    assert capsys.readouterr() == ("", "")
    uniq_gradual_training(qmodel, x_train[:64], y_train[:64], device="cpu", progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "UNIQ noise-injection stages" in err and f"/{len(qmodel.layers)} [" in err
    assert all(f"UNIQ stage {i + 1} ({name})" in err for i, name in enumerate(qmodel.layers))


def test_uniq_training_depends_on_its_seed_alone(digits):
    """The noise comes from the stage's own seeded generator: the same seed gives the same
    weights whatever used torch's global random state before, another seed other weights."""
    import torch

    from hwq.quant.uniq_train import uniq_gradual_training
    model, (x_train, y_train, _, _) = digits

    def trained(seed, draws):
        torch.rand(draws)                                   # what ran before moves the global state
        qmodel = quantize(model, "uniq4", "fxp8", calibration=[x_train[:64]])
        uniq_gradual_training(qmodel, x_train[:128], y_train[:128], seed=seed, device="cpu")
        return [layer.layer.weight.detach().clone() for layer in qmodel.layers.values()]

    first, again, other = trained(0, 1), trained(0, 1000), trained(1, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
