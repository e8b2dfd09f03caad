"""Which tensor has which format, and where each clamp folds in.

Every tensor is made by a *source*: the model input, a quantized layer, a residual add or an
average pool (or a layer kept in float). Padding, max pooling, reshapes and identities carry a
source's codes unchanged, and a clamp (ReLU, ReLU6, hardtanh) after a source, through such ops,
becomes that source's clamp bounds. This module works that out from the op list
(:func:`hwq.quant.graph.graph_ops`); it knows nothing of torch or calibration.

Format of each source's tensor (docs/integer-semantics.md, "Tensors and ops"):

- read by quantized layers: their activation format, which must be the same for all of them
  (else :class:`~hwq.errors.InputError` naming the layers and formats);
- else, the model's output: the output format (one grid for every class);
- else (read only by adds and average pools): the model's default activation format.
"""

import dataclasses

from ..errors import InputError
from .graph import TRANSPARENT

__all__ = ["TensorPlan", "plan_tensors"]


@dataclasses.dataclass
class TensorPlan:
    """What :func:`plan_tensors` decided.

    Attributes
    ----------
    alias : dict of str to str
        Ops that vanish (folded clamps), mapped to the op whose tensor they pass on.
    source : dict of str to str
        For every op's output (and the input), the source op whose codes it carries.
    clamps : dict of str to (float or None, float or None)
        The real clamp bounds of every source (``(None, None)``: none).
    specs : dict of str to FormatSpec
        The format spec of every source's tensor that something quantized reads or makes (a
        quantized op's tensor read only in float takes the output format).
    float_clamps : list of str
        Clamps left as float ops (after a layer kept in float).
    """

    alias: dict
    source: dict
    clamps: dict
    specs: dict
    float_clamps: list


def _users(ops):
    users = {op.name: [] for op in ops}
    for op in ops:
        for name in op.inputs:
            users[name].append(op)
    return users


def plan_tensors(ops, layer_specs, float_layers, activation_spec, output_spec):
    """Fold clamps, find every tensor's source and its format spec.

    Parameters
    ----------
    ops : list of GraphOp
    layer_specs : dict of str to FormatSpec
        Activation (input) spec of every quantized layer, by layer (module) name.
    float_layers : set of str
        Layers kept in float.
    activation_spec, output_spec : FormatSpec
        Defaults for tensors read only by adds and pools, and for the model's output.

    Returns
    -------
    TensorPlan

    Raises
    ------
    InputError
        A clamp that cannot fold into the op that makes its tensor, a layer called twice, or a
        tensor that quantized layers want in different formats -- naming them.
    """
    by_name = {op.name: op for op in ops}
    users = _users(ops)
    seen_targets = {}
    for op in ops:
        if op.kind == "layer":
            if op.target in seen_targets:
                raise InputError(f"layer {op.target!r} is called twice ({seen_targets[op.target]!r} and {op.name!r}); "
                                 "the integer path needs one call per layer (weights are not shared)")
            seen_targets[op.target] = op.name
    is_float = lambda op: op.kind == "layer" and op.target in float_layers
    alias, source, clamps, float_clamps = {}, {}, {}, []
    for op in ops:
        if op.kind in ("input", "layer", "add", "avgpool"):
            source[op.name] = op.name
            clamps[op.name] = (None, None)
        elif op.kind in TRANSPARENT:
            source[op.name] = source[op.inputs[0]]
        elif op.kind == "clamp":
            origin = _fold(op, by_name, users, alias)
            if is_float(by_name[origin]):
                float_clamps.append(op.name)
                source[op.name] = op.name
                clamps[op.name] = (None, None)
                continue
            low, high = clamps[origin]
            if op.attrs["low"] is not None:
                low = op.attrs["low"] if low is None else max(low, op.attrs["low"])
            if op.attrs["high"] is not None:
                high = op.attrs["high"] if high is None else min(high, op.attrs["high"])
            if low is not None and high is not None and low > high:
                raise InputError(f"node {op.name!r} (clamp): its bounds and the clamps before it leave nothing")
            clamps[origin] = (low, high)
            alias[op.name] = op.inputs[0]
            source[op.name] = origin
        elif op.kind == "output":
            source[op.name] = source[op.inputs[0]]
    specs = {}
    readers = {}
    for op in ops:
        if op.kind in ("layer", "add", "avgpool", "output") and not is_float(op):
            for name in op.inputs:
                readers.setdefault(source[name], []).append(op)
    for origin, ops_reading in readers.items():
        if is_float(by_name[origin]) and all(op.kind == "output" for op in ops_reading):
            continue                                            # a float layer's output, read by nothing quantized
        layers = [op for op in ops_reading if op.kind == "layer"]
        if layers:
            wanted = {op.target: layer_specs[op.target] for op in layers}
            if len(set(wanted.values())) > 1:
                shown = ", ".join(f"{name} ({spec})" for name, spec in wanted.items())
                raise InputError(f"the tensor made by {origin!r} is read by layers that want different activation "
                                 f"formats: {shown}; one tensor has one format, so give them the same one")
            specs[origin] = next(iter(wanted.values()))
        elif any(op.kind == "output" for op in ops_reading):
            specs[origin] = output_spec
        else:
            specs[origin] = activation_spec
    for op in ops:                                   # made by a quantized op but read only in float
        if op.kind in ("layer", "add", "avgpool") and not is_float(op) and op.name not in specs:
            specs[op.name] = output_spec
    return TensorPlan(alias, source, clamps, specs, float_clamps)


def _fold(clamp, by_name, users, alias):
    """The source a clamp folds into: back through transparent ops and folded clamps, each read
    by nothing else; :class:`InputError` if the chain branches or passes zero padding that the
    clamp would change."""
    low, high = clamp.attrs["low"], clamp.attrs["high"]
    current = by_name[clamp.inputs[0]]
    while current.kind in TRANSPARENT or current.name in alias:
        if len(users[current.name]) != 1:
            break
        if current.kind == "pad" and current.attrs["mode"] == "constant" and \
                not ((low is None or low <= 0) and (high is None or high >= 0)):
            raise InputError(f"node {clamp.name!r} (clamp [{low}, {high}]) follows zero padding {current.name!r} "
                             "and would change the padded zeros; clamp before padding")
        current = by_name[current.inputs[0]]
    if current.kind in ("layer", "add", "avgpool", "input") and len(users[current.name]) == 1:
        if current.kind == "input":
            raise InputError(f"node {clamp.name!r} (clamp) acts on the model input; clamp the data instead")
        return current.name
    what = f"{current.name!r} ({current.kind})"
    raise InputError(f"node {clamp.name!r} (clamp) cannot fold into the op that makes its tensor: {what} is also "
                     "read elsewhere, so its codes cannot carry the clamp; the integer path needs ReLU/ReLU6/"
                     "hardtanh right after a layer, add or average pool (through padding, pooling or reshapes only)")
