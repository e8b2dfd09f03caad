"""Fake-quantized Conv2d / Linear: the float computation on exactly the values the hardware sees.

Weights and input activations are quantized with the golden model (:class:`TensorQuantizer`,
numpy on the CPU); gradients pass straight through (the straight-through estimator), so the same
modules serve post-training quantization and quantization-aware training. The bias is rounded to
the accumulator's unit (``scale_a * scale_w[c] * 2**acc_lsb_exp``), as the integer path adds it.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ..formats import product_lsb_exp

__all__ = ["QuantLayer", "straight_through"]


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, quantizer):
        values = quantizer.fake_quantize(x.detach().cpu().numpy())
        return torch.from_numpy(values).to(dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(x, quantizer):
    """Fake-quantize ``x`` with ``quantizer``; the gradient is the identity."""
    return _StraightThrough.apply(x, quantizer)


class QuantLayer(nn.Module):
    """A Conv2d or Linear whose weights and inputs are fake-quantized.

    Parameters
    ----------
    layer : nn.Conv2d or nn.Linear
        The float layer (BatchNorm already folded); its parameters are trained in QAT.
    weight_quantizer : TensorQuantizer
        Per-output-channel or per-tensor weight quantizer.
    input_quantizer : TensorQuantizer
        Per-tensor quantizer of the layer's input activations.
    """

    #: how :meth:`forward` treats the layer
    MODES = ("quantized", "float", "noise")

    def __init__(self, layer, weight_quantizer, input_quantizer):
        super().__init__()
        self.layer = layer
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.mode = "quantized"
        self.noise = None

    def set_mode(self, mode, noise=None):
        """``"quantized"`` (fake quantization, the default), ``"float"`` (the float layer, as in
        the stages of UNIQ's gradual training not reached yet) or ``"noise"``: the weights go
        through ``noise(weight)`` (UNIQ's noise injection), the inputs are still quantized."""
        if mode not in self.MODES:
            raise InputError(f"unknown layer mode {mode!r}; use one of {', '.join(self.MODES)}")
        if (mode == "noise") != (noise is not None):
            raise InputError("mode 'noise' needs a noise function, and only it")
        self.mode, self.noise = mode, noise

    @property
    def acc_unit(self):
        """Real value of one accumulator step, per output channel (float64 numpy array)."""
        exp = product_lsb_exp(self.input_quantizer.format, self.weight_quantizer.format)
        return np.ldexp(self.input_quantizer.scale[0] * self.weight_quantizer.scale, exp) * \
            np.ones(self.layer.weight.shape[0])

    def bias_codes(self):
        """Bias rounded to accumulator units (int64 per output channel; zeros without bias)."""
        if self.layer.bias is None:
            return np.zeros(self.layer.weight.shape[0], dtype=np.int64)
        return np.rint(self.layer.bias.detach().cpu().double().numpy() / self.acc_unit).astype(np.int64)

    def forward(self, x):
        if self.mode == "float":
            return self.layer(x)
        x = straight_through(x, self.input_quantizer)
        if self.mode == "noise":
            weight = self.noise(self.layer.weight)
        else:
            weight = straight_through(self.layer.weight, self.weight_quantizer)
        bias = None
        if self.layer.bias is not None:
            unit = torch.from_numpy(self.acc_unit).to(self.layer.bias)
            # round the bias to accumulator units, gradient straight through
            bias = self.layer.bias + (torch.round(self.layer.bias / unit) * unit - self.layer.bias).detach()
        if isinstance(self.layer, nn.Conv2d):
            return F.conv2d(x, weight, bias, self.layer.stride, self.layer.padding, self.layer.dilation,
                            self.layer.groups)
        return F.linear(x, weight, bias)
