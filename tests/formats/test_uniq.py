"""Golden UNIQ: k-quantile levels (docs/formats.md's Gaussian tables), the stored fixed-point table,
nearest-level encoding with its tie rule, level fitting and BOPs (noise injection, which is torch:
tests/quant/test_uniq_noise.py).

Every expected value comes from docs/formats.md, the standard library, numpy or exact Fraction
arithmetic written here, never from the code under test.
"""

import math
import statistics
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from hwq.errors import HwqError
from hwq.formats import FixedPoint, Uniq, dot, from_params, get_format
from hwq.formats.bops import accumulator_bits, bops, conv_bops, linear_bops
from hwq.formats.uniq import (fit_levels, gaussian_levels, quantile_points, round_levels, select_levels)

# docs/formats.md, "uniq": the positive Gaussian levels in units of sigma (4 decimals)
FORMATS_MD_GAUSSIAN = {
    2: [0.3186, 1.1503],
    4: [0.0784, 0.2372, 0.4023, 0.5791, 0.7764, 1.0100, 1.3180, 1.8627],
}


# ---------------------------------------------------------------------- levels


@pytest.mark.parametrize("bits", sorted(FORMATS_MD_GAUSSIAN))
def test_gaussian_levels_are_the_formats_md_tables(bits):
    positive = FORMATS_MD_GAUSSIAN[bits]
    expected = [-v for v in reversed(positive)] + positive
    np.testing.assert_allclose(gaussian_levels(bits), expected, atol=6e-5)
    # docs/formats.md indexes them i = 1 ... k at F^-1((i - 1/2) / k)
    k = 1 << bits
    np.testing.assert_allclose([statistics.NormalDist().inv_cdf((i - 0.5) / k) for i in range(1, k + 1)],
                               expected, atol=6e-5)


@pytest.mark.parametrize("bits", range(2, 9))
def test_every_bin_holds_probability_one_over_k(bits):
    k = 1 << bits
    assert quantile_points(bits) == [(2 * i + 1) / (2 * k) for i in range(k)]
    cdf = statistics.NormalDist().cdf
    np.testing.assert_allclose([cdf(v) for v in gaussian_levels(bits)], quantile_points(bits), atol=1e-12)


def test_default_4bit_table_is_formats_md_at_6_fraction_bits():
    fmt = Uniq.gaussian(4)
    assert (fmt.level_bits, fmt.frac) == (8, 6)        # 1.8627 * 2**6 = 119.2 fits 8 bits; * 2**7 does not
    positive = [round(v * 64) for v in FORMATS_MD_GAUSSIAN[4]]
    assert fmt.levels == [-v for v in reversed(positive)] + positive
    assert fmt.levels == [-119, -84, -65, -50, -37, -26, -15, -5, 5, 15, 26, 37, 50, 65, 84, 119]
    assert fmt.codebook() == [Fraction(v, 64) for v in fmt.levels]
    assert fmt.signed and fmt.lsb_exp == -6
    assert fmt == Uniq(4) == get_format("uniq", 4)
    assert from_params("uniq", fmt.params()) == fmt
    assert fmt.params() == {"bits": 4, "levels": fmt.levels, "level_bits": 8, "frac": 6}


@pytest.mark.parametrize("bits", range(2, 9))
def test_default_tables_are_distinct_and_use_the_widest_fraction_that_fits(bits):
    fmt = Uniq.gaussian(bits)
    assert fmt.level_bits == bits + 4
    real = gaussian_levels(bits)
    half = 1 << (fmt.level_bits - 1)

    def words(frac):
        return [reference_round_half_even(Fraction(v) * 2 ** frac) for v in real]

    assert fmt.levels == words(fmt.frac)
    assert max(fmt.levels) <= half - 1 and min(fmt.levels) >= -half
    assert max(words(fmt.frac + 1)) > half - 1       # one more fraction bit would saturate
    assert all(b > a for a, b in zip(fmt.levels, fmt.levels[1:]))


def reference_round_half_even(y: Fraction):
    low = math.floor(y)
    rest = y - low
    if rest != Fraction(1, 2):
        return low + (rest > Fraction(1, 2))
    return low + (low % 2)


# ---------------------------------------------------------------------- encode / decode

tables = st.integers(2, 5).flatmap(lambda bits: st.tuples(
    st.just(bits),
    st.integers(bits, 10).flatmap(lambda lb: st.tuples(
        st.just(lb),
        st.sets(st.integers(-(1 << (lb - 1)), (1 << (lb - 1)) - 1), min_size=1 << bits, max_size=1 << bits))),
    st.integers(-4, 12)))


def make_table(spec):
    bits, (level_bits, levels), frac = spec
    return Uniq(bits, levels=sorted(levels), level_bits=level_bits, frac=frac)


def reference_encode(fmt, x):
    """Nearest level by exact Fraction distance; ties to the larger level."""
    x = Fraction(x)
    values = fmt.codebook()
    best = min(abs(v - x) for v in values)
    return max(c for c, v in enumerate(values) if abs(v - x) == best)


@given(tables, st.lists(st.floats(-3000, 3000, allow_nan=False), max_size=30))
def test_encode_is_the_nearest_level_with_ties_to_the_larger(spec, xs):
    fmt = make_table(spec)
    values = fmt.codebook()
    mids = [(a + b) / 2 for a, b in zip(values, values[1:])]
    probes = [float(v) for v in values + mids] + [float(m) + d for m in mids for d in (-2 ** -20, 2 ** -20)] + xs
    probes += [float(values[0]) - 1e9, float(values[-1]) + 1e9]
    assert fmt.encode(probes).tolist() == [reference_encode(fmt, x) for x in probes]


@given(tables)
def test_codes_are_ranks_and_encode_inverts_decode(spec):
    fmt = make_table(spec)
    bits, (level_bits, levels), frac = spec
    assert fmt.levels == sorted(levels)
    assert fmt.codebook() == [Fraction(v) * Fraction(2) ** -frac for v in sorted(levels)]
    assert fmt.encode([float(v) for v in fmt.codebook()]).tolist() == list(range(1 << bits))
    assert from_params("uniq", fmt.params()) == fmt
    assert fmt.signed == (min(levels) < 0)


@given(tables, st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=40))
def test_quantize_is_monotone_and_idempotent(spec, xs):
    fmt = make_table(spec)
    xs = np.sort(np.array(xs))
    values = fmt.to_real(fmt.encode(xs))
    assert np.all(np.diff(values) >= 0)
    np.testing.assert_array_equal(fmt.to_real(fmt.encode(values)), values)


def test_golden_dot_of_fixed_point_activations_and_levels_is_exact():
    a_fmt, w_fmt = FixedPoint(8, signed=False), Uniq.gaussian(4)
    rng = np.random.default_rng(3)
    a, w = rng.integers(0, 256, 500), rng.integers(0, 16, 500)
    expected = sum(Fraction(int(x)) * Fraction(FORMATS_MD_LEVEL_WORDS[int(y)], 64) for x, y in zip(a, w))
    assert Fraction(int(dot(a_fmt, a, w_fmt, w))) * Fraction(1, 64) == expected


FORMATS_MD_LEVEL_WORDS = [-119, -84, -65, -50, -37, -26, -15, -5, 5, 15, 26, 37, 50, 65, 84, 119]


@pytest.mark.parametrize("kwargs, match", [
    (dict(bits=1), "between 2 and 8"),
    (dict(bits=9), "between 2 and 8"),
    (dict(bits=4, level_bits=3), "level word length must be between 4 and 16"),
    (dict(bits=2, levels=[1, 2, 3]), "needs 4 levels, not 3"),
    (dict(bits=2, levels=[1, 2, 2, 3]), "strictly increasing"),
    (dict(bits=2, levels=[3, 2, 1, 0]), "strictly increasing"),
    (dict(bits=2, levels=[0, 1, 2, 128], level_bits=8), "level 3 must be between -128 and 127"),
    (dict(bits=2, levels=[0, 1, 2.5, 3]), "level 2 must be an integer"),
    (dict(bits=2, levels=[False, 1, 2, 3]), "level 0 must be an integer"),
    (dict(bits=2, levels="0123"), "sequence of integers"),
    (dict(bits=2, levels=[0, 1, 2, 3], frac=65), "fraction length"),
    (dict(bits=8, level_bits=8), "round to the same 8-bit word"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(HwqError, match=match):
        Uniq(**kwargs)


def test_nan_is_rejected_before_encoding():
    with pytest.raises(HwqError, match="NaN/Inf"):
        Uniq(4).encode([0.0, float("nan")])


# ---------------------------------------------------------------------- level fitting


def reference_words(real, level_bits):
    """Largest fraction length with no saturation, then round half to even (Fractions)."""
    half = 1 << (level_bits - 1)
    for frac in range(40, -40, -1):
        words = [reference_round_half_even(Fraction(v) * 2 ** frac) for v in real]
        if -half <= min(words) and max(words) <= half - 1:
            return words, frac
    raise AssertionError("no fraction length fits")


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(7).normal(0.25, 0.8, 4001)


def test_gaussian_fit_uses_the_tensors_mean_and_std(samples):
    fit = fit_levels(samples, 4)
    mean, std = statistics.fmean(samples.tolist()), statistics.pstdev(samples.tolist())
    expected = [statistics.NormalDist(mean, std).inv_cdf(p) for p in quantile_points(4)]
    np.testing.assert_allclose(fit.real_levels, expected, rtol=1e-12, atol=1e-12)
    words, frac = reference_words(fit.real_levels, 8)
    assert (fit.format.levels, fit.format.frac, fit.format.level_bits) == (words, frac, 8)
    fq = np.array([float(fit.format.codebook()[reference_encode(fit.format, x)]) for x in samples[:300]])
    np.testing.assert_array_equal(fit.format.fake_quantize(samples[:300]), fq)
    assert fit.mse == pytest.approx(np.mean((fit.format.fake_quantize(samples) - samples) ** 2))


def test_laplace_fit_is_median_and_mean_absolute_deviation(samples):
    fit = fit_levels(samples, 3, distribution="laplace", level_bits=10)
    median = statistics.median(samples.tolist())
    b = statistics.fmean([abs(v - median) for v in samples.tolist()])
    expected = [median - b * math.copysign(1, p - 0.5) * math.log(1 - 2 * abs(p - 0.5)) for p in quantile_points(3)]
    np.testing.assert_allclose(fit.real_levels, expected, rtol=1e-12)
    assert (fit.format.levels, fit.format.frac) == reference_words(expected, 10)


@pytest.mark.parametrize("bits", [2, 4, 6])
def test_empirical_fit_is_numpys_hazen_quantile(samples, bits):
    fit = fit_levels(samples, bits, distribution="empirical")
    expected = np.quantile(samples, quantile_points(bits), method="hazen")
    np.testing.assert_allclose(fit.real_levels, expected, rtol=1e-12)
    assert (fit.format.levels, fit.format.frac) == reference_words(expected, bits + 4)


def test_select_levels_keeps_the_least_error_and_reports_every_candidate(samples):
    laplacian = np.random.default_rng(1).laplace(0, 1, 5000)
    fit, mse = select_levels(laplacian, 3)
    assert set(mse) == {"gaussian", "laplace", "empirical"}
    assert fit.mse == min(mse.values())
    for family, value in mse.items():
        fmt = fit_levels(laplacian, 3, distribution=family).format
        assert value == pytest.approx(np.mean((fmt.fake_quantize(laplacian) - laplacian) ** 2))


@pytest.mark.parametrize("call, match", [
    (lambda: fit_levels([1.0, 1.0, 1.0], 4), "constant tensor"),
    (lambda: fit_levels([1.0], 4), "need at least 2"),
    (lambda: fit_levels([1.0, float("inf")], 4), "NaN/Inf"),
    (lambda: fit_levels([0.0, 1.0], 4, distribution="cauchy"), "unknown distribution 'cauchy'"),
    (lambda: fit_levels([0.0, 1.0], 9), "between 2 and 8"),
    (lambda: fit_levels(np.r_[np.zeros(500), np.arange(1.0, 10)], 4, distribution="empirical"),
     "round to the same"),
    (lambda: round_levels([0.1, 0.2], 1), "between 2 and 16"),
])
def test_bad_fits(call, match):
    with pytest.raises(HwqError, match=match):
        call()


# ---------------------------------------------------------------------- BOPs


def test_bops_of_the_formats_md_example():
    # 3x3, 64 -> 64, (b_w, b_a) = (4, 8): n k^2 = 576 MACs per output channel, 36864 per pixel
    macs = 64 * 64 * 9
    exact = macs * (8 * 4 + 8 + 4) + macs * math.log2(576)          # 1 622 016 + 338 040.115...
    assert conv_bops(64, 64, 3, 8, 4) == pytest.approx(1960056.115, abs=1e-3)
    assert conv_bops(64, 64, 3, 8, 4) == pytest.approx(exact, rel=1e-15)
    assert round(conv_bops(64, 64, 3, 8, 4) / 1e6, 2) == 1.96            # docs/formats.md, "BOPs": "1.96 M"
    assert conv_bops(64, 64, 3, 8, 4, log2="ceil") == 36864 * (32 + 12 + 10) == 1990656
    assert conv_bops(64, 64, 3, 8, 4, output_size=56, log2="ceil") == 1990656 * 56 * 56
    assert conv_bops(64, 64, (3, 3), 8, 4, output_size=(56, 28), log2="ceil") == 1990656 * 56 * 28
    assert conv_bops(64, 64, 3, Uniq(4), FixedPoint(8)) == conv_bops(64, 64, 3, 4, 8)


def test_bops_of_a_linear_layer():
    # 512 -> 1000, a8 w4: log2(512) = 9 exactly, so both modes agree
    assert linear_bops(512, 1000, 8, 4, log2="ceil") == 512 * 1000 * (32 + 12 + 9) == 27136000
    assert linear_bops(512, 1000, 8, 4) == 27136000.0
    # 300 -> 10, a4 w2: log2(300) = 8.2288...; ceil 9
    assert linear_bops(300, 10, 4, 2, log2="ceil") == 3000 * (8 + 6 + 9)
    assert linear_bops(300, 10, 4, 2) == pytest.approx(3000 * (14 + math.log2(300)))
    assert accumulator_bits(8, 4, 576, log2="ceil") == 22
    assert accumulator_bits(8, 4, 576) == pytest.approx(12 + math.log2(576))


@given(st.integers(1, 64), st.integers(1, 16), st.integers(1, 512), st.integers(1, 512), st.integers(1, 7))
def test_bops_properties(a_bits, w_bits, n, m, k):
    exact = bops(a_bits, w_bits, n, m, k)
    ceil = bops(a_bits, w_bits, n, m, k, log2="ceil")
    macs = m * n * k * k
    assert isinstance(ceil, int)
    assert exact <= ceil < exact + macs + 1e-6 * exact
    assert ceil == macs * (a_bits * w_bits + a_bits + w_bits + math.ceil(math.log2(n * k * k) - 1e-12))
    assert linear_bops(n * k * k, m, a_bits, w_bits, log2="ceil") == ceil


@pytest.mark.parametrize("call, match", [
    (lambda: conv_bops(0, 64, 3, 8, 4), "in_channels must be between 1"),
    (lambda: conv_bops(64, 64, (3, 3, 3), 8, 4), r"kernel_size must be an int or a \(height, width\) pair"),
    (lambda: conv_bops(64, 64, 3, 8, 4, log2="round"), "unknown log2 mode 'round'"),
    (lambda: conv_bops(64, 64, 3, 8.0, 4), "activation bits must be an integer"),
    (lambda: conv_bops(64, 64, 3, 8, 4, output_size=0), "output_size must be between 1"),
])
def test_bad_bops_arguments(call, match):
    with pytest.raises(HwqError, match=match):
        call()
