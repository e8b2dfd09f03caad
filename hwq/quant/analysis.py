"""Per-layer and per-model analysis of a quantized model: clipping and rounding error (AUSN's
definitions, :mod:`hwq.formats.metrics`), SQNR, BOPs (:mod:`hwq.formats.bops`) and histograms of
the weights and activations against the format's levels and clipping range
(:func:`histogram_panels` says what is drawn, :func:`draw_histograms` draws it)."""

import dataclasses
import math

import numpy as np
from torch import nn

from ..formats.bops import conv_bops, linear_bops
from ..formats.metrics import clip_thresholds, quantization_error
from .api import run_recording

__all__ = ["sqnr_db", "tensor_errors", "analyse", "model_bops", "HistogramPanel", "histogram_panels",
           "histogram_bins", "draw_histograms", "plot_histograms"]


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
            "sqnr_db": sqnr_db(x, quantizer.fake_quantize(x))}


def _layer_bops(layer, a_bits, w_bits, out_shape):
    if isinstance(layer.layer, nn.Conv2d):
        return conv_bops(layer.layer.in_channels, layer.layer.out_channels, layer.layer.kernel_size, a_bits, w_bits,
                         groups=layer.layer.groups, output_size=tuple(out_shape[2:]))
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


@dataclasses.dataclass(frozen=True)
class HistogramPanel:
    """What one histogram panel of :func:`plot_histograms` draws.

    Attributes
    ----------
    layer : str
        The quantized layer.
    role : str
        ``"weights"`` or ``"activations"`` (the layer's input).
    label : str
        The format, e.g. ``"ant4"``.
    values : numpy.ndarray
        The values in the histogram (1-D float64): the whole tensor for a per-tensor scale, else
        only the drawn channel's.
    channel : int or None
        The channel drawn, for per-channel scales (the one with the largest ``|value|``, so the
        widest range); ``None`` for a per-tensor scale.
    channels : int or None
        How many channels the tensor has (``None`` for a per-tensor scale).
    scale : float
        The drawn channel's (or the tensor's) scale.
    levels : numpy.ndarray or None
        The format's levels times ``scale``, sorted; ``None`` beyond :data:`MAX_DRAWN_LEVELS`.
    level_count : int
        How many distinct levels the format has.
    clip : tuple of float
        ``(L, H)``: the least and largest representable value times ``scale``
        (:func:`hwq.formats.metrics.clip_thresholds`); ``L = 0`` for unsigned formats.
    signed : bool
        Whether ``L`` is a real clipping threshold drawn as a line (signed formats); an unsigned
        format clips at 0 and only ``H`` is drawn.
    log_count : bool
        Whether the count axis is logarithmic: when one bin dominates (:data:`LOG_COUNT_RATIO`),
        as the zero spike of a ReLU's output does.
    """

    layer: str
    role: str
    label: str
    values: np.ndarray
    channel: object
    channels: object
    scale: float
    levels: object
    level_count: int
    clip: tuple
    signed: bool
    log_count: bool

    @property
    def title(self):
        """The panel's title: layer, role, format, which channel, level count when not drawn."""
        text = f"{self.layer} {self.role}: {self.label}"
        if self.channel is not None:
            text += f", channel {self.channel} of {self.channels} (widest)"
        if self.levels is None:
            text += f", {self.level_count} levels (not drawn)"
        return text


#: most bins of a histogram (fewer for small tensors: :func:`histogram_bins`)
HISTOGRAM_BINS = 120
#: a histogram's count axis is logarithmic when its tallest bin holds more than this many times
#: the median count of its non-empty bins: a ReLU output's zero spike, or the peak of a
#: long-tailed weight tensor
LOG_COUNT_RATIO = 10.0


def histogram_bins(size):
    """Bins of a histogram of ``size`` values: ``2 sqrt(size)``, between 20 and
    :data:`HISTOGRAM_BINS` (one channel's 9 weights get 20, an activation tensor 120)."""
    return int(min(HISTOGRAM_BINS, max(20, 2 * math.isqrt(size))))


def _dominated(values):
    counts = np.histogram(values, bins=histogram_bins(values.size))[0]
    filled = counts[counts > 0]
    return bool(filled.size > 1 and filled.max() > LOG_COUNT_RATIO * np.median(filled))


def _panel(name, role, quantizer, tensor, channel_axis):
    """The panel of ``tensor`` under ``quantizer``; ``channel_axis`` is where the tensor's channels
    run if the quantizer has per-channel scales."""
    fmt = quantizer.format
    if quantizer.channel_axis is None:
        channel, channels, values, scale = None, None, tensor.ravel(), float(quantizer.scale[0])
    else:
        rows = np.moveaxis(tensor, channel_axis, 0).reshape(tensor.shape[channel_axis], -1)
        channel, channels = int(np.argmax(np.abs(rows).max(axis=1))), len(rows)
        values, scale = rows[channel], float(quantizer.scale[channel])
    levels = np.unique(fmt.to_real(fmt.codes, scale))
    return HistogramPanel(
        layer=name, role=role, label=f"{fmt.name}{fmt.bits}", values=np.asarray(values, dtype=np.float64),
        channel=channel, channels=channels, scale=scale,
        levels=levels if len(levels) <= MAX_DRAWN_LEVELS else None, level_count=len(levels),
        clip=clip_thresholds(fmt, scale), signed=bool(fmt.signed), log_count=_dominated(np.asarray(values)))


def histogram_panels(qmodel, x):
    """What :func:`plot_histograms` draws: a ``(weights, activations)`` pair of
    :class:`HistogramPanel` per quantized layer, in execution order."""
    _, seen = run_recording(qmodel, x)
    return [(_panel(name, "weights", layer.weight_quantizer, layer.layer.weight.detach().double().numpy(),
                    layer.weight_quantizer.channel_axis),
             _panel(name, "activations", layer.input_quantizer, seen[name][0], 1))
            for name, layer in qmodel.layers.items()]


def draw_histograms(panels):
    """A matplotlib figure of :func:`histogram_panels`' panels: one row per layer (weights left,
    input activations right), value on x and count on y (log when :attr:`HistogramPanel.log_count`),
    the format's levels as thin red lines and the clipping range as dashed black ones. The caller
    closes it (``matplotlib.pyplot.close``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 2.9 * len(panels) + 0.6), squeeze=False)
    for row, pair in zip(axes, panels):
        for ax, panel in zip(row, pair):
            ax.hist(panel.values, bins=histogram_bins(panel.values.size), color="tab:blue", alpha=0.75,
                    log=panel.log_count)
            for level in () if panel.levels is None else panel.levels:
                ax.axvline(level, color="tab:red", linewidth=0.6, alpha=0.6)
            edges = panel.clip if panel.signed else panel.clip[1:]
            for edge in edges:
                ax.axvline(edge, color="black", linestyle="--", linewidth=1.1)
            # every value and every clipping line inside, none of them on the frame
            low, high = min(panel.values.min(), *edges), max(panel.values.max(), *edges)
            pad = 0.03 * (high - low) or 0.5
            ax.set_xlim(low - pad, high + pad)
            ax.set_title(panel.title, fontsize=9)
            ax.set_xlabel(f"{'weight' if panel.role == 'weights' else 'input activation'} value", fontsize=8)
            ax.set_ylabel("count (log scale)" if panel.log_count else "count", fontsize=8)
            ax.tick_params(which="both", labelsize=7)
    fig.legend(handles=[Line2D([], [], color="tab:red", linewidth=0.8, label="format levels × scale"),
                        Line2D([], [], color="black", linestyle="--",
                               label="clipping range (least/largest level × scale)")],
               loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    return fig


def plot_histograms(qmodel, x, path):
    """Save a PNG with each layer's weight and input-activation histograms (:func:`draw_histograms`
    of :func:`histogram_panels`): for per-channel scales, the weights of one channel (named in the
    title) with that channel's levels; the levels as lines (none beyond
    :data:`MAX_DRAWN_LEVELS`) and the clipping range. Returns ``path``."""
    import matplotlib.pyplot as plt
    fig = draw_histograms(histogram_panels(qmodel, x))
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
