"""Golden ESB formats: docs/formats.md's value sets, an independent bit-string decoder, the PoT and int
limits, the encoder's rounding (ties, saturation), and the DDA (Gaussian lambda, data-driven
search, choice of k)."""

import bisect
import functools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from hwq.errors import HwqError
from hwq.formats import Ant, Esb, dot, from_params, get_format
from hwq.formats.esb_dda import dda, gaussian_lambda, gaussian_minima, gaussian_mse

# docs/formats.md, "esb": magnitudes for (b, m) = (4, 1), (4, 0), (5, 2), signed
FORMATS_MD = {
    (4, 1): {Fraction(v) for v in ("0", ".5", "1", "1.5", "2", "3", "4", "6")},
    (4, 0): {Fraction(0)} | {Fraction(2) ** i for i in range(7)},                     # 0, 1, 2, ..., 64
    (5, 2): {Fraction(j, 4) for j in range(8)} | {Fraction(v) for v in ("2", "2.5", "3", "3.5", "4", "5", "6", "7")},
}
# docs/formats.md: the reference's lambda for (b, m), two exponent bits
LAMBDA_TABLE = {(3, 0): 0.5181, (4, 1): 0.4871, (5, 2): 0.4828, (6, 3): 0.4997, (7, 4): 0.5247, (8, 5): 0.5527}
# docs/formats.md: Max's optimal uniform steps for 2**b levels (the reference's linear path), b = 1...8
MAX_STEPS = [1.5958, 0.9957, 0.5860, 0.3352, 0.1881, 0.1041, 0.0569, 0.0308]


def fields(bits, k, signed):
    """(e, m) from docs/formats.md's formula in the fraction bits m; unsigned b = the magnitude of signed b + 1."""
    b = bits if signed else bits + 1
    e = min(4, max(1, b - (k - 1) - 1))
    return e, b - e - 1


def reference_value(code, bits, k, signed, midrise=False):
    """docs/formats.md's layout ``sign | c | f`` read from the bit string, as an exact Fraction."""
    e, m = fields(bits, k, signed)
    text = format(code, f"0{bits}b")
    sign, mag = (-1 if text[0] == "1" else 1, text[1:]) if signed else (1, text)
    assert len(mag) == e + m
    c, f = int(mag[:e], 2), (int(mag[e:], 2) if m else 0)
    if midrise:
        return sign * (c * 2 ** m + f + Fraction(1, 2)) / 2 ** m
    if c == 0:
        return sign * Fraction(f, 2 ** m)
    return sign * Fraction(2) ** (c - 1) * (1 + Fraction(f, 2 ** m))


def all_formats():
    """Every distinct ESB format (k below B - 3 repeats k = B - 3), zero-level and mid-rise."""
    out = []
    for bits in range(3, 9):
        for signed in (True, False):
            B = bits - 1 if signed else bits
            out += [Esb(bits, k=k, signed=signed) for k in range(1, B + 1)]
            out.append(Esb(bits, k=B, signed=signed, midrise=True))
    return list(dict.fromkeys(out))


FORMATS = all_formats()


def values(fmt):
    return fmt.codebook()


@pytest.mark.parametrize("b, m", sorted(FORMATS_MD))
def test_formats_md_value_sets(b, m):
    fmt = Esb(b, k=m + 1)
    assert (fmt.exponent_bits, fmt.fraction_bits) == ({(4, 1): 2, (4, 0): 3, (5, 2): 2}[b, m], m)
    expected = FORMATS_MD[b, m] | {-v for v in FORMATS_MD[b, m]}
    assert set(values(fmt)) == expected
    # the unsigned format one bit narrower has the same magnitudes
    assert set(values(Esb(b - 1, k=m + 1, signed=False))) == FORMATS_MD[b, m]


@pytest.mark.parametrize("fmt", FORMATS, ids=repr)
def test_decode_matches_the_bit_string_reference(fmt):
    expected = [reference_value(c, fmt.bits, fmt.k, fmt.signed, fmt.midrise) for c in range(1 << fmt.bits)]
    assert values(fmt) == expected
    sign, significand, shift = fmt.decompose(fmt.codes)
    unit = Fraction(2) ** fmt.lsb_exp
    assert [(-1) ** int(s) * (int(i) << int(h)) * unit for s, i, h in zip(sign, significand, shift)] == expected
    # the PE's operand widths: (m+1)-bit significand (m+2 mid-rise), shift <= 2**e - 2
    assert int(significand.max()) < 2 ** (fmt.k + fmt.midrise)
    assert int(shift.max()) == (1 << fmt.exponent_bits) - 2
    B = fmt.magnitude_bits
    assert len({abs(v) for v in expected}) == 2 ** B                       # every magnitude distinct


def test_field_widths_follow_the_reference_formula():
    for bits in range(3, 9):
        for k in range(1, bits):
            fmt = Esb(bits, k=k)
            assert (fmt.exponent_bits, fmt.fraction_bits) == fields(bits, k, True)
            assert fmt.exponent_bits + fmt.fraction_bits == bits - 1
    # the exponent field is capped at 4 bits: k below B - 3 is the format of k = B - 3
    assert Esb(8, k=1) == Esb(8, k=4) and Esb(8, k=1).k == 4 and Esb(8, k=1).exponent_bits == 4
    assert Esb(8, k=1, signed=False).k == 5
    assert Esb(4).k == 2 and Esb(4).exponent_bits == 2 and Esb(4, signed=False).k == 3


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.k == 1], ids=repr)
def test_one_significant_bit_is_power_of_two(fmt):
    B = fmt.magnitude_bits
    magnitudes = {Fraction(0)} | {Fraction(2) ** i for i in range(2 ** B - 1)}         # computed here
    expected = magnitudes | ({-v for v in magnitudes} if fmt.signed else set())
    assert set(values(fmt)) == expected
    # ANT's PoT type is an independent implementation of the same value set
    assert set(values(fmt)) == set(Ant(fmt.bits, type="pot", signed=fmt.signed).codebook())


def test_power_of_two_limit_exists_up_to_four_magnitude_bits():
    assert [(b, s) for b in range(3, 9) for s in (True, False) if Esb(b, k=1, signed=s).k == 1] == \
        [(3, True), (3, False), (4, True), (4, False), (5, True)]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.k == f.magnitude_bits and not f.midrise], ids=repr)
def test_largest_k_is_uniform_int(fmt):
    B, m = fmt.magnitude_bits, fmt.fraction_bits
    assert fmt.exponent_bits == 1 and m == B - 1
    top = 2 ** B - 1
    ints = range(-top, top + 1) if fmt.signed else range(top + 1)
    assert set(values(fmt)) == {Fraction(j, 2 ** m) for j in ints}
    assert fmt.int_values.tolist() == [reference_value(c, fmt.bits, fmt.k, fmt.signed) * 2 ** m for c in fmt.codes]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.midrise], ids=repr)
def test_midrise_grid_has_no_zero(fmt):
    B, m = fmt.magnitude_bits, fmt.fraction_bits
    half = [Fraction(2 * j + 1, 2 ** (m + 1)) for j in range(2 ** B)]
    assert set(values(fmt)) == set(half) | ({-v for v in half} if fmt.signed else set())
    assert fmt.lsb_exp == -(m + 1)


def largest(fmt):
    """docs/formats.md: 2**N * (2 - 2**-m), N = 2**e - 2 (mid-rise: (2**B - 1/2) * 2**-m)."""
    e, m = fmt.exponent_bits, fmt.fraction_bits
    if fmt.midrise:
        return (2 ** fmt.magnitude_bits - Fraction(1, 2)) / 2 ** m
    return Fraction(2) ** (2 ** e - 2) * (2 - Fraction(1, 2 ** m))


def step_at(fmt, x):
    """The rounding step of the binade of |x| > 0: 2**(n - m), n = floor(log2 |x|) clipped to [0, N]."""
    x = abs(Fraction(x))
    n = 0
    while Fraction(2) ** (n + 1) <= x:
        n += 1
    return Fraction(2) ** (min(n, 2 ** fmt.exponent_bits - 2) - fmt.fraction_bits)


@functools.lru_cache(maxsize=None)
def sorted_grid(fmt):
    return sorted(set(values(fmt)))


def expected_value(fmt, x):
    """Nearest value of ``fmt`` to ``x`` by docs/formats.md's rule, in exact arithmetic."""
    x = Fraction(x)
    grid = sorted_grid(fmt)
    i = bisect.bisect_left(grid, x)
    neighbours = grid[max(i - 1, 0):i + 1]
    best = min(abs(g - x) for g in neighbours)
    near = [g for g in neighbours if abs(g - x) == best]
    if len(near) == 1:
        return near[0]
    if fmt.midrise:                                   # ties to the even level index j; 0 to +1/2 step
        return max(g for g in near if ((abs(g) * 2 ** fmt.fraction_bits - Fraction(1, 2)) % 2 == 0))
    step = step_at(fmt, x)
    return next(g for g in near if (g / step) % 2 == 0)


def probes(fmt):
    grid = np.array(sorted(float(v) for v in set(values(fmt))))
    mids = (grid[:-1] + grid[1:]) / 2
    gap = np.diff(grid) / 4
    top = float(largest(fmt))
    return np.concatenate([grid, mids, mids - gap, mids + gap, [top * 1.5, top * 4, -top * 4, 1e300, -1e300]])


@pytest.mark.parametrize("fmt", FORMATS, ids=repr)
def test_encode_is_nearest_with_the_documented_ties(fmt):
    xs = probes(fmt)
    got = fmt.codebook()
    codes = fmt.encode(xs)
    for x, code in zip(xs, codes):
        assert got[code] == expected_value(fmt, x), (fmt, x, got[code])


@pytest.mark.parametrize("fmt, ties", [
    (Esb(4, k=2), {0.25: 0, 0.75: 1, 1.25: 1, 1.75: 2, 2.5: 2, 3.5: 4, 5: 4, 7: 6, -5: -4, -0.25: 0}),
    (Esb(4, k=1), {0.5: 0, 1.5: 2, 3: 4, 6: 8, 48: 64, 100: 64, -3: -4}),
    (Esb(5, k=3), {0.125: 0, 0.375: 0.5, 1.875: 2, 2.25: 2, 2.75: 3, 4.5: 4, 5.5: 6, 7.5: 7}),
    (Esb(4, k=3), {0.125: 0, 0.375: 0.5, 1.625: 1.5, 1.875: 1.75, 9: 1.75}),
    (Esb(4, k=3, midrise=True), {0: 0.125, 0.25: 0.125, 0.5: 0.625, 0.75: 0.625, -1: -1.125, 5: 1.875}),
    (Esb(3, k=2, signed=False), {0.25: 0, 0.75: 1, 2.5: 2, 5: 4, -3: 0}),
])
def test_hand_worked_ties_and_saturation(fmt, ties):
    xs = list(ties)
    assert fmt.to_real(fmt.encode(xs)).tolist() == [ties[x] for x in xs]


@pytest.mark.parametrize("fmt", FORMATS, ids=repr)
def test_saturation_zero_and_round_trip(fmt):
    top = largest(fmt)
    assert max(values(fmt)) == top
    big = fmt.to_real(fmt.encode([float(top), float(top) * 2, 1e308, -1e308]))
    low = -top if fmt.signed else min(values(fmt))
    assert big.tolist() == [float(top), float(top), float(top), float(low)]
    assert fmt.encode(fmt.to_real(fmt.codes)).tolist() == [int(np.flatnonzero(np.array(values(fmt)) == v)[0])
                                                           for v in values(fmt)]
    if not fmt.midrise:
        assert fmt.encode([0.0, -0.0, -1e-300]).tolist() == [0, 0, 0]     # +0 only


@given(st.sampled_from(FORMATS), st.lists(st.floats(-300, 300, allow_subnormal=True), min_size=1, max_size=30))
def test_encode_matches_exact_nearest(fmt, xs):
    got = fmt.codebook()
    for x, code in zip(xs, fmt.encode(xs)):
        assert got[code] == expected_value(fmt, x)


@given(st.sampled_from(FORMATS), st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=40))
def test_quantize_is_monotone_odd_and_idempotent(fmt, xs):
    xs = np.sort(np.array(xs))
    v = fmt.to_real(fmt.encode(xs))
    assert np.all(np.diff(v) >= 0)
    np.testing.assert_array_equal(fmt.to_real(fmt.encode(v)), v)
    if fmt.signed:                                    # odd, except the mid-rise tie at 0 (to +1/2 step)
        odd = xs != 0 if fmt.midrise else np.ones(len(xs), bool)
        np.testing.assert_array_equal(fmt.to_real(fmt.encode(-xs))[odd], -v[odd])


@given(st.sampled_from(FORMATS), st.sampled_from(FORMATS), st.integers(0, 2 ** 32 - 1))
def test_golden_dot_is_exact(a_fmt, w_fmt, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << a_fmt.bits, 50)
    w = rng.integers(0, 1 << w_fmt.bits, 50)
    total = sum(a_fmt.codebook()[i] * w_fmt.codebook()[j] for i, j in zip(a, w))
    assert dot(a_fmt, a, w_fmt, w) * Fraction(2) ** (a_fmt.lsb_exp + w_fmt.lsb_exp) == total


def test_params_round_trip():
    for fmt in FORMATS:
        assert from_params("esb", fmt.params()) == fmt
    assert get_format("esb", 5, k=3) == Esb(5, k=3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bits=2), "between 3 and 8"),
    (dict(bits=9), "between 3 and 8"),
    (dict(bits=4, k=0), "k at 4 bits must be between 1 and 3"),
    (dict(bits=4, k=4), "k at 4 bits must be between 1 and 3"),
    (dict(bits=4, k=5, signed=False), "between 1 and 4"),
    (dict(bits=4, k=2.0), "must be an integer"),
    (dict(bits=4, k=2, midrise=True), "mid-rise ESB grid needs one exponent bit: k = 3"),
    (dict(bits=4, k=3, midrise=1), "midrise must be True or False"),
    (dict(bits=4, signed=None), "signed must be True or False"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(HwqError, match=match):
        Esb(**kwargs)


def test_bad_input():
    fmt = Esb(4)
    with pytest.raises(HwqError, match="NaN/Inf"):
        fmt.encode([1.0, np.nan])
    with pytest.raises(HwqError, match=r"lie in \[0, 15\]"):
        fmt.decompose([16])


# ---- DDA -------------------------------------------------------------------------------------

def numeric_mse(fmt, alpha, points=400001):
    """Gaussian MSE by brute-force quadrature of the quantizer itself (no erf, no cells)."""
    x = np.linspace(-12, 12, points)
    if not fmt.signed:
        x = x[x >= 0]
    q = fmt.fake_quantize(x, alpha)
    density = np.exp(-x * x / 2) / math.sqrt(2 * math.pi) * (1 if fmt.signed else 2)
    return np.trapezoid((x - q) ** 2 * density, x)


@pytest.mark.parametrize("fmt, alpha", [(Esb(3, k=1), 0.5), (Esb(4, k=2), 0.49), (Esb(6, k=2), 0.07),
                                        (Esb(5, k=4, midrise=True), 1.5), (Esb(4, k=2, signed=False), 0.3)])
def test_gaussian_mse_is_the_exact_expectation(fmt, alpha):
    assert gaussian_mse(fmt, alpha) == pytest.approx(numeric_mse(fmt, alpha), rel=1e-5)


@pytest.mark.parametrize("b, m", sorted(LAMBDA_TABLE))
def test_gaussian_lambda_reproduces_the_reference_table(b, m):
    fmt = Esb(b, k=m + 1)
    assert fmt.exponent_bits == 2
    assert gaussian_lambda(fmt) == pytest.approx(LAMBDA_TABLE[b, m], abs=1e-4)
    # unsigned formats use the half-normal: the same lambda as the signed format one bit wider
    if b > 3:
        assert gaussian_lambda(Esb(b - 1, k=m + 1, signed=False)) == pytest.approx(gaussian_lambda(fmt), rel=1e-6)


@pytest.mark.parametrize("b, m, tabulated, global_lambda", [(4, 0, 0.0381, 0.0655), (5, 1, 0.0391, 0.0766)])
def test_some_tabulated_three_exponent_bit_lambdas_are_local_minima(b, m, tabulated, global_lambda):
    fmt = Esb(b, k=m + 1)
    assert fmt.exponent_bits == 3
    minima = gaussian_minima(fmt)
    local = min(minima, key=lambda p: abs(p[0] - tabulated))
    assert local[0] == pytest.approx(tabulated, abs=1e-4)
    best = gaussian_lambda(fmt)
    assert best == pytest.approx(global_lambda, abs=1e-4)
    assert gaussian_mse(fmt, best) < gaussian_mse(fmt, tabulated)
    # and it is a local minimum: both neighbours are worse
    assert gaussian_mse(fmt, local[0] * 0.99) > local[1] < gaussian_mse(fmt, local[0] * 1.01)


@pytest.mark.parametrize("b, m, tabulated", [(6, 2, 0.0406), (7, 3, 0.0409), (8, 4, 0.0412)])
def test_other_three_exponent_bit_lambdas_are_global(b, m, tabulated):
    assert gaussian_lambda(Esb(b, k=m + 1)) == pytest.approx(tabulated, abs=1e-4)


# the reference's alpha_list (autoqnn/quantizers/esb.py) also tabulates (b, m) with one exponent bit,
# entries its code never reads (it takes the mid-rise path there): they are the zero-level grid's
REFERENCE_ONE_EXPONENT_BIT = {(3, 1): 1.3015, (4, 2): 1.4136, (5, 3): 1.5460, (6, 4): 1.6878, (7, 5): 1.8324,
                              (8, 6): 1.9757}


@pytest.mark.parametrize("b, m", sorted(REFERENCE_ONE_EXPONENT_BIT))
def test_zero_level_int_grid_lambda_is_the_reference_table_entry(b, m):
    fmt = Esb(b, k=m + 1)
    assert fmt.exponent_bits == 1 and not fmt.midrise
    assert gaussian_lambda(fmt) == pytest.approx(REFERENCE_ONE_EXPONENT_BIT[b, m], abs=1e-4)


@pytest.mark.parametrize("bits", range(3, 9))
def test_midrise_lambda_is_max_uniform_step(bits):
    fmt = Esb(bits, k=bits - 1, midrise=True)
    assert gaussian_lambda(fmt) * 2.0 ** -fmt.fraction_bits == pytest.approx(MAX_STEPS[bits - 1], abs=1e-4)


def gaussian_rows(rng, channels=4, n=20000, sigma=(0.5, 1.0, 2.0, 4.0)):
    return rng.standard_normal((channels, n)) * np.array(sigma)[:, None]


def test_dda_gaussian_scale_per_channel():
    rng = np.random.default_rng(0)
    x = gaussian_rows(rng)
    choice = dda(x, 4, k=2, channel_axis=0)
    assert choice.format == Esb(4, k=2) and choice.mse.keys() == {2}
    rms = np.sqrt(np.mean(x ** 2, axis=1))
    np.testing.assert_allclose(choice.scale, gaussian_lambda(Esb(4, k=2)) * rms, rtol=1e-12)
    assert choice.mean.tolist() == [0.0] * 4
    # the Gaussian model predicts the error: per channel mse / sigma**2 near gaussian_mse at lambda
    errors = np.mean((choice.fake_quantize(x) - x) ** 2, axis=1) / rms ** 2
    np.testing.assert_allclose(errors, gaussian_mse(Esb(4, k=2), choice.lam[2]), rtol=0.05)
    assert choice.mse[2] == pytest.approx(np.sum(errors * rms ** 2), rel=1e-12)
    # codes on the other axis layout: channel_axis=1
    t = dda(x.T, 4, k=2, channel_axis=1)
    np.testing.assert_allclose(t.scale, choice.scale)
    np.testing.assert_array_equal(t.quantize(x.T), choice.quantize(x).T)


def test_dda_mse_search_is_never_worse():
    rng = np.random.default_rng(1)
    x = rng.laplace(size=(3, 5000))
    gauss = dda(x, 4, k=2, channel_axis=0)
    searched = dda(x, 4, k=2, channel_axis=0, method="mse")
    assert searched.mse[2] < gauss.mse[2]
    for row, scale in zip(x, searched.scale):
        best = np.mean((Esb(4, k=2).fake_quantize(row, scale) - row) ** 2)
        for t in (0.5, 0.9, 1.1, 2.0):
            assert best <= np.mean((Esb(4, k=2).fake_quantize(row, scale * t) - row) ** 2) + 1e-15


def test_dda_mean_shift_is_recorded_and_helps():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(10000) * 0.5 + 3.0
    plain = dda(x, 5, k=3)
    shifted = dda(x, 5, k=3, mean_shift=True)
    assert shifted.mean[0] == pytest.approx(np.mean(x))
    assert shifted.scale[0] == pytest.approx(gaussian_lambda(Esb(5, k=3)) * np.std(x))
    assert shifted.mse[3] < plain.mse[3] / 4
    np.testing.assert_allclose(shifted.to_real(shifted.quantize(x)),
                               Esb(5, k=3).fake_quantize(x - shifted.mean[0], shifted.scale[0]) + shifted.mean[0])


def test_dda_chooses_k():
    rng = np.random.default_rng(3)
    uniform = dda(rng.uniform(-1, 1, 20000), 4, k="all", method="mse")
    assert uniform.format.k == 3 and sorted(uniform.mse) == [1, 2, 3]      # int levels for uniform data
    heavy = dda(rng.standard_t(2, 20000), 5, k="all", method="mse")
    assert heavy.format.k < 4                                                 # wide-range data: fewer k
    for choice in (uniform, heavy):
        assert choice.format.k == min(choice.mse, key=choice.mse.get)
    assert sorted(dda(rng.standard_normal(100), 8, k=[1, 2, 4, 6]).mse) == [4, 6]     # k < 4 is k = 4


def test_dda_unsigned_and_errors():
    rng = np.random.default_rng(4)
    relu = np.maximum(rng.standard_normal(20000), 0)
    choice = dda(relu, 4, k=3)
    assert choice.format == Esb(4, k=3, signed=False)
    assert choice.scale[0] == pytest.approx(gaussian_lambda(Esb(4, k=3, signed=False)) * np.sqrt(np.mean(relu ** 2)))
    zeros = dda(np.zeros(5), 4)                            # any scale is exact: a positive one
    assert zeros.scale[0] > 0 and zeros.quantize(np.zeros(5)).tolist() == [0] * 5
    with pytest.raises(HwqError, match="empty"):
        dda([], 4)
    with pytest.raises(HwqError, match="NaN/Inf"):
        dda([1.0, np.inf], 4)
    with pytest.raises(HwqError, match="negative"):
        dda([-1.0, 1.0], 4, signed=False)
    with pytest.raises(HwqError, match="unknown DDA method"):
        dda([1.0], 4, method="max")
    with pytest.raises(HwqError, match="'all'"):
        dda([1.0], 4, k="some")
    with pytest.raises(HwqError, match="between 3 and 8"):
        dda([1.0], 9)
    with pytest.raises(HwqError, match="Esb format"):
        gaussian_mse(Ant(4), 1.0)
    with pytest.raises(HwqError, match="alpha"):
        gaussian_mse(Esb(4), 0.0)
