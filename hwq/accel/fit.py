"""Will an accelerator's memories fit a part? Counted from the elaborated design, before synthesis.

The accelerator's memories are :class:`amaranth.lib.memory.Memory` instances (the activation
memory, the weight image, the parameter image, ...). :func:`memories` elaborates a design and
lists every one with its width, depth, ports and whether it has initial contents;
:func:`memory_budget` maps them onto a part's block memories with the rules below and
:func:`check_fit` refuses a design whose memories cannot fit, naming each memory, what it needs
and the shortfall -- before any Verilog is written or any tool runs.

Mapping rules (the iCE40 block memories, Lattice TN1250 "Memory Usage Guide for iCE40
Devices" and TN1314 "iCE40 SPRAM Usage Guide"):

- **EBR** (``SB_RAM40_4K``, 4 kbit): one read and one write port, configured as 256 x 16,
  512 x 8, 1024 x 4 or 2048 x 2. A memory of width ``W`` and depth ``D`` takes the fewest blocks
  over those configurations, ``ceil(W / w) * ceil(D / d)``, times its read ports (a copy per
  read port, written together). Memories with initial contents (weights, parameters) must be
  EBR: they are initialised in the bitstream.
- **SPRAM** (``SB_SPRAM256KA``, 16 K x 16, single port, *not* initialised at configuration):
  the memories the design marks for it (attribute ``ram_style = "huge"``: the activation banks
  of :mod:`hwq.accel.memory`, single-ported, written before they are read) go here on a part
  that has SPRAM, ``ceil(W / 16) * ceil(D / 16384)`` blocks per read port; elsewhere they are
  EBR too.
- A memory of fewer than :data:`LOGIC_BITS` bits is left to yosys, which builds it from
  flip-flops and LUTs; it is listed but counts against no block memory.

These are the counts yosys's ``memory_libmap`` reaches for plain memories; the synthesis
report gives the real ones.
"""

import dataclasses
import math

from ..errors import InputError

__all__ = ["PARTS", "LOGIC_BITS", "Part", "MemoryUse", "memories", "ebr_blocks", "ebr_capacity", "spram_blocks",
           "memory_budget", "check_fit"]

#: a memory smaller than this many bits is built from logic, not a block memory
LOGIC_BITS = 1024
#: EBR configurations (width, depth) of an iCE40 SB_RAM40_4K
EBR_SHAPES = ((16, 256), (8, 512), (4, 1024), (2, 2048))
#: SPRAM shape (width, depth) of an iCE40UP SB_SPRAM256KA
SPRAM_SHAPE = (16, 16384)


@dataclasses.dataclass(frozen=True)
class Part:
    """The block resources of one device (iCE40 family data sheet, FPGA-DS-02008 / DS1040).

    Attributes
    ----------
    name : str
        The ``--target`` name.
    part : str
        Lattice part name.
    lcs, ebr, spram, dsp : int
        Logic cells, 4-kbit EBR blocks, 256-kbit SPRAM blocks and SB_MAC16 DSPs.
    """

    name: str
    part: str
    lcs: int
    ebr: int
    spram: int
    dsp: int


#: parts by ``--target`` name; ``sim`` is the unconstrained simulation target (nothing refused)
PARTS = {
    "up5k": Part("up5k", "iCE40UP5K", 5280, 30, 4, 8),
    "hx8k": Part("hx8k", "iCE40HX8K", 7680, 32, 0, 0),
    "sim": Part("sim", "simulation (unconstrained)", math.inf, math.inf, math.inf, math.inf),
}


@dataclasses.dataclass(frozen=True)
class MemoryUse:
    """One memory of a design and the block memory it maps to.

    Attributes
    ----------
    name : str
        Its hierarchical name in the design (``conv.weights``).
    width, depth : int
        Bits per word and words.
    read_ports, write_ports : int
    initialised : bool
        Whether any word has a non-zero initial value (it must be initialised in the bitstream).
    spram : bool
        Whether the design marks it for SPRAM (``ram_style = "huge"``).
    kind : str
        ``"ebr"``, ``"spram"`` or ``"logic"``.
    blocks : int
        Blocks of ``kind`` it takes (0 for logic).
    """

    name: str
    width: int
    depth: int
    read_ports: int
    write_ports: int
    initialised: bool
    spram: bool = False
    kind: str = "logic"
    blocks: int = 0

    @property
    def bits(self):
        """``width * depth``."""
        return self.width * self.depth

    def describe(self):
        return f"{self.name} ({self.depth} x {self.width} bits, {self.read_ports} read port(s))"


def ebr_blocks(width, depth):
    """SB_RAM40_4K blocks of one copy of a ``depth x width`` memory (the best configuration)."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in EBR_SHAPES)


def ebr_capacity(width, blocks):
    """Most words of ``width`` bits one memory can hold in ``blocks`` SB_RAM40_4K (the best
    configuration: ``blocks // ceil(width / w)`` blocks deep of ``d`` words each)."""
    return max((blocks // math.ceil(width / w)) * d for w, d in EBR_SHAPES)


def spram_blocks(width, depth):
    """SB_SPRAM256KA blocks of one copy of a ``depth x width`` memory."""
    w, d = SPRAM_SHAPE
    return math.ceil(width / w) * math.ceil(depth / d)


def memories(design):
    """Every memory of ``design`` (an Amaranth elaboratable), elaborated with no platform.

    Returns
    -------
    list of MemoryUse
        In elaboration order, ``kind`` not yet assigned (``"logic"``).
    """
    from amaranth.hdl import Fragment
    from amaranth.hdl._mem import MemoryInstance          # the elaborated form of lib.memory.Memory

    found = []

    def walk(fragment, path):
        if isinstance(fragment, MemoryInstance):
            data = fragment._data
            width = data.shape.width if hasattr(data.shape, "width") else int(data.shape)
            attrs = fragment._attrs or {}
            found.append(MemoryUse(".".join(path), width, data.depth, len(fragment._read_ports),
                                   len(fragment._write_ports), any(int(v) for v in data.init),
                                   spram=attrs.get("ram_style") == "huge"))
        for sub, name, *_ in fragment.subfragments:
            walk(sub, path + (str(name),))

    walk(Fragment.get(design, None), ())
    return found


def _part(target):
    if isinstance(target, Part):
        return target
    try:
        return PARTS[target]
    except (KeyError, TypeError):
        raise InputError(f"unknown target {target!r}; choose one of {', '.join(PARTS)}") from None


def memory_budget(uses, target):
    """Map memories onto ``target``'s blocks (module docstring's rules).

    Parameters
    ----------
    uses : list of MemoryUse
    target : str or Part

    Returns
    -------
    (list of MemoryUse, dict)
        The memories with ``kind`` and ``blocks`` set, and ``{"ebr": n, "spram": n}`` in use.
    """
    part = _part(target)
    mapped, used = [], {"ebr": 0, "spram": 0}
    for use in uses:
        copies = max(1, use.read_ports)
        if use.bits < LOGIC_BITS:
            kind, blocks = "logic", 0
        elif use.spram and not use.initialised and part.spram:
            kind, blocks = "spram", copies * spram_blocks(use.width, use.depth)
        else:
            kind, blocks = "ebr", copies * ebr_blocks(use.width, use.depth)
        mapped.append(dataclasses.replace(use, kind=kind, blocks=blocks))
        if blocks:
            used[kind] += blocks
    return mapped, used


def check_fit(design, target):
    """The memories of ``design`` mapped onto ``target``; raise if they cannot fit.

    Returns
    -------
    (list of MemoryUse, dict)
        As :func:`memory_budget`.

    Raises
    ------
    InputError
        If the EBR or SPRAM the memories need exceed the part's, naming every memory of that
        kind with its blocks, the total and the shortfall.
    """
    part = _part(target)
    mapped, used = memory_budget(memories(design), part)
    for kind, have in (("ebr", part.ebr), ("spram", part.spram)):
        if used[kind] > have:
            items = ", ".join(f"{use.describe()}: {use.blocks}" for use in mapped if use.kind == kind)
            raise InputError(f"does not fit the {part.part}: its memories need {used[kind]} {kind.upper()} blocks "
                             f"of the {have} it has ({used[kind] - have} short): {items}")
    return mapped, used
