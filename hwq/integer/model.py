"""The integer reference model: a quantized network run on codes, with numpy alone.

An :class:`IntegerModel` is a list of ops (:mod:`hwq.integer.program`) over named tensors, each
tensor with one format and scale. The host quantizes the input image once with the input
tensor's format; from there on only codes travel, and every op that makes a new tensor rounds
exactly once. It is what the accelerator must compute, bit for bit
(docs/integer-semantics.md).
"""

import numpy as np

from ..errors import InputError

__all__ = ["IntegerModel"]


class IntegerModel:
    """A quantized network as integer ops.

    Parameters
    ----------
    input : str
        Name of the input tensor.
    output : str
        Name of the output tensor (the scores: one grid for every class).
    tensors : dict of str to TensorFormat
        Every tensor's format and scale.
    ops : list
        :mod:`hwq.integer.program` ops in execution order; each reads tensors named by its
        ``inputs`` and writes the tensor named by its ``name``.
    input_shape : tuple of int or None, optional
        The shape of one input sample, without the batch dimension (``(C, H, W)`` for an
        image, ``(features,)`` for a vector): what the accelerator's memory map and loop
        bounds are compiled for. ``None`` (default) when unknown; :func:`hwq.accel.schedule`
        then needs it given.

    Raises
    ------
    InputError
        If an op reads a tensor that nothing wrote before it, the output is never written, or
        ``input_shape`` is not a tuple of positive integers.
    """

    def __init__(self, input, output, tensors, ops, input_shape=None):
        self.input, self.output, self.tensors, self.ops = input, output, dict(tensors), list(ops)
        if input_shape is not None:
            shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
            if not shape or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in shape):
                raise InputError(f"input_shape must be a tuple of positive integers (one sample, no batch "
                                 f"dimension), not {input_shape!r}")
            input_shape = tuple(int(v) for v in shape)
        self.input_shape = input_shape
        known = {input}
        for op in self.ops:
            missing = [name for name in op.inputs if name not in known]
            if missing:
                raise InputError(f"op {op.name!r} reads {', '.join(missing)} before anything writes it")
            if op.name not in self.tensors:
                raise InputError(f"op {op.name!r} writes a tensor with no format")
            known.add(op.name)
        if output not in known:
            raise InputError(f"nothing writes the output tensor {output!r}")

    @property
    def layers(self):
        """The convolution and linear layers by name, in execution order."""
        return {op.name: op for op in self.ops if op.op == "layer"}

    def quantize_input(self, x):
        """Codes of real input ``x`` (e.g. a normalized image batch) in the input's format."""
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return self.tensors[self.input].quantize(np.asarray(x, dtype=np.float64))

    def run_codes(self, codes, trace=None):
        """Run on input ``codes``; return the output codes.

        ``trace``, a dict, receives every tensor's codes by name, and each layer's exact
        accumulators (bias not added) under ``"<layer>.acc"``.
        """
        env = {self.input: np.asarray(codes, dtype=np.int64)}
        for op in self.ops:
            env[op.name] = op.run(*(env[name] for name in op.inputs), trace=trace)
        if trace is not None:
            trace.update(env)
        return env[self.output]

    def run(self, x, trace=None):
        """Run on real input ``x``; return the real output values (float64)."""
        return self.tensors[self.output].to_real(self.run_codes(self.quantize_input(x), trace))
