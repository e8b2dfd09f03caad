"""UNIQ with per-channel scales (hwq extension): one level table per layer, fitted to the
channel-normalised weights, and a scale per output channel searched against it
(``hwq.formats.uniq.fit_channel_table``, ``search_scales``); colliding stored words spread apart
(``round_levels(..., spread=True)``).

Expected values are computed here: brute-force nearest-level errors with numpy over explicit
scale grids, words by hand. None comes from the code under test.
"""

import numpy as np
import pytest

from hwq.errors import HwqError, InputError
from hwq.formats import Uniq, calibrate_tensor, uniq
from hwq.formats.uniq import fit_channel_table, round_levels, search_scales


def table_of(fmt):
    return np.array([w * 2.0 ** -fmt.frac for w in fmt.levels])


def brute_row_mse(row, table, scale):
    """Mean squared error of ``row`` at ``scale``: every value to its nearest level, by brute force
    (a tie has the same error either way)."""
    q = table[np.argmin(np.abs(row[:, None] / scale - table[None, :]), axis=1)] * scale
    return float(np.mean((q - row) ** 2))


def grid_baseline(rows, table):
    """Per row, the least error over the clips ``max|w| * i / 100`` (``i = 1 ... 100``) put at the
    table's largest magnitude and over the scales ``rms * 2**(j / 16)`` (``j = -32 ... 48``):
    a plain search the calibrator must at least match."""
    top = np.abs(table).max()
    best = []
    for row in rows:
        peak, rms = np.abs(row).max(), np.sqrt(np.mean(row ** 2))
        scales = [peak * i / 100 / top for i in range(1, 101)] + [rms * 2 ** (j / 16) for j in range(-32, 49)]
        best.append(min(brute_row_mse(row, table, s) for s in scales))
    return np.array(best)


def layer(kind, seed=0):
    """Weights ``(out, ...)`` with per-channel spreads a hundredfold apart, as BatchNorm folding gives."""
    rng = np.random.default_rng(seed)
    if kind == "conv":                                      # 3x3 convolution, 24 x 8 x 3 x 3
        w = rng.laplace(size=(24, 8, 3, 3))
    elif kind == "depthwise":                               # 9 weights per channel: point by point
        w = rng.standard_normal((40, 1, 3, 3))
    elif kind == "linear":                                  # long rows with a few outliers
        w = rng.standard_normal((12, 700))
        w[rng.random(w.shape) < 0.003] *= 12
    else:
        raise ValueError(kind)
    return w * np.geomspace(0.001, 0.1, len(w)).reshape(-1, *([1] * (w.ndim - 1)))


# ---------------------------------------------------------------------- stored words


def test_spread_moves_colliding_words_apart_by_one_lsb():
    # 4-bit words at frac 2 (1.0 needs 3 integer bits): 0, 1e-4 and 2e-4 all round to 0
    with pytest.raises(InputError, match="round to the same 4-bit word"):
        round_levels([-1.0, 0.0, 1e-4, 2e-4, 1.0], 4)
    assert round_levels([-1.0, 0.0, 1e-4, 2e-4, 1.0], 4, spread=True) == ([-4, 0, 1, 2, 4], 2)
    # the top saturates: the words move down from it (3-bit words, frac 1: 0.9, 0.95, 1.0 -> 2, 2, 2)
    assert round_levels([0.9, 0.95, 1.0], 3, spread=True) == ([1, 2, 3], 1)
    # distinct words are left alone
    assert round_levels([-1.0, 0.5, 1.0], 4, spread=True) == round_levels([-1.0, 0.5, 1.0], 4)
    # as many levels as words, all rounding to 4 (frac 3): every word used
    assert round_levels(np.linspace(-1, 1, 16) * 1e-3 + 0.5, 4, spread=True) == (list(range(-8, 8)), 3)


# ---------------------------------------------------------------------- the scale search


@pytest.mark.parametrize("path", ["histogram", "exact"])
@pytest.mark.parametrize("kind", ["conv", "depthwise", "linear"])
@pytest.mark.parametrize("bits", [3, 4, 8])
def test_scales_at_least_match_a_plain_grid_search(monkeypatch, kind, bits, path):
    """Against one table, each channel's scale is at least as good as the best of a plain grid
    (clips of the channel's peak, scales of its root mean square), on both of the search's paths;
    the reported errors are the brute-force ones."""
    monkeypatch.setattr(uniq, "_EXACT_COST", 1e9 if path == "exact" else 0)
    w = layer(kind, bits)
    fmt = Uniq.gaussian(bits)
    scale, mse = search_scales(w, fmt)
    table = table_of(fmt)
    rows = w.reshape(len(w), -1)
    assert scale.shape == (len(w),) and (scale > 0).all()
    for row, s, reported in zip(rows, scale, mse):
        assert reported == pytest.approx(brute_row_mse(row, table, s), rel=1e-9)
    assert mse.mean() <= grid_baseline(rows, table).mean() * (1 + 1e-9)


def test_histogram_errors_are_the_brute_force_ones():
    """The histogram's suffix sums give each grid point's squared error as rounding every value
    does, for an asymmetric table (no level at zero, unequal sides) and values on its midpoints."""
    rng = np.random.default_rng(3)
    values = np.array([-2.5, -1.0, -0.25, 0.125, 0.5, 1.5, 3.0])
    rows = rng.standard_normal((7, 300))
    rows[0, :6] = (values[:-1] + values[1:]) / 2                 # ties at multiplier 1, unit 1
    unit = np.r_[1.0, np.sqrt(np.mean(rows[1:] ** 2, axis=1))]
    mults = 2.0 ** (np.arange(-20, 21) / 8)
    brute = [[brute_row_mse(row, values, u * m) * len(row) for m in mults] for row, u in zip(rows, unit)]
    np.testing.assert_allclose(uniq._histogram_sse(rows, unit, mults, values), brute, rtol=1e-9)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_exact_scales_are_the_global_least_squares_optimum(bits):
    """Short rows: the exact search's scale is at least as good as every scale of a grid 100 times
    finer than the calibrator's (needle-sharp minima: 9 weights on 256 levels), and least squares
    cannot improve it."""
    rng = np.random.default_rng(bits)
    rows = rng.laplace(size=(6, 9))
    rows[0, 0] = 0.0
    rows[1] = np.abs(rows[1])                                    # one sign only
    values = table_of(Uniq.gaussian(bits)) + 0.01                # asymmetric, no zero level
    scale = uniq._exact_scales(rows, values)
    for row, s in zip(rows, scale):
        rms = np.sqrt(np.mean(row ** 2))
        fine = min(brute_row_mse(row, values, rms * 2 ** (j / 2048)) for j in range(-4096, 8192))
        assert brute_row_mse(row, values, s) <= fine * (1 + 1e-9)
    refined, _ = uniq.least_squares_scales(rows, values, scale)
    np.testing.assert_allclose(refined, scale, rtol=1e-12)


def test_an_all_zero_channel_gets_the_least_scale_of_the_others():
    w = layer("conv")
    w[5] = 0.0
    fmt = Uniq.gaussian(4)
    scale, mse = search_scales(w, fmt)
    others = np.delete(scale, 5)
    assert scale[5] == others.min()
    assert mse[5] == pytest.approx(brute_row_mse(w[5].ravel(), table_of(fmt), scale[5]), rel=1e-9)


# ---------------------------------------------------------------------- one table, per-channel scales


@pytest.mark.parametrize("lloyd", [0, 1])
@pytest.mark.parametrize("bits", [4, 8])
def test_calibrator_one_table_per_layer_a_scale_per_channel(lloyd, bits):
    """The calibrator's table is the layer's one table; the MSE it reports is the brute-force one of
    that table with its scales, far below the per-tensor table's when spreads differ a hundredfold."""
    w = layer("conv", 1)
    got = calibrate_tensor("uniq", w, bits, role="weight", per_channel=True, options={"lloyd": lloyd})
    assert isinstance(got.format, Uniq) and got.format.level_bits == bits + 4
    assert got.channel_axis == 0 and got.scale.shape == (len(w),)
    table = table_of(got.format)
    mse = np.mean([brute_row_mse(row.ravel(), table, s) for row, s in zip(w, got.scale)])
    (name, reported), = got.candidates.items()
    assert name == ("lloyd" if lloyd else "gaussian")
    assert reported == pytest.approx(mse, rel=1e-9)
    per_tensor = calibrate_tensor("uniq", w, bits, role="weight", per_channel=False, options={"lloyd": lloyd})
    assert per_tensor.channel_axis is None and per_tensor.scale.tolist() == [1.0]
    assert reported < (0.7 if lloyd else 0.1) * per_tensor.candidates[name]


def test_k_quantile_table_is_the_gaussian_of_the_normalised_weights():
    """k-quantile (the paper's table): the Gaussian fitted to the weights divided by their channel's
    root mean square, its quantiles stored at the widest fraction length."""
    w = layer("linear", 2)
    fmt, _, _ = fit_channel_table(w, 4)
    rows = w.reshape(len(w), -1)
    y = (rows / np.sqrt(np.mean(rows ** 2, axis=1))[:, None]).ravel()
    expected, _ = uniq.round_levels(uniq.fit_distribution(y, "gaussian").quantile(uniq.quantile_points(4)), 8)
    assert fmt.levels == expected


def test_lloyd_table_is_lloyd_max_of_the_normalised_weights():
    """Lloyd-Max: the least-error levels of the weights divided by their channel's root mean square
    (all channels together), stored like the k-quantile table."""
    w = layer("conv", 4)
    fmt, _, _ = fit_channel_table(w, 4, lloyd=True)
    rows = w.reshape(len(w), -1)
    y = (rows / np.sqrt(np.mean(rows ** 2, axis=1))[:, None]).ravel()
    expected, _ = uniq.round_levels(uniq.lloyd_max(y, 16).levels, 8)
    assert fmt.levels == expected


def test_lloyd_at_8_bits_keeps_the_pes_word_length():
    """256 Lloyd-Max levels of a small heavy-tailed layer crowd around zero closer than one LSB of a
    12-bit word: fitted per tensor that is an error (more level_bits needed), the calibrator spreads
    the words instead and keeps 12 bits."""
    rng = np.random.default_rng(5)
    w = rng.laplace(size=(32, 3, 3, 3)) * np.geomspace(0.01, 1, 32)[:, None, None, None]
    with pytest.raises(HwqError, match="round to the same 12-bit word"):
        uniq.fit_lloyd_levels(w, 8)
    got = calibrate_tensor("uniq", w, 8, role="weight", options={"lloyd": 1})
    assert got.format.level_bits == 12 and len(set(got.format.levels)) == 256


@pytest.mark.parametrize("call, match", [
    (lambda: fit_channel_table(np.arange(1.0, 10.0), 4), "at least 2 dimensions"),
    (lambda: fit_channel_table(np.zeros((4, 9)), 4), "all-zero tensor"),
    (lambda: fit_channel_table(np.ones((4, 9)) * [[1.0], [np.nan], [1.0], [1.0]], 4), "NaN/Inf"),
    (lambda: fit_channel_table(np.ones((4, 9)), 9), "between 2 and 8"),
])
def test_bad_channel_tables(call, match):
    with pytest.raises(HwqError, match=match):
        call()


def test_a_vector_gets_one_table_and_scale_1():
    """Per-channel scales need a channel axis and something along it: a 1-D tensor is calibrated
    per tensor, as the paper does."""
    x = np.random.default_rng(6).standard_normal(200)
    got = calibrate_tensor("uniq", x, 4, role="weight", per_channel=True)
    assert got.channel_axis is None and got.scale.tolist() == [1.0]
