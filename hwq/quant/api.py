"""``hwq.quant.quantize``: a trained model in, a fake-quantized model in any hwq format out."""

import copy
import dataclasses
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..formats import product_lsb_exp
from ..integer.program import BIAS_BITS
from .calibrate import calibrate
from .gptq import gptq, input_hessians
from .graph import REQUANTIZING, check_supported, fold_batchnorm, graph_ops, quantizable_layers, trace
from .modules import QuantAdd, QuantAvgPool, QuantLayer
from .plan import plan_tensors
from .spec import parse_spec

__all__ = ["quantize", "QuantizedModel", "LayerPlan", "check_calibration", "collect_tensors", "run_recording",
           "floor_weight_scales", "correct_bias", "ScaleFloorWarning", "MAX_CALIBRATION_VALUES", "SCALE_FLOOR", "DEFAULT_OUTPUT",
           "ROUNDINGS"]

#: activation values kept per tensor for calibration (a seeded subsample beyond this)
MAX_CALIBRATION_VALUES = 1 << 20
#: a per-channel weight scale is at least this times the layer's largest
SCALE_FLOOR = 2.0 ** -16
#: format of the model's output tensor (the scores)
DEFAULT_OUTPUT = "fxp16"
#: how :func:`quantize` can round weights onto their grid
ROUNDINGS = ("nearest", "gptq")


class ScaleFloorWarning(UserWarning):
    """A weight channel's scale was raised to the floor (a nearly dead channel)."""


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """The formats one layer is quantized in."""

    name: str
    weights: object
    activations: object


class QuantizedModel(nn.Module):
    """The traced model with every requantizing op replaced by its fake-quantized module.

    Attributes
    ----------
    graph_module : torch.fx.GraphModule
    layers : dict of str to QuantLayer
        Quantized layers in execution order.
    float_layers : list of str
        Layers kept in floating point (``keep_float``).
    ops : list of GraphOp
        The traced graph in the integer path's vocabulary (:func:`hwq.quant.graph.graph_ops`).
    plan : TensorPlan
        Folded clamps, every tensor's source and format spec (:func:`hwq.quant.plan.plan_tensors`).
    tensors : dict of str to TensorQuantizer
        The quantizer of every source's tensor (per tensor).
    modules : dict of str to nn.Module
        The fake-quantized module of every requantizing op, by op name.
    float_module : torch.fx.GraphModule
        The float model, BatchNorm folded, before quantization (the reference the analysis
        measures activation errors against).
    """

    def __init__(self, graph_module, layers, float_layers, *, ops, plan, tensors, modules, float_module=None):
        super().__init__()
        self._float = [float_module]           # a list: not a submodule (no parameters of its own to train)
        self.graph_module = graph_module
        self.layers = layers
        self.float_layers = list(float_layers)
        self.ops, self.plan, self.tensors = ops, plan, tensors
        self.quant_ops = modules

    @property
    def float_module(self):
        """The float model (BatchNorm folded) this model was quantized from."""
        return self._float[0]

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
        specs = []
        for role, default in (("weights", weights), ("activations", activations)):
            try:
                specs.append(parse_spec(override.get(role, default)))
            except InputError as exc:
                raise InputError(f"layer {name!r} {role}: {exc}") from None
        plans.append(LayerPlan(name, *specs))
    return plans


def _check_widths(plans, extra=()):
    """Build each format once at its width, so a width it cannot do fails before any work."""
    from ..formats import get_format
    specs = [(f"layer {plan.name!r}", spec) for plan in plans for spec in (plan.weights, plan.activations)]
    for where, spec in specs + [(what, spec) for what, spec in extra]:
        try:
            get_format(spec.name, spec.bits)
        except InputError as exc:
            raise InputError(f"{where}: {spec} is not possible ({exc})") from None


def check_calibration(batches, graph_module):
    """The calibration batches as a list of float tensors, checked before any work.

    Raises
    ------
    InputError
        For no batch, a batch that is not a floating-point tensor, holds NaN/Inf or differs in
        per-sample shape from the first -- naming the batch and the shape expected (the first
        layer's input).
    """
    if isinstance(batches, torch.Tensor):
        raise InputError("calibration must be an iterable of batches (e.g. [x]), not one tensor")
    expected = _expected_input(graph_module)
    out = []
    for index, batch in enumerate(batches):
        if isinstance(batch, (tuple, list)):
            batch = batch[0] if batch else None
        if not isinstance(batch, (torch.Tensor, np.ndarray)):
            raise InputError(f"calibration batch {index} is a {type(batch).__name__}, not a tensor; expected {expected}")
        batch = torch.as_tensor(batch)
        if not batch.is_floating_point():
            raise InputError(f"calibration batch {index} has dtype {batch.dtype}; expected floating point {expected}")
        if batch.dim() < 2 or batch.shape[0] == 0:
            raise InputError(f"calibration batch {index} has shape {tuple(batch.shape)}; expected {expected} "
                             "with at least one sample")
        if out and batch.shape[1:] != out[0].shape[1:]:
            raise InputError(f"calibration batch {index} has shape {tuple(batch.shape)}, batch 0 "
                             f"{tuple(out[0].shape)}; every batch needs the same per-sample shape")
        if not torch.isfinite(batch).all():
            raise InputError(f"calibration batch {index} holds NaN/Inf values")
        out.append(batch)
    if not out:
        raise InputError("calibration data is empty; pass at least one batch of inputs")
    return out


def _expected_input(graph_module):
    """The input shape the model's first layer implies, as text."""
    modules = dict(graph_module.named_modules())
    for node in graph_module.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, nn.Conv2d):
            return f"(N, {module.in_channels}, H, W) for the first layer {node.target!r} (Conv2d)"
        if isinstance(module, nn.Linear):
            return f"(N, ..., {module.in_features}) for the first layer {node.target!r} (Linear)"
    return "a batch of inputs"


class _Recorder(torch.fx.Interpreter):
    """Runs the float graph, keeping a seeded sample of the outputs of chosen nodes (float64,
    at most ``per_batch`` values a batch) and the per-channel sums of others."""

    def __init__(self, graph_module, names, channel_names, per_batch, seed):
        super().__init__(graph_module)
        self.names, self.seen = set(names), {name: [] for name in names}
        self.channel_names = set(channel_names)
        self.sums, self.counts = {}, {}
        self.per_batch, self.rng = per_batch, np.random.default_rng(seed)

    def run_node(self, node):
        result = super().run_node(node)
        if node.name in self.names:
            values = result.detach().cpu().double().numpy().ravel()
            if values.size > self.per_batch:
                values = values[self.rng.choice(values.size, self.per_batch, replace=False)]
            self.seen[node.name].append(values)
        if node.name in self.channel_names:
            dims = [d for d in range(result.dim()) if d != 1]
            self.sums[node.name] = self.sums.get(node.name, 0) + result.detach().double().sum(dims).cpu().numpy()
            self.counts[node.name] = self.counts.get(node.name, 0) + result[:, 0].numel()
        return result


def collect_tensors(graph_module, names, batches, clamps, limit=MAX_CALIBRATION_VALUES, seed=0, channel_means=()):
    """Run ``batches`` through the float ``graph_module``.

    Returns
    -------
    values : dict of str to numpy.ndarray
        For each of ``names``: a seeded sample (at most ``limit``) of the node's output values,
        clamped to its folded clamp's bounds (1-D float64).
    means : dict of str to numpy.ndarray
        For each of ``channel_means``: the mean of the node's output per channel (axis 1).
    """
    recorder = _Recorder(graph_module, names, channel_means, max(limit // max(len(batches), 1), 1), seed)
    with torch.no_grad():
        for batch in batches:
            recorder.run(batch)
    out = {}
    for name, parts in recorder.seen.items():
        values = np.concatenate(parts)
        low, high = clamps.get(name, (None, None))
        if low is not None or high is not None:
            values = np.clip(values, low, high)
        out[name] = values
    means = {name: recorder.sums[name] / recorder.counts[name] for name in recorder.sums}
    return out, means


def correct_bias(layer, quantized, input_means):
    """Empirical bias correction (Nagel et al., "Data-Free Quantization Through Weight Equalization
    and Bias Correction", ICCV 2019, section 4.2): subtract the expected output error of the
    quantized weights ``quantized`` (float64, the shape of ``layer.weight``), ``(W_q - W) @ E[x]``,
    from the bias, with ``E[x]`` the mean of the layer's input per channel over the calibration
    data (zero padding makes it approximate at borders)."""
    weight = layer.weight.detach().cpu().double().numpy()
    error = quantized - weight                                        # (O, C/g, kh, kw) or (O, K)
    if error.ndim == 4:
        groups = layer.groups
        per_group = weight.shape[1]
        means = input_means.reshape(groups, per_group)                # (g, C/g)
        out_per_group = weight.shape[0] // groups
        means = np.repeat(means, out_per_group, axis=0)               # (O, C/g)
        shift = (error.sum(axis=(2, 3)) * means).sum(axis=1)
    else:
        shift = error @ input_means
    with torch.no_grad():
        bias = layer.bias if layer.bias is not None else torch.zeros(weight.shape[0], dtype=layer.weight.dtype)
        layer.bias = nn.Parameter(bias - torch.as_tensor(shift, dtype=bias.dtype))


def run_recording(qmodel, x):
    """Run the float model ``qmodel`` was quantized from on ``x``, recording every quantized
    layer's input: the float activations its input quantizer stands for.

    Returns
    -------
    output : numpy.ndarray
        The quantized model's output (float64).
    layers : dict of str to (numpy.ndarray, tuple)
        Each quantized layer's float input (float64) and its output shape.
    """
    seen = {}
    float_module = qmodel.float_module
    hooks = [float_module.get_submodule(name).register_forward_hook(
        lambda module, args, out, name=name: seen.__setitem__(
            name, (args[0].detach().cpu().double().numpy(), tuple(out.shape))))
        for name in qmodel.layers]
    try:
        with torch.no_grad():
            float_module(torch.as_tensor(x))
            output = qmodel(torch.as_tensor(x)).detach().cpu().double().numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return output, seen


def quantize(model, weights="fxp8", activations="fxp8", *, calibration, overrides=None, keep_float=(),
             per_channel=True, output=DEFAULT_OUTPUT, bias_correction=False, rounding="nearest"):
    """Quantize ``model`` post-training in hwq formats.

    Every tensor gets one format and scale (docs/integer-semantics.md): a layer's input tensor
    takes the layer's activation format, the model's output takes ``output``, and a tensor read
    only by adds and average pools takes ``activations``. In eval mode the result computes
    exactly the integers of :class:`hwq.integer.IntegerModel`.

    Parameters
    ----------
    model : nn.Module
        A trained float model (not modified).
    weights, activations : str or dict or FormatSpec
        Default formats, e.g. ``"ant4"``, ``"fxp8"``.
    calibration : iterable of tensors (or of ``(input, target)`` pairs)
        Inputs whose activations set the activation quantizers; every batch has the same
        per-sample shape.
    overrides : dict, optional
        ``{layer_name: {"weights": spec, "activations": spec}}`` for single layers.
    keep_float : sequence of str
        Layers left in floating point: names, or ``"first"`` / ``"last"`` (nothing by default).
        A model with float layers has no integer model.
    per_channel : bool
        Per-output-channel weight scales where the format's method has them.
    output : str or dict or FormatSpec
        Format of the model's output (the scores): one grid for every class.
    bias_correction : bool
        Correct each layer's bias for the mean error of its quantized weights
        (:func:`correct_bias`).
    rounding : {"nearest", "gptq"}
        How weights are rounded onto their calibrated grid: each to its nearest code, or by GPTQ
        (:mod:`hwq.quant.gptq`), which minimises each layer's output error on the calibration
        inputs. Either way the weights become codes of the same format and scales.

    Returns
    -------
    QuantizedModel

    Raises
    ------
    InputError
        Before any work: an unsupported module, function, method or attribute (named, with the
        node and the attribute), NaN/Inf weights or BatchNorm statistics, an unknown format or
        layer name, a width a format cannot do, a clamp that cannot fold, two layers that want
        one tensor in different formats, calibration batches of the wrong type, dtype or shape.
    """
    if rounding not in ROUNDINGS:
        raise InputError(f"rounding must be one of {', '.join(map(repr, ROUNDINGS))}, not {rounding!r}")
    graph_module = trace(model)
    check_supported(graph_module)
    names = quantizable_layers(graph_module)
    if not names:
        raise InputError("the model has no Conv2d or Linear layer to quantize")
    keep = _resolve_keep_float(keep_float, names)
    plans = _plans(names, weights, activations, overrides, keep)
    activation_spec, output_spec = parse_spec(activations), parse_spec(output)
    _check_widths(plans, (("activations", activation_spec), ("output", output_spec)))
    batches = check_calibration(calibration, graph_module)
    fold_batchnorm(graph_module)
    float_module = copy.deepcopy(graph_module)
    ops = graph_ops(graph_module, batches[0], _expected_input(graph_module))
    tensor_plan = plan_tensors(ops, {p.name: p.activations for p in plans}, keep, activation_spec, output_spec)
    layer_inputs = [op.inputs[0] for op in ops if op.kind == "layer" and op.target not in keep]
    values, input_means = collect_tensors(graph_module, list(tensor_plan.specs), batches, tensor_plan.clamps,
                                          channel_means=layer_inputs if bias_correction else ())
    tensors = {name: calibrate(spec, values[name], role="activation") for name, spec in tensor_plan.specs.items()}
    hessians = {} if rounding == "nearest" else input_hessians(
        graph_module, {op.target: op.attrs for op in ops if op.kind == "layer" and op.target not in keep}, batches)
    by_name = {op.name: op for op in ops}
    modules, layers = {}, {}
    for op in ops:
        if op.kind not in REQUANTIZING or op.kind == "layer" and op.target in keep:
            continue
        low, high = tensor_plan.clamps[op.name]
        output_q = tensors[op.name]
        inputs_q = [tensors[tensor_plan.source[name]] for name in op.inputs]
        if op.kind == "layer":
            plan = next(p for p in plans if p.name == op.target)
            layer = graph_module.get_submodule(op.target)
            weight = layer.weight.detach().cpu().double().numpy()
            weight_q = calibrate(plan.weights, weight, role="weight", per_channel=per_channel)
            weight_q = floor_weight_scales(op.target, weight_q, layer, inputs_q[0])
            rounded = gptq(weight, hessians[op.target], weight_q.fake_quantize) if rounding == "gptq" else None
            if bias_correction:
                correct_bias(layer, weight_q.fake_quantize(weight) if rounded is None else rounded,
                             input_means[op.inputs[0]])
            if rounded is not None:                       # the layer's weights become the grid values
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(rounded))
            module = QuantLayer(op.target, layer, weight_q, inputs_q[0], output_q, op.attrs, low, high)
            module.check_flush(module.program())
            layers[op.target] = module
        elif op.kind == "add":
            module = QuantAdd(op.name, inputs_q, output_q, op.attrs["scales"], op.attrs["constant"], low, high)
            module.program()
        else:
            module = QuantAvgPool(op.name, inputs_q[0], output_q, op.attrs, low, high)
            module.program()
        modules[op.name] = module
    _rewrite(graph_module, by_name, modules, layers, tensor_plan)
    return QuantizedModel(graph_module, layers, sorted(keep), ops=ops, plan=tensor_plan, tensors=tensors,
                          modules=modules, float_module=float_module)


def floor_weight_scales(name, quantizer, layer, input_quantizer):
    """Floor per-channel weight scales so that every channel's bias fits, warning for each.

    A channel whose scale is below :data:`SCALE_FLOOR` times the layer's largest (a nearly dead
    channel: its weights are then all zero codes), or whose bias would need more than
    :data:`~hwq.integer.program.BIAS_BITS` bits in accumulator units, gets the smallest scale
    that meets both. The floored quantizer is used by fake quantization and the integer path
    alike.

    Raises
    ------
    InputError
        If a per-tensor scale would have to change (the whole layer's weights are negligible
        against its bias), naming the layer.
    """
    scale = quantizer.scale.copy()
    floor = np.full_like(scale, scale.max() * SCALE_FLOOR)
    if layer.bias is not None:
        bias = np.abs(layer.bias.detach().cpu().double().numpy())
        unit = np.ldexp(float(input_quantizer.scale[0]), product_lsb_exp(input_quantizer.format, quantizer.format))
        floor = np.maximum(floor, bias / (unit * ((1 << (BIAS_BITS - 1)) - 2)))
    low = scale < floor
    if not low.any():
        return quantizer
    if quantizer.channel_axis is None:
        raise InputError(f"layer {name!r}: its bias needs more than {BIAS_BITS} bits in accumulator units because "
                         "its weights are negligible against it; use per-channel weight scales or rescale the layer")
    channels = np.flatnonzero(low)
    warnings.warn(f"layer {name!r}: weight scale of output channel(s) {', '.join(map(str, channels[:8]))}"
                  f"{' ...' if len(channels) > 8 else ''} floored (nearly dead channel or bias too large for "
                  f"{BIAS_BITS} bits)", ScaleFloorWarning, stacklevel=3)
    return dataclasses.replace(quantizer, scale=np.where(low, floor, scale))


def _rewrite(graph_module, by_name, modules, layers, tensor_plan):
    """Put the fake-quantized modules into the traced graph and drop the folded clamps."""
    for target, module in layers.items():
        _replace(graph_module, target, module)
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.name in tensor_plan.alias:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
        elif node.name in modules and by_name[node.name].kind != "layer":
            target = "hwq_" + node.name
            graph_module.add_submodule(target, modules[node.name])
            tensors = [n for n in node.args if isinstance(n, torch.fx.Node)] + \
                [n for key, n in node.kwargs.items() if key == "other" and isinstance(n, torch.fx.Node)]
            with graph.inserting_after(node):
                new = graph.call_module(target, tuple(tensors))
            node.replace_all_uses_with(new)
            graph.erase_node(node)
    graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()


def _replace(graph_module, name, module):
    parent_name, _, child = name.rpartition(".")
    parent = graph_module.get_submodule(parent_name) if parent_name else graph_module
    setattr(parent, child, module)
