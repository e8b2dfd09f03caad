"""The ops of an integer program: what each step of a quantized network computes on codes.

Only codes travel between ops. Every tensor has one format and one real scale
(:class:`TensorFormat`); an op either moves codes without changing them (:class:`Pad`,
:class:`MaxPool`, :class:`Reshape`) or makes a new tensor and rounds exactly once
(:class:`Layer`, :class:`Add`, :class:`AvgPool`: an exact integer numerator, a multiplier and a
shift, then the output format's encoder and clamp, :mod:`hwq.integer.requant`). The arithmetic is
specified in docs/integer-semantics.md; this module is numpy only, so an export can be run, and
the accelerator generated, without torch.
"""

import dataclasses

import numpy as np

from ..errors import InputError
from ..formats.golden import acc_width, matmul, signed_width
from . import ops as tensor_ops
from .requant import MULTIPLIER_BITS, NUMERATOR_BITS, Clamp, EncoderTable, Multiplier, requantize

__all__ = ["TensorFormat", "Layer", "Add", "AvgPool", "MaxPool", "Pad", "Reshape", "OPS", "BIAS_BITS",
           "values_to_codes", "avgpool_divisors"]

#: width of a layer's bias in accumulator units (two's complement)
BIAS_BITS = 32


@dataclasses.dataclass(frozen=True)
class TensorFormat:
    """The format and real scale of one tensor: ``real = scale * value(code)``.

    Attributes
    ----------
    format : NumberFormat
    scale : float
        Positive.
    """

    format: object
    scale: float

    @property
    def unit(self):
        """Real value of one integer unit of the format, ``scale * 2**lsb_exp``."""
        return float(np.ldexp(self.scale, self.format.lsb_exp))

    def quantize(self, x):
        """Codes of real array ``x`` (the format's encoder)."""
        return self.format.quantize(x, self.scale)

    def to_real(self, codes):
        """Real values of ``codes`` (float64)."""
        return self.format.to_real(codes, self.scale)

    def to_json(self):
        return {"format": self.format.name, "params": self.format.params(), "scale": float(self.scale).hex()}


def zero_code(fmt, what):
    """The code of value 0 in ``fmt`` (zero padding); :class:`InputError` naming ``what`` if the
    format has no zero."""
    code = fmt.encode([0.0])
    if fmt.decode(code)[0] != 0:
        raise InputError(f"{what}: format {fmt} has no zero for padding")
    return int(code[0])


def values_to_codes(table, values):
    """Canonical codes of integer ``values`` that are on ``table``'s grid."""
    return table.codes[np.searchsorted(table.grid, values)]


@dataclasses.dataclass(eq=False)
class Layer:
    """A convolution or linear layer: exact accumulator, bias, multiplier, shift, encoder, clamp.

    For every output channel ``o`` (docs/integer-semantics.md, "Layer"):
    ``code = clamp(encode((acc[o] + bias[o]) * M[o] / 2**S[o]))`` with
    ``acc[o] = sum decode_A(a) * decode_W(w[o])`` exact.

    Attributes
    ----------
    name : str
        The op's output tensor (and the layer's name).
    inputs : list of str
        One input tensor.
    kind : str
        ``"conv2d"`` or ``"linear"``.
    a_format, w_format, out_format : NumberFormat
    weight_codes : numpy.ndarray of int64
        ``(O, C / groups, kh, kw)`` for conv2d, ``(O, K)`` for linear.
    bias : numpy.ndarray of int64
        ``(O,)``, in accumulator units, :data:`BIAS_BITS` wide.
    multiplier : Multiplier
        Per output channel.
    clamp : Clamp
    stride, dilation : tuple of int
        Pairs (conv2d).
    padding : tuple of int
        ``(top, bottom, left, right)`` (conv2d).
    padding_mode : str
        ``"zeros"`` (the code of 0), ``"reflect"``, ``"replicate"`` or ``"circular"``.
    groups : int
    """

    name: str
    inputs: list
    kind: str
    a_format: object
    w_format: object
    out_format: object
    weight_codes: np.ndarray
    bias: np.ndarray
    multiplier: Multiplier
    clamp: Clamp
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    padding_mode: str = "zeros"
    dilation: tuple = (1, 1)
    groups: int = 1

    op = "layer"

    def __post_init__(self):
        self.weight_codes = np.asarray(self.weight_codes, dtype=np.int64)
        self.bias = np.asarray(self.bias, dtype=np.int64)
        out_channels = self.weight_codes.shape[0]
        if self.bias.shape != (out_channels,) or self.multiplier.multiplier.shape != (out_channels,):
            raise InputError(f"layer {self.name!r}: bias and multipliers need one entry per output channel "
                             f"({out_channels})")
        if self.bias.size and signed_width(int(self.bias.min()), int(self.bias.max())) > BIAS_BITS:
            raise InputError(f"layer {self.name!r}: a bias does not fit {BIAS_BITS} bits in accumulator units")
        if self.numerator_bits > NUMERATOR_BITS:
            raise InputError(f"layer {self.name!r}: (accumulator + bias) * multiplier needs {self.numerator_bits} bits, "
                             f"more than {NUMERATOR_BITS}")
        self.table = EncoderTable.of(self.out_format)

    @property
    def fan_in(self):
        """Products summed per output: ``C / groups * kh * kw`` or ``K``."""
        return int(np.prod(self.weight_codes.shape[1:]))

    @property
    def acc_bits(self):
        """Width of the exact accumulator (:func:`hwq.formats.golden.acc_width`)."""
        return acc_width(self.a_format, self.w_format, self.fan_in)

    @property
    def numerator_bits(self):
        """Width of ``(acc + bias) * M`` in two's complement: ``max(acc, bias) + 1 + 16``."""
        return max(self.acc_bits, BIAS_BITS) + 1 + MULTIPLIER_BITS

    @property
    def pad_code(self):
        """The input code of value 0 (zero padding)."""
        return zero_code(self.a_format, f"layer {self.name!r}")

    def accumulators(self, codes):
        """Exact accumulators (no bias) for input ``codes``: ``(N, O, Ho, Wo)`` or ``(N, O)``."""
        codes = np.asarray(codes, dtype=np.int64)
        if self.kind == "linear":
            return matmul(self.a_format, codes, self.w_format, self.weight_codes)
        if any(self.padding):
            mode = self.padding_mode
            if mode == "zeros":
                codes = tensor_ops.pad2d(codes, self.padding, "constant", self.pad_code)
            else:
                codes = tensor_ops.pad2d(codes, self.padding, mode)
        return tensor_ops.conv2d(self.a_format, codes, self.w_format, self.weight_codes, self.stride,
                                 self.dilation, self.groups)

    def requantize(self, acc):
        """Output codes of accumulators ``acc`` (bias not yet added)."""
        shape = (-1,) + (1,) * (acc.ndim - 2)
        numerator = (acc + self.bias.reshape(shape)) * self.multiplier.multiplier.reshape(shape)
        return requantize(numerator, self.multiplier.shift.reshape(shape), self.table, self.clamp)

    def run(self, codes, trace=None):
        acc = self.accumulators(codes)
        if trace is not None:
            trace[self.name + ".acc"] = acc
        return self.requantize(acc)


@dataclasses.dataclass(eq=False)
class Add:
    """A residual add ``a + alpha * b + constant``, requantized once.

    ``code = clamp(encode((decode_a(a) * Ma + decode_b(b) * Mb + K) / 2**S))`` where
    ``Ma / 2**S`` and ``Mb / 2**S`` (one shared shift) take each input's integer unit to the
    output's, with ``alpha`` folded into ``Mb`` (negative for a subtraction) and ``K`` the
    constant in units of ``2**-S`` output integer units. With one input, ``Mb = 0``.

    Attributes
    ----------
    name : str
    inputs : list of str
        One or two tensors.
    in_formats : list of NumberFormat
    out_format : NumberFormat
    multipliers : list of int
        Signed, ``|M| < 2**16``.
    constant : int
    shift : int
    clamp : Clamp
    """

    name: str
    inputs: list
    in_formats: list
    out_format: object
    multipliers: list
    constant: int
    shift: int
    clamp: Clamp

    op = "add"

    def __post_init__(self):
        if any(abs(m) >= 1 << MULTIPLIER_BITS for m in self.multipliers):
            raise InputError(f"add {self.name!r}: multipliers must be below 2**{MULTIPLIER_BITS}")
        self.table = EncoderTable.of(self.out_format)

    def run(self, *codes, trace=None):
        numerator = np.int64(self.constant)
        for fmt, multiplier, part in zip(self.in_formats, self.multipliers, codes):
            numerator = numerator + fmt.decode(part) * np.int64(multiplier)
        return requantize(np.asarray(numerator, dtype=np.int64), self.shift, self.table, self.clamp)


def avgpool_divisors(size, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """PyTorch's divisor of every output position of ``avg_pool2d`` (int64 ``(Ho, Wo)``):
    :func:`hwq.integer.ops.avg_pool_divisors`, or ``divisor_override`` everywhere."""
    divisors = tensor_ops.avg_pool_divisors(tuple(size), kernel, stride, padding, ceil_mode, count_include_pad)
    if divisor_override:
        divisors = np.full_like(divisors, int(divisor_override))
    return divisors


@dataclasses.dataclass(eq=False)
class AvgPool:
    """Average pooling: the exact window sum times a per-position multiplier, requantized once.

    ``code = clamp(encode(sum * M[p] / 2**S[p]))`` with ``M[p] / 2**S[p]`` the input unit over
    (divisor at position ``p`` times the output unit). Global pooling (adaptive pooling to 1,
    ``mean`` over H and W) is the case kernel = input size.

    Attributes
    ----------
    name : str
    inputs : list of str
    in_format, out_format : NumberFormat
    kernel, stride, padding : tuple of int
        Pairs; padding is symmetric (torch's ``avg_pool2d``).
    ceil_mode : bool
    multiplier : Multiplier
        Shape ``(Ho, Wo)``.
    clamp : Clamp
    keep_dims : bool
        ``False`` for ``mean`` without keepdim: the output is ``(N, C)``.
    """

    name: str
    inputs: list
    in_format: object
    out_format: object
    kernel: tuple
    stride: tuple
    padding: tuple
    ceil_mode: bool
    multiplier: Multiplier
    clamp: Clamp
    keep_dims: bool = True

    op = "avgpool"

    def __post_init__(self):
        self.table = EncoderTable.of(self.out_format)

    def run(self, codes, trace=None):
        values = self.in_format.decode(codes)
        n, c = values.shape[:2]
        sums = tensor_ops.sum_pool2d(values, self.kernel, self.stride, self.padding, self.ceil_mode)
        codes = requantize(sums * self.multiplier.multiplier, self.multiplier.shift, self.table, self.clamp)
        return codes if self.keep_dims else codes.reshape(n, c)


@dataclasses.dataclass(eq=False)
class MaxPool:
    """Max pooling on values; codes in, the same format's codes out (no rounding).

    Padding takes the format's least value (torch pads with -inf).
    """

    name: str
    inputs: list
    format: object
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    ceil_mode: bool

    op = "maxpool"

    def run(self, codes, trace=None):
        table = EncoderTable.of(self.format)
        values = tensor_ops.max_pool2d(self.format.decode(codes), self.kernel, self.stride, self.padding,
                                       self.dilation, self.ceil_mode, int(table.grid[0]))
        return values_to_codes(table, values)


@dataclasses.dataclass(eq=False)
class Pad:
    """Padding of codes, ``(top, bottom, left, right)``: ``"constant"`` pads the code of 0
    (nonzero constants are refused when the graph is built), or ``"reflect"``, ``"replicate"``,
    ``"circular"`` (torch's ``F.pad`` modes)."""

    name: str
    inputs: list
    format: object
    padding: tuple
    mode: str

    op = "pad"

    def run(self, codes, trace=None):
        if self.mode == "constant":
            return tensor_ops.pad2d(codes, self.padding, "constant", zero_code(self.format, f"pad {self.name!r}"))
        return tensor_ops.pad2d(codes, self.padding, self.mode)


@dataclasses.dataclass(eq=False)
class Reshape:
    """A reshape that keeps the batch dimension (``flatten``, ``view``, ``reshape``): ``shape`` is
    the output shape without the batch dimension."""

    name: str
    inputs: list
    shape: tuple

    op = "reshape"

    def run(self, codes, trace=None):
        return codes.reshape(codes.shape[0], *self.shape)


#: every op class by its ``op`` name
OPS = {cls.op: cls for cls in (Layer, Add, AvgPool, MaxPool, Pad, Reshape)}
