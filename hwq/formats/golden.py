"""Golden multiply-accumulate over code arrays: exact integer arithmetic, nothing else.

Products of an activation format ``a`` and a weight format ``w`` are integers in units of
``2**(a.lsb_exp + w.lsb_exp)``; sums of them are exact in int64 for every supported format
(the bound is checked, never assumed).

The matrix products (:func:`matmul`, :func:`grouped_matmul`) run in float64 (BLAS) whenever that
is exact, and in int64 otherwise; see :func:`float64_exact` for why float64 is exact under its
bound.
"""

import math

import numpy as np

from ..errors import InputError
from .base import check_int

__all__ = ["product_lsb_exp", "product_range", "acc_width", "products", "dot", "matmul", "grouped_matmul",
           "float64_exact", "accumulate", "signed_width"]

_INT64_SAFE = 1 << 62
#: every integer of magnitude up to 2**53 is a float64; sums are kept strictly below it
_FLOAT64_EXACT = 1 << 53


def product_lsb_exp(a_fmt, w_fmt):
    """Exponent of the unit of a product (and of the accumulator)."""
    return a_fmt.lsb_exp + w_fmt.lsb_exp


def product_range(a_fmt, w_fmt):
    """Smallest and largest integer product ``decode(a) * decode(w)`` over every code pair."""
    corners = [x * y for x in (a_fmt.int_min, a_fmt.int_max) for y in (w_fmt.int_min, w_fmt.int_max)]
    return min(corners), max(corners)


def signed_width(lo, hi):
    """Width of the narrowest two's-complement signal that holds every integer in ``[lo, hi]``."""
    need = lambda v: (v.bit_length() if v >= 0 else (-v - 1).bit_length()) + 1
    return max(need(lo), need(hi))


def acc_width(a_fmt, w_fmt, max_terms):
    """Accumulator width that holds any sum of up to ``max_terms`` products without overflow.

    This is the exact bound ``signed_width(max_terms * min_product, max_terms * max_product)``;
    it is never wider than the bound of docs/formats.md, "Accumulator width",
    ``ceil(log2(max|v_w| * max|v_a| + 1)) + 1 + ceil(log2 K)``.
    """
    max_terms = check_int("max_terms", max_terms, 1, 1 << 24)
    lo, hi = product_range(a_fmt, w_fmt)
    return signed_width(max_terms * lo, max_terms * hi)


def products(a_fmt, a_codes, w_fmt, w_codes):
    """Elementwise integer products ``decode(a) * decode(w)`` (broadcasting), as int64."""
    lo, hi = product_range(a_fmt, w_fmt)
    if max(-lo, hi) >= _INT64_SAFE:
        raise InputError(f"products of {a_fmt} and {w_fmt} do not fit in int64")
    return a_fmt.decode(a_codes) * w_fmt.decode(w_codes)


def dot(a_fmt, a_codes, w_fmt, w_codes, axis=-1):
    """Exact dot product along ``axis``, in units of ``2**product_lsb_exp(a_fmt, w_fmt)``."""
    p = products(a_fmt, a_codes, w_fmt, w_codes)
    lo, hi = product_range(a_fmt, w_fmt)
    if p.shape and max(-lo, hi) * p.shape[axis] >= _INT64_SAFE:
        raise InputError("dot product too long to be exact in int64; split it")
    return p.sum(axis=axis)


def float64_exact(a_fmt, w_fmt, terms):
    """Whether float64 arithmetic computes every sum of up to ``terms`` products exactly.

    True when ``max|decode(a) * decode(w)| * terms < 2**53`` (and every decoded value has
    magnitude at most ``2**53``). Then every operand, every product and every partial sum, in any
    order and any grouping, is an integer of magnitude below ``2**53``, i.e. a float64. IEEE 754
    rounds each multiply, add or fused multiply-add correctly, and the correctly rounded value
    of an exactly representable result is that result: no operation ever rounds, whatever
    blocking, summation order or FMA use the BLAS library picks. The float64 result is therefore
    the exact integer sum, and converting it back to int64 loses nothing.

    Parameters
    ----------
    a_fmt, w_fmt : NumberFormat
        Activation and weight formats.
    terms : int
        Number of products summed per output (``K``); 0 counts as 1.

    Returns
    -------
    bool
    """
    lo, hi = product_range(a_fmt, w_fmt)
    largest = max(-a_fmt.int_min, a_fmt.int_max, -w_fmt.int_min, w_fmt.int_max)
    return max(-lo, hi) * max(int(terms), 1) < _FLOAT64_EXACT and largest <= _FLOAT64_EXACT


def _check_int64(a_fmt, w_fmt, terms):
    lo, hi = product_range(a_fmt, w_fmt)
    if max(-lo, hi) * max(terms, 1) >= _INT64_SAFE:
        raise InputError(f"dot products of {terms} terms of {a_fmt} and {w_fmt} are too long to be exact "
                         "in int64; split them")


def matmul(a_fmt, a_codes, w_fmt, w_codes):
    """Exact integer ``decode(a) @ decode(w).T``: ``a_codes`` is ``(..., K)``, ``w_codes`` ``(C, K)``.

    Every output is a dot product of ``K`` terms, in units of ``2**product_lsb_exp(a_fmt, w_fmt)``,
    returned as int64 ``(..., C)``. It is computed in float64 with BLAS when
    :func:`float64_exact` holds for ``K`` terms (exact, see there), in int64 otherwise, after
    checking that no sum can overflow int64 (:class:`~hwq.errors.InputError` if one can, or if the
    shapes do not match; codes outside their format raise as in
    :meth:`~hwq.formats.base.NumberFormat.decode`).
    """
    a_codes, w_codes = np.asarray(a_codes), np.asarray(w_codes)
    if a_codes.ndim < 1 or w_codes.ndim != 2 or a_codes.shape[-1] != w_codes.shape[1]:
        raise InputError(f"matmul needs codes (..., K) and (C, K), not {a_codes.shape} and {w_codes.shape}")
    k = a_codes.shape[-1]
    _check_int64(a_fmt, w_fmt, k)
    a, w = a_fmt.decode(a_codes), w_fmt.decode(w_codes)
    if not float64_exact(a_fmt, w_fmt, k):
        return a @ w.T
    out = a.reshape(math.prod(a.shape[:-1]), k).astype(np.float64) @ w.astype(np.float64).T
    return out.astype(np.int64).reshape(*a.shape[:-1], w.shape[0])


def grouped_matmul(a_fmt, a_codes, w_fmt, w_codes):
    """Exact integer matrix products of ``G`` independent groups (grouped convolutions).

    ``out[g, ..., c] = sum_k decode(a[g, ..., k]) * decode(w[g, c, k])``: :func:`matmul` on
    each group, computed the same way (float64 BLAS when :func:`float64_exact` holds, int64
    otherwise) in one batched product, without building a block-diagonal matrix. Any memory
    layout of ``a_codes`` works (a transposed view is used as it is).

    Parameters
    ----------
    a_fmt, w_fmt : NumberFormat
        Activation and weight formats.
    a_codes : array_like of int, shape (G, ..., K)
        Activation codes of each group.
    w_codes : array_like of int, shape (G, C, K)
        Weight codes, ``C`` rows per group.

    Returns
    -------
    numpy.ndarray of int64, shape (G, ..., C)
        In units of ``2**product_lsb_exp(a_fmt, w_fmt)``.

    Raises
    ------
    InputError
        Shapes that do not match, codes outside their format, or sums that could overflow int64.
    """
    a_codes, w_codes = np.asarray(a_codes), np.asarray(w_codes)
    if a_codes.ndim < 2 or w_codes.ndim != 3 or a_codes.shape[0] != w_codes.shape[0] \
            or a_codes.shape[-1] != w_codes.shape[2]:
        raise InputError(f"grouped_matmul needs codes (G, ..., K) and (G, C, K), not {a_codes.shape} "
                         f"and {w_codes.shape}")
    groups, lead, k = a_codes.shape[0], a_codes.shape[1:-1], a_codes.shape[-1]
    _check_int64(a_fmt, w_fmt, k)
    a, w = a_fmt.decode(a_codes), w_fmt.decode(w_codes)
    if float64_exact(a_fmt, w_fmt, k):
        a, w = a.astype(np.float64), w.astype(np.float64)
    out = np.matmul(a.reshape(groups, math.prod(lead), k), w.transpose(0, 2, 1))     # (G, M, C)
    return out.astype(np.int64, copy=False).reshape(groups, *lead, w.shape[1])


def accumulate(a_fmt, a_codes, w_fmt, w_codes, valid, clear):
    """The PE contract, one entry per clock cycle.

    ``sum[t] = (clear[t] ? 0 : sum[t-1]) + (valid[t] ? decode(a[t]) * decode(w[t]) : 0)``
    with ``sum[-1] = 0`` (the state after reset). Returns the int64 array ``sum``, the value the
    PE's ``acc`` shows ``latency`` cycles after each cycle's inputs.
    """
    valid = np.asarray(valid, dtype=bool)
    clear = np.asarray(clear, dtype=bool)
    terms = np.where(valid, products(a_fmt, a_codes, w_fmt, w_codes), 0)
    running = np.cumsum(terms)
    index = np.arange(len(terms))
    last_clear = np.maximum.accumulate(np.where(clear, index, -1))
    before = np.where(last_clear > 0, running[np.maximum(last_clear - 1, 0)], 0)
    return running - before
