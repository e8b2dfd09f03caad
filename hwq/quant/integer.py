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

from ..errors import InputError
from ..formats.golden import matmul
from .api import run_recording

__all__ = ["FRAC_BITS", "MULT_BITS", "GUARD_BITS", "Requant", "LayerProgram", "IntegerModel", "compare"]

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
            raise InputError("requantization factors must be finite and positive")
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
class LayerProgram:
    """Everything the integer path needs of one quantized layer (all integers and formats).

    Attributes
    ----------
    op : str
        The layer's operation, ``"conv2d"`` or ``"linear"``.
    geometry : dict
        Conv2d: ``kernel_size``, ``stride``, ``padding``, ``dilation`` (pairs); linear: empty.
    a_format, w_format : NumberFormat
        Input activation and weight formats.
    weight_codes : numpy.ndarray
        ``(out_channels, in_features)`` codes (convolution kernels flattened C, kh, kw).
    bias : numpy.ndarray
        int64 bias per output channel, in accumulator units.
    input_requant, output_requant : Requant
        Fixed point to code grid; accumulators to fixed point (per channel).
    pad_code : int
        The activation code of value 0.
    """

    op: str
    geometry: dict
    a_format: object
    w_format: object
    weight_codes: np.ndarray
    bias: np.ndarray
    input_requant: Requant
    output_requant: Requant
    pad_code: int


def _graph_ops(graph_module, layers):
    """The traced graph as a list of plain op dicts (JSON-able)."""
    modules = dict(graph_module.named_modules())
    ops = []
    for node in graph_module.graph.nodes:
        inputs = [a.name for a in node.args if isinstance(a, torch.fx.Node)]
        module = modules.get(node.target) if node.op == "call_module" else None
        op = {"name": node.name, "inputs": inputs}
        if node.op == "placeholder":
            op["op"] = "input"
        elif node.op == "output":
            op["op"] = "output"
        elif node.op == "call_module" and node.target in layers:
            op.update(op="layer", layer=node.target)
        elif isinstance(module, nn.ReLU) or node.target in (F.relu, torch.relu, "relu"):
            op["op"] = "relu"
        elif isinstance(module, nn.ReLU6) or node.target is F.relu6:
            op["op"] = "relu6"
        elif isinstance(module, (nn.Identity, nn.Dropout)):
            op["op"] = "identity"
        elif isinstance(module, nn.Flatten) or node.target in (torch.flatten, "flatten"):
            start = module.start_dim if module is not None else \
                (node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0))
            op.update(op="flatten", start_dim=int(start))
        elif isinstance(module, nn.MaxPool2d):
            op.update(op="maxpool", kernel_size=_pair(module.kernel_size), stride=_pair(module.stride),
                      padding=_pair(module.padding), dilation=_pair(module.dilation), ceil_mode=module.ceil_mode)
        elif isinstance(module, nn.AvgPool2d):
            if module.padding and module.count_include_pad is False:
                raise InputError(f"{node.name!r}: integer inference needs AvgPool2d(count_include_pad=True) with padding")
            op.update(op="avgpool", kernel_size=_pair(module.kernel_size), stride=_pair(module.stride or module.kernel_size),
                      padding=_pair(module.padding))
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            op.update(op="adaptive_avgpool", output_size=list(_pair(module.output_size)))
        elif node.target in (operator.add, torch.add, "add"):
            op["op"] = "add"
        elif node.target in ("view", "reshape"):
            shape = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
            if any(isinstance(d, torch.fx.Node) for d in shape):
                raise InputError(f"{node.name!r}: integer inference needs constant reshape sizes (use flatten)")
            op.update(op="reshape", shape=[int(d) for d in shape])
        else:
            raise InputError(f"integer inference does not support {node.name!r} ({node.op} {node.target})")
        ops.append(op)
    return ops


def _pair(value):
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def _layer_program(name, layer, frac_bits):
    conv = isinstance(layer.layer, nn.Conv2d)
    if conv and layer.layer.groups != 1:
        raise InputError(f"layer {name!r}: grouped convolutions are not supported by the integer path")
    a_q, w_q = layer.input_quantizer, layer.weight_quantizer
    pad = a_q.format.encode([0.0])
    if a_q.format.decode(pad)[0] != 0:
        raise InputError(f"layer {name!r}: activation format {a_q.format} has no zero code for padding")
    weight = layer.layer.weight.detach().cpu().double().numpy()
    geometry = {}
    if conv:
        geometry = {key: _pair(getattr(layer.layer, key)) for key in ("kernel_size", "stride", "padding", "dilation")}
    return LayerProgram(
        op="conv2d" if conv else "linear", geometry=geometry, a_format=a_q.format, w_format=w_q.format,
        weight_codes=w_q.quantize(weight).reshape(weight.shape[0], -1), bias=layer.bias_codes(),
        input_requant=Requant.of(2.0 ** -frac_bits / np.ldexp(a_q.scale[0], a_q.format.lsb_exp)),
        output_requant=Requant.of(layer.acc_unit * 2.0 ** frac_bits),
        pad_code=int(pad[0]))


class IntegerModel:
    """Integer-only execution: a list of graph ops and a :class:`LayerProgram` per layer.

    Build it from a quantized model with :meth:`from_quantized`, or from an export with
    :func:`hwq.quant.export.load`.

    Parameters
    ----------
    ops : list of dict
        The graph in execution order (``input``, ``layer``, ``relu``, ``maxpool``, ``add``, ...).
    layers : dict of str to LayerProgram
    frac_bits : int
        Fraction bits of the fixed-point tensors between layers.
    """

    def __init__(self, ops, layers, frac_bits=FRAC_BITS):
        self.ops = ops
        self.layers = layers
        self.frac_bits = frac_bits

    @classmethod
    def from_quantized(cls, qmodel, frac_bits=FRAC_BITS):
        """The integer model of a :class:`~hwq.quant.api.QuantizedModel` (every layer quantized)."""
        if qmodel.float_layers:
            raise InputError(f"integer-only inference needs every Conv2d/Linear quantized; "
                           f"{', '.join(qmodel.float_layers)} are kept in float")
        layers = {name: _layer_program(name, layer, frac_bits) for name, layer in qmodel.layers.items()}
        return cls(_graph_ops(qmodel.graph_module, layers), layers, frac_bits)

    def input_codes(self, layer, y):
        """Codes of the fixed-point tensor ``y`` in ``layer``'s input format."""
        t = layer.input_requant.apply(y, extra_shift=GUARD_BITS)
        return layer.a_format.encode(np.ldexp(t.astype(np.float64), layer.a_format.lsb_exp - GUARD_BITS))

    def accumulators(self, layer, codes):
        """Exact accumulators (bias included) of ``layer`` for input ``codes``."""
        if layer.op == "linear":
            return matmul(layer.a_format, codes, layer.w_format, layer.weight_codes) + layer.bias
        g = layer.geometry
        n, _, h, w = codes.shape
        padded = F.pad(torch.from_numpy(codes.astype(np.float64)), [g["padding"][1]] * 2 + [g["padding"][0]] * 2,
                       value=float(layer.pad_code))
        patches = F.unfold(padded, g["kernel_size"], dilation=g["dilation"], stride=g["stride"])
        patches = patches.transpose(1, 2).numpy().astype(np.int64)           # (N, L, C*kh*kw)
        acc = matmul(layer.a_format, patches, layer.w_format, layer.weight_codes) + layer.bias
        size = [(dim + 2 * g["padding"][i] - g["dilation"][i] * (g["kernel_size"][i] - 1) - 1) // g["stride"][i] + 1
                for i, dim in enumerate((h, w))]
        return acc.transpose(0, 2, 1).reshape(n, -1, *size)

    def run(self, x, trace=None):
        """Integer inference on float input ``x``; returns the float output (fixed point read back).

        ``trace``, a dict, receives ``{layer: {"codes": ..., "acc": ...}}``.
        """
        x = torch.as_tensor(x).detach().cpu().double().numpy()
        env = {}
        for op in self.ops:
            args = [env[name] for name in op["inputs"]]
            op_name = op["op"]
            if op_name == "input":
                env[op["name"]] = np.rint(np.ldexp(x, self.frac_bits)).astype(np.int64)
            elif op_name == "output":
                return np.ldexp(args[0].astype(np.float64), -self.frac_bits)
            elif op_name == "layer":
                layer = self.layers[op["layer"]]
                codes = self.input_codes(layer, args[0])
                acc = self.accumulators(layer, codes)
                if trace is not None:
                    trace[op["layer"]] = {"codes": codes, "acc": acc}
                env[op["name"]] = layer.output_requant.apply(acc, axis=1)
            else:
                env[op["name"]] = self._op(op, args)
        raise InputError("the graph has no output")

    def _op(self, op, args):
        op_name, y = op["op"], args[0]
        if op_name == "relu":
            return np.maximum(y, 0)
        if op_name == "relu6":
            return np.clip(y, 0, 6 << self.frac_bits)
        if op_name == "identity":
            return y
        if op_name == "add":
            return y + args[1]
        if op_name == "flatten":
            return y.reshape(*y.shape[:op["start_dim"]], -1)
        if op_name == "reshape":
            return y.reshape(*op["shape"])
        if op_name == "maxpool":
            out = F.max_pool2d(torch.from_numpy(y.astype(np.float64)), op["kernel_size"], op["stride"],
                               op["padding"], op["dilation"], ceil_mode=op["ceil_mode"])
            return out.numpy().astype(np.int64)
        if op_name in ("avgpool", "adaptive_avgpool"):
            return self._average(op, y)
        raise InputError(f"unknown integer op {op_name!r}")

    def _average(self, op, y):
        if op["op"] == "adaptive_avgpool":
            h, w = y.shape[2:]
            out_h, out_w = [dim if size is None else size for dim, size in zip((h, w), op["output_size"])]
            if h % out_h or w % out_w:
                raise InputError("integer inference supports AdaptiveAvgPool2d only when the output size divides the input")
            kernel = stride = [h // out_h, w // out_w]
            padding = [0, 0]
        else:
            kernel, stride, padding = op["kernel_size"], op["stride"], op["padding"]
        total = F.avg_pool2d(torch.from_numpy(y.astype(np.float64)), kernel, stride, padding, divisor_override=1)
        total = total.numpy().astype(np.int64)
        count = kernel[0] * kernel[1]
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
    fake_out, recorded = run_recording(qmodel, x)
    seen = {name: inputs for name, (inputs, _) in recorded.items()}
    report = {"layers": {}, "first": None}
    for name, layer in qmodel.layers.items():
        fake_codes = layer.input_quantizer.quantize(seen[name])
        int_codes = trace[name]["codes"]
        differ = np.argwhere(fake_codes != int_codes)
        entry = {"differing_codes": int(len(differ)), "codes": int(fake_codes.size)}
        if len(differ):
            index = tuple(int(i) for i in differ[0])
            fmt = layer.input_quantizer.format
            entry["first"] = {"layer": name, "index": index, "integer_code": int(int_codes[index]),
                              "integer_value": float(layer.input_quantizer.to_real(int_codes)[index]),
                              "fake_code": int(fake_codes[index]), "activation": float(seen[name][index]),
                              "format": repr(fmt)}
            report["first"] = report["first"] or entry["first"]
        report["layers"][name] = entry
    report["max_output_diff"] = float(np.abs(int_out - fake_out).max())
    return report
