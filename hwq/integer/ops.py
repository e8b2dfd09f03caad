"""Exact numpy tensor operations of the integer reference model: padding, im2col, convolution, pooling.

Every function takes NCHW arrays and matches :mod:`torch.nn.functional` bit for bit on integers
(``pad``, ``unfold``, ``conv2d``, ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d``),
with numpy alone: this module must not import torch. Work is vectorised over pixels (the only
Python loops run over kernel offsets, groups of images or chunks of rows), and integer results
are exact int64: sums that could overflow raise :class:`~hwq.errors.InputError` instead.

Convolutions accumulate through the golden PE contract, :func:`hwq.formats.golden.matmul` and
:func:`hwq.formats.golden.grouped_matmul` ("decode both, multiply, sum exactly"), on im2col
patches built from :func:`numpy.lib.stride_tricks.sliding_window_view` and copied one chunk at
a time (at most :data:`CHUNK_ELEMENTS` patch entries).

Sizes follow torch: ``kernel``, ``stride``, ``padding`` and ``dilation`` of the 2-D operations
are an int (both axes) or a pair ``(h, w)``; a pooling ``stride`` of ``None`` is the kernel size.
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import InputError
from ..formats import golden

__all__ = ["CHUNK_ELEMENTS", "PAD_MODES", "pad2d", "conv_output_size", "pool_output_size", "im2col", "conv2d",
           "max_pool2d", "sum_pool2d", "avg_pool_divisors", "adaptive_sum_pool2d"]

#: the largest number of im2col patch entries :func:`conv2d` copies at once (2 MiB of int64; the
#: decoded and float64 copies golden makes of a chunk stay in cache, and the peak memory small)
CHUNK_ELEMENTS = 1 << 18
#: padding modes of :func:`pad2d`, as :func:`torch.nn.functional.pad` names them
PAD_MODES = ("constant", "reflect", "replicate", "circular")

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# --- argument checks -----------------------------------------------------------------------------

def _int(name, value, lo=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, not {value!r}")
    if value < lo:
        raise InputError(f"{name} must be at least {lo}, not {value}")
    return int(value)


def _pair(name, value, lo):
    """``value`` (an int or a pair of ints, each ``>= lo``) as a tuple ``(h, w)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"{name} must be an integer or a pair (h, w), not {value!r}")
        return tuple(_int(name, v, lo) for v in value)
    v = _int(name, value, lo)
    return v, v


def _nchw(name, x, integer=True):
    """``x`` as an array of four dimensions (of integers if ``integer``)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise InputError(f"{name} must be an (N, C, H, W) array, not {x.ndim}-dimensional with shape {x.shape}")
    if x.dtype.kind not in ("iu" if integer else "iuf"):
        raise InputError(f"{name} must hold {'integers' if integer else 'numbers'}, not {x.dtype}")
    return x


def _bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, not {value!r}")
    return bool(value)


def _check_sum(x, terms, what):
    """Raise if a sum of ``terms`` elements of int64 array ``x`` could overflow int64."""
    if x.size and terms > 1:
        largest = max(-int(x.min()), int(x.max()))
        if largest * terms > _INT64_MAX:
            raise InputError(f"{what} of {terms} values up to {largest} in magnitude could overflow int64")


# --- padding and sizes ---------------------------------------------------------------------------

def pad2d(x, padding, mode="constant", value=0):
    """Pad the last two axes of ``x`` exactly as :func:`torch.nn.functional.pad` does.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        Integer or floating-point array; the result has its dtype.
    padding : sequence of 4 int
        ``(top, bottom, left, right)``, each ``>= 0``. (torch's ``F.pad`` lists the same
        numbers as ``(left, right, top, bottom)``.)
    mode : {"constant", "reflect", "replicate", "circular"}
        ``"constant"`` fills with ``value``; ``"reflect"`` mirrors without repeating the edge
        (each pad must be smaller than its axis); ``"replicate"`` repeats the edge (the axis must
        not be empty); ``"circular"`` wraps around (each pad at most its axis).
    value : int or float
        Fill of ``"constant"`` mode; an integer that fits ``x``'s dtype when ``x`` holds integers.

    Returns
    -------
    numpy.ndarray, shape (N, C, top + H + bottom, left + W + right)
        A new array, ``x``'s dtype.

    Raises
    ------
    InputError
        ``x`` not 4-dimensional or not numeric, a bad ``padding``, ``mode`` or ``value``, or a pad
        too large for its mode.
    """
    x = _nchw("pad2d input", x, integer=False)
    if not isinstance(padding, (tuple, list)) or len(padding) != 4:
        raise InputError(f"padding must be (top, bottom, left, right), not {padding!r}")
    top, bottom, left, right = (_int("padding", p) for p in padding)
    if mode not in PAD_MODES:
        raise InputError(f"pad mode must be one of {', '.join(PAD_MODES)}, not {mode!r}")
    widths = ((0, 0), (0, 0), (top, bottom), (left, right))
    if mode == "constant":
        if x.dtype.kind in "iu":
            info = np.iinfo(x.dtype)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not info.min <= value <= info.max:
                raise InputError(f"pad value must be an integer in [{info.min}, {info.max}] for {x.dtype} "
                                 f"input, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(f"pad value must be a number, not {value!r}")
        return np.pad(x, widths, mode="constant", constant_values=value)
    for axis, pads in ((2, (top, bottom)), (3, (left, right))):
        size = x.shape[axis]
        if mode == "reflect" and max(pads) >= size:
            raise InputError(f"reflect padding {pads} of axis {axis} must be smaller than its size {size}")
        if mode == "circular" and max(pads) > size:
            raise InputError(f"circular padding {pads} of axis {axis} must be at most its size {size}")
        if mode == "replicate" and max(pads) > 0 and size == 0:
            raise InputError(f"replicate padding needs a non-empty axis {axis}")
    return np.pad(x, widths, mode=_NUMPY_MODE[mode])


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Output length of a convolution along one axis (torch's formula).

    ``(size + before + after - dilation * (kernel - 1) - 1) // stride + 1``.

    Parameters
    ----------
    size : int
        Input length, ``>= 0``.
    kernel, stride, dilation : int
        Each ``>= 1``.
    padding : int or (int, int)
        Padding on each side, or ``(before, after)``; ``>= 0``.

    Returns
    -------
    int
        At least 1.

    Raises
    ------
    InputError
        A bad argument, or a (dilated) kernel longer than the padded input.
    """
    size, kernel = _int("input size", size), _int("kernel size", kernel, 1)
    stride, dilation = _int("stride", stride, 1), _int("dilation", dilation, 1)
    before, after = _pair("padding", padding, 0)
    span = dilation * (kernel - 1) + 1
    if span > size + before + after:
        raise InputError(f"kernel of size {kernel} (dilation {dilation}, span {span}) is larger than the "
                         f"padded input of size {size + before + after}")
    return (size + before + after - span) // stride + 1


def pool_output_size(size, kernel, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Output length of a max or average pooling along one axis (torch's formula).

    ``floor`` (or ``ceil`` with ``ceil_mode``) of
    ``(size + 2 * padding - dilation * (kernel - 1) - 1) / stride``, plus 1; with ``ceil_mode``,
    a last window that would start beyond the input and its left padding (at or after
    ``size + padding``, in padded coordinates) is dropped, as torch does.

    Parameters
    ----------
    size : int
        Input length, ``>= 0``.
    kernel, dilation : int
        Each ``>= 1``.
    stride : int or None
        ``>= 1``; ``None`` means ``kernel``.
    padding : int
        Padding on each side, at most ``kernel // 2`` (torch's rule for pooling).
    ceil_mode : bool

    Returns
    -------
    int
        At least 1.

    Raises
    ------
    InputError
        A bad argument, a padding above half the kernel, or an output that would be empty.
    """
    size, kernel = _int("input size", size), _int("kernel size", kernel, 1)
    stride = kernel if stride is None else _int("stride", stride, 1)
    padding, dilation = _int("padding", padding), _int("dilation", dilation, 1)
    ceil_mode = _bool("ceil_mode", ceil_mode)
    if padding > kernel // 2:
        raise InputError(f"pooling padding {padding} must be at most half the kernel size {kernel}")
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - span + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise InputError(f"pooling window of size {kernel} (dilation {dilation}, span {span}) is larger than "
                         f"the padded input of size {size + 2 * padding}")
    return out


# --- im2col and convolution ----------------------------------------------------------------------

def _windows(x, kernel, stride, dilation):
    """View ``(N, C, Ho, Wo, kh, kw)`` of every window of ``x`` (no copy)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    ho = conv_output_size(x.shape[2], kh, sh, 0, dh)
    wo = conv_output_size(x.shape[3], kw, sw, 0, dw)
    view = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    view = view[:, :, ::sh, ::sw, ::dh, ::dw]
    assert view.shape[2:4] == (ho, wo)
    return view


def im2col(x, kernel, stride=1, dilation=1):
    """The patches of :func:`torch.nn.functional.unfold`, one row per output position.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        Already padded; integer or floating point.
    kernel, stride, dilation : int or (int, int)
        Each ``>= 1``.

    Returns
    -------
    numpy.ndarray, shape (N, Ho * Wo, C * kh * kw)
        ``x``'s dtype; rows in row-major order of the output positions, columns in torch's order
        ``(C, kh, kw)``: ``im2col(x)[n, l, :] == unfold(x)[n, :, l]``. It is the transposed view
        of a new C-contiguous array in unfold's layout ``(N, C * kh * kw, L)``.

    Raises
    ------
    InputError
        ``x`` not 4-dimensional or not numeric, a bad size, or a kernel larger than the input.
    """
    x = _nchw("im2col input", x, integer=False)
    kernel, stride, dilation = _pair("kernel size", kernel, 1), _pair("stride", stride, 1), \
        _pair("dilation", dilation, 1)
    view = _windows(x, kernel, stride, dilation)
    n, c, ho, wo = view.shape[:4]
    # copied in unfold's layout, (N, C*kh*kw, L): its inner axis runs along input rows
    return view.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kernel[0] * kernel[1], ho * wo).transpose(0, 2, 1)


def _chunks(images, rows, row_elements, budget):
    """``(n0, n1, h0, h1)`` blocks of whole images, or of rows of one image, of at most
    ``budget`` elements each (at least one row)."""
    image = rows * row_elements
    if image <= budget:
        step = max(1, budget // max(image, 1))
        for n0 in range(0, images, step):
            yield n0, min(images, n0 + step), 0, rows
    else:
        step = max(1, budget // max(row_elements, 1))
        for n0 in range(images):
            for h0 in range(0, rows, step):
                yield n0, n0 + 1, h0, min(rows, h0 + step)


def conv2d(a_fmt, a_codes, w_fmt, w_codes, stride=1, dilation=1, groups=1):
    """Exact accumulators of a 2-D convolution over codes (torch's ``conv2d`` on decoded values).

    ``out[n, o, y, x] = sum decode(a) * decode(w)`` over the window of output ``(y, x)`` and the
    input channels of ``o``'s group, in units of ``2**product_lsb_exp(a_fmt, w_fmt)``; bias,
    padding and rescaling are the caller's. The sums go through the golden PE contract,
    :func:`hwq.formats.golden.matmul` (``groups == 1``) or
    :func:`hwq.formats.golden.grouped_matmul` (grouped and depthwise, without a block-diagonal
    matrix), on im2col patches copied :data:`CHUNK_ELEMENTS` entries at a time.

    Parameters
    ----------
    a_fmt, w_fmt : NumberFormat
        Activation and weight formats.
    a_codes : array_like of int, shape (N, C, H, W)
        Activation codes, already padded (with the code of value 0, or as the layer pads).
    w_codes : array_like of int, shape (O, C // groups, kh, kw)
        Weight codes, torch's layout.
    stride, dilation : int or (int, int)
        Each ``>= 1``.
    groups : int
        Divides both ``C`` and ``O``; ``groups == C`` is a depthwise convolution.

    Returns
    -------
    numpy.ndarray of int64, shape (N, O, Ho, Wo)

    Raises
    ------
    InputError
        Arrays of the wrong dimensions or dtype, channel counts that do not match ``groups``, a
        kernel larger than the input, codes outside their format, or sums that could overflow
        int64.
    """
    a_codes, w_codes = _nchw("conv2d activation codes", a_codes), _nchw("conv2d weight codes", w_codes)
    stride, dilation = _pair("stride", stride, 1), _pair("dilation", dilation, 1)
    groups = _int("groups", groups, 1)
    n, c = a_codes.shape[:2]
    o, cg, kh, kw = w_codes.shape
    if c % groups or o % groups:
        raise InputError(f"groups={groups} must divide both the {c} input and the {o} output channels")
    if cg * groups != c:
        raise InputError(f"weights of shape {w_codes.shape} need {cg * groups} input channels with "
                         f"groups={groups}, not {c}")
    if o == 0 or kh == 0 or kw == 0:
        raise InputError(f"weights of shape {w_codes.shape} are empty")
    view = _windows(a_codes, (kh, kw), stride, dilation)                    # (N, C, Ho, Wo, kh, kw)
    ho, wo = view.shape[2:4]
    k = cg * kh * kw
    out = np.empty((n, o, ho, wo), dtype=np.int64)
    out_groups = out.reshape(n, groups, o // groups, ho, wo)                  # a view: out is contiguous
    weights = w_codes.reshape(groups, o // groups, k)
    for n0, n1, h0, h1 in _chunks(n, ho, wo * c * kh * kw, CHUNK_ELEMENTS):
        # patches copied as (C*kh*kw, M), the inner axis along input rows (a fast copy), and used
        # transposed, (M, K) per group: BLAS takes either layout
        patches = view[n0:n1, :, h0:h1].transpose(1, 4, 5, 0, 2, 3).reshape(groups, k, -1).transpose(0, 2, 1)
        if groups == 1:
            acc = golden.matmul(a_fmt, patches[0], w_fmt, weights[0])[None]
        else:
            acc = golden.grouped_matmul(a_fmt, patches, w_fmt, weights)                  # (G, M, O / G)
        out_groups[n0:n1, :, :, h0:h1] = acc.reshape(groups, n1 - n0, h1 - h0, wo, o // groups).transpose(1, 0, 4, 2, 3)
    return out


# --- pooling -------------------------------------------------------------------------------------

def _pool_geometry(x, kernel, stride, padding, dilation, ceil_mode):
    kernel = _pair("kernel size", kernel, 1)
    stride = kernel if stride is None else _pair("stride", stride, 1)
    padding, dilation = _pair("padding", padding, 0), _pair("dilation", dilation, 1)
    size = tuple(pool_output_size(x.shape[2 + i], kernel[i], stride[i], padding[i], dilation[i], ceil_mode)
                 for i in range(2))
    return kernel, stride, padding, dilation, size


def _pool(x, geometry, fill, reduce):
    """Reduce every pooling window of ``x`` with ufunc ``reduce``, padding with ``fill``.

    Pads ``fill`` before each axis and as much after it as the last window reaches (more than
    ``padding`` with ``ceil_mode``, where torch ignores those positions: ``fill`` must be the
    neutral element of ``reduce`` for that), then folds the ``kh * kw`` strided slices together.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = geometry
    n, c, h, w = x.shape
    reach_h = (ho - 1) * sh + dh * (kh - 1) + 1
    reach_w = (wo - 1) * sw + dw * (kw - 1) + 1
    padded = np.full((n, c, max(reach_h, ph + h), max(reach_w, pw + w)), fill, dtype=np.int64)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    out = None
    for i in range(kh):
        for j in range(kw):
            part = padded[:, :, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw]
            out = part.copy() if out is None else reduce(out, part, out=out)
    return out


def max_pool2d(x, kernel, stride=None, padding=0, dilation=1, ceil_mode=False, pad_value=None):
    """Max pooling with torch's ``max_pool2d`` semantics, on integers.

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
        Values (or codes ordered as their values).
    kernel, dilation : int or (int, int)
        Each ``>= 1``.
    stride : int, (int, int) or None
        ``>= 1``; ``None`` means ``kernel``.
    padding : int or (int, int)
        Implicit padding on each side, at most half the kernel (as torch).
    ceil_mode : bool
        torch's ``ceil_mode`` (see :func:`pool_output_size`).
    pad_value : int or None
        The padding, torch's ``-inf``: it must not exceed any element of ``x`` (the caller gives
        its format's minimum value). ``None`` means the smallest int64. It only shows in a window
        that holds padding alone (possible with dilation), where torch gives ``-inf``.

    Returns
    -------
    numpy.ndarray of int64, shape (N, C, Ho, Wo)

    Raises
    ------
    InputError
        ``x`` not a 4-dimensional integer array, bad sizes (see :func:`pool_output_size`), or a
        ``pad_value`` above some element of ``x``.
    """
    x = _nchw("max_pool2d input", x).astype(np.int64, copy=False)
    geometry = _pool_geometry(x, kernel, stride, padding, dilation, _bool("ceil_mode", ceil_mode))
    if pad_value is None:
        pad_value = _INT64_MIN
    elif isinstance(pad_value, bool) or not isinstance(pad_value, (int, np.integer)) \
            or not _INT64_MIN <= pad_value <= _INT64_MAX:
        raise InputError(f"max_pool2d pad_value must be an int64 integer, not {pad_value!r}")
    elif x.size and pad_value > x.min():
        raise InputError(f"max_pool2d pad_value {pad_value} is above the input's minimum {x.min()}; "
                         "it stands for -inf and must not exceed any value")
    return _pool(x, geometry, int(pad_value), np.maximum)


def sum_pool2d(x, kernel, stride=None, padding=0, ceil_mode=False):
    """Exact window sums of average pooling (torch's ``avg_pool2d(..., divisor_override=1)``).

    Padding counts as 0, and so do the positions past the padding that a ``ceil_mode`` window
    reaches; divide by :func:`avg_pool_divisors` for torch's average.

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
    kernel : int or (int, int)
        ``>= 1``.
    stride : int, (int, int) or None
        ``>= 1``; ``None`` means ``kernel``.
    padding : int or (int, int)
        Zero padding on each side, at most half the kernel (as torch).
    ceil_mode : bool
        torch's ``ceil_mode`` (see :func:`pool_output_size`).

    Returns
    -------
    numpy.ndarray of int64, shape (N, C, Ho, Wo)

    Raises
    ------
    InputError
        ``x`` not a 4-dimensional integer array, bad sizes, or sums that could overflow int64.
    """
    x = _nchw("sum_pool2d input", x).astype(np.int64, copy=False)
    geometry = _pool_geometry(x, kernel, stride, padding, 1, _bool("ceil_mode", ceil_mode))
    _check_sum(x, geometry[0][0] * geometry[0][1], "window sums")
    return _pool(x, geometry, 0, np.add)


def avg_pool_divisors(size, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """The divisor torch's ``avg_pool2d`` uses for every output position.

    With ``count_include_pad`` it is the window's area clipped to the padded input (smaller than
    ``kh * kw`` only for ``ceil_mode`` windows that reach past the padding); without it, the
    number of input elements in the window (never 0).
    ``avg_pool2d(x) == sum_pool2d(x) / avg_pool_divisors(x.shape[2:])`` with the same arguments.

    Parameters
    ----------
    size : (int, int)
        Input ``(H, W)``.
    kernel, stride, padding, ceil_mode
        As :func:`sum_pool2d`.
    count_include_pad : bool
        torch's ``count_include_pad``.

    Returns
    -------
    numpy.ndarray of int64, shape (Ho, Wo)

    Raises
    ------
    InputError
        Bad sizes (see :func:`pool_output_size`).
    """
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise InputError(f"size must be the input's (H, W), not {size!r}")
    count_include_pad = _bool("count_include_pad", count_include_pad)
    fake = np.empty((0, 0, *(_int("input size", s) for s in size)), dtype=np.int64)
    (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = _pool_geometry(fake, kernel, stride, padding, 1, ceil_mode)

    def axis(length, k, s, p, out):
        start = np.arange(out, dtype=np.int64) * s - p
        end = np.minimum(start + k, length + p)
        if count_include_pad:
            return end - start
        return np.minimum(end, length) - np.maximum(start, 0)

    return np.outer(axis(size[0], kh, sh, ph, ho), axis(size[1], kw, sw, pw, wo))


def adaptive_sum_pool2d(x, output_size):
    """Exact window sums and window sizes of torch's ``adaptive_avg_pool2d``.

    Output ``i`` of an axis of length ``L`` pools input ``floor(i * L / O)`` up to (excluding)
    ``ceil((i + 1) * L / O)``, as torch; the average is ``sums / counts``.

    Parameters
    ----------
    x : array_like of int, shape (N, C, H, W)
    output_size : int, None or pair of (int or None)
        ``(Ho, Wo)``, each ``>= 1``; ``None`` keeps the input's size on that axis.

    Returns
    -------
    sums : numpy.ndarray of int64, shape (N, C, Ho, Wo)
    counts : numpy.ndarray of int64, shape (Ho, Wo)
        Elements in each window (at least 1).

    Raises
    ------
    InputError
        ``x`` not a 4-dimensional integer array with non-empty ``H`` and ``W``, a bad
        ``output_size``, or sums that could overflow int64.
    """
    x = _nchw("adaptive_sum_pool2d input", x).astype(np.int64, copy=False)
    n, c, h, w = x.shape
    if h == 0 or w == 0:
        raise InputError(f"adaptive pooling needs a non-empty input, not of shape {x.shape}")
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise InputError(f"output_size must be an integer or a pair (h, w), not {output_size!r}")
    sizes = [length if s is None else _int("output size", s, 1) for s, length in zip(sizes, (h, w))]
    _check_sum(x, h * w, "adaptive pooling sums")
    integral = np.zeros((n, c, h + 1, w + 1), dtype=np.int64)
    np.cumsum(x, axis=2, out=integral[:, :, 1:, 1:])
    np.cumsum(integral[:, :, 1:, 1:], axis=3, out=integral[:, :, 1:, 1:])
    (h0, h1), (w0, w1) = [(np.arange(o) * length // o, -(-(np.arange(o) + 1) * length // o))
                          for o, length in zip(sizes, (h, w))]
    corner = lambda rows, cols: integral[:, :, rows[:, None], cols[None, :]]
    sums = corner(h1, w1) - corner(h0, w1) - corner(h1, w0) + corner(h0, w0)
    return sums, np.outer(h1 - h0, w1 - w0)
