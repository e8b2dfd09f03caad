"""Fake-quantized ops: in eval mode they compute exactly the integers of the integer path.

Each module stands for one requantizing op of :mod:`hwq.integer.program` (:class:`QuantLayer`
for a Conv2d or Linear, :class:`QuantAdd`, :class:`QuantAvgPool`). Its forward pass

1. encodes its inputs with their tensors' quantizers (idempotent on values that are already on
   the grid, which is what every quantized op outputs);
2. computes the exact sum with torch (a convolution, an add, a window sum) -- exact because
   every partial sum is an integer below ``2**24`` in float32 or ``2**53`` in float64 (checked,
   or bounded in advance), and computed differently from the integer path (golden ``matmul``
   over im2col), so :func:`hwq.quant.integer.compare` checks one against the other;
3. applies the same multiplier and shift as the integer program (:meth:`program`), and encodes
   the exact dyadic value ``numerator / 2**shift`` with the output format's own golden encoder,
   clamped (the integer path uses the threshold table instead);
4. returns ``scale * value(code)``.

Speed (eval mode): an op's program and what its forward derives from it (decoded weights, the
requantization's factors, the output's value table) are kept between forward passes and made
again only when the weights, the bias or a quantizer change (:meth:`QuantLayer.plan`). Step 3
runs in float64 in blocks of rows small enough for a core's cache (:class:`_Requantizer`),
whenever bounds known in advance show that every numerator is exact in float64; otherwise in
int64 as the integer program states it (:func:`_encode_exact`). Both give the same codes.

In training the gradient is the float op's, through the straight-through estimator (STE): the
output is ``float_op(x_q, w_q) + (exact - float_op(x_q, w_q)).detach()`` with the float op
clamped like the integer one, so quantization-aware training trains through the same arithmetic.
"""

import dataclasses

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
#: integers up to this are exact in float32
EXACT_FLOAT32 = 1 << 24
#: elements of one block of :class:`_Requantizer` (its float64 temporaries stay in a core's cache)
BLOCK = 1 << 15
#: torch dtypes whose values numpy holds too (the output's value table is looked up in numpy)
_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64)


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


def _carried(x, quantizer):
    """``(codes, values)`` that a fake-quantized op attached to ``x`` when it made it with
    ``quantizer`` (:func:`_attach`), else ``None``."""
    carried = getattr(x, "_hwq_codes", None)
    return carried[1:] if carried is not None and carried[0] is quantizer else None


def _codes_of(quantizer, x):
    """Codes of ``x`` in ``quantizer`` (:func:`_encoded`)."""
    return _encoded(quantizer, x)[0]


def _encoded(quantizer, x, table=None):
    """``(codes, values)`` of tensor ``x`` in ``quantizer``: the codes (of any integer dtype)
    that a fake-quantized op attached to ``x`` when it made it with this quantizer
    (:func:`_attach`), else the quantizer's encoder's; with a ``table`` (:func:`_value_table`),
    their integer values as its dtype (attached, or looked up in it; not to be modified: they
    may be shared), without one ``None``.

    A per-tensor quantizer encodes a tensor element by element, so it runs on blocks of
    :data:`BLOCK` elements (which stay in a core's cache), each looked up in ``table`` at once;
    on NaN/Inf the whole tensor goes to it, which raises its error.
    """
    carried = _carried(x, quantizer)
    if carried is not None:
        codes, values = carried
        if table is None:
            return codes, None
        return codes, values if values is not None and values.dtype == table.dtype else table[codes]
    if isinstance(x, torch.Tensor) and quantizer.channel_axis is None:
        flat = x.detach().cpu().numpy().reshape(-1)
        codes = np.empty(flat.shape, dtype=np.int64)
        values = None if table is None else np.empty(flat.shape, dtype=table.dtype)
        try:
            for start in range(0, len(flat), BLOCK):
                block = slice(start, start + BLOCK)
                block_codes = quantizer.quantize(flat[block])
                codes[block] = block_codes
                if values is not None:
                    values[block] = table[block_codes]
            return codes.reshape(x.shape), None if values is None else values.reshape(x.shape)
        except InputError:
            pass                                  # NaN/Inf: the whole tensor raises the quantizer's error
    codes = quantizer.quantize(x)
    return codes, None if table is None else table[codes]


def _attach(out, quantizer, codes, values=None):
    """Mark ``out`` as made of ``codes`` in ``quantizer`` (with their integer ``values``, if
    given), so that the next op need not encode nor decode it again (:func:`_encoded`); returns
    ``out``."""
    out._hwq_codes = (quantizer, codes, values)
    return out


def _exact_output(quantizer, codes, like, values=None):
    """``quantizer.to_real(codes)`` as a tensor of ``like``'s dtype, carrying its codes (and
    their integer ``values``, if given: :func:`_attach`)."""
    return _attach(torch.from_numpy(quantizer.to_real(codes)).to(like.dtype), quantizer, codes, values)


def _quantized_input(x, quantizer, codes):
    """``x`` with its quantized values forward and the identity as gradient (STE)."""
    return x + (torch.from_numpy(quantizer.to_real(codes)).to(x) - x).detach()


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


def _largest(fmt):
    """Largest magnitude of an integer value of ``fmt`` (Python int)."""
    return max(-fmt.int_min, fmt.int_max)


def _value_table(fmt, dtype=np.float64):
    """Integer value of every code of ``fmt`` (index = code) as ``dtype``, which must hold them
    exactly; looking codes up in it is :meth:`~hwq.formats.base.NumberFormat.decode` without
    the range check (for codes that an encoder made)."""
    values = fmt.int_values
    table = values.astype(dtype)
    if not np.array_equal(table, values):
        raise AssertionError(f"{np.dtype(dtype).name} cannot hold the values of {fmt}")
    return table


def _tensor_state(tensor):
    """What identifies a parameter's current values: its storage and its version counter, which
    every in-place change bumps (optimizer steps, ``copy_``, ``load_state_dict``); ``None`` for
    no tensor. (A change through ``tensor.data`` bypasses the counter: assign or copy instead.)"""
    return None if tensor is None else (tensor.data_ptr(), tensor._version)


def _quantizer_state(quantizer):
    """What a :class:`~hwq.quant.calibrate.TensorQuantizer` quantizes by: format, scales, axis."""
    return quantizer.format, quantizer.scale.shape, quantizer.scale.tobytes(), quantizer.channel_axis


class _QuantOp(nn.Module):
    """What the fake-quantized ops share: the trace and the eval-mode cache of their plan."""

    def __init__(self):
        super().__init__()
        self.trace = None
        self._kept = None

    def _state(self):
        """Everything :meth:`_make_plan` reads that can change after construction."""
        raise NotImplementedError

    def _make_plan(self):
        """The plan (:meth:`plan`) for the current state."""
        raise NotImplementedError

    def plan(self):
        """What the forward pass needs besides its inputs (:meth:`program` and what follows from
        it). Kept between forward passes in eval mode, made again when the state it was made
        from (weights, bias, quantizers, clamp) changes; made anew on every call in training."""
        if self.training:
            return self._make_plan()
        state = self._state()
        kept = getattr(self, "_kept", None)           # None, also in a module pickled before there was one
        if kept is None or kept[0] != state:
            self._kept = (state, self._make_plan(), self._pinned())
        return self._kept[1]

    def _pinned(self):
        """Tensors whose storage the kept plan's state names (kept alive, so that no new tensor
        can take their address while the plan is kept)."""
        return ()


class _Requantizer:
    """The end of a requantizing op in eval mode, where every numerator is exact in float64.

    For exact integer sums it gives what :func:`_encode_exact` gives for the numerators
    ``(sums + offset) * multiplier`` with ``shift``, and the output tensor of
    :func:`_exact_output`. It computes, in blocks of :data:`BLOCK` elements (whose temporaries
    stay in a core's cache), the float64 value ``(sums + offset) * factor`` with
    ``factor = multiplier * 2**(lsb_exp - shift)``, clips it to the clamp's values and encodes it
    with the output format's golden encoder, then looks the codes up in a table of the output's
    real values.

    That value is ``_encode_exact``'s, bit for bit, when :attr:`exact` holds: ``sums + offset`` is
    then an integer below ``2**53`` (exact), its product with ``multiplier`` too, so the product
    with ``factor`` (that product times a power of two, far from float64's range limits) is
    exact as well, and it equals ``numerator / 2**shift`` in real units, which ``_encode_exact``
    also computes exactly; clipping commutes with scaling by a power of two. The sum with the
    offset is never ``-0.0``, and a positive factor keeps it so.

    Parameters
    ----------
    offset, multiplier, shift : array_like of int
        Broadcast against one sample of the sums (per channel ``(C, 1, 1)``, per position
        ``(H, W)``, or one for all): the integer added to the sums (bias, constant), the
        requantization multiplier and its shift.
    table : EncoderTable
        The output format's.
    clamp : Clamp
    quantizer : TensorQuantizer
        The output tensor's.
    bound : int
        A bound on ``|sums|`` that holds for every input.

    Attributes
    ----------
    exact : bool
        Whether ``(bound + max|offset|) * max(multiplier) < 2**53``, every multiplier is
        positive (a zero factor would turn a negative sum into ``-0.0``), and the output has one
        scale. Call only when it holds; the caller takes the int64 route otherwise.
    """

    def __init__(self, offset, multiplier, shift, table, clamp, quantizer, bound):
        multiplier = np.asarray(multiplier, dtype=np.int64)
        largest = max((abs(int(v)) for v in np.ravel(np.array(offset, dtype=object))), default=0)
        reach = (int(bound) + largest) * int(multiplier.max(initial=0))
        self.exact = bool(reach < EXACT_FLOAT and (multiplier > 0).all() and quantizer.channel_axis is None
                          and quantizer.scale.size == 1)
        self.format = fmt = table.format
        self.quantizer = quantizer
        self._tables = {}
        if not self.exact:
            return
        low, high = clamp.values(table)
        self.low, self.high = np.ldexp(float(low), fmt.lsb_exp), np.ldexp(float(high), fmt.lsb_exp)
        self.offset = np.asarray(offset, dtype=np.float64)
        self.factor = np.ldexp(multiplier.astype(np.float64), fmt.lsb_exp - np.asarray(shift, dtype=np.int64))
        self._real = quantizer.to_real(fmt.codes)
        self._codes = np.min_scalar_type((1 << fmt.bits) - 1)        # the codes, compactly
        self._ints = _value_table(fmt, np.float32) if _largest(fmt) <= EXACT_FLOAT32 else None

    def _output_table(self, dtype):
        """The output's value of every code as ``dtype`` (converted as :func:`_exact_output`
        converts)."""
        if dtype not in self._tables:
            self._tables[dtype] = torch.from_numpy(self._real).to(dtype).numpy()
        return self._tables[dtype]

    def __call__(self, shape, sums, like):
        """Codes and output tensor of a batch.

        Parameters
        ----------
        shape : tuple of int
            The batch's shape, ``(N, C, ...)`` (or ``(N,)``).
        sums : callable
            ``sums(rows)``: the exact integer sums (any numeric dtype) of a slice of the rows of
            the batch seen as ``(N * C, positions)``.
        like : torch.Tensor
            The output takes its dtype.

        Returns
        -------
        codes : numpy.ndarray
            Shape ``shape``, of the narrowest unsigned dtype that holds them.
        out : torch.Tensor
            ``scale * value(codes)``, carrying its codes and, where float32 holds them, their
            integer values (for the next layer's convolution).
        """
        shape = tuple(shape)
        channels = shape[1] if len(shape) > 1 else 1
        rows, positions = shape[0] * channels, int(np.prod(shape[2:], dtype=np.int64))
        offset, factor = (_by_row(p, shape) for p in (self.offset, self.factor))
        per_channel = max(len(offset), len(factor)) > 1
        codes = np.empty((rows, positions), dtype=self._codes)
        ints = None if self._ints is None else np.empty((rows, positions), dtype=np.float32)
        real = None
        if like.dtype in _NUMPY_DTYPES:               # the output's values, looked up block by block
            table = self._output_table(like.dtype)
            out = torch.empty(shape, dtype=like.dtype)
            real = out.numpy().reshape(rows, positions)
        step = max(1, BLOCK // max(positions, 1))
        scratch = np.empty((min(step, rows), positions))
        for start in range(0, rows, step):
            block = slice(start, min(start + step, rows))
            v = scratch[:block.stop - start]
            channel = np.arange(block.start, block.stop) % channels if per_channel else 0
            np.add(sums(block), offset[channel] if len(offset) > 1 else offset, out=v)
            np.multiply(v, factor[channel] if len(factor) > 1 else factor, out=v)
            np.clip(v, self.low, self.high, out=v)
            block_codes = self.format.encode(v, overwrite=True)
            codes[block] = block_codes
            if real is not None:
                real[block] = table[block_codes]
            if ints is not None:
                ints[block] = self._ints[block_codes]
        codes, ints = codes.reshape(shape), None if ints is None else ints.reshape(shape)
        if real is None:
            return codes, _exact_output(self.quantizer, codes, like, ints)
        return codes, _attach(out, self.quantizer, codes, ints)


def _by_row(param, shape):
    """``param`` (broadcast against one sample of a batch of ``shape``) as a 2-D array of one row
    per channel, or one row for all, and one column per position, or one for all: indexed by
    channel, it broadcasts against rows of the batch seen as ``(N * C, positions)``."""
    sample = shape[1:] or (1,)
    param = np.broadcast_to(param, sample)
    varies = [param.strides[i] != 0 and sample[i] > 1 for i in range(len(sample))]
    channels = sample[0] if varies[0] else 1
    param = param[:channels]
    if not any(varies[1:]):                       # one value per channel (or one for all)
        param = param[(slice(None),) + (0,) * (len(sample) - 1)]
    return np.ascontiguousarray(param).reshape(channels, -1)


class _Weights:
    """A layer's decoded weights and the float32 operands of its exact convolutions.

    Parameters
    ----------
    values : torch.Tensor
        The weights' integer values, float64.
    """

    def __init__(self, values):
        self.values = values
        self.fan_in = int(np.prod(values.shape[1:]))
        self.max = int(values.abs().max()) if values.numel() else 0
        self._float32 = None
        self._digits = {}

    @property
    def float32(self):
        """The values as float32 (exact: only used when ``max`` fits)."""
        if self._float32 is None:
            self._float32 = self.values.float()
        return self._float32

    def digits(self, bits):
        """``[(place, digit weights)]``: ``|w|`` in base ``2**bits``, lowest digit first, each
        digit with ``w``'s sign, as float32; ``w = sum(digit * 2**place)``."""
        if bits not in self._digits:
            w_int = self.values.to(torch.int64)
            sign, magnitude = torch.sign(w_int), w_int.abs()
            digits, place = [], 0
            while bool((magnitude != 0).any()):
                digits.append((place, (sign * torch.remainder(magnitude, 1 << bits)).float()))
                magnitude, place = magnitude >> bits, place + bits
            self._digits[bits] = digits
        return self._digits[bits]


@dataclasses.dataclass(frozen=True)
class _LayerPlan:
    """What :meth:`QuantLayer.forward` needs besides its input (:meth:`QuantLayer.plan`)."""

    program: Layer
    weights: _Weights
    input_table: np.ndarray
    input_bound: int
    requantizer: _Requantizer


class QuantLayer(_QuantOp):
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

    def _state(self):
        return (_tensor_state(self.layer.weight), _tensor_state(self.layer.bias),
                *(_quantizer_state(q) for q in (self.weight_quantizer, self.input_quantizer, self.output_quantizer)),
                self.low, self.high, sorted(self.geometry.items()))

    def _pinned(self):
        return self.layer.weight.detach(), None if self.layer.bias is None else self.layer.bias.detach()

    def _make_plan(self):
        program = self.program()
        weights = _Weights(torch.from_numpy(program.w_format.decode(program.weight_codes).astype(np.float64)))
        a_fmt = self.input_quantizer.format
        input_bound = _largest(a_fmt)
        shape = (-1, 1, 1) if self.is_conv else (-1,)
        requantizer = _Requantizer(program.bias.reshape(shape), program.multiplier.multiplier.reshape(shape),
                                   program.multiplier.shift.reshape(shape), program.table, program.clamp,
                                   self.output_quantizer, input_bound * weights.max * weights.fan_in)
        table = _value_table(a_fmt, np.float32 if input_bound <= EXACT_FLOAT32 else np.float64)
        return _LayerPlan(program, weights, table, input_bound, requantizer)

    def _accumulate(self, a_values, w_values):
        """Exact accumulators (int64 numpy) of integer tensors ``a_values`` and ``w_values``
        (:meth:`_exact_sums`)."""
        return np.asarray(self._exact_sums(a_values, _Weights(w_values.double())), dtype=np.int64)

    def _exact_sums(self, a_values, weights, a_bound=None):
        """Exact accumulators by float32 torch convolutions (or linear) of decoded integers.

        float32 holds integers below ``2**24`` exactly, so one convolution is exact when
        ``max|a| * max|w| * K < 2**24`` (every product and partial sum, in any order, is such an
        integer). Otherwise the weights are split into base-``2**b`` digits small enough for that
        bound, one exact convolution per digit, recombined in int64 (``float64`` when even one
        bit per digit is too many). This is a different computation from the integer path's
        golden ``matmul``, so :func:`~hwq.quant.integer.compare` checks one against the other.

        Parameters
        ----------
        a_values : torch.Tensor
            The input's integer values (float32 or float64).
        weights : _Weights
        a_bound : int, optional
            A bound on ``max|a|`` (the input format's): when it meets the bound above, ``max|a|``
            itself is not needed.

        Returns
        -------
        numpy.ndarray
            Exact integers: float32 (one convolution) or int64.
        """
        fan_in, w_max = weights.fan_in, weights.max
        if a_bound is not None and a_bound * fan_in * w_max < EXACT_FLOAT32:
            a_max = a_bound
        else:
            a_max = int(a_values.abs().max()) if a_values.numel() else 0
        room = (EXACT_FLOAT32 - 1) // max(a_max * fan_in, 1)          # largest |digit| allowed
        if room < 1:
            return _as_exact_int(self._linear_op(a_values.double(), weights.values), f"layer {self.name!r}")
        # below 2**24 by the bound on every sum: float32 is exact, no check needed
        if w_max <= room:
            return self._linear_op(a_values.float(), weights.float32).numpy()
        bits = (room + 1).bit_length() - 1                              # 2**bits - 1 <= room
        a32, total = a_values.float(), 0
        for place, digit in weights.digits(bits):                      # |w| in base 2**bits, sign kept
            total = total + (self._linear_op(a32, digit).numpy().astype(np.int64) << place)
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
        if self.mode == "noise":
            return self._linear_op(_quantized_input(x, a_q, _codes_of(a_q, x)), self.noise(self.layer.weight),
                                   self.layer.bias)
        plan = self.plan()
        program = plan.program
        if program.acc_bits > 53:
            a_codes = _codes_of(a_q, x)
            acc = program.accumulators(a_codes)
        else:
            a_codes, a_values = _encoded(a_q, x, plan.input_table)
            acc = self._exact_sums(torch.from_numpy(a_values), plan.weights, plan.input_bound)
        if plan.requantizer.exact:
            rows = acc.reshape(acc.shape[0] * acc.shape[1], -1)
            codes, exact = plan.requantizer(acc.shape, rows.__getitem__, x)
        else:
            acc = np.asarray(acc, dtype=np.int64)
            shape = (-1,) + (1,) * (acc.ndim - 2)
            numerator = (acc + program.bias.reshape(shape)) * program.multiplier.multiplier.reshape(shape)
            codes = _encode_exact(numerator, program.multiplier.shift.reshape(shape), program.table, program.clamp)
            exact = _exact_output(self.output_quantizer, codes, x)
        if self.trace is not None:
            self.trace[self.name] = np.asarray(codes, dtype=np.int64)
            self.trace[self.name + ".acc"] = np.asarray(acc, dtype=np.int64)
        if not _needs_grad(x, self.layer.weight):
            return exact
        x_q = _quantized_input(x, a_q, a_codes)
        w_q = straight_through(self.layer.weight, self.weight_quantizer)
        bias = self.layer.bias
        if bias is not None:
            unit = torch.from_numpy(self.acc_unit).to(bias)
            bias = bias + (torch.round(bias / unit) * unit - bias).detach()
        return _ste(self._linear_op(x_q, w_q, bias), exact, self.low, self.high)


@dataclasses.dataclass(frozen=True)
class _AddPlan:
    """What :meth:`QuantAdd.forward` needs besides its inputs (:meth:`QuantAdd.plan`)."""

    program: Add
    terms: list
    requantizer: _Requantizer


class QuantAdd(_QuantOp):
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

    def _state(self):
        return (*(_quantizer_state(q) for q in (*self.input_quantizers, self.output_quantizer)), tuple(self.scales),
                self.constant, self.low, self.high)

    def _make_plan(self):
        """The program; per input, its codes' integer values times its multiplier (exact when
        the requantizer's bound holds: each product is below it); the requantizer."""
        program = self.program()
        pairs = list(zip(self.input_quantizers, program.multipliers))
        terms = [_value_table(q.format) * float(m) for q, m in pairs]
        bound = sum(_largest(q.format) * abs(m) for q, m in pairs)
        return _AddPlan(program, terms, _Requantizer(program.constant, 1, program.shift, program.table, program.clamp,
                                                     self.output_quantizer, bound))

    def forward(self, *xs):
        plan = self.plan()
        program = plan.program
        codes_in = [_codes_of(q, x) for q, x in zip(self.input_quantizers, xs)]
        if plan.requantizer.exact and len({c.shape for c in codes_in}) == 1:
            shape = codes_in[0].shape
            rows = [c.reshape(shape[0] * (shape[1] if len(shape) > 1 else 1), -1) for c in codes_in]

            def sums(block):                       # the exact integer sum of the inputs' terms
                total = plan.terms[0][rows[0][block]]
                for term, r in zip(plan.terms[1:], rows[1:]):
                    total += term[r[block]]
                return total
            codes, exact = plan.requantizer(shape, sums, xs[0])
        else:
            numerator = 0.0
            for quantizer, multiplier, c in zip(self.input_quantizers, program.multipliers, codes_in):
                values = torch.from_numpy(quantizer.format.decode(c).astype(np.float64))
                numerator = numerator + values * float(multiplier)        # exact: below 2**53 (checked)
            numerator = _as_exact_int(torch.as_tensor(numerator) + float(program.constant), f"add {self.name!r}")
            codes = _encode_exact(numerator, program.shift, program.table, program.clamp)
            exact = _exact_output(self.output_quantizer, codes, xs[0])
        if self.trace is not None:
            self.trace[self.name] = np.asarray(codes, dtype=np.int64)
        if not _needs_grad(*xs):
            return exact
        total = sum(s * x for s, x in zip(self.scales, xs)) + self.constant
        return _ste(total, exact, self.low, self.high)


@dataclasses.dataclass(frozen=True)
class _PoolPlan:
    """What :meth:`QuantAvgPool.forward` needs besides its input (:meth:`QuantAvgPool.plan`)."""

    program: AvgPool
    input_table: np.ndarray
    requantizer: _Requantizer


class QuantAvgPool(_QuantOp):
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

    def _state(self):
        return (_quantizer_state(self.input_quantizer), _quantizer_state(self.output_quantizer),
                sorted(self.attrs.items()), self.low, self.high)

    def _make_plan(self):
        program = self.program()
        window = int(np.prod(self.attrs["kernel"]))
        requantizer = _Requantizer(0, program.multiplier.multiplier, program.multiplier.shift, program.table,
                                   program.clamp, self.output_quantizer, _largest(self.input_quantizer.format) * window)
        return _PoolPlan(program, _value_table(self.input_quantizer.format), requantizer)

    def forward(self, x):
        plan = self.plan()
        program = plan.program
        a = self.attrs
        values = torch.from_numpy(_encoded(self.input_quantizer, x, plan.input_table)[1])
        sums = F.avg_pool2d(values, a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                            count_include_pad=True, divisor_override=1)
        if plan.requantizer.exact:                  # window sums below the bound: exact in float64
            sums = sums.numpy()
            codes, exact = plan.requantizer(sums.shape, sums.reshape(sums.shape[0] * sums.shape[1], -1).__getitem__, x)
        else:
            sums = _as_exact_int(sums, f"average pool {self.name!r}")
            numerator = sums * program.multiplier.multiplier
            codes = _encode_exact(numerator, program.multiplier.shift, program.table, program.clamp)
            exact = None
        if not a["keep_dims"]:
            codes = codes.reshape(codes.shape[0], codes.shape[1])
            if exact is not None:
                ints = _carried(exact, self.output_quantizer)[1]
                exact = _attach(exact.reshape(codes.shape), self.output_quantizer, codes,
                                None if ints is None else ints.reshape(codes.shape))
        if exact is None:
            exact = _exact_output(self.output_quantizer, codes, x)
        if self.trace is not None:
            self.trace[self.name] = np.asarray(codes, dtype=np.int64)
        if not _needs_grad(x):
            return exact
        float_out = F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                                 count_include_pad=a["count_include_pad"], divisor_override=a["divisor_override"])
        if not a["keep_dims"]:
            float_out = float_out.reshape(exact.shape)
        return _ste(float_out, exact, self.low, self.high)
