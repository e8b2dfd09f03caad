"""What the accelerator's activation memory must hold after an inference, and where it does not.

The verification benches read the whole activation memory back after each inference
(``Accelerator(sched, dump=True)`` with a ``schedule(..., keep_all=True)``: every tensor keeps its
own region, CHW order, one code per word). This module says what that image must be, from the
integer model alone (:meth:`hwq.integer.IntegerModel.run_codes`), and turns a wrong image into
records a person can act on: the first wrong tensor first, each wrong code with its channel,
position, expected and actual code and the operands it was computed from (a layer's exact
accumulator, its input window and weight codes; an add's or pool's input codes).

Functions
---------
expected_dump(sched, imodel, codes)
    The memory image and the mask of the words that belong to a tensor.
find_mismatches(sched, imodel, codes, words, limit=10)
    :class:`Mismatch` records, in step order.
describe(mismatches)
    The records as a readable message.

Words that belong to no region are "don't care": the mask of :func:`expected_dump` is False
there and :func:`find_mismatches` never looks at them (with ``keep_all`` regions are packed, so
there are none in practice). A word the simulator could not resolve (X or Z) is passed as a
negative number and reported as ``X``.

This module is numpy only (it imports :mod:`hwq.accel.schedule` for the schedule's own address
arithmetic, so the operands shown are the ones the sequencer gathers).
"""

import dataclasses

import numpy as np

from ..errors import InputError
from .schedule import Schedule, _conv_addresses, _window_addresses

__all__ = ["Mismatch", "expected_dump", "find_mismatches", "describe"]

#: operand codes shown per list in :func:`describe` (the rest are counted)
SHOWN = 16


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One activation-memory word that differs from the integer model.

    Attributes
    ----------
    tensor : str
        The tensor (the op's output, or the model's input) whose region holds the word.
    kind : str
        ``"layer"`` (conv or linear), ``"add"``, ``"avgpool"``, ``"maxpool"``, ``"pad"`` or
        ``"input"`` (the input writer).
    channel : int
        Channel of the word in the tensor (CHW), or its feature index for a 1-D tensor.
    position : tuple of int or None
        ``(y, x)`` in the channel's plane; None for a 1-D tensor or a linear layer.
    address : int
        Word address in the activation memory.
    expected, actual : int
        The integer model's code and the code read back (negative: X or Z).
    differing, size : int
        Codes of the tensor that differ, of ``size``.
    operands : dict
        What the expected code was computed from: for a layer ``accumulator`` (exact, bias not
        added), ``bias``, ``inputs`` (the expected input window codes, ``(C_in / groups * kh *
        kw,)`` in ``(ci, ky, kx)`` order, the pad code outside the input), ``read`` (the same
        window in the words read back, pad code outside), ``window`` (its shape), ``source``
        (the input tensor) and ``weights`` (the output channel's weight codes, same order); for
        an add ``inputs`` and ``read`` (one code per input tensor) and ``source`` (their names);
        for a pool ``inputs`` and ``read`` (the window codes inside the input) and ``source``;
        for a pad ``inputs`` and ``read`` (the source code, or empty in the border).
    """

    tensor: str
    kind: str
    channel: int
    position: tuple
    address: int
    expected: int
    actual: int
    differing: int
    size: int
    operands: dict


def _check(sched, imodel, codes):
    """``codes`` as int64 of the schedule's input shape; :class:`InputError` naming the bad
    parameter otherwise (also for a schedule whose regions share words: not ``keep_all``)."""
    if not isinstance(sched, Schedule):
        raise InputError(f"sched must be a Schedule (hwq.accel.schedule), not {type(sched).__name__}")
    if not hasattr(imodel, "run_codes") or not hasattr(imodel, "ops"):
        raise InputError(f"imodel must be an IntegerModel (hwq.integer), not {type(imodel).__name__}")
    known = set(imodel.tensors)
    missing = sorted(set(sched.regions) - known)
    if missing:
        raise InputError(f"sched has tensors {', '.join(missing)} that imodel lacks: not a schedule of this model")
    codes = np.asarray(codes)
    if codes.shape != tuple(sched.input.shape) or not np.issubdtype(codes.dtype, np.integer):
        raise InputError(f"codes must be integer input codes of shape {tuple(sched.input.shape)}, "
                         f"not {codes.dtype} of shape {codes.shape}")
    aliases = {op.name for op in imodel.ops if op.op == "reshape"}
    spans = sorted((r.base, r.base + r.size, name) for name, r in sched.regions.items() if name not in aliases)
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            raise InputError(f"sched: tensors {first!r} and {second!r} share activation words; compile it with "
                             "schedule(..., keep_all=True) to read every tensor back")
    return codes.astype(np.int64)


def _run(sched, imodel, codes):
    """``(image, mask, trace)``: the expected memory image, its mask, and the integer model's
    trace of one sample (batch dimension dropped)."""
    trace = {}
    imodel.run_codes(codes[None], trace=trace)
    trace = {name: np.asarray(value)[0] for name, value in trace.items()}
    image = np.zeros(sched.act_words, dtype=np.int64)
    mask = np.zeros(sched.act_words, dtype=bool)
    for name, region in sched.regions.items():
        image[region.base:region.base + region.size] = trace[name].ravel()
        mask[region.base:region.base + region.size] = True
    return image, mask, trace


def expected_dump(sched, imodel, codes):
    """The activation memory after one inference of ``sched`` on input ``codes``.

    Parameters
    ----------
    sched : Schedule
        Compiled with ``keep_all=True`` (every tensor in a region of its own).
    imodel : IntegerModel
        The model ``sched`` was compiled from: it gives every tensor's codes.
    codes : numpy.ndarray of int
        One image's input codes, ``sched.input.shape`` (CHW).

    Returns
    -------
    image : numpy.ndarray of int64
        ``(sched.act_words,)``: every region's codes at its base, CHW order; 0 elsewhere.
    mask : numpy.ndarray of bool
        ``(sched.act_words,)``: True for the words of a region (the words to compare).

    Raises
    ------
    InputError
        ``sched`` is not a Schedule or reuses words between tensors (not ``keep_all``),
        ``imodel`` is not its model, or ``codes`` has the wrong shape or type.
    """
    codes = _check(sched, imodel, codes)
    image, mask, _ = _run(sched, imodel, codes)
    return image, mask


def find_mismatches(sched, imodel, codes, words, limit=10):
    """The words of a read-back memory image that differ from the integer model.

    Parameters
    ----------
    sched, imodel, codes
        As in :func:`expected_dump`.
    words : sequence of int
        ``sched.act_words`` words read back after the inference on ``codes`` (negative: X/Z).
    limit : int
        Records to return at most (the first ones in step order).

    Returns
    -------
    list of Mismatch
        The input tensor first, then each step's output tensor in step order; within a tensor,
        in word order. Empty if every word of every region matches.

    Raises
    ------
    InputError
        As :func:`expected_dump`, or ``words`` of another length, or ``limit`` not a positive
        integer.
    """
    codes = _check(sched, imodel, codes)
    words = np.asarray(words)
    if words.shape != (sched.act_words,) or not (words.size == 0 or np.issubdtype(words.dtype, np.integer)):
        raise InputError(f"words must be {sched.act_words} integers (the activation memory), not "
                         f"{words.dtype} of shape {words.shape}")
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise InputError(f"limit must be a positive integer, not {limit!r}")
    words = words.astype(np.int64)
    image, _, trace = _run(sched, imodel, codes)
    ops = {op.name: op for op in imodel.ops}
    out = []
    for step in [None] + list(sched.steps):
        region = sched.input if step is None else step.out
        span = slice(region.base, region.base + region.size)
        bad = np.flatnonzero(words[span] != image[span])
        for index in bad[:limit - len(out)]:
            out.append(_record(sched, step, ops, trace, image, words, region, int(index), len(bad)))
        if len(out) >= limit:
            break
    return out


def _record(sched, step, ops, trace, image, words, region, index, differing):
    address = region.base + index
    if step is None:
        kind, shape = "input", region.shape
    else:
        kind = "layer" if step.kind == "conv" else step.kind
        shape = getattr(step, "out_shape", region.shape)
    where = np.unravel_index(index, shape)
    channel = int(where[0])
    position = tuple(int(v) for v in where[1:]) if len(shape) == 3 else None
    operands = {}
    if step is not None:
        op = ops[step.name]
        operands = _OPERANDS[step.kind](step, op, trace, image, words, channel, index)
        if step.kind == "conv" and op.kind == "linear":
            position = None
    return Mismatch(region.tensor, kind, channel, position, address, int(image[address]), int(words[address]),
                    differing, region.size, operands)


def _conv_operands(step, op, trace, image, words, channel, index):
    address, inside = _conv_addresses(step)                 # (positions, fan_in), group 0
    c_in, h, w = step.in_shape
    per_group = step.out_shape[0] // step.groups
    address = address + channel // per_group * (c_in // step.groups) * h * w
    p = index % step.positions
    acc = trace[op.name + ".acc"].reshape(step.out_shape[0], -1)[channel, p]     # (O, OH * OW) or (O, 1)
    return {"accumulator": int(acc), "bias": int(op.bias[channel]), "source": op.inputs[0],
            "window": (c_in // step.groups,) + tuple(step.kernel),
            "inputs": np.where(inside[p], image[address[p]], step.pad_code),
            "read": np.where(inside[p], words[address[p]], step.pad_code),
            "weights": np.asarray(op.weight_codes[channel]).ravel()}


def _add_operands(step, op, trace, image, words, channel, index):
    return {"source": tuple(op.inputs),
            "inputs": np.array([image[src.base + index] for src in step.srcs]),
            "read": np.array([words[src.base + index] for src in step.srcs])}


def _pool_operands(step, op, trace, image, words, channel, index):
    address, inside = _window_addresses(step, getattr(step, "dilation", (1, 1)))   # (C, positions, window)
    p = index % (address.shape[1])
    where = address[channel, p][inside[channel, p]]
    return {"source": op.inputs[0], "inputs": image[where], "read": words[where]}


def _pad_operands(step, op, trace, image, words, channel, index):
    c, h, w = step.in_shape
    top, _, left, _ = step.padding
    _, y, x = np.unravel_index(index, step.out.shape)
    y, x = y - top, x - left
    where = [step.src.base + (channel * h + y) * w + x] if 0 <= y < h and 0 <= x < w else []
    return {"source": op.inputs[0], "inputs": image[where], "read": words[where]}


_OPERANDS = {"conv": _conv_operands, "add": _add_operands, "avgpool": _pool_operands, "maxpool": _pool_operands,
             "pad": _pad_operands}


def _codes(values):
    """Codes as text: at most :data:`SHOWN`, then how many there are; ``X`` for a negative one."""
    values = [int(v) for v in np.asarray(values).ravel()]
    shown = ", ".join("X" if v < 0 else str(v) for v in values[:SHOWN])
    return f"[{shown}{f', ... ({len(values)} in all)' if len(values) > SHOWN else ''}]"


def describe(mismatches):
    """``mismatches`` (from :func:`find_mismatches`) as a message, one line per record.

    A line reads, e.g., ``layer conv2: channel 3, position (4, 5) (word 1234; 37 of 1024 codes
    differ): expected code 17, got 21; accumulator 1234, bias -5; inputs conv1 window 16x3x3
    [..]; weights [..]``, and adds the window read back when it differs from the expected one
    (so a wrong operand is told from a wrong computation). ``""`` for no mismatch.
    """
    lines = []
    for m in mismatches:
        where = f"channel {m.channel}" + ("" if m.position is None else f", position {m.position}")
        got = "X" if m.actual < 0 else str(m.actual)
        line = (f"{m.kind} {m.tensor}: {where} (word {m.address}; {m.differing} of {m.size} codes differ): "
                f"expected code {m.expected}, got {got}")
        o = m.operands
        if "accumulator" in o:
            line += f"; accumulator {o['accumulator']}, bias {o['bias']}"
        if "inputs" in o:
            source = o["source"] if isinstance(o["source"], str) else " and ".join(o["source"])
            window = f" window {'x'.join(map(str, o['window']))}" if "window" in o else ""
            line += f"; inputs {source}{window} {_codes(o['inputs'])}"
            if not np.array_equal(o["inputs"], o["read"]):
                differ = int(np.count_nonzero(np.asarray(o["inputs"]) != np.asarray(o["read"])))
                line += f" (read back {_codes(o['read'])}: {differ} differ)"
        if "weights" in o:
            line += f"; weights {_codes(o['weights'])}"
        lines.append(line)
    return "\n".join(lines)
