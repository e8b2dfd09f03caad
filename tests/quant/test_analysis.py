"""hwq.quant.analysis: per-layer SQNR / clipping / rounding / BOPs against numbers computed here
with numpy on the same tensors, and what the histograms draw (channel, levels, clipping range,
axes)."""

import math

import matplotlib
import numpy as np
import pytest
import torch

from hwq.formats import FixedPoint
from hwq.quant import TensorQuantizer, parse_spec
from hwq.quant.analysis import (
    LOG_COUNT_RATIO, MAX_DRAWN_LEVELS, analyse, draw_histograms, histogram_bins, histogram_panels, model_bops,
    plot_histograms, sqnr_db, tensor_errors)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def test_sqnr_by_hand():
    assert sqnr_db([1.0, 2.0], [1.0, 1.0]) == pytest.approx(10 * math.log10(5))
    assert sqnr_db([3.0, -4.0], [3.0, -4.0]) == math.inf


def test_tensor_errors_by_hand():
    # fxp4 with frac 0 at scale 0.5: levels -4.0, -3.5, ..., 3.5
    q = TensorQuantizer(FixedPoint(4, frac=0, signed=True), np.array([0.5]), None, parse_spec("fxp4"))
    x = np.array([-5.0, -1.26, 0.3, 3.6, 10.0])
    # Q(x) = -4 (clipped), -1.5, 0.5, 3.5 (clipped), 3.5 (clipped)
    errors = tensor_errors(q, x)
    assert errors["clipping"] == pytest.approx((1.0 ** 2 + 0.1 ** 2 + 6.5 ** 2) / 5)
    assert errors["rounding"] == pytest.approx((0.24 ** 2 + 0.2 ** 2) / 5)
    assert errors["total"] == pytest.approx((1.0 + 0.24 ** 2 + 0.2 ** 2 + 0.1 ** 2 + 6.5 ** 2) / 5)
    assert errors["clipped_fraction"] == pytest.approx(3 / 5)
    assert errors["sqnr_db"] == pytest.approx(10 * math.log10(np.sum(x ** 2) / (5 * errors["total"])))


def test_per_channel_errors_by_hand():
    # two channels (axis 0) at scales 1 and 0.25: levels -8..7 and -2..1.75
    q = TensorQuantizer(FixedPoint(4, frac=0, signed=True), np.array([1.0, 0.25]), 0, parse_spec("fxp4"))
    x = np.array([[9.0, 0.4], [2.0, -0.3]])
    # channel 0: 9 -> 7 (clip 2), 0.4 -> 0 (round 0.4); channel 1: 2 -> 1.75 (clip 0.25), -0.3 -> -0.25
    errors = tensor_errors(q, x)
    assert errors["clipping"] == pytest.approx(((2.0 ** 2) / 2 + (0.25 ** 2) / 2) / 2)
    assert errors["rounding"] == pytest.approx(((0.4 ** 2) / 2 + (0.05 ** 2) / 2) / 2)
    assert errors["clipped_fraction"] == pytest.approx(0.5)


def _layer_inputs(qmodel, x):
    """Each quantized layer's input in the float model, recorded here with hooks of our own."""
    seen = {}
    hooks = [qmodel.float_module.get_submodule(name).register_forward_pre_hook(
        lambda module, args, name=name: seen.__setitem__(name, args[0].double().numpy()))
        for name in qmodel.layers]
    with torch.no_grad():
        qmodel.float_module(x)
    for hook in hooks:
        hook.remove()
    return seen


def _expected_errors(quantizer, x, channel_axis):
    """Clipping / rounding / SQNR with numpy: per channel against that channel's least/largest level."""
    fmt = quantizer.format
    levels = np.unique(fmt.to_real(fmt.codes))
    fake = quantizer.fake_quantize(x)
    if quantizer.channel_axis is None:
        pairs = [(x.ravel(), fake.ravel(), quantizer.scale[0])]
    else:
        pairs = list(zip(np.moveaxis(x, channel_axis, 0), np.moveaxis(fake, channel_axis, 0), quantizer.scale))
    clipping, rounding = [], []
    for values, quantized, scale in pairs:
        low, high = levels[0] * scale, levels[-1] * scale
        outside = (values < low) | (values > high)
        excess = np.where(values > high, values - high, 0) + np.where(values < low, low - values, 0)
        clipping.append(np.mean(excess ** 2))
        rounding.append(np.mean(np.where(outside, 0, (values - quantized) ** 2)))
    noise = np.sum((x - fake) ** 2)
    sqnr = math.inf if noise == 0 else 10 * np.log10(np.sum(x ** 2) / noise)
    return np.mean(clipping), np.mean(rounding), sqnr


def _expected_bops(layer, a_bits, w_bits, out_positions):
    module = layer.layer
    if isinstance(module, torch.nn.Conv2d):
        n, m, k2 = module.in_channels, module.out_channels, module.kernel_size[0] * module.kernel_size[1]
    else:
        n, m, k2 = module.in_features, module.out_features, 1
    return m * n * k2 * (a_bits * w_bits + a_bits + w_bits + math.log2(n * k2)) * out_positions


@pytest.mark.parametrize("key", [("ant4", "ant4"), ("fxp8", "fxp8")])
def test_per_layer_analysis_against_numpy(digits, quantized, key):
    _, (_, _, x_test, _) = digits
    qmodel, _ = quantized[key]
    x = x_test[:16]
    rows = analyse(qmodel, x)
    inputs = _layer_inputs(qmodel, x)
    assert [row["name"] for row in rows] == list(qmodel.layers)
    clipped_somewhere = False
    for row, (name, layer) in zip(rows, qmodel.layers.items()):
        w_q, a_q = layer.weight_quantizer, layer.input_quantizer
        assert row["weight_format"] == repr(w_q.format) and row["activation_format"] == repr(a_q.format)
        weights = layer.layer.weight.detach().double().numpy()
        for got, quantizer, tensor in ((row["weights"], w_q, weights), (row["activations"], a_q, inputs[name])):
            clipping, rounding, sqnr = _expected_errors(quantizer, tensor, 0)
            assert got["clipping"] == pytest.approx(clipping, rel=1e-9, abs=1e-15), name
            assert got["rounding"] == pytest.approx(rounding, rel=1e-9, abs=1e-15), name
            assert got["total"] == pytest.approx(np.mean((tensor - quantizer.fake_quantize(tensor)) ** 2), rel=1e-9), name
            assert got["sqnr_db"] == pytest.approx(sqnr, rel=1e-9), name
            clipped_somewhere |= clipping > 0
        with torch.no_grad():
            out = layer.layer(torch.from_numpy(inputs[name]).float())
        positions = int(np.prod(out.shape[2:])) if out.dim() == 4 else 1
        assert row["bops"] == pytest.approx(_expected_bops(layer, a_q.format.bits, w_q.format.bits, positions))
    if key == ("ant4", "ant4"):
        assert clipped_somewhere, "a 4-bit model with no clipping does not test the split"
    assert model_bops(qmodel, x) == pytest.approx(sum(row["bops"] for row in rows))


def test_histogram_panels_draw_one_channel_with_its_own_levels(digits, quantized):
    _, (_, _, x_test, _) = digits
    qmodel, _ = quantized["ant4", "ant4"]
    x = x_test[:32]
    panels = histogram_panels(qmodel, x)
    inputs = _layer_inputs(qmodel, x)
    assert [(w.layer, w.role, a.layer, a.role) for w, a in panels] == \
        [(name, "weights", name, "activations") for name in qmodel.layers]
    for (weights, activations), (name, layer) in zip(panels, qmodel.layers.items()):
        w = layer.layer.weight.detach().double().numpy()
        w_q, a_q = layer.weight_quantizer, layer.input_quantizer
        assert w_q.channel_axis == 0 and len(w_q.scale) == len(w) > 1      # per output channel
        # the channel drawn is the widest one, with its own scale's levels
        channel = int(np.argmax(np.abs(w.reshape(len(w), -1)).max(axis=1)))
        assert (weights.channel, weights.channels) == (channel, len(w))
        np.testing.assert_array_equal(weights.values, w[channel].ravel())
        assert weights.scale == w_q.scale[channel]
        levels = np.unique(w_q.format.to_real(w_q.format.codes)) * w_q.scale[channel]
        np.testing.assert_allclose(weights.levels, levels, rtol=1e-12)
        assert weights.clip == pytest.approx((levels[0], levels[-1]), rel=1e-12) and weights.signed
        assert f"channel {channel} of {len(w)}" in weights.title and "ant4" in weights.title
        # activations: per tensor, the whole recorded input, unsigned (a ReLU's output): only H
        assert activations.channel is None and "channel" not in activations.title
        np.testing.assert_array_equal(activations.values, inputs[name].ravel())
        a_levels = np.unique(a_q.format.to_real(a_q.format.codes)) * a_q.scale[0]
        np.testing.assert_allclose(activations.levels, a_levels, rtol=1e-12)
        assert activations.clip == pytest.approx((a_levels[0], a_levels[-1]), rel=1e-12)
        assert activations.clip[0] == 0 and not activations.signed
        for panel in (weights, activations):
            counts = np.histogram(panel.values, bins=histogram_bins(panel.values.size))[0]
            filled = counts[counts > 0]
            assert panel.log_count == (filled.max() > LOG_COUNT_RATIO * np.median(filled))
    # after the first layer the inputs are a ReLU's output: a zero spike, drawn on a log count axis
    assert panels[1][1].log_count and np.mean(panels[1][1].values == 0) > 0.3
    assert not panels[1][0].log_count


def test_histogram_panels_of_wide_formats_draw_no_levels(digits, quantized):
    _, (_, _, x_test, _) = digits
    qmodel, _ = quantized["fxp8", "fxp8"]
    for pair in histogram_panels(qmodel, x_test[:8]):
        for panel in pair:
            assert panel.levels is None and panel.level_count == 256 > MAX_DRAWN_LEVELS
            assert "256 levels (not drawn)" in panel.title


def test_histogram_figure_axes(digits, quantized):
    _, (_, _, x_test, _) = digits
    qmodel, _ = quantized["ant4", "ant4"]
    panels = histogram_panels(qmodel, x_test[:32])
    fig = draw_histograms(panels)
    try:
        axes = fig.get_axes()
        assert len(axes) == 2 * len(qmodel.layers)
        for ax, panel in zip(axes, [p for pair in panels for p in pair]):
            assert ax.get_title() == panel.title
            assert ax.get_xlabel().endswith("value")
            assert ax.get_ylabel() == ("count (log scale)" if panel.log_count else "count")
            assert ax.get_yscale() == ("log" if panel.log_count else "linear")
            assert sum(patch.get_height() for patch in ax.patches) == panel.values.size
            vertical = [line for line in ax.get_lines() if line.get_xdata()[0] == line.get_xdata()[1]]
            dashed = sorted(line.get_xdata()[0] for line in vertical if line.get_linestyle() == "--")
            solid = sorted(line.get_xdata()[0] for line in vertical if line.get_linestyle() == "-")
            assert dashed == pytest.approx(list(panel.clip) if panel.signed else [panel.clip[1]])
            np.testing.assert_allclose(solid, panel.levels)
            low, high = ax.get_xlim()
            assert low < min(panel.values.min(), *dashed) and high > max(panel.values.max(), *dashed)
    finally:
        plt.close(fig)


def test_plot_histograms_writes_a_png(digits, quantized, tmp_path):
    _, (_, _, x_test, _) = digits
    qmodel, _ = quantized["ant4", "fxp8"]
    path = tmp_path / "hist.png"
    assert plot_histograms(qmodel, x_test[:16], path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.get_fignums()        # the figure was closed
