"""fxp calibration: the fraction-length search (how far it follows outliers), the vectorized
per-row helpers against the scalar definitions, and per-channel fraction lengths for weights as
exact power-of-two scales."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hwq.errors import HwqError
from hwq.formats import FixedPoint, calibrate_tensor
from hwq.formats.fxp import (FRAC_RANGE, _fake_quantize_rows, _frac_for_max_rows, _frac_for_mse_rows, frac_for_max,
                             frac_for_mse)
from hwq.formats.rounding import ROUNDING_MODES


def mse(fmt, x, scale=1.0):
    return float(np.mean((fmt.fake_quantize(x, scale) - x) ** 2))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(2, 12), st.booleans(), st.sampled_from(ROUNDING_MODES))
def test_row_helpers_are_the_scalar_definitions(seed, bits, signed, rounding):
    rng = np.random.default_rng(seed)
    rows = rng.laplace(size=(6, 9)) * 10.0 ** rng.integers(-6, 6, (6, 1))
    rows[0] = 0.0
    rows[1] = -2.0 ** rng.integers(-4, 4)                 # a power of two: the most negative code
    rows[2, 0] = (2 ** (bits - 1) - 0.5) * 2.0 ** -3       # rounds into saturation at frac 3
    if not signed:
        rows = np.abs(rows)
    fracs = _frac_for_max_rows(rows, bits, signed, rounding)
    assert fracs.tolist() == [frac_for_max(row, bits, signed=signed, rounding=rounding) for row in rows]
    np.testing.assert_array_equal(
        _fake_quantize_rows(rows, bits, fracs + 2, signed, rounding),
        [FixedPoint(bits, frac=int(f) + 2, signed=signed, rounding=rounding).fake_quantize(row)
         for row, f in zip(rows, fracs)])


def exhaustive_frac(x, bits, signed=True, span=24):
    """Least MSE over every fraction length from frac_for_max on (ties: the smaller)."""
    start = frac_for_max(x, bits, signed=signed)
    errors = {f: mse(FixedPoint(bits, frac=f, signed=signed), x)
              for f in range(start, min(start + span, FRAC_RANGE[1]) + 1)}
    return min(errors, key=lambda f: (errors[f], f)), start


def outlier_heavy(bits, signed):
    """A Laplace bulk (variance 2) of 10**6 values with two or three outliers hundreds of times its
    spread. At the outliers' range the bulk rounds to about 0 (an MSE near its variance); clipping
    an outlier ``o`` to ``C`` costs only ``(o - C)**2 / n``, so the best range is the bulk's."""
    x = np.random.default_rng(bits).laplace(size=1_000_000)
    outliers = [300.0, -250.0, 280.0] if bits == 4 else [600.0, -500.0]
    x[:len(outliers)] = outliers
    return x if signed else np.abs(x)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", [4, 8])
def test_search_follows_the_error_past_a_few_outliers(signed, bits):
    """The search finds the best fraction length, at 4 bits far beyond frac_for_max + 4 (the old
    fixed window)."""
    x = outlier_heavy(bits, signed)
    frac, errors = frac_for_mse(x, bits, signed=signed)
    best, start = exhaustive_frac(x, bits, signed)
    assert frac == best and frac > start + (4 if bits == 4 else 1)
    assert errors[frac] < errors[start] / 3
    assert set(errors) == set(range(start, max(errors) + 1)) and max(errors) >= frac + 4


def test_search_keeps_the_old_window_when_the_best_is_inside_it():
    x = np.random.default_rng(3).standard_normal(20000)
    frac, errors = frac_for_mse(x, 8)
    start = frac_for_max(x, 8)
    assert sorted(errors) == list(range(start, frac + 5)) and len(errors) >= 5
    assert frac == exhaustive_frac(x, 8)[0]
    with pytest.raises(HwqError, match="search"):
        frac_for_mse(x, 8, search=0)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", [4, 8])
def test_outlier_heavy_activations_beat_max_calibration(signed, bits):
    x = outlier_heavy(bits, signed)
    cal = calibrate_tensor("fxp", x, bits, role="activation")
    assert cal.channel_axis is None and cal.scale.tolist() == [1.0] and cal.format.signed == signed
    by_max = FixedPoint(bits, frac=frac_for_max(x, bits, signed=signed), signed=signed)
    assert mse(cal.format, x) < mse(by_max, x) / 3


def folded_depthwise(rng, channels=24):
    """Depthwise 3x3 weights after folding a BatchNorm: per-channel spreads over four decades."""
    spread = 10.0 ** rng.uniform(-4, 0, channels)
    spread[0] = 1.0
    return rng.standard_normal((channels, 1, 3, 3)) * spread[:, None, None, None]


@pytest.mark.parametrize("bits", [4, 8])
def test_per_channel_fraction_lengths(bits):
    rng = np.random.default_rng(bits)
    w = folded_depthwise(rng)
    w[5] = 0.0                                            # a dead channel
    tensor = calibrate_tensor("fxp", w, bits, role="weight", per_channel=False)
    cal = calibrate_tensor("fxp", w, bits, role="weight", per_channel=True)
    assert tensor.channel_axis is None and cal.channel_axis == 0 and cal.scale.shape == (24,)
    rows = w.reshape(24, -1)
    # one fraction length per channel, each the search's on that channel alone, as a power of two
    mantissa, exponent = np.frexp(cal.scale)
    assert (mantissa == 0.5).all() and cal.scale.max() == 1.0
    fracs = cal.format.frac + (1 - exponent)              # scale = 2**(F - f_c)
    for c, row in enumerate(rows):
        assert fracs[c] == (cal.format.frac if c == 5 else frac_for_mse(row, bits)[0])
    assert cal.format.frac == min(f for c, f in enumerate(fracs) if c != 5) and cal.scale[5] == 1.0
    # the small channels that collapse at the tensor's fraction length survive per channel
    fq = lambda q: np.stack([q.format.fake_quantize(r, s) for r, s in zip(rows, np.broadcast_to(q.scale, 24))])
    dead_tensor = [c for c in range(24) if c != 5 and not fq(tensor)[c].any()]
    assert dead_tensor and not [c for c in range(24) if c != 5 and not fq(cal)[c].any()]
    per_channel = np.mean((fq(cal) - rows) ** 2, axis=1)
    per_tensor = np.mean((fq(tensor) - rows) ** 2, axis=1)
    assert (per_channel <= per_tensor * (1 + 1e-12)).all() and per_channel.sum() < per_tensor.sum()
    # the candidates name each chosen fraction length with its channels
    assert sum(int(k.split("(")[1].split()[0]) for k in cal.candidates) == 24


def test_per_channel_applies_to_weights_only():
    w = folded_depthwise(np.random.default_rng(1))
    for kwargs in (dict(role="activation", per_channel=True), dict(role="weight", per_channel=False)):
        cal = calibrate_tensor("fxp", w, 8, **kwargs)
        assert cal.channel_axis is None and cal.scale.tolist() == [1.0]
        assert cal.format.frac == frac_for_mse(w, 8)[0]
    zero = calibrate_tensor("fxp", np.zeros((3, 4)), 8, role="weight", per_channel=True)
    assert zero.format.frac == 0 and zero.scale.tolist() == [1.0, 1.0, 1.0]


def test_row_search_checks():
    with pytest.raises(HwqError, match="negative"):
        _frac_for_mse_rows(np.array([[-1.0, 1.0]]), 8, signed=False)
    with pytest.raises(HwqError, match="empty"):
        _frac_for_mse_rows(np.zeros((0, 3)), 8)
    with pytest.raises(HwqError, match="rounding"):
        _frac_for_mse_rows(np.ones((1, 3)), 8, rounding="stochastic")


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_search_errors_are_the_encoded_ones_in_every_rounding_mode(rounding):
    x = np.random.default_rng(8).laplace(size=3000)
    x[:2] = [40.0, -25.0]
    frac, errors = frac_for_mse(x, 5, rounding=rounding)
    for f, err in errors.items():
        assert err == pytest.approx(mse(FixedPoint(5, frac=f, rounding=rounding), x), rel=1e-9)
    assert frac == min(errors, key=lambda f: (errors[f], f))
