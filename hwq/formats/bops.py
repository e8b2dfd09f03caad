"""Bit operations (BOPs) of a layer, UNIQ's complexity metric, for any format.

For a layer with ``n`` input channels, ``m`` output channels and a ``k x k`` kernel (``k = 1``
for a linear layer), ``b_a``-bit activations and ``b_w``-bit weights, each output position
needs ``n * k**2`` multiply-accumulates into an accumulator of

    ``b_o = b_a + b_w + log2(n * k**2)`` bits,

and costs ``BOPs = m * n * k**2 * (b_a * b_w + b_o)`` (docs/formats.md, "BOPs"). A layer's
total is that times the number of output positions. Only code widths enter, so the metric serves
every format (a UNIQ weight counts its index bits ``b``: the level table is the PE's, as the paper
assumes).

Source: UNIQ (C. Baskin, N. Liss, E. Schwartz et al., "UNIQ: Uniform Noise Injection for
Non-Uniform Quantization of Neural Networks", ACM TOCS 2021, doi:10.1145/3444943;
arXiv:1804.10969), which defines BOPs for a dense ``n -> m`` convolution.

Grouped and depthwise convolutions
----------------------------------
hwq generalises the definition to ``groups = g`` (PyTorch's ``Conv2d(groups=g)``; ``g`` divides
both ``n`` and ``m``): each output channel sees only its group's ``n / g`` input channels, so
the fan-in of one output is ``f = (n / g) * k**2`` and, applying UNIQ's per-output count to it,

    ``b_o = b_a + b_w + log2(f)``,  ``BOPs = m * f * (b_a * b_w + b_o)``

per output position. ``g = 1`` is UNIQ's formula unchanged. A depthwise convolution
(``g = n = m``) is ``m`` single-channel convolutions, ``m * k**2 * (b_a * b_w + b_a + b_w +
log2(k**2))``: ``n`` times fewer MACs than the dense ``n -> n`` convolution, each into a
narrower accumulator. (:mod:`hwq.quant.analysis` passes ``torch.nn.Conv2d.groups``.)

The logarithm
-------------
``log2="exact"`` (the default) uses the real ``log2(n * k**2)``: it is UNIQ's definition and
reproduces the example of docs/formats.md, "BOPs" (3x3, 64 -> 64, ``(b_w, b_a) = (4, 8)``:
1 960 056.1 BOPs, "1.96 M", per output pixel); the result is a float. Everything else is integer
arithmetic: the float part is only ``m * n * k**2 * log2(n * k**2)``.

``log2="ceil"`` uses ``ceil(log2(n * k**2))``, the bits an exact integer accumulator actually
grows by (:func:`accumulator_bits`); the result is an exact int (1 990 656 for the example).
"""

import math

from ..errors import InputError
from .base import NumberFormat, check_int

__all__ = ["LOG2_MODES", "accumulator_bits", "bops", "conv_bops", "linear_bops"]

#: how ``log2(n * k**2)`` is taken
LOG2_MODES = ("exact", "ceil")

_MAX = 1 << 40


def _bits(name, value):
    """Code width of ``value``: an int, or a :class:`NumberFormat`'s ``bits``."""
    if isinstance(value, NumberFormat):
        return value.bits
    return check_int(name, value, 1, 64)


def _kernel_area(kernel_size):
    if isinstance(kernel_size, (tuple, list)):
        if len(kernel_size) != 2:
            raise InputError(f"kernel_size must be an int or a (height, width) pair, not {kernel_size!r}")
        return check_int("kernel height", kernel_size[0], 1, 1 << 16) * check_int("kernel width", kernel_size[1], 1, 1 << 16)
    k = check_int("kernel_size", kernel_size, 1, 1 << 16)
    return k * k


def _log2(fan_in, log2):
    if log2 == "exact":
        return math.log2(fan_in)
    if log2 == "ceil":
        return (fan_in - 1).bit_length()
    raise InputError(f"unknown log2 mode {log2!r}; use one of {', '.join(LOG2_MODES)}")


def accumulator_bits(a_bits, w_bits, fan_in, *, log2="exact"):
    """``b_o = b_a + b_w + log2(fan_in)``: accumulator width for ``fan_in`` products.

    Parameters
    ----------
    a_bits, w_bits : int or NumberFormat
        Activation and weight code widths (a format gives its ``bits``).
    fan_in : int
        Products per output, ``n * k**2`` (``n / groups * k**2`` for a grouped convolution).
    log2 : {"exact", "ceil"}
        Real logarithm (float result) or its ceiling (int result).
    """
    fan_in = check_int("fan_in", fan_in, 1, _MAX)
    return _bits("activation bits", a_bits) + _bits("weight bits", w_bits) + _log2(fan_in, log2)


def _groups(groups, n, m):
    """``groups``, checked: a positive int that divides both channel counts."""
    g = check_int("groups", groups, 1, _MAX)
    if n % g or m % g:
        raise InputError(f"groups={g} must divide both in_channels={n} and out_channels={m} "
                         f"(each group maps in_channels/groups inputs to out_channels/groups outputs)")
    return g


def bops(a_bits, w_bits, in_channels, out_channels, kernel_size=1, *, groups=1, positions=1, log2="exact"):
    """BOPs of ``positions`` output positions of a layer.

    Parameters
    ----------
    a_bits, w_bits : int or NumberFormat
        Activation and weight code widths.
    in_channels, out_channels : int
        ``n`` and ``m``.
    kernel_size : int or (int, int)
        ``k`` (``k x k`` kernel) or ``(k_h, k_w)`` (``k**2`` becomes ``k_h * k_w``); 1 for linear.
    groups : int
        ``g``, the number of channel groups (PyTorch's ``groups``); it must divide ``n`` and
        ``m``. Each output sees ``n / g`` input channels; ``g = n = m`` is depthwise.
    positions : int
        Output positions (pixels) counted; 1 gives the per-position figure.
    log2 : {"exact", "ceil"}
        See the module docstring: float result, or exact int.

    Returns
    -------
    float or int
        ``positions * m * f * (b_a * b_w + b_o)`` with fan-in ``f = (n / g) * k**2`` and
        ``b_o = b_a + b_w + log2(f)`` (see the module docstring).

    Raises
    ------
    InputError
        For a width, channel count, kernel size or position count that is not a positive
        integer in range, ``groups`` not dividing both channel counts, or an unknown ``log2``.
    """
    if log2 not in LOG2_MODES:
        raise InputError(f"unknown log2 mode {log2!r}; use one of {', '.join(LOG2_MODES)}")
    b_a, b_w = _bits("activation bits", a_bits), _bits("weight bits", w_bits)
    n = check_int("in_channels", in_channels, 1, _MAX)
    m = check_int("out_channels", out_channels, 1, _MAX)
    g = _groups(groups, n, m)
    positions = check_int("positions", positions, 1, _MAX)
    fan_in = (n // g) * _kernel_area(kernel_size)
    macs = positions * m * fan_in
    whole = macs * (b_a * b_w + b_a + b_w)
    return whole + macs * _log2(fan_in, log2)


def conv_bops(in_channels, out_channels, kernel_size, a_bits, w_bits, *, groups=1, output_size=None,
              log2="exact"):
    """BOPs of a convolution: per output pixel, or in total with ``output_size``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    a_bits, w_bits : int or NumberFormat
    groups : int
        Channel groups, as ``torch.nn.Conv2d``'s ``groups`` (``in_channels`` for depthwise); must
        divide both channel counts. Each output channel's fan-in is
        ``in_channels / groups * k**2``, in the MAC count and in the accumulator's ``log2``.
    output_size : int or (int, int), optional
        Output feature-map size (``s`` for ``s x s``, or ``(h, w)``); ``None`` gives the
        per-pixel figure.
    log2 : {"exact", "ceil"}

    Examples
    --------
    A depthwise 3x3 convolution on 8 channels is 8 single-channel convolutions:

    >>> conv_bops(8, 8, 3, 8, 8, groups=8, log2="ceil") == 8 * conv_bops(1, 1, 3, 8, 8, log2="ceil")
    True
    """
    if output_size is None:
        positions = 1
    elif isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise InputError(f"output_size must be an int or a (height, width) pair, not {output_size!r}")
        positions = (check_int("output height", output_size[0], 1, 1 << 20)
                     * check_int("output width", output_size[1], 1, 1 << 20))
    else:
        side = check_int("output_size", output_size, 1, 1 << 20)
        positions = side * side
    return bops(a_bits, w_bits, in_channels, out_channels, kernel_size, groups=groups, positions=positions,
                log2=log2)


def linear_bops(in_features, out_features, a_bits, w_bits, *, log2="exact"):
    """BOPs of a linear (fully connected) layer: ``k = 1``, one output position."""
    return bops(a_bits, w_bits, in_features, out_features, 1, log2=log2)
