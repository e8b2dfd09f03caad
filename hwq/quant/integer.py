"""From a fake-quantized model to its integer program, and the check that both agree.

:func:`integer_model` turns a :class:`~hwq.quant.api.QuantizedModel` into an
:class:`hwq.integer.IntegerModel` (numpy only, what the hardware computes). :func:`compare` runs
both on the same input and counts differing codes op by op, and differing accumulators layer by
layer: the fake-quantized model computes its accumulators with a float64 torch convolution and
encodes with the formats' golden encoders, the integer model with the golden ``matmul`` over
im2col and threshold tables, so agreement is a real check, not the code compared with itself.
"""

import numpy as np
import torch

from ..errors import InputError
from ..integer.model import IntegerModel
from ..integer.program import MaxPool, Pad, Reshape, TensorFormat

__all__ = ["integer_model", "IntegerModel", "compare"]


def _tensor_format(quantizer):
    return TensorFormat(quantizer.format, float(quantizer.scale[0]))


def integer_model(qmodel):
    """The :class:`~hwq.integer.IntegerModel` of a :class:`~hwq.quant.api.QuantizedModel`.

    Raises
    ------
    InputError
        If a layer is kept in float (naming it).
    """
    if qmodel.float_layers:
        raise InputError(f"integer-only inference needs every Conv2d/Linear quantized; "
                         f"{', '.join(qmodel.float_layers)} are kept in float")
    plan = qmodel.plan
    resolve = lambda name: _resolve(name, plan.alias)
    names = {op.name: (op.target if op.kind == "layer" else op.name) for op in qmodel.ops}
    clash = {target for target in (op.target for op in qmodel.ops if op.kind == "layer")
             if target in names and names[target] != target}
    if clash:
        raise InputError(f"layer name(s) {', '.join(sorted(clash))} equal the name of another node of the graph; "
                         "rename the module(s)")
    tensors, ops = {}, []
    input_name = output_name = input_shape = None
    for op in qmodel.ops:
        inputs = [names[resolve(name)] for name in op.inputs]
        if op.kind == "input":
            input_name = op.name
            input_shape = tuple(op.shape[1:]) if op.shape else None
            tensors[op.name] = _tensor_format(qmodel.tensors[op.name])
        elif op.kind == "output":
            output_name = inputs[0]
        elif op.name in plan.alias or op.kind == "identity":
            names[op.name] = inputs[0] if op.kind == "identity" else names[resolve(op.name)]
        elif op.kind in ("layer", "add", "avgpool"):
            program = qmodel.quant_ops[op.name].program(inputs)
            if op.kind == "layer":
                program.name = op.target
            tensors[names[op.name]] = _tensor_format(qmodel.tensors[op.name])
            ops.append(program)
        else:
            source = tensors[inputs[0]]
            fmt = source.format
            a = op.attrs
            if op.kind == "pad":
                ops.append(Pad(op.name, inputs, fmt, a["padding"], a["mode"]))
            elif op.kind == "maxpool":
                ops.append(MaxPool(op.name, inputs, fmt, a["kernel"], a["stride"], a["padding"], a["dilation"],
                                   a["ceil_mode"]))
            elif op.kind == "reshape":
                ops.append(Reshape(op.name, inputs, a["shape"]))
            else:
                raise InputError(f"node {op.name!r}: op {op.kind!r} has no integer program")
            tensors[op.name] = source
    return IntegerModel(input_name, output_name, tensors, ops, input_shape=input_shape)


def _resolve(name, alias):
    while name in alias:
        name = alias[name]
    return name


def compare(qmodel, integer, x):
    """Run the fake-quantized and the integer model on input ``x``; count what differs.

    Returns
    -------
    dict
        ``ops``: per requantizing op, ``codes`` (how many), ``differing_codes`` and, for layers,
        ``differing_accumulators``, with the ``first`` difference (index, both codes);
        ``input``: the same for the input codes; ``first``: the first op that differs (or
        ``None``); ``differing_codes``: the total; ``output_agrees``: whether the output codes
        are equal.
    """
    traced = {}
    for module in qmodel.quant_ops.values():
        module.trace = traced
    try:
        with torch.no_grad():
            qmodel.eval()(torch.as_tensor(x))
    finally:
        for module in qmodel.quant_ops.values():
            module.trace = None
    trace = {}
    input_codes = integer.quantize_input(x)
    integer.run_codes(input_codes, trace)
    report = {"ops": {}, "first": None, "differing_codes": 0}
    first_layer = next(iter(qmodel.layers.values()))
    fake_input = first_layer.input_quantizer.quantize(x)
    report["input"] = _differences(fake_input, input_codes)
    for name, fake in traced.items():
        if name.endswith(".acc"):
            continue
        entry = _differences(fake, trace[name])
        if name + ".acc" in traced:
            acc = _differences(traced[name + ".acc"], trace[name + ".acc"])
            entry["differing_accumulators"] = acc["differing_codes"]
        report["ops"][name] = entry
        report["differing_codes"] += entry["differing_codes"] + entry.get("differing_accumulators", 0)
        if report["first"] is None and (entry["differing_codes"] or entry.get("differing_accumulators")):
            report["first"] = {"op": name, **entry.get("first", {})}
    report["output_agrees"] = bool(np.array_equal(traced.get(integer.output), trace[integer.output]))
    return report


def _differences(fake, integer):
    fake, integer = np.asarray(fake), np.asarray(integer)
    if fake.shape != integer.shape:
        return {"codes": int(integer.size), "differing_codes": int(max(fake.size, integer.size)),
                "first": {"shape": [list(fake.shape), list(integer.shape)]}}
    differ = np.argwhere(fake != integer)
    entry = {"codes": int(fake.size), "differing_codes": int(len(differ))}
    if len(differ):
        index = tuple(int(i) for i in differ[0])
        entry["first"] = {"index": list(index), "fake": int(fake[index]), "integer": int(integer[index])}
    return entry
