"""hwq.quant.uniq_noise: UNIQ's noise injection in torch (uniformize, noise bounds, quantile
quantization), checked against sample statistics and exact quantiles computed here."""

import math
import statistics

import numpy as np
import pytest
import torch

from hwq.errors import HwqError
from hwq.formats.uniq import (fit_distribution, quantile_points)
from hwq.quant.uniq_noise import (deuniformize, noise_bounds, noise_quantize, quantile_quantize, uniformize)

#: standard errors allowed between a sample mean and its expected value
SIGMAS = 5


@pytest.fixture(scope="module")
def gaussian():
    x = torch.from_numpy(np.random.default_rng(11).normal(0.3, 2.0, 20000))
    return x, fit_distribution(x, "gaussian")


@pytest.mark.parametrize("family", ["gaussian", "laplace", "empirical"])
def test_transforms_match_the_golden_quantiles_and_invert(family, gaussian):
    x, _ = gaussian
    dist = fit_distribution(x, family)
    assert dist.family == family
    p = torch.tensor(quantile_points(5), dtype=torch.float64)
    np.testing.assert_allclose(deuniformize(p, dist).numpy(), dist.quantile(p.numpy()), rtol=1e-9, atol=1e-9)
    inner = x[(x > dist.quantile([0.01])[0]) & (x < dist.quantile([0.99])[0])]
    np.testing.assert_allclose(deuniformize(uniformize(inner, dist), dist).numpy(), inner.numpy(), atol=1e-9)
    u = uniformize(x, dist)
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    if family == "empirical":                    # the empirical F of its own samples is exactly (j + 1/2) / n
        ranks = torch.argsort(torch.argsort(x)).double()
        np.testing.assert_allclose(u.numpy(), ((ranks + 0.5) / len(x)).numpy(), atol=1e-12)
    if family == "gaussian":
        cdf = statistics.NormalDist(dist.loc, dist.scale).cdf
        np.testing.assert_allclose(u[:200].numpy(), [cdf(v) for v in x[:200].tolist()], atol=1e-12)


@pytest.mark.parametrize("bits", [2, 4])
def test_noise_matches_the_quantizer_in_expectation_per_bin(gaussian, bits):
    """Inside every bin (u uniform on [i/k, (i+1)/k)) the mean uniformized noisy value is the
    quantizer's level (i + 1/2)/k; the two end bins carry the clamp's documented bias 1/(6k).
    Tolerance: SIGMAS standard errors of a mean of u + e, whose variance is 2 / (12 k^2)."""
    _, dist = gaussian
    k, n = 1 << bits, 20000
    gen = torch.Generator().manual_seed(5)
    i = torch.arange(k, dtype=torch.float64).repeat_interleave(n)
    u = (i + torch.rand(k * n, generator=gen, dtype=torch.float64)) / k
    x = deuniformize(u.clamp(1e-12, 1 - 1e-12), dist)
    quantized = uniformize(quantile_quantize(x, dist, bits), dist).view(k, n)
    noisy = uniformize(noise_quantize(x, dist, bits, generator=gen), dist).view(k, n)
    centers = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    np.testing.assert_allclose(quantized.numpy(), centers[:, None].expand(k, n).numpy(), atol=1e-9)
    expected = centers.clone()
    expected[0] += 1 / (6 * k)
    expected[-1] -= 1 / (6 * k)
    tolerance = SIGMAS * math.sqrt(2 / 12) / k / math.sqrt(n)
    np.testing.assert_allclose(noisy.mean(dim=1).numpy(), expected.numpy(), atol=tolerance, rtol=0)
    lo, hi = noise_bounds(bits)
    assert float(noisy.min()) >= lo - 1e-12 and float(noisy.max()) <= hi + 1e-12


def test_noise_has_the_quantizers_error_distribution(gaussian):
    """For x ~ F: mean uniformized value 1/2 for both, and inside the interior bins an error of
    variance 1/(12 k^2) for both (the quantizer's error there is U[-1/(2k), 1/(2k)] too)."""
    _, dist = gaussian
    bits, n = 4, 200000
    k = 1 << bits
    gen = torch.Generator().manual_seed(9)
    x = deuniformize(torch.rand(n, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12), dist)
    u = uniformize(x, dist)
    err_q = uniformize(quantile_quantize(x, dist, bits), dist) - u
    err_n = uniformize(noise_quantize(x, dist, bits, generator=gen), dist) - u
    mean_tolerance = SIGMAS * math.sqrt(1 / 12) / math.sqrt(n)
    for err in (err_q, err_n):
        assert abs(float((u + err).mean()) - 0.5) < mean_tolerance
    inner = (u >= 1 / k) & (u < 1 - 1 / k)
    variance = 1 / (12 * k * k)
    # the variance of (error^2) for U[-h/2, h/2] is h^4/80 - h^4/144 = h^4/180
    var_tolerance = SIGMAS * math.sqrt(1 / 180) / k ** 2 / math.sqrt(int(inner.sum()))
    for err in (err_q, err_n):
        assert abs(float((err[inner] ** 2).mean()) - variance) < var_tolerance
        assert abs(float(err[inner].mean())) < SIGMAS * math.sqrt(variance / int(inner.sum()))


@pytest.mark.parametrize("family", ["gaussian", "laplace", "empirical"])
def test_gradients_flow_through_noise_injection(gaussian, family):
    x0, _ = gaussian
    dist = fit_distribution(x0, family)
    x = x0[:2000].clone().float().requires_grad_()
    y = noise_quantize(x, dist, 4)
    assert y.dtype == torch.float32 and y.shape == x.shape
    (y * torch.linspace(-1, 1, len(x))).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert float((x.grad != 0).float().mean()) > 0.8          # zero only where the clamp is active


def test_noise_is_drawn_afresh_on_every_call(gaussian):
    x, dist = gaussian
    first, second = noise_quantize(x, dist, 4), noise_quantize(x, dist, 4)
    assert not torch.equal(first, second)
    again = [noise_quantize(x, dist, 4, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(*again)


@pytest.mark.parametrize("call, match", [
    (lambda d: noise_quantize(torch.tensor([0.0, float("nan")]), d, 4), "NaN/Inf"),
    (lambda d: noise_quantize(torch.tensor([1, 2]), d, 4), "floating-point torch tensor"),
    (lambda d: noise_quantize(np.zeros(3), d, 4), "floating-point torch tensor"),
    (lambda d: noise_quantize(torch.zeros(3), "gaussian", 4), "dist must be a Distribution"),
    (lambda d: noise_quantize(torch.zeros(3), d, 1), "between 2 and 8"),
    (lambda d: deuniformize(torch.tensor([0.0, 0.5]), d), "strictly between 0 and 1"),
])
def test_bad_noise_arguments(gaussian, call, match):
    _, dist = gaussian
    with pytest.raises(HwqError, match=match):
        call(dist)
