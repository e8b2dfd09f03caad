"""A sixth format as a plug-in: registered by its own module, it goes through the build, the
cocotb bench and the PyTorch front end without any edit to a shared hwq module."""

import importlib
import sys

import numpy as np
import pytest
import torch
from torch import nn

from hwq.errors import InputError
from hwq.formats import CALIBRATORS, FORMATS, get_format
from hwq.pe import PE_CLASSES

PLUGIN = "tests.plugins.toy_format"


@pytest.fixture
def toy(monkeypatch):
    """The plug-in module, imported (so registered) for one test and unregistered after it."""
    sys.modules.pop(PLUGIN, None)
    monkeypatch.setenv("HWQ_PLUGINS", PLUGIN)           # the simulator's Python imports it too
    module = importlib.import_module(PLUGIN)
    yield module
    for registry in (FORMATS, PE_CLASSES, CALIBRATORS):
        registry.unregister("toy")
    sys.modules.pop(PLUGIN, None)


def test_the_plugin_registers_format_pe_and_calibrator(toy):
    assert FORMATS["toy"] is toy.SignMagnitude and PE_CLASSES["toy"] is toy.SignMagnitudePE
    assert CALIBRATORS["toy"] is toy.calibrate_toy
    # sign-magnitude, written out by hand: codes 0..7 are 0..7, codes 8..15 are -0..-7
    assert get_format("toy", 4).decode(np.arange(16)).tolist() == [0, 1, 2, 3, 4, 5, 6, 7,
                                                                   0, -1, -2, -3, -4, -5, -6, -7]
    assert get_format("toy", 4).encode([2.5, -2.5, 3.5, -9.0, 100.0]).tolist() == [2, 10, 4, 15, 7]


def test_a_taken_name_is_refused(toy):
    with pytest.raises(InputError, match="format 'fxp' is already registered by hwq.formats.fxp.FixedPoint"):
        type("Impostor", (toy.SignMagnitude,), {"name": "fxp", "__module__": __name__})
    with pytest.raises(InputError, match="processing element 'toy' is already registered"):
        type("Impostor", (toy.SignMagnitudePE,), {"format_name": "toy", "__module__": __name__})


def test_build_and_simulate(toy, tmp_path, monkeypatch):
    from hwq.build import build
    from hwq.sim.runner import BenchFailed, run_bench
    result = build(["toy"], out=tmp_path / "rtl", synth=False, log=lambda *_: None)
    [manifest] = result["manifests"]
    assert manifest["module"] == "toy_pe_a4_w4"
    assert manifest["codebook"]["w"] == ["0", "1", "2", "3", "4", "5", "6", "7",
                                         "0", "-1", "-2", "-3", "-4", "-5", "-6", "-7"]
    # exhaustive pairs, random sums, extremes and reset, checked against the manifest-only reference
    ntests, nfail = run_bench(tmp_path / "rtl" / "toy_pe_a4_w4.json", "icarus", tmp_path / "sim",
                              random_cycles=2000)
    assert (ntests, nfail) == (4, 0)
    # the bench checks the manifest's codebooks against hwq.formats in the simulator's own Python,
    # which knows the plug-in only through $HWQ_PLUGINS
    monkeypatch.delenv("HWQ_PLUGINS")
    with pytest.raises(BenchFailed, match="unknown format 'toy'"):
        run_bench(tmp_path / "rtl" / "toy_pe_a4_w4.json", "icarus", tmp_path / "sim2", random_cycles=200)


def test_quantize_a_trained_model(toy):
    from sklearn.datasets import load_digits
    from hwq.quant import evaluate, quantize
    from hwq.quant.integer import integer_model
    digits = load_digits()
    x = torch.tensor(digits.data[:1200] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[:1200])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[:900]), y[:900]).backward()
        optimizer.step()
    qmodel = quantize(model, "toy8", "toy8", calibration=[x[:256]])
    for layer in qmodel.layers.values():
        assert isinstance(layer.weight_quantizer.format, toy.SignMagnitude)
        assert isinstance(layer.input_quantizer.format, toy.SignMagnitude)
    # a trained 2-layer MLP on digits is far above chance (10 %) at 8 bits
    assert evaluate(qmodel, x[900:], y[900:]) > 0.5
    logits = integer_model(qmodel).run(x[900:])
    assert np.asarray(logits).shape == (300, 10)
    assert (np.asarray(logits).argmax(1) == y[900:].numpy()).mean() > 0.5


def test_the_worked_example_names_a_format_it_cannot_run(toy):
    from hwq.quantize import _formats
    PE_CLASSES.unregister("toy")                    # a format with a calibrator but no PE
    lines = []
    assert "toy" not in _formats(None, lines.append)
    assert lines == ["not in the example: toy (no PE)"]
    with pytest.raises(InputError, match="format 'toy' cannot run the example .*needs a PE and a calibrator"):
        _formats(["toy"], lines.append)


def test_a_format_name_must_be_able_to_start_a_spec():
    from hwq.formats import NumberFormat
    for bad in ("FXP", "fx8", "my_format", "posit-8"):
        with pytest.raises(InputError, match=f"format name {bad!r} is not allowed: names are lowercase letters"):
            type("Bad", (NumberFormat,), {"name": bad, "__module__": __name__})
    assert bad not in FORMATS
