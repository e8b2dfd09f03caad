"""Rounding optimised per layer: GPTQ on any hwq number format.

Rounding every weight to its nearest code minimises each weight's own error, not the layer's
output error. GPTQ (Frantar, Ashkboos, Hoefler and Alistarh, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", ICLR 2023; the Optimal Brain Quantizer of
Frantar and Alistarh, "Optimal Brain Compression", NeurIPS 2022) rounds the weights of a row one
input column at a time and spreads each rounding error over the columns not yet rounded, so as to
minimise ``||W X - Q X||^2`` over the layer's calibration inputs ``X``. It needs only the inputs'
second moment ``H = X X^T / n`` (the Hessian of that error, up to a factor 2), and a quantizer of
one column: the format's own nearest-code rounding with the scales already calibrated. So it works
unchanged on non-uniform grids (ANT, ESB, AUSN, UNIQ), and its result is a tensor of values on
the format's grid: the weight codes of the integer semantics are then those values' codes.

This serves the same purpose as AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for
Post-Training Quantization", ICML 2020), rounding optimised per layer against the layer's
output error, without its gradient descent.

For a convolution, ``X`` is the im2col matrix of the layer's input (every kernel position of
every output position of every calibration image). A grouped convolution has one ``H`` per group
(a depthwise 3 x 3 convolution: one 9 x 9 matrix per channel).
"""

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["DAMP", "input_hessians", "gptq"]

#: dampening added to every ``H``, relative to the mean of its diagonal (GPTQ's default, 1 %)
DAMP = 0.01

#: most float32 values one im2col chunk may hold while accumulating ``H``
CHUNK_VALUES = 1 << 24


def _columns(x, attrs, kernel):
    """The layer input ``x`` (N, C, H, W) as im2col rows: (N * L, C * kh * kw), zero or
    ``padding_mode`` padding as the layer pads; a Linear input (N, K) is returned as is."""
    if attrs["kind"] == "linear":
        return x.reshape(-1, x.shape[-1])
    top, bottom, left, right = attrs["padding"]
    if any(attrs["padding"]):
        mode = "constant" if attrs["padding_mode"] == "zeros" else attrs["padding_mode"]
        x = F.pad(x, (left, right, top, bottom), mode=mode)
    columns = F.unfold(x, kernel, dilation=attrs["dilation"], stride=attrs["stride"])
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


def _accumulate(x, attrs, kernel):
    """``sum X^T X`` over the rows of ``x``'s im2col matrix, per group: (G, K, K) float64, and
    the number of rows."""
    groups = attrs.get("groups", 1)
    total, count = 0, 0
    per_sample = int(np.prod(x.shape[1:])) * int(np.prod(kernel))
    step = max(1, CHUNK_VALUES // max(per_sample, 1))
    for start in range(0, x.shape[0], step):
        rows = _columns(x[start:start + step].double(), attrs, kernel)          # (n, G * K)
        rows = rows.reshape(rows.shape[0], groups, -1).transpose(0, 1)  # (G, n, K)
        total = total + torch.bmm(rows.transpose(1, 2), rows)
        count += rows.shape[1]
    return total, count


def input_hessians(graph_module, layers, batches):
    """Second moment of every listed layer's input over the calibration batches.

    Parameters
    ----------
    graph_module : torch.nn.Module
        The float model (BatchNorm folded), whose submodules include the layers.
    layers : dict of str to dict
        Layer name -> its geometry (:class:`hwq.quant.graph.GraphOp` ``attrs`` of a layer op:
        ``kind``; for a convolution also ``stride``, ``padding`` (top, bottom, left,
        right), ``padding_mode``, ``dilation``, ``groups``).
    batches : list of torch.Tensor
        Calibration inputs.

    Returns
    -------
    dict of str to numpy.ndarray
        ``H = X^T X / n`` per layer, float64, shape (G, K, K): ``G`` groups (1 for a Linear or an
        ungrouped convolution), ``K`` = in_features or (C / G) * kh * kw, in the order of the
        flattened weight's columns; ``n`` is the number of im2col rows.
    """
    sums, counts = {}, {}

    def hook(name):
        def record(module, args, out):
            total, count = _accumulate(args[0].detach(), layers[name], tuple(module.weight.shape[2:]))
            sums[name] = sums.get(name, 0) + total
            counts[name] = counts.get(name, 0) + count
        return record

    handles = [graph_module.get_submodule(name).register_forward_hook(hook(name)) for name in layers]
    try:
        with torch.no_grad():
            for batch in batches:
                graph_module(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: (sums[name] / counts[name]).numpy() for name in layers}


def gptq(weight, hessian, fake_quantize, *, damp=DAMP):
    """Round ``weight`` onto a format's grid, one input column at a time, minimising the layer's
    output error (GPTQ, with its "act-order": columns of larger ``H`` diagonal first).

    Parameters
    ----------
    weight : numpy.ndarray
        Float weights, output channels on axis 0: (O, K) or (O, C / G, kh, kw).
    hessian : numpy.ndarray
        (G, K', K') from :func:`input_hessians`, ``G`` dividing ``O`` and ``K' * G`` equal to the
        weight's columns times ``G``.
    fake_quantize : callable
        Maps an (O, 1) float64 array (one value per output channel) to its nearest grid values
        with that channel's scale, e.g. :meth:`hwq.quant.calibrate.TensorQuantizer.fake_quantize`.
    damp : float
        Dampening relative to the mean of ``H``'s diagonal, so that ``H`` can be inverted.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``weight``; every value is a grid value returned by
        ``fake_quantize``. Input columns the calibration never excited (zero diagonal) are rounded
        to nearest, and nothing else is moved for them.

    Raises
    ------
    InputError
        If the shapes do not agree.
    """
    weight = np.asarray(weight, dtype=np.float64)
    hessian = np.asarray(hessian, dtype=np.float64)
    outputs = weight.shape[0]
    groups, width = hessian.shape[0], hessian.shape[-1]
    if hessian.ndim != 3 or hessian.shape[1] != width or outputs % groups or \
            weight[0].size != width:
        raise InputError(f"GPTQ: weights {weight.shape} do not match input second moments {hessian.shape}")
    rows = outputs // groups
    w = weight.reshape(groups, rows, width).copy()
    h = hessian.copy()
    diagonal = np.einsum("gkk->gk", h)
    dead = diagonal <= 0
    mean = np.where(dead, 0, diagonal).sum(1, keepdims=True) / np.maximum((~dead).sum(1, keepdims=True), 1)
    mean = np.where(mean > 0, mean, 1.0)
    eye = np.eye(width, dtype=bool)
    h[:, eye] += np.where(dead, mean, 0) + damp * mean                 # dead columns: H_ii = mean, row 0
    h[dead[:, :, None] & ~eye[None] | dead[:, None, :] & ~eye[None]] = 0
    order = np.argsort(-np.einsum("gkk->gk", h), axis=1, kind="stable")  # act-order, per group
    g = np.arange(groups)[:, None]
    h = h[g[:, :, None], order[:, :, None], order[:, None, :]]
    w = np.take_along_axis(w, order[:, None, :], axis=2)
    upper = np.linalg.cholesky(np.linalg.inv(h)).transpose(0, 2, 1)   # H^-1 = U^T U
    q = np.empty_like(w)
    for i in range(width):
        column = fake_quantize(w[:, :, i].reshape(outputs, 1)).reshape(groups, rows)
        error = (w[:, :, i] - column) / upper[:, i, i][:, None]
        w[:, :, i + 1:] -= error[:, :, None] * upper[:, None, i, i + 1:]
        q[:, :, i] = column
    inverse = np.argsort(order, axis=1)
    q = np.take_along_axis(q, inverse[:, None, :], axis=2)
    return q.reshape(weight.shape)
