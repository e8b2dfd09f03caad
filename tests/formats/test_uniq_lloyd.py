"""Lloyd-Max (least mean squared error) UNIQ tables: hwq.formats.uniq.lloyd_max, fit_lloyd_levels and
the calibrator's ``lloyd`` option (docs/formats.md, "uniq", "Lloyd-Max levels").

Expected values come from J. Max, "Quantizing for minimum distortion" (IRE Trans. Inf. Theory 6(1),
1960, Table I), from sqrt(2/pi), or are computed here: brute-force nearest-level assignments and
cell means with numpy, k-quantile tables from the standard library and numpy, stored words by
exact Fraction rounding. None comes from the code under test.
"""

import math
import re
import statistics
from fractions import Fraction

import numpy as np
import pytest

from hwq.errors import HwqError, InputError
from hwq.formats import calibrate_tensor
from hwq.formats.calibration import check_options, declared_options
from hwq.formats.uniq import fit_levels, fit_lloyd_levels, lloyd_max

# Max (1960), Table I: the positive output levels and the mean squared error of the Lloyd-Max
# quantizer of a unit Gaussian with k levels (symmetric; k = 2 is +-sqrt(2/pi) = +-0.7979)
MAX_1960 = {
    2: ([0.7980], 0.3634),
    4: ([0.4528, 1.510], 0.1175),
    8: ([0.2451, 0.7560, 1.344, 2.152], 0.03454),
    16: ([0.1284, 0.3881, 0.6568, 0.9424, 1.256, 1.618, 2.069, 2.733], 0.009497),
}


def symmetric(positive):
    return [-v for v in reversed(positive)] + list(positive)


def nearest(x, levels):
    """Index of the nearest level of every value, by brute force over all levels."""
    return np.argmin(np.abs(np.asarray(x)[:, None] - np.asarray(levels, dtype=np.float64)[None, :]), axis=1)


def brute_mse(x, levels):
    levels = np.asarray(levels, dtype=np.float64)
    return float(np.mean((x - levels[nearest(x, levels)]) ** 2))


def round_half_even(y: Fraction):
    low = math.floor(y)
    rest = y - low
    if rest != Fraction(1, 2):
        return low + (rest > Fraction(1, 2))
    return low + (low % 2)


def reference_words(real, level_bits):
    """Largest fraction length with no saturation, then round half to even (Fractions)."""
    half = 1 << (level_bits - 1)
    for frac in range(40, -40, -1):
        words = [round_half_even(Fraction(float(v)) * 2 ** frac) for v in real]
        if -half <= min(words) and max(words) <= half - 1:
            return words, frac
    raise AssertionError("no fraction length fits")


def table_values(words, frac):
    return np.array([w * 2.0 ** -frac for w in words])


def k_quantile_tables(x, bits):
    """The stored k-quantile tables of x (Gaussian, Laplace, empirical), computed independently."""
    k = 1 << bits
    p = [(i + 0.5) / k for i in range(k)]
    values = x.tolist()
    mean, std = statistics.fmean(values), statistics.pstdev(values)
    median = statistics.median(values)
    b = statistics.fmean([abs(v - median) for v in values])
    real = {
        "gaussian": [statistics.NormalDist(mean, std).inv_cdf(q) for q in p],
        "laplace": [median - b * math.copysign(1, q - 0.5) * math.log(1 - 2 * abs(q - 0.5)) for q in p],
        "empirical": np.quantile(x, p, method="hazen").tolist(),
    }
    return {family: table_values(*reference_words(levels, bits + 4)) for family, levels in real.items()}


SAMPLES = {
    "gaussian": lambda n, seed: np.random.default_rng(seed).normal(0.1, 0.7, n),
    "laplace": lambda n, seed: np.random.default_rng(seed).laplace(-0.05, 0.4, n),
}


# ---------------------------------------------------------------------- the closed cases


@pytest.fixture(scope="module")
def gaussian_quantiles():
    """The unit Gaussian as 400 000 equal-probability points: its quantiles at (j + 1/2)/n."""
    inv, n = statistics.NormalDist().inv_cdf, 400_000
    return np.array([inv((j + 0.5) / n) for j in range(n)])


@pytest.fixture(scope="module")
def unit_gaussian():
    return np.random.default_rng(1960).standard_normal(2_000_000)


@pytest.mark.parametrize("k", sorted(MAX_1960))
def test_unit_gaussian_levels_are_max_1960(gaussian_quantiles, k):
    positive, mse = MAX_1960[k]
    run = lloyd_max(gaussian_quantiles, k)
    assert run.converged
    # Max's table has 4 significant digits; the points discretise the density finely enough
    np.testing.assert_allclose(run.levels, symmetric(positive), atol=6e-4)
    assert run.mse == pytest.approx(mse, rel=1e-3)
    assert brute_mse(gaussian_quantiles, run.levels) == pytest.approx(mse, rel=1e-3)


@pytest.mark.parametrize("k", sorted(MAX_1960))
def test_random_unit_gaussian_sample_is_near_max_1960(unit_gaussian, k):
    positive, mse = MAX_1960[k]
    run = lloyd_max(unit_gaussian, k)
    assert run.converged
    # a random sample of 2e6: the error is within 1 % of Max's; the coupled outer levels wander
    # by up to about 0.02 from seed to seed
    assert run.mse == pytest.approx(mse, rel=1e-2)
    np.testing.assert_allclose(run.levels, symmetric(positive), atol=1e-2 if k < 16 else 3e-2)


def test_two_levels_are_plus_minus_sqrt_2_over_pi(unit_gaussian):
    run = lloyd_max(unit_gaussian, 2)
    np.testing.assert_allclose(run.levels, [-math.sqrt(2 / math.pi), math.sqrt(2 / math.pi)], atol=3e-3)
    assert run.mse == pytest.approx(1 - 2 / math.pi, rel=5e-3)
    # on the sample itself: the threshold is the midpoint and each level the mean of its half
    t = run.thresholds[0]
    assert t == (run.levels[0] + run.levels[1]) / 2
    assert run.levels[0] == pytest.approx(unit_gaussian[unit_gaussian < t].mean(), abs=1e-9)
    assert run.levels[1] == pytest.approx(unit_gaussian[unit_gaussian >= t].mean(), abs=1e-9)


def test_the_4_bit_table_of_unit_gaussian_weights_is_max_rounded():
    x = np.random.default_rng(5).standard_normal(1_000_000)
    fit = fit_lloyd_levels(x, 4)
    # Max's outer level 2.733 * 2**5 = 87.5 fits 8-bit words, * 2**6 = 175 does not
    assert (fit.format.level_bits, fit.format.frac) == (8, 5)
    expected = [round(v * 32) for v in symmetric(MAX_1960[16][0])]
    assert np.max(np.abs(np.array(fit.format.levels) - expected)) <= 1
    assert fit.mse == pytest.approx(MAX_1960[16][1], rel=3e-2)


# ---------------------------------------------------------------------- optimality conditions


@pytest.mark.parametrize("family", sorted(SAMPLES))
@pytest.mark.parametrize("k", [4, 8, 16])
def test_levels_are_centroids_of_their_nearest_level_cells(family, k):
    x = SAMPLES[family](100_000, 17)
    run = lloyd_max(x, k)
    assert run.converged and run.levels.shape == (k,) and run.thresholds.shape == (k - 1,)
    assert np.all(np.diff(run.levels) > 0)
    # thresholds at the midpoints of adjacent levels
    np.testing.assert_array_equal(run.thresholds, (run.levels[:-1] + run.levels[1:]) / 2)
    # every level the mean of the values nearest to it (brute force, no thresholds involved)
    cell = nearest(x, run.levels)
    for i in range(k):
        members = x[cell == i]
        assert members.size > 0
        assert run.levels[i] == pytest.approx(members.mean(), abs=1e-8 * x.std())
    assert run.mse == pytest.approx(brute_mse(x, run.levels), rel=1e-9)


@pytest.mark.parametrize("family", sorted(SAMPLES))
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_stored_lloyd_table_beats_every_k_quantile_table(family, bits):
    x = SAMPLES[family](50_000, 23)
    fit = fit_lloyd_levels(x, bits)
    # the stored words are the real levels rounded like the k-quantile ones
    words, frac = reference_words(fit.real_levels, bits + 4)
    assert (fit.format.levels, fit.format.frac, fit.format.level_bits) == (words, frac, bits + 4)
    lloyd = brute_mse(x, table_values(words, frac))
    assert fit.mse == pytest.approx(lloyd, rel=1e-9)
    for table in k_quantile_tables(x, bits).values():
        assert lloyd <= brute_mse(x, table)
    # and close to the least error of the real levels: the rounding costs little
    assert lloyd <= brute_mse(x, fit.real_levels) * 1.05


def test_iterations_only_lower_the_error_from_the_k_quantile_start():
    x = SAMPLES["laplace"](20_000, 3)
    k = 16
    start = np.quantile(x, [(i + 0.5) / k for i in range(k)], method="hazen")
    errors = [brute_mse(x, start)]
    for cap in (1, 2, 5, 20, 100, 1000):
        run = lloyd_max(x, k, max_iter=cap)
        assert run.iterations <= cap
        errors.append(brute_mse(x, run.levels))
    assert all(b <= a * (1 + 1e-12) for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0]
    first = lloyd_max(x, k, max_iter=1)
    assert first.iterations == 1 and not first.converged


def test_high_resolution_tables_reach_the_panter_dite_error():
    # 8 bits: Panter and Dite's asymptotic error sqrt(3) pi / 2 * 4**-8 = 4.15e-5 sigma^2
    x = np.random.default_rng(8).standard_normal(400_000)
    run = lloyd_max(x, 256)
    assert run.mse < 1.15 * math.sqrt(3) * math.pi / 2 * 4.0 ** -8
    assert run.mse == pytest.approx(brute_mse(x[:50_000], run.levels), rel=0.1)


def test_repeated_values_start_from_distinct_quantiles():
    x = np.r_[np.zeros(5000), np.linspace(-1, 1, 41)]
    run = lloyd_max(x, 8)
    assert np.all(np.diff(run.levels) > 0)
    cell = nearest(x, run.levels)
    for i in range(8):
        if np.any(cell == i):
            assert run.levels[i] == pytest.approx(x[cell == i].mean(), abs=1e-12)


# ---------------------------------------------------------------------- determinism


def test_deterministic_and_independent_of_order_and_shape():
    x = SAMPLES["gaussian"](30_000, 99)
    a, b = lloyd_max(x, 16), lloyd_max(x, 16)
    np.testing.assert_array_equal(a.levels, b.levels)
    shuffled = np.random.default_rng(0).permutation(x).reshape(100, 300)
    c = lloyd_max(shuffled, 16)
    np.testing.assert_array_equal(a.levels, c.levels)
    assert (a.iterations, a.start) == (c.iterations, c.start)
    assert fit_lloyd_levels(x, 4).format == fit_lloyd_levels(shuffled, 4).format


# ---------------------------------------------------------------------- the calibrator option


def layer_weights():
    """A conv layer's weights, output channels of different spreads."""
    rng = np.random.default_rng(4)
    return rng.normal(0, 1, (16, 8, 3, 3)) * np.linspace(0.02, 0.1, 16)[:, None, None, None]


def test_lloyd_option_gives_one_lloyd_max_table_per_layer():
    """Per tensor (``per_channel=False``): the layer's Lloyd-Max table, scale 1, as the paper's one
    table per layer."""
    w = layer_weights()
    got = calibrate_tensor("uniq", w, 4, role="weight", per_channel=False, options={"lloyd": 1})
    assert got.format == fit_lloyd_levels(w, 4).format
    assert got.format.level_bits == 8 and len(got.format.levels) == 16
    np.testing.assert_array_equal(got.scale, [1.0])
    assert got.channel_axis is None
    table = table_values(got.format.levels, got.format.frac)
    assert list(got.candidates) == ["lloyd"]
    assert got.candidates["lloyd"] == pytest.approx(brute_mse(w.ravel(), table), rel=1e-9)
    k_quantile = calibrate_tensor("uniq", w, 4, role="weight", per_channel=False)
    assert got.candidates["lloyd"] < k_quantile.candidates["gaussian"]
    same = calibrate_tensor("uniq", w, 4, role="weight", per_channel=False, options={"lloyd": np.int64(1)})
    assert same.format == got.format


def test_lloyd_0_is_the_papers_k_quantile_table():
    w = layer_weights()
    default = calibrate_tensor("uniq", w, 4, role="weight", per_channel=False)
    explicit = calibrate_tensor("uniq", w, 4, role="weight", per_channel=False, options={"lloyd": 0})
    assert explicit.format == default.format == fit_levels(w, 4).format
    assert list(explicit.candidates) == ["gaussian"]


@pytest.mark.parametrize("lloyd", [0, 1])
def test_per_channel_scales_share_one_table(lloyd):
    """Per channel (the default): still one table for the layer, now with a scale per output
    channel (hwq extension); the reported MSE is the brute-force one of that table and those
    scales, below the per-tensor table's (the channels' spreads differ five-fold)."""
    w = layer_weights()
    got = calibrate_tensor("uniq", w, 4, role="weight", options={"lloyd": lloyd})
    assert got.channel_axis == 0 and got.scale.shape == (16,) and (got.scale > 0).all()
    assert len(got.format.levels) == 16 and got.format.level_bits == 8
    table = table_values(got.format.levels, got.format.frac)
    mse = np.mean([brute_mse(row.ravel() / s, table) * s * s for row, s in zip(w, got.scale)])
    name = "lloyd" if lloyd else "gaussian"
    assert list(got.candidates) == [name]
    assert got.candidates[name] == pytest.approx(mse, rel=1e-9)
    per_tensor = calibrate_tensor("uniq", w, 4, role="weight", per_channel=False, options={"lloyd": lloyd})
    assert got.candidates[name] < 0.5 * per_tensor.candidates[name]
    # the scales follow the channels' spreads (0.02 to 0.1)
    assert np.corrcoef(got.scale, w.reshape(16, -1).std(axis=1))[0, 1] > 0.9


def test_the_option_is_declared_for_the_text_form_too():
    # the text form "uniq4lloyd1" reads <letters><int> suffixes into {"lloyd": 1} (hwq.quant.spec,
    # which these torch-free tests do not import); the declaration is what it checks them against
    (option,) = declared_options("uniq")
    assert option.name == "lloyd" and re.fullmatch(r"[a-z]+", option.name)
    assert check_options("uniq", {"lloyd": 1}, 4) == {"lloyd": 1}
    assert check_options("uniq", {"lloyd": np.int64(0)}, 4) == {"lloyd": 0}


# the option's values are checked by its declaration (hwq.formats.calibration): 0 or 1, an integer
@pytest.mark.parametrize("options, match", [
    ({"lloyd": 2}, "lloyd'? must be .*0.*1.*, not 2"),
    ({"lloyd": -1}, "lloyd'? must be .*, not -1"),
    ({"lloyd": True}, "lloyd'? must be"),
    ({"lloyd": "1"}, "lloyd'? must be"),
    ({"lloyd": 1.0}, "lloyd'? must be"),
    ({"lloyd": None}, "lloyd'? must be"),
    ({"loyd": 1}, "no option 'loyd'"),
])
def test_bad_option_values(options, match):
    with pytest.raises(InputError, match=match):
        calibrate_tensor("uniq", layer_weights(), 4, role="weight", options=options)


def test_activations_are_refused_with_the_option_too():
    with pytest.raises(InputError, match="weights only"):
        calibrate_tensor("uniq", np.linspace(0, 1, 100), 4, role="activation", options={"lloyd": 1})


@pytest.mark.parametrize("call, match", [
    (lambda: lloyd_max(np.arange(10.0), 1), "level count must be between 2"),
    (lambda: lloyd_max(np.arange(10.0), 2.0), "level count must be an integer"),
    (lambda: lloyd_max([0.0, 0.0, 1.0, 1.0, 2.0], 4), "at least 4 distinct values; the tensor has 3"),
    (lambda: lloyd_max([1.0, 1.0], 2), "at least 2 distinct values; the tensor has 1"),
    (lambda: lloyd_max([0.0, float("nan"), 1.0], 2), "NaN/Inf"),
    (lambda: lloyd_max(np.arange(10.0), 2, tol=-1e-3), "tolerance must be a finite number >= 0"),
    (lambda: lloyd_max(np.arange(10.0), 2, tol=float("nan")), "tolerance"),
    (lambda: lloyd_max(np.arange(10.0), 2, tol="0.1"), "tolerance"),
    (lambda: lloyd_max(np.arange(10.0), 2, max_iter=0), "max_iter must be between 1"),
    (lambda: lloyd_max(np.arange(10.0), 2, max_iter=2.5), "max_iter must be an integer"),
    (lambda: fit_lloyd_levels(np.arange(300.0), 9), "between 2 and 8"),
    (lambda: fit_lloyd_levels(np.arange(300.0), 4, level_bits=3), "level word length must be between 4"),
    (lambda: fit_lloyd_levels(np.ones(300), 4), "constant tensor"),
    (lambda: fit_lloyd_levels(np.arange(8.0), 4), "at least 16 distinct values"),
    # an outlier gets a level of its own and squeezes the fraction length: the inner levels collide
    (lambda: fit_lloyd_levels(np.r_[np.random.default_rng(0).normal(0, 1, 5000), 4000.0], 4),
     "round to the same 8-bit word"),
])
def test_bad_arguments(call, match):
    with pytest.raises(HwqError, match=match):
        call()
