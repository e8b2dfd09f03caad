"""Tracing a model and reading it as a list of ops the integer path can run exactly.

Models are traced with :func:`torch.fx.symbolic_trace`, BatchNorm is folded into the Conv2d or
Linear before it, and every node becomes one :class:`GraphOp` of a small vocabulary:

=============  ==============================================================================
``input``      the model's one input
``layer``      ``Conv2d`` (any padding, ``padding_mode``, stride, dilation, groups) and ``Linear``
``clamp``      ``ReLU``, ``ReLU6``, ``Hardtanh``, ``F.relu``, ``F.relu6``, ``F.hardtanh``,
               ``torch.clamp`` / ``.clamp`` with constant bounds
``add``        ``+``, ``-``, ``torch.add`` / ``torch.sub`` (with ``alpha``) of two tensors or of a
               tensor and a constant
``avgpool``    ``AvgPool2d`` / ``F.avg_pool2d`` (every attribute), ``AdaptiveAvgPool2d`` /
               ``F.adaptive_avg_pool2d`` (when the output size divides the input), ``.mean`` over
               the two spatial dimensions
``maxpool``    ``MaxPool2d`` / ``F.max_pool2d`` (every attribute but ``return_indices``)
``pad``        ``ZeroPad2d``, ``ConstantPad2d`` (value 0), ``ReflectionPad2d``,
               ``ReplicationPad2d``, ``CircularPad2d``, ``F.pad`` (non-negative, value 0)
``reshape``    ``Flatten``, ``torch.flatten``, ``.flatten``, ``.view``, ``.reshape`` that keep the
               batch dimension (sizes may come from ``x.size(0)``: shapes are propagated)
``identity``   ``Dropout``, ``Identity``, ``.contiguous``
``output``     the model's one output
=============  ==============================================================================

Anything else, and any attribute the integer path cannot follow exactly, is refused with an
:class:`~hwq.errors.InputError` naming the node, the op and the attribute, before any work.
"""

import copy
import dataclasses
import math
import operator

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F

from ..errors import InputError

__all__ = ["GraphOp", "trace", "check_supported", "fold_batchnorm", "quantizable_layers", "graph_ops",
           "TRANSPARENT", "REQUANTIZING"]

#: ops that move codes without changing them
TRANSPARENT = ("pad", "maxpool", "reshape", "identity")
#: ops that make a new tensor and round once
REQUANTIZING = ("layer", "add", "avgpool")

_PADS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d)
_PAD_MODES = {nn.ZeroPad2d: "constant", nn.ConstantPad2d: "constant", nn.ReflectionPad2d: "reflect",
              nn.ReplicationPad2d: "replicate", nn.CircularPad2d: "circular"}
#: module types that may appear in a model
SUPPORTED_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh,
                     nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity) + _PADS


@dataclasses.dataclass
class GraphOp:
    """One node of the traced model, in the integer path's vocabulary.

    Attributes
    ----------
    name : str
        The fx node's name (unique); for layers the op is named after the module (``target``).
    kind : str
        ``input``, ``layer``, ``clamp``, ``add``, ``avgpool``, ``maxpool``, ``pad``, ``reshape``,
        ``identity`` or ``output``.
    inputs : list of str
        Names of the nodes whose tensors it reads.
    attrs : dict
        The op's attributes (see :func:`graph_ops`).
    target : str or None
        The module's qualified name for ``call_module`` nodes.
    shape : tuple of int or None
        The output shape for the example input (batch of 2).
    """

    name: str
    kind: str
    inputs: list
    attrs: dict
    target: object = None
    shape: object = None


def trace(model):
    """``torch.fx`` trace of ``model`` in eval mode; :class:`InputError` if it cannot be traced."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, not {type(model).__name__}")
    try:
        return fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as exc:                     # fx raises many kinds of errors
        raise InputError(f"cannot trace the model with torch.fx ({type(exc).__name__}: {exc}); "
                         "data-dependent control flow is not supported") from None


def _cause(exc):
    """The innermost message of a (chained) exception, on one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _fn_name(target):
    return getattr(target, "__name__", str(target))


def check_supported(graph_module):
    """Raise :class:`InputError` naming the first unsupported module, or NaN/Inf in a layer's
    weights, bias or BatchNorm statistics. (Functions, methods and attributes are checked by
    :func:`graph_ops`.)"""
    modules = dict(graph_module.named_modules())
    for node in graph_module.graph.nodes:
        if node.op != "call_module":
            continue
        module = modules[node.target]
        if not isinstance(module, SUPPORTED_MODULES):
            raise InputError(f"layer {node.target!r} ({type(module).__name__}) is not supported; supported: "
                             + ", ".join(t.__name__ for t in SUPPORTED_MODULES))
        for pname, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise InputError(f"layer {node.target!r} ({type(module).__name__}) has NaN/Inf in {pname!r}; "
                                 "fix the model before quantizing")


def fold_batchnorm(graph_module):
    """Fold every BatchNorm that directly follows a Conv2d/Linear (its only user) into it.

    Raises :class:`InputError` for a BatchNorm that cannot be folded.
    """
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        source = node.args[0]
        layer = modules.get(source.target) if source.op == "call_module" else None
        if not isinstance(layer, (nn.Conv2d, nn.Linear)) or len(source.users) != 1:
            raise InputError(f"BatchNorm {node.target!r} does not directly follow a Conv2d/Linear; it cannot be folded")
        bn = modules[node.target]
        with torch.no_grad():
            std = torch.sqrt(bn.running_var + bn.eps)
            gamma = bn.weight if bn.affine else torch.ones_like(std)
            beta = bn.bias if bn.affine else torch.zeros_like(std)
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            layer.weight.mul_((gamma / std).reshape(shape))
            bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = (bias - bn.running_mean) * gamma / std + beta
            layer.bias = nn.Parameter(new_bias)
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module


def quantizable_layers(graph_module):
    """Names of the Conv2d/Linear modules in execution order."""
    modules = dict(graph_module.named_modules())
    return [node.target for node in graph_module.graph.nodes
            if node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear))]


def _pair(value, what):
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = (value[0], value[0])
        if len(value) != 2 or not all(isinstance(v, int) for v in value):
            raise InputError(f"{what} must be an int or a pair of ints, not {value!r}")
        return (int(value[0]), int(value[1]))
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{what} must be an int or a pair of ints, not {value!r}")
    return (int(value), int(value))


class _Refuse:
    """Builds the one error message for a node: its name, the op and the attribute."""

    def __init__(self, node, op):
        self.node, self.op = node, op

    def __call__(self, attribute, why):
        where = f"layer {self.node.target!r}" if self.node.op == "call_module" else f"node {self.node.name!r}"
        raise InputError(f"{where} ({self.op}): {attribute} {why}; the integer path cannot run it exactly")


def _arguments(node, names, defaults):
    """``node``'s arguments after the tensor, by name (positional or keyword)."""
    values = dict(defaults)
    for name, value in zip(names, node.args[1:]):
        values[name] = value
    for name, value in node.kwargs.items():
        if name not in values:
            _Refuse(node, _fn_name(node.target))(f"argument {name!r}", "is not supported")
        values[name] = value
    return values


def _constant(refuse, name, value):
    if isinstance(value, fx.Node):
        refuse(name, "is computed in the graph; give a constant")
    return value


def _conv(module, refuse):
    if module.padding_mode not in ("zeros", "reflect", "replicate", "circular"):
        refuse("padding_mode", f"{module.padding_mode!r} is not supported")
    kh, kw = module.kernel_size
    dh, dw = module.dilation
    if module.padding == "valid":
        padding = (0, 0, 0, 0)
    elif module.padding == "same":                                   # torch: extra pixel at the end
        total_h, total_w = dh * (kh - 1), dw * (kw - 1)
        padding = (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
    else:
        ph, pw = _pair(module.padding, "padding")
        padding = (ph, ph, pw, pw)
    return {"kind": "conv2d", "stride": tuple(module.stride), "padding": padding,
            "padding_mode": module.padding_mode, "dilation": tuple(module.dilation), "groups": module.groups}


def _clamp_attrs(refuse, low, high):
    for name, value in (("min", low), ("max", high)):
        value = _constant(refuse, name, value)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            refuse(name, f"must be a finite number, not {value!r}")
    if low is not None and high is not None and low > high:
        refuse("min/max", f"are empty ({low} > {high})")
    return {"low": None if low is None else float(low), "high": None if high is None else float(high)}


def _pool(refuse, kind, values, in_shape):
    kernel = _pair(_constant(refuse, "kernel_size", values["kernel_size"]), "kernel_size")
    stride = values.get("stride")
    stride = kernel if stride is None or stride == [] or stride == () else _pair(_constant(refuse, "stride", stride), "stride")
    padding = _pair(_constant(refuse, "padding", values.get("padding", 0)), "padding")
    for i in range(2):
        if padding[i] * 2 > kernel[i]:
            refuse("padding", f"{padding} is more than half the kernel {kernel} (torch refuses it too)")
    attrs = {"kernel": kernel, "stride": stride, "padding": padding,
             "ceil_mode": bool(_constant(refuse, "ceil_mode", values.get("ceil_mode", False)))}
    if kind == "maxpool":
        if values.get("return_indices"):
            refuse("return_indices", "is not supported")
        attrs["dilation"] = _pair(_constant(refuse, "dilation", values.get("dilation", 1)), "dilation")
    else:
        attrs["count_include_pad"] = bool(_constant(refuse, "count_include_pad", values.get("count_include_pad", True)))
        divisor = _constant(refuse, "divisor_override", values.get("divisor_override"))
        if divisor is not None and (not isinstance(divisor, int) or divisor <= 0):
            refuse("divisor_override", f"must be a positive int, not {divisor!r}")
        attrs["divisor_override"] = divisor
        attrs["size"] = tuple(in_shape[2:])
        attrs["keep_dims"] = True
    return attrs


def _adaptive(refuse, output_size, in_shape):
    if len(in_shape) != 4:
        refuse("input", f"has shape {in_shape}; adaptive pooling needs (N, C, H, W)")
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    size = [in_shape[2 + i] if s is None else s for i, s in enumerate(size)]
    if any(in_shape[2 + i] % size[i] for i in range(2)):
        refuse("output_size", f"{tuple(size)} does not divide the input size {tuple(in_shape[2:])} (windows would "
                              "differ in size)")
    kernel = tuple(in_shape[2 + i] // size[i] for i in range(2))
    return {"kernel": kernel, "stride": kernel, "padding": (0, 0), "ceil_mode": False, "count_include_pad": True,
            "divisor_override": None, "size": tuple(in_shape[2:]), "keep_dims": True}


def _pad_attrs(refuse, pad, mode, value):
    pad = _constant(refuse, "pad", pad)
    if not isinstance(pad, (tuple, list)) or len(pad) not in (2, 4) or not all(isinstance(p, int) for p in pad):
        refuse("pad", f"{pad!r} must be 2 or 4 ints (left, right[, top, bottom])")
    if any(p < 0 for p in pad):
        refuse("pad", f"{tuple(pad)} has a negative (cropping) entry")
    left, right = pad[0], pad[1]
    top, bottom = (pad[2], pad[3]) if len(pad) == 4 else (0, 0)
    if mode not in ("constant", "reflect", "replicate", "circular"):
        refuse("mode", f"{mode!r} is not supported")
    if mode == "constant" and value not in (None, 0, 0.0):
        refuse("value", f"{value!r} is not 0; only zero padding is exact on codes")
    return {"padding": (top, bottom, left, right), "mode": mode}


def _reshape(refuse, in_shape, out_shape):
    if out_shape[0] != in_shape[0]:
        refuse("shape", f"changes the batch dimension ({tuple(in_shape)} -> {tuple(out_shape)})")
    return {"shape": tuple(out_shape[1:])}


def _add(node, refuse, sign):
    values = _arguments(node, ("other",), {"alpha": 1})
    alpha = _constant(refuse, "alpha", values["alpha"])
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        refuse("alpha", f"must be a finite number, not {alpha!r}")
    a, b = node.args[0], values.get("other")
    tensors = [arg for arg in (a, b) if isinstance(arg, fx.Node)]
    constants = [arg for arg in (a, b) if not isinstance(arg, fx.Node)]
    if any(not isinstance(c, (int, float)) or not math.isfinite(c) for c in constants):
        refuse("operand", f"{constants!r} is neither a tensor nor a finite number")
    if len(tensors) == 2:
        return {"scales": [1.0, float(sign * alpha)], "constant": 0.0}
    if isinstance(a, fx.Node):                                     # a (+/-) alpha * c
        return {"scales": [1.0], "constant": float(sign * alpha * b)}
    return {"scales": [float(sign * alpha)], "constant": float(a)}   # c (+/-) alpha * a


def _is_size(node):
    """Whether ``node`` reads a size: ``x.size(...)``, ``x.shape`` or an item of one."""
    if node.op == "call_method" and node.target == "size" or node.op == "call_function" and node.target is getattr:
        return True
    return node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[0], fx.Node) \
        and _is_size(node.args[0])


def _classify(node, modules, shapes):
    """``(kind, attrs)`` of ``node``; :class:`InputError` for anything the integer path cannot run."""
    in_shape = shapes.get(node.args[0].name) if node.args and isinstance(node.args[0], fx.Node) else None
    out_shape = shapes.get(node.name)
    if node.op == "call_module":
        module = modules[node.target]
        refuse = _Refuse(node, type(module).__name__)
        if isinstance(module, nn.Conv2d):
            return "layer", _conv(module, refuse)
        if isinstance(module, nn.Linear):
            if len(in_shape) != 2:
                refuse("input", f"has shape {tuple(in_shape)}; the integer path runs Linear on (N, features)")
            return "layer", {"kind": "linear"}
        if isinstance(module, nn.ReLU6):
            return "clamp", {"low": 0.0, "high": 6.0}
        if isinstance(module, nn.Hardtanh):
            return "clamp", _clamp_attrs(refuse, module.min_val, module.max_val)
        if isinstance(module, nn.ReLU):
            return "clamp", {"low": 0.0, "high": None}
        if isinstance(module, nn.MaxPool2d):
            return "maxpool", _pool(refuse, "maxpool", vars(module), in_shape)
        if isinstance(module, nn.AvgPool2d):
            return "avgpool", _pool(refuse, "avgpool", vars(module), in_shape)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return "avgpool", _adaptive(refuse, module.output_size, in_shape)
        if isinstance(module, _PADS):
            return "pad", _pad_attrs(refuse, list(module.padding), _PAD_MODES[type(module)],
                                     getattr(module, "value", 0))
        if isinstance(module, nn.Flatten):
            return "reshape", _reshape(refuse, in_shape, out_shape)
        if isinstance(module, (nn.Dropout, nn.Identity)):
            return "identity", {}
        raise InputError(f"layer {node.target!r} ({type(module).__name__}) is not supported")
    target = node.target
    name = target if node.op == "call_method" else _fn_name(target)
    refuse = _Refuse(node, name)
    if node.op == "call_function" and target in (operator.add, operator.iadd, torch.add) or \
            node.op == "call_method" and target in ("add", "add_"):
        return "add", _add(node, refuse, 1)
    if node.op == "call_function" and target in (operator.sub, operator.isub, torch.sub) or \
            node.op == "call_method" and target in ("sub", "sub_"):
        return "add", _add(node, refuse, -1)
    if node.op == "call_function" and target in (F.relu, torch.relu) or node.op == "call_method" and target in ("relu", "relu_"):
        _arguments(node, (), {"inplace": False})
        return "clamp", {"low": 0.0, "high": None}
    if node.op == "call_function" and target is F.relu6:
        _arguments(node, (), {"inplace": False})
        return "clamp", {"low": 0.0, "high": 6.0}
    if node.op == "call_function" and target is F.hardtanh:
        values = _arguments(node, ("min_val", "max_val", "inplace"), {"min_val": -1.0, "max_val": 1.0, "inplace": False})
        return "clamp", _clamp_attrs(refuse, values["min_val"], values["max_val"])
    if node.op == "call_function" and target in (torch.clamp, torch.clip) or \
            node.op == "call_method" and target in ("clamp", "clip", "clamp_", "clip_"):
        values = _arguments(node, ("min", "max"), {"min": None, "max": None})
        return "clamp", _clamp_attrs(refuse, values["min"], values["max"])
    if node.op == "call_function" and target is F.max_pool2d:
        values = _arguments(node, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                            {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False})
        return "maxpool", _pool(refuse, "maxpool", values, in_shape)
    if node.op == "call_function" and target is F.avg_pool2d:
        values = _arguments(node, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                   "divisor_override"),
                            {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                             "divisor_override": None})
        return "avgpool", _pool(refuse, "avgpool", values, in_shape)
    if node.op == "call_function" and target is F.adaptive_avg_pool2d:
        values = _arguments(node, ("output_size",), {})
        return "avgpool", _adaptive(refuse, _constant(refuse, "output_size", values["output_size"]), in_shape)
    if node.op == "call_function" and target is torch.mean or node.op == "call_method" and target == "mean":
        values = _arguments(node, ("dim", "keepdim"), {"dim": None, "keepdim": False, "dtype": None})
        dims = _constant(refuse, "dim", values["dim"])
        dims = sorted(d % len(in_shape) for d in (dims if isinstance(dims, (tuple, list)) else [dims])) \
            if dims is not None else None
        if len(in_shape) != 4 or dims != [2, 3] or values["dtype"] is not None:
            refuse("dim", f"{values['dim']!r}: the integer path averages only over the spatial dimensions "
                          "of (N, C, H, W)")
        attrs = _adaptive(refuse, 1, in_shape)
        attrs["keep_dims"] = bool(values["keepdim"])
        return "avgpool", attrs
    if node.op == "call_function" and target is F.pad:
        values = _arguments(node, ("pad", "mode", "value"), {"mode": "constant", "value": None})
        if len(in_shape) != 4:
            refuse("input", f"has shape {tuple(in_shape)}; padding needs (N, C, H, W)")
        return "pad", _pad_attrs(refuse, values["pad"], values["mode"], values["value"])
    if node.op == "call_function" and target in (torch.flatten, torch.reshape) or \
            node.op == "call_method" and target in ("flatten", "view", "reshape"):
        return "reshape", _reshape(refuse, in_shape, out_shape)
    if node.op == "call_function" and target is F.dropout or node.op == "call_method" and target == "contiguous":
        return "identity", {}
    if node.op == "call_method" and target == "size" or node.op == "call_function" and target is getattr or \
            node.op == "call_function" and target is operator.getitem and isinstance(node.args[0], fx.Node) and \
            _is_size(node.args[0]):
        return "size", {}
    if node.op == "get_attr":
        refuse("attribute", "(a tensor constant of the model) is not supported")
    raise InputError(f"node {node.name!r} ({node.op} {name}) is not supported by the integer path; supported: "
                     "Conv2d, Linear, BatchNorm, ReLU/ReLU6/Hardtanh/clamp, add/sub, max/avg/adaptive pooling, "
                     "mean over H and W, padding, flatten/view/reshape, dropout/identity")


def graph_ops(graph_module, example, expected=None):
    """The model as a list of :class:`GraphOp` in execution order, every node checked.

    Parameters
    ----------
    graph_module : torch.fx.GraphModule
        Traced, BatchNorm folded.
    example : torch.Tensor
        One input batch; shapes are propagated from two copies of its first sample, so reshapes
        with sizes read from the input resolve, and a reshape that changes the batch size is
        caught.
    expected : str, optional
        The input shape the model expects, for the error message.

    Raises
    ------
    InputError
        Naming the node or layer, the op and the attribute, for anything not exact in the
        integer path; also for an example the model cannot run (naming the shape it got).
    """
    try:
        ShapeProp(graph_module).propagate(example[:1])
    except Exception as exc:                     # the model's own error on a wrongly shaped input
        hint = f"; expected {expected}" if expected else ""
        raise InputError(f"the model cannot run on inputs of shape {tuple(example.shape[1:])} per sample"
                         f"{hint} ({type(exc).__name__}: {_cause(exc)})") from None
    try:
        ShapeProp(graph_module).propagate(torch.cat([example[:1], example[:1]]))
    except Exception as exc:
        raise InputError("the model runs on one sample but not on a batch of two: it must keep the batch "
                         f"dimension (e.g. flatten with x.flatten(1), not x.view(-1)) ({_cause(exc)})") from None
    shapes = {node.name: tuple(node.meta["tensor_meta"].shape) for node in graph_module.graph.nodes
              if isinstance(node.meta.get("tensor_meta"), torch.fx.passes.shape_prop.TensorMetadata)}
    modules = dict(graph_module.named_modules())
    ops = []
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            if any(op.kind == "input" for op in ops):
                raise InputError(f"the model has more than one input ({node.name!r}); hwq runs single-input models")
            ops.append(GraphOp(node.name, "input", [], {}, shape=shapes.get(node.name)))
            continue
        if node.op == "output":
            if not isinstance(node.args[0], fx.Node):
                raise InputError("the model must return one tensor, not a tuple or dict")
            ops.append(GraphOp(node.name, "output", [node.args[0].name], {}))
            continue
        kind, attrs = _classify(node, modules, shapes)
        if kind == "size":
            for user in node.users:
                if not (_is_size(user) or user.op == "call_method" and user.target in ("view", "reshape")
                        or user.op == "call_function" and user.target is torch.reshape):
                    raise InputError(f"node {node.name!r} reads a size that {user.name!r} uses for something other "
                                     "than a reshape; the integer path needs sizes only in view/reshape")
            continue
        inputs = [arg.name for arg in node.args if isinstance(arg, fx.Node)]
        inputs += [arg.name for key, arg in node.kwargs.items() if isinstance(arg, fx.Node) and key == "other"]
        if kind in ("reshape",):
            inputs = inputs[:1]
        ops.append(GraphOp(node.name, kind, inputs, attrs, target=node.target if node.op == "call_module" else None,
                           shape=shapes.get(node.name)))
    return ops
