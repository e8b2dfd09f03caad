"""Golden multiply-accumulate over code arrays: exact integer arithmetic, nothing else.

Products of an activation format ``a`` and a weight format ``w`` are integers in units of
``2**(a.lsb_exp + w.lsb_exp)``; sums of them are exact in int64 for every supported format
(the bound is checked, never assumed).
"""

import numpy as np

from ..errors import InputError
from .base import check_int

__all__ = ["product_lsb_exp", "product_range", "acc_width", "products", "dot", "matmul", "accumulate",
           "signed_width"]

_INT64_SAFE = 1 << 62


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


def matmul(a_fmt, a_codes, w_fmt, w_codes):
    """Exact integer ``decode(a) @ decode(w).T``: ``a_codes`` is ``(..., K)``, ``w_codes`` ``(C, K)``.

    Every output is a dot product of ``K`` terms, in units of ``2**product_lsb_exp(a_fmt, w_fmt)``,
    computed in int64 after checking that no sum can overflow it.
    """
    a_codes, w_codes = np.asarray(a_codes), np.asarray(w_codes)
    lo, hi = product_range(a_fmt, w_fmt)
    if max(-lo, hi) * max(a_codes.shape[-1], 1) >= _INT64_SAFE:
        raise InputError("dot products too long to be exact in int64; split them")
    return a_fmt.decode(a_codes) @ w_fmt.decode(w_codes).T


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
