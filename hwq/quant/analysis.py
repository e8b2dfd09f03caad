"""Per-layer and per-model analysis of a quantized model: clipping and rounding error (AUSN's
definitions, :mod:`hwq.formats.metrics`), SQNR, BOPs (:mod:`hwq.formats.bops`) and histograms of
the weights and activations against the format's levels."""

import math

import numpy as np
from torch import nn

from ..formats.bops import conv_bops, linear_bops
from ..formats.metrics import quantization_error
from .api import run_recording

__all__ = ["sqnr_db", "tensor_errors", "analyse", "model_bops", "plot_histograms"]


#: formats with more levels than this get no level lines in the histograms
MAX_DRAWN_LEVELS = 40


def sqnr_db(x, q):
    """Signal-to-quantization-noise ratio ``10 log10(sum x**2 / sum (x - q)**2)`` in dB
    (``inf`` when ``q == x``)."""
    x, q = np.asarray(x, dtype=np.float64), np.asarray(q, dtype=np.float64)
    noise = float(np.sum((x - q) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(x ** 2)) / noise)


def tensor_errors(quantizer, x):
    """Clipping / rounding / total MSE and SQNR of ``x`` under a TensorQuantizer.

    Per-channel quantizers are split channel by channel (every channel has as many elements, so
    the mean of the channels' errors is the tensor's).
    """
    x = np.asarray(x, dtype=np.float64)
    if quantizer.channel_axis is None:
        parts = [quantization_error(x, quantizer.format, float(quantizer.scale[0]))]
    else:
        rows = np.moveaxis(x, quantizer.channel_axis, 0)
        parts = [quantization_error(row, quantizer.format, float(s)) for row, s in zip(rows, quantizer.scale)]
    return {"clipping": float(np.mean([p.clipping for p in parts])),
            "rounding": float(np.mean([p.rounding for p in parts])),
            "total": float(np.mean([p.total for p in parts])),
            "clipped_fraction": float(np.mean([p.clipped for p in parts])),
            "sqnr_db": sqnr_db(x, quantizer.fake(x))}


def _layer_bops(layer, a_bits, w_bits, out_shape):
    if isinstance(layer.layer, nn.Conv2d):
        return conv_bops(layer.layer.in_channels, layer.layer.out_channels, layer.layer.kernel_size, a_bits, w_bits,
                         output_size=tuple(out_shape[2:]))
    return linear_bops(layer.layer.in_features, layer.layer.out_features, a_bits, w_bits)


def analyse(qmodel, x):
    """Per-layer analysis of ``qmodel`` on input batch ``x``.

    Returns
    -------
    list of dict
        One per quantized layer: ``name``, ``weight_format``, ``activation_format``, ``weights``
        and ``activations`` (:func:`tensor_errors`), and ``bops`` per input sample.
    """
    _, seen = run_recording(qmodel, x)
    rows = []
    for name, layer in qmodel.layers.items():
        inputs, out_shape = seen[name]
        w_q, a_q = layer.weight_quantizer, layer.input_quantizer
        rows.append({
            "name": name,
            "weight_format": repr(w_q.format), "activation_format": repr(a_q.format),
            "weights": tensor_errors(w_q, layer.layer.weight.detach().double().numpy()),
            "activations": tensor_errors(a_q, inputs),
            "bops": float(_layer_bops(layer, a_q.format.bits, w_q.format.bits, out_shape)),
        })
    return rows


def model_bops(qmodel, x):
    """BOPs of one input sample through every quantized layer."""
    return sum(row["bops"] for row in analyse(qmodel, x[:1]))


def plot_histograms(qmodel, x, path):
    """Save a PNG with each layer's weight and input-activation histograms and, as vertical
    lines, the real values of the format's levels (the first channel's for per-channel scales;
    none beyond :data:`MAX_DRAWN_LEVELS` levels)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    _, seen = run_recording(qmodel, x)
    layers = list(qmodel.layers.items())
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 2.4 * len(layers)), squeeze=False)
    for row, (name, layer) in zip(axes, layers):
        for ax, quantizer, values, label in (
                (row[0], layer.weight_quantizer, layer.layer.weight.detach().double().numpy(), "weights"),
                (row[1], layer.input_quantizer, seen[name][0], "activations")):
            ax.hist(values.ravel(), bins=120, color="tab:blue", alpha=0.7)
            levels = np.unique(quantizer.format.to_real(quantizer.format.codes) * quantizer.scale[0])
            if len(levels) <= MAX_DRAWN_LEVELS:
                for level in levels:
                    ax.axvline(level, color="tab:red", linewidth=0.5, alpha=0.6)
            ax.set_title(f"{name} {label}: {quantizer.format.name}{quantizer.format.bits}"
                         + ("" if len(levels) <= MAX_DRAWN_LEVELS else f" ({len(levels)} levels, not drawn)"),
                         fontsize=9)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
