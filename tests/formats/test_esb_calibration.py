"""ESB calibration: the DDA's data-driven scale (``method="mse"``), which ``calibrate_esb`` uses,
is never worse than the Gaussian scale nor than a plain clip sweep on the same grid, per channel;
outlier-heavy activations get a range by MSE, not by their maximum."""

import numpy as np
import pytest

from hwq.formats import Esb, calibrate_tensor
from hwq.formats.esb_dda import dda, gaussian_lambda
from hwq.formats.metrics import clip_sweep


def mse(fmt, x, scale):
    return float(np.mean((fmt.fake_quantize(x, scale) - x) ** 2))


@pytest.mark.parametrize("bits, k, signed", [(4, 2, True), (5, 3, False), (8, None, True), (6, 1, True)])
def test_mse_scale_is_never_worse_than_gaussian_or_a_clip_sweep(bits, k, signed):
    rng = np.random.default_rng(bits)
    rows = rng.standard_t(3, size=(5, 400)) * np.array([1e-3, 0.1, 1.0, 7.0, 0.0])[:, None]
    rows[2, :3] = [40.0, -25.0, 30.0]                         # a few outliers in one channel
    rows = rows if signed else np.abs(rows)
    choice = dda(rows, bits, k=k, signed=signed, channel_axis=0, method="mse")
    gauss = dda(rows, bits, k=k, signed=signed, channel_axis=0)
    fmt = choice.format
    assert gauss.format == fmt
    top = np.abs(fmt.to_real(fmt.codes)).max()
    sweep = clip_sweep(np.abs(rows).max(axis=1), top)
    for row, scale, gauss_scale, plain in zip(rows, choice.scale, gauss.scale, sweep):
        best = mse(fmt, row, scale)
        assert best <= mse(fmt, row, gauss_scale) * (1 + 1e-9) + 1e-300
        assert best <= min(mse(fmt, row, s) for s in plain) * (1 + 1e-9) + 1e-300
    # the reported MSE is the encoded one (up to float64 rounding of sums), summed over the channels
    assert choice.mse[fmt.k] == pytest.approx(sum(mse(fmt, r, s) for r, s in zip(rows, choice.scale)), rel=1e-9)
    assert choice.lam[fmt.k] == gaussian_lambda(fmt)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", [4, 8])
def test_outlier_heavy_activations_beat_max_calibration(signed, bits):
    """A Laplace bulk (variance 2) of 10**6 values with two or three outliers hundreds of times its
    spread: at the outliers' range the bulk rounds to about 0, while clipping an outlier ``o`` to
    ``C`` costs only ``(o - C)**2 / n``."""
    x = np.random.default_rng(bits).laplace(size=1_000_000)
    outliers = [300.0, -250.0, 280.0] if bits == 4 else [600.0, -500.0]
    x[:len(outliers)] = outliers
    x = x if signed else np.abs(x)
    cal = calibrate_tensor("esb", x, bits, role="activation", per_channel=True)
    fmt = cal.format
    assert cal.channel_axis is None and cal.scale.shape == (1,) and fmt.signed == signed
    assert fmt == Esb(bits, signed=signed)                    # the default k
    by_max = mse(fmt, x, np.abs(x).max() / fmt.max_value)
    assert mse(fmt, x, cal.scale[0]) < by_max / (3 if bits == 4 else 1.2)
    assert mse(fmt, x, cal.scale[0]) <= dda(x, bits).mse[fmt.k] * (1 + 1e-9)          # the Gaussian DDA


def test_calibrator_axes_and_k():
    rng = np.random.default_rng(3)
    w = rng.laplace(size=(6, 4, 3)) * np.array([1e-3, 0.1, 1.0, 3.0, 0.02, 0.5])[:, None, None]
    cal = calibrate_tensor("esb", w, 5, role="weight", per_channel=True)
    assert cal.channel_axis == 0 and cal.scale.shape == (6,)
    expected = dda(w, 5, channel_axis=0, method="mse")
    np.testing.assert_array_equal(cal.scale, expected.scale)
    for kwargs in (dict(role="weight", per_channel=False), dict(role="activation", per_channel=True)):
        one = calibrate_tensor("esb", w, 5, **kwargs)
        assert one.channel_axis is None and one.scale.shape == (1,)
    chosen = calibrate_tensor("esb", w, 5, role="weight", per_channel=True, options={"k": "all"})
    assert set(chosen.candidates) == {"k=1", "k=2", "k=3", "k=4"}
    assert chosen.format.k == min((1, 2, 3, 4), key=lambda k: (chosen.candidates[f"k={k}"], k))
