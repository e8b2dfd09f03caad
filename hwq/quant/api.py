"""``hwq.quant.quantize``: a trained model in, a fake-quantized model in any hwq format out."""

import dataclasses

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .calibrate import calibrate
from .graph import check_supported, fold_batchnorm, quantizable_layers, trace
from .modules import QuantLayer
from .spec import parse_spec

__all__ = ["quantize", "QuantizedModel", "LayerPlan", "collect_inputs", "run_recording", "MAX_CALIBRATION_VALUES"]

#: activation values kept per layer for calibration (a seeded subsample beyond this)
MAX_CALIBRATION_VALUES = 1 << 20


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """The formats one layer is quantized in."""

    name: str
    weights: object
    activations: object


class QuantizedModel(nn.Module):
    """The traced model with every quantized layer replaced by a :class:`QuantLayer`.

    Attributes
    ----------
    graph_module : torch.fx.GraphModule
    layers : dict of str to QuantLayer
        Quantized layers in execution order.
    float_layers : list of str
        Layers kept in floating point (``keep_float``).
    """

    def __init__(self, graph_module, layers, float_layers):
        super().__init__()
        self.graph_module = graph_module
        self.layers = layers
        self.float_layers = list(float_layers)

    def forward(self, x):
        return self.graph_module(x)


def _resolve_keep_float(keep_float, names):
    keep = set()
    for item in keep_float or ():
        if item == "first":
            keep.add(names[0])
        elif item == "last":
            keep.add(names[-1])
        elif item in names:
            keep.add(item)
        else:
            raise InputError(f"keep_float names {item!r}, which is not a Conv2d/Linear layer; layers: {', '.join(names)}")
    return keep


def _plans(names, weights, activations, overrides, keep):
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InputError(f"overrides name unknown layer(s) {', '.join(unknown)}; layers: {', '.join(names)}")
    plans = []
    for name in names:
        if name in keep:
            continue
        override = overrides.get(name, {})
        bad = sorted(set(override) - {"weights", "activations"})
        if bad:
            raise InputError(f"override of layer {name!r} has unknown key(s) {', '.join(bad)}; use weights, activations")
        plans.append(LayerPlan(name, parse_spec(override.get("weights", weights)),
                               parse_spec(override.get("activations", activations))))
    return plans


def _check_widths(plans):
    """Build each format once at its width, so a width it cannot do fails before any work."""
    from ..formats import get_format
    for plan in plans:
        for spec in (plan.weights, plan.activations):
            try:
                get_format(spec.name, spec.bits)
            except InputError as exc:
                raise InputError(f"layer {plan.name!r}: {spec} is not possible ({exc})") from None


def collect_inputs(graph_module, names, batches, limit=MAX_CALIBRATION_VALUES, seed=0):
    """Run ``batches`` through ``graph_module``; return each named layer's input values (1-D float64)."""
    modules = dict(graph_module.named_modules())
    seen = {name: [] for name in names}
    hooks = [modules[name].register_forward_pre_hook(
        lambda module, args, name=name: seen[name].append(args[0].detach().cpu().double().numpy().ravel()))
        for name in names]
    count = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                batch = torch.as_tensor(batch)
                if not torch.isfinite(batch).all():
                    raise InputError("calibration data holds NaN/Inf values")
                graph_module(batch)
                count += 1
    finally:
        for hook in hooks:
            hook.remove()
    if count == 0:
        raise InputError("calibration data is empty; pass at least one batch of inputs")
    rng = np.random.default_rng(seed)
    out = {}
    for name, parts in seen.items():
        values = np.concatenate(parts)
        out[name] = values if values.size <= limit else rng.choice(values, limit, replace=False)
    return out


def run_recording(qmodel, x):
    """Run ``qmodel`` on ``x`` without gradients, recording every quantized layer's float input.

    Returns
    -------
    output : numpy.ndarray
        The model's output (float64).
    layers : dict of str to (numpy.ndarray, tuple)
        Each quantized layer's input (before its quantizer, float64) and its output shape.
    """
    seen = {}
    hooks = [layer.register_forward_hook(
        lambda module, args, out, name=name: seen.__setitem__(
            name, (args[0].detach().cpu().double().numpy(), tuple(out.shape))))
        for name, layer in qmodel.layers.items()]
    try:
        with torch.no_grad():
            output = qmodel(torch.as_tensor(x)).detach().cpu().double().numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return output, seen


def quantize(model, weights="fxp8", activations="fxp8", *, calibration, overrides=None, keep_float=(),
             per_channel=True):
    """Quantize ``model`` post-training in hwq formats.

    Parameters
    ----------
    model : nn.Module
        A trained float model (not modified).
    weights, activations : str or dict or FormatSpec
        Default formats, e.g. ``"ant4"``, ``"fxp8"``.
    calibration : iterable of tensors (or of ``(input, target)`` pairs)
        Inputs whose activations set the activation quantizers.
    overrides : dict, optional
        ``{layer_name: {"weights": spec, "activations": spec}}`` for single layers.
    keep_float : sequence of str
        Layers left in floating point: names, or ``"first"`` / ``"last"`` (nothing by default).
    per_channel : bool
        Per-output-channel weight scales where the format's method has them.

    Returns
    -------
    QuantizedModel

    Raises
    ------
    InputError
        Before any work: unsupported layer (named, with its type), NaN/Inf weights, unknown
        format or layer name, a width a format cannot do; then empty or NaN calibration data.
    """
    graph_module = trace(model)
    check_supported(graph_module)
    names = list(dict.fromkeys(quantizable_layers(graph_module)))
    if not names:
        raise InputError("the model has no Conv2d or Linear layer to quantize")
    keep = _resolve_keep_float(keep_float, names)
    plans = _plans(names, weights, activations, overrides, keep)
    _check_widths(plans)
    fold_batchnorm(graph_module)
    inputs = collect_inputs(graph_module, [p.name for p in plans], calibration)
    layers = {}
    for plan in plans:
        layer = graph_module.get_submodule(plan.name)
        weight_q = calibrate(plan.weights, layer.weight.detach().cpu().double().numpy(), role="weight",
                             per_channel=per_channel)
        input_q = calibrate(plan.activations, inputs[plan.name], role="activation")
        layers[plan.name] = QuantLayer(layer, weight_q, input_q)
        _replace(graph_module, plan.name, layers[plan.name])
    graph_module.recompile()
    return QuantizedModel(graph_module, layers, sorted(keep))


def _replace(graph_module, name, module):
    parent_name, _, child = name.rpartition(".")
    parent = graph_module.get_submodule(parent_name) if parent_name else graph_module
    setattr(parent, child, module)
