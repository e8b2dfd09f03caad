"""AUSN's superposition search (``select_superposition``) against the exhaustive search it
replaces, spelled out here: every candidate superposition encoded with the golden ``Ausn.encode``
at every scale of the sweep, the least MSE kept (ties: the earlier candidate, then the earlier
scale). Also the per-channel weight calibration, outlier-heavy activations, and
``hwq.formats.metrics.sweep_scales``, which the per-channel searches use."""

import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hwq.formats import Ant, Ausn, Esb, FixedPoint, Uniq, calibrate_tensor
from hwq.formats.ausn import (SCALE_RATIOS, WEIGHT_RATIOS, select_superposition, superposition_label,
                              superpositions)
from hwq.formats.metrics import clip_sweep, quantization_error, sweep_scales


def exhaustive(x, bits, ratios=SCALE_RATIOS, max_terms=None):
    """The reference search: ``(mse, candidate, ratio, format, scale)`` of every candidate at every
    scale, one encoding each; the first of them, in that order, is the choice."""
    x = np.asarray(x, dtype=np.float64).ravel()
    signed = bool((x < 0).any())
    peak = float(np.abs(x).max()) or 1.0
    tried = []
    for i, (fields, offsets) in enumerate(superpositions(bits, signed=signed, max_terms=max_terms)):
        fmt = Ausn(bits, fields=fields, offsets=offsets, signed=signed)
        for j, scale in enumerate(peak * np.asarray(ratios) / fmt.max_value):
            tried.append((float(np.mean((fmt.fake_quantize(x, scale) - x) ** 2)), i, j, fmt, float(scale)))
    return tried


def samples(rng, kind, n):
    return {"normal": lambda: rng.standard_normal(n),
            "relu": lambda: np.maximum(rng.standard_normal(n), 0.0),
            "laplace": lambda: rng.laplace(size=n) * 10.0 ** rng.integers(-30, 30),
            "outliers": lambda: np.concatenate([rng.laplace(size=n), [60.0, -250.0]]),
            "lognormal": lambda: np.exp(rng.uniform(-40, 3, n)),
            "quarters": lambda: rng.integers(-8, 9, n) / 4.0}[kind]()


def check_against_exhaustive(x, bits, ratios=SCALE_RATIOS):
    """The search's choice is the exhaustive one, but for ties within the rounding of float64 sums
    (about ``1e-12 * mean(x**2)``), which may go to another scale or candidate; every candidate's
    reported error is that of its own best scale, as encoding measures it."""
    tried = exhaustive(x, bits, ratios)
    noise = 1e-12 * float(np.mean(np.square(x))) + 1e-300
    best = min(tried, key=lambda t: t[:3])
    choice = select_superposition(x, bits, ratios=ratios)
    mine = next(t for t in tried if (t[3], t[4]) == (choice.format, choice.scale))
    assert mine[1:3] == best[1:3] or mine[0] <= best[0] + noise, (mine[:3], best[:3])
    by_candidate = {}
    for t in tried:
        by_candidate.setdefault(t[1], []).append(t)
    for i, (fields, offsets) in enumerate(superpositions(bits, signed=choice.format.signed)):
        reported = choice.errors[superposition_label(fields, offsets)]
        own = by_candidate[i]
        first = min(own, key=lambda t: t[:3])
        at = next(t for t in own if t[3].max_value * t[4] == reported.clip_high)      # its scale
        assert at[2] == first[2] or at[0] <= first[0] + noise, (at[:3], first[:3])
        measured = quantization_error(x, at[3], at[4])
        assert (reported.clip_low, reported.clip_high, reported.clipped) == \
            (measured.clip_low, measured.clip_high, measured.clipped)
        for field in ("total", "clipping", "rounding"):
            assert getattr(reported, field) == pytest.approx(getattr(measured, field), rel=1e-9, abs=noise)
    return choice


@pytest.mark.parametrize("kind", ["normal", "relu", "laplace", "outliers", "lognormal", "quarters"])
@pytest.mark.parametrize("bits", [3, 4, 5])
def test_search_is_the_exhaustive_search(kind, bits):
    rng = np.random.default_rng([bits, len(kind)])
    check_against_exhaustive(samples(rng, kind, 400), bits)


@pytest.mark.parametrize("kind", ["normal", "relu", "outliers"])
def test_search_is_the_exhaustive_search_at_8_bits(kind):
    """Every 8-bit candidate (1170 signed, 2926 unsigned) at a few scales, the sweep's ends among
    them; a clip ratio far below any other sends thresholds below every bucket."""
    rng = np.random.default_rng(len(kind))
    check_against_exhaustive(samples(rng, kind, 300), 8, ratios=[1.0, 2 ** -0.5, 0.25, 1.4, 1e-200])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 40), st.sampled_from([3, 4, 5]), st.booleans())
def test_search_on_small_and_repeated_values(seed, n, bits, repeats):
    """Tiny tensors, repeated values and values on the rounding thresholds (exact ties)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-6, 7, n) / 2.0 if repeats else rng.standard_normal(n) * rng.uniform(1e-3, 1e3)
    check_against_exhaustive(x, bits)


def test_all_zero_and_single_values():
    for x in (np.zeros(7), np.array([0.0, 0.0, 3.0]), np.array([-2.5])):
        check_against_exhaustive(x, 4)
    choice = select_superposition(np.zeros(7), 5)
    assert choice.format == Ausn(5, fields=superpositions(5, signed=False)[0][0],
                                 offsets=superpositions(5, signed=False)[0][1], signed=False)
    assert all(e.total == 0 for e in choice.errors.values())


def test_huge_and_tiny_magnitudes_do_not_overflow():
    rng = np.random.default_rng(9)
    x = rng.laplace(size=500)
    for factor in (2.0 ** 500, 2.0 ** -500):
        scaled = select_superposition(x * factor, 5)
        plain = select_superposition(x, 5)
        assert scaled.format == plain.format and scaled.scale == plain.scale * factor
        assert scaled.errors[plain.format.label].total == pytest.approx(
            plain.errors[plain.format.label].total * factor ** 2, rel=1e-12)


def test_a_million_activations_at_8_bits_take_seconds_not_minutes():
    """The search this replaced encoded the tensor once per candidate: ~2900 unsigned 8-bit
    superpositions, minutes for 10**6 values. Now about a second (benchmarks/calibration_speed.py);
    the bound is loose for a loaded machine."""
    x = np.maximum(np.random.default_rng(0).standard_normal(1_000_000), 0.0)
    start = time.process_time()
    choice = select_superposition(x, 8)
    assert time.process_time() - start < 20
    assert len(choice.errors) == 2926


# ---------------------------------------------------------------------------------------------
# calibrate_ausn: outliers (activations), per-channel weights


@pytest.mark.parametrize("signed", [True, False])
def test_outlier_heavy_activations_beat_max_calibration(signed):
    """A Laplace bulk with a few values 100 times its spread: the range comes from the search's
    MSE, never worse than any superposition scaled to the maximum, and much better than the
    default superposition scaled to the maximum."""
    rng = np.random.default_rng(11)
    x = rng.laplace(size=20000)
    x[:4] = [150.0, -90.0, 300.0, 120.0]
    x = x if signed else np.abs(x)
    cal = calibrate_tensor("ausn", x, 6, role="activation", per_channel=True)
    assert cal.channel_axis is None and cal.format.signed == signed
    mse = np.mean((cal.format.fake_quantize(x, cal.scale[0]) - x) ** 2)
    peak = np.abs(x).max()
    for fields, offsets in superpositions(6, signed=signed):
        fmt = Ausn(6, fields=fields, offsets=offsets, signed=signed)
        assert mse <= np.mean((fmt.fake_quantize(x, peak / fmt.max_value) - x) ** 2) * (1 + 1e-9)
    default = Ausn(6, signed=signed)
    assert mse < np.mean((default.fake_quantize(x, peak / default.max_value) - x) ** 2) / 2


def test_per_channel_weights():
    rng = np.random.default_rng(12)
    w = rng.laplace(size=(6, 3, 5)) * np.array([1e-3, 0.02, 1.0, 5.0, 0.3, 0.0])[:, None, None]
    cal = calibrate_tensor("ausn", w, 5, role="weight", per_channel=True)
    fmt = cal.format
    assert cal.channel_axis == 0 and cal.scale.shape == (6,) and fmt.signed
    # the superposition: the search's on the channels divided by their maxima
    rows = w.reshape(6, -1)
    peak = np.abs(rows).max(axis=1)
    shapes = rows / np.where(peak > 0, peak, 1.0)[:, None]
    assert fmt == select_superposition(shapes, 5).format
    # each channel's scale: its own least MSE over the weight sweep (the first least)
    for row, top, scale in zip(rows, np.where(peak > 0, peak, 1.0), cal.scale):
        mses = [np.mean((fmt.fake_quantize(row, s) - row) ** 2) for s in top * WEIGHT_RATIOS / fmt.max_value]
        assert np.mean((fmt.fake_quantize(row, scale) - row) ** 2) <= min(mses) * (1 + 1e-9) + 1e-300
    # per tensor when asked, and for activations
    for kwargs in (dict(role="weight", per_channel=False), dict(role="activation", per_channel=True)):
        one = calibrate_tensor("ausn", w, 5, **kwargs)
        assert one.channel_axis is None and one.scale.shape == (1,)


# ---------------------------------------------------------------------------------------------
# sweep_scales


@pytest.mark.parametrize("fmt", [Esb(4), Esb(5, k=2, signed=False), Ausn(5), Ausn(4, signed=False),
                                 FixedPoint(4, frac=2), FixedPoint(5, signed=False), Ant(4, type="flint"),
                                 Uniq.gaussian(3)], ids=repr)
def test_sweep_scales_is_encoding(fmt):
    rng = np.random.default_rng(13)
    rows = rng.laplace(size=(5, 200)) * np.array([1e-3, 1.0, 30.0, 1e8, 0.0])[:, None]
    if not fmt.signed:
        rows = np.abs(rows)
    rows[1, :5] = 0.0
    values = fmt.to_real(fmt.codes)
    scales = clip_sweep(np.abs(rows).max(axis=1), np.abs(values).max(), 30)
    got = sweep_scales(rows, values, scales)
    expected = [[np.mean((fmt.fake_quantize(row, s) - row) ** 2) for s in row_scales]
                for row, row_scales in zip(rows, scales)]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-300)
    # one shared set of scales
    np.testing.assert_allclose(sweep_scales(rows[:2], values, scales[1]),
                               [[np.mean((fmt.fake_quantize(r, s) - r) ** 2) for s in scales[1]] for r in rows[:2]],
                               rtol=1e-9, atol=1e-300)


def test_sweep_scales_input_checks():
    from hwq.errors import HwqError
    with pytest.raises(HwqError, match="2-D"):
        sweep_scales(np.ones(3), [0.0, 1.0], [1.0])
    with pytest.raises(HwqError, match="positive"):
        sweep_scales(np.ones((2, 3)), [0.0, 1.0], [1.0, 0.0])
    with pytest.raises(HwqError, match="one row per tensor row"):
        sweep_scales(np.ones((2, 3)), [0.0, 1.0], np.ones((3, 2)))
    with pytest.raises(HwqError, match="NaN/Inf"):
        sweep_scales(np.array([[1.0, np.nan]]), [0.0, 1.0], [1.0])
    np.testing.assert_array_equal(clip_sweep([2.0, 0.0], 4.0, 4),
                                  [[0.125, 0.25, 0.375, 0.5], [0.0625, 0.125, 0.1875, 0.25]])
