"""UNIQ's uniformization and noise injection, as autograd-friendly torch functions.

A tensor ``x`` with CDF ``F`` (a :class:`~hwq.formats.uniq.Distribution` from
:func:`~hwq.formats.uniq.fit_distribution`: Gaussian, Laplace or empirical) is *uniformized* to
``u = F(x)``, uniform on ``[0, 1]`` when ``x ~ F``. There the k-quantile quantizer (``k = 2**bits``)
is a uniform one: bin ``floor(u * k)``, level ``(i + 1/2) / k``, so
``Q(x) = F^-1((floor(F(x) * k) + 1/2) / k)`` (:func:`quantile_quantize`; the thresholds are
``F^-1(i/k)``, the levels ``F^-1((i + 1/2)/k)``, ``F^-1((i - 1/2)/k)`` for
``i = 1 ... k`` in docs/formats.md, "uniq").

Noise injection (:func:`noise_quantize`) replaces ``Q`` in training by

    ``Q_noise(x) = F^-1(clamp(F(x) + e, 1/(2k), 1 - 1/(2k)))``, ``e ~ U[-1/(2k), 1/(2k)]``,

with ``e`` drawn afresh on every call (every forward pass). For ``x ~ F`` the quantizer's error
in the uniformized domain, ``(floor(u k) + 1/2)/k - u``, is itself ``U[-1/(2k), 1/(2k)]``, so the
noise has the quantizer's distribution of error, and averaged over a bin the noisy value equals
the bin's level. The clamp keeps ``Q_noise(x)`` within ``[q_1, q_k]``, the quantizer's range
(where ``F^-1`` is finite for every distribution); it biases only the two end bins: their mean
uniformized value is ``1/(2k) + 1/(6k)`` (and its mirror) instead of ``1/(2k)``. Outside the clamp
the gradient is 0, as the quantizer clips; inside it is ``f(x) / f(Q_noise(x))``.

Empirical CDF: the piecewise-linear CDF through the sorted samples ``s_j`` at
``(j + 1/2) / n``, the exact inverse of :meth:`~hwq.formats.uniq.Distribution.quantile` (numpy's
``"hazen"`` quantile), constant beyond the end samples (gradient 0 there).

All functions keep ``x``'s dtype and device and raise :class:`~hwq.errors.InputError` before any
work on NaN/Inf, a non-floating tensor, an unknown distribution or a bad bit width.
"""

import math

import torch

from ..errors import InputError
from ..formats.base import check_int
from ..formats.uniq import Distribution, Uniq

__all__ = ["uniformize", "deuniformize", "noise_bounds", "quantile_quantize", "noise_quantize"]


def _check(x, dist, what="x"):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InputError(f"{what} must be a floating-point torch tensor, not {type(x).__name__}"
                       + (f" of {x.dtype}" if isinstance(x, torch.Tensor) else ""))
    if not isinstance(dist, Distribution):
        raise InputError(f"dist must be a Distribution (hwq.formats.uniq.fit_distribution), not {dist!r}")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{what} holds NaN/Inf values; clean or clamp it before quantizing")


def _levels(bits):
    return 1 << check_int("uniq bit width", bits, *Uniq.bit_range)


def _samples(dist, like):
    return torch.as_tensor(dist.samples, dtype=like.dtype, device=like.device)


def _cdf(x, dist):
    if dist.family == "gaussian":
        return 0.5 * (1 + torch.erf((x - dist.loc) / (dist.scale * math.sqrt(2))))
    if dist.family == "laplace":
        d = (x - dist.loc) / dist.scale
        return torch.where(d < 0, 0.5 * torch.exp(d.clamp(max=0)), 1 - 0.5 * torch.exp(-d.clamp(min=0)))
    s = _samples(dist, x)
    n = s.numel()
    j = (torch.searchsorted(s, x.detach(), right=True) - 1).clamp(0, n - 2)
    lo, hi = s[j], s[j + 1]
    width = hi - lo
    t = torch.where(width > 0, (x - lo) / torch.where(width > 0, width, torch.ones_like(width)), torch.ones_like(x))
    return (j + t.clamp(0, 1) + 0.5) / n


def _icdf(u, dist):
    if dist.family == "gaussian":
        return dist.loc + dist.scale * math.sqrt(2) * torch.erfinv(2 * u - 1)
    if dist.family == "laplace":
        low = dist.loc + dist.scale * torch.log(2 * u.clamp(max=0.5))
        high = dist.loc - dist.scale * torch.log(2 * (1 - u.clamp(min=0.5)))
        return torch.where(u < 0.5, low, high)
    s = _samples(dist, u)
    n = s.numel()
    pos = (u * n - 0.5).clamp(0, n - 1)
    j = pos.detach().floor().long().clamp(max=n - 2)
    return s[j] + (pos - j) * (s[j + 1] - s[j])


def uniformize(x, dist):
    """``F(x)``: the CDF of ``dist`` at every element of ``x`` (in ``[0, 1]``)."""
    _check(x, dist)
    return _cdf(x, dist)


def deuniformize(u, dist):
    """``F^-1(u)``: the inverse CDF of ``dist``; ``u`` must lie strictly inside ``(0, 1)``
    (for the empirical CDF, ``[0, 1]``: it is constant beyond the end samples)."""
    _check(u, dist, "u")
    if dist.family != "empirical" and bool(((u <= 0) | (u >= 1)).any()):
        raise InputError(f"u must lie strictly between 0 and 1 for a {dist.family} inverse CDF")
    return _icdf(u, dist)


def noise_bounds(bits):
    """``(1/(2k), 1 - 1/(2k))``: the uniformized range of the levels, where the noise is clamped."""
    k = _levels(bits)
    return 1 / (2 * k), 1 - 1 / (2 * k)


def quantile_quantize(x, dist, bits):
    """UNIQ's k-quantile quantizer ``F^-1((floor(F(x) k) + 1/2) / k)`` (no gradient: it is
    piecewise constant; use :func:`noise_quantize` for training)."""
    k = _levels(bits)
    _check(x, dist)
    with torch.no_grad():
        index = (_cdf(x, dist) * k).floor().clamp(0, k - 1)
        return _icdf((index + 0.5) / k, dist)


def noise_quantize(x, dist, bits, *, generator=None):
    """Noise-injection stand-in for the quantizer: ``F^-1(clamp(F(x) + e))``.

    Parameters
    ----------
    x : torch.Tensor
        Floating-point tensor (gradients flow to it).
    dist : Distribution
        The fitted distribution (:func:`hwq.formats.uniq.fit_distribution`).
    bits : int
        Index width, 2 to 8 (``k = 2**bits``).
    generator : torch.Generator, optional
        Source of the noise (a fresh draw on every call either way).

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``x``.
    """
    k = _levels(bits)
    lo, hi = noise_bounds(bits)
    _check(x, dist)
    noise = (torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) - 0.5) / k
    return _icdf((_cdf(x, dist) + noise).clamp(lo, hi), dist)
