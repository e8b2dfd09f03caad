"""Integer-only inference: what the processing elements compute, layer by layer.

Between layers every tensor is fixed point, ``value = y * 2**-frac_bits`` with ``y`` an int64
(:data:`FRAC_BITS` = 16 by default). A quantized layer

1. **requantizes** its input to codes: ``t = round_half_up(y * M / 2**(S - GUARD_BITS))`` with an
   integer multiplier ``M`` (:data:`MULT_BITS` bits) and shift ``S`` for the factor
   ``2**-frac_bits / (scale * 2**lsb_exp)``, i.e. ``t`` is the input in units of the code grid
   with :data:`GUARD_BITS` extra fraction bits; the format's own encoder (its rounding, ties and
   saturation) then turns that exact dyadic value into codes;
2. **accumulates** ``sum decode(a) * decode(w)`` exactly (:func:`hwq.formats.golden.matmul`),
   over im2col patches for convolutions (padding uses the code of value 0), and adds the bias,
   rounded to accumulator units;
3. **rescales** the accumulators to fixed point with a per-channel multiplier and shift,
   rounding half up.

ReLU, ReLU6, max pooling, residual adds, flatten and reshape are exact on the fixed-point
integers; average pooling divides the exact sum by the window size with rounding half up. The
only differences from the fake-quantized float model are these roundings (and float32's own), so
codes can differ at rounding boundaries: :func:`compare` finds the first layer and index where
they do.
"""

import dataclasses
import operator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import HwqError
from ..formats import product_lsb_exp
from ..formats.golden import matmul
from .modules import QuantLayer

__all__ = ["FRAC_BITS", "MULT_BITS", "GUARD_BITS", "Requant", "IntegerModel", "compare"]

#: fraction bits of the fixed-point tensors between layers
FRAC_BITS = 16
#: significant bits of every requantization multiplier
MULT_BITS = 31
#: extra fraction bits kept when requantizing to the code grid, before the format's encoder
GUARD_BITS = 8

_INT64_SAFE = 1 << 62


def _round_shift(x, shift):
    """``round_half_up(x / 2**shift)`` for int64 (or object) arrays and a non-negative ``shift``."""
    if shift == 0:
        return x
    return (x + (1 << (shift - 1))) >> shift


@dataclasses.dataclass(frozen=True)
class Requant:
    """Multiply by ``multiplier / 2**shift`` with rounding half up, per channel.

    Attributes
    ----------
    multiplier : numpy.ndarray of int64
        One per channel (or one).
    shift : numpy.ndarray of int64
        Right shift per channel (non-negative).
    """

    multiplier: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, factor):
        """The multiplier and shift that approximate positive ``factor`` (array) best in
        :data:`MULT_BITS` bits."""
        factor = np.atleast_1d(np.asarray(factor, dtype=np.float64))
        if not (np.isfinite(factor).all() and (factor > 0).all()):
            raise HwqError("requantization factors must be finite and positive")
        shift = np.maximum(MULT_BITS - 1 - np.floor(np.log2(factor)).astype(np.int64), 0)
        multiplier = np.rint(np.ldexp(factor, shift)).astype(np.int64)
        return cls(multiplier, shift)

    def apply(self, x, axis=None, extra_shift=0):
        """``round_half_up(x * multiplier / 2**(shift - extra_shift))`` for int64 ``x``.

        ``axis`` is the channel axis of ``x`` for per-channel factors.
        """
        x = np.asarray(x, dtype=np.int64)
        shape = [1] * x.ndim
        if axis is not None and self.multiplier.size > 1:
            shape[axis] = -1
        multiplier = self.multiplier.reshape(shape)
        out = np.empty(np.broadcast_shapes(x.shape, multiplier.shape), dtype=np.int64)
        wide = int(np.abs(x).max(initial=0)) * int(self.multiplier.max()) >= _INT64_SAFE
        product = (x.astype(object) if wide else x) * multiplier
        for index, shift in enumerate(self.shift):
            select = (slice(None),) * x.ndim
            if self.shift.size > 1:
                select = tuple(slice(index, index + 1) if d == axis else slice(None) for d in range(x.ndim))
            part = product[select]
            out[select] = _round_shift(part, int(shift) - extra_shift) if shift >= extra_shift else \
                part * (1 << (extra_shift - int(shift)))
        return out


@dataclasses.dataclass
class _LayerPlan:
    name: str
    layer: QuantLayer
    input_requant: Requant
    output_requant: Requant
    weight_codes: np.ndarray
    bias: np.ndarray
    pad_code: int


class IntegerModel:
    """Integer-only execution of a :class:`~hwq.quant.api.QuantizedModel`.

    Parameters
    ----------
    qmodel : QuantizedModel
        Every Conv2d/Linear must be quantized (no ``keep_float``).
    frac_bits : int
        Fraction bits of the fixed-point tensors between layers.
    """

    def __init__(self, qmodel, frac_bits=FRAC_BITS):
        if qmodel.float_layers:
            raise HwqError(f"integer-only inference needs every Conv2d/Linear quantized; "
                           f"{', '.join(qmodel.float_layers)} are kept in float")
        self.graph_module = qmodel.graph_module
        self.frac_bits = frac_bits
        self.plans = {name: self._plan(name, layer) for name, layer in qmodel.layers.items()}

    def _plan(self, name, layer):
        if isinstance(layer.layer, nn.Conv2d) and layer.layer.groups != 1:
            raise HwqError(f"layer {name!r}: grouped convolutions are not supported by the integer path")
        a_q, w_q = layer.input_quantizer, layer.weight_quantizer
        unit = np.ldexp(a_q.scale[0], a_q.format.lsb_exp)
        pad = a_q.format.encode([0.0])
        if a_q.format.decode(pad)[0] != 0:
            raise HwqError(f"layer {name!r}: activation format {a_q.format} has no zero code for padding")
        weight = layer.layer.weight.detach().cpu().double().numpy()
        return _LayerPlan(
            name, layer,
            input_requant=Requant.of(2.0 ** -self.frac_bits / unit),
            output_requant=Requant.of(layer.acc_unit * 2.0 ** self.frac_bits),
            weight_codes=w_q.codes(weight).reshape(weight.shape[0], -1),
            bias=layer.bias_codes(),
            pad_code=int(pad[0]))

    def input_codes(self, plan, y):
        """Codes of the fixed-point tensor ``y`` in ``plan``'s input format."""
        fmt = plan.layer.input_quantizer.format
        t = plan.input_requant.apply(y, extra_shift=GUARD_BITS)
        return fmt.encode(np.ldexp(t.astype(np.float64), fmt.lsb_exp - GUARD_BITS))

    def accumulators(self, plan, codes):
        """Exact accumulators (bias included) of ``plan``'s layer for input ``codes``."""
        layer = plan.layer.layer
        a_fmt, w_fmt = plan.layer.input_quantizer.format, plan.layer.weight_quantizer.format
        if isinstance(layer, nn.Linear):
            return matmul(a_fmt, codes, w_fmt, plan.weight_codes) + plan.bias
        n, _, h, w = codes.shape
        padded = F.pad(torch.from_numpy(codes.astype(np.float64)), [layer.padding[1]] * 2 + [layer.padding[0]] * 2,
                       value=float(plan.pad_code))
        patches = F.unfold(padded, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)
        patches = patches.transpose(1, 2).numpy().astype(np.int64)           # (N, L, C*k*k)
        acc = matmul(a_fmt, patches, w_fmt, plan.weight_codes) + plan.bias    # (N, L, C_out)
        out_h = (h + 2 * layer.padding[0] - layer.dilation[0] * (layer.kernel_size[0] - 1) - 1) // layer.stride[0] + 1
        out_w = (w + 2 * layer.padding[1] - layer.dilation[1] * (layer.kernel_size[1] - 1) - 1) // layer.stride[1] + 1
        return acc.transpose(0, 2, 1).reshape(n, -1, out_h, out_w)

    def run(self, x, trace=None):
        """Integer inference on float input ``x``; returns the float output (fixed point read back).

        ``trace``, a dict, receives ``{layer: {"codes": ..., "acc": ...}}``.
        """
        x = torch.as_tensor(x).detach().cpu().double().numpy()
        env = {}
        modules = dict(self.graph_module.named_modules())
        for node in self.graph_module.graph.nodes:
            args = [env[a.name] if isinstance(a, torch.fx.Node) else a for a in node.args]
            if node.op == "placeholder":
                env[node.name] = np.rint(np.ldexp(x, self.frac_bits)).astype(np.int64)
            elif node.op == "output":
                return np.ldexp(env[node.args[0].name].astype(np.float64), -self.frac_bits)
            elif node.op == "call_module" and node.target in self.plans:
                plan = self.plans[node.target]
                codes = self.input_codes(plan, args[0])
                acc = self.accumulators(plan, codes)
                if trace is not None:
                    trace[node.target] = {"codes": codes, "acc": acc}
                env[node.name] = plan.output_requant.apply(acc, axis=1)
            else:
                env[node.name] = self._op(node, modules.get(node.target), args)
        raise HwqError("the traced graph has no output")

    def _op(self, node, module, args):
        one = 1 << self.frac_bits
        if isinstance(module, nn.ReLU) or node.target in (F.relu, torch.relu, "relu"):
            return np.maximum(args[0], 0)
        if isinstance(module, nn.ReLU6) or node.target is F.relu6:
            return np.clip(args[0], 0, 6 * one)
        if isinstance(module, (nn.Identity, nn.Dropout)):
            return args[0]
        if isinstance(module, nn.Flatten):
            return args[0].reshape(*args[0].shape[:module.start_dim], -1)
        if isinstance(module, nn.MaxPool2d):
            out = F.max_pool2d(torch.from_numpy(args[0].astype(np.float64)), module.kernel_size, module.stride,
                               module.padding, module.dilation, ceil_mode=module.ceil_mode)
            return out.numpy().astype(np.int64)
        if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return self._average(module, args[0])
        if node.target in (operator.add, torch.add, "add"):
            return args[0] + args[1]
        if node.target in (torch.flatten, "flatten"):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            return args[0].reshape(*args[0].shape[:start], -1)
        if node.target in ("view", "reshape"):
            shape = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
            return args[0].reshape(*shape)
        if node.target == "size":
            return args[0].shape if len(args) == 1 else args[0].shape[args[1]]
        raise HwqError(f"integer inference does not support {node.name!r} ({node.op} {node.target})")

    def _average(self, module, y):
        n, c, h, w = y.shape
        if isinstance(module, nn.AdaptiveAvgPool2d):
            size = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * 2
            out_h, out_w = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
            if h % out_h or w % out_w:
                raise HwqError("integer inference supports AdaptiveAvgPool2d only when the output size divides the input")
            kernel = stride = (h // out_h, w // out_w)
            padding = 0
        else:
            kernel, stride, padding = module.kernel_size, module.stride, module.padding
            if padding and module.count_include_pad is False:
                raise HwqError("integer inference needs AvgPool2d(count_include_pad=True) with padding")
        total = F.avg_pool2d(torch.from_numpy(y.astype(np.float64)), kernel, stride, padding, divisor_override=1)
        total = total.numpy().astype(np.int64)
        count = int(np.prod(kernel if isinstance(kernel, tuple) else (kernel, kernel)))
        return (2 * total + count) // (2 * count)                       # round half up, exact


def compare(qmodel, integer_model, x):
    """Compare the fake-quantized model and the integer path on input ``x``.

    Returns
    -------
    dict
        ``layers``: per layer, how many input codes differ and the first difference (index,
        integer-path code and value, fake-quant code and the float activation it came from);
        ``first``: the first differing layer's entry, or ``None``; ``max_output_diff``.
    """
    trace = {}
    int_out = integer_model.run(x, trace)
    seen = {}
    hooks = [layer.register_forward_pre_hook(
        lambda module, args, name=name: seen.__setitem__(name, args[0].detach().cpu().double().numpy()))
        for name, layer in qmodel.layers.items()]
    try:
        with torch.no_grad():
            fake_out = qmodel(torch.as_tensor(x)).double().numpy()
    finally:
        for hook in hooks:
            hook.remove()
    report = {"layers": {}, "first": None}
    for name, layer in qmodel.layers.items():
        fake_codes = layer.input_quantizer.codes(seen[name])
        int_codes = trace[name]["codes"]
        differ = np.argwhere(fake_codes != int_codes)
        entry = {"differing_codes": int(len(differ)), "codes": int(fake_codes.size)}
        if len(differ):
            index = tuple(int(i) for i in differ[0])
            fmt = layer.input_quantizer.format
            entry["first"] = {"layer": name, "index": index, "integer_code": int(int_codes[index]),
                              "integer_value": float(layer.input_quantizer.dequantize(int_codes)[index]),
                              "fake_code": int(fake_codes[index]), "activation": float(seen[name][index]),
                              "format": repr(fmt)}
            report["first"] = report["first"] or entry["first"]
        report["layers"][name] = entry
    report["max_output_diff"] = float(np.abs(int_out - fake_out).max())
    return report
