"""The accelerator's program: an integer model mapped onto a PE array and its memories.

:func:`schedule` compiles an :class:`hwq.integer.IntegerModel` (docs/integer-semantics.md) into
what the hardware's sequencer steps through (docs/accelerator.md):

- **Memory map.** Every tensor lives in the activation memory in CHW order, one code per word, in
  a region of its own (:class:`Region`). Regions are reused once no later step reads their tensor,
  unless ``keep_all`` (verification reads every tensor back). A reshape is an alias: CHW order
  makes a flatten free. With ``banks > 1`` the memory is split into banks of
  :attr:`Schedule.bank_words` words (a power of two: the bank is the address's top bits) and a
  step's output never shares a bank with its inputs, so each bank is read or written in a cycle,
  never both: a single-port RAM (the UP5K's SPRAM) can hold it.
- **Weight image.** A :class:`ConvStep` runs on an ``R x C`` output-stationary array: ``R``
  output positions (rows, sharing each weight) times ``C`` output channels (columns, sharing each
  activation). Its weights are one memory word per cycle: ``C`` codes, the weights of the tile's
  ``C`` output channels at one reduction index ``k = (ci, ky, kx)`` (a Linear is a 1 x 1
  convolution of its input features). Output channels of a tile belong to one group, so a grouped
  convolution with fewer than ``C`` channels per group leaves columns idle.
- **Weight store.** With ``weight_capacity`` (the words the on-chip weight memory holds: block
  RAM, initialised in the bitstream) smaller than the weight image, the weights of some conv
  steps live in the **weight store** instead (the UP5K's SPRAM, filled over the input stream
  at start-up: it has no initial contents) and a :class:`WeightLoad` copies a step's words from
  the store into the on-chip memory's **overlay** (the words past the resident ones) just before
  the step runs. Which steps: the fewest store words such that the resident words plus the
  largest spilled step fit the capacity (:func:`spill`).
- **Parameter image.** Per output channel (or per output position of an average pool): bias
  (32 bits), multiplier (16 bits) and shift; plus each step's encoder table and clamp.
- **Cycles.** Each step's cycle count in the array's steady state (:attr:`Step.cycles`).

:func:`execute` runs the schedule in numpy exactly as the sequencer does (gathering the array's
operands by the step's address arithmetic, from the weight image's words), so the mapping is
checked against the integer model before any RTL runs. This module is numpy only.
"""

import dataclasses
import math

import numpy as np

from ..errors import InputError
from ..formats.golden import acc_width
from ..integer import ops as tensor_ops
from ..integer.program import zero_code
from ..integer.requant import Clamp, EncoderTable, requantize

__all__ = ["STORE_BITS", "Array", "Region", "WeightLoad", "spill", "pack_words", "ConvStep", "AddStep", "PoolStep", "AvgPoolStep", "MaxPoolStep", "PadStep", "Schedule",
           "schedule", "execute", "tensor_shapes"]


#: bits of one word of the weight store (an SB_SPRAM256KA is 16 K x 16, Lattice TN1314)
STORE_BITS = 16


@dataclasses.dataclass(frozen=True)
class Array:
    """An ``rows x cols`` PE array: ``rows`` output positions times ``cols`` output channels.

    Raises
    ------
    InputError
        For a dimension that is not a positive integer.
    """

    rows: int
    cols: int

    def __post_init__(self):
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"array {name} must be a positive integer, not {value!r}")

    @classmethod
    def parse(cls, text):
        """``"RxC"`` (e.g. ``"1x16"``) as an :class:`Array`; :class:`InputError` otherwise."""
        parts = str(text).strip().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InputError(f"array must be written ROWSxCOLS, e.g. 1x16, not {text!r}")
        return cls(int(parts[0]), int(parts[1]))

    @property
    def pes(self):
        return self.rows * self.cols

    def __str__(self):
        return f"{self.rows}x{self.cols}"


@dataclasses.dataclass(frozen=True)
class Region:
    """A tensor in the activation memory: ``size`` codes from word ``base``, CHW order."""

    tensor: str
    base: int
    size: int
    shape: tuple


@dataclasses.dataclass(frozen=True)
class Step:
    """What every step has: the op's name, its output region and its cycle count."""

    name: str
    out: Region

    @property
    def cycles(self):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ConvStep(Step):
    """A convolution or linear layer on the PE array.

    The loop nest, outermost first: output-channel tiles ``t`` (``tiles`` of them; tile ``t``
    covers output channels ``channel0[t] ... channel0[t] + C - 1`` of one group), output-position
    tiles (``R`` positions, row-major over ``(oy, ox)``), then the reduction index
    ``k = (ci, ky, kx)`` over ``fan_in``. At ``k``, row ``r`` reads input
    ``(group * in_per_group + ci, oy * sy - pad_top + ky * dy, ox * sx - pad_left + kx * dx)``
    (the pad code outside the input) and column ``c`` reads weight word
    ``weight_base + t * fan_in + k``, lane ``c``.
    """

    src: Region
    in_shape: tuple            # (C, H, W)
    out_shape: tuple           # (O, OH, OW)
    kernel: tuple
    stride: tuple
    padding: tuple             # (top, bottom, left, right)
    dilation: tuple
    groups: int
    a_format: object
    w_format: object
    out_format: object
    pad_code: int
    weight_base: int
    channel0: tuple            # first output channel of every tile
    param_base: int            # first output channel's entry in the parameter image
    clamp: tuple               # (low, high) grid indices
    acc_bits: int
    array: Array

    kind = "conv"

    @property
    def fan_in(self):
        return self.in_shape[0] // self.groups * self.kernel[0] * self.kernel[1]

    @property
    def tiles(self):
        return len(self.channel0)

    @property
    def positions(self):
        return self.out_shape[1] * self.out_shape[2]

    @property
    def macs(self):
        """Multiply-accumulates of the op itself: ``O * OH * OW * fan_in``."""
        return self.out_shape[0] * self.positions * self.fan_in

    @property
    def cycles(self):
        """Steady-state cycles: every (channel tile, position tile) takes ``fan_in`` cycles, or
        the ``R * C`` cycles its results take through the one requantizer when that is longer."""
        position_tiles = math.ceil(self.positions / self.array.rows)
        return self.tiles * position_tiles * max(self.fan_in, self.array.pes)


@dataclasses.dataclass(frozen=True)
class WeightLoad:
    """Copy of one conv step's weight words from the weight store into the on-chip weight
    memory's overlay, run by the sequencer just before that step.

    Attributes
    ----------
    step : str
        The conv step's name.
    src : int
        Its first word in the store image (:attr:`Schedule.store`), in weight words.
    dst : int
        Its first word in the on-chip weight memory (the overlay's base; the step's
        ``weight_base``).
    words : int
        Weight words copied (the step's ``tiles * fan_in``).
    pieces : int
        Store words of :data:`STORE_BITS` per weight word (``ceil(cols * weight_bits / 16)``).
    """

    step: str
    src: int
    dst: int
    words: int
    pieces: int

    kind = "load"

    @property
    def cycles(self):
        """One store read per cycle: ``words * pieces``."""
        return self.words * self.pieces


@dataclasses.dataclass(frozen=True)
class AddStep(Step):
    """``out[i] = requant(dec_a(a[i]) * Ma + dec_b(b[i]) * Mb + K)`` over every element."""

    srcs: tuple                # one or two Regions
    in_formats: tuple
    out_format: object
    multipliers: tuple
    constant: int
    shift: int
    clamp: tuple

    kind = "add"

    @property
    def cycles(self):
        return self.out.size * len(self.srcs)


@dataclasses.dataclass(frozen=True)
class PoolStep(Step):
    """What pooling steps share: a window over every output position of every channel."""

    src: Region
    in_shape: tuple
    out_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple             # (top, left), symmetric

    @property
    def cycles(self):
        """One window element per cycle."""
        return self.out.size * self.kernel[0] * self.kernel[1]


@dataclasses.dataclass(frozen=True)
class AvgPoolStep(PoolStep):
    """Window sums of decoded values times the per-position multiplier, requantized."""

    in_format: object
    out_format: object
    param_base: int            # first output position's entry in the parameter image
    clamp: tuple

    kind = "avgpool"


@dataclasses.dataclass(frozen=True)
class MaxPoolStep(PoolStep):
    """The code of the largest value in each window (padding never wins)."""

    dilation: tuple
    format: object

    kind = "maxpool"


@dataclasses.dataclass(frozen=True)
class PadStep(Step):
    """A copy of the input into a larger plane, the code of 0 around it."""

    src: Region
    in_shape: tuple
    padding: tuple             # (top, bottom, left, right)
    pad_code: int

    kind = "pad"

    @property
    def cycles(self):
        return self.out.size


@dataclasses.dataclass
class Schedule:
    """An integer model compiled for a PE array (:func:`schedule`).

    Attributes
    ----------
    model : IntegerModel
    array : Array
    input, output : Region
    regions : dict of str to Region
        Every tensor's region (aliases share their source's).
    steps : list of Step
        In execution order.
    act_words : int
        Words of activation memory.
    act_bits : int
        Width of an activation word: the widest tensor format's code.
    weights : numpy.ndarray of int64
        The weight image, ``(words, cols)`` codes (lane ``c`` of word ``w``).
    weight_bits : int
        Width of one lane: the widest weight format's code.
    bias, multiplier, shift : numpy.ndarray of int64
        The parameter image, one entry per output channel of every layer and per output position
        of every average pool.
    tables : list of EncoderTable
        Every distinct output format's encoder, in first-use order; ``table_index[step.name]``.
    banks : int
        Banks of the activation memory (1: one memory, no bank rule).
    bank_words : int
        Words per bank: with ``banks > 1`` a power of two, bank ``b`` holding words
        ``b * bank_words ...``; with one bank, ``act_words``.
    store : numpy.ndarray of int64
        The weight store image, ``(words, cols)`` codes: the spilled steps' weight words in
        step order (none without ``weight_capacity``). ``weights`` then holds the resident
        steps' words followed by the overlay (zeros, as long as the largest spilled step).
    loads : dict of str to WeightLoad
        The load that runs before each spilled conv step, by step name.
    weight_capacity : int or None
        As given to :func:`schedule`.
    """

    model: object
    array: Array
    input: Region
    output: Region
    regions: dict
    steps: list
    act_words: int
    act_bits: int
    weights: np.ndarray
    weight_bits: int
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    tables: list
    table_index: dict
    banks: int = 1
    bank_words: int = 0
    store: np.ndarray = None
    loads: dict = dataclasses.field(default_factory=dict)
    weight_capacity: int = None

    def __post_init__(self):
        if self.store is None:
            self.store = np.zeros((0, self.array.cols), np.int64)

    @property
    def store_pieces(self):
        """Store words of :data:`STORE_BITS` per weight word: ``ceil(cols * weight_bits / 16)``."""
        return store_pieces(self.array.cols, self.weight_bits)

    def store_words(self):
        """The weight store's contents, :data:`STORE_BITS`-bit words (each weight word packed as
        :func:`pack_words`, least significant piece first), as a list of ints."""
        mask, pieces = (1 << STORE_BITS) - 1, self.store_pieces
        return [(word >> (STORE_BITS * j)) & mask for word in pack_words(self.store, self.weight_bits)
                for j in range(pieces)]

    def bank_of(self, region):
        """The bank of ``region`` (a Region of this schedule)."""
        return region.base // self.bank_words if self.banks > 1 else 0

    @property
    def macs(self):
        """Multiply-accumulates of one inference."""
        return sum(step.macs for step in self.steps if step.kind == "conv")

    @property
    def cycles(self):
        """Steady-state cycles of one inference (:attr:`Step.cycles` and every
        :attr:`WeightLoad.cycles` summed)."""
        return sum(step.cycles for step in self.steps) + sum(load.cycles for load in self.loads.values())

    def utilization(self, steps=None):
        """PE utilization ``macs / (cycles * R * C)`` over the given conv steps (all by default)."""
        steps = [s for s in (steps or self.steps) if s.kind == "conv"]
        cycles = sum(s.cycles for s in steps)
        return sum(s.macs for s in steps) / (cycles * self.array.pes) if cycles else 0.0


def tensor_shapes(model, input_shape):
    """Per-sample shape of every tensor of ``model`` for an input of ``input_shape`` (CHW or
    (features,)), by each op's own size formula.

    Raises
    ------
    InputError
        Naming the op whose input does not fit it.
    """
    try:
        shapes = {model.input: tuple(int(v) for v in input_shape)}
    except (TypeError, ValueError):
        raise InputError(f"input_shape must be a tuple of integers, not {input_shape!r}") from None
    for op in model.ops:
        what = f"{op.op} {op.name!r}"
        try:
            shapes[op.name] = _out_shape(op, shapes, what)
        except InputError as exc:
            if str(exc).startswith(what):
                raise
            raise InputError(f"{what}: {exc}") from None
    return shapes


def _out_shape(op, shapes, what):
    """Per-sample output shape of ``op`` (:func:`tensor_shapes`)."""
    shape = shapes[op.inputs[0]]
    if op.op == "layer":
        w = op.weight_codes.shape
        if op.kind == "linear":
            if int(np.prod(shape)) != w[1] or len(shape) != 1:
                raise InputError(f"{what}: input of shape {shape}, the layer takes ({w[1]},)")
            out = (w[0],)
        else:
            if len(shape) != 3 or shape[0] != w[1] * op.groups:
                raise InputError(f"{what}: input of shape {shape}, the layer takes {w[1] * op.groups} channels")
            top, bottom, left, right = op.padding
            out = (w[0],
                   tensor_ops.conv_output_size(shape[1] + top + bottom, w[2], op.stride[0], 0, op.dilation[0]),
                   tensor_ops.conv_output_size(shape[2] + left + right, w[3], op.stride[1], 0, op.dilation[1]))
    elif op.op in ("avgpool", "maxpool"):
        if len(shape) != 3:
            raise InputError(f"{what}: input of shape {shape} is not CHW")
        out = (shape[0],) + _pool_plane(op, shape)
        if op.op == "avgpool" and not op.keep_dims:
            out = (shape[0],)
    elif op.op == "pad":
        top, bottom, left, right = op.padding
        out = (shape[0], shape[1] + top + bottom, shape[2] + left + right)
    elif op.op == "reshape":
        if int(np.prod(op.shape)) != int(np.prod(shape)):
            raise InputError(f"{what}: cannot reshape {shape} to {op.shape}")
        out = tuple(op.shape)
    else:                                                      # add
        others = [shapes[name] for name in op.inputs[1:]]
        if any(other != shape for other in others):
            raise InputError(f"{what}: inputs of shapes {[shape] + others} differ")
        out = shape
    return out


def _pool_plane(op, shape):
    """``(OH, OW)`` of pooling ``op`` on a CHW input of ``shape``."""
    dilation = getattr(op, "dilation", (1, 1))
    return tuple(tensor_ops.pool_output_size(shape[1 + i], op.kernel[i], op.stride[i], op.padding[i], dilation[i],
                                             op.ceil_mode) for i in range(2))


def _check_supported(model):
    """:class:`InputError` naming the op and parameter the accelerator cannot run."""
    for op in model.ops:
        if op.op == "layer" and op.kind == "conv2d" and op.padding_mode != "zeros" and any(op.padding):
            raise InputError(f"layer {op.name!r}: padding_mode {op.padding_mode!r} is not supported by the "
                             "accelerator (zero padding only)")
        if op.op == "pad" and op.mode != "constant":
            raise InputError(f"pad {op.name!r}: mode {op.mode!r} is not supported by the accelerator "
                             "(zero padding only)")


class _Allocator:
    """First-fit allocation of activation regions, freed after their last reader."""

    def __init__(self):
        self.free = []          # (base, size), sorted
        self.top = 0

    def peek(self, size):
        """The base :meth:`take` would return, without taking it."""
        return next((base for base, room in self.free if room >= size), self.top)

    def take(self, size):
        for i, (base, room) in enumerate(self.free):
            if room >= size:
                self.free[i:i + 1] = [(base + size, room - size)] if room > size else []
                return base
        base, self.top = self.top, self.top + size
        return base

    def give(self, base, size):
        self.free.append((base, size))
        self.free.sort()
        merged = []
        for start, room in self.free:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + room)
            else:
                merged.append((start, room))
        self.free = merged


def store_pieces(cols, weight_bits):
    """Store words of :data:`STORE_BITS` bits that hold one weight word of ``cols`` lanes of
    ``weight_bits``: ``ceil(cols * weight_bits / 16)``."""
    return -(-cols * weight_bits // STORE_BITS)


def _count(name, value, low, what):
    """``value`` as an int (a Python or NumPy integer, not a bool) of at least ``low``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name} must be {what}, not {value!r}")
    return int(value)


def pack_words(words, lane_bits):
    """Weight words as integers: lane ``c`` of a word at bits ``c * lane_bits`` (two's
    complement codes masked to ``lane_bits``).

    Parameters
    ----------
    words : numpy.ndarray of int, ``(n, cols)``
    lane_bits : int

    Returns
    -------
    list of int
        ``n`` values of ``cols * lane_bits`` bits.
    """
    words = np.asarray(words, dtype=np.int64) & ((1 << lane_bits) - 1)
    return [sum(int(code) << (c * lane_bits) for c, code in enumerate(row)) for row in words]


def spill(sizes, capacity):
    """Which conv steps' weights go to the weight store, for an on-chip memory of ``capacity`` words.

    The resident steps' words plus the overlay (as long as the largest spilled step) must fit
    ``capacity``. Of the sets of steps that do, this returns one with the fewest spilled words
    (the least loading per inference): for each overlay length ``L`` (a step's size), the
    steps no longer than ``L`` whose words sum to the least at or above ``total - capacity + L``
    (a subset sum, exact). Spilling every step always fits when no step exceeds ``capacity``.

    Parameters
    ----------
    sizes : dict of str to int
        Weight words of every conv step, by name, in step order.
    capacity : int
        Words of the on-chip weight memory.

    Returns
    -------
    list of str
        The spilled steps, in step order (empty when every step fits).

    Raises
    ------
    InputError
        Naming the step whose weights alone exceed ``capacity``, or a size that is not a
        non-negative integer or a capacity that is not a positive one.
    """
    if not isinstance(sizes, dict):
        raise InputError(f"sizes must be a dict of step name to weight words, not {type(sizes).__name__}")
    sizes = {name: _count(f"sizes[{name!r}]", words, 0, "a non-negative number of words")
             for name, words in sizes.items()}
    capacity = _count("capacity", capacity, 1, "a positive number of words")
    total = sum(sizes.values())
    if total <= capacity:
        return []
    for name, words in sizes.items():
        if words > capacity:
            raise InputError(f"layer {name!r}: its weights take {words} words of the on-chip weight memory, which "
                             f"holds {capacity} (weight_capacity): it cannot be loaded in one piece")
    best = None
    for overlay in sorted(set(sizes.values())):
        need = total - capacity + overlay                 # words to spill with this overlay
        candidates = [name for name in sizes if sizes[name] <= overlay]
        reach = [1]                                       # bit s of reach[i]: the first i sum to s
        for name in candidates:
            reach.append(reach[-1] | (reach[-1] << sizes[name]))
        above = reach[-1] >> need
        if not above:
            continue
        spilled = need + (above & -above).bit_length() - 1
        if best is not None and spilled >= best[0]:
            continue
        chosen, target = set(), spilled
        for i in range(len(candidates) - 1, -1, -1):      # back through the sums
            if not (reach[i] >> target) & 1:
                chosen.add(candidates[i])
                target -= sizes[candidates[i]]
        best = (spilled, chosen)
    return [name for name in sizes if name in best[1]]


def schedule(model, input_shape, array=Array(1, 16), *, keep_all=False, banks=1, weight_capacity=None):
    """Compile ``model`` for an ``array`` (docs/accelerator.md).

    Parameters
    ----------
    model : IntegerModel
    input_shape : tuple of int
        Per-sample input shape: ``(C, H, W)``, or ``(features,)`` for a model that starts with a
        Linear layer.
    array : Array
    keep_all : bool
        Give every tensor its own region for the whole inference (so all can be read back),
        instead of reusing the regions of tensors no later step reads.
    banks : int, optional
        Banks of the activation memory (default 1). With more, each step's output goes to a
        bank none of its inputs is in (the one where it ends lowest, the lowest such bank on a
        tie; the input tensor in bank 0), regions are reused within a bank, and bank ``b``
        starts at word ``b * bank_words`` (:class:`Schedule`).
    weight_capacity : int, optional
        Words the on-chip weight memory may hold (default: all of them). With fewer than the
        weight image, some steps' weights go to the weight store (:func:`spill`,
        :attr:`Schedule.store`, :class:`WeightLoad`).

    Returns
    -------
    Schedule

    Raises
    ------
    InputError
        Before any work, naming the op and the parameter the accelerator cannot run, or the op
        whose input shape does not fit it.
    """
    if not isinstance(array, Array):
        raise InputError(f"array must be an Array, not {array!r}")
    if isinstance(banks, bool) or not isinstance(banks, int) or banks < 1:
        raise InputError(f"banks must be a positive integer, not {banks!r}")
    if weight_capacity is not None:
        weight_capacity = _count("weight_capacity", weight_capacity, 1, "a positive number of words or None")
    _check_supported(model)
    shapes = tensor_shapes(model, input_shape)
    last_read = {}
    for index, op in enumerate(model.ops):
        for name in op.inputs:
            last_read[name] = index
    alias = {op.name: op.inputs[0] for op in model.ops if op.op == "reshape"}

    def root(name):
        while name in alias:
            name = alias[name]
        return name

    for name in list(last_read):                                  # an alias keeps its source alive
        if name in alias:
            last_read[root(name)] = max(last_read[root(name)], last_read[name])
    last_read[root(model.output)] = len(model.ops)

    allocators, regions, bank = [_Allocator() for _ in range(banks)], {}, {}

    def place(name, sources=()):
        size = int(np.prod(shapes[name]))
        busy = {bank[root(n)] for n in sources} if banks > 1 else set()
        free = [b for b in range(banks) if b not in busy]
        if not free:
            raise InputError(f"banks: op {name!r} reads {len(busy)} banks; its output needs another, so banks "
                             f"must be at least {len(busy) + 1}")
        b = min(free, key=lambda b: (allocators[b].peek(size) + size, b))
        bank[name] = b
        regions[name] = Region(name, allocators[b].take(size), size, shapes[name])   # bank-local base

    place(model.input)
    tables, table_index = [], {}
    weights, bias, multiplier, shift = [], [], [], []
    weight_words, param_entries = 0, 0
    steps = []

    def table_of(fmt):
        table = EncoderTable.of(fmt)
        for i, known in enumerate(tables):
            if known is table:
                return i
        tables.append(table)
        return len(tables) - 1

    for index, op in enumerate(model.ops):
        if op.op == "reshape":
            source = regions[root(op.name)]
            regions[op.name] = dataclasses.replace(source, tensor=op.name, shape=shapes[op.name])
            continue
        place(op.name, op.inputs)
        out, srcs = regions[op.name], [regions[name] for name in op.inputs]
        if op.op == "layer":
            step, words = _conv_step(op, srcs[0], out, shapes, array, weight_words, param_entries)
            weights.append(words)
            weight_words += len(words)
            param_entries += len(op.bias)
            bias.append(op.bias)
            multiplier.append(op.multiplier.multiplier)
            shift.append(op.multiplier.shift)
            table_index[op.name] = table_of(op.out_format)
        elif op.op == "add":
            step = AddStep(op.name, out, tuple(srcs), tuple(op.in_formats), op.out_format, tuple(op.multipliers),
                           int(op.constant), int(op.shift), (op.clamp.low, op.clamp.high))
            table_index[op.name] = table_of(op.out_format)
        elif op.op == "avgpool":
            in_shape = shapes[op.inputs[0]]
            out_hw = _pool_plane(op, in_shape)
            step = AvgPoolStep(op.name, out, srcs[0], in_shape, (in_shape[0],) + out_hw, tuple(op.kernel),
                               tuple(op.stride), tuple(op.padding), op.in_format, op.out_format, param_entries,
                               (op.clamp.low, op.clamp.high))
            m = np.broadcast_to(op.multiplier.multiplier, out_hw).ravel()
            s = np.broadcast_to(op.multiplier.shift, out_hw).ravel()
            multiplier.append(m)
            shift.append(s)
            bias.append(np.zeros(len(m), np.int64))
            param_entries += len(m)
            table_index[op.name] = table_of(op.out_format)
        elif op.op == "maxpool":
            step = MaxPoolStep(op.name, out, srcs[0], shapes[op.inputs[0]], shapes[op.name], tuple(op.kernel),
                               tuple(op.stride), tuple(op.padding), tuple(op.dilation), op.format)
        else:                                                      # pad
            step = PadStep(op.name, out, srcs[0], shapes[op.inputs[0]], tuple(op.padding),
                           zero_code(op.format, f"pad {op.name!r}"))
        steps.append(step)
        if not keep_all:
            for name in set(root(n) for n in op.inputs):
                if last_read.get(name) == index and name != root(model.output):
                    allocators[bank[name]].give(regions[name].base, regions[name].size)

    if banks > 1:                  # bank-local bases to addresses: bank b from b * bank_words
        bank_words = 1 << max(1, max(a.top for a in allocators) - 1).bit_length()
        act_words = max(b * bank_words + a.top for b, a in enumerate(allocators) if a.top)
        moved = {name: dataclasses.replace(r, base=r.base + bank[root(name)] * bank_words)
                 for name, r in regions.items()}
        steps = [_relocate(step, moved) for step in steps]
        regions = moved
    else:
        act_words = bank_words = allocators[0].top
    formats = [model.tensors[name].format for name in regions]
    w_formats = [op.w_format for op in model.ops if op.op == "layer"]
    weight_bits = max((f.bits for f in w_formats), default=1)
    conv = [step for step in steps if step.kind == "conv"]
    spilled = spill({step.name: len(words) for step, words in zip(conv, weights)},
                    weight_capacity) if weight_capacity is not None else []
    store, loads = np.zeros((0, array.cols), np.int64), {}
    if spilled:                    # resident words first, then the overlay; the rest to the store
        resident = [(step, words) for step, words in zip(conv, weights) if step.name not in spilled]
        overlay = sum(len(words) for _, words in resident)
        moved, base, src = {}, 0, 0
        pieces = store_pieces(array.cols, weight_bits)
        for step, words in zip(conv, weights):
            if step.name in spilled:
                moved[step.name] = dataclasses.replace(step, weight_base=overlay)
                loads[step.name] = WeightLoad(step.name, src, overlay, len(words), pieces)
                src += len(words)
            else:
                moved[step.name] = dataclasses.replace(step, weight_base=base)
                base += len(words)
        steps = [moved.get(step.name, step) if step.kind == "conv" else step for step in steps]
        longest = max(len(words) for step, words in zip(conv, weights) if step.name in spilled)
        store = np.concatenate([words for step, words in zip(conv, weights) if step.name in spilled])
        weights = [words for _, words in resident] + [np.zeros((longest, array.cols), np.int64)]
    return Schedule(model, array, regions[model.input], regions[model.output], regions, steps, act_words,
                    max(f.bits for f in formats),
                    np.concatenate(weights) if weights else np.zeros((0, array.cols), np.int64),
                    weight_bits, _cat(bias), _cat(multiplier), _cat(shift), tables, table_index, banks, bank_words,
                    store, loads, weight_capacity)


def _relocate(step, moved):
    """``step`` with every Region it holds (alone or in a tuple) replaced by ``moved[tensor]``."""
    def swap(value):
        if isinstance(value, Region):
            return moved[value.tensor]
        if isinstance(value, tuple) and value and all(isinstance(v, Region) for v in value):
            return tuple(moved[v.tensor] for v in value)
        return value
    return dataclasses.replace(step, **{f.name: swap(getattr(step, f.name)) for f in dataclasses.fields(step)
                                        if f.init})


def _cat(parts):
    return np.concatenate([np.asarray(p, dtype=np.int64).ravel() for p in parts]) if parts else np.zeros(0, np.int64)


def _conv_step(op, src, out, shapes, array, weight_base, param_base):
    """The :class:`ConvStep` of layer ``op`` and its weight words ``(tiles * fan_in, cols)``."""
    codes = op.weight_codes
    if op.kind == "linear":
        in_shape, codes = (codes.shape[1], 1, 1), codes.reshape(codes.shape[0], codes.shape[1], 1, 1)
        kernel, stride, padding, dilation, groups = (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1
        out_shape = (codes.shape[0], 1, 1)
    else:
        in_shape, out_shape = shapes[op.inputs[0]], shapes[op.name]
        kernel, stride, padding, dilation, groups = codes.shape[2:], op.stride, op.padding, op.dilation, op.groups
    channels = codes.shape[0]
    per_group = channels // groups
    channel0 = tuple(g * per_group + start for g in range(groups) for start in range(0, per_group, array.cols))
    fan_in = int(np.prod(codes.shape[1:]))
    flat = codes.reshape(channels, fan_in)
    words = np.zeros((len(channel0), fan_in, array.cols), dtype=np.int64)   # idle lanes: code 0, discarded
    for t, first in enumerate(channel0):
        group_end = (first // per_group + 1) * per_group
        lanes = min(array.cols, group_end - first)
        words[t, :, :lanes] = flat[first:first + lanes].T
    step = ConvStep(op.name, out, src, tuple(in_shape), tuple(out_shape), tuple(kernel), tuple(stride),
                    tuple(padding), tuple(dilation), groups, op.a_format, op.w_format, op.out_format, op.pad_code,
                    weight_base, channel0, param_base, (op.clamp.low, op.clamp.high),
                    acc_width(op.a_format, op.w_format, fan_in), array)
    return step, words.reshape(-1, array.cols)


# --- the sequencer in numpy ----------------------------------------------------------------------

def _conv_addresses(step):
    """Input word address of every (output position, reduction index) of ``step``, and whether
    it lies in the input: ``(positions, fan_in)`` each, for group 0 (add ``group * in_per_group
    * H * W`` for the others)."""
    c_in, h, w = step.in_shape
    in_per_group = c_in // step.groups
    kh, kw = step.kernel
    oy, ox = np.divmod(np.arange(step.positions), step.out_shape[2])
    ci, rest = np.divmod(np.arange(step.fan_in), kh * kw)
    ky, kx = np.divmod(rest, kw)
    iy = oy[:, None] * step.stride[0] - step.padding[0] + ky[None, :] * step.dilation[0]
    ix = ox[:, None] * step.stride[1] - step.padding[2] + kx[None, :] * step.dilation[1]
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    address = step.src.base + ci[None, :] * h * w + np.clip(iy, 0, h - 1) * w + np.clip(ix, 0, w - 1)
    assert in_per_group * kh * kw == step.fan_in
    return address, inside


def execute(sched, codes, trace=None):
    """Run ``sched`` on one sample's input ``codes`` (its input shape) as the sequencer does.

    Parameters
    ----------
    sched : Schedule
    codes : numpy.ndarray of int
        Input codes.
    trace : dict, optional
        Receives every step's output codes by tensor name (in the tensor's shape) as it is
        written (so before a later step reuses its region).

    Returns
    -------
    numpy.ndarray of int64
        The output tensor's codes.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.shape != sched.input.shape:
        raise InputError(f"input codes of shape {codes.shape}, the schedule takes {sched.input.shape}")
    memory = np.zeros(sched.act_words, dtype=np.int64)
    memory[sched.input.base:sched.input.base + sched.input.size] = codes.ravel()
    weights = np.array(sched.weights, dtype=np.int64)             # the on-chip weight memory
    for step in sched.steps:
        load = sched.loads.get(step.name)
        if load is not None:
            weights[load.dst:load.dst + load.words] = sched.store[load.src:load.src + load.words]
        if step.kind == "conv":
            out = _run_conv(sched, step, memory, weights)
        else:
            out = _RUN[step.kind](sched, step, memory)
        memory[step.out.base:step.out.base + step.out.size] = out
        if trace is not None:
            trace[step.name] = out.reshape(step.out.shape)
    return memory[sched.output.base:sched.output.base + sched.output.size].reshape(sched.output.shape)


def _run_conv(sched, step, memory, weight_memory):
    address, inside = _conv_addresses(step)
    c_in, h, w = step.in_shape
    in_per_group = c_in // step.groups
    per_group = step.out_shape[0] // step.groups
    values = np.zeros((step.out_shape[0], step.positions), dtype=np.int64)
    decode_a, decode_w = step.a_format.int_values, step.w_format.int_values
    for t, first in enumerate(step.channel0):
        group = first // per_group
        operand = np.where(inside, memory[address + group * in_per_group * h * w], step.pad_code)
        base = step.weight_base + t * step.fan_in
        words = weight_memory[base:base + step.fan_in]                          # (fan_in, cols)
        lanes = min(sched.array.cols, (group + 1) * per_group - first)
        acc = decode_a[operand] @ decode_w[words[:, :lanes]]                   # (positions, lanes)
        values[first:first + lanes] = acc.T
    entries = slice(step.param_base, step.param_base + step.out_shape[0])
    numerator = (values + sched.bias[entries, None]) * sched.multiplier[entries, None]
    table = sched.tables[sched.table_index[step.name]]
    return requantize(numerator, sched.shift[entries, None], table, Clamp(*step.clamp)).ravel()


def _run_add(sched, step, memory):
    numerator = np.int64(step.constant)
    for src, fmt, m in zip(step.srcs, step.in_formats, step.multipliers):
        numerator = numerator + fmt.int_values[memory[src.base:src.base + src.size]] * np.int64(m)
    table = sched.tables[sched.table_index[step.name]]
    return requantize(np.asarray(numerator, dtype=np.int64), step.shift, table, Clamp(*step.clamp))


def _window_addresses(step, dilation=(1, 1)):
    """Input address of every (channel, output position, window index) and whether it lies in
    the input."""
    c, h, w = step.in_shape
    kh, kw = step.kernel
    oh, ow = step.out_shape[1:] if len(step.out_shape) == 3 else (1, 1)
    oy, ox = np.divmod(np.arange(oh * ow), ow)
    ky, kx = np.divmod(np.arange(kh * kw), kw)
    iy = oy[:, None] * step.stride[0] - step.padding[0] + ky[None, :] * dilation[0]
    ix = ox[:, None] * step.stride[1] - step.padding[1] + kx[None, :] * dilation[1]
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    address = np.clip(iy, 0, h - 1) * w + np.clip(ix, 0, w - 1)
    channel = step.src.base + np.arange(c)[:, None, None] * h * w
    return channel + address[None], np.broadcast_to(inside[None], (c,) + inside.shape)


def _run_avgpool(sched, step, memory):
    address, inside = _window_addresses(step)
    sums = np.where(inside, step.in_format.int_values[memory[address]], 0).sum(axis=2)   # (C, positions)
    entries = slice(step.param_base, step.param_base + sums.shape[1])
    table = sched.tables[sched.table_index[step.name]]
    return requantize(sums * sched.multiplier[None, entries], sched.shift[None, entries], table,
                      Clamp(*step.clamp)).ravel()


def _run_maxpool(sched, step, memory):
    address, inside = _window_addresses(step, step.dilation)
    values = step.format.int_values
    window = np.where(inside, values[memory[address]], np.iinfo(np.int64).min)
    best = np.take_along_axis(memory[address], window.argmax(axis=2)[..., None], axis=2)[..., 0]
    return best.ravel()


def _run_pad(sched, step, memory):
    c, h, w = step.in_shape
    top, bottom, left, right = step.padding
    plane = np.full((c, h + top + bottom, w + left + right), step.pad_code, dtype=np.int64)
    plane[:, top:top + h, left:left + w] = memory[step.src.base:step.src.base + step.src.size].reshape(c, h, w)
    return plane.ravel()


_RUN = {"add": _run_add, "avgpool": _run_avgpool, "maxpool": _run_maxpool, "pad": _run_pad}
