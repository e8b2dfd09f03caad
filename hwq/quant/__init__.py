"""The PyTorch front end: quantize trained models in any hwq format, fine-tune, analyse, export.

Plain ``torch.nn`` modules (no ``torch.ao``). This package imports :mod:`hwq.formats` and torch,
never :mod:`hwq.pe` or :mod:`hwq.synth`: quantization runs without a toolchain.

Example::

    from hwq.quant import quantize, evaluate
    qmodel = quantize(model, weights="ant4", activations="fxp8", calibration=[x_calib])
    print(evaluate(qmodel, x_test, y_test))
"""

from .api import QuantizedModel, quantize
from .calibrate import CALIBRATORS, TensorQuantizer, calibrate
from .spec import FormatSpec, parse_spec
from .train import evaluate, train

__all__ = ["quantize", "QuantizedModel", "calibrate", "CALIBRATORS", "TensorQuantizer", "FormatSpec",
           "parse_spec", "train", "evaluate"]
