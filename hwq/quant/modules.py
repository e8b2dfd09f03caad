"""Fake-quantized ops: in eval mode they compute exactly the integers of the integer path.

Each module stands for one requantizing op of :mod:`hwq.integer.program` (:class:`QuantLayer`
for a Conv2d or Linear, :class:`QuantAdd`, :class:`QuantAvgPool`). Its forward pass

1. encodes its inputs with their tensors' quantizers (idempotent on values that are already on
   the grid, which is what every quantized op outputs);
2. computes the exact sum in float64 with torch (a convolution, an add, a window sum) -- exact
   because every partial sum is an integer below ``2**53`` (checked), and computed differently
   from the integer path (golden ``matmul`` over im2col), so :func:`hwq.quant.integer.compare`
   checks one against the other;
3. applies the same multiplier and shift as the integer program (:meth:`program`), and encodes
   the exact dyadic value ``numerator / 2**shift`` with the output format's own golden encoder,
   clamped (the integer path uses the threshold table instead);
4. returns ``scale * value(code)``.

In training the gradient is the float op's, through the straight-through estimator (STE): the
output is ``float_op(x_q, w_q) + (exact - float_op(x_q, w_q)).detach()`` with the float op
clamped like the integer one, so quantization-aware training trains through the same arithmetic.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ..formats import product_lsb_exp
from ..integer.program import Add, AvgPool, Layer, avgpool_divisors
from ..integer.requant import Clamp, EncoderTable, Multiplier, requantize, warn_flush

__all__ = ["QuantLayer", "QuantAdd", "QuantAvgPool", "straight_through", "EXACT_FLOAT"]

#: integers below this are exact in float64
EXACT_FLOAT = 1 << 53
#: integers below this are exact in float32
EXACT_FLOAT32 = 1 << 24


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


def _encode_exact(numerator, shift, table, clamp):
    """Codes of ``clamp(encode(numerator / 2**shift))`` by the golden encoder (integer units).

    Exact when ``|numerator| < 2**53`` (the dyadic value is then a float64); larger numerators
    go through the threshold table, which is exact for any numerator.
    """
    if numerator.size and int(np.abs(numerator).max()) >= EXACT_FLOAT:
        return requantize(numerator, shift, table, clamp)
    fmt = table.format
    low, high = clamp.values(table)
    values = np.clip(np.ldexp(numerator.astype(np.float64), -np.asarray(shift)), low, high)
    return fmt.encode(np.ldexp(values, fmt.lsb_exp))


def _codes_of(quantizer, x):
    """Codes of ``x`` in ``quantizer``: those a fake-quantized op attached to ``x`` when it made
    it with this quantizer (:func:`_exact_output`), else the quantizer's encoder."""
    cached = getattr(x, "_hwq_codes", None)
    if cached is not None and cached[0] is quantizer:
        return cached[1]
    return quantizer.quantize(x)


def _exact_output(quantizer, codes, like):
    """``quantizer.to_real(codes)`` as a tensor of ``like``'s dtype, carrying its codes so that
    the next op need not encode them again."""
    out = torch.from_numpy(quantizer.to_real(codes)).to(like.dtype)
    out._hwq_codes = (quantizer, codes)
    return out


def _clamp_of(quantizer, low, high):
    """The :class:`Clamp` of real bounds ``low``/``high`` on ``quantizer``'s format."""
    scale = float(quantizer.scale[0])
    return Clamp.of(EncoderTable.of(quantizer.format), None if low is None else low / scale,
                    None if high is None else high / scale)


def _ste(float_out, exact, low, high):
    """``exact`` forward, ``float_out`` (clamped to ``[low, high]``) backward."""
    if low is not None or high is not None:
        float_out = torch.clamp(float_out, low, high)
    return float_out + (exact - float_out).detach()


def _needs_grad(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _as_exact_int(values, what, limit=EXACT_FLOAT):
    """Float torch tensor of exact integer sums → int64 numpy (checked below ``limit``)."""
    values = values.detach().cpu().numpy()
    if values.size and np.abs(values).max() >= limit:
        raise InputError(f"{what}: a sum reached {limit}, beyond the float type's exact integers")
    return values.astype(np.int64)


class QuantLayer(nn.Module):
    """A Conv2d or Linear that computes its integer program in eval mode.

    Parameters
    ----------
    name : str
        The layer's name (the op's name in the integer program).
    layer : nn.Conv2d or nn.Linear
        The float layer (BatchNorm already folded); its parameters are trained in QAT.
    weight_quantizer : TensorQuantizer
        Per-output-channel or per-tensor weight quantizer.
    input_quantizer, output_quantizer : TensorQuantizer
        Per-tensor quantizers of the input and output tensors.
    geometry : dict
        ``stride``, ``padding`` (top, bottom, left, right), ``padding_mode``, ``dilation``,
        ``groups`` for convolutions (:func:`hwq.quant.graph.graph_ops`).
    low, high : float or None
        The clamp's real bounds (ReLU: 0 and ``None``; ReLU6: 0 and 6).
    """

    #: how :meth:`forward` treats the layer
    MODES = ("quantized", "float", "noise")

    def __init__(self, name, layer, weight_quantizer, input_quantizer, output_quantizer, geometry=None,
                 low=None, high=None):
        super().__init__()
        self.name = name
        self.layer = layer
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.output_quantizer = output_quantizer
        self.geometry = dict(geometry or {})
        self.low, self.high = low, high
        self.mode = "quantized"
        self.noise = None
        self.trace = None

    def set_mode(self, mode, noise=None):
        """``"quantized"`` (fake quantization, the default), ``"float"`` (the float layer, as in
        the stages of UNIQ's gradual training not reached yet) or ``"noise"``: the weights go
        through ``noise(weight)`` (UNIQ's noise injection), the inputs are still quantized and
        the output is not requantized."""
        if mode not in self.MODES:
            raise InputError(f"unknown layer mode {mode!r}; use one of {', '.join(self.MODES)}")
        if (mode == "noise") != (noise is not None):
            raise InputError("mode 'noise' needs a noise function, and only it")
        self.mode, self.noise = mode, noise

    @property
    def is_conv(self):
        return isinstance(self.layer, nn.Conv2d)

    @property
    def acc_unit(self):
        """Real value of one accumulator step, per output channel (float64 numpy array)."""
        exp = product_lsb_exp(self.input_quantizer.format, self.weight_quantizer.format)
        return np.ldexp(self.input_quantizer.scale[0] * self.weight_quantizer.scale, exp) * \
            np.ones(self.layer.weight.shape[0])

    def bias_codes(self):
        """Bias in accumulator units, ``rint(bias / acc_unit)`` (half to even; int64 per output
        channel; zeros without bias)."""
        if self.layer.bias is None:
            return np.zeros(self.layer.weight.shape[0], dtype=np.int64)
        return np.rint(self.layer.bias.detach().cpu().double().numpy() / self.acc_unit).astype(np.int64)

    def program(self, inputs=None):
        """The layer's integer program (:class:`hwq.integer.program.Layer`) for the current weights.

        Raises
        ------
        InputError
            Naming the layer, if a bias does not fit its width or a factor its multiplier.
        """
        weight = self.layer.weight.detach().cpu().double().numpy()
        out = self.output_quantizer
        factor = self.acc_unit / np.ldexp(float(out.scale[0]), out.format.lsb_exp)
        multiplier = Multiplier.of(factor, what=f"layer {self.name!r} requantization factor")
        g = self.geometry
        extra = {} if not self.is_conv else {
            "stride": tuple(g["stride"]), "padding": tuple(g["padding"]), "padding_mode": g["padding_mode"],
            "dilation": tuple(g["dilation"]), "groups": g["groups"]}
        return Layer(self.name, list(inputs or [self.name + ".input"]), "conv2d" if self.is_conv else "linear",
                     self.input_quantizer.format, self.weight_quantizer.format, out.format,
                     self.weight_quantizer.quantize(weight), self.bias_codes(), multiplier,
                     _clamp_of(out, self.low, self.high), **extra)

    def check_flush(self, program):
        """Warn (:class:`~hwq.integer.requant.FlushWarning`) about output channels that always
        flush to zero."""
        reach = (1 << (program.acc_bits - 1)) + np.abs(program.bias)
        warn_flush(f"layer {self.name!r}", program.multiplier, reach, program.table)

    def _accumulate(self, a_values, w_values):
        """Exact accumulators by float32 torch convolutions (or linear) of decoded integers.

        float32 holds integers below ``2**24`` exactly, so one convolution is exact when
        ``max|a| * max|w| * K < 2**24`` (every product and partial sum, in any order, is such an
        integer). Otherwise the weights are split into base-``2**b`` digits small enough for that
        bound, one exact convolution per digit, recombined in int64 (``float64`` when even one
        bit per digit is too many). This is a different computation from the integer path's
        golden ``matmul``, so :func:`~hwq.quant.integer.compare` checks one against the other.
        """
        fan_in = int(np.prod(w_values.shape[1:]))
        a_max = int(a_values.abs().max()) if a_values.numel() else 0
        w_int = w_values.to(torch.int64)
        w_max = int(w_int.abs().max()) if w_int.numel() else 0
        room = (EXACT_FLOAT32 - 1) // max(a_max * fan_in, 1)          # largest |digit| allowed
        if room < 1:
            return _as_exact_int(self._linear_op(a_values, w_values), f"layer {self.name!r}")
        if w_max <= room:
            return _as_exact_int(self._linear_op(a_values.float(), w_values.float()), f"layer {self.name!r}",
                                 EXACT_FLOAT32)
        bits = (room + 1).bit_length() - 1                              # 2**bits - 1 <= room
        a32, total, place = a_values.float(), 0, 0
        sign, magnitude = torch.sign(w_int), w_int.abs()
        while bool((magnitude != 0).any()):                            # |w| in base 2**bits, sign kept
            digit = torch.remainder(magnitude, 1 << bits)
            part = _as_exact_int(self._linear_op(a32, (sign * digit).float()), f"layer {self.name!r}",
                                 EXACT_FLOAT32)
            total = total + (part << place)
            magnitude, place = magnitude >> bits, place + bits
        return total

    def _linear_op(self, x, weight, bias=None):
        """The layer's convolution or linear map with its geometry (padding mode included)."""
        if not self.is_conv:
            return F.linear(x, weight, bias)
        g = self.geometry
        top, bottom, left, right = g["padding"]
        if any(g["padding"]):
            mode = "constant" if g["padding_mode"] == "zeros" else g["padding_mode"]
            x = F.pad(x, (left, right, top, bottom), mode=mode)
        return F.conv2d(x, weight, bias, g["stride"], 0, g["dilation"], g["groups"])

    def forward(self, x):
        if self.mode == "float":
            return self.layer(x)
        a_q = self.input_quantizer
        a_codes = _codes_of(a_q, x)
        x_q = x + (torch.from_numpy(a_q.to_real(a_codes)).to(x) - x).detach()
        if self.mode == "noise":
            return self._linear_op(x_q, self.noise(self.layer.weight), self.layer.bias)
        program = self.program()
        a_values = torch.from_numpy(a_q.format.decode(a_codes).astype(np.float64))
        w_values = torch.from_numpy(program.w_format.decode(program.weight_codes).astype(np.float64))
        if program.acc_bits > 53:
            acc = program.accumulators(a_codes)
        else:
            acc = self._accumulate(a_values, w_values)
        shape = (-1,) + (1,) * (acc.ndim - 2)
        numerator = (acc + program.bias.reshape(shape)) * program.multiplier.multiplier.reshape(shape)
        codes = _encode_exact(numerator, program.multiplier.shift.reshape(shape), program.table, program.clamp)
        if self.trace is not None:
            self.trace[self.name] = codes
            self.trace[self.name + ".acc"] = acc
        exact = _exact_output(self.output_quantizer, codes, x)
        if not _needs_grad(x, self.layer.weight):
            return exact
        w_q = straight_through(self.layer.weight, self.weight_quantizer)
        bias = self.layer.bias
        if bias is not None:
            unit = torch.from_numpy(self.acc_unit).to(bias)
            bias = bias + (torch.round(bias / unit) * unit - bias).detach()
        return _ste(self._linear_op(x_q, w_q, bias), exact, self.low, self.high)


class QuantAdd(nn.Module):
    """``a + alpha * b + constant`` (or one tensor plus a constant), requantized once.

    Parameters
    ----------
    name : str
    input_quantizers : list of TensorQuantizer
        One per tensor input.
    output_quantizer : TensorQuantizer
    scales : list of float
        The factor of each tensor input (``[1, alpha]``, ``-alpha`` for a subtraction).
    constant : float
        The real constant added.
    low, high : float or None
        The clamp's real bounds (a ReLU after the add folds in here).
    """

    def __init__(self, name, input_quantizers, output_quantizer, scales, constant=0.0, low=None, high=None):
        super().__init__()
        self.name = name
        self.input_quantizers = list(input_quantizers)
        self.output_quantizer = output_quantizer
        self.scales, self.constant = [float(s) for s in scales], float(constant)
        self.low, self.high = low, high
        self.trace = None

    def program(self, inputs=None):
        """The integer program (:class:`hwq.integer.program.Add`)."""
        out = self.output_quantizer
        out_unit = np.ldexp(float(out.scale[0]), out.format.lsb_exp)
        factors = [s * np.ldexp(float(q.scale[0]), q.format.lsb_exp) / out_unit
                   for s, q in zip(self.scales, self.input_quantizers)]
        multipliers, shift = Multiplier.common(factors, what=f"add {self.name!r} input factors")
        constant = int(np.rint(np.ldexp(self.constant / out_unit, shift)))
        return Add(self.name, list(inputs or [f"{self.name}.{i}" for i in range(len(factors))]),
                   [q.format for q in self.input_quantizers], out.format, multipliers, constant, shift,
                   _clamp_of(out, self.low, self.high))

    def forward(self, *xs):
        program = self.program()
        numerator = 0.0
        for quantizer, multiplier, x in zip(self.input_quantizers, program.multipliers, xs):
            values = torch.from_numpy(quantizer.format.decode(_codes_of(quantizer, x)).astype(np.float64))
            numerator = numerator + values * float(multiplier)            # exact: below 2**53 (checked)
        numerator = _as_exact_int(torch.as_tensor(numerator) + float(program.constant), f"add {self.name!r}")
        codes = _encode_exact(numerator, program.shift, program.table, program.clamp)
        if self.trace is not None:
            self.trace[self.name] = codes
        exact = _exact_output(self.output_quantizer, codes, xs[0])
        if not _needs_grad(*xs):
            return exact
        total = sum(s * x for s, x in zip(self.scales, xs)) + self.constant
        return _ste(total, exact, self.low, self.high)


class QuantAvgPool(nn.Module):
    """Average pooling (and global pooling, and ``mean`` over H and W), requantized once: the
    exact window sum times a per-position multiplier (the divisor folded in).

    Parameters
    ----------
    name : str
    input_quantizer, output_quantizer : TensorQuantizer
    attrs : dict
        ``kernel``, ``stride``, ``padding`` (pairs), ``ceil_mode``, ``count_include_pad``,
        ``divisor_override``, ``size`` (the input's H, W), ``keep_dims``
        (:func:`hwq.quant.graph.graph_ops`).
    low, high : float or None
        The clamp's real bounds.
    """

    def __init__(self, name, input_quantizer, output_quantizer, attrs, low=None, high=None):
        super().__init__()
        self.name = name
        self.input_quantizer, self.output_quantizer = input_quantizer, output_quantizer
        self.attrs = dict(attrs)
        self.low, self.high = low, high
        self.trace = None

    def program(self, inputs=None):
        """The integer program (:class:`hwq.integer.program.AvgPool`)."""
        a = self.attrs
        divisors = avgpool_divisors(a["size"], a["kernel"], a["stride"], a["padding"], a["ceil_mode"],
                                    a["count_include_pad"], a["divisor_override"])
        in_q, out = self.input_quantizer, self.output_quantizer
        factor = np.ldexp(float(in_q.scale[0]), in_q.format.lsb_exp) / \
            (divisors * np.ldexp(float(out.scale[0]), out.format.lsb_exp))
        multiplier = Multiplier.of(factor, what=f"average pool {self.name!r} factor")
        return AvgPool(self.name, list(inputs or [self.name + ".input"]), in_q.format, out.format, a["kernel"],
                       a["stride"], a["padding"], a["ceil_mode"], multiplier, _clamp_of(out, self.low, self.high),
                       keep_dims=a["keep_dims"])

    def forward(self, x):
        program = self.program()
        a = self.attrs
        values = torch.from_numpy(self.input_quantizer.format.decode(_codes_of(self.input_quantizer, x)).astype(np.float64))
        sums = F.avg_pool2d(values, a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                            count_include_pad=True, divisor_override=1)
        sums = _as_exact_int(sums, f"average pool {self.name!r}")
        numerator = sums * program.multiplier.multiplier
        codes = _encode_exact(numerator, program.multiplier.shift, program.table, program.clamp)
        if not a["keep_dims"]:
            codes = codes.reshape(codes.shape[0], codes.shape[1])
        if self.trace is not None:
            self.trace[self.name] = codes
        exact = _exact_output(self.output_quantizer, codes, x)
        if not _needs_grad(x):
            return exact
        float_out = F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                                 count_include_pad=a["count_include_pad"], divisor_override=a["divisor_override"])
        if not a["keep_dims"]:
            float_out = float_out.reshape(exact.shape)
        return _ste(float_out, exact, self.low, self.high)
