"""Tracing a model, checking every layer is supported, and folding BatchNorm.

Models are traced with :func:`torch.fx.symbolic_trace`. Supported: ``Conv2d``, ``Linear``,
``BatchNorm1d/2d`` directly after one of them (folded into it), ``ReLU``, ``ReLU6``, ``MaxPool2d``,
``AvgPool2d``, ``AdaptiveAvgPool2d``, ``Flatten``, ``Dropout`` and ``Identity`` (inference: no-ops),
residual ``+`` / ``torch.add``, ``torch.flatten`` / ``.flatten`` / ``.view`` / ``.reshape`` and
``F.relu`` / ``F.relu6``. Anything else is reported, with its name and type, before any work.
"""

import copy
import operator

import torch
from torch import fx, nn
from torch.nn import functional as F

from ..errors import InputError

__all__ = ["SUPPORTED_MODULES", "trace", "check_supported", "fold_batchnorm", "quantizable_layers"]

#: module types that may appear in a model
SUPPORTED_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d,
                     nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_FUNCTIONS = (operator.add, torch.add, torch.flatten, F.relu, torch.relu, F.relu6)
_METHODS = ("flatten", "view", "reshape", "relu", "size", "add")


def trace(model):
    """``torch.fx`` trace of ``model``; :class:`InputError` if it cannot be traced."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, not {type(model).__name__}")
    try:
        return fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as exc:                     # fx raises many kinds of errors
        raise InputError(f"cannot trace the model with torch.fx ({type(exc).__name__}: {exc}); "
                       "data-dependent control flow is not supported") from None


def check_supported(graph_module):
    """Raise :class:`InputError` naming the first unsupported layer or operation."""
    modules = dict(graph_module.named_modules())
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            module = modules[node.target]
            if not isinstance(module, SUPPORTED_MODULES):
                raise InputError(f"layer {node.target!r} ({type(module).__name__}) is not supported; supported: "
                               + ", ".join(t.__name__ for t in SUPPORTED_MODULES))
        elif node.op == "call_function" and node.target not in _FUNCTIONS:
            raise InputError(f"operation {node.name!r} ({getattr(node.target, '__name__', node.target)}) is not "
                           "supported; supported functions: add, flatten, relu, relu6")
        elif node.op == "call_method" and node.target not in _METHODS:
            raise InputError(f"method {node.name!r} (.{node.target}) is not supported; supported: {', '.join(_METHODS)}")
        if isinstance(modules.get(node.target), (nn.Conv2d, nn.Linear)):
            weight = modules[node.target].weight
            if not torch.isfinite(weight).all():
                raise InputError(f"layer {node.target!r} has NaN/Inf weights; fix the model before quantizing")


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
